//! MCP client manager for agentd: the `.mcp.json` model, connections to the workspace's MCP
//! servers (stdio, streamable HTTP, legacy SSE), the tool catalogue and the call proxy.
//!
//! It is the only crate that names `rmcp`, and must not leak rmcp types in its public API.
//! It knows no HTTP routes or wire DTOs (that is `agentd::mcp_api`) and never reads the
//! process environment: variables, the child base environment and paths come in
//! [`ManagerOptions`].

pub mod config;
mod convert;
mod expand;
mod http;
mod manager;
pub mod names;
mod redact;
mod server;
mod sse;
mod sync;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use config::{NameError, Transport, validate_name};
pub use expand::{ExpandError, MAX_EXPAND_DEPTH, expand};
pub use manager::Manager;

/// Variable lookup for `${VAR}` expansion in `.mcp.json`.
pub type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the manager needs, as values.
#[derive(Clone)]
pub struct ManagerOptions {
    /// Config files in priority order.
    pub config_files: Vec<PathBuf>,
    /// Working directory of stdio servers.
    pub workdir: PathBuf,
    /// Base environment of stdio servers (the server's `env` is added on top).
    pub base_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// `${VAR}` lookup.
    pub lookup: VarLookup,
    /// Start + initialize + first tools/list budget per server.
    pub connect_timeout: Duration,
    /// Default timeout of a tool call.
    pub call_timeout: Duration,
    /// First restart delay.
    pub backoff_min: Duration,
    /// Restart delay cap.
    pub backoff_max: Duration,
    /// Debounce of config-file change events.
    pub debounce: Duration,
    /// Watch the config files.
    pub watch: bool,
    /// `clientInfo.version`.
    pub client_version: String,
}

impl ManagerOptions {
    /// Options with the default timeouts (30 s connect, 60 s call, 0.25 s → 30 s backoff).
    pub fn new(config_files: Vec<PathBuf>, workdir: PathBuf) -> Self {
        Self {
            config_files,
            workdir,
            base_env: Vec::new(),
            lookup: Arc::new(|_| None),
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            debounce: Duration::from_millis(250),
            watch: true,
            client_version: String::new(),
        }
    }
}

/// A server's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerState {
    /// First connection attempt under way.
    Connecting,
    /// Connected, tools listed.
    Ready,
    /// Never got ready (or its entry is invalid); retried with backoff unless invalid.
    Failed,
    /// Was ready, went down; reconnecting with backoff.
    Restarting,
    /// Stopped (removed or shutting down).
    Stopped,
}

impl ServerState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }

    /// All states, for metrics.
    pub const ALL: [ServerState; 5] = [
        Self::Connecting,
        Self::Ready,
        Self::Failed,
        Self::Restarting,
        Self::Stopped,
    ];
}

/// One server in the status report.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// Name.
    pub name: String,
    /// Transport, when known.
    pub transport: Option<Transport>,
    /// State.
    pub state: ServerState,
    /// Number of tools currently listed.
    pub tools: usize,
    /// Last error, secrets redacted.
    pub last_error: Option<String>,
    /// A new config for this server has not connected yet; the previous connection is
    /// still serving (redacted).
    pub warning: Option<String>,
    /// How many times it has been (re)started after the first attempt.
    pub restarts: u32,
    /// The config file that declared it.
    pub config_file: PathBuf,
    /// Pid of the stdio process (also its process group), when running.
    pub pid: Option<u32>,
}

/// A config file that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub error: String,
}

/// The whole status report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// Servers sorted by name.
    pub servers: Vec<ServerStatus>,
    /// File-level errors.
    pub config_errors: Vec<ConfigFileError>,
}

/// A tool as a server declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// The server's own name for it.
    pub name: String,
    /// Description ("" when absent).
    pub description: String,
    /// The whole input schema.
    pub input_schema: Map<String, Value>,
}

/// A tool in the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTool {
    /// The server.
    pub server: String,
    /// The provider-safe exposed name.
    pub name: String,
    /// The tool.
    pub tool: ToolDef,
}

/// One content block of a call result.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentItem {
    /// `text`, `image`, `audio` or `resource`.
    pub kind: String,
    /// Text (text, embedded text resources, resource-link URIs).
    pub text: Option<String>,
    /// Base64 data (image, audio, blob resources).
    pub data: Option<String>,
    /// MIME type.
    pub media_type: Option<String>,
    /// Resource URI.
    pub uri: Option<String>,
}

impl ContentItem {
    fn text(kind: &str, text: String) -> Self {
        Self {
            kind: kind.to_owned(),
            text: Some(text),
            data: None,
            media_type: None,
            uri: None,
        }
    }
}

/// A call's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutput {
    /// Content blocks.
    pub content: Vec<ContentItem>,
    /// The server's `isError`.
    pub is_error: bool,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The name is neither a catalogue name nor `server__tool`.
    #[error("invalid tool name format: {0:?} (expected \"<server>__<tool>\")")]
    InvalidName(String),
    /// No such server.
    #[error("unknown MCP server: {0:?}")]
    UnknownServer(String),
    /// The server's config entry is invalid, so it never runs.
    #[error("MCP server {server:?} is not usable: its config entry is invalid")]
    InvalidConfig {
        /// The server.
        server: String,
    },
    /// The server has no live connection.
    #[error("MCP server {server:?} is not connected (state {}){}", state.as_str(),
        last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotConnected {
        /// The server.
        server: String,
        /// Its state.
        state: ServerState,
        /// Its last error (redacted).
        last_error: Option<String>,
    },
    /// The call did not answer within the call timeout (it was cancelled).
    #[error("tool {tool:?} on MCP server {server:?} timed out after {}s", after.as_secs_f64())]
    Timeout {
        /// The server.
        server: String,
        /// The server's own name for the tool.
        tool: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// The server or the transport answered with an error.
    #[error("{detail}")]
    Call {
        /// The server.
        server: String,
        /// The server's own name for the tool.
        tool: String,
        /// The whole message (`calling tool "t" on MCP server "s": <error>`), redacted as
        /// one text so a secret is never split across a boundary, and capped.
        detail: String,
    },
}

#[cfg(test)]
mod fake;
