//! SKILL.md front matter (`agentcontextconfig::frontmatter::parse`): any text gives an error
//! or a non-empty name, never a panic; values written as YAML double-quoted (JSON-escaped),
//! single-quoted and literal block scalars come back as written; the body is everything
//! after the closing delimiter with HTML comments removed, trimmed.

#![no_main]

use agentcontextconfig::frontmatter::parse;
use agentcontextconfig::strip_html_comments;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Style {
    Double,
    Single,
    /// `|` with the value's lines.
    Literal,
}

#[derive(Arbitrary, Debug)]
struct Input {
    raw: String,
    name: String,
    name_style: Style,
    description: Option<(String, Style)>,
    extra_key: Option<String>,
    body: String,
    crlf: bool,
}

/// One value as YAML, and what parsing must return (`None`: not representable this way).
fn yaml(v: &str, style: &Style) -> Option<(String, String)> {
    match style {
        Style::Double => {
            let q = serde_json::to_string(v).ok()?;
            Some((format!(" {q}"), v.trim_end_matches(['\r', '\n']).to_owned()))
        }
        Style::Single => {
            // One line, no quote-folding: keep it to printable text without line breaks.
            if v.chars().any(|c| c.is_control() || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' || c == '\u{FEFF}') {
                return None;
            }
            if v.starts_with(' ') || v.ends_with(' ') {
                return None;
            }
            Some((format!(" '{}'", v.replace('\'', "''")), v.to_owned()))
        }
        Style::Literal => {
            // Lines of text that start with a visible character (indentation is the block's).
            let lines: Vec<&str> = v.split('\n').collect();
            let ok = lines.iter().all(|l| {
                l.chars().next().is_some_and(|c| !c.is_whitespace())
                    && !l.chars().any(|c| c.is_control())
                    && l.trim() != "---"
            });
            if !ok {
                return None;
            }
            let mut s = String::from(" |");
            for l in &lines {
                s.push_str("\n  ");
                s.push_str(l);
            }
            Some((s, v.to_owned()))
        }
    }
}

fuzz_target!(|input: Input| {
    // Arbitrary text: an error or a usable result.
    if let Ok(fm) = parse(&input.raw) {
        assert!(!fm.name.is_empty());
        assert_eq!(fm.body, fm.body.trim());
        assert!(!fm.name.ends_with(['\r', '\n']) && !fm.description.ends_with(['\r', '\n']));
    }

    // Structured.
    let Some((name_yaml, name)) = yaml(&input.name, &input.name_style) else {
        return;
    };
    let mut doc = format!("---\nname:{name_yaml}\n");
    let mut description = String::new();
    if let Some((d, style)) = &input.description {
        let Some((dy, dv)) = yaml(d, style) else { return };
        doc.push_str(&format!("description:{dy}\n"));
        description = dv;
    }
    if let Some(x) = &input.extra_key {
        // Another key, whatever it holds, is ignored.
        let Some((xy, _)) = yaml(x, &Style::Double) else { return };
        doc.push_str(&format!("other:{xy}\n"));
    }
    doc.push_str("---\n");
    doc.push_str(&input.body);
    let doc = if input.crlf { doc.replace('\n', "\r\n") } else { doc };
    let got = parse(&doc);
    if name.is_empty() {
        assert!(got.is_err(), "{doc:?}");
        return;
    }
    let fm = got.unwrap_or_else(|e| panic!("{e}: {doc:?}"));
    assert_eq!(fm.name, name, "{doc:?}");
    assert_eq!(fm.description, description, "{doc:?}");
    // Line ends are split on \n with one trailing \r dropped per line.
    let src = if input.crlf { input.body.replace('\n', "\r\n") } else { input.body.clone() };
    let body: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let body = body.join("\n");
    assert_eq!(fm.body, strip_html_comments(&body).trim(), "{doc:?}");
});
