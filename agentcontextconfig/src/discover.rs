//! Discovery of context parts on disk, as Coder's `readInstructionFiles` and
//! `discoverSkills`: the instruction file of each configured directory and of the workdir,
//! then the skills under each skills directory; and [`context_parts_from_dir`], the same for
//! one directory as `agentd ctx add` reads it (Coder's `ContextPartsFromDir`).
//!
//! Unlike Coder, a skill that is skipped (bad front matter, bad or mismatched name,
//! duplicate, symlink escaping its skills dir, unreadable meta file) is reported in
//! [`Discovery::skipped`] instead of vanishing silently. This module reads the file system
//! only; it must not know HTTP or read environment variables.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::frontmatter;
use crate::resolve::{DEFAULT_INSTRUCTIONS_FILE, DEFAULT_SKILL_META_FILE, ResolvedConfig};
use crate::sanitize::sanitize_and_cap;

/// How much of an instruction file is read before sanitising (the 64 KiB cap applies to
/// the sanitised text). A file longer than this is reported as truncated.
pub(crate) const INSTRUCTION_READ_LIMIT: u64 = 1024 * 1024;
/// How much of a skill meta file is read (Coder's `MaxSkillMetaBytes`).
pub(crate) const MAX_SKILL_META_BYTES: u64 = 64 * 1024;

/// One piece of context for a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextPart {
    /// An instruction file with its sanitised content.
    File {
        /// Absolute path.
        path: String,
        /// Sanitised content, at most 64 KiB.
        content: String,
        /// Whether the content was cut.
        truncated: bool,
    },
    /// A skill: metadata only (chatd reads the body on demand).
    Skill {
        /// The skill's name (equals its directory name).
        name: String,
        /// Its description.
        description: String,
        /// The skill directory (skills dir + name, not symlink-resolved).
        dir: String,
        /// The meta file basename, e.g. `SKILL.md`.
        meta_file: String,
    },
}

impl ContextPart {
    /// The key adds are deduplicated by: the file path, or the skill directory.
    pub(crate) fn path_key(&self) -> &str {
        match self {
            ContextPart::File { path, .. } => path,
            ContextPart::Skill { dir, .. } => dir,
        }
    }
}

/// A skill (or instruction file) that was found but not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The directory or file concerned.
    pub path: String,
    /// Why it was skipped (its `Display` is for a person).
    pub reason: SkipReason,
}

/// An I/O error in a [`SkipReason`]: cheap to clone, compared and hashed by its kind and
/// text (so equal reports stay equal).
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct OsError(std::sync::Arc<std::io::Error>);

