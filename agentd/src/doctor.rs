//! `agentd doctor`: checks, without starting the daemon, what `agentd serve` with the same
//! flags and environment would need — git, inotify limits, process containment, the state
//! dir, the socket, the workdir, the MCP config files, the listen addresses — and prints a
//! report (text or JSON) with an exit status: 0 when nothing failed, 1 otherwise.
//!
//! It must not change anything a running daemon relies on: it never removes a socket, never
//! keeps a port, and creates nothing but the state dir `serve` would create.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::config::ServeConfig;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    level: Level,
    message: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, name: &'static str, level: Level, message: impl Into<String>) {
        self.0.push(Check {
            name,
            level,
            message: message.into(),
        });
    }
}

/// Runs every check and prints the report.
pub(crate) fn run(args: &DoctorArgs) -> ExitCode {
    let mut r = Report::default();
    match ServeConfig::from_args(&args.serve, std::io::stderr().is_terminal()) {
        Ok(config) => {
            r.add("config", Level::Ok, "flags and environment are valid");
            check_all(&config, &mut r);
        }
        Err(e) => {
            r.add("config", Level::Fail, e.to_string());
            check_git(&mut r);
            check_inotify(&mut r);
        }
    }
    print(&r, args.json);
    if r.0.iter().any(|c| c.level == Level::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print(r: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(&serde_json::json!({ "checks": r.0 })) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("agentd: cannot encode the report: {e}"),
        }
        return;
    }
    for c in &r.0 {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {:<12} {}", c.name, c.message);
    }
    let (warn, fail) = r.0.iter().fold((0, 0), |(w, f), c| match c.level {
        Level::Warn => (w + 1, f),
        Level::Fail => (w, f + 1),
        Level::Ok => (w, f),
    });
    println!(
        "{} checks: {} ok, {warn} warning(s), {fail} failure(s)",
        r.0.len(),
        r.0.len() - warn - fail
    );
}

fn check_all(config: &ServeConfig, r: &mut Report) {
    check_git(r);
    check_inotify(r);
    check_containment(config, r);
    check_workdir(config, r);
    check_state_dir(config, r);
    check_socket(config, r);
    check_listen(config, r);
    check_mcp(config, r);
}

