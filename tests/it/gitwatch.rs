//! Git watch end to end: real repositories, the real daemon, a real WebSocket client.
//! Paths are fed through `POST /api/v0/git/watch/paths` (the process-exit feed is unit-tested
//! in `agentd::git_api`; process-driven e2e tests come with the process API).

use std::path::Path;
use std::time::{Duration, Instant};

use agentd_tests::Agentd;
use agentd_tests::gitwatch::{
    Ws, add_paths, add_submodule, diff_of, git, init_repo, repo, scans_total,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

fn chat(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02}")
}

fn is_changes_with(root: &Path) -> impl Fn(&Value) -> bool + '_ {
    move |m: &Value| m["type"] == "changes" && repo(m, root).is_some()
}

#[tokio::test]
async fn contract_diff_content_heartbeat_refresh_errors_and_events() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = contract_repo(&tmp.path().join("r"));
    let c = chat(1);
    let mut ws = Ws::connect(&d, &c).await;
    // No paths yet: nothing to say.
    assert!(ws.try_next(Duration::from_millis(300)).await.is_none());

    paths_resolve_to_their_repo_once_it_exists(&d, &mut ws, &c, &root).await;
    let m = diff_is_git_diff_head_plus_untracked_without_ignored(&mut ws, &root).await;
    heartbeat_and_error_frames(&mut ws, &m).await;
    checkout_origin_and_revert_are_pushed(&mut ws, &root).await;

    // An edit in a directory nobody touched is found by the fallback poll (5 s).
    std::fs::create_dir_all(root.join("elsewhere")).unwrap();
    std::fs::write(root.join("elsewhere/poll.txt"), "polled\n").unwrap();
    ws.wait_for(Duration::from_secs(15), |m| {
        diff_of(m, &root).is_some_and(|d| d.contains("+++ b/elsewhere/poll.txt"))
    })
    .await;

    let text = d.metrics_text().await;
    assert!(
        text.contains("# TYPE agentd_git_scans_total counter"),
        "{text}"
    );
    assert!(
        text.contains("agentd_git_scan_duration_seconds_count "),
        "{text}"
    );
    assert!(text.contains("agentd_git_repos_watched 1\n"), "{text}");
}

