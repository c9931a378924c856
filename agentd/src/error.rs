//! The wire error type: every error answer is `{"message": "...", "detail": "..."}` with
//! `Content-Type: application/json`, as Coder's `codersdk.Response`.
//!
//! Handlers map their domain errors to an [`ApiError`] here and nowhere else.

use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Coder's `codersdk.Response`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    /// A human-readable summary; always present.
    pub message: String,
    /// More detail; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// An error answer: a status and a Coder-shaped body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with a message and no detail.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                message: message.into(),
                detail: String::new(),
            },
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.body.detail = detail.into();
        self
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
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
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
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
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

/// Request body limit for JSON endpoints.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON request body. Unknown fields are ignored (serde's default); a body that is not
/// valid JSON, or has wrong types, is a 400 `Request body must be valid JSON.` whose detail
/// says what is wrong (`EOF` for an empty body, as Go's decoder); a body over
/// [`BODY_LIMIT`] is a 413.
pub struct ApiJson<T>(pub T);

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
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body with Coder's error shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Request body must be valid JSON.").detail("EOF"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("Request body must be valid JSON.").detail(e.to_string())
    })
}
