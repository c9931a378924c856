//! Logging to stderr: flat JSON lines (machines) or compact text (terminals).
//!
//! The JSON layer flattens the fields of every enclosing span into each line, so a line
//! logged anywhere while serving a chat request (or on behalf of a process it started)
//! carries `chat_id` at the top level, not nested. The fields in [`RAW_JSON_FIELDS`]
//! (`ancestor_chat_ids`) hold JSON text and are emitted as JSON values. This module must not
//! decide *what* is logged, only how.
//!
//! JSON lines are written at once until the server calls [`batch`] (it does once ready).
//! From then on info and debug lines collect in a buffer that a flusher thread writes at
//! most [`FLUSH_EVERY`] after its first line: one write, and one wakeup of whatever reads
//! our stderr, per batch instead of four per process started (two access lines, started,
//! exited), and none of them between a request and its response. A warning or an error
//! goes out at once, after the lines buffered before it. [`flush`] (at exit, and from the
//! panic hook) writes what is left; a SIGKILL loses at most the last batch.

use std::io::Write;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::sync::lock;

/// Why the logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    /// The filter string does not parse.
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is installed already.
    #[error("cannot install the logger: {0}")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber. Fails on an invalid filter string.
pub(crate) fn init(format: LogFormat, filter: &str) -> Result<(), InitError> {
    let filter = EnvFilter::try_new(filter).map_err(|source| InitError::Filter {
        filter: filter.to_owned(),
        source,
    })?;
    let registry = tracing_subscriber::registry().with(filter);
    let res = match format {
        LogFormat::Json => registry.with(JsonLayer).try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    res.map_err(InitError::Install)
}

/// Fields of a span or an event: names with their values already encoded as JSON. A name
/// recorded twice keeps its last value.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn set(&mut self, name: &'static str, json: String) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = json,
            None => self.0.push((name, json)),
        }
    }
}

/// Span fields, kept in the span's extensions.
struct SpanFields(Fields);

/// A layer writing one flat JSON object per event to stderr. Values are encoded once, when
/// recorded; a line is assembled in a reused per-thread buffer and written with one call.
struct JsonLayer;

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<S> tracing_subscriber::Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut Visitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut own = Fields::default();
        event.record(&mut Visitor(&mut own));
        let scope: Vec<_> = ctx
            .event_scope(event)
            .map(|s| s.from_root().collect())
            .unwrap_or_default();
        let exts: Vec<_> = scope.iter().map(|span| span.extensions()).collect();
        // Root span first, the event last: a later field of the same name wins.
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(16);
        for ext in &exts {
            if let Some(SpanFields(f)) = ext.get::<SpanFields>() {
                all.extend(f.0.iter().map(|(k, v)| (*k, v.as_str())));
            }
        }
        all.extend(own.0.iter().map(|(k, v)| (*k, v.as_str())));
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.extend_from_slice(b"{\"ts\":\"");
            write_rfc3339_millis(line, SystemTime::now());
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(level_name(meta.level()).as_bytes());
            line.extend_from_slice(b"\",\"target\":");
            push_json_str(line, meta.target());
            for (i, (k, v)) in all.iter().enumerate() {
                let overridden = all[i + 1..].iter().any(|(later, _)| later == k);
                if overridden || matches!(*k, "ts" | "level" | "target") {
                    continue;
                }
                line.push(b',');
                push_json_str(line, k);
                line.push(b':');
                line.extend_from_slice(v.as_bytes());
            }
            line.extend_from_slice(b"}\n");
            emit(
                line,
                matches!(*meta.level(), tracing::Level::WARN | tracing::Level::ERROR),
            );
            if line.capacity() > 64 * 1024 {
                *line = Vec::new();
            }
        });
    }
}

/// Longest time an info or debug line waits in the buffer once batching is on.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch this large is written at once.
const FLUSH_AT: usize = 256 * 1024;

/// Lines not yet written, and the flusher's state. Writes happen under the lock, so lines
/// reach stderr whole and in order.
struct Out {
    buf: Vec<u8>,
    /// A flusher thread runs and lines may wait for it.
    batching: bool,
}

static OUT: Mutex<Out> = Mutex::new(Out {
    buf: Vec::new(),
    batching: false,
});
/// Signalled when the buffer gets its first line, and when batching stops.
static PENDING: Condvar = Condvar::new();
/// The flusher thread, while batching.
static FLUSHER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

fn out() -> std::sync::MutexGuard<'static, Out> {
    lock(&OUT)
}

/// Writes the buffer to stderr and empties it. A failed write drops the lines: there is
/// nowhere else to report it.
fn write_out(o: &mut Out) {
    if !o.buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(&o.buf);
        o.buf.clear();
        if o.buf.capacity() > 4 * FLUSH_AT {
            o.buf = Vec::new();
        }
    }
}

