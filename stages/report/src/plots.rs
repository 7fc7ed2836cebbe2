//! Small SVG charts for the report, written directly (no font or graphics libraries needed):
//! line charts of training curves and confusion-matrix heat maps.

use std::fmt::Write;

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed (e.g. the test curve beside the train curve).
    pub dashed: bool,
    pub color: &'static str,
}

pub const PALETTE: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A line chart with axes, ticks and a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 170.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if (y1 - y0).abs() < 1e-12 {
        y1 = y0 + 1.0;
    }
    if (x1 - x0).abs() < 1e-12 {
        x1 = x0 + 1.0;
    }
    let (pw, ph) = (w - left - right, h - top - bottom);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#, left + pw / 2.0, esc(title));
    let _ = write!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    for i in 0..=5 {
        let fy = y0 + (y1 - y0) * i as f64 / 5.0;
        let fx = x0 + (x1 - x0) * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{fy:.2}</text>"##,
            left + pw,
            left - 5.0,
            sy(fy) + 4.0,
            y = sy(fy)
        );
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{fx:.0}</text>"#, sx(fx), top + ph + 16.0);
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, left + pw / 2.0, h - 12.0, esc(x_label));
    let _ = write!(s, r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#, top + ph / 2.0, esc(y_label));
    for (i, ser) in series.iter().enumerate() {
        let path: Vec<String> = ser.points.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let dash = if ser.dashed { r#" stroke-dasharray="5,3""# } else { "" };
        let _ = write!(s, r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#, ser.color, path.join(" "));
        let ly = top + 14.0 + i as f64 * 18.0;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            w - right + 10.0,
            w - right + 34.0,
            ser.color,
            w - right + 40.0,
            ly + 4.0,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A confusion matrix as a heat map, rows = true class, columns = predicted.
pub fn confusion_chart(title: &str, labels: &[String], m: &[Vec<usize>]) -> String {
    let n = labels.len();
    let cell = 36.0;
    let (left, top) = (90.0, 60.0);
    let (w, h) = (left + cell * n as f64 + 20.0, top + cell * n as f64 + 90.0);
    let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(s, r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{}</text>"#, w / 2.0, esc(title));
    for (i, row) in m.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = v as f64 / max;
            let shade = (255.0 * (1.0 - 0.85 * t)) as u8;
            let (x, y) = (left + j as f64 * cell, top + i as f64 * cell);
            let text = if t > 0.55 { "white" } else { "black" };
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#fff"/><text x="{}" y="{}" text-anchor="middle" fill="{text}">{v}</text>"##,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + i as f64 * cell + cell / 2.0 + 4.0,
            esc(&labels[i])
        );
    }
    for (j, l) in labels.iter().enumerate() {
        let x = left + j as f64 * cell + cell / 2.0;
        let y = top + n as f64 * cell + 8.0;
        let _ = write!(s, r#"<text transform="translate({x},{y}) rotate(45)" text-anchor="start">{}</text>"#, esc(l));
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">predicted</text><text transform="translate(14,{}) rotate(-90)" text-anchor="middle">true</text>"#,
        left + cell * n as f64 / 2.0,
        h - 6.0,
        top + cell * n as f64 / 2.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg_with_every_series_and_cell() {
        let s = line_chart(
            "t <1>",
            "epoch",
            "acc",
            &[
                Series { label: "a".into(), points: vec![(1.0, 0.1), (2.0, 0.5), (3.0, f64::NAN)], dashed: false, color: PALETTE[0] },
                Series { label: "b".into(), points: vec![(1.0, 0.2)], dashed: true, color: PALETTE[1] },
            ],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("t &lt;1&gt;"));
        let c = confusion_chart("cm", &["x".into(), "y".into()], &[vec![3, 1], vec![0, 4]]);
        assert_eq!(c.matches("<rect x=").count(), 4);
        assert!(c.contains(">4</text>"));
    }
}
