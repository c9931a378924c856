//! The process API (`/api/v0/processes/...`), wire-compatible with Coder's `agentproc`:
//! start, list, output (snapshot, `?wait=true` long-poll, opt-in `?since=` incremental
//! reads) and signal, with Coder's status codes, error strings and chat isolation.
//!
//! This module only translates between JSON and [`agentproc::Supervisor`]; it must not
//! spawn, buffer or signal anything itself. Additions over Coder are `omitempty` fields
//! (`exit_signal`, `pid`, `descendants_running`, `descendant_pids`, `next_offset`,
//! `gap_bytes`) and statuses Coder never produced for a well-formed request (400 for a
//! missing working directory, 429 at the running-process cap).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::Router;
use axum::extract::{FromRef, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agentproc::{
    GroupSignal, Priority, Process, SignalError, SpawnStep, StartError, StartRequest, Supervisor,
};

use crate::chat::ChatIdentity;
use crate::config::ServeConfig;
use crate::error::{ApiError, ApiJson, ApiQuery, Json, PathParam, json_response};
use crate::events::{Events, ProcessExited};
use crate::metrics::Metrics;

/// Grace between TERM and KILL of every process group at shutdown.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// Coder's `maxListProcesses`.
const MAX_LIST: usize = 10;
/// Longest a containment scan or signal may take before the request gives up on it.
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the process handlers need: the supervisor, the event bus (exits feed the git
/// watcher), the daemon's shutdown signal and a few configuration values. Held in an `Arc`:
/// one pointer clone per request.
pub(crate) struct ProcState {
    /// The process supervisor.
    pub procs: Supervisor,
    /// Process exits are published here.
    pub events: Events,
    /// Cancelled when the daemon starts shutting down; long-polls answer early on it.
    shutdown: tokio_util::sync::CancellationToken,
    /// `--fs-timeout-ms`: bounds the check of a client-chosen workdir.
    fs_timeout: Duration,
    /// The default working directory (named in start-failure details).
    workdir: PathBuf,
    /// Longest `?wait=true` long-poll.
    max_wait: Duration,
}

impl ProcState {
    /// Builds the supervisor from the daemon's configuration and registers its metrics.
    pub(crate) fn new(
        config: &ServeConfig,
        metrics: &Metrics,
        events: Events,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            procs: supervisor(config, metrics),
            events,
            shutdown,
            fs_timeout: config.bounds.fs_timeout,
            workdir: config.workdir.clone(),
            max_wait: config.processes.max_wait,
        }
    }
}

/// Builds the supervisor from the daemon's configuration and registers its metrics.
fn supervisor(config: &ServeConfig, metrics: &Metrics) -> Supervisor {
    let s = &config.processes;
    let mut c = agentproc::Config::new(config.child_env.clone(), config.workdir.clone());
    if !s.default_child_env {
        c.default_env.clear();
    }
    c.home = config.home.clone();
    let (own_oom, own_nice) = Priority::own();
    c.priority = Priority::coder_rules(own_oom, own_nice, s.oom_score, s.nice_score);
    c.max_running = s.max_running;
    c.retention = s.retention;
    c.sweep_interval = s.sweep_interval;
    c.spread = s.spread;
    c.containment = s.containment;
    c.max_exited = s.max_exited;
    let sup = Supervisor::new(c);
    let m = sup.clone();
    metrics.register(Box::new(move |out: &mut String| {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP agentd_processes_running Processes whose shell is running.\n\
             # TYPE agentd_processes_running gauge\n\
             agentd_processes_running {}\n\
             # HELP agentd_processes_started_total Processes started since the daemon started.\n\
             # TYPE agentd_processes_started_total counter\n\
             agentd_processes_started_total {}\n\
             # HELP agentd_processes_counted Processes counted against --max-processes (running shells and exited ones whose descendants live).\n\
             # TYPE agentd_processes_counted gauge\n\
             agentd_processes_counted {}\n\
             # HELP agentd_process_containment How process trees are contained (1 for the mode in effect).\n\
             # TYPE agentd_process_containment gauge\n\
             agentd_process_containment{{mode=\"cgroup\"}} {}\n\
             agentd_process_containment{{mode=\"subreaper\"}} {}",
            m.running_count(),
            m.started_total(),
            m.counted(),
            u8::from(m.containment() == agentproc::ContainMode::Cgroup),
            u8::from(m.containment() == agentproc::ContainMode::Subreaper),
        );
    }));
    sup
}

/// The process routes, for any router state that holds a [`ProcState`].
pub(crate) fn routes<S>() -> Router<S>
where
    Arc<ProcState>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/v0/processes/start", post(start))
        .route("/api/v0/processes/list", get(list))
        .route("/api/v0/processes/{id}/output", get(output))
        .route("/api/v0/processes/{id}/signal", post(signal))
}

/// `StartProcessRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartBody {
    command: Option<String>,
    workdir: Option<String>,
    env: Option<HashMap<String, String>>,
    background: Option<bool>,
}

