//! The fan-out plot: latency and deliveries/s against room size, for
//! tina4-wasm and the native baseline (SVG, with plotters).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One room size's measurement, as the plot draws it.
pub struct Point {
    /// Room size.
    pub size: usize,
    /// Median latency.
    pub median: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Deliveries per second.
    pub rate: f64,
}

/// Draws `runs` (per server) into an SVG at `file`.
pub fn fanout(file: &Path, runs: &[(&str, Vec<Point>)]) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(file, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(500);
    let sizes: Vec<usize> = runs
        .iter()
        .flat_map(|(_, r)| r.iter().map(|r| r.size))
        .collect();
    let (min, max) = (
        *sizes.iter().min().context("no runs")? as f64,
        *sizes.iter().max().context("no runs")? as f64,
    );
    let colors = [RED, BLUE];

    let latencies = || {
        runs.iter().flat_map(|(_, r)| {
            r.iter()
                .flat_map(|r| [r.median, r.p99].map(|d| d.as_secs_f64() * 1000.0))
        })
    };
    let worst = latencies().fold(0.0, f64::max);
    let best = latencies().fold(f64::MAX, f64::min);
    let mut latency = panel(
        &left,
        "End-to-end latency (ms, log scale)",
        (min, max),
        (best * 0.5..worst * 2.0).log_scale(),
    )?;
    for ((name, runs), color) in runs.iter().zip(colors) {
        for (label, p99) in [("p50", false), ("p99", true)] {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .map(|r| {
                    let d = if p99 { r.p99 } else { r.median };
                    (r.size as f64, d.as_secs_f64() * 1000.0)
                })
                .collect();
            let style = if p99 {
                color.stroke_width(2)
            } else {
                color.mix(0.5).stroke_width(2)
            };
            latency
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(plot_error)?
                .label(format!("{name} {label}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            latency
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
    }
    latency
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;

    let most = runs
        .iter()
        .flat_map(|(_, r)| r.iter().map(|r| r.rate / 1e6))
        .fold(0.0, f64::max);
    let mut rate = panel(
        &right,
        "Deliveries per second (millions)",
        (min, max),
        0.0..most * 1.15,
    )?;
    for ((name, runs), color) in runs.iter().zip(colors) {
        let points: Vec<(f64, f64)> = runs.iter().map(|r| (r.size as f64, r.rate / 1e6)).collect();
        rate.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        rate.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )
        .map_err(plot_error)?;
    }
    rate.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// A chart with room size (log scale) across.
type Panel<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, Y>>;

/// One chart with room size (log scale) across and `y` up, axes drawn.
fn panel<'a, 'b, Y>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    (min, max): (f64, f64),
    y: Y,
) -> anyhow::Result<Panel<'a, 'b, Y::CoordDescType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d((min * 0.8..max * 1.25).log_scale(), y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("room size (clients)")
        .x_labels(4)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

fn plot_error<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {err}")
}
