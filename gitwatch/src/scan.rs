//! One scan of one repository: metadata (branch, origin, HEAD) in-process with `git2`, the
//! change fingerprint from one `git status`, and — only when the fingerprint moved — the
//! unified diff from the `git` CLI (tracked changes restricted to the paths status named,
//! untracked files as new-file patches through a throwaway index, in one batch).
//!
//! Why this split (measured, see `tests/benches/gitwatch.rs`): on
//! 2 cores `git status` walks 100k files ~1.7× faster than libgit2, and only the CLI gives
//! byte-identical `git diff` text; opening the repo with `git2` for HEAD/branch/origin costs
//! well under a millisecond against ~2 ms per forked `git`.
//!
//! Every git process: `--no-optional-locks` and `GIT_OPTIONAL_LOCKS=0` (we never write
//! `.git/index`), `--no-ext-diff --no-textconv` (no repo-configured programs), `LC_ALL=C`,
//! [`SAFE_CONFIG`] (no fsmonitor hook, hooks, external diff or untracked-cache writes) and
//! every filter driver the repo's config names neutralised (empty `clean`/`smudge`/`process`,
//! `required=false`) — the repo's and its submodules' (status recurses into submodule
//! worktrees, as Coder's diff shows `-dirty`): a repo must never run a program through our
//! scan. The overrides reach git processes git itself starts for submodules
//! (`GIT_CONFIG_PARAMETERS`).
//! a scrubbed `GIT_*` environment, killed when the scan is dropped (timeout, supersession,
//! shutdown). This module must not schedule scans or know subscribers.

use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Config;
use crate::diffcap::DiffCap;

/// A repository's state as pushed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Short branch name; empty when detached or unknown.
    pub branch: String,
    /// First URL of remote `origin`; empty when none.
    pub remote_origin: String,
    /// The whole working tree against HEAD (or a Coder placeholder when over the caps).
    pub unified_diff: String,
}

