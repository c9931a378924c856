//! Network safety against the real binary (issue 13): browser origins and DNS rebinding are
//! refused on TCP (not on the unix socket), slow and idle connections are closed after the
//! header-read timeout without cutting long-polls or WebSockets, connections are capped,
//! the control socket is never connectable by others, and secrets stay out of the log.

use std::time::{Duration, Instant};

use agentd_tests::{Agentd, Options, unix_request};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CHAT: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";

fn start(args: &[&str]) -> Agentd {
    Agentd::start_with_args(args)
}

/// A raw HTTP/1.1 exchange: (status, JSON body or the text as a string).
async fn raw(addr: &str, request: String) -> (u16, Value) {
    let r =
        agentd_tests::RawResponse::parse(&agentd_tests::raw_tcp(addr, request.as_bytes()).await);
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
    )
}

fn start_request(addr: &str, headers: &str, body: &str) -> String {
    format!(
        "POST /api/v0/processes/start HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn cross_origin_text_plain_post_is_403_and_runs_nothing() {
    let d = Agentd::start();
    let marker = d.workdir.join("ran");
    let body = json!({"command": format!("touch {}", marker.display())}).to_string();

    let (s, v) = raw(
        &d.addr,
        start_request(&d.addr, "Origin: https://evil.example\r\n", &body),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["message"], "Forbidden.");
    assert_eq!(
        v["detail"],
        "requests from origin \"https://evil.example\" are not allowed (browser pages cannot \
         drive agentd; allow an origin explicitly with --allow-origin)"
    );
    // `Origin: null` (sandboxed frames, file:// pages) is refused too.
    let (s, _) = raw(&d.addr, start_request(&d.addr, "Origin: null\r\n", &body)).await;
    assert_eq!(s, 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "a refused request ran its command");
    let (s, v) = d.get_json("/api/v0/processes/list").await;
    assert_eq!(s, 200);
    assert_eq!(v["processes"], json!([]));

    // Without Origin the same text/plain body is still decoded as JSON and runs (chatd, curl).
    let (s, v) = raw(&d.addr, start_request(&d.addr, "", &body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["started"], true);
    agentd_tests::eventually(Duration::from_secs(5), async || {
        marker.exists().then_some(())
    })
    .await;
}

#[tokio::test]
async fn cross_origin_websocket_upgrade_is_403() {
    let d = Agentd::start();
    let url = format!("ws://{}/api/v0/git/watch?chat_id={CHAT}", d.addr);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["message"], "Forbidden.");
        }
        Err(e) => panic!("expected a 403, got {e}"),
        Ok((_, res)) => panic!("cross-origin upgrade accepted: {}", res.status()),
    }
    // The same upgrade without Origin works.
    let (_ws, res) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(res.status(), 101);
}

#[tokio::test]
async fn foreign_host_names_are_403_localhost_and_addresses_are_fine() {
    let d = Agentd::start();
    let get = |host: &str| {
        format!("GET /api/v0/processes/list HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    for bad in [
        "evil.example",
        "evil.example:4114",
        "localhost.evil.example",
        "127.0.0.1.nip.io:4114",
    ] {
        let (s, v) = raw(&d.addr, get(bad)).await;
        assert_eq!(s, 403, "{bad}: {v}");
        assert_eq!(v["message"], "Forbidden.");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Host {bad:?} is not localhost, an IP address")),
            "{v}"
        );
    }
    for good in [
        "localhost:4114",
        "LocalHost",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]:4114",
        // Address literals cannot be rebound: Coder's tailnet forwarding sends these.
        "10.0.0.1:4114",
        "[fd7a:115c:a1e0::1]:4114",
    ] {
        let (s, v) = raw(&d.addr, get(good)).await;
        assert_eq!(s, 200, "{good}: {v}");
    }
}

