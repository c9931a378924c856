//! SKILL.md front matter: the `---`-delimited YAML block at the top of a skill's meta file,
//! as Coder's `workspacesdk.ParseSkillFrontmatter` reads it (`name`, `description`, body).
//!
//! This is a small parser for the YAML subset front matter uses — a top-level mapping of
//! plain, single-quoted, double-quoted (with escapes), multi-line plain and block (`|`,
//! `>`, with chomping indicators) scalars — not a general YAML parser. Values that YAML
//! would read as something other than a string (numbers, booleans, lists, maps) make `name`
//! or `description` an error, as in Coder; other keys are ignored whatever they hold. Keys
//! are matched exactly first and then case-insensitively (Coder's first generation compared
//! keys case-insensitively, the YAML one does not; accepting both keeps either kind of file).
//!
//! Pure string functions: this module must not touch the file system.
//!
//! A public module (the fuzz target parses with it): `frontmatter::parse` would be ambiguous
//! at the crate root.

use crate::sanitize::strip_html_comments;

/// The parsed front matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontMatter {
    /// `name` (never empty).
    pub name: String,
    /// `description` (empty when absent).
    pub description: String,
    /// Everything after the closing delimiter, HTML comments removed, trimmed.
    pub body: String,
}

/// Why front matter could not be read. Messages are Coder's where Coder has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrontMatterError {
    /// The first line is not `---`.
    #[error("missing opening frontmatter delimiter")]
    MissingOpen,
    /// No line closes the block.
    #[error("missing closing frontmatter delimiter")]
    MissingClose,
    /// `name` is absent, null or empty.
    #[error("frontmatter missing required 'name' field")]
    NameRequired,
    /// `name` or `description` is not a string.
    #[error("frontmatter field {0:?} must be a string")]
    NotString(&'static str),
    /// The block is not valid YAML of the supported subset.
    #[error("invalid frontmatter YAML at line {line}: {problem}")]
    Syntax {
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong.
        problem: YamlProblem,
    },
}

/// What is wrong with a line of the YAML subset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum YamlProblem {
    /// A tab in the indentation.
    #[error("tabs are not allowed for indentation")]
    Tab,
    /// An indented line where a key was expected.
    #[error("unexpected indentation")]
    UnexpectedIndent,
    /// A line without `key: value`.
    #[error("expected `key: value`")]
    ExpectedKeyValue,
    /// A key given twice.
    #[error("mapping key {0:?} already defined")]
    DuplicateKey(String),
    /// A `|`/`>` header with unknown indicators.
    #[error("invalid block scalar header")]
    BlockHeader,
    /// A block scalar line indented less than its first line.
    #[error("bad indentation in block scalar")]
    BlockIndent,
    /// Text after a closing quote.
    #[error("unexpected text after a quoted value")]
    TextAfterQuote,
    /// No closing quote.
    #[error("unterminated quoted value")]
    Unterminated,
    /// A backslash at the end of a double-quoted value.
    #[error("dangling escape in a double-quoted value")]
    DanglingEscape,
    /// An unknown or malformed escape (its text after the backslash).
    #[error("invalid escape \\{0}")]
    BadEscape(String),
}

/// A parsed YAML value of the subset.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Null,
    /// A number, boolean, list, map or anything else that is not a string.
    Other,
}

/// Parses a SKILL.md file's front matter and body.
pub fn parse(content: &str) -> Result<FrontMatter, FrontMatterError> {
    let content = content.strip_prefix('\u{FEFF}').unwrap_or(content);
    let lines: Vec<&str> = content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if lines.first().map(|l| l.trim()) != Some("---") {
        return Err(FrontMatterError::MissingOpen);
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| l.trim() == "---")
        .map(|i| i + 1)
        .ok_or(FrontMatterError::MissingClose)?;
    let map = parse_mapping(&lines[1..close], 2)?;
    let body = strip_html_comments(&lines[close + 1..].join("\n"))
        .trim()
        .to_owned();

    let lookup = |key: &'static str| -> Option<&Value> {
        map.iter()
            .find(|(k, _)| k == key)
            .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    };
    let string = |key: &'static str| -> Result<String, FrontMatterError> {
        match lookup(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::Str(s)) => Ok(s.trim_end_matches(['\r', '\n']).to_owned()),
            Some(Value::Other) => Err(FrontMatterError::NotString(key)),
        }
    };
    let name = string("name")?;
    let description = string("description")?;
    if name.is_empty() {
        return Err(FrontMatterError::NameRequired);
    }
    Ok(FrontMatter {
        name,
        description,
        body,
    })
}

