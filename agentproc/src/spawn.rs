//! Starting a child without copying the daemon: `clone(CLONE_VM | CLONE_VFORK)`, the way
//! `posix_spawn` starts one, plus what `posix_spawn` cannot do — setting the child's OOM
//! score and niceness before `execve`, so that every descendant inherits them. A `fork`
//! copies the daemon's page tables and then takes copy-on-write faults until `exec`; on a
//! daemon with a multi-threaded runtime that was most of the cost of starting a process.
//!
//! The child runs on a stack lent by the parent (one mapping per thread, with a guard page
//! below it), in the parent's memory, until `execve`, and the calling thread is suspended
//! meanwhile (`CLONE_VFORK`). So the child's code allocates nothing, takes no locks, runs
//! none of the daemon's signal handlers and only makes raw syscalls (`syscall(2)`, never a
//! cancellable libc wrapper) on data prepared here; it execs with an empty signal mask, as
//! std's spawn does, and reports what failed by writing into a struct the parent reads once
//! `clone` returns (no pipe round trip as in `std`).
//!
//! A start with a cgroup ([`Spec::cgroup`]) uses `clone3` with `CLONE_INTO_CGROUP` (x86-64,
//! Linux ≥ 5.7): the child is born in that cgroup, which costs nothing like the RCU grace
//! period of moving it there afterwards.
//!
//! The program's `PATH` candidates and the base environment are prepared once
//! ([`Launcher`]); a start builds only the variables its request adds. A start may also move
//! the child off the CPU the daemon thread runs on before it execs ([`Spec::spread`]): the
//! thread goes on answering the request, and a fresh child parked behind it on one CPU waits
//! for it while another CPU idles. The child's CPU mask is put back before `execve`, so no
//! descendant inherits a narrowed one.
//!
//! Exits are awaited on a pidfd (`CLONE_PIDFD`, Linux ≥ 5.2); where the kernel gives none,
//! a blocking `waitpid` on tokio's blocking pool takes its place (documented degraded
//! mode). This module must not know about output buffers, HTTP or the environment of the
//! daemon: the caller hands it everything.
#![expect(unsafe_code)]

use std::ffi::{CString, OsStr, c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::ptr;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::launch::{Launcher, cstring, environment, pointers};
use crate::priority::Priority;

/// Bytes of stack lent to the child until `execve`. Its own frames need a few hundred bytes;
/// the rest is headroom for libc's syscall wrappers.
const CHILD_STACK: usize = 32 * 1024;

/// What to start.
pub(crate) struct Spec<'a> {
    /// The program and the base environment.
    pub launcher: &'a Launcher,
    /// `argv`, including `argv[0]`.
    pub args: &'a [&'a OsStr],
    /// Variables laid over the base environment, in order; a later entry for a name wins.
    pub env: &'a [(&'a OsStr, &'a OsStr)],
    /// The working directory (`None`: the daemon's).
    pub cwd: Option<&'a OsStr>,
    /// Descriptors for the child's fds 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// OOM score and niceness to apply before `execve`.
    pub priority: Priority,
    /// Move the child off the calling thread's CPU before it execs (when the daemon may run
    /// on another one).
    pub spread: bool,
    /// A cgroup v2 directory to start the child in (`clone3` with `CLONE_INTO_CGROUP`).
    pub cgroup: Option<RawFd>,
}

/// Why a start failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// Changing to the working directory failed.
    #[error("chdir: {0}")]
    Chdir(io::Error),
    /// The program was not found, or could not be executed.
    #[error("{0}")]
    Exec(io::Error),
    /// Creating the process's cgroup leaf failed (before anything was spawned).
    #[error("creating the process's cgroup: {0}")]
    Cgroup(io::Error),
    /// Anything else (clone, process group, descriptors, bad input).
    #[error("{0}")]
    Other(io::Error),
}

/// A started child: its pid and a way to wait for it.
pub(crate) struct Spawned {
    pub child: Child,
    /// Setting the OOM score or niceness failed (the child runs anyway).
    pub priority_problems: Vec<String>,
}

/// Steps of the child that can fail, reported to the parent.
const STEP_NONE: c_int = 0;
const STEP_PGID: c_int = 1;
const STEP_DUP: c_int = 2;
const STEP_CHDIR: c_int = 3;
const STEP_EXEC: c_int = 4;
const STEP_AFFINITY: c_int = 5;

