//! File API routes (Coder's `agent/agentfiles`, mounted under `/api/v0`): `GET read-file`,
//! `GET read-file-lines`, `POST write-file`, `POST edit-files`, `GET resolve-path`,
//! `POST list-directory`. Go-style query parsing (`+` is a space, unknown or repeated
//! parameters are 400, `0` is literal), Coder's JSON shapes and strings.
//!
//! Every file-system call runs on the blocking pool with `--fs-timeout-ms` (`gitwatch`'s
//! `blocking_fs`; a timeout is a 504). Writers of one resolved file are serialized here
//! (`PathLocks`), so concurrent edits never lose an update. Successful writes and edits
//! record the caller paths for the chat and its ancestors in the git path store. edit-files
//! runs its matching and diffs in one blocking call that writes nothing (a timeout there
//! cancels it and is a truthful 504) and its commit in a second. The file logic lives in
//! `agentfiles`; this module only speaks the wire.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use agentfiles::edit::{Edit, FileEdits};
use agentfiles::write::{Journal, Staged, Target};
use agentfiles::{FileError, Kind};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use crate::chat::ChatIdentity;
use crate::error::{ApiError, ApiJson, Json, json_response};

/// Largest write-file body (beyond: 413).
pub(crate) const WRITE_LIMIT: u64 = 128 << 20;
/// write-file hands the body to the disk in chunks of this size.
const WRITE_CHUNK: usize = 256 << 10;
/// read-file sends files up to this size in one piece, larger ones streamed in chunks.
const READ_CHUNK: usize = 256 << 10;
/// A write-file body that sends nothing for this long is abandoned (the temp is removed).
pub(crate) const BODY_IDLE: Duration = Duration::from_secs(60);

/// File-API calls on the blocking pool at once; more wait (asynchronously) for a slot, so a
/// burst of requests queues instead of exhausting `gitwatch`'s in-flight cap (a 504).
const MAX_FS_CALLS: usize = 32;

/// What the file handlers need: per-file writer locks, the temp-file journal, the
/// blocking-call slots, the git watch (files a chat touches are recorded in its path
/// store) and a few configuration values. Held in an `Arc`: one pointer clone per request.
pub(crate) struct FilesState {
    journal: Journal,
    locks: PathLocks,
    slots: tokio::sync::Semaphore,
    /// Paths of chat requests are recorded in its path store.
    watch: gitwatch::GitWatch,
    /// `--fs-timeout-ms`.
    fs_timeout: Duration,
    /// `~` in list-directory paths.
    home: Option<PathBuf>,
}

impl FilesState {
    /// Opens the journal in `<state dir>/files` and removes temp files a killed daemon left.
    pub(crate) fn open(config: &crate::config::ServeConfig, watch: gitwatch::GitWatch) -> Self {
        let journal = Journal::open(Some(config.state_dir.join("files")));
        let swept = journal.sweep();
        for p in &swept.removed {
            tracing::info!(path = %p.display(), "removed a stale temp file of an interrupted write");
        }
        Self {
            journal,
            locks: PathLocks::default(),
            slots: tokio::sync::Semaphore::new(MAX_FS_CALLS),
            watch,
            fs_timeout: config.bounds.fs_timeout,
            home: config.home.clone(),
        }
    }
}

/// One async mutex per resolved path, held while a write or edit of it runs (entries are
/// dropped when unused).
#[derive(Default)]
struct PathLocks(std::sync::Mutex<LockMap>);

