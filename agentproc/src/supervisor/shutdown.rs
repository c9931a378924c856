//! How a supervisor ends and what runs beside the processes: the periodic sweep of expired
//! records, the adopted-orphan reaper (subreaper mode), the shutdown sequence (TERM → grace →
//! KILL → bounded wait for the process tasks) and its [`Phase`]. This module must not start
//! processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::Supervisor;
use crate::group::{self, GroupSignal};
use crate::sync::lock;

/// Subreaper mode: how long a SIGCHLD waits for more before the adopted-orphan scan.
const ORPHAN_SCAN_COALESCE: Duration = Duration::from_millis(20);

/// Where a supervisor is in its life. Only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Starts are accepted.
    Running = 0,
    /// Shutting down: no new starts; the groups got TERM and have the grace period.
    Terminating = 1,
    /// What outlived the grace (or everything, on a second signal) is being killed.
    Killing = 2,
    /// Every task has ended or was abandoned; the cgroup root is gone.
    Stopped = 3,
}

/// A [`Phase`] shared between the supervisor's handles.
#[derive(Debug, Default)]
pub(super) struct PhaseCell(AtomicU8);

impl PhaseCell {
    /// The current phase.
    pub(super) fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Running,
            1 => Phase::Terminating,
            2 => Phase::Killing,
            _ => Phase::Stopped,
        }
    }

    /// Moves to `to` unless the supervisor is already further.
    pub(super) fn advance(&self, to: Phase) {
        self.0.fetch_max(to as u8, Ordering::SeqCst);
    }
}

impl Supervisor {
    /// Forgets expired processes every `sweep_interval` (10 ms at least).
    pub(super) fn start_sweep(&self) {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        let every = self
            .inner
            .config
            .sweep_interval
            .max(Duration::from_millis(10));
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let n = Supervisor { inner }.forget_expired();
                if n > 0 {
                    tracing::debug!(reaped = n, "swept exited processes");
                }
            }
        });
    }

    /// Subreaper mode: after every burst of SIGCHLD (and once a second), records the orphans the daemon
    /// adopted from its trees and reaps those that exited.
    pub(super) fn start_orphan_reaper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGCHLD stream; adopted orphans are reaped once a second");
                None
            }
        };
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let chld = async {
                    match &mut sigchld {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                    _ = chld => {
                        // Every shell's exit raises SIGCHLD too: coalesce a burst into one
                        // scan, after the exits' answers went out (the scan reads /proc).
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(ORPHAN_SCAN_COALESCE) => {}
                        }
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let own = lock(&inner.own).clone();
                // Awaited without a bound: a scan that hangs stalls only this task (another
                // would hang on the same process, one blocking thread more each time), and
                // the shutdown abandons it after its own bound.
                let scan = inner
                    .tasks
                    .clone()
                    .spawn_blocking(move || inner.contain.reap_adopted(&own));
                if let Ok(n) = scan.await
                    && n > 0
                {
                    tracing::debug!(reaped = n, "reaped adopted orphans");
                }
            }
        });
    }

    /// Stops everything: no new starts, TERM every group, wait up to `grace`, KILL what is
    /// left, then wait (bounded) for the per-process tasks. Every `/proc` or cgroupfs look
    /// runs on the blocking pool, bounded (freezing a cgroup sleeps; a scan may stall).
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.phase.advance(Phase::Terminating);
        let groups = self
            .off_runtime("finding the process groups", |inner| {
                inner.registry.target_groups()
            })
            .await
            .unwrap_or_default();
        if !groups.is_empty() {
            tracing::info!(groups = groups.len(), "terminating process groups");
        }
        let mut killing = None;
        group::stop_group(
            async {
                self.off_runtime("terminating the process trees", move |inner| {
                    inner.contain.signal_all(&groups, GroupSignal::Term);
                })
                .await;
            },
            async {
                loop {
                    if inner.registry.none_active() {
                        let alive = self.off_runtime("looking for live trees", |inner| {
                            inner.contain.anything_alive(&inner.registry.all_groups())
                        });
                        if alive.await == Some(false) {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            grace,
            |_| {
                inner.phase.advance(Phase::Killing);
                killing = Some(self.off_runtime("killing the process trees", |inner| {
                    let left = inner.registry.all_groups();
                    if inner.contain.anything_alive(&left) {
                        let n = inner.contain.signal_all(&left, GroupSignal::Kill);
                        tracing::warn!(
                            trees = n,
                            "killing process trees that outlived the grace period"
                        );
                    }
                }));
            },
        )
        .await;
        if let Some(killing) = killing {
            killing.await;
        }
        inner.tasks.close();
        let done = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if inner.registry.none_active() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if done.is_err() {
            tracing::warn!("process tasks still running after the kill; stopping them");
        }
        inner.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), inner.tasks.wait()).await;
        self.off_runtime("the last orphan reap", |inner| {
            inner.contain.reap_adopted(&lock(&inner.own).clone());
            inner.contain.remove_root();
        })
        .await;
        inner.phase.advance(Phase::Stopped);
    }

    /// Kills every group now, synchronously (second signal). Its `/proc` scans stay on the
    /// caller's thread on purpose: the daemon exits right after, so the kill must be done
    /// when this returns, and handing it to the blocking pool could leave it unsent.
    pub fn kill_all_now(&self) {
        self.inner.phase.advance(Phase::Killing);
        let groups = self.inner.registry.target_groups();
        self.inner.contain.signal_all(&groups, GroupSignal::Kill);
        self.inner.cancel.cancel();
    }
}