/// Shared between parent and child (the child writes the results).
#[repr(C)]
struct Shared {
    /// Null-terminated list of candidate paths for the program.
    candidates: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    stdio: [c_int; 3],
    oom: *const u8,
    oom_len: usize,
    set_nice: c_int,
    nice: c_int,
    mask: libc::sigset_t,
    failed_step: c_int,
    errno: c_int,
    oom_errno: c_int,
    nice_errno: c_int,
    /// 1: start on a CPU of `away` (the calling thread's mask without its CPU), then put
    /// `affinity` (that mask) back.
    spread: c_int,
    away: libc::cpu_set_t,
    affinity: libc::cpu_set_t,
    /// 1: exit(0) at once (the cgroup probe).
    probe: c_int,
}

impl Shared {
    /// A child that exits at once.
    fn probe() -> Self {
        // SAFETY: every field is plain data or a pointer; all-zero is valid for each.
        let mut s: Self = unsafe { MaybeUninit::zeroed().assume_init() };
        s.probe = 1;
        s
    }
}

/// Starts the child. Must run inside a tokio runtime (the pidfd is registered with it).
pub(crate) fn spawn(spec: &Spec<'_>) -> Result<Spawned, SpawnError> {
    spawn_with(spec, true)
}

/// [`spawn`], optionally without asking for a pidfd (tests of the degraded mode).
pub(crate) fn spawn_with(spec: &Spec<'_>, want_pidfd: bool) -> Result<Spawned, SpawnError> {
    let launcher = spec.launcher;
    let (_extra_env, envp, own_candidates) = environment(launcher, spec.env)?;
    let candidates = own_candidates.as_ref().unwrap_or(&launcher.candidates);
    if candidates.is_empty() {
        return Err(SpawnError::Exec(io::Error::from_raw_os_error(libc::ENOENT)));
    }
    let args: Vec<CString> = spec
        .args
        .iter()
        .map(|a| cstring(a.as_bytes(), "the command"))
        .collect::<Result<_, _>>()?;
    let cwd = spec
        .cwd
        .map(|c| cstring(c.as_bytes(), "the working directory"))
        .transpose()?;
    let candidate_ptrs = pointers(candidates);
    let argv = pointers(&args);
    let oom = spec
        .priority
        .oom_score_adj
        .map(|v| format!("{v}\n").into_bytes());
    // Sources of the child's 0..=2 must not be 0..=2 themselves unless already in place,
    // or an earlier dup2 would overwrite a later source.
    let mut lifted: Vec<OwnedFd> = Vec::new();
    let mut stdio = spec.stdio;
    for (target, fd) in stdio.iter_mut().enumerate() {
        if *fd < 3 && *fd != target as RawFd {
            // SAFETY: fcntl on a descriptor the caller owns; the result is a new owned fd.
            let high = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
            if high < 0 {
                return Err(SpawnError::Other(io::Error::last_os_error()));
            }
            // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
            lifted.push(unsafe { OwnedFd::from_raw_fd(high) });
            *fd = high;
        }
    }
    let mut shared = Shared {
        candidates: candidate_ptrs.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        stdio,
        oom: oom.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
        oom_len: oom.as_ref().map_or(0, Vec::len),
        set_nice: c_int::from(spec.priority.nice.is_some()),
        nice: spec.priority.nice.unwrap_or(0),
        // SAFETY: sigset_t is plain data; it is filled by pthread_sigmask below.
        mask: unsafe { MaybeUninit::zeroed().assume_init() },
        failed_step: STEP_NONE,
        errno: 0,
        oom_errno: 0,
        nice_errno: 0,
        spread: 0,
        // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
        away: unsafe { MaybeUninit::zeroed().assume_init() },
        // SAFETY: as above.
        affinity: unsafe { MaybeUninit::zeroed().assume_init() },
        probe: 0,
    };
    let here = if spec.spread {
        away_from_this_cpu(&mut shared.affinity, &mut shared.away)
    } else {
        None
    };
    shared.spread = c_int::from(here.is_some());
    // The child runs on this thread's spawn stack (mapped once, with a guard page below it):
    // this thread is suspended while the child uses it, so one per thread is enough.
    let top = CHILD_STACKS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(ChildStack::new().map_err(SpawnError::Other)?);
        }
        Ok::<_, SpawnError>(slot.as_ref().map_or(ptr::null_mut(), ChildStack::top))
    })?;
    let mut pidfd: c_int = -1;
    let mut thread_mask_problem = None;
    // SAFETY: all signals are blocked around clone so that none of the daemon's handlers
    // runs in the child (which shares its memory) before it resets them; the child only
    // touches `shared`, the strings it points to and its own stack, all of which live until
    // clone returns — and with CLONE_VFORK clone returns only once the child has called
    // execve or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut shared.mask);
        // While the child moves away, this thread stays where it is: woken when the child
        // execs, it would otherwise be placed on the child's CPU (the one that is busy; an
        // idle vCPU looks unavailable to the scheduler) and push the child off it.
        let n = size_of::<libc::cpu_set_t>();
        let pinned = here.is_some_and(|h| libc::sched_setaffinity(0, n, &h) == 0);
        let pid = match spec.cgroup {
            Some(dir) => clone_into_cgroup(dir, want_pidfd, &raw mut shared, &raw mut pidfd, top),
            None => {
                let pid = libc::clone(
                    child_main,
                    top,
                    libc::CLONE_VM
                        | libc::CLONE_VFORK
                        | libc::SIGCHLD
                        | if want_pidfd { libc::CLONE_PIDFD } else { 0 },
                    (&raw mut shared).cast::<c_void>(),
                    &raw mut pidfd,
                );
                if pid < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(pid)
                }
            }
        };
        // This thread's own mask comes back whatever happened; should the kernel refuse it
        // (its cpuset changed meanwhile), every CPU it allows will do.
        if pinned && !restore_affinity(&shared.affinity) {
            thread_mask_problem = Some(io::Error::last_os_error());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &shared.mask, ptr::null_mut());
        pid.map_err(SpawnError::Other)?
    };
    drop(lifted);
    // SAFETY: the child has exec'd or exited; nothing writes `shared` any more. Volatile
    // reads, because the compiler cannot see the child's writes.
    let (step, errno, oom_errno, nice_errno) = unsafe {
        (
            ptr::read_volatile(&raw const shared.failed_step),
            ptr::read_volatile(&raw const shared.errno),
            ptr::read_volatile(&raw const shared.oom_errno),
            ptr::read_volatile(&raw const shared.nice_errno),
        )
    };
    let pidfd = (pidfd >= 0).then(|| {
        // SAFETY: the kernel wrote a new descriptor that nobody else owns.
        unsafe { OwnedFd::from_raw_fd(pidfd) }
    });
    if step != STEP_NONE {
        // The child exited with 127 without running anything: reap it now.
        let _ = wait_blocking(pid);
        let err = io::Error::from_raw_os_error(errno);
        return Err(match step {
            STEP_CHDIR => SpawnError::Chdir(err),
            STEP_EXEC => SpawnError::Exec(err),
            STEP_AFFINITY => SpawnError::Other(io::Error::new(
                err.kind(),
                format!("restoring the CPU affinity: {err}"),
            )),
            _ => SpawnError::Other(err),
        });
    }
    let mut priority_problems = Vec::new();
    if let Some(e) = thread_mask_problem {
        priority_problems.push(format!(
            "restoring the spawning thread's CPU mask: {e} (it stays on one CPU)"
        ));
    }
    if let Some(v) = spec.priority.oom_score_adj
        && oom_errno != 0
    {
        priority_problems.push(format!(
            "setting oom_score_adj to {v}: {}",
            io::Error::from_raw_os_error(oom_errno)
        ));
    }
    if let Some(v) = spec.priority.nice
        && nice_errno != 0
    {
        priority_problems.push(format!(
            "setting niceness to {v}: {}",
            io::Error::from_raw_os_error(nice_errno)
        ));
    }
    Ok(Spawned {
        child: Child::new(pid, pidfd),
        priority_problems,
    })
}

