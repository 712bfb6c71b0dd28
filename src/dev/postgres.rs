//! A private PostgreSQL for `yaks dev` and the tests, started from the system's binaries.
//!
//! The cluster lives in a directory of ours, listens on loopback only (no Unix socket, so
//! nothing outside the directory is touched), trusts local connections, and is stopped
//! when the handle is dropped. initdb and postgres refuse to run as root; as root, they are
//! run as the `postgres` system user (created by Debian's `postgresql` package), which
//! then owns the cluster directory.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use tracing::{info, warn};

/// A running private PostgreSQL; stopped on drop.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts a cluster in `dir` on a free loopback port.
    pub fn start(dir: &Path) -> anyhow::Result<EmbeddedPostgres> {
        let bin_dir = find_bin_dir()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let run_as = if is_root()? {
            Some(postgres_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            check_reachable(dir, uid)?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
            // Directories must be private to their owner for postgres to accept them.
            set_mode(dir, 0o700)?;
        }
        let mut pg = EmbeddedPostgres {
            bin_dir,
            data_dir: dir.to_path_buf(),
            port: free_port()?,
            run_as,
            stopped: true,
        };
        if !dir.join("PG_VERSION").exists() {
            pg.initdb()?;
        }
        // The port was free when drawn, but initdb takes seconds, and another process
        // starting at the same time (tests run side by side) may have drawn it too.
        let mut attempts = 0;
        while let Err(e) = pg.pg_ctl_start() {
            attempts += 1;
            if attempts == 3 || !pg.log_tail().contains("Address already in use") {
                return Err(e);
            }
            warn!(
                port = pg.port,
                "the drawn port was taken meanwhile; drawing another"
            );
            pg.port = free_port()?;
        }
        pg.stopped = false;
        info!(port = pg.port, dir = %dir.display(), "private postgresql started");
        Ok(pg)
    }

    /// Connection URL for the `postgres` database as the `yaks` superuser.
    pub fn url(&self) -> String {
        format!("postgres://yaks@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id while the server runs (the first line of
    /// `postmaster.pid`), so its CPU time and its backends' can be read.
    pub fn pid(&self) -> Option<u32> {
        if self.stopped {
            return None;
        }
        std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the server (fast shutdown: open transactions roll back) and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let data_dir = self.data_dir.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data_dir, "-m", "fast", "-w", "-t", "60", "stop"],
        )
    }

    /// Starts a stopped server again on the same port and data directory (fault injection:
    /// a PostgreSQL restart as clients see it).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if !self.stopped {
            return Ok(());
        }
        self.pg_ctl_start()?;
        self.stopped = false;
        info!(port = self.port, "private postgresql started again");
        Ok(())
    }

    /// Serves TLS from now on with `cert` and `key` (PEM), restarting the server: what a
    /// test of `sslmode=verify-full` needs. The files go into the data directory, owned by
    /// the user the server runs as, the key readable by it alone (PostgreSQL insists).
    pub fn enable_tls(&mut self, cert: &str, key: &str) -> anyhow::Result<()> {
        for (name, text, mode) in [("server.crt", cert, 0o644), ("server.key", key, 0o600)] {
            let path = self.data_dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            set_mode(&path, mode)?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .with_context(|| format!("giving {} to the postgres user", path.display()))?;
            }
        }
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).context("reading postgresql.conf")?;
        if !text.contains("\nssl = on\n") {
            text.push_str("\nssl = on\n");
            std::fs::write(&conf, text).context("writing postgresql.conf")?;
        }
        self.stop()?;
        self.start_again()
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &data_dir,
                "-U",
                "yaks",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
        .context("initdb failed")
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=200 -c fsync=on",
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data_dir, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )
        .with_context(|| {
            format!(
                "starting postgresql (log: {log}, which ends:\n{})",
                self.log_tail()
            )
        })
    }

    /// The last lines of the server's log: why it did not start, kept in the error since a
    /// test's directory goes with it.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(self.bin_dir.join(program));
        command.args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).current_dir(&self.data_dir);
        }
        let output = command
            .output()
            .with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            warn!(error = %e, "stopping private postgresql failed");
        }
    }
}

/// The directory holding initdb/pg_ctl/postgres: PATH first, then Debian's layout.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Debian links only some tools into PATH; prefer the real directory.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                if real.join("pg_ctl").is_file() {
                    return Ok(real);
                }
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
             /usr/lib/postgresql/*/bin; install them (`apt-get install -y postgresql`) or set \
             postgres.url (YAKS_POSTGRES__URL) to an existing server"
        ),
    }
}

fn is_root() -> anyhow::Result<bool> {
    // The owner of /proc/self is this process's effective user.
    Ok(std::fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid()
        == 0)
}

fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output()?;
        if !output.status.success() {
            bail!(
                "running as root, and there is no `postgres` user to run PostgreSQL as \
                 (initdb refuses root): install Debian's postgresql package, which creates it, \
                 or run yaks as an ordinary user"
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// The postgres user must be able to walk down to `dir`.
fn check_reachable(dir: &Path, uid: u32) -> anyhow::Result<()> {
    let absolute = std::fs::canonicalize(dir)?;
    for ancestor in absolute.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)?;
        if meta.uid() != uid && meta.mode() & 0o001 == 0 {
            bail!(
                "the postgres user cannot reach {} because {} is closed to other users; \
                 choose a data directory elsewhere (e.g. under /var/tmp) or `chmod o+x {}`",
                dir.display(),
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// A port free on loopback right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The first of `count` consecutive free ports on loopback, for a gateway presenting
/// `count` brokers (broker `i` listens on the first port + `i`).
pub fn free_ports(count: u16) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let base = first.local_addr()?.port();
        let rest: Option<Vec<TcpListener>> = (1..count)
            .map(|i| {
                let port = base.checked_add(i)?;
                TcpListener::bind(("127.0.0.1", port)).ok()
            })
            .collect();
        if rest.is_some() {
            return Ok(base);
        }
    }
    anyhow::bail!("found no {count} consecutive free ports")
}