fn syntax(line: usize, problem: YamlProblem) -> FrontMatterError {
    FrontMatterError::Syntax { line, problem }
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_blank_or_comment(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

/// Parses a top-level block mapping. `first_line` is the 1-based number of `lines[0]`.
fn parse_mapping(
    lines: &[&str],
    first_line: usize,
) -> Result<Vec<(String, Value)>, FrontMatterError> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let lno = first_line + i;
        if is_blank_or_comment(line) {
            i += 1;
            continue;
        }
        if line.starts_with('\t') {
            return Err(syntax(lno, YamlProblem::Tab));
        }
        if indent_of(line) != 0 {
            return Err(syntax(lno, YamlProblem::UnexpectedIndent));
        }
        let (key, rest) =
            split_key(line).ok_or_else(|| syntax(lno, YamlProblem::ExpectedKeyValue))?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(syntax(lno, YamlProblem::DuplicateKey(key.to_owned())));
        }
        // The lines that belong to this value: following lines that are blank or indented.
        let mut end = i + 1;
        while end < lines.len() {
            let l = lines[end];
            if l.trim().is_empty() || indent_of(l) > 0 || l.starts_with('\t') {
                end += 1;
            } else {
                break;
            }
        }
        let value = parse_value(rest, &lines[i + 1..end], lno)?;
        out.push((key, value));
        i = end;
    }
    Ok(out)
}

/// Splits `key: rest` (the key may be quoted). `None` when there is no mapping colon.
fn split_key(line: &str) -> Option<(String, &str)> {
    if let Some(q) = line.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = line[1..].find(q)? + 1;
        let key = line[1..close].to_owned();
        let rest = line[close + 1..].trim_start_matches(' ');
        let rest = rest.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        return Some((key, rest.trim()));
    }
    let bytes = line.as_bytes();
    let mut idx = None;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            idx = Some(i);
            break;
        }
        if *b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return None;
        }
    }
    let i = idx?;
    let key = line[..i].trim_end();
    if key.is_empty() {
        return None;
    }
    Some((key.to_owned(), line[i + 1..].trim()))
}

/// Parses the value after `key:`; `more` are the value's continuation lines (indented or
/// blank).
fn parse_value(rest: &str, more: &[&str], lno: usize) -> Result<Value, FrontMatterError> {
    let first = rest.chars().next();
    match first {
        None => {
            // Nested block, multi-line plain scalar, or null.
            let content: Vec<&str> = more
                .iter()
                .copied()
                .filter(|l| !is_blank_or_comment(l))
                .collect();
            let Some(l0) = content.first() else {
                return Ok(Value::Null);
            };
            let t = l0.trim_start();
            if t.starts_with("- ") || t == "-" || split_key(t).is_some() {
                return Ok(Value::Other);
            }
            Ok(plain_scalar(
                &content
                    .iter()
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" "),
            ))
        }
        Some('|') | Some('>') => block_scalar(rest, more, lno),
        Some('"') => double_quoted(rest, more, lno).map(Value::Str),
        Some('\'') => single_quoted(rest, more, lno).map(Value::Str),
        Some('[') | Some('{') => Ok(Value::Other),
        Some('&') | Some('*') | Some('!') => Ok(Value::Other),
        Some(_) => {
            let mut parts = vec![strip_comment(rest)];
            for l in more {
                if is_blank_or_comment(l) {
                    continue;
                }
                parts.push(strip_comment(l.trim()));
            }
            Ok(plain_scalar(&parts.join(" ")))
        }
    }
}

/// A plain scalar's text ends at ` #`.
fn strip_comment(s: &str) -> &str {
    match s.find(" #") {
        Some(i) => s[..i].trim_end(),
        None => s.trim_end(),
    }
}

