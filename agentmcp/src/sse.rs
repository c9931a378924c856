//! Legacy HTTP+SSE client transport (MCP 2024-11-05), which rmcp no longer ships:
//! `GET` the SSE URL, wait for the `endpoint` event, then POST every client message to that
//! endpoint and read server messages as `message` events from the stream.
//!
//! The endpoint must be on the SSE URL's origin (headers never leave it). A failed POST or
//! a closed stream ends the transport so the supervisor reconnects. URLs are logged only
//! through `redact::url_for_log` (the endpoint's query is the session's credential).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::http::{origin, same_origin_client};
use crate::redact::url_for_log;

/// How long to wait for the `endpoint` event.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

/// `url::ParseError`, named through `reqwest::Url` (no direct dependency on `url`).
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why the SSE stream could not be opened. `Display` is the server's last error (redacted by
/// the caller); URLs in it went through `url_for_log`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SseError {
    /// The configured url does not parse.
    #[error("invalid url: {0}")]
    InvalidUrl(#[source] UrlParseError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(reqwest::Error),
    /// The `GET` failed (the error carries no URL; `url` is the logged form).
    #[error("GET {url}: {source}")]
    Get {
        /// The SSE URL as logged.
        url: String,
        /// The transport error, without its URL.
        source: reqwest::Error,
    },
    /// The `GET` answered with a non-success status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The SSE URL as logged.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The stream failed before the `endpoint` event.
    #[error("sse error before endpoint event: {0}")]
    BeforeEndpoint(#[source] sse_stream::Error),
    /// The stream ended before the `endpoint` event.
    #[error("sse stream closed before the endpoint event")]
    ClosedBeforeEndpoint,
    /// No `endpoint` event within [`ENDPOINT_TIMEOUT`].
    #[error("no endpoint event within {}s", ENDPOINT_TIMEOUT.as_secs())]
    NoEndpoint,
    /// The `endpoint` event's data is not a URL reference.
    #[error("bad endpoint in the endpoint event: {0}")]
    BadEndpoint(#[source] UrlParseError),
    /// The endpoint is on another origin than the SSE URL (headers never leave it).
    #[error("endpoint on another origin refused")]
    CrossOrigin,
}

/// The transport halves rmcp accepts as `(Sink, Stream)`, plus a token that stops both tasks.
pub(crate) type SseParts = (
    PollSender<ClientJsonRpcMessage>,
    futures::stream::BoxStream<'static, ServerJsonRpcMessage>,
    CancellationToken,
);

fn with_headers(
    mut rb: reqwest::RequestBuilder,
    headers: &BTreeMap<String, String>,
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    rb
}

/// Connects; the returned tasks stop when the token is cancelled or the stream ends.
pub(crate) async fn connect(
    url: &str,
    headers: &BTreeMap<String, String>,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<SseParts, SseError> {
    let base = reqwest::Url::parse(url).map_err(SseError::InvalidUrl)?;
    let http = same_origin_client(&base).map_err(SseError::Client)?;
    let resp = with_headers(http.get(base.clone()), headers)
        .header("accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| SseError::Get {
            url: url_for_log(&base),
            source: e.without_url(),
        })?;
    if !resp.status().is_success() {
        return Err(SseError::Status {
            url: url_for_log(&base),
            status: resp.status(),
        });
    }
    let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
        loop {
            match events.next().await {
                Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                    break Ok(ev.data.unwrap_or_default());
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(SseError::BeforeEndpoint(e)),
                None => break Err(SseError::ClosedBeforeEndpoint),
            }
        }
    })
    .await
    .map_err(|_| SseError::NoEndpoint)??;
    let post_url = base.join(endpoint.trim()).map_err(SseError::BadEndpoint)?;
    if origin(&post_url) != origin(&base) {
        return Err(SseError::CrossOrigin);
    }

    let stop = CancellationToken::new();
    let (in_tx, mut in_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
    tasks.spawn({
        let stop = stop.clone();
        async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => break,
                    ev = events.next() => ev,
                };
                let Some(Ok(ev)) = ev else { break };
                if ev.event.as_deref().unwrap_or("message") != "message" {
                    continue;
                }
                let Some(data) = ev.data else { continue };
                match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                    Ok(m) => {
                        if in_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "sse: skipping a non-JSON-RPC message"),
                }
            }
            stop.cancel();
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let headers = headers.clone();
    tasks.spawn({
        let stop = stop.clone();
        async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = out_rx.recv() => m,
                };
                let Some(msg) = msg else { break };
                let res = with_headers(http.post(post_url.clone()), &headers)
                    .timeout(Duration::from_secs(30))
                    .json(&msg)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(
                            status = r.status().as_u16(),
                            url = %url_for_log(&post_url),
                            "sse: POST refused; closing"
                        );
                        break;
                    }
                    Err(e) => {
                        // reqwest's error text carries the session URL (its query is
                        // the session's credential): log it without.
                        tracing::warn!(
                            error = %e.without_url(),
                            url = %url_for_log(&post_url),
                            "sse: POST failed; closing"
                        );
                        break;
                    }
                }
            }
            stop.cancel();
        }
    });
    let stream = {
        let stop = stop.clone();
        futures::stream::poll_fn(move |cx| {
            if stop.is_cancelled() {
                return std::task::Poll::Ready(None);
            }
            in_rx.poll_recv(cx)
        })
        .boxed()
    };
    Ok((PollSender::new(out_tx), stream, stop))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The typed errors keep the texts they had as strings (they become the server's
    /// `last_error`).
    #[test]
    fn error_texts_are_unchanged() {
        let parse = reqwest::Url::parse("not a url").unwrap_err();
        assert_eq!(
            SseError::InvalidUrl(parse).to_string(),
            "invalid url: relative URL without a base"
        );
        let status = SseError::Status {
            url: "http://h/sse".into(),
            status: reqwest::StatusCode::NOT_FOUND,
        };
        assert_eq!(status.to_string(), "GET http://h/sse: HTTP 404 Not Found");
        assert_eq!(
            SseError::ClosedBeforeEndpoint.to_string(),
            "sse stream closed before the endpoint event"
        );
        assert_eq!(
            SseError::NoEndpoint.to_string(),
            "no endpoint event within 15s"
        );
        assert_eq!(
            SseError::BadEndpoint(parse).to_string(),
            "bad endpoint in the endpoint event: relative URL without a base"
        );
        assert_eq!(
            SseError::CrossOrigin.to_string(),
            "endpoint on another origin refused"
        );
    }
}
