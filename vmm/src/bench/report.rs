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
/// The label sums the median instructions of the kernel entries named in
/// `keys` (`#PF` or a system call name, as the detail lines name them),
/// when the window has all of them; otherwise, with `per_op`, it is the
/// first kind of entry in the window.
pub(super) fn ring0_detail(
    name: &str,
    args: &[String],
    p: &StepProfile,
    keys: &[&str],
    per_op: bool,
    shown: Option<usize>,
) -> (Option<String>, String) {
    let window: Vec<&Entry> = p.entries.iter().filter(|e| e.in_window).collect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{name:<16} stepped run `{}`: {} kernel entries in the loop",
        args.join(" "),
        window.len()
    );
    let mut groups: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for e in &window {
        let g = groups.entry(entry_key(e)).or_default();
        g.0.push(e.insns as f64);
        g.1.push(e.exits as f64);
    }
    let mut medians = BTreeMap::new();
    for (key, (v, exits)) in &groups {
        let Some(s) = summarize(v) else { continue };
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        let exits = summarize(exits).map_or(0.0, |e| e.median);
        let _ = writeln!(
            text,
            "{:<16}   {key:<8} x{:<5} median {:>7.0}  min {:>7.0}  max {:>7.0} instructions, \
             {exits:.0} VM exits",
            "", s.count, s.median, min, max
        );
        medians.insert(*key, s.median);
    }
    let mut label = keys
        .iter()
        .map(|k| medians.get(k))
        .sum::<Option<f64>>()
        .filter(|_| !keys.is_empty())
        .map(|n| format!("{n:.0}/{}", keys.join("+")));
    if per_op && label.is_none() {
        if let Some((key, median)) = medians.first_key_value() {
            label = Some(format!("{median:.0}/{key}"));
        }
    }
    let total: u64 = window.iter().map(|e| e.insns).sum();
    if let Some(top) = top_functions(&p.window_functions, total, (shown, 6)) {
        let _ = writeln!(text, "{:<16}   where: {top}", "");
    }
    if shown.is_some() {
        // With `--functions`: where each kind of entry went, all together.
        let mut by_key: BTreeMap<&str, (BTreeMap<String, u64>, u64)> = BTreeMap::new();
        for (e, functions) in p.entries.iter().zip(&p.entry_functions) {
            if !e.in_window {
                continue;
            }
            let (sum, n) = by_key.entry(entry_key(e)).or_default();
            for (name, count) in functions {
                *sum.entry(name.clone()).or_default() += count;
            }
            *n += e.insns;
        }
        for (key, (functions, n)) in &by_key {
            if let Some(top) = top_functions(functions, *n, (shown, 6)) {
                let _ = writeln!(text, "{:<16}   {key} where: {top}", "");
            }
        }
    }
    (label, text)
}

/// The functions that took the most of `total` instructions, with their
/// shares (`Kernel::run 13%, PageTable::map 9%`): `default` of the
/// costliest, or as many as `--functions N` asked, then with each one's
/// count too (`Kernel::run 13% (45)`); `None` if the profile is empty.
pub(super) fn top_functions(
    functions: &BTreeMap<String, u64>,
    total: u64,
    (shown, default): (Option<usize>, usize),
) -> Option<String> {
    let n = shown.unwrap_or(default);
    let mut top: Vec<(&String, &u64)> = functions.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    let shown: Vec<String> = top
        .iter()
        .take(n)
        .map(|(f, count)| {
            let share = **count as f64 * 100.0 / total.max(1) as f64;
            match shown {
                Some(_) => format!("{} {share:.0}% ({count})", short_name(f)),
                None => format!("{} {share:.0}%", short_name(f)),
            }
        })
        .collect();
    (!shown.is_empty()).then(|| shown.join(", "))
}

/// The median ring-0 instructions of each kind of kernel entry in the
/// measured loop of `p` (by [`entry_key`]: `#PF`, a system call's name).
pub(super) fn window_medians(p: &StepProfile) -> BTreeMap<&'static str, f64> {
    let mut groups: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for e in p.entries.iter().filter(|e| e.in_window) {
        groups.entry(entry_key(e)).or_default().push(e.insns as f64);
    }
    groups
        .into_iter()
        .filter_map(|(k, v)| Some((k, summarize(&v)?.median)))
        .collect()
}

/// What a kernel entry is called in the detail lines: `#PF`, a system
/// call's name, or `other`.
fn entry_key(e: &Entry) -> &'static str {
    match e.vector {
        14 => "#PF",
        _ if e.is_syscall() => syscall_name(e.rax),
        _ => "other",
    }
}

/// The kernel entries of `entries` by kind, in order of first appearance:
/// `<kind> x<count> <instructions>`, the instructions summed.
pub(super) fn entry_kinds(entries: &[Entry]) -> Vec<String> {
    let mut kinds: Vec<(&str, u64, u64)> = Vec::new();
    for e in entries {
        let key = entry_key(e);
        match kinds.iter_mut().find(|k| k.0 == key) {
            Some(k) => {
                k.1 += 1;
                k.2 += e.insns;
            }
            None => kinds.push((key, 1, e.insns)),
        }
    }
    kinds
        .iter()
        .map(|(key, n, insns)| format!("{key} x{n} {insns}"))
        .collect()
}

/// Names of the system calls the workloads (and ld.so, before main) make.
fn syscall_name(nr: u64) -> &'static str {
    match nr {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        5 => "fstat",
        9 => "mmap",
        10 => "mprotect",
        11 => "munmap",
        12 => "brk",
        17 => "pread64",
        21 => "access",
        22 => "pipe",
        24 => "sched_yield",
        39 => "getpid",
        56 => "clone",
        57 => "fork",
        59 => "execve",
        60 => "exit",
        61 => "wait4",
        98 => "getrusage",
        110 => "getppid",
        158 => "arch_prctl",
        202 => "futex",
        218 => "set_tid_address",
        228 => "clock_gettime",
        231 => "exit_group",
        257 => "openat",
        262 => "newfstatat",
        273 => "set_robust_list",
        293 => "pipe2",
        302 => "prlimit64",
        318 => "getrandom",
        334 => "rseq",
        435 => "clone3",
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
        "{:<16} {:<13} {:>10} {:>10} {:>10} {:>10} {:>8} {:>13} {:>13} {:>12}",
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
        "{:<16} {:<13} {:>10} {:>10} {:>10} {:>10} {:>8} {:>13} {:>13} {:>12}",
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

    fn entry(rax: u64, insns: u64, exits: u64) -> Entry {
        Entry {
            vector: 6,
            rax,
            insns,
            in_window: true,
            exits,
            iterations: 0,
        }
    }

    #[test]
    fn ring0_label_sums_the_named_entries_and_details_give_exits() {
        let p = StepProfile {
            entries: vec![entry(257, 4000, 1), entry(3, 500, 1), entry(110, 130, 0)],
            ..Default::default()
        };
        let args = ["open".to_string(), "1".to_string()];
        let (label, text) = ring0_detail("open_close", &args, &p, &["openat", "close"], true, None);
        assert_eq!(label.as_deref(), Some("4500/openat+close"));
        assert!(text.contains("1 VM exits"), "{text}");
        let (label, _) = ring0_detail("open_close", &args, &p, &["#PF"], true, None);
        assert_eq!(label.as_deref(), Some("500/close"), "first kind of entry");
        let (label, _) = ring0_detail("open_close", &args, &p, &["#PF"], false, None);
        assert_eq!(label, None);
        let kinds = entry_kinds(&p.entries);
        assert_eq!(kinds, ["openat x1 4000", "close x1 500", "getppid x1 130"]);
    }
}
