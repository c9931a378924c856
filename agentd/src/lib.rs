//! agentd: a workspace daemon wire-compatible with the Coder workspace agent's HTTP API.
//!
//! This crate is the binary's library half: command line, configuration, HTTP/WebSocket
//! server, routing, middleware (auth, chat identity, access log), wire DTOs, the mapping of
//! domain errors to status codes, metrics and shutdown. It is the only crate that knows
//! axum, HTTP, JSON wire shapes or clap. It must not contain domain logic: processes,
//! context discovery, MCP and git live in their own crates and are driven from here.

mod chat;
mod cli;
mod config;
mod conn;
mod context_api;
mod ctx_cli;
mod doctor;
mod error;
mod events;
mod files_api;
mod git_api;
mod logging;
mod mcp_api;
mod metrics;
mod middleware;
mod netguard;
mod openapi;
mod proc_api;
mod server;
mod sync;

// The curated public surface: what the executable, the e2e tests' docs and OpenAPI checks
// and the fuzz targets (fuzz/fuzz_targets/*) use. Everything else is crate-private.
pub use chat::{
    ANCESTOR_CHAT_IDS_HEADER, CHAT_ID_HEADER, ChatIdentity, NotChat, extract as extract_chat,
    parse_uuid,
};
pub use cli::Cli;
pub use openapi::DOCUMENT as OPENAPI_DOCUMENT;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Command;

/// Entry point of the `agentd` executable.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            print!("{}", version_text());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(&args),
        Command::Ctx(cmd) => ctx_cli::run(cmd),
        Command::Doctor(args) => doctor::run(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "agentd", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("agentd: cannot write the man page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// What `agentd version` prints: the version on the first line (scripts read it), then the
/// build: git commit, target triple, profile and whether the C runtime is linked statically.
fn version_text() -> String {
    format!(
        "agentd {}\ncommit: {}\ntarget: {}\nprofile: {}\nstatic: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("AGENTD_BUILD_COMMIT"),
        env!("AGENTD_BUILD_TARGET"),
        env!("AGENTD_BUILD_PROFILE"),
        if cfg!(target_feature = "crt-static") {
            "yes"
        } else {
            "no"
        },
    )
}

fn serve(args: &cli::ServeArgs) -> ExitCode {
    // Before anything starts a thread: the init must fork a single-threaded process.
    if (args.init || agentproc::is_pid1())
        && let Err(e) = agentproc::become_init()
    {
        eprintln!("agentd: {e}");
        return ExitCode::from(2);
    }
    let config = match config::ServeConfig::from_args(args, std::io::stderr().is_terminal()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(config.log_format, &config.log_filter) {
        eprintln!("agentd: {e}");
        return ExitCode::from(2);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(worker_threads(args.worker_threads));
    let Some(rt) = runtime(builder) else {
        return ExitCode::FAILURE;
    };
    let res = rt.block_on(server::run(config));
    // Background tasks that ignored cancellation must not hold the exit hostage.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    let code = match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agentd failed");
            eprintln!("agentd: {e:#}");
            ExitCode::FAILURE
        }
    };
    logging::flush();
    code
}

/// The runtime's worker count: the flag, else half the CPUs available to us, 1 to 8.
fn worker_threads(flag: Option<u16>) -> usize {
    flag.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, 8)
    })
}

/// Builds the tokio runtime (all drivers enabled); `None` after reporting why it could not
/// start.
pub(crate) fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("agentd: cannot start the async runtime: {e}");
            None
        }
    }
}
