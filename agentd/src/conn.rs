//! Serving connections: the accept loop of every listener (TCP and the unix socket), with
//! the bounds axum's `serve` lacks.
//!
//! - hyper's HTTP/1 connection builder gets a timer and a header-read timeout: a connection
//!   that does not deliver a complete request head in time — a partial request line, or
//!   nothing at all, or an idle keep-alive connection between requests (hyper runs the same
//!   timer while it waits for the next head) — is closed. The timer never runs while a
//!   request is being answered, so long-polls (`?wait=true`), SSE and upgraded WebSockets
//!   are not cut.
//! - At most `max_connections` connections are served at once per listener set; further
//!   ones are not accepted and wait in the kernel's listen backlog (clients see latency,
//!   not resets) until a slot frees, which the timeout above guarantees for idle ones.
//! - Graceful shutdown: on cancellation the loop stops accepting and every connection is
//!   told to finish its in-flight request and close; the caller bounds the drain.
//!
//! This module must not know routes or look at requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How connections are bounded.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    /// Header-read (and keep-alive idle) timeout.
    pub header_read_timeout: Duration,
    /// Shared by the listeners of one kind: connections served at once.
    pub slots: Arc<Semaphore>,
    /// Shared by the listeners of one kind: connections accepted and not yet closed (the
    /// `agentd_connections_open` gauge).
    pub open: Arc<AtomicUsize>,
}

/// Counts one accepted connection in [`ConnLimits::open`] until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then waits for the connections to
/// finish (each is asked to close after its in-flight request). Dropping the returned
/// future drops every connection.
pub(crate) async fn serve<L: Listener>(
    mut listener: L,
    app: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = limits.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let io = tokio::select! {
            (io, _addr) = listener.accept() => io,
            _ = stop.cancelled() => break,
        };
        let open = Open::new(&limits.open);
        let app = app.clone();
        let stop = stop.clone();
        let builder = builder.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _open = open;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error during shutdown");
            }
        });
    }
    // Not accepting any more: the listener closes now, the connections drain.
    drop(listener);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection, process pipe and
/// watch costs descriptors) and logs the result.
pub(crate) fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-file limit already at its maximum"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}
