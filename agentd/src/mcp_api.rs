//! MCP routes: `GET /api/v0/mcp/tools`, `POST /api/v0/mcp/call-tool` (Coder-compatible) and
//! `GET /api/v0/mcp/servers` (status), plus the manager's options and metrics collector.
//!
//! Wire shapes and status mapping only; all MCP logic lives in `agentmcp`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ServeConfig;
use crate::error::{ApiError, ApiJson, ApiQuery, Json, json_response};
use crate::metrics::Metrics;

/// What the MCP handlers need: the manager (a cheap clone, one pointer).
#[derive(Clone)]
pub(crate) struct McpState {
    /// The workspace's MCP servers.
    pub mcp: agentmcp::Manager,
}

impl McpState {
    /// Starts the manager from the daemon configuration and registers its metrics.
    pub(crate) fn start(config: &ServeConfig, metrics: &Metrics) -> Self {
        let mcp = agentmcp::Manager::start(options(config));
        register_metrics(metrics, mcp.clone());
        Self { mcp }
    }
}

/// Builds the manager's options from the daemon configuration.
pub(crate) fn options(config: &ServeConfig) -> agentmcp::ManagerOptions {
    let files = config
        .context
        .resolve(Some(&config.workdir), config.home.as_deref())
        .mcp_config_files;
    let mut o = agentmcp::ManagerOptions::new(files, config.workdir.clone());
    o.base_env = config.child_env.clone();
    let vars: HashMap<String, String> = config
        .child_env
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    o.lookup = Arc::new(move |k| vars.get(k).cloned());
    o.client_version = env!("CARGO_PKG_VERSION").to_owned();
    let m = &config.mcp;
    o.call_timeout = m.call_timeout.unwrap_or(o.call_timeout);
    o.connect_timeout = m.connect_timeout.unwrap_or(o.connect_timeout);
    o.backoff_min = m.backoff_min.unwrap_or(o.backoff_min);
    o.backoff_max = m.backoff_max.unwrap_or(o.backoff_max);
    o
}

/// Registers the `agentd_mcp_servers{state=...}` gauge.
fn register_metrics(metrics: &Metrics, mcp: agentmcp::Manager) {
    metrics.register(Box::new(move |out: &mut String| {
        let st = mcp.status();
        out.push_str("# HELP agentd_mcp_servers MCP servers by state.\n");
        out.push_str("# TYPE agentd_mcp_servers gauge\n");
        for s in agentmcp::ServerState::ALL {
            let n = st.servers.iter().filter(|x| x.state == s).count();
            out.push_str(&format!(
                "agentd_mcp_servers{{state=\"{}\"}} {n}\n",
                s.as_str()
            ));
        }
    }));
}

/// The MCP routes, for any router state that holds an [`McpState`].
pub(crate) fn routes<S>() -> Router<S>
where
    McpState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/v0/mcp/tools", get(list_tools))
        .route("/api/v0/mcp/call-tool", post(call_tool))
        .route("/api/v0/mcp/servers", get(servers))
}

#[derive(Deserialize)]
struct ToolsQuery {
    refresh: Option<String>,
}

#[derive(Serialize)]
struct ToolsResponse<'a> {
    tools: Vec<ToolDto<'a>>,
}

/// Borrows from the manager's cached catalogue: nothing is copied per request.
#[derive(Serialize)]
struct ToolDto<'a> {
    server_name: &'a str,
    name: &'a str,
    description: &'a str,
    /// The input schema's `properties` (`{}` when absent).
    schema: &'a Map<String, Value>,
    required: Vec<&'a str>,
    /// Additive: the whole input schema (`$defs`, `anyOf`, ... kept).
    input_schema: &'a Map<String, Value>,
    /// Additive: the server's own tool name.
    tool_name: &'a str,
}

static NO_PROPERTIES: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

async fn list_tools(State(state): State<McpState>, ApiQuery(q): ApiQuery<ToolsQuery>) -> Response {
    if q.refresh.as_deref() == Some("true") {
        state.mcp.refresh().await;
    }
    let catalog = state.mcp.tools();
    let tools = catalog
        .iter()
        .map(|t| {
            let schema = t.tool.input_schema.get("properties");
            ToolDto {
                server_name: &t.server,
                name: &t.name,
                description: &t.tool.description,
                schema: schema.and_then(Value::as_object).unwrap_or(&NO_PROPERTIES),
                required: t
                    .tool
                    .input_schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                input_schema: &t.tool.input_schema,
                tool_name: &t.tool.name,
            }
        })
        .collect();
    json_response(StatusCode::OK, &ToolsResponse { tools })
}

#[derive(Deserialize)]
struct CallRequest {
    #[serde(default)]
    tool_name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

#[derive(Serialize)]
struct CallResponse {
    content: Vec<ContentDto>,
    is_error: bool,
}

#[derive(Serialize)]
struct ContentDto {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    /// Additive: the resource URI for resource content.
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

const CALL_FAILED: &str = "MCP tool call failed.";

async fn call_tool(
    State(state): State<McpState>,
    ApiJson(req): ApiJson<CallRequest>,
) -> Result<Json<CallResponse>, ApiError> {
    let args = req.arguments.unwrap_or_default();
    let out = state
        .mcp
        .call_tool(&req.tool_name, args)
        .await
        .map_err(|e| {
            let status = match e {
                agentmcp::CallError::InvalidName(_) => StatusCode::BAD_REQUEST,
                agentmcp::CallError::UnknownServer(_) => StatusCode::NOT_FOUND,
                agentmcp::CallError::InvalidConfig { .. }
                | agentmcp::CallError::NotConnected { .. }
                | agentmcp::CallError::Timeout { .. }
                | agentmcp::CallError::Call { .. } => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(tool = %req.tool_name, status = status.as_u16(), error = %e, "MCP tool call failed");
            ApiError::new(status, CALL_FAILED).detail(e.to_string())
        })?;
    Ok(Json(CallResponse {
        content: out
            .content
            .into_iter()
            .map(|c| ContentDto {
                kind: c.kind,
                text: c.text,
                data: c.data,
                media_type: c.media_type,
                uri: c.uri,
            })
            .collect(),
        is_error: out.is_error,
    }))
}

#[derive(Serialize)]
struct ServersResponse {
    servers: Vec<ServerDto>,
    config_errors: Vec<ConfigErrorDto>,
}

#[derive(Serialize)]
struct ServerDto {
    name: String,
    transport: Option<&'static str>,
    state: &'static str,
    tools: usize,
    last_error: Option<String>,
    warning: Option<String>,
    restarts: u32,
    config_file: String,
    pid: Option<u32>,
}

#[derive(Serialize)]
struct ConfigErrorDto {
    path: String,
    error: String,
}

async fn servers(State(state): State<McpState>) -> Json<ServersResponse> {
    let st = state.mcp.status();
    Json(ServersResponse {
        servers: st
            .servers
            .into_iter()
            .map(|s| ServerDto {
                name: s.name,
                transport: s.transport.map(agentmcp::Transport::as_str),
                state: s.state.as_str(),
                tools: s.tools,
                last_error: s.last_error,
                warning: s.warning,
                restarts: s.restarts,
                config_file: s.config_file.display().to_string(),
                pid: s.pid,
            })
            .collect(),
        config_errors: st
            .config_errors
            .into_iter()
            .map(|e| ConfigErrorDto {
                path: e.path.display().to_string(),
                error: e.error,
            })
            .collect(),
    })
}
