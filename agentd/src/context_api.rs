//! Context routes: Coder's `GET /api/v0/context-config` (parts shape, or the older paths
//! shape with `?format=paths`) and agentd's context store behind `agentd ctx`
//! (`GET|POST|DELETE /api/v0/context-store`).
//!
//! Configuration is resolved per request against the daemon's workdir, so directories that
//! appear later are picked up. Parts added with `agentd ctx add` follow the discovered ones
//! and carry an additive `context_source` field. Discovery and store I/O run on the blocking
//! pool. This module holds wire shapes and status mapping only: discovery, sanitising and
//! persistence live in `agentcontextconfig`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use agentcontextconfig::{ContextPart, ContextStore, Scope, SkipReason, Skipped, StoreError};
use axum::Router;
use std::collections::HashMap;

use axum::extract::{Extension, FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::{ChatIdentity, parse_uuid};
use crate::error::{ApiError, ApiJson, ApiQuery, Json};
use crate::metrics::Metrics;

/// Path of Coder's context-config endpoint.
const CONTEXT_CONFIG_PATH: &str = "/api/v0/context-config";
/// Path of agentd's context store (its router and `agentd ctx`).
pub(crate) const CONTEXT_STORE_PATH: &str = "/api/v0/context-store";

/// `context_source` of a part discovered on disk.
pub(crate) const SOURCE_DISCOVERED: &str = "discovered";
/// `context_source` of a part added with `agentd ctx add` for every chat.
pub(crate) const SOURCE_WORKSPACE: &str = "workspace";
/// `context_source` of a part added for the requesting chat.
pub(crate) const SOURCE_CHAT: &str = "chat";
/// `context_source` of a part added for one of the requesting chat's ancestors.
pub(crate) const SOURCE_ANCESTOR: &str = "ancestor-chat";

/// The context subsystem's state, and what its handlers need (held in an `Arc`: one
/// pointer clone per request).
pub(crate) struct ContextState {
    /// The resolved configuration (discovery reads the context settings, workdir and home).
    config: Arc<crate::config::ServeConfig>,
    /// Parts added with `agentd ctx add`.
    pub store: Arc<ContextStore>,
    /// Skipped skills already logged (each is logged once, not on every request).
    logged_skips: Mutex<HashSet<(String, SkipReason)>>,
}

impl ContextState {
    /// Opens the store in the state dir; a corrupt store file is logged, moved aside and
    /// replaced by an empty store.
    pub(crate) fn open(config: Arc<crate::config::ServeConfig>, metrics: &Metrics) -> Self {
        let (store, problem) = ContextStore::open(&config.state_dir);
        let store = store.with_max_chats(config.bounds.context_max_chats);
        let store = Arc::new(store);
        let gauge = store.clone();
        metrics.register(Box::new(move |out: &mut String| {
            out.push_str(
                "# HELP agentd_context_parts_stored Context parts stored with `agentd ctx add`.\n\
                 # TYPE agentd_context_parts_stored gauge\n",
            );
            out.push_str(&format!("agentd_context_parts_stored {}\n", gauge.len()));
        }));
        if let Some(p) = problem {
            tracing::warn!(
                path = %p.path.display(),
                moved_to = p.moved_to.as_ref().map(|m| m.display().to_string()),
                error = %p.error,
                "context store file is unreadable; starting with an empty store"
            );
        }
        Self {
            config,
            store,
            logged_skips: Mutex::new(HashSet::new()),
        }
    }

    fn log_skipped(&self, skipped: &[Skipped]) {
        let mut seen = crate::sync::lock(&self.logged_skips);
        for s in skipped {
            if seen.insert((s.path.clone(), s.reason.clone())) {
                tracing::warn!(path = %s.path, reason = %s.reason, "context: skipped");
            }
        }
    }
}

/// The context routes, for any router state that holds a [`ContextState`].
pub(crate) fn router<S>() -> Router<S>
where
    Arc<ContextState>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(CONTEXT_CONFIG_PATH, get(get_context_config))
        .route(
            CONTEXT_STORE_PATH,
            get(list_store).post(add_to_store).delete(clear_store),
        )
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Coder's `ChatMessagePart`, context-file and skill variants (`codersdk/chats.go`):
/// `type`, `context_file_path` and `skill_name` are always present, the rest omitted when
/// empty. `context_source` is agentd's additive tag.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PartDto {
    /// `context-file` or `skill`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// File path (`""` for skills).
    #[serde(default)]
    pub context_file_path: String,
    /// Sanitised content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_file_content: String,
    /// Whether the content was cut at 64 KiB.
    #[serde(default, skip_serializing_if = "is_false")]
    pub context_file_truncated: bool,
    /// Skill name (`""` for files).
    #[serde(default)]
    pub skill_name: String,
    /// Skill description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skill_description: String,
    /// Skill directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skill_dir: String,
    /// The skill's meta file basename.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_file_skill_meta_file: String,
    /// agentd: where the part comes from (`discovered`, `workspace`, `chat`,
    /// `ancestor-chat`). Ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub context_source: Option<&'static str>,
}

