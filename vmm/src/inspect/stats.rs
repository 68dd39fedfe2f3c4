//! Statistics of a run: page faults by how they were resolved and system
//! calls by name, each with a count and latency percentiles; exec phases;
//! trace record counts; and, from the host, VM exits by reason, boot
//! phases and the file service's counters. Rendered as text (for `--stats`) or JSON.
//!
//! Latencies are the guest's TSC cycles (FAULT `a5`, SYSCALL_EXIT `a1`)
//! converted to nanoseconds with the TSC frequency KVM reports, recorded in
//! HDR histograms (3 significant digits), so percentiles stay exact to 0.1 %
//! whatever the number of events. [`Stats::add`] takes records one at a
//! time, so a run can feed every drain of the trace ring and keep nothing
//! else.

use super::syscalls;
use super::trace::{exec_phase_name, kind_name, resolution_name, Clock};
use crate::fs::FsStats;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use vmrun_contract::trace::{exec_phase, kind, syscall_nr, Record};

/// Largest latency tracked exactly (larger ones saturate): about 18 min.
const MAX_TRACKED_NS: u64 = 1 << 40;

/// The histogram could not be created.
#[derive(Debug)]
pub struct StatsError(hdrhistogram::CreationError);

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot create a latency histogram: {:?}", self.0)
    }
}

impl std::error::Error for StatsError {}

/// Latencies of one kind of event.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
    max: u64,
}

impl Latency {
    fn new(template: &Histogram<u64>) -> Latency {
        Latency {
            hist: Histogram::new_from(template),
            max: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns);
        self.max = self.max.max(ns);
    }

    /// Events recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0.5 = median), in ns (within 0.1 %,
    /// and never above the exact maximum).
    pub fn quantile(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q).min(self.max)
    }

    /// The largest latency, exactly.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean latency.
    pub fn mean(&self) -> f64 {
        self.hist.mean()
    }

    /// Counts in power-of-two buckets: `(lower bound, count)` for each
    /// bucket `[2^k, 2^(k+1))` from the lowest to the highest non-empty one
    /// (a latency of 0 counts in the first bucket, `[1, 2)`).
    pub fn log2_buckets(&self) -> Vec<(u64, u64)> {
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for v in self.hist.iter_recorded() {
            let bucket = 63 - v.value_iterated_to().max(1).leading_zeros();
            *counts.entry(bucket).or_default() += v.count_at_value();
        }
        let (Some(&lo), Some(&hi)) = (counts.keys().next(), counts.keys().last()) else {
            return Vec::new();
        };
        (lo..=hi)
            .map(|k| (1u64 << k, counts.get(&k).copied().unwrap_or(0)))
            .collect()
    }
}

/// Phases of one exec: `(phase name, ns since the exec started)`.
pub type ExecPhases = Vec<(String, u64)>;

/// Everything `--stats` reports.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Converts cycles to ns.
    pub clock: Clock,
    template: Histogram<u64>,
    /// Page faults by resolution (`zero-fill`, `file-map`...).
    pub faults: BTreeMap<String, Latency>,
    /// All page faults.
    pub all_faults: Latency,
    /// System calls by name.
    pub syscalls: BTreeMap<String, Latency>,
    /// Each exec's phases, in order.
    pub execs: Vec<ExecPhases>,
    /// TSC of the current exec's START record.
    exec_start_tsc: u64,
    /// Trace records seen, by kind.
    pub records: BTreeMap<String, u64>,
    /// Records the guest reported lost.
    pub lost: u64,
    /// VM exits by reason (from the host).
    pub vm_exits: BTreeMap<String, u64>,
    /// Boot phases (from the host): name and time.
    pub boot_phases: Vec<(String, Duration)>,
    /// The file service's counters (from the host).
    pub fs: FsStats,
}

