//! A cloneable shutdown signal.
//!
//! Every long-running loop takes a [`Shutdown`] so that `yaks dev`, tests and the split
//! processes stop the same way: stop accepting, drain, commit, close.

use tokio::sync::watch;

/// Fires once; every clone sees it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A new signal and the trigger that fires it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// True once the trigger fired (or was dropped).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves when the trigger fires or is dropped.
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped, which also means stop.
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}

impl ShutdownTrigger {
    /// Fire the signal.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}