/// Resolves a plain scalar's type the way YAML 1.2's core schema does.
fn plain_scalar(s: &str) -> Value {
    let s = s.trim();
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if matches!(s, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
        return Value::Other;
    }
    if is_number(s) {
        return Value::Other;
    }
    Value::Str(s.to_owned())
}

fn is_number(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    if let Some(h) = s.strip_prefix("0x") {
        return !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(o) = s.strip_prefix("0o") {
        return !o.is_empty() && o.chars().all(|c| ('0'..='7').contains(&c));
    }
    // [0-9]+ | [0-9]*\.[0-9]* with an optional exponent.
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits = mant.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = mant.chars().filter(|c| *c == '.').count();
    let mant_ok = digits > 0 && dots <= 1 && mant.chars().all(|c| c.is_ascii_digit() || c == '.');
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mant_ok && exp_ok
}

fn block_scalar(header: &str, more: &[&str], lno: usize) -> Result<Value, FrontMatterError> {
    let header = strip_comment(header);
    let mut chars = header.chars();
    let folded = chars.next() == Some('>');
    let mut chomp = 'c';
    let mut explicit_indent = None;
    for c in chars {
        match c {
            '-' | '+' if chomp == 'c' => chomp = c,
            '1'..='9' if explicit_indent.is_none() => explicit_indent = c.to_digit(10),
            _ => return Err(syntax(lno, YamlProblem::BlockHeader)),
        }
    }
    let indent = match explicit_indent {
        Some(n) => n as usize,
        None => more
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| indent_of(l))
            .unwrap_or(0),
    };
    let mut lines: Vec<String> = Vec::new();
    for l in more {
        if l.trim().is_empty() {
            lines.push(String::new());
        } else if indent_of(l) < indent {
            return Err(syntax(lno, YamlProblem::BlockIndent));
        } else {
            lines.push(l[indent..].to_owned());
        }
    }
    // Trailing blank lines are subject to chomping.
    let trailing = lines.iter().rev().take_while(|l| l.is_empty()).count();
    let content = &lines[..lines.len() - trailing];
    let mut text = if folded {
        let mut s = String::new();
        let mut prev_more_indented = false;
        for (i, l) in content.iter().enumerate() {
            let more_indented = l.starts_with(' ');
            if i > 0 {
                let prev_blank = content[i - 1].is_empty();
                if l.is_empty() || more_indented || prev_more_indented {
                    s.push('\n');
                } else if !prev_blank {
                    s.push(' ');
                }
            }
            s.push_str(l);
            prev_more_indented = more_indented;
        }
        s
    } else {
        content.join("\n")
    };
    if !content.is_empty() {
        match chomp {
            '-' => {}
            '+' => {
                text.push('\n');
                for _ in 0..trailing {
                    text.push('\n');
                }
            }
            _ => text.push('\n'),
        }
    }
    Ok(Value::Str(text))
}

/// Joins a quoted scalar's lines the YAML way: a line break folds to a space, an empty line
/// to a newline. Returns the raw text between the quotes (escapes not yet applied); only a
/// comment may follow the closing quote.
fn quoted_source(
    rest: &str,
    more: &[&str],
    lno: usize,
    quote: char,
) -> Result<String, FrontMatterError> {
    let mut src = rest[1..].to_owned();
    let mut idx = 0;
    let mut pending_blank = 0;
    loop {
        if let Some(end) = find_closing(&src, quote) {
            let after = src[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err(syntax(lno, YamlProblem::TextAfterQuote));
            }
            src.truncate(end);
            return Ok(src);
        }
        let Some(l) = more.get(idx) else {
            return Err(syntax(lno, YamlProblem::Unterminated));
        };
        idx += 1;
        let t = l.trim();
        if t.is_empty() {
            pending_blank += 1;
            continue;
        }
        src = src.trim_end().to_owned();
        if pending_blank > 0 {
            for _ in 0..pending_blank {
                src.push('\n');
            }
            pending_blank = 0;
        } else if !(quote == '"' && src.ends_with('\\') && !src.ends_with("\\\\")) {
            src.push(' ');
        } else {
            src.pop();
        }
        src.push_str(t);
    }
}

