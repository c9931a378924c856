//! Foundation benchmark: start to first 200 on `/healthz`, and idle RSS after start.
//!
//! Run: `cargo bench -p agentd-tests --bench startup`. Targets: first 200 within
//! 30 ms; idle RSS at most 10 MiB. The baseline for start time is spawning `true` and
//! waiting for it, measured in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentd_tests::{clean_command, free_port, percentile, rss_kib};

fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// One cold start of `bin`: milliseconds to the first 200 on `/healthz`, and (when `rss`)
/// the idle RSS half a second later in MiB.
fn cold_start(
    bin: &std::path::Path,
    dir: &std::path::Path,
    i: usize,
    rss: bool,
) -> (f64, Option<f64>) {
    let port = free_port();
    let t = Instant::now();
    let mut child = clean_command(bin);
    let mut child = child
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(dir.join(format!("st{i}")))
        .arg("--socket")
        .arg(dir.join(format!("s{i}.sock")))
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !healthz(port) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "agentd did not start"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let mem = rss.then(|| {
        std::thread::sleep(Duration::from_millis(500));
        rss_kib(child.id()) as f64 / 1024.0
    });
    let _ = child.kill();
    let _ = child.wait();
    (ms, mem)
}

/// Binaries to compare: the one under test, plus `AGENTD_STARTUP_BINS` (`label=path,...`,
/// e.g. the static release build and the normal release build), measured interleaved.
fn binaries() -> Vec<(String, std::path::PathBuf)> {
    let mut out = vec![("under-test".to_owned(), agentd_tests::agentd_bin())];
    if let Ok(list) = std::env::var("AGENTD_STARTUP_BINS") {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (label, path) = item.split_once('=').expect("label=path");
            out.push((label.to_owned(), path.into()));
        }
    }
    out
}

fn main() {
    let runs = 30;
    let tmp = tempfile::tempdir().unwrap();
    let bins = binaries();
    let mut start_ms = vec![Vec::new(); bins.len()];
    let mut rss = vec![Vec::new(); bins.len()];
    for i in 0..runs {
        for (b, (_, bin)) in bins.iter().enumerate() {
            let (ms, mem) = cold_start(bin, tmp.path(), i * bins.len() + b, i % 5 == 0);
            start_ms[b].push(ms);
            rss[b].extend(mem);
        }
    }
    let mut base = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        Command::new("true").status().unwrap();
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let b50 = percentile(&mut base, 50.0);
    println!("startup: baseline spawn+wait of `true`: p50 {b50:.2} ms");
    for (b, (label, bin)) in bins.iter().enumerate() {
        let p50 = percentile(&mut start_ms[b], 50.0);
        println!(
            "startup [{label}]: start -> first 200 on /healthz: p50 {p50:.2} ms, p95 {:.2} ms (target <= 30 ms); {:.1}x the baseline",
            percentile(&mut start_ms[b], 95.0),
            p50 / b50
        );
        println!(
            "startup [{label}]: idle RSS after start: median {:.2} MiB (target <= 10 MiB)",
            percentile(&mut rss[b], 50.0)
        );
        let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
        println!(
            "startup [{label}]: binary {} is {:.2} MiB",
            bin.display(),
            size as f64 / 1048576.0
        );
    }
}
