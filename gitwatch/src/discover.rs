//! Repository discovery by reading the file system: from a path, walk up to the nearest
//! directory holding `.git` (a directory, or a file `gitdir: <path>` for linked worktrees
//! and submodules). Nearest enclosing repo wins; paths outside any repo give `None`.
//!
//! Also answers "is this repo gone?" (root, `.git` or a worktree's gitdir deleted), which
//! turns into a `removed` entry. It must not run git or write anything, and opens nothing
//! but regular files (a FIFO named `.git` must not block it). Its calls are blocking: the
//! hub and `agentd` run them on the blocking pool with a timeout (`fsio`).

use std::path::{Path, PathBuf};

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoLocation {
    /// The worktree root, symlinks resolved.
    pub root: PathBuf,
    /// The git dir (`<root>/.git`, or `.git/worktrees/<name>` / `.git/modules/<name>`).
    pub git_dir: PathBuf,
    /// The common dir (refs, config, objects): `git_dir` unless it has a `commondir` file.
    pub common_dir: PathBuf,
}

/// Finds the repository enclosing `path`. A path that is not an existing directory starts
/// from its parent; a missing parent, or no repo up to `/`, gives `None`.
pub fn discover(path: &Path) -> Option<RepoLocation> {
    if !path.is_absolute() {
        return None;
    }
    let start = if path.is_dir() {
        path.to_path_buf()
    } else {
        let parent = path.parent()?;
        if !parent.is_dir() {
            return None;
        }
        parent.to_path_buf()
    };
    let start = std::fs::canonicalize(&start).unwrap_or(start);
    let mut dir: Option<&Path> = Some(&start);
    while let Some(d) = dir {
        if let Some(loc) = at(d) {
            return Some(loc);
        }
        dir = d.parent();
    }
    None
}

/// The repository whose worktree root is exactly `dir`, if any.
fn at(dir: &Path) -> Option<RepoLocation> {
    let dot = dir.join(".git");
    let meta = std::fs::metadata(&dot).ok()?;
    let git_dir = if meta.is_dir() {
        if !dot.join("HEAD").exists() && !dot.join("commondir").exists() {
            return None;
        }
        dot
    } else if meta.is_file() {
        let target = read_gitdir_file(&dot)?;
        if !target.is_dir() {
            return None;
        }
        target
    } else {
        // A FIFO or device named `.git` is no repo (opening a FIFO would block forever).
        return None;
    };
    let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(s) => {
            let p = PathBuf::from(s.trim_end_matches(['\n', '\r']));
            let p = if p.is_absolute() { p } else { git_dir.join(p) };
            std::fs::canonicalize(&p).unwrap_or(p)
        }
        Err(_) => git_dir.clone(),
    };
    Some(RepoLocation {
        root: dir.to_path_buf(),
        git_dir,
        common_dir,
    })
}

/// Reads a `.git` file: `gitdir: <path>`, relative to the file's directory.
fn read_gitdir_file(dot: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dot).ok()?;
    let rest = text.strip_prefix("gitdir:")?.trim();
    let p = PathBuf::from(rest);
    let p = if p.is_absolute() {
        p
    } else {
        dot.parent()?.join(p)
    };
    Some(std::fs::canonicalize(&p).unwrap_or(p))
}

/// True when the repository is gone: its root, its `.git`, or the git dir a `.git` file
/// points to no longer exists. A repo that merely fails to scan (corrupt HEAD, a lock) is
/// not gone.
pub(crate) fn is_gone(root: &Path) -> bool {
    if !root.is_dir() {
        return true;
    }
    let dot = root.join(".git");
    match std::fs::metadata(&dot) {
        Err(_) => true,
        Ok(m) if m.is_dir() => false,
        // Not a directory nor a regular file (a FIFO would block the read): not a repo.
        Ok(m) if !m.is_file() => true,
        Ok(_) => match read_gitdir_file(&dot) {
            Some(target) => !target.is_dir(),
            // An unreadable or garbled `.git` file is a transient error, not a removal.
            None => false,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_repo_wins_and_outside_paths_are_none() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let outer = root.join("outer");
        let inner = outer.join("sub/inner");
        std::fs::create_dir_all(outer.join(".git")).unwrap();
        std::fs::write(outer.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(inner.join(".git")).unwrap();
        std::fs::write(inner.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(inner.join("a/b")).unwrap();
        assert_eq!(discover(&inner.join("a/b")).unwrap().root, inner);
        assert_eq!(discover(&inner.join("a/b/new.txt")).unwrap().root, inner);
        assert_eq!(discover(&outer.join("sub")).unwrap().root, outer);
        assert!(discover(&root.join("elsewhere")).is_none());
        assert!(discover(&root.join("missing/dir/file")).is_none());
        assert!(discover(Path::new("relative")).is_none());
    }

    #[test]
    fn gitdir_files_and_gone_detection() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let main = root.join("main");
        let wt_git = main.join(".git/worktrees/wt");
        std::fs::create_dir_all(&wt_git).unwrap();
        std::fs::write(main.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(wt_git.join("HEAD"), "ref: refs/heads/b\n").unwrap();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = root.join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        let loc = discover(&wt).unwrap();
        assert_eq!(loc.root, wt);
        assert_eq!(loc.git_dir, wt_git);
        assert_eq!(loc.common_dir, main.join(".git"));
        assert!(!is_gone(&wt));
        std::fs::remove_dir_all(&wt_git).unwrap();
        assert!(is_gone(&wt));
        assert!(!is_gone(&main));
        std::fs::remove_dir_all(main.join(".git")).unwrap();
        assert!(is_gone(&main));
        assert!(is_gone(&root.join("nope")));
    }
}
