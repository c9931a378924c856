//! Sanitising of instruction-file text, as Coder's `sanitizeInstructionMarkdown`: line
//! endings normalised to LF, HTML comments removed, a fixed set of invisible runes removed,
//! surrounding whitespace trimmed; plus the 64 KiB cap, which agentd applies **after**
//! sanitising and on a UTF-8 boundary (Coder cuts raw bytes first and may split a rune).
//!
//! Pure string functions: this module must not touch the file system.

/// The cap on an instruction file's (sanitised) content, in bytes.
pub(crate) const MAX_CONTEXT_FILE_BYTES: usize = 64 * 1024;

/// Whether `c` is one of the invisible runes Coder strips (U+200C ZWNJ is deliberately not
/// in the set).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x070F | 0x115F | 0x1160 | 0x17B4 | 0x17B5
        | 0x180B..=0x180F
        | 0x200B | 0x200D | 0x200E | 0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x206F
        | 0x3164
        | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0
        | 0xFFF0..=0xFFF8)
}

/// Removes every `<!-- … -->` (non-greedy, across lines). An unterminated `<!--` is kept,
/// as Go's regexp leaves it.
pub fn strip_html_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("<!--") {
        let after = &rest[start + 4..];
        match after.find("-->") {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &after[end + 3..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Coder's sanitising: CRLF and lone CR to LF, HTML comments removed, invisible runes
/// removed, surrounding whitespace trimmed.
pub(crate) fn sanitize_markdown(s: &str) -> String {
    let s = if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s.to_owned()
    };
    let s = strip_html_comments(&s);
    let s: String = s.chars().filter(|c| !is_invisible(*c)).collect();
    s.trim().to_owned()
}

/// Cuts `s` to at most `max` bytes on a char boundary. Returns whether it was cut.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

/// Sanitises, then caps at [`MAX_CONTEXT_FILE_BYTES`]: `(content, truncated)`.
pub(crate) fn sanitize_and_cap(raw: &str) -> (String, bool) {
    let mut s = sanitize_markdown(raw);
    let cut = truncate_utf8(&mut s, MAX_CONTEXT_FILE_BYTES);
    (s, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_comments() {
        assert_eq!(
            sanitize_markdown("visible\n<!-- hidden -->content"),
            "visible\ncontent"
        );
        assert_eq!(sanitize_markdown("a<!--x\ny\nz-->b<!--c-->d"), "abd");
        assert_eq!(sanitize_markdown("a<!-- open"), "a<!-- open");
        assert_eq!(sanitize_markdown("<!--a--><!--b-->"), "");
        assert_eq!(sanitize_markdown("x<!-- a --> y <!-- b -->z"), "x y z");
    }

    #[test]
    fn line_endings_and_trim() {
        assert_eq!(sanitize_markdown("a\r\nb\rc\n"), "a\nb\nc");
        assert_eq!(sanitize_markdown("  \n\t x \n\n"), "x");
    }

    #[test]
    fn invisible_runes() {
        assert_eq!(sanitize_markdown("a\u{200B}b"), "ab");
        // ZWNJ is kept; every member of the set is removed.
        assert_eq!(sanitize_markdown("a\u{200C}b"), "a\u{200C}b");
        let set = [
            0xAD, 0x34F, 0x61C, 0x70F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180F, 0x200B,
            0x200D, 0x200E, 0x200F, 0x202A, 0x202E, 0x2060, 0x206F, 0x3164, 0xFE00, 0xFE0F, 0xFEFF,
            0xFFA0, 0xFFF0, 0xFFF8,
        ];
        for cp in set {
            let c = char::from_u32(cp).unwrap_or('x');
            assert!(is_invisible(c), "{cp:X}");
            assert_eq!(sanitize_markdown(&format!("a{c}b")), "ab", "{cp:X}");
        }
        for cp in [0x200C, 0x180A, 0x1810, 0x2029, 0x2070, 0xFFF9, 0x20] {
            assert!(!is_invisible(char::from_u32(cp).unwrap_or('x')), "{cp:X}");
        }
    }

    #[test]
    fn cap_after_sanitising_on_char_boundary() {
        // 64 KiB + 100 ASCII: exactly 64 KiB, truncated.
        let (s, t) = sanitize_and_cap(&"a".repeat(MAX_CONTEXT_FILE_BYTES + 100));
        assert_eq!((s.len(), t), (MAX_CONTEXT_FILE_BYTES, true));
        // Exactly 64 KiB: not truncated.
        let (s, t) = sanitize_and_cap(&"a".repeat(MAX_CONTEXT_FILE_BYTES));
        assert_eq!((s.len(), t), (MAX_CONTEXT_FILE_BYTES, false));
        // Invisible runes removed before the cap: fits.
        let raw = format!("{}{}", "a".repeat(60 * 1024), "\u{200B}".repeat(4000));
        let (s, t) = sanitize_and_cap(&raw);
        assert_eq!((s.len(), t), (60 * 1024, false));
        // Multi-byte runes: cut on a boundary, never more than the cap.
        let (s, t) = sanitize_and_cap(&"é".repeat(MAX_CONTEXT_FILE_BYTES));
        assert!(t);
        assert_eq!(s.len(), MAX_CONTEXT_FILE_BYTES);
        let (s, t) = sanitize_and_cap(&format!("a{}", "€".repeat(30_000)));
        assert!(t);
        assert_eq!(s.len(), 1 + 3 * ((MAX_CONTEXT_FILE_BYTES - 1) / 3));
    }
}
