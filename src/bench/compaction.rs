//! The key compaction row of `yaks bench`: a compacted partition holding 10 versions of
//! each key, compacted by `yaks compactor --once` as a process of its own, whose CPU time
//! and peak resident set are read from `/proc` while it runs.
//!
//! A process of its own, so the figures are the compactor's alone: the loopback S3
//! endpoint it reads from runs in the bench process, the clients that wrote the partition
//! are gone. Merging is turned off for that process (`compactor.small_bytes` 0), so the
//! pass does key compaction and nothing else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// How `yaks compactor --once` is started against the bench's deployment.
#[derive(Debug, Clone)]
pub struct CompactorCommand {
    /// The `yaks` binary.
    pub binary: PathBuf,
    /// The deployment's settings, as environment variables.
    pub env: Vec<(String, String)>,
    /// Where its log goes.
    pub log: PathBuf,
}

/// What one compaction took.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactionCost {
    /// Bytes of record values in the partition compacted, MiB.
    pub input_mib: f64,
    /// Wall-clock seconds of the process.
    pub wall_s: f64,
    /// CPU seconds of the process (user and system, all threads).
    pub cpu_s: f64,
    /// Its peak resident set, bytes.
    pub peak_rss_bytes: u64,
}

impl CompactionCost {
    /// MiB of input per CPU second: the throughput of one core.
    pub fn mib_per_core_s(&self) -> f64 {
        self.input_mib / self.cpu_s.max(1e-3)
    }
}

/// Runs one `yaks compactor --once` and measures it; `input_mib` is what the partition holds.
pub fn measure(command: &CompactorCommand, input_mib: f64) -> anyhow::Result<CompactionCost> {
    super::load::settle_disk();
    let log = std::fs::File::create(&command.log)
        .with_context(|| format!("creating {}", command.log.display()))?;
    let started = yaks_common::clock::now();
    let mut child = Command::new(&command.binary)
        .args(["compactor", "--once"])
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        // Merging would compact the rest of the bench's data too: only key compaction here.
        .env("YAKS_COMPACTOR__SMALL_BYTES", "0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting yaks compactor --once")?;
    let pid = child.id();
    let mut cost = CompactionCost {
        input_mib,
        ..CompactionCost::default()
    };
    // Inside the bench's 300 s bound on a phase, so the process is not left running.
    let deadline = started + Duration::from_secs(290);
    let status = loop {
        // The last reading before the process exits; it misses at most one interval.
        if let Some((cpu_s, rss)) = usage(pid) {
            cost.cpu_s = cost.cpu_s.max(cpu_s);
            cost.peak_rss_bytes = cost.peak_rss_bytes.max(rss);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if yaks_common::clock::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("yaks compactor --once took more than 290 s");
        }
        yaks_common::clock::sleep_blocking(Duration::from_millis(20));
    };
    cost.wall_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.success(),
        "yaks compactor --once failed ({status}); see {}",
        command.log.display()
    );
    anyhow::ensure!(
        log_says_compacted(&command.log),
        "yaks compactor --once compacted nothing; see {}",
        command.log.display()
    );
    Ok(cost)
}

/// CPU seconds so far and peak resident set of process `pid`, from `/proc`.
fn usage(pid: u32) -> Option<(f64, u64)> {
    Some((super::cpu::process_s(pid)?, super::peak_rss_bytes(pid)))
}

/// Whether the log of the pass shows a key compaction (the bench checks it measured one).
fn log_says_compacted(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains("key compaction pass done"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_resident_set() {
        let (cpu_s, rss) = usage(std::process::id()).expect("readable");
        assert!(cpu_s >= 0.0);
        assert!(rss > 0);
        assert!(usage(u32::MAX).is_none());
    }
}
