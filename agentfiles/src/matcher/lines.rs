//! Line primitives of the matcher: Go-compatible splitting (`strings.SplitAfter`), endings,
//! the lead/body/trail/ending decomposition, Go's `TrimSpace` on bytes, and the window search
//! of passes 2 and 3 over precomputed line keys.
//!
//! It must not allocate per byte or copy line contents: every line is a slice of its input.

use memchr::{memchr_iter, memmem};

/// A line terminator of the newline class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// `\n`.
    Lf,
    /// `\r\n`.
    CrLf,
}

impl Ending {
    pub(super) fn bytes(self) -> &'static [u8] {
        match self {
            Ending::Lf => b"\n",
            Ending::CrLf => b"\r\n",
        }
    }

    fn of(ending: &[u8]) -> Option<Self> {
        match ending {
            b"\n" => Some(Ending::Lf),
            b"\r\n" => Some(Ending::CrLf),
            _ => None,
        }
    }
}

/// Go's `strings.SplitAfter(s, "\n")`: pieces ending after each `\n`; always at least one piece,
/// and a trailing `\n` yields a final empty piece.
pub(super) fn split_after(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(memchr_iter(b'\n', s).count() + 1);
    let mut start = 0;
    for nl in memchr_iter(b'\n', s) {
        out.push(&s[start..=nl]);
        start = nl + 1;
    }
    out.push(&s[start..]);
    out
}

/// [`split_after`] without the final empty piece (how search and replace are split).
pub(super) fn split_lines(s: &[u8]) -> Vec<&[u8]> {
    let mut out = split_after(s);
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

/// Splits a line into its body and its ending (`\r\n`, `\n` or empty).
pub(super) fn split_ending(line: &[u8]) -> (&[u8], &[u8]) {
    if line.ends_with(b"\r\n") {
        line.split_at(line.len() - 2)
    } else if line.ends_with(b"\n") {
        line.split_at(line.len() - 1)
    } else {
        (line, &[])
    }
}

/// A line's lead (leading spaces and tabs), middle, trail (trailing spaces and tabs), ending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parts<'a> {
    pub(super) lead: &'a [u8],
    pub(super) mid: &'a [u8],
    pub(super) trail: &'a [u8],
    pub(super) ending: &'a [u8],
}

pub(super) fn parts(line: &[u8]) -> Parts<'_> {
    let (body, ending) = split_ending(line);
    let lead_len = body
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let (lead, rest) = body.split_at(lead_len);
    let mid_len = rest.len()
        - rest
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    let (mid, trail) = rest.split_at(mid_len);
    Parts {
        lead,
        mid,
        trail,
        ending,
    }
}

/// The lead of a line (spaces and tabs before the body).
pub(super) fn lead(line: &[u8]) -> &[u8] {
    parts(line).lead
}

pub(super) fn is_newline(ending: &[u8]) -> bool {
    ending == b"\n" || ending == b"\r\n"
}

/// Splice phase: both empty, or both of the newline class (empty is no wildcard here).
pub(super) fn ending_shape_equal(a: &[u8], b: &[u8]) -> bool {
    a == b || (is_newline(a) && is_newline(b))
}

/// The one ending shared by every non-last line (the last may have none); `None` for fewer than
/// two lines, a non-last line without ending, or disagreeing endings.
pub(super) fn internal_ending(lines: &[&[u8]]) -> Option<Ending> {
    if lines.len() < 2 {
        return None;
    }
    let mut want: Option<&[u8]> = None;
    for (i, line) in lines.iter().enumerate() {
        let (_, ending) = split_ending(line);
        if ending.is_empty() {
            if i == lines.len() - 1 {
                continue;
            }
            return None;
        }
        match want {
            None => want = Some(ending),
            Some(w) if w != ending => return None,
            Some(_) => {}
        }
    }
    want.and_then(Ending::of)
}

/// CRLF if CRLF-terminated lines outnumber LF-terminated ones, else LF (ties, no endings).
pub(super) fn dominant_ending(content: &[u8]) -> Ending {
    let newlines = memchr_iter(b'\n', content).count();
    let crlf = memmem::find_iter(content, b"\r\n").count();
    if crlf > newlines - crlf {
        Ending::CrLf
    } else {
        Ending::Lf
    }
}

/// Every non-last line's ending replaced by `ending`; the last keeps its own, and a non-last
/// line without ending (only possible at EOF) is left alone.
pub(super) fn rewrite_internal_endings(lines: &[&[u8]], ending: Ending) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for (i, line) in lines.iter().enumerate() {
        let (body, own) = split_ending(line);
        out.extend_from_slice(body);
        if i == lines.len() - 1 {
            out.extend_from_slice(own);
        } else if !own.is_empty() {
            out.extend_from_slice(ending.bytes());
        }
    }
    out
}

