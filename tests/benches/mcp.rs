//! MCP benchmark: `call-tool` through agentd vs a direct rmcp client call to the same stdio
//! server (p50/p99 and overhead); time until `/tools` lists 10 servers vs connecting the
//! same 10 servers directly; daemon memory per connected server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use agentd_tests::mcp::{fake, start};
use agentd_tests::{Agentd, Options, fake_mcp_server_bin, percentile, rss_kib};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const N: usize = 1000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Benches log at info (the harness default, debug, costs time on every request).
const INFO: &[(&str, &str)] = &[("AGENTD_LOG", "info")];

async fn tools_count(c: &reqwest::Client, d: &Agentd) -> usize {
    let v: Value = c
        .get(d.url("/api/v0/mcp/tools"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["tools"].as_array().map_or(0, Vec::len)
}

#[tokio::main]
async fn main() {
    // --- 1. call overhead ------------------------------------------------------------
    let mut cmd = tokio::process::Command::new(fake_mcp_server_bin());
    cmd.kill_on_drop(true);
    let direct = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let args = json!({"message": "hi"}).as_object().unwrap().clone();
    let mut base = Vec::with_capacity(N);
    for i in 0..N + 100 {
        let t = Instant::now();
        direct
            .call_tool(CallToolRequestParams::new("echo").with_arguments(args.clone()))
            .await
            .unwrap();
        if i >= 100 {
            base.push(ms(t.elapsed()));
        }
    }
    let _ = direct.cancel().await;

    let (d, _w) = start(json!({"fake": fake(&[])}), INFO);
    let c = reqwest::Client::new();
    let t0 = Instant::now();
    while tools_count(&c, &d).await == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body = json!({"tool_name": "fake__echo", "arguments": {"message": "hi"}});
    let mut via = Vec::with_capacity(N);
    for i in 0..N + 100 {
        let t = Instant::now();
        let r = c
            .post(d.url("/api/v0/mcp/call-tool"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        if i >= 100 {
            via.push(ms(t.elapsed()));
        }
    }
    let (b50, b99) = (percentile(&mut base, 50.0), percentile(&mut base, 99.0));
    let (v50, v99) = (percentile(&mut via, 50.0), percentile(&mut via, 99.0));
    println!("call-tool echo, {N} sequential calls (after 100 warm-up):");
    println!("  direct rmcp stdio client : p50 {b50:.3} ms  p99 {b99:.3} ms");
    println!("  via agentd HTTP          : p50 {v50:.3} ms  p99 {v99:.3} ms");
    println!(
        "  overhead                 : p50 +{:.3} ms ({:.2}x)  p99 +{:.3} ms ({:.2}x)",
        v50 - b50,
        v50 / b50,
        v99 - b99,
        v99 / b99
    );
    drop(d);

    // --- 2. time until /tools lists 10 servers ------------------------------------------
    let mut servers = serde_json::Map::new();
    for i in 0..10 {
        servers.insert(format!("s{i}"), fake(&[]));
    }
    let mut runs = Vec::new();
    let mut base_runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (d, _w) = start(Value::Object(servers.clone()), INFO);
        while tools_count(&c, &d).await < 90 {
            assert!(t.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        runs.push(ms(t.elapsed()));
        drop(d);

        let t = Instant::now();
        let conns = futures::future::join_all((0..10).map(|_| async {
            let mut cmd = tokio::process::Command::new(fake_mcp_server_bin());
            cmd.kill_on_drop(true);
            let s = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
            let n = s.list_all_tools().await.unwrap().len();
            (s, n)
        }))
        .await;
        assert_eq!(conns.iter().map(|c| c.1).sum::<usize>(), 90);
        base_runs.push(ms(t.elapsed()));
        for (s, _) in conns {
            let _ = s.cancel().await;
        }
    }
    let (r50, b50) = (
        percentile(&mut runs, 50.0),
        percentile(&mut base_runs, 50.0),
    );
    println!("time until 10 stdio servers' tools are listed (median of 5):");
    println!(
        "  agentd start -> /tools has 90 tools : {r50:.1} ms (p95 {:.1} ms)",
        percentile(&mut runs, 95.0)
    );
    println!("  direct: 10 rmcp clients in parallel  : {b50:.1} ms");
    println!("  ratio                                : {:.2}x", r50 / b50);

    // --- 3. memory per connected server --------------------------------------------------
    let empty = Agentd::start_with(Options {
        log_level: Some("info".into()),
        ..Options::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = rss_kib(empty.pid());
    drop(empty);
    let mut servers = serde_json::Map::new();
    for i in 0..20 {
        servers.insert(format!("s{i}"), fake(&[]));
    }
    let (d, _w) = start(Value::Object(servers), INFO);
    while tools_count(&c, &d).await < 180 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Exercise each connection once so its buffers exist.
    for i in 0..20 {
        let body = json!({"tool_name": format!("s{i}__echo"), "arguments": {"message": "hi"}});
        c.post(d.url("/api/v0/mcp/call-tool"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss20 = rss_kib(d.pid());
    println!("daemon memory (VmRSS):");
    println!("  no servers: {rss0} KiB; 20 connected servers: {rss20} KiB");
    println!(
        "  per connected server: {:.1} KiB",
        (rss20 as f64 - rss0 as f64) / 20.0
    );
}
