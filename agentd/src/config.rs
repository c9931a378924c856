//! Turns parsed flags into a validated [`ServeConfig`]: default paths, the auth token, the
//! loopback rule. Errors here are startup errors a person reads, so they say what to do.
//!
//! This module reads the process environment (it is the binary's edge); library crates never do.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::{LogFormat, ServeArgs};

/// Environment variable holding the auth token itself.
pub(crate) const ENV_AUTH_TOKEN: &str = "AGENTD_AUTH_TOKEN";
/// Environment variable naming the auth token file.
pub(crate) const ENV_AUTH_TOKEN_FILE: &str = "AGENTD_AUTH_TOKEN_FILE";

/// Variables the daemon consumes and children must never see: these, and the
/// `CODER_AGENT_EXP_*` context-config variables (`agentcontextconfig::ENV_VARS`),
/// which configure the daemon's own discovery; children that need them run `agentd ctx`.
const SCRUBBED_ENV: &[&str] = &[ENV_AUTH_TOKEN, ENV_AUTH_TOKEN_FILE];

/// Everything `agentd serve` needs, resolved and validated.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// TCP addresses to bind.
    pub listen: Vec<SocketAddr>,
    /// Unix control socket path.
    pub socket: PathBuf,
    /// Workspace directory (absolute).
    pub workdir: PathBuf,
    /// State directory (absolute, created 0700).
    pub state_dir: PathBuf,
    /// Bearer token for TCP requests, if any.
    pub auth_token: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter string.
    pub log_filter: String,
    /// The base environment of every child process (processes and MCP servers).
    pub child_env: Vec<(OsString, OsString)>,
    /// The `CODER_AGENT_EXP_*` context-config values, read once at startup (children never
    /// inherit them). Resolve per request with [`agentcontextconfig::RawConfig::resolve`].
    pub context: agentcontextconfig::RawConfig,
    /// `$HOME`, if set.
    pub home: Option<PathBuf>,
    /// Process API settings.
    pub processes: ProcessSettings,
    /// MCP timing overrides (`None`: agentmcp's defaults).
    pub mcp: McpSettings,
    /// Memory and file-system bounds (issue 13).
    pub bounds: Bounds,
    /// Who may connect and how connections are bounded (`netguard`, `conn`).
    pub net: NetSettings,
}

/// Memory and file-system bounds (hidden flags lower them for tests).
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// Git path store bounds.
    pub git_paths: gitwatch::PathLimits,
    /// Repositories one git watch subscription follows.
    pub git_max_repos: usize,
    /// Chat scopes the context store keeps.
    pub context_max_chats: usize,
    /// Longest file-system call on a client-chosen path.
    pub fs_timeout: std::time::Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            git_paths: gitwatch::PathLimits::default(),
            git_max_repos: gitwatch::DEFAULT_MAX_REPOS,
            context_max_chats: agentcontextconfig::MAX_CHAT_SCOPES,
            fs_timeout: gitwatch::DEFAULT_FS_TIMEOUT,
        }
    }
}

/// Connections served at once per listener kind, by default.
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 512;
/// Time to send a request head (and idle time between requests), by default.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(15);

/// Network-facing settings: allowed origins and hosts, connection bounds.
#[derive(Debug, Clone)]
pub(crate) struct NetSettings {
    /// `--allow-origin` values, validated `scheme://host[:port]`.
    pub allow_origins: Vec<String>,
    /// `--allow-host` values.
    pub allow_hosts: Vec<String>,
    /// Connections served at once per listener kind.
    pub max_connections: usize,
    /// Header-read and keep-alive idle timeout.
    pub header_read_timeout: std::time::Duration,
}

