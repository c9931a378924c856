//! The OpenAPI 3.1 document of every route (`agentd/openapi.json`, embedded at build time)
//! and its route, `GET /api/v0/openapi.json`.
//!
//! The document is the contract; `tests/it/openapi.rs` keeps it and the router in step
//! (every route documented and vice versa, real answers validated against it). This module
//! only serves the bytes: it must not build or rewrite the document at run time.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Path of the document.
const OPENAPI_PATH: &str = "/api/v0/openapi.json";

/// The document, as checked in.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The route. It sits behind the same auth as every other route (the token on TCP when
/// one is configured): the document describes what the daemon can do, which is no
/// business of a caller that may not use it.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(OPENAPI_PATH, get(document))
}

async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        DOCUMENT,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn document_parses_and_names_this_version() {
        let v: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(v["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
