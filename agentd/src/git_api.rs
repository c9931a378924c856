//! Git watch routes: `GET /api/v0/git/watch?chat_id=<uuid>` (Coder's WebSocket: live branch,
//! origin and diff of the repos a chat touched) and the additive
//! `POST /api/v0/git/watch/paths` (record paths for a chat, as Coder's file endpoints do).
//!
//! Also wires process exits (`events.process_exited`) into the path store and exports the
//! scan metrics. Discovery, scanning and scheduling live in `gitwatch`; this module only
//! speaks the wire protocol and must not contain git logic.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::{get, post};
use gitwatch::{GitWatch, PathStore, Update};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::chat::{ChatIdentity, parse_uuid};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiWebSocket, Json};
use crate::events::{Events, ProcessExited};
use crate::metrics::{GIT_SCAN_BUCKETS, Histogram, Metrics};

/// WebSocket read limit (Coder: `1<<22`).
pub(crate) const READ_LIMIT: usize = 4 << 20;
/// Ping interval (Coder's `HeartbeatInterval`).
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(15);

/// The directory for git watch's throwaway index files: `<state dir>/gitwatch`, mode 0700,
/// emptied at start (files a killed daemon left). Never a predictable name in a shared
/// `/tmp`. A failure is logged; untracked diffs then fail visibly rather than fall back.
fn prepare_tmp_dir(state_dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = state_dir.join("gitwatch");
    let res = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .and_then(|()| {
            let m = std::fs::symlink_metadata(&dir)?;
            if !m.is_dir() {
                return Err(std::io::Error::other("not a directory"));
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            for e in std::fs::read_dir(&dir)? {
                let _ = std::fs::remove_file(e?.path());
            }
            Ok(())
        });
    if let Err(e) = res {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot prepare the git watch temp dir");
    }
    dir
}

/// The git watch subsystem as `agentd` holds it, and what the git handlers need (held in
/// an `Arc`: one pointer clone per request).
pub(crate) struct GitState {
    /// The watcher (path store, per-repo workers).
    pub watch: GitWatch,
    /// `--fs-timeout-ms`: bounds repository discovery of client paths.
    fs_timeout: Duration,
    /// Cancelled when the daemon starts shutting down: WebSockets close on it.
    daemon_shutdown: CancellationToken,
    /// Stops the process-exit feed ([`GitState::shutdown`]).
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl GitState {
    /// Builds the watcher, subscribes to process exits (when a runtime is running) and
    /// registers the metrics collector.
    pub(crate) fn new(
        config: &crate::config::ServeConfig,
        events: &Events,
        metrics: &Metrics,
        daemon_shutdown: CancellationToken,
    ) -> Arc<Self> {
        let bounds = &config.bounds;
        // Completed-scan durations, told by the watcher, rendered with the other git metrics.
        let durations = Arc::new(Mutex::new(Histogram::new(GIT_SCAN_BUCKETS)));
        let cfg = gitwatch::Config {
            env: config.child_env.clone(),
            tmp_dir: prepare_tmp_dir(&config.state_dir),
            path_limits: bounds.git_paths,
            max_repos: bounds.git_max_repos,
            fs_timeout: bounds.fs_timeout,
            scan_observer: {
                let durations = durations.clone();
                gitwatch::ScanObserver::new(move |d| crate::sync::lock(&durations).observe(d))
            },
            ..gitwatch::Config::default()
        };
        let api = Arc::new(Self {
            watch: GitWatch::new(cfg),
            fs_timeout: bounds.fs_timeout,
            daemon_shutdown,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let rx = events.subscribe_process_exited();
            let watch = api.watch.clone();
            let cancel = api.cancel.clone();
            api.tasks
                .spawn(async move { feed_process_exits(rx, watch.paths(), cancel).await });
        }
        let watch = api.watch.clone();
        metrics.register(Box::new(move |out: &mut String| {
            render_metrics(&watch, &durations, out)
        }));
        api
    }

    /// Stops the event feed and every scan worker (running git processes are killed).
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        self.watch.shutdown(Duration::from_secs(2)).await;
    }
}

/// Records each exited process's workdir for its chat and ancestors (or just notifies them
/// when it had none), until cancelled.
pub(crate) async fn feed_process_exits(
    mut rx: mpsc::UnboundedReceiver<ProcessExited>,
    paths: &PathStore,
    cancel: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        let Some(ev) = ev else { return };
        let mut ids = vec![ev.chat_id];
        ids.extend(ev.ancestors.iter().copied());
        match ev.workdir {
            Some(dir) => {
                paths.add_paths(&ids, &[dir]);
            }
            None => paths.notify(&ids),
        }
    }
}

/// The git routes, for any router state that holds a [`GitState`].
pub(crate) fn routes<S>() -> Router<S>
where
    Arc<GitState>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/v0/git/watch", get(watch))
        .route("/api/v0/git/watch/paths", post(add_paths).get(list_paths))
}

