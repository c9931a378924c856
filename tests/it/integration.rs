//! Capabilities working together: a chat's process exit feeds the git watcher (for the chat
//! and its ancestors), and nothing leaks to other chats or from chat-less processes.

use std::time::{Duration, Instant};

use agentd_tests::Agentd;
use agentd_tests::gitwatch::{Ws, diff_of, init_repo, repo};
use serde_json::{Value, json};

const CHILD: &str = "6a1f0e2c-1111-4aaa-8bbb-000000000001";
const PARENT: &str = "6a1f0e2c-1111-4aaa-8bbb-000000000002";
const OTHER: &str = "6a1f0e2c-1111-4aaa-8bbb-000000000003";

async fn start(d: &Agentd, chat: Option<(&str, &str)>, body: Value) -> String {
    let mut req = d
        .client()
        .post(d.url("/api/v0/processes/start"))
        .json(&body);
    if let Some((c, anc)) = chat {
        req = req
            .header("Coder-Chat-Id", c)
            .header("Coder-Ancestor-Chat-Ids", anc);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn wait_exit(d: &Agentd, chat: &str, id: &str) -> Value {
    let res = d
        .client()
        .get(d.url(&format!("/api/v0/processes/{id}/output?wait=true")))
        .header("Coder-Chat-Id", chat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn process_exit_feeds_git_watch_for_chat_and_ancestors() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("repo"));
    std::fs::create_dir_all(root.join("sub")).unwrap();

    let mut child_ws = Ws::connect(&d, CHILD).await;
    let mut parent_ws = Ws::connect(&d, PARENT).await;
    let mut other_ws = Ws::connect(&d, OTHER).await;

    // A chat-less process in the repo notifies nobody.
    let id = start(
        &d,
        None,
        json!({"command": "true", "workdir": root.display().to_string()}),
    )
    .await;
    wait_exit(&d, CHILD, &id).await;
    for ws in [&mut child_ws, &mut parent_ws, &mut other_ws] {
        let m = ws.try_next(Duration::from_millis(1000)).await;
        assert!(m.is_none(), "a chat-less process notified a chat: {m:?}");
    }

    // The child chat writes a file from a subdirectory; the nearest enclosing repo is watched
    // for the chat and its parent.
    let anc = format!("[\"{PARENT}\"]");
    let id = start(
        &d,
        Some((CHILD, &anc)),
        json!({"command": "printf 'hello\\n' > made-by-agent.txt", "workdir": root.join("sub").display().to_string()}),
    )
    .await;
    let out = wait_exit(&d, CHILD, &id).await;
    assert_eq!(out["running"], false);
    assert_eq!(out["exit_code"], 0);
    let exited = Instant::now();

    let want = "diff --git a/sub/made-by-agent.txt b/sub/made-by-agent.txt\nnew file mode 100644\nindex 0000000..ce01362\n--- /dev/null\n+++ b/sub/made-by-agent.txt\n@@ -0,0 +1 @@\n+hello\n";
    for ws in [&mut child_ws, &mut parent_ws] {
        let m = ws
            .wait_for(Duration::from_secs(10), |m| {
                m["type"] == "changes" && repo(m, &root).is_some()
            })
            .await;
        assert_eq!(diff_of(&m, &root).as_deref(), Some(want));
        assert_eq!(repo(&m, &root).unwrap()["branch"], "main");
    }
    assert!(
        exited.elapsed() < Duration::from_secs(3),
        "pushed {:?} after exit",
        exited.elapsed()
    );
    // The unrelated chat saw nothing about the repo.
    if let Some(m) = other_ws.try_next(Duration::from_millis(500)).await {
        assert!(repo(&m, &root).is_none(), "leaked to another chat: {m}");
    }

    // A second process of the same chat changes the diff again: only that repo is pushed.
    let id = start(
        &d,
        Some((CHILD, "null")),
        json!({"command": "printf 'more\\n' >> sub/made-by-agent.txt", "workdir": root.display().to_string()}),
    )
    .await;
    wait_exit(&d, CHILD, &id).await;
    let m = child_ws
        .wait_for(Duration::from_secs(10), |m| {
            diff_of(m, &root).is_some_and(|d| d.contains("+more\n"))
        })
        .await;
    assert_eq!(m["repositories"].as_array().unwrap().len(), 1);
}
