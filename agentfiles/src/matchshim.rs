//! Stand-in for `matcher` until it lands: exact (pass 1) replacement only and a whole-file
//! diff, with the signatures the batch layer calls. Replaced by `crate::matcher` on merge.
//!
//! It must not touch the file system.

/// One search/replace edit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// Text to find (`old_text` / `search`).
    pub search: String,
    /// Replacement (`new_text` / `replace`).
    pub replace: String,
    /// Replace every occurrence.
    pub replace_all: bool,
}

/// A matcher failure (Coder's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatchError(pub String);

/// Applies `edits` in order; the failing edit's index and error.
pub fn apply_edits(content: &str, edits: &[Edit]) -> Result<String, (usize, MatchError)> {
    let mut s = content.to_owned();
    for (i, e) in edits.iter().enumerate() {
        if e.search.is_empty() {
            return Err((
                i,
                MatchError("old_text must not be empty; include the text you want to match".into()),
            ));
        }
        let n = s.matches(e.search.as_str()).count();
        if n == 0 {
            return Err((i, MatchError("old_text not found in file. Verify that old_text matches the file content exactly, including whitespace and indentation".into())));
        }
        if e.replace_all {
            s = s.replace(e.search.as_str(), &e.replace);
        } else if n > 1 {
            return Err((
                i,
                MatchError(format!(
                    "old_text matches {n} occurrences (expected exactly 1). Include more surrounding context to make the match unique, or set replace_all to true"
                )),
            ));
        } else {
            s = s.replacen(e.search.as_str(), &e.replace, 1);
        }
    }
    Ok(s)
}

/// A unified diff of `old` → `new` labelled `label` on both sides (empty when equal).
pub fn unified_diff(label: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let o: Vec<&str> = old.split_inclusive('\n').collect();
    let n: Vec<&str> = new.split_inclusive('\n').collect();
    let mut out = format!(
        "--- {label}\n+++ {label}\n@@ -1,{} +1,{} @@\n",
        o.len(),
        n.len()
    );
    for l in o {
        out.push('-');
        out.push_str(l);
        if !l.ends_with('\n') {
            out.push('\n');
        }
    }
    for l in n {
        out.push('+');
        out.push_str(l);
        if !l.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
