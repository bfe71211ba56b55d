//! `docker microscale status --watch [--interval DURATION]`: the status again at each
//! interval, until interrupted.
//!
//! On a terminal (stdout a TTY, the default table format or a `table ...` template,
//! no `-q`), a live full-screen view drawn with ratatui on its crossterm backend:
//! the alternate screen, redrawn in place without flicker (ratatui writes only the
//! cells that changed; the screen is cleared only when the terminal is resized),
//! the status table at the top and, for each rule-managed service, sparklines of its
//! metric and its running replicas over the last minutes. With `--format 'table
//! ...'` the template's own columns take the status table's place, aligned as
//! `status --format` prints them (lines too long for the screen end in `…`). `q`
//! leaves (exit 0), Ctrl-C too (exit 130, as everywhere); the terminal is restored
//! on every way out, errors and panics included. Every text from the swarm (names,
//! labels, rules, errors) is shown through [`crate::edge::text::printable`]: no control,
//! bidirectional or invisible character reaches the terminal.
//!
//! When the status table is wider than the terminal, its columns give way in this
//! order (what an autoscaling user watches stays longest): SOURCE, IMAGE and UPDATE
//! are cut (with `…`) and then left out, in that order; then RULE, NAME, METRIC and
//! REPLICAS are cut to 20, 20, 12 and 20 columns; then MODE, NODES, RULE, DESIRED,
//! METRIC and REPLICAS are left out, in that order. NAME always stays, cut by the
//! screen's edge at worst. The plain table (not a terminal) always has every column.
//!
//! Otherwise (a pipe, a file, `--format json` or a template without `table`, `-q`),
//! the plain output again at each interval, frames separated by a blank line, until
//! Ctrl-C or SIGTERM (exit 130) or a closed pipe (exit 0).
//!
//! An engine that cannot be read does not end the watch: the view shows the error
//! (stderr in plain mode) and the next interval tries again.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Row, Sparkline, Table};

use crate::cli::StatusArgs;
use crate::cmd::status::ServiceRow;
use crate::edge::exit::{Exit, Failure};
use crate::engine::Engine;
use crate::render::Format;
use crate::swarm::service::Mode;
use crate::swarm::snapshot::Filters;

/// `--interval` when not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// The shortest `--interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Samples kept per service (one per refresh): 2 minutes at the default interval.
pub const HISTORY: usize = 60;

/// The refresh interval when `--watch` is set, `None` without it.
///
/// Errors (usage): `--interval` without `--watch`; a duration that does not parse
/// or is shorter than 500ms or longer than 1h.
pub fn parse_interval(args: &StatusArgs) -> Result<Option<Duration>, String> {
    let watch = args.watch == Some(true);
    match (&args.interval, watch) {
        (Some(_), false) => Err("--interval needs --watch".into()),
        (None, false) => Ok(None),
        (None, true) => Ok(Some(DEFAULT_INTERVAL)),
        (Some(text), true) => humantime::parse_duration(text.trim())
            .ok()
            .filter(|d| *d >= MIN_INTERVAL && *d <= Duration::from_secs(3600))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "invalid argument \"{text}\" for \"--interval\" flag: a duration from 500ms to 1h, such as 2s or 1m"
                )
            }),
    }
}

/// Runs the watch: the live view on a terminal, else the plain output again at each
/// interval. Returns only when left (`q`: exit 0; Ctrl-C: [`Failure::Interrupted`];
/// a closed pipe: exit 0) or on an output error.
pub async fn run(
    engine: &Engine,
    args: &StatusArgs,
    format: &Format,
    filters: &Filters,
    modes: &[Mode],
    interval: Duration,
) -> Result<Exit, Failure> {
    // The sparklines need the metric: read unless --metrics=false.
    let metrics = args.metrics != Some(false);
    if live_screen(
        std::io::stdout().is_terminal(),
        format,
        args.quiet == Some(true),
    ) {
        run_live(engine, args, format, filters, modes, interval, metrics).await
    } else {
        run_plain(engine, args, format, filters, modes, interval, metrics).await
    }
}

/// Whether the watch takes the live screen: stdout is a terminal, no `-q`, and the
/// format is the status table or a `table ...` template.
fn live_screen(terminal: bool, format: &Format, quiet: bool) -> bool {
    let table = match format {
        Format::Table => true,
        Format::Template(t) => t.is_table(),
        Format::Json => false,
    };
    terminal && table && !quiet
}

/// One refresh: the engine client gets a fresh deadline (the command's deadline
/// bounds one read, not the whole watch).
async fn refresh(
    engine: &Engine,
    args: &StatusArgs,
    filters: &Filters,
    modes: &[Mode],
    metrics: bool,
) -> Result<crate::cmd::status::Read, Failure> {
    let mut engine = engine.clone();
    engine.deadline =
        tokio::time::Instant::now() + Duration::from_secs(crate::engine::request_timeout_secs());
    crate::cmd::status::read_rows(&engine, args, filters, modes, metrics).await
}

fn failure_text(f: &Failure) -> String {
    match f {
        Failure::Usage(m) | Failure::Error(m) => m.clone(),
        Failure::Interrupted => "interrupted".into(),
    }
}

