//! Reads: raw byte ranges (read-file) and Coder's line-numbered reads (read-file-lines).
//!
//! Every open is `O_NONBLOCK` followed by `fstat`, and anything but a regular file is
//! refused before a byte is read, so a FIFO or a device can never block a worker. No read
//! takes more than its limit + 1 bytes (growing files and `/dev/zero` cannot exhaust memory).
//! It must not write.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use crate::error::{FileError, Kind, go_quote};
use crate::path::is_abs;

/// An opened regular file and its size at open.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The file (blocking mode restored).
    pub file: File,
    /// `fstat` size.
    pub size: u64,
}

/// Why [`open_regular`] refused.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The open failed.
    Io(std::io::Error),
    /// `fstat` failed.
    Stat(std::io::Error),
    /// A directory.
    Dir,
    /// A FIFO, device or socket.
    Special,
}

/// Opens `path` read-only without blocking on FIFOs and refuses what is not a regular file.
pub(crate) fn open_regular(path: &str) -> Result<Opened, OpenError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Stat)?;
    if meta.is_dir() {
        return Err(OpenError::Dir);
    }
    if !meta.is_file() {
        return Err(OpenError::Special);
    }
    Ok(Opened {
        file,
        size: meta.len(),
    })
}

/// Reads up to `max` bytes from the start (stops at EOF); never more than `max`.
pub(crate) fn read_bounded(file: &File, max: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A byte range to stream for read-file.
#[derive(Debug)]
pub struct FileRange {
    /// The file.
    pub file: File,
    /// First byte.
    pub offset: u64,
    /// Bytes to send (`min(size - offset, limit or size)`).
    pub len: u64,
}

/// read-file: opens `path` and computes the section Coder sends. Errors as Coder's:
/// relative 400, ENOENT 404, EACCES 403, a directory `open <p>: not a file` (400); a FIFO,
/// device or socket `open <p>: not a regular file` (400, instead of blocking).
pub fn open_range(path: &str, offset: u64, limit: u64) -> Result<FileRange, FileError> {
    if !is_abs(path) {
        return Err(FileError::not_absolute(path));
    }
    let o = open_regular(path).map_err(|e| match e {
        OpenError::Io(e) => FileError::io("open", path, &e),
        OpenError::Stat(e) => {
            FileError::new(Kind::Internal, FileError::io("stat", path, &e).message)
        }
        OpenError::Dir => FileError::invalid(format!("open {path}: not a file")),
        OpenError::Special => FileError::invalid(format!("open {path}: not a regular file")),
    })?;
    let limit = if limit == 0 { o.size } else { limit };
    let len = o.size.saturating_sub(offset).min(limit);
    Ok(FileRange {
        file: o.file,
        offset,
        len,
    })
}

/// Reads the next chunk of a [`FileRange`] at `pos` (relative to the range), at most `max`
/// bytes; an empty chunk means EOF (the file shrank).
pub fn read_chunk(range: &FileRange, pos: u64, max: usize) -> std::io::Result<Vec<u8>> {
    let want = (range.len.saturating_sub(pos)).min(max as u64) as usize;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match range
            .file
            .read_at(&mut buf[got..], range.offset + pos + got as u64)
        {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The four client-chosen limits of read-file-lines.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    /// `max_file_size` (default 1 MiB).
    pub max_file_size: u64,
    /// `max_line_bytes` (default 1024).
    pub max_line_bytes: u64,
    /// `max_response_lines` (default 2000).
    pub max_response_lines: u64,
    /// `max_response_bytes` (default 32768).
    pub max_response_bytes: u64,
}

impl Default for LineLimits {
    fn default() -> Self {
        Self {
            max_file_size: 1 << 20,
            max_line_bytes: 1024,
            max_response_lines: 2000,
            max_response_bytes: 32768,
        }
    }
}

/// Hard ceiling on `max_file_size` (Coder trusts the client; we read at most this + 1).
pub(crate) const MAX_FILE_SIZE_CEILING: u64 = 256 << 20;

/// A successful read-file-lines answer (Coder's `ReadFileLinesResponse` minus `success`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// Size in bytes (at stat; the bytes read when the file grew).
    pub file_size: u64,
    /// Lines in the file (a trailing newline counts an empty last line, as Coder's split).
    pub total_lines: u64,
    /// Lines returned.
    pub lines_read: u64,
    /// `N\tline` joined with `\n`.
    pub content: String,
}

/// Why read-file-lines answers `success:false`. The texts are the answer's `error` field,
/// worded as Coder's (see the spec §3.2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinesError {
    /// The path is relative.
    #[error("file path must be absolute: {}", go_quote(.path))]
    NotAbsolute {
        /// The path as given.
        path: String,
    },
    /// ENOENT at open.
    #[error("file does not exist: {path}")]
    NotFound {
        /// The path.
        path: String,
        /// The open error.
        source: std::io::Error,
    },
    /// EACCES/EPERM at open.
    #[error("permission denied: {path}")]
    Denied {
        /// The path.
        path: String,
        /// The open error.
        source: std::io::Error,
    },
    /// Any other open error.
    #[error("open file: {}", FileError::io("open", .path, .source))]
    Open {
        /// The path.
        path: String,
        /// The open error.
        source: std::io::Error,
    },
    /// `fstat` failed.
    #[error("stat file: {}", FileError::io("stat", .path, .source))]
    Stat {
        /// The path.
        path: String,
        /// The `fstat` error.
        source: std::io::Error,
    },
    /// A directory.
    #[error("not a file: {path}")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// A FIFO, device or socket.
    #[error("not a regular file: {path}")]
    NotRegular {
        /// The path.
        path: String,
    },
    /// Larger than `max_file_size` (at stat, or in the bytes read).
    #[error(
        "file is {size} bytes which exceeds the maximum of {max} bytes. Use grep, sed, or awk to extract the content you need, or use offset and limit to read a portion."
    )]
    TooBig {
        /// The size seen.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The read failed.
    #[error("read file: {}", FileError::io("read", .path, .source))]
    Read {
        /// The path.
        path: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The content has NUL bytes.
    #[error(
        "file appears to be binary (it contains NUL bytes): {path}. Use read-file for raw bytes, or a tool such as xxd or strings."
    )]
    Binary {
        /// The path.
        path: String,
    },
    /// `offset` is past the last line.
    #[error("offset {offset} is beyond the file length of {total} lines")]
    OffsetBeyondEnd {
        /// The 1-based offset asked for.
        offset: u64,
        /// Lines in the file.
        total: u64,
    },
    /// The answer would exceed `max_response_bytes`.
    #[error(
        "output would exceed {max} bytes. Read less at a time using offset and limit parameters."
    )]
    TooManyBytes {
        /// The limit.
        max: u64,
    },
    /// The answer would exceed `max_response_lines`.
    #[error(
        "output would exceed {max} lines. Read less at a time using offset and limit parameters."
    )]
    TooManyLines {
        /// The limit.
        max: u64,
    },
}

