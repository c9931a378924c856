//! agentd as a container's PID 1 (a new PID namespace via `unshare --pid --fork`): orphans
//! of the namespace are reaped, termination signals reach the daemon, shutdown leaves
//! nothing behind and the exit status is the daemon's.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agentd_tests::procfs::{children, cmdline_has, pids, stat};
use agentd_tests::{agentd_bin, clean_command, free_port};
use serde_json::{Value, json};

async fn post(port: u16, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

struct Ns(Child);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn as_pid1_it_reaps_orphans_forwards_signals_and_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (unshare --pid); CI runs as root");
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut ns = serve_in_a_new_pid_namespace(tmp.path(), port).await;
    // unshare -> init (PID 1 inside) -> the daemon.
    let init = children(ns.0.id())[0];
    let daemon = children(init);
    assert_eq!(daemon.len(), 1, "init has exactly the daemon as its child");
    let (_, _, comm) = stat(daemon[0]).unwrap();
    assert_eq!(comm, stat(init).unwrap().2, "the daemon is the same binary");

    an_orphan_goes_to_init_and_is_reaped(init).await;
    sigterm_to_pid1_stops_the_daemon_and_leaves_nothing(&mut ns, port, init, daemon[0]).await;
}

/// `agentd serve` on `port` under `unshare --pid --fork` (agentd is PID 1 inside), once its
/// /healthz answers.
async fn serve_in_a_new_pid_namespace(tmp: &Path, port: u16) -> Ns {
    let mut cmd = clean_command(Path::new("unshare"));
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(agentd_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(tmp.join("st"))
        .arg("--socket")
        .arg(tmp.join("s.sock"))
        .arg("--workdir")
        .arg(tmp)
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let ns = Ns(cmd.spawn().unwrap());
    let client = reqwest::Client::new();
    let t = Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            && r.status() == 200
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "agentd did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ns
}

/// An orphan the daemon never started (a `docker exec` session that backgrounds a job) is
/// reparented to init, which reaps it when it exits.
async fn an_orphan_goes_to_init_and_is_reaped(init: u32) {
    let marker = format!("0.7{}", std::process::id());
    let status = std::process::Command::new("nsenter")
        .args(["-t", &init.to_string(), "-p", "-m", "--", "sh", "-c"])
        .arg(format!("sleep {marker} & exit 0"))
        .status()
        .unwrap();
    assert!(status.success());
    let orphan = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(p) = pids().into_iter().find(|p| cmdline_has(*p, &marker)) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the orphan runs");
    assert_eq!(stat(orphan).unwrap().1, init, "orphans go to init");
    // Once it exits it is reaped: no zombie stays.
    let t = Instant::now();
    while stat(orphan).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "orphan {orphan} not reaped: {:?}",
            stat(orphan)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A long-running command, then SIGTERM to PID 1: forwarded, the daemon shuts down cleanly,
/// init exits 0 and nothing is left.
async fn sigterm_to_pid1_stops_the_daemon_and_leaves_nothing(
    ns: &mut Ns,
    port: u16,
    init: u32,
    daemon: u32,
) {
    let keep = format!("300.{}", std::process::id());
    let v = post(
        port,
        "/api/v0/processes/start",
        json!({"command": format!("sleep {keep}")}),
    )
    .await;
    assert_eq!(v["started"], true);
    let t = Instant::now();
    while !pids().into_iter().any(|p| cmdline_has(p, &keep)) {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = ns.0.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "init did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        !pids()
            .into_iter()
            .any(|p| cmdline_has(p, &keep) || p == init || p == daemon),
        "something outlived the shutdown"
    );
}