impl PartDto {
    /// The wire form of a part.
    pub(crate) fn from_part(p: ContextPart, source: Option<&'static str>) -> Self {
        match p {
            ContextPart::File {
                path,
                content,
                truncated,
            } => Self {
                kind: "context-file".into(),
                context_file_path: path,
                context_file_content: content,
                context_file_truncated: truncated,
                context_source: source,
                ..Self::default()
            },
            ContextPart::Skill {
                name,
                description,
                dir,
                meta_file,
            } => Self {
                kind: "skill".into(),
                skill_name: name,
                skill_description: description,
                skill_dir: dir,
                context_file_skill_meta_file: meta_file,
                context_source: source,
                ..Self::default()
            },
        }
    }

    /// The domain part; `None` for kinds other than `context-file` and `skill` (Coder drops
    /// those silently).
    pub(crate) fn into_part(self) -> Option<ContextPart> {
        match self.kind.as_str() {
            "context-file" => Some(ContextPart::File {
                path: self.context_file_path,
                content: self.context_file_content,
                truncated: self.context_file_truncated,
            }),
            "skill" => Some(ContextPart::Skill {
                name: self.skill_name,
                description: self.skill_description,
                dir: self.skill_dir,
                meta_file: self.context_file_skill_meta_file,
            }),
            _ => None,
        }
    }
}

/// A skipped skill or instruction file (agentd's additive `skipped` list).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SkippedDto {
    /// The directory or file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// `GET /api/v0/context-config` (parts shape). `parts` is never null.
#[derive(Debug, Serialize)]
pub(crate) struct PartsResponse {
    /// Discovered parts, then stored ones.
    pub parts: Vec<PartDto>,
    /// agentd: skills and files found but not used.
    pub skipped: Vec<SkippedDto>,
}

/// `GET /api/v0/context-config?format=paths` (Coder's first, paths-only shape).
#[derive(Debug, Serialize)]
pub(crate) struct PathsResponse {
    /// Resolved instruction dirs.
    pub instructions_dirs: Vec<String>,
    /// Instruction file basename.
    pub instructions_file: String,
    /// Resolved skills dirs.
    pub skills_dirs: Vec<String>,
    /// Skill meta file basename.
    pub skill_meta_file: String,
    /// Resolved MCP config files.
    pub mcp_config_files: Vec<String>,
}

fn lossy_all(v: &[std::path::PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("Internal error.").detail(e.to_string()))
}

/// [`blocking`] for discovery, which reads workspace paths (a skills dir may be a symlink
/// into a hung mount): bounded by `--fs-timeout-ms`, a timeout is a 504 JSON.
async fn blocking_fs<T: Send + 'static>(
    state: &ContextState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = state.config.bounds.fs_timeout;
    match tokio::time::timeout(timeout, blocking(f)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "File-system call timed out.",
        )
        .detail(format!(
            "context discovery did not finish within {} ms (hung mount?)",
            timeout.as_millis()
        ))),
    }
}

async fn get_context_config(
    State(state): State<Arc<ContextState>>,
    chat: Option<Extension<ChatIdentity>>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // While the workdir does not exist yet (the startup script has not cloned the repo),
    // paths resolve against $HOME, as Coder's working-directory closure does.
    let config = state.config.clone();
    let (cfg, workdir) = blocking_fs(&state, move || {
        let workdir = config.effective_workdir();
        let cfg = config
            .context
            .resolve(Some(&workdir), config.home.as_deref());
        (cfg, workdir)
    })
    .await?;
    match query.get("format").map(String::as_str) {
        None | Some("") | Some("parts") => {}
        Some("paths") => {
            return Ok(Json(PathsResponse {
                instructions_dirs: lossy_all(&cfg.instructions_dirs),
                instructions_file: cfg.instructions_file,
                skills_dirs: lossy_all(&cfg.skills_dirs),
                skill_meta_file: cfg.skill_meta_file,
                mcp_config_files: lossy_all(&cfg.mcp_config_files),
            })
            .into_response());
        }
        Some(other) => {
            return Err(ApiError::bad_request("Invalid format.").detail(format!(
                "format must be \"parts\" or \"paths\", got {other:?}"
            )));
        }
    }
    let discovery = blocking_fs(&state, move || {
        agentcontextconfig::discover(&cfg, Some(&workdir))
    })
    .await?;
    state.log_skipped(&discovery.skipped);

    let mut out: Vec<PartDto> = Vec::with_capacity(discovery.parts.len());
    let mut files: HashSet<String> = HashSet::new();
    let mut skills: HashSet<String> = HashSet::new();
    let mut push = |parts: Vec<ContextPart>, source: &'static str| {
        for p in parts {
            let fresh = match &p {
                ContextPart::File { path, .. } => files.insert(path.clone()),
                ContextPart::Skill { name, .. } => skills.insert(name.clone()),
            };
            if fresh {
                out.push(PartDto::from_part(p, Some(source)));
            }
        }
    };
    push(discovery.parts, SOURCE_DISCOVERED);
    let store = &state.store;
    push(store.get(Scope::Workspace), SOURCE_WORKSPACE);
    if let Some(Extension(chat)) = chat
        && let Some(id) = chat.effective_id()
    {
        for a in chat.ancestors.iter().filter(|a| !a.is_nil()) {
            push(store.get(Scope::Chat(*a)), SOURCE_ANCESTOR);
        }
        push(store.get(Scope::Chat(id)), SOURCE_CHAT);
    }
    Ok(Json(PartsResponse {
        parts: out,
        skipped: discovery
            .skipped
            .into_iter()
            .map(|s| SkippedDto {
                path: s.path,
                reason: s.reason.to_string(),
            })
            .collect(),
    })
    .into_response())
}

