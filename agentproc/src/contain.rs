//! Containment of every started process tree, so that signals and shutdown reach all of a
//! command's descendants — also those that left its process group (`setsid`, a job-control
//! double fork) or were reparented away from its shell.
//!
//! Two modes, chosen once at start ([`Containment::new`]):
//! - **cgroup**: each process gets a cgroup v2 leaf under `<own cgroup>/agentd.<pid>.<n>/`, and
//!   its shell is born in it (`clone3` with `CLONE_INTO_CGROUP`: a migration after the fact
//!   costs an RCU grace period, milliseconds). Nothing in a leaf can leave it without write
//!   access to cgroup files; `cgroup.kill` (or freeze + signal every member + thaw) reaches
//!   the whole tree. The leaf is removed once its tree has ended. No controller is enabled:
//!   leaves without controllers never hit the "no internal processes" rule.
//! - **subreaper**: where no writable cgroup v2 is delegated, the daemon becomes a child
//!   subreaper, so orphans of a tree are reparented to it instead of init. A tree is its
//!   shell's descendants, its process group, and the orphans adopted by the daemon that
//!   carry the tree's marker variable ([`MARKER_VAR`]) in their environment, with their own
//!   descendants. Adopted orphans are reaped by pid (never `waitpid(-1)`, which would steal
//!   the statuses other parts of the daemon wait for).
//!
//! This module must not know HTTP, the supervisor's records or the environment of the
//! daemon; it never runs code in a child (that is `spawn.rs`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::group::GroupSignal;
use crate::sync::lock;

/// The environment variable that marks a process tree's members in subreaper mode.
pub(crate) const MARKER_VAR: &str = "AGENTD_PROCESS_TREE";

/// Which containment to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainRequest {
    /// cgroup where the daemon can create one, else subreaper.
    #[default]
    Auto,
    /// cgroup or fail.
    Cgroup,
    /// Subreaper even where a cgroup would work (tests, comparisons).
    Subreaper,
}

/// The containment in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainMode {
    /// A cgroup v2 leaf per process.
    Cgroup,
    /// The daemon is a child subreaper and tracks adopted orphans.
    Subreaper,
}

impl ContainMode {
    /// `"cgroup"` or `"subreaper"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cgroup => "cgroup",
            Self::Subreaper => "subreaper",
        }
    }
}

/// Why the requested containment is not available.
#[derive(Debug, thiserror::Error)]
#[error("cgroup containment is not available: {0}")]
pub struct ContainError(#[source] pub CgroupUnavailable);

/// Why the daemon cannot contain process trees in cgroup v2 leaves. The texts are those of
/// the startup log line and `agentd doctor`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupUnavailable {
    /// A `/proc/self` file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// `/proc/self/cgroup` or `/proc/self/mountinfo`.
        path: &'static str,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// `/proc/self/cgroup` has no `0::` line.
    #[error("no cgroup v2 hierarchy in /proc/self/cgroup")]
    NoHierarchy,
    /// `/proc/self/mountinfo` has no cgroup2 mount of the hierarchy's root.
    #[error("no cgroup2 file system is mounted")]
    NoMount,
    /// The daemon's directory or the probe leaf could not be created (not writable).
    #[error("creating {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The `mkdir` error.
        #[source]
        source: io::Error,
    },
    /// A process could not be started in the probe leaf (`clone3` into a cgroup).
    #[error("starting a process in {}: {source}", path.display())]
    Start {
        /// The probe leaf.
        path: PathBuf,
        /// The open or `clone3` error.
        #[source]
        source: io::Error,
    },
}

/// Why subreaper mode is in effect, for the startup log lines.
#[derive(Debug, Default)]
pub(crate) struct Fallback {
    /// Why cgroup mode was not taken; `None` where subreaper mode was asked for.
    pub(crate) cgroup: Option<ContainError>,
    /// cgroup mode was asked for ([`ContainRequest::Cgroup`]) and is not available.
    pub(crate) refused: bool,
    /// `PR_SET_CHILD_SUBREAPER` failed too.
    pub(crate) subreaper: Option<nix::errno::Errno>,
}

impl Fallback {
    /// The error to log where cgroup mode was asked for and is not available.
    pub(crate) fn refused(&self) -> Option<&ContainError> {
        self.cgroup.as_ref().filter(|_| self.refused)
    }

