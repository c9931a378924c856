//! The daemon itself: core routes, error shapes, auth, the unix socket, startup errors,
//! shutdown, and chat identity as seen in the real JSON log lines.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use agentd_tests::{Agentd, Options, agentd_command, raw_tcp, unix_request};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const A: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";
const B: &str = "8d0f5a3e-4c1b-4f7a-9a2e-6b5c4d3e2f1a";
const C: &str = "11111111-2222-4333-8444-555555555555";

#[tokio::test]
async fn core_routes_and_error_shapes() {
    let d = Agentd::start();
    let c = d.client();

    let res = c.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    // `containment` is additive: how process trees are contained on this machine.
    let body = res.text().await.unwrap();
    let mode = if body.contains("\"containment\":\"cgroup\"") {
        "cgroup"
    } else {
        "subreaper"
    };
    assert_eq!(
        body,
        format!(
            "{{\"status\":\"ok\",\"version\":\"{}\",\"containment\":\"{mode}\"}}\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    let (s, v) = d.get_json("/").await;
    assert_eq!((s, v), (200, json!({"message": "Hello from the agent!"})));

    let res = c.get(d.url("/api/v0/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Route not found.", "detail": "GET /api/v0/nope"})
    );

    let res = c.post(d.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Method not allowed.", "detail": "POST is not allowed on /healthz"})
    );

    // A body announced over the limit is refused before it is read.
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        5 * 1024 * 1024
    );
    let raw = raw_tcp(&d.addr, head.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    assert!(
        raw.ends_with(
            "{\"message\":\"Request body too large.\",\"detail\":\"the limit is 4194304 bytes\"}\n"
        ),
        "{raw}"
    );

    // Request ids are echoed.
    let res = c
        .get(d.url("/"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");

    let text = d.metrics_text().await;
    assert!(
        text.contains(
            "agentd_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains(
        "agentd_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"
    ));
    assert!(text.contains("# TYPE agentd_http_request_duration_seconds histogram"));
}

/// A chunked body has no Content-Length to refuse up front: the JSON extractor's limit must
/// still answer 413 in Coder's shape.
#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Agentd::start();
    let s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let upload = tokio::spawn(async move {
        let head = "POST /api/v0/processes/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..80 {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut buf)).await;
    upload.abort();
    let raw = String::from_utf8_lossy(&buf);
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    assert!(
        raw.ends_with(
            "{\"message\":\"Request body too large.\",\"detail\":\"the limit is 4194304 bytes\"}\n"
        ),
        "{raw}"
    );
}

#[tokio::test]
async fn auth_with_token() {
    let d = Agentd::start_with(Options {
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    let plain = reqwest::Client::new();
    // healthz needs no token.
    assert_eq!(
        plain.get(d.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let res = plain.get(d.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Unauthorized.", "detail": "send the daemon's token as 'Authorization: Bearer <token>'"})
    );
    let res = plain
        .get(d.url("/"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Unknown routes are not revealed without a token.
    assert_eq!(
        plain.get(d.url("/nope")).send().await.unwrap().status(),
        401
    );
    let res = plain
        .get(d.url("/"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = plain
        .get(d.url("/"))
        .header("Authorization", "bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The unix socket needs no token.
    let (s, body) = unix_request(&d.socket, "GET", "/", &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(body, "{\"message\":\"Hello from the agent!\"}\n");
}

#[tokio::test]
async fn auth_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "  from-file\n").unwrap();
    let d = Agentd::start_with(Options {
        args: vec!["--auth-token-file".into(), f.display().to_string()],
        ..Default::default()
    });
    let plain = reqwest::Client::new();
    assert_eq!(plain.get(d.url("/")).send().await.unwrap().status(), 401);
    assert_eq!(
        plain
            .get(d.url("/"))
            .bearer_auth("from-file")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = agentd_command().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn startup_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st").display().to_string();
    let sock = tmp.path().join("s.sock").display().to_string();
    let base = [
        "serve",
        "--state-dir",
        &st,
        "--socket",
        &sock,
        "--log-format",
        "json",
    ];

    // Non-loopback without a token.
    let mut args = base.to_vec();
    args.extend(["--listen", "0.0.0.0:0"]);
    let (code, err) = run_to_exit(&args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to listen on non-loopback address 0.0.0.0:0 without an auth token"),
        "{err}"
    );

    // Missing token file.
    let mut args = base.to_vec();
    args.extend([
        "--listen",
        "127.0.0.1:0",
        "--auth-token-file",
        "/nonexistent/token",
    ]);
    let (code, err) = run_to_exit(&args);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read auth token file /nonexistent/token"),
        "{err}"
    );

    // Port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = base.to_vec();
    args.extend(["--listen", &addr]);
    let (code, err) = run_to_exit(&args);
    assert_eq!(code, 1);
    // Each cause once (the OS error is not repeated as a `source`).
    let last = err.lines().rfind(|l| l.starts_with("agentd: ")).unwrap();
    assert_eq!(
        last,
        format!(
            "agentd: cannot listen on {addr}: Address already in use (os error 98) \
             (is another agentd running? choose another address with --listen)"
        ),
        "{err}"
    );

    // Unusable state dir (a path below a regular file).
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("state").display().to_string();
    let (code, err) = run_to_exit(&[
        "serve",
        "--state-dir",
        &bad,
        "--socket",
        &sock,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("state directory {bad} is not usable")),
        "{err}"
    );
}

#[test]
fn bad_tuning_values_are_startup_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st").display().to_string();
    for (var, val, flag) in [
        ("AGENTD_MCP_CALL_TIMEOUT_MS", "abc", "--mcp-call-timeout-ms"),
        (
            "AGENTD_MCP_CONNECT_TIMEOUT_MS",
            "0",
            "--mcp-connect-timeout-ms",
        ),
    ] {
        let out = agentd_command()
            .args(["serve", "--state-dir", &st, "--listen", "127.0.0.1:0"])
            .env(var, val)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("invalid value '{val}' for '{flag} <")),
            "{var}={val}: {err}"
        );
    }
}

#[tokio::test]
async fn insecure_no_auth_allows_any_address() {
    let d = Agentd::start_with(Options {
        listen: false,
        args: vec![
            "--listen".into(),
            "0.0.0.0:0".into(),
            "--insecure-no-auth".into(),
        ],
        ..Default::default()
    });
    assert!(d.addr.starts_with("0.0.0.0:"), "{}", d.addr);
}

#[test]
fn version_and_help() {
    let out = agentd_command().arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], format!("agentd {}", env!("CARGO_PKG_VERSION")));
    let commit = lines[1].strip_prefix("commit: ").unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    assert_eq!(
        lines[2],
        format!("target: {}-unknown-linux-gnu", std::env::consts::ARCH)
    );
    assert_eq!(lines[3], "profile: dev");
    assert_eq!(lines[4], "static: no");
    let out = agentd_command().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--socket",
        "--workdir",
        "--state-dir",
        "--auth-token-file",
        "--insecure-no-auth",
        "--log-format",
        "--log-level",
        "AGENTD_LISTEN",
        "AGENTD_LOG",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn socket_mode_stale_replacement_and_clean_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("agentd.sock");
    // A stale socket file left by a crashed daemon.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut d = Agentd::start_with(Options {
        socket: Some(sock.clone()),
        ..Default::default()
    });
    assert_eq!(d.socket.file_name().unwrap(), "agentd.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let state_mode = std::fs::metadata(&d.state_dir)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o700);
    let (s, _) = unix_request(&sock, "GET", "/healthz", &[], None).await;
    assert_eq!(s, 200);

    // A second daemon on the same live socket refuses to start.
    let st2 = tmp.path().join("st2").display().to_string();
    let (code, err) = run_to_exit(&[
        "serve",
        "--socket",
        &sock.display().to_string(),
        "--state-dir",
        &st2,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("another agentd is already serving on it"),
        "{err}"
    );

    let t = Instant::now();
    d.signal(Signal::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(st.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(!sock.exists(), "socket not removed");
}

#[tokio::test]
async fn sigint_also_exits_zero() {
    let mut d = Agentd::start();
    d.signal(Signal::SIGINT);
    assert_eq!(
        d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(!d.socket.exists());
}

/// Sends `GET /nope` (its handler logs a debug line) with the given chat headers and returns
/// (the access-log line, the in-handler line).
async fn logged(d: &Agentd, chat: Option<&str>, anc: Option<&str>) -> (Value, Value) {
    let rid = uuid::Uuid::new_v4().to_string();
    let mut req = d.client().get(d.url("/nope")).header("X-Request-Id", &rid);
    if let Some(c) = chat {
        req = req.header("Coder-Chat-Id", c);
    }
    if let Some(a) = anc {
        req = req.header("Coder-Ancestor-Chat-Ids", a);
    }
    assert_eq!(req.send().await.unwrap().status(), 404);
    let access = d
        .logs
        .wait_for(Duration::from_secs(5), |v| {
            v["request_id"] == rid.as_str() && v["target"] == "agentd::access"
        })
        .expect("access log line");
    let inner = d
        .logs
        .wait_for(Duration::from_secs(5), |v| {
            v["request_id"] == rid.as_str() && v["message"] == "no such route"
        })
        .expect("in-handler line");
    (access, inner)
}

#[tokio::test]
async fn chat_identity_in_logs() {
    let d = Agentd::start();

    let (a, inner) = logged(&d, None, None).await;
    assert!(
        a.get("chat_id").is_none() && a.get("ancestor_chat_ids").is_none(),
        "{a}"
    );
    assert!(inner.get("chat_id").is_none());
    assert_eq!(a["method"], "GET");
    assert_eq!(a["path"], "/nope");
    assert_eq!(a["status"], 404);
    assert!(a["duration_ms"].as_f64().is_some());

    let (a, inner) = logged(&d, Some(A), None).await;
    assert_eq!(a["chat_id"], A);
    assert!(a.get("ancestor_chat_ids").is_none());
    assert_eq!(
        inner["chat_id"], A,
        "lines inside the handler carry chat_id"
    );

    let two = format!("[\"{B}\",\"{C}\"]");
    let (a, _) = logged(&d, Some(A), Some(&two)).await;
    assert_eq!(a["ancestor_chat_ids"], json!([B, C]));

    let (a, _) = logged(&d, Some("not-a-uuid"), None).await;
    assert!(a.get("chat_id").is_none(), "{a}");
    assert!(
        d.logs
            .wait_for(Duration::from_secs(5), |v| v["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed Coder-Chat-Id"))
                && v["header"] == "not-a-uuid")
            .is_some()
    );

    let (a, _) = logged(&d, Some(A), Some("{this is not json}")).await;
    assert_eq!(a["chat_id"], A);
    assert!(a.get("ancestor_chat_ids").is_none());

    let partial = format!("[\"{B}\",\"bad-uuid\",\"{C}\"]");
    let (a, _) = logged(&d, Some(A), Some(&partial)).await;
    assert_eq!(a["ancestor_chat_ids"], json!([B, C]));

    let (a, _) = logged(&d, Some(""), None).await;
    assert!(a.get("chat_id").is_none());

    let (a, _) = logged(&d, Some(A), Some("")).await;
    assert_eq!(a["chat_id"], A);
    assert!(a.get("ancestor_chat_ids").is_none());

    let (a, _) = logged(&d, Some(A), Some("null")).await;
    assert!(a.get("ancestor_chat_ids").is_none());

    // The other accepted UUID forms log the canonical id.
    let (a, _) = logged(&d, Some(&format!("urn:uuid:{A}")), None).await;
    assert_eq!(a["chat_id"], A);
    let (a, _) = logged(&d, Some(&A.replace('-', "")), None).await;
    assert_eq!(a["chat_id"], A);
}

/// Info lines are written in batches while serving (at most 50 ms late), and every one of
/// them still reaches stderr — whole — when the daemon stops right after them.
#[tokio::test]
async fn batched_log_lines_arrive_promptly_and_survive_shutdown() {
    let mut d = Agentd::start_with(Options {
        log_level: Some("info".into()),
        ..Default::default()
    });
    let c = d.client();
    let count = |d: &Agentd, rid: &str| {
        d.logs
            .json()
            .iter()
            .filter(|v| v["target"] == "agentd::access" && v["request_id"] == rid)
            .count()
    };
    let t = Instant::now();
    for _ in 0..20 {
        let r = c
            .get(d.url("/healthz"))
            .header("X-Request-Id", "batch-a")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while count(&d, "batch-a") < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(count(&d, "batch-a"), 20);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Lines still in the buffer when the signal comes are written on the way out.
    for _ in 0..5 {
        c.get(d.url("/healthz"))
            .header("X-Request-Id", "batch-b")
            .send()
            .await
            .unwrap();
    }
    d.signal(Signal::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    let stopped = d.logs.wait_for(Duration::from_secs(5), |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))
    });
    assert!(stopped.is_some(), "{}", d.logs.lines().join("\n"));
    assert_eq!(count(&d, "batch-b"), 5);
    for line in d.logs.lines() {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok_and(|v| v.is_object()),
            "not a whole JSON line: {line}"
        );
    }
}
