//! What the program says as it works, for people and for files.
//!
//! - By default, standard error gets one short line per event: `features: features written
//!   clips=100 ...`, `warning: ...`, with the stage (and run) it belongs to and no timestamps;
//!   progress bars come from the stages themselves.
//! - `-v` (or `RUST_LOG`) gives the detailed log there instead: timestamps, levels, span timings
//!   (`close time.busy=...`), and `debug` events with `-vv`.
//! - `run` and `tune` also write the detailed log of their last run to
//!   `<workdir>/.genrelab/last-run.log` ([`log_to_file`]).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Set up logging. `verbose`: 0 short lines, 1 detailed (info), 2+ detailed with debug events.
pub fn init(quiet: bool, verbose: u8) {
    // symphonia logs its probing of every format it tries (errors included) before predict
    // reports what failed in one line; RUST_LOG shows them again.
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (_, 0 | 1) => "info",
        _ => "debug",
    };
    let filter = || EnvFilter::new(env.clone().unwrap_or_else(|| format!("{level},symphonia_core=off")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = if verbose > 0 || env.is_some() {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_span_events(FmtSpan::CLOSE)
            .with_target(false)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(Plain::<0>::default())
            .event_format(Short)
            .with_filter(filter())
            .boxed()
    };
    let file = tracing_subscriber::fmt::layer()
        .with_writer(LogFile)
        .with_ansi(false)
        .fmt_fields(Plain::<1>::default())
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_filter(EnvFilter::new("info,genrelab_data=debug,genrelab_runs=debug,genrelab_pipeline=debug,symphonia_core=off"));
    tracing_subscriber::registry().with(stderr).with(file).init();
}

/// From now on, the detailed log also goes to `path` (created afresh).
pub fn log_to_file(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(f) = std::fs::File::create(path) {
        let _ = LOG_FILE.set(Mutex::new(f));
    }
}

/// tracing's default field format under a type of its own per layer: a span's fields are kept
/// formatted once per formatter type, so without it the file would get the terminal's colours
/// and the short lines would parse coloured text.
#[derive(Default)]
struct Plain<const LAYER: u8>(tracing_subscriber::fmt::format::DefaultFields);

impl<'w, const LAYER: u8> FormatFields<'w> for Plain<LAYER> {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

static LOG_FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Writes to the log file once [`log_to_file`] has opened it; before that, nowhere.
struct LogFile;

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFile;
    fn make_writer(&'a self) -> LogFile {
        LogFile
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = LOG_FILE.get() {
            f.lock().unwrap_or_else(|e| e.into_inner()).write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line per event: `warning: ` / `error: ` for those levels, then where it happened (the
/// values of the spans it is in: `features`, `train linear/seed0`), then the message and fields.
struct Short;

impl<S, N> FormatEvent<S, N> for Short
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(w, "error: ")?,
            Level::WARN => write!(w, "warning: ")?,
            _ => {}
        }
        let mut place = vec![];
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    place.extend(span_values(fields.as_str()));
                }
            }
        }
        if !place.is_empty() {
            write!(w, "{}: ", place.join(" "))?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// The values of a span's formatted fields (`name="features" n=3` -> `features`, `3`).
fn span_values(fields: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = fields;
    while let Some(eq) = rest.find('=') {
        let value = &rest[eq + 1..];
        let (v, next) = if let Some(quoted) = value.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = value.find(' ').unwrap_or(value.len());
            (&value[..end], &value[end..])
        };
        out.push(v.to_string());
        rest = next.trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn span_values_are_read_from_formatted_fields() {
        assert_eq!(super::span_values(r#"name="features""#), ["features"]);
        assert_eq!(super::span_values(r#"run=linear/seed0"#), ["linear/seed0"]);
        assert_eq!(super::span_values(r#"n=3 clips=16"#), ["3", "16"]);
        assert!(super::span_values("").is_empty());
    }
}
