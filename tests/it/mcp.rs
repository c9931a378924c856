//! MCP: `.mcp.json` discovery, `/api/v0/mcp/tools`, `/call-tool`, `/servers`, against the
//! in-repo fake server (stdio and streamable HTTP, with misbehaviour switches) and the real
//! `@modelcontextprotocol/server-everything` in stdio, streamableHttp and sse modes.

use std::time::{Duration, Instant};

use agentd_tests::mcp::{
    call, everything_args, everything_http, fake, fake_http, server, start, tool_names, wait_state,
};
use agentd_tests::{Agentd, Options, eventually};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// A daemon whose `.mcp.json` has the fake server (with its two weird tool names and env
/// expansion), an entry with an unset variable, one with a reserved name and an empty one;
/// returned once the fake server is ready.
async fn contract_daemon() -> (Agentd, tempfile::TempDir) {
    let (d, work) = start(
        json!({
            "fake": {
                "command": agentd_tests::fake_mcp_server_bin(),
                "args": ["--weird-names"],
                "env": {"GREETING": "${MCP_TEST_GREETING:-hello-default}", "TOKEN": "${MCP_TEST_TOKEN}"}
            },
            "needs_var": {"command": "x", "env": {"K": "${MCP_TEST_UNSET_VAR}"}},
            "bad__name": {"command": "x"},
            "nothing": {},
        }),
        &[("MCP_TEST_TOKEN", "tok-abcdef")],
    );
    wait_state(&d, "fake", "ready", T).await;
    (d, work)
}

/// `GET /mcp/tools`: sorted, provider-safe names, Coder's fields and the lossless schema.
#[tokio::test]
async fn coder_contract_tools_list_names_and_schemas() {
    let (d, _work) = contract_daemon().await;
    let (s, v) = d.get_json("/api/v0/mcp/tools").await;
    assert_eq!(s, 200);
    let tools = v["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    let plain = [
        "fake__cwd",
        "fake__echo",
        "fake__env",
        "fake__fail",
        "fake__hang",
        "fake__huge",
        "fake__rich",
        "fake__schema",
        "fake__sleep",
    ];
    for p in plain {
        assert!(names.contains(&p), "{p} in {names:?}");
    }
    assert_eq!(names.len(), plain.len() + 2);
    // Provider-safe names for the two weird ones.
    for n in &names {
        assert!(
            n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{n}"
        );
    }
    let echo = tools.iter().find(|t| t["name"] == "fake__echo").unwrap();
    assert_eq!(echo["server_name"], "fake");
    assert_eq!(echo["description"], "Echo the message back");
    assert_eq!(
        echo["schema"],
        json!({"message": {"type": "string", "description": "The message."}})
    );
    assert_eq!(echo["required"], json!(["message"]));
    assert_eq!(echo["tool_name"], "echo");
    // Lossless schema: $defs kept in the additive field.
    let schema = tools.iter().find(|t| t["name"] == "fake__schema").unwrap();
    assert!(
        schema["input_schema"]["$defs"]["Nested"].is_object(),
        "{schema}"
    );
    assert_eq!(schema["schema"]["inner"]["$ref"], "#/$defs/Nested");
    // Tools with no parameters still have an object schema, never null.
    let cwd = tools.iter().find(|t| t["name"] == "fake__cwd").unwrap();
    assert_eq!(cwd["schema"], json!({}));
}

