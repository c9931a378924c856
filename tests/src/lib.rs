//! End-to-end test harness: starts the real agentd binary on free loopback ports with a
//! temporary state dir, workdir and socket, captures its JSON log lines, and offers small
//! HTTP helpers over TCP and over the unix socket.
//!
//! Nothing here mocks agentd: every request goes through real sockets to the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod bench;
pub mod context;
pub mod gitwatch;
pub mod mcp;
pub mod openapi;
pub mod procfs;

/// A binary of this package, next to the running test executable's `deps/` folder (cargo
/// builds the package's binaries before its tests and benches).
pub fn package_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// Path of the agentd binary under test: `AGENTD_BENCH_BIN` if set (benches compare another
/// build, e.g. an older commit's, in the same run), else this package's build.
pub fn agentd_bin() -> PathBuf {
    match std::env::var_os("AGENTD_BENCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => package_bin("agentd-under-test"),
    }
}

/// Path of the in-repo fake MCP server.
pub fn fake_mcp_server_bin() -> PathBuf {
    package_bin("fake-mcp-server")
}

/// Collected stderr lines of a running daemon.
#[derive(Default, Clone)]
pub struct Logs {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Logs {
    fn push(&self, line: String) {
        let (m, cv) = &*self.inner;
        m.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// All raw lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().clone()
    }

    /// All lines that parse as JSON objects.
    pub fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits until a JSON line matches `pred`, returning it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut seen = 0;
        let mut guard = m.lock().unwrap();
        loop {
            for l in guard.iter().skip(seen) {
                if let Ok(v) = serde_json::from_str::<Value>(l)
                    && pred(&v)
                {
                    return Some(v);
                }
            }
            seen = guard.len();
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// Options for starting a daemon.
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub token: Option<String>,
    pub workdir: Option<PathBuf>,
    /// Listen on 127.0.0.1:0 (default true).
    pub listen: bool,
    /// Control socket path (default: in the temp dir).
    pub socket: Option<PathBuf>,
    /// Log filter (default `debug`; benchmarks use `info`, as production does).
    pub log_level: Option<String>,
    /// State dir (default: in the temp dir); reuse one to test a restart.
    pub state_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            args: vec![],
            env: vec![],
            token: None,
            workdir: None,
            listen: true,
            socket: None,
            log_level: None,
            state_dir: None,
        }
    }
}

/// A running daemon. Killed (with its process group) when dropped.
pub struct Agentd {
    pub child: Child,
    pub addr: String,
    pub socket: PathBuf,
    pub workdir: PathBuf,
    pub state_dir: PathBuf,
    pub logs: Logs,
    pub token: Option<String>,
    pub tmp: tempfile::TempDir,
}

