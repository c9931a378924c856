//! Chat-header parsing (`agentd::extract_chat`) against a port of what Coder does: Go's
//! `uuid.Parse` (google/uuid) for `Coder-Chat-Id`, and `json.Unmarshal` into a `[]string`
//! for `Coder-Ancestor-Chat-Ids` (anything but an array of strings, or `null`, gives no
//! ancestors; entries that are not UUIDs are skipped). Also: every UUID in each of the four
//! forms parses to itself, and extraction never fails a request.

#![no_main]

use agentd::{ChatIdentity, NotChat};
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

#[derive(Arbitrary, Debug)]
enum Ancestor {
    /// A UUID in one of the forms.
    Id([u8; 16], u8),
    /// Any JSON string.
    Str(String),
    /// A non-string JSON value: Go's decoder fails the whole array.
    Number(i64),
    /// No error in Go (the entry stays `""`).
    Null,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Raw header bytes.
    chat: Option<Vec<u8>>,
    ancestors: Option<Vec<u8>>,
    /// A structured pair.
    id: [u8; 16],
    form: u8,
    list: Vec<Ancestor>,
}

/// Go's `xtob`: two hex digits.
fn xtob(a: u8, b: u8) -> Option<u8> {
    let h = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(h(a)? << 4 | h(b)?)
}

/// A port of google/uuid's `Parse` (on bytes, as Go strings are).
fn go_parse(s: &[u8]) -> Option<Uuid> {
    let mut u = [0u8; 16];
    let s = match s.len() {
        36 => s,
        45 => {
            if !s[..9].eq_ignore_ascii_case(b"urn:uuid:") {
                return None;
            }
            &s[9..]
        }
        38 => &s[1..], // Go does not look at the braces
        32 => {
            for (i, b) in u.iter_mut().enumerate() {
                *b = xtob(s[i * 2], s[i * 2 + 1])?;
            }
            return Some(Uuid::from_bytes(u));
        }
        _ => return None,
    };
    if s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    let at = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (i, x) in at.into_iter().enumerate() {
        u[i] = xtob(s[x], s[x + 1])?;
    }
    Some(Uuid::from_bytes(u))
}

/// Coder's ancestor parsing: `json.Unmarshal(raw, &[]string)`. A `null` entry is no error in
/// Go (it leaves `""`, which is then skipped); invalid UTF-8 inside strings becomes U+FFFD, so
/// decode lossily first. (serde_json stands in for Go's decoder: lone surrogate escapes, which
/// Go replaces, are not modelled.)
fn go_ancestors(raw: &[u8]) -> Vec<Uuid> {
    if raw.is_empty() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(raw);
    match serde_json::from_str::<Option<Vec<Option<String>>>>(&text) {
        Ok(Some(v)) => v.iter().flatten().filter_map(|s| go_parse(s.as_bytes())).collect(),
        _ => Vec::new(),
    }
}

fn form(u: Uuid, f: u8) -> String {
    let s = match f % 4 {
        0 => u.hyphenated().to_string(),
        1 => u.braced().to_string(),
        2 => u.urn().to_string(),
        _ => u.simple().to_string(),
    };
    if f & 4 != 0 { s.to_uppercase() } else { s }
}

fn headers(chat: &[u8], anc: Option<&[u8]>) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(agentd::CHAT_ID_HEADER, HeaderValue::from_bytes(chat).ok()?);
    if let Some(a) = anc {
        h.insert(agentd::ANCESTOR_CHAT_IDS_HEADER, HeaderValue::from_bytes(a).ok()?);
    }
    Some(h)
}

/// `extract` must agree with Coder on `(chat, ancestors)`; `None` when http would not carry
/// these bytes as header values.
fn check(chat: &[u8], anc: Option<&[u8]>) {
    let Some(h) = headers(chat, anc) else { return };
    let got = agentd::extract_chat(&h);
    match go_parse(chat) {
        _ if chat.is_empty() => assert_eq!(got, Err(NotChat::Absent)),
        None => assert!(matches!(got, Err(NotChat::Malformed(_))), "{got:?}"),
        Some(id) => {
            let want = ChatIdentity { id, ancestors: anc.map(go_ancestors).unwrap_or_default() };
            assert_eq!(got, Ok(want));
        }
    }
}

fuzz_target!(|input: Input| {
    // Raw bytes, compared with Go.
    if let Some(c) = &input.chat {
        check(c, input.ancestors.as_deref());
        if let Ok(s) = std::str::from_utf8(c) {
            assert_eq!(agentd::parse_uuid(s), go_parse(c));
        }
    }
    // Structured: a valid chat id in any form, ancestors from the list.
    let id = Uuid::from_bytes(input.id);
    let f = form(id, input.form);
    assert_eq!(agentd::parse_uuid(&f), Some(id), "{f}");
    let mut json = Vec::new();
    let mut want = Vec::new();
    let mut all_strings = true;
    for a in &input.list {
        json.push(match a {
            Ancestor::Id(b, fm) => {
                let u = Uuid::from_bytes(*b);
                want.push(u);
                serde_json::Value::String(form(u, *fm))
            }
            Ancestor::Str(s) => {
                want.extend(go_parse(s.as_bytes()));
                serde_json::Value::String(s.clone())
            }
            Ancestor::Number(n) => {
                all_strings = false;
                serde_json::Value::from(*n)
            }
            Ancestor::Null => serde_json::Value::Null,
        });
    }
    let anc = serde_json::to_vec(&json).unwrap_or_default();
    if let Some(h) = headers(f.as_bytes(), Some(&anc)) {
        let got = agentd::extract_chat(&h);
        let ancestors = if all_strings { want } else { Vec::new() };
        assert_eq!(got, Ok(ChatIdentity { id, ancestors }));
    }
});
