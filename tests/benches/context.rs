//! Context benchmark: `GET /api/v0/context-config` on a workspace with 200 skills and 5
//! instruction dirs (p50/p95, new connection per request as chatd does), against baselines
//! measured in the same run: `GET /healthz` (the HTTP floor), an in-process `discover()`
//! (the discovery floor) and reading the same 205 files with `std::fs::read` (the I/O floor).
//! Then `agentd ctx add` end to end (a process, reading a dir, one request over the unix
//! socket, an fsync'd store write) against `agentd version` (the process-start floor).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Instant;

use agentd_tests::bench::{line, stats};
use agentd_tests::context::{skill, write};
use agentd_tests::{Agentd, Options, agentd_command};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let work = tmp.path().join("work");
    let para = "Always run the tests before committing. Keep changes small.\n".repeat(64);
    let mut dirs = Vec::new();
    for i in 0..5 {
        let d = tmp.path().join(format!("instr{i}"));
        write(&d.join("AGENTS.md"), &para);
        dirs.push(d.display().to_string());
    }
    let sk = work.join(".agents/skills");
    for i in 0..200 {
        let name = format!("skill-{i:03}");
        skill(
            &sk,
            &name,
            &name,
            &format!("Skill number {i}, does useful things"),
        );
    }
    std::fs::create_dir_all(&home).unwrap();
    let dirs_var = dirs.join(",");
    let d = Agentd::start_with(Options {
        env: vec![
            ("HOME".into(), home.display().to_string()),
            ("CODER_AGENT_EXP_INSTRUCTIONS_DIRS".into(), dirs_var.clone()),
            ("AGENTD_LOG".into(), "info".into()),
        ],
        args: vec![],
        workdir: Some(work.clone()),
        ..Options::default()
    });

    const N: usize = 300;
    let (cfg, health, parts) = rt.block_on(async {
        let c = d.client();
        let url = d.url("/api/v0/context-config");
        let h = d.url("/healthz");
        // Warm up.
        let first: serde_json::Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        for _ in 0..20 {
            c.get(&url).send().await.unwrap().bytes().await.unwrap();
            c.get(&h).send().await.unwrap().bytes().await.unwrap();
        }
        let mut cfg = Vec::with_capacity(N);
        let mut health = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            let b = c.get(&url).send().await.unwrap().bytes().await.unwrap();
            cfg.push(t.elapsed());
            assert!(b.len() > 1000);
            let t = Instant::now();
            c.get(&h).send().await.unwrap().bytes().await.unwrap();
            health.push(t.elapsed());
        }
        (cfg, health, first["parts"].as_array().unwrap().len())
    });
    assert_eq!(parts, 205);

    // In-process discovery and raw reads of the same files.
    let raw = agentcontextconfig::RawConfig {
        instructions_dirs: Some(dirs_var.clone()),
        ..Default::default()
    };
    let mut disc = Vec::with_capacity(N);
    let mut io = Vec::with_capacity(N);
    let files: Vec<_> = dirs
        .iter()
        .map(|d| Path::new(d).join("AGENTS.md"))
        .chain((0..200).map(|i| sk.join(format!("skill-{i:03}/SKILL.md"))))
        .collect();
    for _ in 0..N {
        let t = Instant::now();
        let cfg = raw.resolve(Some(&work), Some(&home));
        let r = agentcontextconfig::discover(&cfg, Some(&work));
        disc.push(t.elapsed());
        assert_eq!(r.parts.len(), 205);
        let t = Instant::now();
        let mut n = 0;
        for f in &files {
            n += std::fs::read(f).unwrap().len();
        }
        io.push(t.elapsed());
        assert!(n > 0);
    }

    println!("== GET /api/v0/context-config: 5 instruction dirs, 200 skills, {N} requests ==");
    let (c, h, ds, i) = (stats(cfg), stats(health), stats(disc), stats(io));
    line("GET /api/v0/context-config", c);
    line("baseline GET /healthz (new connection)", h);
    line("baseline discover() in process", ds);
    line("baseline std::fs::read of the 205 files", i);
    println!(
        "ratios (p50): config/healthz {:.2}x, config/(healthz+discover) {:.2}x, discover/raw-read {:.2}x",
        c.0 / h.0,
        c.0 / (h.0 + ds.0),
        ds.0 / i.0
    );

    // agentd ctx add end to end.
    let src = tmp.path().join("extra");
    write(&src.join("AGENTS.md"), &para);
    for i in 0..10 {
        let name = format!("extra-{i}");
        skill(&src.join(".agents/skills"), &name, &name, "Extra skill");
    }
    const M: usize = 40;
    let run = |args: &[&str]| {
        let t = Instant::now();
        let out = agentd_command()
            .args(args)
            .env("AGENTD_SOCKET", &d.socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        t.elapsed()
    };
    let dir = src.display().to_string();
    for _ in 0..3 {
        run(&["ctx", "add", "--dir", &dir]);
        run(&["version"]);
    }
    let mut add = Vec::with_capacity(M);
    let mut ver = Vec::with_capacity(M);
    for _ in 0..M {
        add.push(run(&["ctx", "add", "--dir", &dir]));
        ver.push(run(&["version"]));
    }
    println!("== agentd ctx add (AGENTS.md + 10 skills), {M} runs ==");
    let (a, v) = (stats(add), stats(ver));
    line("agentd ctx add --dir DIR", a);
    line("baseline agentd version (process start)", v);
    println!(
        "ratio (p50): ctx add/version {:.2}x, ctx add - version = {:.3} ms",
        a.0 / v.0,
        a.0 - v.0
    );
}
