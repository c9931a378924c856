//! Git watch benchmark on generated repos (10k and 100k files, 100 per directory):
//! full scan vs `git status --porcelain -uall` + `git diff HEAD`; git2 vs CLI metadata;
//! change → pushed `changes` latency through the real daemon; idle CPU with one subscribed
//! 100k repo; scans per minute with 5 subscribers vs 1.
//!
//! `AGENTD_BENCH_IDLE_SECS` (default 60) sets the idle-CPU window.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentd_tests::gitwatch::{Ws, add_paths, diff_of, git, git_cmd, init_repo, scans_total};
use agentd_tests::{Agentd, Options, percentile};

fn gen_repo(dir: &Path, files: usize) -> PathBuf {
    let root = init_repo(dir);
    // No background auto-gc racing the explicit one (or the timings).
    git(&root, &["config", "gc.auto", "0"]);
    for i in 0..files {
        let d = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::fs::write(d.join(format!("f{i}.txt")), format!("file {i}\nline two\n")).unwrap();
    }
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "gen"]);
    git(&root, &["gc", "-q"]);
    git(&root, &["update-index", "--refresh"]);
    root
}

fn time_cli(root: &Path) -> f64 {
    let t = Instant::now();
    for args in [
        &["--no-optional-locks", "status", "--porcelain", "-uall"][..],
        &["--no-optional-locks", "diff", "HEAD"][..],
    ] {
        let out = git_cmd(root).args(args).output().unwrap();
        assert!(out.status.success());
    }
    t.elapsed().as_secs_f64() * 1000.0
}

fn time_cli_meta(root: &Path) -> f64 {
    let t = Instant::now();
    for args in [
        &["symbolic-ref", "--short", "HEAD"][..],
        &["config", "--get", "remote.origin.url"][..],
        &["rev-parse", "HEAD"][..],
    ] {
        let _ = git_cmd(root).args(args).output().unwrap();
    }
    t.elapsed().as_secs_f64() * 1000.0
}

/// (utime+stime, cutime+cstime) in clock ticks: the daemon, and its reaped git children.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields after the command: state is index 0; utime is field 14 → index 11, stime 12,
    // cutime 13, cstime 14.
    let n = |i: usize| f[i].parse::<u64>().unwrap();
    (n(11) + n(12), n(13) + n(14))
}

