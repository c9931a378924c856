//! The splice of a fuzzy match (Coder's `buildReplacementLines`): per replacement line, the
//! file's lead/trail/ending win where search and replace agree, the replacement's where they
//! disagree; inserted lines get level-aware indentation translation into the file's unit.
//!
//! It must not match anything: the window is chosen by the caller, and `matched.len()` equals
//! `search.len()`.

use super::lines::{self, Parts};

/// An indentation unit: one tab, or N spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IndentUnit {
    Tab,
    Spaces(usize),
}

impl IndentUnit {
    fn len(self) -> usize {
        match self {
            IndentUnit::Tab => 1,
            IndentUnit::Spaces(n) => n,
        }
    }

    fn byte(self) -> u8 {
        match self {
            IndentUnit::Tab => b'\t',
            IndentUnit::Spaces(_) => b' ',
        }
    }

    fn repeat(self, level: usize) -> Vec<u8> {
        vec![self.byte(); self.len() * level]
    }
}

pub(super) fn indent_gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The smallest consistent unit over the leads of lines that have a body: a tab, or the GCD of
/// the space leads. `None` without indented lines, or when tabs and spaces mix (within a lead or
/// across lines).
pub(super) fn detect_indent_unit<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> Option<IndentUnit> {
    let (mut saw_tab, mut saw_space, mut gcd) = (false, false, 0);
    for line in lines {
        let Parts { lead, mid, .. } = lines::parts(line);
        if lead.is_empty() || mid.is_empty() {
            continue;
        }
        if lead.iter().all(|&b| b == b'\t') {
            saw_tab = true;
        } else if lead.iter().all(|&b| b == b' ') {
            saw_space = true;
            gcd = if gcd == 0 {
                lead.len()
            } else {
                indent_gcd(gcd, lead.len())
            };
        } else {
            return None;
        }
    }
    match (saw_tab, saw_space) {
        (true, true) => None,
        (true, false) => Some(IndentUnit::Tab),
        _ if gcd > 0 => Some(IndentUnit::Spaces(gcd)),
        _ => None,
    }
}

/// `lead` as a whole number of `unit`s.
pub(super) fn indent_level(lead: &[u8], unit: IndentUnit) -> Option<usize> {
    let len = unit.len();
    if len == 0 || !lead.len().is_multiple_of(len) || lead.iter().any(|&b| b != unit.byte()) {
        return None;
    }
    Some(lead.len() / len)
}

/// The file-side lead of an inserted line: `file_unit × (file_base + rep_level − search_base)`,
/// where the replacement lead `r_lead` and the reference search lead `s_lead` are measured in
/// the caller's unit and the reference content lead `c_lead` in the file's.
pub(super) fn translate_indent_level(
    r_lead: &[u8],
    s_lead: &[u8],
    c_lead: &[u8],
    search_unit: IndentUnit,
    file_unit: IndentUnit,
) -> Option<Vec<u8>> {
    let rep_level = indent_level(r_lead, search_unit)?;
    let search_base = indent_level(s_lead, search_unit)?;
    let file_base = indent_level(c_lead, file_unit)?;
    let target = (file_base + rep_level).checked_sub(search_base)?;
    Some(file_unit.repeat(target))
}

/// The longest common prefix and (non-overlapping) suffix of search and replace lines under
/// `TrimSpace` equality of their bodies.
fn align(search: &[&[u8]], replace: &[&[u8]]) -> (usize, usize) {
    let eq = |a: &[u8], b: &[u8]| {
        lines::trim_space(lines::split_ending(a).0) == lines::trim_space(lines::split_ending(b).0)
    };
    let max_prefix = search.len().min(replace.len());
    let mut prefix = 0;
    while prefix < max_prefix && eq(search[prefix], replace[prefix]) {
        prefix += 1;
    }
    let max_suffix = max_prefix - prefix;
    let mut suffix = 0;
    while suffix < max_suffix
        && eq(
            search[search.len() - 1 - suffix],
            replace[replace.len() - 1 - suffix],
        )
    {
        suffix += 1;
    }
    (prefix, suffix)
}

/// Appends the splice of `replace` over the matched content lines to `out`.
pub(super) fn build_replacement(
    out: &mut Vec<u8>,
    matched: &[&[u8]],
    search: &[&[u8]],
    replace: &[&[u8]],
    forced: Option<&[u8]>,
    at_no_newline_eof: bool,
) {
    if replace.is_empty() {
        return;
    }
    let (prefix, suffix) = align(search, replace);
    // Search and replace together inform the caller's unit (a one-line search still gets the
    // unit from the replacement's inserted depths).
    let search_unit = detect_indent_unit(search.iter().chain(replace).copied());
    let file_unit = detect_indent_unit(matched.iter().copied());
    let (n_search, n_replace) = (search.len(), replace.len());
    let middle = n_search - prefix - suffix;
    let last = n_replace - 1;

    for (i, &r_line) in replace.iter().enumerate() {
        let (ref_idx, inserted) = if i < prefix {
            (i, false)
        } else if i >= n_replace - suffix {
            (i + n_search - n_replace, false)
        } else if i - prefix < middle {
            (i, false)
        } else {
            // A pure insertion: its lead says which scope it belongs to.
            let r_lead = lines::lead(r_line);
            let idx = if prefix > 0 && suffix > 0 {
                let prefix_lead = lines::lead(replace[prefix - 1]);
                let suffix_lead = lines::lead(replace[n_replace - suffix]);
                if r_lead == suffix_lead || r_lead != prefix_lead {
                    n_search - suffix
                } else {
                    prefix - 1
                }
            } else if suffix > 0 {
                n_search - suffix
            } else if prefix > 0 {
                prefix - 1
            } else {
                i.min(n_search - 1)
            };
            (idx, true)
        };

        let s = lines::parts(search[ref_idx]);
        let r = lines::parts(r_line);
        let c = lines::parts(matched[ref_idx]);

        let mut lead_owned = None;
        let mut lead = r.lead;
        let mut trail = r.trail;
        if r.mid.is_empty() {
            // A body-less line keeps its own whitespace: no ghosts.
        } else if inserted {
            lead = c.lead;
            if let (Some(su), Some(fu)) = (search_unit, file_unit) {
                lead_owned = translate_indent_level(r.lead, s.lead, c.lead, su, fu);
            }
        } else {
            if s.lead == r.lead {
                lead = c.lead;
            }
            if s.trail == r.trail {
                trail = c.trail;
            }
        }

        let mut ending = r.ending;
        if !inserted && lines::ending_shape_equal(s.ending, r.ending) {
            ending = c.ending;
            // Interior lines keep their newline even where the file's line had none.
            if c.ending.is_empty() && i < last {
                ending = r.ending;
            }
        }
        if inserted && i == last && at_no_newline_eof {
            ending = b"";
        }
        if let Some(f) = forced
            && (i < last || !at_no_newline_eof)
        {
            ending = f;
        }
        if i == last && !at_no_newline_eof && ending.is_empty() {
            ending = forced.unwrap_or(b"\n");
        }

        out.extend_from_slice(lead_owned.as_deref().unwrap_or(lead));
        out.extend_from_slice(r.mid);
        out.extend_from_slice(trail);
        out.extend_from_slice(ending);
    }
}
