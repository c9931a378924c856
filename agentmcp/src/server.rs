//! One configured server: its supervisor task (connect, list tools, watch for exit/drop,
//! restart with capped exponential backoff), its stdio process and stderr drain, and the
//! shared state the manager reads (state, tools, last error, the live peer).
//!
//! Must never replay a `tools/call`, and must leave no process of its group behind when
//! stopped.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentproc::{GroupSignal, new_group, signal_group, stop_group};
use futures::future::BoxFuture;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{
    ClientInitializeError, NotificationContext, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ServerSpec, Transport};
use crate::convert::tool_from_json;
use crate::redact::Secrets;
use crate::sync::lock;
use crate::{ManagerOptions, ServerState, ToolDef};

/// Grace period between TERM and KILL of a stdio server's group.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// rmcp client handler: reports `tools/list_changed` to the supervisor.
#[derive(Clone)]
pub(crate) struct Handler {
    relist: Arc<Notify>,
    version: String,
}

impl rmcp::ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agentd", self.version.clone()),
        )
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }
}

/// Mutable state of a server.
#[derive(Debug)]
pub(crate) struct Dyn {
    pub(crate) state: ServerState,
    pub(crate) tools: Vec<ToolDef>,
    pub(crate) last_error: Option<String>,
    pub(crate) warning: Option<String>,
    pub(crate) restarts: u32,
    pub(crate) peer: Option<Peer<RoleClient>>,
    pub(crate) pid: Option<u32>,
}

/// A configured server and its supervisor's shared state.
pub(crate) struct Server {
    pub(crate) spec: ServerSpec,
    pub(crate) secrets: Secrets,
    pub(crate) cancel: CancellationToken,
    pub(crate) relist: Arc<Notify>,
    /// Woken when a call saw the transport fail: check and reconnect.
    pub(crate) suspect: Notify,
    /// Every state change, for the manager's hand-over on config changes.
    pub(crate) state_tx: tokio::sync::watch::Sender<ServerState>,
    /// The manager's catalogue generation: bumped on every state or tools change.
    catalog_gen: Arc<AtomicU64>,
    /// The manager's set of process groups that may be alive, whichever server (serving,
    /// pending or stopping) they belong to: the last-resort kill takes them all.
    groups: Arc<Mutex<HashSet<u32>>>,
    dynamic: Mutex<Dyn>,
}

impl Server {
    pub(crate) fn new(
        spec: ServerSpec,
        secrets: Secrets,
        cancel: CancellationToken,
        catalog_gen: Arc<AtomicU64>,
        groups: Arc<Mutex<HashSet<u32>>>,
    ) -> Self {
        Self {
            spec,
            secrets,
            cancel,
            groups,
            relist: Arc::new(Notify::new()),
            suspect: Notify::new(),
            state_tx: tokio::sync::watch::Sender::new(ServerState::Connecting),
            catalog_gen,
            dynamic: Mutex::new(Dyn {
                state: ServerState::Connecting,
                tools: Vec::new(),
                last_error: None,
                warning: None,
                restarts: 0,
                peer: None,
                pid: None,
            }),
        }
    }

