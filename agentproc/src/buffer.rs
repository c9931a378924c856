//! The output buffer of one process: a fixed head, a rolling window (whose last bytes are the
//! "tail"), and the LLM-ready rendering of Coder's head+tail format.
//!
//! Memory is bounded whatever the process prints: at most `head_cap` + `window_cap` bytes
//! (16 KiB + 64 KiB by default), allocated lazily. Rendering never splits a UTF-8 character,
//! never invents a newline, and keeps the rendered string within `render_limit` bytes (32 KiB,
//! chatd's own cut) so the tail survives. This module is pure data: no I/O, no locking (the
//! owner wraps it in a mutex), no knowledge of JSON.
//!
//! A public module for its limits (`buffer::MAX_HEAD_BYTES`, `buffer::truncate_lines`, …,
//! which the fuzz target checks against a model): they only read well qualified. The buffer's
//! types are re-exported at the crate root, where the supervisor's API names them.

/// Bytes kept from the start of the output.
pub const MAX_HEAD_BYTES: usize = 16384;
/// Bytes kept from the end of the output for the head+tail rendering.
pub const MAX_TAIL_BYTES: usize = 16384;
/// Lines longer than this many bytes are cut.
pub const MAX_LINE_LENGTH: usize = 2048;
/// Upper bound of a rendered output string (chatd cuts at 32768 bytes).
pub const MAX_RENDERED_BYTES: usize = 32768;
/// Size of the rolling window that incremental (`since`) reads are served from.
pub const STREAM_WINDOW_BYTES: usize = 65536;
/// Upper bound of one incremental read.
pub const MAX_SINCE_BYTES: usize = 32768;
/// Appended to a cut line.
pub const LINE_SUFFIX: &str = " ... [truncated]";

/// How output was shortened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Head and tail kept, the middle omitted (Coder's `head_tail`).
    HeadTail,
    /// Everything kept except the ends of over-long lines.
    Lines,
}

impl Strategy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::HeadTail => "head_tail",
            Strategy::Lines => "lines",
        }
    }
}

/// What rendering left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Bytes the process wrote.
    pub original_bytes: u64,
    /// Length of the rendered string, markers included.
    pub retained_bytes: u64,
    /// Bytes of output not shown (the omitted middle plus the ends of cut lines).
    pub omitted_bytes: u64,
    /// How output was shortened.
    pub strategy: Strategy,
}

/// A bounded output buffer.
#[derive(Debug, Clone)]
pub struct OutputBuffer {
    head_cap: usize,
    tail_cap: usize,
    window_cap: usize,
    render_limit: usize,
    max_line: usize,
    head: Vec<u8>,
    /// The last `min(total, window_cap)` bytes of the stream; a ring once full.
    ring: Vec<u8>,
    /// Index of the oldest byte once the ring is full.
    ring_pos: usize,
    total: u64,
}

impl Default for OutputBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// The raw bytes a rendering needs, copied out of the buffer (render outside any lock).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
    head_cap: usize,
    render_limit: usize,
    max_line: usize,
}

/// The result of an incremental read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinceRead {
    /// Output after the requested offset (at most [`MAX_SINCE_BYTES`] rendered bytes).
    pub output: String,
    /// The offset to ask for next time.
    pub next_offset: u64,
    /// Bytes between the requested offset and the oldest byte still in the window (lost).
    pub gap_bytes: u64,
}

impl OutputBuffer {
    /// A buffer with Coder's sizes (16 KiB head, 16 KiB tail) and a 64 KiB window.
    pub fn new() -> Self {
        Self::sized(MAX_HEAD_BYTES, MAX_TAIL_BYTES)
    }

    /// A buffer with custom head and tail sizes (tests use tiny ones).
    pub fn sized(head_cap: usize, tail_cap: usize) -> Self {
        Self {
            head_cap,
            tail_cap,
            window_cap: STREAM_WINDOW_BYTES.max(tail_cap),
            render_limit: MAX_RENDERED_BYTES,
            max_line: MAX_LINE_LENGTH,
            head: Vec::new(),
            ring: Vec::new(),
            ring_pos: 0,
            total: 0,
        }
    }

