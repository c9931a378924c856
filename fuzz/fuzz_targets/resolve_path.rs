//! Path resolution (`agentcontextconfig::resolve`): Coder's `ResolvePath` rules checked as a
//! model (blank → none, `~` and `~/x` against home, absolute as is, relative joined to the
//! base), `ResolvePaths` as the entries of a comma-separated list, and a whole `RawConfig`
//! resolving to absolute paths and non-empty basenames whenever the workdir and home are
//! absolute.

#![no_main]

use std::path::{Path, PathBuf};

use agentcontextconfig::{RawConfig, resolve_path, resolve_paths};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    raw: String,
    base: Option<String>,
    home: Option<String>,
    config: [Option<String>; 5],
}

fn model(raw: &str, base: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let t = raw.trim();
    let home = home.filter(|h| !h.as_os_str().is_empty());
    let base = base.filter(|b| !b.as_os_str().is_empty());
    if t.is_empty() {
        None
    } else if t == "~" {
        home.map(Path::to_path_buf)
    } else if let Some(rest) = t.strip_prefix("~/") {
        home.map(|h| h.join(rest))
    } else if t.starts_with('/') {
        Some(PathBuf::from(t))
    } else {
        base.map(|b| b.join(t))
    }
}

fuzz_target!(|input: Input| {
    let base = input.base.as_deref().map(Path::new);
    let home = input.home.as_deref().map(Path::new);
    let got = resolve_path(&input.raw, base, home);
    assert_eq!(got, model(&input.raw, base, home));

    let list = resolve_paths(&input.raw, base, home);
    if input.raw.trim().is_empty() {
        assert_eq!(list, None);
    } else {
        let want: Vec<PathBuf> = input.raw.split(',').filter_map(|e| model(e, base, home)).collect();
        assert_eq!(list, Some(want));
    }

    // With an absolute workdir and home, everything resolves to absolute paths.
    let abs = |s: &Option<String>| format!("/{}", s.as_deref().unwrap_or("").replace(',', ""));
    let (w, h) = (abs(&input.base), abs(&input.home));
    let [a, b, c, d, e] = input.config.clone();
    let raw = RawConfig {
        instructions_dirs: a,
        instructions_file: b,
        skills_dirs: c,
        skill_meta_file: d,
        mcp_config_files: e,
    };
    let r = raw.resolve(Some(Path::new(&w)), Some(Path::new(&h)));
    for p in r.instructions_dirs.iter().chain(&r.skills_dirs).chain(&r.mcp_config_files) {
        assert!(p.is_absolute(), "{p:?}");
    }
    for f in [&r.instructions_file, &r.skill_meta_file] {
        assert!(!f.is_empty() && f.trim() == f.as_str(), "{f:?}");
    }
});
