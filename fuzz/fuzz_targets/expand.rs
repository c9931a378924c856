//! `${VAR}` / `${VAR:-default}` expansion (`agentmcp::expand`) against a model: a template
//! is built from segments (literals, set/empty/unset variables, defaults nesting further
//! templates, invalid names kept verbatim, an unterminated `${` at the end) and the expected
//! text (or the first unset variable) is computed from the segments. Arbitrary strings must
//! never panic, and text without `${` comes back unchanged.

#![no_main]

use agentmcp::{ExpandError, MAX_EXPAND_DEPTH, expand};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// (name, value): values are never expanded again, even when they look like references.
const VARS: &[(&str, Option<&str>)] = &[
    ("A", Some("1")),
    ("EMPTY", Some("")),
    ("UNSET", None),
    ("_x9", Some("/home/u")),
    ("REF", Some("${A}")),
    ("B2", None),
];

fn lookup(k: &str) -> Option<String> {
    VARS.iter()
        .find(|(n, _)| *n == k)
        .and_then(|(_, v)| v.map(str::to_owned))
}

#[derive(Arbitrary, Debug)]
enum Seg {
    Lit(String),
    Var(u8),
    Default(u8, Vec<Seg>),
    /// `${-...}`: not a variable name, kept verbatim.
    BadName(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    raw: String,
    segs: Vec<Seg>,
    /// An unterminated `${...` after the segments.
    open_tail: Option<String>,
}

/// Text with none of the characters that would change the template's structure.
fn clean(s: &str, nested: bool) -> String {
    s.chars()
        .filter(|&c| c != '$' && !(nested && (c == '}' || c == '{')))
        .collect()
}

/// What a too-deep default gives (variable names cannot contain `<`).
const DEEP: &str = "<too deep>";

/// Renders the template and computes what expansion must give; `level` is the nesting of
/// defaults (beyond [`MAX_EXPAND_DEPTH`] a default that is used is an error).
fn render(segs: &[Seg], nested: bool, level: usize, out: &mut String) -> Result<String, String> {
    let mut want = String::new();
    let mut err: Option<String> = (level > MAX_EXPAND_DEPTH).then(|| DEEP.to_owned());
    for s in segs {
        match s {
            Seg::Lit(t) => {
                let t = clean(t, nested);
                out.push_str(&t);
                want.push_str(&t);
            }
            Seg::Var(i) => {
                let (name, v) = VARS[usize::from(*i) % VARS.len()];
                out.push_str(&format!("${{{name}}}"));
                match v {
                    Some(v) => want.push_str(v),
                    None => {
                        err.get_or_insert_with(|| name.to_owned());
                    }
                }
            }
            Seg::Default(i, inner) => {
                let (name, v) = VARS[usize::from(*i) % VARS.len()];
                out.push_str(&format!("${{{name}:-"));
                let d = render(inner, true, level + 1, out);
                out.push('}');
                match (v.filter(|v| !v.is_empty()), d) {
                    (Some(v), _) => want.push_str(v),
                    (None, Ok(d)) => want.push_str(&d),
                    (None, Err(e)) => {
                        err.get_or_insert(e);
                    }
                }
            }
            Seg::BadName(t) => {
                let t = format!("${{-{}}}", clean(t, true));
                out.push_str(&t);
                want.push_str(&t);
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(want),
    }
}

fuzz_target!(|input: Input| {
    let got = expand(&input.raw, &lookup);
    if !input.raw.contains("${") {
        assert_eq!(got.as_deref(), Ok(input.raw.as_str()));
    }
    if let Ok(s) = &got {
        // Expanding is deterministic.
        assert_eq!(expand(&input.raw, &lookup).as_ref(), Ok(s));
    }

    let mut template = String::new();
    let mut want = render(&input.segs, false, 0, &mut template);
    if let Some(t) = &input.open_tail {
        let t = format!("${{{}", clean(t, true));
        template.push_str(&t);
        if let Ok(w) = &mut want {
            w.push_str(&t);
        }
    }
    let got = expand(&template, &lookup).map_err(|e| match e {
        ExpandError::Unset(v) => v,
        ExpandError::TooDeep => DEEP.to_owned(),
    });
    assert_eq!(got, want, "template {template:?}");
});