/// Whether the match ending at content line `end` (exclusive) ends the file without a final
/// newline: nothing non-empty follows and the last matched line has no ending.
pub(super) fn at_no_newline_eof(content_lines: &[&[u8]], end: usize) -> bool {
    if end == 0 {
        return false;
    }
    if content_lines[end..].iter().any(|l| !l.is_empty()) {
        return false;
    }
    split_ending(content_lines[end - 1]).1.is_empty()
}

fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// The length of the UTF-8 sequence a leading byte announces (1 for anything invalid).
fn utf8_width(b: u8) -> usize {
    match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// The valid UTF-8 character `s` starts with, and its width.
fn first_char(s: &[u8]) -> Option<(char, usize)> {
    let width = utf8_width(*s.first()?);
    let c = std::str::from_utf8(s.get(..width)?).ok()?.chars().next()?;
    Some((c, width))
}

/// The valid UTF-8 character `s` ends with, and its width.
fn last_char(s: &[u8]) -> Option<(char, usize)> {
    let floor = s.len().saturating_sub(4);
    let mut start = s.len().checked_sub(1)?;
    while start > floor && s[start] & 0xc0 == 0x80 {
        start -= 1;
    }
    let mut chars = std::str::from_utf8(&s[start..]).ok()?.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some((c, s.len() - start))
}

/// Go's `strings.TrimSpace` on bytes: strips Unicode white space (`char::is_whitespace`, the
/// same set as Go's `unicode.IsSpace`) from both ends; an invalid byte stops the trim.
pub(super) fn trim_space(s: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < s.len() {
        let b = s[start];
        if b.is_ascii() {
            if !is_ascii_space(b) {
                break;
            }
            start += 1;
        } else {
            match first_char(&s[start..]) {
                Some((c, width)) if c.is_whitespace() => start += width,
                _ => break,
            }
        }
    }
    let mut end = s.len();
    while end > start {
        let b = s[end - 1];
        if b.is_ascii() {
            if !is_ascii_space(b) {
                break;
            }
            end -= 1;
        } else {
            match last_char(&s[start..end]) {
                Some((c, width)) if c.is_whitespace() => end -= width,
                _ => break,
            }
        }
    }
    &s[start..end]
}

/// Go's `strings.TrimRight(s, " \t")`.
pub(super) fn trim_right_blank(s: &[u8]) -> &[u8] {
    let keep = s.len()
        - s.iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    &s[..keep]
}

/// How a line is normalised before window comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineKey {
    /// Pass 2: trailing spaces and tabs ignored.
    TrimRight,
    /// Pass 3: surrounding Unicode white space ignored.
    TrimSpace,
}

/// A line's normalised body. Endings take no part in window matching: Coder's rule (identical
/// endings match, LF and CRLF interchange, an empty ending is a wildcard) accepts every pair of
/// the three possible endings, so two lines match exactly when their keys are equal — which
/// makes the window search a plain sequence search (KMP below, linear in lines).
pub(super) type Key<'a> = &'a [u8];

pub(super) fn keys<'a>(lines: &[&'a [u8]], key: LineKey) -> Vec<Key<'a>> {
    lines
        .iter()
        .map(|line| {
            let body = split_ending(line).0;
            match key {
                LineKey::TrimRight => trim_right_blank(body),
                LineKey::TrimSpace => trim_space(body),
            }
        })
        .collect()
}

/// KMP failure function: `fail[i]` is the length of the longest proper border of
/// `pattern[..=i]`.
fn failure(pattern: &[Key<'_>]) -> Vec<usize> {
    let mut fail = vec![0; pattern.len()];
    let mut k = 0;
    for i in 1..pattern.len() {
        while k > 0 && pattern[i] != pattern[k] {
            k = fail[k - 1];
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        fail[i] = k;
    }
    fail
}

/// Start indices of the windows of `content` equal to `search`, left to right: every one when
/// `overlapping`, else the greedy non-overlapping ones (a match resumes the scan after itself,
/// as Coder's scan does). O(lines of content + lines of search) line comparisons.
fn kmp(content: &[Key<'_>], search: &[Key<'_>], overlapping: bool) -> Vec<usize> {
    let mut starts = Vec::new();
    let m = search.len();
    if m == 0 || m > content.len() {
        return starts;
    }
    let fail = failure(search);
    let mut q = 0;
    for (i, &line) in content.iter().enumerate() {
        while q > 0 && search[q] != line {
            q = fail[q - 1];
        }
        if search[q] == line {
            q += 1;
        }
        if q == m {
            starts.push(i + 1 - m);
            q = if overlapping { fail[m - 1] } else { 0 };
        }
    }
    starts
}

/// Start indices of the non-overlapping matching windows, left to right.
pub(super) fn find_windows(content: &[Key<'_>], search: &[Key<'_>]) -> Vec<usize> {
    kmp(content, search, false)
}

/// Start indices of every matching window, overlapping ones included.
pub(super) fn find_windows_overlapping(content: &[Key<'_>], search: &[Key<'_>]) -> Vec<usize> {
    kmp(content, search, true)
}
