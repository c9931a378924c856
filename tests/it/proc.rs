//! The process API against the real binary: Coder's conformance cases (its
//! `agent/agentproc` tests), the improvements (lingering descendants, exit signals, incremental reads, the
//! running cap, the sweep, shutdown), and hostile input.

use std::time::{Duration, Instant};

use agentd_tests::{Agentd, Options, eventually, rss_kib};
use agentproc::group_alive;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const A: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";
const B: &str = "8d0f5a3e-4c1b-4f7a-9a2e-6b5c4d3e2f1a";
const P: &str = "/api/v0/processes";

async fn call(
    d: &Agentd,
    method: &str,
    path: &str,
    chat: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let c = d.client();
    let mut r = match method {
        "GET" => c.get(d.url(path)),
        _ => c.post(d.url(path)),
    };
    if let Some(ch) = chat {
        r = r.header("Coder-Chat-Id", ch);
    }
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_vec());
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn start_as(d: &Agentd, chat: Option<&str>, body: Value) -> String {
    let (s, v) = call(
        d,
        "POST",
        &format!("{P}/start"),
        chat,
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["started"], true);
    v["id"].as_str().unwrap().to_owned()
}

async fn start(d: &Agentd, cmd: &str) -> String {
    start_as(d, None, json!({ "command": cmd })).await
}

async fn output(d: &Agentd, id: &str, query: &str) -> (u16, Value) {
    call(d, "GET", &format!("{P}/{id}/output{query}"), None, None).await
}

async fn wait(d: &Agentd, id: &str) -> Value {
    let (s, v) = output(d, id, "?wait=true").await;
    assert_eq!(s, 200);
    v
}

async fn signal(d: &Agentd, id: &str, chat: Option<&str>, body: &str) -> (u16, Value) {
    call(
        d,
        "POST",
        &format!("{P}/{id}/signal"),
        chat,
        Some(body.as_bytes()),
    )
    .await
}

async fn list(d: &Agentd, chat: Option<&str>) -> Vec<Value> {
    let (s, v) = call(d, "GET", &format!("{P}/list"), chat, None).await;
    assert_eq!(s, 200);
    v["processes"].as_array().unwrap().clone()
}

/// Removes `pid` (checking it is a real pid) so the rest can be compared exactly.
fn strip_pid(mut v: Value) -> Value {
    assert!(v["pid"].as_u64().unwrap() > 1, "{v}");
    v.as_object_mut().unwrap().remove("pid");
    v
}

#[tokio::test]
async fn start_contract_and_bad_input() {
    let d = Agentd::start();
    let id = start(&d, "echo hello").await;
    let u = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(u.get_version_num(), 4);
    assert_eq!(id, u.hyphenated().to_string());
    let id = start_as(&d, None, json!({"command": "true", "background": true})).await;
    assert!(
        list(&d, None)
            .await
            .iter()
            .any(|p| p["id"] == id.as_str() && p["background"] == true)
    );

    start_bodies_as_gos_decoder_reads_them(&d).await;
    start_beyond_the_body_and_argument_limits(&d).await;
    start_without_sh_on_path_then_still_alive(&d).await;
}

