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
pub type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
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
pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
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
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: Mutex::default(),
            durations: Mutex::default(),
            collectors: RwLock::default(),
        }
    }

    /// Records one finished request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        self.durations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_owned())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Registers a subsystem collector.
    pub fn register(&self, c: Collector) {
        self.collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
    }

    /// Renders the whole page.
    pub fn render(&self) -> String {
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
                    h.counts.get(i).copied().unwrap_or(0)
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

/// Escapes a label value.
pub fn escape(v: &str) -> String {
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
        let page = m.render();
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