/// Body of `POST /api/v0/context-store` (Coder's chat-context request shape).
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct AddRequest {
    /// Target chat; absent, empty or the nil UUID means every chat (unless the request
    /// carries `Coder-Chat-Id`, which is used when this is absent).
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Parts to add.
    #[serde(default)]
    pub parts: Vec<PartDto>,
}

/// Answer of `POST /api/v0/context-store`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AddResponse {
    /// The chat (nil UUID: every chat).
    pub chat_id: Uuid,
    /// Parts accepted.
    pub count: usize,
    /// Of those, parts that replaced a stored part with the same path.
    pub replaced: usize,
    /// Parts stored for that chat afterwards.
    pub total: usize,
}

/// Answer of `DELETE /api/v0/context-store`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ClearResponse {
    /// The chat (nil UUID: every chat).
    pub chat_id: Uuid,
    /// Parts removed.
    pub cleared: usize,
}

/// One scope in `GET /api/v0/context-store`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ScopeDto {
    /// The chat (nil UUID: every chat).
    pub chat_id: Uuid,
    /// Stored parts, in the order they were added.
    pub parts: Vec<PartDto>,
}

/// Answer of `GET /api/v0/context-store`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListResponse {
    /// Scopes (one when `chat_id` is given; else every non-empty one, workspace first).
    pub scopes: Vec<ScopeDto>,
}

/// Picks the scope: an explicit id (empty or nil = workspace), else the request's chat.
fn scope_of(explicit: Option<&str>, chat: Option<&ChatIdentity>) -> Result<Scope, ApiError> {
    match explicit {
        Some("") => Ok(Scope::Workspace),
        Some(raw) => parse_uuid(raw)
            .map(|id| Scope::from_chat(Some(id)))
            .ok_or_else(|| {
                ApiError::bad_request("Invalid chat ID.").detail(format!("{raw:?} is not a UUID"))
            }),
        None => Ok(Scope::from_chat(chat.and_then(ChatIdentity::effective_id))),
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::TooManyParts { .. }
        | StoreError::NothingToAdd
        | StoreError::ScopeFull { .. }
        | StoreError::ScopeTooLarge { .. } => ApiError::bad_request(e.to_string()),
        StoreError::Io { .. } => {
            tracing::error!(error = %e, "context store write failed");
            ApiError::internal("Failed to persist the context store.").detail(e.to_string())
        }
    }
}

async fn add_to_store(
    State(state): State<Arc<ContextState>>,
    chat: Option<Extension<ChatIdentity>>,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<Json<AddResponse>, ApiError> {
    let scope = scope_of(req.chat_id.as_deref(), chat.as_deref())?;
    let parts: Vec<ContextPart> = req
        .parts
        .into_iter()
        .filter_map(PartDto::into_part)
        .collect();
    let store = state.store.clone();
    let out = blocking(move || store.add(scope, parts))
        .await?
        .map_err(store_error)?;
    tracing::info!(chat = %scope.chat_id(), count = out.count, replaced = out.replaced, total = out.total, evicted_chats = out.evicted, "context parts added");
    Ok(Json(AddResponse {
        chat_id: scope.chat_id(),
        count: out.count,
        replaced: out.replaced,
        total: out.total,
    }))
}

async fn clear_store(
    State(state): State<Arc<ContextState>>,
    chat: Option<Extension<ChatIdentity>>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ClearResponse>, ApiError> {
    let scope = scope_of(query.get("chat_id").map(String::as_str), chat.as_deref())?;
    let store = state.store.clone();
    let cleared = blocking(move || store.clear(scope))
        .await?
        .map_err(store_error)?;
    tracing::info!(chat = %scope.chat_id(), cleared, "context parts cleared");
    Ok(Json(ClearResponse {
        chat_id: scope.chat_id(),
        cleared,
    }))
}

async fn list_store(
    State(state): State<Arc<ContextState>>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ListResponse>, ApiError> {
    let dto = |scope: Scope, parts: Vec<ContextPart>| ScopeDto {
        chat_id: scope.chat_id(),
        parts: parts
            .into_iter()
            .map(|p| PartDto::from_part(p, None))
            .collect(),
    };
    let store = &state.store;
    let scopes = match query.get("chat_id") {
        Some(raw) => {
            let scope = scope_of(Some(raw), None)?;
            vec![dto(scope, store.get(scope))]
        }
        None => store.all().into_iter().map(|(s, p)| dto(s, p)).collect(),
    };
    Ok(Json(ListResponse { scopes }))
}