async fn run_plain(
    engine: &Engine,
    args: &StatusArgs,
    format: &Format,
    filters: &Filters,
    modes: &[Mode],
    interval: Duration,
    metrics: bool,
) -> Result<Exit, Failure> {
    let mut first = true;
    loop {
        let started = tokio::time::Instant::now();
        match refresh(engine, args, filters, modes, metrics).await {
            Ok(read) => {
                let mut text = crate::cmd::status::rows_text(&read.rows, args, format)?;
                if !first && *format != Format::Json {
                    text.insert(0, '\n');
                }
                first = false;
                for m in &read.missing {
                    crate::edge::exit::say(m);
                }
                if !write_stdout(text).await? {
                    // The reader went away (`| head`): done.
                    return Ok(Exit::Ok);
                }
            }
            Err(Failure::Usage(m)) => return Err(Failure::Usage(m)),
            Err(e) => crate::edge::exit::say(&format!(
                "{} (trying again in {})",
                failure_text(&e),
                humantime::format_duration(interval)
            )),
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

/// Writes to stdout on a blocking thread (a slow reader must not stop Ctrl-C).
/// `Ok(false)` when the pipe is closed.
async fn write_stdout(text: String) -> Result<bool, Failure> {
    let written = tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush())
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Ok(Err(e)) => Err(Failure::Error(format!(
            "cannot write to standard output: {e}"
        ))),
        Err(e) => Err(Failure::Error(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

// ---------------------------------------------------------------------------------
// History

/// One refresh of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The rule's winning metric value, when it was read.
    pub metric: Option<f64>,
    /// Running replicas.
    pub running: u64,
}

/// The last [`HISTORY`] samples of each rule-managed service, by service ID. A
/// service that leaves the snapshot (removed, filtered out, no longer managed) loses
/// its history.
#[derive(Debug, Default)]
pub struct History {
    samples: HashMap<String, VecDeque<Sample>>,
}

impl History {
    /// Adds a sample for each rule-managed row and forgets services that are gone.
    pub fn record(&mut self, rows: &[ServiceRow]) {
        let managed: Vec<&ServiceRow> = rows.iter().filter(|r| r.metric.is_some()).collect();
        self.samples
            .retain(|id, _| managed.iter().any(|r| &r.id == id));
        for r in managed {
            let ring = self.samples.entry(r.id.clone()).or_default();
            if ring.len() == HISTORY {
                ring.pop_front();
            }
            ring.push_back(Sample {
                metric: r.metric.as_deref().and_then(metric_value),
                running: r.running,
            });
        }
    }

    /// The samples of a service, oldest first.
    pub fn of(&self, id: &str) -> Vec<Sample> {
        self.samples
            .get(id)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The value of a METRIC cell (`120 / 50`, `85% / 70%`, `0.5 / 1`); `None` for `-`
/// or a reason.
pub fn metric_value(cell: &str) -> Option<f64> {
    let first = cell.split(" / ").next()?.trim().trim_end_matches('%');
    first.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The sparkline levels of `values` (oldest first): 1 (the lowest mark) to 8 (a
/// full bar), scaled from 0 (or the lowest value when negative) to the highest;
/// `None` (a gap) for a missing value. Drawn with ratatui's [`Sparkline`] at its
/// [`SPARK_MAX`], so 1 is `▁` and 8 is `█`.
pub fn spark_levels(values: &[Option<f64>]) -> Vec<Option<u64>> {
    let present = values.iter().flatten().copied();
    let hi = present.clone().fold(f64::MIN, f64::max);
    let lo = present.fold(0.0_f64, f64::min);
    values
        .iter()
        .map(|v| match v {
            None => None,
            Some(_) if hi <= lo => Some(1),
            Some(v) => Some(1 + ((v - lo) / (hi - lo) * 7.0).round().clamp(0.0, 7.0) as u64),
        })
        .collect()
}

/// The level of a full sparkline bar ([`spark_levels`]).
pub const SPARK_MAX: u64 = 8;

// ---------------------------------------------------------------------------------
// The live view

/// Columns between two table columns (as the docker CLI's tables).
const GAP: usize = 3;

/// How the status table gives way when the terminal is too narrow, in order: a
/// column is first cut (with `…`) down to at least its minimum width, and then,
/// where `drop` is set, left out. Columns that do not fit after all of it are cut
/// by the edge of the screen.
struct GiveWay {
    column: &'static str,
    min: usize,
    drop: bool,
}

/// The order in which the status table's columns give way (see the module doc):
/// SOURCE, IMAGE and UPDATE go first; then RULE, NAME, METRIC and REPLICAS are cut
/// (REPLICAS names the down nodes of stale tasks); then MODE,
/// NODES, RULE, DESIRED, METRIC and REPLICAS go, in that order; NAME stays.
const GIVE_WAY: [GiveWay; 13] = [
    GiveWay {
        column: "SOURCE",
        min: 20,
        drop: true,
    },
    GiveWay {
        column: "IMAGE",
        min: 20,
        drop: true,
    },
    GiveWay {
        column: "UPDATE",
        min: 12,
        drop: true,
    },
    GiveWay {
        column: "RULE",
        min: 20,
        drop: false,
    },
    GiveWay {
        column: "NAME",
        min: 20,
        drop: false,
    },
    GiveWay {
        column: "METRIC",
        min: 12,
        drop: false,
    },
    GiveWay {
        column: "REPLICAS",
        min: 20,
        drop: false,
    },
    GiveWay {
        column: "MODE",
        min: usize::MAX,
        drop: true,
    },
    GiveWay {
        column: "NODES",
        min: usize::MAX,
        drop: true,
    },
    GiveWay {
        column: "RULE",
        min: usize::MAX,
        drop: true,
    },
    GiveWay {
        column: "DESIRED",
        min: usize::MAX,
        drop: true,
    },
    GiveWay {
        column: "METRIC",
        min: usize::MAX,
        drop: true,
    },
    GiveWay {
        column: "REPLICAS",
        min: usize::MAX,
        drop: true,
    },
];

/// The status columns shown in `width` terminal columns, given each column's
/// `natural` width (its widest cell or header, in the order of
/// [`super::STATUS_HEADER`]): `(column index, width)` in table order, the
/// columns [`GIVE_WAY`] leaves. A column is never cut below its header.
fn fit_columns(natural: &[usize], width: usize) -> Vec<(usize, usize)> {
    let header = super::STATUS_HEADER;
    let mut shown: Vec<Option<usize>> = natural.iter().map(|w| Some(*w)).collect();
    let total = |shown: &[Option<usize>]| {
        let n = shown.iter().flatten().count();
        shown.iter().flatten().sum::<usize>() + GAP * n.saturating_sub(1)
    };
    for step in &GIVE_WAY {
        let excess = total(&shown).saturating_sub(width);
        if excess == 0 {
            break;
        }
        let Some(i) = header.iter().position(|h| *h == step.column) else {
            continue;
        };
        let Some(w) = shown[i] else { continue };
        let floor = step.min.max(header[i].len()).min(w);
        shown[i] = Some(w - excess.min(w - floor));
        if step.drop && total(&shown) > width {
            shown[i] = None;
        }
    }
    // Only NAME is left: the screen's width.
    if total(&shown) > width {
        shown[0] = shown[0].map(|w| w.min(width));
    }
    shown
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.map(|w| (i, w)))
        .collect()
}

/// Terminal columns of `s`.
fn width_of(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` made [`crate::edge::text::printable`] and cut to `max` columns (with `…`).
fn cell(s: &str, max: usize) -> String {
    crate::edge::text::ellipsize(&crate::edge::text::printable(s), max)
}

/// What is on screen.
struct View {
    rows: Vec<ServiceRow>,
    error: Option<String>,
    missing: Vec<String>,
    history: History,
    interval: Duration,
    updated: Option<String>,
    no_trunc: bool,
    /// A `table ...` template's output for `rows` (already aligned and escaped),
    /// shown instead of the status table; `None` without one.
    template: Option<Vec<String>>,
}

/// Heights of the frame's parts for an area `height` lines high: the lines at the
/// top (title, error, missing services), the status table (header and rows) and
/// the sparkline table (header and rows), each cut to what is left, with a blank
/// line before each table when there is room for it.
fn heights(top: usize, table: usize, sparks: usize, height: usize) -> [usize; 5] {
    let take = |left: &mut usize, want: usize| {
        let got = want.min(*left);
        *left -= got;
        got
    };
    let mut left = height;
    let top = take(&mut left, top);
    let gap1 = take(&mut left, 1);
    let table = take(&mut left, table);
    // The sparklines only with room for their header and a row.
    let (gap2, sparks) = if sparks > 0 && left >= 3 {
        (take(&mut left, 1), take(&mut left, sparks))
    } else {
        (0, 0)
    };
    [top, gap1, table, gap2, sparks]
}

/// Draws one frame of the view into `frame`: a title line, the error of the last
/// refresh when it failed, the missing services, the status table (or the table
/// template's lines) and a sparkline table of the rule-managed services. Rows below
/// the screen are not shown; the status table's columns give way by [`GIVE_WAY`].
fn render_view(frame: &mut Frame, view: &View) {
    let area = frame.area();
    let width = area.width as usize;
    let every = humantime::format_duration(view.interval).to_string();
    let mut top = vec![format!(
        "docker microscale status --watch · every {every} · {} · q to quit",
        view.updated.as_deref().unwrap_or("reading the swarm…")
    )];
    if let Some(e) = &view.error {
        for (i, l) in e.lines().enumerate() {
            let prefix = if i == 0 { "! " } else { "  " };
            top.push(format!("{prefix}{l}"));
        }
        top.push(format!(
            "  (showing the last status read; trying again every {every})"
        ));
    }
    for m in &view.missing {
        top.push(format!("! {m}"));
    }
    let managed: Vec<&ServiceRow> = view.rows.iter().filter(|r| r.metric.is_some()).collect();
    // The notes METRIC's `- (N)` refers to, under the rows after a blank line, as
    // the plain table prints them (`super::status_table`).
    let notes: Vec<String> = match &view.template {
        Some(_) => vec![],
        None => super::metric_notes(&view.rows)
            .iter()
            .enumerate()
            .map(|(i, n)| format!("({}) {n}", i + 1))
            .collect(),
    };
    let table_lines = match &view.template {
        Some(lines) => lines.len(),
        None if notes.is_empty() => 1 + view.rows.len(),
        None => 1 + view.rows.len() + 1 + notes.len(),
    };
    let spark_lines = if managed.is_empty() {
        0
    } else {
        1 + managed.len()
    };
    let [h_top, h_gap1, h_table, h_gap2, h_sparks] =
        heights(top.len(), table_lines, spark_lines, area.height as usize);
    let [top_area, _, table_area, _, spark_area] = Layout::vertical([
        Constraint::Length(h_top as u16),
        Constraint::Length(h_gap1 as u16),
        Constraint::Length(h_table as u16),
        Constraint::Length(h_gap2 as u16),
        Constraint::Length(h_sparks as u16),
    ])
    .areas(area);
    let top: Vec<Line> = top
        .iter()
        .take(h_top)
        .map(|l| Line::raw(cell(l, width)))
        .collect();
    frame.render_widget(Paragraph::new(Text::from(top)), top_area);
    match &view.template {
        Some(lines) => {
            // The template's own columns, as `status --format` prints them.
            let lines: Vec<Line> = lines
                .iter()
                .take(h_table)
                .map(|l| Line::raw(cell(l, width)))
                .collect();
            frame.render_widget(Paragraph::new(Text::from(lines)), table_area);
        }
        None => {
            // The rows first; the notes get what is left of the table's lines.
            let h_rows = h_table.min(1 + view.rows.len());
            let rows_area = Rect {
                height: h_rows as u16,
                ..table_area
            };
            let below = (h_rows as u16 + 1).min(table_area.height);
            let notes_area = Rect {
                y: table_area.y + below,
                height: table_area.height - below,
                ..table_area
            };
            render_status_table(
                frame,
                &view.rows[..view.rows.len().min(h_rows.saturating_sub(1))],
                view.no_trunc,
                rows_area,
            );
            let notes: Vec<Line> = notes
                .iter()
                .take(notes_area.height as usize)
                .map(|l| Line::raw(cell(l, width)))
                .collect();
            frame.render_widget(Paragraph::new(Text::from(notes)), notes_area);
        }
    }
    if h_sparks > 0 {
        render_sparklines(frame, view, &managed[..h_sparks - 1], spark_area);
    }
}

/// The status table of `rows` in `area`, its columns fitted by [`fit_columns`].
fn render_status_table(frame: &mut Frame, rows: &[ServiceRow], no_trunc: bool, area: Rect) {
    let header = super::STATUS_HEADER;
    let cells: Vec<Vec<String>> = super::status_cells(rows, no_trunc)
        .into_iter()
        .map(|r| r.iter().map(|c| crate::edge::text::printable(c)).collect())
        .collect();
    let natural: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| width_of(&r[i]))
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let columns = fit_columns(&natural, area.width as usize);
    let row_of = |texts: Vec<&str>| {
        Row::new(
            columns
                .iter()
                .zip(texts)
                .map(|((_, w), t)| crate::edge::text::ellipsize(t, *w)),
        )
    };
    let body = cells
        .iter()
        .map(|r| row_of(columns.iter().map(|(i, _)| r[*i].as_str()).collect()));
    let table = Table::new(
        body,
        columns.iter().map(|(_, w)| Constraint::Length(*w as u16)),
    )
    .header(row_of(columns.iter().map(|(i, _)| header[*i]).collect()))
    .column_spacing(GAP as u16);
    frame.render_widget(table, area);
}

/// The sparkline table of the `managed` services in `area`: SERVICE, the metric's
/// sparkline and value now, the running replicas' sparkline and REPLICAS now. The
/// sparklines get what the other columns leave of the width, 8 to [`HISTORY`] marks.
fn render_sparklines(frame: &mut Frame, view: &View, managed: &[&ServiceRow], area: Rect) {
    let width = area.width as usize;
    let names: Vec<String> = managed
        .iter()
        .map(|r| crate::edge::text::printable(&r.name))
        .collect();
    let metrics: Vec<String> = managed
        .iter()
        .map(|r| crate::edge::text::printable(r.metric.as_deref().unwrap_or_default()))
        .collect();
    let replicas: Vec<String> = managed
        .iter()
        .map(|r| crate::edge::text::printable(&r.replicas))
        .collect();
    let widest = |head: &str, texts: &[String]| {
        texts
            .iter()
            .map(|t| width_of(t))
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let now1 = widest("NOW", &metrics);
    let now2 = widest("NOW", &replicas);
    let name_w = widest("SERVICE", &names);
    // The sparklines share what the other columns leave of the width (a name counts
    // at most 30 there), 8 to HISTORY marks each.
    let rest = name_w.min(30) + now1 + now2 + 4 * GAP;
    let marks = (width.saturating_sub(rest) / 2).clamp(8, HISTORY);
    let span = humantime::format_duration(Duration::from_millis(
        (view.interval.as_millis() as u64).saturating_mul(marks as u64),
    ));
    // The headers name the time the marks span when there is room for it.
    let long = format!("RUNNING, LAST {span}").len();
    let (metric_head, running_head) =
        if name_w.min(30) + 2 * marks.max(long) + now1 + now2 + 4 * GAP <= width {
            (
                format!("METRIC, LAST {span}"),
                format!("RUNNING, LAST {span}"),
            )
        } else {
            ("METRIC".to_string(), "RUNNING".to_string())
        };
    let (spark1, spark2) = (marks.max(metric_head.len()), marks.max(running_head.len()));
    // A long name is cut to leave the sparklines their room.
    let name_w = name_w.min(
        width
            .saturating_sub(spark1 + now1 + spark2 + now2 + 4 * GAP)
            .max("SERVICE".len()),
    );
    let widths = [name_w, spark1, now1, spark2, now2];
    let layout =
        Layout::horizontal(widths.map(|w| Constraint::Length(w as u16))).spacing(GAP as u16);
    let rows = Layout::vertical(vec![Constraint::Length(1); 1 + managed.len()]).split(area);
    let head = [
        "SERVICE",
        metric_head.as_str(),
        "NOW",
        running_head.as_str(),
        "NOW",
    ];
    let cols: [Rect; 5] = layout.areas(rows[0]);
    for (text, (rect, w)) in head.iter().zip(cols.iter().zip(widths)) {
        frame.render_widget(Line::raw(cell(text, w)), *rect);
    }
    for (k, r) in managed.iter().enumerate() {
        let cols: [Rect; 5] = layout.areas(rows[k + 1]);
        let samples = view.history.of(&r.id);
        let samples = &samples[samples.len().saturating_sub(marks)..];
        let metric: Vec<Option<f64>> = samples.iter().map(|s| s.metric).collect();
        let running: Vec<Option<f64>> = samples.iter().map(|s| Some(s.running as f64)).collect();
        frame.render_widget(Line::raw(cell(&names[k], name_w)), cols[0]);
        frame.render_widget(spark(&metric), cols[1]);
        frame.render_widget(Line::raw(cell(&metrics[k], now1)), cols[2]);
        frame.render_widget(spark(&running), cols[3]);
        frame.render_widget(Line::raw(cell(&replicas[k], now2)), cols[4]);
    }
}

/// A one-line [`Sparkline`] of `values` ([`spark_levels`]), a blank for a gap.
fn spark(values: &[Option<f64>]) -> Sparkline<'static> {
    Sparkline::default()
        .data(spark_levels(values))
        .max(SPARK_MAX)
        .absent_value_symbol(" ")
}

/// Draws `view` on `terminal`: ratatui writes only the cells that changed since
/// the last frame (the whole screen is cleared only when the terminal was resized).
fn draw<B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    view: &View,
) -> Result<(), Failure> {
    terminal
        .draw(|frame| render_view(frame, view))
        .map(|_| ())
        .map_err(|e| Failure::Error(format!("cannot write to the terminal: {e}")))
}

/// Whether the terminal is in the live view's state (raw mode, alternate screen).
static SCREEN_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: raw mode off, cursor shown, main screen. Safe to call
/// more than once (only the first call acts).
fn restore_terminal() {
    if SCREEN_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
        let mut out = std::io::stdout();
        let _ = crossterm::execute!(
            out,
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = out.flush();
    }
}

/// The terminal in the live view's state for as long as it lives; dropping it (on
/// return, on error, or when the command is cancelled) restores the terminal and
/// stops the key reader. A panic restores it too (through the panic hook, which
/// exits before any drop would run).
struct Screen {
    stop: Arc<AtomicBool>,
}

/// What the key reader reports.
#[derive(Debug)]
enum Key {
    Quit,
    Interrupt,
    Resize,
}

impl Screen {
    fn enter() -> Result<(Screen, tokio::sync::mpsc::UnboundedReceiver<Key>), Failure> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        let fail = |e: std::io::Error| Failure::Error(format!("cannot set up the terminal: {e}"));
        SCREEN_ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen {
            stop: Arc::new(AtomicBool::new(false)),
        };
        crossterm::terminal::enable_raw_mode().map_err(fail)?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )
        .map_err(fail)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = screen.stop.clone();
        std::thread::spawn(move || read_keys(&stop, &tx));
        Ok((screen, rx))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        restore_terminal();
    }
}

/// Reads terminal events until `stop`: `q` quits, Ctrl-C interrupts (raw mode turns
/// it into a key), a resize redraws.
fn read_keys(stop: &AtomicBool, tx: &tokio::sync::mpsc::UnboundedSender<Key>) {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    while !stop.load(Ordering::SeqCst) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => {
                let key = match event::read() {
                    Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                        KeyCode::Char('q' | 'Q') => Some(Key::Quit),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            Some(Key::Interrupt)
                        }
                        _ => None,
                    },
                    Ok(Event::Resize(..)) => Some(Key::Resize),
                    Ok(_) => None,
                    Err(_) => return,
                };
                if let Some(k) = key
                    && tx.send(k).is_err()
                {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

async fn run_live(
    engine: &Engine,
    args: &StatusArgs,
    format: &Format,
    filters: &Filters,
    modes: &[Mode],
    interval: Duration,
    metrics: bool,
) -> Result<Exit, Failure> {
    let (_screen, mut keys) = Screen::enter()?;
    // Dropped before the screen: the terminal is put back after ratatui is done.
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
            .map_err(|e| Failure::Error(format!("cannot set up the terminal: {e}")))?;
    let template = match format {
        Format::Template(t) if t.is_table() => Some(t.as_ref()),
        _ => None,
    };
    let mut view = View {
        rows: vec![],
        error: None,
        missing: vec![],
        history: History::default(),
        interval,
        updated: None,
        no_trunc: args.no_trunc == Some(true),
        template: template.map(|t| template_lines(t, &[])).transpose()?,
    };
    draw(&mut terminal, &view)?;
    let mut keys_open = true;
    loop {
        let started = tokio::time::Instant::now();
        let read = {
            let reading = refresh(engine, args, filters, modes, metrics);
            tokio::pin!(reading);
            loop {
                tokio::select! {
                    r = &mut reading => break r,
                    k = keys.recv(), if keys_open => {
                        if let Some(done) = on_key(k, &mut terminal, &view, &mut keys_open)? {
                            return done;
                        }
                    }
                }
            }
        };
        match read {
            Ok(read) => {
                if let Some(t) = template {
                    // A template that fails on the rows is a usage error, as in plain mode.
                    view.template = Some(template_lines(t, &read.rows)?);
                }
                view.history.record(&read.rows);
                view.rows = read.rows;
                view.missing = read.missing;
                view.error = None;
            }
            Err(Failure::Usage(m)) => return Err(Failure::Usage(m)),
            Err(e) => view.error = Some(failure_text(&e)),
        }
        view.updated = Some(clock_now());
        draw(&mut terminal, &view)?;
        let next = started + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                k = keys.recv(), if keys_open => {
                    if let Some(done) = on_key(k, &mut terminal, &view, &mut keys_open)? {
                        return done;
                    }
                }
            }
        }
    }
}

/// The lines a `table ...` template prints for `rows` (a header line first), aligned
/// and escaped as `status --format` prints them.
///
/// Errors (usage): the template fails on a row.
fn template_lines(
    template: &crate::render::template::Template,
    rows: &[ServiceRow],
) -> Result<Vec<String>, Failure> {
    let text = template
        .render(rows)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Handles a key: `Some` ends the watch (`q`: exit 0; Ctrl-C: interrupted); a
/// resize redraws; a closed reader (no terminal input) leaves only Ctrl-C and
/// SIGTERM to end it.
fn on_key<B: ratatui::backend::Backend>(
    key: Option<Key>,
    terminal: &mut ratatui::Terminal<B>,
    view: &View,
    open: &mut bool,
) -> Result<Option<Result<Exit, Failure>>, Failure> {
    match key {
        Some(Key::Quit) => Ok(Some(Ok(Exit::Ok))),
        Some(Key::Interrupt) => Ok(Some(Err(Failure::Interrupted))),
        Some(Key::Resize) => draw(terminal, view).map(|_| None),
        None => {
            *open = false;
            Ok(None)
        }
    }
}

/// The local time of day, `HH:MM:SS`.
fn clock_now() -> String {
    let now = jiff::Zoned::now();
    now.strftime("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    fn args(watch: Option<bool>, interval: Option<&str>) -> StatusArgs {
        StatusArgs {
            services: vec![],
            filter: vec![],
            format: None,
            no_trunc: None,
            quiet: None,
            metrics: None,
            access: Default::default(),
            watch,
            interval: interval.map(str::to_string),
        }
    }

    #[test]
    fn interval_default_minimum_and_needs_watch() {
        assert_eq!(parse_interval(&args(None, None)), Ok(None));
        assert_eq!(
            parse_interval(&args(Some(true), None)),
            Ok(Some(DEFAULT_INTERVAL))
        );
        assert_eq!(
            parse_interval(&args(Some(true), Some("500ms"))),
            Ok(Some(Duration::from_millis(500)))
        );
        assert!(
            parse_interval(&args(Some(true), Some("100ms")))
                .unwrap_err()
                .contains("from 500ms to 1h")
        );
        assert!(parse_interval(&args(Some(true), Some("soon"))).is_err());
        assert_eq!(
            parse_interval(&args(None, Some("5s"))).unwrap_err(),
            "--interval needs --watch"
        );
    }

    /// `values` drawn as [`spark`] draws them, one line.
    fn spark_text(values: &[Option<f64>]) -> String {
        let mut buf = Buffer::empty(Rect::new(0, 0, values.len() as u16, 1));
        ratatui::widgets::Widget::render(spark(values), buf.area, &mut buf);
        (0..values.len() as u16)
            .map(|x| buf[(x, 0)].symbol().to_string())
            .collect()
    }

    #[test]
    fn sparklines_scale_from_zero_and_show_gaps() {
        let values = [Some(0.0), Some(1.0), Some(7.0), None, Some(3.5)];
        assert_eq!(
            spark_levels(&values),
            [Some(1), Some(2), Some(8), None, Some(5)]
        );
        assert_eq!(spark_text(&values), "▁▂█ ▅");
        assert_eq!(spark_text(&[Some(3.0), Some(3.0)]), "██");
        assert_eq!(spark_text(&[Some(0.0), Some(0.0)]), "▁▁");
        assert_eq!(spark_text(&[None, None]), "  ");
        assert_eq!(spark_levels(&[]), []);
        // Below zero: scaled from the lowest value.
        assert_eq!(spark_text(&[Some(-2.0), Some(0.0), Some(2.0)]), "▁▅█");
    }

    #[test]
    fn metric_cells_parse() {
        assert_eq!(metric_value("120 / 50"), Some(120.0));
        assert_eq!(metric_value("85% / 70%"), Some(85.0));
        assert_eq!(metric_value("-"), None);
        assert_eq!(metric_value(""), None);
    }

    fn row(id: &str, name: &str, metric: Option<&str>, running: u64) -> ServiceRow {
        ServiceRow {
            id: id.into(),
            name: name.into(),
            mode: Mode::Replicated,
            replicas: format!("{running}/{running}"),
            running,
            desired: running,
            completed: None,
            max_per_node: None,
            image: "img".into(),
            image_name: "img".into(),
            digest: String::new(),
            update: String::new(),
            source: String::new(),
            rule: "-".into(),
            rule_labels: Default::default(),
            metric: metric.map(str::to_string),
            metric_error: None,
            rule_desired: None,
            nodes: 1,
            tasks_on_down_nodes: 0,
            down_nodes: vec![],
            ports: String::new(),
            fight: None,
        }
    }

    #[test]
    fn history_is_a_ring_per_managed_service_and_forgets_removed_ones() {
        let mut h = History::default();
        for i in 0..(HISTORY + 5) {
            h.record(&[
                row("a", "web", Some(&format!("{i} / 10")), 2),
                row("b", "plain", None, 1),
            ]);
        }
        let a = h.of("a");
        assert_eq!(a.len(), HISTORY);
        assert_eq!(a[0].metric, Some(5.0));
        assert_eq!(a[HISTORY - 1].metric, Some((HISTORY + 4) as f64));
        assert!(
            h.of("b").is_empty(),
            "a service without a rule has no history"
        );
        // Removed: its history goes; a new service starts empty.
        h.record(&[row("c", "new", Some("-"), 0)]);
        assert!(h.of("a").is_empty());
        assert_eq!(
            h.of("c"),
            [Sample {
                metric: None,
                running: 0
            }]
        );
    }

    fn view(rows: Vec<ServiceRow>) -> View {
        let mut view = View {
            rows,
            error: None,
            missing: vec![],
            history: History::default(),
            interval: Duration::from_secs(2),
            updated: Some("12:00:00".into()),
            no_trunc: false,
            template: None,
        };
        view.history.record(&view.rows.clone());
        view
    }

    /// The screen a `width` x `height` terminal shows for `view`, line by line (a
    /// wide character once; trailing blanks kept).
    fn screen(view: &View, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        draw(&mut terminal, view).unwrap();
        let buf = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                let mut line = String::new();
                let mut x = 0;
                while x < width {
                    let symbol = buf[(x, y)].symbol();
                    line.push_str(symbol);
                    x += (width_of(symbol) as u16).max(1);
                }
                line
            })
            .collect()
    }

    /// A service as an autoscaling user runs it: a long image with a digest, a
    /// SOURCE, a rule, a metric, a desired count.
    fn managed_row(id: &str, name: &str) -> ServiceRow {
        let mut r = row(id, name, Some("120 / 50"), 3);
        r.image_name = "registry.example.com/platform/queue-worker:1.4.2".into();
        r.digest = format!("sha256:{}", "ab12".repeat(16));
        r.update = "completed 3m ago".into();
        r.source = "github.com/example-org/queue-worker@4f2a9c1d0e7b".into();
        r.rule = "3..12 by redis://redis.internal:6379/0?list=jobs, 50 per replica".into();
        r.rule_desired = Some(6);
        r.nodes = 3;
        r
    }

    fn header_line(lines: &[String]) -> &str {
        lines
            .iter()
            .find(|l| l.starts_with("NAME "))
            .unwrap_or_else(|| panic!("no header: {lines:#?}"))
    }

    #[test]
    fn at_200_columns_rule_metric_desired_and_nodes_are_shown() {
        let v = view(vec![
            managed_row("a", "queue-worker"),
            row("b", "idle", None, 0),
        ]);
        let lines = screen(&v, 200, 50);
        assert!(
            lines[0].starts_with("docker microscale status --watch · every 2s · 12:00:00"),
            "{lines:#?}"
        );
        let header = header_line(&lines);
        for column in [
            "NAME", "MODE", "REPLICAS", "RULE", "METRIC", "DESIRED", "NODES",
        ] {
            assert!(
                header.split_whitespace().any(|w| w == column),
                "{column} missing at 200 columns:\n{}",
                lines.join("\n")
            );
        }
        let row = lines
            .iter()
            .find(|l| l.starts_with("queue-worker ") && l.contains("replicated"))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        // Each value under its column's header.
        let row: Vec<char> = row.chars().collect();
        let under = |column: &str, len: usize| -> String {
            let at = header.find(column).unwrap();
            row[at..(at + len).min(row.len())].iter().collect()
        };
        assert_eq!(under("METRIC", 8), "120 / 50", "{row:?}");
        assert_eq!(under("DESIRED", 2), "6 ", "{row:?}");
        assert_eq!(under("NODES", 10).trim_end(), "3", "{row:?}");
        assert_eq!(under("RULE", 14), "3..12 by redis", "{row:?}");
        // The sparkline table below it.
        assert!(
            lines.iter().any(|l| l.starts_with("SERVICE ")
                && l.contains("METRIC, LAST")
                && l.contains("RUNNING, LAST")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("queue-worker ")
                && l.contains('█')
                && l.contains("120 / 50")),
            "{lines:#?}"
        );
    }

    #[test]
    fn at_100_columns_image_goes_before_desired() {
        let v = view(vec![managed_row("a", "queue-worker")]);
        let lines = screen(&v, 100, 30);
        let header = header_line(&lines);
        let words: Vec<&str> = header.split_whitespace().collect();
        for column in ["NAME", "REPLICAS", "RULE", "METRIC", "DESIRED", "NODES"] {
            assert!(
                words.contains(&column),
                "{column} missing:\n{}",
                lines.join("\n")
            );
        }
        for column in ["IMAGE", "SOURCE"] {
            assert!(
                !words.contains(&column),
                "{column} shown:\n{}",
                lines.join("\n")
            );
        }
        // Nothing runs off the screen: the last column ends within it.
        let row = lines
            .iter()
            .find(|l| l.starts_with("queue-worker "))
            .unwrap();
        assert_eq!(row.split_whitespace().last(), Some("3"), "{row}");
    }

    #[test]
    fn columns_give_way_in_priority_order_as_the_terminal_narrows() {
        let header = crate::cmd::status::STATUS_HEADER;
        let natural = [20, 10, 8, 62, 16, 45, 48, 10, 7, 5];
        let full: usize = natural.iter().sum::<usize>() + GAP * 9;
        assert_eq!(
            fit_columns(&natural, full),
            natural.iter().copied().enumerate().collect::<Vec<_>>()
        );
        let shown = |width| -> Vec<&str> {
            fit_columns(&natural, width)
                .iter()
                .map(|(i, _)| header[*i])
                .collect()
        };
        let mut gone: Vec<&str> = vec![];
        for width in (1..full).rev() {
            let now = shown(width);
            let fitted = fit_columns(&natural, width);
            let used: usize =
                fitted.iter().map(|(_, w)| w).sum::<usize>() + GAP * (fitted.len() - 1);
            assert!(used <= width, "{width}: {fitted:?}");
            assert_eq!(now[0], "NAME", "{width}");
            for (i, w) in &fitted {
                assert!(*w <= natural[*i]);
                assert!(*w >= header[*i].len().min(width), "{width}: {fitted:?}");
            }
            // A column that went never comes back at a narrower width.
            for column in header {
                if !now.contains(&column) && !gone.contains(&column) {
                    gone.push(column);
                }
                if gone.contains(&column) {
                    assert!(!now.contains(&column), "{column} back at {width}");
                }
            }
        }
        assert_eq!(
            gone,
            [
                "SOURCE", "IMAGE", "UPDATE", "MODE", "NODES", "RULE", "DESIRED", "METRIC",
                "REPLICAS"
            ]
        );
        // At 100 columns: IMAGE, SOURCE and UPDATE are gone, the rest stays.
        assert_eq!(
            shown(100),
            [
                "NAME", "MODE", "REPLICAS", "RULE", "METRIC", "DESIRED", "NODES"
            ]
        );
        // A long REPLICAS (stale tasks on down nodes) is cut before MODE goes.
        let mut long = natural;
        long[2] = 60;
        let at = fit_columns(&long, 120);
        assert_eq!(
            at,
            [(0, 20), (1, 10), (2, 30), (6, 20), (7, 10), (8, 7), (9, 5)]
        );
        // RULE is cut before MODE goes: at 100, to 22 columns.
        let at = fit_columns(&natural, 100);
        assert!(at.contains(&(1, 10)) && at.contains(&(6, 22)), "{at:?}");
    }

    #[test]
    fn a_table_template_drives_the_live_screen() {
        let rows = vec![managed_row("a", "queue-worker"), row("b", "idle", None, 0)];
        let format = Format::parse(
            Some("table {{.Name}}\\t{{.RuleDesired}}\\t{{.Metric}}"),
            crate::render::fields::STATUS,
        )
        .unwrap();
        let Format::Template(t) = &format else {
            panic!("a template")
        };
        let mut v = view(rows.clone());
        v.template = Some(template_lines(t, &rows).unwrap());
        let lines = screen(&v, 120, 20);
        let header = header_line(&lines);
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            ["NAME", "DESIRED", "METRIC"],
            "{lines:#?}"
        );
        // The template's rows, as `status --format` aligns them.
        let printed =
            crate::cmd::status::rows_text(&rows, &args(Some(true), None), &format).unwrap();
        for l in printed.lines() {
            assert!(
                lines.iter().any(|s| s.trim_end() == l.trim_end()),
                "{l:?} in {lines:#?}"
            );
        }
        assert!(!lines.iter().any(|l| l.contains("REPLICAS")), "{lines:#?}");
        // The live screen takes table formats on a terminal only.
        assert!(live_screen(true, &format, false));
        assert!(live_screen(true, &Format::Table, false));
        assert!(!live_screen(true, &format, true), "-q");
        assert!(!live_screen(false, &format, false), "a pipe");
        assert!(!live_screen(true, &Format::Json, false));
        let bare = Format::parse(Some("{{.Name}}"), crate::render::fields::STATUS).unwrap();
        assert!(!live_screen(true, &bare, false), "a template without table");
    }

    /// Characters that must never reach the terminal as they are.
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }

    #[test]
    fn hostile_label_text_is_shown_escaped() {
        let mut evil = managed_row("a", "evil\u{1b}[2J\u{202e}name");
        evil.rule = "3..12 by redis://x\u{9b}31m\u{7}/0".into();
        evil.metric = Some("5\u{1b}]0;pwned\u{7} / 10".into());
        evil.source = "github.com/x/y\u{2066}@abc".into();
        let mut v = view(vec![evil.clone()]);
        v.error = Some("engine said \u{1b}[31mno\u{202e}".into());
        v.missing = vec!["no such service: a\u{1b}[Hb".into()];
        let check = |lines: Vec<String>| {
            let all = lines.join("\n");
            for l in &lines {
                assert!(!l.chars().any(unsafe_char), "{l:?}");
            }
            assert!(all.contains("evil\\u{1b}[2J\\u{202e}name"), "{all}");
            assert!(all.contains("engine said \\u{1b}[31mno\\u{202e}"), "{all}");
            assert!(all.contains("no such service: a\\u{1b}[Hb"), "{all}");
        };
        check(screen(&v, 250, 30));
        // And through a template.
        let format = Format::parse(
            Some("table {{.Name}}\\t{{.Rule}}\\t{{.Metric}}"),
            crate::render::fields::STATUS,
        )
        .unwrap();
        let Format::Template(t) = &format else {
            panic!("a template")
        };
        v.template = Some(template_lines(t, &[evil]).unwrap());
        let lines = screen(&v, 250, 30);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("redis://x\\u{9b}31m\\u{7}/0")),
            "{lines:#?}"
        );
        check(lines);
    }

    #[test]
    fn errors_are_shown_and_the_frame_fits_a_short_terminal() {
        let mut v = view(vec![
            row("a", "queue-worker", Some("120 / 50"), 3),
            row("b", "idle", None, 0),
        ]);
        v.error = Some("cannot connect to the engine\nis it running?".into());
        let lines = screen(&v, 60, 40);
        assert!(lines[1].starts_with("! cannot connect"), "{lines:#?}");
        assert!(lines[2].starts_with("  is it running?"), "{lines:#?}");
        assert!(lines[3].contains("trying again every 2s"), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("NAME ")), "{lines:#?}");
        // A long title is cut with an ellipsis at the edge.
        let narrow = screen(&v, 30, 10);
        assert!(narrow[0].ends_with('…'), "{narrow:#?}");
        // Three lines: the title, the error; the table and sparklines do not fit.
        let short = screen(&v, 60, 3);
        assert!(short[2].starts_with("  is it running?"), "{short:#?}");
        // The heights: rows below the screen are not shown, the sparklines only
        // with room for their header and a row.
        assert_eq!(heights(1, 11, 3, 50), [1, 1, 11, 1, 3]);
        assert_eq!(heights(1, 11, 3, 10), [1, 1, 8, 0, 0]);
        assert_eq!(heights(1, 3, 3, 8), [1, 1, 3, 1, 2]);
        assert_eq!(heights(4, 3, 3, 2), [2, 0, 0, 0, 0]);
    }

    #[test]
    fn unreadable_metrics_are_explained_under_the_table() {
        let mut a = row("a", "queue-worker", Some("-"), 2);
        a.metric_error = Some("metric unreadable: cannot connect to redis\u{1b}[2J".into());
        let mut b = row("b", "web", Some("-"), 3);
        b.metric_error = Some("metric unreadable: timeout".into());
        let c = row("c", "idle", None, 0);
        let v = view(vec![a, b, c]);
        let lines = screen(&v, 120, 20);
        let header = lines.iter().position(|l| l.starts_with("NAME ")).unwrap();
        assert!(lines[header + 1].contains("- (1)"), "{lines:#?}");
        assert!(lines[header + 2].contains("- (2)"), "{lines:#?}");
        assert!(lines[header + 3].starts_with("idle "), "{lines:#?}");
        assert_eq!(lines[header + 4].trim(), "", "{lines:#?}");
        assert!(
            lines[header + 5]
                .starts_with("(1) metric unreadable: cannot connect to redis\\u{1b}[2J"),
            "{lines:#?}"
        );
        assert!(
            lines[header + 6].starts_with("(2) metric unreadable: timeout"),
            "{lines:#?}"
        );
        // The sparklines still follow, after a blank line.
        assert_eq!(lines[header + 7].trim(), "", "{lines:#?}");
        assert!(lines[header + 8].starts_with("SERVICE "), "{lines:#?}");
        // On a short screen the rows come first and the notes are cut.
        let short = screen(&v, 120, 6);
        assert!(short.iter().any(|l| l.starts_with("idle ")), "{short:#?}");
        assert!(!short.iter().any(|l| l.starts_with("(2)")), "{short:#?}");
    }

    /// A `Write` whose bytes the test can read while the terminal owns it.
    #[derive(Clone, Default)]
    struct Tape(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Tape {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Tape {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    #[test]
    fn redraws_write_only_what_changed_and_never_clear_the_screen() {
        let tape = Tape::default();
        let mut terminal = Terminal::with_options(
            ratatui::backend::CrosstermBackend::new(tape.clone()),
            ratatui::TerminalOptions {
                viewport: ratatui::Viewport::Fixed(Rect::new(0, 0, 100, 20)),
            },
        )
        .unwrap();
        let mut v = view(vec![managed_row("a", "queue-worker")]);
        draw(&mut terminal, &v).unwrap();
        let first = tape.take();
        assert!(first.contains("queue-worker"), "{first:?}");
        assert!(!first.contains("\u{1b}[2J"), "no full clear: {first:?}");
        // The same view again: no cell is written.
        draw(&mut terminal, &v).unwrap();
        let again = tape.take();
        assert!(
            !again.contains("queue-worker") && !again.contains("12:00:00"),
            "{again:?}"
        );
        // A new time and metric: those cells, not the name.
        v.updated = Some("12:00:02".into());
        v.rows[0].metric = Some("130 / 50".into());
        v.history.record(&v.rows.clone());
        draw(&mut terminal, &v).unwrap();
        let next = tape.take();
        assert!(next.contains('2') && next.contains('3'), "{next:?}");
        assert!(
            !next.contains("queue-worker") && !next.contains("\u{1b}[2J"),
            "{next:?}"
        );
    }

    /// What a redraw costs for 1000 services (printed with `--nocapture`).
    #[test]
    fn redraw_of_a_thousand_services_is_cheap() {
        let rows: Vec<ServiceRow> = (0..1000)
            .map(|i| managed_row(&format!("id{i}"), &format!("svc-{i}")))
            .collect();
        let mut v = view(rows);
        for _ in 0..HISTORY {
            v.history.record(&v.rows.clone());
        }
        let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
        let start = std::time::Instant::now();
        draw(&mut terminal, &v).unwrap();
        let took = start.elapsed();
        eprintln!("frame of 1000 services (200x50): {took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let lines = screen(&v, 200, 50);
        assert!(
            lines[49].starts_with("svc-"),
            "the table fills the screen: {lines:#?}"
        );
    }
}
