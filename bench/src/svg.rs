//! Line charts as standalone SVG files: no plotting library, no fonts beyond the viewer's sans-serif.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub dashed: bool,
}

/// A chart's axes and title.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_y: bool,
}

/// Colours for series, in order.
pub const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

const W: f64 = 840.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let f = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

fn label(v: f64) -> String {
    if v.abs() >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Draws `series` on a chart with a linear x axis and a linear or log-10 y axis.
pub fn line_chart(c: &Chart<'_>, series: &[Series]) -> String {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied());
    let usable = |y: f64| !c.log_y || y > 0.0;
    let xmax = pts().map(|p| p.0).fold(f64::MIN, f64::max).max(1e-9);
    let xmin = pts().map(|p| p.0).fold(f64::MAX, f64::min).min(0.0);
    let ys: Vec<f64> = pts().map(|p| p.1).filter(|y| usable(*y)).collect();
    let (ylo, yhi) = if c.log_y {
        let lo = ys.iter().copied().fold(f64::MAX, f64::min).max(1e-3);
        let hi = ys.iter().copied().fold(f64::MIN, f64::max).max(lo * 10.0);
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf(hi.log10().ceil()),
        )
    } else {
        let hi = ys.iter().copied().fold(0.0, f64::max).max(1e-9);
        let step = nice_step(hi);
        (0.0, (hi / step).ceil() * step)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - xmin) / (xmax - xmin).max(1e-9) * pw;
    let sy = |y: f64| {
        let f = if c.log_y {
            (y.log10() - ylo.log10()) / (yhi.log10() - ylo.log10())
        } else {
            (y - ylo) / (yhi - ylo)
        };
        TOP + ph - f * ph
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"#,
        LEFT + pw / 2.0,
        esc(c.title)
    );
    // Grid and ticks.
    let mut yticks = Vec::new();
    if c.log_y {
        let mut v = ylo;
        while v <= yhi * 1.0001 {
            yticks.push(v);
            v *= 10.0;
        }
    } else {
        let step = nice_step(yhi - ylo);
        let mut v = ylo;
        while v <= yhi + step * 0.01 {
            yticks.push(v);
            v += step;
        }
    }
    for v in &yticks {
        let y = sy(*v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label(*v)
        );
    }
    let xstep = nice_step(xmax - xmin);
    let mut v = (xmin / xstep).ceil() * xstep;
    while v <= xmax + xstep * 0.01 {
        let x = sx(v);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            label(v)
        );
        v += xstep;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        H - 14.0,
        esc(c.x_label),
        TOP + ph / 2.0,
        esc(c.y_label)
    );
    // Lines, points, legend.
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|p| usable(p.1))
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        if path.len() > 1 {
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
                s.color,
                path.join(" ")
            );
        }
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(o, r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#, s.color);
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_its_legend() {
        let svg = line_chart(
            &Chart {
                title: "p99 <latency>",
                x_label: "msg/s",
                y_label: "ms",
                log_y: true,
            },
            &[
                Series {
                    name: "peer".into(),
                    points: vec![(10.0, 3.0), (100.0, 400.0)],
                    color: PALETTE[0],
                    dashed: false,
                },
                Series {
                    name: "chatroom".into(),
                    points: vec![(10.0, 0.0), (100.0, 20.0)],
                    color: PALETTE[1],
                    dashed: true,
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("p99 &lt;latency&gt;"));
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "a zero cannot be drawn on a log axis"
        );
        assert!(svg.contains(">chatroom</text>"));
    }
}
