//! The head+tail output buffer (`agentproc::OutputBuffer`) against a model that keeps every
//! byte: the rendering stays within its limit, is exact when nothing is cut, keeps the head
//! and the tail (as much of them as fits) and reports the omitted byte count exactly; `since`
//! reads return exactly the model's bytes between `offset + gap_bytes` and `next_offset`, and
//! a reader that follows `next_offset` reassembles the whole stream when it never fell behind.

#![no_main]

use agentproc::{OutputBuffer, SinceRead};
use agentproc::buffer::{
    LINE_SUFFIX, MAX_HEAD_BYTES, MAX_LINE_LENGTH, MAX_RENDERED_BYTES, MAX_SINCE_BYTES,
    MAX_TAIL_BYTES, STREAM_WINDOW_BYTES, Strategy, truncate_lines,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Small sizes reach every branch with short inputs; `None` is Coder's sizes.
#[derive(Arbitrary, Debug)]
struct Sizes {
    head: u8,
    tail: u8,
    window: u8,
    limit: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes.
    Write(Vec<u8>),
    /// A run of one byte (reaches the real sizes cheaply).
    Fill { byte: u8, len: u16 },
    /// A valid UTF-8 piece, repeated.
    Text { piece: String, times: u8 },
    /// A `since` read at an arbitrary offset (relative to the end when `back`).
    Since { offset: u32, back: bool, complete: bool },
    /// Render and check.
    Render,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sizes: Option<Sizes>,
    ops: Vec<Op>,
}

/// Upper bound of the stream the model keeps (keeps executions fast).
const MAX_TOTAL: usize = 1 << 21;

struct Caps {
    head: usize,
    tail: usize,
    window: usize,
    limit: usize,
}

fn marker(omitted: u64) -> String {
    format!("\n\n... [omitted {omitted} bytes] ...\n\n")
}

fn check_render(b: &OutputBuffer, all: &[u8], c: &Caps) {
    let (out, info) = b.output();
    let total = all.len() as u64;
    assert!(out.len() <= c.limit, "rendered {} > limit {}", out.len(), c.limit);
    if total == 0 {
        assert!(out.is_empty() && info.is_none());
        return;
    }
    if let Some(i) = info {
        assert_eq!(i.original_bytes, total);
        assert_eq!(i.retained_bytes, out.len() as u64);
        assert!(i.omitted_bytes <= total);
    }
    let head_len = all.len().min(c.head);
    let tail_len = (all.len() - head_len).min(c.tail);
    let Ok(s) = std::str::from_utf8(all) else {
        return;
    };
    // A valid character is never split (no replacement character appears from nowhere).
    if !s.contains('\u{FFFD}') {
        assert!(!out.contains('\u{FFFD}'), "a character was split");
    }
    if all.len() <= c.head + c.tail && all.len() <= c.limit {
        // Nothing omitted: the whole stream, only over-long lines cut.
        let (want, cut) = truncate_lines(s, MAX_LINE_LENGTH);
        assert_eq!(out, want);
        match info {
            None => assert!(tail_len == 0 && cut == 0),
            Some(i) => {
                assert_eq!(i.omitted_bytes, cut as u64);
                let strategy = if tail_len > 0 { Strategy::HeadTail } else { Strategy::Lines };
                assert_eq!(i.strategy, strategy);
            }
        }
        return;
    }
    let info = info.expect("a cut rendering reports its truncation");
    assert_eq!(info.strategy, Strategy::HeadTail);
    if s.split('\n').any(|l| l.len() > MAX_LINE_LENGTH) {
        return; // line cuts change the text; the checks above still hold
    }
    // head + marker(omitted) + tail, with omitted = exactly the bytes not shown.
    let omitted = info.omitted_bytes;
    assert!(omitted > 0);
    let m = marker(omitted);
    assert_eq!(out.len() - m.len() + omitted as usize, all.len(), "omitted count is not exact");
    let split = out.match_indices(&m).map(|(p, _)| p).find(|&p| {
        let (h, t) = (&out[..p], &out[p + m.len()..]);
        s.starts_with(h) && s.ends_with(t) && h.len() <= head_len && t.len() <= tail_len
    });
    let p = split.unwrap_or_else(|| panic!("output is not head + marker + tail: {out:?}"));
    let (h, t) = (&out[..p], &out[p + m.len()..]);
    // As much of the head and the tail as fits (less at most a split character).
    let bound = marker(total).len();
    let head_room = c.head.min(c.limit.saturating_sub(bound));
    assert!(h.len() + 3 >= head_len.min(head_room), "head lost: {} of {head_len}", h.len());
    let tail_room = c.limit.saturating_sub(h.len() + bound);
    assert!(t.len() + 3 >= tail_len.min(tail_room), "tail lost: {} of {tail_len}", t.len());
}

/// One `since` read checked against the model.
fn check_since(b: &OutputBuffer, all: &[u8], c: &Caps, offset: u64, complete: bool) -> SinceRead {
    let total = all.len() as u64;
    let r = b.read_since(offset, complete);
    if offset >= total {
        assert_eq!((r.output.as_str(), r.next_offset, r.gap_bytes), ("", total, 0));
        return r;
    }
    let win_start = total - total.min(c.window as u64);
    let start = offset + r.gap_bytes;
    if offset >= win_start {
        assert_eq!(r.gap_bytes, 0);
    } else {
        // The gap reaches the window, plus at most the continuation bytes of a cut character.
        assert!(start >= win_start && start <= win_start + 3, "gap {} from {offset}", r.gap_bytes);
    }
    assert!(start <= r.next_offset && r.next_offset <= total);
    let raw = &all[start as usize..r.next_offset as usize];
    assert_eq!(r.output, String::from_utf8_lossy(raw));
    assert!(r.output.len() <= MAX_SINCE_BYTES);
    if r.next_offset < total {
        // Stopped early only when the read is full, or (still running) to hold back an
        // incomplete character.
        let full = r.output.len() + 4 > MAX_SINCE_BYTES;
        let held = !complete && total - r.next_offset <= 3;
        assert!(full || held, "read stopped at {} of {total}", r.next_offset);
    }
    r
}

fuzz_target!(|input: Input| {
    let (mut b, c) = match &input.sizes {
        None => (
            OutputBuffer::new(),
            Caps {
                head: MAX_HEAD_BYTES,
                tail: MAX_TAIL_BYTES,
                window: STREAM_WINDOW_BYTES,
                limit: MAX_RENDERED_BYTES,
            },
        ),
        Some(s) => {
            let head = 1 + usize::from(s.head % 64);
            let tail = 1 + usize::from(s.tail % 64);
            let window = usize::from(s.window);
            let limit = 64 + usize::from(s.limit);
            let b = OutputBuffer::sized(head, tail)
                .with_window(window)
                .with_render_limit(limit);
            (b, Caps { head, tail, window: window.max(tail).max(1), limit })
        }
    };
    let mut all: Vec<u8> = Vec::new();
    // A reader that follows next_offset, as a polling client does.
    let mut cursor = 0u64;
    let mut read = String::new();
    let mut gapped = false;
    for op in &input.ops {
        let data: Vec<u8> = match op {
            Op::Write(v) => v.clone(),
            Op::Fill { byte, len } => vec![*byte; usize::from(*len)],
            Op::Text { piece, times } => piece.repeat(usize::from(*times)).into_bytes(),
            Op::Since { offset, back, complete } => {
                let total = all.len() as u64;
                let off = if *back { total.saturating_sub(u64::from(*offset)) } else { u64::from(*offset) };
                check_since(&b, &all, &c, off, *complete);
                continue;
            }
            Op::Render => {
                check_render(&b, &all, &c);
                continue;
            }
        };
        if all.len() + data.len() > MAX_TOTAL {
            break;
        }
        assert_eq!(b.write(&data), data.len());
        all.extend_from_slice(&data);
        let r = check_since(&b, &all, &c, cursor, false);
        read.push_str(&r.output);
        gapped |= r.gap_bytes > 0;
        cursor = r.next_offset;
    }
    // The rest, as a client reading after exit.
    loop {
        let r = check_since(&b, &all, &c, cursor, true);
        read.push_str(&r.output);
        gapped |= r.gap_bytes > 0;
        if r.next_offset == cursor {
            break;
        }
        cursor = r.next_offset;
    }
    assert_eq!(cursor, all.len() as u64);
    if !gapped {
        assert_eq!(read, String::from_utf8_lossy(&all), "incremental reads lost bytes");
    }

    // Model of the raw views and the memory bound.
    let head_len = all.len().min(c.head);
    let tail_len = (all.len() - head_len).min(c.tail);
    assert_eq!(b.total_written(), all.len() as u64);
    assert_eq!(b.len(), head_len + tail_len);
    let mut both = all[..head_len].to_vec();
    both.extend_from_slice(&all[all.len() - tail_len..]);
    assert_eq!(b.bytes(), both);
    assert!(b.allocated() <= c.head + c.window, "allocated {}", b.allocated());
    check_render(&b, &all, &c);

    // Line cutting on its own: same line count, long lines cut to the limit with the suffix.
    if let Ok(s) = std::str::from_utf8(&all) {
        let (cut, removed) = truncate_lines(s, MAX_LINE_LENGTH);
        let mut sum = 0;
        let (a, o): (Vec<&str>, Vec<&str>) = (s.split('\n').collect(), cut.split('\n').collect());
        assert_eq!(a.len(), o.len());
        for (x, y) in a.iter().zip(&o) {
            if x.len() <= MAX_LINE_LENGTH {
                assert_eq!(x, y);
            } else {
                let kept = y.strip_suffix(LINE_SUFFIX).expect("a cut line ends with the suffix");
                assert!(x.starts_with(kept) && y.len() <= MAX_LINE_LENGTH && y.len() + 3 >= MAX_LINE_LENGTH);
                sum += x.len() - kept.len();
            }
        }
        assert_eq!(removed, sum);
    }
});