/// A repo with a tracked file, ignore rules and a configured textconv / external diff (which
/// must never run).
fn contract_repo(dir: &Path) -> std::path::PathBuf {
    let root = init_repo(dir);
    std::fs::write(root.join("tracked.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(root.join(".gitignore"), "*.log\nbuild/\nnode_modules/\n").unwrap();
    std::fs::write(root.join(".gitattributes"), "*.txt diff=conv\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["commit", "-q", "-m", "more"]);
    git(&root, &["config", "diff.external", "/bin/echo EXTERNAL"]);
    git(
        &root,
        &["config", "diff.conv.textconv", "/bin/echo TEXTCONV"],
    );
    root
}

/// A path under missing directories resolves to nothing; a file in the repo gives its root
/// and a first clean message.
async fn paths_resolve_to_their_repo_once_it_exists(d: &Agentd, ws: &mut Ws, c: &str, root: &Path) {
    let v = add_paths(
        d,
        c,
        &[],
        &[&root.join("a/b/c/deep.go"), Path::new("rel/x")],
    )
    .await;
    // a/b/c does not exist: its parent does not either, so nothing resolves yet.
    assert_eq!(v, json!({"accepted": 1, "repo_roots": []}));
    let v = add_paths(d, c, &[], &[&root.join("README.md")]).await;
    assert_eq!(
        v,
        json!({"accepted": 1, "repo_roots": [root.display().to_string()]})
    );
    let first = ws.wait_for(T, is_changes_with(root)).await;
    assert_eq!(
        first["repositories"],
        json!([{"repo_root": root.display().to_string(), "branch": "main", "unified_diff": ""}])
    );
    let first_at = first["scanned_at"].as_str().unwrap().to_owned();
    assert!(
        first_at.ends_with('Z') && first_at.contains('T'),
        "{first_at}"
    );
}

/// Modified, staged-new, untracked, ignored (incl. nested negation under node_modules): the
/// diff is `git diff HEAD` plus the untracked file, and the scan leaves `.git/index` alone.
/// Returns the message.
async fn diff_is_git_diff_head_plus_untracked_without_ignored(ws: &mut Ws, root: &Path) -> Value {
    std::fs::write(root.join("tracked.txt"), "one\nTWO\nthree\n").unwrap();
    std::fs::write(root.join("staged.txt"), "staged\n").unwrap();
    git(root, &["add", "staged.txt"]);
    let index_id = || {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root.join(".git/index")).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec(), m.size())
    };
    let index_before = index_id();
    std::fs::write(root.join("untracked.txt"), "new file\n").unwrap();
    std::fs::write(root.join("debug.log"), "ignored\n").unwrap();
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::write(root.join("build/out.o"), "ignored\n").unwrap();
    std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
    std::fs::write(root.join("node_modules/pkg/.gitignore"), "!*\n").unwrap();
    std::fs::write(root.join("node_modules/pkg/index.js"), "ignored\n").unwrap();
    ws.refresh().await;
    let m = ws.wait_for(T, is_changes_with(root)).await;
    let diff = diff_of(&m, root).unwrap();
    let tracked = git(
        root,
        &[
            "--no-optional-locks",
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "HEAD",
        ],
    );
    assert!(
        diff.starts_with(&tracked),
        "tracked part must equal git diff HEAD:\n{diff}"
    );
    assert!(tracked.contains("-two\n+TWO\n") && tracked.contains("+++ b/staged.txt\n"));
    let untracked = "diff --git a/untracked.txt b/untracked.txt\nnew file mode 100644\nindex 0000000..fa49b07\n--- /dev/null\n+++ b/untracked.txt\n@@ -0,0 +1 @@\n+new file\n";
    assert!(diff.ends_with(untracked), "{diff}");
    assert_eq!(diff.len(), tracked.len() + untracked.len(), "{diff}");
    for bad in [
        "debug.log",
        "build/",
        "node_modules",
        "EXTERNAL",
        "TEXTCONV",
    ] {
        assert!(!diff.contains(bad), "{bad} in {diff}");
    }
    // Our scans never take the index lock nor rewrite it.
    assert!(!root.join(".git/index.lock").exists());
    assert_eq!(index_id(), index_before, "the scan rewrote .git/index");
    m
}

/// Unchanged → heartbeat with empty repositories and a fresh scanned_at; unknown types get
/// the error frame and the connection stays usable.
async fn heartbeat_and_error_frames(ws: &mut Ws, last: &Value) {
    ws.refresh().await;
    let hb = ws.next(T).await;
    assert_eq!(hb["repositories"], json!([]), "{hb}");
    assert!(hb["scanned_at"].as_str().unwrap() >= last["scanned_at"].as_str().unwrap());

    ws.send(&json!({"type": "subscribe", "paths": ["/x"]}))
        .await;
    assert_eq!(
        ws.next(T).await,
        json!({"type": "error", "message": "unknown message type"})
    );
    ws.send(&json!({"type": "bogus"})).await;
    assert_eq!(ws.next(T).await["type"], "error");
}

/// A checkout by another tool is pushed without refresh (.git/HEAD watch), origin comes with
/// config, and reverting everything gives a delta with an empty diff.
async fn checkout_origin_and_revert_are_pushed(ws: &mut Ws, root: &Path) {
    let t0 = Instant::now();
    git(root, &["checkout", "-q", "-b", "feature"]);
    let m = ws
        .wait_for(T, |m| {
            repo(m, root).is_some_and(|r| r["branch"] == "feature")
        })
        .await;
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    git(
        root,
        &["remote", "add", "origin", "https://example.com/r.git"],
    );
    ws.refresh().await;
    let m2 = ws
        .wait_for(T, |m| {
            repo(m, root).is_some_and(|r| r["remote_origin"] == "https://example.com/r.git")
        })
        .await;
    assert!(m2["scanned_at"].as_str() >= m["scanned_at"].as_str());

    git(root, &["checkout", "-q", "--", "tracked.txt"]);
    git(root, &["rm", "-q", "--cached", "staged.txt"]);
    for f in ["staged.txt", "untracked.txt"] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    ws.refresh().await;
    ws.wait_for(T, |m| diff_of(m, root).is_some_and(|d| d.is_empty()))
        .await;
}

#[tokio::test]
async fn chat_scoping_ancestors_nesting_and_late_joiner() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = init_repo(&tmp.path().join("a"));
    let b = init_repo(&tmp.path().join("b"));
    let inner = init_repo(&a.join("vendor/inner"));
    std::fs::create_dir_all(tmp.path().join("plain")).unwrap();
    let (parent, child, other) = (chat(10), chat(11), chat(12));

    let mut ws_parent = Ws::connect(&d, &parent).await;
    let mut ws_child = Ws::connect(&d, &child).await;
    let mut ws_other = Ws::connect(&d, &other).await;

    // 500 paths, 499 outside any repo, recorded for the child and its parent.
    let mut paths: Vec<std::path::PathBuf> = (0..499)
        .map(|i| tmp.path().join(format!("plain/f{i}")))
        .collect();
    paths.push(
        a.join("x/y/z.txt")
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf(),
    );
    std::fs::create_dir_all(a.join("x")).unwrap();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    add_paths(&d, &child, &[&parent], &refs).await;
    add_paths(&d, &other, &[], &[&b.join("README.md")]).await;

    let m = ws_child.wait_for(T, is_changes_with(&a)).await;
    assert_eq!(m["repositories"].as_array().unwrap().len(), 1, "{m}");
    let m = ws_parent.wait_for(T, is_changes_with(&a)).await;
    assert_eq!(m["repositories"].as_array().unwrap().len(), 1, "{m}");
    let m = ws_other.wait_for(T, is_changes_with(&b)).await;
    assert_eq!(m["repositories"].as_array().unwrap().len(), 1, "{m}");

    // The nearest repo wins for a path inside a nested repo.
    std::fs::write(inner.join("n.txt"), "n\n").unwrap();
    add_paths(&d, &child, &[&parent], &[&inner.join("n.txt")]).await;
    let m = ws_child.wait_for(T, is_changes_with(&inner)).await;
    assert!(diff_of(&m, &inner).unwrap().contains("+++ b/n.txt"));
    assert!(repo(&m, &a).is_none() || !diff_of(&m, &a).unwrap().contains("n.txt"));

    // A change in repo b is never shown to the child or parent.
    std::fs::write(b.join("README.md"), "changed\n").unwrap();
    add_paths(&d, &other, &[], &[&b.join("README.md")]).await;
    let m = ws_other
        .wait_for(T, |m| {
            diff_of(m, &b).is_some_and(|d| d.contains("+changed"))
        })
        .await;
    assert_eq!(m["repositories"].as_array().unwrap().len(), 1);
    for ws in [&mut ws_child, &mut ws_parent] {
        while let Some(m) = ws.try_next(Duration::from_millis(1500)).await {
            assert!(repo(&m, &b).is_none(), "{m}");
        }
    }

    // A connection joining late gets every watched repo in its first message.
    let mut late = Ws::connect(&d, &child).await;
    let first = late.next(T).await;
    let mut roots: Vec<&str> = first["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo_root"].as_str().unwrap())
        .collect();
    roots.sort();
    let (sa, si) = (a.display().to_string(), inner.display().to_string());
    let mut want = vec![sa.as_str(), si.as_str()];
    want.sort();
    assert_eq!(roots, want, "{first}");
    // The nested repo's file is not claimed by the outer repo.
    assert!(!diff_of(&first, &a).unwrap().contains("n.txt"), "{first}");
}