/// The byte index of the closing quote in `s` (handling `\` escapes for `"` and `''` for `'`).
fn find_closing(s: &str, quote: char) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if quote == '"' && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote as u8 {
            if quote == '\'' && b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

fn single_quoted(rest: &str, more: &[&str], lno: usize) -> Result<String, FrontMatterError> {
    Ok(quoted_source(rest, more, lno, '\'')?.replace("''", "'"))
}

fn double_quoted(rest: &str, more: &[&str], lno: usize) -> Result<String, FrontMatterError> {
    let src = quoted_source(rest, more, lno, '"')?;
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            return Err(syntax(lno, YamlProblem::DanglingEscape));
        };
        match e {
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '/' => out.push('/'),
            'n' => out.push('\n'),
            't' | '\t' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            'a' => out.push('\u{07}'),
            'b' => out.push('\u{08}'),
            'e' => out.push('\u{1B}'),
            'f' => out.push('\u{0C}'),
            'v' => out.push('\u{0B}'),
            ' ' => out.push(' '),
            'N' => out.push('\u{85}'),
            '_' => out.push('\u{A0}'),
            'L' => out.push('\u{2028}'),
            'P' => out.push('\u{2029}'),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                let cp = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == n)
                    .and_then(char::from_u32)
                    .ok_or_else(|| syntax(lno, YamlProblem::BadEscape(format!("{e}{hex}"))))?;
                out.push(cp);
            }
            other => return Err(syntax(lno, YamlProblem::BadEscape(other.to_string()))),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn syntax_texts() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            e("---\n\tname: a\n---\n"),
            "invalid frontmatter YAML at line 2: tabs are not allowed for indentation"
        );
        assert_eq!(
            e("---\n  name: a\n---\n"),
            "invalid frontmatter YAML at line 2: unexpected indentation"
        );
        assert_eq!(
            e("---\nname\n---\n"),
            "invalid frontmatter YAML at line 2: expected `key: value`"
        );
        assert_eq!(
            e("---\nname: a\nname: b\n---\n"),
            "invalid frontmatter YAML at line 3: mapping key \"name\" already defined"
        );
        assert_eq!(
            e("---\nname: \"a\n---\n"),
            "invalid frontmatter YAML at line 2: unterminated quoted value"
        );
        assert_eq!(
            e("---\nname: \"a\\q\"\n---\n"),
            "invalid frontmatter YAML at line 2: invalid escape \\q"
        );
        assert_eq!(
            e("---\nname: \"a\\u12\"\n---\n"),
            "invalid frontmatter YAML at line 2: invalid escape \\u12"
        );
        let texts = [
            (YamlProblem::BlockHeader, "invalid block scalar header"),
            (YamlProblem::BlockIndent, "bad indentation in block scalar"),
            (
                YamlProblem::TextAfterQuote,
                "unexpected text after a quoted value",
            ),
            (
                YamlProblem::DanglingEscape,
                "dangling escape in a double-quoted value",
            ),
        ];
        for (p, t) in texts {
            assert_eq!(p.to_string(), t);
        }
    }

    fn ok(s: &str) -> FrontMatter {
        parse(s).unwrap()
    }

    #[test]
    fn basic() {
        let f = ok("---\nname: my-skill\ndescription: Does things\n---\n# Body\n\nText.\n");
        assert_eq!(f.name, "my-skill");
        assert_eq!(f.description, "Does things");
        assert_eq!(f.body, "# Body\n\nText.");
    }

    #[test]
    fn quoted_values() {
        let f = ok("---\nname: \"my-skill\"\ndescription: 'It''s quoted'\n---\n");
        assert_eq!(
            (f.name.as_str(), f.description.as_str()),
            ("my-skill", "It's quoted")
        );
    }

    #[test]
    fn escaped_double_quoted_value() {
        let f = ok("---\nname: a\ndescription: \"say \\\"hi\\\" \\\\ ok\\n\\u00e9\"\n---\n");
        assert_eq!(f.description, "say \"hi\" \\ ok\né");
    }

    #[test]
    fn plain_hash_value() {
        assert_eq!(
            ok("---\nname: a\ndescription: Use C# well\n---\n").description,
            "Use C# well"
        );
        assert_eq!(
            ok("---\nname: a\ndescription: \"x # y\"\n---\n").description,
            "x # y"
        );
        // A space before `#` starts a YAML comment.
        assert_eq!(
            ok("---\nname: a # the name\ndescription: d\n---\n").name,
            "a"
        );
    }

    #[test]
    fn no_description_and_empty_body() {
        let f = ok("---\nname: a\n---");
        assert_eq!((f.description.as_str(), f.body.as_str()), ("", ""));
    }

    #[test]
    fn html_comments_in_body() {
        assert_eq!(ok("---\nname: a\n---\nx <!-- y --> z\n").body, "x  z");
        assert_eq!(
            ok("---\nname: a\n---\n<!--\nmulti\nline\n-->\nkept\n").body,
            "kept"
        );
    }

    #[test]
    fn bom_crlf_and_whitespace_around_delimiters() {
        let f = ok("\u{FEFF}  ---  \r\nname: a\r\ndescription: d\r\n ---\r\nbody\r\n");
        assert_eq!(
            (f.name.as_str(), f.description.as_str(), f.body.as_str()),
            ("a", "d", "body")
        );
    }

    #[test]
    fn keys_exact_then_case_insensitive_and_unknown_ignored() {
        let f =
            ok("---\nName: a\nDESCRIPTION: d\nversion: 3\nlicense: [mit]\nmeta:\n  x: 1\n---\n");
        assert_eq!((f.name.as_str(), f.description.as_str()), ("a", "d"));
        let f = ok("---\nName: wrong\nname: right\n---\n");
        assert_eq!(f.name, "right");
    }

    #[test]
    fn errors() {
        use FrontMatterError::*;
        for (input, want) in [
            ("name: a\n", MissingOpen),
            ("", MissingOpen),
            ("---\nname: a\n", MissingClose),
            ("---\ndescription: d\n---\n", NameRequired),
            ("---\nname:\n---\n", NameRequired),
            ("---\nname: ''\n---\n", NameRequired),
            ("---\nname: 12\n---\n", NotString("name")),
            ("---\nname: true\n---\n", NotString("name")),
            ("---\nname: [a]\n---\n", NotString("name")),
            (
                "---\nname: a\ndescription:\n  - x\n---\n",
                NotString("description"),
            ),
            (
                "---\nname: a\ndescription: 1.5e3\n---\n",
                NotString("description"),
            ),
        ] {
            assert_eq!(parse(input), Err(want), "{input:?}");
        }
        assert!(matches!(
            parse("---\nname: a\nname: b\n---\n"),
            Err(FrontMatterError::Syntax { line: 3, .. })
        ));
        assert!(matches!(
            parse("---\njust text\n---\n"),
            Err(FrontMatterError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            parse("---\nname: \"open\n---\n"),
            Err(FrontMatterError::Syntax { .. })
        ));
        assert_eq!(
            FrontMatterError::NotString("name").to_string(),
            "frontmatter field \"name\" must be a string"
        );
    }

    #[test]
    fn multi_line_values() {
        let f = ok("---\nname: a\ndescription: |\n  line one\n  line two\n---\n");
        assert_eq!(f.description, "line one\nline two");
        let f = ok("---\nname: a\ndescription: >-\n  folded\n  text\n\n  para\n---\n");
        assert_eq!(f.description, "folded text\npara");
        let f = ok("---\nname: a\ndescription: plain\n  continued here\n---\n");
        assert_eq!(f.description, "plain continued here");
        let f = ok("---\nname: a\ndescription: \"two\n  lines\"\n---\n");
        assert_eq!(f.description, "two lines");
        let f = ok("---\nname: a\ndescription:\n  on next line\n---\n");
        assert_eq!(f.description, "on next line");
    }

    #[test]
    fn numbers_and_strings() {
        for n in [
            "1", "-2", "+3", "1.5", ".5", "1e3", "0x1F", "0o17", ".inf", "-.Inf", ".nan",
        ] {
            assert!(is_number(n), "{n}");
        }
        for s in ["1.2.3", "v1", "e5", "1e", "0x", "-", "."] {
            assert!(!is_number(s), "{s}");
        }
        assert_eq!(
            ok("---\nname: a\ndescription: 1.2.3\n---\n").description,
            "1.2.3"
        );
        assert_eq!(
            ok("---\nname: a\ndescription: yes\n---\n").description,
            "yes"
        );
    }
}