/// Agent → client message (`codersdk.WorkspaceAgentGitServerMessage`).
#[derive(Debug, Serialize)]
pub(crate) struct ServerMessage {
    /// `changes` or `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 scan time (changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<String>,
    /// Changed repos (changes only; empty for a heartbeat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepoChanges>>,
    /// Additive (not in Coder): the chat touched more repositories than one watch follows
    /// (`--git-max-repos`, default 64); only the most recently touched are reported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repositories_truncated: bool,
}

/// One repository (`codersdk.WorkspaceAgentRepoChanges`).
#[derive(Debug, Serialize)]
pub(crate) struct RepoChanges {
    /// Absolute worktree root.
    pub repo_root: String,
    /// Short branch name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// `remote.origin.url`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_origin: String,
    /// The working tree against HEAD.
    pub unified_diff: String,
    /// The repo vanished and is no longer watched.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

impl ServerMessage {
    /// A `changes` message for an update.
    pub(crate) fn changes(u: Update) -> Self {
        Self {
            kind: "changes",
            message: None,
            repositories_truncated: u.truncated,
            scanned_at: Some(crate::logging::rfc3339_nano(u.scanned_at)),
            repositories: Some(
                u.repositories
                    .into_iter()
                    .map(|r| RepoChanges {
                        repo_root: r.repo_root.to_string_lossy().into_owned(),
                        branch: r.branch,
                        remote_origin: r.remote_origin,
                        unified_diff: r.unified_diff,
                        removed: r.removed,
                    })
                    .collect(),
            ),
        }
    }

