//! MCP client manager for agentd: the `.mcp.json` model, connections to the workspace's MCP
//! servers (stdio, streamable HTTP, legacy SSE), the tool catalogue and the call proxy.
//!
//! It is the only crate that names `rmcp`, and must not leak rmcp types in its public API.