    /// The `reason` of the startup line; `None` where nothing failed (subreaper asked for).
    pub(crate) fn reason(&self) -> Option<String> {
        if self.cgroup.is_none() && self.subreaper.is_none() {
            return None;
        }
        let mut s = self
            .cgroup
            .as_ref()
            .map(|e| e.0.to_string())
            .unwrap_or_default();
        if let Some(e) = self.subreaper {
            s.push_str(&format!("; PR_SET_CHILD_SUBREAPER failed too: {e}"));
        }
        Some(s)
    }
}

/// What `serve` would get for `req`, without keeping anything: for cgroup mode the probe
/// creates its directory, starts a process in a leaf and removes both again (`agentd
/// doctor`). `Err` carries why cgroup mode is not available.
pub fn probe_containment(req: ContainRequest) -> Result<ContainMode, ContainError> {
    if req == ContainRequest::Subreaper {
        return Ok(ContainMode::Subreaper);
    }
    match CgroupRoot::create() {
        Ok(root) => {
            let _ = fs::remove_dir(&root.dir);
            Ok(ContainMode::Cgroup)
        }
        Err(e) => Err(ContainError(e)),
    }
}

/// The containment of one supervisor.
pub(crate) struct Containment {
    pub(crate) mode: ContainMode,
    /// Why cgroup mode was not taken, for the startup log lines.
    pub(crate) fallback: Fallback,
    cgroup: Option<CgroupRoot>,
    reaper: Option<Arc<Adopted>>,
    /// Unique to this daemon: prefix of every marker value.
    nonce: String,
}

struct CgroupRoot {
    /// `<cgroup2 mount><own cgroup>/agentd.<pid>.<n>`.
    dir: PathBuf,
    /// `cgroup.kill` exists (Linux ≥ 5.14); else freeze + kill every member.
    has_kill: bool,
    next: AtomicU64,
    /// Which leaves hold a tree, which are spare, which were killed. Signals to a leaf are
    /// sent under this lock, so a signal for an ended tree never reaches the next tree
    /// that reuses its leaf.
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    /// Leaves handed out and not yet released.
    live: HashSet<PathBuf>,
    /// Empty leaves kept for the next starts (at most [`SPARE_LEAVES`]).
    spare: Vec<PathBuf>,
    /// Live leaves that got a `cgroup.kill`: removed when their tree ends, never reused
    /// (Linux 6.x keeps a per-cgroup kill sequence, and a clone3 into a cgroup that was
    /// ever killed is killed at birth).
    killed: HashSet<PathBuf>,
}

/// Empty leaves kept for reuse; the rest are removed when their tree ends.
const SPARE_LEAVES: usize = 16;

impl CgroupRoot {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        lock(&self.pool)
    }

    /// Signals one leaf if it still holds the tree it was handed out for.
    fn signal_leaf(&self, pool: &mut Pool, leaf: &Path, sig: GroupSignal) -> io::Result<()> {
        if !pool.live.contains(leaf) {
            return Ok(());
        }
        if sig == GroupSignal::Kill && self.has_kill {
            pool.killed.insert(leaf.to_owned());
        }
        cgroup_signal(leaf, self.has_kill, sig)
    }
}

/// A cgroup leaf made for one start; the descriptor is only needed until the child exists.
pub(crate) struct Leaf {
    pub(crate) path: PathBuf,
    pub(crate) fd: OwnedFd,
}

impl Containment {
    /// Sets up the requested containment. `Auto` falls back to subreaper mode (saying why).
    pub(crate) fn new(req: ContainRequest) -> Result<Self, ContainError> {
        let nonce = format!(
            "{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let mut fallback = Fallback::default();
        if req != ContainRequest::Subreaper {
            match CgroupRoot::create() {
                Ok(root) => {
                    return Ok(Self {
                        mode: ContainMode::Cgroup,
                        fallback: Fallback::default(),
                        cgroup: Some(root),
                        reaper: None,
                        nonce,
                    });
                }
                Err(e) if req == ContainRequest::Cgroup => return Err(ContainError(e)),
                Err(e) => fallback.cgroup = Some(ContainError(e)),
            }
        }
        Ok(Self::subreaper(nonce, fallback))
    }

    /// Subreaper mode (it cannot fail: without `PR_SET_CHILD_SUBREAPER`, orphans still go
    /// to init, and the tree walk still finds those that stayed under the shell).
    fn subreaper(nonce: String, mut fallback: Fallback) -> Self {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            fallback.subreaper = Some(e);
        }
        Self {
            mode: ContainMode::Subreaper,
            fallback,
            cgroup: None,
            reaper: Some(Arc::new(Adopted::default())),
            nonce,
        }
    }