impl Stats {
    /// Empty statistics; `tsc_khz` converts cycles (0: report cycles).
    pub fn new(tsc_khz: u64) -> Result<Stats, StatsError> {
        let template = Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).map_err(StatsError)?;
        Ok(Stats {
            clock: Clock {
                tsc_khz,
                tsc_base: 0,
            },
            all_faults: Latency::new(&template),
            template,
            faults: BTreeMap::new(),
            syscalls: BTreeMap::new(),
            execs: Vec::new(),
            exec_start_tsc: 0,
            records: BTreeMap::new(),
            lost: 0,
            vm_exits: BTreeMap::new(),
            boot_phases: Vec::new(),
            fs: FsStats::default(),
        })
    }

    /// Take one trace record into account.
    pub fn add(&mut self, r: &Record) {
        *self.records.entry(kind_name(r.kind).into()).or_default() += 1;
        match r.kind {
            kind::FAULT => self.add_fault(r),
            kind::SYSCALL_EXIT => {
                let ns = self.clock.ns(r.a[1]);
                self.latency(Table::Syscalls, syscalls::name(syscall_nr(r.aux)))
                    .record(ns);
            }
            kind::EXEC_PHASE => self.add_exec_phase(r),
            _ => {}
        }
    }

    /// Take many records into account.
    pub fn add_all(&mut self, records: &[Record]) {
        records.iter().for_each(|r| self.add(r));
    }

    fn add_fault(&mut self, r: &Record) {
        let ns = self.clock.ns(r.a[5]);
        self.all_faults.record(ns);
        self.latency(Table::Faults, resolution_name(r.a[4]).into())
            .record(ns);
    }

    /// Phases are timed by their records' TSC from the exec's START record.
    fn add_exec_phase(&mut self, r: &Record) {
        if r.a[0] == exec_phase::START || self.execs.is_empty() {
            self.execs.push(Vec::new());
            self.exec_start_tsc = r.tsc;
        }
        let ns = self.clock.ns(r.tsc.saturating_sub(self.exec_start_tsc));
        if let Some(exec) = self.execs.last_mut() {
            exec.push((exec_phase_name(r.a[0]).into(), ns));
        }
    }

    fn latency(&mut self, table: Table, name: String) -> &mut Latency {
        let template = &self.template;
        let map = match table {
            Table::Faults => &mut self.faults,
            Table::Syscalls => &mut self.syscalls,
        };
        map.entry(name).or_insert_with(|| Latency::new(template))
    }

    fn unit(&self) -> &'static str {
        if self.clock.tsc_khz == 0 {
            "cycles"
        } else {
            "ns"
        }
    }

    /// The statistics as aligned text tables.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let unit = self.unit();
        out.push_str(&latency_header("page faults", unit));
        for (name, l) in &self.faults {
            out.push_str(&latency_row(name, l));
        }
        out.push_str(&latency_row("all", &self.all_faults));
        out.push_str(&latency_header("system calls", unit));
        for (name, l) in &self.syscalls {
            out.push_str(&latency_row(name, l));
        }
        for (i, exec) in self.execs.iter().enumerate() {
            out.push_str(&format!("exec {} ({unit} since start)\n", i + 1));
            for (phase, ns) in exec {
                out.push_str(&format!("  {phase:<18} {ns:>10}\n"));
            }
        }
        out.push_str(&count_table("VM exits", &self.vm_exits));
        out.push_str("boot phases\n");
        for (name, d) in &self.boot_phases {
            out.push_str(&format!(
                "  {name:<18} {:>10.3} ms\n",
                d.as_secs_f64() * 1e3
            ));
        }
        out.push_str(&self.fs.render_text());
        out.push_str(&count_table("trace records", &self.records));
        out.push_str(&format!("  {:<18} {:>8}\n", "lost", self.lost));
        out
    }

    /// The statistics as one JSON object.
    pub fn to_json(&self) -> Value {
        let latencies = |m: &BTreeMap<String, Latency>| -> Map<String, Value> {
            m.iter()
                .map(|(k, l)| (k.clone(), latency_json(l)))
                .collect()
        };
        let mut faults = latencies(&self.faults);
        faults.insert("all".into(), latency_json(&self.all_faults));
        let execs: Vec<Value> = self.execs.iter().map(exec_json).collect();
        let boot: Vec<Value> = self
            .boot_phases
            .iter()
            .map(|(n, d)| json!({"name": n, "ns": d.as_nanos() as u64}))
            .collect();
        json!({
            "unit": self.unit(),
            "tsc_khz": self.clock.tsc_khz,
            "faults": faults,
            "syscalls": latencies(&self.syscalls),
            "execs": execs,
            "vm_exits": self.vm_exits,
            "boot_phases": boot,
            "fs": self.fs.to_json(),
            "records": self.records,
            "lost": self.lost,
        })
    }
}

#[derive(Clone, Copy)]
enum Table {
    Faults,
    Syscalls,
}

fn latency_header(title: &str, unit: &str) -> String {
    let cols = ["p50", "p90", "p99", "max"].map(|p| format!("{p} {unit}"));
    format!(
        "{title:<20} {:>8} {:>11} {:>11} {:>11} {:>11}\n",
        "count", cols[0], cols[1], cols[2], cols[3]
    )
}

fn latency_row(name: &str, l: &Latency) -> String {
    format!(
        "  {name:<18} {:>8} {:>11} {:>11} {:>11} {:>11}\n",
        l.count(),
        l.quantile(0.5),
        l.quantile(0.9),
        l.quantile(0.99),
        l.max()
    )
}

fn count_table(title: &str, counts: &BTreeMap<String, u64>) -> String {
    let mut out = format!("{title:<20} {:>8}\n", "count");
    for (name, n) in counts {
        out.push_str(&format!("  {name:<18} {n:>8}\n"));
    }
    out
}

fn latency_json(l: &Latency) -> Value {
    json!({
        "count": l.count(),
        "p50": l.quantile(0.5),
        "p90": l.quantile(0.9),
        "p99": l.quantile(0.99),
        "max": l.max(),
        "mean": l.mean(),
    })
}

fn exec_json(phases: &ExecPhases) -> Value {
    let list: Vec<Value> = phases
        .iter()
        .map(|(p, ns)| json!({"phase": p, "since_start": ns}))
        .collect();
    Value::from(list)
}

#[cfg(test)]
mod tests;
