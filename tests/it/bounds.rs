//! Issue 13 bounds and safety, end to end through the real daemon: a repo's own programs
//! (fsmonitor hook, clean/process filters, hooks) never run during our scans, and the
//! throwaway index lives in a private directory under the state dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use agentd_tests::gitwatch::{Ws, add_paths, add_submodule, diff_of, git, init_repo, repo};
use agentd_tests::{Agentd, metric};
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
    let (root, marks) = repo_with_configured_programs(tmp.path());
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

    the_throwaway_index_dir_is_private_and_empty(&d);
}

/// A repo whose config names an fsmonitor, hooks, clean/smudge and process filters, each a
/// script that touches a marker in the returned `marks` directory; its files are then edited
/// and new ones added. Returns (root, marks).
fn repo_with_configured_programs(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = init_repo(&tmp.join("r"));
    let marks = tmp.join("marks");
    std::fs::create_dir(&marks).unwrap();
    let m = |n: &str| marks.join(n).display().to_string();
    let bin = tmp.join("bin");
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
    let hooks = tmp.join("hooks");
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
    (root, marks)
}

/// The throwaway index directory: private, under the state dir, empty between scans, and
/// nothing of this daemon's in the system temp dir.
fn the_throwaway_index_dir_is_private_and_empty(d: &Agentd) {
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

/// Ancestor ids for a request: 64 (the per-request cap), distinct per `tag`.
fn ancestors(tag: u64) -> Vec<String> {
    (0..64u64)
        .map(|i| format!("00000000-0000-4000-9{:03x}-{:012x}", tag % 4096, i))
        .collect()
}

/// Starts a daemon with default bounds, posts `requests` worst-case bodies (1024 paths of
/// `path_len` bytes, 64 ancestors, fresh chats and paths each time; every body < 4 MiB)
/// and returns (RSS growth in KiB, the store's accounted bytes at the end, RSS before in KiB).
async fn path_store_rss_growth(run: u64, path_len: usize, requests: u64) -> (i64, u64, i64) {
    let d = Agentd::start();
    let client = d.client();
    let post = |body: Value| {
        let client = client.clone();
        let url = d.url("/api/v0/git/watch/paths");
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v)
        }
    };
    // Warm-up: the allocator, the runtime and the routes have served one small request.
    let (s, _) = post(serde_json::json!({
        "chat_id": "00000000-0000-4000-8000-0000000013ff", "paths": ["/warm"]
    }))
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = agentd_tests::rss_kib(d.pid()) as i64;
    for r in 0..requests {
        let tag = run * 1000 + r;
        let paths: Vec<String> = (0..1024)
            .map(|i| {
                let head = format!("/nonexistent-agentd-bounds/{tag}/{i}/");
                let fill = path_len.saturating_sub(head.len());
                format!("{head}{}", "p".repeat(fill))
            })
            .collect();
        let body = serde_json::json!({
            "chat_id": format!("00000000-0000-4000-a000-{tag:012x}"),
            "ancestor_chat_ids": ancestors(tag),
            "paths": paths,
        });
        let len = serde_json::to_vec(&body).unwrap().len();
        assert!(len < 4 << 20, "body {len} bytes");
        let (s, v) = post(body).await;
        assert_eq!((s, &v["accepted"]), (200, &Value::from(1024)), "{v}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = agentd_tests::rss_kib(d.pid()) as i64;
    let metrics = d.metrics_text().await;
    let bytes = metric(&metrics, "agentd_git_path_store_bytes");
    (after - before, bytes, before)
}

#[tokio::test]
async fn git_path_store_worst_case_rss_grows_less_than_16_mib() {
    // Long paths (the byte budget binds) and short ones (the per-entry overhead binds).
    for (name, path_len, requests) in [("4000-byte paths", 4000, 12), ("short paths", 24, 20)] {
        let mut growth = Vec::new();
        let mut base = Vec::new();
        for run in 0..3 {
            let (g, bytes, before) = path_store_rss_growth(run, path_len, requests).await;
            base.push(before);
            // The budget (4 MiB) plus at most one request for the chat being written.
            assert!(bytes <= (4 << 20) + 1024 * (4096 + 64 + 48), "{bytes}");
            growth.push(g);
        }
        growth.sort_unstable();
        let median = growth[1];
        println!(
            "path store worst case, {name}: {requests} requests x 1024 paths x 65 chats; \
             RSS growth KiB {growth:?}, median {median} KiB ({:.1} MiB) over a baseline RSS \
             of {base:?} KiB",
            median as f64 / 1024.0
        );
        assert!(median < 16 * 1024, "{name}: median RSS growth {median} KiB");
    }
}

async fn stored_paths(d: &Agentd, chat: &str) -> Vec<String> {
    let (s, v) = d
        .get_json(&format!("/api/v0/git/watch/paths?chat_id={chat}"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["chat_id"], chat);
    serde_json::from_value(v["paths"].clone()).unwrap()
}

#[tokio::test]
async fn git_path_store_evicts_the_least_recently_used_chat_and_path() {
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--git-max-chats", "3", "--git-max-paths-per-chat", "2"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let chat = |n: u32| format!("00000000-0000-4000-8000-0000000014{n:02}");
    let (a, b, c, e) = (chat(1), chat(2), chat(3), chat(4));
    let post = |id: String, paths: Vec<&'static str>| {
        let d = &d;
        async move {
            let (s, v) = d
                .post_json(
                    "/api/v0/git/watch/paths",
                    &serde_json::json!({"chat_id": id, "paths": paths}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    post(a.clone(), vec!["/lru/a1"]).await;
    post(b.clone(), vec!["/lru/b1"]).await;
    post(c.clone(), vec!["/lru/c1"]).await;
    // Using A again makes B the least recently used chat.
    post(a.clone(), vec!["/lru/a2"]).await;
    post(e.clone(), vec!["/lru/e1"]).await;
    assert_eq!(stored_paths(&d, &b).await, Vec::<String>::new());
    assert_eq!(stored_paths(&d, &a).await, vec!["/lru/a1", "/lru/a2"]);
    assert_eq!(stored_paths(&d, &c).await, vec!["/lru/c1"]);
    assert_eq!(stored_paths(&d, &e).await, vec!["/lru/e1"]);
    // A third path for A drops A's least recently touched one (a1; a2 was re-touched).
    post(a.clone(), vec!["/lru/a2"]).await;
    post(a.clone(), vec!["/lru/a3"]).await;
    assert_eq!(stored_paths(&d, &a).await, vec!["/lru/a2", "/lru/a3"]);
    let m = d.metrics_text().await;
    assert_eq!(metric(&m, "agentd_git_path_store_chats"), 3);
    assert_eq!(metric(&m, "agentd_git_path_store_paths"), 4);
    assert_eq!(metric(&m, "agentd_git_path_store_chats_evicted_total"), 1);
    assert_eq!(metric(&m, "agentd_git_path_store_paths_evicted_total"), 1);
    // Inspection is a 400 JSON without a chat.
    let (s, v) = d.get_json("/api/v0/git/watch/paths").await;
    assert_eq!(
        (s, v),
        (
            400,
            serde_json::json!({"message": "Missing chat id.", "detail": "pass chat_id in the query or the Coder-Chat-Id header"})
        )
    );
}

#[tokio::test]
async fn git_watch_follows_the_most_recently_touched_repos_and_says_truncated() {
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--git-max-repos", "2"].map(String::from).to_vec(),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let roots: Vec<_> = (1..=3)
        .map(|n| {
            let r = init_repo(&tmp.path().join(format!("r{n}")));
            std::fs::write(r.join(format!("f{n}.txt")), format!("dirty {n}\n")).unwrap();
            r
        })
        .collect();
    let chat = "00000000-0000-4000-8000-000000001501";
    // Touched in order r1, r2, r3: r1 is the oldest.
    for r in &roots {
        add_paths(&d, chat, &[], &[r]).await;
    }
    let mut ws = Ws::connect(&d, chat).await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let m = ws.next(T).await;
        assert_eq!(m["type"], "changes", "{m}");
        for r in m["repositories"].as_array().unwrap() {
            seen.insert(r["repo_root"].as_str().unwrap().to_owned());
        }
        if !m["repositories"].as_array().unwrap().is_empty() {
            assert_eq!(m["repositories_truncated"], true, "{m}");
        }
    }
    let want: std::collections::BTreeSet<String> =
        roots[1..].iter().map(|r| r.display().to_string()).collect();
    assert_eq!(seen, want);
    // Touching r1 again brings it in (in full) and drops r2, now the oldest.
    add_paths(&d, chat, &[], &[&roots[0]]).await;
    let m = ws
        .wait_for(T, |v: &Value| repo(v, &roots[0]).is_some())
        .await;
    assert!(diff_of(&m, &roots[0]).unwrap().contains("+dirty 1\n"));
    assert_eq!(m["repositories_truncated"], true);
    // r2's worker stopped (nobody follows it); r1 and r3 are watched.
    let watched = agentd_tests::eventually(T, async || {
        let n = metric(&d.metrics_text().await, "agentd_git_repos_watched");
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(watched, 2);
    // Without truncation the field is absent (Coder's shape exactly).
    let chat2 = "00000000-0000-4000-8000-000000001502";
    add_paths(&d, chat2, &[], &[&roots[2]]).await;
    let mut ws2 = Ws::connect(&d, chat2).await;
    let m = ws2
        .wait_for(T, |v: &Value| repo(v, &roots[2]).is_some())
        .await;
    assert!(m.get("repositories_truncated").is_none(), "{m}");
}

#[tokio::test]
async fn context_store_forgets_the_least_recently_used_chat() {
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--context-max-chats", "2"].map(String::from).to_vec(),
        ..Default::default()
    });
    let chat = |n: u32| format!("00000000-0000-4000-8000-0000000016{n:02}");
    let add = |id: String| {
        let d = &d;
        async move {
            let (s, v) = d
                .post_json(
                    "/api/v0/context-store",
                    &serde_json::json!({"chat_id": id, "parts": [{"type": "context-file", "context_file_path": format!("/ctx/{id}"), "context_file_content": "x"}]}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    let (a, b, c) = (chat(1), chat(2), chat(3));
    add(a.clone()).await;
    add(b.clone()).await;
    // Reading A's context (as chatd does for every turn) is a use: B is now the oldest.
    let r = d
        .client()
        .get(d.url("/api/v0/context-config"))
        .header("Coder-Chat-Id", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    add(c.clone()).await;
    let (_, v) = d.get_json("/api/v0/context-store").await;
    let scopes: Vec<String> = v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["chat_id"].as_str().unwrap().to_owned())
        .collect();
    let mut want = vec![a.clone(), c.clone()];
    want.sort();
    assert_eq!(scopes, want);
    // The workspace scope is never forgotten.
    let nil = "00000000-0000-0000-0000-000000000000";
    add(nil.to_owned()).await;
    add(chat(4)).await;
    let (_, v) = d.get_json("/api/v0/context-store").await;
    let scopes: Vec<String> = v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["chat_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(scopes, vec![nil.to_owned(), c.clone(), chat(4)]);
}

/// `depth` nested directories `d/d/…` under `base` (created one level at a time).
fn deep_dir(base: &Path, depth: usize) -> std::path::PathBuf {
    let mut d = base.to_path_buf();
    for _ in 0..depth {
        d.push("d");
        std::fs::create_dir(&d).unwrap();
    }
    d
}

/// Probes `/healthz` until `done` resolves; returns the slowest answer and `done`'s value.
async fn healthz_while<T>(d: &Agentd, done: impl std::future::Future<Output = T>) -> (Duration, T) {
    let client = d.client();
    let url = d.url("/healthz");
    let mut worst = Duration::ZERO;
    tokio::pin!(done);
    loop {
        tokio::select! {
            v = &mut done => return (worst, v),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                let t = std::time::Instant::now();
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                worst = worst.max(t.elapsed());
            }
        }
    }
}

#[tokio::test]
async fn slow_fs_calls_on_client_paths_never_stall_the_async_worker_and_time_out_as_json() {
    // One async worker (as on 2 CPUs): anything blocking on it would stall /healthz. No
    // FUSE here, so "slow" is real path resolution: 80 paths 1000 directories deep inside
    // a repo; discovery walks each up (~1000 stats of up to 1000 components): seconds.
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("r"));
    std::fs::write(root.join("top.txt"), "dirty\n").unwrap();
    let deep = deep_dir(&root, 1000);
    let paths: Vec<std::path::PathBuf> = (0..80).map(|i| deep.join(format!("f{i}"))).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();

    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--worker-threads", "1", "--fs-timeout-ms", "60000"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let chat = "00000000-0000-4000-8000-000000001701";
    let t0 = std::time::Instant::now();
    let (worst, v) = healthz_while(&d, add_paths(&d, chat, &[], &refs)).await;
    let slow = t0.elapsed();
    assert_eq!(
        v["repo_roots"],
        serde_json::json!([root.display().to_string()])
    );
    println!("slow discovery (POST): {slow:?}, worst concurrent /healthz {worst:?}");
    assert!(
        slow > Duration::from_millis(800),
        "not slow enough to prove anything: {slow:?}"
    );
    assert!(
        worst < Duration::from_millis(500),
        "/healthz stalled {worst:?} during {slow:?}"
    );
    // The watch resolves the same paths when it subscribes (this ran on the async worker
    // before, stalling every request for the whole walk).
    let t0 = std::time::Instant::now();
    let (worst, m) = healthz_while(&d, async {
        let mut ws = Ws::connect(&d, chat).await;
        ws.wait_for(Duration::from_secs(60), |v: &Value| {
            repo(v, &root).is_some()
        })
        .await
    })
    .await;
    let slow = t0.elapsed();
    println!("slow discovery (watch): {slow:?}, worst concurrent /healthz {worst:?}");
    assert!(diff_of(&m, &root).unwrap().contains("+dirty\n"));
    assert!(slow > Duration::from_millis(800), "{slow:?}");
    assert!(
        worst < Duration::from_millis(500),
        "/healthz stalled {worst:?} during {slow:?}"
    );
    drop(d);

    // With a short timeout the same request answers a clear 504 JSON at the timeout.
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--fs-timeout-ms", "300"].map(String::from).to_vec(),
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    let body = serde_json::json!({"chat_id": chat, "paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()});
    let (s, v) = d.post_json("/api/v0/git/watch/paths", &body).await;
    let took = t0.elapsed();
    assert_eq!(
        (s, v),
        (
            504,
            serde_json::json!({
                "message": "File-system call timed out.",
                "detail": "a file-system call did not finish within 300 ms (hung mount?); the 80 paths were recorded, their repositories are not resolved yet"
            })
        )
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // The paths were recorded all the same.
    assert_eq!(stored_paths(&d, chat).await.len(), 80);
}

#[tokio::test]
async fn a_fifo_named_git_is_no_repo_and_never_blocks_discovery() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trap");
    std::fs::create_dir(&dir).unwrap();
    nix::unistd::mkfifo(
        &dir.join(".git"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let chat = "00000000-0000-4000-8000-000000001801";
    let t0 = std::time::Instant::now();
    let v = add_paths(&d, chat, &[], &[&dir.join("x.txt"), &dir]).await;
    assert_eq!(v, serde_json::json!({"accepted": 2, "repo_roots": []}));
    // Opening the FIFO would have blocked until a writer came (forever; now the 5 s
    // timeout would answer 504).
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let (s, _) = d.get_json("/healthz").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_dirty_submodule_worktree_never_runs_the_submodules_configured_programs() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let sub_src = init_repo(&tmp.path().join("sub-src"));
    std::fs::write(sub_src.join(".gitattributes"), "*.txt filter=cl\n").unwrap();
    std::fs::write(sub_src.join("s.txt"), "sub\n").unwrap();
    std::fs::write(sub_src.join("m.md"), "m\n").unwrap();
    git(&sub_src, &["add", "."]);
    git(&sub_src, &["commit", "-q", "-m", "sub"]);
    let root = init_repo(&tmp.path().join("super"));
    add_submodule(&root, &sub_src, "sub");
    // The submodule's own config runs programs on any status/diff inside it.
    let marks = tmp.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let m = |n: &str| marks.join(n).display().to_string();
    script(
        &bin.join("clean"),
        &format!("touch {}\ncat", m("sub-clean")),
    );
    script(
        &bin.join("fsmonitor"),
        &format!("touch {}\nexit 1", m("sub-fsmonitor")),
    );
    let sub = root.join("sub");
    let b = |n: &str| bin.join(n).display().to_string();
    git(&sub, &["config", "filter.cl.clean", &b("clean")]);
    git(&sub, &["config", "filter.cl.required", "true"]);
    git(&sub, &["config", "core.fsmonitor", &b("fsmonitor")]);
    // Dirty submodule worktree: s.txt stat-dirty with the same bytes (git must hash it, through
    // the submodule's clean filter, to know), another file changed; plus a change in the
    // superproject to wait for.
    std::fs::write(sub.join("m.md"), "changed\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(sub.join("s.txt"), "sub\n").unwrap();
    std::fs::write(root.join("top.txt"), "top\n").unwrap();

    let chat = "00000000-0000-4000-8000-000000001901";
    let mut ws = Ws::connect(&d, chat).await;
    add_paths(&d, chat, &[], &[&root.join("top.txt")]).await;
    let msg = ws
        .wait_for(T, |v: &Value| {
            diff_of(v, &root).is_some_and(|d| d.contains("+top\n"))
        })
        .await;
    let diff = diff_of(&msg, &root).unwrap();
    ws.refresh().await;
    ws.wait_for(T, |v: &Value| v["type"] == "changes").await;
    let ran: Vec<_> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        ran,
        Vec::<String>::new(),
        "submodule programs ran during scans"
    );
    // As Coder's `git diff HEAD`: the dirty submodule is one `-dirty` line, the rest is the
    // superproject's own change.
    assert!(diff.contains("diff --git a/sub b/sub\n"), "{diff}");
    assert!(diff.contains("-dirty\n"), "{diff}");
    assert!(diff.contains("+++ b/top.txt\n"), "{diff}");
}

#[tokio::test]
async fn slow_context_discovery_times_out_as_json() {
    // 400 skills to read: real work well over the 1 ms allowed here (no FUSE to hang it).
    let ws = tempfile::tempdir().unwrap();
    agentd_tests::context::write(&ws.path().join("AGENTS.md"), "# rules\n");
    for i in 0..400 {
        agentd_tests::context::skill(
            ws.path(),
            &format!(".agents/skills/s{i}"),
            &format!("s{i}"),
            "a skill",
        );
    }
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--fs-timeout-ms", "1"].map(String::from).to_vec(),
        workdir: Some(ws.path().to_path_buf()),
        ..Default::default()
    });
    let (s, v) = d.get_json("/api/v0/context-config").await;
    assert_eq!(
        (s, v),
        (
            504,
            serde_json::json!({
                "message": "File-system call timed out.",
                "detail": "context discovery did not finish within 1 ms (hung mount?)"
            })
        )
    );
    drop(d);
    // With the default timeout the same workspace answers in full.
    let d = Agentd::start_with(agentd_tests::Options {
        workdir: Some(ws.path().to_path_buf()),
        ..Default::default()
    });
    let (s, v) = d.get_json("/api/v0/context-config").await;
    assert_eq!(s, 200, "{v}");
    let skills = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "skill")
        .count();
    assert_eq!(skills, 400);
}

#[tokio::test]
async fn a_slow_workdir_check_times_out_as_json_and_starts_nothing() {
    // A workdir whose resolution is real, slow work: 40 chained symlinks (the kernel's
    // limit), each into a directory ~1900 levels deep: one stat walks ~76 000 components
    // (several ms; the timeout here is 1 ms).
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let deep = deep_dir(base, 1900);
    let n = 39;
    std::os::unix::fs::symlink(&deep, deep.join(format!("l{n}"))).unwrap();
    for i in (0..n).rev() {
        let at = if i > 0 {
            deep.clone()
        } else {
            base.to_path_buf()
        };
        std::os::unix::fs::symlink(deep.join(format!("l{}", i + 1)), at.join(format!("l{i}")))
            .unwrap();
    }
    let workdir = base.join("l0").display().to_string();
    let d = Agentd::start_with(agentd_tests::Options {
        args: ["--fs-timeout-ms", "1"].map(String::from).to_vec(),
        ..Default::default()
    });
    let body = serde_json::json!({"command": "true", "workdir": workdir});
    let (s, v) = d.post_json("/api/v0/processes/start", &body).await;
    assert_eq!(
        (s, v),
        (
            504,
            serde_json::json!({
                "message": "File-system call timed out.",
                "detail": format!("checking the working directory \"{workdir}\" did not finish within 1 ms (hung mount?); nothing was started")
            })
        )
    );
    let (_, v) = d.get_json("/api/v0/processes/list").await;
    assert_eq!(v["processes"], serde_json::json!([]));
    drop(d);
    // With the default timeout it starts there.
    let d = Agentd::start();
    let want = std::fs::canonicalize(&deep).unwrap().display().to_string();
    // (The output keeps 2048 bytes per line: compare in the shell.)
    let cmd = format!("[ \"$(pwd -P)\" = '{want}' ] && echo same");
    let body = serde_json::json!({"command": cmd, "workdir": workdir});
    let (s, v) = d.post_json("/api/v0/processes/start", &body).await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let out = agentd_tests::eventually(T, async || {
        let (_, v) = d.get_json(&format!("/api/v0/processes/{id}/output")).await;
        (v["running"] == false).then(|| v["output"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert_eq!(out, "same\n");
}