/// Fills `affinity` with the calling thread's CPU mask and `away` with that mask minus the
/// CPU it runs on now, which it returns as a one-CPU set. `None` when there is no other CPU
/// to go to (or the kernel will not say), and nothing should move.
fn away_from_this_cpu(
    affinity: &mut libc::cpu_set_t,
    away: &mut libc::cpu_set_t,
) -> Option<libc::cpu_set_t> {
    // SAFETY: plain libc calls on sets owned by the caller or built here.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu()).ok()?;
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), affinity) != 0
            || libc::CPU_COUNT(affinity) < 2
            || cpu >= libc::CPU_SETSIZE as usize
            || !libc::CPU_ISSET(cpu, affinity)
        {
            return None;
        }
        *away = *affinity;
        libc::CPU_CLR(cpu, away);
        let mut here: libc::cpu_set_t = MaybeUninit::zeroed().assume_init();
        libc::CPU_SET(cpu, &mut here);
        Some(here)
    }
}

/// Puts `mask` back on the calling thread, or, if the kernel refuses it, every CPU it
/// allows. Whether either worked.
///
/// # Safety
/// Plain syscalls on the calling thread; async-signal-safe (also used in the child).
unsafe fn restore_affinity(mask: *const libc::cpu_set_t) -> bool {
    let n = size_of::<libc::cpu_set_t>();
    // SAFETY: see the function's contract.
    unsafe {
        if sys(libc::SYS_sched_setaffinity, 0, n, mask as usize, 0).is_ok() {
            return true;
        }
        let mut all: libc::cpu_set_t = MaybeUninit::zeroed().assume_init();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut all);
        }
        sys(
            libc::SYS_sched_setaffinity,
            0,
            n,
            (&raw const all) as usize,
            0,
        )
        .is_ok()
    }
}