/// Why a scan failed (the repo stays watched).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// `git` could not be started.
    #[error("cannot run {git}: {source}")]
    Spawn {
        /// The binary.
        git: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `git` exited with a failure.
    #[error("git {args} exited with {code}: {stderr}")]
    Git {
        /// The sub-command line.
        args: String,
        /// The exit code (-1 for a signal).
        code: i32,
        /// Its stderr (trimmed, bounded).
        stderr: String,
    },
    /// Reading or writing a pipe or a temp file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Stating the listed paths did not finish (a hung mount).
    #[error("i/o: {0}")]
    Fs(#[from] crate::fsio::FsError),
    /// The repository could not be opened.
    #[error("open repository: {}", .0.message())]
    Open(#[source] git2::Error),
    /// `HEAD` could not be read.
    #[error("open repository: HEAD: {}", .0.message())]
    Head(#[source] git2::Error),
    /// The blocking task that reads the repository's metadata failed (panicked or was
    /// cancelled).
    #[error("open repository: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Result of a scan.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing changed since the fingerprint passed in.
    Unchanged,
    /// A fresh snapshot and its fingerprint.
    Changed(Snapshot, u64),
}

struct Meta {
    branch: String,
    origin: String,
    head: Option<String>,
    /// The index file (in the git dir: a linked worktree has its own).
    index: PathBuf,
    /// `-c` overrides neutralising every filter driver the repo's config names.
    filter_overrides: Vec<OsString>,
}

/// Config overrides on every git we run: no `core.fsmonitor` hook, no hooks, no external
/// diff, no untracked-cache writes.
const SAFE_CONFIG: [&str; 8] = [
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "diff.external=",
    "-c",
    "core.untrackedCache=false",
];

/// `-c filter.<x>.{clean,smudge,process}= -c filter.<x>.required=false` for every driver
/// `<x>` the repo's (merged) config, or one of its submodules' configs, names: an empty
/// command means "no filter" to git.
fn filter_overrides(repo: &git2::Repository, cfg: &git2::Config) -> Vec<OsString> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    filter_names(cfg, &mut names);
    let mut budget = MAX_SUBMODULES;
    submodule_filter_names(repo, SUBMODULE_DEPTH, &mut budget, &mut names);
    overrides(names)
}

/// Submodules whose config is read for filter drivers, in all (beyond, their filters are
/// not neutralised: a workspace with more is its owner's choice, not a client's).
const MAX_SUBMODULES: usize = 256;
/// Nesting depth of submodules read for filter drivers.
const SUBMODULE_DEPTH: usize = 4;

/// `git status` recurses into submodule worktrees (Coder's diff shows `-dirty`), and the
/// submodule's own config could name a filter driver that a stat-dirty file would run:
/// collect those names too (our `-c` overrides reach the submodule's git through
/// `GIT_CONFIG_PARAMETERS`).
fn submodule_filter_names(
    repo: &git2::Repository,
    depth: usize,
    budget: &mut usize,
    names: &mut Vec<Vec<u8>>,
) {
    let Ok(subs) = repo.submodules() else { return };
    for sm in subs {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(sub) = sm.open() else { continue };
        if let Ok(cfg) = sub.config() {
            filter_names(&cfg, names);
        }
        if depth > 1 {
            submodule_filter_names(&sub, depth - 1, budget, names);
        }
    }
}

/// The driver names `<x>` of every `filter.<x>.*` key in `cfg`, added to `names` once.
fn filter_names(cfg: &git2::Config, names: &mut Vec<Vec<u8>>) {
    if let Ok(mut entries) = cfg.entries(Some(r"^filter\..*\.")) {
        while let Some(Ok(e)) = entries.next() {
            let n = e.name_bytes();
            let Some(rest) = n.strip_prefix(b"filter.") else {
                continue;
            };
            let Some(dot) = rest.iter().rposition(|&b| b == b'.') else {
                continue;
            };
            let name = rest[..dot].to_vec();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
}

fn overrides(names: Vec<Vec<u8>>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(names.len() * 8);
    for n in names {
        for (key, val) in [
            ("clean", ""),
            ("smudge", ""),
            ("process", ""),
            ("required", "false"),
        ] {
            let mut kv = b"filter.".to_vec();
            kv.extend_from_slice(&n);
            kv.extend_from_slice(format!(".{key}={val}").as_bytes());
            out.push(OsString::from("-c"));
            out.push(OsStr::from_bytes(&kv).to_os_string());
        }
    }
    out
}

/// Branch, origin URL and HEAD commit, read in-process (what a scan uses; public for the
/// benchmark that compares it with three forked `git` calls).
pub fn read_meta(root: &Path) -> Result<(String, String, Option<String>), ScanError> {
    meta(root).map(|m| (m.branch, m.origin, m.head))
}

fn meta(root: &Path) -> Result<Meta, ScanError> {
    let repo = git2::Repository::open_ext(
        root,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
    .map_err(ScanError::Open)?;
    let head_ref = repo.find_reference("HEAD").map_err(ScanError::Head)?;
    let branch = head_ref
        .symbolic_target_bytes()
        .and_then(|t| t.strip_prefix(b"refs/heads/"))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let head = match repo.refname_to_id("HEAD") {
        Ok(oid) => Some(oid.to_string()),
        Err(e)
            if e.code() == git2::ErrorCode::UnbornBranch
                || e.code() == git2::ErrorCode::NotFound =>
        {
            None
        }
        Err(e) => return Err(ScanError::Head(e)),
    };
    let config = repo.config().ok();
    let origin = config
        .as_ref()
        .and_then(|c| c.get_string("remote.origin.url").ok())
        .unwrap_or_default();
    let filter_overrides = config
        .as_ref()
        .map(|c| filter_overrides(&repo, c))
        .unwrap_or_default();
    Ok(Meta {
        branch,
        origin,
        head,
        index: repo.path().join("index"),
        filter_overrides,
    })
}

/// Runs `git` in `root` and collects stdout (bounded by the caller's expectations).
async fn git_output(
    cfg: &Config,
    root: &Path,
    safe: &[OsString],
    args: &[impl AsRef<OsStr>],
    env: &[(&str, &OsStr)],
    stdin: Option<Vec<u8>>,
) -> Result<Vec<u8>, ScanError> {
    let mut out = Vec::new();
    git_stream(cfg, root, safe, args, env, stdin, |b| {
        out.extend_from_slice(b)
    })
    .await?;
    Ok(out)
}

/// Runs `git` in `root`, feeding stdout to `sink` as it arrives.
async fn git_stream(
    cfg: &Config,
    root: &Path,
    safe: &[OsString],
    args: &[impl AsRef<OsStr>],
    env: &[(&str, &OsStr)],
    stdin: Option<Vec<u8>>,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ScanError> {
    let mut cmd = tokio::process::Command::new(&cfg.git);
    cmd.env_clear();
    for (k, v) in &cfg.env {
        if !k.as_bytes().starts_with(b"GIT_") && k != "LC_ALL" && k != "LANGUAGE" {
            cmd.env(k, v);
        }
    }
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("--no-optional-locks")
        .args(SAFE_CONFIG)
        .args(safe)
        .arg("-C")
        .arg(root)
        .args(args)
        .current_dir(root)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ScanError::Spawn {
        git: cfg.git.display().to_string(),
        source,
    })?;
    let feed = {
        let pipe = child.stdin.take();
        async move {
            if let (Some(mut pipe), Some(data)) = (pipe, stdin) {
                // A git that exits early closes the pipe; its exit status tells the story.
                let _ = pipe.write_all(&data).await;
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(s) = stdout.as_mut() {
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                sink(&buf[..n]);
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let read_err = async {
        let mut e = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(16 * 1024).read_to_end(&mut e).await;
        }
        e
    };
    let ((), out_res, err) = tokio::join!(feed, read_out, read_err);
    out_res?;
    let status = child.wait().await?;
    if !status.success() {
        return Err(ScanError::Git {
            args: args
                .iter()
                .take(4)
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            code: status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&err).trim().to_owned(),
        });
    }
    Ok(())
}

/// The entries of `git status --porcelain=v1 -z --no-renames`.
struct Status {
    tracked: Vec<Vec<u8>>,
    untracked: Vec<Vec<u8>>,
}

fn parse_status(raw: &[u8]) -> Status {
    let mut s = Status {
        tracked: Vec::new(),
        untracked: Vec::new(),
    };
    for e in raw.split(|&b| b == 0) {
        if e.len() < 4 {
            continue;
        }
        let (xy, path) = (&e[..2], &e[3..]);
        match xy {
            b"??" => {
                // A nested repository shows as `dir/`: it is its own repo (nearest wins).
                if !path.ends_with(b"/") {
                    s.untracked.push(path.to_vec());
                }
            }
            b"!!" => {}
            _ => s.tracked.push(path.to_vec()),
        }
    }
    s
}

/// `git diff` without repo-configured programs or colour.
const DIFF: [&str; 4] = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"];

/// The empty tree's id in a SHA-1 repository.
const EMPTY_TREE_SHA1: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes the throwaway index (and its lock) however the scan ends.
struct TempIndex(PathBuf);

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut lock = self.0.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}

/// Scans `root`. With `prev` equal to the new fingerprint, returns [`Outcome::Unchanged`]
/// without generating a diff.
pub async fn scan(cfg: &Config, root: &Path, prev: Option<u64>) -> Result<Outcome, ScanError> {
    let r = root.to_path_buf();
    let meta = tokio::task::spawn_blocking(move || meta(&r))
        .await
        .map_err(ScanError::Task)??;
    let safe = meta.filter_overrides.as_slice();
    let status_raw = git_output(
        cfg,
        root,
        safe,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
        ],
        &[],
        None,
    )
    .await?;
    // The fingerprint stats every listed path: on the blocking pool, bounded.
    let (status, fp, meta) = {
        let r = root.to_path_buf();
        crate::fsio::blocking_fs(cfg.fs_timeout, move || {
            let status = parse_status(&status_raw);
            let fp = fingerprint(&r, &meta, &status_raw, &status);
            (status, fp, meta)
        })
        .await
        .map_err(ScanError::Fs)?
    };
    let safe = meta.filter_overrides.as_slice();
    if prev == Some(fp) {
        return Ok(Outcome::Unchanged);
    }

    let mut cap = DiffCap::new(cfg.max_file_diff, cfg.max_total_diff);
    if !status.tracked.is_empty() {
        // Unborn HEAD: diff against the empty tree. Its id is a constant; `meta` (libgit2)
        // refuses SHA-256 repositories, so every repo that gets here uses SHA-1.
        let base = meta.head.as_deref().unwrap_or(EMPTY_TREE_SHA1);
        let mut args: Vec<&OsStr> = vec![OsStr::new("--literal-pathspecs")];
        args.extend(DIFF.iter().map(OsStr::new));
        args.extend([OsStr::new(base), OsStr::new("--")]);
        let bytes: usize = status.tracked.iter().map(|p| p.len() + 1).sum();
        if bytes <= cfg.max_pathspec_bytes {
            args.extend(status.tracked.iter().map(|p| OsStr::from_bytes(p)));
        }
        git_stream(cfg, root, safe, &args, &[], None, |b| cap.push(b)).await?;
    }
    if !status.untracked.is_empty() {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let index = TempIndex(
            cfg.tmp_dir
                .join(format!("agentd-gitwatch-{}-{n}.index", std::process::id())),
        );
        let idx: OsString = index.0.clone().into_os_string();
        let env = [
            ("GIT_INDEX_FILE", idx.as_os_str()),
            ("GIT_LITERAL_PATHSPECS", OsStr::new("1")),
        ];
        let mut list = Vec::with_capacity(status.untracked.iter().map(|p| p.len() + 1).sum());
        for p in &status.untracked {
            list.extend_from_slice(p);
            list.push(0);
        }
        git_output(
            cfg,
            root,
            safe,
            &[
                "add",
                "--intent-to-add",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ],
            &env,
            Some(list),
        )
        .await?;
        git_stream(cfg, root, safe, &DIFF, &env, None, |b| cap.push(b)).await?;
        drop(index);
    }
    Ok(Outcome::Changed(
        Snapshot {
            branch: meta.branch,
            remote_origin: meta.origin,
            unified_diff: cap.finish(),
        },
        fp,
    ))
}

/// The cheap change check: HEAD, branch, origin, the status listing, the index file's stat
/// and the stat of every path status named (a second edit of an already-modified file keeps
/// the listing but moves its stat).
fn fingerprint(root: &Path, meta: &Meta, raw: &[u8], st: &Status) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.branch.hash(&mut h);
    meta.origin.hash(&mut h);
    meta.head.hash(&mut h);
    raw.hash(&mut h);
    let stat = |p: &Path, h: &mut std::collections::hash_map::DefaultHasher| {
        match std::fs::symlink_metadata(p) {
            Ok(m) => (
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
                m.mode(),
            )
                .hash(h),
            Err(_) => 0u8.hash(h),
        }
    };
    stat(&meta.index, &mut h);
    for p in st.tracked.iter().chain(st.untracked.iter()) {
        stat(&root.join(OsStr::from_bytes(p)), &mut h);
    }
    h.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_splits_tracked_untracked_and_skips_nested_repos() {
        let s = parse_status(b" M a.txt\0A  new\nline\0?? u v\0?? nested/\0!! ign\0");
        assert_eq!(s.tracked, vec![b"a.txt".to_vec(), b"new\nline".to_vec()]);
        assert_eq!(s.untracked, vec![b"u v".to_vec()]);
    }
}
