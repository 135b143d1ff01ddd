//! The headline ratios as an SVG bar chart (docs/performance.svg).

use crate::report::headlines;
use serde_json::Value;
use std::fmt::Write;

/// A horizontal bar chart of the headline ratios, with 1.0 and the targets marked.
pub fn svg(r: &Value) -> String {
    let rows = headlines(r);
    let (w, left, bar_h, gap) = (760.0, 330.0, 26.0, 14.0);
    let scale = (w - left - 60.0) / 1.2;
    let h = 50.0 + rows.len() as f64 * (bar_h + gap);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Tern ÷ baseline, median of {} runs ({} mode); dashed: target</text>\n",
        r["repetitions"],
        r["mode"].as_str().unwrap_or("")
    );
    let one = left + scale;
    let _ = writeln!(
        s,
        "<line x1=\"{one}\" y1=\"34\" x2=\"{one}\" y2=\"{}\" stroke=\"#888\"/><text x=\"{}\" y=\"{}\" fill=\"#555\">1.0</text>",
        h - 8.0,
        one - 8.0,
        h - 1.0
    );
    for (i, (label, ratio, target)) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar_h + gap);
        let len = (ratio.min(1.2)) * scale;
        let colour = match target {
            Some(t) if ratio >= t => "#2e8b57",
            Some(_) => "#c0392b",
            None => "#4a6fa5",
        };
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.0}\">{}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{len:.1}\" height=\"{bar_h}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.0}\">{ratio:.2}</text>",
            y + 17.0,
            label.replace('&', "&amp;"),
            left + len + 6.0,
            y + 17.0
        );
        if let Some(t) = target {
            let x = left + t * scale;
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.0}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>",
                y - 3.0,
                y + bar_h + 3.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
