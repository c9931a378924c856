//! Bounded accumulation of `git diff` output: splits the stream at `diff --git ` file
//! boundaries, replaces a file whose patch exceeds the per-file cap with Coder's stub, and
//! replaces the whole diff with Coder's placeholder when the total exceeds the total cap.
//!
//! Memory stays bounded by the caps whatever git prints (a 1 GiB one-line file included).
//! This module must not run processes or know where the bytes come from.

/// Coder's humanized byte size (`go-humanize`'s `Bytes`: SI units, one decimal below 10).
fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor();
    let e = (e as usize).min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// The per-file stub line (Coder G1).
fn file_too_large_line(size: u64) -> String {
    format!(
        "File diff too large to show. Diff size: {}",
        humanize_bytes(size)
    )
}

/// The whole-diff placeholder (Coder G1/G2).
fn total_too_large(size: u64) -> String {
    format!(
        "Total diff too large to show. Size: {}. Showing branch and remote only.",
        humanize_bytes(size)
    )
}

/// Accumulates diff bytes with caps. Feed with [`DiffCap::push`], finish with
/// [`DiffCap::finish`]. Several git outputs can be fed in sequence; each must end at a line
/// boundary (git's output always does).
#[derive(Debug)]
pub(crate) struct DiffCap {
    per_file: usize,
    total_cap: usize,
    /// Completed, capped file sections.
    out: Vec<u8>,
    /// The current file section (bounded by `per_file` + one line of header slack).
    cur: Vec<u8>,
    /// Bytes of the current section, counted even when not kept.
    cur_size: u64,
    /// The current section went over the per-file cap; `cur` holds its header only.
    cur_over: bool,
    /// The current (partial) line, when it must be inspected for a boundary.
    line_start: bool,
    /// Size of the capped output, counted even past the total cap.
    total: u64,
    /// The total cap was exceeded: nothing more is kept.
    over_total: bool,
    /// The start of a line too short yet to tell whether it begins a file section.
    pending: Vec<u8>,
}

impl DiffCap {
    /// A new accumulator.
    pub(crate) fn new(per_file: usize, total_cap: usize) -> Self {
        Self {
            per_file,
            total_cap,
            out: Vec::new(),
            cur: Vec::new(),
            cur_size: 0,
            cur_over: false,
            line_start: true,
            total: 0,
            over_total: false,
            pending: Vec::new(),
        }
    }

    /// Feeds a chunk of git's stdout.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.pending.is_empty() {
            self.push_inner(chunk);
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            self.push_inner(&joined);
        }
    }

    fn push_inner(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.line_start && chunk.len() < 11 && memchr(b'\n', chunk).is_none() {
                self.pending.extend_from_slice(chunk);
                return;
            }
            if self.line_start && starts_file(chunk) {
                self.close_section();
            }
            let (line, rest) = match memchr(b'\n', chunk) {
                Some(i) => (&chunk[..=i], &chunk[i + 1..]),
                None => (chunk, &chunk[chunk.len()..]),
            };
            self.line_start = line.last() == Some(&b'\n');
            self.cur_size += line.len() as u64;
            if !self.cur_over {
                self.cur.extend_from_slice(line);
                if self.cur.len() > self.per_file {
                    self.cur_over = true;
                    let header_end = header_len(&self.cur);
                    self.cur.truncate(header_end);
                }
            }
            chunk = rest;
        }
    }

    /// Ends the current file section. Chunks may split lines anywhere: `line_start`
    /// remembers where the previous chunk ended, so a mid-line chunk is never a boundary.
    fn close_section(&mut self) {
        if self.cur.is_empty() && self.cur_size == 0 {
            return;
        }
        let mut section = std::mem::take(&mut self.cur);
        if self.cur_over {
            if section.last() != Some(&b'\n') && !section.is_empty() {
                section.push(b'\n');
            }
            section.extend_from_slice(b"@@ -0,0 +1 @@\n+");
            section.extend_from_slice(file_too_large_line(self.cur_size).as_bytes());
            section.push(b'\n');
        }
        self.total += section.len() as u64;
        if !self.over_total && self.out.len() + section.len() <= self.total_cap {
            self.out.extend_from_slice(&section);
        } else {
            // Over the total cap: stop keeping bytes, keep counting.
            self.over_total = true;
            self.out = Vec::new();
        }
        self.cur_size = 0;
        self.cur_over = false;
    }

    /// The final diff text: the capped diff, or the total placeholder.
    pub(crate) fn finish(mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.line_start = false;
            self.push_inner(&pending);
        }
        self.close_section();
        if self.total > self.total_cap as u64 {
            return total_too_large(self.total);
        }
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

fn starts_file(chunk: &[u8]) -> bool {
    chunk.starts_with(b"diff --git ") || chunk.starts_with(b"diff --cc ")
}

/// Length of a section's header: everything before the first hunk (`@@`) line, or the whole
/// kept text when no hunk started yet.
fn header_len(section: &[u8]) -> usize {
    let mut pos = 0;
    while pos < section.len() {
        if section[pos..].starts_with(b"@@") {
            return pos;
        }
        match memchr(b'\n', &section[pos..]) {
            Some(i) => pos += i + 1,
            None => return pos,
        }
    }
    pos
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(82), "82 B");
        assert_eq!(humanize_bytes(1000), "1.0 kB");
        assert_eq!(humanize_bytes(300_000), "300 kB");
        assert_eq!(humanize_bytes(3_145_728), "3.1 MB");
        assert_eq!(humanize_bytes(5_242_880), "5.2 MB");
        assert_eq!(humanize_bytes(1_048_576), "1.0 MB");
    }

    #[test]
    fn small_diffs_pass_through_byte_identical() {
        let text = b"diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/y b/y\nnew file mode 100644\n--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+diff --git inside\n";
        for split in [1, 3, 7, 100] {
            let mut c = DiffCap::new(1 << 20, 3 << 20);
            for part in text.chunks(split) {
                c.push(part);
            }
            assert_eq!(c.finish().as_bytes(), text);
        }
    }

    #[test]
    fn oversized_file_becomes_a_stub_and_others_survive() {
        let mut big = b"diff --git a/big b/big\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/big\n@@ -0,0 +1,2000 @@\n".to_vec();
        for _ in 0..2000 {
            big.extend_from_slice(b"+0123456789012345678901234567890123456789\n");
        }
        let size = big.len() as u64;
        let small = b"diff --git a/s b/s\n--- a/s\n+++ b/s\n@@ -1 +1 @@\n-a\n+b\n";
        let mut c = DiffCap::new(4096, 1 << 20);
        c.push(&big);
        c.push(small);
        let out = c.finish();
        assert_eq!(
            out,
            format!(
                "diff --git a/big b/big\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/big\n@@ -0,0 +1 @@\n+File diff too large to show. Diff size: {}\n{}",
                humanize_bytes(size),
                String::from_utf8_lossy(small)
            )
        );
    }

    #[test]
    fn total_over_cap_is_the_placeholder() {
        let mut c = DiffCap::new(1 << 20, 1000);
        for i in 0..10 {
            c.push(format!("diff --git a/{i} b/{i}\n+{}\n", "x".repeat(200)).as_bytes());
        }
        let out = c.finish();
        assert!(
            out.starts_with("Total diff too large to show. Size: 2.")
                && out.ends_with(" kB. Showing branch and remote only."),
            "{out}"
        );
    }
}
