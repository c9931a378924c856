//! Containment against the real binary, in both modes (`--containment cgroup|subreaper`):
//! descendants that left the shell's process group (`setsid`, a daemonising double fork, a
//! new group) die with a `kill` signal and with the daemon's shutdown; the mode shows in
//! `/healthz` and `/metrics`; exited shells whose descendants live count against
//! `--max-processes`; exited records are bounded.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agentd_tests::{Agentd, eventually, procfs};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const P: &str = "/api/v0/processes";

/// A number no other process on the machine has in its command line.
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}{}{:09}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Live (non-zombie) processes whose command line contains `marker`.
fn alive_with(marker: &str) -> Vec<u32> {
    procfs::pids()
        .into_iter()
        .filter(|&pid| procfs::cmdline_has(pid, marker) && procfs::is_live(pid))
        .collect()
}

/// Zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<u32>().ok())
        {
            if procfs::stat(k).is_some_and(|(state, _, _)| state == 'Z') {
                out.push(k);
            }
        }
    }
    out
}

/// Three escapes, each a `sleep` with its own marker: `setsid`, a daemonising double fork
/// (fork, setsid, fork) and a new process group (perl's `setpgrp`).
fn escapes(m: &str) -> (String, [String; 3]) {
    let marks = [
        format!("1000.{m}1"),
        format!("1000.{m}2"),
        format!("1000.{m}3"),
    ];
    let cmd = format!(
        "setsid sleep {a} >/dev/null 2>&1 & \
         ( setsid sh -c 'sleep {b} >/dev/null 2>&1 &' & ) ; \
         perl -e 'setpgrp(0,0); exec \"sleep\", \"{c}\"' >/dev/null 2>&1 &",
        a = marks[0],
        b = marks[1],
        c = marks[2],
    );
    (cmd, marks)
}

fn daemon(mode: &str, extra: &[&str]) -> Agentd {
    Agentd::start_with_args(&[&["--containment", mode], extra].concat())
}

async fn start(d: &Agentd, cmd: &str) -> (u16, Value) {
    d.post_json(&format!("{P}/start"), &json!({ "command": cmd }))
        .await
}