/// `POST /mcp/call-tool`: every content kind, omitted arguments, the server's cwd and env.
#[tokio::test]
async fn coder_contract_call_tool_content_args_and_env() {
    let (d, work) = contract_daemon().await;
    assert_eq!(
        call(&d, "fake__echo", json!({"message": "hi"})).await,
        (
            200,
            json!({"content": [{"type": "text", "text": "hi"}], "is_error": false})
        )
    );
    assert_eq!(
        call(&d, "fake__fail", json!({})).await,
        (
            200,
            json!({"content": [{"type": "text", "text": "it broke"}], "is_error": true})
        )
    );
    assert_eq!(
        call(&d, "fake__rich", json!({})).await,
        (
            200,
            json!({"content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "iVBORw0KGgo=", "media_type": "image/png"},
                {"type": "audio", "data": "UklGRg==", "media_type": "audio/wav"},
                {"type": "resource", "text": "embedded body", "media_type": "text/plain", "uri": "file:///notes.txt"},
                {"type": "resource", "text": "file:///linked.txt", "uri": "file:///linked.txt"}
            ], "is_error": false})
        )
    );
    // Arguments may be omitted.
    let (s, v) = d
        .post_json("/api/v0/mcp/call-tool", &json!({"tool_name": "fake__cwd"}))
        .await;
    assert_eq!(
        (s, v["content"][0]["text"].as_str().unwrap()),
        (200, work.path().to_str().unwrap())
    );
    // Env: the base env plus the entry's env, with ${VAR} and ${VAR:-default} expanded.
    assert_eq!(
        call(&d, "fake__env", json!({"name": "GREETING"})).await.1["content"][0]["text"],
        "hello-default"
    );
    assert_eq!(
        call(&d, "fake__env", json!({"name": "TOKEN"})).await.1["content"][0]["text"],
        "tok-abcdef"
    );
    assert_eq!(
        call(&d, "fake__env", json!({"name": "AGENTD_SOCKET"}))
            .await
            .1["content"][0]["text"],
        d.socket.to_str().unwrap()
    );
    assert_eq!(
        call(&d, "fake__env", json!({"name": "AGENTD_AUTH_TOKEN"}))
            .await
            .1["content"][0]["text"],
        "<unset>"
    );
}

/// Sanitised and truncated names are callable, and so is the raw `server__tool`.
#[tokio::test]
async fn coder_contract_sanitised_names_are_callable() {
    let (d, _work) = contract_daemon().await;
    let (_, v) = d.get_json("/api/v0/mcp/tools").await;
    let tools = v["tools"].as_array().unwrap();
    let dotted = tools
        .iter()
        .find(|t| t["tool_name"] == "dotted.name/x")
        .unwrap();
    assert_ne!(dotted["name"], "fake__dotted.name/x");
    for n in [dotted["name"].as_str().unwrap(), "fake__dotted.name/x"] {
        assert_eq!(
            call(&d, n, json!({})).await.1["content"][0]["text"],
            "dotted",
            "{n}"
        );
    }
    let long = tools
        .iter()
        .find(|t| t["description"] == "Too long")
        .unwrap();
    assert_eq!(long["name"].as_str().unwrap().len(), 64);
    assert_eq!(
        call(&d, long["name"].as_str().unwrap(), json!({})).await.1["content"][0]["text"],
        "long"
    );
}

/// Coder's status codes and words for bad names, unknown servers and tools, bad JSON.
#[tokio::test]
async fn coder_contract_call_tool_error_mapping() {
    let (d, _work) = contract_daemon().await;
    let fail = |detail: &str| json!({"message": "MCP tool call failed.", "detail": detail});
    assert_eq!(
        call(&d, "nodoubleunderscore", json!({})).await,
        (
            400,
            fail(
                "invalid tool name format: \"nodoubleunderscore\" (expected \"<server>__<tool>\")"
            )
        )
    );
    assert_eq!(call(&d, "__x", json!({})).await.0, 400);
    assert_eq!(call(&d, "x__", json!({})).await.0, 400);
    assert_eq!(call(&d, "__", json!({})).await.0, 400);
    assert_eq!(
        call(&d, "nope__echo", json!({})).await,
        (404, fail("unknown MCP server: \"nope\""))
    );
    let (s, v) = call(&d, "fake__nosuchtool", json!({})).await;
    assert_eq!((s, &v["message"]), (502, &json!("MCP tool call failed.")));
    let (s, v) = d
        .client()
        .post(d.url("/api/v0/mcp/call-tool"))
        .body("{")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 400);
    assert_eq!(
        v.json::<Value>().await.unwrap()["message"],
        "Request body must be valid JSON."
    );
}

