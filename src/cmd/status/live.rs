//! `docker microscale status --watch [--interval DURATION]`: the status again at each
//! interval, until interrupted.
//!
//! On a terminal (stdout a TTY, the default table format, no `-q`), a live
//! full-screen view: the alternate screen, redrawn in place without flicker (cursor
//! home, each line overwritten and cleared to its end, the rest of the screen
//! cleared; never a full clear), the status table at the top and, for each
//! rule-managed service, sparklines of its metric and its running replicas over the
//! last minutes. `q` leaves (exit 0), Ctrl-C too (exit 130, as everywhere); the
//! terminal is restored on every way out, errors and panics included.
//!
//! Otherwise (a pipe, a file, `--format json` or a template, `-q`), the plain output
//! again at each interval, frames separated by a blank line, until Ctrl-C or SIGTERM
//! (exit 130) or a closed pipe (exit 0).
//!
//! An engine that cannot be read does not end the watch: the view shows the error
//! (stderr in plain mode) and the next interval tries again.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::StatusArgs;
use crate::cmd::status::{Mode, ServiceRow};
use crate::edge::exit::{Exit, Failure};
use crate::engine::Engine;
use crate::render::Format;
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
    let live = std::io::stdout().is_terminal() && format.is_table() && args.quiet != Some(true);
    if live {
        run_live(engine, args, filters, modes, interval, metrics).await
    } else {
        run_plain(engine, args, format, filters, modes, interval, metrics).await
    }
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

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values` (oldest first), one character each, scaled from 0 (or
/// the lowest value when negative) to the highest; a gap for a missing value.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let present = values.iter().flatten().copied();
    let hi = present.clone().fold(f64::MIN, f64::max);
    let lo = present.fold(0.0_f64, f64::min);
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if hi <= lo => BARS[0],
            Some(v) => {
                let level = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The live view

/// What is on screen.
struct View {
    rows: Vec<ServiceRow>,
    error: Option<String>,
    missing: Vec<String>,
    history: History,
    interval: Duration,
    updated: Option<String>,
    no_trunc: bool,
}

/// The lines of one frame for a `width` x `height` terminal: a title line, an error
/// line when the last refresh failed, the status table, then a sparkline table of
/// the rule-managed services. Each line is cut to `width` columns, and the frame to
/// `height` lines.
fn frame(view: &View, width: usize, height: usize) -> Vec<String> {
    let every = humantime::format_duration(view.interval).to_string();
    let mut lines = vec![format!(
        "docker microscale status --watch · every {every} · {} · q to quit",
        view.updated.as_deref().unwrap_or("reading the swarm…")
    )];
    if let Some(e) = &view.error {
        for (i, l) in e.lines().enumerate() {
            let prefix = if i == 0 { "! " } else { "  " };
            lines.push(format!("{prefix}{l}"));
        }
        lines.push(format!(
            "  (showing the last status read; trying again every {every})"
        ));
    }
    for m in &view.missing {
        lines.push(format!("! {m}"));
    }
    lines.push(String::new());
    // Rows below the screen are not shown: the table is built for those that fit.
    let shown = &view.rows[..view.rows.len().min(height)];
    lines.extend(
        crate::render::status_table(shown, view.no_trunc)
            .lines()
            .map(str::to_string),
    );
    let managed: Vec<&ServiceRow> = view
        .rows
        .iter()
        .filter(|r| r.metric.is_some())
        .take(height)
        .collect();
    if !managed.is_empty() {
        // The sparklines share what the other columns leave of the width.
        let marks = (width.saturating_sub(50) / 2).clamp(8, HISTORY);
        let span = humantime::format_duration(Duration::from_millis(
            (view.interval.as_millis() as u64).saturating_mul(marks as u64),
        ));
        lines.push(String::new());
        let body = managed
            .iter()
            .map(|r| {
                let samples = view.history.of(&r.id);
                let samples = &samples[samples.len().saturating_sub(marks)..];
                let metric: Vec<Option<f64>> = samples.iter().map(|s| s.metric).collect();
                let running: Vec<Option<f64>> =
                    samples.iter().map(|s| Some(s.running as f64)).collect();
                vec![
                    r.name.clone(),
                    format!("{:<marks$}", sparkline(&metric)),
                    r.metric.clone().unwrap_or_default(),
                    format!("{:<marks$}", sparkline(&running)),
                    r.replicas.clone(),
                ]
            })
            .collect();
        let metric_head = format!("METRIC, LAST {span}");
        let replicas_head = format!("RUNNING, LAST {span}");
        lines.extend(
            crate::render::docker_table(
                &["SERVICE", &metric_head, "NOW", &replicas_head, "NOW"],
                body,
            )
            .lines()
            .map(str::to_string),
        );
    }
    lines.truncate(height.max(1));
    lines
        .into_iter()
        .map(|l| {
            let safe = crate::render::printable(&l);
            if unicode_width::UnicodeWidthStr::width(safe.as_str()) > width {
                crate::render::ellipsize(&safe, width)
            } else {
                safe
            }
        })
        .collect()
}

/// The bytes that draw `lines` over the previous frame: cursor home, each line
/// written and cleared to its end, then the rest of the screen cleared. No full
/// clear, so the screen never flashes blank.
fn draw_bytes(lines: &[String]) -> Vec<u8> {
    use crossterm::{cursor, queue, style, terminal};
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 16).sum());
    let _ = queue!(out, cursor::MoveTo(0, 0));
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            let _ = queue!(out, style::Print("\r\n"));
        }
        let _ = queue!(
            out,
            style::Print(line),
            terminal::Clear(terminal::ClearType::UntilNewLine)
        );
    }
    let _ = queue!(out, terminal::Clear(terminal::ClearType::FromCursorDown));
    out
}

fn draw(view: &View) -> Result<(), Failure> {
    let (w, h) = crossterm::terminal::size().unwrap_or((80, 24));
    let bytes = draw_bytes(&frame(view, w as usize, h as usize));
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|_| out.flush())
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
    filters: &Filters,
    modes: &[Mode],
    interval: Duration,
    metrics: bool,
) -> Result<Exit, Failure> {
    let (_screen, mut keys) = Screen::enter()?;
    let mut view = View {
        rows: vec![],
        error: None,
        missing: vec![],
        history: History::default(),
        interval,
        updated: None,
        no_trunc: args.no_trunc == Some(true),
    };
    draw(&view)?;
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
                        if let Some(done) = on_key(k, &view, &mut keys_open)? {
                            return done;
                        }
                    }
                }
            }
        };
        match read {
            Ok(read) => {
                view.history.record(&read.rows);
                view.rows = read.rows;
                view.missing = read.missing;
                view.error = None;
            }
            Err(Failure::Usage(m)) => return Err(Failure::Usage(m)),
            Err(e) => view.error = Some(failure_text(&e)),
        }
        view.updated = Some(clock_now());
        draw(&view)?;
        let next = started + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                k = keys.recv(), if keys_open => {
                    if let Some(done) = on_key(k, &view, &mut keys_open)? {
                        return done;
                    }
                }
            }
        }
    }
}

/// Handles a key: `Some` ends the watch (`q`: exit 0; Ctrl-C: interrupted); a
/// resize redraws; a closed reader (no terminal input) leaves only Ctrl-C and
/// SIGTERM to end it.
fn on_key(
    key: Option<Key>,
    view: &View,
    open: &mut bool,
) -> Result<Option<Result<Exit, Failure>>, Failure> {
    match key {
        Some(Key::Quit) => Ok(Some(Ok(Exit::Ok))),
        Some(Key::Interrupt) => Ok(Some(Err(Failure::Interrupted))),
        Some(Key::Resize) => draw(view).map(|_| None),
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

    #[test]
    fn sparklines_scale_from_zero_and_show_gaps() {
        assert_eq!(
            sparkline(&[Some(0.0), Some(1.0), Some(7.0), None, Some(3.5)]),
            "▁▂█ ▅"
        );
        assert_eq!(sparkline(&[Some(3.0), Some(3.0)]), "██");
        assert_eq!(sparkline(&[Some(0.0), Some(0.0)]), "▁▁");
        assert_eq!(sparkline(&[None, None]), "  ");
        assert_eq!(sparkline(&[]), "");
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

    #[test]
    fn frame_fits_the_terminal_and_redraws_in_place() {
        let mut view = View {
            rows: vec![
                row("a", "queue-worker", Some("120 / 50"), 3),
                row("b", "idle", None, 0),
            ],
            error: Some("cannot connect to the engine".into()),
            missing: vec![],
            history: History::default(),
            interval: Duration::from_secs(2),
            updated: Some("12:00:00".into()),
            no_trunc: false,
        };
        view.history.record(&view.rows.clone());
        let lines = frame(&view, 60, 100);
        assert!(lines[0].contains("every 2s"), "{lines:?}");
        assert!(lines[1].starts_with("! cannot connect"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("NAME")), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("queue-worker") && l.contains('█')),
            "{lines:?}"
        );
        for l in &lines {
            assert!(
                unicode_width::UnicodeWidthStr::width(l.as_str()) <= 60,
                "{l}"
            );
        }
        assert_eq!(frame(&view, 60, 3).len(), 3);
        let bytes = String::from_utf8(draw_bytes(&lines)).unwrap();
        assert!(bytes.starts_with("\u{1b}[1;1H"), "{bytes:?}");
        assert!(bytes.ends_with("\u{1b}[J"), "{bytes:?}");
        assert!(!bytes.contains("\u{1b}[2J"), "no full clear: {bytes:?}");
        assert_eq!(bytes.matches("\u{1b}[K").count(), lines.len());
    }

    /// What a redraw costs for 1000 services (printed with `--nocapture`).
    #[test]
    fn redraw_of_a_thousand_services_is_cheap() {
        let rows: Vec<ServiceRow> = (0..1000)
            .map(|i| row(&format!("id{i}"), &format!("svc-{i}"), Some("5 / 10"), 2))
            .collect();
        let mut view = View {
            rows,
            error: None,
            missing: vec![],
            history: History::default(),
            interval: Duration::from_secs(2),
            updated: None,
            no_trunc: false,
        };
        for _ in 0..HISTORY {
            view.history.record(&view.rows.clone());
        }
        let start = std::time::Instant::now();
        let bytes = draw_bytes(&frame(&view, 200, 50));
        let took = start.elapsed();
        eprintln!(
            "frame of 1000 services (200x50): {took:?}, {} bytes",
            bytes.len()
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
