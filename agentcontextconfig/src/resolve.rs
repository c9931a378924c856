//! Raw context-config values and path resolution, as Coder's `resolve.go`.
//!
//! [`RawConfig`] holds the five `CODER_AGENT_EXP_*` values as strings (read by the binary,
//! never by this crate); [`RawConfig::resolve`] applies Coder's trimming, defaults, comma
//! splitting and path rules against a workdir and home directory given as values. This
//! module must not touch the file system.

use std::path::{Path, PathBuf};

/// Default instruction directory.
pub(crate) const DEFAULT_INSTRUCTIONS_DIR: &str = "~/.coder";
/// Default instruction file basename.
pub(crate) const DEFAULT_INSTRUCTIONS_FILE: &str = "AGENTS.md";
/// Default skills container directory (relative to the workdir).
pub(crate) const DEFAULT_SKILLS_DIR: &str = ".agents/skills";
/// Default skill meta file basename.
pub(crate) const DEFAULT_SKILL_META_FILE: &str = "SKILL.md";
/// Default MCP config file (relative to the workdir).
pub(crate) const DEFAULT_MCP_CONFIG_FILE: &str = ".mcp.json";

/// The five configuration values as given (e.g. from `CODER_AGENT_EXP_*`), untrimmed.
/// `None` and blank values fall back to Coder's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// `CODER_AGENT_EXP_INSTRUCTIONS_DIRS` (or the legacy singular name).
    pub instructions_dirs: Option<String>,
    /// `CODER_AGENT_EXP_INSTRUCTIONS_FILE`.
    pub instructions_file: Option<String>,
    /// `CODER_AGENT_EXP_SKILLS_DIRS` (or the legacy singular name).
    pub skills_dirs: Option<String>,
    /// `CODER_AGENT_EXP_SKILL_META_FILE`.
    pub skill_meta_file: Option<String>,
    /// `CODER_AGENT_EXP_MCP_CONFIG_FILES` (or the legacy singular name).
    pub mcp_config_files: Option<String>,
}

/// Resolved configuration: absolute paths and trimmed basenames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    /// Directories searched for the instruction file.
    pub instructions_dirs: Vec<PathBuf>,
    /// Instruction file basename (matched case-insensitively).
    pub instructions_file: String,
    /// Skill container directories.
    pub skills_dirs: Vec<PathBuf>,
    /// Skill meta file basename.
    pub skill_meta_file: String,
    /// MCP config files, in priority order (first wins on duplicate server names).
    pub mcp_config_files: Vec<PathBuf>,
}

fn value_or<'a>(v: &'a Option<String>, default: &'a str) -> &'a str {
    match v.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => t,
        _ => default,
    }
}

const ENV_INSTRUCTIONS_DIRS: &str = "CODER_AGENT_EXP_INSTRUCTIONS_DIRS";
const ENV_INSTRUCTIONS_DIR: &str = "CODER_AGENT_EXP_INSTRUCTIONS_DIR";
const ENV_INSTRUCTIONS_FILE: &str = "CODER_AGENT_EXP_INSTRUCTIONS_FILE";
const ENV_SKILLS_DIRS: &str = "CODER_AGENT_EXP_SKILLS_DIRS";
const ENV_SKILLS_DIR: &str = "CODER_AGENT_EXP_SKILLS_DIR";
const ENV_SKILL_META_FILE: &str = "CODER_AGENT_EXP_SKILL_META_FILE";
const ENV_MCP_CONFIG_FILES: &str = "CODER_AGENT_EXP_MCP_CONFIG_FILES";
const ENV_MCP_CONFIG_FILE: &str = "CODER_AGENT_EXP_MCP_CONFIG_FILE";

/// Every variable [`RawConfig::from_lookup`] reads (plural names and their legacy singular
/// forms): the daemon's own configuration, which its children must not inherit.
pub const ENV_VARS: &[&str] = &[
    ENV_INSTRUCTIONS_DIRS,
    ENV_INSTRUCTIONS_DIR,
    ENV_INSTRUCTIONS_FILE,
    ENV_SKILLS_DIRS,
    ENV_SKILLS_DIR,
    ENV_SKILL_META_FILE,
    ENV_MCP_CONFIG_FILES,
    ENV_MCP_CONFIG_FILE,
];

impl RawConfig {
    /// Builds the raw config from a variable lookup (plural names win over the legacy
    /// singular ones). The caller decides where values come from.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let nonblank = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let either = |plural: &str, singular: &str| nonblank(plural).or_else(|| nonblank(singular));
        Self {
            instructions_dirs: either(ENV_INSTRUCTIONS_DIRS, ENV_INSTRUCTIONS_DIR),
            instructions_file: nonblank(ENV_INSTRUCTIONS_FILE),
            skills_dirs: either(ENV_SKILLS_DIRS, ENV_SKILLS_DIR),
            skill_meta_file: nonblank(ENV_SKILL_META_FILE),
            mcp_config_files: either(ENV_MCP_CONFIG_FILES, ENV_MCP_CONFIG_FILE),
        }
    }

    /// Applies defaults and resolves paths against `workdir` and `home` (either may be
    /// absent; entries that need a missing one are dropped, as in Coder).
    pub fn resolve(&self, workdir: Option<&Path>, home: Option<&Path>) -> ResolvedConfig {
        let paths = |v: &Option<String>, d: &str| {
            resolve_paths(value_or(v, d), workdir, home).unwrap_or_default()
        };
        ResolvedConfig {
            instructions_dirs: paths(&self.instructions_dirs, DEFAULT_INSTRUCTIONS_DIR),
            instructions_file: value_or(&self.instructions_file, DEFAULT_INSTRUCTIONS_FILE)
                .to_owned(),
            skills_dirs: paths(&self.skills_dirs, DEFAULT_SKILLS_DIR),
            skill_meta_file: value_or(&self.skill_meta_file, DEFAULT_SKILL_META_FILE).to_owned(),
            mcp_config_files: paths(&self.mcp_config_files, DEFAULT_MCP_CONFIG_FILE),
        }
    }
}

