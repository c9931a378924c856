//! Test support: an in-memory MCP server (newline-delimited JSON-RPC over a duplex pipe)
//! and a scripted [`Connector`] that records when each connection was attempted, so the
//! supervisor's and the manager's schedules are tested on paused time. Must not be used
//! outside tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::server::{ConnectError, Connector, connect_in_memory};

/// Answers `initialize`, `tools/list` (one tool, `echo`) and `tools/call` (`hi`) until `stop`
/// is cancelled or the client goes; then drops its end (the client sees the transport close).
pub(crate) async fn serve(io: DuplexStream, stop: CancellationToken) {
    let (r, mut w) = tokio::io::split(io);
    let mut lines = BufReader::new(r).lines();
    loop {
        let line = tokio::select! {
            _ = stop.cancelled() => return,
            l = lines.next_line() => l,
        };
        let Ok(Some(line)) = line else { return };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let result = match msg["method"].as_str() {
            Some("initialize") => json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake", "version": "1"},
            }),
            Some("tools/list") => json!({
                "tools": [{"name": "echo", "inputSchema": {"type": "object"}}],
            }),
            Some("tools/call") => json!({
                "content": [{"type": "text", "text": "hi"}],
                "isError": false,
            }),
            _ => json!({}),
        };
        let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if w.write_all(format!("{out}\n").as_bytes()).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
}

/// What the scripted connector did and will do.
pub(crate) struct Script {
    t0: Instant,
    /// Connection attempts: the server's `command` and ms since the script was made.
    attempts: Mutex<Vec<(String, u128)>>,
    /// Attempts still to fail, per `command` (absent: succeed).
    failures: Mutex<HashMap<String, usize>>,
    /// One token per live in-memory server, in connection order (cancel: the server goes).
    servers: Mutex<Vec<CancellationToken>>,
}

impl Script {
    /// Attempts of servers with command `c` fail `n` times first, for each `(c, n)`.
    pub(crate) fn new(failures: &[(&str, usize)]) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            attempts: Mutex::default(),
            failures: Mutex::new(
                failures
                    .iter()
                    .map(|(c, n)| ((*c).to_owned(), *n))
                    .collect(),
            ),
            servers: Mutex::default(),
        })
    }

    /// The attempts so far.
    pub(crate) fn attempts(&self) -> Vec<(String, u128)> {
        self.attempts.lock().unwrap().clone()
    }

    /// Ms since the script was made.
    pub(crate) fn now(&self) -> u128 {
        self.t0.elapsed().as_millis()
    }

    /// Sleeps until `ms` after the script was made.
    pub(crate) async fn at(&self, ms: u64) {
        tokio::time::sleep_until(self.t0 + std::time::Duration::from_millis(ms)).await;
    }

    /// The token of the `i`-th server that connected.
    pub(crate) fn server(&self, i: usize) -> CancellationToken {
        self.servers.lock().unwrap()[i].clone()
    }

    /// The connector following this script (failures: `initialize failed: nope`).
    pub(crate) fn connector(self: &Arc<Self>) -> Connector {
        let script = self.clone();
        Arc::new(move |srv, opts, tasks| {
            let script = script.clone();
            Box::pin(async move {
                let cmd = srv.spec.command.clone();
                script
                    .attempts
                    .lock()
                    .unwrap()
                    .push((cmd.clone(), script.now()));
                if let Some(n) = script.failures.lock().unwrap().get_mut(&cmd)
                    && *n > 0
                {
                    *n -= 1;
                    return Err(ConnectError::Scripted("nope"));
                }
                let stop = CancellationToken::new();
                script.servers.lock().unwrap().push(stop.clone());
                connect_in_memory(&srv, &opts, &tasks, stop).await
            })
        })
    }
}