/// Start bodies Go's decoder refuses (400 with Coder's wording) or accepts (keys folded,
/// unknown fields ignored, a whitespace-only command).
async fn start_bodies_as_gos_decoder_reads_them(d: &Agentd) {
    let bad = |body: &'static [u8]| async move {
        call(d, "POST", &format!("{P}/start"), None, Some(body)).await
    };
    assert_eq!(
        bad(br#"{"command":""}"#).await,
        (400, json!({"message": "Command is required."}))
    );
    assert_eq!(
        bad(br#"{"workdir":"/"}"#).await,
        (400, json!({"message": "Command is required."}))
    );
    let (s, v) = bad(b"{invalid json").await;
    assert_eq!(s, 400);
    assert_eq!(v["message"], "Request body must be valid JSON.");
    assert_eq!(
        bad(b"").await,
        (
            400,
            json!({"message": "Request body must be valid JSON.", "detail": "EOF"})
        )
    );
    for wrong in [
        &br#"{"command":5}"#[..],
        br#"{"command":"x","env":[1]}"#,
        br#"{"command":"x","env":{"A":1}}"#,
        br#"{"command":"x","background":"yes"}"#,
        br#"[1,2]"#,
    ] {
        let (s, v) = call(d, "POST", &format!("{P}/start"), None, Some(wrong)).await;
        assert_eq!(s, 400, "{}", String::from_utf8_lossy(wrong));
        assert_eq!(v["message"], "Request body must be valid JSON.");
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    // Go's decoder: keys match case-insensitively; unknown fields are ignored.
    let (s, v) = bad(br#"{"Command":"echo folded","client_token":"x","timeout_ms":5}"#).await;
    assert_eq!(s, 200, "{v}");
    let out = wait(d, v["id"].as_str().unwrap()).await;
    assert_eq!(out["output"], "folded\n");
    // Whitespace-only commands are accepted (Coder parity).
    start(d, "   ").await;
}

/// A command beyond the body limit is a 413 before it is read; one within it but beyond the
/// kernel's argument limit a clean 500.
async fn start_beyond_the_body_and_argument_limits(d: &Agentd) {
    // A 10 MB command string: refused by the body limit before it is read (the request is
    // sent head-first over a raw socket so the early answer cannot race the upload).
    let head = format!(
        "POST {P}/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"command\":\"xxxx",
        10 * 1024 * 1024 + 16
    );
    let raw = agentd_tests::raw_tcp(&d.addr, head.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["message"], "Request body too large.");
    // Within the body limit but beyond the kernel's argument limit: a clean 500.
    let big = json!({ "command": format!("true {}", "x".repeat(3 * 1024 * 1024)) }).to_string();
    let (s, v) = call(d, "POST", &format!("{P}/start"), None, Some(big.as_bytes())).await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["message"], "Failed to start process.");
    assert!(v["detail"].as_str().unwrap().starts_with("start process: "));
}

/// `sh` not on PATH: Go's wording, which chatd matches on; the daemon is fine afterwards.
async fn start_without_sh_on_path_then_still_alive(d: &Agentd) {
    let bad = |body: &'static [u8]| async move {
        call(d, "POST", &format!("{P}/start"), None, Some(body)).await
    };
    // `sh` not on PATH: Go's wording, which chatd matches on.
    let (s, v) = bad(br#"{"command":"true","env":{"PATH":"/nonexistent"}}"#).await;
    assert_eq!(
        (s, v),
        (
            500,
            json!({
                "message": "Failed to start process.",
                "detail": "start process: exec: \"sh\": executable file not found in $PATH",
                "spawn_error": "exec: \"sh\": executable file not found in $PATH"
            })
        )
    );
    // The daemon is fine afterwards.
    let id = start(d, "echo still-alive").await;
    assert_eq!(wait(d, &id).await["output"], "still-alive\n");
}

#[tokio::test]
async fn working_directory() {
    let home = tempfile::tempdir().unwrap();
    let d = Agentd::start_with(Options {
        env: vec![("HOME".into(), home.path().display().to_string())],
        ..Default::default()
    });
    // Default: the daemon's workdir.
    let id = start(&d, "pwd").await;
    let wd = d.workdir.display().to_string();
    assert_eq!(wait(&d, &id).await["output"], format!("{wd}\n"));
    let entry = list(&d, None)
        .await
        .into_iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["workdir"], wd.as_str());

    // CustomWorkDir.
    let custom = tempfile::tempdir().unwrap();
    let id = start_as(
        &d,
        None,
        json!({"command": "touch marker.txt && ls marker.txt", "workdir": custom.path()}),
    )
    .await;
    let v = wait(&d, &id).await;
    assert_eq!(
        (v["exit_code"].clone(), v["output"].clone()),
        (json!(0), json!("marker.txt\n"))
    );

    // Relative: joined to the daemon's workdir; list reports the resolved path.
    std::fs::create_dir(d.workdir.join("sub")).unwrap();
    let id = start_as(&d, None, json!({"command": "pwd", "workdir": "sub"})).await;
    assert_eq!(wait(&d, &id).await["output"], format!("{wd}/sub\n"));
    let entry = list(&d, None)
        .await
        .into_iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["workdir"], format!("{wd}/sub"));

    // Missing: a clear 400, not a 500.
    let (s, v) = call(
        &d,
        "POST",
        &format!("{P}/start"),
        None,
        Some(br#"{"command":"true","workdir":"/nonexistent/dir"}"#),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({
                "message": "Working directory \"/nonexistent/dir\" does not exist.",
                "detail": format!("chdir /nonexistent/dir: no such file or directory (relative paths are resolved against {wd})")
            })
        )
    );

    // The configured directory vanished: $HOME.
    std::fs::remove_dir_all(&d.workdir).unwrap();
    let id = start(&d, "pwd").await;
    let home_s = home.path().display().to_string();
    assert_eq!(wait(&d, &id).await["output"], format!("{home_s}\n"));
    let entry = list(&d, None)
        .await
        .into_iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["workdir"], home_s.as_str());
}