/// Runs `cmd` with a deadline; `None` if it could not run or took too long.
fn output_within(cmd: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn check_git(r: &mut Report) {
    let out = output_within(Command::new("git").arg("--version"), Duration::from_secs(5));
    match out {
        Some(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            r.add("git", Level::Ok, v);
        }
        _ => r.add(
            "git",
            Level::Warn,
            "git is not on PATH (or did not answer in 5 s): git watch cannot scan repositories",
        ),
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn check_inotify(r: &mut Report) {
    let watches = read_number("/proc/sys/fs/inotify/max_user_watches");
    let instances = read_number("/proc/sys/fs/inotify/max_user_instances");
    match (watches, instances) {
        (Some(w), Some(i)) if w >= 8192 && i >= 8 => r.add(
            "inotify",
            Level::Ok,
            format!("max_user_watches {w}, max_user_instances {i}"),
        ),
        (Some(w), Some(i)) => r.add(
            "inotify",
            Level::Warn,
            format!(
                "max_user_watches {w}, max_user_instances {i}: low limits make git watch and \
                 MCP config watching fall back to polling (raise fs.inotify.* with sysctl)"
            ),
        ),
        _ => r.add(
            "inotify",
            Level::Warn,
            "cannot read /proc/sys/fs/inotify limits: git watch falls back to polling",
        ),
    }
}

fn check_containment(config: &ServeConfig, r: &mut Report) {
    use agentproc::{ContainMode, ContainRequest};
    let req = config.processes.containment;
    match (agentproc::probe_containment(req), req) {
        (Ok(ContainMode::Cgroup), _) => r.add(
            "containment",
            Level::Ok,
            "cgroup: each process tree gets a cgroup v2 leaf (killed with cgroup.kill)",
        ),
        (Ok(ContainMode::Subreaper), _) => r.add(
            "containment",
            Level::Ok,
            "subreaper (as requested): orphans are adopted and tracked by a marker variable",
        ),
        (Err(e), ContainRequest::Cgroup) => r.add("containment", Level::Fail, e.to_string()),
        (Err(e), _) => r.add(
            "containment",
            Level::Warn,
            format!(
                "subreaper: {e}; a descendant that clears its environment and detaches can \
                 escape (delegate a cgroup v2 subtree to agentd for full containment)"
            ),
        ),
    }
}

fn check_workdir(config: &ServeConfig, r: &mut Report) {
    let w = config.workdir.display();
    match config.workdir_warning() {
        None => r.add("workdir", Level::Ok, format!("{w}")),
        Some(why) => r.add(
            "workdir",
            Level::Warn,
            format!("{w} {why}: processes run in $HOME until it exists"),
        ),
    }
}

fn check_state_dir(config: &ServeConfig, r: &mut Report) {
    match crate::server::prepare_state_dir(&config.state_dir) {
        Ok(()) => r.add(
            "state-dir",
            Level::Ok,
            format!("{} is writable (mode 0700)", config.state_dir.display()),
        ),
        Err(e) => r.add("state-dir", Level::Fail, e.to_string()),
    }
}

fn check_socket(config: &ServeConfig, r: &mut Report) {
    use std::os::unix::fs::FileTypeExt;
    let p = &config.socket;
    let shown = p.display();
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(p).is_ok() {
                r.add(
                    "socket",
                    Level::Fail,
                    format!("{shown}: another agentd is already serving on it"),
                );
            } else {
                r.add(
                    "socket",
                    Level::Ok,
                    format!("{shown} (a stale socket file; serve replaces it)"),
                );
            }
        }
        Ok(_) => r.add(
            "socket",
            Level::Fail,
            format!("{shown} exists and is not a socket; serve refuses to replace it"),
        ),
        Err(_) => {
            let parent = p.parent().unwrap_or(Path::new("/"));
            if parent.is_dir() || !parent.exists() {
                r.add("socket", Level::Ok, format!("{shown}"));
            } else {
                r.add(
                    "socket",
                    Level::Fail,
                    format!("{shown}: {} is not a directory", parent.display()),
                );
            }
        }
    }
}

fn check_listen(config: &ServeConfig, r: &mut Report) {
    for addr in &config.listen {
        // A plain bind, dropped at once: no SO_REUSEADDR, so a port in TIME_WAIT may report
        // busy here and still be usable by serve (which sets it).
        match TcpListener::bind(addr) {
            Ok(l) => {
                drop(l);
                let auth = if config.auth_token.is_some() {
                    "with a token"
                } else if addr.ip().is_loopback() {
                    "loopback, no token"
                } else {
                    "NO TOKEN (--insecure-no-auth)"
                };
                let level = if config.auth_token.is_none() && !addr.ip().is_loopback() {
                    Level::Warn
                } else {
                    Level::Ok
                };
                r.add("listen", level, format!("{addr} is free ({auth})"));
            }
            Err(e) => r.add(
                "listen",
                Level::Fail,
                format!("cannot listen on {addr}: {e} (is another agentd running?)"),
            ),
        }
    }
}

fn check_mcp(config: &ServeConfig, r: &mut Report) {
    let opts = crate::mcp_api::options(config);
    let files = &opts.config_files;
    let existing: Vec<_> = files.iter().filter(|f| f.is_file()).collect();
    let cfg = agentmcp::config::load(files, &|k| (opts.lookup)(k));
    for e in &cfg.file_errors {
        r.add(
            "mcp",
            Level::Fail,
            format!("{}: {}", e.path.display(), e.error),
        );
    }
    for e in cfg.invalid.values() {
        r.add(
            "mcp",
            Level::Fail,
            format!(
                "server {:?} in {}: {}",
                e.name,
                e.config_file.display(),
                e.secrets.redact(&e.error)
            ),
        );
    }
    if cfg.file_errors.is_empty() && cfg.invalid.is_empty() {
        let names: Vec<&str> = cfg.servers.keys().map(String::as_str).collect();
        let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let msg = if existing.is_empty() {
            format!("no config file found (looked for {})", shown.join(", "))
        } else if names.is_empty() {
            format!("{}: no servers", shown.join(", "))
        } else {
            format!("{} server(s): {}", names.len(), names.join(", "))
        };
        r.add("mcp", Level::Ok, msg);
    }
}
