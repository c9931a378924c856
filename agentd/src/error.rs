//! The wire error type: every error answer is `{"message": "...", "detail": "..."}` with
//! `Content-Type: application/json`, as Coder's `codersdk.Response`.
//!
//! Handlers map their domain errors to an [`ApiError`] here and nowhere else.

use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Coder's `codersdk.Response`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody {
    /// A human-readable summary; always present.
    pub message: String,
    /// More detail; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// An error answer: a status and a Coder-shaped body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with a message and no detail.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                message: message.into(),
                detail: String::new(),
            },
        }
    }

    /// Adds a detail.
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.body.detail = detail.into();
        self
    }

    /// 400 with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 with a message.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 413 for a body over the limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
            .detail(format!("the limit is {limit} bytes"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// Serializes `body` as Coder does: `application/json; charset=utf-8`, a trailing newline.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            let fallback = ErrorBody {
                message: "Internal error encoding the response.".into(),
                detail: e.to_string(),
            };
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &fallback);
        }
    };
    bytes.push(b'\n');
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        bytes,
    )
        .into_response()
}

/// A 200 JSON answer.
pub(crate) struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

/// Request body limit for JSON endpoints.
pub(crate) const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON request body. Unknown fields are ignored (serde's default); a body that is not
/// valid JSON, is not an object (`null` counts as an empty one, as in Go), or has wrong
/// types, is a 400 `Request body must be valid JSON.` whose detail
/// says what is wrong (`EOF` for an empty body, as Go's decoder); a body over
/// [`BODY_LIMIT`] is a 413.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
                return Err(ApiError::too_large(BODY_LIMIT));
            }
            Err(e) => {
                return Err(
                    ApiError::bad_request("Failed to read the request body.").detail(e.body_text())
                );
            }
        };
        parse_json_object(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body with Coder's error shape.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Request body must be valid JSON.").detail("EOF"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("Request body must be valid JSON.").detail(e.to_string())
    })
}

/// Parses a JSON body that must be an object (or `null`), as Go's decoder does for a struct:
/// an array, string, number or boolean is a 400 `Request body must be valid JSON.` (serde's
/// derived structs would otherwise accept an array as a tuple of their fields).
pub(crate) fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ApiError::bad_request("Request body must be valid JSON.").detail("EOF")),
        Some(b'{') => parse_json(bytes),
        // `null` decodes into an empty struct in Go: every field keeps its zero value.
        Some(b'n') => match parse_json::<serde_json::Value>(bytes)? {
            serde_json::Value::Null => parse_json(b"{}"),
            _ => unreachable_json_kind(),
        },
        Some(_) => {
            // Report a syntax error first, as Go does, then the type mismatch.
            let v: serde_json::Value = parse_json(bytes)?;
            Err(ApiError::bad_request("Request body must be valid JSON.")
                .detail(format!("cannot decode {} into an object", json_kind(&v))))
        }
    }
}

fn unreachable_json_kind<T>() -> Result<T, ApiError> {
    // A document starting with `n` that parses is `null`; keep a clear answer regardless.
    Err(ApiError::bad_request("Request body must be valid JSON.").detail("expected an object"))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A single path parameter (`{id}`), percent-decoded. A segment that is not valid UTF-8
/// after decoding is decoded lossily instead of rejected: Go's router hands such bytes to
/// the handler, which answers its own 404 (no resource has that name), always in the
/// standard error shape.
pub(crate) struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rejection) => raw_param(parts).map(Self).ok_or_else(|| {
                ApiError::bad_request("Invalid path parameter.").detail(rejection.body_text())
            }),
        }
    }
}

/// The raw segment under the route's single `{param}`, percent-decoded lossily.
fn raw_param(parts: &Parts) -> Option<String> {
    let template = parts.extensions.get::<MatchedPath>()?.as_str();
    let index = template
        .split('/')
        .position(|s| s.starts_with('{') && s.ends_with('}'))?;
    let raw = parts.uri.path().split('/').nth(index)?;
    let bytes: Vec<u8> = percent_decode(raw.as_bytes());
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Query parameters decoded into `T`; a rejection is a 400 in the standard error shape.
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|r| ApiError::bad_request("Invalid query parameters.").detail(r.body_text()))
    }
}

/// A WebSocket upgrade whose rejection (not a GET, missing or wrong upgrade headers) is
/// Coder's `Failed to accept websocket.` in the standard error shape, with the rejection's
/// status (400, 405 or 426).
pub(crate) struct ApiWebSocket(pub axum::extract::ws::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for ApiWebSocket {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|r| {
                ApiError::new(r.status(), "Failed to accept websocket.").detail(r.body_text())
            })
    }
}

/// The last layer of defence for the error shape: an error answer (4xx/5xx) that is not
/// JSON — a rejection of an extractor no handler wraps, a framework default — is rewritten
/// to `{"message","detail"}` with the same status, its text as the detail.
pub(crate) async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = status.canonical_reason().unwrap_or("Request failed.");
    let mut out = ApiError::new(status, format!("{message}."))
        .detail(text)
        .into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