    /// Records the server's process (group) id, in its state and in the manager's set of
    /// live groups; returns the previous one.
    pub(crate) fn set_pid(&self, pid: Option<u32>) -> Option<u32> {
        let old = std::mem::replace(&mut self.lock().pid, pid);
        let mut groups = lock(&self.groups);
        if let Some(old) = old {
            groups.remove(&old);
        }
        if let Some(pid) = pid {
            groups.insert(pid);
        }
        old
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Dyn> {
        lock(&self.dynamic)
    }

    pub(crate) fn redact(&self, s: &str) -> String {
        self.secrets.redact(s)
    }

    fn set_error(&self, state: ServerState, err: &str) {
        let red = self.redact(err);
        tracing::warn!(server = %self.spec.name, state = state.as_str(), error = %red, "MCP server not available");
        {
            let mut d = self.lock();
            d.state = state;
            d.last_error = Some(red);
            d.peer = None;
        }
        self.publish();
    }

    /// Replaces the listed tools.
    pub(crate) fn set_tools(&self, tools: Vec<ToolDef>) {
        self.lock().tools = tools;
        self.catalog_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Broadcasts the current state (and tells the catalogue it may have changed).
    pub(crate) fn publish(&self) {
        let s = self.lock().state;
        self.catalog_gen.fetch_add(1, Ordering::SeqCst);
        self.state_tx.send_replace(s);
    }
}

/// A live connection.
pub(crate) struct Conn {
    service: RunningService<RoleClient, Handler>,
    child: Option<tokio::process::Child>,
    /// The stdio server's process group, remembered at spawn: once the leader is reaped
    /// `child.id()` is `None`, but its grandchildren may live on in the group.
    pgid: Option<u32>,
}

impl Conn {
    /// A connection with no process of ours behind it (HTTP, SSE, the in-process fake).
    fn remote(service: RunningService<RoleClient, Handler>) -> Self {
        Self {
            service,
            child: None,
            pgid: None,
        }
    }

    /// Stops the connection and, for stdio, the whole process group: TERM, grace, KILL.
    async fn stop(self, name: &str) {
        let Conn {
            service,
            child,
            pgid,
        } = self;
        service.cancellation_token().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), service.waiting()).await;
        if let Some(child) = child {
            stop_child(child, pgid, name).await;
        }
    }
}

