//! Command-line contract: `serve`, `ctx`, `version`, plus `doctor`,
//! `completions` and `man`.
//!
//! Every flag also reads an environment variable. This module only parses; it must not
//! touch the file system or the network (that is `config`'s and `server`'s job).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// agentd: a workspace daemon for AI chat orchestrators, wire-compatible with the Coder
/// workspace agent's HTTP API (`/api/v0/...`).
#[derive(Debug, Parser)]
#[command(name = "agentd", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon: serve the HTTP API on TCP and on a unix control socket.
    Serve(ServeArgs),
    /// Add a directory's instruction files and skills to a chat's context (or every chat's),
    /// clear them, or list them. Talks to the running daemon over its unix socket.
    #[command(subcommand)]
    Ctx(CtxCommand),
    /// Print the version and the build (commit, target, profile, static or not) and exit.
    Version,
    /// Check what `serve` with the same flags and environment needs (git, inotify limits,
    /// process containment, state dir, socket, workdir, MCP config files, listen ports) and
    /// print a report; exits 1 if a check failed.
    Doctor(DoctorArgs),
    /// Print a shell completion script (e.g. `agentd completions bash > /etc/bash_completion.d/agentd`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these definitions.
    Man,
}

/// Flags of `agentd doctor`: the same as `serve`, plus the report format.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Everything `serve` takes, so the check is of the configuration that would run.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Print the report as JSON (`{"checks":[{"name","level","message"}]}`).
    #[arg(long)]
    pub json: bool,
}

