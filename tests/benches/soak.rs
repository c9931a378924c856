//! Soak: 100 processes printing continuously while 50 clients poll `list`, `output` and
//! `output?since=…&wait=true` for N minutes (`AGENTD_SOAK_MINUTES`, default 1; fractions
//! allowed). Reports the daemon's RSS and open file descriptors at the start and at the end
//! (nothing may grow without bound), and p50/p99 latency per request kind. Every request is
//! a new connection, as chatd makes them; a failed request is counted and reported.
//!
//! Run: `AGENTD_SOAK_MINUTES=2 cargo bench -p agentd-tests --bench soak`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentd_tests::{Agentd, Options, http1, percentile, rss_kib};

const PROCESSES: usize = 100;
const CLIENTS: usize = 50;
/// Each process prints a 100-byte line every 20 ms (5 KB/s, 500 KB/s in all) without
/// forking, so the machine is not spent on the printers.
const PRINTER: &str = r#"exec perl -e '$|=1; my $i=0; while (1) { printf "%08d %s\n", $i++, "x" x 90; select(undef,undef,undef,0.02) }'"#;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[derive(Default)]
struct Samples {
    list: Vec<f64>,
    output: Vec<f64>,
    wait: Vec<f64>,
    errors: usize,
}

/// One client: list, then a snapshot of a process's output, then an incremental long-poll
/// of another one from where this client last read it.
fn client(addr: &str, ids: &[String], seed: usize, stop: &AtomicBool) -> Samples {
    let mut s = Samples::default();
    let mut offsets = vec![0u64; ids.len()];
    let mut k = seed;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let (st, v) = http1(addr, "GET", "/api/v0/processes/list", "", None);
        s.list.push(t.elapsed().as_secs_f64());
        if st != 200 || v["processes"].as_array().is_none() {
            s.errors += 1;
        }
        k = (k * 31 + 7) % ids.len();
        let t = Instant::now();
        let (st, v) = http1(
            addr,
            "GET",
            &format!("/api/v0/processes/{}/output", ids[k]),
            "",
            None,
        );
        s.output.push(t.elapsed().as_secs_f64());
        if st != 200 || v["running"] != true {
            s.errors += 1;
        }
        let j = (k + seed) % ids.len();
        let path = format!(
            "/api/v0/processes/{}/output?since={}&wait=true",
            ids[j], offsets[j]
        );
        let t = Instant::now();
        let (st, v) = http1(addr, "GET", &path, "", None);
        s.wait.push(t.elapsed().as_secs_f64());
        match v["next_offset"].as_u64() {
            Some(n) if st == 200 && n >= offsets[j] => offsets[j] = n,
            _ => s.errors += 1,
        }
    }
    s
}

fn report(name: &str, v: &mut [f64]) {
    let (p50, p99) = (percentile(v, 50.0), percentile(v, 99.0));
    println!(
        "{name:<34} p50 {:>8.3} ms   p99 {:>8.3} ms   (n={})",
        p50 * 1e3,
        p99 * 1e3,
        v.len()
    );
}

fn main() {
    let minutes: f64 = std::env::var("AGENTD_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let d = Agentd::start_with(Options {
        log_level: Some("info".into()),
        args: vec!["--max-processes".into(), (PROCESSES + 10).to_string()],
        ..Options::default()
    });
    let pid = d.pid();
    let (rss0, fd0) = (rss_kib(pid), fds(pid));
    println!("agentd idle: RSS {rss0} KiB, {fd0} fds");

    let body = serde_json::json!({ "command": PRINTER }).to_string();
    let ids: Vec<String> = (0..PROCESSES)
        .map(|_| {
            let (st, v) = http1(&d.addr, "POST", "/api/v0/processes/start", &body, None);
            assert_eq!(st, 200, "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // Let every buffer fill its head and window (80 KiB at 5 KB/s: 16 s), so the start
    // sample already holds the steady state and any growth after it is a leak.
    std::thread::sleep(Duration::from_secs(20));
    let (rss1, fd1) = (rss_kib(pid), fds(pid));
    println!("{PROCESSES} printers started, buffers full: RSS {rss1} KiB, {fd1} fds");

    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(ids);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, ids, stop) = (d.addr.clone(), ids.clone(), stop.clone());
            std::thread::spawn(move || client(&addr, &ids, i + 1, &stop))
        })
        .collect();
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut mid = None;
    while t0.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
        if mid.is_none() && t0.elapsed() >= total / 2 {
            mid = Some((rss_kib(pid), fds(pid)));
        }
    }
    let (rss2, fd2) = (rss_kib(pid), fds(pid));
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    for w in workers {
        let s = w.join().unwrap();
        all.list.extend(s.list);
        all.output.extend(s.output);
        all.wait.extend(s.wait);
        all.errors += s.errors;
    }
    let secs = t0.elapsed().as_secs_f64();
    // The clients' connections are closed now: only the printers' pipes and pidfds remain.
    std::thread::sleep(Duration::from_millis(500));
    let (rss3, fd3) = (rss_kib(pid), fds(pid));

    println!("\n== soak: {PROCESSES} printers, {CLIENTS} clients, {secs:.0} s ==");
    let n = all.list.len() + all.output.len() + all.wait.len();
    println!(
        "{n} requests ({:.0}/s), {} failed",
        n as f64 / secs,
        all.errors
    );
    report("GET list", &mut all.list);
    report("GET output (snapshot)", &mut all.output);
    report("GET output?since&wait=true", &mut all.wait);
    let (rssm, fdm) = mid.unwrap_or((rss2, fd2));
    println!(
        "RSS KiB: idle {rss0} -> printers started {rss1} -> halfway {rssm} -> end {rss2} \
         (end - start {:+})",
        rss2 as i64 - rss1 as i64
    );
    println!(
        "fds: idle {fd0} -> printers started {fd1} -> halfway {fdm} -> end {fd2} \
         (in-flight client connections included)"
    );
    println!(
        "clients stopped: RSS {rss3} KiB ({:+} vs start), {fd3} fds ({:+} vs start)",
        rss3 as i64 - rss1 as i64,
        fd3 as i64 - fd1 as i64
    );

    // Stop the printers; the daemon must give back what they held.
    for id in ids.iter() {
        let path = format!("/api/v0/processes/{id}/signal");
        http1(&d.addr, "POST", &path, r#"{"signal":"kill"}"#, None);
    }
    for id in ids.iter() {
        let path = format!("/api/v0/processes/{id}/output?wait=true");
        http1(&d.addr, "GET", &path, "", None);
    }
    println!(
        "after killing the printers: RSS {} KiB, {} fds",
        rss_kib(pid),
        fds(pid)
    );
    assert_eq!(all.errors, 0, "requests failed during the soak");
}