    /// [`Containment::new`], falling back to subreaper mode with the error as the reason
    /// ([`Fallback::refused`] then holds it).
    pub(crate) fn new_or_subreaper(req: ContainRequest) -> Self {
        match Self::new(req) {
            Ok(c) => c,
            Err(e) => {
                let nonce = format!("{}.fallback", std::process::id());
                let fallback = Fallback {
                    cgroup: Some(e),
                    refused: true,
                    subreaper: None,
                };
                Self::subreaper(nonce, fallback)
            }
        }
    }

    /// A new leaf for one start (cgroup mode).
    pub(crate) fn leaf(&self) -> io::Result<Option<Leaf>> {
        let Some(root) = &self.cgroup else {
            return Ok(None);
        };
        // An empty leaf of an ended tree is taken again: mkdir and rmdir of a cgroup cost
        // about 40 µs together, on the start's critical path.
        let mut pool = root.pool();
        while let Some(path) = pool.spare.pop() {
            match open_dir(&path) {
                Ok(fd) if !populated(&path) => {
                    pool.live.insert(path.clone());
                    return Ok(Some(Leaf { path, fd }));
                }
                _ => {
                    let _ = fs::remove_dir(&path);
                }
            }
        }
        let n = root.next.fetch_add(1, Ordering::Relaxed);
        let path = root.dir.join(format!("p{n}"));
        fs::create_dir(&path)?;
        match open_dir(&path) {
            Ok(fd) => {
                pool.live.insert(path.clone());
                Ok(Some(Leaf { path, fd }))
            }
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// The marker variable's value for process `id` (subreaper mode), `None` in cgroup mode.
    pub(crate) fn marker(&self, id: &str) -> Option<String> {
        (self.mode == ContainMode::Subreaper).then(|| format!("{}:{id}", self.nonce))
    }

    /// Signals every member of a tree. `leaf`: its cgroup (cgroup mode); `pgid`: the shell's
    /// pid; `id`: the process id (for the marker).
    pub(crate) fn signal_tree(
        &self,
        leaf: Option<&Path>,
        pgid: u32,
        id: &str,
        sig: GroupSignal,
    ) -> io::Result<()> {
        let group = crate::group::signal_group(pgid, sig);
        if let (Some(root), Some(leaf)) = (&self.cgroup, leaf) {
            root.signal_leaf(&mut root.pool(), leaf, sig)?;
            return group;
        }
        let marker = self.marker(id);
        let table = ProcTable::scan();
        let pids = table.tree(&[pgid], marker.as_deref(), None);
        self.record(&table, &pids);
        for pid in pids {
            kill(pid, sig);
        }
        group
    }

    /// Live members of a tree (empty once it has ended).
    pub(crate) fn tree_members(&self, leaf: Option<&Path>, pgid: u32, id: &str) -> Vec<u32> {
        if let Some(leaf) = leaf.filter(|_| self.cgroup.is_some()) {
            return read_pids(leaf).unwrap_or_default();
        }
        // The scan reads every process's stat; the usual answer (nothing left) is cheaper.
        if !self.tree_alive(leaf, pgid, id) {
            return Vec::new();
        }
        let marker = self.marker(id);
        let table = ProcTable::scan();
        let pids = table.tree(&[pgid], marker.as_deref(), None);
        self.record(&table, &pids);
        pids
    }

    /// Subreaper mode: remembers tree members, so that once they are orphaned zombies of
    /// the daemon they are known to be its to reap.
    fn record(&self, table: &ProcTable, pids: &[u32]) {
        if let Some(a) = &self.reaper {
            let mut known = lock(&a.known);
            for p in pids {
                if let Some(st) = table.procs.get(p) {
                    known.insert(*p, st.start);
                }
            }
        }
    }

    /// Whether a tree has a live member. In subreaper mode, without a `/proc` scan: once a
    /// shell is gone, each live descendant is in its group or below a live child of the
    /// daemon (the nearest subreaper), which then carries the tree's marker. The kernel
    /// hands an orphan to the subreaper's first live thread, the main one (which lives as
    /// long as the daemon), so only its children need a look.
    pub(crate) fn tree_alive(&self, leaf: Option<&Path>, pgid: u32, id: &str) -> bool {
        if let Some(leaf) = leaf.filter(|_| self.cgroup.is_some()) {
            return populated(leaf);
        }
        if crate::group::group_alive(pgid) {
            return true;
        }
        let Some(marker) = self.marker(id) else {
            return false;
        };
        let me = std::process::id();
        adopted_children(me).into_iter().any(|pid| {
            pid != pgid
                && Stat::read(pid).is_some_and(|st| st.ppid == me && !st.zombie())
                && marker_of(pid).is_some_and(|m| m == marker)
        })
    }

    /// Signals everything this daemon started that may still live: every leaf (cgroup mode),
    /// or every tree of `pgids` and every orphan the daemon adopted from its trees.
    pub(crate) fn signal_all(&self, pgids: &[u32], sig: GroupSignal) -> usize {
        for g in pgids {
            let _ = crate::group::signal_group(*g, sig);
        }
        if let Some(root) = &self.cgroup {
            // Every populated leaf, also one whose release failed (it is not `live` then).
            let mut pool = root.pool();
            let mut n = 0;
            if let Ok(dir) = fs::read_dir(&root.dir) {
                for e in dir.filter_map(Result::ok) {
                    let p = e.path();
                    if p.is_dir() && populated(&p) {
                        n += 1;
                        if sig == GroupSignal::Kill && root.has_kill {
                            pool.killed.insert(p.clone());
                        }
                        let _ = cgroup_signal(&p, root.has_kill, sig);
                    }
                }
            }
            return n;
        }
        let table = ProcTable::scan();
        let prefix = format!("{}:", self.nonce);
        let pids = table.tree(pgids, Some(&prefix), self.reaper.as_deref());
        self.record(&table, &pids);
        for pid in &pids {
            kill(*pid, sig);
        }
        pids.len()
    }

    /// Whether anything [`Containment::signal_all`] would reach is alive.
    pub(crate) fn anything_alive(&self, pgids: &[u32]) -> bool {
        if let Some(root) = &self.cgroup {
            return populated(&root.dir);
        }
        let prefix = format!("{}:", self.nonce);
        !ProcTable::scan()
            .tree(pgids, Some(&prefix), self.reaper.as_deref())
            .is_empty()
    }

    /// An ended tree's leaf: kept empty for the next start (up to [`SPARE_LEAVES`]), else removed.
    pub(crate) fn release_leaf(&self, leaf: &Path) {
        if let Some(root) = &self.cgroup {
            let mut pool = root.pool();
            pool.live.remove(leaf);
            if !pool.killed.remove(leaf) && pool.spare.len() < SPARE_LEAVES && !populated(leaf) {
                pool.spare.push(leaf.to_owned());
                return;
            }
        }
        if let Err(e) = fs::remove_dir(leaf) {
            tracing::debug!(cgroup = %leaf.display(), error = %e, "could not remove a cgroup leaf");
        }
    }

    /// Removes the daemon's cgroup directory (at exit; fails while a leaf remains).
    pub(crate) fn remove_root(&self) {
        if let Some(root) = &self.cgroup {
            if let Ok(dir) = fs::read_dir(&root.dir) {
                for e in dir.filter_map(Result::ok) {
                    if !populated(&e.path()) {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(&root.dir);
        }
    }

    /// Where the leaves live (cgroup mode).
    pub(crate) fn cgroup_dir(&self) -> Option<&Path> {
        self.cgroup.as_ref().map(|r| r.dir.as_path())
    }
}

impl Drop for Containment {
    // Synchronous (a drop cannot wait): after a shutdown the root is gone already and this
    // is one failing `read_dir`; only a supervisor dropped without a shutdown does the work.
    fn drop(&mut self) {
        self.remove_root();
    }
}

impl CgroupRoot {
    fn create() -> Result<Self, CgroupUnavailable> {
        let read = |path: &'static str| {
            fs::read_to_string(path).map_err(|source| CgroupUnavailable::Read { path, source })
        };
        let own = read("/proc/self/cgroup")?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or(CgroupUnavailable::NoHierarchy)?
            .trim()
            .to_owned();
        let mountinfo = read("/proc/self/mountinfo")?;
        let mount = cgroup2_mount(&mountinfo).ok_or(CgroupUnavailable::NoMount)?;
        let own_dir = mount.join(rel.trim_start_matches('/'));
        remove_stale(&own_dir);
        // One directory per supervisor (tests run several in one process).
        static SUPERVISORS: AtomicU64 = AtomicU64::new(0);
        let n = SUPERVISORS.fetch_add(1, Ordering::Relaxed);
        let dir = own_dir.join(format!("agentd.{}.{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupUnavailable::Create { path: dir, source }),
        }
        let probe = || -> Result<(), CgroupUnavailable> {
            let leaf = dir.join("probe");
            if let Err(source) = fs::create_dir(&leaf) {
                return Err(CgroupUnavailable::Create { path: leaf, source });
            }
            let res = open_dir(&leaf)
                .and_then(|fd| crate::spawn::probe_clone_into_cgroup(fd.as_raw_fd()));
            let _ = fs::remove_dir(&leaf);
            res.map_err(|source| CgroupUnavailable::Start { path: leaf, source })
        };
        if let Err(e) = probe() {
            let _ = fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(Self {
            has_kill: dir.join("cgroup.kill").exists(),
            dir,
            next: AtomicU64::new(0),
            pool: Mutex::new(Pool::default()),
        })
    }
}

/// Removes the empty directories left by daemons that are gone (a killed daemon cannot
/// clean up; a directory with live members stays).
fn remove_stale(own_dir: &Path) {
    let Ok(rd) = fs::read_dir(own_dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("agentd."))
            .and_then(|r| r.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(leaves) = fs::read_dir(e.path()) {
            for l in leaves.filter_map(Result::ok) {
                if l.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(l.path());
                }
            }
        }
        let _ = fs::remove_dir(e.path());
    }
}

/// The mount point of the cgroup2 file system, from `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let root = left.split_whitespace().nth(3)?;
        // Only a mount of the hierarchy's root maps `0::<path>` onto `<mount><path>`.
        let point = left.split_whitespace().nth(4)?;
        (root == "/").then(|| PathBuf::from(unescape(point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or(""), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(data)
}

/// Pids in a cgroup (and its sub-cgroups, which members may have made).
fn read_pids(dir: &Path) -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(read_pids(&e.path()).unwrap_or_default());
            }
        }
    }
    Ok(pids)
}

/// `populated 1` in `cgroup.events`: a live process is in it or below it.
fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|s| {
        s.lines().any(|l| {
            l.strip_prefix("populated ")
                .is_some_and(|v| v.trim() == "1")
        })
    })
}

fn frozen(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.strip_prefix("frozen ").is_some_and(|v| v.trim() == "1"))
    })
}