/// `GET /mcp/servers`: config errors per entry, siblings unaffected; the state gauge.
#[tokio::test]
async fn coder_contract_servers_status_and_metrics() {
    let (d, work) = contract_daemon().await;
    let (_, st) = d.get_json("/api/v0/mcp/servers").await;
    let cfg = work.path().join(".mcp.json").display().to_string();
    assert_eq!(st["config_errors"], json!([]));
    let by = |n: &str| {
        st["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by("needs_var"),
        json!({"name": "needs_var", "transport": "stdio", "state": "failed", "tools": 0,
               "last_error": "server \"needs_var\": environment variable \"MCP_TEST_UNSET_VAR\" in env.K is not set and has no default",
               "warning": null, "restarts": 0, "config_file": cfg, "pid": null})
    );
    assert_eq!(
        by("bad__name")["last_error"],
        "server name \"bad__name\" contains the reserved separator \"__\""
    );
    assert_eq!(
        by("nothing")["last_error"],
        "server \"nothing\" has no command or url"
    );
    let f = by("fake");
    assert_eq!(
        (
            f["state"].as_str(),
            f["tools"].as_u64(),
            f["transport"].as_str()
        ),
        (Some("ready"), Some(11), Some("stdio"))
    );
    // Calling a server whose entry is invalid is a 502 with a reason, not a 404.
    assert_eq!(call(&d, "needs_var__x", json!({})).await.0, 502);

    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("agentd_mcp_servers{state=\"ready\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentd_mcp_servers{state=\"failed\"} 3\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_config_then_watch_late_file_rewrite_and_removal() {
    let d = Agentd::start_with(Options::default());
    assert_eq!(
        d.get_json("/api/v0/mcp/tools").await,
        (200, json!({"tools": []}))
    );
    assert_eq!(
        d.get_json("/api/v0/mcp/servers").await,
        (200, json!({"servers": [], "config_errors": []}))
    );
    let cfg = d.workdir.join(".mcp.json");
    let write = |v: Value| {
        std::fs::write(&cfg, serde_json::to_vec(&json!({"mcpServers": v})).unwrap()).unwrap()
    };

    // Malformed JSON is a file error.
    std::fs::write(&cfg, b"{ nope").unwrap();
    let errs = eventually(T, async || {
        let (_, v) = d.get_json("/api/v0/mcp/servers").await;
        (v["config_errors"].as_array().unwrap().len() == 1).then_some(v["config_errors"].clone())
    })
    .await;
    assert_eq!(errs[0]["path"], cfg.display().to_string());
    assert!(
        errs[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{errs}"
    );

    // The file appears (valid): servers connect.
    write(json!({"keep": fake(&[]), "change": fake(&[]), "drop": fake(&[])}));
    let keep = wait_state(&d, "keep", "ready", T).await;
    let change = wait_state(&d, "change", "ready", T).await;
    let dropped = wait_state(&d, "drop", "ready", T).await;
    assert_eq!(tool_names(&d).await.len(), 27);

    // Rewrite: unchanged keeps its process, changed restarts, removed stops.
    write(json!({"keep": fake(&[]), "change": fake(&["--garbage"]), "new": fake(&[])}));
    wait_state(&d, "new", "ready", T).await;
    let change2 = eventually(T, async || {
        let s = server(&d, "change").await;
        (s["state"] == "ready" && s["pid"] != change["pid"]).then_some(s)
    })
    .await;
    assert_ne!(change2["pid"], change["pid"]);
    assert_eq!(server(&d, "keep").await["pid"], keep["pid"]);
    assert_eq!(server(&d, "drop").await, Value::Null);
    let drop_pid = dropped["pid"].as_u64().unwrap() as u32;
    eventually(T, async || {
        (!agentproc::group_alive(drop_pid)).then_some(())
    })
    .await;
    assert_eq!(
        call(&d, "keep__echo", json!({"message": "still"})).await.0,
        200
    );

    // Deleting the file stops everything.
    std::fs::remove_file(&cfg).unwrap();
    eventually(T, async || {
        let (_, v) = d.get_json("/api/v0/mcp/servers").await;
        (v["servers"] == json!([])).then_some(())
    })
    .await;
    assert_eq!(
        d.get_json("/api/v0/mcp/tools").await.1,
        json!({"tools": []})
    );
}

#[tokio::test]
async fn config_change_applies_despite_other_activity_in_its_directory() {
    let d = Agentd::start_with(Options::default());
    // Another file in the watched directory changes every 50 ms, more often than the
    // debounce: it must not hold back the reload of the config file.
    let noise = d.workdir.join("busy.log");
    let writer = {
        let noise = noise.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                std::fs::write(&noise, i.to_string()).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // The config changes only once the noise is flowing (a few writes made).
    eventually(T, async || {
        let n = std::fs::read_to_string(&noise).ok()?.parse::<u64>().ok()?;
        (n >= 3).then_some(())
    })
    .await;
    std::fs::write(
        d.workdir.join(".mcp.json"),
        serde_json::to_vec(&json!({"mcpServers": {"late": fake(&[])}})).unwrap(),
    )
    .unwrap();
    wait_state(&d, "late", "ready", Duration::from_secs(10)).await;
    writer.abort();
}

#[tokio::test]
async fn changed_config_that_fails_keeps_the_old_connection_with_a_warning() {
    let (d, work) = start(json!({"svc": fake(&[])}), &[]);
    let before = wait_state(&d, "svc", "ready", T).await;
    let write = |v: Value| {
        std::fs::write(
            work.path().join(".mcp.json"),
            serde_json::to_vec(&json!({"mcpServers": v})).unwrap(),
        )
        .unwrap()
    };
    write(json!({"svc": fake(&["--exit-now", "4"])}));
    let warned = eventually(T, async || {
        let s = server(&d, "svc").await;
        s["warning"].is_string().then_some(s)
    })
    .await;
    assert_eq!(
        (&warned["state"], &warned["pid"]),
        (&json!("ready"), &before["pid"])
    );
    let w = warned["warning"].as_str().unwrap();
    assert!(
        w.starts_with("the changed config has not connected yet (")
            && w.contains("exit status: 4")
            && w.ends_with("); the previous connection is kept"),
        "{w}"
    );
    assert_eq!(
        call(&d, "svc__echo", json!({"message": "kept"})).await.1["content"][0]["text"],
        "kept"
    );
    // Back to the original config: the old connection simply stays, without the warning.
    write(json!({"svc": fake(&[])}));
    let s = eventually(T, async || {
        let s = server(&d, "svc").await;
        s["warning"].is_null().then_some(s)
    })
    .await;
    assert_eq!((&s["state"], &s["pid"]), (&json!("ready"), &before["pid"]));
}

/// Misbehaving servers: a slow one does not hold back `/tools`; garbage on stdout is skipped.
#[tokio::test]
async fn misbehaving_startup_never_blocks_and_garbage_lines_are_skipped() {
    let (d, _w) = start(
        json!({
            "slow": fake(&["--slow-start-ms", "1500"]),
            "garbage": fake(&["--garbage"]),
        }),
        &[],
    );
    // Startup never blocks: /tools answers at once while "slow" is still connecting.
    wait_state(&d, "garbage", "ready", T).await;
    let t0 = Instant::now();
    let (s, _) = d.get_json("/api/v0/mcp/tools").await;
    assert_eq!(s, 200);
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(server(&d, "slow").await["state"], "connecting");
    wait_state(&d, "slow", "ready", T).await;

    // Garbage lines on stdout are skipped.
    assert_eq!(
        call(&d, "garbage__echo", json!({"message": "ok"})).await.1["content"][0]["text"],
        "ok"
    );
}

/// Misbehaving servers: non-UTF-8 stderr is drained into the log, tagged and rate-limited.
#[tokio::test]
async fn misbehaving_stderr_is_drained_tagged_and_rate_limited() {
    let (d, _w) = start(
        json!({
            "junk": fake(&["--stderr-junk"]),
        }),
        &[],
    );
    // Non-UTF-8 stderr is drained into the log, tagged and rate-limited.
    wait_state(&d, "junk", "ready", T).await;
    let line = d
        .logs
        .wait_for(T, |v| {
            v["message"] == "MCP server stderr"
                && v["server"] == "junk"
                && v["line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("bad bytes"))
        })
        .unwrap();
    assert_eq!(line["line"], "bad bytes: \u{fffd}\u{fffd}\u{fffd}");
    assert!(
        d.logs
            .wait_for(T, |v| v["message"]
                == "MCP server stderr rate-limited; dropping lines"
                && v["server"] == "junk")
            .is_some()
    );
}

/// Misbehaving servers: a 5 MB result arrives whole; a hung call is a 502 after the call
/// timeout and does not wedge the server's other calls.
#[tokio::test]
async fn misbehaving_huge_result_whole_and_hung_call_times_out() {
    let (d, _w) = start(
        json!({
            "hangs": fake(&[]),
        }),
        &[("AGENTD_MCP_CALL_TIMEOUT_MS", "1500")],
    );
    wait_state(&d, "hangs", "ready", T).await;
    // Huge result (5 MB) arrives whole.
    let (s, v) = call(&d, "hangs__huge", json!({"bytes": 5_000_000})).await;
    assert_eq!(
        (s, v["content"][0]["text"].as_str().unwrap().len()),
        (200, 5_000_000)
    );

    // A hung call times out with 502 and does not wedge the server's other calls.
    let hang = tokio::spawn({
        let c = d.client();
        let url = d.url("/api/v0/mcp/call-tool");
        async move {
            let t0 = Instant::now();
            let r = c
                .post(url)
                .json(&json!({"tool_name": "hangs__hang", "arguments": {}}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap(),
                t0.elapsed(),
            )
        }
    });
    // The hung call is being answered before the next one is sent.
    d.wait_metric(
        r#"agentd_http_requests_in_flight{route="/api/v0/mcp/call-tool"}"#,
        |n| n >= 1.0,
    )
    .await;
    let t0 = Instant::now();
    assert_eq!(
        call(&d, "hangs__echo", json!({"message": "alive"})).await.0,
        200
    );
    assert!(t0.elapsed() < Duration::from_millis(1000));
    let (s, v, el) = hang.await.unwrap();
    assert_eq!(s, 502);
    assert_eq!(
        v["detail"],
        "tool \"hang\" on MCP server \"hangs\" timed out after 1.5s"
    );
    assert!(
        el >= Duration::from_millis(1400) && el < Duration::from_secs(5),
        "{el:?}"
    );
    assert_eq!(
        call(&d, "hangs__echo", json!({"message": "again"})).await.0,
        200
    );
}

/// Misbehaving servers: one that crashes after 2 calls fails the third with a 502, restarts,
/// and answers again.
#[tokio::test]
async fn misbehaving_crashing_server_restarts() {
    let (d, _w) = start(
        json!({
            "crashy": fake(&["--crash-after", "2"]),
        }),
        &[],
    );
    // Crash after 2 calls: the third fails with a clear 502, the server restarts, calls work again.
    wait_state(&d, "crashy", "ready", T).await;
    for _ in 0..2 {
        assert_eq!(
            call(&d, "crashy__echo", json!({"message": "x"})).await.0,
            200
        );
    }
    let (s, v) = call(&d, "crashy__echo", json!({"message": "x"})).await;
    assert_eq!((s, &v["message"]), (502, &json!("MCP tool call failed.")));
    let st = eventually(T, async || {
        let s = server(&d, "crashy").await;
        (s["state"] == "ready" && s["restarts"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert_eq!(st["last_error"], Value::Null);
    assert_eq!(
        call(&d, "crashy__echo", json!({"message": "back"})).await.1["content"][0]["text"],
        "back"
    );
    assert!(d.logs.json().iter().any(|v| {
        v["server"] == "crashy"
            && v["state"] == "restarting"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("server process exited (exit status: 3)"))
    }));
}

/// Misbehaving servers: one that never starts is failed, retried with backoff, and its calls
/// fail fast.
#[tokio::test]
async fn misbehaving_never_starting_server_backs_off_and_fails_fast() {
    let (d, _w) = start(
        json!({
            "dead": fake(&["--exit-now", "7"]),
        }),
        &[],
    );
    // A server that never starts: failed, retried with backoff, calls fail fast.
    let dead = eventually(T, async || {
        let s = server(&d, "dead").await;
        (s["state"] == "failed" && s["restarts"].as_u64() >= Some(2)).then_some(s)
    })
    .await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("exit status: 7"),
        "{dead}"
    );
    let t0 = Instant::now();
    let (s, v) = call(&d, "dead__echo", json!({})).await;
    assert_eq!(s, 502);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("MCP server \"dead\" is not connected (state failed): "),
        "{v}"
    );
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn shutdown_leaves_no_server_process() {
    let (mut d, _w) = start(
        json!({"stubborn": fake(&["--ignore-term", "--grandchild"]), "plain": fake(&[])}),
        &[],
    );
    let a = wait_state(&d, "stubborn", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    let b = wait_state(&d, "plain", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    d.logs
        .wait_for(T, |v| {
            v["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("fake-mcp-server: grandchild"))
        })
        .unwrap();
    assert!(agentproc::group_members(a).len() >= 2);
    // Own process group, in the workspace dir.
    assert_eq!(
        call(&d, "plain__cwd", json!({})).await.1["content"][0]["text"],
        d.workdir.to_str().unwrap()
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    assert!(
        !agentproc::group_alive(a),
        "{:?}",
        agentproc::group_members(a)
    );
    assert!(!agentproc::group_alive(b));
}

#[tokio::test]
async fn twenty_servers_five_failing() {
    let mut servers = serde_json::Map::new();
    for i in 0..15 {
        servers.insert(format!("ok{i:02}"), fake(&[]));
    }
    for i in 0..5 {
        servers.insert(format!("bad{i}"), fake(&["--exit-now", "1"]));
    }
    let (d, _w) = start(Value::Object(servers), &[]);
    let st = eventually(T, async || {
        let (_, v) = d.get_json("/api/v0/mcp/servers").await;
        let a = v["servers"].as_array().unwrap().clone();
        let ready = a.iter().filter(|s| s["state"] == "ready").count();
        let failed = a.iter().filter(|s| s["state"] == "failed").count();
        (ready == 15 && failed == 5).then_some(a)
    })
    .await;
    assert_eq!(st.len(), 20);
    assert_eq!(tool_names(&d).await.len(), 15 * 9);
    assert_eq!(call(&d, "ok14__echo", json!({"message": "x"})).await.0, 200);
}

#[tokio::test]
async fn http_transport_and_redaction() {
    let h = fake_http(&[]);
    let (d, _w) = start(
        json!({
            "remote": {"type": "http", "url": h.url, "headers": {"X-Api-Key": "${MCP_TEST_KEY}"}},
            "inferred": {"url": h.url},
            "down": {"url": "http://127.0.0.1:9/secret-path-xyz?key=qwerty123", "headers": {"Authorization": "Bearer sekrit-token"}},
        }),
        &[("MCP_TEST_KEY", "key-value-1")],
    );
    let r = wait_state(&d, "remote", "ready", T).await;
    assert_eq!(
        (r["transport"].as_str(), r["tools"].as_u64()),
        (Some("http"), Some(9))
    );
    assert_eq!(
        wait_state(&d, "inferred", "ready", T).await["transport"],
        "http"
    );
    assert_eq!(
        call(&d, "remote__echo", json!({"message": "over http"}))
            .await
            .1["content"][0]["text"],
        "over http"
    );
    let down = wait_state(&d, "down", "failed", T).await;
    let e = down["last_error"].as_str().unwrap();
    assert!(
        e.contains("[redacted]")
            && !e.contains("secret-path-xyz")
            && !e.contains("qwerty123")
            && !e.contains("sekrit-token"),
        "{e}"
    );
    let (s, v) = call(&d, "down__echo", json!({})).await;
    let detail = v["detail"].as_str().unwrap();
    assert_eq!(s, 502);
    assert!(
        detail.contains("[redacted]") && !detail.contains("qwerty123"),
        "{detail}"
    );

    // The HTTP server goes away: calls fail fast, the client reconnects when it is back.
    let port = h
        .url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .to_owned();
    drop(h);
    let (s, _) = call(&d, "remote__echo", json!({"message": "x"})).await;
    assert_eq!(s, 502);
    wait_state(&d, "remote", "restarting", T).await;
    let _h2 = fake_http(&["--port", &port]);
    wait_state(&d, "remote", "ready", T).await;
    assert_eq!(
        call(&d, "remote__echo", json!({"message": "back"})).await.1["content"][0]["text"],
        "back"
    );
}

#[tokio::test]
async fn server_everything_stdio_streamable_http_and_sse() {
    let http = everything_http("streamableHttp").await;
    let sse = everything_http("sse").await;
    let (d, _w) = start(
        json!({
            "ev-stdio": {"command": "node", "args": everything_args("stdio")},
            "ev-http": {"type": "http", "url": http.url},
            "ev-sse": {"type": "sse", "url": sse.url},
        }),
        &[],
    );
    for (n, t) in [
        ("ev-stdio", "stdio"),
        ("ev-http", "http"),
        ("ev-sse", "sse"),
    ] {
        everything_tools_are_listed(&d, n, t).await;
        everything_calls_are_lossless(&d, n).await;
    }
}

/// The tools of the pinned server-everything (tests/fixtures/node/package-lock.json), sorted.
const EVERYTHING_TOOLS: [&str; 13] = [
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "simulate-research-query",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
];

/// Server `n` is ready over transport `t` with the pinned tools, `echo`'s schema as listed.
async fn everything_tools_are_listed(d: &Agentd, n: &str, t: &str) {
    let s = wait_state(d, n, "ready", Duration::from_secs(40)).await;
    assert_eq!(
        (&s["transport"], &s["tools"]),
        (&json!(t), &json!(13)),
        "{s}"
    );
    let (_, v) = d.get_json("/api/v0/mcp/tools").await;
    let mine: Vec<&Value> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["server_name"] == n)
        .collect();
    assert_eq!(
        mine.iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        EVERYTHING_TOOLS.map(|t| format!("{n}__{t}")),
        "{n}"
    );
    let echo = mine.iter().find(|t| t["tool_name"] == "echo").unwrap();
    assert_eq!(
        (&echo["description"], &echo["schema"], &echo["required"]),
        (
            &json!("Echoes back the input string"),
            &json!({"message": {"type": "string", "description": "Message to echo"}}),
            &json!(["message"])
        ),
        "{n}"
    );
}

/// Calls to server `n`'s tools: plain text results, and lossless resource links and
/// embedded text resources.
async fn everything_calls_are_lossless(d: &Agentd, n: &str) {
    assert_eq!(
        call(d, &format!("{n}__echo"), json!({"message": "hi"})).await,
        (
            200,
            json!({"content": [{"type": "text", "text": "Echo: hi"}], "is_error": false})
        ),
        "{n}"
    );
    assert_eq!(
        call(d, &format!("{n}__get-sum"), json!({"a": 2, "b": 3})).await,
        (
            200,
            json!({"content": [{"type": "text", "text": "The sum of 2 and 3 is 5."}], "is_error": false})
        ),
        "{n}"
    );
    // Lossless results from a real server: resource links keep their URI, embedded
    // text resources their text.
    assert_eq!(
        call(d, &format!("{n}__get-resource-links"), json!({"count": 1})).await,
        (
            200,
            json!({"content": [
                {"type": "text", "text": "Here are 1 resource links to resources available in this server:"},
                {"type": "resource", "text": "demo://resource/dynamic/blob/1", "uri": "demo://resource/dynamic/blob/1", "media_type": "text/plain"}
            ], "is_error": false})
        ),
        "{n}"
    );
    let (st, v) = call(
        d,
        &format!("{n}__get-resource-reference"),
        json!({"resourceType": "Text", "resourceId": 1}),
    )
    .await;
    let r = &v["content"][1];
    assert_eq!(
        (st, &r["type"], &r["uri"], &r["media_type"]),
        (
            200,
            &json!("resource"),
            &json!("demo://resource/dynamic/text/1"),
            &json!("text/plain")
        ),
        "{v}"
    );
    assert!(
        r["text"]
            .as_str()
            .unwrap()
            .starts_with("Resource 1: This is a plaintext resource created at "),
        "{v}"
    );
}

/// A loopback HTTP server that answers every request with a 307 to `redirect_to` (or a 404)
/// and records the value
/// of the `x-secret` header of each request it sees.
async fn recorder(
    redirect_to: Option<String>,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |h: HeaderMap| {
        let s = s.clone();
        let to = redirect_to.clone();
        async move {
            s.lock()
                .unwrap()
                .push(h.get("x-secret").map(|v| v.to_str().unwrap().to_owned()));
            match to {
                Some(to) => {
                    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

#[tokio::test]
async fn headers_stay_on_the_server_origin() {
    let (other, other_seen) = recorder(None).await;
    let (origin, origin_seen) = recorder(Some(format!("{other}/elsewhere"))).await;
    let (d, _w) = start(
        json!({
            "redir-http": {"type": "http", "url": format!("{origin}/mcp"), "headers": {"X-Secret": "s3cret-value"}},
            "redir-sse": {"type": "sse", "url": format!("{origin}/sse"), "headers": {"X-Secret": "s3cret-value"}},
        }),
        &[],
    );
    let a = wait_state(&d, "redir-http", "failed", T).await;
    let b = wait_state(&d, "redir-sse", "failed", T).await;
    // The origin saw the header; the other origin was never contacted.
    assert!(!origin_seen.lock().unwrap().is_empty());
    assert!(
        origin_seen
            .lock()
            .unwrap()
            .iter()
            .all(|h| h.as_deref() == Some("s3cret-value"))
    );
    assert_eq!(other_seen.lock().unwrap().len(), 0);
    for s in [a, b] {
        assert!(
            !s["last_error"].as_str().unwrap().contains("s3cret-value"),
            "{s}"
        );
    }
}

#[tokio::test]
async fn several_files_first_wins_late_parent_dir_and_refresh() {
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first.json");
    let late = work.path().join("not/yet/late.json");
    std::fs::write(
        &first,
        serde_json::to_vec(&json!({"mcpServers": {"shared": fake(&[])}})).unwrap(),
    )
    .unwrap();
    let d = Agentd::start_with(Options {
        workdir: Some(work.path().to_path_buf()),
        env: vec![(
            "CODER_AGENT_EXP_MCP_CONFIG_FILES".into(),
            format!("first.json, {}", late.display()),
        )],
        ..Options::default()
    });
    let s = wait_state(&d, "shared", "ready", T).await;
    assert_eq!(s["config_file"], first.display().to_string());

    // The second file appears later in a directory that did not exist: picked up; its
    // duplicate "shared" loses to the first file's.
    std::fs::create_dir_all(late.parent().unwrap()).unwrap();
    std::fs::write(
        &late,
        serde_json::to_vec(
            &json!({"mcpServers": {"shared": {"command": "/nonexistent"}, "extra": fake(&[])}}),
        )
        .unwrap(),
    )
    .unwrap();
    let e = wait_state(&d, "extra", "ready", T).await;
    assert_eq!(e["config_file"], late.display().to_string());
    let s2 = server(&d, "shared").await;
    assert_eq!(
        (&s2["pid"], &s2["config_file"]),
        (&s["pid"], &json!(first.display().to_string()))
    );

    // ?refresh=true answers 200 with the same (sorted) catalogue.
    let before = tool_names(&d).await;
    let (st, v) = d.get_json("/api/v0/mcp/tools?refresh=true").await;
    assert_eq!(st, 200);
    let after: Vec<String> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(before, after);
    assert_eq!(after.len(), 18);
}