/// `StartProcessResponse`.
#[derive(Debug, Serialize)]
struct StartResponse {
    id: String,
    started: bool,
}

/// A start failure (Coder's shape plus `spawn_error` when `sh` could not start).
#[derive(Debug, Serialize)]
struct StartFailure {
    message: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    spawn_error: Option<String>,
}

/// `ProcessTruncation`.
#[derive(Debug, Serialize)]
struct TruncationDto {
    original_bytes: u64,
    retained_bytes: u64,
    omitted_bytes: u64,
    strategy: &'static str,
}

/// `ProcessInfo`, plus additive fields.
#[derive(Debug, Serialize)]
struct ProcessInfo {
    id: String,
    command: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    workdir: String,
    background: bool,
    running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    started_at_unix: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exited_at_unix: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_signal: Option<String>,
    pid: u32,
}

#[derive(Debug, Serialize)]
struct ListResponse {
    processes: Vec<ProcessInfo>,
}

/// `ProcessOutputResponse`, plus additive fields.
#[derive(Debug, Serialize)]
struct OutputResponse {
    output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<TruncationDto>,
    running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_signal: Option<String>,
    pid: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    descendants_running: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    descendant_pids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gap_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignalBody {
    signal: Option<String>,
}

#[derive(Debug, Serialize)]
struct Message {
    message: String,
}

/// Go's `%q` for the ids and signals that appear in messages.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Process {} not found.", quote(id)))
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn effective_chat(chat: &Option<Extension<ChatIdentity>>) -> Option<uuid::Uuid> {
    chat.as_ref().and_then(|c| c.effective_id())
}

/// Coder's rule: a chat request cannot see another chat's process; a process started
/// without a chat is visible to every request.
fn hidden_from(proc: &Process, chat: Option<uuid::Uuid>) -> bool {
    match (chat, &proc.chat_id) {
        (Some(c), Some(p)) => *p != c.to_string(),
        _ => false,
    }
}

/// Go's decoder matches keys case-insensitively when there is no exact match.
fn fold_keys(v: Value, fields: &[&str]) -> Value {
    let Value::Object(map) = v else { return v };
    let mut out = serde_json::Map::new();
    // One pass, moving the values: an exact key always wins, a folded one only fills a gap.
    for (k, val) in map {
        if fields.contains(&k.as_str()) {
            out.insert(k, val);
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k))
            && !out.contains_key(*f)
        {
            out.insert((*f).to_owned(), val);
        }
    }
    Value::Object(out)
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, fields: &[&str]) -> Result<T, ApiError> {
    serde_json::from_value(fold_keys(v, fields)).map_err(|e| {
        ApiError::bad_request("Request body must be valid JSON.").detail(e.to_string())
    })
}