/// The locks by path, and the size at which dead entries are next swept (twice the live
/// count after the last sweep, at least 1024: one batch locking 10 000 files sweeps a few
/// times, not once per file).
#[derive(Default)]
struct LockMap {
    map: HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl PathLocks {
    async fn lock(&self, path: PathBuf) -> OwnedMutexGuard<()> {
        let m = {
            let mut locks = crate::sync::lock(&self.0);
            if locks.map.len() > locks.sweep_at.max(1024) {
                locks.map.retain(|_, w| w.strong_count() > 0);
                locks.sweep_at = locks.map.len() * 2;
            }
            match locks.map.get(&path).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.map.insert(path, Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }

    /// Locks several paths in sorted order (no deadlock between overlapping batches).
    async fn lock_all(&self, mut paths: Vec<PathBuf>) -> Vec<OwnedMutexGuard<()>> {
        paths.sort();
        paths.dedup();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.lock(p).await);
        }
        out
    }
}

/// The one route whose body is streamed under its own limit ([`WRITE_LIMIT`]): the global
/// body-limit middleware lets it through.
pub(crate) const WRITE_FILE_PATH: &str = "/api/v0/write-file";

/// The file routes, for any router state that holds a [`FilesState`].
pub(crate) fn routes<S>() -> Router<S>
where
    Arc<FilesState>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/v0/read-file", get(read_file))
        .route("/api/v0/read-file-lines", get(read_file_lines))
        .route(WRITE_FILE_PATH, post(write_file))
        .route("/api/v0/edit-files", post(edit_files))
        .route("/api/v0/resolve-path", get(resolve_path))
        .route("/api/v0/list-directory", post(list_directory))
}

// ---------------------------------------------------------------------------------------
// Go-style query parsing.