/// Signals every member of a cgroup: `cgroup.kill` for KILL where the kernel has it, else
/// freeze (so nothing forks past the signal), signal each member, thaw.
fn cgroup_signal(dir: &Path, has_kill: bool, sig: GroupSignal) -> io::Result<()> {
    if sig == GroupSignal::Kill && has_kill {
        return write_file(&dir.join("cgroup.kill"), b"1");
    }
    let froze = write_file(&dir.join("cgroup.freeze"), b"1").is_ok();
    if froze {
        let deadline = Instant::now() + Duration::from_millis(50);
        while !frozen(dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let res = read_pids(dir).map(|pids| {
        for pid in pids {
            kill(pid, sig);
        }
    });
    if froze {
        let _ = write_file(&dir.join("cgroup.freeze"), b"0");
    }
    res
}

fn kill(pid: u32, sig: GroupSignal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw <= 1 || pid == std::process::id() {
        return;
    }
    let s = nix::sys::signal::Signal::from(sig);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), s);
}

/// Orphans the daemon adopted from its trees (subreaper mode), seen alive: pid → start time.
#[derive(Default)]
pub(crate) struct Adopted {
    known: Mutex<HashMap<u32, u64>>,
    /// Children seen without our marker (other parts of the daemon): pid → start time.
    foreign: Mutex<HashMap<u32, u64>>,
}