impl OsError {
    /// The error.
    pub fn get(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for OsError {
    fn from(e: std::io::Error) -> Self {
        Self(std::sync::Arc::new(e))
    }
}

impl PartialEq for OsError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for OsError {}

impl std::hash::Hash for OsError {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_string().hash(state);
    }
}

/// Why a skill or an instruction file was skipped. I/O errors are kept as [`OsError`]s,
/// compared and hashed by their text (the report is compared and deduplicated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SkipReason {
    /// The instruction file is a FIFO, device, socket...
    #[error("not a regular file")]
    NotRegularFile,
    /// The instruction file cannot be read.
    #[error("cannot read: {0}")]
    Unreadable(#[source] OsError),
    /// A symlinked skill dir leads out of its skills directory (or to the directory itself).
    #[error("symlink points outside the skills directory (to {})", .0.display())]
    SymlinkOutside(PathBuf),
    /// A symlinked skill dir cannot be resolved (dangling, a loop).
    #[error("cannot resolve symlink: {0}")]
    SymlinkUnresolved(#[source] OsError),
    /// The skill's meta file is not a regular file.
    #[error("{0} is not a regular file")]
    MetaNotRegular(String),
    /// The skill dir has no meta file.
    #[error("no {0}")]
    NoMeta(String),
    /// The skill's meta file cannot be read.
    #[error("cannot read {meta_file}: {error}")]
    MetaUnreadable {
        /// The meta file's name (`SKILL.md`).
        meta_file: String,
        /// The OS error.
        #[source]
        error: OsError,
    },
    /// The meta file's front matter does not parse.
    #[error("invalid front matter in {meta_file}: {error}{}", oversize(.meta_file, .size))]
    FrontMatter {
        /// The meta file's name.
        meta_file: String,
        /// The parser's complaint.
        #[source]
        error: crate::frontmatter::FrontMatterError,
        /// The file's size when it is over `MAX_SKILL_META_BYTES` (64 KiB) (only a prefix was read).
        size: Option<u64>,
    },
    /// The front matter's name is not the directory's.
    #[error("front matter name {name:?} does not match the directory name {dir_name:?}")]
    NameMismatch {
        /// The front matter's name.
        name: String,
        /// The directory's name.
        dir_name: String,
    },
    /// The name is not kebab-case.
    #[error("invalid skill name {0:?}: must match ^[a-z0-9]+(-[a-z0-9]+)*$")]
    InvalidName(String),
    /// An earlier skills dir has a skill of the same name.
    #[error("duplicate skill name {name:?}: {first} comes first")]
    Duplicate {
        /// The name.
        name: String,
        /// The skill dir that won.
        first: String,
    },
}

/// ` (SKILL.md is N bytes; only the first M are read)` for an oversized meta file.
fn oversize(meta_file: &str, size: &Option<u64>) -> String {
    match size {
        Some(n) => {
            format!(" ({meta_file} is {n} bytes; only the first {MAX_SKILL_META_BYTES} are read)")
        }
        None => String::new(),
    }
}

/// The result of a discovery: parts in Coder's order, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Instruction files, then skills.
    pub parts: Vec<ContextPart>,
    /// Skipped skills and instruction files, in discovery order.
    pub skipped: Vec<Skipped>,
}

/// Kebab-case skill names: `^[a-z0-9]+(-[a-z0-9]+)*$`.
pub(crate) fn is_valid_skill_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Entries of `dir` sorted by name (Go's `os.ReadDir` order); `None` if unreadable.
fn sorted_entries(dir: &Path) -> Option<Vec<fs::DirEntry>> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(dir).ok()?.filter_map(Result::ok).collect();
    v.sort_by_key(|e| e.file_name());
    Some(v)
}

/// Reads at most `limit` bytes of a regular file; `(text, more_remaining)`. Invalid UTF-8
/// becomes U+FFFD, as Go's JSON encoder would render it. The file is opened without
/// blocking and checked on the open descriptor, so a path swapped for a FIFO after the
/// caller's stat fails here instead of hanging a thread.
fn read_capped(path: &Path, limit: u64) -> std::io::Result<(String, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    let more = buf.len() as u64 > limit;
    buf.truncate(limit as usize);
    Ok((String::from_utf8_lossy(&buf).into_owned(), more))
}

/// Reads and sanitises one instruction file whose (symlink-followed) metadata is `meta`:
/// `Ok(None)` when empty after sanitising (Coder drops it silently), `Err` with the reason
/// when it is not a regular file or cannot be read.
fn read_instruction_file(
    path: &Path,
    meta: std::io::Result<fs::Metadata>,
) -> Result<Option<ContextPart>, SkipReason> {
    match meta {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(SkipReason::NotRegularFile),
        Err(e) => return Err(SkipReason::Unreadable(e.into())),
    }
    let (raw, more) =
        read_capped(path, INSTRUCTION_READ_LIMIT).map_err(|e| SkipReason::Unreadable(e.into()))?;
    let (content, cut) = sanitize_and_cap(&raw);
    if content.is_empty() {
        return Ok(None);
    }
    Ok(Some(ContextPart::File {
        path: lossy(path),
        content,
        truncated: cut || more,
    }))
}

/// The first entry of `dir` whose trimmed name equals `file` case-insensitively and that is
/// not a directory, with its metadata (symlinks followed: a link to a directory is a
/// directory).
fn find_instruction_file(
    dir: &Path,
    file: &str,
) -> Option<(PathBuf, std::io::Result<fs::Metadata>)> {
    let want = file.to_lowercase();
    sorted_entries(dir)?.into_iter().find_map(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.trim().to_lowercase() != want {
            return None;
        }
        let path = e.path();
        let meta = fs::metadata(&path);
        if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            return None;
        }
        Some((path, meta))
    })
}

