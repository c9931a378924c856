//! Events between subsystems, carried by `agentd` so library crates stay independent.
//!
//! A process started by a chat request publishes a [`ProcessExited`] when it exits; the git
//! watcher subscribes to learn which directories a chat touched. Publishing never blocks and
//! never drops an event: each subscriber has an unbounded queue (a lost event would be a
//! repo never watched, which no poll recovers), and subscribers only record paths.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::sync::lock;

/// A process started by a chat request has exited.
#[derive(Debug, Clone)]
pub(crate) struct ProcessExited {
    /// The chat that started it.
    pub chat_id: Uuid,
    /// The chat's ancestors (from `Coder-Ancestor-Chat-Ids`).
    pub ancestors: Vec<Uuid>,
    /// The resolved working directory the process ran in, requested or default (`None`
    /// only when it had none at all: then the chat's watchers are just notified).
    pub workdir: Option<PathBuf>,
}

/// The event bus. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events {
    process_exited: Arc<Mutex<Vec<mpsc::UnboundedSender<ProcessExited>>>>,
}

impl Events {
    /// A queue of every process exit published from now on.
    pub(crate) fn subscribe_process_exited(&self) -> mpsc::UnboundedReceiver<ProcessExited> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers().push(tx);
        rx
    }

    /// Hands `ev` to every subscriber (forgetting those that are gone).
    pub(crate) fn publish_process_exited(&self, ev: &ProcessExited) {
        self.subscribers().retain(|tx| tx.send(ev.clone()).is_ok());
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<ProcessExited>>> {
        lock(&self.process_exited)
    }
}