#[tokio::test]
async fn environment_layering_and_priority() {
    let d = Agentd::start_with(Options {
        env: vec![
            ("BASE_ONLY".into(), "base".into()),
            ("OVERRIDE_ME".into(), "base".into()),
            ("TERM".into(), "xterm".into()),
            ("CODER_PROC_OOM_SCORE".into(), "500".into()),
            ("CODER_PROC_NICE_SCORE".into(), "7".into()),
        ],
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    let cmd = "echo $BASE_ONLY $OVERRIDE_ME $TERM $PAGER $GIT_EDITOR ${CODER_CHAT_ID-none} \
               ${AGENTD_AUTH_TOKEN-notoken}; cat /proc/self/oom_score_adj; nice";
    let id = start_as(
        &d,
        Some(A),
        json!({"command": cmd, "env": {"OVERRIDE_ME": "req", "CODER_CHAT_ID": "forged", "PAGER": "less"}}),
    )
    .await;
    assert_eq!(
        wait(&d, &id).await["output"],
        format!("base req dumb less true {A} notoken\n500\n7\n")
    );
    // Request env beats the non-interactive defaults; no chat → no CODER_CHAT_ID.
    let id = start_as(&d, None, json!({"command": cmd, "env": {"TERM": "vt100"}})).await;
    assert_eq!(
        wait(&d, &id).await["output"],
        "base base vt100 cat true none notoken\n500\n7\n"
    );
    // A malformed chat id is no chat (no injection).
    let id = start_as(
        &d,
        Some("not-a-uuid"),
        json!({"command": "echo ${CODER_CHAT_ID-none}"}),
    )
    .await;
    assert_eq!(wait(&d, &id).await["output"], "none\n");

    // Defaults off; Coder's default priority rules.
    let d = Agentd::start_with(Options {
        args: vec!["--no-default-child-env".into()],
        env: vec![("TERM".into(), "xterm".into())],
        ..Default::default()
    });
    let id = start(
        &d,
        "echo $TERM ${GIT_TERMINAL_PROMPT-unset}; cat /proc/self/oom_score_adj; nice",
    )
    .await;
    let own_oom: i32 = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", d.pid()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want_oom = if own_oom < 0 {
        0
    } else if own_oom >= 998 {
        1000
    } else {
        998
    };
    let own_nice = std::process::Command::new("nice").output().unwrap();
    let own_nice: i32 = String::from_utf8_lossy(&own_nice.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        wait(&d, &id).await["output"],
        format!("xterm unset\n{want_oom}\n{}\n", (own_nice + 5).min(19))
    );
}

#[tokio::test]
async fn list_contract() {
    let d = Agentd::start();
    let (s, v) = call(&d, "GET", &format!("{P}/list"), None, None).await;
    assert_eq!((s, v), (200, json!({"processes": []})));

    // FilterByChatID.
    let a1 = start_as(&d, Some(A), json!({"command": "true"})).await;
    let a2 = start_as(&d, Some(A), json!({"command": "true"})).await;
    let b1 = start_as(&d, Some(B), json!({"command": "true"})).await;
    let none = start(&d, "true").await;
    let ids = |l: Vec<Value>| -> Vec<String> {
        l.iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(list(&d, Some(A)).await), vec![a2.clone(), a1.clone()]);
    assert_eq!(ids(list(&d, Some(B)).await), vec![b1.clone()]);
    assert_eq!(
        ids(list(&d, None).await),
        vec![none.clone(), b1.clone(), a2.clone(), a1.clone()]
    );
    // The nil chat id is not a chat: it sees everything.
    assert_eq!(
        list(&d, Some("00000000-0000-0000-0000-000000000000"))
            .await
            .len(),
        4
    );
    for id in [&a1, &a2, &b1, &none] {
        wait(&d, id).await;
    }

    // Exact entry shape of an exited process.
    let e = list(&d, Some(B)).await.remove(0);
    let started = e["started_at_unix"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - started).abs() <= 5);
    assert_eq!(
        strip_pid(e.clone()),
        json!({
            "id": b1, "command": "true", "workdir": d.workdir.display().to_string(),
            "background": false, "running": false, "exit_code": 0,
            "started_at_unix": started, "exited_at_unix": e["exited_at_unix"],
        })
    );

    // RunningProcessesSortedFirst + SortAndLimit: 12 exited, then one running.
    let mut started_ids = Vec::new();
    for i in 0..12 {
        let id = start(&d, &format!("echo {i}")).await;
        wait(&d, &id).await;
        started_ids.push(id);
    }
    let running = start_as(
        &d,
        None,
        json!({"command": "sleep 300", "background": true}),
    )
    .await;
    let l = list(&d, None).await;
    assert_eq!(l.len(), 10);
    assert_eq!(l[0]["id"], running.as_str());
    assert_eq!(l[0]["running"], true);
    assert!(l[0].get("exit_code").is_none() && l[0].get("exited_at_unix").is_none());
    // Newest first, ties broken by start order.
    let expect: Vec<String> = started_ids.iter().rev().take(9).cloned().collect();
    assert_eq!(ids(l[1..].to_vec()), expect);
    let times: Vec<i64> = l
        .iter()
        .map(|p| p["started_at_unix"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    // MixedRunningAndExited: kill the running one.
    assert_eq!(
        signal(&d, &running, None, r#"{"signal":"kill"}"#).await.0,
        200
    );
}

#[tokio::test]
async fn output_contract() {
    let d = Agentd::start();
    let id = start(&d, "echo hello-output").await;
    let v = wait(&d, &id).await;
    assert_eq!(
        strip_pid(v),
        json!({"output": "hello-output\n", "running": false, "exit_code": 0})
    );
    // Already exited: returns at once.
    let t = Instant::now();
    wait(&d, &id).await;
    assert!(t.elapsed() < Duration::from_secs(1));

    let id = start(&d, "sleep 300").await;
    let (s, v) = output(&d, &id, "").await;
    assert_eq!(s, 200);
    assert_eq!(strip_pid(v), json!({"output": "", "running": true}));
    // Only the exact `true` waits.
    for q in ["?wait=TRUE", "?wait=1", "?wait="] {
        let t = Instant::now();
        assert_eq!(output(&d, &id, q).await.1["running"], true);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    signal(&d, &id, None, r#"{"signal":"kill"}"#).await;

    let (s, v) = output(&d, "nonexistent-id-12345", "").await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": "Process \"nonexistent-id-12345\" not found."})
        )
    );

    output_chat_id_enforcement(&d).await;
    output_wait_for_exit_and_lifecycle(&d).await;
    output_exceeds_buffer_and_invalid_utf8(&d).await;
}

/// ChatIDEnforcement: a chat's process is not found for another chat; one started without a
/// chat is readable by any chat (Coder parity).
async fn output_chat_id_enforcement(d: &Agentd) {
    // ChatIDEnforcement.
    let id = start_as(d, Some(A), json!({"command": "echo a"})).await;
    let (s, v) = call(d, "GET", &format!("{P}/{id}/output"), Some(B), None).await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": format!("Process \"{id}\" not found.")})
        )
    );
    assert_eq!(
        call(d, "GET", &format!("{P}/{id}/output"), Some(A), None)
            .await
            .0,
        200
    );
    assert_eq!(output(d, &id, "").await.0, 200);
    // A process started without a chat is readable by any chat (Coder parity).
    let id = start(d, "echo open").await;
    assert_eq!(
        call(d, "GET", &format!("{P}/{id}/output"), Some(B), None)
            .await
            .0,
        200
    );
}

