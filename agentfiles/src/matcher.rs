//! Coder's search/replace matcher (`fuzzyReplace` in `agent/agentfiles/files.go`): exact,
//! trailing-whitespace-tolerant and indentation-tolerant passes, with indentation translation
//! of the replacement, CRLF preservation, Coder's error strings and post-failure hints, plus the
//! unified diff (`include_diff`) of an edited file. Pure bytes in, bytes out.
//!
//! It must not touch the file system, know HTTP, or allocate beyond a small multiple of its
//! inputs: `edit` reads the file, applies each edit with [`apply_edit`] (the route in
//! `agentd` maps every [`MatchError`] to a 400 with `edit <resolved path>: <Display>`) and
//! calls [`unified_diff`].
//!
//! # Semantics (reference: `coder-agentfiles.md` §3.5)
//!
//! Content is bytes (Coder treats a file as a Go string, so a file that is not valid UTF-8 can
//! still be edited); `old_text`/`new_text` are text. For one edit:
//!
//! 0. An empty `old_text` fails ([`MatchError::EmptySearch`]).
//! 1. Content, search and replace are split after each `\n` (search and replace lose a trailing
//!    empty element; content keeps it, as Go's `strings.SplitAfter`).
//! 2. If replace has one *internal* line ending, every spliced interior line gets the file's
//!    dominant ending (CRLF if CRLF lines outnumber LF lines, else LF) — a CRLF file edited with
//!    LF text stays CRLF. If search and replace both have internal endings and they differ, the
//!    caller meant to change endings: only the exact pass may match.
//! 3. Pass 1, exact substring ([`Pass::Exact`]); the only pass that can match part of a line.
//! 4. Pass 2 ([`Pass::TrailingWhitespace`]) and pass 3 ([`Pass::Indentation`]) slide a window of
//!    search lines over the content lines, comparing bodies trimmed of trailing spaces/tabs,
//!    then of all Unicode whitespace (Go's `TrimSpace`, which is Rust's `char::is_whitespace`:
//!    NBSP counts, BOM does not); LF and CRLF interchange and an empty ending is a wildcard.
//! 5. A fuzzy match is spliced line by line (`splice.rs`): where search and replace agree on a
//!    line's lead, trail or ending the file's bytes win; inserted lines get level-aware
//!    indentation translation into the file's indent unit.
//! 6. Without `replace_all`, more than one non-overlapping match fails
//!    ([`MatchError::Ambiguous`]); with it every non-overlapping match is replaced, left to right.
//! 7. A miss fails with Coder's sentence plus at most one family of hints (`hints.rs`): a
//!    miscounted repeated rune, else a swapped `old_text`/`new_text`.
//!
//! The wording is Coder's newest (`old_text`/`new_text`, #25658/#28467); the leading sentences
//! (`… not found in file`, `… matches N occurrences`) are the stable parts clients match on.
//!
//! # Cost
//!
//! Pass 1 is a `memchr::memmem` search (SIMD two-way; linear). Passes 2/3 normalise each line
//! once and find windows with KMP over the line keys: linear in lines (Coder's scan is
//! O(content lines × search lines)). Hints run only after a miss and are
//! bounded (see `hints.rs`). [`unified_diff`] is bounded in memory and time (see `diff.rs`).

mod diff;
mod hints;
mod lines;
mod splice;
#[cfg(test)]
mod tests;

use memchr::memmem;

pub(crate) use diff::unified_diff;

use lines::{Ending, LineKey};

/// One search/replace edit, as the `edit-files` wire carries it (`old_text`/`new_text`, or the
/// legacy `search`/`replace`: the route picks the spelling, the matcher sees text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit<'a> {
    /// The text to find (`old_text`, legacy `search`). Must not be empty.
    pub old_text: &'a str,
    /// The replacement (`new_text`, legacy `replace`); empty deletes.
    pub new_text: &'a str,
    /// Replace every non-overlapping match instead of requiring exactly one.
    pub replace_all: bool,
}

#[cfg(test)]
impl<'a> Edit<'a> {
    /// An edit that must match exactly once.
    pub(crate) fn new(old_text: &'a str, new_text: &'a str) -> Self {
        Self {
            old_text,
            new_text,
            replace_all: false,
        }
    }

