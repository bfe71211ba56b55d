//! The metric series `replay` feeds to the decision core: read from a CSV or a
//! JSON-lines file, or from a Prometheus range query (`crate::metrics::range`).
//!
//! A series is a list of [`Point`]s: a time (seconds), the metric's name (`""` when
//! the file names none) and the value read, or why the read failed. Points at the
//! same time form one decision pass.
//!
//! # CSV
//!
//! Columns `time,value[,metric[,error]]`, in that order, or in any order under a
//! header line that names them (`time` and `value` are required). Fields may be
//! quoted as in RFC 4180. A row with an empty `value` is a failed read; its `error`
//! column (when there is one) says why. Blank lines and lines starting with `#` are
//! skipped.
//!
//! # JSON lines
//!
//! One object per line: `{"time": 60, "value": 12.5}`, optionally `"metric": "cpu"`;
//! a failed read has no `value` (or `null`) and may say why in `"error"`. Blank lines
//! are skipped.
//!
//! # Time
//!
//! A number is seconds (from any epoch: the file's first time is the start); a text
//! in RFC 3339 (`2024-05-01T12:00:00Z`) is converted to seconds since the Unix
//! epoch. Times must not go backwards.
//!
//! Every error names `FILE:LINE`, says what is wrong and what is expected.

use std::path::Path;

/// One metric reading of the series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Seconds (since the Unix epoch for RFC 3339 times and Prometheus, else since
    /// the file's own epoch).
    pub time: f64,
    /// The metric's name: `""` when the file names none (it then feeds the rule's
    /// only metric), else `NAME` of `microscale.metric.NAME` (`""` is also the
    /// default `microscale.metric`).
    pub metric: String,
    /// The value, in the metric's unit; `Err` says why the read failed.
    pub value: Result<f64, String>,
}

/// A series and how its times are written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// The points, in time order (non-decreasing).
    pub points: Vec<Point>,
    /// Whether the times are seconds since the Unix epoch (RFC 3339 in the file, or a
    /// Prometheus query): they are then printed as RFC 3339.
    pub absolute: bool,
}

/// Reads a series file: JSON lines when its name ends in `.jsonl`, `.ndjson` or
/// `.json`, or when its first non-blank character is `{`; CSV otherwise.
///
/// Errors: the file cannot be read; a malformed line (`FILE:LINE: …`); a file with
/// no point.
pub fn read_file(path: &Path) -> Result<Series, String> {
    let shown = crate::edge::text::printable(&path.display().to_string());
    // A regular file of at most 256 MiB, opened without blocking: a FIFO or
    // /dev/zero is refused, not read forever.
    let bytes = crate::edge::fsutil::read_regular(path, MAX_SERIES_BYTES, true).map_err(|e| {
        format!("cannot read the series file {shown}: {e} (a regular file of at most 256 MiB)")
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("cannot read the series file {shown}: it is not valid UTF-8 text"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let json = [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|e| name.ends_with(e))
        || text.trim_start().starts_with('{');
    let series = if json {
        parse_json_lines(&text, &shown)?
    } else {
        parse_csv(&text, &shown)?
    };
    if series.points.is_empty() {
        return Err(format!(
            "the series file {shown} has no point: expected lines of time,value (CSV) or {{\"time\":…,\"value\":…}} (JSON lines)"
        ));
    }
    Ok(series)
}

/// The largest series file read, in bytes.
const MAX_SERIES_BYTES: u64 = 256 << 20;

/// The largest time, in seconds, either side of 0 (about the year 5138): beyond
/// it, spans and replica-seconds lose all meaning.
const MAX_TIME: f64 = 1e11;

/// A time field: seconds (at most [`MAX_TIME`] either side of 0), or RFC 3339.
/// Returns `(seconds, absolute)`.
fn parse_time(text: &str) -> Result<(f64, bool), String> {
    let t = text.trim();
    if let Ok(x) = t.parse::<f64>() {
        if x.is_finite() && x.abs() <= MAX_TIME {
            return Ok((x, false));
        }
        return Err(format!(
            "time {t:?} is not a number of seconds from -1e11 to 1e11"
        ));
    }
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => Ok((ts.as_millisecond() as f64 / 1000.0, true)),
        Err(_) => Err(format!(
            "time {:?} is neither seconds nor an RFC 3339 time such as 2024-05-01T12:00:00Z",
            crate::edge::text::printable(t)
        )),
    }
}

/// A value field; finite numbers only (a failed read is written as an empty value).
fn parse_value(text: &str) -> Result<f64, String> {
    let v = text.trim();
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!(
            "value {:?} is not a finite number (leave it empty for a failed read)",
            crate::edge::text::printable(v)
        )),
    }
}

