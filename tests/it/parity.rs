//! Coder parity details through the real binary: a workdir that appears after the daemon
//! started, default-directory processes feeding the git watch, non-object JSON bodies, and
//! every rejection in the standard error shape.

use std::time::Duration;

use agentd_tests::context::write;
use agentd_tests::gitwatch::{Ws, diff_of, init_repo};
use agentd_tests::mcp::{fake, wait_state};
use agentd_tests::{Agentd, Options, RawResponse, raw_tcp};
use serde_json::{Value, json};

const A: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";

async fn run(d: &Agentd, chat: Option<&str>, cmd: &str) -> Value {
    let mut r = d
        .client()
        .post(d.url("/api/v0/processes/start"))
        .json(&json!({ "command": cmd }));
    if let Some(c) = chat {
        r = r.header("Coder-Chat-Id", c);
    }
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let id = v["id"].as_str().unwrap();
    let (s, out) = d
        .get_json(&format!("/api/v0/processes/{id}/output?wait=true"))
        .await;
    assert_eq!(s, 200, "{out}");
    out
}

fn file_parts(v: &Value) -> Vec<(String, String)> {
    v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "context-file")
        .map(|p| {
            (
                p["context_file_path"].as_str().unwrap().to_owned(),
                p["context_file_content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_workdir_created_after_start_is_used_once_it_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let home = std::fs::canonicalize(tmp.path()).unwrap().join("home");
    std::fs::create_dir_all(&home).unwrap();
    write(&home.join("AGENTS.md"), "home rules");
    let work = home.join("src/repo");
    let d = Agentd::start_with(Options {
        workdir: Some(work.clone()),
        env: vec![
            ("HOME".into(), home.display().to_string()),
            ("AGENTD_MCP_BACKOFF_MIN_MS".into(), "100".into()),
            ("AGENTD_MCP_BACKOFF_MAX_MS".into(), "500".into()),
        ],
        ..Options::default()
    });
    // It started, and said why the workdir is not used yet.
    let warn = d
        .logs
        .wait_for(Duration::from_secs(5), |v| {
            v["level"] == "warn"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("workdir does not exist yet"))
        })
        .expect("a warning about the missing workdir");
    assert_eq!(warn["workdir"], work.display().to_string());

    // Meanwhile processes run in $HOME and context paths resolve there.
    let out = run(&d, None, "pwd").await;
    assert_eq!(out["output"], format!("{}\n", home.display()));
    assert_eq!(out["exit_code"], 0);
    let (s, v) = d.get_json("/api/v0/context-config").await;
    assert_eq!(s, 200);
    assert_eq!(
        file_parts(&v),
        vec![(
            home.join("AGENTS.md").display().to_string(),
            "home rules".into()
        )]
    );
    let (_, v) = d.get_json("/api/v0/mcp/servers").await;
    assert_eq!(v["servers"], json!([]));

    // The startup script clones the repo: the workdir appears with its own files.
    std::fs::create_dir_all(&work).unwrap();
    write(&work.join("AGENTS.md"), "repo rules");
    std::fs::write(
        work.join(".mcp.json"),
        serde_json::to_vec(&json!({"mcpServers": {"late": fake(&[])}})).unwrap(),
    )
    .unwrap();

    let out = run(&d, None, "pwd").await;
    assert_eq!(out["output"], format!("{}\n", work.display()));
    let (_, v) = d.get_json("/api/v0/context-config").await;
    assert_eq!(
        file_parts(&v),
        vec![(
            work.join("AGENTS.md").display().to_string(),
            "repo rules".into()
        )]
    );
    // The MCP watcher saw the directory appear and loaded its .mcp.json.
    let s = wait_state(&d, "late", "ready", Duration::from_secs(15)).await;
    assert_eq!(
        s["config_file"],
        work.join(".mcp.json").display().to_string()
    );
}

#[tokio::test]
async fn a_chat_process_in_the_default_directory_feeds_the_git_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("repo"));
    let d = Agentd::start_with(Options {
        workdir: Some(root.clone()),
        ..Options::default()
    });
    let mut ws = Ws::connect(&d, A).await;
    // No workdir in the request: the process runs in the daemon's workdir, and its exit
    // makes that repo watched for the chat.
    let out = run(&d, Some(A), "echo change > NEW.txt && git add NEW.txt").await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let msg = ws
        .wait_for(Duration::from_secs(10), |m| diff_of(m, &root).is_some())
        .await;
    let diff = diff_of(&msg, &root).unwrap();
    assert!(
        diff.contains("diff --git a/NEW.txt b/NEW.txt\nnew file mode 100644"),
        "{diff}"
    );
    assert!(diff.ends_with("+change\n"), "{diff}");
}

