//! The request pipeline, outermost first: panic recovery, request id, access log (with its
//! own panic guard so a panicking request is still logged as a 500), chat identity, auth,
//! body-size check.
//!
//! Each request runs inside a `request` tracing span holding `request_id`, `method`, `path`
//! and, for chat requests, `chat_id` and `ancestor_chat_ids`; every line logged while
//! serving it therefore carries them. Middleware must not contain domain logic.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use crate::chat::{self, NotChat};
use crate::error::{ApiError, BODY_LIMIT};
use crate::metrics::Metrics;

/// The request id header (echoed back; generated when absent or unusable).
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's id, as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// Assigns a request id: the client's `X-Request-Id` when it is short and printable, else a
/// fresh UUID. The id is echoed in the response.
pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// Opens the request span, runs the rest of the pipeline inside it, turns a panic into a
/// 500, records metrics and writes the access-log line.
pub(crate) async fn access_log(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %path,
        chat_id = tracing::field::Empty,
        ancestor_chat_ids = tracing::field::Empty,
    );
    let in_flight = metrics.in_flight(&route);
    let res = match AssertUnwindSafe(next.run(req).instrument(span.clone()))
        .catch_unwind()
        .await
    {
        Ok(res) => res,
        Err(panic) => {
            let msg = panic_message(&*panic);
            span.in_scope(|| tracing::error!(panic = %msg, "request handler panicked"));
            ApiError::internal("Internal error.")
                .detail(format!("panic: {msg}"))
                .into_response()
        }
    };
    drop(in_flight);
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    metrics.observe_request(&route, &method, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            target: "agentd::access",
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    res
}

/// Parses the chat headers into a [`chat::ChatIdentity`] extension and the request span.
/// Never rejects a request.
pub(crate) async fn chat_identity(mut req: Request, next: Next) -> Response {
    match chat::extract(req.headers()) {
        Ok(ident) => {
            chat::record_chat(&tracing::Span::current(), ident.id, &ident.ancestors);
            req.extensions_mut().insert(ident);
        }
        Err(NotChat::Malformed(raw)) => {
            tracing::debug!(header = %raw, "ignoring malformed Coder-Chat-Id header; not a chat request");
        }
        Err(NotChat::Absent) => {}
    }
    next.run(req).await
}

/// The configured bearer token (TCP listeners only; the unix socket has no auth layer).
#[derive(Clone)]
pub(crate) struct AuthToken(pub Arc<str>);

/// Requires `Authorization: Bearer <token>` on every route except `GET /healthz`.
pub(crate) async fn auth(State(token): State<AuthToken>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.0.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized("the bearer token does not match"),
        None => unauthorized("send the daemon's token as 'Authorization: Bearer <token>'"),
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized.")
        .detail(detail)
        .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Compares in time independent of where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Answers 413 up front when `Content-Length` announces a body over the limit. Chunked
/// bodies are bounded by the extractor limit instead. `POST /api/v0/write-file` streams its
/// body and applies its own, larger limit (`files_api::WRITE_LIMIT`).
pub(crate) async fn body_limit(req: Request, next: Next) -> Response {
    if req.uri().path() == crate::files_api::WRITE_FILE_PATH {
        return next.run(req).await;
    }
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if len.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::too_large(BODY_LIMIT).into_response();
    }
    next.run(req).await
}

/// Turns a caught panic payload into text.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
