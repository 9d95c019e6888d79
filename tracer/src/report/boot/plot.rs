//! The boot timeline plotted: SVG, or the SVG in an HTML page.

use std::fmt::Write as _;

use super::{BootReport, Milestone, ProcessSpan, UnitTimeline};
use crate::report::fmt::{ms_or_secs, secs};

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The rows' labels' margin, a row's height and the timeline's width, in pixels.
const LEFT: f64 = 260.0;
const ROW: f64 = 18.0;
const WIDTH: f64 = 1200.0;

/// Where the plot draws: the timeline from the first unit's start to the last moment
/// plotted (at least a second on), the rows below the targets' names.
struct Frame {
    t0: u64,
    t1: u64,
    /// The first row's top.
    top: f64,
    height: f64,
}

impl Frame {
    fn of(r: &BootReport) -> Self {
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
        // The targets' names, one line each above the rows, so that close ones stay legible.
        let top = 24.0 + 14.0 * r.milestones.len() as f64;
        let height = top + 16.0 + ROW * r.units.len() as f64;
        Self {
            t0,
            t1,
            top,
            height,
        }
    }

    /// The x of a moment.
    fn x(&self, ns: u64) -> f64 {
        LEFT + (ns.saturating_sub(self.t0) as f64 / (self.t1 - self.t0) as f64) * WIDTH
    }
}

/// An SVG plot: a row per unit, activating and active spans, process bars inside,
/// failures in red with their cause as the title.
pub fn svg(r: &BootReport) -> String {
    let f = Frame::of(r);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        LEFT + WIDTH + 20.0,
        f.height
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    grid(&mut o, &f);
    for (i, m) in r.milestones.iter().enumerate() {
        milestone(&mut o, &f, i, m);
    }
    for (i, u) in r.units.iter().enumerate() {
        unit_row(&mut o, &f, f.top + ROW * i as f64, u);
    }
    let _ = writeln!(o, "</svg>");
    o
}

/// A grid line every 1, 2, 5, 10, ... s: at most about 25 of them.
fn grid(o: &mut String, f: &Frame) {
    let span_s = (f.t1 - f.t0) as f64 / 1e9;
    let step_s = [1u64, 2, 5, 10, 20, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|&st| span_s / st as f64 <= 25.0)
        .unwrap_or(1200);
    let step = step_s * 1_000_000_000;
    let mut tick = f.t0.div_ceil(step) * step;
    while tick <= f.t1 {
        let x = f.x(tick);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="14" text-anchor="middle">{}s</text>"##,
            f.height,
            tick / 1_000_000_000
        );
        tick += step;
    }
}

/// The `i`th target reached: a dashed line down the rows, its name on a line of its own.
fn milestone(o: &mut String, f: &Frame, i: usize, m: &Milestone) {
    let x = f.x(m.at_ns);
    let label_y = 34.0 + 14.0 * i as f64;
    let _ = writeln!(
        o,
        r##"<g class="milestone"><title>{} reached at {}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{}" stroke="#2e7d32" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#2e7d32">{} {}</text></g>"##,
        xml(&m.unit),
        secs(m.at_ns),
        label_y - 10.0,
        f.height,
        x + 3.0,
        label_y,
        xml(&m.unit),
        secs(m.at_ns)
    );
}

/// A unit's row at `y`: its active span behind, its name, its bar until it became
/// active (red if it failed), its processes' bars inside.
fn unit_row(o: &mut String, f: &Frame, y: f64, u: &UnitTimeline) {
    let end = u.active_ns.unwrap_or(u.start_ns);
    active_span(o, f, y, u);
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
        LEFT - 6.0,
        y + 11.0,
        xml(&u.unit),
        f.x(u.start_ns),
        (f.x(end) - f.x(u.start_ns)).max(1.0),
        ROW - 4.0
    );
    for p in &u.processes {
        process_bar(o, f, y, p);
    }
    let _ = writeln!(o, "</g>");
}

/// Active: from then until its last process ended (or the plot's end).
fn active_span(o: &mut String, f: &Frame, y: f64, u: &UnitTimeline) {
    let Some(a) = u.active_ns.filter(|_| !u.failed) else {
        return;
    };
    let until = u
        .processes
        .iter()
        .map(|p| p.end_ns.unwrap_or(f.t1))
        .max()
        .unwrap_or(a)
        .max(a);
    if until > a {
        let _ = writeln!(
            o,
            r##"<rect class="active" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#e3f2fd"/>"##,
            f.x(a),
            (f.x(until) - f.x(a)).max(1.0),
            ROW - 4.0
        );
    }
}

/// A process's bar along the bottom of its unit's row, what it was and how it ended as
/// the title.
fn process_bar(o: &mut String, f: &Frame, y: f64, p: &ProcessSpan) {
    let e = p.end_ns.unwrap_or(f.t1);
    let _ = writeln!(
        o,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="4" fill="#37474f"><title>{}</title></rect>"##,
        f.x(p.start_ns),
        y + ROW - 8.0,
        (f.x(e) - f.x(p.start_ns)).max(1.0),
        xml(&format!(
            "{} {} ({})",
            p.role.as_deref().unwrap_or("process"),
            p.program.as_deref().unwrap_or("?"),
            p.status.as_deref().unwrap_or("running")
        ))
    );
}

/// The SVG in a self-contained HTML page.
pub fn html(r: &BootReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tracer boot {}</title></head><body>\n{}</body></html>\n",
        xml(&r.boot_id),
        svg(r)
    )
}
