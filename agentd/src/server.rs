//! The HTTP server: the router (core routes plus each capability's routes), the middleware
//! stack, the TCP listeners and the unix control socket, and the shutdown sequence.
//!
//! Capability routes live in the `*_api` modules and are merged in [`routes`]. This module owns
//! lifecycles; it must not contain capability logic.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::ServeConfig;
use crate::context_api::ContextState;
use crate::error::{ApiError, BODY_LIMIT, Json};
use crate::events::Events;
use crate::files_api::FilesState;
use crate::git_api::GitState;
use crate::mcp_api::McpState;
use crate::metrics::Metrics;
use crate::middleware::{self, AuthToken};
use crate::proc_api::ProcState;

/// How long in-flight responses may take to finish after a shutdown signal.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of every handler: one pointer, cloned per request by the extractors.
///
/// Handlers never see it whole: each `*_api` module declares the small state its handlers
/// need (a cheap clone, one pointer), taken out of this one with [`FromRef`]. So no
/// capability module depends on this one.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub(crate) struct Shared {
    /// The resolved configuration.
    pub config: Arc<ServeConfig>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Context config and the `agentd ctx` store (`context_api`).
    pub context: Arc<ContextState>,
    /// Git watch: path store and shared per-repo scan workers (`git_api`).
    pub git: Arc<GitState>,
    /// The workspace's MCP servers (`mcp_api`).
    pub mcp: McpState,
    /// The process supervisor and what its routes need (`proc_api`).
    pub procs: Arc<ProcState>,
    /// The file API: per-file writer locks and the temp-file journal (`files_api`).
    pub files: Arc<FilesState>,
}

impl FromRef<AppState> for Arc<ContextState> {
    fn from_ref(s: &AppState) -> Self {
        s.context.clone()
    }
}

impl FromRef<AppState> for Arc<GitState> {
    fn from_ref(s: &AppState) -> Self {
        s.git.clone()
    }
}

impl FromRef<AppState> for McpState {
    fn from_ref(s: &AppState) -> Self {
        s.mcp.clone()
    }
}

impl FromRef<AppState> for Arc<ProcState> {
    fn from_ref(s: &AppState) -> Self {
        s.procs.clone()
    }
}

impl FromRef<AppState> for Arc<FilesState> {
    fn from_ref(s: &AppState) -> Self {
        s.files.clone()
    }
}

impl AppState {
    /// Builds the state and starts the capability subsystems.
    pub(crate) fn new(config: ServeConfig, shutdown: CancellationToken) -> Self {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let context = Arc::new(ContextState::open(config.clone(), &metrics));
        let events = Events::default();
        let git = GitState::new(&config, &events, &metrics, shutdown.clone());
        let mcp = McpState::start(&config, &metrics);
        let procs = Arc::new(ProcState::new(&config, &metrics, events, shutdown));
        let files = Arc::new(FilesState::open(&config, git.watch.clone()));
        Self(Arc::new(Shared {
            config,
            metrics,
            context,
            git,
            mcp,
            procs,
            files,
        }))
    }

    /// Stops every subsystem: processes get TERM, a grace period, then KILL; MCP servers are
    /// stopped with their process groups. Called once, after the listeners have drained.
    pub(crate) async fn shutdown_subsystems(&self) {
        tokio::join!(
            self.procs.procs.shutdown(crate::proc_api::KILL_GRACE),
            self.git.shutdown(),
            self.mcp.mcp.shutdown(Duration::from_secs(5))
        );
    }

    /// The last resort on a second signal: kill every process group now, synchronously.
    pub(crate) fn kill_everything_now(&self) {
        self.mcp.mcp.kill_now();
        self.procs.procs.kill_all_now();
    }
}

/// All routes with the middleware stack. `tcp` adds the auth layer when a token is set.
pub(crate) fn routes(state: AppState, tcp: bool) -> Router {
    let router = Router::new()
        .route("/", get(hello))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::context_api::router())
        .merge(crate::git_api::routes())
        .merge(crate::mcp_api::routes())
        .merge(crate::openapi::routes())
        .merge(crate::proc_api::routes())
        .merge(crate::files_api::routes());
    with_middleware(router, state, tcp)
}

