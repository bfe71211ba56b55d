//! The fields of the agent's text log lines (`--log-format text`), logfmt style:
//! `service=web metric="42 / 50" reasons="metric 42 / target 50 → 1"`.
//!
//! tracing-subscriber's default text fields write a `%value` as is, so a value with
//! blanks (`metric=0 / 10`) cannot be told from the next field. Here a value with a
//! blank, `=`, `"`, `\`, or an unsafe character (control, bidi, invisible: see
//! [`crate::edge::text::printable`]) is quoted, with `\` and `"` escaped as `\\` and
//! `\"`, line breaks and tabs as `\n`, `\r`, `\t`, and other unsafe characters as
//! `\u{…}`; an empty value is `""`. The message comes first, unquoted but with its
//! unsafe characters escaped. JSON lines (`--log-format json`) do not use this.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The [`FormatFields`] of the agent's text lines (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogfmtFields;

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn put(&mut self, name: &str, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{}", crate::edge::text::printable(value))
        } else {
            write!(self.writer, "{sep}{name}={}", quote(value))
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), &format!("{value:?}"));
    }
}

/// A logfmt value: as is when it needs no quotes, else in double quotes with `\`,
/// `"` and unsafe characters escaped (see the module docs).
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.chars().any(|c| {
            c.is_whitespace() || matches!(c, '=' | '"' | '\\') || crate::edge::text::is_unsafe(c)
        });
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if crate::edge::text::is_unsafe(c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_when_they_need_it() {
        assert_eq!(quote("web"), "web");
        assert_eq!(quote("42"), "42");
        assert_eq!(quote("0 / 10"), "\"0 / 10\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("C:\\x"), "\"C:\\\\x\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote("\u{1b}[31m"), "\"\\u{1b}[31m\"");
        assert_eq!(quote("\u{202e}x"), "\"\\u{202e}x\"");
        assert_eq!(quote("1 → 2"), "\"1 → 2\"");
        // A path stays as it is: no blank, nothing to quote.
        assert_eq!(
            quote("redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis"),
            "\"redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis\""
        );
        assert_eq!(quote("/run/secrets/redis"), "/run/secrets/redis");
    }

    /// The line a subscriber with these fields writes for `emit`.
    fn line(emit: impl FnOnce()) -> String {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .fmt_fields(LogfmtFields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.trim_end().to_string()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_decision_line_reads_back_field_by_field() {
        let metric: Option<&str> = Some("0 / 10");
        let l = line(|| {
            tracing::info!(
                service = %"web",
                current = 2u64,
                metric = metric,
                dry_run = false,
                reasons = %"metric 0 / target 10 → 0; say \"x\"",
                "decision"
            )
        });
        assert_eq!(
            l,
            r#"decision service=web current=2 metric="0 / 10" dry_run=false reasons="metric 0 / target 10 → 0; say \"x\"""#
        );
        // No metric: no field at all (was `metric=`).
        let none: Option<&str> = None;
        let l = line(|| tracing::info!(service = %"web", metric = none, "decision"));
        assert_eq!(l, "decision service=web");
        // A message with a control character cannot start a new line.
        let l = line(|| tracing::warn!(error = %"boom", "{}", "a\nb"));
        assert_eq!(l, "a\\nb error=boom");
    }
}
