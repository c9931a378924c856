//! The process supervisor: starts `sh -c` commands in their own process groups, captures
//! their combined output, records how they ended, signals their groups, forgets them some
//! minutes after exit, and stops them all on shutdown.
//!
//! One owned task per process reads its pipe and waits for its shell; nothing else runs per
//! process. When the shell exits but descendants it backgrounded still hold the pipe, the
//! shell's own status is reported after a short linger and capture goes on until the pipe
//! closes. This module must not know HTTP or JSON, and never reads environment variables.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::buffer::{OutputBuffer, SinceRead, Truncation};
use crate::contain::{ContainMode, ContainRequest, Containment};
use crate::group::{self, GroupSignal};
use crate::priority::Priority;
use crate::spawn::{self, SpawnError};

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

/// Size the pipe of a process that filled its default one is grown to (fewer wakeups).
const PIPE_SIZE: i32 = 1 << 20;
/// At most this many reads per wakeup before yielding to other tasks.
const READS_PER_WAKEUP: usize = 16;
/// Subreaper mode: how long a SIGCHLD waits for more before the adopted-orphan scan.
const ORPHAN_SCAN_COALESCE: Duration = Duration::from_millis(20);

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
    /// How process trees are contained (see [`crate::contain`]).
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

struct State {
    buf: OutputBuffer,
    exit: Option<Exit>,
    closed: bool,
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
    state: Mutex<State>,
    status: watch::Sender<Status>,
    /// Its tree was seen without a live member after the exit. A tree never regains
    /// members, so later looks skip the scan and a recycled pgid is never taken for it.
    group_gone: AtomicBool,
    /// Its cgroup leaf (cgroup mode).
    leaf: Option<PathBuf>,
    contain: Arc<Containment>,
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
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// its cgroup's members, or its descendants, group and adopted orphans.
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

    /// Whether its tree has a live member.
    fn group_alive(&self) -> bool {
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

    fn write(&self, data: &[u8]) {
        let total = {
            let mut st = self.lock();
            st.buf.write(data);
            st.buf.total_written()
        };
        self.status.send_modify(|s| s.written = total);
    }

    fn set_exit(&self, exit: Exit) {
        self.lock().exit = Some(exit);
        self.status.send_modify(|s| s.exited = true);
    }

    fn set_closed(&self) {
        self.lock().closed = true;
        self.status.send_modify(|s| s.closed = true);
    }
}

struct Inner {
    config: Config,
    /// `sh` with the base and default environments, prepared once.
    launcher: crate::launch::Launcher,
    /// Every child's stdin (opened once; `None` if that failed, then per start).
    dev_null: Option<std::fs::File>,
    procs: Mutex<HashMap<String, Arc<Process>>>,
    /// Processes whose task has not finished (shell unreaped or pipe open).
    active: Mutex<HashMap<String, Arc<Process>>>,
    /// Groups of forgotten processes that still had live members.
    stray_groups: Mutex<HashSet<u32>>,
    /// Start order of the next process; also how many have started.
    seq: AtomicU64,
    running: AtomicUsize,
    /// Processes counted against the cap: running shells, and exited ones whose tree lives.
    slots: AtomicUsize,
    contain: Arc<Containment>,
    /// Shells not reaped yet (never taken for adopted orphans).
    own: Mutex<HashSet<u32>>,
    closed: AtomicBool,
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
        let (contain, err) = Containment::new_or_subreaper(config.containment);
        if let Some(e) = err {
            tracing::error!(error = %e, "cgroup containment was asked for; using subreaper mode");
        }
        match (contain.mode, &contain.fallback_reason, contain.cgroup_dir()) {
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
        let inner = Arc::new(Inner {
            launcher,
            dev_null: std::fs::File::open("/dev/null").ok(),
            config,
            procs: Mutex::default(),
            active: Mutex::default(),
            stray_groups: Mutex::default(),
            seq: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            contain: Arc::new(contain),
            own: Mutex::default(),
            closed: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let sup = Self { inner };
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&sup.inner);
            let cancel = sup.inner.cancel.clone();
            let every = sup
                .inner
                .config
                .sweep_interval
                .max(Duration::from_millis(10));
            sup.inner.tasks.spawn(async move {
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
            if sup.inner.contain.mode == ContainMode::Subreaper {
                sup.start_orphan_reaper();
            }
        }
        sup
    }

    /// Subreaper mode: after every burst of SIGCHLD (and once a second), records the orphans the daemon
    /// adopted from its trees and reaps those that exited.
    fn start_orphan_reaper(&self) {
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
                let scan = tokio::task::spawn_blocking(move || inner.contain.reap_adopted(&own));
                if let Ok(n) = scan.await
                    && n > 0
                {
                    tracing::debug!(reaped = n, "reaped adopted orphans");
                }
            }
        });
    }

