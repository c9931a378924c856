//! Context configuration for agentd: which instruction files (AGENTS.md), skills (SKILL.md)
//! and MCP config files a workspace has, resolved from configuration values, plus the
//! per-chat context store behind `agentd ctx`.
//!
//! It must not know HTTP, and must not read environment variables itself: configuration
//! comes in as values.

mod discover;
pub mod frontmatter;
mod resolve;
mod sanitize;
mod store;
mod sync;

pub use discover::{
    ContextPart, Discovery, OsError, SkipReason, Skipped, context_parts_from_dir, discover,
};
pub use resolve::{ENV_VARS, RawConfig, ResolvedConfig, resolve_path, resolve_paths};
pub use sanitize::strip_html_comments;
pub use store::{ContextStore, LoadError, MAX_CHAT_SCOPES, OpenProblem, Scope, StoreError};