#[tokio::test]
async fn allowed_origin_and_host_work_and_the_token_waives_the_host_check() {
    let d = Agentd::start_with(Options {
        args: vec![
            "--allow-origin".into(),
            "https://Chat.Example.com".into(),
            "--allow-host".into(),
            "workspace.internal".into(),
        ],
        token: Some("s3cret-token".into()),
        ..Options::default()
    });
    let auth = "Authorization: Bearer s3cret-token\r\n";
    let body = json!({"command": "true"}).to_string();
    let (s, v) = raw(
        &d.addr,
        start_request(
            &d.addr,
            &format!("Origin: https://chat.example.com\r\n{auth}"),
            &body,
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Exact match: another port or scheme is another origin.
    for other in ["https://chat.example.com:8443", "http://chat.example.com"] {
        let (s, _) = raw(
            &d.addr,
            start_request(&d.addr, &format!("Origin: {other}\r\n{auth}"), &body),
        )
        .await;
        assert_eq!(s, 403, "{other}");
    }
    let list = |host: &str, extra: &str| {
        format!(
            "GET /api/v0/processes/list HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    assert_eq!(
        raw(&d.addr, list("workspace.internal:4114", auth)).await.0,
        200
    );
    // A foreign Host with the token passes (a rebinding page cannot know the token) ...
    assert_eq!(raw(&d.addr, list("evil.example", auth)).await.0, 200);
    // ... without it, it is refused before auth is even asked.
    assert_eq!(raw(&d.addr, list("evil.example", "")).await.0, 403);
    assert_eq!(raw(&d.addr, list("127.0.0.1", "")).await.0, 401);
}

#[tokio::test]
async fn allowed_origins_come_from_the_environment_too() {
    let d = Agentd::start_with(Options {
        env: vec![(
            "AGENTD_ALLOW_ORIGIN".into(),
            "https://a.example,https://b.example:8080".into(),
        )],
        ..Options::default()
    });
    let get = |origin: &str| {
        format!(
            "GET /api/v0/processes/list HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n",
            d.addr
        )
    };
    assert_eq!(raw(&d.addr, get("https://a.example")).await.0, 200);
    assert_eq!(raw(&d.addr, get("https://b.example:8080")).await.0, 200);
    assert_eq!(raw(&d.addr, get("https://c.example")).await.0, 403);
}

#[test]
fn a_malformed_allowed_origin_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = agentd_tests::agentd_command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            "chat.example.com",
        ])
        .arg("--state-dir")
        .arg(tmp.path().join("st"))
        .arg("--socket")
        .arg(tmp.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "agentd: invalid --allow-origin \"chat.example.com\": expected scheme://host[:port], \
         e.g. https://chat.example.com\n"
    );
}

