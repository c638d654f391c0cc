//! `--chart FILE.svg`: each backend's share of the requests over the run, one line per backend,
//! with the kills, additions and slowdowns marked. Plain SVG, written by hand.

use std::fmt::Write;

use super::report::timeline;
use super::simulate::Outcome;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The chart of `outcome` over `windows` stretches of the run, as an SVG document.
pub fn svg(outcome: &Outcome, windows: usize) -> String {
    let (shares, window) = timeline(outcome, windows);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let total = outcome.requests.max(1) as f64;
    let top = shares
        .iter()
        .flatten()
        .fold(0.0f64, |m, s| m.max(*s))
        .max(0.05);
    // The y axis ends at the next 10 % above the highest share.
    let y_max = ((top * 10.0).ceil() / 10.0).min(1.0);
    let x = |request: f64| LEFT + plot_w * request / total;
    let y = |share: f64| TOP + plot_h * (1.0 - share / y_max);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}: share of requests per backend ({} requests, windows of {window})</text>"#,
        escape(&outcome.strategy),
        outcome.requests
    );
    for tick in 0..=5 {
        let share = y_max * f64::from(tick) / 5.0;
        let ty = y(share);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            ty + 4.0,
            share * 100.0
        );
    }
    for tick in 0..=4 {
        let request = total * f64::from(tick) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}</text>"#,
            x(request),
            TOP + plot_h + 18.0,
            request
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">request number</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    for change in &outcome.changes {
        let cx = x(change.at as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{cx:.1}" y1="{TOP}" x2="{cx:.1}" y2="{:.1}" stroke="#900" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#900">{}</text>"##,
            TOP + plot_h,
            cx + 3.0,
            TOP + 12.0,
            escape(&change.event)
        );
    }
    for (b, series) in shares.iter().enumerate() {
        let color = COLORS[b % COLORS.len()];
        // Each point sits in the middle of its window; windows before a backend joined are skipped.
        let joined = outcome.backends[b].added_at.unwrap_or(0) as usize;
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .filter(|(w, _)| (w + 1) * window > joined)
            .map(|(w, share)| {
                let mid = ((w * window) as f64 + window as f64 / 2.0).min(total);
                format!("{:.1},{:.1}", x(mid), y(*share))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 14.0 + 18.0 * b as f64;
        if ly < HEIGHT - 10.0 {
            let lx = WIDTH - RIGHT + 14.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{ly:.1}">{b}: {}</text>"#,
                ly - 5.0,
                lx + 18.0,
                escape(&outcome.backends[b].address)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Text made safe inside SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