#[tokio::test]
async fn worktree_unborn_submodule_and_removals() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let (main, wt) = repo_with_edited_worktree(tmp.path());
    let unborn = unborn_repo_with_staged_and_loose(&tmp.path().join("unborn"));
    let (sup, sm) = super_with_edited_submodule(tmp.path());

    let c = chat(20);
    let mut ws = Ws::connect(&d, &c).await;
    add_paths(
        &d,
        &c,
        &[],
        &[&wt.join("w.txt"), &unborn, &sm.join("README.md"), &sup],
    )
    .await;
    let mut seen = serde_json::Map::new();
    while seen.len() < 4 {
        let m = ws.next(T).await;
        for r in m["repositories"].as_array().unwrap() {
            seen.insert(r["repo_root"].as_str().unwrap().to_owned(), r.clone());
        }
    }
    let w = &seen[&wt.display().to_string()];
    assert_eq!(w["branch"], "wtb");
    assert!(
        w["unified_diff"]
            .as_str()
            .unwrap()
            .contains("+++ b/w.txt\n@@ -0,0 +1 @@\n+in worktree\n")
    );
    let u = &seen[&unborn.display().to_string()];
    assert_eq!(u["branch"], "trunk");
    let ud = u["unified_diff"].as_str().unwrap();
    assert!(ud.contains("+++ b/staged.txt\n@@ -0,0 +1 @@\n+s\n"), "{ud}");
    assert!(ud.contains("+++ b/loose.txt\n@@ -0,0 +1 @@\n+l\n"), "{ud}");
    let s = &seen[&sm.display().to_string()];
    assert!(
        s["unified_diff"]
            .as_str()
            .unwrap()
            .contains("-hello\n+sub edit\n")
    );
    let p = &seen[&sup.display().to_string()];
    assert!(
        p["unified_diff"]
            .as_str()
            .unwrap()
            .contains("diff --git a/sm b/sm"),
        "{p}"
    );
    removed_repos_are_reported_then_evicted(&mut ws, &main, &wt, &unborn).await;
}