/// A raw system call (`syscall(2)`, never one of libc's cancellable wrappers): the result,
/// or the errno.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
unsafe fn sys(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> Result<usize, c_int> {
    // SAFETY: see the function's contract; the unused argument registers are zero.
    let r = unsafe { libc::syscall(nr, a, b, c, d, 0usize, 0usize) };
    if r < 0 { Err(errno()) } else { Ok(r as usize) }
}

/// Bytes of the guard below each spawn stack (at least one page).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

/// One thread's stack for the children it starts: mapped once, with an inaccessible guard
/// page below it, so a child that overran it would fault instead of writing over the
/// daemon's memory.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

impl ChildStack {
    fn new() -> io::Result<Self> {
        let guard = page_size();
        let len = guard + CHILD_STACK.next_multiple_of(guard);
        // SAFETY: a fresh anonymous mapping; the guard page is made inaccessible before use.
        unsafe {
            let base = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::mprotect(base, guard, libc::PROT_NONE) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(e);
            }
            Ok(Self { base, len })
        }
    }

    /// The 16-byte aligned top (stacks grow down).
    fn top(&self) -> *mut c_void {
        let end = self.base as usize + self.len;
        (end & !15) as *mut c_void
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by no child any more (a thread's children
        // run only while the thread is inside `spawn`).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

thread_local! {
    static CHILD_STACKS: std::cell::RefCell<Option<ChildStack>> =
        const { std::cell::RefCell::new(None) };
}

/// `struct clone_args` (Linux ≥ 5.7, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`: like the `clone` above, with the
/// child born in cgroup `dir` (no migration afterwards, which would cost an RCU grace
/// period). The child runs `child_main(shared)` on the stack below `top`.
///
/// # Safety
/// As for `clone` in [`spawn_with`]: signals blocked, `shared` and everything it points to
/// alive until this returns.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_into_cgroup(
    dir: RawFd,
    want_pidfd: bool,
    shared: *mut Shared,
    pidfd: *mut c_int,
    top: *mut c_void,
) -> io::Result<libc::pid_t> {
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64
            | CLONE_INTO_CGROUP
            | if want_pidfd {
                libc::CLONE_PIDFD as u64
            } else {
                0
            },
        pidfd: pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        // The kernel sets the child's stack pointer to `stack + stack_size`.
        stack: top as u64 - 16,
        stack_size: 16,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let f: extern "C" fn(*mut c_void) -> c_int = child_main;
    let ret: isize;
    // SAFETY: the child starts on its own stack with rax = 0, calls `child_main` (which
    // never returns: it execs or exits) and would exit should it return; the parent only
    // gets rax back (rcx and r11 are clobbered by `syscall`).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, 127",
            "mov eax, 231",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") &raw mut args,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") shared,
            in("r13") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret as libc::pid_t)
}

/// Without a `clone3` entry written for this architecture there is no cgroup mode.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_into_cgroup(
    _dir: RawFd,
    _want_pidfd: bool,
    _shared: *mut Shared,
    _pidfd: *mut c_int,
    _top: *mut c_void,
) -> io::Result<libc::pid_t> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Starts a child that exits at once in cgroup `dir`, and reaps it: whether this kernel
/// and architecture can start processes in a cgroup.
pub(crate) fn probe_clone_into_cgroup(dir: RawFd) -> io::Result<()> {
    let stack = ChildStack::new()?;
    let mut shared = Shared::probe();
    let mut pidfd: c_int = -1;
    // SAFETY: as in spawn_with; `probe` makes the child exit before anything else.
    let pid = unsafe {
        let mut all: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut shared.mask);
        let pid = clone_into_cgroup(dir, false, &raw mut shared, &raw mut pidfd, stack.top());
        libc::pthread_sigmask(libc::SIG_SETMASK, &shared.mask, ptr::null_mut());
        pid?
    };
    let st = wait_blocking(pid)?;
    if st.code() != Some(0) {
        return Err(io::Error::other(format!("probe child ended with {st}")));
    }
    Ok(())
}