fn read_instruction_from_dir(dir: &Path, file: &str, out: &mut Discovery) {
    let Some((path, meta)) = find_instruction_file(dir, file) else {
        return;
    };
    match read_instruction_file(&path, meta) {
        Ok(Some(part)) => out.parts.push(part),
        Ok(None) => {}
        Err(reason) => out.skipped.push(Skipped {
            path: lossy(&path),
            reason,
        }),
    }
}

/// Discovers the instruction files and skills of a resolved configuration. `workdir`'s own
/// instruction file is read too, unless the workdir is one of the instruction dirs.
pub fn discover(cfg: &ResolvedConfig, workdir: Option<&Path>) -> Discovery {
    let mut out = Discovery::default();
    let mut seen: HashSet<&Path> = HashSet::new();
    for dir in &cfg.instructions_dirs {
        if seen.insert(dir.as_path()) {
            read_instruction_from_dir(dir, &cfg.instructions_file, &mut out);
        }
    }
    if let Some(w) = workdir.filter(|w| !w.as_os_str().is_empty())
        && !cfg.instructions_dirs.iter().any(|d| d == w)
    {
        read_instruction_from_dir(w, &cfg.instructions_file, &mut out);
    }
    discover_skills(&cfg.skills_dirs, &cfg.skill_meta_file, &mut out);
    out
}

/// Coder's `ContextPartsFromDir`: `AGENTS.md` in `dir` itself, and skills (`SKILL.md`) under
/// `dir/.agents/skills` and `dir/skills`. Configuration values are ignored.
pub fn context_parts_from_dir(dir: &Path) -> Discovery {
    let mut out = Discovery::default();
    read_instruction_from_dir(dir, DEFAULT_INSTRUCTIONS_FILE, &mut out);
    let skills = [dir.join(".agents/skills"), dir.join("skills")];
    discover_skills(&skills, DEFAULT_SKILL_META_FILE, &mut out);
    out
}

