//! Events between subsystems, carried by `agentd` so library crates stay independent.
//!
//! A process started by a chat request publishes a [`ProcessExited`] when it exits; the git
//! watcher subscribes to learn which directories a chat touched. Publishing never blocks; a
//! slow subscriber loses old events (it has a fallback poll) rather than stalling anyone.

use std::path::PathBuf;

use tokio::sync::broadcast;
use uuid::Uuid;

/// A process started by a chat request has exited.
#[derive(Debug, Clone)]
pub struct ProcessExited {
    /// The chat that started it.
    pub chat_id: Uuid,
    /// The chat's ancestors (from `Coder-Ancestor-Chat-Ids`).
    pub ancestors: Vec<Uuid>,
    /// The resolved working directory, when the request named one (`None` means "just
    /// notify": Coder then only pokes the watcher without adding a path).
    pub workdir: Option<PathBuf>,
}

/// The event bus.
#[derive(Debug, Clone)]
pub struct Events {
    /// Process exits of chat requests.
    pub process_exited: broadcast::Sender<ProcessExited>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            process_exited: broadcast::channel(1024).0,
        }
    }
}
