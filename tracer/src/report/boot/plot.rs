//! The boot timeline plotted: SVG, or the SVG in an HTML page.

use std::fmt::Write as _;

use super::BootReport;
use crate::report::fmt::{ms_or_secs, secs};

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG plot: a row per unit, activating and active spans, process bars inside,
/// failures in red with their cause as the title.
pub fn svg(r: &BootReport) -> String {
    let t0 = r.units.iter().map(|u| u.start_ns).min().unwrap_or(0);
    let t1 = r
        .units
        .iter()
        .flat_map(|u| {
            [
                u.active_ns,
                u.processes.iter().filter_map(|p| p.end_ns).max(),
            ]
        })
        .flatten()
        .max()
        .unwrap_or(t0)
        .max(t0 + 1_000_000_000);
    let (left, row, width) = (260.0, 18.0, 1200.0);
    let px = |ns: u64| left + (ns.saturating_sub(t0) as f64 / (t1 - t0) as f64) * width;
    // The targets' names, one line each above the rows, so that close ones stay legible.
    let top = 24.0 + 14.0 * r.milestones.len() as f64;
    let height = top + 16.0 + row * r.units.len() as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        left + width + 20.0
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // A grid line every 1, 2, 5, 10, ... s: at most about 25 of them.
    let span_s = (t1 - t0) as f64 / 1e9;
    let step_s = [1u64, 2, 5, 10, 20, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|&st| span_s / st as f64 <= 25.0)
        .unwrap_or(1200);
    let step = step_s * 1_000_000_000;
    let mut tick = t0.div_ceil(step) * step;
    while tick <= t1 {
        let x = px(tick);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="{height}" stroke="#ddd"/><text x="{x:.1}" y="14" text-anchor="middle">{}s</text>"##,
            tick / 1_000_000_000
        );
        tick += step;
    }
    for (i, m) in r.milestones.iter().enumerate() {
        let x = px(m.at_ns);
        let label_y = 34.0 + 14.0 * i as f64;
        let _ = writeln!(
            o,
            r##"<g class="milestone"><title>{} reached at {}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{height}" stroke="#2e7d32" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#2e7d32">{} {}</text></g>"##,
            xml(&m.unit),
            secs(m.at_ns),
            label_y - 10.0,
            x + 3.0,
            label_y,
            xml(&m.unit),
            secs(m.at_ns)
        );
    }
    for (i, u) in r.units.iter().enumerate() {
        let y = top + row * i as f64;
        let end = u.active_ns.unwrap_or(u.start_ns);
        // Active: from then until its last process ended (or the plot's end).
        if let Some(a) = u.active_ns.filter(|_| !u.failed) {
            let until = u
                .processes
                .iter()
                .map(|p| p.end_ns.unwrap_or(t1))
                .max()
                .unwrap_or(a)
                .max(a);
            if until > a {
                let _ = writeln!(
                    o,
                    r##"<rect class="active" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#e3f2fd"/>"##,
                    px(a),
                    (px(until) - px(a)).max(1.0),
                    row - 4.0
                );
            }
        }
        let title = match (&u.cause, u.took_ns) {
            (Some(c), _) => format!("{}: FAILED: {c}", u.unit),
            (None, Some(t)) => format!("{}: active after {}", u.unit, ms_or_secs(t)),
            (None, None) => u.unit.clone(),
        };
        let fill = if u.failed { "#e53935" } else { "#90caf9" };
        let _ = writeln!(
            o,
            r#"<g class="unit"><title>{}</title><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
            xml(&title),
            left - 6.0,
            y + 11.0,
            xml(&u.unit),
            px(u.start_ns),
            (px(end) - px(u.start_ns)).max(1.0),
            row - 4.0
        );
        for p in &u.processes {
            let e = p.end_ns.unwrap_or(t1);
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="4" fill="#37474f"><title>{}</title></rect>"##,
                px(p.start_ns),
                y + row - 8.0,
                (px(e) - px(p.start_ns)).max(1.0),
                xml(&format!(
                    "{} {} ({})",
                    p.role.as_deref().unwrap_or("process"),
                    p.program.as_deref().unwrap_or("?"),
                    p.status.as_deref().unwrap_or("running")
                ))
            );
        }
        let _ = writeln!(o, "</g>");
    }
    let _ = writeln!(o, "</svg>");
    o
}

/// The SVG in a self-contained HTML page.
pub fn html(r: &BootReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tracer boot {}</title></head><body>\n{}</body></html>\n",
        xml(&r.boot_id),
        svg(r)
    )
}