/// Coder's read-file-lines over `path`. The error's text is the `error` field of a
/// `success:false` answer. Improvements: non-regular
/// files refused, reads bounded to `max_file_size + 1`, truncation on a UTF-8 boundary,
/// files with NUL bytes reported as binary.
pub fn read_lines(
    path: &str,
    offset: i64,
    limit: i64,
    limits: LineLimits,
) -> Result<Lines, LinesError> {
    let path_owned = || path.to_owned();
    if !is_abs(path) {
        return Err(LinesError::NotAbsolute { path: path_owned() });
    }
    let o = match open_regular(path) {
        Ok(o) => o,
        Err(OpenError::Io(source)) => {
            let path = path_owned();
            return Err(match crate::error::kind_of(&source) {
                Kind::NotFound => LinesError::NotFound { path, source },
                Kind::Denied => LinesError::Denied { path, source },
                _ => LinesError::Open { path, source },
            });
        }
        Err(OpenError::Stat(source)) => {
            return Err(LinesError::Stat {
                path: path_owned(),
                source,
            });
        }
        Err(OpenError::Dir) => return Err(LinesError::NotAFile { path: path_owned() }),
        Err(OpenError::Special) => return Err(LinesError::NotRegular { path: path_owned() }),
    };
    let max_file = limits.max_file_size.min(MAX_FILE_SIZE_CEILING);
    let too_big = |size: u64| LinesError::TooBig {
        size,
        max: max_file,
    };
    if o.size > max_file {
        return Err(too_big(o.size));
    }
    let data = read_bounded(&o.file, max_file + 1).map_err(|source| LinesError::Read {
        path: path_owned(),
        source,
    })?;
    if data.len() as u64 > max_file {
        return Err(too_big(data.len() as u64));
    }
    let file_size = o.size.max(data.len() as u64);
    if data.is_empty() {
        return Ok(Lines {
            file_size,
            ..Lines::default()
        });
    }
    if memchr_nul(&data) {
        return Err(LinesError::Binary { path: path_owned() });
    }
    format_lines(&data, file_size, offset, limit, limits)
}