/// `--containment` (see `agentproc::contain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Containment {
    /// cgroup where possible, else subreaper.
    Auto,
    /// cgroup or fail.
    Cgroup,
    /// Subreaper.
    Subreaper,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One JSON object per line (the default when stderr is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

/// Flags of `agentd serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TCP address to listen on (repeat the flag, or separate with commas, for several).
    /// Without an auth token only loopback addresses are allowed.
    #[arg(
        long,
        env = "AGENTD_LISTEN",
        value_delimiter = ',',
        default_value = "127.0.0.1:4114"
    )]
    pub listen: Vec<String>,

    /// Unix control socket path (mode 0600; needs no token). Default:
    /// `$XDG_RUNTIME_DIR/agentd.sock`, else `<state dir>/agentd.sock`.
    #[arg(long, env = "AGENTD_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Workspace directory: the default working directory of processes and the root for
    /// relative paths. Default: the current directory.
    #[arg(long, env = "AGENTD_WORKDIR")]
    pub workdir: Option<PathBuf>,

    /// Directory for persistent state (created with mode 0700). Default:
    /// `$XDG_STATE_HOME/agentd`, else `~/.local/state/agentd`.
    #[arg(long, env = "AGENTD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// File holding the bearer token every TCP request must carry (surrounding whitespace is
    /// trimmed). The token itself can instead be given in the AGENTD_AUTH_TOKEN variable.
    #[arg(long, env = "AGENTD_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Allow listening on a non-loopback address without an auth token. Anyone who can reach
    /// the address can then run commands as this user.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// A browser origin (`scheme://host[:port]`) whose requests are allowed on TCP; repeat
    /// the flag or separate with commas. None by default: any request with an `Origin` header
    /// is refused (403), so no web page can drive agentd.
    #[arg(long, env = "AGENTD_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// A host name allowed in the `Host` header of TCP requests besides loopback and the
    /// listen addresses (DNS rebinding protection); repeat the flag or separate with commas.
    #[arg(long, env = "AGENTD_ALLOW_HOST", value_delimiter = ',')]
    pub allow_host: Vec<String>,

    /// Connections served at once per listener kind (TCP, unix socket); further connections
    /// wait in the kernel's listen backlog until one closes.
    #[arg(long, env = "AGENTD_MAX_CONNECTIONS", default_value_t = crate::config::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How long a connection may take to send a complete request head, and stay idle between
    /// requests, in milliseconds (tests shorten it).
    #[arg(long, env = "AGENTD_HEADER_READ_TIMEOUT_MS", hide = true,
          default_value_t = crate::config::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=30_000))]
    pub header_read_timeout_ms: u64,

    /// Log format on stderr. Default: json when stderr is not a terminal, else pretty.
    #[arg(long, env = "AGENTD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, an `EnvFilter` string such as `info` or `agentd=debug,agentmcp=trace`.
    #[arg(long, env = "AGENTD_LOG", default_value = "info")]
    pub log_level: String,

    /// Do not give processes chatd's non-interactive defaults (`GIT_EDITOR=true`, `TERM=dumb`,
    /// `PAGER=cat`, ...) beneath the request's own `env`.
    #[arg(long, env = "AGENTD_NO_DEFAULT_CHILD_ENV")]
    pub no_default_child_env: bool,

    /// Threads of the async runtime. Default: half the CPUs, 1 to 8 — agentd is a sidecar and
    /// leaves cores to the workspace; each extra worker also costs cross-thread wakeups on
    /// every request.
    #[arg(long, env = "AGENTD_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,

    /// Start processes on the CPU of the daemon thread that spawns them, as the kernel would,
    /// instead of moving each one to another CPU before it execs (for comparisons).
    #[arg(long, env = "AGENTD_SPAWN_SAME_CPU", hide = true)]
    pub spawn_same_cpu: bool,

    /// Run as the container's init: a minimal PID 1 that reaps every orphan of the namespace
    /// and forwards termination signals to the daemon. Implied when agentd is PID 1.
    #[arg(long, env = "AGENTD_INIT")]
    pub init: bool,

    /// How process trees are contained: a cgroup v2 leaf per process where agentd can
    /// create one (auto), or a child subreaper tracking reparented descendants (for tests).
    #[arg(long, env = "AGENTD_CONTAINMENT", value_enum, default_value_t = Containment::Auto, hide = true)]
    pub containment: Containment,

    /// Exited processes kept readable at most; the oldest exits are forgotten first.
    #[arg(long, env = "AGENTD_MAX_EXITED_PROCESSES", default_value_t = agentproc::DEFAULT_MAX_EXITED, hide = true)]
    pub max_exited_processes: usize,

    /// Chats the git path store keeps (least recently used forgotten first).
    #[arg(long, env = "AGENTD_GIT_MAX_CHATS", default_value_t = gitwatch::DEFAULT_MAX_CHATS, hide = true)]
    pub git_max_chats: usize,

    /// Paths the git path store keeps per chat (least recently touched forgotten first).
    #[arg(long, env = "AGENTD_GIT_MAX_PATHS_PER_CHAT", default_value_t = gitwatch::DEFAULT_MAX_PATHS_PER_CHAT, hide = true)]
    pub git_max_paths_per_chat: usize,

    /// Accounted bytes the git path store keeps for all chats together.
    #[arg(long, env = "AGENTD_GIT_MAX_PATH_BYTES", default_value_t = gitwatch::DEFAULT_MAX_BYTES, hide = true)]
    pub git_max_path_bytes: usize,

    /// Repositories one git watch subscription follows (least recently touched dropped).
    #[arg(long, env = "AGENTD_GIT_MAX_REPOS", default_value_t = gitwatch::DEFAULT_MAX_REPOS, hide = true)]
    pub git_max_repos: usize,

    /// Chats the context store keeps (least recently used forgotten first).
    #[arg(long, env = "AGENTD_CONTEXT_MAX_CHATS", default_value_t = agentcontextconfig::MAX_CHAT_SCOPES, hide = true)]
    pub context_max_chats: usize,

    /// Longest file-system call on a client-chosen path, in milliseconds.
    #[arg(long, env = "AGENTD_FS_TIMEOUT_MS", default_value_t = gitwatch::DEFAULT_FS_TIMEOUT.as_millis() as u64, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub fs_timeout_ms: u64,

    /// Processes that may run at once; further starts answer 429.
    #[arg(long, env = "AGENTD_MAX_PROCESSES", default_value_t = agentproc::DEFAULT_MAX_RUNNING)]
    pub max_processes: usize,

    /// How long an exited process stays readable, in milliseconds (tests shorten it).
    #[arg(
        long,
        env = "AGENTD_PROCESS_RETENTION_MS",
        default_value_t = agentproc::DEFAULT_RETENTION.as_millis() as u64,
        hide = true
    )]
    pub process_retention_ms: u64,

    /// How often exited processes are swept, in milliseconds.
    #[arg(
        long,
        env = "AGENTD_PROCESS_SWEEP_MS",
        default_value_t = agentproc::DEFAULT_SWEEP_INTERVAL.as_millis() as u64,
        hide = true
    )]
    pub process_sweep_ms: u64,

    /// Longest `?wait=true` long-poll, in milliseconds (tests shorten it).
    #[arg(
        long,
        env = "AGENTD_PROCESS_MAX_WAIT_MS",
        default_value_t = crate::config::DEFAULT_MAX_WAIT.as_millis() as u64,
        hide = true
    )]
    pub process_max_wait_ms: u64,

    /// Longest MCP tool call, in milliseconds (default 60 000).
    #[arg(long, env = "AGENTD_MCP_CALL_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub mcp_call_timeout_ms: Option<u64>,

    /// Budget for starting and initialising one MCP server, in milliseconds (default 30 000).
    #[arg(long, env = "AGENTD_MCP_CONNECT_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub mcp_connect_timeout_ms: Option<u64>,

    /// First MCP server restart delay, in milliseconds (tests shorten it).
    #[arg(long, env = "AGENTD_MCP_BACKOFF_MIN_MS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub mcp_backoff_min_ms: Option<u64>,

    /// Cap of the MCP server restart delay, in milliseconds.
    #[arg(long, env = "AGENTD_MCP_BACKOFF_MAX_MS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub mcp_backoff_max_ms: Option<u64>,
}