#[tokio::test]
async fn non_object_json_bodies_are_invalid_json() {
    let d = Agentd::start();
    let id = run(&d, None, "true").await;
    assert_eq!(id["exit_code"], 0);
    let (_, list) = d.get_json("/api/v0/processes/list").await;
    let pid = list["processes"][0]["id"].as_str().unwrap().to_owned();
    let routes = [
        "/api/v0/processes/start".to_owned(),
        format!("/api/v0/processes/{pid}/signal"),
        "/api/v0/mcp/call-tool".to_owned(),
        "/api/v0/git/watch/paths".to_owned(),
        "/api/v0/context-store".to_owned(),
    ];
    for route in &routes {
        for (body, kind) in [
            ("[]", "an array"),
            (" [\"x\"]", "an array"),
            ("\"x\"", "a string"),
            ("5", "a number"),
            ("true", "a boolean"),
        ] {
            let res = d
                .client()
                .post(d.url(route))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "{route} {body}");
            assert_eq!(
                res.headers()["content-type"],
                "application/json; charset=utf-8"
            );
            let v: Value = res.json().await.unwrap();
            assert_eq!(
                v,
                json!({
                    "message": "Request body must be valid JSON.",
                    "detail": format!("cannot decode {kind} into an object")
                }),
                "{route} {body}"
            );
        }
    }
    // `null` decodes into an empty struct, as in Go: the route's own validation answers.
    let (s, v) = d.post_json("/api/v0/processes/start", &Value::Null).await;
    assert_eq!((s, v), (400, json!({"message": "Command is required."})));
    let (s, v) = d
        .post_json(&format!("/api/v0/processes/{pid}/signal"), &Value::Null)
        .await;
    assert_eq!((s, v), (400, json!({"message": "Signal is required."})));
}

/// `(status, content-type, body)` of a raw request.
async fn raw(d: &Agentd, head: &str) -> (u16, String, Value) {
    let r = RawResponse::parse(&raw_tcp(&d.addr, head.as_bytes()).await);
    (
        r.status,
        r.content_type,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_rejection_has_the_standard_error_shape() {
    let d = Agentd::start();
    let json_ct = "application/json; charset=utf-8";
    // A path segment that is not UTF-8 after percent-decoding: no such process, as Go says.
    for path in [
        "/api/v0/processes/%FF%FE/output",
        "/api/v0/processes/%C3%28/output",
    ] {
        let (s, ct, v) = raw(
            &d,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!((s, ct.as_str()), (404, json_ct), "{path}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("Process \"\u{FFFD}"),
            "{v}"
        );
    }
    let (s, ct, v) = raw(
        &d,
        "POST /api/v0/processes/%FF/signal HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"signal\":\"kill\"}\n",
    )
    .await;
    assert_eq!((s, ct.as_str()), (404, json_ct));
    assert_eq!(v, json!({"message": "Process \"\u{FFFD}\" not found."}));

    // A WebSocket route without an upgrade: Coder's wording, JSON, the rejection's status.
    let (s, ct, v) = raw(
        &d,
        &format!("GET /api/v0/git/watch?chat_id={A} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (400, json_ct));
    assert_eq!(v["message"], "Failed to accept websocket.");
    assert!(!v["detail"].as_str().unwrap().is_empty(), "{v}");
    let (s, ct, v) = raw(
        &d,
        "GET /api/v0/git/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!((s, ct.as_str()), (400, json_ct), "{v}");
    assert_eq!(v["message"], "Failed to accept websocket.");

    // Wrong method, unknown route, unsupported body encoding: all JSON.
    for (head, status) in [
        (
            "DELETE /api/v0/processes/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            "GET /api/v0/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            "POST /api/v0/processes/start HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
            400,
        ),
    ] {
        let (s, ct, v) = raw(&d, head).await;
        assert_eq!((s, ct.as_str()), (status, json_ct), "{head}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}
