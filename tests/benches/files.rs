//! File API benchmark (p50/p95, a new connection per request as chatd does), each against a
//! process doing the same job, measured in the same run:
//! - `POST /api/v0/write-file` of a 100 KiB file vs `cp` of a 100 KiB file (no fsync) and
//!   `cp` + `sync <file>` (durable, as write-file is: it fsyncs the file and the directory);
//! - `POST /api/v0/edit-files` (one exact edit of a 100 KiB file) vs `sed -i`, and one edit
//!   that only the indentation pass finds, with `include_diff` (same baseline);
//! - `GET /api/v0/read-file-lines` (400 lines from the middle of a 1 MiB file) vs `sed -n`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use agentd_tests::bench::{line, stats};
use agentd_tests::{Agentd, Options, enc, http1};

const N: usize = 200;

fn ratio(name: &str, a: (f64, f64), b: (f64, f64)) {
    println!("{name:<52} {:>8.2}x (p50)", a.0 / b.0);
}

fn time(n: usize, mut f: impl FnMut(usize)) -> Vec<Duration> {
    for i in 0..10 {
        f(i);
    }
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect()
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success());
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let d = Agentd::start_with(Options {
        log_level: Some("info".into()),
        ..Options::default()
    });
    // 100 KiB of source-like text with one marker line in the middle.
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 100 * 1024 {
        if i == 800 {
            text.push_str("    let marker = MARKER_A;\n");
        }
        text.push_str(&format!(
            "    let value_{i:05} = compute({i}) + offset; // line\n"
        ));
        i += 1;
    }
    let src = root.join("src.rs");
    std::fs::write(&src, &text).unwrap();

    // write-file vs cp / cp + sync.
    let wf = root.join("written.rs");
    let wpath = format!("/api/v0/write-file?path={}", enc(&wf.display().to_string()));
    let write = stats(time(N, |_| {
        let (st, _) = http1(&d.addr, "POST", &wpath, &text, None);
        assert_eq!(st, 200);
    }));
    let cpdst = root.join("copied.rs");
    let cp = stats(time(N, |_| run(Command::new("cp").arg(&src).arg(&cpdst))));
    let cpsync = stats(time(N, |_| {
        run(Command::new("sh")
            .arg("-c")
            .arg("cp \"$0\" \"$1\" && sync \"$1\"")
            .arg(&src)
            .arg(&cpdst))
    }));
    assert_eq!(std::fs::read_to_string(&wf).unwrap(), text);

    // edit-files vs sed -i (alternating MARKER_A <-> MARKER_B).
    let ef = root.join("edited.rs");
    std::fs::write(&ef, &text).unwrap();
    let efs = ef.display().to_string();
    let bodies: Vec<String> = ["MARKER_A", "MARKER_B"]
        .iter()
        .zip(["MARKER_B", "MARKER_A"])
        .map(|(a, b)| {
            serde_json::json!({"files": [{"path": efs, "edits": [{"old_text": a, "new_text": b}]}]})
                .to_string()
        })
        .collect();
    let edit = stats(time(N, |i| {
        let (st, v) = http1(&d.addr, "POST", "/api/v0/edit-files", &bodies[i % 2], None);
        assert_eq!(st, 200, "{v}");
    }));
    // The same edit found only by the indentation pass (tab-indented old_text, the file has
    // 4 spaces), with include_diff: the matcher's slow path plus the diff.
    let fuzzy_bodies: Vec<String> = ["MARKER_A", "MARKER_B"]
        .iter()
        .zip(["MARKER_B", "MARKER_A"])
        .map(|(a, b)| {
            serde_json::json!({"include_diff": true, "files": [{"path": efs, "edits": [{
                "old_text": format!("\tlet marker = {a};\n"),
                "new_text": format!("\tlet marker = {b};\n")}]}]})
            .to_string()
        })
        .collect();
    let fuzzy = stats(time(N, |i| {
        let (st, v) = http1(
            &d.addr,
            "POST",
            "/api/v0/edit-files",
            &fuzzy_bodies[i % 2],
            None,
        );
        assert_eq!(st, 200, "{v}");
        assert!(
            v["files"][0]["diff"]
                .as_str()
                .unwrap()
                .contains("+    let marker")
        );
    }));
    assert_eq!(std::fs::read_to_string(&ef).unwrap(), text);
    let sf = root.join("sed.rs");
    std::fs::write(&sf, &text).unwrap();
    let scripts = ["s/MARKER_A/MARKER_B/", "s/MARKER_B/MARKER_A/"];
    let sed = stats(time(N, |i| {
        run(Command::new("sed").arg("-i").arg(scripts[i % 2]).arg(&sf))
    }));

    // read-file-lines on a 1 MiB file vs sed -n.
    let big = root.join("big.txt");
    let mut b = String::new();
    let mut n = 0;
    loop {
        let l = format!("{n:07} the quick brown fox jumps over the lazy dog\n");
        if b.len() + l.len() > 1 << 20 {
            break;
        }
        b.push_str(&l);
        n += 1;
    }
    std::fs::write(&big, &b).unwrap();
    let lpath = format!(
        "/api/v0/read-file-lines?path={}&offset=10000&limit=400",
        enc(&big.display().to_string())
    );
    let lines = stats(time(N, |_| {
        let (st, v) = http1(&d.addr, "GET", &lpath, "", None);
        assert_eq!((st, v["lines_read"].as_u64()), (200, Some(400)), "{v}");
    }));
    let sedn = stats(time(N, |_| {
        let out = Command::new("sed")
            .arg("-n")
            .arg("10000,10399p")
            .arg(&big)
            .output()
            .unwrap();
        assert!(out.status.success());
    }));

    println!("file API, {N} iterations each (100 KiB file; 1 MiB file for lines)");
    line("write-file 100 KiB (fsync file + dir)", write);
    line("baseline: cp 100 KiB (no fsync)", cp);
    line("baseline: cp + sync <file> 100 KiB", cpsync);
    ratio("write-file / cp", write, cp);
    ratio("write-file / (cp + sync)", write, cpsync);
    line("edit-files, one edit, 100 KiB (fsync file + dir)", edit);
    line("baseline: sed -i, 100 KiB (no fsync)", sed);
    ratio("edit-files / sed -i", edit, sed);
    line("edit-files, indentation pass + include_diff", fuzzy);
    ratio("edit-files fuzzy+diff / sed -i", fuzzy, sed);
    ratio("edit-files fuzzy+diff / exact", fuzzy, edit);
    line("read-file-lines 400 lines of a 1 MiB file", lines);
    line("baseline: sed -n 400 lines of a 1 MiB file", sedn);
    ratio("read-file-lines / sed -n", lines, sedn);
}
