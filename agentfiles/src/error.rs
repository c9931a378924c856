//! The one error type of the file API: a class (what kind of failure, which `agentd` maps to a
//! status code) and Coder's message text, worded the way Go's `*PathError` and `%q` print.
//!
//! It must not name HTTP status codes; the classes are domain words.

use std::fmt::Write as _;

/// What kind of failure (the wire maps it: invalid 400, denied 403, not found 404,
/// mismatch 412, too large 413, internal 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The request cannot be served as asked (relative path, a directory, a matcher miss).
    Invalid,
    /// The OS said EACCES or EPERM.
    Denied,
    /// The file (or a parent) does not exist.
    NotFound,
    /// An expected SHA-256 precondition did not hold.
    Mismatch,
    /// A size cap was exceeded.
    TooLarge,
    /// Anything else.
    Internal,
}

/// A file-API failure: its class and Coder's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileError {
    /// The class.
    pub kind: Kind,
    /// The message, as Coder words it.
    pub message: String,
}

impl FileError {
    /// An error of `kind` with `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `Kind::Invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, message)
    }

    /// `file path must be absolute: "<p>"`.
    pub fn not_absolute(path: &str) -> Self {
        Self::invalid(format!("file path must be absolute: {}", go_quote(path)))
    }

    /// A Go `*PathError` (`<op> <path>: <strerror>`), classed by errno: ENOENT is not found,
    /// EACCES/EPERM denied, a path that cannot name a file (ENAMETOOLONG, a NUL byte) invalid,
    /// anything else internal.
    pub fn io(op: &str, path: &str, e: &std::io::Error) -> Self {
        Self::new(kind_of(e), format!("{op} {path}: {}", go_strerror(e)))
    }

    /// Prefixes the message (`write <path>: ...`), keeping the class.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

/// The class of an OS error.
pub(crate) fn kind_of(e: &std::io::Error) -> Kind {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Kind::NotFound,
        Some(libc::EACCES | libc::EPERM) => Kind::Denied,
        // The caller's path is too long for the kernel: a malformed request.
        Some(libc::ENAMETOOLONG) => Kind::Invalid,
        _ => match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            std::io::ErrorKind::PermissionDenied => Kind::Denied,
            // No errno: Rust refused the caller's path itself (a NUL byte) before any
            // syscall. A malformed request, not a server fault.
            std::io::ErrorKind::InvalidInput if e.raw_os_error().is_none() => Kind::Invalid,
            _ => Kind::Internal,
        },
    }
}

/// An OS error as Go prints it: the C library's text with a lower-case first letter and no
/// `(os error N)` suffix (`no such file or directory`).
pub(crate) fn go_strerror(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let s = std::io::Error::from_raw_os_error(code).to_string();
            match s.rfind(" (os error ") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_ascii_uppercase() && !text.starts_with("I/O") => {
            first.to_ascii_lowercase().to_string() + chars.as_str()
        }
        Some(_) if text.starts_with("Input/output") => {
            "input/output".to_owned() + &text["Input/output".len()..]
        }
        _ => text,
    }
}

/// Go's `%q` of a string: double quotes, `\"` and `\\`, `\n`/`\t`/`\r`/... escapes for
/// control characters, `\u`-escapes for other non-printable runes; printable Unicode kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_words() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            FileError::io("open", "/x", &e).message,
            "open /x: no such file or directory"
        );
        assert_eq!(FileError::io("open", "/x", &e).kind, Kind::NotFound);
        let e = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(go_strerror(&e), "input/output error");
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(kind_of(&e), Kind::Denied);
        let e = std::fs::File::open(format!("/{}", "a".repeat(300))).unwrap_err();
        assert_eq!(kind_of(&e), Kind::Invalid);
        assert_eq!(go_strerror(&e), "file name too long");
        let e = std::fs::File::open("/a\0b").unwrap_err();
        assert_eq!(kind_of(&e), Kind::Invalid);
        assert_eq!(
            FileError::io("open", "/a\0b", &e).message,
            "open /a\0b: file name contained an unexpected NUL byte"
        );
        assert_eq!(go_quote("a\"b\\c\nd é"), "\"a\\\"b\\\\c\\nd é\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
    }
}