    /// Overrides the rolling window size (at least the tail size).
    pub fn with_window(mut self, window_cap: usize) -> Self {
        self.window_cap = window_cap.max(self.tail_cap).max(1);
        self
    }

    /// Overrides the rendered-size limit.
    pub fn with_render_limit(mut self, limit: usize) -> Self {
        self.render_limit = limit;
        self
    }

    /// Appends output. Returns the number of bytes taken (always all of them).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        self.total += data.len() as u64;
        if self.head.len() < self.head_cap {
            let n = (self.head_cap - self.head.len()).min(data.len());
            if self.head.capacity() == 0 {
                self.head
                    .reserve_exact(self.head_cap.min(data.len().max(256)));
            }
            grow_exact(&mut self.head, n, self.head_cap);
            self.head.extend_from_slice(&data[..n]);
        }
        let mut d = if data.len() > self.window_cap {
            &data[data.len() - self.window_cap..]
        } else {
            data
        };
        if self.ring.len() < self.window_cap {
            let n = (self.window_cap - self.ring.len()).min(d.len());
            grow_exact(&mut self.ring, n, self.window_cap);
            self.ring.extend_from_slice(&d[..n]);
            d = &d[n..];
            self.ring_pos = 0;
        }
        while !d.is_empty() {
            let n = (self.window_cap - self.ring_pos).min(d.len());
            self.ring[self.ring_pos..self.ring_pos + n].copy_from_slice(&d[..n]);
            self.ring_pos = (self.ring_pos + n) % self.window_cap;
            d = &d[n..];
        }
        data.len()
    }

    /// Bytes written so far.
    pub fn total_written(&self) -> u64 {
        self.total
    }

    /// Bytes of the head+tail view (Coder's `Len`).
    pub fn len(&self) -> usize {
        self.head.len() + self.tail_len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Head and tail, raw, as a copy (Coder's `Bytes`).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend_from_slice(&self.tail());
        v
    }

    /// Bytes allocated for output (for memory accounting).
    pub fn allocated(&self) -> usize {
        self.head.capacity() + self.ring.capacity()
    }

    fn tail_len(&self) -> usize {
        let after_head = self.total - self.head.len() as u64;
        usize::try_from(after_head)
            .unwrap_or(usize::MAX)
            .min(self.tail_cap)
    }

    /// The whole window in stream order.
    fn window(&self) -> Vec<u8> {
        if self.ring.len() < self.window_cap {
            self.ring.clone()
        } else {
            let mut v = Vec::with_capacity(self.ring.len());
            v.extend_from_slice(&self.ring[self.ring_pos..]);
            v.extend_from_slice(&self.ring[..self.ring_pos]);
            v
        }
    }

    /// The last `n` bytes of the window (`n` ≤ window length).
    fn last_bytes(&self, n: usize) -> Vec<u8> {
        let len = self.ring.len();
        let n = n.min(len);
        if len < self.window_cap {
            return self.ring[len - n..].to_vec();
        }
        // Full ring: the newest byte is just before ring_pos.
        let mut v = Vec::with_capacity(n);
        if n <= self.ring_pos {
            v.extend_from_slice(&self.ring[self.ring_pos - n..self.ring_pos]);
        } else {
            let from_end = n - self.ring_pos;
            v.extend_from_slice(&self.ring[len - from_end..]);
            v.extend_from_slice(&self.ring[..self.ring_pos]);
        }
        v
    }

    fn tail(&self) -> Vec<u8> {
        self.last_bytes(self.tail_len())
    }

    /// Copies what a rendering needs.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            head: self.head.clone(),
            tail: self.tail(),
            total: self.total,
            head_cap: self.head_cap,
            render_limit: self.render_limit,
            max_line: self.max_line,
        }
    }

    /// Renders the head+tail view (Coder's `Output`).
    pub fn output(&self) -> (String, Option<Truncation>) {
        self.snapshot().render()
    }

    /// Output written at or after byte `offset`, from the rolling window. When `complete`
    /// is false (the writer may still add bytes) an incomplete trailing UTF-8 character is
    /// held back for the next read.
    pub fn read_since(&self, offset: u64, complete: bool) -> SinceRead {
        let window = self.window();
        let win_start = self.total - window.len() as u64;
        if offset >= self.total {
            return SinceRead {
                output: String::new(),
                next_offset: self.total,
                gap_bytes: 0,
            };
        }
        let (start, mut gap) = if offset < win_start {
            (win_start, win_start - offset)
        } else {
            (offset, 0)
        };
        let mut skip = usize::try_from(start - win_start).unwrap_or(0);
        if gap > 0 {
            let c = leading_continuations(&window[skip..]);
            skip += c;
            gap += c as u64;
        }
        let raw = &window[skip..];
        let mut end = raw.len();
        if !complete {
            end -= incomplete_suffix_len(raw);
        }
        let (output, used) = take_prefix(&raw[..end], MAX_SINCE_BYTES);
        SinceRead {
            output,
            next_offset: win_start + (skip + used) as u64,
            gap_bytes: gap,
        }
    }
}