/// Wraps a router in the fallbacks and the middleware stack (see `middleware`).
pub(crate) fn with_middleware(router: Router<AppState>, state: AppState, tcp: bool) -> Router {
    let mut r = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(from_fn(crate::error::json_errors))
        .layer(from_fn(middleware::body_limit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    if tcp && let Some(token) = &state.config.auth_token {
        r = r.layer(from_fn_with_state(
            AuthToken(Arc::from(token.as_str())),
            middleware::auth,
        ));
    }
    if tcp {
        let guard = crate::netguard::NetGuard::new(
            &state.config.net.allow_origins,
            &state.config.net.allow_hosts,
            state.config.auth_token.as_deref(),
        );
        r = r.layer(from_fn_with_state(Arc::new(guard), crate::netguard::guard));
    }
    r.layer(from_fn(middleware::chat_identity))
        .layer(from_fn_with_state(
            state.metrics.clone(),
            middleware::access_log,
        ))
        .layer(from_fn(middleware::request_id))
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let msg = middleware::panic_message(&*panic);
                tracing::error!(panic = %msg, "panic outside a request span");
                ApiError::internal("Internal error.")
                    .detail(format!("panic: {msg}"))
                    .into_response()
            },
        ))
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

async fn hello() -> Json<Message> {
    Json(Message {
        message: "Hello from the agent!",
    })
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    /// How process trees are contained: `cgroup` or `subreaper` (additive).
    containment: &'static str,
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        containment: state.procs.procs.containment().as_str(),
    })
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    tracing::debug!("no such route");
    ApiError::not_found("Route not found.").detail(format!("{method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
        .detail(format!("{method} is not allowed on {}", uri.path()))
}

/// A startup failure, worded for a person.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// A TCP address could not be bound.
    // The OS errors are part of the message and deliberately not `source`s: the CLI prints
    // the whole chain, which would repeat them.
    #[error(
        "cannot listen on {addr}: {error} (is another agentd running? choose another address with --listen)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// The state dir could not be created or written.
    #[error("state directory {path} is not usable: {error} (choose another with --state-dir)")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error("control socket {path}: {reason}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: SocketProblem,
    },
}

/// Why the control socket could not be set up. As in [`StartError`], the OS errors are part
/// of the message, not `source`s (the CLI prints the whole chain).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketProblem {
    /// Its directory could not be created.
    #[error("cannot create its directory: {0}")]
    CreateDir(std::io::Error),
    /// A live daemon answers on it.
    #[error("another agentd is already serving on it (stop it, or pass --socket)")]
    Live,
    /// A stale socket file could not be removed.
    #[error("cannot remove the stale socket: {0}")]
    RemoveStale(std::io::Error),
    /// Something else than a socket is at the path.
    #[error("the path exists and is not a socket; refusing to replace it")]
    NotASocket,
    /// `bind(2)` failed.
    #[error("cannot bind: {0}")]
    Bind(std::io::Error),
    /// `chmod 0600` failed.
    #[error("cannot set mode 0600: {0}")]
    Chmod(std::io::Error),
}

/// Creates the state dir with mode 0700 and checks that it is writable.
pub(crate) fn prepare_state_dir(dir: &Path) -> Result<(), StartError> {
    let err = |error| StartError::StateDir {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (as Go's listeners
/// do). tokio's and std's default of 128 drops connections in a burst (500 at once), and a
/// dropped SYN costs its client a one-second retransmission.
const LISTEN_BACKLOG: u32 = 65_535;

/// A TCP listener on `addr` with `SO_REUSEADDR` and a backlog of [`LISTEN_BACKLOG`].
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the control socket: a stale socket file is replaced, a live one (another daemon)
/// or a non-socket file is an error; the socket is created with mode 0600 (bound under a
/// tight umask).
pub(crate) fn bind_socket(path: &Path) -> Result<UnixListener, StartError> {
    use std::os::unix::fs::FileTypeExt;
    let err = |reason: SocketProblem| StartError::Socket {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| err(SocketProblem::CreateDir(e)))?;
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(SocketProblem::Live));
            }
            std::fs::remove_file(path).map_err(|e| err(SocketProblem::RemoveStale(e)))?;
        }
        Ok(_) => {
            return Err(err(SocketProblem::NotASocket));
        }
        Err(_) => {}
    }
    // bind(2) creates the socket file with mode 0777 & ~umask: under umask 0177 it is 0600
    // from the start, so there is no window in which another user could connect before the
    // chmod below. The umask is process-wide; startup is the only time agentd creates files
    // with a mode that depends on it, and it is restored at once.
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old_umask);
    let listener = bound.map_err(|e| err(SocketProblem::Bind(e)))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(SocketProblem::Chmod(e)))?;
    Ok(listener)
}