    /// An edit that replaces every match.
    pub(crate) fn replace_all(old_text: &'a str, new_text: &'a str) -> Self {
        Self {
            old_text,
            new_text,
            replace_all: true,
        }
    }
}

/// Which pass matched (an additive diagnostic; Coder does not report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Byte-exact substring.
    Exact,
    /// Line windows, trailing spaces/tabs ignored.
    TrailingWhitespace,
    /// Line windows, surrounding whitespace ignored (indentation-tolerant).
    Indentation,
}

/// A successful edit: the new content and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The content after the edit.
    pub content: Vec<u8>,
    /// The pass that matched.
    pub pass: Pass,
    /// How many places were replaced (1 unless `replace_all`).
    pub replacements: usize,
}

/// Why an edit could not be applied. `Display` is Coder's message, byte for byte; the route
/// prefixes it with `edit <resolved path>: ` and answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MatchError {
    /// `old_text` is empty.
    #[error("old_text must not be empty; include the text you want to match")]
    EmptySearch,
    /// More than one non-overlapping match without `replace_all`.
    #[error(
        "old_text matches {count} occurrences (expected exactly 1). Include more surrounding \
         context to make the match unique, or set replace_all to true"
    )]
    Ambiguous {
        /// The number of non-overlapping matches of the pass that matched.
        count: usize,
    },
    /// No pass matched. `hints` are the diagnostic sentences appended after the base sentence.
    #[error("{}", not_found_message(hints))]
    NotFound {
        /// Hint sentences (miscount hints, or one inversion hint), possibly empty.
        hints: Vec<String>,
    },
    /// Search and replace disagree on line endings (the caller wants to change them), so only
    /// an exact match is allowed, and there was none.
    #[error(
        "old_text not found in file. Verify that old_text matches the file content exactly, \
         including whitespace, indentation, and line endings"
    )]
    NotFoundLineEndings,
}

/// The stable leading sentence of [`MatchError::NotFound`].
pub(crate) const NOT_FOUND_MESSAGE: &str = "old_text not found in file. Verify that old_text matches the \
                                     file content exactly, including whitespace and indentation";

fn not_found_message(hints: &[String]) -> String {
    if hints.is_empty() {
        return NOT_FOUND_MESSAGE.to_owned();
    }
    format!("{NOT_FOUND_MESSAGE}. {}", hints.join(". "))
}

/// An edit of a sequence that failed: its index in the slice given to [`apply_edits`] and why.
/// `Display` is the matcher's message alone (Coder reports no index). Test-only, like
/// [`apply_edits`]: `edit` runs the same loop with a cancellation check in between.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub(crate) struct EditError {
    /// Index of the failing edit.
    pub index: usize,
    /// Why it failed.
    pub error: MatchError,
}

/// Applies one edit to `content`.
pub(crate) fn apply_edit(content: &[u8], edit: &Edit<'_>) -> Result<Vec<u8>, MatchError> {
    apply_edit_detailed(content, edit).map(|applied| applied.content)
}