async fn started(d: &Agentd, cmd: &str) -> String {
    let (s, v) = start(d, cmd).await;
    assert_eq!(s, 200, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn all_alive(marks: &[String]) {
    for m in marks {
        eventually(Duration::from_secs(10), async || {
            (!alive_with(m).is_empty()).then_some(())
        })
        .await;
    }
}

async fn none_alive(marks: &[String], what: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if marks.iter().all(|m| alive_with(m).is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<_> = marks.iter().filter(|m| !alive_with(m).is_empty()).collect();
    panic!("{what}: still alive: {left:?}");
}

async fn escapes_die_with_a_kill_signal(mode: &str) {
    let d = daemon(mode, &[]);
    let (cmd, marks) = escapes(&unique());
    // The shell stays: the signal goes to a running process.
    let id = started(&d, &format!("{cmd} sleep 300")).await;
    all_alive(&marks).await;
    let (s, v) = d
        .post_json(&format!("{P}/{id}/signal"), &json!({"signal": "kill"}))
        .await;
    assert_eq!(s, 200, "{v}");
    none_alive(&marks, mode).await;
    let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
    assert_eq!(v["running"], false);
    assert_eq!(v["exit_signal"], "SIGKILL");
    if mode == "subreaper" {
        // The adopted orphans were reaped, not left as zombies of the daemon.
        let pid = d.pid();
        eventually(Duration::from_secs(5), async || {
            zombie_children(pid).is_empty().then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn escaped_descendants_die_with_a_kill_signal_cgroup() {
    escapes_die_with_a_kill_signal("cgroup").await;
}

#[tokio::test]
async fn escaped_descendants_die_with_a_kill_signal_subreaper() {
    escapes_die_with_a_kill_signal("subreaper").await;
}

async fn escapes_die_with_the_daemon(mode: &str) {
    let mut d = daemon(mode, &[]);
    let (cmd, marks) = escapes(&unique());
    let (term_mark, term) = {
        let m = format!("1000.{}9", unique());
        (
            m.clone(),
            format!("setsid sh -c 'trap \"\" TERM; sleep {m}' >/dev/null 2>&1 &"),
        )
    };
    // The shell exits at once: only the escaped descendants are left, one ignoring TERM.
    let id = started(&d, &format!("{cmd} {term} exit 0")).await;
    let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
    assert_eq!(v["running"], false, "{v}");
    let mut all = marks.to_vec();
    all.push(term_mark);
    all_alive(&all).await;
    d.signal(Signal::SIGTERM);
    let st = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("agentd did not exit");
    assert!(st.success(), "{st:?}");
    none_alive(&all, mode).await;
}

#[tokio::test]
async fn escaped_descendants_die_with_the_daemon_cgroup() {
    escapes_die_with_the_daemon("cgroup").await;
}

#[tokio::test]
async fn escaped_descendants_die_with_the_daemon_subreaper() {
    escapes_die_with_the_daemon("subreaper").await;
}

/// The cgroup v2 mount and the daemon's own cgroup, as agentd finds them.
fn daemon_cgroup_dir(pid: u32) -> std::path::PathBuf {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .trim();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mi
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.starts_with("cgroup2 "))
                .then(|| left.split_whitespace().nth(4).unwrap().to_owned())
        })
        .unwrap();
    std::path::Path::new(&mount)
        .join(rel.trim_start_matches('/'))
        .join(format!("agentd.{pid}.0"))
}

#[tokio::test]
async fn the_mode_is_reported_and_cgroup_leaves_are_removed() {
    for mode in ["cgroup", "subreaper"] {
        let mut d = daemon(mode, &[]);
        let (s, v) = d.get_json("/healthz").await;
        assert_eq!(s, 200);
        assert_eq!(v["containment"], mode, "{v}");
        let m = d.metrics_text().await;
        let line = format!("agentd_process_containment{{mode=\"{mode}\"}} 1");
        assert!(m.contains(&line), "{m}");
        let started_line = d
            .logs
            .wait_for(Duration::from_secs(5), |l| l["containment"] == mode)
            .expect("a startup line names the mode");
        assert!(started_line["message"].as_str().unwrap().contains(mode));
        if mode == "cgroup" {
            let dir = daemon_cgroup_dir(d.pid());
            assert!(dir.is_dir(), "{}", dir.display());
            let marker = format!("1000.{}", unique());
            let id = started(&d, &format!("sleep {marker} & echo $$")).await;
            eventually(Duration::from_secs(5), async || {
                (!alive_with(&marker).is_empty()).then_some(())
            })
            .await;
            // Once the shell has exited, the leaf holds the rest of the tree: exactly the sleep.
            let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
            assert_eq!(v["running"], false, "{v}");
            let leaves: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .collect();
            assert_eq!(leaves.len(), 1, "{leaves:?}");
            let procs = std::fs::read_to_string(leaves[0].path().join("cgroup.procs")).unwrap();
            let want: Vec<String> = alive_with(&marker).iter().map(u32::to_string).collect();
            assert_eq!(procs.split_whitespace().collect::<Vec<_>>(), want);
            let (s, _) = d
                .post_json(&format!("{P}/{id}/signal"), &json!({"signal": "kill"}))
                .await;
            assert_eq!(s, 200);
            // Once the tree ended, its leaf is removed: a clone3 into a cgroup that got a
            // cgroup.kill is killed at birth on Linux 6.x, so a killed leaf is never reused.
            eventually(Duration::from_secs(5), async || {
                (!leaves[0].path().exists()).then_some(())
            })
            .await;
            // A tree that ended by itself leaves its leaf empty, and the next start reuses it.
            let id = started(&d, "echo first").await;
            let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
            assert_eq!(v["output"], "first\n");
            let leaves: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .collect();
            assert_eq!(leaves.len(), 1, "{leaves:?}");
            let leaf = leaves[0].path();
            // The slot is freed right after the leaf was released.
            eventually(Duration::from_secs(5), async || {
                let m = d.metrics_text().await;
                m.lines()
                    .any(|l| l == "agentd_processes_counted 0")
                    .then_some(())
            })
            .await;
            let id = started(&d, "cat /proc/self/cgroup").await;
            let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
            let own = std::fs::read_to_string(format!("/proc/{}/cgroup", d.pid())).unwrap();
            let own = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap()
                .trim_end_matches('/');
            let name = leaf.file_name().unwrap().to_str().unwrap();
            let cg = v["output"].as_str().unwrap();
            assert_eq!(
                cg.lines().find(|l| l.starts_with("0::")),
                Some(format!("0::{own}/agentd.{}.0/{name}", d.pid()).as_str()),
                "{v}"
            );
            d.signal(Signal::SIGTERM);
            let pid_dir = dir.clone();
            let st = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(15)))
                .await
                .unwrap();
            assert!(st.unwrap().success());
            assert!(!pid_dir.exists(), "the daemon's cgroup dir outlived it");
        }
    }
}

#[tokio::test]
async fn exited_shells_with_live_descendants_count_against_the_cap() {
    for mode in ["cgroup", "subreaper"] {
        let d = daemon(mode, &["--max-processes", "1"]);
        let marker = format!("1000.{}", unique());
        // The descendant does not hold the pipe: only containment knows it is there.
        let id = started(&d, &format!("setsid sleep {marker} >/dev/null 2>&1 &")).await;
        let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
        assert_eq!(v["running"], false);
        assert_eq!(v["descendants_running"], true, "{mode}: {v}");
        let (s, v) = start(&d, "true").await;
        assert_eq!(s, 429, "{mode}: {v}");
        let m = d.metrics_text().await;
        assert!(m.contains("agentd_processes_counted 1\n"), "{m}");
        assert!(m.contains("agentd_processes_running 0\n"), "{m}");
        let (s, _) = d
            .post_json(&format!("{P}/{id}/signal"), &json!({"signal": "kill"}))
            .await;
        assert_eq!(s, 200);
        none_alive(std::slice::from_ref(&marker), mode).await;
        // The slot frees once the descendant is gone.
        eventually(Duration::from_secs(5), async || {
            let (s, _) = start(&d, "true").await;
            (s == 200).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn exited_records_are_bounded_oldest_first() {
    let d = daemon("auto", &["--max-exited-processes", "3"]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = started(&d, &format!("echo {i}")).await;
        let (_, v) = d.get_json(&format!("{P}/{id}/output?wait=true")).await;
        assert_eq!(v["running"], false);
        ids.push(id);
    }
    let (_, v) = d.get_json(&format!("{P}/list")).await;
    let mut listed: Vec<String> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut want = ids[2..].to_vec();
    want.sort();
    assert_eq!(listed, want);
    for gone in &ids[..2] {
        let (s, _) = d.get_json(&format!("{P}/{gone}/output")).await;
        assert_eq!(s, 404);
    }
    // A running process is never evicted.
    let running = started(&d, "sleep 30").await;
    for i in 0..4 {
        let id = started(&d, &format!("echo {i}")).await;
        d.get_json(&format!("{P}/{id}/output?wait=true")).await;
    }
    let (s, v) = d.get_json(&format!("{P}/{running}/output")).await;
    assert_eq!(s, 200);
    assert_eq!(v["running"], true);
}

fn pid_alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|(state, _, _)| state != 'Z')
}

#[tokio::test]
async fn mcp_server_that_backgrounds_a_child_and_exits_1_leaves_nothing() {
    use agentd_tests::mcp::{server, start};
    let marker = format!("1000.{}", unique());
    // The child lets go of the stdio pipes, so the handshake fails at once, with the leader
    // already reaped when the server is torn down.
    let script = format!("sleep {marker} </dev/null >/dev/null 2>&1 & exit 1");
    let (mut d, _w) = start(
        json!({"bg": {"command": "sh", "args": ["-c", script]}}),
        &[],
    );
    eventually(Duration::from_secs(20), async || {
        let s = server(&d, "bg").await;
        (s["restarts"].as_u64().unwrap_or(0) >= 3).then_some(())
    })
    .await;
    // Each failed attempt's group was killed: at most the current attempt's child lives.
    let n = alive_with(&marker).len();
    assert!(n <= 1, "children of failed attempts leaked: {n}");
    d.signal(Signal::SIGTERM);
    let st = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("agentd did not exit");
    assert!(st.success());
    none_alive(std::slice::from_ref(&marker), "after shutdown").await;
}

#[tokio::test]
async fn mcp_server_crash_kills_its_term_ignoring_group() {
    use agentd_tests::mcp::{call, fake, start, wait_state};
    let (d, _w) = start(
        json!({"crashy": fake(&["--ignore-term", "--grandchild", "--crash-after", "0"])}),
        &[],
    );
    wait_state(&d, "crashy", "ready", Duration::from_secs(20)).await;
    let line = d
        .logs
        .wait_for(Duration::from_secs(10), |v| {
            v["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("fake-mcp-server: grandchild"))
        })
        .unwrap();
    let grandchild: u32 = line["line"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid_alive(grandchild));
    // The first call crashes the server: its leader is reaped before the teardown.
    let _ = call(&d, "crashy__echo", json!({"message": "x"})).await;
    eventually(Duration::from_secs(10), async || {
        (!pid_alive(grandchild)).then_some(())
    })
    .await;
}
