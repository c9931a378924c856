//! One supervised process as the rest of the daemon sees it: its identity, its output buffer
//! and exit record (read together, consistently), and the status watch waiters use. The
//! process task ([`super::task`]) is its only writer. This module must not start, signal
//! or forget processes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::buffer::{OutputBuffer, SinceRead, Truncation};
use crate::contain::Containment;
use crate::sync::lock;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The shell's exit status; -1 when it was killed by a signal (Coder's convention).
    pub code: i32,
    /// The signal that killed the shell.
    pub signal: Option<i32>,
    /// When the exit was recorded.
    pub at: SystemTime,
}

impl Exit {
    /// The signal's name, e.g. `SIGKILL`.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(|s| {
            nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| format!("SIG{s}"))
        })
    }
}

/// Change notifications of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Bytes of output so far.
    pub written: u64,
    /// The exit is recorded.
    pub exited: bool,
    /// The output pipe is closed (no more output will come).
    pub closed: bool,
}

pub(super) struct State {
    pub(super) buf: OutputBuffer,
    pub(super) exit: Option<Exit>,
    pub(super) closed: bool,
}

/// One supervised process.
pub struct Process {
    /// Its id.
    pub id: String,
    /// The command string.
    pub command: String,
    /// The resolved working directory (empty: the daemon's own).
    pub workdir: PathBuf,
    /// Echoed from the request.
    pub background: bool,
    /// The chat that started it.
    pub chat_id: Option<String>,
    /// The shell's pid, which is also its process group id.
    pub pid: u32,
    /// When it started.
    pub started_at: SystemTime,
    /// Start order (ties in time break on it).
    pub seq: u64,
    pub(super) state: Mutex<State>,
    pub(super) status: watch::Sender<Status>,
    /// Its tree was seen without a live member after the exit. A tree never regains
    /// members, so later looks skip the scan and a recycled pgid is never taken for it.
    pub(super) group_gone: AtomicBool,
    /// Its cgroup leaf (cgroup mode).
    pub(super) leaf: Option<PathBuf>,
    pub(super) contain: Arc<Containment>,
}

/// A consistent view of a process: exit and output read together.
#[derive(Debug, Clone)]
pub struct OutputView {
    /// The rendered head+tail output.
    pub output: String,
    /// What rendering left out.
    pub truncation: Option<Truncation>,
    /// How it ended, if it did.
    pub exit: Option<Exit>,
    /// No more output will come.
    pub closed: bool,
}

impl Process {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// How it ended, if it did.
    pub fn exit(&self) -> Option<Exit> {
        self.lock().exit
    }

    /// Whether the shell is still running.
    pub fn running(&self) -> bool {
        self.exit().is_none()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// A watch on the status (for waiting).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Waits until the exit is recorded.
    pub async fn wait_exit(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|s| s.exited).await;
    }

    /// Waits until output beyond `offset` exists, no more can come (the pipe closed), or
    /// the shell exits. A shell that had already exited does not end the wait: its
    /// descendants may still write, and a poller must not spin on empty answers.
    pub async fn wait_output_after(&self, offset: u64) {
        let mut rx = self.subscribe();
        let exited_before = rx.borrow().exited;
        let _ = rx
            .wait_for(|s| s.written > offset || s.closed || (s.exited && !exited_before))
            .await;
    }

    /// The exit status and the rendered output, consistent with each other: when `exit` is
    /// set, everything the shell wrote is in `output`.
    pub fn output(&self) -> OutputView {
        let (snap, exit, closed) = {
            let st = self.lock();
            (st.buf.snapshot(), st.exit, st.closed)
        };
        let (output, truncation) = snap.render();
        OutputView {
            output,
            truncation,
            exit,
            closed,
        }
    }

    /// Output after byte `offset`, with the exit status read at the same moment.
    pub fn read_since(&self, offset: u64) -> (SinceRead, Option<Exit>, bool) {
        let st = self.lock();
        (st.buf.read_since(offset, st.closed), st.exit, st.closed)
    }

    /// Pids of live processes left in its tree (the shell itself counts while it runs):
    /// its cgroup's members, or its descendants, group and adopted orphans. Blocking: in
    /// subreaper mode a `/proc` scan that reads other processes' environments (async
    /// callers use the blocking pool, bounded); in cgroup mode a read of `cgroup.procs`.
    pub fn group_members(&self) -> Vec<u32> {
        if self.group_gone.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let members = self
            .contain
            .tree_members(self.leaf.as_deref(), self.pid, &self.id);
        if members.is_empty() && !self.running() {
            self.group_gone.store(true, Ordering::Relaxed);
        }
        members
    }

    /// Whether its tree has ended; its cgroup leaf is released when it has. Blocking, as
    /// [`Process::group_alive`].
    pub(super) fn tree_ended(&self) -> bool {
        if self.group_alive() {
            return false;
        }
        if let Some(leaf) = &self.leaf {
            self.contain.release_leaf(leaf);
        }
        true
    }

    /// Whether its tree has a live member. Blocking: reads `/proc` (subreaper mode) or
    /// `cgroup.events`.
    pub(super) fn group_alive(&self) -> bool {
        if self.group_gone.load(Ordering::Relaxed) {
            return false;
        }
        let alive = self
            .contain
            .tree_alive(self.leaf.as_deref(), self.pid, &self.id);
        if !alive && !self.running() {
            self.group_gone.store(true, Ordering::Relaxed);
        }
        alive
    }

    pub(super) fn write(&self, data: &[u8]) {
        let total = {
            let mut st = self.lock();
            st.buf.write(data);
            st.buf.total_written()
        };
        self.status.send_modify(|s| s.written = total);
    }

    pub(super) fn set_exit(&self, exit: Exit) {
        self.lock().exit = Some(exit);
        self.status.send_modify(|s| s.exited = true);
    }

    pub(super) fn set_closed(&self) {
        self.lock().closed = true;
        self.status.send_modify(|s| s.closed = true);
    }
}
