//! `${VAR}` and `${VAR:-default}` expansion, as Claude Code does in `.mcp.json`.
//!
//! Anything else containing `$` is left verbatim (no `$VAR`, no shell syntax). The default
//! may itself contain `${...}` references. Must not read the process environment.

/// Expansion failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${VAR}` where VAR is unset and there is no default.
    #[error("environment variable {0:?} is not set and has no default")]
    Unset(String),
    /// Defaults nested deeper than [`MAX_EXPAND_DEPTH`].
    #[error("${{...}} defaults are nested more than {MAX_EXPAND_DEPTH} levels deep")]
    TooDeep,
}

/// How deeply `${A:-${B:-...}}` defaults may nest. Each level is a recursion (and a rescan of
/// the rest), so a crafted `.mcp.json` must not choose the depth: 100 000 levels overflowed
/// the stack of the thread loading it, which aborts the daemon.
pub const MAX_EXPAND_DEPTH: usize = 16;

/// Expands `input` using `lookup`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    expand_at(input, lookup, 0)
}

fn expand_at(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    level: usize,
) -> Result<String, ExpandError> {
    if level > MAX_EXPAND_DEPTH {
        return Err(ExpandError::TooDeep);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        // Find the matching close brace, allowing nested ${...} in defaults.
        let mut depth = 1usize;
        let mut end = None;
        let b = after.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'$' && b.get(j + 1) == Some(&b'{') {
                depth += 1;
                j += 2;
                continue;
            }
            if b[j] == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = Some(j);
                    break;
                }
            }
            j += 1;
        }
        let Some(end) = end else {
            // Unterminated: keep verbatim.
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let body = &after[..end];
        let (name, default) = match body.find(":-") {
            Some(k) => (&body[..k], Some(&body[k + 2..])),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            out.push_str(&rest[i..i + 2 + end + 1]);
        } else {
            match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(&expand_at(d, lookup, level + 1)?),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn l(k: &str) -> Option<String> {
        match k {
            "A" => Some("1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn cases() {
        assert_eq!(expand("x${A}y", &l).unwrap(), "x1y");
        assert_eq!(expand("${B:-def}", &l).unwrap(), "def");
        assert_eq!(expand("${B:-${A}}", &l).unwrap(), "1");
        assert_eq!(expand("${EMPTY:-d}", &l).unwrap(), "d");
        assert_eq!(expand("${EMPTY}", &l).unwrap(), "");
        assert_eq!(expand("$A $$ ${", &l).unwrap(), "$A $$ ${");
        assert_eq!(expand("${_R%/}", &l).unwrap(), "${_R%/}");
        assert_eq!(expand("${B}", &l), Err(ExpandError::Unset("B".into())));
        assert_eq!(expand("no vars", &l).unwrap(), "no vars");
    }

    #[test]
    fn deep_defaults_are_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("{}x{}", "${B:-".repeat(n), "}".repeat(n));
        assert_eq!(expand(&deep(MAX_EXPAND_DEPTH), &l).unwrap(), "x");
        assert_eq!(
            expand(&deep(MAX_EXPAND_DEPTH + 1), &l),
            Err(ExpandError::TooDeep)
        );
        // What used to abort the process (and took quadratic time before that).
        let t = std::time::Instant::now();
        assert_eq!(expand(&deep(100_000), &l), Err(ExpandError::TooDeep));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // A set variable never looks at its default.
        assert_eq!(expand(&format!("${{A:-{}}}", deep(100)), &l).unwrap(), "1");
    }
}