/// WaitForExit, then the lifecycle: exit codes, stderr in write order.
async fn output_wait_for_exit_and_lifecycle(d: &Agentd) {
    // WaitForExit.
    let id = start(d, "echo hello-wait && sleep 0.1").await;
    let t = Instant::now();
    let v = wait(d, &id).await;
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert_eq!(
        (v["running"].clone(), v["exit_code"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(v["output"], "hello-wait\n");

    // Lifecycle: exit codes, stderr in write order, two lines.
    let id = start(d, "exit 42").await;
    assert_eq!(wait(d, &id).await["exit_code"], 42);
    let id = start(d, "echo one; echo two >&2; echo three; echo four >&2").await;
    assert_eq!(wait(d, &id).await["output"], "one\ntwo\nthree\nfour\n");
}

/// OutputExceedsBuffer (head and tail kept, the middle omitted), and NUL / invalid UTF-8
/// as valid JSON.
async fn output_exceeds_buffer_and_invalid_utf8(d: &Agentd) {
    // OutputExceedsBuffer: 1155 lines of ~65 bytes.
    let id = start(
        d,
        "for i in $(seq 1 1155); do echo \"line $i: padding to make it about sixty-five bytes xxxxxx\"; done",
    )
    .await;
    let v = wait(d, &id).await;
    let t = &v["truncated"];
    assert_eq!(t["strategy"], "head_tail");
    let out = v["output"].as_str().unwrap();
    assert!(t["omitted_bytes"].as_u64().unwrap() > 0);
    assert!(t["original_bytes"].as_u64().unwrap() > t["retained_bytes"].as_u64().unwrap());
    assert_eq!(t["retained_bytes"].as_u64().unwrap(), out.len() as u64);
    assert!(out.contains("... [omitted "));
    assert!(out.len() <= 32768, "{}", out.len());
    assert!(out.starts_with("line 1: "));
    assert!(out.ends_with("line 1155: padding to make it about sixty-five bytes xxxxxx\n"));

    // NUL and invalid UTF-8 come out as valid JSON.
    let id = start(d, r"printf 'a\000b\377c\n'").await;
    assert_eq!(wait(d, &id).await["output"], "a\u{0}b\u{FFFD}c\n");
}

#[tokio::test]
async fn wait_bound_shutdown_and_concurrent_waiters() {
    let d = Agentd::start_with_args(&["--process-max-wait-ms", "400"]);
    // The wait is bounded: 200 with running:true.
    let id = start(&d, "sleep 300").await;
    let t = Instant::now();
    let v = wait(&d, &id).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(v["running"], true);
    assert!(v.get("exit_code").is_none());

    signal(&d, &id, None, r#"{"signal":"kill"}"#).await;

    // ConcurrentWaiters: all return after a single kill.
    let d2 = Agentd::start();
    let id2 = start(&d2, "sleep 300").await;
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let d2 = &d2;
            let id2 = id2.clone();
            async move { wait(d2, &id2).await }
        })
        .collect();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(signal(&d2, &id2, None, r#"{"signal":"kill"}"#).await.0, 200);
    };
    let (results, ()) = tokio::join!(futures::future::join_all(waiters), killer);
    for v in results {
        assert_eq!(v["running"], false);
        assert_eq!(v["exit_code"], -1);
        assert_eq!(v["exit_signal"], "SIGKILL");
    }
}

#[tokio::test]
async fn signal_contract() {
    let d = Agentd::start();
    let id = start(&d, "sleep 300").await;
    assert_eq!(
        signal(&d, &id, None, r#"{"signal":"kill"}"#).await,
        (
            200,
            json!({"message": format!("Signal \"kill\" sent to process \"{id}\".")})
        )
    );
    let v = wait(&d, &id).await;
    assert_eq!(
        (v["exit_code"].clone(), v["exit_signal"].clone()),
        (json!(-1), json!("SIGKILL"))
    );
    assert_eq!(
        signal(&d, &id, None, r#"{"signal":"kill"}"#).await,
        (
            409,
            json!({"message": format!("Process \"{id}\" is not running.")})
        )
    );

    let id = start(&d, "sleep 300").await;
    assert_eq!(
        signal(&d, &id, None, r#"{"signal":"terminate"}"#).await.0,
        200
    );
    let v = wait(&d, &id).await;
    assert_eq!(
        (v["exit_code"].clone(), v["exit_signal"].clone()),
        (json!(-1), json!("SIGTERM"))
    );

    signal_validation_and_lookup(&d).await;
    signal_chat_isolation_and_the_whole_group(&d).await;
    signal_storm_on_one_id(&d).await;
}

/// An unknown id is a 404; a missing, unsupported or malformed signal a 400, checked before
/// the lookup.
async fn signal_validation_and_lookup(d: &Agentd) {
    assert_eq!(
        signal(d, "nope", None, r#"{"signal":"kill"}"#).await,
        (404, json!({"message": "Process \"nope\" not found."}))
    );
    let id = start(d, "sleep 300").await;
    assert_eq!(
        signal(d, &id, None, r#"{"signal":""}"#).await,
        (400, json!({"message": "Signal is required."}))
    );
    assert_eq!(
        signal(d, &id, None, r#"{}"#).await,
        (400, json!({"message": "Signal is required."}))
    );
    assert_eq!(
        signal(d, &id, None, r#"{"signal":"SIGFOO"}"#).await,
        (
            400,
            json!({"message": "Unsupported signal \"SIGFOO\". Use \"kill\" or \"terminate\"."})
        )
    );
    assert_eq!(signal(d, &id, None, r#"{"signal":"KILL"}"#).await.0, 400);
    let (s, v) = signal(d, &id, None, "{nope").await;
    assert_eq!(
        (s, v["message"].clone()),
        (400, json!("Request body must be valid JSON."))
    );
    // Validation precedes lookup: a bad signal on an unknown id is a 400.
    assert_eq!(signal(d, "nope", None, r#"{"signal":"x"}"#).await.0, 400);
}

/// Chat isolation comes first (even before the body is read), and kill reaches the whole
/// process group.
async fn signal_chat_isolation_and_the_whole_group(d: &Agentd) {
    // Chat isolation comes first, even before the body is read.
    let a = start_as(d, Some(A), json!({"command": "sleep 300"})).await;
    assert_eq!(signal(d, &a, Some(B), "{garbage").await.0, 404);
    assert_eq!(signal(d, &a, Some(A), r#"{"signal":"kill"}"#).await.0, 200);

    // kill reaches the whole group: `sleep 300 | cat` leaves no survivors.
    let id = start(d, "sleep 300 | cat").await;
    let pid = output(d, &id, "").await.1["pid"].as_u64().unwrap() as u32;
    assert!(group_alive(pid));
    signal(d, &id, None, r#"{"signal":"kill"}"#).await;
    wait(d, &id).await;
    eventually(Duration::from_secs(5), async || {
        (!group_alive(pid)).then_some(())
    })
    .await;
}

/// A signal storm on one id: every answer is 200 or 409, and the daemon is fine.
async fn signal_storm_on_one_id(d: &Agentd) {
    // A signal storm on one id: every answer is 200 or 409, and the daemon is fine.
    let id = start(d, "trap '' TERM; sleep 300").await;
    let storm: Vec<_> = (0..200)
        .map(|i| {
            let id = id.clone();
            async move {
                let sig = if i % 3 == 0 { "kill" } else { "terminate" };
                signal(d, &id, None, &format!(r#"{{"signal":"{sig}"}}"#))
                    .await
                    .0
            }
        })
        .collect();
    for s in futures::future::join_all(storm).await {
        assert!(s == 200 || s == 409, "{s}");
    }
    assert_eq!(wait(d, &id).await["exit_signal"], "SIGKILL");
    let _ = signal(d, &id, None, r#"{"signal":"kill"}"#).await;
}

#[tokio::test]
async fn lingering_descendants() {
    let d = Agentd::start();
    // The shell's real status within 1 s, with the leftovers visible.
    let id = start(&d, "sleep 30 & echo done").await;
    let t = Instant::now();
    let v = wait(&d, &id).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        (
            v["running"].clone(),
            v["exit_code"].clone(),
            v["output"].clone()
        ),
        (json!(false), json!(0), json!("done\n"))
    );
    assert_eq!(v["descendants_running"], true);
    let pids = v["descendant_pids"].as_array().unwrap();
    assert_eq!(pids.len(), 1);
    let pid = v["pid"].as_u64().unwrap() as u32;
    assert!(group_alive(pid));
    // The group can still be signalled (Coder would answer 409 with them running).
    assert_eq!(signal(&d, &id, None, r#"{"signal":"kill"}"#).await.0, 200);
    eventually(Duration::from_secs(5), async || {
        (!group_alive(pid)).then_some(())
    })
    .await;
    let v = output(&d, &id, "").await.1;
    assert!(v.get("descendants_running").is_none() && v.get("descendant_pids").is_none());
    assert_eq!(v["exit_code"], 0);

    // Output printed by a descendant after the shell exited is still captured.
    let id = start(&d, "(sleep 0.4; echo late) & echo early").await;
    let v = wait(&d, &id).await;
    assert_eq!(v["output"], "early\n");
    // A poller waiting for more after the shell exited gets the descendant's line, not an
    // immediate empty answer.
    let v = output(&d, &id, "?wait=true&since=6").await.1;
    assert_eq!(v["output"], "late\n");
    let v = eventually(Duration::from_secs(5), async || {
        let v = output(&d, &id, "").await.1;
        (v["output"] == "early\nlate\n" && v.get("descendants_running").is_none()).then_some(v)
    })
    .await;
    assert_eq!(v["exit_code"], 0);
}

#[tokio::test]
async fn incremental_reads() {
    let d = Agentd::start();
    let id = start(&d, "echo a; sleep 0.3; echo b").await;
    let v = eventually(Duration::from_secs(5), async || {
        let v = output(&d, &id, "?since=0").await.1;
        (v["output"] == "a\n").then_some(v)
    })
    .await;
    assert_eq!(v["next_offset"], 2);
    assert!(v.get("truncated").is_none() && v.get("gap_bytes").is_none());
    // wait=true with since wakes on new output (or exit).
    let v = output(&d, &id, "?wait=true&since=2").await.1;
    assert_eq!(
        (v["output"].clone(), v["next_offset"].clone()),
        (json!("b\n"), json!(4))
    );
    wait(&d, &id).await;
    let v = output(&d, &id, "?since=4").await.1;
    assert_eq!(
        strip_pid(v),
        json!({"output": "", "running": false, "exit_code": 0, "next_offset": 4})
    );
    // Beyond the window: a gap is reported.
    let id = start(&d, "head -c 200000 /dev/zero | tr '\\0' a").await;
    wait(&d, &id).await;
    let v = output(&d, &id, "?since=0").await.1;
    let gap = v["gap_bytes"].as_u64().unwrap();
    assert_eq!(gap, 200_000 - 65536);
    assert_eq!(v["output"].as_str().unwrap().len(), 32768);
    assert_eq!(v["next_offset"], gap + 32768);
    let (s, v) = output(&d, &id, "?since=abc").await;
    assert_eq!(
        (s, v["message"].clone()),
        (400, json!("Invalid \"since\" query parameter."))
    );
}

#[tokio::test]
async fn gigabyte_of_output_keeps_memory_flat() {
    let d = Agentd::start();
    // Warm up the allocator and the runtime's buffers.
    let id = start(&d, "head -c 50000000 /dev/zero").await;
    wait(&d, &id).await;
    let before = rss_kib(d.pid());
    let t = Instant::now();
    let id = start(&d, "head -c 1073741824 /dev/zero").await;
    let (s, v) = call(&d, "GET", &format!("{P}/{id}/output?wait=true"), None, None).await;
    assert_eq!(s, 200);
    let secs = t.elapsed().as_secs_f64();
    let after = rss_kib(d.pid());
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["truncated"]["original_bytes"], 1u64 << 30);
    assert!(v["output"].as_str().unwrap().len() <= 32768);
    eprintln!("1 GiB in {secs:.2}s; RSS {before} KiB -> {after} KiB");
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn many_processes_over_time() {
    let d = Agentd::start();
    let before = rss_kib(d.pid());
    // 1000 processes started over time, 50 at a time; every 5th one's output is checked.
    for batch in 0..20 {
        let ids: Vec<String> = futures::future::join_all((0..50).map(|i| {
            let d = &d;
            async move { start(d, &format!("echo {batch}-{i}")).await }
        }))
        .await;
        eventually(Duration::from_secs(20), async || {
            let m = d.metrics_text().await;
            m.contains("agentd_processes_running 0\n").then_some(())
        })
        .await;
        for (i, id) in ids.iter().enumerate().step_by(5) {
            let (s, v) = output(&d, id, "").await;
            assert_eq!(s, 200, "batch {batch} #{i}: {v}");
            assert_eq!(v["output"], format!("{batch}-{i}\n"));
        }
    }
    assert!(
        d.metrics_text()
            .await
            .contains("agentd_processes_started_total 1000\n")
    );
    assert_eq!(list(&d, None).await.len(), 10);
    let after = rss_kib(d.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS {before} KiB -> {after} KiB"
    );
}

/// The periodic sweep forgets exited processes without any list call.
#[tokio::test]
async fn sweep_forgets_exited_processes() {
    let d =
        Agentd::start_with_args(&["--process-retention-ms", "300", "--process-sweep-ms", "100"]);
    let id = start(&d, "true").await;
    wait(&d, &id).await;
    eventually(Duration::from_secs(10), async || {
        (output(&d, &id, "").await.0 == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn running_cap() {
    let d = Agentd::start_with_args(&["--max-processes", "5"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(start(&d, "sleep 300").await);
    }
    assert!(
        d.metrics_text()
            .await
            .contains("agentd_processes_running 5\n")
    );
    let (s, v) = call(
        &d,
        "POST",
        &format!("{P}/start"),
        None,
        Some(br#"{"command":"true"}"#),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            429,
            json!({
                "message": "Too many running processes.",
                "detail": "5 processes are already running (the limit is set with --max-processes); wait for some to exit or signal them"
            })
        )
    );
    signal(&d, &ids[0], None, r#"{"signal":"kill"}"#).await;
    wait(&d, &ids[0]).await;
    start(&d, "true").await;
    for id in &ids {
        let _ = signal(&d, id, None, r#"{"signal":"kill"}"#).await;
    }
}

#[tokio::test]
async fn list_reaps_after_retention() {
    let d = Agentd::start_with_args(&["--process-retention-ms", "1500"]);
    let id = start(&d, "true").await;
    wait(&d, &id).await;
    assert_eq!(output(&d, &id, "").await.0, 200);
    // Coder compares whole seconds; wait past the retention, then list reaps.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        output(&d, &id, "").await.0,
        200,
        "no sweep yet: only list reaps"
    );
    assert!(list(&d, None).await.is_empty());
    assert_eq!(output(&d, &id, "").await.0, 404);
    assert_eq!(signal(&d, &id, None, r#"{"signal":"kill"}"#).await.0, 404);
}

#[tokio::test]
async fn chat_tagged_logs_and_access_log() {
    let d = Agentd::start();
    let id = start_as(&d, Some(A), json!({"command": "echo x"})).await;
    wait(&d, &id).await;
    for msg in ["process started", "process exited"] {
        let line = d
            .logs
            .wait_for(Duration::from_secs(5), |v| {
                v["message"] == msg && v["process_id"] == id.as_str()
            })
            .unwrap();
        assert_eq!(line["chat_id"], A, "{line}");
    }
    // TestAccessLogIncludesChatID: one access line for the list, with the chat.
    list(&d, Some(B)).await;
    let line = d
        .logs
        .wait_for(Duration::from_secs(5), |v| {
            v["target"] == "agentd::access" && v["path"] == format!("{P}/list")
        })
        .unwrap();
    assert_eq!(line["chat_id"], B);
    d.logs_settled().await;
    let n = d
        .logs
        .json()
        .iter()
        .filter(|v| v["target"] == "agentd::access" && v["path"] == format!("{P}/list"))
        .count();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn nothing_survives_daemon_sigterm() {
    let mut d = Agentd::start();
    let cmds = [
        "sleep 300",
        "sleep 300 | cat",
        "trap '' TERM; sleep 300 & sleep 300",
        "sleep 300 & echo lingering",
        "sleep 300 >/dev/null 2>&1 & echo detached",
    ];
    let mut pids = Vec::new();
    let mut ids = Vec::new();
    for c in cmds {
        let id = start(&d, c).await;
        let pid = output(&d, &id, "").await.1["pid"].as_u64().unwrap() as u32;
        pids.push(pid);
        ids.push(id);
    }
    // The detached one has exited (its child lives on, off the pipe).
    let v = wait(&d, &ids[4]).await;
    assert_eq!(v["descendants_running"], true);
    for p in &pids {
        eventually(Duration::from_secs(5), async || {
            group_alive(*p).then_some(())
        })
        .await;
    }
    // A long-poll in flight when the signal comes answers 200 instead of hanging.
    let waiter = {
        let url = d.url(&format!("{P}/{}/output?wait=true", ids[0]));
        let c = d.client();
        tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    d.wait_metric(
        r#"agentd_http_requests_in_flight{route="/api/v0/processes/{id}/output"}"#,
        |n| n >= 1.0,
    )
    .await;
    let t = Instant::now();
    d.signal(Signal::SIGTERM);
    let (s, v) = waiter.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["running"], true);
    let st = tokio::task::spawn_blocking(move || {
        let st = d.wait_exit(Duration::from_secs(15));
        (st, d)
    })
    .await
    .unwrap();
    let status = st.0.expect("daemon did not exit");
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    for p in &pids {
        assert!(!group_alive(*p), "group {p} survived the daemon");
    }
}