fn memchr_nul(data: &[u8]) -> bool {
    data.contains(&0)
}

/// The pure part of read-file-lines: split on `\n`, page, truncate, number, budget.
pub(crate) fn format_lines(
    data: &[u8],
    file_size: u64,
    offset: i64,
    limit: i64,
    limits: LineLimits,
) -> Result<Lines, LinesError> {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let total = lines.len() as u64;
    let offset = offset.max(1) as u64;
    if offset > total {
        return Err(LinesError::OffsetBeyondEnd { offset, total });
    }
    let limit = if limit <= 0 {
        limits.max_response_lines
    } else {
        limit as u64
    };
    let start = offset - 1;
    let end = start.saturating_add(limit).min(total);
    let mut out = String::new();
    let mut bytes = 0u64;
    let mut count = 0u64;
    for i in start..end {
        let raw = lines[i as usize];
        let mut line = String::new();
        let _ = std::fmt::Write::write_fmt(&mut line, format_args!("{}\t", i + 1));
        if raw.len() as u64 > limits.max_line_bytes {
            let cut = utf8_floor(raw, limits.max_line_bytes as usize);
            line.push_str(&String::from_utf8_lossy(&raw[..cut]));
            line.push_str("... [truncated]");
        } else {
            line.push_str(&String::from_utf8_lossy(raw));
        }
        let mut new_total = bytes + line.len() as u64;
        if count > 0 {
            new_total += 1;
        }
        if new_total > limits.max_response_bytes {
            return Err(LinesError::TooManyBytes {
                max: limits.max_response_bytes,
            });
        }
        if count >= limits.max_response_lines {
            return Err(LinesError::TooManyLines {
                max: limits.max_response_lines,
            });
        }
        if count > 0 {
            out.push('\n');
        }
        out.push_str(&line);
        bytes = new_total;
        count += 1;
    }
    Ok(Lines {
        file_size,
        total_lines: total,
        lines_read: count,
        content: out,
    })
}