/// Applies edits in order, each to the result of the previous one (so a later edit sees earlier
/// results, and can become ambiguous because of them, as in Coder). Nothing is returned unless
/// every edit applies.
#[cfg(test)]
pub(crate) fn apply_edits(content: &[u8], edits: &[Edit<'_>]) -> Result<Vec<u8>, EditError> {
    let mut current = content.to_vec();
    for (index, edit) in edits.iter().enumerate() {
        current = apply_edit(&current, edit).map_err(|error| EditError { index, error })?;
    }
    Ok(current)
}

/// Applies one edit and reports which pass matched and how many places changed.
pub(crate) fn apply_edit_detailed(content: &[u8], edit: &Edit<'_>) -> Result<Applied, MatchError> {
    let search = edit.old_text.as_bytes();
    let replace = edit.new_text.as_bytes();
    if search.is_empty() {
        return Err(MatchError::EmptySearch);
    }

    let search_lines = lines::split_lines(search);
    let replace_lines = lines::split_lines(replace);

    // Ending normalization: a replacement with a consistent internal ending is spliced with the
    // file's dominant ending, unless search and replace disagree (the caller's intent).
    let search_internal = lines::internal_ending(&search_lines);
    let replace_internal = lines::internal_ending(&replace_lines);
    let forced = replace_internal.map(|_| lines::dominant_ending(content));
    let caller_intent = matches!(
        (search_internal, replace_internal),
        (Some(s), Some(r)) if s != r
    );

    // Pass 1: exact substring.
    let finder = memmem::Finder::new(search);
    if let Some(first) = finder.find(content) {
        let rewritten;
        let pass1_replace: &[u8] = match forced {
            Some(f) if !caller_intent && replace_internal != Some(f) => {
                rewritten = lines::rewrite_internal_endings(&replace_lines, f);
                &rewritten
            }
            _ => replace,
        };
        return exact_replace(content, &finder, first, pass1_replace, edit.replace_all);
    }

    if caller_intent {
        return Err(MatchError::NotFoundLineEndings);
    }

    let content_lines = lines::split_after(content);
    let forced = forced.map(Ending::bytes);
    for (pass, key) in [
        (Pass::TrailingWhitespace, LineKey::TrimRight),
        (Pass::Indentation, LineKey::TrimSpace),
    ] {
        if let Some(result) = fuzzy_replace_lines(
            &content_lines,
            &search_lines,
            &replace_lines,
            key,
            edit.replace_all,
            forced,
        ) {
            return result.map(|(content, replacements)| Applied {
                content,
                pass,
                replacements,
            });
        }
    }

    Err(MatchError::NotFound {
        hints: hints::not_found_hints(
            content,
            &content_lines,
            &search_lines,
            replace,
            &replace_lines,
        ),
    })
}

/// Pass 1 once `first` is known to be a match.
fn exact_replace(
    content: &[u8],
    finder: &memmem::Finder<'_>,
    first: usize,
    replace: &[u8],
    replace_all: bool,
) -> Result<Applied, MatchError> {
    let needle_len = finder.needle().len();
    let mut positions = vec![first];
    let mut at = first + needle_len;
    while let Some(found) = finder.find(&content[at..]) {
        positions.push(at + found);
        at += found + needle_len;
    }
    if !replace_all && positions.len() > 1 {
        return Err(MatchError::Ambiguous {
            count: positions.len(),
        });
    }
    let mut out = Vec::with_capacity(
        content.len() + positions.len() * replace.len().saturating_sub(needle_len),
    );
    let mut prev = 0;
    for &pos in &positions {
        out.extend_from_slice(&content[prev..pos]);
        out.extend_from_slice(replace);
        prev = pos + needle_len;
    }
    out.extend_from_slice(&content[prev..]);
    Ok(Applied {
        content: out,
        pass: Pass::Exact,
        replacements: positions.len(),
    })
}

/// Passes 2 and 3: `None` when no window matches; otherwise the spliced content and the number
/// of replaced windows, or the ambiguity error.
fn fuzzy_replace_lines(
    content_lines: &[&[u8]],
    search_lines: &[&[u8]],
    replace_lines: &[&[u8]],
    key: LineKey,
    replace_all: bool,
    forced: Option<&[u8]>,
) -> Option<Result<(Vec<u8>, usize), MatchError>> {
    let content_keys = lines::keys(content_lines, key);
    let search_keys = lines::keys(search_lines, key);
    let starts = lines::find_windows(&content_keys, &search_keys);
    if starts.is_empty() {
        return None;
    }
    if !replace_all && starts.len() > 1 {
        return Some(Err(MatchError::Ambiguous {
            count: starts.len(),
        }));
    }
    let window = search_lines.len();
    let total: usize = content_lines.iter().map(|l| l.len()).sum();
    let mut out =
        Vec::with_capacity(total + replace_lines.iter().map(|l| l.len() + 1).sum::<usize>());
    let mut prev = 0;
    for &start in &starts {
        let end = start + window;
        for line in &content_lines[prev..start] {
            out.extend_from_slice(line);
        }
        splice::build_replacement(
            &mut out,
            &content_lines[start..end],
            search_lines,
            replace_lines,
            forced,
            lines::at_no_newline_eof(content_lines, end),
        );
        prev = end;
    }
    for line in &content_lines[prev..] {
        out.extend_from_slice(line);
    }
    Some(Ok((out, starts.len())))
}
