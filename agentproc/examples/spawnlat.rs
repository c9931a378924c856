//! The supervisor alone, without HTTP: start + wait-for-exit of `sh -c true` through
//! `Supervisor` vs `std::process::Command::status()`, alternating, with the CPU each costs
//! the calling process. `PRIO=1` applies Coder's child priority (OOM 998, nice +5).
//!
//! Run: `cargo run --release -p agentproc --example spawnlat`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use agentproc::{Config, Priority, StartRequest, Supervisor};

/// CPU time of this process's threads so far, in microseconds (`schedstat`, ns precision).
fn cpu_us() -> f64 {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        if let Ok(v) = std::fs::read_to_string(t.unwrap().path().join("schedstat")) {
            ns += v.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    ns as f64 / 1e3
}

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    const N: usize = 2000;
    let mut cfg = Config::new(std::env::vars_os().collect(), std::env::temp_dir());
    if std::env::var_os("PRIO").is_some() {
        cfg.priority = Priority {
            oom_score_adj: Some(998),
            nice: Some(5),
        };
    }
    let sup = Supervisor::new(cfg);
    let (mut ours, mut std_, mut ours_cpu, mut std_cpu) = (vec![], vec![], 0.0, 0.0);
    for i in 0..N {
        let c0 = cpu_us();
        let t = Instant::now();
        let p = sup
            .start(StartRequest::new(format!("p{i}"), "true"))
            .unwrap();
        p.wait_exit().await;
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let c1 = cpu_us();
        ours_cpu += c1 - c0;
        let t = Instant::now();
        let st = std::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .unwrap();
        assert!(st.success());
        std_.push(t.elapsed().as_secs_f64() * 1e3);
        std_cpu += cpu_us() - c1;
    }
    println!(
        "supervisor start+wait p50 {:.3} ms ({:.0} us CPU each); std spawn+wait p50 {:.3} ms \
         ({:.0} us CPU each)",
        p50(&mut ours),
        ours_cpu / N as f64,
        p50(&mut std_),
        std_cpu / N as f64
    );
}