/// `agentd ctx` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CtxCommand {
    /// Read DIR's AGENTS.md and skills (DIR/.agents/skills, DIR/skills) and add them.
    Add(CtxAddArgs),
    /// Remove the parts added for a chat (or, without a chat, those added for every chat).
    Clear(CtxClearArgs),
    /// Show the stored parts (without a chat: every chat's).
    List(CtxListArgs),
}

/// Flags shared by the `ctx` subcommands.
#[derive(Debug, Args)]
pub(crate) struct CtxCommon {
    /// The daemon's control socket. Default: as `agentd serve` picks it
    /// (`$XDG_RUNTIME_DIR/agentd.sock`, else `<state dir>/agentd.sock`).
    #[arg(long, env = "AGENTD_SOCKET")]
    pub socket: Option<PathBuf>,

    /// The chat (a UUID). Default: `$CODER_CHAT_ID`; without either, every chat.
    #[arg(long, env = "CODER_CHAT_ID")]
    pub chat: Option<String>,
}

/// Flags of `agentd ctx add`.
#[derive(Debug, Args)]
pub(crate) struct CtxAddArgs {
    #[command(flatten)]
    pub common: CtxCommon,

    /// The directory to read. Default: the current directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Also send Coder's request to `$CODER_AGENT_URL` (on by default when CODER_AGENT_URL
    /// and CODER_AGENT_TOKEN are both set).
    #[arg(long)]
    pub upstream: bool,
}

/// Flags of `agentd ctx clear`.
#[derive(Debug, Args)]
pub(crate) struct CtxClearArgs {
    #[command(flatten)]
    pub common: CtxCommon,

    /// Also send Coder's request to `$CODER_AGENT_URL` (on by default when CODER_AGENT_URL
    /// and CODER_AGENT_TOKEN are both set).
    #[arg(long)]
    pub upstream: bool,
}

/// Flags of `agentd ctx list`.
#[derive(Debug, Args)]
pub(crate) struct CtxListArgs {
    #[command(flatten)]
    pub common: CtxCommon,

    /// Print the daemon's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}
