//! Line charts as hand-written SVG: axes with round-number ticks (linear or log10), one
//! polyline per series, a legend. Two charts do not justify a plotting crate, and SVG
//! text diffs and opens in any browser.

use std::fmt::Write as _;

/// Canvas and plot-area geometry, in SVG user units (pixels).
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 210.0; // room for the legend
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Colours for series in order; a rung and its floor share one.
pub const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One axis.
pub struct Axis {
    /// Label under or beside the axis, units included.
    pub label: String,
    /// Lowest value shown (> 0 on a log axis).
    pub min: f64,
    /// Highest value shown.
    pub max: f64,
    /// log10 scale: for latencies that span decades across rungs.
    pub log: bool,
    /// Label ticks of whole thousands as "5k" (counts), not "5000" (milliseconds).
    pub kilo: bool,
}

impl Axis {
    /// Maps `value` to a 0..=1 position along the axis.
    fn unit(&self, value: f64) -> f64 {
        if self.log {
            let v = value.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (value - self.min) / (self.max - self.min)
        }
    }

    /// Tick values: decades on a log axis, steps of 1, 2 or 5 × 10^k otherwise.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (lo, hi) = (
                self.min.log10().floor() as i32,
                self.max.log10().ceil() as i32,
            );
            return (lo..=hi)
                .map(|k| 10f64.powi(k))
                .filter(|&v| v >= self.min * 0.999 && v <= self.max * 1.001)
                .collect();
        }
        let raw = (self.max - self.min) / 6.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * magnitude);
        let mut out = Vec::new();
        let mut v = (self.min / step).ceil() * step;
        while v <= self.max + step * 1e-9 && out.len() < 20 {
            out.push(v);
            v += step;
        }
        out
    }
}

/// One line on a chart.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Dashed line (the floor, targets).
    pub dashed: bool,
    /// Draw a dot at each point (few points: RSS per rung).
    pub markers: bool,
    /// (x, y) in axis units.
    pub points: Vec<(f64, f64)>,
}

/// A complete SVG document.
pub fn chart(title: &str, x: &Axis, y: &Axis, series: &[Series]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |v: f64| LEFT + x.unit(v).clamp(0.0, 1.0) * plot_w;
    let py = |v: f64| TOP + (1.0 - y.unit(v).clamp(0.0, 1.0)) * plot_h;
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    for t in x.ticks() {
        let gx = px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            number(t, x.kilo)
        );
    }
    for t in y.ticks() {
        let gy = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            gy + 4.0,
            number(t, y.kilo)
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(&x.label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(&y.label)
    );
    for (i, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(vx, vy)| format!("{:.1},{:.1}", px(vx), py(vy)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"/>"#,
            s.color,
            points.join(" ")
        );
        if s.markers {
            for &(vx, vy) in &s.points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                    px(vx),
                    py(vy),
                    s.color
                );
            }
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = WIDTH - RIGHT + 14.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A tick label: no trailing zeros; whole thousands as "k" if `kilo`.
fn number(v: f64, kilo: bool) -> String {
    if kilo && v.abs() >= 1_000.0 && (v / 1_000.0).fract() == 0.0 {
        format!("{}k", v / 1_000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