/// Grows `v` so `extra` more bytes fit, doubling but never past `cap`.
fn grow_exact(v: &mut Vec<u8>, extra: usize, cap: usize) {
    let need = v.len() + extra;
    if need <= v.capacity() {
        return;
    }
    let target = (v.capacity() * 2).max(need).max(256).min(cap.max(need));
    v.reserve_exact(target - v.len());
}

impl Snapshot {
    /// Renders Coder's head+tail format (see the module doc for the improvements).
    pub fn render(&self) -> (String, Option<Truncation>) {
        let total = self.total;
        if total == 0 {
            return (String::new(), None);
        }
        let head = &self.head[..];
        let tail = &self.tail[..];
        let omitted_raw = total - head.len() as u64 - tail.len() as u64;
        if omitted_raw == 0 {
            // Nothing is missing: head and tail are contiguous; never invent a newline.
            let mut whole = Vec::with_capacity(head.len() + tail.len());
            whole.extend_from_slice(head);
            whole.extend_from_slice(tail);
            let (s, used) = take_prefix(&whole, self.render_limit);
            if used == whole.len() {
                let (s, cut) = truncate_lines(&s, self.max_line);
                let strategy = if !tail.is_empty() {
                    // Coder reports head_tail (omitted 0) once the head is full.
                    Some(Strategy::HeadTail)
                } else if cut > 0 {
                    Some(Strategy::Lines)
                } else {
                    None
                };
                let info = strategy.map(|strategy| Truncation {
                    original_bytes: total,
                    retained_bytes: s.len() as u64,
                    // Line cuts count rendered bytes: a U+FFFD stands for 1–3 raw bytes.
                    omitted_bytes: (cut as u64).min(total),
                    strategy,
                });
                return (s, info);
            }
        }
        // Head, marker, tail. Cut on character boundaries; keep the whole ≤ render_limit.
        let head_raw = if total > head.len() as u64 {
            &head[..head.len() - incomplete_suffix_len(head)]
        } else {
            head
        };
        let marker_bound = marker(total).len();
        // The marker always follows the head, so the head leaves room for it.
        let head_budget = self
            .head_cap
            .min(self.render_limit.saturating_sub(marker_bound));
        let (h, h_used) = take_prefix(head_raw, head_budget);
        let tail_budget = self.render_limit.saturating_sub(h.len() + marker_bound);
        let lead = leading_continuations(tail);
        let (t, t_used) = take_suffix(&tail[lead..], tail_budget);
        let omitted = total - h_used as u64 - t_used as u64;
        let (hl, c1) = truncate_lines(&h, self.max_line);
        let (tl, c2) = truncate_lines(&t, self.max_line);
        let mut out = hl;
        if omitted > 0 {
            out.push_str(&marker(omitted));
        }
        out.push_str(&tl);
        let info = Truncation {
            original_bytes: total,
            retained_bytes: out.len() as u64,
            // Exact for valid UTF-8; line cuts in invalid input count rendered bytes.
            omitted_bytes: (omitted + (c1 + c2) as u64).min(total),
            strategy: Strategy::HeadTail,
        };
        (out, Some(info))
    }
}

fn marker(omitted: u64) -> String {
    format!("\n\n... [omitted {omitted} bytes] ...\n\n")
}

/// Length of an incomplete UTF-8 sequence at the end of `b` (0 when it ends cleanly).
fn incomplete_suffix_len(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=n.min(3) {
        let byte = b[n - back];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let width = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if back < width { back } else { 0 };
    }
    0
}