impl Default for NetSettings {
    fn default() -> Self {
        Self {
            allow_origins: vec![],
            allow_hosts: vec![],
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Checks an `--allow-origin` value: `scheme://host[:port]`, nothing after.
fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    let o = crate::netguard::normalize_origin(raw);
    let bad = || ConfigError::Origin(raw.to_owned());
    let (scheme, rest) = o.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        || rest.is_empty()
        || rest.contains(['/', '?', '#', '@', ' '])
    {
        return Err(bad());
    }
    Ok(o)
}

/// MCP timing overrides from `--mcp-*-ms` / `AGENTD_MCP_*_MS`.
#[derive(Debug, Clone, Default)]
pub(crate) struct McpSettings {
    /// Longest tool call.
    pub call_timeout: Option<std::time::Duration>,
    /// Start + initialise budget per server.
    pub connect_timeout: Option<std::time::Duration>,
    /// First restart delay.
    pub backoff_min: Option<std::time::Duration>,
    /// Restart delay cap.
    pub backoff_max: Option<std::time::Duration>,
}

/// Longest `?wait=true` long-poll (Coder's 5 minutes).
pub(crate) const DEFAULT_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Process API settings (see `proc_api`).
#[derive(Debug, Clone)]
pub(crate) struct ProcessSettings {
    /// Apply chatd's non-interactive env defaults beneath the request's env.
    pub default_child_env: bool,
    /// Running processes allowed at once.
    pub max_running: usize,
    /// How long an exited process stays readable.
    pub retention: std::time::Duration,
    /// Sweep period.
    pub sweep_interval: std::time::Duration,
    /// Start children away from the spawning thread's CPU (see `agentproc::Config::spread`).
    pub spread: bool,
    /// How process trees are contained.
    pub containment: agentproc::ContainRequest,
    /// Exited processes kept readable at most.
    pub max_exited: usize,
    /// Longest `?wait=true`.
    pub max_wait: std::time::Duration,
    /// `CODER_PROC_OOM_SCORE`.
    pub oom_score: Option<i32>,
    /// `CODER_PROC_NICE_SCORE`.
    pub nice_score: Option<i32>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            default_child_env: true,
            max_running: agentproc::DEFAULT_MAX_RUNNING,
            retention: agentproc::DEFAULT_RETENTION,
            sweep_interval: agentproc::DEFAULT_SWEEP_INTERVAL,
            spread: true,
            containment: agentproc::ContainRequest::Auto,
            max_exited: agentproc::DEFAULT_MAX_EXITED,
            max_wait: DEFAULT_MAX_WAIT,
            oom_score: None,
            nice_score: None,
        }
    }
}

fn env_int(name: &str) -> Result<Option<i32>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::NotAnInteger {
                    name: name.to_owned(),
                    value: v,
                })
        }
        _ => Ok(None),
    }
}

/// A startup error; its words are meant for a person.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The current directory cannot be read.
    #[error("cannot read the current directory: {0}")]
    Cwd(#[source] std::io::Error),
    /// An `--allow-origin` value is not `scheme://host[:port]`.
    #[error(
        "invalid --allow-origin {0:?}: expected scheme://host[:port], e.g. https://chat.example.com"
    )]
    Origin(String),
    /// An integer environment variable holds something else.
    #[error("{name}={value:?} is not an integer (unset it or give a number)")]
    NotAnInteger {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
    /// Neither `XDG_STATE_HOME` nor `HOME` is set.
    #[error(
        "cannot pick a state directory: neither XDG_STATE_HOME nor HOME is set \
         (pass --state-dir or set AGENTD_STATE_DIR)"
    )]
    NoStateDir,
    /// The token file cannot be read.
    #[error("cannot read auth token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds nothing but white space.
    #[error("auth token file {} is empty", .0.display())]
    EmptyToken(PathBuf),
    /// A `--listen` value is neither an address nor a resolvable `host:port`.
    #[error("invalid listen address {raw:?}: {source} (expected HOST:PORT, e.g. 127.0.0.1:4114)")]
    Listen {
        /// The value.
        raw: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// A `--listen` host name resolves to no address.
    #[error("listen address {0:?} resolves to nothing")]
    ListenResolvesToNothing(String),
    /// A non-loopback listener without a token (and without `--insecure-no-auth`).
    #[error(
        "refusing to listen on non-loopback address {addr} without an auth token: \
         set AGENTD_AUTH_TOKEN or --auth-token-file, or pass --insecure-no-auth \
         if the network itself is trusted (to make a token file: umask 077; \
         head -c 32 /dev/urandom | base64 > {tok}; then pass --auth-token-file {tok})",
        tok = token.display()
    )]
    NoToken {
        /// The address.
        addr: SocketAddr,
        /// Where a token file would go.
        token: PathBuf,
    },
}

impl ServeConfig {
    /// The directory used when a request names none: the workdir once it is a directory,
    /// else `$HOME` (Coder's `DefaultWorkDirClosureNonExistentFallsBackToHome`: the agent
    /// starts before the startup script clones the repo into the workdir). One `stat`:
    /// call it on the blocking pool.
    pub(crate) fn effective_workdir(&self) -> PathBuf {
        match (&self.home, self.workdir.is_dir()) {
            (Some(home), false) => home.clone(),
            _ => self.workdir.clone(),
        }
    }

