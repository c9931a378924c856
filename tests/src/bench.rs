//! Shared measuring helpers of the benchmarks in `tests/benches/`: percentiles of a sample
//! of durations and the one-line report format. They must not start daemons or decide what
//! is measured; each bench owns its setup and baselines.

use std::time::Duration;

/// The p50 and p95 (in milliseconds) of `v`.
pub fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95 / 100).min(v.len() - 1)]),
    )
}

/// Prints `name` with its p50 and p95.
pub fn line(name: &str, (p50, p95): (f64, f64)) {
    println!("{name:<52} p50 {p50:>8.3} ms   p95 {p95:>8.3} ms");
}
