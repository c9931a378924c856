//! Chat identity: the `Coder-Chat-Id` and `Coder-Ancestor-Chat-Ids` request headers, parsed
//! exactly as Coder's `agentchat.ExtractContext` does.
//!
//! A missing, empty or malformed chat id makes a request a non-chat request; it is never an
//! error. Ancestors are only read when the chat id is valid; a malformed ancestor header is
//! ignored and bad entries are skipped one by one. This module must not reject requests.

use axum::http::HeaderMap;
use uuid::Uuid;

/// Header carrying the chat id.
pub const CHAT_ID_HEADER: &str = "coder-chat-id";
/// Header carrying a JSON array of ancestor chat ids.
pub const ANCESTOR_CHAT_IDS_HEADER: &str = "coder-ancestor-chat-ids";

/// The parsed chat identity of a request, stored as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatIdentity {
    /// The chat id as parsed (may be the nil UUID, which logs but does not isolate).
    pub id: Uuid,
    /// Valid ancestor ids, in header order.
    pub ancestors: Vec<Uuid>,
}

/// Records a chat on `span`: `chat_id`, and `ancestor_chat_ids` as a JSON array (which the
/// JSON log layer emits as an array, see `logging::RAW_JSON_FIELDS`) when there are any.
pub(crate) fn record_chat(span: &tracing::Span, id: Uuid, ancestors: &[Uuid]) {
    span.record("chat_id", tracing::field::display(id));
    if !ancestors.is_empty() {
        let list: Vec<String> = ancestors.iter().map(ToString::to_string).collect();
        let json = serde_json::to_string(&list).unwrap_or_default();
        span.record("ancestor_chat_ids", json.as_str());
    }
}

impl ChatIdentity {
    /// The chat id handlers should use for isolation: `None` for the nil UUID, which Coder's
    /// context helper drops.
    pub fn effective_id(&self) -> Option<Uuid> {
        (!self.id.is_nil()).then_some(self.id)
    }
}

/// Why a request is not a chat request (for the debug log line).
#[derive(Debug, PartialEq, Eq)]
pub enum NotChat {
    /// No header, or an empty one.
    Absent,
    /// The header is not a UUID in any of the four accepted forms.
    Malformed(String),
}

/// Parses the chat headers. `Err` means "not a chat request", never a failure.
pub fn extract(headers: &HeaderMap) -> Result<ChatIdentity, NotChat> {
    let raw = headers
        .get(CHAT_ID_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(NotChat::Absent);
    }
    let id = parse_uuid_bytes(raw)
        .ok_or_else(|| NotChat::Malformed(String::from_utf8_lossy(raw).into_owned()))?;
    let ancestors = headers
        .get(ANCESTOR_CHAT_IDS_HEADER)
        .map(|v| parse_ancestors(v.as_bytes()))
        .unwrap_or_default();
    Ok(ChatIdentity { id, ancestors })
}

/// Go's `uuid.Parse` (google/uuid), byte for byte: the canonical 36-character form, 38
/// characters whose first and last are ignored (Go does not check the braces), a
/// `urn:uuid:` prefix in any case, and 32 bare hex digits. Leading or trailing spaces are
/// not accepted.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    parse_uuid_bytes(s.as_bytes())
}

/// [`parse_uuid`] on raw bytes (header values need not be UTF-8; Go's strings are bytes).
pub(crate) fn parse_uuid_bytes(s: &[u8]) -> Option<Uuid> {
    let hyphenated = match s.len() {
        32 => return Uuid::try_parse_ascii(s).ok(),
        36 => s,
        38 => &s[1..37],
        45 if s[..9].eq_ignore_ascii_case(b"urn:uuid:") => &s[9..],
        _ => return None,
    };
    Uuid::try_parse_ascii(hyphenated).ok()
}