    /// Why the workdir cannot be used yet, if it cannot (logged once at startup; processes,
    /// context discovery and MCP pick it up as soon as it exists).
    pub(crate) fn workdir_warning(&self) -> Option<String> {
        match std::fs::metadata(&self.workdir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("is not a directory".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("does not exist yet".to_owned())
            }
            Err(e) => Some(format!("cannot be used: {e}")),
        }
    }

    /// Resolves flags plus environment into a config. Does not create anything on disk.
    pub(crate) fn from_args(
        args: &ServeArgs,
        stderr_is_terminal: bool,
    ) -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::Cwd)?;
        let home = std::env::var_os("HOME").map(PathBuf::from);

        let workdir = match &args.workdir {
            Some(w) => absolutize(&cwd, w),
            None => cwd.clone(),
        };

        let state_dir = match &args.state_dir {
            Some(s) => absolutize(&cwd, s),
            None => default_state_dir(home.as_deref())?,
        };
        let socket = match &args.socket {
            Some(s) => absolutize(&cwd, s),
            None => default_socket(&state_dir),
        };

        let auth_token = read_token(args.auth_token_file.as_deref())?;

        let mut listen = Vec::new();
        for raw in args
            .listen
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let addr = parse_listen(raw)?;
            if !addr.ip().is_loopback() && auth_token.is_none() && !args.insecure_no_auth {
                let token = state_dir.join("token");
                return Err(ConfigError::NoToken { addr, token });
            }
            listen.push(addr);
        }

        let log_format = args.log_format.unwrap_or(if stderr_is_terminal {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });

        Ok(Self {
            listen,
            child_env: child_base_env(std::env::vars_os(), &socket),
            socket,
            workdir,
            state_dir,
            auth_token,
            log_format,
            log_filter: args.log_level.clone(),
            context: agentcontextconfig::RawConfig::from_lookup(|k| std::env::var(k).ok()),
            home,
            processes: ProcessSettings {
                default_child_env: !args.no_default_child_env,
                max_running: args.max_processes,
                retention: std::time::Duration::from_millis(args.process_retention_ms),
                sweep_interval: std::time::Duration::from_millis(args.process_sweep_ms),
                spread: !args.spawn_same_cpu,
                containment: match args.containment {
                    crate::cli::Containment::Auto => agentproc::ContainRequest::Auto,
                    crate::cli::Containment::Cgroup => agentproc::ContainRequest::Cgroup,
                    crate::cli::Containment::Subreaper => agentproc::ContainRequest::Subreaper,
                },
                max_exited: args.max_exited_processes,
                max_wait: std::time::Duration::from_millis(args.process_max_wait_ms),
                oom_score: env_int("CODER_PROC_OOM_SCORE")?,
                nice_score: env_int("CODER_PROC_NICE_SCORE")?,
            },
            bounds: Bounds {
                git_paths: gitwatch::PathLimits {
                    max_chats: args.git_max_chats,
                    max_paths_per_chat: args.git_max_paths_per_chat,
                    max_bytes: args.git_max_path_bytes,
                },
                git_max_repos: args.git_max_repos.max(1),
                context_max_chats: args.context_max_chats.max(1),
                fs_timeout: std::time::Duration::from_millis(args.fs_timeout_ms),
            },
            net: NetSettings {
                allow_origins: args
                    .allow_origin
                    .iter()
                    .filter(|o| !o.trim().is_empty())
                    .map(|o| parse_origin(o))
                    .collect::<Result<_, _>>()?,
                // Host names given in --listen are names clients use, too.
                allow_hosts: args
                    .allow_host
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .chain(
                        args.listen
                            .iter()
                            .filter_map(|l| listen_host_name(l.trim())),
                    )
                    .filter(|h| !h.is_empty())
                    .collect(),
                max_connections: args.max_connections as usize,
                header_read_timeout: std::time::Duration::from_millis(args.header_read_timeout_ms),
            },
            mcp: McpSettings {
                call_timeout: args
                    .mcp_call_timeout_ms
                    .map(std::time::Duration::from_millis),
                connect_timeout: args
                    .mcp_connect_timeout_ms
                    .map(std::time::Duration::from_millis),
                backoff_min: args
                    .mcp_backoff_min_ms
                    .map(std::time::Duration::from_millis),
                backoff_max: args
                    .mcp_backoff_max_ms
                    .map(std::time::Duration::from_millis),
            },
        })
    }
}

