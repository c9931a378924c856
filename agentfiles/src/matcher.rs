//! Coder's search/replace matcher (`fuzzyReplace`): exact, trailing-whitespace-tolerant and
//! indentation-tolerant passes, with indentation translation. Pure text in, text out.
//!
//! It must not touch the file system.
