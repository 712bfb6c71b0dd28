//! A split deployment as separate `yaks` processes, which the fault driver can kill,
//! restart, freeze and thaw.
//!
//! Each member is one role process with a fixed listen address: a restart after `kill -9`
//! comes back on the same address, as a container restarted by its orchestrator would
//! behind a stable service name. Output goes to `DIR/logs/<member>.log`, appended across
//! restarts.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use yaks_common::clock::Instant;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// The role a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `yaks gateway`.
    Gateway,
    /// `yaks writer`.
    Writer,
    /// `yaks reader`.
    Reader,
}

impl Role {
    /// The subcommand, also the member name's stem.
    pub fn command(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

/// One role process.
pub struct Member {
    /// `writer-0`, `gateway-1`, …
    pub name: String,
    /// What it runs.
    pub role: Role,
    /// `127.0.0.1:port` it listens on.
    pub addr: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    frozen: bool,
}

/// How long a (re)started member may take to listen. Starting can fail while PostgreSQL
/// is down; it is retried until then.
const START_TIMEOUT: Duration = Duration::from_secs(90);

impl Member {
    /// A member not yet started.
    pub fn new(
        binary: &Path,
        role: Role,
        index: usize,
        addr: String,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Member {
        let name = format!("{}-{index}", role.command());
        Member {
            log: log_dir.join(format!("{name}.log")),
            name,
            role,
            addr,
            binary: binary.to_path_buf(),
            env,
            child: None,
            frozen: false,
        }
    }

    /// Starts the process and waits until it listens, restarting it while it exits early
    /// (as when PostgreSQL is down at that moment).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let deadline = yaks_common::clock::now() + START_TIMEOUT;
        loop {
            self.spawn()?;
            match self.wait_listening(deadline).await {
                Ok(()) => return Ok(()),
                Err(e) if yaks_common::clock::now() < deadline => {
                    warn!(member = %self.name, error = %e, "member did not come up; starting it again");
                    self.kill().await;
                    yaks_common::clock::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(e.context(format!("{} (log: {})", self.name, self.log.display())));
                }
            }
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .arg(self.role.command())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", self.binary.display(), self.name))?;
        self.child = Some(child);
        self.frozen = false;
        Ok(())
    }

    async fn wait_listening(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("exited with {status} before listening");
            }
            if let Ok(stream) = TcpStream::connect(&self.addr).await {
                // Connecting to a port nobody listens on can yield a TCP self-connection.
                let own = stream.local_addr().ok() == stream.peer_addr().ok();
                if !own {
                    return Ok(());
                }
            }
            if yaks_common::clock::now() >= deadline {
                bail!("not listening on {} in time", self.addr);
            }
            yaks_common::clock::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` and reap.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.frozen = false;
    }

    /// SIGSTOP: the process keeps its sockets but does nothing until [`Member::thaw`].
    pub async fn freeze(&mut self) -> anyhow::Result<()> {
        self.signal("STOP").await?;
        self.frozen = true;
        Ok(())
    }

    /// SIGCONT.
    pub async fn thaw(&mut self) -> anyhow::Result<()> {
        self.signal("CONT").await?;
        self.frozen = false;
        Ok(())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// True between [`Member::freeze`] and [`Member::thaw`].
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(pid) = self.child.as_ref().and_then(Child::id) else {
            bail!("{} is not running", self.name);
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} ({}) failed: {status}", self.name);
        }
        Ok(())
    }

    /// Asks the process to shut down (SIGTERM), waiting up to `grace` before `kill -9`.
    pub async fn stop(&mut self, grace: Duration) {
        if self.frozen {
            let _ = self.thaw().await;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            info!(member = %self.name, "did not stop in time; killing it");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