/// TERM, grace, KILL of the server's group `pgid` (its pid at spawn), whether or not the
/// leader has been reaped already.
async fn stop_child(mut child: tokio::process::Child, pgid: Option<u32>, name: &str) {
    let Some(pgid) = pgid.or_else(|| child.id()) else {
        let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        return;
    };
    stop_group(
        async {
            let _ = signal_group(pgid, GroupSignal::Term);
        },
        async {
            let _ = child.wait().await;
        },
        STOP_GRACE,
        |timed_out| {
            if timed_out {
                tracing::debug!(server = %name, pgid, "MCP server ignored SIGTERM; killing its group");
            }
            // Always KILL the group: grandchildren may outlive the leader.
            let _ = signal_group(pgid, GroupSignal::Kill);
        },
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
}

/// Why a connection attempt failed; its words (redacted) become the server's last error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The stdio command could not be started.
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The child came without its stdio pipes.
    #[error("stdio pipes missing")]
    PipesMissing,
    /// The stdio process exited during the handshake.
    #[error("server exited during initialize ({status}): {error}")]
    ExitedDuringInitialize {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The handshake's error.
        #[source]
        error: ClientInitializeError,
    },
    /// The `initialize` handshake failed.
    #[error("initialize failed: {0}")]
    Initialize(#[source] ClientInitializeError),
    /// A scripted handshake failure ([`crate::fake`]).
    #[cfg(test)]
    #[error("initialize failed: {0}")]
    Scripted(&'static str),
    /// A configured header is not a valid HTTP header.
    #[error("header {name:?}: {error}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        #[source]
        error: BadHeader,
    },
    /// The legacy SSE stream could not be opened.
    #[error(transparent)]
    Sse(#[from] crate::sse::SseError),
    /// The first `tools/list` failed.
    #[error("tools/list failed: {0}")]
    ListTools(#[source] ServiceError),
}

/// What is wrong with a configured header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadHeader {
    /// Not a valid header name.
    #[error(transparent)]
    Name(#[from] http::header::InvalidHeaderName),
    /// Not a valid header value.
    #[error(transparent)]
    Value(#[from] http::header::InvalidHeaderValue),
}

/// How a server is connected (spawn or dial, then `initialize`); on error the message is
/// not yet redacted. [`transport_connector`] in production; the supervisor's tests connect
/// in memory.
pub(crate) type Connector = Arc<
    dyn Fn(
            Arc<Server>,
            ManagerOptions,
            TaskTracker,
        ) -> BoxFuture<'static, Result<Conn, ConnectError>>
        + Send
        + Sync,
>;

/// The real transports: stdio, streamable HTTP, legacy SSE.
pub(crate) fn transport_connector() -> Connector {
    Arc::new(|srv, opts, tasks| Box::pin(async move { connect(&srv, &opts, &tasks).await }))
}

/// Connects according to the transport. On error the message is not yet redacted.
async fn connect(
    srv: &Arc<Server>,
    opts: &ManagerOptions,
    tasks: &TaskTracker,
) -> Result<Conn, ConnectError> {
    let handler = Handler {
        relist: srv.relist.clone(),
        version: opts.client_version.clone(),
    };
    let spec = &srv.spec;
    match spec.transport {
        Transport::Stdio => {
            let mut cmd = tokio::process::Command::new(&spec.command);
            cmd.args(&spec.args)
                .current_dir(&opts.workdir)
                .env_clear()
                .envs(opts.base_env.iter().map(|(k, v)| (k, v)))
                .envs(&spec.env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            new_group(&mut cmd);
            let mut child = cmd.spawn().map_err(|source| ConnectError::Spawn {
                command: spec.command.clone(),
                source,
            })?;
            let pgid = child.id();
            srv.set_pid(pgid);
            if let Some(err) = child.stderr.take() {
                tasks.spawn(drain_stderr(
                    err,
                    spec.name.clone(),
                    crate::redact::configured_secrets(spec),
                ));
            }
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                stop_child(child, pgid, &spec.name).await;
                return Err(ConnectError::PipesMissing);
            };
            match handler.serve((stdout, stdin)).await {
                Ok(service) => Ok(Conn {
                    service,
                    child: Some(child),
                    pgid,
                }),
                Err(e) => {
                    // Prefer the exit status when the process died during the handshake.
                    let status =
                        tokio::time::timeout(Duration::from_millis(200), child.wait()).await;
                    stop_child(child, pgid, &spec.name).await;
                    srv.set_pid(None);
                    match status {
                        Ok(Ok(status)) => {
                            Err(ConnectError::ExitedDuringInitialize { status, error: e })
                        }
                        _ => Err(ConnectError::Initialize(e)),
                    }
                }
            }
        }
        Transport::Http => {
            let mut headers = HashMap::new();
            for (k, v) in &spec.headers {
                let bad = |e: BadHeader| ConnectError::Header {
                    name: k.clone(),
                    error: e,
                };
                let name = http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| bad(BadHeader::Name(e)))?;
                let value = http::HeaderValue::from_str(v).map_err(|e| bad(BadHeader::Value(e)))?;
                headers.insert(name, value);
            }
            let cfg = StreamableHttpClientTransportConfig::with_uri(spec.url.clone())
                .custom_headers(headers);
            let transport = StreamableHttpClientTransport::from_config(cfg);
            let service = handler
                .serve(transport)
                .await
                .map_err(ConnectError::Initialize)?;
            Ok(Conn::remote(service))
        }
        Transport::Sse => {
            let (sink, stream, stop) = crate::sse::connect(&spec.url, &spec.headers, tasks)
                .await
                .map_err(ConnectError::Sse)?;
            let res = handler.serve((sink, stream)).await;
            match res {
                // The adapter's tasks stop when the service drops its sink.
                Ok(service) => Ok(Conn::remote(service)),
                Err(e) => {
                    stop.cancel();
                    Err(ConnectError::Initialize(e))
                }
            }
        }
    }
}

/// Lists every tool (follows pagination).
pub(crate) async fn list_tools(peer: &Peer<RoleClient>) -> Result<Vec<ToolDef>, ServiceError> {
    let tools = peer.list_all_tools().await?;
    Ok(tools
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .filter_map(|v| tool_from_json(&v))
        .collect())
}

/// Drains a stdio server's stderr into the log, tagged with its name, rate-limited (a
/// burst of 100 lines, then 20 lines/s; dropped lines are counted). The server's configured
/// secrets (env and header values) are replaced by `[redacted]`: a server that echoes its
/// API key must not put it in our log.
async fn drain_stderr(err: impl AsyncRead + Unpin, name: String, secrets: Secrets) {
    const BURST: f64 = 100.0;
    const RATE: f64 = 20.0;
    let mut r = BufReader::new(err);
    let mut buf = Vec::new();
    let mut tokens = BURST;
    let mut last = Instant::now();
    let mut dropped: u64 = 0;
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * RATE).min(BURST);
        last = now;
        if tokens < 1.0 {
            if dropped == 0 {
                tracing::warn!(server = %name, "MCP server stderr rate-limited; dropping lines");
            }
            dropped += 1;
            continue;
        }
        tokens -= 1.0;
        buf.truncate(4096);
        let line = secrets.redact(String::from_utf8_lossy(&buf).trim_end());
        if dropped > 0 {
            tracing::info!(server = %name, dropped, "MCP server stderr resumed");
            dropped = 0;
        }
        tracing::info!(server = %name, line = %line, "MCP server stderr");
    }
    if dropped > 0 {
        tracing::info!(server = %name, dropped, "MCP server stderr closed after dropping lines");
    }
}

/// Why [`run_until_down`] returned.
enum Down {
    /// The server's token was cancelled (stop or hand-over).
    Cancelled,
    /// The connection went away; the server restarts.
    Lost(Lost),
}

/// How a live connection was lost (its words become the server's last error).
#[derive(Debug, thiserror::Error)]
enum Lost {
    /// The stdio process exited (its status or the wait's error).
    #[error("server process exited ({0})")]
    Exited(Exit),
    /// The transport reports itself closed.
    #[error("connection closed")]
    Closed,
    /// The liveness ping failed.
    #[error("connection lost: {0}")]
    PingFailed(#[source] ServiceError),
    /// The liveness ping did not answer.
    #[error("connection lost: ping timed out")]
    PingTimedOut,
}

/// How a stdio process ended: its status, or why waiting for it failed.
#[derive(Debug, thiserror::Error)]
enum Exit {
    /// Its exit status.
    #[error("{0}")]
    Status(std::process::ExitStatus),
    /// `wait` failed.
    #[error(transparent)]
    Wait(std::io::Error),
}

/// Waits until the connection goes away, re-listing tools on `list_changed`.
async fn run_until_down(srv: &Arc<Server>, conn: &mut Conn, opts: &ManagerOptions) -> Down {
    let peer = conn.service.peer().clone();
    loop {
        let child_exit = async {
            match conn.child.as_mut() {
                Some(c) => c.wait().await.map_or_else(Exit::Wait, Exit::Status),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = srv.cancel.cancelled() => return Down::Cancelled,
            st = child_exit => return Down::Lost(Lost::Exited(st)),
            _ = srv.relist.notified() => {
                // The re-list and the ping below run outside the select: each stays
                // cancellable, or a stop would wait out their timeouts.
                let listed = srv
                    .cancel
                    .run_until_cancelled(tokio::time::timeout(opts.connect_timeout, list_tools(&peer)))
                    .await;
                let Some(listed) = listed else {
                    return Down::Cancelled;
                };
                match listed {
                    Ok(Ok(tools)) => {
                        tracing::info!(server = %srv.spec.name, tools = tools.len(), "MCP tool list changed");
                        srv.set_tools(tools);
                    }
                    Ok(Err(e)) => tracing::warn!(server = %srv.spec.name, error = %srv.redact(&e.to_string()), "MCP re-list failed"),
                    Err(_) => tracing::warn!(server = %srv.spec.name, "MCP re-list timed out"),
                }
            }
            _ = srv.suspect.notified() => {
                if peer.is_transport_closed() {
                    return Down::Lost(Lost::Closed);
                }
                // Ping with a cheap request; a dead HTTP server fails it.
                let pinged = srv
                    .cancel
                    .run_until_cancelled(tokio::time::timeout(Duration::from_secs(5), peer.list_tools(None)))
                    .await;
                let Some(pinged) = pinged else {
                    return Down::Cancelled;
                };
                match pinged {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Down::Lost(Lost::PingFailed(e)),
                    Err(_) => return Down::Lost(Lost::PingTimedOut),
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if peer.is_transport_closed() {
                    return Down::Lost(Lost::Closed);
                }
            }
        }
    }
}

/// The supervisor: runs until the server's token is cancelled.
pub(crate) async fn supervise(
    srv: Arc<Server>,
    opts: ManagerOptions,
    tasks: TaskTracker,
    connector: Connector,
) {
    let name = srv.spec.name.clone();
    let mut attempt: u32 = 0;
    let mut was_ready = false;
    loop {
        if attempt > 0 {
            srv.lock().restarts += 1;
        }
        {
            let mut d = srv.lock();
            d.state = if was_ready {
                ServerState::Restarting
            } else if attempt == 0 {
                ServerState::Connecting
            } else {
                d.state
            };
        }
        srv.publish();
        let t0 = Instant::now();
        let res = tokio::select! {
            _ = srv.cancel.cancelled() => break,
            r = tokio::time::timeout(opts.connect_timeout, async {
                let mut conn = connector(srv.clone(), opts.clone(), tasks.clone()).await?;
                match list_tools(conn.service.peer()).await {
                    Ok(tools) => Ok((conn, tools)),
                    Err(e) => {
                        let pgid = conn.pgid;
                        conn.child.take().map(|c| tasks.spawn(async move { stop_child(c, pgid, "").await }));
                        conn.service.cancellation_token().cancel();
                        Err(ConnectError::ListTools(e))
                    }
                }
            }) => r,
        };
        let fail_state = if was_ready {
            ServerState::Restarting
        } else {
            ServerState::Failed
        };
        match res {
            Ok(Ok((mut conn, tools))) => {
                tracing::info!(
                    server = %name,
                    transport = srv.spec.transport.as_str(),
                    tools = tools.len(),
                    connect_ms = t0.elapsed().as_secs_f64() * 1000.0,
                    "MCP server ready"
                );
                {
                    let mut d = srv.lock();
                    d.state = ServerState::Ready;
                    d.tools = tools;
                    d.peer = Some(conn.service.peer().clone());
                    d.last_error = None;
                    d.warning = None;
                }
                srv.publish();
                attempt = 0;
                was_ready = true;
                let mut down = run_until_down(&srv, &mut conn, &opts).await;
                // A stdio transport that closed usually means the process died: say how.
                if let (Down::Lost(lost), Some(child)) = (&mut down, conn.child.as_mut())
                    && !matches!(lost, Lost::Exited(_))
                    && let Ok(Ok(st)) =
                        tokio::time::timeout(Duration::from_millis(300), child.wait()).await
                {
                    *lost = Lost::Exited(Exit::Status(st));
                }
                srv.lock().peer = None;
                match down {
                    Down::Cancelled => {
                        conn.stop(&name).await;
                        break;
                    }
                    Down::Lost(lost) => {
                        srv.set_error(ServerState::Restarting, &lost.to_string());
                        conn.stop(&name).await;
                        srv.set_pid(None);
                    }
                }
            }
            Ok(Err(e)) => srv.set_error(fail_state, &e.to_string()),
            Err(_) => srv.set_error(
                fail_state,
                &format!(
                    "connect timed out after {}s",
                    opts.connect_timeout.as_secs_f64()
                ),
            ),
        }
        // A failed attempt may have left a process behind (timeout mid-handshake).
        if let Some(pid) = srv.set_pid(None) {
            let _ = signal_group(pid, GroupSignal::Kill);
        }
        let exp = opts
            .backoff_min
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let delay = exp.min(opts.backoff_max);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = srv.cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    {
        let mut d = srv.lock();
        d.state = ServerState::Stopped;
        d.peer = None;
    }
    // Cancelled mid-connect: the dropped child was killed, its group not yet.
    if let Some(pid) = srv.set_pid(None) {
        let _ = signal_group(pid, GroupSignal::Kill);
    }
    srv.publish();
}

/// Connects to an in-memory [`crate::fake`] server that lives until `stop` is cancelled.
#[cfg(test)]
pub(crate) async fn connect_in_memory(
    srv: &Arc<Server>,
    opts: &ManagerOptions,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<Conn, ConnectError> {
    let (client, server) = tokio::io::duplex(1 << 16);
    tasks.spawn(crate::fake::serve(server, stop));
    let handler = Handler {
        relist: srv.relist.clone(),
        version: opts.client_version.clone(),
    };
    let service = handler
        .serve(tokio::io::split(client))
        .await
        .map_err(ConnectError::Initialize)?;
    Ok(Conn::remote(service))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::fake::Script;

    #[test]
    fn error_texts() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(3 << 8);
        let closed = || ClientInitializeError::ConnectionClosed("eof".into());
        let cases: [(Box<dyn std::error::Error>, &str); 8] = [
            (
                Box::new(ConnectError::ExitedDuringInitialize {
                    status,
                    error: closed(),
                }),
                "server exited during initialize (exit status: 3): connection closed: eof",
            ),
            (
                Box::new(ConnectError::Initialize(closed())),
                "initialize failed: connection closed: eof",
            ),
            (
                Box::new(ConnectError::Header {
                    name: "a b".into(),
                    error: http::HeaderName::from_bytes(b"a b").unwrap_err().into(),
                }),
                "header \"a b\": invalid HTTP header name",
            ),
            (
                Box::new(ConnectError::Header {
                    name: "x".into(),
                    error: http::HeaderValue::from_str("\n").unwrap_err().into(),
                }),
                "header \"x\": failed to parse header value",
            ),
            (
                Box::new(ConnectError::ListTools(ServiceError::TransportClosed)),
                "tools/list failed: Transport closed",
            ),
            (
                Box::new(Lost::Exited(Exit::Status(status))),
                "server process exited (exit status: 3)",
            ),
            (
                Box::new(Lost::Exited(Exit::Wait(std::io::Error::from_raw_os_error(
                    10,
                )))),
                "server process exited (No child processes (os error 10))",
            ),
            (
                Box::new(Lost::PingFailed(ServiceError::TransportClosed)),
                "connection lost: Transport closed",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    fn spec(command: &str) -> ServerSpec {
        ServerSpec {
            name: "s".into(),
            transport: Transport::Stdio,
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            url: String::new(),
            headers: BTreeMap::new(),
            config_file: PathBuf::from("/x/.mcp.json"),
        }
    }

    fn opts() -> ManagerOptions {
        let mut o = ManagerOptions::new(Vec::new(), PathBuf::from("/"));
        o.backoff_min = Duration::from_millis(250);
        o.backoff_max = Duration::from_secs(2);
        o.watch = false;
        o
    }

    /// Runs a supervisor for `spec(command)` on the script's connector.
    fn start(script: &Arc<Script>, command: &str) -> (Arc<Server>, TaskTracker) {
        let srv = Arc::new(Server::new(
            spec(command),
            Secrets::default(),
            CancellationToken::new(),
            Arc::default(),
            Arc::default(),
        ));
        let tasks = TaskTracker::new();
        tasks.spawn(supervise(
            srv.clone(),
            opts(),
            tasks.clone(),
            script.connector(),
        ));
        (srv, tasks)
    }

    #[tokio::test(start_paused = true)]
    async fn failed_connects_back_off_exponentially_up_to_the_cap() {
        let script = Script::new(&[("a", usize::MAX)]);
        let (srv, _tasks) = start(&script, "a");
        script.at(6000).await;
        let times: Vec<u128> = script.attempts().into_iter().map(|(_, t)| t).collect();
        // 250 ms doubling: +250, +500, +1000, then the 2 s cap.
        assert_eq!(times, vec![0, 250, 750, 1750, 3750, 5750]);
        {
            let d = srv.lock();
            assert_eq!(d.state, ServerState::Failed);
            assert_eq!(d.last_error.as_deref(), Some("initialize failed: nope"));
            assert_eq!(d.restarts, 5);
        }
        srv.cancel.cancel();
        let mut rx = srv.state_tx.subscribe();
        rx.wait_for(|s| *s == ServerState::Stopped).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_reconnects_after_the_first_backoff_step() {
        let script = Script::new(&[]);
        let (srv, _tasks) = start(&script, "a");
        let mut rx = srv.state_tx.subscribe();
        rx.wait_for(|s| *s == ServerState::Ready).await.unwrap();
        assert_eq!(srv.lock().tools.len(), 1);
        script.at(1200).await;
        script.server(0).cancel();
        rx.wait_for(|s| *s == ServerState::Restarting)
            .await
            .unwrap();
        let lost_at = script.now();
        // Noticed on the next 500 ms liveness tick.
        assert!(lost_at > 1200 && lost_at <= 1700, "lost at {lost_at}");
        assert_eq!(srv.lock().last_error.as_deref(), Some("connection closed"));
        rx.wait_for(|s| *s == ServerState::Ready).await.unwrap();
        let times: Vec<u128> = script.attempts().into_iter().map(|(_, t)| t).collect();
        // A server that was ready starts its backoff again at the minimum.
        assert_eq!(times, vec![0, lost_at + 250]);
        assert_eq!(srv.lock().restarts, 1);
        assert_eq!(srv.lock().last_error, None);
        srv.cancel.cancel();
        rx.wait_for(|s| *s == ServerState::Stopped).await.unwrap();
    }
}