    /// The containment in effect.
    pub fn containment(&self) -> ContainMode {
        self.inner.contain.mode
    }

    /// Processes counted against the cap (running shells, and exited ones whose
    /// descendants live on).
    pub fn counted(&self) -> usize {
        self.inner.slots.load(Ordering::Relaxed)
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
        if inner.closed.load(Ordering::SeqCst) {
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
        let limit = inner.config.max_running;
        if inner.slots.fetch_add(1, Ordering::SeqCst) >= limit {
            inner.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(StartError::TooMany { limit });
        }
        inner.running.fetch_add(1, Ordering::SeqCst);
        let res = self.spawn(req, workdir, fallback);
        if res.is_err() {
            inner.running.fetch_sub(1, Ordering::SeqCst);
            inner.slots.fetch_sub(1, Ordering::SeqCst);
        }
        res
    }

    /// Starts `req` in `workdir`, or in `fallback` when changing to `workdir` fails.
    fn spawn(
        &self,
        req: StartRequest,
        mut workdir: PathBuf,
        fallback: Option<PathBuf>,
    ) -> Result<Arc<Process>, StartError> {
        let inner = &self.inner;
        if lock(&inner.procs).contains_key(&req.id) {
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
                let _ = inner
                    .contain
                    .signal_tree(leaf.as_deref(), pid, &req.id, GroupSignal::Kill);
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
        lock(&inner.procs).insert(req.id.clone(), proc.clone());
        lock(&inner.active).insert(req.id, proc.clone());
        let span = req.span;
        let problems = spawned.priority_problems;
        let sup = self.clone();
        let task_proc = proc.clone();
        inner.tasks.spawn(
            async move {
                sup.supervise(task_proc, child, rx, problems, req.on_exit)
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

    async fn supervise(
        &self,
        proc: Arc<Process>,
        child: spawn::Child,
        rx: pipe::Receiver,
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
                        // whole tree goes, not only the shell.
                        let _ = self.inner.contain.signal_tree(proc.leaf.as_deref(), proc.pid, &proc.id, GroupSignal::Kill);
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
                self.evict_exited();
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
        // Descendants that closed or never had the pipe still count until they are gone.
        let mut every = Duration::from_millis(10);
        while !cancel.is_cancelled() && proc.group_alive() {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(every) => {}
            }
            every = (every * 2).min(Duration::from_secs(1));
        }
        if let Some(leaf) = &proc.leaf
            && !proc.group_alive()
        {
            self.inner.contain.release_leaf(leaf);
        }
        self.inner.slots.fetch_sub(1, Ordering::SeqCst);
        lock(&self.inner.active).remove(&proc.id);
    }

    /// A process by id.
    pub fn get(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.inner.procs).get(id).cloned()
    }

    /// Every known process (forgets expired ones first, as Coder's list does).
    pub fn list(&self) -> Vec<Arc<Process>> {
        self.forget_expired();
        lock(&self.inner.procs).values().cloned().collect()
    }

    /// Forgets processes that exited more than the retention ago. Returns how many.
    pub fn forget_expired(&self) -> usize {
        let retention = self.inner.config.retention;
        let now = SystemTime::now();
        // Forgotten processes whose group may still have live members.
        let mut gone = Vec::new();
        let reaped = {
            let mut procs = lock(&self.inner.procs);
            let before = procs.len();
            procs.retain(|_, p| {
                let keep = match p.exit() {
                    Some(e) => now.duration_since(e.at).unwrap_or_default() < retention,
                    None => true,
                };
                if !keep && !p.group_gone.load(Ordering::Relaxed) {
                    gone.push(p.pid);
                }
                keep
            });
            before - procs.len()
        };
        self.remember_strays(&gone);
        reaped
    }

    /// Forgets the oldest exited processes beyond the cap on exited records.
    fn evict_exited(&self) {
        let cap = self.inner.config.max_exited;
        let mut gone = Vec::new();
        {
            let mut procs = lock(&self.inner.procs);
            if procs.len() <= cap {
                return;
            }
            let mut exited: Vec<(SystemTime, u64, String)> = procs
                .values()
                .filter_map(|p| p.exit().map(|e| (e.at, p.seq, p.id.clone())))
                .collect();
            if exited.len() <= cap {
                return;
            }
            exited.sort_unstable();
            let n = exited.len() - cap;
            for (_, _, id) in exited.into_iter().take(n) {
                if let Some(p) = procs.remove(&id)
                    && !p.group_gone.load(Ordering::Relaxed)
                {
                    gone.push(p.pid);
                }
            }
        }
        self.remember_strays(&gone);
    }

    /// Keeps the groups of forgotten processes that still have live members.
    fn remember_strays(&self, gone: &[u32]) {
        if gone.is_empty() {
            return;
        }
        let live = group::live_groups();
        let mut stray = lock(&self.inner.stray_groups);
        stray.retain(|g| live.contains(g));
        stray.extend(gone.iter().filter(|g| live.contains(g)));
    }

    /// Signals a process's whole tree (see [`crate::contain`]). A process whose shell exited
    /// is still signalled while its tree has live members (descendants it left behind).
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

    /// Groups that may still have live members.
    fn target_groups(&self) -> Vec<u32> {
        let mut groups: HashSet<u32> = lock(&self.inner.procs).values().map(|p| p.pid).collect();
        groups.extend(lock(&self.inner.active).values().map(|p| p.pid));
        groups.extend(lock(&self.inner.stray_groups).iter().copied());
        let unreaped: HashSet<u32> = lock(&self.inner.active)
            .values()
            .filter(|p| p.running())
            .map(|p| p.pid)
            .collect();
        let live = group::live_groups();
        groups
            .into_iter()
            .filter(|g| *g > 1 && (live.contains(g) || unreaped.contains(g)))
            .collect()
    }

    /// Stops everything: no new starts, TERM every group, wait up to `grace`, KILL what is
    /// left, then wait (bounded) for the per-process tasks.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        let groups = self.target_groups();
        if !groups.is_empty() {
            tracing::info!(groups = groups.len(), "terminating process groups");
        }
        inner.contain.signal_all(&groups, GroupSignal::Term);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if lock(&inner.active).is_empty() && !inner.contain.anything_alive(&self.all_groups()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.all_groups();
        if inner.contain.anything_alive(&left) {
            let n = inner.contain.signal_all(&left, GroupSignal::Kill);
            tracing::warn!(
                trees = n,
                "killing process trees that outlived the grace period"
            );
        }
        inner.tasks.close();
        let done = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if lock(&inner.active).is_empty() {
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
        inner.contain.reap_adopted(&lock(&inner.own).clone());
        inner.contain.remove_root();
    }

    /// Every group that may have members: known processes, active ones, strays.
    fn all_groups(&self) -> Vec<u32> {
        let mut groups: HashSet<u32> = lock(&self.inner.procs).values().map(|p| p.pid).collect();
        groups.extend(lock(&self.inner.active).values().map(|p| p.pid));
        groups.extend(lock(&self.inner.stray_groups).iter().copied());
        groups.into_iter().filter(|g| *g > 1).collect()
    }

    /// Kills every group now, synchronously (second signal).
    pub fn kill_all_now(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let groups = self.target_groups();
        self.inner.contain.signal_all(&groups, GroupSignal::Kill);
        self.inner.cancel.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