/// `main` with a linked worktree `wt` (branch `wtb`) holding one untracked file.
fn repo_with_edited_worktree(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let main = init_repo(&tmp.join("main"));
    git(&main, &["worktree", "add", "-q", "-b", "wtb", "../wt"]);
    let wt = std::fs::canonicalize(tmp.join("wt")).unwrap();
    std::fs::write(wt.join("w.txt"), "in worktree\n").unwrap();
    (main, wt)
}

/// A repo without commits (branch `trunk`), one staged and one loose file.
fn unborn_repo_with_staged_and_loose(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "trunk"]);
    let unborn = std::fs::canonicalize(dir).unwrap();
    std::fs::write(unborn.join("staged.txt"), "s\n").unwrap();
    git(&unborn, &["add", "staged.txt"]);
    std::fs::write(unborn.join("loose.txt"), "l\n").unwrap();
    unborn
}

/// `super` with the submodule `sm` whose README is edited; returns (super, sm).
fn super_with_edited_submodule(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let sub_src = init_repo(&tmp.join("subsrc"));
    let sup = init_repo(&tmp.join("super"));
    let sm = add_submodule(&sup, &sub_src, "sm");
    std::fs::write(sm.join("README.md"), "sub edit\n").unwrap();
    (sup, sm)
}

/// A linked worktree whose gitdir vanishes and a plain repo whose `.git` is deleted are
/// reported removed, then never come back in later messages.
async fn removed_repos_are_reported_then_evicted(
    ws: &mut Ws,
    main: &Path,
    wt: &Path,
    unborn: &Path,
) {
    std::fs::remove_dir_all(main.join(".git/worktrees/wt")).unwrap();
    ws.refresh().await;
    let m = ws
        .wait_for(T, |m| repo(m, wt).is_some_and(|r| r["removed"] == true))
        .await;
    assert_eq!(
        repo(&m, wt).unwrap(),
        &json!({"repo_root": wt.display().to_string(), "unified_diff": "", "removed": true})
    );
    std::fs::remove_dir_all(unborn.join(".git")).unwrap();
    ws.refresh().await;
    ws.wait_for(T, |m| repo(m, unborn).is_some_and(|r| r["removed"] == true))
        .await;
    ws.refresh().await;
    while let Some(m) = ws.try_next(Duration::from_millis(1500)).await {
        assert!(repo(&m, wt).is_none() && repo(&m, unborn).is_none(), "{m}");
    }
}

