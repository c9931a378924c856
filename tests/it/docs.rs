//! `docs/` against what it documents: `api.md` lists exactly the OpenAPI document's
//! operations; `configuration.md` lists exactly the flags of every subcommand (clap's
//! definition in `agentd/src/cli.rs`) with their env vars and defaults, hidden flags in
//! their own section; `troubleshooting.md` names every error message agentd answers over
//! HTTP (the file API's library `agentfiles` included, but for the matcher's wording) and
//! every warning or error it logs.
//!
//! `AGENTD_DOCS_PRINT=1 cargo test -p agentd-tests --test it docs::` prints the expected
//! configuration tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agentd_tests::openapi::Spec;
use clap::CommandFactory;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn api_md_lists_exactly_the_documented_operations() {
    let md = read("docs/api.md");
    let listed: BTreeSet<(String, String)> = md
        .lines()
        .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
        .map(|h| {
            let (m, p) = h.split_once(' ').expect("### `METHOD /path`");
            (m.to_owned(), p.to_owned())
        })
        .collect();
    assert_eq!(listed, Spec::embedded().operations());
}

/// One documented flag: (flag, env, default) — default is clap's, or `None` when clap has
/// none (the doc then says in words what the default is).
type Row = (String, String, Option<String>);

/// Per subcommand path (`serve`, `ctx add`, ...): visible and hidden flags.
fn clap_flags() -> BTreeMap<String, (BTreeSet<Row>, BTreeSet<Row>)> {
    fn walk(
        cmd: &clap::Command,
        prefix: &str,
        out: &mut BTreeMap<String, (BTreeSet<Row>, BTreeSet<Row>)>,
    ) {
        let subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
        if !subs.is_empty() {
            for s in subs {
                if s.get_name() == "help" {
                    continue;
                }
                let p = if prefix.is_empty() {
                    s.get_name().to_owned()
                } else {
                    format!("{prefix} {}", s.get_name())
                };
                walk(s, &p, out);
            }
            return;
        }
        let entry = out.entry(prefix.to_owned()).or_default();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let env = a
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_else(|| "—".into());
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            let default = (!defaults.is_empty()).then(|| defaults.join(","));
            let row = (format!("--{long}"), env, default);
            if a.is_hide_set() {
                entry.1.insert(row);
            } else {
                entry.0.insert(row);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&agentd::Cli::command(), "", &mut out);
    // `doctor` takes every `serve` flag; the doc lists only its own.
    let serve = out["serve"].clone();
    let doctor = out.get_mut("doctor").unwrap();
    doctor.0.retain(|r| !serve.0.contains(r));
    doctor.1.retain(|r| !serve.1.contains(r));
    out
}

/// The rows of `configuration.md`: `## agentd <sub>` sections, table rows
/// `| `--flag` | `ENV` | default | what |`, hidden ones after a `### Hidden` heading.
fn doc_flags(md: &str) -> BTreeMap<String, (BTreeSet<Row>, BTreeSet<Row>)> {
    let mut out: BTreeMap<String, (BTreeSet<Row>, BTreeSet<Row>)> = BTreeMap::new();
    let mut section = None;
    let mut hidden = false;
    let unquote = |s: &str| s.trim().trim_matches('`').to_owned();
    for l in md.lines() {
        if let Some(s) = l.strip_prefix("## `agentd ") {
            section = Some(s.trim_end_matches('`').to_owned());
            out.entry(section.clone().unwrap()).or_default();
            hidden = false;
        } else if l.starts_with("### Hidden") {
            hidden = true;
        } else if l.starts_with("| `--")
            && let Some(s) = &section
        {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            assert!(cells.len() >= 4, "bad row: {l}");
            let default = cells[2].trim();
            let default =
                (default.starts_with('`') && default.ends_with('`') && !default.contains(' '))
                    .then(|| unquote(default));
            assert!(!cells[2].trim().is_empty(), "empty default cell: {l}");
            let row = (unquote(cells[0]), unquote(cells[1]), default);
            let e = out.get_mut(s).unwrap();
            if hidden {
                e.1.insert(row);
            } else {
                e.0.insert(row);
            }
        }
    }
    out
}

#[test]
fn configuration_md_matches_the_clap_definition() {
    let want = clap_flags();
    if std::env::var_os("AGENTD_DOCS_PRINT").is_some() {
        for (sub, (visible, hidden)) in &want {
            println!("## `agentd {sub}`\n");
            for (label, rows) in [("", visible), ("### Hidden\n", hidden)] {
                if rows.is_empty() {
                    continue;
                }
                println!("{label}| flag | env | default | what |\n|---|---|---|---|");
                for (f, e, d) in rows {
                    let d = d.as_deref().map(|d| format!("`{d}`")).unwrap_or("?".into());
                    let e = if e == "—" {
                        e.clone()
                    } else {
                        format!("`{e}`")
                    };
                    println!("| `{f}` | {e} | {d} | |");
                }
                println!();
            }
        }
    }
    let got = doc_flags(&read("docs/configuration.md"));
    // A flag whose default clap does not know may say it in words: compare those loosely.
    let loose = |m: &BTreeMap<String, (BTreeSet<Row>, BTreeSet<Row>)>, clap_side: bool| {
        m.iter()
            .map(|(k, (v, h))| {
                let strip = |s: &BTreeSet<Row>| -> BTreeSet<Row> {
                    s.iter()
                        .map(|(f, e, d)| {
                            let known = want
                                .get(k)
                                .map(|(a, b)| {
                                    a.iter().chain(b).any(|(wf, _, wd)| wf == f && wd.is_some())
                                })
                                .unwrap_or(false);
                            let d = if known || clap_side { d.clone() } else { None };
                            (f.clone(), e.clone(), d)
                        })
                        .collect()
                };
                (k.clone(), (strip(v), strip(h)))
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        loose(&got, false),
        loose(&want, true),
        "docs/configuration.md vs cli.rs"
    );
}

/// The `.rs` files under `dir`, recursively. The edit matcher's sentences (`edit <path>:
/// <why>`, `agentfiles/src/matcher*`) are its own wording, which troubleshooting.md documents
/// by their stable parts only, so they are left out.
fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_stem()
            .is_some_and(|s| s.to_string_lossy().starts_with("match"))
        {
            continue;
        }
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// String literals of the error messages agentd answers (`ApiError` constructors) and the
/// messages of its `warn!`/`error!` log lines.
fn error_strings() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    for krate in [
        "agentd",
        "agentproc",
        "agentmcp",
        "gitwatch",
        "agentcontextconfig",
        "agentfiles",
    ] {
        rs_files(&repo().join(krate).join("src"), &mut files);
    }
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for pat in [
            "bad_request(\"",
            "not_found(\"",
            "internal(\"",
            "StatusCode::TOO_MANY_REQUESTS, \"",
            "StatusCode::GATEWAY_TIMEOUT,\n",
            "StatusCode::GATEWAY_TIMEOUT, \"",
            "StatusCode::REQUEST_TIMEOUT, \"",
            // agentfiles: `FileError::invalid("...")`, `FileError::new(Kind::X, "...")`.
            "FileError::invalid(\"",
            "Kind::Internal,",
            "Kind::Invalid,",
            "Kind::Denied,",
            "Kind::NotFound,",
            "Kind::Mismatch,",
            "Kind::TooLarge,",
            "StatusCode::FORBIDDEN, \"",
            "StatusCode::UNAUTHORIZED, \"",
            "StatusCode::METHOD_NOT_ALLOWED, \"",
        ] {
            for (i, _) in text.match_indices(pat) {
                let rest = &text[i + pat.len()..];
                let rest = rest.trim_start();
                // Only a string literal right after the pattern (not `Kind::X, format!(..)`).
                let Some(rest) = rest
                    .strip_prefix('"')
                    .or(pat.ends_with('"').then_some(rest))
                else {
                    continue;
                };
                let lit = rest.split('"').next().unwrap();
                if !lit.is_empty() && !lit.contains('{') && !lit.ends_with('\\') {
                    out.insert(lit.to_owned());
                }
            }
        }
        for mac in ["warn!(", "error!("] {
            for (i, _) in text.match_indices(mac) {
                let rest = &text[i + mac.len()..];
                let call = rest.split(");").next().unwrap();
                // The message is the call's last string literal.
                let lits: Vec<&str> = call.split('"').collect();
                if lits.len() >= 3 {
                    let lit = lits[lits.len() - 2];
                    if !lit.contains('{') && lit.len() > 3 && !lit.starts_with(',') {
                        out.insert(lit.to_owned());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn troubleshooting_md_names_every_error_message() {
    let md = read("docs/troubleshooting.md");
    let missing: Vec<String> = error_strings()
        .into_iter()
        .filter(|s| !md.contains(s.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md does not mention: {missing:#?}"
    );
}