fn parse_ancestors(raw: &[u8]) -> Vec<Uuid> {
    if raw.is_empty() {
        return Vec::new();
    }
    // Go's `json.Unmarshal` into a `[]string`: anything but an array of strings fails the
    // whole header (no ancestors); a `null` entry is no error (it stays "" and is skipped);
    // invalid UTF-8 inside a string becomes U+FFFD rather than an error.
    let text = String::from_utf8_lossy(raw);
    match serde_json::from_str::<Option<Vec<Option<String>>>>(&text) {
        Ok(Some(items)) => items
            .iter()
            .flatten()
            .filter_map(|v| parse_uuid(v))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const A: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";
    const B: &str = "8d0f5a3e-4c1b-4f7a-9a2e-6b5c4d3e2f1a";
    const C: &str = "11111111-2222-4333-8444-555555555555";

    fn headers(chat: Option<&str>, anc: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = chat {
            h.insert(
                CHAT_ID_HEADER,
                HeaderValue::from_str(c).unwrap_or(HeaderValue::from_static("")),
            );
        }
        if let Some(a) = anc {
            h.insert(
                ANCESTOR_CHAT_IDS_HEADER,
                HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    fn id(s: &str) -> Uuid {
        Uuid::try_parse(s).unwrap_or_default()
    }

    #[test]
    fn extract_context_table() {
        // Coder's TestExtractContext cases.
        assert_eq!(extract(&headers(None, None)), Err(NotChat::Absent));
        assert_eq!(
            extract(&headers(Some(A), None)),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![]
            })
        );
        let two = format!("[\"{B}\",\"{C}\"]");
        assert_eq!(
            extract(&headers(Some(A), Some(&two))),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![id(B), id(C)]
            })
        );
        assert_eq!(
            extract(&headers(Some("not-a-uuid"), None)),
            Err(NotChat::Malformed("not-a-uuid".into()))
        );
        assert_eq!(
            extract(&headers(Some(A), Some("{this is not json}"))),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![]
            })
        );
        let partial = format!("[\"{B}\",\"bad-uuid\",\"{C}\"]");
        assert_eq!(
            extract(&headers(Some(A), Some(&partial))),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![id(B), id(C)]
            })
        );
        assert_eq!(extract(&headers(Some(""), None)), Err(NotChat::Absent));
        assert_eq!(
            extract(&headers(Some(A), Some(""))),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![]
            })
        );
        assert_eq!(
            extract(&headers(Some(A), Some("null"))),
            Ok(ChatIdentity {
                id: id(A),
                ancestors: vec![]
            })
        );
    }

    #[test]
    fn four_uuid_forms() {
        let want = id(A);
        for form in [
            A.to_owned(),
            format!("{{{A}}}"),
            format!("urn:uuid:{A}"),
            A.replace('-', ""),
            A.to_uppercase(),
        ] {
            assert_eq!(parse_uuid(&form), Some(want), "{form}");
        }
        assert_eq!(parse_uuid(&format!(" {A}")), None);
    }

    // Found by the chat_headers fuzz target (a port of Go's uuid.Parse and json.Unmarshal).
    #[test]
    fn go_uuid_parse_quirks() {
        let want = id(A);
        // Go ignores the first and last of 38 characters, and the URN prefix's case.
        assert_eq!(parse_uuid(&format!("({A})")), Some(want));
        assert_eq!(parse_uuid(&format!("URN:UUID:{A}")), Some(want));
        assert_eq!(parse_uuid(&format!("Urn:uuid:{A}")), Some(want));
        assert_eq!(parse_uuid(&format!("urn:uuix:{A}")), None);
        // Bytes, not characters: a non-UTF-8 first byte still counts as one.
        let mut raw = vec![0xFFu8];
        raw.extend_from_slice(A.as_bytes());
        raw.push(b'}');
        let h = {
            let mut h = HeaderMap::new();
            h.insert(CHAT_ID_HEADER, HeaderValue::from_bytes(&raw).unwrap());
            h
        };
        assert_eq!(extract(&h).map(|c| c.id), Ok(want));
    }

    #[test]
    fn ancestors_must_all_be_strings_as_in_go() {
        // A non-string entry fails Go's Unmarshal into []string: no ancestors at all.
        let mixed = format!("[1,\"{B}\"]");
        assert_eq!(
            extract(&headers(Some(A), Some(&mixed))).map(|c| c.ancestors),
            Ok(vec![])
        );
        // null entries are no error in Go; they are skipped.
        let nulls = format!("[null,\"{B}\",null]");
        assert_eq!(
            extract(&headers(Some(A), Some(&nulls))).map(|c| c.ancestors),
            Ok(vec![id(B)])
        );
        // Invalid UTF-8 inside a string is replaced, not an error: the other entries count.
        let mut raw = format!("[\"{B}\",\"").into_bytes();
        raw.push(0xFF);
        raw.extend_from_slice(b"\"]");
        let mut h = headers(Some(A), None);
        h.insert(
            ANCESTOR_CHAT_IDS_HEADER,
            HeaderValue::from_bytes(&raw).unwrap(),
        );
        assert_eq!(extract(&h).map(|c| c.ancestors), Ok(vec![id(B)]));
    }

    #[test]
    fn nil_chat_is_logged_but_not_effective() {
        let nil = "00000000-0000-0000-0000-000000000000";
        let c = extract(&headers(Some(nil), None));
        assert!(matches!(&c, Ok(c) if c.effective_id().is_none()));
    }
}