/// The child, until `execve`. Only raw system calls (no libc wrapper that could be a
/// cancellation point or take a lock) on data prepared by the parent; no allocation, no
/// locks, no unwinding.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    let s = arg.cast::<Shared>();
    // SAFETY: `arg` is the parent's `Shared`, alive and not touched by the parent until the
    // child execs or exits (CLONE_VFORK); every pointer in it is valid for that time.
    unsafe {
        if (*s).probe != 0 {
            let _ = sys(libc::SYS_exit_group, 0, 0, 0, 0);
        }
        if (*s).spread != 0 {
            // Moving off the CPU the parent will wake up on: the kernel migrates us before
            // the call returns. The mask is put back in every case, at once, so that nothing
            // after `execve` inherits a narrowed one; should the saved mask be refused (the
            // cpuset changed meanwhile), every CPU the kernel allows will do, and failing
            // that the start fails rather than run a child pinned by us.
            let n = size_of::<libc::cpu_set_t>();
            let _ = sys(
                libc::SYS_sched_setaffinity,
                0,
                n,
                (&raw const (*s).away) as usize,
                0,
            );
            if !restore_affinity(&raw const (*s).affinity) {
                fail(s, STEP_AFFINITY);
            }
        }
        // The daemon's handlers must never run here: they would act on the daemon's memory.
        // SIGPIPE goes back to its default too (the Rust runtime ignores it), as std does.
        reset_signal_handlers();
        if sys(libc::SYS_setpgid, 0, 0, 0, 0).is_err() {
            fail(s, STEP_PGID);
        }
        let stdio = (*s).stdio;
        for (target, fd) in (0..).zip(stdio) {
            let ok = if fd == target {
                sys(libc::SYS_fcntl, fd as usize, libc::F_SETFD as usize, 0, 0).is_ok()
            } else {
                sys(libc::SYS_dup3, fd as usize, target as usize, 0, 0) == Ok(target as usize)
            };
            if !ok {
                fail(s, STEP_DUP);
            }
        }
        let cwd = (*s).cwd;
        if !cwd.is_null() && sys(libc::SYS_chdir, cwd as usize, 0, 0, 0).is_err() {
            fail(s, STEP_CHDIR);
        }
        let oom = (*s).oom;
        if !oom.is_null() {
            let path = c"/proc/self/oom_score_adj";
            match sys(
                libc::SYS_openat,
                libc::AT_FDCWD as usize,
                path.as_ptr() as usize,
                (libc::O_WRONLY | libc::O_CLOEXEC) as usize,
                0,
            ) {
                Ok(fd) => {
                    let len = (*s).oom_len;
                    match sys(libc::SYS_write, fd, oom as usize, len, 0) {
                        Ok(n) if n == len => {}
                        Ok(_) => ptr::write_volatile(&raw mut (*s).oom_errno, libc::EIO),
                        Err(e) => ptr::write_volatile(&raw mut (*s).oom_errno, e),
                    }
                    let _ = sys(libc::SYS_close, fd, 0, 0, 0);
                }
                Err(e) => ptr::write_volatile(&raw mut (*s).oom_errno, e),
            }
        }
        if (*s).set_nice != 0
            && let Err(e) = sys(
                libc::SYS_setpriority,
                libc::PRIO_PROCESS as usize,
                0,
                (*s).nice as isize as usize,
                0,
            )
        {
            ptr::write_volatile(&raw mut (*s).nice_errno, e);
        }
        // The program starts with no signal blocked, as with std's spawn (the daemon's
        // threads block some; none of that is the program's business).
        let empty: u64 = 0;
        let _ = sys(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            (&raw const empty) as usize,
            0,
            8,
        );
        // execvp's search: the first candidate that execs wins; EACCES is remembered and
        // reported if nothing else is found.
        let mut seen_eacces = false;
        let mut c = (*s).candidates;
        while !(*c).is_null() {
            let e = sys(
                libc::SYS_execve,
                *c as usize,
                (*s).argv as usize,
                (*s).envp as usize,
                0,
            )
            .err()
            .unwrap_or(0);
            match e {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => seen_eacces = true,
                e => fail_with(s, STEP_EXEC, e),
            }
            c = c.add(1);
        }
        fail_with(
            s,
            STEP_EXEC,
            if seen_eacces {
                libc::EACCES
            } else {
                libc::ENOENT
            },
        )
    }
}

/// The kernel's `struct sigaction` on the architectures whose layout is written here.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every caught signal back to its default, and SIGPIPE if ignored (raw `rt_sigaction`).
///
/// # Safety
/// Only in the child, with all signals blocked.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn reset_signal_handlers() {
    for sig in 1..=64usize {
        if sig == libc::SIGKILL as usize || sig == libc::SIGSTOP as usize {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a query into a local struct of the kernel's layout.
        if unsafe { sys(libc::SYS_rt_sigaction, sig, 0, (&raw mut old) as usize, 8) }.is_err() {
            continue;
        }
        let caught = old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN;
        if caught || (sig == libc::SIGPIPE as usize && old.handler == libc::SIG_IGN) {
            let new = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: setting the default disposition from a local struct.
            let _ = unsafe { sys(libc::SYS_rt_sigaction, sig, (&raw const new) as usize, 0, 8) };
        }
    }
}