impl Adopted {
    fn contains(&self, pid: u32) -> bool {
        lock(&self.known).contains_key(&pid)
    }

    /// Looks at the daemon's children: records adopted ones (by marker, while alive) and
    /// reaps those that exited. `own` are the shells the supervisor waits for itself.
    pub(crate) fn reap_orphans(&self, nonce_prefix: &str, own: &HashSet<u32>) -> usize {
        let me = std::process::id();
        let raw = |r: nix::Result<nix::unistd::Pid>| r.map_or(0, |p| p.as_raw() as u32);
        let (my_sid, my_pgid) = (
            raw(nix::unistd::getsid(None)),
            raw(nix::unistd::getpgid(None)),
        );
        let mut reaped = 0;
        let kids = children(me);
        {
            // Forget members that died elsewhere (reaped by their own parent).
            let mut known = lock(&self.known);
            known.retain(|pid, start| {
                kids.contains(pid) || Stat::read(*pid).is_some_and(|st| st.start == *start)
            });
        }
        for pid in kids {
            if own.contains(&pid) {
                continue;
            }
            let Some(st) = Stat::read(pid) else { continue };
            if st.ppid != me {
                continue;
            }
            let mut known = lock(&self.known);
            if st.zombie() {
                let ours = known.get(&pid) == Some(&st.start)
                    || st.sid != my_sid
                    || (st.pgrp != pid && st.pgrp != my_pgid);
                if ours {
                    // A specific zombie child that nobody else waits for.
                    let r = nix::sys::wait::waitpid(
                        nix::unistd::Pid::from_raw(pid as i32),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    );
                    if matches!(r, Ok(s) if s.pid() == Some(nix::unistd::Pid::from_raw(pid as i32)))
                    {
                        reaped += 1;
                    }
                    known.remove(&pid);
                }
                continue;
            }
            if known.get(&pid) == Some(&st.start) {
                continue;
            }
            let mut foreign = lock(&self.foreign);
            if foreign.get(&pid) == Some(&st.start) {
                continue;
            }
            if marker_of(pid).is_some_and(|m| m.starts_with(nonce_prefix)) {
                known.insert(pid, st.start);
            } else {
                if foreign.len() > 4096 {
                    foreign.clear();
                }
                foreign.insert(pid, st.start);
            }
        }
        reaped
    }
}

