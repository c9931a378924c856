//! Git watch for agentd: repository discovery, snapshots (branch, origin, unified diff),
//! change detection, the per-chat path store and scan scheduling shared by all subscribers.
//!
//! Shape: a [`GitWatch`] owns a [`PathStore`] and one worker per watched repository. A
//! [`Subscription`] (one per client connection) follows a chat's paths, attaches to the
//! workers of the repos they resolve to, and yields [`Update`]s with Coder's delta semantics
//! (first update carries every repo, later ones only what changed, `removed` for vanished
//! repos, empty updates as heartbeats). However many subscriptions share a repo, it is scanned
//! once per trigger.
//!
//! It must not know HTTP or WebSocket (`agentd` streams the updates), must not read the
//! environment (configuration comes in [`Config`]), and must never write into a repository.

mod diffcap;
mod discover;
mod fsio;
mod hub;
mod pathstore;
mod scan;
mod sync;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use discover::{RepoLocation, discover};
pub use fsio::{FsError, blocking_fs};
pub use hub::{GitWatch, RepoChange, ScanObserver, Stats, Subscription, Update};
pub use pathstore::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_CHATS, DEFAULT_MAX_PATHS_PER_CHAT, PathLimits, PathStats,
    PathStore,
};
pub use scan::{Outcome, ScanError, Snapshot, read_meta, scan};

/// Default [`Config::max_repos`].
pub const DEFAULT_MAX_REPOS: usize = 64;
/// Default [`Config::fs_timeout`].
pub const DEFAULT_FS_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration, passed in by the daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `git` binary.
    pub git: PathBuf,
    /// Base environment of git processes (`GIT_*` variables are dropped from it).
    pub env: Vec<(OsString, OsString)>,
    /// Where throwaway index files for untracked diffs go.
    pub tmp_dir: PathBuf,
    /// A scan taking longer is killed and logged (the repo stays watched).
    pub scan_timeout: Duration,
    /// At most one scan start per repo per this interval (Coder's `scanCooldown`).
    pub cooldown: Duration,
    /// The fallback poll while things change (Coder's 5 s).
    pub poll_min: Duration,
    /// The fallback poll backs off (doubling) up to this while nothing changes.
    pub poll_max: Duration,
    /// A file whose patch is larger becomes Coder's "File diff too large" stub.
    pub max_file_diff: usize,
    /// A diff whose total is larger becomes Coder's "Total diff too large" placeholder.
    pub max_total_diff: usize,
    /// Tracked-change pathspecs longer than this diff the whole tree instead.
    pub max_pathspec_bytes: usize,
    /// Touched-path watches per repository (beyond it, the poll covers them).
    pub max_path_watches: usize,
    /// Bounds of the per-chat path store.
    pub path_limits: PathLimits,
    /// Repositories one subscription follows (one `changes` message names at most these);
    /// beyond it the least recently touched repos are dropped.
    pub max_repos: usize,
    /// Longest file-system call on a client-chosen path (discovery, `is_gone`, stats).
    pub fs_timeout: Duration,
    /// Told the duration of every completed scan (the daemon keeps the histogram; this
    /// crate knows no metrics format). Does nothing by default.
    pub scan_observer: ScanObserver,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            git: PathBuf::from("git"),
            env: Vec::new(),
            tmp_dir: PathBuf::from("/tmp"),
            scan_timeout: Duration::from_secs(30),
            cooldown: Duration::from_secs(1),
            poll_min: Duration::from_secs(5),
            poll_max: Duration::from_secs(60),
            max_file_diff: 256 * 1024,
            max_total_diff: 3 * 1024 * 1024,
            max_pathspec_bytes: 64 * 1024,
            max_path_watches: 64,
            path_limits: PathLimits::default(),
            max_repos: DEFAULT_MAX_REPOS,
            fs_timeout: DEFAULT_FS_TIMEOUT,
            scan_observer: ScanObserver::default(),
        }
    }
}