/// Elsewhere libc's `sigaction` (not a cancellation point) does the same.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn reset_signal_handlers() {
    // SAFETY: see the function's contract.
    unsafe {
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = MaybeUninit::zeroed().assume_init();
            if libc::sigaction(sig, ptr::null(), &mut old) != 0 {
                continue;
            }
            let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if caught || (sig == libc::SIGPIPE && old.sa_sigaction == libc::SIG_IGN) {
                let mut new: libc::sigaction = MaybeUninit::zeroed().assume_init();
                new.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &new, ptr::null_mut());
            }
        }
    }
}

/// Records the failing step and errno, and exits the child.
///
/// # Safety
/// Only from [`child_main`], with its `Shared`.
unsafe fn fail(s: *mut Shared, step: c_int) -> ! {
    // SAFETY: see child_main.
    unsafe { fail_with(s, step, errno()) }
}

/// [`fail`] with an explicit errno.
///
/// # Safety
/// Only from [`child_main`], with its `Shared`.
unsafe fn fail_with(s: *mut Shared, step: c_int, e: c_int) -> ! {
    // SAFETY: see child_main.
    unsafe {
        ptr::write_volatile(&raw mut (*s).errno, e);
        ptr::write_volatile(&raw mut (*s).failed_step, step);
        loop {
            let _ = sys(libc::SYS_exit_group, 127, 0, 0, 0);
        }
    }
}

fn errno() -> c_int {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// How a started child is awaited.
enum Waiter {
    /// Readable once the child has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// No pidfd (old kernel, or it could not be registered): a blocking `waitpid` on
    /// tokio's blocking pool; `None` once it has answered.
    Blocking(Option<tokio::task::JoinHandle<io::Result<ExitStatus>>>),
}

/// A child started by [`spawn`]. Reaped by [`Child::wait`]; a child dropped unreaped is
/// reaped if it already exited (a zombie is otherwise left for init).
pub(crate) struct Child {
    pid: libc::pid_t,
    waiter: Waiter,
    status: Option<ExitStatus>,
}

impl Child {
    /// Registers the pidfd with the runtime, or starts the blocking waiter without one.
    fn new(pid: libc::pid_t, pidfd: Option<OwnedFd>) -> Self {
        let registered = pidfd.and_then(|fd| {
            // SAFETY: an OwnedFd keeps its descriptor open and unchanged while owned.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
        });
        let waiter = match registered {
            Some(fd) => Waiter::Pidfd(fd),
            None => Waiter::Blocking(Some(tokio::task::spawn_blocking(move || {
                wait_blocking(pid)
            }))),
        };
        Self {
            pid,
            waiter,
            status: None,
        }
    }

    /// The child's pid.
    pub(crate) fn id(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(0)
    }

    /// Waits for the child's exit and reaps it. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let pid = self.pid;
        match &mut self.waiter {
            Waiter::Pidfd(fd) => loop {
                let mut guard = fd.readable().await?;
                if let Some(st) = reap_once(pid, &mut self.status)? {
                    return Ok(st);
                }
                guard.clear_ready();
            },
            Waiter::Blocking(handle) => {
                let Some(h) = handle.as_mut() else {
                    return Err(io::Error::other("child already awaited"));
                };
                let res = h.await;
                *handle = None;
                let st = res.map_err(io::Error::other)??;
                self.status = Some(st);
                Ok(st)
            }
        }
    }

    /// The exit status if the child has exited, without waiting (reaps it). `None` while it
    /// runs, and always in the blocking-`waitpid` mode (its thread does the reaping).
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if matches!(self.waiter, Waiter::Blocking(_)) {
            return Ok(self.status);
        }
        reap_once(self.pid, &mut self.status)
    }
}

