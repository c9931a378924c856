//! Context configuration for agentd: which instruction files (AGENTS.md), skills (SKILL.md)
//! and MCP config files a workspace has, resolved from configuration values, plus the
//! per-chat context store behind `agentd ctx`.
//!
//! It must not know HTTP, and must not read environment variables itself: configuration
//! comes in as values.

pub mod discover;
pub mod frontmatter;
pub mod resolve;
pub mod sanitize;
pub mod store;

pub use discover::{ContextPart, Discovery, SkipReason, Skipped, context_parts_from_dir, discover};
pub use resolve::{RawConfig, ResolvedConfig, resolve_path, resolve_paths};
pub use store::{ContextStore, Scope, StoreError};