/// One `validations` entry (`codersdk.ValidationError`).
#[derive(Debug, Serialize)]
struct Validation {
    field: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct ValidationBody {
    message: &'static str,
    validations: Vec<Validation>,
}

/// Coder's `QueryParamParser` over a form-urlencoded query (Go's `url.ParseQuery`).
struct Query {
    vals: Vec<(String, String)>,
    parsed: Vec<&'static str>,
    errors: Vec<Validation>,
}

impl Query {
    fn new(raw: Option<String>) -> Self {
        Self {
            vals: parse_form(raw.as_deref().unwrap_or("")),
            parsed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn values(&mut self, name: &'static str) -> Vec<&str> {
        self.parsed.push(name);
        self.vals
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn raw(&mut self, name: &'static str) -> Option<String> {
        let vals: Vec<String> = self.values(name).into_iter().map(str::to_owned).collect();
        if vals.len() > 1 {
            self.errors.push(Validation {
                field: name.into(),
                detail: format!(
                    "Query param {name:?} provided more than once, found {} times",
                    vals.len()
                ),
            });
        }
        vals.into_iter().next()
    }

    /// `RequiredNotEmpty` + `String`.
    fn required(&mut self, name: &'static str) -> String {
        let v = self.raw(name).unwrap_or_default();
        if v.is_empty() {
            self.errors.push(Validation {
                field: name.into(),
                detail: format!("Query param {name:?} is required and cannot be empty"),
            });
        }
        v
    }

    fn string(&mut self, name: &'static str) -> String {
        self.raw(name).unwrap_or_default()
    }

    /// `PositiveInt64`: absent or empty is the default, `0` is literal, negative fails.
    fn positive(&mut self, name: &'static str, def: i64) -> i64 {
        match self.raw(name) {
            None => def,
            Some(v) if v.is_empty() => def,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n < 0 => {
                    self.errors.push(Validation {
                        field: name.into(),
                        detail: format!(
                            "Query param {name:?} must be a valid 64-bit positive integer: value is negative"
                        ),
                    });
                    def
                }
                Ok(n) => n,
                Err(e) => {
                    self.errors.push(Validation {
                        field: name.into(),
                        detail: format!(
                            "Query param {name:?} must be a valid 64-bit positive integer: strconv.ParseInt: parsing {}: {}",
                            agentfiles::go_quote(&v),
                            if matches!(e.kind(), std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow) {
                                "value out of range"
                            } else {
                                "invalid syntax"
                            }
                        ),
                    });
                    def
                }
            },
        }
    }

    /// `ErrorExcessParams`, then the 400 if anything failed.
    fn finish(mut self) -> Result<(), Box<Response>> {
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in &self.vals {
            if !self.parsed.contains(&k.as_str()) && !seen.contains(&k.as_str()) {
                seen.push(k);
                self.errors.push(Validation {
                    field: k.clone(),
                    detail: format!("Query param {k:?} is not a valid query param"),
                });
            }
        }
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(Box::new(json_response(
            StatusCode::BAD_REQUEST,
            &ValidationBody {
                message: "Query parameters have invalid values.",
                validations: self.errors,
            },
        )))
    }
}

/// Go's `url.ParseQuery`: `&`-separated pairs, `+` is a space, `%XX` decoded; a pair with a
/// bad escape (or a `;`) is dropped, as `r.URL.Query()` does.
fn parse_form(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (unescape(k), unescape(v)) {
            out.push((k, v));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = b.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
                let l = b.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------------
// Shared helpers.

fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::Invalid => StatusCode::BAD_REQUEST,
        Kind::Denied => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Mismatch => StatusCode::PRECONDITION_FAILED,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn file_error(e: FileError) -> ApiError {
    ApiError::new(status_of(e.kind), e.message)
}

/// Runs `f` on the blocking pool under `--fs-timeout-ms` once one of [`MAX_FS_CALLS`] slots
/// is free (waiting for a slot is bounded by the same timeout); a timeout (or too many
/// stuck calls) is a 504.
async fn fs<T: Send + 'static>(
    state: &FilesState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = state.fs_timeout;
    let _slot = match tokio::time::timeout(timeout, state.slots.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            return Err(
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "File-system calls are stuck.").detail(
                    format!(
                        "no file-system slot freed within {} ms (hung mount?)",
                        timeout.as_millis()
                    ),
                ),
            );
        }
    };
    gitwatch::blocking_fs(timeout, f).await.map_err(|e| {
        let message = match e {
            gitwatch::FsError::Timeout(_) => "File-system call timed out.",
            _ => "File-system calls are stuck.",
        };
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, message).detail(e.to_string())
    })
}

/// Records `paths` for the request's chat and its ancestors (nothing for a non-chat request).
fn record(state: &FilesState, chat: &Option<Extension<ChatIdentity>>, paths: &[String]) {
    let Some(Extension(ident)) = chat else { return };
    let Some(id) = ident.effective_id() else {
        return;
    };
    if paths.is_empty() {
        return;
    }
    let mut ids = vec![id];
    ids.extend(ident.ancestors.iter().copied());
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    state.watch.paths().add_paths(&ids, &paths);
}

/// Go's `mime.TypeByExtension` built-in table; anything else is `application/octet-stream`.
fn mime_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rfind('.') {
        Some(i) => name[i..].to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match ext.as_str() {
        ".avif" => "image/avif",
        ".css" => "text/css; charset=utf-8",
        ".gif" => "image/gif",
        ".htm" | ".html" => "text/html; charset=utf-8",
        ".jpeg" | ".jpg" => "image/jpeg",
        ".js" | ".mjs" => "text/javascript; charset=utf-8",
        ".json" => "application/json",
        ".pdf" => "application/pdf",
        ".png" => "image/png",
        ".svg" => "image/svg+xml",
        ".wasm" => "application/wasm",
        ".webp" => "image/webp",
        ".xml" => "text/xml; charset=utf-8",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------
// read-file

async fn read_file(State(state): State<Arc<FilesState>>, RawQuery(raw): RawQuery) -> Response {
    let mut q = Query::new(raw);
    let path = q.required("path");
    let offset = q.positive("offset", 0);
    let limit = q.positive("limit", 0);
    if let Err(r) = q.finish() {
        return *r;
    }
    match read_file_inner(&state, path, offset as u64, limit as u64).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn read_file_inner(
    state: &FilesState,
    path: String,
    offset: u64,
    limit: u64,
) -> Result<Response, ApiError> {
    let mime = mime_type(&path);
    let range = fs(state, move || agentfiles::open_range(&path, offset, limit))
        .await?
        .map_err(file_error)?;
    let len = range.len;
    if len <= READ_CHUNK as u64 {
        let data = fs(state, move || agentfiles::read_chunk(&range, 0, READ_CHUNK))
            .await?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, mime)], data).into_response());
    }
    let range = Arc::new(range);
    let timeout = state.fs_timeout;
    let stream = futures::stream::unfold(0u64, move |pos| {
        let range = range.clone();
        async move {
            if pos >= len {
                return None;
            }
            let r = range.clone();
            let chunk =
                gitwatch::blocking_fs(timeout, move || agentfiles::read_chunk(&r, pos, READ_CHUNK))
                    .await;
            let item: Result<bytes::Bytes, std::io::Error> = match chunk {
                Ok(Ok(c)) if c.is_empty() => Err(std::io::Error::other("the file shrank")),
                Ok(Ok(c)) => Ok(c.into()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            };
            let next = match &item {
                Ok(c) => pos + c.len() as u64,
                Err(_) => len,
            };
            Some((item, next))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// read-file-lines

/// `ReadFileLinesResponse` (every field but `success` omitted when zero).
#[derive(Debug, Serialize, Default)]
struct LinesBody {
    success: bool,
    #[serde(skip_serializing_if = "is_zero")]
    file_size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    total_lines: u64,
    #[serde(skip_serializing_if = "is_zero")]
    lines_read: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    content: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

async fn read_file_lines(
    State(state): State<Arc<FilesState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut q = Query::new(raw);
    let path = q.required("path");
    let offset = q.positive("offset", 1);
    let limit = q.positive("limit", 0);
    let d = agentfiles::LineLimits::default();
    let limits = agentfiles::LineLimits {
        max_file_size: q.positive("max_file_size", d.max_file_size as i64) as u64,
        max_line_bytes: q.positive("max_line_bytes", d.max_line_bytes as i64) as u64,
        max_response_lines: q.positive("max_response_lines", d.max_response_lines as i64) as u64,
        max_response_bytes: q.positive("max_response_bytes", d.max_response_bytes as i64) as u64,
    };
    if let Err(r) = q.finish() {
        return *r;
    }
    let res = fs(&state, move || {
        agentfiles::read_lines(&path, offset, limit, limits)
    })
    .await;
    let body = match res {
        Err(e) => return e.into_response(),
        Ok(Ok(l)) => LinesBody {
            success: true,
            file_size: l.file_size,
            total_lines: l.total_lines,
            lines_read: l.lines_read,
            content: l.content,
            error: String::new(),
        },
        Ok(Err(e)) => LinesBody {
            error: e.to_string(),
            ..LinesBody::default()
        },
    };
    Json(body).into_response()
}

// ---------------------------------------------------------------------------------------
// write-file

/// write-file's answer: Coder's message plus the new content's hash (additive) and any
/// warning (hard links; additive).
#[derive(Debug, Serialize)]
struct WriteBody {
    message: String,
    sha256: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

async fn write_file(
    State(state): State<Arc<FilesState>>,
    chat: Option<Extension<ChatIdentity>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut q = Query::new(raw);
    let path = q.required("path");
    let expected = q.string("expected_sha256");
    if let Err(r) = q.finish() {
        return *r;
    }
    match write_inner(&state, &path, expected, &headers, body).await {
        Ok((sha256, warnings)) => {
            record(&state, &chat, std::slice::from_ref(&path));
            Json(WriteBody {
                message: format!("Successfully wrote to {}", agentfiles::go_quote(&path)),
                sha256,
                warnings,
            })
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

enum Next {
    Data(bytes::Bytes),
    End,
}

/// Reads frames until `want` bytes are buffered or the body ends; `Err` is the answer.
async fn fill(
    stream: &mut (impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin),
    buf: &mut Vec<u8>,
    total: &mut u64,
    path: &str,
) -> Result<Next, ApiError> {
    use futures::StreamExt;
    loop {
        if buf.len() >= WRITE_CHUNK {
            return Ok(Next::Data(std::mem::take(buf).into()));
        }
        let frame = tokio::time::timeout(BODY_IDLE, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body timed out.").detail(
                    format!(
                        "no body data for {} s; nothing was written",
                        BODY_IDLE.as_secs()
                    ),
                )
            })?;
        match frame {
            None => return Ok(Next::End),
            Some(Err(e)) => {
                return Err(ApiError::internal(format!("write {path}: {e}")));
            }
            Some(Ok(b)) => {
                *total += b.len() as u64;
                if *total > WRITE_LIMIT {
                    return Err(ApiError::too_large(WRITE_LIMIT as usize));
                }
                buf.extend_from_slice(&b);
            }
        }
    }
}

async fn write_inner(
    state: &Arc<FilesState>,
    path: &str,
    expected: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, Vec<String>), ApiError> {
    if !agentfiles::path::is_abs(path) {
        return Err(file_error(FileError::not_absolute(path)));
    }
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > WRITE_LIMIT) {
        return Err(ApiError::too_large(WRITE_LIMIT as usize));
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0u64;
    // The first chunk (all of a small file) before touching the disk: one blocking hop then
    // does stage + write + commit.
    let first = fill(&mut stream, &mut buf, &mut total, path).await?;
    let p = path.to_owned();
    let resolved = fs(state, move || agentfiles::path::resolve(&p))
        .await?
        .map_err(|e| {
            ApiError::internal(format!(
                "resolve symlink {}: {}",
                agentfiles::go_quote(path),
                e.message
            ))
        })?;
    // Held until every blocking call that may still touch the file has returned.
    let guard = Arc::new(state.locks.lock(resolved.clone()).await);
    let files = state.clone();
    let (mut staged, warnings, committed) = {
        let g = guard.clone();
        let (data, end) = match first {
            Next::Data(d) => (d, false),
            Next::End => (std::mem::take(&mut buf).into(), true),
        };
        fs(state, move || -> Result<_, FileError> {
            let _g = g;
            let target = Target::prepare(resolved)?;
            if !expected.is_empty() {
                agentfiles::write::check_expected(
                    &target.path,
                    &display_caller(&target),
                    &expected,
                )?;
            }
            let warnings: Vec<String> = target.warning().into_iter().collect();
            let mut s = Staged::create(target, &files.journal)?;
            s.write(&data)?;
            if end {
                let c = s.commit()?;
                return Ok((None, warnings, Some(c.sha256)));
            }
            Ok((Some(s), warnings, None))
        })
        .await?
        .map_err(file_error)?
    };
    if let Some(sha) = committed {
        for w in &warnings {
            tracing::warn!(path, "{w}");
        }
        return Ok((sha, warnings));
    }
    loop {
        let next = match fill(&mut stream, &mut buf, &mut total, path).await {
            Ok(n) => n,
            Err(e) => {
                // Drop (remove the temp) off the async worker.
                let s = staged.take();
                let _ = fs(state, move || drop(s)).await;
                return Err(e);
            }
        };
        let Some(mut s) = staged.take() else {
            return Err(ApiError::internal("write state lost"));
        };
        let g = guard.clone();
        match next {
            Next::Data(d) => {
                s = fs(state, move || -> Result<Staged, FileError> {
                    let _g = g;
                    s.write(&d)?;
                    Ok(s)
                })
                .await?
                .map_err(file_error)?;
                staged = Some(s);
            }
            Next::End => {
                let rest = std::mem::take(&mut buf);
                let c = fs(state, move || {
                    let _g = g;
                    s.write(&rest)?;
                    s.commit()
                })
                .await?
                .map_err(file_error)?;
                for w in &warnings {
                    tracing::warn!(path, "{w}");
                }
                return Ok((c.sha256, warnings));
            }
        }
    }
}

fn display_caller(t: &Target) -> String {
    agentfiles::path::display(&t.path)
}

// ---------------------------------------------------------------------------------------
// edit-files

/// `workspacesdk.FileEditRequest`.
#[derive(Debug, Deserialize)]
struct EditRequest {
    #[serde(default)]
    files: Option<Vec<FileEditsWire>>,
    #[serde(default)]
    include_diff: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct FileEditsWire {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    edits: Option<Vec<EditWire>>,
    /// Additive: the SHA-256 the file must have before the edits (412 otherwise).
    #[serde(default)]
    expected_sha256: Option<String>,
}

/// `FileEdit`: `old_text`/`new_text`, falling back to `search`/`replace` only when both new
/// fields are empty (as Coder's `UnmarshalJSON`).
#[derive(Debug, Deserialize)]
struct EditWire {
    #[serde(default)]
    old_text: Option<String>,
    #[serde(default)]
    new_text: Option<String>,
    #[serde(default)]
    search: Option<String>,
    #[serde(default)]
    replace: Option<String>,
    #[serde(default)]
    replace_all: Option<bool>,
}

impl From<EditWire> for Edit {
    fn from(w: EditWire) -> Self {
        let old = w.old_text.unwrap_or_default();
        let new = w.new_text.unwrap_or_default();
        let (old_text, new_text) = if old.is_empty() && new.is_empty() {
            (w.search.unwrap_or_default(), w.replace.unwrap_or_default())
        } else {
            (old, new)
        };
        Edit {
            old_text,
            new_text,
            replace_all: w.replace_all.unwrap_or(false),
        }
    }
}

#[derive(Debug, Serialize)]
struct FileDiff {
    path: String,
    diff: String,
}

/// `FileEditResponse` plus the new hashes per caller path (additive).
#[derive(Debug, Serialize)]
struct EditResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileDiff>>,
    sha256: HashMap<String, String>,
}

/// An edit-files error: Coder's message, plus (additive) the files that stayed committed
/// after a failed rename that could not be rolled back.
#[derive(Debug, Serialize)]
struct EditErrorBody {
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    committed: Vec<String>,
}

fn batch_error(e: agentfiles::edit::BatchError) -> Response {
    let status = e
        .errors
        .iter()
        .map(|e| status_of(e.kind))
        .max_by_key(|s| s.as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        &EditErrorBody {
            message: e.message(),
            committed: e.committed,
        },
    )
}

async fn edit_files(
    State(state): State<Arc<FilesState>>,
    chat: Option<Extension<ChatIdentity>>,
    ApiJson(req): ApiJson<EditRequest>,
) -> Response {
    let files: Vec<FileEdits> = req
        .files
        .unwrap_or_default()
        .into_iter()
        .map(|f| FileEdits {
            path: f.path.unwrap_or_default(),
            edits: f
                .edits
                .unwrap_or_default()
                .into_iter()
                .map(Edit::from)
                .collect(),
            expected_sha256: f.expected_sha256.filter(|s| !s.is_empty()),
        })
        .collect();
    if files.is_empty() {
        return ApiError::bad_request("must specify at least one file").into_response();
    }
    let include_diff = req.include_diff.unwrap_or(false);
    let groups = match fs(&state, move || agentfiles::edit::plan(files)).await {
        Err(e) => return e.into_response(),
        Ok(Err(e)) => return batch_error(e),
        Ok(Ok(g)) => g,
    };
    let keys: Vec<PathBuf> = groups
        .iter()
        .filter_map(|g| g.resolved.as_ref().ok().cloned())
        .collect();
    let guards = state.locks.lock_all(keys).await;
    // Phase 1 (read + match + diffs) writes nothing, so when it times out the request can be
    // answered 504 truthfully: the late result is dropped and the flag stops its CPU work.
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let prepared = fs(&state, move || {
        let pending = agentfiles::edit::prepare_cancellable(groups, &flag)?;
        let diffs: Option<Vec<FileDiff>> = include_diff.then(|| {
            pending
                .iter()
                .map(|p| FileDiff {
                    path: p.caller.clone(),
                    diff: p.diff(),
                })
                .collect()
        });
        Ok::<_, agentfiles::edit::BatchError>((pending, diffs))
    })
    .await;
    let (pending, diffs) = match prepared {
        Err(e) => {
            cancelled.store(true, Ordering::Relaxed);
            return e.into_response();
        }
        Ok(Err(e)) => return batch_error(e),
        Ok(Ok(p)) => p,
    };
    // Phase 2 (stage, renames) is I/O only; the locks go with it, so a commit that outlives
    // a timeout still excludes other writers of its files until it returns.
    let files = state.clone();
    let res = fs(&state, move || {
        let _guards = guards;
        agentfiles::edit::commit(pending, &files.journal).map(|done| (done, diffs))
    })
    .await;
    match res {
        Err(e) => e.into_response(),
        Ok(Err(e)) => {
            record(&state, &chat, &e.committed);
            batch_error(e)
        }
        Ok(Ok((done, diffs))) => {
            let callers: Vec<String> = done.iter().map(|d| d.caller.clone()).collect();
            record(&state, &chat, &callers);
            Json(EditResponse {
                files: diffs,
                sha256: done.into_iter().map(|d| (d.caller, d.sha256)).collect(),
            })
            .into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// resolve-path

#[derive(Debug, Serialize)]
struct ResolveBody {
    resolved_path: String,
}

async fn resolve_path(State(state): State<Arc<FilesState>>, RawQuery(raw): RawQuery) -> Response {
    let mut q = Query::new(raw);
    let path = q.required("path");
    if let Err(r) = q.finish() {
        return *r;
    }
    match fs(&state, move || agentfiles::path::resolve(&path)).await {
        Err(e) => e.into_response(),
        Ok(Err(e)) => file_error(e).into_response(),
        Ok(Ok(p)) => Json(ResolveBody {
            resolved_path: agentfiles::path::display(&p),
        })
        .into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// list-directory

/// `workspacesdk.LSRequest`.
#[derive(Debug, Deserialize)]
struct LsRequest {
    #[serde(default)]
    path: Option<Vec<String>>,
    #[serde(default)]
    relativity: Option<String>,
}

#[derive(Debug, Serialize)]
struct LsFile {
    name: String,
    absolute_path_string: String,
    is_dir: bool,
}

#[derive(Debug, Serialize)]
struct LsResponse {
    absolute_path: Vec<String>,
    absolute_path_string: String,
    contents: Vec<LsFile>,
}

async fn list_directory(
    State(state): State<Arc<FilesState>>,
    RawQuery(raw): RawQuery,
    ApiJson(req): ApiJson<LsRequest>,
) -> Response {
    let mut q = Query::new(raw);
    let path = q.string("path");
    if let Err(r) = q.finish() {
        return *r;
    }
    let home = state.home.clone();
    let res = fs(&state, move || {
        let dir = agentfiles::list::target(
            &path,
            &req.path.unwrap_or_default(),
            req.relativity.as_deref().unwrap_or(""),
            home.as_deref(),
        )?;
        agentfiles::list::list(&dir)
    })
    .await;
    match res {
        Err(e) => e.into_response(),
        Ok(Err(e)) => file_error(e).into_response(),
        Ok(Ok(l)) => Json(LsResponse {
            absolute_path: l.absolute_path,
            absolute_path_string: l.absolute_path_string,
            contents: l
                .contents
                .into_iter()
                .map(|e| LsFile {
                    name: e.name,
                    absolute_path_string: e.absolute_path_string,
                    is_dir: e.is_dir,
                })
                .collect(),
        })
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_form_decoding() {
        assert_eq!(
            parse_form("path=%2Ftmp%2Fa%26b+%3F%23%25c.md&x=1&bad=%zz"),
            vec![
                ("path".to_owned(), "/tmp/a&b ?#%c.md".to_owned()),
                ("x".to_owned(), "1".to_owned())
            ]
        );
        let mut q = Query::new(Some("path=/a&path=/b&offset=-1&limit=0&zzz=1".into()));
        assert_eq!(q.required("path"), "/a");
        assert_eq!(q.positive("offset", 0), 0);
        assert_eq!(q.positive("limit", 5), 0);
        assert!(q.finish().is_err());
        assert_eq!(mime_type("/x/file.PNG"), "image/png");
        assert_eq!(mime_type("/x/file"), "application/octet-stream");
    }
}