/// Skills under each skills dir (list order; entries by name); first occurrence of a name
/// wins.
pub(crate) fn discover_skills(skills_dirs: &[PathBuf], meta_file: &str, out: &mut Discovery) {
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut seen_dirs: HashSet<&Path> = HashSet::new();
    for sdir in skills_dirs {
        if !seen_dirs.insert(sdir.as_path()) {
            continue;
        }
        let Some(entries) = sorted_entries(sdir) else {
            continue;
        };
        let mut canonical_root: Option<Option<PathBuf>> = None;
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            let dir_name = e.file_name().to_string_lossy().into_owned();
            let skill_dir = sdir.join(e.file_name());
            let skip = |out: &mut Discovery, reason: SkipReason| {
                out.skipped.push(Skipped {
                    path: lossy(&skill_dir),
                    reason,
                })
            };
            if ft.is_symlink() {
                let root = canonical_root
                    .get_or_insert_with(|| fs::canonicalize(sdir).ok())
                    .clone();
                match (fs::canonicalize(&skill_dir), root) {
                    (Ok(target), Some(root)) => {
                        if !target.is_dir() {
                            continue;
                        }
                        if !target.starts_with(&root) || target == root {
                            skip(out, SkipReason::SymlinkOutside(target));
                            continue;
                        }
                    }
                    (Err(err), _) => {
                        skip(out, SkipReason::SymlinkUnresolved(err.into()));
                        continue;
                    }
                    (Ok(_), None) => continue,
                }
            } else if !ft.is_dir() {
                continue;
            }
            let meta_path = skill_dir.join(meta_file);
            let meta = match fs::metadata(&meta_path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => {
                    skip(out, SkipReason::MetaNotRegular(meta_file.to_owned()));
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    skip(out, SkipReason::NoMeta(meta_file.to_owned()));
                    continue;
                }
                Err(e) => {
                    skip(
                        out,
                        SkipReason::MetaUnreadable {
                            meta_file: meta_file.to_owned(),
                            error: e.into(),
                        },
                    );
                    continue;
                }
            };
            let (text, _) = match read_capped(&meta_path, MAX_SKILL_META_BYTES) {
                Ok(t) => t,
                Err(e) => {
                    skip(
                        out,
                        SkipReason::MetaUnreadable {
                            meta_file: meta_file.to_owned(),
                            error: e.into(),
                        },
                    );
                    continue;
                }
            };
            let fm = match frontmatter::parse(&text) {
                Ok(fm) => fm,
                Err(error) => {
                    skip(
                        out,
                        SkipReason::FrontMatter {
                            meta_file: meta_file.to_owned(),
                            error,
                            size: (meta.len() > MAX_SKILL_META_BYTES).then_some(meta.len()),
                        },
                    );
                    continue;
                }
            };
            if fm.name != dir_name {
                skip(
                    out,
                    SkipReason::NameMismatch {
                        name: fm.name,
                        dir_name,
                    },
                );
                continue;
            }
            if !is_valid_skill_name(&fm.name) {
                skip(out, SkipReason::InvalidName(fm.name));
                continue;
            }
            if let Some(first) = names.get(&fm.name) {
                skip(
                    out,
                    SkipReason::Duplicate {
                        name: fm.name,
                        first: first.clone(),
                    },
                );
                continue;
            }
            names.insert(fm.name.clone(), lossy(&skill_dir));
            out.parts.push(ContextPart::Skill {
                name: fm.name,
                description: fm.description,
                dir: lossy(&skill_dir),
                meta_file: meta_file.to_owned(),
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::resolve::RawConfig;

    #[test]
    fn os_error_reasons_keep_their_texts() {
        let os = |n| OsError::from(std::io::Error::from_raw_os_error(n));
        assert_eq!(
            SkipReason::Unreadable(os(13)).to_string(),
            "cannot read: Permission denied (os error 13)"
        );
        assert_eq!(
            SkipReason::SymlinkUnresolved(os(40)).to_string(),
            "cannot resolve symlink: Too many levels of symbolic links (os error 40)"
        );
        let meta = SkipReason::MetaUnreadable {
            meta_file: "SKILL.md".into(),
            error: os(13),
        };
        assert_eq!(
            meta.to_string(),
            "cannot read SKILL.md: Permission denied (os error 13)"
        );
        assert_eq!(os(13), os(13));
        assert_ne!(os(13), os(2));
        let set: HashSet<SkipReason> = [meta.clone(), meta].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_eq!(os(13).get().raw_os_error(), Some(13));
    }

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    fn skill(root: &Path, name: &str, fm_name: &str, desc: &str) {
        write(
            &root.join(name).join("SKILL.md"),
            &format!("---\nname: {fm_name}\ndescription: {desc}\n---\nbody"),
        );
    }

    fn cfg(home: &Path, work: &Path, vars: &[(&str, &str)]) -> ResolvedConfig {
        RawConfig::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).into()))
            .resolve(Some(work), Some(home))
    }

    fn skill_part(dir: &Path, name: &str, description: &str, meta_file: &str) -> ContextPart {
        ContextPart::Skill {
            name: name.into(),
            description: description.into(),
            dir: lossy(dir),
            meta_file: meta_file.into(),
        }
    }

    fn file(path: &Path, content: &str) -> ContextPart {
        ContextPart::File {
            path: lossy(path),
            content: content.into(),
            truncated: false,
        }
    }

    #[test]
    fn skill_names() {
        for ok in ["a", "a-b", "abc-123-x", "9"] {
            assert!(is_valid_skill_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", "é"] {
            assert!(!is_valid_skill_name(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_instruction_files_and_order() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        let work = t.path().join("work");
        write(&home.join(".coder/AGENTS.md"), "home rules");
        write(&work.join("agents.MD"), "work rules");
        skill(&work.join(".agents/skills"), "b-skill", "b-skill", "B");
        skill(&work.join(".agents/skills"), "a-skill", "a-skill", "A");
        let c = cfg(&home, &work, &[]);
        assert_eq!(c.mcp_config_files, vec![work.join(".mcp.json")]);
        let d = discover(&c, Some(&work));
        assert_eq!(
            d.parts,
            vec![
                file(&home.join(".coder/AGENTS.md"), "home rules"),
                file(&work.join("agents.MD"), "work rules"),
                skill_part(
                    &work.join(".agents/skills/a-skill"),
                    "a-skill",
                    "A",
                    "SKILL.md"
                ),
                skill_part(
                    &work.join(".agents/skills/b-skill"),
                    "b-skill",
                    "B",
                    "SKILL.md"
                ),
            ]
        );
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn custom_names_whitespace_and_comma_dirs() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, work) = (t.path().join("a"), t.path().join("b"), t.path().join("w"));
        write(&a.join("CLAUDE.md"), "from a");
        write(&b.join("claude.md"), "from b");
        write(&a.join("AGENTS.md"), "ignored: wrong name");
        write(&work.join("CLAUDE.md"), "from work");
        skill(&work.join("sk"), "x", "x", "X");
        write(
            &work.join("sk/x/META.md"),
            "---\nname: x\ndescription: via meta\n---\n",
        );
        let dirs = format!("{}, {} ,{}", a.display(), b.display(), a.display());
        let c = cfg(
            t.path(),
            &work,
            &[
                ("CODER_AGENT_EXP_INSTRUCTIONS_DIRS", &dirs),
                ("CODER_AGENT_EXP_INSTRUCTIONS_FILE", "  CLAUDE.md  "),
                ("CODER_AGENT_EXP_SKILLS_DIRS", "sk"),
                ("CODER_AGENT_EXP_SKILL_META_FILE", "META.md"),
            ],
        );
        let d = discover(&c, Some(&work));
        assert_eq!(
            d.parts,
            vec![
                file(&a.join("CLAUDE.md"), "from a"),
                file(&b.join("claude.md"), "from b"),
                file(&work.join("CLAUDE.md"), "from work"),
                skill_part(&work.join("sk/x"), "x", "via meta", "META.md"),
            ]
        );
    }

    #[test]
    fn workdir_that_is_an_instruction_dir_is_read_once() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("AGENTS.md"), "once");
        let c = cfg(
            t.path(),
            t.path(),
            &[(
                "CODER_AGENT_EXP_INSTRUCTIONS_DIRS",
                &t.path().display().to_string(),
            )],
        );
        assert_eq!(
            discover(&c, Some(t.path())).parts,
            vec![file(&t.path().join("AGENTS.md"), "once")]
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("AGENTS.md");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let e = read_capped(&fifo, 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file");
    }

    #[test]
    fn first_match_per_dir_dirs_ignored_empty_dropped() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path();
        fs::create_dir_all(w.join("AGENTS.md.d")).unwrap();
        // First in name order, but a directory: ignored.
        fs::create_dir_all(w.join("AGENTS.MD")).unwrap();
        write(&w.join("Agents.md"), "mixed");
        write(&w.join("agents.md"), "lower");
        let c = cfg(&w.join("nohome"), w, &[]);
        assert_eq!(
            discover(&c, Some(w)).parts,
            vec![file(&w.join("Agents.md"), "mixed")]
        );
        // Empty after sanitising: no part, nothing reported.
        let t2 = tempfile::tempdir().unwrap();
        write(
            &t2.path().join("AGENTS.md"),
            " <!-- only a comment -->\u{200B}\r\n",
        );
        let d = discover(&cfg(&t2.path().join("h"), t2.path(), &[]), Some(t2.path()));
        assert_eq!(d, Discovery::default());
    }

    #[test]
    fn truncation_and_sanitising() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path();
        write(&w.join("AGENTS.md"), &"a".repeat(64 * 1024 + 100));
        let c = cfg(&w.join("h"), w, &[]);
        let d = discover(&c, Some(w));
        match &d.parts[..] {
            [
                ContextPart::File {
                    content, truncated, ..
                },
            ] => {
                assert_eq!((content.len(), *truncated), (64 * 1024, true));
            }
            other => panic!("{other:?}"),
        }
        write(
            &w.join("AGENTS.md"),
            "visible\r\n<!-- hidden -->content\u{200B}\rend",
        );
        assert_eq!(
            discover(&c, Some(w)).parts,
            vec![file(&w.join("AGENTS.md"), "visible\ncontent\nend")]
        );
    }

    #[test]
    fn missing_dirs_and_no_workdir() {
        let c = RawConfig::default().resolve(None, None);
        assert_eq!(discover(&c, None), Discovery::default());
        let t = tempfile::tempdir().unwrap();
        let c = cfg(&t.path().join("nohome"), &t.path().join("nowork"), &[]);
        assert_eq!(
            discover(&c, Some(&t.path().join("nowork"))),
            Discovery::default()
        );
    }

    #[test]
    fn skills_validation_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let (s1, s2) = (t.path().join("s1"), t.path().join("s2"));
        skill(&s1, "good", "good", "first");
        skill(&s2, "good", "good", "second");
        skill(&s1, "mismatch", "other", "");
        skill(&s1, "Bad_Name", "Bad_Name", "");
        write(&s1.join("nofm/SKILL.md"), "no front matter");
        fs::create_dir_all(s1.join("empty")).unwrap();
        write(&s1.join("loose-file.md"), "ignored");
        let dirs = format!("{},{}", s1.display(), s2.display());
        let c = cfg(
            t.path(),
            t.path(),
            &[("CODER_AGENT_EXP_SKILLS_DIRS", &dirs)],
        );
        let d = discover(&c, None);
        assert_eq!(
            d.parts,
            vec![skill_part(&s1.join("good"), "good", "first", "SKILL.md")]
        );
        let got: Vec<(String, String)> = d
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.reason.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    lossy(&s1.join("Bad_Name")),
                    "invalid skill name \"Bad_Name\": must match ^[a-z0-9]+(-[a-z0-9]+)*$".into()
                ),
                (lossy(&s1.join("empty")), "no SKILL.md".into()),
                (
                    lossy(&s1.join("mismatch")),
                    "front matter name \"other\" does not match the directory name \"mismatch\""
                        .into()
                ),
                (
                    lossy(&s1.join("nofm")),
                    "invalid front matter in SKILL.md: missing opening frontmatter delimiter"
                        .into()
                ),
                (
                    lossy(&s2.join("good")),
                    format!(
                        "duplicate skill name \"good\": {} comes first",
                        s1.join("good").display()
                    )
                ),
            ]
        );
    }

    #[test]
    fn symlinked_skill_dirs() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("skills");
        skill(&s.join("store"), "inside", "inside", "in");
        skill(&t.path().join("outside"), "escape", "escape", "out");
        std::os::unix::fs::symlink(s.join("store/inside"), s.join("inside")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside/escape"), s.join("escape")).unwrap();
        std::os::unix::fs::symlink(s.join("loop"), s.join("loop")).unwrap();
        let mut d = Discovery::default();
        discover_skills(std::slice::from_ref(&s), "SKILL.md", &mut d);
        assert_eq!(
            d.parts,
            vec![skill_part(&s.join("inside"), "inside", "in", "SKILL.md")]
        );
        let reasons: Vec<&str> = d.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                lossy(&s.join("escape")),
                lossy(&s.join("loop")),
                lossy(&s.join("store"))
            ]
        );
        assert!(matches!(d.skipped[0].reason, SkipReason::SymlinkOutside(_)));
        assert!(matches!(
            d.skipped[1].reason,
            SkipReason::SymlinkUnresolved(_)
        ));
    }

    #[test]
    fn parts_from_dir() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path();
        assert_eq!(context_parts_from_dir(w), Discovery::default());
        write(&w.join("AGENTS.md"), "rules");
        assert_eq!(
            context_parts_from_dir(w).parts,
            vec![file(&w.join("AGENTS.md"), "rules")]
        );
        skill(&w.join(".agents/skills"), "one", "one", "first");
        skill(&w.join("skills"), "two", "two", "second");
        skill(&w.join("skills"), "one", "one", "dup");
        let d = context_parts_from_dir(w);
        let names: Vec<&str> = d.parts.iter().map(ContextPart::path_key).collect();
        assert_eq!(
            names,
            vec![
                lossy(&w.join("AGENTS.md")),
                lossy(&w.join(".agents/skills/one")),
                lossy(&w.join("skills/two"))
            ]
        );
        assert_eq!(d.skipped.len(), 1);
    }
}
