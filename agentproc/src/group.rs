//! Process-group primitives shared by every spawner in agentd (the process API here, stdio
//! MCP servers in `agentmcp`): put a command in its own group, signal a whole group, and
//! the one TERM → grace → KILL sequence ([`stop_group`]).
//!
//! This is the only module in the workspace that calls `killpg`.

use std::io;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A signal for a whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    /// SIGTERM: ask politely.
    Term,
    /// SIGKILL: no appeal.
    Kill,
}

impl From<GroupSignal> for Signal {
    fn from(s: GroupSignal) -> Self {
        match s {
            GroupSignal::Term => Signal::SIGTERM,
            GroupSignal::Kill => Signal::SIGKILL,
        }
    }
}

/// Makes the command the leader of a new process group (its pgid = its pid), so the whole
/// tree it starts can be signalled at once.
pub fn new_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
}

/// The stop sequence of every spawner: `term` (TERM the group or groups; the grace starts
/// once it is done, so a slow signal path — a cgroup freeze — does not eat into it), wait up
/// to `grace` for `exited`, then `kill` — always called, with whether the grace ran out, since
/// descendants may outlive a leader that exited in time (the caller decides whom to KILL).
/// Returns whether the grace ran out.
pub async fn stop_group(
    term: impl std::future::Future<Output = ()>,
    exited: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
    kill: impl FnOnce(bool),
) -> bool {
    term.await;
    let timed_out = tokio::time::timeout(grace, exited).await.is_err();
    kill(timed_out);
    timed_out
}

/// Signals every process in group `pgid`. A group that no longer exists is not an error.
pub fn signal_group(pgid: u32, sig: GroupSignal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pgid out of range",
        ));
    };
    if raw <= 1 {
        // Never signal group 0 (our own) or 1 (init's): that would hit the daemon itself.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pgid <= 1",
        ));
    }
    match killpg(Pid::from_raw(raw), Signal::from(sig)) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether any process of group `pgid` is still running. Zombies (exited, not yet reaped —
/// e.g. orphans whose new parent does not reap) do not count.
pub fn group_alive(pgid: u32) -> bool {
    !group_members(pgid).is_empty()
}

/// Pids of the live (non-zombie) members of group `pgid`, read from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    // Cheap check first: no process at all (not even a zombie) is in the group.
    if let Ok(raw) = i32::try_from(pgid)
        && raw > 1
        && killpg(Pid::from_raw(raw), None) == Err(nix::errno::Errno::ESRCH)
    {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z' && state != 'X')
        })
        .collect()
}

/// Process group ids that have at least one live (non-zombie) member, from one `/proc` scan.
pub(crate) fn live_groups() -> std::collections::HashSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, pgrp) = parse_stat(&stat)?;
            (state != 'Z' && state != 'X').then_some(pgrp)
        })
        .collect()
}

/// `(state, pgrp)` from a `/proc/<pid>/stat` line (the command name may contain spaces and
/// parentheses, so fields are counted from the last `)`).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// Runs `stop_group` with a 2 s grace on `exited`, logging each step with its time.
    async fn run_logged(
        term_takes: Duration,
        exited: impl std::future::Future<Output = ()>,
    ) -> (bool, Vec<(&'static str, u128)>) {
        let t0 = Instant::now();
        let log = Mutex::new(Vec::new());
        let at = || t0.elapsed().as_millis();
        let timed_out = stop_group(
            async {
                log.lock().unwrap().push(("term", at()));
                tokio::time::sleep(term_takes).await;
            },
            exited,
            Duration::from_secs(2),
            |t| {
                log.lock()
                    .unwrap()
                    .push((if t { "kill late" } else { "kill" }, at()))
            },
        )
        .await;
        (timed_out, log.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn stop_group_terms_waits_the_grace_then_kills() {
        let (timed_out, log) = run_logged(Duration::ZERO, std::future::pending()).await;
        assert!(timed_out);
        assert_eq!(log, vec![("term", 0), ("kill late", 2000)]);
        // Exited within the grace: KILL follows at once (for the descendants).
        let (timed_out, log) = run_logged(
            Duration::ZERO,
            tokio::time::sleep(Duration::from_millis(300)),
        )
        .await;
        assert!(!timed_out);
        assert_eq!(log, vec![("term", 0), ("kill", 300)]);
        // A slow TERM (a cgroup freeze) does not shorten the grace: it starts after it.
        let (timed_out, log) = run_logged(Duration::from_millis(500), std::future::pending()).await;
        assert!(timed_out);
        assert_eq!(log, vec![("term", 0), ("kill late", 2500)]);
    }

    #[tokio::test]
    async fn kills_the_whole_group() -> io::Result<()> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30 & wait"]);
        new_group(&mut cmd);
        let mut child = cmd.spawn()?;
        let pgid = child.id().ok_or_else(|| io::Error::other("no pid"))?;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(group_alive(pgid));
        signal_group(pgid, GroupSignal::Kill)?;
        let _ = child.wait().await?;
        // The backgrounded sleeps were reparented and die with the group.
        for _ in 0..100 {
            if !group_alive(pgid) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("group {pgid} still alive");
    }

    #[test]
    fn parses_stat_with_odd_names() {
        assert_eq!(parse_stat("42 (a) b)) S 1 42 42 0"), Some(('S', 42)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn refuses_own_and_init_group() {
        assert!(signal_group(0, GroupSignal::Term).is_err());
        assert!(signal_group(1, GroupSignal::Term).is_err());
    }
}
