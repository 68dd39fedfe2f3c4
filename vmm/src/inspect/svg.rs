//! Pictures, as hand-written SVG: the page-table tree of a walk, and a
//! latency histogram.
//!
//! The tree puts one box per table page in a column per level (PML4 on the
//! left, PTs on the right), labelled with the level, physical address,
//! virtual range and present-entry count, with an edge from each table to
//! its parent; tables without child tables each take a row and a parent sits
//! level with the middle of its children. Beyond a cap the remaining tables
//! are left out and counted in a note. The histogram groups latencies in
//! power-of-two buckets (a log-scale x axis), one coloured bar per series in
//! each bucket, with axes, ticks and a legend.

use super::pagetable::{TablePage, Walk};
use super::stats::Latency;
use std::fmt::Write as _;

/// Tables drawn before the rest is summarised as "N more".
pub const DEFAULT_MAX_TABLES: usize = 64;

const BOX_W: f64 = 240.0;
const BOX_H: f64 = 50.0;
const COL_GAP: f64 = 70.0;
const ROW_H: f64 = 62.0;
const MARGIN: f64 = 20.0;
const TITLE_H: f64 = 50.0;
const FONT: &str = "font-family=\"DejaVu Sans Mono, monospace\"";

/// Escape text for SVG content or attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page-table tree of `walk` as an SVG document, drawing at most
/// `max_tables` table pages (in depth-first order, so every drawn table's
/// parent is drawn too).
pub fn page_table_tree(walk: &Walk, max_tables: usize) -> String {
    let shown = &walk.tables[..walk.tables.len().min(max_tables)];
    let rows = layout_rows(shown);
    let used_rows = rows.iter().cloned().fold(0.0_f64, f64::max) + 1.0;
    let hidden = walk.tables.len() - shown.len();
    let width = MARGIN * 2.0 + 4.0 * BOX_W + 3.0 * COL_GAP;
    let height = TITLE_H + used_rows * ROW_H + MARGIN * 2.0 + if hidden > 0 { 20.0 } else { 0.0 };
    let mut svg = header(width, height);
    let title = format!(
        "Page tables from CR3 {:#x}: {} table pages, {} leaves",
        walk.cr3,
        walk.tables.len(),
        walk.leaves.len()
    );
    text(&mut svg, MARGIN, 24.0, 16, "bold", &title);
    let key = "green: user half, blue: kernel half (shared by every process)";
    text(&mut svg, MARGIN, 42.0, 11, "normal", key);
    for (i, t) in shown.iter().enumerate() {
        if let Some(p) = t.parent {
            edge(&mut svg, box_xy(&shown[p], rows[p]), box_xy(t, rows[i]));
        }
    }
    for (i, t) in shown.iter().enumerate() {
        table_box(&mut svg, t, box_xy(t, rows[i]));
    }
    if hidden > 0 {
        let note = format!("{hidden} more table pages not shown");
        text(&mut svg, MARGIN, height - MARGIN, 13, "normal", &note);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Row of each table: a table without children takes the next row; a
/// parent sits midway between its first and last child.
fn layout_rows(tables: &[TablePage]) -> Vec<f64> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    for (i, t) in tables.iter().enumerate() {
        if let Some(p) = t.parent.filter(|&p| p < tables.len()) {
            children[p].push(i);
        }
    }
    let mut rows = vec![0.0; tables.len()];
    let mut next = 0.0;
    for i in (0..tables.len()).filter(|&i| tables[i].parent.is_none()) {
        assign_row(i, &children, &mut rows, &mut next);
    }
    rows
}

fn assign_row(i: usize, children: &[Vec<usize>], rows: &mut [f64], next: &mut f64) -> f64 {
    let mut span: Option<(f64, f64)> = None;
    for &k in &children[i] {
        let r = assign_row(k, children, rows, next);
        span = Some(span.map_or((r, r), |(first, _)| (first, r)));
    }
    let row = match span {
        Some((first, last)) => (first + last) / 2.0,
        None => {
            *next += 1.0;
            *next - 1.0
        }
    };
    rows[i] = row;
    row
}

fn box_xy(t: &TablePage, row: f64) -> (f64, f64) {
    let col = f64::from(4 - t.level.min(4));
    (
        MARGIN + col * (BOX_W + COL_GAP),
        TITLE_H + MARGIN + row * ROW_H,
    )
}

fn header(width: f64, height: f64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    )
}

fn text(svg: &mut String, x: f64, y: f64, size: u32, weight: &str, s: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" font-weight=\"{weight}\" {FONT}>{}</text>",
        escape(s)
    );
}

fn edge(svg: &mut String, parent: (f64, f64), child: (f64, f64)) {
    let (x1, y1) = (parent.0 + BOX_W, parent.1 + BOX_H / 2.0);
    let (x2, y2) = (child.0, child.1 + BOX_H / 2.0);
    let mid = (x1 + x2) / 2.0;
    let _ = writeln!(
        svg,
        "<path d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" \
         fill=\"none\" stroke=\"#888\" stroke-width=\"1.2\"/>"
    );
}

fn table_box(svg: &mut String, t: &TablePage, (x, y): (f64, f64)) {
    let fill = if t.level == 4 {
        "#e0e0e0"
    } else if t.is_user_half() {
        "#d8f0d8"
    } else {
        "#d8e4f8"
    };
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"5\" \
         fill=\"{fill}\" stroke=\"#444\"/>"
    );
    let range = if t.level == 4 {
        "whole address space".to_string()
    } else {
        format!("{:016x}-{:016x}", t.va_start, t.va_last())
    };
    let head = format!("{} @{:#x}", t.name(), t.phys);
    text(svg, x + 6.0, y + 15.0, 12, "bold", &head);
    text(svg, x + 6.0, y + 30.0, 10, "normal", &range);
    text(
        svg,
        x + 6.0,
        y + 44.0,
        11,
        "normal",
        &format!("{} present", t.present),
    );
}

