//! Post-failure hints of a `not found` (Coder #25092): a *miscount* hint when a search line
//! differs from a file line in the count of exactly one rune that is repeated (box-drawing rules,
//! `=====`), else an *inversion* hint when the replacement already occurs in the file (the caller
//! swapped `old_text` and `new_text`). Miscount wins, so an inversion hint never steers a caller
//! into editing an unrelated line.
//!
//! Lines are compared on their `TrimSpace`d bodies, and blank lines on either side never count.
//! Coder's tests pin the hint sentences and their lists; they do not pin how sentences are
//! joined, so: base sentence, then `". "`, then the hints joined with `". "`, the total cap
//! being a last element `and N more`.
//!
//! It must not change the outcome of an edit, and must stay bounded on huge files: the miscount
//! scan compares at most [`MAX_MISCOUNT_PAIRS`] (search line, file line) pairs, each in
//! O(distinct runes), keeping only one file line's rune profile at a time; the inversion scan
//! searches at most [`MAX_SUBSTRING_WORK`] bytes, then KMP over line keys (linear).

use memchr::{memchr_iter, memmem};

use super::lines::{self, LineKey};

/// Hint sentences at most (then `and N more`).
const MAX_MISCOUNT_HINTS: usize = 3;
/// Line candidates (or inversion lines) listed at most per hint (then ` and N more`).
const MAX_CANDIDATES: usize = 5;
/// Work bound of the miscount scan, in (search line × file line) comparisons.
pub(super) const MAX_MISCOUNT_PAIRS: usize = 4_000_000;
/// Work bound of the inversion substring scan, in bytes searched.
const MAX_SUBSTRING_WORK: usize = 64 << 20;

/// The hints to append to the base sentence (possibly none).
pub(super) fn not_found_hints(
    content: &[u8],
    content_lines: &[&[u8]],
    search_lines: &[&[u8]],
    replace: &[u8],
    replace_lines: &[&[u8]],
) -> Vec<String> {
    let miscount = miscount_hints(content_lines, search_lines);
    if !miscount.is_empty() {
        return miscount;
    }
    inversion_hint(content, content_lines, replace, replace_lines)
        .into_iter()
        .collect()
}

/// A rune-count profile: (rune, count), sorted by rune.
type Profile = Vec<(char, u32)>;

/// Counts the runes of `body` into `out` (invalid bytes count as U+FFFD, as Go's range does).
fn profile_into(body: &[u8], ascii: &mut [u32; 128], other: &mut Vec<char>, out: &mut Profile) {
    ascii.fill(0);
    other.clear();
    out.clear();
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                ascii[c as usize] += 1;
            } else {
                other.push(c);
            }
        }
        other.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
    }
    out.extend(
        ascii
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (char::from(b as u8), *n)),
    );
    other.sort_unstable();
    for &c in other.iter() {
        match out.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => out.push((c, 1)),
        }
    }
}

/// The one rune whose counts differ between two profiles, with (search count, file count), if
/// exactly one differs.
fn single_rune_difference(
    search: &[(char, u32)],
    file: &[(char, u32)],
) -> Option<(char, u32, u32)> {
    let (mut i, mut j) = (0, 0);
    let mut found = None;
    while i < search.len() || j < file.len() {
        let diff = match (search.get(i), file.get(j)) {
            (Some(&(a, n)), Some(&(b, m))) if a == b => {
                i += 1;
                j += 1;
                (n != m).then_some((a, n, m))
            }
            (Some(&(a, n)), Some(&(b, _))) if a < b => {
                i += 1;
                Some((a, n, 0))
            }
            (Some(&(a, n)), None) => {
                i += 1;
                Some((a, n, 0))
            }
            (_, Some(&(b, m))) => {
                j += 1;
                Some((b, 0, m))
            }
            (None, None) => None,
        };
        if let Some(d) = diff {
            if found.is_some() {
                return None;
            }
            found = Some(d);
        }
    }
    found
}

struct MiscountHint {
    search_line: usize,
    rune: char,
    search_count: u32,
    /// (file count, 1-based line).
    candidates: Vec<(u32, usize)>,
}

