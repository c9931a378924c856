//! The one task per process: reads its output pipe into the buffer, waits for the shell on
//! its pidfd, records the exit only after everything the shell wrote is in (or after the
//! linger, when descendants hold the pipe), runs the exit callback, and keeps the process's
//! slot until its tree is gone. This module must not decide what is started or signalled.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::unix::pipe;
use tokio::sync::OwnedSemaphorePermit;

use super::process::{Exit, Process};
use super::{OnExit, Supervisor};
use crate::group::GroupSignal;
use crate::spawn;
use crate::sync::lock;

/// Size the pipe of a process that filled its default one is grown to (fewer wakeups).
pub(super) const PIPE_SIZE: i32 = 1 << 20;
/// At most this many reads per wakeup before yielding to other tasks.
const READS_PER_WAKEUP: usize = 16;

impl Supervisor {
    /// The process task: reads the pipe, waits for the shell, records the exit once the
    /// shell's output is in, and holds the process's `slot` (its permit against the cap) until
    /// its tree is gone.
    pub(super) async fn supervise(
        &self,
        proc: Arc<Process>,
        child: spawn::Child,
        rx: pipe::Receiver,
        slot: OwnedSemaphorePermit,
        priority_problems: Vec<String>,
        mut on_exit: Option<OnExit>,
    ) {
        tracing::info!(
            process_id = %proc.id,
            pid = proc.pid,
            command = %truncate_for_log(&proc.command),
            workdir = %proc.workdir.display(),
            background = proc.background,
            "process started"
        );
        for problem in &priority_problems {
            tracing::warn!(process_id = %proc.id, pid = proc.pid, "could not adjust the process priority: {problem}");
        }
        let linger = self.inner.config.linger;
        let cancel = self.inner.cancel.clone();
        let mut eof = false;
        // The pipe keeps the kernel's 64 KiB until a read finds it full: pipe memory counts
        // against the user's limit (`pipe-user-pages-soft`), shared with the workspace's own
        // pipelines, so only a chatty process gets the big one.
        let mut grown = false;
        let mut status: Option<std::process::ExitStatus> = None;
        let mut reported = false;
        let mut linger_until: Option<tokio::time::Instant> = None;
        let started = Instant::now();
        // Dropped (with its pidfd) once the shell is reaped.
        let mut child = Some(child);
        loop {
            if status.is_some() && child.take().is_some() {
                lock(&self.inner.own).remove(&proc.pid);
            }
            let lu = linger_until;
            let linger_sleep = async move {
                match lu {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    if status.is_none()
                        && let Some(c) = child.as_mut()
                    {
                        // The shell is unreaped, so its pgid cannot have been reused: the
                        // whole tree goes, not only the shell (the walk reads /proc).
                        let p = proc.clone();
                        self.off_runtime("killing a process tree", move |inner| {
                            let _ = inner.contain.signal_tree(p.leaf.as_deref(), p.pid, &p.id, GroupSignal::Kill);
                        })
                        .await;
                        status = tokio::time::timeout(Duration::from_secs(1), c.wait()).await.ok().and_then(Result::ok);
                    }
                    eof = true;
                }
                r = rx.readable(), if !eof => {
                    match r.and_then(|()| drain(&rx, &proc)) {
                        Ok(Drained { eof: done, filled }) => {
                            eof = done;
                            if filled && !grown {
                                grown = true;
                                let _ = nix::fcntl::fcntl(&rx, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
                            }
                            // The pipe closes as the shell exits: it is usually reapable
                            // already, which saves a wakeup on the pidfd.
                            if eof
                                && status.is_none()
                                && let Some(Ok(Some(st))) = child.as_mut().map(spawn::Child::try_wait)
                            {
                                status = Some(st);
                                linger_until = Some(tokio::time::Instant::now() + linger);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(process_id = %proc.id, error = %e, "reading process output failed");
                            eof = true;
                        }
                    }
                }
                st = async { match child.as_mut() { Some(c) => c.wait().await, None => std::future::pending().await } }, if status.is_none() => {
                    match st {
                        Ok(st) => status = Some(st),
                        Err(e) => {
                            tracing::warn!(process_id = %proc.id, error = %e, "process wait returned an error");
                            status = Some(std::process::ExitStatus::from_raw(0xff00));
                        }
                    }
                    linger_until = Some(tokio::time::Instant::now() + linger);
                }
                _ = linger_sleep, if !reported => {
                    linger_until = None;
                }
            }
            if !reported
                && let Some(st) = status
                && (eof || linger_until.is_none())
            {
                // Everything the shell wrote is in the pipe: take it before the exit shows.
                if !eof && let Ok(Drained { eof: true, .. }) = drain(&rx, &proc) {
                    eof = true;
                }
                let exit = Exit {
                    code: st.code().unwrap_or(-1),
                    signal: st.signal(),
                    at: SystemTime::now(),
                };
                if eof {
                    proc.set_closed();
                }
                proc.set_exit(exit);
                reported = true;
                self.inner.running.fetch_sub(1, Ordering::SeqCst);
                // Let the waiters that set_exit woke answer first; the log line and the exit
                // callback are nobody's critical path.
                tokio::task::yield_now().await;
                let lingering = !eof;
                tracing::info!(
                    process_id = %proc.id,
                    pid = proc.pid,
                    exit_code = exit.code,
                    exit_signal = exit.signal_name().unwrap_or_default(),
                    duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    output_bytes = proc.status().written,
                    descendants_hold_output = lingering,
                    "process exited"
                );
                if let Some(f) = on_exit.take() {
                    f(&proc, &exit);
                }
                let gone = self
                    .inner
                    .registry
                    .evict_exited(self.inner.config.max_exited);
                self.remember_strays(gone);
            }
            if reported && eof {
                break;
            }
        }
        if !proc.status().closed {
            proc.set_closed();
        }
        if child.take().is_some() {
            lock(&self.inner.own).remove(&proc.pid);
        }
        // Descendants that closed or never had the pipe still count until they are gone. A
        // look reads /proc or cgroupfs, so it runs on the blocking pool; it is awaited without
        // a bound of its own: a look that hangs keeps the slot (the tree is not known to be
        // gone) and blocks nobody else, and the shutdown abandons this task after its bound.
        let mut every = Duration::from_millis(10);
        loop {
            let p = proc.clone();
            let ended = match self
                .inner
                .tasks
                .spawn_blocking(move || p.tree_ended())
                .await
            {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::error!(process_id = %proc.id, error = %e, "looking at the process tree failed");
                    true
                }
            };
            // Once cancelled, that was the last look.
            if ended || cancel.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(every) => {}
            }
            every = (every * 2).min(Duration::from_secs(1));
        }
        // The tree is gone (or the supervisor is stopping): the process no longer counts.
        drop(slot);
        self.inner.registry.finished(&proc.id);
    }
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What one [`drain`] found.
struct Drained {
    /// End of file: every writer is gone.
    eof: bool,
    /// A read took a whole default-sized pipe (it was full: the writer waits on us).
    filled: bool,
}

/// The kernel's default pipe capacity.
const DEFAULT_PIPE: usize = 64 * 1024;

/// Reads what the pipe holds into the process's buffer.
fn drain(rx: &pipe::Receiver, proc: &Process) -> io::Result<Drained> {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(PIPE_SIZE as usize, 0);
        }
        let mut filled = false;
        for _ in 0..READS_PER_WAKEUP {
            match rx.try_read(buf) {
                Ok(0) => return Ok(Drained { eof: true, filled }),
                Ok(n) => {
                    filled |= n >= DEFAULT_PIPE;
                    proc.write(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Drained { eof: false, filled });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Drained { eof: false, filled })
    })
}

fn truncate_for_log(s: &str) -> &str {
    let mut end = s.len().min(256);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