#[tokio::test]
async fn big_binary_odd_names_and_corrupt_head() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("r"));
    std::fs::write(root.join("old.bin"), b"a\0b\0c").unwrap();
    git(&root, &["add", "old.bin"]);
    git(&root, &["commit", "-q", "-m", "bin"]);
    let c = chat(30);
    let mut ws = Ws::connect(&d, &c).await;
    add_paths(&d, &c, &[], &[&root]).await;
    ws.wait_for(T, is_changes_with(&root)).await;

    binary_files_and_odd_names(&mut ws, &root).await;
    many_untracked_files_arrive_in_one_diff(&mut ws, &root).await;
    too_large_diffs_get_placeholders(&mut ws, &root).await;
    corrupt_head_is_a_transient_error(&d, &mut ws, &root).await;
}

/// Binary new and modified; a name with a newline, spaces, quotes and unicode.
async fn binary_files_and_odd_names(ws: &mut Ws, root: &Path) {
    std::fs::write(root.join("new.bin"), b"\0\x01\x02binary").unwrap();
    std::fs::write(root.join("old.bin"), b"x\0y").unwrap();
    std::fs::write(root.join("new\nline \"q\" é.txt"), "odd\n").unwrap();
    ws.refresh().await;
    let m = ws.wait_for(T, is_changes_with(root)).await;
    let diff = diff_of(&m, root).unwrap();
    assert!(
        diff.contains("Binary files a/old.bin and b/old.bin differ\n"),
        "{diff}"
    );
    assert!(
        diff.contains("Binary files /dev/null and b/new.bin differ\n"),
        "{diff}"
    );
    assert!(!diff.contains('\0'));
    assert!(
        diff.contains("+++ \"b/new\\nline \\\"q\\\" \\303\\251.txt\"\t\n@@ -0,0 +1 @@\n+odd\n"),
        "{diff}"
    );
}