async fn start(
    State(state): State<Arc<ProcState>>,
    chat: Option<Extension<ChatIdentity>>,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let body: StartBody = match decode(body, &["command", "workdir", "env", "background"]) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let command = body.command.unwrap_or_default();
    if command.is_empty() {
        return ApiError::bad_request("Command is required.").into_response();
    }
    let procs = &state.procs;
    let chat_id = effective_chat(&chat);
    let ancestors = chat
        .as_ref()
        .map(|c| c.ancestors.clone())
        .unwrap_or_default();
    let workdir = body.workdir.filter(|w| !w.is_empty()).map(PathBuf::from);
    let id = uuid::Uuid::new_v4().to_string();

    let span = tracing::info_span!(
        parent: None,
        "process",
        process_id = %id,
        chat_id = tracing::field::Empty,
        ancestor_chat_ids = tracing::field::Empty,
    );
    let on_exit: Option<agentproc::OnExit> = chat_id.map(|c| {
        crate::chat::record_chat(&span, c, &ancestors);
        let events = state.events.clone();
        // Coder records the directory only when one was asked for (and just notifies
        // otherwise); we record the resolved one in both cases, so a chat that commits in
        // the default directory sees that repo watched.
        Box::new(move |p: &Process, _: &agentproc::Exit| {
            events.publish_process_exited(&ProcessExited {
                chat_id: c,
                ancestors,
                workdir: (!p.workdir.as_os_str().is_empty()).then(|| p.workdir.clone()),
            });
        }) as agentproc::OnExit
    });

    let mut env: Vec<(String, String)> = body.env.unwrap_or_default().into_iter().collect();
    env.sort();
    let req = StartRequest {
        id,
        command,
        workdir,
        env,
        background: body.background.unwrap_or(false),
        chat_id: chat_id.map(|c| c.to_string()),
        span,
        on_exit,
    };
    // A client-chosen workdir is checked on the blocking pool first, bounded in time: a
    // hung mount answers 504 instead of stalling an async worker (`start` checks it again,
    // then from the kernel's cache).
    let checked = match &req.workdir {
        Some(w) => {
            let (procs, w) = (procs.clone(), w.clone());
            let timeout = state.fs_timeout;
            match tokio::time::timeout(
                timeout,
                tokio::task::spawn_blocking(move || procs.resolve_workdir(Some(&w)).map(drop)),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return ApiError::internal("Failed to start process.")
                        .detail(e.to_string())
                        .into_response();
                }
                Err(_) => {
                    return ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "File-system call timed out.",
                    )
                    .detail(format!(
                        "checking the working directory {} did not finish within {} ms \
                         (hung mount?); nothing was started",
                        quote(
                            &req.workdir
                                .as_deref()
                                .unwrap_or_else(|| std::path::Path::new(""))
                                .display()
                                .to_string()
                        ),
                        timeout.as_millis()
                    ))
                    .into_response();
                }
            }
        }
        None => Ok(()),
    };
    match checked.and_then(|()| procs.start(req)) {
        Ok(p) => Json(StartResponse {
            id: p.id.clone(),
            started: true,
        })
        .into_response(),
        Err(e) => start_failure(&e, &state.workdir),
    }
}

/// Coder's words for a start failure (Go's `os`/`exec` wording where chatd matches on it).
fn start_error_words(e: &StartError) -> String {
    match e {
        StartError::Closed => "manager is closed".into(),
        StartError::TooMany { limit } => format!("{limit} processes are already running"),
        StartError::Workdir { path, source } => {
            let reason = match source.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".into(),
                std::io::ErrorKind::NotADirectory => "not a directory".into(),
                std::io::ErrorKind::PermissionDenied => "permission denied".into(),
                _ => source.to_string(),
            };
            format!("chdir {}: {reason}", path.display())
        }
        StartError::DuplicateId(id) => format!("process id {id} is already in use"),
        StartError::Spawn {
            step: SpawnStep::Exec,
            source,
        } if source.kind() == std::io::ErrorKind::NotFound => {
            "exec: \"sh\": executable file not found in $PATH".into()
        }
        StartError::Spawn {
            step: SpawnStep::Cgroup,
            source,
        } => format!("creating the process's cgroup: {source}"),
        StartError::Spawn { source, .. } => source.to_string(),
    }
}

