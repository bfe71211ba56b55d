//! `replay -o chart.svg`: the replay over time, drawn with `plotters` (SVG backend).
//!
//! Left axis, replicas: desired (the spec) and running replicas, `min` and `max`.
//! Right axis, the metric: its value and what the running tasks carry at the target
//! (per-replica target: `target × running`; utilisation: the target, in percent).
//! The time axis is hours from the first pass.

use plotters::prelude::*;

use super::sim::Step;
use crate::rules::model::{Rule, Target};

/// Width and height of the chart, in pixels.
pub const SIZE: (u32, u32) = (1200, 600);

/// The metric drawn: the rule's metric `name`'s readings.
fn metric_of(rule: &Rule) -> Option<(&str, Target)> {
    rule.metrics.first().map(|m| (m.name.as_str(), m.target))
}

/// A step line through `(x, y)` points: `y` holds until the next `x`; the last value
/// holds to `end`.
fn stairs(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    if let Some(&(_, y)) = points.last() {
        out.push((end, y));
    }
    out
}

/// Renders the chart of `steps` (a replay of `rule`) as SVG text; `title` goes on
/// top (label text: it is escaped by the SVG backend).
///
/// Errors: plotters failing to draw (in memory; not expected), named as such.
pub fn render(rule: &Rule, steps: &[Step], title: &str) -> Result<String, String> {
    let mut svg = String::new();
    let t0 = steps.first().map_or(0.0, |s| s.time);
    let hours = |t: f64| (t - t0) / 3600.0;
    let end = steps.last().map_or(0.0, |s| hours(s.time + s.duration));
    let x_end = if end > 0.0 { end } else { 1.0 };
    let peak = steps
        .iter()
        .map(|s| s.decision.desired.max(s.decision.current))
        .max()
        .unwrap_or(0)
        .max(rule.max)
        .max(1);
    let metric = metric_of(rule);
    let values: Vec<(f64, f64)> = match metric {
        Some((name, _)) => steps
            .iter()
            .filter_map(|s| {
                let r = s.readings.iter().find(|r| r.name == name)?;
                r.value.as_ref().ok().map(|v| (hours(s.time), *v))
            })
            .collect(),
        None => vec![],
    };
    let carried: Vec<(f64, f64)> = match metric {
        Some((_, Target::PerReplica(t))) => steps
            .iter()
            .map(|s| (hours(s.time), t * s.running_after as f64))
            .collect(),
        Some((_, Target::Utilization(t))) => vec![(0.0, t), (x_end, t)],
        None => vec![],
    };
    let top = values
        .iter()
        .chain(&carried)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the chart: {e}");
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..x_end, 0.0..(peak as f64 + 1.0))
            .map_err(|e| err(&e))?
            .set_secondary_coord(0.0..x_end, 0.0..top);
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("replicas")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_label_formatter(&|x| format!("{x:.1}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        let unit = match metric {
            Some((_, Target::Utilization(_))) => "metric (%)",
            _ => "metric",
        };
        chart
            .configure_secondary_axes()
            .y_desc(unit)
            .draw()
            .map_err(|e| err(&e))?;

        let grey = RGBColor(150, 150, 150);
        let metric_colour = RGBColor(120, 170, 220);
        let target_colour = RGBColor(230, 140, 40);
        if !values.is_empty() {
            chart
                .draw_secondary_series(LineSeries::new(
                    stairs(&values, x_end),
                    metric_colour.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label("metric (right axis)")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], metric_colour));
        }
        if !carried.is_empty() {
            let label = match metric {
                Some((_, Target::Utilization(_))) => "target (right axis)",
                _ => "target × running (right axis)",
            };
            chart
                .draw_secondary_series(LineSeries::new(
                    stairs(&carried, x_end),
                    target_colour.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], target_colour));
        }
        for (bound, label) in [(rule.min, "min"), (rule.max, "max")] {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, bound as f64), (x_end, bound as f64)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label(format!("{label} {bound}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey));
        }
        let desired: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (hours(s.time), s.decision.desired as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(
                stairs(&desired, x_end),
                BLACK.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("desired replicas")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        // Running: what runs after each decision, and the converged count once the
        // tasks of a scale-up are ready.
        let mut running: Vec<(f64, f64)> = vec![];
        for s in steps {
            running.push((hours(s.time), s.running_after as f64));
            if let Some(at) = s.ready_at
                && at < s.time + s.duration
            {
                running.push((hours(at), s.decision.desired as f64));
            }
        }
        chart
            .draw_series(LineSeries::new(
                stairs(&running, x_end),
                RED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("running replicas")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(grey)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::series::{Point, Series};
    use crate::replay::sim::{Options, replay};

    #[test]
    fn stairs_hold_each_value_until_the_next() {
        assert_eq!(
            stairs(&[(0.0, 1.0), (1.0, 3.0)], 2.0),
            [(0.0, 1.0), (1.0, 1.0), (1.0, 3.0), (2.0, 3.0)]
        );
        assert!(stairs(&[], 1.0).is_empty());
    }

    #[test]
    fn the_chart_is_svg_with_every_series_and_its_legend() {
        let rule = crate::replay::sim::tests::rule(&[
            ("min", "2"),
            ("max", "8"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
        ]);
        let series = Series {
            points: [5.0, 60.0, 90.0, 20.0, 5.0]
                .iter()
                .enumerate()
                .map(|(i, v)| Point {
                    time: i as f64 * 600.0,
                    metric: String::new(),
                    value: Ok(*v),
                })
                .collect(),
            absolute: false,
        };
        let steps = replay(
            &rule,
            &series,
            Options {
                start: 2,
                converge: 120.0,
                interval: None,
                placement: None,
            },
        )
        .unwrap();
        let svg = render(&rule, &steps, "queue <test> & co").unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for want in [
            "queue <test> & co",
            "desired replicas",
            "running replicas",
            "min 2",
            "max 8",
            "metric (right axis)",
            "target × running (right axis)",
            "hours",
            "replicas",
        ] {
            assert!(texts.contains(&want), "{want:?} not in {texts:?}");
        }
        // Lines: desired, running, metric, target, min, max (and the axes).
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        assert!(lines >= 6, "{lines} polylines");
    }
}