/// Coder's `ResolvePath`: trim; `~` and `~/x` against `home`; absolute unchanged; relative
/// joined to `base`. `None` when the entry is blank or needs a missing home/base.
pub fn resolve_path(raw: &str, base: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if raw == "~" {
        return home
            .filter(|h| !h.as_os_str().is_empty())
            .map(Path::to_path_buf);
    }
    if let Some(rest) = raw.strip_prefix("~/") {
        return home
            .filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(rest));
    }
    let p = Path::new(raw);
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    base.filter(|b| !b.as_os_str().is_empty())
        .map(|b| b.join(p))
}

/// Coder's `ResolvePaths`: `None` for a blank value (JSON `null`), else each comma-separated
/// entry resolved, dropped entries skipped (possibly an empty list).
pub fn resolve_paths(raw: &str, base: Option<&Path>, home: Option<&Path>) -> Option<Vec<PathBuf>> {
    if raw.trim().is_empty() {
        return None;
    }
    Some(
        raw.split(',')
            .filter_map(|e| resolve_path(e, base, home))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home/u";

    fn rp(raw: &str) -> Option<PathBuf> {
        resolve_path(raw, Some(Path::new("/work")), Some(Path::new(HOME)))
    }

    #[test]
    fn resolve_path_cases() {
        assert_eq!(rp(""), None);
        assert_eq!(rp("   "), None);
        assert_eq!(rp("~"), Some(PathBuf::from(HOME)));
        assert_eq!(
            rp("~/docs/readme"),
            Some(PathBuf::from("/home/u/docs/readme"))
        );
        assert_eq!(rp("/etc/coder"), Some(PathBuf::from("/etc/coder")));
        assert_eq!(rp("foo/bar"), Some(PathBuf::from("/work/foo/bar")));
        assert_eq!(rp("  foo/bar  "), Some(PathBuf::from("/work/foo/bar")));
        assert_eq!(rp("~user/x"), Some(PathBuf::from("/work/~user/x")));
        // Home unset.
        assert_eq!(resolve_path("~", Some(Path::new("/w")), None), None);
        assert_eq!(
            resolve_path("~/docs", Some(Path::new("/w")), Some(Path::new(""))),
            None
        );
        // Base unset.
        assert_eq!(resolve_path("rel", None, Some(Path::new(HOME))), None);
    }

    #[test]
    fn resolve_paths_cases() {
        let b = Some(Path::new("/base"));
        let h = Some(Path::new(HOME));
        assert_eq!(resolve_paths("", b, h), None);
        assert_eq!(resolve_paths("   ", b, h), None);
        assert_eq!(resolve_paths("/a", b, h), Some(vec![PathBuf::from("/a")]));
        assert_eq!(
            resolve_paths("~/a,/b,rel", b, h),
            Some(vec!["/home/u/a".into(), "/b".into(), "/base/rel".into()])
        );
        assert_eq!(
            resolve_paths("  /a , /b  ", b, h),
            Some(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            resolve_paths("/a,,/b,", b, h),
            Some(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(resolve_paths("/only,", b, h), Some(vec!["/only".into()]));
        assert_eq!(resolve_paths("rel", None, h), Some(vec![]));
    }

    #[test]
    fn defaults_and_overrides() {
        let r = RawConfig::default().resolve(Some(Path::new("/w")), Some(Path::new(HOME)));
        assert_eq!(r.instructions_dirs, vec![PathBuf::from("/home/u/.coder")]);
        assert_eq!(r.instructions_file, "AGENTS.md");
        assert_eq!(r.skills_dirs, vec![PathBuf::from("/w/.agents/skills")]);
        assert_eq!(r.skill_meta_file, "SKILL.md");
        assert_eq!(r.mcp_config_files, vec![PathBuf::from("/w/.mcp.json")]);
        // No workdir yet: relative defaults resolve to nothing.
        let r = RawConfig::default().resolve(None, Some(Path::new(HOME)));
        assert!(r.skills_dirs.is_empty() && r.mcp_config_files.is_empty());

        let vars = [
            ("CODER_AGENT_EXP_INSTRUCTIONS_DIR", "/legacy"),
            ("CODER_AGENT_EXP_SKILLS_DIR", "/legacy-skills"),
            ("CODER_AGENT_EXP_SKILLS_DIRS", "/s1, s2"),
            ("CODER_AGENT_EXP_INSTRUCTIONS_FILE", "  CLAUDE.md "),
            ("CODER_AGENT_EXP_SKILL_META_FILE", "   "),
            ("CODER_AGENT_EXP_MCP_CONFIG_FILES", "a.json,/b.json"),
        ];
        let raw = RawConfig::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        });
        let r = raw.resolve(Some(Path::new("/w")), Some(Path::new(HOME)));
        assert_eq!(r.instructions_dirs, vec![PathBuf::from("/legacy")]);
        assert_eq!(
            r.skills_dirs,
            vec![PathBuf::from("/s1"), PathBuf::from("/w/s2")]
        );
        assert_eq!(r.instructions_file, "CLAUDE.md");
        assert_eq!(r.skill_meta_file, "SKILL.md");
        assert_eq!(
            r.mcp_config_files,
            vec![PathBuf::from("/w/a.json"), PathBuf::from("/b.json")]
        );
    }
}