/// Runs the daemon until a shutdown signal, then shuts down in order. Returns when
/// everything it started has stopped.
pub(crate) async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Install the handlers first: a signal that arrives during startup must shut us down
    // cleanly, not kill us with the default action.
    let mut signals = Signals::install()?;
    prepare_state_dir(&config.state_dir)?;
    crate::conn::raise_nofile_limit();
    if crate::config::token_in_environment() {
        // The kernel keeps our initial environment readable in /proc/<pid>/environ by every
        // process of this user, including the commands we run. Not dumpable, it is readable
        // by root only (children are dumpable again after their exec).
        match nix::sys::prctl::set_dumpable(false) {
            Ok(()) => tracing::info!(
                "the token came from AGENTD_AUTH_TOKEN: the daemon is made non-dumpable so \
                 processes it starts cannot read it from /proc; prefer --auth-token-file"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "the token came from AGENTD_AUTH_TOKEN and stays readable in \
                 /proc/<pid>/environ; use --auth-token-file"
            ),
        }
    }
    if let Some(why) = config.workdir_warning() {
        tracing::warn!(
            workdir = %config.workdir.display(),
            "workdir {why}: processes without a workdir run in $HOME and context paths \
             resolve there until it exists; MCP config files in it are picked up when it appears"
        );
    }

    let mut tcp = Vec::new();
    for addr in &config.listen {
        let l = bind_tcp(*addr).map_err(|error| StartError::Listen { addr: *addr, error })?;
        tcp.push(l);
    }
    let unix = bind_socket(&config.socket)?;
    let socket_path = config.socket.clone();

    let shutdown = CancellationToken::new();
    let state = AppState::new(config, shutdown.clone());

    let mut servers = tokio::task::JoinSet::new();
    // One pool of connection slots for every TCP listener; the socket has its own, so a
    // flood on TCP cannot lock out `agentd ctx`.
    let tcp_limits = crate::conn::ConnLimits {
        header_read_timeout: state.config.net.header_read_timeout,
        slots: Arc::new(tokio::sync::Semaphore::new(
            state.config.net.max_connections,
        )),
        open: Arc::default(),
    };
    let unix_limits = crate::conn::ConnLimits {
        header_read_timeout: state.config.net.header_read_timeout,
        slots: Arc::new(tokio::sync::Semaphore::new(
            state.config.net.max_connections,
        )),
        open: Arc::default(),
    };
    register_connection_metrics(&state.metrics, &tcp_limits, &unix_limits);
    for l in tcp {
        let addr = l.local_addr()?;
        tracing::info!(addr = %addr, "listening on tcp");
        let app = routes(state.clone(), true);
        servers.spawn(crate::conn::serve(
            l,
            app,
            tcp_limits.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(socket = %socket_path.display(), "listening on unix socket");
    {
        let app = routes(state.clone(), false);
        servers.spawn(crate::conn::serve(unix, app, unix_limits, shutdown.clone()));
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        workdir = %state.config.workdir.display(),
        state_dir = %state.config.state_dir.display(),
        auth = state.config.auth_token.is_some(),
        startup_ms = t0.elapsed().as_secs_f64() * 1000.0,
        "agentd ready"
    );
    if state.config.log_format == crate::cli::LogFormat::Json {
        crate::logging::batch();
    }

    let signal = signals.next().await;
    tracing::info!(
        signal,
        "shutting down: no new connections, draining in-flight requests"
    );
    shutdown.cancel();

    // A second signal means "now": kill what we started and exit at once.
    let second = {
        let state = state.clone();
        tokio::spawn(async move {
            let sig = signals.next().await;
            tracing::warn!(
                signal = sig,
                "second signal: killing everything and exiting now"
            );
            state.kill_everything_now();
            let _ = std::fs::remove_file(&state.config.socket);
            crate::logging::flush();
            std::process::exit(1);
        })
    };

    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(res) = servers.join_next().await {
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "listener stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_ms = DRAIN_TIMEOUT.as_millis() as u64,
            "drain timed out; the remaining connections are dropped at exit"
        );
        servers.abort_all();
    }
    // The listeners are closed: the socket file goes now, before the (possibly slow)
    // subsystem shutdown, so that a daemon started meanwhile, which finds the socket dead
    // and binds its own, does not lose its file to our late unlink.
    let _ = std::fs::remove_file(&socket_path);
    state.shutdown_subsystems().await;
    second.abort();
    tracing::info!("agentd stopped");
    Ok(())
}

/// Registers `agentd_connections_open{listener="tcp"|"unix"}`.
fn register_connection_metrics(
    metrics: &Metrics,
    tcp: &crate::conn::ConnLimits,
    unix: &crate::conn::ConnLimits,
) {
    let (tcp, unix) = (tcp.open.clone(), unix.open.clone());
    metrics.register(Box::new(move |out: &mut String| {
        use std::sync::atomic::Ordering::Relaxed;
        crate::metrics::header(
            out,
            "agentd_connections_open",
            "gauge",
            "Connections being served, by listener kind.",
        );
        out.push_str(&format!(
            "agentd_connections_open{{listener=\"tcp\"}} {}\n\
             agentd_connections_open{{listener=\"unix\"}} {}\n",
            tcp.load(Relaxed),
            unix.load(Relaxed)
        ));
    }));
}

/// SIGTERM and SIGINT, installed once at startup.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::LogFormat;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn socket_problem_texts() {
        let io = || std::io::Error::from_raw_os_error(13);
        let p = |reason| {
            StartError::Socket {
                path: "/run/a.sock".into(),
                reason,
            }
            .to_string()
        };
        let denied = "Permission denied (os error 13)";
        assert_eq!(
            p(SocketProblem::CreateDir(io())),
            format!("control socket /run/a.sock: cannot create its directory: {denied}")
        );
        assert_eq!(
            p(SocketProblem::Live),
            "control socket /run/a.sock: another agentd is already serving on it (stop it, or \
             pass --socket)"
        );
        assert_eq!(
            p(SocketProblem::RemoveStale(io())),
            format!("control socket /run/a.sock: cannot remove the stale socket: {denied}")
        );
        assert_eq!(
            p(SocketProblem::NotASocket),
            "control socket /run/a.sock: the path exists and is not a socket; refusing to \
             replace it"
        );
        assert_eq!(
            p(SocketProblem::Bind(io())),
            format!("control socket /run/a.sock: cannot bind: {denied}")
        );
        assert_eq!(
            p(SocketProblem::Chmod(io())),
            format!("control socket /run/a.sock: cannot set mode 0600: {denied}")
        );
        // Not sources: the CLI prints the chain and would repeat the OS error.
        let e = StartError::Socket {
            path: "/x".into(),
            reason: SocketProblem::Bind(io()),
        };
        assert!(std::error::Error::source(&e).is_none());
    }

    /// A state whose subsystems only see a private temp dir (returned to keep it alive).
    fn state(token: Option<&str>) -> (AppState, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = ServeConfig {
            listen: vec![],
            socket: tmp.path().join("agentd.sock"),
            workdir: tmp.path().to_path_buf(),
            state_dir: tmp.path().join("state"),
            auth_token: token.map(str::to_owned),
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            child_env: vec![],
            context: Default::default(),
            home: None,
            processes: Default::default(),
            mcp: Default::default(),
            bounds: Default::default(),
            net: Default::default(),
        };
        (AppState::new(config, CancellationToken::new()), tmp)
    }

    async fn body(res: Response) -> String {
        let b = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test]
    async fn panicking_handler_is_a_500_json_and_the_router_survives() {
        let router: Router<AppState> = Router::new()
            .route(
                "/boom",
                get(|| async {
                    panic!("kaboom");
                    #[expect(unreachable_code)]
                    ""
                }),
            )
            .route("/ok", get(|| async { "fine" }));
        let (state, _tmp) = state(None);
        let app = with_middleware(router, state, true);
        let res = app
            .clone()
            .oneshot(
                Request::get("/boom")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body(res).await,
            "{\"message\":\"Internal error.\",\"detail\":\"panic: kaboom\"}\n"
        );
        let res = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap_or_default())
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unix_router_skips_auth() {
        let (state, _tmp) = state(Some("t0ken"));
        let app = routes(state, false);
        let res = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap_or_default())
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::OK);
    }
}
