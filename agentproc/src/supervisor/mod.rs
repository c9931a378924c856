//! The process supervisor: starts `sh -c` commands in their own process groups, captures
//! their combined output, records how they ended, signals their groups, forgets them some
//! minutes after exit, and stops them all on shutdown.
//!
//! One owned task per process reads its pipe and waits for its shell ([`task`]); nothing
//! else runs per process. When the shell exits but descendants it backgrounded still hold
//! the pipe, the shell's own status is reported after a short linger and capture goes on
//! until the pipe closes. The books are in [`registry`], the process record in [`process`],
//! the sweep and the shutdown in [`shutdown`]. This module must not know HTTP or JSON, and
//! never reads environment variables.

mod process;
mod registry;
mod shutdown;
mod task;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::unix::pipe;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::buffer::OutputBuffer;
use crate::contain::{ContainMode, ContainRequest, Containment};
use crate::group::GroupSignal;
use crate::priority::Priority;
use crate::spawn::{self, SpawnError};
use crate::sync::lock;

use process::State;
pub use process::{Exit, OutputView, Process, Status};
use registry::Registry;
pub(crate) use shutdown::Phase;
use shutdown::PhaseCell;

/// Chatd's non-interactive defaults, applied beneath a request's own `env`.
pub const NON_INTERACTIVE_ENV: &[(&str, &str)] = &[
    ("GIT_EDITOR", "true"),
    ("GIT_SEQUENCE_EDITOR", "true"),
    ("EDITOR", "true"),
    ("VISUAL", "true"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("NO_COLOR", "1"),
    ("TERM", "dumb"),
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
];

/// Supervisor settings, resolved by the caller.
#[derive(Debug, Clone)]
pub struct Config {
    /// The base environment of every child (the daemon's, scrubbed).
    pub base_env: Vec<(OsString, OsString)>,
    /// Variables laid over the base environment, beneath the request's (e.g.
    /// [`NON_INTERACTIVE_ENV`]; empty to turn them off).
    pub default_env: Vec<(String, String)>,
    /// The default working directory (used when it exists).
    pub default_workdir: PathBuf,
    /// The fallback working directory (`$HOME`).
    pub home: Option<PathBuf>,
    /// OOM score and niceness for children.
    pub priority: Priority,
    /// Running processes allowed at once.
    pub max_running: usize,
    /// How long an exited process stays readable.
    pub retention: Duration,
    /// How often exited processes are swept.
    pub sweep_interval: Duration,
    /// How long, after the shell exits, to wait for the pipe to close before reporting the
    /// exit anyway (descendants holding the pipe).
    pub linger: Duration,
    /// Start each child on another CPU than the daemon thread that spawns it (which goes on
    /// answering the request), when the daemon may use more than one.
    pub spread: bool,
    /// How process trees are contained (see [`ContainMode`](crate::ContainMode)).
    pub containment: ContainRequest,
    /// Exited processes kept readable at most (the oldest exits are forgotten first).
    pub max_exited: usize,
}

/// Default cap on processes running at once (Coder has none; 429 beyond it).
pub const DEFAULT_MAX_RUNNING: usize = 1024;
/// Default time an exited process stays readable (Coder's 5 minutes).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(300);
/// Default cap on exited processes kept readable.
pub const DEFAULT_MAX_EXITED: usize = 1024;
/// Default period of the sweep that forgets exited processes.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

impl Config {
    /// Defaults for everything except the environment and directories.
    pub fn new(base_env: Vec<(OsString, OsString)>, default_workdir: PathBuf) -> Self {
        Self {
            base_env,
            default_env: NON_INTERACTIVE_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            default_workdir,
            home: None,
            priority: Priority::default(),
            max_running: DEFAULT_MAX_RUNNING,
            retention: DEFAULT_RETENTION,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            linger: Duration::from_millis(200),
            spread: true,
            containment: ContainRequest::Auto,
            max_exited: DEFAULT_MAX_EXITED,
        }
    }
}

/// Called once when the process's exit is recorded.
pub type OnExit = Box<dyn FnOnce(&Process, &Exit) + Send>;

/// What to start.
pub struct StartRequest {
    /// The process id (unique; chosen by the caller).
    pub id: String,
    /// Run as `sh -c <command>`.
    pub command: String,
    /// Requested working directory; relative paths join the default directory.
    pub workdir: Option<PathBuf>,
    /// Variables laid over the base and default environments.
    pub env: Vec<(String, String)>,
    /// Stored and reported only.
    pub background: bool,
    /// The chat that started it; exported as `CODER_CHAT_ID` (last, so it wins).
    pub chat_id: Option<String>,
    /// The span the process's task runs in (carry `chat_id` here).
    pub span: tracing::Span,
    /// Called when the exit is recorded.
    pub on_exit: Option<OnExit>,
}

impl StartRequest {
    /// `command` under `id`, with everything else unset (the daemon's workdir, no extra
    /// env, no chat, no span, no exit callback).
    pub fn new(id: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            command: command.into(),
            workdir: None,
            env: Vec::new(),
            background: false,
            chat_id: None,
            span: tracing::Span::none(),
            on_exit: None,
        }
    }
}

