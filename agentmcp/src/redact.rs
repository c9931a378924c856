//! Secret redaction for errors shown over the API (Coder `redact.go` rules): config env
//! values, inherited env values, header values (and the credential after the first
//! space), non-flag args and `--flag=value` values, URL userinfo, query values and path.
//! Values shorter than 4 bytes are kept; output capped at 4096 bytes on a char boundary.
//!
//! A server's [`Secrets`] are collected, sorted and deduplicated once, when it is created.

use crate::config::ServerSpec;

const MIN_LEN: usize = 4;
/// Cap on a diagnostic.
pub(crate) const MAX_BYTES: usize = 4096;
const MARK: &str = "[redacted]";

/// Values to hide: longest first (a secret containing another is replaced whole), at
/// least 4 bytes, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Sorts and filters `values` once.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut v: Vec<String> = values.into_iter().filter(|s| s.len() >= MIN_LEN).collect();
        v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        v.dedup();
        Self(v)
    }

    /// Replaces each secret by `[redacted]` in `text`'s `Display` (a message or a typed
    /// error such as [`SpecError`](crate::config::SpecError)) and caps the result.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MARK);
            }
        }
        cap(out)
    }
}

/// Collects every secret-looking value of a server entry plus the inherited environment's
/// values.
pub(crate) fn secrets_of(spec: &ServerSpec, inherited: &[String]) -> Secrets {
    let mut s: Vec<String> = Vec::new();
    s.extend(spec.env.values().cloned());
    s.extend(inherited.iter().cloned());
    for v in spec.headers.values() {
        s.push(v.clone());
        if let Some((_, cred)) = v.split_once(' ') {
            s.push(cred.to_owned());
        }
    }
    for a in &spec.args {
        if let Some(rest) = a.strip_prefix('-') {
            if let Some((_, v)) = rest.split_once('=') {
                s.push(v.to_owned());
            }
        } else {
            s.push(a.clone());
        }
    }
    if let Ok(u) = reqwest::Url::parse(&spec.url) {
        if !u.username().is_empty() {
            s.push(u.username().to_owned());
        }
        if let Some(p) = u.password() {
            s.push(p.to_owned());
        }
        if let Some(q) = u.query() {
            s.push(q.to_owned());
            s.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        }
        if u.path() != "/" && !u.path().is_empty() {
            s.push(u.path().to_owned());
        }
    }
    Secrets::new(s)
}

/// The values a server entry configures as secrets — env values, header values (and the
/// credential after the first space), URL userinfo and query values — without the
/// inherited environment or args: what is hidden in the server's stderr lines, which
/// should stay readable otherwise.
pub(crate) fn configured_secrets(spec: &ServerSpec) -> Secrets {
    let mut s: Vec<String> = spec.env.values().cloned().collect();
    for v in spec.headers.values() {
        s.push(v.clone());
        if let Some((_, cred)) = v.split_once(' ') {
            s.push(cred.to_owned());
        }
    }
    if let Ok(u) = reqwest::Url::parse(&spec.url) {
        if !u.username().is_empty() {
            s.push(u.username().to_owned());
        }
        if let Some(p) = u.password() {
            s.push(p.to_owned());
        }
        s.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
    }
    Secrets::new(s)
}

/// A URL as it may be logged: no userinfo, and the query (session ids, keys) replaced by
/// `[redacted]`.
pub(crate) fn url_for_log(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    let mut out = u.to_string();
    if had_query {
        out.push('?');
        out.push_str(MARK);
    }
    out
}

fn cap(mut s: String) -> String {
    const SUFFIX: &str = "... [truncated]";
    if s.len() <= MAX_BYTES {
        return s;
    }
    let mut cut = MAX_BYTES - SUFFIX.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(SUFFIX);
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_logs_hide_credentials_and_queries() {
        let u = reqwest::Url::parse("http://user:pw@h:8/messages?sessionId=abc123#f").unwrap();
        assert_eq!(url_for_log(&u), "http://h:8/messages?[redacted]");
        let u = reqwest::Url::parse("https://h/sse").unwrap();
        assert_eq!(url_for_log(&u), "https://h/sse");
    }

    #[test]
    fn configured_secrets_leave_args_and_inherited_values() {
        let spec = ServerSpec {
            name: "x".into(),
            transport: crate::config::Transport::Stdio,
            command: "srv".into(),
            args: vec!["server.js".into()],
            env: [("API_KEY".to_string(), "sk-12345".to_string())].into(),
            url: String::new(),
            headers: [("Authorization".to_string(), "Bearer tok-999".to_string())].into(),
            config_file: "/f".into(),
        };
        assert_eq!(
            configured_secrets(&spec).redact("server.js key=sk-12345 auth=tok-999"),
            "server.js key=[redacted] auth=[redacted]"
        );
    }

    #[test]
    fn redacts_longest_first_and_caps() {
        let spec = ServerSpec {
            name: "x".into(),
            transport: crate::config::Transport::Http,
            command: String::new(),
            args: vec![
                "--token=abcdef".into(),
                "positional-secret".into(),
                "-v".into(),
            ],
            env: [("K".to_string(), "envsecret".to_string())].into(),
            url: "https://u:pw12345@h/p/ath?key=qv123".into(),
            headers: [("Authorization".to_string(), "Bearer tok-999".to_string())].into(),
            config_file: "/f".into(),
        };
        let sec = secrets_of(&spec, &["aws-xyz".into()]);
        let r = sec.redact(
            "envsecret tok-999 abcdef positional-secret aws-xyz pw12345 qv123 /p/ath -v ab",
        );
        assert_eq!(
            r,
            "[redacted] [redacted] [redacted] [redacted] [redacted] [redacted] [redacted] [redacted] -v ab"
        );
        // Longest first, whatever the input order; duplicates and short values ignored.
        let s = Secrets::new(["abcd", "abcdef", "abcd", "xyz"].map(String::from));
        assert_eq!(s.redact("abcdef abcd xyz"), "[redacted] [redacted] xyz");
        let big = "é".repeat(5000);
        let c = Secrets::default().redact(&big);
        assert!(c.len() <= MAX_BYTES && c.ends_with("... [truncated]"));
    }
}
