//! File API for agentd: what Coder's `agent/agentfiles` does (read-file, read-file-lines,
//! write-file, edit-files, resolve-path, list-directory), as plain Rust.
//!
//! It must not know HTTP (`agentd::files_api` maps its types and errors to Coder's wire
//! shapes), must not read the environment, and must never leave a file half-written: every
//! write goes through a temp file in the same directory, an fsync and a rename.

pub mod edit;
mod error;
pub mod list;
mod matcher;
pub mod path;
mod read;
pub mod write;

pub use error::{FileError, Kind, go_quote};
pub use read::{FileRange, LineLimits, Lines, LinesError, open_range, read_chunk, read_lines};
