//! Browser-origin and DNS-rebinding protection for the TCP listeners.
//!
//! A web page the user opens can send requests to `127.0.0.1:4114` (a `text/plain` POST
//! needs no CORS preflight, a WebSocket none at all), and a page on a rebound name
//! (`evil.example` resolving to 127.0.0.1) is even same-origin. agentd answers 403
//! `{message, detail}` to any TCP request that
//!
//! - carries an `Origin` header that is not exactly one of `--allow-origin`
//!   (`scheme://host[:port]`, compared case-insensitively; none by default), or
//! - names a `Host` that is neither `localhost`, an IP address literal, a host name given in
//!   `--listen`, nor one of `--allow-host` — unless it carries the daemon's bearer token (a
//!   browser page cannot know it).
//!
//! Any IP literal passes: rebinding needs a DNS name the attacker controls, and a page whose
//! origin is an IP literal is served from that address, not by the attacker. This keeps
//! clients that reach agentd by address (Coder's tailnet forwarding sends the workspace's
//! tailnet IP as `Host`) working, while `evil.example` resolving to 127.0.0.1 is refused.
//!
//! Requests without `Origin` (chatd, curl, `agentd ctx`) pass as before. The unix socket
//! does not get this layer. This module only decides who may talk to the daemon; it must
//! not look at bodies or routes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::middleware::constant_time_eq;

/// What the guard allows, built once from the configuration.
#[derive(Debug, Default)]
pub(crate) struct NetGuard {
    /// Allowed `Origin` values, normalised by [`normalize_origin`].
    origins: Vec<String>,
    /// Allowed `Host` names besides `localhost` and IP literals (lowercase, no port).
    hosts: Vec<String>,
    /// The bearer token, if any: a request carrying it may name any `Host`.
    token: Option<Arc<str>>,
}

impl NetGuard {
    /// Builds the guard. `origins` and `hosts` are taken as configured (normalised here).
    pub(crate) fn new(origins: &[String], hosts: &[String], token: Option<&str>) -> Self {
        Self {
            origins: origins.iter().map(|o| normalize_origin(o)).collect(),
            hosts: hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            token: token.map(Arc::from),
        }
    }

    /// `Err` when the request must be refused (its text is the 403's `detail`).
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        for origin in headers.get_all(header::ORIGIN) {
            let raw = String::from_utf8_lossy(origin.as_bytes());
            let norm = normalize_origin(&raw);
            if !self.origins.contains(&norm) {
                return Err(Refused::Origin(raw.into_owned()));
            }
        }
        let Some(host) = headers.get(header::HOST) else {
            return Ok(());
        };
        let raw = String::from_utf8_lossy(host.as_bytes());
        if self.host_allowed(&raw) || self.has_token(headers) {
            return Ok(());
        }
        Err(Refused::Host(raw.into_owned()))
    }

    fn host_allowed(&self, raw: &str) -> bool {
        let Some(name) = host_name(raw) else {
            return false;
        };
        if name == "localhost" {
            return true;
        }
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.hosts.contains(&name)
    }

    fn has_token(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
    }
}

/// Why [`NetGuard::check`] refused a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// An `Origin` header (as sent) that is not allowed.
    #[error(
        "requests from origin {0:?} are not allowed (browser pages cannot drive \
         agentd; allow an origin explicitly with --allow-origin)"
    )]
    Origin(String),
    /// A `Host` header (as sent) that is not allowed, without the token.
    #[error(
        "Host {0:?} is not localhost, an IP address or an allowed host name (DNS \
         rebinding protection): connect by address, send the bearer token, or allow \
         the name with --allow-host"
    )]
    Host(String),
}

/// `scheme://host[:port]`, lowercase, without a trailing slash (browsers send no path).
pub(crate) fn normalize_origin(raw: &str) -> String {
    raw.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The host part of a `Host` header value, lowercase and without the port: `[::1]:80` →
/// `::1`, `Example.COM:8080` → `example.com`. `None` when it is malformed.
fn host_name(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let name = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The middleware: 403 JSON when [`NetGuard::check`] refuses.
pub(crate) async fn guard(State(g): State<Arc<NetGuard>>, req: Request, next: Next) -> Response {
    match g.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(detail) => {
            tracing::warn!(%detail, "refused a request from a browser origin or foreign Host");
            ApiError::new(StatusCode::FORBIDDEN, "Forbidden.")
                .detail(detail.to_string())
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn guard() -> NetGuard {
        NetGuard::new(
            &["https://Chat.Example.com/".to_owned()],
            &["workspace.internal".to_owned()],
            Some("t0k"),
        )
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(
            host_name("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("a:b:c"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name(":80"), None);
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "localhost:4114",
            "LOCALHOST",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:4114",
            "10.1.2.3:9",
            "[fd7a:115c:a1e0::1]:4114",
            "workspace.internal:4114",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:4114",
            "localhost.evil.example",
            "workspace.internal.evil.example",
            "127.0.0.1.nip.io",
            "localhost:x",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_and_token() {
        let g = guard();
        assert!(g.check(&headers(&[("host", "127.0.0.1:1")])).is_ok());
        assert!(g.check(&headers(&[])).is_ok());
        assert!(
            g.check(&headers(&[("origin", "https://chat.example.com")]))
                .is_ok()
        );
        assert!(
            g.check(&headers(&[("origin", "http://chat.example.com")]))
                .is_err()
        );
        assert_eq!(
            g.check(&headers(&[("origin", "null")])),
            Err(Refused::Origin("null".into()))
        );
        assert_eq!(
            Refused::Origin("null".into()).to_string(),
            "requests from origin \"null\" are not allowed (browser pages cannot drive agentd; \
             allow an origin explicitly with --allow-origin)"
        );
        assert!(
            g.check(&headers(&[
                ("origin", "https://chat.example.com"),
                ("origin", "https://evil.example")
            ]))
            .is_err()
        );
        assert_eq!(
            g.check(&headers(&[("host", "evil.example")])),
            Err(Refused::Host("evil.example".into()))
        );
        assert_eq!(
            Refused::Host("evil.example".into()).to_string(),
            "Host \"evil.example\" is not localhost, an IP address or an allowed host name \
             (DNS rebinding protection): connect by address, send the bearer token, or allow \
             the name with --allow-host"
        );
        assert!(
            g.check(&headers(&[
                ("host", "evil.example"),
                ("authorization", "Bearer t0k")
            ]))
            .is_ok()
        );
        assert!(
            g.check(&headers(&[
                ("host", "evil.example"),
                ("authorization", "Bearer no")
            ]))
            .is_err()
        );
        // The token does not waive the origin check.
        assert!(
            g.check(&headers(&[
                ("origin", "https://evil.example"),
                ("authorization", "Bearer t0k")
            ]))
            .is_err()
        );
    }
}