/// The daemon's log filter: `Options::log_level`, else an `AGENTD_LOG` in `Options::env`
/// (the flag would override it), else `debug` (tests read debug lines; benches ask for
/// `info`, which still has the lines the harness waits for).
fn log_level(opts: &Options) -> &str {
    opts.log_level
        .as_deref()
        .or_else(|| {
            opts.env
                .iter()
                .find(|(k, _)| k == "AGENTD_LOG")
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or("debug")
}

/// A command for the agentd binary with a clean environment: no AGENTD_* or XDG_* variables
/// leak in from the developer's shell.
pub fn agentd_command() -> Command {
    clean_command(&agentd_bin())
}

/// A command for `bin` (an agentd build) with the clean environment of [`agentd_command`].
pub fn clean_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AGENTD_") || k.starts_with("XDG_") || k.starts_with("CODER_") {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// The arguments of `agentd serve` for a daemon started under a wrapper (strace, setpriv):
/// an ephemeral loopback port, JSON logs, `socket` as the control socket, `dir/st` as the
/// state dir and `dir` as the workdir.
pub fn serve_args(dir: &Path, socket: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--socket",
    ]
    .iter()
    .map(Into::into)
    .collect();
    v.push(socket.into());
    v.push("--state-dir".into());
    v.push(dir.join("st").into());
    v.push("--workdir".into());
    v.push(dir.into());
    v
}

impl Agentd {
    /// Starts with default options.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts agentd with extra command-line flags (everything else as [`Agentd::start`]).
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with(Options {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Options::default()
        })
    }

    /// Starts and waits until the TCP listener is up (its address is read from the log).
    pub fn start_with(opts: Options) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state_dir = opts
            .state_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("state"));
        let socket = opts
            .socket
            .clone()
            .unwrap_or_else(|| tmp.path().join("agentd.sock"));
        let workdir = opts.workdir.clone().unwrap_or_else(|| {
            let w = tmp.path().join("work");
            std::fs::create_dir_all(&w).unwrap();
            w
        });
        let mut cmd = agentd_command();
        cmd.arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--workdir")
            .arg(&workdir)
            .args(["--log-format", "json", "--log-level"])
            .arg(log_level(&opts));
        if opts.listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&opts.args);
        if let Some(t) = &opts.token {
            cmd.env("AGENTD_AUTH_TOKEN", t);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn agentd");
        let logs = Logs::default();
        let stderr = child.stderr.take().unwrap();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    match line {
                        Ok(l) => logs.push(l),
                        Err(_) => break,
                    }
                }
            });
        }
        let ready = logs.wait_for(Duration::from_secs(20), |v| v["message"] == "agentd ready");
        if ready.is_none() {
            // Not yet owned by an `Agentd` (whose drop kills it): do not leave it running.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "agentd did not become ready; log:\n{}",
                logs.lines().join("\n")
            );
        }
        let addr = logs
            .json()
            .iter()
            .find(|v| v["message"] == "listening on tcp")
            .map(|v| v["addr"].as_str().unwrap().to_owned())
            .unwrap_or_default();
        Agentd {
            child,
            addr,
            socket,
            workdir,
            state_dir,
            logs,
            token: opts.token,
            tmp,
        }
    }

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client that sends the daemon's token (if any) on every request, with a new
    /// connection per request as chatd does.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// GET, returning status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.client().get(self.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON body, returning status and JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self
            .client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let res = self
            .client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap();
        res.text().await.unwrap()
    }

    /// Polls `GET /metrics` (over the unix socket, so a full TCP side cannot hold it back)
    /// until the sample `name_with_labels` (e.g.
    /// `agentd_http_requests_in_flight{route="/api/v0/mcp/call-tool"}`, written as the page
    /// writes it) has a value for which `pred` holds, and returns it. Panics after 10 s with
    /// the last value seen. The signal to wait on instead of a sleep when a test needs
    /// another request or connection to have started.
    pub async fn wait_metric(&self, name_with_labels: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let prefix = format!("{name_with_labels} ");
        let mut last = None;
        loop {
            let (status, page) = unix_request(&self.socket, "GET", "/metrics", &[], None).await;
            assert_eq!(status, 200, "{page}");
            last = page
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .or(last);
            if let Some(v) = last.filter(|v| pred(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name_with_labels} did not reach the expected value within 10 s; last value: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Returns once every line the daemon logged before this call is in `logs`: a marker
    /// request's access line is written after them (lines keep their order) and is waited
    /// for. Count log lines only after this.
    pub async fn logs_settled(&self) {
        let marker = format!("settle-{}", uuid::Uuid::new_v4().simple());
        let r = self
            .client()
            .get(self.url("/healthz"))
            .header("X-Request-Id", &marker)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let seen = self.logs.wait_for(Duration::from_secs(5), |v| {
            v["target"] == "agentd::access" && v["request_id"] == marker.as_str()
        });
        assert!(seen.is_some(), "the marker's access line never came");
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agentd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over the unix socket at `socket` with `Host: agentd` and a new
/// connection (reqwest's `ClientBuilder::unix_socket`, which needs no extra feature):
/// returns (status, body). A body is sent as `application/json`.
pub async fn unix_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .unix_socket(socket)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("http://agentd{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body.filter(|b| !b.is_empty()) {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_owned());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// A query value, form-encoded as Go's `url.Values.Encode` does (unreserved bytes as they
/// are, space as `+`, the rest `%XX`), except that `/` stays readable.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition; panics if it
/// is missing or not an integer.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing"))
        .trim()
        .parse()
        .unwrap()
}

/// A path as a string (`Path::display`), the form JSON bodies and queries carry.
pub fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends raw bytes to a TCP address and returns what comes back until the server closes
/// (or 5 s pass).
pub async fn raw_tcp(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A raw HTTP/1.x answer (from [`raw_tcp`]) taken apart.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code; 0 if the status line does not parse.
    pub status: u16,
    /// The `Content-Type` header's value (the name matched in any case); empty if absent.
    pub content_type: String,
    /// Everything after the blank line; empty if there is none.
    pub body: String,
}

impl RawResponse {
    /// Splits `text` into status, content type and body.
    pub fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        Self {
            status,
            content_type,
            body: body.to_owned(),
        }
    }
}

/// One HTTP/1.1 request on a new blocking connection, the leanest client there is (what a
/// latency benchmark of the server should pay, and nothing more): returns the status and
/// the JSON body (`Null` if the body is not JSON). Reads exactly `Content-Length` bytes.
pub fn http1(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|v| v.parse().ok()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length header");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the whole body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    (status, body)
}

/// The `p`-th percentile (nearest rank) of `v`; sorts `v`. 0 for an empty slice.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