/// Number of UTF-8 continuation bytes (at most 3) starting `b`.
fn leading_continuations(b: &[u8]) -> usize {
    b.iter().take(3).take_while(|&&x| x & 0xC0 == 0x80).count()
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The longest prefix of `raw`, decoded lossily, whose rendering fits `budget` bytes.
/// Returns the text and how many raw bytes it stands for.
fn take_prefix(raw: &[u8], budget: usize) -> (String, usize) {
    let mut out = String::with_capacity(raw.len().min(budget));
    let mut used = 0;
    for chunk in raw.utf8_chunks() {
        let v = chunk.valid();
        if out.len() + v.len() > budget {
            let cut = floor_boundary(v, budget - out.len());
            out.push_str(&v[..cut]);
            return (out, used + cut);
        }
        out.push_str(v);
        used += v.len();
        let inv = chunk.invalid();
        if !inv.is_empty() {
            if out.len() + 3 > budget {
                return (out, used);
            }
            out.push('\u{FFFD}');
            used += inv.len();
        }
    }
    (out, used)
}

/// The longest suffix of `raw`, decoded lossily, whose rendering fits `budget` bytes.
fn take_suffix(raw: &[u8], budget: usize) -> (String, usize) {
    // Pieces in stream order: (text, raw length, valid?).
    let mut pieces: Vec<(&str, usize, bool)> = Vec::new();
    for chunk in raw.utf8_chunks() {
        if !chunk.valid().is_empty() {
            pieces.push((chunk.valid(), chunk.valid().len(), true));
        }
        if !chunk.invalid().is_empty() {
            pieces.push(("\u{FFFD}", chunk.invalid().len(), false));
        }
    }
    let mut room = budget;
    let mut used = 0;
    let mut first = pieces.len();
    let mut partial = "";
    for (i, (text, raw_len, valid)) in pieces.iter().enumerate().rev() {
        if text.len() <= room {
            room -= text.len();
            used += raw_len;
            first = i;
            continue;
        }
        if *valid {
            let start = ceil_boundary(text, text.len() - room);
            partial = &text[start..];
            used += partial.len();
        }
        break;
    }
    let mut out = String::with_capacity(budget - room);
    out.push_str(partial);
    for (text, _, _) in &pieces[first..] {
        out.push_str(text);
    }
    (out, used)
}

/// Cuts lines longer than `max_line` bytes to exactly `max_line` bytes ending in
/// [`LINE_SUFFIX`] (fewer when the cut lands inside a character). Returns the text and the
/// number of bytes of content removed.
pub fn truncate_lines(s: &str, max_line: usize) -> (String, usize) {
    if s.len() <= max_line {
        return (s.to_owned(), 0);
    }
    let keep_max = max_line.saturating_sub(LINE_SUFFIX.len());
    let mut out = String::with_capacity(s.len());
    let mut cut = 0;
    let mut first = true;
    for line in s.split('\n') {
        if !first {
            out.push('\n');
        }
        first = false;
        if line.len() > max_line {
            let keep = floor_boundary(line, keep_max);
            out.push_str(&line[..keep]);
            out.push_str(LINE_SUFFIX);
            cut += line.len() - keep;
        } else {
            out.push_str(line);
        }
    }
    (out, cut)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // Coder's headtail_test.go cases.

    #[test]
    fn empty_buffer() {
        let b = OutputBuffer::new();
        assert_eq!(b.output(), (String::new(), None));
        assert_eq!(b.len(), 0);
        assert_eq!(b.total_written(), 0);
        assert!(b.bytes().is_empty());
    }

    #[test]
    fn small_output() {
        let mut b = OutputBuffer::new();
        b.write(b"hello world\n");
        assert_eq!(b.output(), ("hello world\n".to_owned(), None));
        assert_eq!(b.len(), 12);
        assert_eq!(b.total_written(), 12);
    }

    #[test]
    fn exactly_head_size() {
        let mut b = OutputBuffer::new();
        let line = format!("{}\n", "x".repeat(79));
        let mut data = line.repeat(MAX_HEAD_BYTES / 80);
        data.push_str(&"y".repeat(MAX_HEAD_BYTES - data.len()));
        assert_eq!(data.len(), MAX_HEAD_BYTES);
        b.write(data.as_bytes());
        assert_eq!(b.output(), (data, None));
        assert_eq!(b.len(), MAX_HEAD_BYTES);
    }

    #[test]
    fn head_plus_tail_no_omission() {
        let mut b = OutputBuffer::sized(10, 10);
        b.write(b"0123456789abcdefghij");
        let (out, info) = b.output();
        let info = info.unwrap();
        assert_eq!(info.omitted_bytes, 0);
        assert_eq!(info.strategy, Strategy::HeadTail);
        assert_eq!(info.original_bytes, 20);
        // Improvement: no newline is invented between head and tail.
        assert_eq!(out, "0123456789abcdefghij");
    }

    #[test]
    fn large_output_truncation() {
        let mut b = OutputBuffer::sized(10, 10);
        b.write(&[b'A'; 50]);
        b.write(&[b'Z'; 50]);
        let (out, info) = b.output();
        let info = info.unwrap();
        assert_eq!(info.original_bytes, 100);
        assert_eq!(info.omitted_bytes, 80);
        assert_eq!(
            out,
            "AAAAAAAAAA\n\n... [omitted 80 bytes] ...\n\nZZZZZZZZZZ"
        );
        assert_eq!(info.retained_bytes, out.len() as u64);
        assert_eq!(b.len(), 20);
        assert_eq!(b.total_written(), 100);
    }

    #[test]
    fn multi_mb_stays_bounded() {
        let mut b = OutputBuffer::new();
        let chunk: Vec<u8> = (0..4097u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut total = 0u64;
        while total < 5 * 1024 * 1024 {
            b.write(&chunk);
            total += chunk.len() as u64;
        }
        assert!(b.len() <= 32768);
        assert_eq!(b.total_written(), total);
        let (out, info) = b.output();
        let info = info.unwrap();
        assert_eq!(info.original_bytes, total);
        assert!(info.omitted_bytes > 0);
        assert!(out.len() <= MAX_RENDERED_BYTES, "{}", out.len());
        assert!(b.allocated() <= MAX_HEAD_BYTES + STREAM_WINDOW_BYTES);
    }

    #[test]
    fn long_line_truncation() {
        let mut b = OutputBuffer::new();
        let line = format!("{}\n", "x".repeat(2548));
        b.write(line.as_bytes());
        let (out, info) = b.output();
        let first = out.strip_suffix('\n').unwrap();
        assert!(!first.contains('\n'));
        assert_eq!(first.len(), MAX_LINE_LENGTH);
        assert!(first.ends_with("... [truncated]"));
        // Improvement: the cut is visible.
        let info = info.unwrap();
        assert_eq!(info.strategy, Strategy::Lines);
        assert_eq!(info.omitted_bytes, 2548 - 2032);
        assert_eq!(info.retained_bytes, out.len() as u64);
    }

    #[test]
    fn long_line_in_tail() {
        let mut b = OutputBuffer::sized(20, 5000);
        b.write(&[b'h'; 20]);
        b.write(format!("{}\n", "t".repeat(2148)).as_bytes());
        let (out, info) = b.output();
        assert!(info.is_some());
        assert!(out.contains("... [truncated]"));
    }

    #[test]
    fn truncation_info_fields() {
        let mut b = OutputBuffer::sized(10, 10);
        b.write(&[b'x'; 50]);
        let info = b.output().1.unwrap();
        assert_eq!(info.original_bytes, 50);
        assert_eq!(info.omitted_bytes, 30);
        assert_eq!(info.strategy, Strategy::HeadTail);
        assert!(info.retained_bytes > 0);
    }

    #[test]
    fn multiple_small_writes() {
        let mut b = OutputBuffer::new();
        for c in b"hello world" {
            b.write(&[*c]);
        }
        assert_eq!(b.output(), ("hello world".to_owned(), None));
    }

    #[test]
    fn write_empty_slice() {
        let mut b = OutputBuffer::new();
        assert_eq!(b.write(b""), 0);
        assert_eq!(b.total_written(), 0);
    }

    #[test]
    fn ring_buffer_wraparound() {
        let mut b = OutputBuffer::sized(5, 10).with_window(10);
        for w in [&b"HEADD"[..], b"0123456789", b"abcdefghij", b"ABCDE"] {
            b.write(w);
        }
        let (out, info) = b.output();
        assert!(out.ends_with("fghijABCDE"), "{out}");
        assert!(out.starts_with("HEADD"));
        assert!(info.is_some());
    }

    #[test]
    fn multiple_lines_truncated() {
        let mut b = OutputBuffer::new();
        let long = "L".repeat(2148);
        b.write(format!("short one\n{long}\nshort two").as_bytes());
        let (out, _) = b.output();
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "short one");
        assert!(lines[1].ends_with("... [truncated]"));
        assert_eq!(lines[1].len(), MAX_LINE_LENGTH);
        assert_eq!(lines[2], "short two");
    }

    // Improvements.

    #[test]
    fn default_rendering_fits_chatd_cut_and_keeps_the_tail() {
        let mut b = OutputBuffer::new();
        for i in 0..100_000 {
            b.write(format!("line {i}\n").as_bytes());
        }
        let (out, info) = b.output();
        assert!(out.len() <= MAX_RENDERED_BYTES);
        assert!(out.ends_with("line 99999\n"));
        assert!(out.starts_with("line 0\nline 1\n"));
        let info = info.unwrap();
        assert_eq!(info.retained_bytes, out.len() as u64);
        assert_eq!(
            info.original_bytes,
            info.omitted_bytes + (out.len() - marker(info.omitted_bytes).len()) as u64
        );
    }

    #[test]
    fn never_splits_utf8() {
        // 3-byte characters misaligned with every boundary.
        let mut b = OutputBuffer::new();
        let s = "x€".repeat(30_000);
        for chunk in s.as_bytes().chunks(1000) {
            b.write(chunk);
        }
        let (out, info) = b.output();
        assert!(!out.contains('\u{FFFD}'));
        assert!(out.len() <= MAX_RENDERED_BYTES);
        assert!(info.is_some());
        let (lines, _) = truncate_lines(&"€".repeat(1000), MAX_LINE_LENGTH);
        assert!(lines.ends_with(LINE_SUFFIX));
        assert!(!lines.contains('\u{FFFD}'));
    }

    #[test]
    fn invalid_utf8_and_nul_render_bounded() {
        let mut b = OutputBuffer::new();
        b.write(&[0xFF; 100_000]);
        let (out, info) = b.output();
        assert!(out.len() <= MAX_RENDERED_BYTES);
        assert!(out.contains('\u{FFFD}'));
        assert!(info.is_some());
        let mut b = OutputBuffer::new();
        b.write(b"a\0b\xFFc");
        assert_eq!(b.output().0, "a\0b\u{FFFD}c");
        // Small but expanding: 20 KiB of invalid bytes would render as 60 KiB.
        let mut b = OutputBuffer::new();
        b.write(&[0x80; 20_000]);
        assert!(b.output().0.len() <= MAX_RENDERED_BYTES);
    }

    // Found by the output_buffer fuzz target.
    #[test]
    fn omitted_never_exceeds_what_was_written() {
        // 3000 invalid bytes render as 9000 bytes of U+FFFD; the line cut is counted in
        // rendered bytes, which must not claim more than was written.
        let mut b = OutputBuffer::new();
        b.write(&[0xFF; 3000]);
        let (out, info) = b.output();
        let info = info.unwrap();
        assert_eq!(info.strategy, Strategy::Lines);
        assert_eq!(info.original_bytes, 3000);
        assert_eq!(info.omitted_bytes, 3000);
        // 2032 bytes of U+FFFD floor to 677 characters, then the suffix.
        assert_eq!(out, format!("{}{LINE_SUFFIX}", "\u{FFFD}".repeat(677)));
    }

    #[test]
    fn a_small_render_limit_leaves_room_for_the_marker() {
        // head 60 + marker (31 bytes) > limit 64: the head gives way, the limit holds.
        let mut b = OutputBuffer::sized(60, 10).with_render_limit(64);
        b.write(&[b'a'; 200]);
        let (out, info) = b.output();
        assert_eq!(out, format!("{}{}", "a".repeat(33), marker(167)));
        assert_eq!(out.len(), 64);
        assert_eq!(info.unwrap().omitted_bytes, 167);
    }

    #[test]
    fn since_reads_are_incremental() {
        let mut b = OutputBuffer::new();
        b.write(b"one\n");
        let r = b.read_since(0, false);
        assert_eq!(
            (r.output.as_str(), r.next_offset, r.gap_bytes),
            ("one\n", 4, 0)
        );
        b.write(b"two\n");
        let r = b.read_since(4, false);
        assert_eq!((r.output.as_str(), r.next_offset), ("two\n", 8));
        let r = b.read_since(8, false);
        assert_eq!((r.output.as_str(), r.next_offset), ("", 8));
        // A split character is held back until complete.
        b.write(&"€".as_bytes()[..2]);
        let r = b.read_since(8, false);
        assert_eq!((r.output.as_str(), r.next_offset), ("", 8));
        b.write(&"€".as_bytes()[2..]);
        assert_eq!(b.read_since(8, false).output, "€");
        // Beyond the window: a gap.
        let mut b = OutputBuffer::new();
        b.write(&vec![b'a'; 100_000]);
        let r = b.read_since(0, true);
        assert_eq!(r.gap_bytes, 100_000 - STREAM_WINDOW_BYTES as u64);
        assert_eq!(r.output.len(), MAX_SINCE_BYTES);
        assert_eq!(r.next_offset, r.gap_bytes + MAX_SINCE_BYTES as u64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// The simple model: keep everything.
    fn model_render(all: &[u8], head_cap: usize, tail_cap: usize) -> (Vec<u8>, Vec<u8>, u64) {
        let head = all[..all.len().min(head_cap)].to_vec();
        let after = &all[head.len()..];
        let tail = after[after.len().saturating_sub(tail_cap)..].to_vec();
        (head, tail, all.len() as u64)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn matches_model(
            writes in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(b'a'), Just(b'\n'), Just(0xE2u8), Just(0x82u8), Just(0xACu8), any::<u8>()],
                    0..120),
                0..16),
            head_cap in 1usize..64,
            tail_cap in 1usize..64,
            window in 0usize..200,
            since in 0u64..3000,
        ) {
            let mut b = OutputBuffer::sized(head_cap, tail_cap).with_window(window).with_render_limit(200);
            let mut all = Vec::new();
            for w in &writes {
                prop_assert_eq!(b.write(w), w.len());
                all.extend_from_slice(w);
            }
            let (mh, mt, total) = model_render(&all, head_cap, tail_cap);
            prop_assert_eq!(b.total_written(), total);
            prop_assert_eq!(b.len(), mh.len() + mt.len());
            let mut both = mh.clone();
            both.extend_from_slice(&mt);
            prop_assert_eq!(b.bytes(), both);

            let (out, info) = b.output();
            prop_assert!(out.len() <= 200);
            if all.is_empty() {
                prop_assert_eq!(out.as_str(), "");
                prop_assert!(info.is_none());
            }
            if let Some(i) = info {
                prop_assert_eq!(i.retained_bytes, out.len() as u64);
                prop_assert_eq!(i.original_bytes, total);
                prop_assert!(i.omitted_bytes <= total);
            }
            // Whole valid UTF-8 output that fits is returned unchanged (modulo line cuts).
            if let Ok(s) = std::str::from_utf8(&all)
                && all.len() <= head_cap + tail_cap && all.len() <= 200
            {
                prop_assert_eq!(out, truncate_lines(s, MAX_LINE_LENGTH).0);
            }

            // Incremental reads reassemble the window.
            let r = b.read_since(since, true);
            let win_start = total.saturating_sub(window.max(tail_cap).max(1) as u64);
            if since >= total {
                prop_assert_eq!(r.output.as_str(), "");
                prop_assert_eq!(r.next_offset, total);
            } else {
                prop_assert!(r.next_offset <= total);
                prop_assert!(r.next_offset >= since.max(win_start));
                if since >= win_start {
                    prop_assert_eq!(r.gap_bytes, 0);
                    let raw = &all[since as usize..r.next_offset as usize];
                    prop_assert_eq!(r.output, String::from_utf8_lossy(raw).into_owned());
                } else {
                    prop_assert!(r.gap_bytes >= win_start - since);
                }
            }
        }
    }
}