/// Builds the base environment of a child process from the daemon's own environment: the
/// auth variables and the daemon-only configuration variables are removed, and
/// `AGENTD_SOCKET` points at this daemon so `agentd ctx` works from inside a child.
///
/// This is the single place that decides what children inherit; `agentproc` and `agentmcp`
/// receive its result as a value.
pub(crate) fn child_base_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    socket: &Path,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !SCRUBBED_ENV.contains(&k.as_ref())
                && !agentcontextconfig::ENV_VARS.contains(&k.as_ref())
                && k != "AGENTD_SOCKET"
        })
        .collect();
    env.push(("AGENTD_SOCKET".into(), socket.as_os_str().to_owned()));
    env
}

fn absolutize(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The default state dir: `$XDG_STATE_HOME/agentd`, else `~/.local/state/agentd`.
pub(crate) fn default_state_dir(home: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("agentd"));
    }
    match home {
        Some(h) => Ok(h.join(".local/state/agentd")),
        None => Err(ConfigError::NoStateDir),
    }
}

/// The default control socket: `$XDG_RUNTIME_DIR/agentd.sock`, else `<state dir>/agentd.sock`.
pub(crate) fn default_socket(state_dir: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("agentd.sock"),
        None => state_dir.join("agentd.sock"),
    }
}

/// Whether the token was given in the environment (`AGENTD_AUTH_TOKEN`), where every
/// process of the same user can read it in `/proc/<daemon>/environ` (see `server::run`).
pub(crate) fn token_in_environment() -> bool {
    std::env::var(ENV_AUTH_TOKEN).is_ok_and(|t| !t.trim().is_empty())
}

fn read_token(file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    if let Some(t) = std::env::var(ENV_AUTH_TOKEN)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_owned()));
    }
    let Some(file) = file else { return Ok(None) };
    let raw = std::fs::read_to_string(file).map_err(|source| ConfigError::TokenFile {
        path: file.to_path_buf(),
        source,
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken(file.to_path_buf()));
    }
    Ok(Some(token.to_owned()))
}

/// The host name of a `--listen` value that names a host rather than an address.
fn listen_host_name(raw: &str) -> Option<String> {
    if raw.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, _port) = raw.rsplit_once(':')?;
    (!host.is_empty()).then(|| host.to_owned())
}

fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = raw.parse::<SocketAddr>() {
        return Ok(a);
    }
    // Accept `localhost:PORT` and other host names by resolving them once.
    use std::net::ToSocketAddrs;
    let mut addrs = raw
        .to_socket_addrs()
        .map_err(|source| ConfigError::Listen {
            raw: raw.to_owned(),
            source,
        })?;
    addrs
        .next()
        .ok_or_else(|| ConfigError::ListenResolvesToNothing(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_env_drops_secrets_and_points_at_socket() {
        let vars = vec![
            ("PATH".into(), "/bin".into()),
            ("AGENTD_AUTH_TOKEN".into(), "s3cret".into()),
            ("AGENTD_AUTH_TOKEN_FILE".into(), "/t".into()),
            ("AGENTD_SOCKET".into(), "/old".into()),
            ("CODER_AGENT_EXP_MCP_CONFIG_FILES".into(), "x".into()),
        ];
        let env = child_base_env(vars, Path::new("/run/a.sock"));
        let keys: Vec<_> = env.iter().map(|(k, v)| (k.to_str(), v.to_str())).collect();
        assert_eq!(
            keys,
            vec![
                (Some("PATH"), Some("/bin")),
                (Some("AGENTD_SOCKET"), Some("/run/a.sock"))
            ]
        );
    }

    #[test]
    fn origins_are_validated() {
        assert_eq!(
            parse_origin("HTTPS://Chat.Example.com:8443/")
                .ok()
                .as_deref(),
            Some("https://chat.example.com:8443")
        );
        for bad in [
            "chat.example.com",
            "https://",
            "https://a/b",
            "://a",
            "http://a?x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_host_names_are_allowed_hosts() {
        assert_eq!(
            listen_host_name("localhost:4114").as_deref(),
            Some("localhost")
        );
        assert_eq!(listen_host_name("127.0.0.1:4114"), None);
        assert_eq!(listen_host_name("[::1]:4114"), None);
    }

    #[test]
    fn listen_parses_host_names() {
        assert!(parse_listen("localhost:0").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("nonsense").is_err());
    }
}