/// The answer to a failed start; `workdir` is the directory relative paths join.
fn start_failure(e: &StartError, workdir: &std::path::Path) -> Response {
    let words = start_error_words(e);
    match e {
        StartError::Closed => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &StartFailure {
                message: "Failed to start process.",
                detail: words,
                spawn_error: None,
            },
        ),
        StartError::TooMany { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many running processes.")
                .detail(format!(
                    "{words} (the limit is set with --max-processes); wait for some to exit \
                     or signal them"
                ))
                .into_response()
        }
        StartError::Workdir { path, source } => {
            let what = match source.kind() {
                std::io::ErrorKind::NotFound => "does not exist",
                std::io::ErrorKind::NotADirectory => "is not a directory",
                std::io::ErrorKind::PermissionDenied => "is not accessible",
                _ => "cannot be used",
            };
            ApiError::bad_request(format!(
                "Working directory {} {what}.",
                quote(&path.display().to_string())
            ))
            .detail(format!(
                "{words} (relative paths are resolved against {})",
                workdir.display()
            ))
            .into_response()
        }
        StartError::Spawn { .. } | StartError::DuplicateId(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &StartFailure {
                message: "Failed to start process.",
                detail: format!("start process: {words}"),
                spawn_error: Some(words),
            },
        ),
    }
}

fn info(p: &Process) -> ProcessInfo {
    let exit = p.exit();
    ProcessInfo {
        id: p.id.clone(),
        command: p.command.clone(),
        workdir: p.workdir.display().to_string(),
        background: p.background,
        running: exit.is_none(),
        exit_code: exit.map(|e| e.code),
        started_at_unix: unix_secs(p.started_at),
        exited_at_unix: exit.map(|e| unix_secs(e.at)),
        exit_signal: exit.and_then(|e| e.signal_name()),
        pid: p.pid,
    }
}

async fn list(
    State(state): State<Arc<ProcState>>,
    chat: Option<Extension<ChatIdentity>>,
) -> Json<ListResponse> {
    let chat = effective_chat(&chat).map(|c| c.to_string());
    let mut procs: Vec<(bool, u64, Arc<Process>)> = state
        .procs
        .list()
        .into_iter()
        .filter(|p| match &chat {
            Some(c) => p.chat_id.as_deref() == Some(c.as_str()),
            None => true,
        })
        .map(|p| (p.running(), p.seq, p))
        .collect();
    // Running first, then newest first; start order breaks ties deterministically.
    procs.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    Json(ListResponse {
        processes: procs
            .iter()
            .take(MAX_LIST)
            .map(|(_, _, p)| info(p))
            .collect(),
    })
}

struct OutputQuery {
    wait: bool,
    since: Option<u64>,
}

/// The output query from the decoded parameters (as Go's `URL.Query()` gives them).
fn parse_query(params: &HashMap<String, String>) -> Result<OutputQuery, ApiError> {
    let since = match params.get("since") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| {
            ApiError::bad_request("Invalid \"since\" query parameter.").detail(format!(
                "since must be a byte offset (a non-negative integer), got {}",
                quote(v)
            ))
        })?),
    };
    Ok(OutputQuery {
        // Coder: only the exact lowercase `true` turns waiting on.
        wait: params.get("wait").is_some_and(|v| v == "true"),
        since,
    })
}