async fn latency(root: &Path, samples: usize) -> (f64, f64) {
    let d = Agentd::start_with(Options {
        log_level: Some("info".into()),
        ..Options::default()
    });
    let chat = "00000000-0000-4000-8000-00000000abcd";
    let mut ws = Ws::connect(&d, chat).await;
    add_paths(&d, chat, &[], &[&root.join("d0000")]).await;
    ws.wait_for(Duration::from_secs(60), |m| diff_of(m, root).is_some())
        .await;
    let mut v = Vec::new();
    for i in 0..samples {
        // Stay beyond the 1 s rate limit's leading edge.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let f = root.join("d0000/f0.txt");
        let marker = format!("edit {i}");
        std::fs::write(&f, format!("{marker}\n")).unwrap();
        let t = Instant::now();
        // The same notification a process exit publishes: workdir recorded for the chat.
        add_paths(&d, chat, &[], &[&root.join("d0000")]).await;
        ws.wait_for(Duration::from_secs(30), |m| {
            diff_of(m, root).is_some_and(|d| d.contains(&format!("+{marker}\n")))
        })
        .await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let anything that follows (a trailing scan when the notification came after the
        // file-system event's settle window) run, so the next sample starts beyond the rate
        // limit.
        while ws.try_next(Duration::from_millis(1500)).await.is_some() {}
    }
    git(root, &["checkout", "-q", "--", "d0000/f0.txt"]);
    (percentile(&mut v, 50.0), percentile(&mut v, 95.0))
}

async fn scans_per_window(root: &Path, subscribers: usize, window: Duration) -> u64 {
    let d = Agentd::start_with(Options {
        log_level: Some("info".into()),
        ..Options::default()
    });
    let chat = "00000000-0000-4000-8000-00000000beef";
    let mut conns = Vec::new();
    for _ in 0..subscribers {
        conns.push(Ws::connect(&d, chat).await);
    }
    add_paths(&d, chat, &[], &[root]).await;
    for ws in &mut conns {
        ws.wait_for(Duration::from_secs(60), |m| diff_of(m, root).is_some())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = scans_total(&d).await;
    let t = Instant::now();
    let mut i = 0;
    while t.elapsed() < window {
        // An edit and a path notification every 2 s (every subscriber is woken by it).
        std::fs::write(root.join("d0001/f100.txt"), format!("w {i}\n")).unwrap();
        add_paths(&d, chat, &[], &[&root.join("d0001")]).await;
        i += 1;
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        for ws in &mut conns {
            while ws
                .try_next(until.saturating_duration_since(tokio::time::Instant::now()))
                .await
                .is_some()
            {}
        }
    }
    let n = scans_total(&d).await - before;
    git(root, &["checkout", "-q", "--", "d0001/f100.txt"]);
    n
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let gv = git(tmp.path(), &["--version"]);
    println!("# gitwatch bench ({}), 2-core host", gv.trim());
    let mut repos = Vec::new();
    for n in [10_000usize, 100_000] {
        let t = Instant::now();
        let root = gen_repo(&tmp.path().join(format!("r{n}")), n);
        println!(
            "generated {n}-file repo in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        repos.push((n, root));
    }

    println!("\n## full scan (1 modified + 1 untracked), ms, median of 7");
    let cfg = gitwatch::Config::default();
    for (n, root) in &repos {
        std::fs::write(root.join("d0000/f1.txt"), "modified\n").unwrap();
        std::fs::write(root.join("d0000/untracked.txt"), "new\n").unwrap();
        let (mut ours, mut cli, mut meta2, mut metacli) = (vec![], vec![], vec![], vec![]);
        for _ in 0..7 {
            let t = Instant::now();
            let out = gitwatch::scan(&cfg, root, None).await.unwrap();
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(matches!(out, gitwatch::Outcome::Changed(..)));
            cli.push(time_cli(root));
            metacli.push(time_cli_meta(root));
            let t = Instant::now();
            let _ = gitwatch::read_meta(root).unwrap();
            meta2.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // Fingerprint-only pass (the poll's cheap check when nothing changed).
        let fp = match gitwatch::scan(&cfg, root, None).await.unwrap() {
            gitwatch::Outcome::Changed(_, f) => f,
            gitwatch::Outcome::Unchanged => unreachable!(),
        };
        let mut check = vec![];
        for _ in 0..7 {
            let t = Instant::now();
            let o = gitwatch::scan(&cfg, root, Some(fp)).await.unwrap();
            check.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(matches!(o, gitwatch::Outcome::Unchanged));
        }
        let (o, c) = (percentile(&mut ours, 50.0), percentile(&mut cli, 50.0));
        println!(
            "R{n}: agentd full scan {o:.1} | git status -uall + git diff HEAD {c:.1} | ratio {:.2} | unchanged check {:.1} | metadata: git2 {:.2} vs CLI (3 forks) {:.1}",
            o / c,
            percentile(&mut check, 50.0),
            percentile(&mut meta2, 50.0),
            percentile(&mut metacli, 50.0)
        );
        git(root, &["checkout", "-q", "--", "d0000/f1.txt"]);
        std::fs::remove_file(root.join("d0000/untracked.txt")).unwrap();
    }

    println!(
        "\n## change → pushed `changes` latency (path notification, beyond the 1 s leading edge), ms"
    );
    for (n, root) in &repos {
        let samples = if *n > 10_000 { 10 } else { 20 };
        let (p50, p95) = latency(root, samples).await;
        println!("R{n}: p50 {p50:.1} p95 {p95:.1} ({samples} samples)");
    }

    let idle = std::env::var("AGENTD_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    println!("\n## idle CPU, one subscribed 100k-file repo, {idle} s window");
    {
        let root = &repos[1].1;
        let d = Agentd::start_with(Options {
            log_level: Some("info".into()),
            ..Options::default()
        });
        let chat = "00000000-0000-4000-8000-0000000000cc";
        let mut ws = Ws::connect(&d, chat).await;
        add_paths(&d, chat, &[], &[root]).await;
        ws.wait_for(Duration::from_secs(60), |m| diff_of(m, root).is_some())
            .await;
        let s0 = scans_total(&d).await;
        let c0 = cpu_ticks(d.pid());
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let c1 = cpu_ticks(d.pid());
        let secs = t.elapsed().as_secs_f64();
        let tick = 100.0;
        let own = (c1.0 - c0.0) as f64 / tick;
        let kids = (c1.1 - c0.1) as f64 / tick;
        println!(
            "daemon {own:.2} CPU-s + its git children {kids:.2} CPU-s over {secs:.0} s = {:.2} % of a core; scans in window {}",
            (own + kids) / secs * 100.0,
            scans_total(&d).await - s0
        );
    }

    println!("\n## scans per minute, one 10k repo, an edit + path notification every 2 s");
    let root = &repos[0].1;
    let w = Duration::from_secs(20);
    let one = scans_per_window(root, 1, w).await;
    let five = scans_per_window(root, 5, w).await;
    println!(
        "1 subscriber: {} scans/min | 5 subscribers: {} scans/min | ratio {:.2}",
        one * 3,
        five * 3,
        five as f64 / one.max(1) as f64
    );
}
