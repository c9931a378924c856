//! OOM score and niceness of children, by Coder's `agentexec` rules: the
//! OOM killer should pick a user's command before the daemon, and commands run a little
//! nicer than the daemon.
//!
//! The values are applied in the child before `exec` (see `spawn`), so every descendant
//! inherits them; a failure there is logged by the supervisor, never fatal. This module
//! takes its inputs as values; it never reads environment variables.

/// What to apply to a child. `None` leaves the inherited value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Priority {
    /// `/proc/self/oom_score_adj` (-1000..=1000).
    pub oom_score_adj: Option<i32>,
    /// Absolute niceness (-20..=19).
    pub nice: Option<i32>,
}

impl Priority {
    /// Coder's defaults, derived from the daemon's own values, each overridable
    /// (`CODER_PROC_OOM_SCORE` / `CODER_PROC_NICE_SCORE`, read by the caller):
    /// OOM: own < 0 → 0; own ≥ 998 → 1000; else 998. Nice: own + 5, at most 19.
    pub fn coder_rules(
        own_oom: Option<i32>,
        own_nice: Option<i32>,
        oom_override: Option<i32>,
        nice_override: Option<i32>,
    ) -> Self {
        let oom = oom_override.or_else(|| {
            own_oom.map(|o| match o {
                o if o < 0 => 0,
                o if o >= 998 => 1000,
                _ => 998,
            })
        });
        let nice = nice_override.or_else(|| own_nice.map(|n| (n + 5).min(19)));
        Self {
            oom_score_adj: oom.map(|v| v.clamp(-1000, 1000)),
            nice: nice.map(|v| v.clamp(-20, 19)),
        }
    }

    /// The daemon's own `(oom_score_adj, niceness)`.
    pub fn own() -> (Option<i32>, Option<i32>) {
        let oom = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        (oom, get_nice(0))
    }
}

/// Niceness of `pid` (0 = this process).
#[expect(unsafe_code)]
fn get_nice(pid: u32) -> Option<i32> {
    // getpriority can legitimately return -1, so errno must be cleared and checked.
    // SAFETY: plain syscalls on integers; errno is thread-local.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, pid);
        (*libc::__errno_location() == 0).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coder_defaults() {
        let p = Priority::coder_rules(Some(0), Some(0), None, None);
        assert_eq!(p.oom_score_adj, Some(998));
        assert_eq!(p.nice, Some(5));
        assert_eq!(
            Priority::coder_rules(Some(-500), Some(17), None, None),
            Priority {
                oom_score_adj: Some(0),
                nice: Some(19)
            }
        );
        assert_eq!(
            Priority::coder_rules(Some(999), None, None, None).oom_score_adj,
            Some(1000)
        );
        assert_eq!(
            Priority::coder_rules(Some(0), Some(0), Some(5), Some(2)),
            Priority {
                oom_score_adj: Some(5),
                nice: Some(2)
            }
        );
    }
}