/// A metric name: empty, or letters, digits, `-`, `_` (as `microscale.metric.NAME`).
fn parse_metric(text: &str) -> Result<String, String> {
    let m = text.trim();
    if m.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(m.to_string())
    } else {
        Err(format!(
            "metric {:?} is not a metric name (letters, digits, - and _, as in microscale.metric.NAME)",
            crate::edge::text::printable(m)
        ))
    }
}

/// Appends `point` to `series`, refusing a time before the previous one.
fn push(series: &mut Series, point: Point, absolute: bool, at: &str) -> Result<(), String> {
    if let Some(last) = series.points.last() {
        if point.time < last.time {
            return Err(format!(
                "{at}: time goes backwards ({} after {}): sort the series by time",
                point.time, last.time
            ));
        }
        if absolute != series.absolute {
            return Err(format!(
                "{at}: mixes RFC 3339 times and plain seconds: write every time the same way"
            ));
        }
    } else {
        series.absolute = absolute;
    }
    series.points.push(point);
    Ok(())
}

/// Parses CSV text (see the module documentation); `file` names it in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<Series, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut series = Series::default();
    // Column indexes of time, value, metric, error.
    let mut cols: Option<[Option<usize>; 4]> = None;
    // Whether a header line named the columns, and how many it named.
    let (mut header, mut columns) = (false, 4);
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            format!("{file}:{line}: not CSV: {e}")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let at = format!("{file}:{line}");
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let first = record.get(0).unwrap_or("").trim();
        if cols.is_none() {
            if parse_time(first).is_err() {
                // A header line.
                let mut found = [None; 4];
                for (i, name) in record.iter().enumerate() {
                    let slot = match name.trim().to_ascii_lowercase().as_str() {
                        "time" => 0,
                        "value" => 1,
                        "metric" => 2,
                        "error" => 3,
                        other => {
                            return Err(format!(
                                "{at}: unknown column {:?}: the columns are time, value, metric and error",
                                crate::edge::text::printable(other)
                            ));
                        }
                    };
                    if found[slot].is_some() {
                        return Err(format!("{at}: column {:?} twice", name.trim()));
                    }
                    found[slot] = Some(i);
                }
                if found[0].is_none() || found[1].is_none() {
                    return Err(format!(
                        "{at}: the header needs a time and a value column (time,value[,metric[,error]])"
                    ));
                }
                cols = Some(found);
                (header, columns) = (true, record.len());
                continue;
            }
            cols = Some([Some(0), Some(1), Some(2), Some(3)]);
        }
        let [t, v, m, e] = cols.expect("set above");
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
        let width = if header { columns } else { 4 };
        if record.len() < 2 || record.len() > width {
            let n = record.len();
            return Err(format!(
                "{at}: expected time,value[,metric[,error]]{}, got {n} field{}",
                if header {
                    " as the header names them"
                } else {
                    ""
                },
                if n == 1 { "" } else { "s" }
            ));
        }
        let (time, absolute) = parse_time(field(t)).map_err(|e| format!("{at}: {e}"))?;
        let metric = parse_metric(field(m)).map_err(|e| format!("{at}: {e}"))?;
        let value = if field(v).trim().is_empty() {
            let why = field(e).trim();
            Err(if why.is_empty() {
                "the read failed (empty value in the series)".to_string()
            } else {
                why.to_string()
            })
        } else {
            Ok(parse_value(field(v)).map_err(|e| format!("{at}: {e}"))?)
        };
        push(
            &mut series,
            Point {
                time,
                metric,
                value,
            },
            absolute,
            &at,
        )?;
    }
    Ok(series)
}