/// 2 000 untracked files arrive in one diff, batched, within 5 s.
async fn many_untracked_files_arrive_in_one_diff(ws: &mut Ws, root: &Path) {
    std::fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..2000 {
        std::fs::write(
            root.join(format!("many/f{i:04}.txt")),
            format!("line {i}\n"),
        )
        .unwrap();
    }
    // The root's watch may have started a scan while the files were being written (a
    // partial diff is pushed then): wait for the one that has the last file.
    let t0 = Instant::now();
    ws.refresh().await;
    let m = ws
        .wait_for(T, |m| {
            diff_of(m, root)
                .is_some_and(|d| d.contains("+++ b/many/f1999.txt\n@@ -0,0 +1 @@\n+line 1999\n"))
        })
        .await;
    let took = t0.elapsed();
    let diff = diff_of(&m, root).unwrap();
    assert_eq!(diff.matches("diff --git a/many/").count(), 2000);
    assert!(diff.contains("+++ b/many/f1999.txt\n@@ -0,0 +1 @@\n+line 1999\n"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    std::fs::remove_dir_all(root.join("many")).unwrap();
}

/// One 512 KiB file → per-file stub; 16 × 200 KiB (3.2 MB) → total placeholder. Leaves
/// `big.txt` and the 16 chunks in place.
async fn too_large_diffs_get_placeholders(ws: &mut Ws, root: &Path) {
    let line = "x".repeat(99) + "\n";
    std::fs::write(root.join("big.txt"), line.repeat(5243)).unwrap();
    ws.refresh().await;
    let m = ws
        .wait_for(T, |m| {
            diff_of(m, root)
                .is_some_and(|d| d.contains("+File diff too large to show. Diff size: 530 kB\n"))
        })
        .await;
    let diff = diff_of(&m, root).unwrap();
    assert!(
        diff.contains(
            "+++ b/big.txt\n@@ -0,0 +1 @@\n+File diff too large to show. Diff size: 530 kB\n"
        ),
        "{}",
        &diff[..diff.len().min(2000)]
    );
    for i in 0..16 {
        std::fs::write(root.join(format!("chunk{i:02}.txt")), line.repeat(2000)).unwrap();
    }
    ws.refresh().await;
    let m = ws
        .wait_for(T, |m| {
            diff_of(m, root).is_some_and(|d| d.starts_with("Total diff too large"))
        })
        .await;
    let r = repo(&m, root).unwrap();
    let diff = r["unified_diff"].as_str().unwrap();
    assert!(
        diff.starts_with("Total diff too large to show. Size: 3."),
        "{}",
        &diff[..diff.len().min(300)]
    );
    assert!(
        diff.ends_with(" MB. Showing branch and remote only."),
        "{diff}"
    );
    assert_eq!(r["branch"], "main");
}

/// A corrupt HEAD is a transient error: no removal; after repair (and removing the chunks)
/// the repo is still watched.
async fn corrupt_head_is_a_transient_error(d: &Agentd, ws: &mut Ws, root: &Path) {
    let head = std::fs::read(root.join(".git/HEAD")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "garbage").unwrap();
    ws.refresh().await;
    let hb = ws.next(T).await;
    assert_eq!(hb["repositories"], json!([]), "{hb}");
    d.logs
        .wait_for(T, |v| v["message"] == "scan repo failed")
        .unwrap();
    std::fs::write(root.join(".git/HEAD"), head).unwrap();
    for i in 0..16 {
        std::fs::remove_file(root.join(format!("chunk{i:02}.txt"))).unwrap();
    }
    ws.refresh().await;
    let m = ws
        .wait_for(T, |m| {
            diff_of(m, root).is_some_and(|d| !d.starts_with("Total diff too large"))
        })
        .await;
    let diff = diff_of(&m, root).unwrap();
    assert!(diff.contains("File diff too large to show"), "{diff}");
    assert_eq!(repo(&m, root).unwrap()["removed"], Value::Null);
}

/// Scans caused by `edits` edits, each a write in a watched directory (an inotify event)
/// followed by the notification its process's exit publishes, with `same_chat` connections
/// of the editing chat and `parent` connections of its parent chat.
async fn scans_for_edits(n: u8, edits: u64, same_chat: usize, parent: usize) -> u64 {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = init_repo(&tmp.path().join("r"));
    let dir = root.join("d");
    std::fs::create_dir_all(&dir).unwrap();
    let (c, p) = (chat(n), chat(n + 1));
    let mut conns = Vec::new();
    for _ in 0..same_chat {
        conns.push(Ws::connect(&d, &c).await);
    }
    for _ in 0..parent {
        conns.push(Ws::connect(&d, &p).await);
    }
    add_paths(&d, &c, &[p.as_str()], &[&dir]).await;
    for ws in conns.iter_mut() {
        ws.wait_for(T, is_changes_with(&root)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = scans_total(&d).await;
    for i in 0..edits {
        // The scan waits for the notification instead of running once for the event and
        // again for the notification; every connection sees the notification, the repo scans
        // for it once.
        let marker = format!("edit {i}");
        std::fs::write(dir.join("f.txt"), format!("{marker}\n")).unwrap();
        add_paths(&d, &c, &[p.as_str()], &[&dir]).await;
        for ws in conns.iter_mut() {
            ws.wait_for(T, |m| {
                diff_of(m, &root).is_some_and(|d| d.contains(&format!("+{marker}\n")))
            })
            .await;
        }
        // Past the 1 s cooldown (so edits are not folded together), well within the 5 s
        // fallback poll (so it adds no scans), then drop whatever else arrived.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for ws in conns.iter_mut() {
            while ws.try_next(Duration::from_millis(20)).await.is_some() {}
        }
    }
    scans_total(&d).await - before
}

#[tokio::test]
async fn a_write_then_its_exit_notification_take_one_scan() {
    let edits = 5;
    let scans = scans_for_edits(40, edits, 1, 0).await;
    // One per edit; slack for a notification slower than the settle window on a busy host
    // (two per edit without the settle).
    assert!(
        scans >= edits && scans <= edits + 2,
        "{scans} scans for {edits} edits"
    );
}

#[tokio::test]
async fn more_subscribers_do_not_mean_more_scans() {
    // Five connections (four of the chat, one of its parent) cost what one costs: before,
    // each subscriber triggered the repo for the same notification (two scans per edit).
    let edits = 5;
    let scans = scans_for_edits(42, edits, 4, 1).await;
    assert!(
        scans >= edits && scans <= edits + 2,
        "{scans} scans for {edits} edits with 5 subscribers"
    );
}
