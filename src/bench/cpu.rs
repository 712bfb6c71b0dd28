//! CPU time of the bench's own processes, read from `/proc`.
//!
//! On a machine that clients, services and storage share, how fast a phase ran swings with
//! whatever else the machine does; the CPU the services spent on each MiB of it does not.
//! The transactional row reports that cost next to its throughput, because the difference
//! between a transactional and an idempotent producer is mostly there: what each
//! transaction costs the gateway, the writer and PostgreSQL on top of its records.

/// Linux counts a process's CPU time in ticks of 1/100 s (`USER_HZ`, fixed for user space
/// on every architecture yaks builds for).
const TICKS_PER_S: f64 = 100.0;

/// What `/proc/<pid>/stat` says of a process's CPU time.
#[derive(Debug, Clone, Copy)]
struct Stat {
    parent: u32,
    /// User and system time of all its threads, seconds.
    own_s: f64,
    /// User and system time of the children it has waited for, seconds.
    reaped_s: f64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3 of the whole line (index 0 here), the parent field 4, utime and
    // stime 14 and 15, cutime and cstime 16 and 17.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| -> Option<f64> {
        Some(fields.get(index)?.parse::<u64>().ok()? as f64 / TICKS_PER_S)
    };
    Some(Stat {
        parent: fields.get(1)?.parse().ok()?,
        own_s: ticks(11)? + ticks(12)?,
        reaped_s: ticks(13)? + ticks(14)?,
    })
}

/// CPU seconds process `pid` has used so far (user and system, all threads); `None` once
/// it is gone.
pub fn process_s(pid: u32) -> Option<f64> {
    stat(pid).map(|s| s.own_s)
}

/// CPU seconds used so far by process `pid` and its children, live or exited: PostgreSQL's
/// postmaster and the backend of every connection. A backend that exited between two
/// readings is counted once its parent has reaped it, which the postmaster does at once.
pub fn tree_s(pid: u32) -> f64 {
    let Some(root) = stat(pid) else {
        return 0.0;
    };
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.parent == pid)
        .map(|s| s.own_s)
        .sum();
    root.own_s + root.reaped_s + children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children_live_and_exited() {
        let me = std::process::id();
        let alone = process_s(me).expect("readable");
        assert!(alone >= 0.0);
        assert!(process_s(u32::MAX).is_none());
        assert_eq!(tree_s(u32::MAX), 0.0);
        // A child that spins for a while, then is waited for: its CPU moves from the
        // live children to the reaped ones, and the tree keeps it.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"])
            .spawn()
            .expect("sh");
        child.wait().expect("waited");
        let reaped = stat(me).expect("readable").reaped_s;
        assert!(reaped > 0.0, "the child's CPU is counted once reaped");
        assert!(tree_s(me) >= alone + reaped);
    }
}
