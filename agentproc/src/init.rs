//! PID 1 duty: when agentd is a container's init (PID 1, or `--init`), the kernel reparents
//! every orphan of the namespace to it — also those of `docker exec` sessions it never
//! started — and a PID 1 without a handler ignores SIGTERM. [`become_init`] therefore forks
//! once, before the daemon starts any thread: the parent stays a minimal init that reaps
//! every child (`waitpid(-1)`: its only child of its own is the daemon) and forwards
//! termination signals to the daemon; the child returns and runs the daemon as usual. When
//! the daemon exits, init exits with its status (the kernel then kills whatever is left in
//! the namespace).
//!
//! This module must not run in a process that has threads, and the init loop must not
//! allocate, lock or log (it runs in a forked copy of the daemon's memory).

#![expect(unsafe_code)]

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

/// Signals the init forwards to the daemon.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Whether this process is PID 1 of its namespace.
pub fn is_pid1() -> bool {
    getpid().as_raw() == 1
}

/// Why the init could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot run as init: {what}: {source}")]
pub struct InitError {
    what: &'static str,
    source: nix::Error,
}

/// Forks the init. Returns in the child (the daemon, which goes on with its mask as before);
/// in the parent it never returns: it exits with the daemon's exit status (128 + signal when
/// the daemon was killed by one).
///
/// Must be called while the process has a single thread.
pub fn become_init() -> Result<(), InitError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    // Block first, so no signal is lost between the fork and the wait loop.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(|source| InitError {
        what: "sigprocmask",
        source,
    })?;
    // SAFETY: the caller guarantees a single-threaded process, so the child is a complete
    // copy with no lock held by a thread that does not exist in it; the parent only runs
    // `init_loop`, which makes async-signal-safe calls.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // The daemon gets the mask it had; its own handlers are installed later.
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Ok(())
        }
        Ok(ForkResult::Parent { child }) => init_loop(child, &set),
        Err(source) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Err(InitError {
                what: "fork",
                source,
            })
        }
    }
}

fn init_loop(daemon: Pid, set: &SigSet) -> ! {
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap_all(daemon),
            Ok(sig) => {
                let _ = kill(daemon, sig);
            }
            Err(_) => {}
        }
        // A SIGCHLD may coalesce with others; reaping on every wakeup costs nothing.
        reap_all(daemon);
    }
}

/// Reaps every exited child; exits when the daemon is among them.
fn reap_all(daemon: Pid) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == daemon => exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == daemon => exit(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers or destructors of
    // the forked copy of the daemon's memory, which this process never used.
    unsafe { libc::_exit(code) }
}