impl Containment {
    /// Records and reaps adopted orphans (subreaper mode; a no-op otherwise).
    pub(crate) fn reap_adopted(&self, own: &HashSet<u32>) -> usize {
        match &self.reaper {
            Some(a) => a.reap_orphans(&format!("{}:", self.nonce), own),
            None => 0,
        }
    }
}

/// The daemon's children, from `/proc/self/task/*/children`.
fn children(me: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{me}/task")) {
        for t in rd.filter_map(Result::ok) {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// The children of the daemon's main thread (where adopted orphans go), without the
/// `statx` of `fs::read_to_string`: this runs on the exit path of every process.
fn adopted_children(me: u32) -> Vec<u32> {
    use std::io::Read;
    let Ok(mut f) = fs::File::open(format!("/proc/{me}/task/{me}/children")) else {
        return Vec::new();
    };
    let mut buf = [0u8; 4096];
    let mut text = Vec::new();
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
}

/// How often an empty environment is read again (1 ms apart) before it counts as empty.
const EXEC_REREADS: u32 = 3;

/// The marker value in a live process's environment. A process in the middle of an
/// `execve` shows an empty environment for a moment (its new memory map has none yet), so
/// an empty read is tried again a few times: a tree member caught mid-exec (`setsid` turning
/// into the command it runs) is not taken for a stranger. Callers are blocking-pool scans.
fn marker_of(pid: u32) -> Option<String> {
    let path = format!("/proc/{pid}/environ");
    let mut env = fs::read(&path).ok()?;
    for _ in 0..EXEC_REREADS {
        if !env.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        env = fs::read(&path).ok()?;
    }
    let key = format!("{MARKER_VAR}=");
    env.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

struct Stat {
    state: char,
    ppid: u32,
    pgrp: u32,
    sid: u32,
    start: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Self> {
        Self::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn parse(stat: &str) -> Option<Self> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            pgrp: f.get(2)?.parse().ok()?,
            sid: f.get(3)?.parse().ok()?,
            // Field 22 of the line; 20th after the state.
            start: f.get(19)?.parse().ok()?,
        })
    }

    fn zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// One `/proc` scan: every process's parent, group and state.
struct ProcTable {
    procs: HashMap<u32, Stat>,
}

impl ProcTable {
    fn scan() -> Self {
        let mut procs = HashMap::new();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.filter_map(Result::ok) {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    && let Some(st) = Stat::read(pid)
                {
                    procs.insert(pid, st);
                }
            }
        }
        Self { procs }
    }

    /// Live members of the trees rooted at the shells `pgids` (their descendants and group
    /// members), plus the daemon's adopted children whose marker is `marker` (or starts
    /// with it, for a prefix) or that `adopted` recorded, with their descendants.
    fn tree(&self, pgids: &[u32], marker: Option<&str>, adopted: Option<&Adopted>) -> Vec<u32> {
        let me = std::process::id();
        let roots: HashSet<u32> = pgids.iter().copied().filter(|g| *g > 1).collect();
        let mut members: HashSet<u32> = HashSet::new();
        for (pid, st) in &self.procs {
            if *pid == me {
                continue;
            }
            // A shell is the daemon's child and leads its group until it is reaped; its
            // group members, descendants and the adopted orphans carrying its marker are
            // the rest of its tree.
            let shell = roots.contains(pid) && st.ppid == me && st.pgrp == *pid;
            let adopted_member = st.ppid == me
                && (adopted.is_some_and(|a| a.contains(*pid))
                    || marker
                        .is_some_and(|want| marker_of(*pid).is_some_and(|m| m.starts_with(want))));
            if shell || roots.contains(&st.pgrp) || adopted_member {
                members.insert(*pid);
            }
        }
        // Descendants, to a fixed point.
        let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, st) in &self.procs {
            kids.entry(st.ppid).or_default().push(*pid);
        }
        let mut stack: Vec<u32> = members.iter().copied().collect();
        while let Some(p) = stack.pop() {
            for c in kids.get(&p).into_iter().flatten() {
                if *c != me && members.insert(*c) {
                    stack.push(*c);
                }
            }
        }
        members
            .into_iter()
            .filter(|p| self.procs.get(p).is_some_and(|s| !s.zombie()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_texts() {
        let io = || io::Error::from_raw_os_error(13);
        let cases = [
            (
                CgroupUnavailable::Read {
                    path: "/proc/self/cgroup",
                    source: io(),
                },
                "reading /proc/self/cgroup: Permission denied (os error 13)",
            ),
            (
                CgroupUnavailable::NoHierarchy,
                "no cgroup v2 hierarchy in /proc/self/cgroup",
            ),
            (
                CgroupUnavailable::NoMount,
                "no cgroup2 file system is mounted",
            ),
            (
                CgroupUnavailable::Create {
                    path: "/sys/fs/cgroup/agentd.1.0".into(),
                    source: io(),
                },
                "creating /sys/fs/cgroup/agentd.1.0: Permission denied (os error 13)",
            ),
            (
                CgroupUnavailable::Start {
                    path: "/sys/fs/cgroup/agentd.1.0/probe".into(),
                    source: io(),
                },
                "starting a process in /sys/fs/cgroup/agentd.1.0/probe: Permission denied \
                 (os error 13)",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            let e = ContainError(e);
            assert_eq!(
                e.to_string(),
                format!("cgroup containment is not available: {text}")
            );
            let f = Fallback {
                cgroup: Some(e),
                refused: false,
                subreaper: Some(nix::errno::Errno::EPERM),
            };
            assert_eq!(
                f.reason().unwrap(),
                format!(
                    "{text}; PR_SET_CHILD_SUBREAPER failed too: EPERM: Operation not permitted"
                )
            );
            assert!(f.refused().is_none());
        }
        assert_eq!(Fallback::default().reason(), None);
        let only = Fallback {
            subreaper: Some(nix::errno::Errno::EPERM),
            ..Fallback::default()
        };
        assert_eq!(
            only.reason().unwrap(),
            "; PR_SET_CHILD_SUBREAPER failed too: EPERM: Operation not permitted"
        );
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let nested = "41 31 0:38 /sub /mnt/a\\040b rw - cgroup2 cgroup2 rw\n\
                      42 31 0:38 / /mnt/c\\040d rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(nested), Some(PathBuf::from("/mnt/c d")));
        assert_eq!(cgroup2_mount("1 2 0:3 / /x rw - ext4 /dev/sda rw"), None);
    }

    #[test]
    fn parses_stat() {
        let st =
            Stat::parse("42 (a b) c) S 7 42 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0")
                .unwrap();
        assert_eq!(
            (st.state, st.ppid, st.pgrp, st.sid, st.start),
            ('S', 7, 42, 40, 12345)
        );
    }
}