/// Parses JSON-lines text (see the module documentation); `file` names it in errors.
pub fn parse_json_lines(text: &str, file: &str) -> Result<Series, String> {
    use serde_json::Value;
    let mut series = Series::default();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let doc: Value = serde_json::from_str(line)
            .map_err(|e| format!("{at}: not JSON ({e}): expected {{\"time\":…,\"value\":…}}"))?;
        let Some(obj) = doc.as_object() else {
            return Err(format!(
                "{at}: expected an object such as {{\"time\":60,\"value\":12.5}}"
            ));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "time" | "value" | "metric" | "error"))
        {
            return Err(format!(
                "{at}: unknown key {:?}: the keys are time, value, metric and error",
                crate::edge::text::printable(k)
            ));
        }
        let (time, absolute) = match obj.get("time") {
            Some(Value::Number(n)) => parse_time(&n.to_string()),
            Some(Value::String(s)) => parse_time(s),
            _ => Err("no \"time\" (seconds, or an RFC 3339 text)".to_string()),
        }
        .map_err(|e| format!("{at}: {e}"))?;
        let metric = match obj.get("metric") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => parse_metric(s).map_err(|e| format!("{at}: {e}"))?,
            Some(_) => return Err(format!("{at}: \"metric\" must be a text")),
        };
        let error = match obj.get("error") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(format!("{at}: \"error\" must be a text")),
        };
        let value = match (obj.get("value"), error) {
            (Some(Value::Number(n)), None) => Ok(n
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{at}: value {n} is not a finite number"))?),
            (Some(Value::Number(_)), Some(_)) => {
                return Err(format!(
                    "{at}: both a value and an error: a failed read has no value"
                ));
            }
            (None | Some(Value::Null), why) => {
                Err(why.unwrap_or_else(|| "the read failed (no value in the series)".into()))
            }
            (Some(other), _) => {
                return Err(format!(
                    "{at}: value {} is not a number (leave it out, or null, for a failed read)",
                    crate::edge::text::printable(&other.to_string())
                ));
            }
        };
        push(
            &mut series,
            Point {
                time,
                metric,
                value,
            },
            absolute,
            &at,
        )?;
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(time: f64, metric: &str, v: f64) -> Point {
        Point {
            time,
            metric: metric.into(),
            value: Ok(v),
        }
    }

    #[test]
    fn csv_with_and_without_header() {
        let s = parse_csv("time,value\n0,1\n60,0\n", "a.csv").unwrap();
        assert_eq!(s.points, [ok(0.0, "", 1.0), ok(60.0, "", 0.0)]);
        assert!(!s.absolute);
        let s = parse_csv("# comment\n0,1.5,cpu\n\n15,2,cpu\n", "a.csv").unwrap();
        assert_eq!(s.points, [ok(0.0, "cpu", 1.5), ok(15.0, "cpu", 2.0)]);
        // Columns in another order under a header; a quoted error with a comma.
        let s = parse_csv(
            "metric,error,value,time\nq,,7,0\nq,\"timeout, after 3s\",,15\n",
            "b.csv",
        )
        .unwrap();
        assert_eq!(s.points[0], ok(0.0, "q", 7.0));
        assert_eq!(
            s.points[1],
            Point {
                time: 15.0,
                metric: "q".into(),
                value: Err("timeout, after 3s".into())
            }
        );
        // An empty value without an error column is a failed read too.
        let s = parse_csv("0,\n", "c.csv").unwrap();
        assert!(s.points[0].value.as_ref().unwrap_err().contains("failed"));
    }

    #[test]
    fn csv_rfc3339_times_are_unix_seconds() {
        let s = parse_csv(
            "2024-05-01T00:00:00Z,3\n2024-05-01T00:01:00+00:00,4\n",
            "t.csv",
        )
        .unwrap();
        assert!(s.absolute);
        assert_eq!(s.points[0].time, 1_714_521_600.0);
        assert_eq!(s.points[1].time, 1_714_521_660.0);
    }

    #[test]
    fn malformed_csv_lines_name_file_and_line() {
        let cases = [
            ("time,value\n0,1\n60,abc\n", "s.csv:3: value \"abc\""),
            ("0,1\nsoon,2\n", "s.csv:2: time \"soon\" is neither"),
            (
                "0,1\n60,2\n30,3\n",
                "s.csv:3: time goes backwards (30 after 60)",
            ),
            ("time,load\n0,1\n", "s.csv:1: unknown column \"load\""),
            (
                "time,metric\n0,a\n",
                "s.csv:1: the header needs a time and a value",
            ),
            (
                "0,1,cpu load\n",
                "s.csv:1: metric \"cpu load\" is not a metric name",
            ),
            ("0\n", "s.csv:1: expected time,value"),
            ("0,inf\n", "s.csv:1: value \"inf\" is not a finite number"),
            (
                "0,1\n2024-05-01T00:00:00Z,2\n",
                "s.csv:2: mixes RFC 3339 times and plain seconds",
            ),
            (
                "0,1,a,x,extra\n0,1\n",
                "s.csv:1: expected time,value[,metric[,error]]",
            ),
        ];
        for (text, want) in cases {
            let e = parse_csv(text, "s.csv").unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn json_lines_read_values_names_and_failures() {
        let s = parse_json_lines(
            "{\"time\":0,\"value\":3}\n\n{\"time\":15,\"metric\":\"cpu\",\"value\":80.5}\n{\"time\":30,\"error\":\"connection refused\"}\n{\"time\":45,\"value\":null}\n",
            "s.jsonl",
        )
        .unwrap();
        assert_eq!(s.points[0], ok(0.0, "", 3.0));
        assert_eq!(s.points[1], ok(15.0, "cpu", 80.5));
        assert_eq!(s.points[2].value, Err("connection refused".to_string()));
        assert!(s.points[3].value.is_err());
        let s = parse_json_lines("{\"time\":\"2024-05-01T00:00:00Z\",\"value\":1}", "s").unwrap();
        assert!(s.absolute);
    }

    #[test]
    fn malformed_json_lines_name_file_and_line() {
        let cases = [
            (
                "{\"time\":0,\"value\":1}\n{\"time\":1,\"value\":\n",
                "s.jsonl:2: not JSON",
            ),
            ("[1,2]\n", "s.jsonl:1: expected an object"),
            ("{\"value\":1}\n", "s.jsonl:1: no \"time\""),
            (
                "{\"time\":0,\"value\":\"12\"}\n",
                "s.jsonl:1: value \"12\" is not a number",
            ),
            (
                "{\"time\":0,\"value\":1,\"unit\":\"s\"}\n",
                "s.jsonl:1: unknown key \"unit\"",
            ),
            (
                "{\"time\":0,\"value\":1,\"error\":\"x\"}\n",
                "s.jsonl:1: both a value and an error",
            ),
            (
                "{\"time\":5,\"value\":1}\n{\"time\":4,\"value\":1}\n",
                "s.jsonl:2: time goes backwards",
            ),
            (
                "{\"time\":0,\"value\":1,\"metric\":7}\n",
                "s.jsonl:1: \"metric\" must be a text",
            ),
        ];
        for (text, want) in cases {
            let e = parse_json_lines(text, "s.jsonl").unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    /// A break-it round: /dev/zero and a FIFO were read forever, and huge times
    /// overflowed or made nonsense summaries.
    #[test]
    fn special_files_and_huge_times_are_refused() {
        let e = read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = std::time::Instant::now();
        let e = read_file(&fifo).unwrap_err();
        assert!(e.contains("FIFO"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let huge = dir.path().join("huge.csv");
        std::fs::write(&huge, "0,10\n1e300,130\n").unwrap();
        let e = read_file(&huge).unwrap_err();
        assert!(
            e.contains(":2: time \"1e300\" is not a number of seconds"),
            "{e}"
        );
    }

    #[test]
    fn read_file_picks_the_format_and_refuses_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("s.csv");
        std::fs::write(&csv, "time,value\n0,2\n").unwrap();
        assert_eq!(read_file(&csv).unwrap().points, [ok(0.0, "", 2.0)]);
        let sniffed = dir.path().join("s.txt");
        std::fs::write(&sniffed, "{\"time\":0,\"value\":2}\n").unwrap();
        assert_eq!(read_file(&sniffed).unwrap().points, [ok(0.0, "", 2.0)]);
        let empty = dir.path().join("e.csv");
        std::fs::write(&empty, "time,value\n").unwrap();
        assert!(read_file(&empty).unwrap_err().contains("has no point"));
        let e = read_file(&dir.path().join("missing.csv")).unwrap_err();
        assert!(
            e.contains("cannot read the series file") && e.contains("missing.csv"),
            "{e}"
        );
    }
}
