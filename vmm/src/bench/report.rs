//! Formatting the results: one line of the table per [`Row`], its header,
//! and the detail lines (faults by resolution, the ring-0 instructions of
//! each kind of kernel entry and the functions they were spent in).

use super::stats::{cycles_to_us, summarize, Summary};
use super::step::{Entry, StepProfile};
use super::trace::resolution_name;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vmrun_contract::trace::Record;

/// One row of the results table.
#[derive(Clone, Debug, Default)]
pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) unit: &'static str,
    pub(super) guest: Option<Summary>,
    pub(super) native: Option<Summary>,
    /// Faults in the loop: (guest, native).
    pub(super) faults: (Option<u64>, Option<u64>),
    /// Ring-0 instructions per operation, with a label.
    pub(super) ring0: Option<String>,
    pub(super) note: String,
}

/// One line per resolution: how many faults, and the median cycles the
/// guest kernel spent on each (FAULT a5, measured with tracing on).
pub(super) fn fault_breakdown(faults: &[Record], tsc_khz: u64) -> Vec<String> {
    let mut by: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for f in faults {
        by.entry(f.a[4])
            .or_default()
            .push(cycles_to_us(f.a[5] as f64, tsc_khz));
    }
    by.iter()
        .filter_map(|(r, v)| Some((r, summarize(v)?)))
        .map(|(r, s)| {
            format!(
                "{} x{} (in kernel: median {:.1} us, p99 {:.1} us)",
                resolution_name(*r),
                s.count,
                s.median,
                s.p99
            )
        })
        .collect()
}

/// The ring-0 label for the table and the detail lines of one profile.
pub(super) fn ring0_detail(
    name: &str,
    args: &[String],
    p: &StepProfile,
    per_op: bool,
) -> (Option<String>, String) {
    let window: Vec<&Entry> = p.entries.iter().filter(|e| e.in_window).collect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{name:<14} stepped run `{}`: {} kernel entries in the loop",
        args.join(" "),
        window.len()
    );
    let mut label = None;
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for e in &window {
        let key = match e.vector {
            14 => "#PF",
            _ if e.is_syscall() => syscall_name(e.rax),
            _ => "other",
        };
        groups.entry(key).or_default().push(e.insns as f64);
    }
    for (key, v) in &groups {
        let Some(s) = summarize(v) else { continue };
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        let _ = writeln!(
            text,
            "{:<14}   {key:<8} x{:<5} median {:>7.0}  min {:>7.0}  max {:>7.0} instructions",
            "", s.count, s.median, min, max
        );
        if label.is_none() && (*key == "#PF" || *key == "getpid") {
            label = Some(format!("{:.0}/{key}", s.median));
        }
    }
    if per_op && label.is_none() {
        if let Some((key, s)) = groups.iter().find_map(|(k, v)| Some((k, summarize(v)?))) {
            label = Some(format!("{:.0}/{key}", s.median));
        }
    }
    let total: u64 = window.iter().map(|e| e.insns).sum();
    let mut top: Vec<(&String, &u64)> = p.window_functions.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    let shown: Vec<String> = top
        .iter()
        .take(6)
        .map(|(f, n)| {
            format!(
                "{} {:.0}%",
                short_name(f),
                **n as f64 * 100.0 / total.max(1) as f64
            )
        })
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(text, "{:<14}   where: {}", "", shown.join(", "));
    }
    (label, text)
}

/// Names of the system calls the workloads make in their loops.
fn syscall_name(nr: u64) -> &'static str {
    match nr {
        9 => "mmap",
        11 => "munmap",
        12 => "brk",
        39 => "getpid",
        98 => "getrusage",
        _ => "syscall",
    }
}

/// The last two path components of a symbol name.
fn short_name(name: &str) -> String {
    let parts: Vec<&str> = name.split("::").collect();
    parts[parts.len().saturating_sub(2)..].join("::")
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_nan() => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
        None => "-".into(),
    }
}

fn fmt_count(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

/// One printed table line.
pub(super) fn format_row(r: &Row) -> String {
    let ratio = match (r.guest, r.native) {
        (Some(g), Some(n)) if n.median > 0.0 => format!("{:.2}x", g.median / n.median),
        _ => "-".into(),
    };
    let count = |s: Option<Summary>| s.map_or("-".into(), |s| s.count.to_string());
    let faults = if r.faults == (None, None) {
        "-".to_string()
    } else {
        format!("{}/{}", fmt_count(r.faults.0), fmt_count(r.faults.1))
    };
    let mut line = format!(
        "{:<14} {:<13} {:>10} {:>10} {:>10} {:>10} {:>8} {:>13} {:>13} {:>12}",
        r.name,
        r.unit,
        fmt_num(r.guest.map(|s| s.median)),
        fmt_num(r.guest.map(|s| s.p99)),
        fmt_num(r.native.map(|s| s.median)),
        fmt_num(r.native.map(|s| s.p99)),
        ratio,
        format!("{}/{}", count(r.guest), count(r.native)),
        faults,
        r.ring0.clone().unwrap_or_else(|| "-".into()),
    );
    if !r.note.is_empty() {
        line += &format!("  ({})", r.note);
    }
    line
}

pub(super) fn header() -> String {
    format!(
        "{:<14} {:<13} {:>10} {:>10} {:>10} {:>10} {:>8} {:>13} {:>13} {:>12}",
        "workload",
        "unit",
        "guest p50",
        "guest p99",
        "native p50",
        "native p99",
        "g/n",
        "samples g/n",
        "faults g/n",
        "ring-0 insns"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_print_every_column() {
        let row = Row {
            name: "getpid",
            unit: "us/call",
            guest: Some(Summary {
                median: 2.0,
                p99: 3.0,
                count: 10,
            }),
            native: Some(Summary {
                median: 0.5,
                p99: 1.0,
                count: 10,
            }),
            faults: (Some(0), Some(0)),
            ring0: Some("120/getpid".into()),
            note: String::new(),
        };
        let line = format_row(&row);
        assert!(line.starts_with("getpid "), "{line}");
        for part in [
            "2.000",
            "3.000",
            "0.500",
            "4.00x",
            "10/10",
            "0/0",
            "120/getpid",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
    }
}