fn miscount_hints(content_lines: &[&[u8]], search_lines: &[&[u8]]) -> Vec<String> {
    let mut ascii = [0u32; 128];
    let mut other = Vec::new();
    let search: Vec<(usize, Profile)> = search_lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let body = lines::trim_space(lines::split_ending(line).0);
            if body.is_empty() {
                return None;
            }
            let mut profile = Vec::new();
            profile_into(body, &mut ascii, &mut other, &mut profile);
            Some((i, profile))
        })
        .collect();
    if search.is_empty() {
        return Vec::new();
    }

    let mut found: Vec<MiscountHint> = Vec::new();
    let mut file_profile = Vec::new();
    let mut pairs = 0usize;
    'lines: for (line_no, line) in content_lines.iter().enumerate() {
        let body = lines::trim_space(lines::split_ending(line).0);
        if body.is_empty() {
            continue;
        }
        profile_into(body, &mut ascii, &mut other, &mut file_profile);
        for (search_line, search_profile) in &search {
            pairs += 1;
            if pairs > MAX_MISCOUNT_PAIRS {
                break 'lines;
            }
            let Some((rune, sc, cc)) = single_rune_difference(search_profile, &file_profile) else {
                continue;
            };
            if sc.max(cc) < 2 {
                continue;
            }
            let candidate = (cc, line_no + 1);
            match found
                .iter_mut()
                .find(|h| h.search_line == *search_line && h.rune == rune)
            {
                Some(hint) => hint.candidates.push(candidate),
                None => found.push(MiscountHint {
                    search_line: *search_line,
                    rune,
                    search_count: sc,
                    candidates: vec![candidate],
                }),
            }
        }
    }
    // Hints in search-line order, then in the order their runes were first seen.
    found.sort_by_key(|h| h.search_line);

    let total = found.len();
    let mut out: Vec<String> = found
        .iter()
        .take(MAX_MISCOUNT_HINTS)
        .map(|h| {
            let listed = h
                .candidates
                .iter()
                .take(MAX_CANDIDATES)
                .map(|(count, line)| format!("{count} at line {line}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "Your old_text has {} {} (U+{:04X}); the file has {listed}{}",
                h.search_count,
                go_quote(h.rune),
                u32::from(h.rune),
                and_more(h.candidates.len()),
            )
        })
        .collect();
    if total > MAX_MISCOUNT_HINTS {
        out.push(format!("and {} more", total - MAX_MISCOUNT_HINTS));
    }
    out
}

fn and_more(listed: usize) -> String {
    if listed > MAX_CANDIDATES {
        format!(" and {} more", listed - MAX_CANDIDATES)
    } else {
        String::new()
    }
}

fn inversion_hint(
    content: &[u8],
    content_lines: &[&[u8]],
    replace: &[u8],
    replace_lines: &[&[u8]],
) -> Option<String> {
    if lines::trim_space(replace).is_empty() {
        return None;
    }
    let mut found = substring_lines(content, replace);
    for key in [LineKey::TrimRight, LineKey::TrimSpace] {
        if !found.is_empty() {
            break;
        }
        let content_keys = lines::keys(content_lines, key);
        let replace_keys = lines::keys(replace_lines, key);
        found = lines::find_windows_overlapping(&content_keys, &replace_keys)
            .into_iter()
            .map(|i| i + 1)
            .collect();
    }
    if found.is_empty() {
        return None;
    }
    let listed = found
        .iter()
        .take(MAX_CANDIDATES)
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "Did you swap \"old_text\" and \"new_text\"? Your new_text string appears at line {listed}{}",
        and_more(found.len())
    ))
}

/// The 1-based lines where an occurrence of `needle` starts (overlapping occurrences included),
/// each line once. After an occurrence the search resumes at the next line (later starts on the
/// same line would only repeat it), and it stops after [`MAX_SUBSTRING_WORK`] bytes of search.
fn substring_lines(content: &[u8], needle: &[u8]) -> Vec<usize> {
    let finder = memmem::Finder::new(needle);
    let mut out: Vec<usize> = Vec::new();
    let (mut at, mut line, mut work) = (0, 1, 0usize);
    while let Some(found) = finder.find(&content[at..]) {
        let pos = at + found;
        line += memchr_iter(b'\n', &content[at..pos]).count();
        out.push(line);
        work += found + needle.len();
        if work > MAX_SUBSTRING_WORK {
            break;
        }
        match memchr::memchr(b'\n', &content[pos..]) {
            Some(nl) => {
                at = pos + nl + 1;
                line += 1;
            }
            None => break,
        }
    }
    out
}

/// Go's `%q` of a one-rune string (printable runes as they are, the rest escaped).
fn go_quote(c: char) -> String {
    let inner = match c {
        '"' => "\\\"".to_owned(),
        '\\' => "\\\\".to_owned(),
        '\u{7}' => "\\a".to_owned(),
        '\u{8}' => "\\b".to_owned(),
        '\u{c}' => "\\f".to_owned(),
        '\n' => "\\n".to_owned(),
        '\r' => "\\r".to_owned(),
        '\t' => "\\t".to_owned(),
        '\u{b}' => "\\v".to_owned(),
        c if u32::from(c) < 0x20 || c == '\u{7f}' => format!("\\x{:02x}", u32::from(c)),
        c if !is_go_printable(c) => {
            if u32::from(c) < 0x10000 {
                format!("\\u{:04x}", u32::from(c))
            } else {
                format!("\\U{:08x}", u32::from(c))
            }
        }
        c => c.to_string(),
    };
    format!("\"{inner}\"")
}

/// An approximation of Go's `unicode.IsPrint`: no controls, no white space but U+0020, no
/// common format characters.
fn is_go_printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}
