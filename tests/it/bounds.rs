//! Issue 13 bounds and safety, end to end through the real daemon: a repo's own programs
//! (fsmonitor hook, clean/process filters, hooks) never run during our scans, and the
//! throwaway index lives in a private directory under the state dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use agentd_tests::Agentd;
use agentd_tests::gitwatch::{Ws, add_paths, diff_of, git, init_repo, repo};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn repo_configured_programs_never_run_and_the_temp_index_is_private() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("r"));
    let marks = tmp.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let m = |n: &str| marks.join(n).display().to_string();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script(
        &bin.join("fsmonitor"),
        &format!("touch {}\nexit 1", m("fsmonitor")),
    );
    script(&bin.join("clean"), &format!("touch {}\ncat", m("clean")));
    script(&bin.join("smudge"), &format!("touch {}\ncat", m("smudge")));
    // A long-running filter process: touching the marker is enough; it then fails.
    script(
        &bin.join("process"),
        &format!("touch {}\nexit 1", m("process")),
    );
    let hooks = tmp.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    for h in [
        "post-index-change",
        "pre-commit",
        "post-checkout",
        "reference-transaction",
    ] {
        script(&hooks.join(h), &format!("touch {}", m(h)));
    }
    std::fs::write(
        root.join(".gitattributes"),
        "*.txt filter=cl\n*.dat filter=pr\n",
    )
    .unwrap();
    std::fs::write(root.join("a.txt"), "one\n").unwrap();
    std::fs::write(root.join("b.dat"), "uno\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["commit", "-q", "-m", "files"]);
    let b = |n: &str| bin.join(n).display().to_string();
    git(&root, &["config", "core.fsmonitor", &b("fsmonitor")]);
    git(
        &root,
        &["config", "core.hooksPath", &hooks.display().to_string()],
    );
    git(&root, &["config", "filter.cl.clean", &b("clean")]);
    git(&root, &["config", "filter.cl.smudge", &b("smudge")]);
    git(&root, &["config", "filter.cl.required", "true"]);
    git(&root, &["config", "filter.pr.process", &b("process")]);
    git(&root, &["config", "filter.pr.required", "true"]);
    git(&root, &["config", "core.untrackedCache", "true"]);

    std::fs::write(root.join("a.txt"), "one\ntwo\n").unwrap();
    std::fs::write(root.join("b.dat"), "uno\ndos\n").unwrap();
    std::fs::write(root.join("new.txt"), "fresh\n").unwrap();
    std::fs::write(root.join("new.dat"), "nuevo\n").unwrap();

    let chat = "00000000-0000-4000-8000-000000001301";
    let mut ws = Ws::connect(&d, chat).await;
    add_paths(&d, chat, &[], &[&root.join("a.txt")]).await;
    let is_dirty = |v: &Value| {
        v["type"] == "changes" && repo(v, &root).is_some_and(|r| r["unified_diff"] != "")
    };
    let msg = ws.wait_for(T, is_dirty).await;
    let diff = diff_of(&msg, &root).unwrap();
    // A second scan (refresh after another edit) must not run them either.
    std::fs::write(root.join("a.txt"), "one\ntwo\nthree\n").unwrap();
    ws.refresh().await;
    let msg2 = ws
        .wait_for(T, |v: &Value| {
            diff_of(v, &root).is_some_and(|d| d.contains("+three\n"))
        })
        .await;
    let diff2 = diff_of(&msg2, &root).unwrap();

    let ran: Vec<_> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ran, Vec::<String>::new(), "repo programs ran during scans");
    for want in [
        "+two\n",
        "+dos\n",
        "+fresh\n",
        "+nuevo\n",
        "+++ b/new.txt\n",
        "+++ b/new.dat\n",
    ] {
        assert!(diff.contains(want), "{want:?} missing from {diff}");
    }
    assert!(diff2.contains("+two\n+three\n"), "{diff2}");
    // The untracked cache was not written into the repo's index.
    assert!(!root.join(".git/index.lock").exists());

    // The throwaway index directory: private, under the state dir, empty between scans.
    let dir = d.state_dir.join("gitwatch");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let in_tmp: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("agentd-gitwatch-{}-", d.pid()))
                .then_some(n)
        })
        .collect();
    assert_eq!(in_tmp, Vec::<String>::new());
}

#[tokio::test]
async fn git_watch_paths_request_caps_are_400_json() {
    let d = Agentd::start();
    let chat = "00000000-0000-4000-8000-000000001302";
    let anc: Vec<String> = (0..65)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let long = format!("/{}", "a".repeat(4096));
    let many: Vec<String> = (0..1025).map(|i| format!("/p/{i}")).collect();
    for (body, message, detail) in [
        (
            serde_json::json!({"chat_id": chat, "ancestor_chat_ids": anc, "paths": ["/x"]}),
            "Too many ancestor chat ids.",
            "65 given, at most 64 per request",
        ),
        (
            serde_json::json!({"chat_id": chat, "paths": many}),
            "Too many paths.",
            "1025 given, at most 1024 per request",
        ),
        (
            serde_json::json!({"chat_id": chat, "paths": [long]}),
            "Path too long.",
            "4097 bytes, at most 4096",
        ),
    ] {
        let r = d
            .client()
            .post(d.url("/api/v0/git/watch/paths"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, serde_json::json!({"message": message, "detail": detail}));
    }
}
