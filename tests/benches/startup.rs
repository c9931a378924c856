//! Foundation benchmark: start to first 200 on `/healthz`, and idle RSS after start.
//!
//! Run: `cargo bench -p agentd-tests --bench startup`. Targets (DESIGN.md): first 200 within
//! 30 ms; idle RSS at most 10 MiB. The baseline for start time is spawning `true` and
//! waiting for it, measured in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentd_tests::{agentd_command, free_port, percentile, rss_kib};

fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

fn main() {
    let runs = 30;
    let tmp = tempfile::tempdir().unwrap();
    let mut start_ms = Vec::new();
    let mut rss = Vec::new();
    for i in 0..runs {
        let port = free_port();
        let t = Instant::now();
        let mut child = agentd_command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(tmp.path().join(format!("st{i}")))
            .arg("--socket")
            .arg(tmp.path().join(format!("s{i}.sock")))
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
        start_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(500));
            rss.push(rss_kib(child.id()) as f64 / 1024.0);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut base = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        Command::new("true").status().unwrap();
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut start_ms, 50.0);
    let b50 = percentile(&mut base, 50.0);
    println!(
        "startup: start -> first 200 on /healthz: p50 {p50:.2} ms, p95 {:.2} ms (target <= 30 ms)",
        percentile(&mut start_ms, 95.0)
    );
    println!(
        "startup: baseline spawn+wait of `true`: p50 {b50:.2} ms; ratio {:.1}x",
        p50 / b50
    );
    println!(
        "startup: idle RSS after start: median {:.2} MiB (target <= 10 MiB)",
        percentile(&mut rss, 50.0)
    );
    let bin = agentd_tests::agentd_bin();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "startup: binary under test {} is {:.1} MiB (unstripped bench profile)",
        bin.display(),
        size as f64 / 1048576.0
    );
}
