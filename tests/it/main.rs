//! One integration-test binary: every module starts the real agentd binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod bounds;
mod cli;
mod contain;
mod context;
mod docs;
mod files;
mod foundation;
mod gitwatch;
mod init;
mod integration;
mod mcp;
mod openapi;
mod parity;
mod proc;
mod security;