#[tokio::test]
async fn the_unix_socket_is_exempt_from_origin_and_host_checks() {
    let d = Agentd::start();
    let (s, body) = unix_request(
        &d.socket,
        "GET",
        "/api/v0/processes/list",
        &[("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // (`unix_request` sends `Host: agentd`, which TCP would refuse as well.)
    let (s, _) = raw(
        &d.addr,
        "GET /api/v0/processes/list HTTP/1.1\r\nHost: agentd\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(s, 403);
}

/// Reads until EOF; returns what came and when the server closed, or `None` if it did not
/// within `limit`.
async fn until_closed(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> Option<(Duration, String)> {
    let t0 = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((t0.elapsed(), String::from_utf8_lossy(&buf).into_owned()))
}

#[tokio::test]
async fn partial_and_silent_connections_are_closed_after_the_header_timeout() {
    let d = start(&["--header-read-timeout-ms", "600"]);
    let mut partial = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    partial
        .write_all(b"GET /api/v0/processes/li")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    let (t_partial, got) = until_closed(&mut partial, Duration::from_secs(5))
        .await
        .expect("a partial request line held its connection open for 5 s");
    assert!(t_partial >= Duration::from_millis(450), "{t_partial:?}");
    assert!(!got.contains(" 200 "), "{got}");
    let (t_silent, _) = until_closed(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection was held open for 5 s");
    assert!(t_silent < Duration::from_secs(3), "{t_silent:?}");

    // An idle keep-alive connection is closed after the same timeout, once its answer is out.
    let mut ka = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    ka.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
        .await
        .unwrap();
    let (t_ka, got) = until_closed(&mut ka, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection was held open for 5 s");
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(t_ka >= Duration::from_millis(450), "{t_ka:?}");
}

#[tokio::test]
async fn long_polls_and_websockets_outlive_the_header_timeout() {
    let d = start(&["--header-read-timeout-ms", "500"]);
    let (s, v) = d
        .post_json(
            "/api/v0/processes/start",
            &json!({"command": "sleep 1.5; echo done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let (s, v) = d
        .get_json(&format!("/api/v0/processes/{id}/output?wait=true"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(v["output"], "done\n");
    assert_eq!(v["running"], false);

    // A git watch that stays quiet for three timeouts still gets the next change.
    let repo = agentd_tests::gitwatch::init_repo(&d.workdir.join("repo"));
    let mut ws = agentd_tests::gitwatch::Ws::connect(&d, CHAT).await;
    agentd_tests::gitwatch::add_paths(&d, CHAT, &[], &[&repo.join("f.txt")]).await;
    ws.next(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(repo.join("new.txt"), "hello\n").unwrap();
    ws.refresh().await;
    let m = ws
        .wait_for(Duration::from_secs(10), |m| {
            m.to_string().contains("new.txt")
        })
        .await;
    assert_eq!(m["type"], "changes", "{m}");
}

#[tokio::test]
async fn three_hundred_idle_connections_do_not_delay_a_request() {
    let d = Agentd::start();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
        if i % 2 == 0 {
            // Half hold a partial request line, half never send a byte.
            s.write_all(b"POST /api/v0/processes/start HTTP/1.1\r\nHost: 127")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    let addr = d.addr.clone();
    let mut times = Vec::new();
    for _ in 0..5 {
        let addr = addr.clone();
        let t0 = Instant::now();
        let (s, v) = tokio::task::spawn_blocking(move || {
            agentd_tests::http1(&addr, "GET", "/api/v0/processes/list", "", None)
        })
        .await
        .unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, 200, "{v}");
    }
    let median = agentd_tests::percentile(&mut times, 50.0);
    println!("request with 300 idle connections open: median {median:.2} ms");
    assert!(median < 1000.0, "{times:?}");
    drop(idle);
}

#[tokio::test]
async fn beyond_the_connection_cap_clients_wait_in_the_backlog() {
    let d = start(&["--max-connections", "4", "--header-read-timeout-ms", "1000"]);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&d.addr).await.unwrap());
    }
    // All four slots are taken (accepted), so the next client waits in the backlog.
    d.wait_metric(r#"agentd_connections_open{listener="tcp"}"#, |n| n == 4.0)
        .await;
    let addr = d.addr.clone();
    let t0 = Instant::now();
    let (s, _) = tokio::task::spawn_blocking(move || {
        agentd_tests::http1(&addr, "GET", "/healthz", "", None)
    })
    .await
    .unwrap();
    let waited = t0.elapsed();
    assert_eq!(s, 200);
    // It was accepted only once the idle ones were timed out, and not refused.
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The unix socket has its own slots: not blocked by a full TCP side.
    let mut idle2 = Vec::new();
    for _ in 0..4 {
        idle2.push(tokio::net::TcpStream::connect(&d.addr).await.unwrap());
    }
    let t0 = Instant::now();
    let (s, _) = unix_request(&d.socket, "GET", "/healthz", &[], None).await;
    assert_eq!(s, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    drop((idle, idle2));
}

/// The raised open-file limit is logged at start.
#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let d = Agentd::start();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "{line}");
    let logged = d.logs.json().into_iter().any(|v| {
        v["message"] == "raised the open-file limit"
            || v["message"] == "open-file limit already at its maximum"
    });
    assert!(logged);
}

/// The socket is bound under umask 0177, so it is 0600 the moment it exists (a chmod after
/// bind leaves a window in which another user can connect). Traced with strace: the umask
/// call must come right before the socket's bind, on the same thread, and be restored.
#[test]
fn the_control_socket_is_bound_under_a_tight_umask() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("strace is not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("a.sock");
    let trace = tmp.path().join("trace.txt");
    let mut cmd = agentd_tests::clean_command(std::path::Path::new("strace"));
    cmd.args(["-f", "-qq", "-e", "trace=umask,bind", "-o"])
        .arg(&trace)
        .arg(agentd_tests::agentd_bin())
        .args(agentd_tests::serve_args(tmp.path(), &sock))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let daemon = agentd_tests::procfs::children(child.id())[0] as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let bind = lines
        .iter()
        .position(|l| l.contains("bind(") && l.contains(&format!("\"{}\"", sock.display())))
        .unwrap_or_else(|| panic!("no bind of the socket in:\n{text}"));
    let tid = lines[bind].split_whitespace().next().unwrap();
    let before = lines[..bind]
        .iter()
        .rev()
        .find(|l| l.starts_with(tid) && l.contains("umask("))
        .unwrap_or_else(|| panic!("no umask before the bind:\n{text}"));
    assert!(before.contains("umask(0177)"), "{before}");
    let after = lines[bind..]
        .iter()
        .find(|l| l.starts_with(tid) && l.contains("umask("))
        .unwrap_or_else(|| panic!("the umask was not restored:\n{text}"));
    assert!(after.contains("= 0177"), "{after}");
}

/// A stdio MCP server that prints its API key on stderr: the daemon logs the line with the
/// key replaced, and the key appears nowhere in the log.
#[tokio::test]
async fn mcp_server_stderr_is_logged_with_its_secrets_redacted() {
    const KEY: &str = "sk-live-0123456789abcdef";
    let mut entry = agentd_tests::mcp::fake(&["--stderr-env", "API_KEY"]);
    entry["env"] = json!({"API_KEY": KEY});
    let (d, _work) = agentd_tests::mcp::start(json!({"leaky": entry}), &[]);
    let line = d
        .logs
        .wait_for(Duration::from_secs(20), |v| {
            v["message"] == "MCP server stderr"
                && v["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("my API_KEY is"))
        })
        .expect("the server's stderr line was not logged");
    assert_eq!(line["line"], "fake-mcp-server: my API_KEY is [redacted]");
    assert_eq!(line["server"], "leaky");
    d.logs_settled().await;
    let leaked: Vec<String> = d
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains(KEY))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

/// A legacy SSE server whose endpoint event carries the session credential in its query,
/// and which drops every POST: the daemon's "POST failed" log line must not carry it.
/// (Multi-threaded: the fake server runs while the test blocks on the log.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_transport_errors_do_not_log_the_session_url() {
    const SESSION: &str = "SESSION-SECRET-4242";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            if buf[..n].starts_with(b"GET ") {
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                             Cache-Control: no-cache\r\n\r\nevent: endpoint\r\n\
                             data: /messages?sessionId={SESSION}\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
                held.push(s);
            }
            // A POST: drop the connection without an answer.
        }
    });
    let url = format!("http://127.0.0.1:{port}/sse");
    let (d, _work) = agentd_tests::mcp::start(json!({"legacy": {"type": "sse", "url": url}}), &[]);
    let line = d
        .logs
        .wait_for(Duration::from_secs(20), |v| {
            v["message"] == "sse: POST failed; closing"
        })
        .unwrap_or_else(|| panic!("no POST failure was logged:\n{}", d.logs.lines().join("\n")));
    assert_eq!(
        line["url"],
        format!("http://127.0.0.1:{port}/messages?[redacted]")
    );
    // Let a reconnect or two happen, then check every line.
    agentd_tests::mcp::wait_state(&d, "legacy", "failed", Duration::from_secs(20))
        .await
        .to_string();
    d.logs_settled().await;
    let leaked: Vec<String> = d
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains(SESSION))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    server.abort();
}

/// A token given as `AGENTD_AUTH_TOKEN` is in the daemon's initial environment, which the
/// kernel shows in `/proc/<pid>/environ` to every process of the same user — including the
/// commands the daemon runs. The daemon makes itself non-dumpable, so a command it starts
/// cannot read it. Run as `nobody` (as root, the check would be bypassed).
#[tokio::test]
async fn a_token_from_the_environment_is_not_readable_by_children() {
    const TOKEN: &str = "env-token-0123456789";
    if !nix::unistd::Uid::effective().is_root()
        || std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
    {
        eprintln!("needs root and setpriv to run the daemon as nobody; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    nix::unistd::chown(tmp.path(), Some(nobody), Some(nogroup)).unwrap();
    let sock = tmp.path().join("a.sock");
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agentd_tests::agentd_bin())
        .args(agentd_tests::serve_args(tmp.path(), &sock))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", tmp.path())
        .env("AGENTD_AUTH_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    agentd_tests::eventually(Duration::from_secs(20), async || {
        sock.exists().then_some(())
    })
    .await;
    let body = json!({"command": format!("cat /proc/{pid}/environ; echo \" rc=$?\"")}).to_string();
    let (s, v) = unix_request(&sock, "POST", "/api/v0/processes/start", &[], Some(&body)).await;
    assert_eq!(s, 200, "{v}");
    let v: Value = serde_json::from_str(&v).unwrap();
    let id = v["id"].as_str().unwrap();
    let (s, out) = unix_request(
        &sock,
        "GET",
        &format!("/api/v0/processes/{id}/output?wait=true"),
        &[],
        None,
    )
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert_eq!(s, 200, "{out}");
    let out: Value = serde_json::from_str(&out).unwrap();
    let text = out["output"].as_str().unwrap();
    assert!(!text.contains(TOKEN), "the child read the token: {text}");
    assert!(
        text.contains("Permission denied") && text.ends_with(" rc=1\n"),
        "{text}"
    );
}