/// The largest cut ≤ `max` that does not split a UTF-8 sequence (a cut inside invalid bytes
/// stays at `max`).
fn utf8_floor(raw: &[u8], max: usize) -> usize {
    let mut cut = max.min(raw.len());
    let floor = cut.saturating_sub(3);
    while cut > floor && cut < raw.len() && (raw[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    if cut < raw.len() && (raw[cut] & 0xC0) == 0x80 {
        max.min(raw.len())
    } else {
        cut
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_error_texts() {
        let io = |n| std::io::Error::from_raw_os_error(n);
        let p = || "/w/f".to_owned();
        let cases = [
            (
                LinesError::NotAbsolute { path: "a\tb".into() },
                "file path must be absolute: \"a\\tb\"".to_owned(),
            ),
            (
                LinesError::NotFound {
                    path: p(),
                    source: io(2),
                },
                "file does not exist: /w/f".to_owned(),
            ),
            (
                LinesError::Denied {
                    path: p(),
                    source: io(13),
                },
                "permission denied: /w/f".to_owned(),
            ),
            (
                LinesError::Open {
                    path: p(),
                    source: io(5),
                },
                format!("open file: {}", FileError::io("open", "/w/f", &io(5))),
            ),
            (
                LinesError::Stat {
                    path: p(),
                    source: io(5),
                },
                format!("stat file: {}", FileError::io("stat", "/w/f", &io(5))),
            ),
            (LinesError::NotAFile { path: p() }, "not a file: /w/f".to_owned()),
            (
                LinesError::NotRegular { path: p() },
                "not a regular file: /w/f".to_owned(),
            ),
            (
                LinesError::TooBig { size: 11, max: 10 },
                "file is 11 bytes which exceeds the maximum of 10 bytes. Use grep, sed, or awk to extract the content you need, or use offset and limit to read a portion.".to_owned(),
            ),
            (
                LinesError::Read {
                    path: p(),
                    source: io(5),
                },
                format!("read file: {}", FileError::io("read", "/w/f", &io(5))),
            ),
            (
                LinesError::Binary { path: p() },
                "file appears to be binary (it contains NUL bytes): /w/f. Use read-file for raw bytes, or a tool such as xxd or strings.".to_owned(),
            ),
            (
                LinesError::OffsetBeyondEnd {
                    offset: 4,
                    total: 3,
                },
                "offset 4 is beyond the file length of 3 lines".to_owned(),
            ),
            (
                LinesError::TooManyBytes { max: 10 },
                "output would exceed 10 bytes. Read less at a time using offset and limit parameters.".to_owned(),
            ),
            (
                LinesError::TooManyLines { max: 1 },
                "output would exceed 1 lines. Read less at a time using offset and limit parameters.".to_owned(),
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            FileError::io("read", "/w/f", &io(5)).message,
            "read /w/f: input/output error"
        );
    }

    #[test]
    fn coder_line_cases() {
        let l = LineLimits::default();
        let r = format_lines(b"line1\nline2\nline3", 17, 1, 0, l).unwrap();
        assert_eq!(r.content, "1\tline1\n2\tline2\n3\tline3");
        assert_eq!((r.total_lines, r.lines_read), (3, 3));
        let r = format_lines(b"a\nb\n", 4, 1, 0, l).unwrap();
        assert_eq!(r.content, "1\ta\n2\tb\n3\t");
        let r = format_lines(b"line1\nline2\nline3", 17, 2, 1, l).unwrap();
        assert_eq!(r.content, "2\tline2");
        assert_eq!(
            format_lines(b"a\nb\nc", 5, 100, 0, l)
                .unwrap_err()
                .to_string(),
            "offset 100 is beyond the file length of 3 lines"
        );
        let long = "x".repeat(1025);
        let r = format_lines(long.as_bytes(), 1025, 1, 0, l).unwrap();
        assert_eq!(r.content, format!("1\t{}... [truncated]", "x".repeat(1024)));
        // UTF-8-safe: a 3-byte rune straddling the cut is left out whole.
        let s = format!("{}€", "x".repeat(1023));
        let r = format_lines(s.as_bytes(), 0, 1, 0, l).unwrap();
        assert_eq!(r.content, format!("1\t{}... [truncated]", "x".repeat(1023)));
        let tight = LineLimits {
            max_response_bytes: 10,
            ..l
        };
        assert!(
            format_lines(b"aaaa\nbbbb\ncccc", 0, 1, 0, tight)
                .unwrap_err()
                .to_string()
                .starts_with("output would exceed 10 bytes")
        );
        let few = LineLimits {
            max_response_lines: 1,
            ..l
        };
        assert!(
            format_lines(b"a\nb", 0, 1, 2, few)
                .unwrap_err()
                .to_string()
                .starts_with("output would exceed 1 lines")
        );
    }
}