/// Queues (or, when `urgent` or not batching, writes) one complete line.
fn emit(line: &[u8], urgent: bool) {
    let mut o = out();
    if urgent || !o.batching {
        o.buf.extend_from_slice(line);
        write_out(&mut o);
        return;
    }
    let first = o.buf.is_empty();
    o.buf.extend_from_slice(line);
    if o.buf.len() >= FLUSH_AT {
        write_out(&mut o);
    } else if first {
        PENDING.notify_one();
    }
}

/// From now on, info and debug JSON lines are written in batches by a flusher thread (see
/// the module doc). Also makes a panic flush what is buffered before its message. Idempotent.
pub(crate) fn batch() {
    let mut flusher = lock(&FLUSHER);
    if flusher.is_some() {
        return;
    }
    out().batching = true;
    let spawned = std::thread::Builder::new()
        .name("agentd-log".into())
        .spawn(flush_loop);
    match spawned {
        Ok(h) => *flusher = Some(h),
        // No thread, no batching: lines keep being written at once.
        Err(_) => out().batching = false,
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // try_lock: a panic on a thread that holds the lock must not deadlock here.
        if let Ok(mut o) = OUT.try_lock() {
            write_out(&mut o);
        }
        previous(info);
    }));
}

/// Stops batching and writes every buffered line; the flusher thread is joined.
pub(crate) fn flush() {
    let handle = lock(&FLUSHER).take();
    {
        let mut o = out();
        o.batching = false;
        write_out(&mut o);
    }
    PENDING.notify_all();
    if let Some(h) = handle {
        let _ = h.join();
    }
}

/// The flusher: sleeps until a line is buffered, lets more gather for [`FLUSH_EVERY`],
/// writes them; ends when batching stops.
fn flush_loop() {
    let mut o = out();
    loop {
        while o.batching && o.buf.is_empty() {
            o = PENDING.wait(o).unwrap_or_else(PoisonError::into_inner);
        }
        if !o.batching {
            return;
        }
        let deadline = std::time::Instant::now() + FLUSH_EVERY;
        loop {
            let now = std::time::Instant::now();
            if now >= deadline || !o.batching {
                break;
            }
            o = PENDING
                .wait_timeout(o, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // The write happens outside the buffer lock, so that a thread logging meanwhile
        // never waits on a slow reader of our stderr. Order holds: stderr is locked before
        // the buffer is let go, and every other writer takes the buffer lock first.
        let mut batch = std::mem::take(&mut o.buf);
        let mut stderr = std::io::stderr().lock();
        drop(o);
        let _ = stderr.write_all(&batch);
        drop(stderr);
        o = out();
        batch.clear();
        if o.buf.is_empty() && batch.capacity() <= 4 * FLUSH_AT {
            o.buf = batch;
        }
    }
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `s` as a JSON string (serialising a `str` cannot fail).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Fields recorded as JSON text by their one producer (`chat::record_chat`), emitted as
/// JSON values rather than as strings.
pub(crate) const RAW_JSON_FIELDS: &[&str] = &["ancestor_chat_ids"];

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let v = if RAW_JSON_FIELDS.contains(&field.name()) {
            value.to_owned()
        } else {
            json_str(value)
        };
        self.0.set(field.name(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Non-finite values serialise as null.
        self.0.set(
            field.name(),
            serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
        );
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.set(field.name(), json_str(&value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.set(field.name(), json_str(&format!("{value:?}")));
    }
}

/// Appends `t` as RFC 3339 UTC with millisecond precision, without allocating.
fn write_rfc3339_millis(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (y, m, day, secs) = civil_parts(d.as_secs());
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        d.subsec_millis()
    );
}

/// Formats a time as RFC 3339 UTC with nanosecond precision trimmed of trailing zeros, as
/// Go's `time.RFC3339Nano` does.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (date, secs) = civil(d.as_secs());
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{date}T{}Z", hms(secs))
    } else {
        let frac = format!("{nanos:09}");
        format!("{date}T{}.{}Z", hms(secs), frac.trim_end_matches('0'))
    }
}

fn hms(secs_of_day: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Days since the epoch to a `YYYY-MM-DD` date (Howard Hinnant's civil-from-days).
fn civil(epoch_secs: u64) -> (String, u64) {
    let (y, m, d, secs) = civil_parts(epoch_secs);
    (format!("{y:04}-{m:02}-{d:02}"), secs)
}

/// `(year, month, day, seconds of the day)` of a time in seconds since the epoch.
fn civil_parts(epoch_secs: u64) -> (i64, i64, i64, u64) {
    let days = (epoch_secs / 86_400) as i64;
    let secs = epoch_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_719_200_123);
        let mut buf = Vec::new();
        write_rfc3339_millis(&mut buf, t);
        assert_eq!(buf, b"2025-11-21T10:00:00.123Z");
        assert_eq!(rfc3339_nano(t), "2025-11-21T10:00:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_nano(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