/// A blocking `waitpid` on `pid` (our unreaped child).
fn wait_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut raw: c_int = 0;
    loop {
        // SAFETY: waitpid on our own unreaped child.
        let r = unsafe { libc::waitpid(pid, &mut raw, 0) };
        if r == pid {
            return Ok(ExitStatus::from_raw(raw));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `waitpid` without blocking: the status once `pid` (our unreaped child) exited.
fn reap_once(pid: libc::pid_t, status: &mut Option<ExitStatus>) -> io::Result<Option<ExitStatus>> {
    if let Some(st) = *status {
        return Ok(Some(st));
    }
    let mut raw: c_int = 0;
    // SAFETY: waitpid on our own unreaped child.
    let r = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
    match r {
        0 => Ok(None),
        r if r == pid => {
            let st = ExitStatus::from_raw(raw);
            *status = Some(st);
            Ok(Some(st))
        }
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            Err(e)
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.waiter, Waiter::Pidfd(_)) {
            let _ = reap_once(self.pid, &mut self.status);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    /// The C strings behind a null-terminated pointer array.
    fn strings(ptrs: &[*const c_char]) -> Vec<&CStr> {
        assert!(ptrs.last().is_some_and(|p| p.is_null()));
        ptrs[..ptrs.len() - 1]
            .iter()
            // SAFETY: non-null pointers into live CStrings (the test keeps them).
            .map(|&p| unsafe { CStr::from_ptr(p) })
            .collect()
    }

    #[test]
    fn environment_later_wins_and_skips_bad_names() {
        let base = [
            (OsStr::new("A"), OsStr::new("1")),
            (OsStr::new("PATH"), OsStr::new("/x")),
            (OsStr::new("A"), OsStr::new("2")),
            (OsStr::new(""), OsStr::new("empty")),
            (OsStr::new("B=C"), OsStr::new("eq")),
            (OsStr::new("N"), OsStr::new("a\0b")),
        ];
        let l = Launcher::new("sh", &base);
        let env: Vec<&CStr> = l.env.iter().map(CString::as_c_str).collect();
        assert_eq!(env, [c"A=2", c"PATH=/x"]);
        assert_eq!(l.candidates, [c"/x/sh".to_owned()]);
        // Nothing laid over: the launcher's own strings and candidates.
        let (owned, ptrs, cands) = environment(&l, &[]).unwrap();
        assert!(owned.is_empty() && cands.is_none());
        assert_eq!(strings(&ptrs), [c"A=2", c"PATH=/x"]);
        // Overrides take the base entry's place, new names come last, PATH is searched anew.
        let extra = [
            (OsStr::new("A"), OsStr::new("3")),
            (OsStr::new("Z"), OsStr::new("9")),
            (OsStr::new("A"), OsStr::new("4")),
            (OsStr::new("PATH"), OsStr::new("/y")),
        ];
        let (_owned, ptrs, cands) = environment(&l, &extra).unwrap();
        assert_eq!(strings(&ptrs), [c"A=4", c"PATH=/y", c"Z=9"]);
        assert_eq!(cands, Some(vec![c"/y/sh".to_owned()]));
        // The base is untouched.
        assert_eq!(
            strings(&environment(&l, &[]).unwrap().1),
            [c"A=2", c"PATH=/x"]
        );
        assert!(environment(&l, &[(OsStr::new("X"), OsStr::new("a\0b"))]).is_err());
    }

    /// Runs `sh -c script` through [`spawn_with`]; returns its output and exit status.
    async fn run(
        script: &str,
        cwd: Option<&str>,
        priority: Priority,
        want_pidfd: bool,
        spread: bool,
    ) -> Result<(String, ExitStatus), SpawnError> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (mut r, w) = io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let launcher = Launcher::new(
            "sh",
            &[
                (OsStr::new("PATH"), OsStr::new("/nonexistent:/usr/bin:/bin")),
                (OsStr::new("X"), OsStr::new("one")),
            ],
        );
        let spec = Spec {
            launcher: &launcher,
            args: &[OsStr::new("sh"), OsStr::new("-c"), OsStr::new(script)],
            env: &[(OsStr::new("X"), OsStr::new("two"))],
            cwd: cwd.map(OsStr::new),
            stdio: [null.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()],
            priority,
            spread,
            cgroup: None,
        };
        let spawned = spawn_with(&spec, want_pidfd);
        drop(w);
        let mut child = spawned?.child;
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let st = child.wait().await.unwrap();
        Ok((out, st))
    }

    #[tokio::test]
    async fn runs_with_env_cwd_and_status_in_both_wait_modes() {
        for (pidfd, spread) in [(true, false), (false, false), (true, true)] {
            let (out, st) = run(
                "echo $X; pwd; exit 3",
                Some("/tmp"),
                Priority::default(),
                pidfd,
                spread,
            )
            .await
            .unwrap();
            assert_eq!(out, "two\n/tmp\n");
            assert_eq!(st.code(), Some(3), "pidfd={pidfd} spread={spread}");
        }
    }

    #[tokio::test]
    async fn spreading_leaves_descendants_the_daemons_cpu_mask() {
        let mask = || {
            std::fs::read_to_string("/proc/thread-self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_owned()
        };
        let script = "grep Cpus_allowed_list /proc/self/status | cut -f2";
        let ours = mask();
        let (out, st) = run(script, None, Priority::default(), true, true)
            .await
            .unwrap();
        assert!(st.success());
        assert_eq!(
            out.trim(),
            ours,
            "grep is a descendant: it must see our mask"
        );
        assert_eq!(mask(), ours, "the spawning thread gets its own mask back");
        // Pinned to one CPU there is nowhere to go: the child just starts, with that mask.
        // SAFETY: plain libc calls on sets owned here; this test's thread only.
        let saved = unsafe {
            let mut saved: libc::cpu_set_t = MaybeUninit::zeroed().assume_init();
            assert_eq!(
                libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut saved),
                0
            );
            let mut one: libc::cpu_set_t = MaybeUninit::zeroed().assume_init();
            libc::CPU_SET(usize::try_from(libc::sched_getcpu()).unwrap(), &mut one);
            assert_eq!(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one),
                0
            );
            saved
        };
        let pinned = mask();
        let res = run(script, None, Priority::default(), true, true).await;
        // SAFETY: as above.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &saved) };
        assert_eq!(res.unwrap().0.trim(), pinned);
    }

    #[tokio::test]
    async fn child_gets_priority_its_own_group_and_default_sigpipe() {
        let own = || std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        let own_nice = || {
            std::fs::read_to_string("/proc/thread-self/stat")
                .unwrap()
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(16).map(str::to_owned))
                .unwrap()
        };
        let (before, nice_before) = (own(), own_nice());
        let (out, st) = run(
            "cat /proc/self/oom_score_adj; ps -o ni= -p $$ | tr -d ' '; \
             ps -o pgid= -p $$ | tr -d ' '; echo $$; grep SigIgn /proc/self/status",
            None,
            Priority {
                oom_score_adj: Some(777),
                nice: Some(7),
            },
            true,
            true,
        )
        .await
        .unwrap();
        assert!(st.success(), "{out}");
        // The child shared our memory until exec, never our OOM score or niceness.
        assert_eq!((own(), own_nice()), (before, nice_before));
        let lines: Vec<&str> = out.lines().collect();
        // `cat` is a descendant: it inherited the score set before exec.
        assert_eq!(lines[0], "777");
        assert_eq!(lines[1], "7");
        assert_eq!(lines[2], lines[3], "the shell leads its own group");
        let ignored =
            u64::from_str_radix(lines[4].trim_start_matches("SigIgn:").trim(), 16).unwrap();
        assert_eq!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE must not stay ignored"
        );
    }

    #[tokio::test]
    async fn failures_are_told_apart() {
        let e = run(
            "true",
            Some("/nonexistent-dir"),
            Priority::default(),
            true,
            true,
        )
        .await;
        assert!(
            matches!(&e, Err(SpawnError::Chdir(e)) if e.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
        let launcher = Launcher::new(
            "no-such-program-here",
            &[(OsStr::new("PATH"), OsStr::new("/usr/bin:/bin"))],
        );
        let spec = Spec {
            launcher: &launcher,
            args: &[OsStr::new("x")],
            env: &[],
            cwd: None,
            stdio: [0, 1, 2],
            priority: Priority::default(),
            spread: false,
            cgroup: None,
        };
        let e = spawn(&spec).err();
        assert!(
            matches!(&e, Some(SpawnError::Exec(e)) if e.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
        let huge = "x".repeat(200 * 1024);
        let e = run(&huge, None, Priority::default(), true, false)
            .await
            .err();
        assert!(
            matches!(&e, Some(SpawnError::Exec(e)) if e.raw_os_error() == Some(libc::E2BIG)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn child_starts_with_an_empty_signal_mask() {
        // The spawning thread blocks a signal; the program must not inherit that.
        // SAFETY: changes this test thread's mask only, restored below.
        let old = unsafe {
            let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            let mut old: libc::sigset_t = MaybeUninit::zeroed().assume_init();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            old
        };
        let res = run(
            "grep SigBlk /proc/self/status",
            None,
            Priority::default(),
            true,
            true,
        )
        .await;
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
        let (out, st) = res.unwrap();
        assert!(st.success());
        assert_eq!(out.trim(), "SigBlk:\t0000000000000000");
    }

    #[test]
    fn the_child_stack_has_a_guard_page_below_it() {
        let stack = ChildStack::new().unwrap();
        let guard = page_size();
        let base = stack.base as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let perms = |addr: usize| {
            maps.lines()
                .find_map(|l| {
                    let (range, rest) = l.split_once(' ')?;
                    let (a, b) = range.split_once('-')?;
                    let (a, b) = (
                        usize::from_str_radix(a, 16).ok()?,
                        usize::from_str_radix(b, 16).ok()?,
                    );
                    (a <= addr && addr < b).then(|| rest[..4].to_owned())
                })
                .unwrap()
        };
        assert_eq!(perms(base), "---p", "the lowest page is the guard");
        assert_eq!(perms(base + guard), "rw-p");
        assert_eq!(stack.top() as usize % 16, 0);
        assert!(stack.top() as usize - (base + guard) >= CHILD_STACK);
    }
}
