//! SVG line plots (plotters): one function for every figure of the paper.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

/// One named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// How to draw.
pub struct Plot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// A logarithmic y axis (values ≤ 0 are raised to the axis floor).
    pub log_y: bool,
    /// Marks only, no lines (for scattered samples).
    pub marks: bool,
    /// An x interval to shade (a cut, a crash).
    pub shade: Option<(f64, f64)>,
}

impl Plot<'_> {
    pub fn lines<'a>(title: &'a str, x_label: &'a str, y_label: &'a str) -> Plot<'a> {
        Plot {
            title,
            x_label,
            y_label,
            log_y: false,
            marks: false,
            shade: None,
        }
    }
}

/// Draws `series` into an SVG at `path`.
pub fn draw(path: &Path, plot: &Plot<'_>, series: &[Series]) -> anyhow::Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let pts = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((a, b)) = plot.shade {
        x0 = x0.min(a);
        x1 = x1.max(b);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, (860, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(plot.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70);

    // The body is the same for both y axes; only the coordinate type differs.
    macro_rules! body {
        ($chart:expr, $floor:expr, $top:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(plot.x_label)
                .y_desc(plot.y_label)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|x| e(&x))?;
            if let Some((a, b)) = plot.shade {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, $floor), (b, $top)],
                        BLACK.mix(0.08).filled(),
                    )))
                    .map_err(|x| e(&x))?;
            }
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|&(x, y)| (x, y.max($floor)))
                    .collect();
                let drawn = if plot.marks {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
                        .map_err(|x| e(&x))?
                } else {
                    chart
                        .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                        .map_err(|x| e(&x))?
                };
                drawn.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            }
            if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .draw()
                    .map_err(|x| e(&x))?;
            }
        }};
    }

    if plot.log_y {
        let floor = (y0.max(1e-4) / 1.5).max(1e-4);
        let top = (y1 * 1.5).max(floor * 10.0);
        let chart = builder
            .build_cartesian_2d(x0..x1, (floor..top).log_scale())
            .map_err(|x| e(&x))?;
        body!(chart, floor, top);
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        let (floor, top) = (y0.min(0.0) - pad, y1 + pad);
        let chart = builder
            .build_cartesian_2d(x0..x1, floor..top)
            .map_err(|x| e(&x))?;
        body!(chart, floor, top);
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// `n` quantiles (0 to 1) of the absolute values, for a CDF.
pub fn quantiles(values: impl IntoIterator<Item = f64>, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().map(f64::abs).collect();
    if v.is_empty() || n < 2 {
        return Vec::new();
    }
    v.sort_by(f64::total_cmp);
    (0..n)
        .map(|k| synfony_testkit::report::quantile(&v, k as f64 / (n - 1) as f64))
        .collect()
}

/// A CDF line from quantiles: (value, fraction).
pub fn cdf(quantiles: &[f64]) -> Vec<(f64, f64)> {
    let n = quantiles.len().max(2) - 1;
    quantiles
        .iter()
        .enumerate()
        .map(|(k, &q)| (q, k as f64 / n as f64))
        .collect()
}

/// At most one point per `bucket` of x: the one with the largest |y| (so a
/// long run's spikes stay visible in a small file).
pub fn thin(points: &[(i64, f64)], origin_ns: i64, bucket_secs: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut last_bucket = i64::MIN;
    for &(t, y) in points {
        let x = (t - origin_ns) as f64 / 1e9;
        let b = (x / bucket_secs).floor() as i64;
        match out.last_mut() {
            Some(p) if b == last_bucket => {
                if y.abs() > p.1.abs() {
                    *p = (x, y);
                }
            }
            _ => {
                out.push((x, y));
                last_bucket = b;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_is_drawn_linear_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = [
            Series::new("a", vec![(0.0, 0.1), (1.0, 0.5), (2.0, 0.05)]),
            Series::new("b", vec![(0.0, 1.0), (2.0, 2.0)]),
        ];
        for log_y in [false, true] {
            let path = dir.path().join(format!("p{log_y}.svg"));
            let mut plot = Plot::lines("title", "x (s)", "y (ms)");
            plot.log_y = log_y;
            plot.shade = Some((0.5, 1.5));
            draw(&path, &plot, &s).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("title"), "{svg}");
        }
        draw(
            &dir.path().join("empty.svg"),
            &Plot::lines("t", "x", "y"),
            &[],
        )
        .unwrap();
    }

    #[test]
    fn quantiles_and_thinning() {
        let q = quantiles([3.0, -1.0, 2.0], 3);
        assert_eq!(q, [1.0, 2.0, 3.0]);
        let pts = [(0, 1.0), (100_000_000, -3.0), (1_100_000_000, 0.5)];
        assert_eq!(thin(&pts, 0, 1.0), [(0.1, -3.0), (1.1, 0.5)]);
    }
}
