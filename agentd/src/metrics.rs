//! Prometheus text exposition for `GET /metrics`, hand-rolled (a registry crate would be
//! more code than this).
//!
//! The HTTP counters and latency histograms live here; subsystems (processes, MCP, git)
//! register a [`Collector`] that appends their own families when the page is rendered, so
//! their numbers are read at scrape time and never go stale. This module must not block:
//! collectors read atomics or short-held locks only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Appends Prometheus text for one subsystem.
pub(crate) type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

/// Upper bounds (seconds) of `agentd_http_request_duration_seconds`.
pub(crate) const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Upper bounds (seconds) of `agentd_git_scan_duration_seconds`.
pub(crate) const GIT_SCAN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A duration histogram with fixed upper bounds (cumulative counts, as Prometheus has them).
/// Not synchronised: its owner keeps it behind a short-held lock.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one duration.
    pub(crate) fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in self.bounds.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of family `name` with `labels`
    /// (already escaped, `""` for none, e.g. `route="/healthz"`).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

/// Appends the `# HELP` and `# TYPE` lines of a family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The daemon's metrics.
pub(crate) struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    /// Requests being answered, by route (entries stay at 0 once seen).
    in_flight: Mutex<BTreeMap<String, u64>>,
    collectors: RwLock<Vec<Collector>>,
}

/// One request counted in `agentd_http_requests_in_flight` until dropped (also when the
/// request's future is dropped: a client that hangs up is no longer in flight).
pub(crate) struct InFlight<'a> {
    metrics: &'a Metrics,
    route: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = crate::sync::lock(&self.metrics.in_flight);
        if let Some(n) = m.get_mut(self.route) {
            *n = n.saturating_sub(1);
        }
    }
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
            in_flight: Mutex::default(),
            collectors: RwLock::default(),
        }
    }

    /// Counts one request of `route` (a matched route pattern or "unmatched") as in flight
    /// until the returned guard is dropped.
    pub(crate) fn in_flight<'a>(&'a self, route: &'a str) -> InFlight<'a> {
        let mut m = crate::sync::lock(&self.in_flight);
        match m.get_mut(route) {
            Some(n) => *n += 1,
            None => {
                m.insert(route.to_owned(), 1);
            }
        }
        InFlight {
            metrics: self,
            route,
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
            let mut requests = crate::sync::lock(&self.requests);
            let key = (route.to_owned(), method, status);
            *requests.entry(key).or_default() += 1;
        }
        let mut durations = crate::sync::lock(&self.durations);
        match durations.get_mut(route) {
            Some(h) => h.observe(elapsed),
            None => {
                let mut h = Histogram::new(HTTP_BUCKETS);
                h.observe(elapsed);
                durations.insert(route.to_owned(), h);
            }
        }
    }

    /// Registers a subsystem collector.
    pub(crate) fn register(&self, c: Collector) {
        crate::sync::write(&self.collectors).push(c);
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
        for ((route, method, status), n) in crate::sync::lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "agentd_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }

        header(
            &mut out,
            "agentd_http_requests_in_flight",
            "gauge",
            "HTTP requests being answered, by route.",
        );
        for (route, n) in crate::sync::lock(&self.in_flight).iter() {
            let _ = writeln!(
                out,
                "agentd_http_requests_in_flight{{route=\"{}\"}} {n}",
                escape(route)
            );
        }

        header(
            &mut out,
            "agentd_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route.",
        );
        for (route, h) in crate::sync::lock(&self.durations).iter() {
            let labels = format!("route=\"{}\"", escape(route));
            h.render(&mut out, "agentd_http_request_duration_seconds", &labels);
        }

        for c in crate::sync::read(&self.collectors).iter() {
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
        {
            let _a = m.in_flight("/api/v0/processes/{id}/output");
            let _b = m.in_flight("/api/v0/processes/{id}/output");
            let page = m.render();
            assert!(page.contains(
                "agentd_http_requests_in_flight{route=\"/api/v0/processes/{id}/output\"} 2\n"
            ));
        }
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
        // Finished requests are no longer in flight.
        assert!(page.contains(
            "agentd_http_requests_in_flight{route=\"/api/v0/processes/{id}/output\"} 0\n"
        ));
    }

    #[test]
    fn histogram_bounds_are_a_parameter_and_labels_optional() {
        let mut h = Histogram::new(&[0.25, 1.0]);
        h.observe(Duration::from_millis(250));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert_eq!(
            out,
            "x_seconds_bucket{le=\"0.25\"} 1\n\
             x_seconds_bucket{le=\"1\"} 2\n\
             x_seconds_bucket{le=\"+Inf\"} 3\n\
             x_seconds_sum 2.75\n\
             x_seconds_count 3\n"
        );
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"/a\"");
        assert!(out.starts_with("x_seconds_bucket{route=\"/a\",le=\"0.25\"} 1\n"));
        assert!(
            out.ends_with("x_seconds_sum{route=\"/a\"} 2.75\nx_seconds_count{route=\"/a\"} 3\n")
        );
    }
}