async fn output(
    State(state): State<Arc<ProcState>>,
    chat: Option<Extension<ChatIdentity>>,
    PathParam(id): PathParam,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<OutputResponse>, ApiError> {
    let q = parse_query(&params)?;
    let Some(proc) = state.procs.get(&id) else {
        return Err(not_found(&id));
    };
    if hidden_from(&proc, effective_chat(&chat)) {
        return Err(not_found(&id));
    }
    if q.wait {
        let max = state.max_wait;
        let done = async {
            match q.since {
                Some(n) => proc.wait_output_after(n).await,
                None => proc.wait_exit().await,
            }
        };
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep(max) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
    let (output, truncated, exit, closed, next_offset, gap) = match q.since {
        Some(n) => {
            let (r, exit, closed) = proc.read_since(n);
            let gap = (r.gap_bytes > 0).then_some(r.gap_bytes);
            (r.output, None, exit, closed, Some(r.next_offset), gap)
        }
        None => {
            let v = proc.output();
            let t = v.truncation.map(|t| TruncationDto {
                original_bytes: t.original_bytes,
                retained_bytes: t.retained_bytes,
                omitted_bytes: t.omitted_bytes,
                strategy: t.strategy.as_str(),
            });
            (v.output, t, v.exit, v.closed, None, None)
        }
    };
    let descendants = if exit.is_none() {
        Vec::new()
    } else if state.procs.containment() == agentproc::ContainMode::Subreaper {
        // A /proc scan, which reads other processes' environments: off the async workers,
        // and bounded (a process stuck in the kernel can stall such a read).
        let p = proc.clone();
        let scan = tokio::task::spawn_blocking(move || p.group_members());
        match tokio::time::timeout(SCAN_TIMEOUT, scan).await {
            Ok(Ok(pids)) => pids,
            _ => Vec::new(),
        }
    } else {
        // cgroup mode: one read of the leaf's `cgroup.procs`, synchronous on purpose (kernfs
        // answers from the kernel's own tables and never waits on another process; cheaper
        // than the hop to the blocking pool on every read of an exited process).
        proc.group_members()
    };
    Ok(Json(OutputResponse {
        output,
        truncated,
        running: exit.is_none(),
        exit_code: exit.map(|e| e.code),
        exit_signal: exit.and_then(|e| e.signal_name()),
        pid: proc.pid,
        descendants_running: !descendants.is_empty() || (exit.is_some() && !closed),
        descendant_pids: descendants,
        next_offset,
        gap_bytes: gap,
    }))
}

async fn signal(
    State(state): State<Arc<ProcState>>,
    chat: Option<Extension<ChatIdentity>>,
    PathParam(id): PathParam,
    req: Request,
) -> Result<Json<Message>, ApiError> {
    // Coder checks chat isolation before it reads the body.
    let proc = state.procs.get(&id);
    if let Some(p) = &proc
        && hidden_from(p, effective_chat(&chat))
    {
        return Err(not_found(&id));
    }
    let ApiJson(v) = ApiJson::<Value>::from_request(req, &()).await?;
    let body: SignalBody = decode(v, &["signal"])?;
    let name = body.signal.unwrap_or_default();
    let sig = match name.as_str() {
        "" => return Err(ApiError::bad_request("Signal is required.")),
        "kill" => GroupSignal::Kill,
        "terminate" => GroupSignal::Term,
        other => {
            return Err(ApiError::bad_request(format!(
                "Unsupported signal {}. Use \"kill\" or \"terminate\".",
                quote(other)
            )));
        }
    };
    let Some(proc) = proc else {
        return Err(not_found(&id));
    };
    // Freezing a cgroup or scanning /proc may block: not on an async worker.
    let (procs, p) = (state.procs.clone(), proc.clone());
    let sent = tokio::task::spawn_blocking(move || procs.signal(&p, sig));
    let res = match tokio::time::timeout(SCAN_TIMEOUT, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(SignalError::Os(std::io::Error::other(e))),
        Err(_) => Err(SignalError::Os(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("still signalling after {} s", SCAN_TIMEOUT.as_secs()),
        ))),
    };
    match res {
        Ok(()) => Ok(Json(Message {
            message: format!("Signal {} sent to process {}.", quote(&name), quote(&id)),
        })),
        Err(SignalError::NotRunning) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Process {} is not running.", quote(&id)),
        )),
        Err(SignalError::Os(e)) => {
            let verb = if sig == GroupSignal::Kill {
                "kill"
            } else {
                "terminate"
            };
            Err(ApiError::internal("Failed to signal process.")
                .detail(format!("{verb} process: {e}")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn state(workdir: &std::path::Path) -> crate::server::AppState {
        let config = ServeConfig {
            listen: vec![],
            socket: "/nonexistent.sock".into(),
            workdir: workdir.to_path_buf(),
            state_dir: "/tmp".into(),
            auth_token: None,
            log_format: crate::cli::LogFormat::Json,
            log_filter: "info".into(),
            child_env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            context: Default::default(),
            home: None,
            processes: Default::default(),
            mcp: Default::default(),
            bounds: Default::default(),
            net: Default::default(),
        };
        crate::server::AppState::new(config, tokio_util::sync::CancellationToken::new())
    }

    async fn post(app: &Router, chat: Option<&str>, anc: &str, body: &str) -> StatusCode {
        let mut r = axum::http::Request::post("/api/v0/processes/start");
        if let Some(c) = chat {
            r = r
                .header("Coder-Chat-Id", c)
                .header("Coder-Ancestor-Chat-Ids", anc);
        }
        app.clone()
            .oneshot(r.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn chat_process_exit_is_published() {
        let dir = std::env::temp_dir();
        let st = state(&dir);
        let mut rx = st.procs.events.subscribe_process_exited();
        let app = crate::server::routes(st.clone(), false);
        let chat = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";
        let parent = "8d0f5a3e-4c1b-4f7a-9a2e-6b5c4d3e2f1a";
        // Not a chat request: no event.
        assert_eq!(
            post(&app, None, "", r#"{"command":"true"}"#).await,
            StatusCode::OK
        );
        // Empty workdir: the resolved default directory is recorded (Coder only notifies,
        // EmptyWorkDir_StillNotifies; recording also notifies).
        let anc = format!("[\"{parent}\"]");
        assert_eq!(
            post(&app, Some(chat), &anc, r#"{"command":"true"}"#).await,
            StatusCode::OK
        );
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .expect("an event");
        assert_eq!(ev.chat_id.to_string(), chat);
        assert_eq!(
            ev.ancestors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![parent.to_owned()]
        );
        assert_eq!(ev.workdir, Some(dir.clone()));
        // With a (relative) workdir: the resolved directory.
        let body = r#"{"command":"true","workdir":"."}"#;
        assert_eq!(post(&app, Some(chat), "null", body).await, StatusCode::OK);
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .expect("an event");
        assert_eq!(ev.workdir, Some(dir.join(".")));
        assert!(ev.ancestors.is_empty());
        st.shutdown_subsystems().await;
    }

    #[test]
    fn keys_fold_like_go() {
        let v = fold_keys(
            serde_json::json!({"Command": "a", "WORKDIR": "/x", "other": 1}),
            &["command", "workdir"],
        );
        assert_eq!(v, serde_json::json!({"command": "a", "workdir": "/x"}));
        let v = fold_keys(
            serde_json::json!({"Command": "a", "command": "b"}),
            &["command"],
        );
        assert_eq!(v, serde_json::json!({"command": "b"}));
        let v = fold_keys(
            serde_json::json!({"command": "b", "Command": "a", "COMMAND": "c"}),
            &["command"],
        );
        assert_eq!(v, serde_json::json!({"command": "b"}));
    }

    #[test]
    fn query_parsing() {
        let parse = |raw: &str| {
            let uri: axum::http::Uri = format!("/x?{raw}").parse().unwrap();
            let params = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri)
                .unwrap()
                .0;
            parse_query(&params)
        };
        assert!(parse("wait=true").is_ok_and(|q| q.wait));
        assert!(parse("wait=TRUE").is_ok_and(|q| !q.wait));
        assert!(parse("wait=1").is_ok_and(|q| !q.wait));
        assert!(parse("since=12&wait=true").is_ok_and(|q| q.since == Some(12)));
        assert!(parse("since=%31%32").is_ok_and(|q| q.since == Some(12)));
        assert!(parse("since=-1").is_err());
        assert!(parse("").is_ok_and(|q| !q.wait && q.since.is_none()));
    }
}