/// Colours of histogram series, in order.
const COLOURS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const PLOT_H: f64 = 300.0;
const LEFT: f64 = 70.0;
const GROUP_W: f64 = 56.0;

/// A histogram of latencies (ns) as an SVG document: power-of-two buckets
/// on the x axis, counts on the y axis, one bar colour per series.
pub fn latency_histogram(title: &str, series: &[(String, &Latency)]) -> String {
    let buckets: Vec<Vec<(u64, u64)>> = series.iter().map(|(_, l)| l.log2_buckets()).collect();
    let lo = buckets
        .iter()
        .filter_map(|b| b.first())
        .map(|b| b.0)
        .min()
        .unwrap_or(1);
    let hi = buckets
        .iter()
        .filter_map(|b| b.last())
        .map(|b| b.0)
        .max()
        .unwrap_or(1);
    let edges: Vec<u64> = (lo.trailing_zeros()..=hi.trailing_zeros())
        .map(|k| 1u64 << k)
        .collect();
    let peak = buckets.iter().flatten().map(|b| b.1).max().unwrap_or(0);
    let ymax = nice_ceiling(peak.max(1));
    let width = LEFT + edges.len() as f64 * GROUP_W + 180.0;
    let top = TITLE_H + MARGIN;
    let height = top + PLOT_H + 70.0;
    let mut svg = header(width, height);
    text(&mut svg, MARGIN, 24.0, 16, "bold", title);
    y_axis(&mut svg, top, ymax);
    x_axis(&mut svg, top, &edges);
    let bar_w = (GROUP_W - 8.0) / series.len().max(1) as f64;
    for (s, b) in buckets.iter().enumerate() {
        bars(&mut svg, top, &edges, b, ymax, (s, bar_w));
    }
    legend(
        &mut svg,
        LEFT + edges.len() as f64 * GROUP_W + 20.0,
        top,
        series,
    );
    svg.push_str("</svg>\n");
    svg
}

/// The smallest of 1, 2, 5 x 10^k at or above `v`.
fn nice_ceiling(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= v {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

fn y_axis(svg: &mut String, top: f64, ymax: u64) {
    let bottom = top + PLOT_H;
    line(svg, (LEFT, top), (LEFT, bottom));
    for i in 0..=5u64 {
        let v = ymax * i / 5;
        let y = bottom - PLOT_H * i as f64 / 5.0;
        line(svg, (LEFT - 4.0, y), (LEFT, y));
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" {FONT}>{v}</text>",
            LEFT - 7.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"16\" y=\"{:.1}\" font-size=\"12\" transform=\"rotate(-90 16 {:.1})\" \
         text-anchor=\"middle\" {FONT}>count</text>",
        top + PLOT_H / 2.0,
        top + PLOT_H / 2.0
    );
}

fn x_axis(svg: &mut String, top: f64, edges: &[u64]) {
    let bottom = top + PLOT_H;
    let right = LEFT + edges.len() as f64 * GROUP_W;
    line(svg, (LEFT, bottom), (right, bottom));
    for (i, &e) in edges.iter().enumerate() {
        let x = LEFT + i as f64 * GROUP_W;
        line(svg, (x, bottom), (x, bottom + 4.0));
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" {FONT}>{}</text>",
            bottom + 16.0,
            escape(&human_ns(e))
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" {FONT}>\
         latency (power-of-two buckets, lower bound)</text>",
        (LEFT + right) / 2.0,
        bottom + 40.0
    );
}

fn bars(
    svg: &mut String,
    top: f64,
    edges: &[u64],
    b: &[(u64, u64)],
    ymax: u64,
    slot: (usize, f64),
) {
    let (series, bar_w) = slot;
    let colour = COLOURS[series % COLOURS.len()];
    for &(edge, count) in b.iter().filter(|b| b.1 > 0) {
        let Some(i) = edges.iter().position(|&e| e == edge) else {
            continue;
        };
        // At least 2 px, so that a single slow event stays visible.
        let h = (PLOT_H * count as f64 / ymax as f64).max(2.0);
        let x = LEFT + i as f64 * GROUP_W + 4.0 + series as f64 * bar_w;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{colour}\">\
             <title>{count} in [{}, {})</title></rect>",
            top + PLOT_H - h,
            escape(&human_ns(edge)),
            escape(&human_ns(edge * 2))
        );
    }
}

fn legend(svg: &mut String, x: f64, top: f64, series: &[(String, &Latency)]) {
    for (i, (name, l)) in series.iter().enumerate() {
        let y = top + i as f64 * 20.0;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>"
        );
        let label = format!("{name} ({})", l.count());
        text(svg, x + 18.0, y + 10.5, 11, "normal", &label);
    }
}

fn line(svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let _ = writeln!(
        svg,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#222\"/>"
    );
}

/// `512ns`, `1.0us`, `16us`, `2.1ms`, `1.1s`: about two significant digits.
pub fn human_ns(ns: u64) -> String {
    let units = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")];
    for (scale, unit) in units {
        if ns >= scale {
            let v = ns as f64 / scale as f64;
            return if v < 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.0}{unit}")
            };
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests;
