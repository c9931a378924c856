//! Git watch for agentd: repository discovery, snapshots (branch, origin, unified diff),
//! change detection, the per-chat path store and scan scheduling shared by all subscribers.
//!
//! It must not know HTTP or WebSocket; `agentd` streams its snapshots to clients.
