//! Prometheus text exposition for `GET /metrics`, hand-rolled (a registry crate would be
//! more code than this).
//!
//! The HTTP counters and latency histograms live here; subsystems (processes, MCP, git)
//! register a [`Collector`] that appends their own families when the page is rendered, so
//! their numbers are read at scrape time and never go stale. This module must not block:
//! collectors read atomics or short-held locks only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Appends Prometheus text for one subsystem.
pub(crate) type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// The daemon's metrics.
pub(crate) struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    collectors: RwLock<Vec<Collector>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics; uptime counts from now.
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: Mutex::default(),
            durations: Mutex::default(),
            collectors: RwLock::default(),
        }
    }

    /// Records one finished request. `route` is a matched route pattern (or "unmatched");
    /// methods outside HTTP's standard set count as "other", so no client can grow the page.
    pub(crate) fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let method = standard_method(method);
        {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (route.to_owned(), method, status);
            *requests.entry(key).or_default() += 1;
        }
        let mut durations = self
            .durations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match durations.get_mut(route) {
            Some(h) => h.observe(elapsed.as_secs_f64()),
            None => {
                let mut h = Histogram::default();
                h.observe(elapsed.as_secs_f64());
                durations.insert(route.to_owned(), h);
            }
        }
    }

    /// Registers a subsystem collector.
    pub(crate) fn register(&self, c: Collector) {
        self.collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
    }

    /// Renders the whole page.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP agentd_build_info agentd version.");
        let _ = writeln!(out, "# TYPE agentd_build_info gauge");
        let _ = writeln!(
            out,
            "agentd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP agentd_uptime_seconds Seconds since the daemon started."
        );
        let _ = writeln!(out, "# TYPE agentd_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "agentd_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );

        let _ = writeln!(
            out,
            "# HELP agentd_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE agentd_http_requests_total counter");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "agentd_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }

        let _ = writeln!(
            out,
            "# HELP agentd_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(out, "# TYPE agentd_http_request_duration_seconds histogram");
        for (route, h) in self
            .durations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let route = escape(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "agentd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }

        for c in self
            .collectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            c(&mut out);
        }
        out
    }
}

/// The method as a label value: one of HTTP's standard methods, else "other".
fn standard_method(m: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|k| *k == m).unwrap_or("other")
}

/// Escapes a label value.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_collectors() {
        let m = Metrics::new();
        m.observe_request("/healthz", "GET", 200, Duration::from_millis(2));
        m.observe_request("/healthz", "GET", 200, Duration::from_millis(3));
        m.register(Box::new(|out| out.push_str("agentd_custom 7\n")));
        // Made-up methods share one label value.
        m.observe_request("unmatched", "FOO", 404, Duration::from_millis(1));
        m.observe_request("unmatched", "BAR", 404, Duration::from_millis(1));
        let page = m.render();
        assert!(page.contains(
            "agentd_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 2\n"
        ));
        assert!(!page.contains("FOO") && !page.contains("BAR"));
        assert!(page.contains(
            "agentd_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(page.contains(
            "agentd_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.0025\"} 1\n"
        ));
        assert!(
            page.contains("agentd_http_request_duration_seconds_count{route=\"/healthz\"} 2\n")
        );
        assert!(page.contains("agentd_custom 7\n"));
    }
}
