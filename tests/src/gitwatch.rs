//! Git-watch test helpers: real repositories made with the `git` CLI (fixed identity through
//! `GIT_AUTHOR_*`/`GIT_COMMITTER_*`, no global or system config), and a WebSocket client for
//! `GET /api/v0/git/watch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::Agentd;

/// Runs git in `dir` with a fixed identity and no user config; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git command in `dir` with the test identity and no global/system config.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    c
}

/// `git init -b main` plus one committed README; returns the canonical root.
pub fn init_repo(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README.md"), "hello\n").unwrap();
    git(dir, &["add", "README.md"]);
    git(dir, &["commit", "-q", "-m", "init"]);
    std::fs::canonicalize(dir).unwrap()
}

/// Adds the repository `src` as submodule `name` of `sup` (file protocol allowed, as a
/// local clone needs) and commits it. Returns the submodule's work tree.
pub fn add_submodule(sup: &Path, src: &Path, name: &str) -> PathBuf {
    git(
        sup,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &src.display().to_string(),
            name,
        ],
    );
    git(sup, &["commit", "-q", "-m", &format!("add {name}")]);
    sup.join(name)
}

/// Records paths for a chat through the additive route.
pub async fn add_paths(d: &Agentd, chat: &str, ancestors: &[&str], paths: &[&Path]) -> Value {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let (s, v) = d
        .post_json(
            "/api/v0/git/watch/paths",
            &json!({"chat_id": chat, "ancestor_chat_ids": ancestors, "paths": paths}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A git-watch WebSocket client.
pub struct Ws {
    pub stream: Stream,
}

impl Ws {
    /// Connects to `/api/v0/git/watch?chat_id=<chat>`.
    pub async fn connect(d: &Agentd, chat: &str) -> Ws {
        let url = format!("ws://{}/api/v0/git/watch?chat_id={chat}", d.addr);
        let (stream, res) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(res.status(), 101);
        Ws { stream }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, v: &Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends `{"type":"refresh"}`.
    pub async fn refresh(&mut self) {
        self.send(&json!({"type": "refresh"})).await;
    }

    /// The next JSON message, or `None` after `timeout`.
    pub async fn try_next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match m.unwrap() {
                Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
                Message::Close(_) => panic!("server closed the git watch"),
                _ => continue,
            }
        }
    }

    /// The next JSON message; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Value {
        self.try_next(timeout)
            .await
            .unwrap_or_else(|| panic!("no git watch message within {timeout:?}"))
    }

    /// Skips messages until one matches; panics after `timeout`.
    pub async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .try_next(left)
                .await
                .unwrap_or_else(|| panic!("no matching git watch message within {timeout:?}"));
            if pred(&m) {
                return m;
            }
        }
    }
}

/// `agentd_git_scans_total` from the daemon's metrics.
pub async fn scans_total(d: &Agentd) -> u64 {
    crate::metric(&d.metrics_text().await, "agentd_git_scans_total")
}

/// The entry for `root` in a `changes` message.
pub fn repo<'a>(msg: &'a Value, root: &Path) -> Option<&'a Value> {
    msg["repositories"]
        .as_array()?
        .iter()
        .find(|r| r["repo_root"] == root.display().to_string())
}

/// The unified diff for `root` in a message, if the repo is in it.
pub fn diff_of(msg: &Value, root: &Path) -> Option<String> {
    repo(msg, root).map(|r| r["unified_diff"].as_str().unwrap_or_default().to_owned())
}