/// Why a start failed. The words chatd sees are chosen by the caller (`agentd`), from the
/// variant and its source.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The supervisor is shutting down.
    #[error("the supervisor is shutting down")]
    Closed,
    /// Too many processes are running.
    #[error("{limit} processes are already running")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// The working directory cannot be used (missing, not a directory, not accessible).
    #[error("working directory {}", path.display())]
    Workdir {
        /// The resolved directory.
        path: PathBuf,
        /// What is wrong with it; its kind is `NotFound`, `NotADirectory`,
        /// `PermissionDenied`, ...
        #[source]
        source: io::Error,
    },
    /// The id is taken.
    #[error("process id {0} is already in use")]
    DuplicateId(String),
    /// `sh` could not be started.
    #[error("starting sh ({step})")]
    Spawn {
        /// Which step failed.
        step: SpawnStep,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The step of a start that failed ([`StartError::Spawn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnStep {
    /// `execve` of `sh` (not found, not executable, arguments too long).
    Exec,
    /// Creating the process's cgroup leaf.
    Cgroup,
    /// Anything else: the output pipe, `/dev/null`, `clone`, the process group, descriptors.
    Other,
}

impl std::fmt::Display for SpawnStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Exec => "exec",
            Self::Cgroup => "creating its cgroup",
            Self::Other => "setting up the child",
        })
    }
}

/// Why a signal was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The process and its group are gone.
    #[error("process is not running")]
    NotRunning,
    /// The OS refused.
    #[error("{0}")]
    Os(#[from] io::Error),
}

struct Inner {
    config: Config,
    /// `sh` with the base and default environments, prepared once.
    launcher: crate::launch::Launcher,
    /// Every child's stdin (opened once; `None` if that failed, then per start).
    dev_null: Option<std::fs::File>,
    /// The process tables.
    registry: Registry,
    /// Start order of the next process; also how many have started.
    seq: AtomicU64,
    /// Shells not yet reported exited (the `agentd_processes_running` gauge).
    running: AtomicUsize,
    /// One permit per process counted against the cap (`max_running` permits): a running
    /// shell, or an exited one whose tree lives. Taken by `start`; its process task holds
    /// it and drops it once the tree is gone (a failed start drops it on the way out).
    slots: Arc<Semaphore>,
    /// The permits `slots` was made with.
    cap: usize,
    contain: Arc<Containment>,
    /// Shells not reaped yet (never taken for adopted orphans).
    own: Mutex<HashSet<u32>>,
    /// Running, shutting down, stopped.
    phase: PhaseCell,
    tasks: TaskTracker,
    /// Last-resort stop of the per-process tasks (after the kill grace).
    cancel: CancellationToken,
}

/// The supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor; starts the periodic sweep when called inside a tokio runtime.
    pub fn new(config: Config) -> Self {
        let env: Vec<(&OsStr, &OsStr)> = config
            .base_env
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .chain(
                config
                    .default_env
                    .iter()
                    .map(|(k, v)| (OsStr::new(k), OsStr::new(v))),
            )
            .collect();
        let launcher = crate::launch::Launcher::new("sh", &env);
        // Reads /proc/self/{cgroup,mountinfo} and cleans stale cgroup dirs, synchronously:
        // this runs once at startup, before any request or task.
        let contain = Containment::new_or_subreaper(config.containment);
        if let Some(e) = contain.fallback.refused() {
            tracing::error!(error = %e, "cgroup containment was asked for; using subreaper mode");
        }
        match (
            contain.mode,
            contain.fallback.reason(),
            contain.cgroup_dir(),
        ) {
            (ContainMode::Cgroup, _, Some(dir)) => tracing::info!(
                containment = "cgroup",
                cgroup = %dir.display(),
                "process trees are contained in cgroup v2 leaves"
            ),
            (_, reason, _) => tracing::info!(
                containment = "subreaper",
                reason = reason.as_deref().unwrap_or("asked for"),
                "process trees are contained by a child subreaper"
            ),
        }
        let cap = config.max_running.min(Semaphore::MAX_PERMITS);
        let inner = Arc::new(Inner {
            launcher,
            dev_null: std::fs::File::open("/dev/null").ok(),
            config,
            registry: Registry::default(),
            seq: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            contain: Arc::new(contain),
            own: Mutex::default(),
            phase: PhaseCell::default(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let sup = Self { inner };
        if tokio::runtime::Handle::try_current().is_ok() {
            sup.start_sweep();
            if sup.inner.contain.mode == ContainMode::Subreaper {
                sup.start_orphan_reaper();
            }
        }
        sup
    }

    /// The containment in effect.
    pub fn containment(&self) -> ContainMode {
        self.inner.contain.mode
    }

    /// Processes counted against the cap (running shells, and exited ones whose
    /// descendants live on).
    pub fn counted(&self) -> usize {
        self.inner.cap - self.inner.slots.available_permits()
    }

    /// Processes running now.
    pub fn running_count(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Processes started since the daemon started.
    pub fn started_total(&self) -> u64 {
        // `seq` counts the successful starts.
        self.inner.seq.load(Ordering::Relaxed)
    }

    /// Resolves the working directory: the request's (relative → joined to the default
    /// directory; must exist), else the default directory if it exists, else `$HOME`, else
    /// empty (the daemon's own).
    pub fn resolve_workdir(&self, requested: Option<&Path>) -> Result<PathBuf, StartError> {
        let cfg = &self.inner.config;
        match requested.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => {
                let path = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cfg.default_workdir.join(p)
                };
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => Ok(path),
                    Ok(_) => Err(StartError::Workdir {
                        path,
                        source: io::ErrorKind::NotADirectory.into(),
                    }),
                    Err(source) => Err(StartError::Workdir { path, source }),
                }
            }
            None if cfg.default_workdir.is_dir() => Ok(cfg.default_workdir.clone()),
            None => Ok(cfg.home.clone().unwrap_or_default()),
        }
    }

    /// Starts a process. Returns once it is spawned; it outlives the caller.
    pub fn start(&self, req: StartRequest) -> Result<Arc<Process>, StartError> {
        let inner = &self.inner;
        if inner.phase.get() != Phase::Running {
            return Err(StartError::Closed);
        }
        let requested = req.workdir.as_deref().filter(|p| !p.as_os_str().is_empty());
        let cfg = &inner.config;
        let (workdir, fallback) = match requested {
            Some(_) => (self.resolve_workdir(requested)?, None),
            // The default directory, without a stat per start: should it be gone, the
            // child's chdir says so and the start is retried where `resolve_workdir` would
            // have sent it.
            None => {
                let home = cfg.home.clone().unwrap_or_default();
                let fallback = (home != cfg.default_workdir).then_some(home);
                (cfg.default_workdir.clone(), fallback)
            }
        };
        // The semaphore is never closed: no permit left is the only error.
        let Ok(slot) = inner.slots.clone().try_acquire_owned() else {
            return Err(StartError::TooMany {
                limit: inner.config.max_running,
            });
        };
        self.spawn(req, workdir, fallback, slot)
    }

    /// Starts `req` in `workdir`, or in `fallback` when changing to `workdir` fails. `slot`
    /// goes to the process task, or is dropped with an error.
    fn spawn(
        &self,
        req: StartRequest,
        mut workdir: PathBuf,
        fallback: Option<PathBuf>,
        slot: OwnedSemaphorePermit,
    ) -> Result<Arc<Process>, StartError> {
        let inner = &self.inner;
        if inner.registry.contains(&req.id) {
            return Err(StartError::DuplicateId(req.id));
        }
        let mut launched = self.launch(&req, &workdir);
        if let (Err(SpawnError::Chdir(_)), Some(fallback)) = (&launched, fallback) {
            workdir = fallback;
            launched = self.launch(&req, &workdir);
        }
        let (spawned, reader, leaf) = launched.map_err(|e| match e {
            SpawnError::Chdir(source) => StartError::Workdir {
                path: workdir.clone(),
                source,
            },
            SpawnError::Exec(source) => StartError::Spawn {
                step: SpawnStep::Exec,
                source,
            },
            SpawnError::Cgroup(source) => StartError::Spawn {
                step: SpawnStep::Cgroup,
                source,
            },
            SpawnError::Other(source) => StartError::Spawn {
                step: SpawnStep::Other,
                source,
            },
        })?;
        let child = spawned.child;
        let pid = child.id();
        lock(&inner.own).insert(pid);
        let rx = match pipe::Receiver::from_owned_fd(reader.into()) {
            Ok(rx) => rx,
            Err(e) => {
                // The tree walk reads /proc (subreaper mode): not on the caller's thread.
                let (leaf, id) = (leaf.clone(), req.id.clone());
                self.in_background(move |inner| {
                    let _ = inner
                        .contain
                        .signal_tree(leaf.as_deref(), pid, &id, GroupSignal::Kill);
                });
                return Err(StartError::Spawn {
                    step: SpawnStep::Other,
                    source: e,
                });
            }
        };
        let seq = inner.seq.fetch_add(1, Ordering::SeqCst);
        let proc = Arc::new(Process {
            id: req.id.clone(),
            command: req.command,
            workdir,
            background: req.background,
            chat_id: req.chat_id,
            pid,
            started_at: SystemTime::now(),
            seq,
            state: Mutex::new(State {
                buf: OutputBuffer::new(),
                exit: None,
                closed: false,
            }),
            status: watch::Sender::new(Status::default()),
            group_gone: AtomicBool::new(false),
            leaf,
            contain: inner.contain.clone(),
        });
        inner.running.fetch_add(1, Ordering::SeqCst);
        inner.registry.insert(&proc);
        let span = req.span;
        let problems = spawned.priority_problems;
        let sup = self.clone();
        let task_proc = proc.clone();
        inner.tasks.spawn(
            async move {
                sup.supervise(task_proc, child, rx, slot, problems, req.on_exit)
                    .await;
            }
            .instrument(span),
        );
        Ok(proc)
    }

    /// Starts `sh -c <command>` in `workdir` with its output going into a new pipe; returns
    /// the child, the pipe's read end and its cgroup leaf (cgroup mode).
    fn launch(
        &self,
        req: &StartRequest,
        workdir: &Path,
    ) -> Result<(spawn::Spawned, io::PipeReader, Option<PathBuf>), SpawnError> {
        let inner = &self.inner;
        let cfg = &inner.config;
        let (reader, writer) = io::pipe().map_err(SpawnError::Other)?;
        let own_null;
        let stdin = match &inner.dev_null {
            Some(f) => f,
            None => {
                own_null = std::fs::File::open("/dev/null").map_err(SpawnError::Other)?;
                &own_null
            }
        };
        let mut env: Vec<(&OsStr, &OsStr)> = Vec::with_capacity(req.env.len() + 1);
        env.extend(req.env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))));
        let marker = inner.contain.marker(&req.id);
        if let Some(m) = &marker {
            env.push((OsStr::new(crate::contain::MARKER_VAR), OsStr::new(m)));
        }
        if let Some(chat) = &req.chat_id {
            env.push((OsStr::new("CODER_CHAT_ID"), OsStr::new(chat)));
        }
        // cgroupfs calls on the start's critical path, synchronous on purpose: kernfs answers
        // from the kernel's own tables (no disk, no other process's memory), in microseconds.
        let leaf = inner.contain.leaf().map_err(SpawnError::Cgroup)?;
        let spec = spawn::Spec {
            launcher: &inner.launcher,
            args: &[OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&req.command)],
            env: &env,
            cwd: (!workdir.as_os_str().is_empty()).then_some(workdir.as_os_str()),
            stdio: [stdin.as_raw_fd(), writer.as_raw_fd(), writer.as_raw_fd()],
            priority: cfg.priority,
            spread: cfg.spread,
            cgroup: leaf.as_ref().map(|l| l.fd.as_raw_fd()),
        };
        let spawned = match spawn::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                if let Some(l) = &leaf {
                    inner.contain.release_leaf(&l.path);
                }
                return Err(e);
            }
        };
        // `writer` is dropped on return: the parent's write end must go, or the pipe never
        // reports EOF. The leaf's descriptor goes too: the child is in it.
        Ok((spawned, reader, leaf.map(|l| l.path)))
    }

    /// A process by id.
    pub fn get(&self, id: &str) -> Option<Arc<Process>> {
        self.inner.registry.get(id)
    }

    /// Every known process (forgets expired ones first, as Coder's list does).
    pub fn list(&self) -> Vec<Arc<Process>> {
        self.forget_expired();
        self.inner.registry.all()
    }

    /// Forgets processes that exited more than the retention ago. Returns how many.
    pub(crate) fn forget_expired(&self) -> usize {
        let (n, gone) = self
            .inner
            .registry
            .forget_expired(self.inner.config.retention);
        self.remember_strays(gone);
        n
    }

    /// Signals a process's whole tree (see [`ContainMode`](crate::ContainMode)). A process whose shell exited
    /// is still signalled while its tree has live members (descendants it left behind).
    /// Blocking: it may freeze a cgroup or scan `/proc`; async callers use the blocking pool.
    pub fn signal(&self, proc: &Process, sig: GroupSignal) -> Result<(), SignalError> {
        if !proc.running() && !proc.group_alive() {
            return Err(SignalError::NotRunning);
        }
        self.inner
            .contain
            .signal_tree(proc.leaf.as_deref(), proc.pid, &proc.id, sig)?;
        tracing::info!(process_id = %proc.id, pid = proc.pid, signal = ?sig, "signalled process group");
        Ok(())
    }
}

/// Longest a `/proc` or cgroupfs look of the supervisor's own tasks may take before they go
/// on without its answer (a read of another process's `environ` waits on that process's
/// memory map, which a process stuck in the kernel can hold).
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

impl Supervisor {
    /// Starts `f` on the blocking pool at once, as one of the supervisor's tasks; the future
    /// gives its answer, or `None` when it panicked or took longer than [`SCAN_TIMEOUT`]
    /// (it may still finish later). For the `/proc` and cgroupfs scans of async paths.
    fn off_runtime<T, F>(
        &self,
        what: &'static str,
        f: F,
    ) -> impl Future<Output = Option<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> T + Send + 'static,
    {
        let inner = self.inner.clone();
        let job = self.inner.tasks.spawn_blocking(move || f(&inner));
        async move {
            match tokio::time::timeout(SCAN_TIMEOUT, job).await {
                Ok(Ok(v)) => Some(v),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "{what} failed");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        "{what} did not finish within {} s; going on without it",
                        SCAN_TIMEOUT.as_secs()
                    );
                    None
                }
            }
        }
    }

    /// Runs `f` on the blocking pool as one of the supervisor's tasks, without waiting for
    /// it (inline where no runtime runs: nothing async waits then).
    fn in_background(&self, f: impl FnOnce(&Inner) + Send + 'static) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let inner = self.inner.clone();
            self.inner.tasks.spawn_blocking(move || f(&inner));
        } else {
            f(&self.inner);
        }
    }

    /// Keeps the groups of forgotten processes `gone` that still have live members. The
    /// `/proc` scan runs in the background: callers are request handlers, the sweep and
    /// process tasks.
    fn remember_strays(&self, gone: Vec<u32>) {
        if !gone.is_empty() {
            self.in_background(move |inner| inner.registry.remember_strays(&gone));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::group;

    fn sup() -> Supervisor {
        let mut c = Config::new(
            vec![("PATH".into(), "/usr/bin:/bin".into())],
            std::env::temp_dir(),
        );
        c.linger = Duration::from_millis(100);
        Supervisor::new(c)
    }

    fn req(id: &str, cmd: &str) -> StartRequest {
        StartRequest::new(id, cmd)
    }

    #[tokio::test]
    async fn runs_and_captures_in_order() {
        let s = sup();
        let p = s
            .start(req("a", "echo out; echo err >&2; echo out2; exit 3"))
            .unwrap();
        p.wait_exit().await;
        let v = p.output();
        assert_eq!(v.output, "out\nerr\nout2\n");
        assert_eq!(v.exit.unwrap().code, 3);
        assert!(v.closed);
        assert_eq!(s.running_count(), 0);
    }

    #[tokio::test]
    async fn lingering_descendants_do_not_delay_the_exit() {
        let s = sup();
        let t = Instant::now();
        let p = s
            .start(req("b", "(sleep 0.6; echo late) & echo done"))
            .unwrap();
        p.wait_exit().await;
        assert!(t.elapsed() < Duration::from_millis(500));
        let v = p.output();
        assert_eq!(v.exit.unwrap().code, 0);
        assert_eq!(v.output, "done\n");
        assert!(!v.closed);
        let mut rx = p.subscribe();
        rx.wait_for(|s| s.closed).await.unwrap();
        assert_eq!(p.output().output, "done\nlate\n");
    }

    #[tokio::test]
    async fn signal_reports_minus_one_and_name() {
        let s = sup();
        let p = s.start(req("c", "sleep 30 | cat")).unwrap();
        s.signal(&p, GroupSignal::Kill).unwrap();
        p.wait_exit().await;
        let e = p.exit().unwrap();
        assert_eq!(e.code, -1);
        assert_eq!(e.signal_name().as_deref(), Some("SIGKILL"));
        let mut rx = p.subscribe();
        rx.wait_for(|s| s.closed).await.unwrap();
        assert!(!group::group_alive(p.pid));
        assert!(matches!(
            s.signal(&p, GroupSignal::Kill),
            Err(SignalError::NotRunning)
        ));
    }

    #[tokio::test]
    async fn a_gone_group_is_remembered() {
        let s = sup();
        let p = s.start(req("g", "true")).unwrap();
        p.wait_exit().await;
        for _ in 0..200 {
            if p.group_members().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(p.group_gone.load(Ordering::Relaxed));
        assert!(p.group_members().is_empty());
        assert!(matches!(
            s.signal(&p, GroupSignal::Kill),
            Err(SignalError::NotRunning)
        ));
    }

    #[tokio::test]
    async fn cap_and_shutdown() {
        let mut c = Config::new(
            vec![("PATH".into(), "/usr/bin:/bin".into())],
            std::env::temp_dir(),
        );
        c.max_running = 2;
        let s = Supervisor::new(c);
        let a = s.start(req("1", "sleep 30")).unwrap();
        let b = s.start(req("2", "trap '' TERM; sleep 30 & wait")).unwrap();
        assert!(matches!(
            s.start(req("3", "true")),
            Err(StartError::TooMany { limit: 2 })
        ));
        s.shutdown(Duration::from_millis(300)).await;
        assert!(!group::group_alive(a.pid));
        assert!(!group::group_alive(b.pid));
        assert!(matches!(s.start(req("4", "true")), Err(StartError::Closed)));
    }

    /// Waits (in real time: the clock may be paused) until `f` holds.
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permits_count_trees_and_come_back() {
        let home = std::env::temp_dir().join(format!("agentproc-permits-{}", std::process::id()));
        let mut c = Config::new(
            vec![("PATH".into(), "/usr/bin:/bin".into())],
            home.join("missing-default"),
        );
        c.home = Some(home.join("missing-home"));
        c.max_running = 2;
        c.linger = Duration::from_millis(50);
        let s = Supervisor::new(c);
        // A failed start gives its permit back: here the child's chdir fails in both the
        // default directory and $HOME.
        for _ in 0..3 {
            assert!(matches!(
                s.start(req("nowhere", "true")),
                Err(StartError::Workdir { ref path, ref source })
                    if *path == home.join("missing-home")
                        && source.kind() == io::ErrorKind::NotFound
            ));
        }
        assert_eq!(s.counted(), 0);
        std::fs::create_dir_all(home.join("missing-default")).unwrap();
        // An exited shell whose background child lives keeps its permit.
        let bg = s.start(req("bg", "sleep 30 & exit 0")).unwrap();
        bg.wait_exit().await;
        assert_eq!(bg.exit().unwrap().code, 0);
        assert_eq!((s.counted(), s.running_count()), (1, 0));
        // A start that fails after taking a permit (a taken id) gives it back too.
        assert!(matches!(
            s.start(req("bg", "true")),
            Err(StartError::DuplicateId(ref id)) if id == "bg"
        ));
        assert_eq!(s.counted(), 1);
        let run = s.start(req("run", "sleep 30")).unwrap();
        assert_eq!((s.counted(), s.running_count()), (2, 1));
        for id in ["over1", "over2", "over3"] {
            assert!(matches!(
                s.start(req(id, "true")),
                Err(StartError::TooMany { limit: 2 })
            ));
        }
        assert_eq!(s.counted(), 2);
        assert!(s.get("over1").is_none());
        // Killing the lingering tree returns its permit once it is reaped.
        s.signal(&bg, GroupSignal::Kill).unwrap();
        until("bg's tree is reaped", || s.counted() == 1).await;
        let next = s.start(req("next", "exit 7")).unwrap();
        next.wait_exit().await;
        assert_eq!(next.exit().unwrap().code, 7);
        until("next is reaped", || s.counted() == 1).await;
        s.signal(&run, GroupSignal::Kill).unwrap();
        run.wait_exit().await;
        until("run is reaped", || s.counted() == 0).await;
        assert_eq!(s.running_count(), 0);
        assert_eq!(s.started_total(), 3);
        s.shutdown(Duration::from_millis(300)).await;
        std::fs::remove_dir_all(&home).unwrap();
    }

    // On the real clock: the shutdown's bounded waits race real processes being reaped.
    #[tokio::test]
    async fn shutdown_terms_then_kills_what_ignores_term() {
        let s = sup();
        let polite = s.start(req("polite", "sleep 30")).unwrap();
        let stubborn = s
            .start(req("stubborn", "trap '' TERM; echo ready; sleep 30 & wait"))
            .unwrap();
        stubborn.wait_output_after(0).await;
        assert_eq!(stubborn.output().output, "ready\n");
        assert_eq!(s.counted(), 2);
        s.shutdown(Duration::from_millis(300)).await;
        let signal = |p: &Process| p.exit().and_then(|e| e.signal_name());
        assert_eq!(signal(&polite).as_deref(), Some("SIGTERM"));
        assert_eq!(signal(&stubborn).as_deref(), Some("SIGKILL"));
        assert!(!group::group_alive(polite.pid));
        assert!(!group::group_alive(stubborn.pid));
        // Both trees were reaped before the shutdown returned: every permit is back.
        assert_eq!((s.counted(), s.running_count()), (0, 0));
        assert!(matches!(
            s.start(req("late", "true")),
            Err(StartError::Closed)
        ));
    }

    #[tokio::test]
    async fn workdir_resolution() {
        let s = sup();
        let tmp = std::env::temp_dir();
        assert_eq!(s.resolve_workdir(None).unwrap(), tmp);
        assert_eq!(
            s.resolve_workdir(Some(Path::new("."))).unwrap(),
            tmp.join(".")
        );
        let e = s
            .resolve_workdir(Some(Path::new("/nonexistent-agentd")))
            .unwrap_err();
        assert!(matches!(
            e,
            StartError::Workdir { ref path, ref source }
                if path == Path::new("/nonexistent-agentd")
                    && source.kind() == io::ErrorKind::NotFound
        ));
    }

    #[tokio::test]
    async fn a_missing_default_directory_falls_back_to_home() {
        let home = std::env::temp_dir().join(format!("agentproc-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let gone = home.join("gone");
        let mut c = Config::new(vec![("PATH".into(), "/usr/bin:/bin".into())], gone.clone());
        c.home = Some(home.clone());
        let s = Supervisor::new(c);
        let p = s.start(req("a", "pwd")).unwrap();
        p.wait_exit().await;
        assert_eq!(p.workdir, home);
        assert_eq!(p.output().output, format!("{}\n", home.display()));
        // Once it exists it is used again (no stale answer is kept).
        std::fs::create_dir(&gone).unwrap();
        let p = s.start(req("b", "pwd")).unwrap();
        p.wait_exit().await;
        assert_eq!(p.workdir, gone);
        assert_eq!(p.output().output, format!("{}\n", gone.display()));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
