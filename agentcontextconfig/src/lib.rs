//! Context configuration for agentd: which instruction files (AGENTS.md), skills (SKILL.md)
//! and MCP config files a workspace has, resolved from configuration values, plus the
//! per-chat context store behind `agentd ctx`.
//!
//! It must not know HTTP, and must not read environment variables itself: configuration
//! comes in as values.

pub mod resolve;

pub use resolve::{RawConfig, ResolvedConfig, resolve_path, resolve_paths};
