//! MCP test helpers: `.mcp.json` entries for the in-repo fake server and the pinned
//! server-everything, HTTP-mode launchers bound to loopback, and status polling.

use crate::free_port;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Agentd, Options, eventually, fake_mcp_server_bin};

/// A stdio entry running the fake server with `args`.
pub fn fake(args: &[&str]) -> Value {
    json!({"command": fake_mcp_server_bin(), "args": args})
}

/// Directory of the node fixtures.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/node")
}

/// server-everything's entry point (installed by scripts/setup-test-deps.sh).
pub fn everything_js() -> PathBuf {
    let p = node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-test-deps.sh",
        p.display()
    );
    p
}

/// The `node` args for server-everything in `mode`, bound to loopback.
pub fn everything_args(mode: &str) -> Vec<String> {
    vec![
        "--require".into(),
        node_dir().join("loopback.cjs").display().to_string(),
        everything_js().display().to_string(),
        mode.into(),
    ]
}

/// A child killed (with its process group) on drop.
pub struct Bg {
    pub child: Child,
    pub url: String,
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

fn own_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// Starts the fake server in streamable-HTTP mode; its URL comes from its first stdout line.
pub fn fake_http(args: &[&str]) -> Bg {
    let mut cmd = Command::new(fake_mcp_server_bin());
    cmd.arg("--http")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    own_group(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Bg {
        child,
        url: line.trim().to_owned(),
    }
}

/// Starts server-everything in `streamableHttp` or `sse` mode on a free loopback port and
/// waits until it accepts connections. URL: `/mcp` or `/sse`.
pub async fn everything_http(mode: &str) -> Bg {
    let port = free_port();
    let mut cmd = Command::new("node");
    cmd.args(everything_args(mode))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    own_group(&mut cmd);
    let child = cmd.spawn().unwrap();
    let path = if mode == "sse" { "/sse" } else { "/mcp" };
    let bg = Bg {
        child,
        url: format!("http://127.0.0.1:{port}{path}"),
    };
    eventually(Duration::from_secs(20), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    bg
}

/// Starts agentd with `.mcp.json` = `{"mcpServers": servers}` in its workdir.
pub fn start(servers: Value, env: &[(&str, &str)]) -> (Agentd, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join(".mcp.json"),
        serde_json::to_vec(&json!({ "mcpServers": servers })).unwrap(),
    )
    .unwrap();
    let mut envs: Vec<(String, String)> = vec![
        ("AGENTD_MCP_BACKOFF_MIN_MS".into(), "100".into()),
        ("AGENTD_MCP_BACKOFF_MAX_MS".into(), "1000".into()),
    ];
    envs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Agentd::start_with(Options {
        workdir: Some(work.path().to_path_buf()),
        env: envs,
        ..Options::default()
    });
    (d, work)
}

/// The status entry of `name`.
pub async fn server(d: &Agentd, name: &str) -> Value {
    let (_, v) = d.get_json("/api/v0/mcp/servers").await;
    v["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Waits until server `name` is in `state`, returning its status entry.
pub async fn wait_state(d: &Agentd, name: &str, state: &str, timeout: Duration) -> Value {
    eventually(timeout, async || {
        let s = server(d, name).await;
        (s["state"] == state).then_some(s)
    })
    .await
}

/// Calls a tool.
pub async fn call(d: &Agentd, tool: &str, args: Value) -> (u16, Value) {
    d.post_json(
        "/api/v0/mcp/call-tool",
        &json!({"tool_name": tool, "arguments": args}),
    )
    .await
}

/// Exposed names of all tools, in order.
pub async fn tool_names(d: &Agentd) -> Vec<String> {
    let (_, v) = d.get_json("/api/v0/mcp/tools").await;
    v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}