    /// An `error` message.
    pub(crate) fn error(message: &str) -> Self {
        Self {
            kind: "error",
            message: Some(message.to_owned()),
            scanned_at: None,
            repositories: None,
            repositories_truncated: false,
        }
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type", default)]
    kind: String,
}

async fn watch(
    ApiWebSocket(ws): ApiWebSocket,
    State(state): State<Arc<GitState>>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Response {
    let chat = q
        .get("chat_id")
        .and_then(|s| parse_uuid(s))
        .filter(|u| !u.is_nil());
    ws.max_message_size(READ_LIMIT)
        .max_frame_size(READ_LIMIT)
        .on_upgrade(move |socket| serve(socket, state, chat))
}

async fn serve(mut socket: WebSocket, state: Arc<GitState>, chat: Option<Uuid>) {
    tracing::debug!(chat_id = ?chat, "git watch connected");
    let mut sub = state.watch.subscribe(chat);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            _ = state.daemon_shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            u = sub.next() => {
                if send(&mut socket, &ServerMessage::changes(u)).await.is_err() {
                    break;
                }
            }
            m = socket.recv() => {
                let text = match m {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_slice::<ClientMessage>(&text) {
                    Ok(m) if m.kind == "refresh" => sub.refresh(),
                    _ => {
                        if send(&mut socket, &ServerMessage::error("unknown message type")).await.is_err() {
                            break;
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::debug!(chat_id = ?chat, "git watch disconnected");
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(msg).unwrap_or_default();
    socket.send(Message::Text(Utf8Bytes::from(text))).await
}

/// Ancestor chat ids one `POST /api/v0/git/watch/paths` may name (400 beyond).
pub(crate) const MAX_ANCESTORS: usize = 64;
/// Paths one `POST /api/v0/git/watch/paths` may carry (400 beyond).
pub(crate) const MAX_PATHS_PER_REQUEST: usize = 1024;
/// Longest accepted path in bytes (Linux `PATH_MAX`; 400 beyond).
pub(crate) const MAX_PATH_LEN: usize = 4096;

/// `POST /api/v0/git/watch/paths` body.
#[derive(Debug, Deserialize)]
pub(crate) struct AddPathsRequest {
    /// The chat; defaults to the request's `Coder-Chat-Id`.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Ancestors; default to the request's `Coder-Ancestor-Chat-Ids`.
    #[serde(default)]
    pub ancestor_chat_ids: Option<Vec<String>>,
    /// Absolute paths (relative ones are ignored).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `POST /api/v0/git/watch/paths` answer.
#[derive(Debug, Serialize)]
pub(crate) struct AddPathsResponse {
    /// Absolute paths recorded.
    pub accepted: usize,
    /// Repository roots the paths resolve to, sorted.
    pub repo_roots: Vec<String>,
}

async fn add_paths(
    State(state): State<Arc<GitState>>,
    identity: Option<axum::Extension<ChatIdentity>>,
    ApiJson(req): ApiJson<AddPathsRequest>,
) -> Result<Json<AddPathsResponse>, ApiError> {
    let header = identity.map(|axum::Extension(i)| i);
    let chat = match &req.chat_id {
        Some(s) => Some(
            parse_uuid(s)
                .ok_or_else(|| ApiError::bad_request("Invalid chat_id.").detail(s.clone()))?,
        ),
        None => header.as_ref().and_then(ChatIdentity::effective_id),
    }
    .filter(|u| !u.is_nil())
    .ok_or_else(|| {
        ApiError::bad_request("Missing chat id.")
            .detail("pass chat_id in the body or the Coder-Chat-Id header")
    })?;
    let ancestors: Vec<Uuid> = match &req.ancestor_chat_ids {
        Some(list) => list.iter().filter_map(|s| parse_uuid(s)).collect(),
        None => header.map(|h| h.ancestors).unwrap_or_default(),
    };
    if ancestors.len() > MAX_ANCESTORS {
        return Err(
            ApiError::bad_request("Too many ancestor chat ids.").detail(format!(
                "{} given, at most {MAX_ANCESTORS} per request",
                ancestors.len()
            )),
        );
    }
    if req.paths.len() > MAX_PATHS_PER_REQUEST {
        return Err(ApiError::bad_request("Too many paths.").detail(format!(
            "{} given, at most {MAX_PATHS_PER_REQUEST} per request",
            req.paths.len()
        )));
    }
    if let Some(p) = req.paths.iter().find(|p| p.len() > MAX_PATH_LEN) {
        return Err(ApiError::bad_request("Path too long.")
            .detail(format!("{} bytes, at most {MAX_PATH_LEN}", p.len())));
    }
    let mut ids = vec![chat];
    ids.extend(ancestors);
    // Moved, not copied: a 4 MiB body is never held twice over.
    let paths: Vec<PathBuf> = req.paths.into_iter().map(PathBuf::from).collect();
    let (accepted, paths) = state.watch.paths().add_owned(&ids, paths);
    // Discovery reads client-chosen paths: on the blocking pool, bounded in time (a hung
    // mount costs a blocking thread, never an async worker or the answer).
    let timeout = state.fs_timeout;
    let found = gitwatch::blocking_fs(timeout, move || {
        paths
            .iter()
            .filter_map(|p| gitwatch::discover(p))
            .map(|l| l.root.to_string_lossy().into_owned())
            .collect::<BTreeSet<String>>()
    })
    .await;
    let roots = found.map_err(|e| fs_error(&e, accepted))?;
    Ok(Json(AddPathsResponse {
        accepted,
        repo_roots: roots.into_iter().collect(),
    }))
}

/// A file-system call on client paths that timed out (or could not start: too many stuck):
/// 504 `{message, detail}`.
fn fs_error(e: &gitwatch::FsError, accepted: usize) -> ApiError {
    let message = match e {
        gitwatch::FsError::Timeout(_) => "File-system call timed out.",
        _ => "File-system calls are stuck.",
    };
    ApiError::new(axum::http::StatusCode::GATEWAY_TIMEOUT, message).detail(format!(
        "{e}; the {accepted} paths were recorded, their repositories are not resolved yet"
    ))
}

/// `GET /api/v0/git/watch/paths?chat_id=<uuid>` answer (additive, for inspection: it does
/// not count as a use of the chat).
#[derive(Debug, Serialize)]
pub(crate) struct ListPathsResponse {
    /// The chat.
    pub chat_id: String,
    /// Its stored paths, sorted.
    pub paths: Vec<String>,
}

async fn list_paths(
    State(state): State<Arc<GitState>>,
    identity: Option<axum::Extension<ChatIdentity>>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ListPathsResponse>, ApiError> {
    let chat = match q.get("chat_id") {
        Some(s) => Some(
            parse_uuid(s)
                .ok_or_else(|| ApiError::bad_request("Invalid chat_id.").detail(s.clone()))?,
        ),
        None => identity.and_then(|axum::Extension(i)| i.effective_id()),
    }
    .filter(|u| !u.is_nil())
    .ok_or_else(|| {
        ApiError::bad_request("Missing chat id.")
            .detail("pass chat_id in the query or the Coder-Chat-Id header")
    })?;
    Ok(Json(ListPathsResponse {
        chat_id: chat.to_string(),
        paths: state
            .watch
            .paths()
            .peek(chat)
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    }))
}

fn render_metrics(watch: &GitWatch, durations: &Mutex<Histogram>, out: &mut String) {
    use std::fmt::Write;
    let p = watch.paths().stats();
    for (name, help, kind, v) in [
        (
            "agentd_git_path_store_chats",
            "Chats holding paths in the git path store.",
            "gauge",
            p.chats as u64,
        ),
        (
            "agentd_git_path_store_paths",
            "Distinct paths in the git path store.",
            "gauge",
            p.paths as u64,
        ),
        (
            "agentd_git_path_store_bytes",
            "Accounted bytes of the git path store.",
            "gauge",
            p.bytes as u64,
        ),
        (
            "agentd_git_path_store_chats_evicted_total",
            "Chats the git path store forgot (least recently used).",
            "counter",
            p.chats_evicted,
        ),
        (
            "agentd_git_path_store_paths_evicted_total",
            "Paths dropped from a chat over its path cap.",
            "counter",
            p.paths_evicted,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {v}");
    }
    let s = watch.stats();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    };
    counter(
        "agentd_git_scans_total",
        "Git scans started (one per repo per trigger, shared by all subscribers).",
        s.scans_total,
    );
    counter(
        "agentd_git_scans_failed_total",
        "Git scans that failed or timed out.",
        s.scans_failed,
    );
    counter(
        "agentd_git_scans_cancelled_total",
        "Git scans cancelled by a newer trigger.",
        s.scans_cancelled,
    );
    counter(
        "agentd_git_scans_unchanged_total",
        "Git scans whose fingerprint was unchanged (no diff generated).",
        s.scans_unchanged,
    );
    let _ = writeln!(
        out,
        "# HELP agentd_git_repos_watched Repositories with a live scan worker."
    );
    let _ = writeln!(out, "# TYPE agentd_git_repos_watched gauge");
    let _ = writeln!(out, "agentd_git_repos_watched {}", s.repos_watched);
    crate::metrics::header(
        out,
        "agentd_git_scan_duration_seconds",
        "histogram",
        "Duration of completed git scans.",
    );
    crate::sync::lock(durations).render(out, "agentd_git_scan_duration_seconds", "");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn process_exits_feed_the_path_store_for_chat_and_ancestors() {
        let events = Events::default();
        let store = Arc::new(PathStore::new());
        let cancel = CancellationToken::new();
        let (chat, parent) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let mut parent_rx = store.subscribe(parent);
        let task = {
            let rx = events.subscribe_process_exited();
            let store = store.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { feed_process_exits(rx, &store, cancel).await })
        };
        events.publish_process_exited(&ProcessExited {
            chat_id: chat,
            ancestors: vec![parent],
            workdir: Some("/work/repo/./sub/".into()),
        });
        parent_rx.changed().await.unwrap();
        let want: Vec<PathBuf> = vec!["/work/repo/sub".into()];
        assert_eq!(store.paths(chat), want);
        assert_eq!(store.paths(parent), want);
        // No workdir: only a notification.
        events.publish_process_exited(&ProcessExited {
            chat_id: chat,
            ancestors: vec![parent],
            workdir: None,
        });
        parent_rx.changed().await.unwrap();
        assert_eq!(store.paths(parent), want);
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn wire_shapes_match_coder() {
        let e = serde_json::to_string(&ServerMessage::error("unknown message type")).unwrap();
        assert_eq!(e, r#"{"type":"error","message":"unknown message type"}"#);
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        let hb = ServerMessage::changes(Update {
            scanned_at: t,
            repositories: vec![],
            truncated: false,
        });
        assert_eq!(
            serde_json::to_string(&hb).unwrap(),
            r#"{"type":"changes","scanned_at":"1970-01-01T00:00:01.5Z","repositories":[]}"#
        );
        let m = ServerMessage::changes(Update {
            scanned_at: t,
            repositories: vec![
                gitwatch::RepoChange {
                    repo_root: "/r".into(),
                    branch: "main".into(),
                    remote_origin: String::new(),
                    unified_diff: "d".into(),
                    removed: false,
                },
                gitwatch::RepoChange {
                    repo_root: "/gone".into(),
                    branch: String::new(),
                    remote_origin: String::new(),
                    unified_diff: String::new(),
                    removed: true,
                },
            ],
            truncated: false,
        });
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"changes","scanned_at":"1970-01-01T00:00:01.5Z","repositories":[{"repo_root":"/r","branch":"main","unified_diff":"d"},{"repo_root":"/gone","unified_diff":"","removed":true}]}"#
        );
    }
}
