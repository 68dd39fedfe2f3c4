//! The workloads and how each is measured: the self-timing programs run in
//! the guest, traced in the guest and natively, exec timed from the guest
//! kernel's EXEC_PHASE records (for the dynamically linked program, to the
//! TSC main reads first), and cold start as the wall time of a whole
//! `vmrun` process. Each gives rows of the table and detail lines.

use super::budgets::{Figure, Figures, LARGE_MEM};
use super::kernel_map::KernelMap;
use super::output::{parse_output, ProgramOutput};
use super::report::{
    entry_kinds, fault_breakdown, ring0_detail, top_functions, window_medians, Row,
};
use super::runner::{
    run_guest, run_guest_sized, run_native, run_native_exec_stamped, step_program,
    step_program_sized, time_native,
};
use super::stats::{cycles_to_us, summarize, Summary};
use super::step::{Entry, StepProfile};
use super::trace::{
    entries_in_window, exec_cycles, exec_spans, faults_before_marker, faults_in_window,
};
use super::{Options, MARKER_SYSCALL};
use crate::vm::{FaultSize, Observe, DEFAULT_MEM};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use vmrun_contract::trace::category;

/// Pages in each region of the 4 KiB fault workload.
const SMALL_REGION_PAGES: u64 = 16;

/// The system call number of exit_group, the end of a program.
const EXIT_GROUP: u64 = 231;

/// The system call number of getrusage, which the programs call just
/// inside the markers (`minflt`).
const GETRUSAGE: u64 = 98;

/// A self-timing workload program and how to run it.
pub(super) struct Program {
    pub(super) row: &'static str,
    unit: &'static str,
    image: &'static str,
    args: Vec<String>,
    /// Smaller arguments for the single-stepped run.
    step_args: Vec<String>,
    mem: u64,
    /// The kernel entries whose ring-0 instructions make one operation
    /// (`#PF` or system call names; summed for the table). Empty: the
    /// operation is not meant to enter the kernel, and the table shows all
    /// ring-0 instructions in the stepped loop per operation.
    ring0: &'static [&'static str],
    /// Report the guest kernel entries (system calls and faults) the traced
    /// run took in the loop, in the note and the detail lines.
    show_entries: bool,
    /// A note for the table line.
    note: &'static str,
    /// The guest's `--fault-size`.
    fault_size: FaultSize,
    /// The row is the whole loop's cost per 4 KiB page (the bulk touches of
    /// small mappings), with the figure under `--fault-size 4k` in the note.
    per_page: bool,
    /// The budgeted figure this workload measures, and the kind of kernel
    /// entry (as [`ring0_detail`] names them) whose median it is.
    budget: Option<(&'static str, Figure)>,
    /// Step the program once more with [`EXTRA_STRINGS`] more environment
    /// strings and report what each adds to its `execve` calls (the
    /// in-guest exec's copy of the strings from user memory).
    per_string: bool,
}

/// Where the programs and `vmrun` are.
pub(super) struct Env {
    pub(super) images: PathBuf,
    pub(super) vmrun: Option<PathBuf>,
    pub(super) tsc_khz: u64,
    pub(super) map: Option<KernelMap>,
    /// How many functions a `where:` line names (`None`: its default).
    pub(super) functions: Option<usize>,
}

pub(super) fn programs(o: &Options) -> Vec<Program> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let rounds = (o.samples / SMALL_REGION_PAGES).max(1).to_string();
    let unmaps = (o.samples / 20).max(2).to_string();
    let samples = o.samples.to_string();
    let pages = o.file_pages.to_string();
    let step_pages = o.file_pages.min(64).to_string();
    let step_n = o.samples.min(32).to_string();
    let mib_reads = (o.samples / 20).max(2).to_string();
    // A fork round costs some 50 ms in the guest on kvm_pvm, a pipe round
    // trip a few ms: fewer of them.
    let forks = (o.samples / 100).max(4).to_string();
    let round_trips = (o.samples / 10).max(8).to_string();
    let spawns = (o.samples / 200).max(3).to_string();
    let cows = (o.samples / 8).max(8).to_string();
    // The bulk touch needs RAM for the region, the kernel and the file.
    let anon_mem = ((o.anon_mib + 128) << 20).max(DEFAULT_MEM);
    vec![
        Program {
            row: "anon_touch",
            unit: "us/touch",
            image: "bench_anon",
            args: vec!["bulk".into(), o.anon_mib.to_string()],
            step_args: s(&["bulk", &o.anon_mib.min(8).to_string()]),
            mem: anon_mem,
            ring0: &["#PF"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "anon_1m",
            unit: "us/4KiB page",
            image: "bench_anon",
            args: s(&["bulk", "1"]),
            step_args: s(&["bulk", "1"]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: true,
            budget: None,
            per_string: false,
        },
        Program {
            row: "anon_3m",
            unit: "us/4KiB page",
            image: "bench_anon",
            args: s(&["bulk", "3"]),
            step_args: s(&["bulk", "3"]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: true,
            budget: None,
            per_string: false,
        },
        Program {
            row: "anon_4k_fault",
            unit: "us/fault",
            image: "bench_anon",
            args: vec!["small".into(), rounds],
            step_args: s(&["small", "2"]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "--fault-size 4k: one page per fault",
            show_entries: false,
            fault_size: FaultSize::Page4K,
            per_page: false,
            budget: Some(("#PF", Figure::AnonFault)),
            per_string: false,
        },
        Program {
            row: "anon_unmap",
            unit: "us/4KiB page",
            image: "bench_anon",
            args: vec!["unmap".into(), unmaps],
            step_args: s(&["unmap", "2"]),
            mem: DEFAULT_MEM,
            ring0: &["munmap"],
            note: "munmap of a 1 MiB mapping with every page written",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "file_read",
            unit: "us/touch",
            image: "bench_file",
            args: vec!["read".into(), pages.clone()],
            step_args: s(&["read", &step_pages]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "file_cow",
            unit: "us/touch",
            image: "bench_file",
            args: vec!["cow".into(), pages.clone()],
            step_args: s(&["cow", &step_pages]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "a fault copies the 64 KiB block's data pages",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "file_cow_4k",
            unit: "us/fault",
            image: "bench_file",
            args: vec!["cow".into(), pages],
            step_args: s(&["cow", &step_pages]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "--fault-size 4k: one page copied per fault",
            show_entries: false,
            fault_size: FaultSize::Page4K,
            per_page: false,
            budget: Some(("#PF", Figure::FileCow)),
            per_string: false,
        },
        Program {
            row: "brk_grow",
            unit: "us/step",
            image: "bench_brk",
            args: vec![samples.clone()],
            step_args: vec![step_n.clone()],
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: Some(("brk", Figure::BrkStep)),
            per_string: false,
        },
        Program {
            row: "getpid",
            unit: "us/call",
            image: "bench_syscall",
            args: vec![samples.clone()],
            step_args: vec![step_n.clone()],
            mem: DEFAULT_MEM,
            ring0: &["getpid"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: Some(("getpid", Figure::Getpid)),
            per_string: false,
        },
        Program {
            row: "clock_gettime",
            unit: "us/call",
            image: "bench_clock",
            args: vec![samples.clone()],
            step_args: vec![step_n.clone()],
            mem: DEFAULT_MEM,
            ring0: &[],
            note: "CLOCK_MONOTONIC, vDSO",
            show_entries: true,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "file_read_cached",
            unit: "us/pread",
            image: "bench_fileio",
            args: vec!["cached".into(), samples.clone()],
            step_args: s(&["cached", &step_n]),
            mem: DEFAULT_MEM,
            ring0: &["pread64"],
            note: "4 KiB at offset 0, from the page cache",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "file_read_1m",
            unit: "us/MiB",
            image: "bench_fileio",
            args: vec!["read1m".into(), mib_reads],
            step_args: s(&["read1m", "4"]),
            mem: DEFAULT_MEM,
            ring0: &["pread64"],
            note: "one pread of 1 MiB: guest reads straight from the host",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "open_close",
            unit: "us/open+close",
            image: "bench_fileio",
            args: vec!["open".into(), samples.clone()],
            step_args: s(&["open", &step_n]),
            mem: DEFAULT_MEM,
            ring0: &["openat", "close"],
            note: "",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "stat_path",
            unit: "us/stat",
            image: "bench_fileio",
            args: vec!["stat".into(), samples.clone()],
            step_args: s(&["stat", &step_n]),
            mem: DEFAULT_MEM,
            ring0: &["newfstatat"],
            note: "stat of a file by its absolute path: fast calls after the first (the VMM answers \
                   from the trampoline); the ring-0 count is the kernel's path, which the stepped run takes",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "fork_exit_wait",
            unit: "us/round",
            image: "bench_proc",
            args: vec!["fork".into(), forks],
            step_args: s(&["fork", "2"]),
            mem: DEFAULT_MEM,
            ring0: &[],
            note: "glibc fork (clone), child _exit(0), parent wait4; ring-0: all entries of both processes",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "fork_exec_wait",
            unit: "us/round",
            image: "bench_proc",
            args: vec!["spawn".into(), spawns],
            step_args: s(&["spawn", "1"]),
            mem: DEFAULT_MEM,
            ring0: &[],
            note: "fork, the child execs a static program that _exits, parent wait4; ring-0: all entries of both processes",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: true,
        },
        Program {
            row: "context_switch",
            unit: "us/2 switches",
            image: "bench_proc",
            args: vec!["yield".into(), round_trips.clone()],
            step_args: s(&["yield", "4"]),
            mem: DEFAULT_MEM,
            ring0: &[],
            note: "sched_yield to a yielding child and back, one CPU; ring-0: all entries of both processes",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "cow_fault",
            unit: "us/fault",
            image: "bench_proc",
            args: vec!["cow".into(), cows],
            step_args: s(&["cow", "8"]),
            mem: DEFAULT_MEM,
            ring0: &["#PF"],
            note: "first write to a page shared with a forked child",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "pipe_roundtrip",
            unit: "us/roundtrip",
            image: "bench_proc",
            args: vec!["pipe".into(), round_trips],
            step_args: s(&["pipe", "4"]),
            mem: DEFAULT_MEM,
            ring0: &[],
            note: "1 byte there and back over two pipes; ring-0: all entries of both processes",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
        Program {
            row: "futex_wake",
            unit: "us/call",
            image: "bench_proc",
            args: vec!["futex".into(), samples],
            step_args: s(&["futex", &step_n]),
            mem: DEFAULT_MEM,
            ring0: &["futex"],
            note: "FUTEX_WAKE_PRIVATE, no waiter",
            show_entries: false,
            fault_size: FaultSize::Huge2M,
            per_page: false,
            budget: None,
            per_string: false,
        },
    ]
}

/// Run one self-timing program in both places; the rows it gives (the
/// bulk touch also gives the per-page total) and the ring-0 detail lines.
pub(super) fn bench_program(
    p: &Program,
    env: &Env,
    detail: &mut String,
    figures: &mut Figures,
) -> Result<Vec<Row>, String> {
    let path = env.images.join(p.image);
    let guest_run = run_guest_sized(&path, &p.args, p.mem, Observe::default(), p.fault_size)?;
    let guest = parse_output(&guest_run.stdout).map_err(|e| format!("guest output: {e}"))?;
    let native =
        parse_output(&run_native(&path, &p.args)?).map_err(|e| format!("native output: {e}"))?;
    let traced = run_guest_sized(
        &path,
        &p.args,
        p.mem,
        Observe {
            trace_mask: category::FAULTS | category::SYSCALLS,
            ..Default::default()
        },
        p.fault_size,
    )?;
    let window_faults = faults_in_window(&traced.records);
    let window_entries = entries_in_window(&traced.records);
    let guest_faults = window_faults.as_ref().map(|f| f.len() as u64);
    if let Some(f) = window_faults.as_ref().filter(|f| !f.is_empty()) {
        let _ = writeln!(
            detail,
            "{:<16} guest faults in the loop (traced run `{}`): {}",
            p.row,
            p.args.join(" "),
            fault_breakdown(f, env.tsc_khz).join(", ")
        );
    }
    let khz = env.tsc_khz;
    let us = |v: &[u64]| -> Vec<f64> { v.iter().map(|&c| cycles_to_us(c as f64, khz)).collect() };
    let mut row = Row {
        name: p.row,
        unit: p.unit,
        guest: summarize(&us(&guest.samples)),
        native: summarize(&us(&native.samples)),
        faults: (guest_faults, native.minflt),
        note: p.note.into(),
        ..Default::default()
    };
    if p.row == "anon_touch" {
        row.note = format!("whole guest run: {} faults", guest_run.page_faults);
    }
    if p.show_entries {
        let (text, line) = match window_entries {
            Some((syscalls, faults)) => (
                (syscalls + faults).to_string(),
                format!("{syscalls} system calls, {faults} faults"),
            ),
            None => ("?".to_string(), "no markers in the trace".to_string()),
        };
        row.note = format!("{}; guest kernel entries in the loop: {text}", p.note);
        let _ = writeln!(
            detail,
            "{:<16} guest kernel entries in the loop (traced run `{}`): {line}",
            p.row,
            p.args.join(" ")
        );
    }
    if env.tsc_khz != guest_run.tsc_khz {
        row.note = format!("guest TSC {} kHz", guest_run.tsc_khz);
    }
    let ops = guest.samples.len() as u64;
    if let Some(map) = &env.map {
        match step_program_sized(&path, &p.step_args, &[], p.mem, map, p.fault_size) {
            Ok(profile) => {
                let (label, text) = ring0_detail(
                    p.row,
                    &p.step_args,
                    &profile,
                    p.ring0,
                    ops > 0,
                    env.functions,
                );
                row.ring0 = label;
                if let Some((key, figure)) = p.budget {
                    if let Some(&median) = window_medians(&profile).get(key) {
                        figures.insert(figure, median);
                    }
                }
                if p.ring0.is_empty() {
                    // Every ring-0 instruction in the loop (of every process
                    // that ran in it), per operation, but for the program's
                    // own getrusage calls after it.
                    let step_ops = p.step_args.last().and_then(|a| a.parse::<u64>().ok());
                    let insns: u64 = profile
                        .entries
                        .iter()
                        .filter(|e| e.in_window && !(e.is_syscall() && e.rax == GETRUSAGE))
                        .map(|e| e.insns)
                        .sum();
                    let per = p.unit.trim_start_matches("us/");
                    row.ring0 = step_ops.map(|n| format!("{:.0}/{per}", insns as f64 / n as f64));
                }
                detail.push_str(&text);
                if p.per_string {
                    execve_per_string(p, &path, &profile, map, detail);
                }
            }
            Err(e) => {
                let _ = writeln!(detail, "{:<16} single-step failed: {e}", p.row);
            }
        }
    }
    // Where faults are a minority of the operations, how much of the loop
    // they take.
    let partial = |k: &u64| *k > 0 && (*k as usize) < guest.samples.len();
    if let (Some(k), Some((total, _))) = (guest_faults.filter(partial), guest.total) {
        let mut sorted = guest.samples.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let slowest: u64 = sorted.iter().take(k as usize).sum();
        let _ = writeln!(
            detail,
            "{:<16} guest loop {:.1} ms: the {k} slowest operations (as many as faults) {:.1} ms, \
             the other {} {:.1} ms",
            p.row,
            cycles_to_us(total as f64, khz) / 1e3,
            cycles_to_us(slowest as f64, khz) / 1e3,
            sorted.len().saturating_sub(k as usize),
            cycles_to_us(sorted.iter().skip(k as usize).sum::<u64>() as f64, khz) / 1e3
        );
    }
    let per_page = |o: &ProgramOutput| {
        o.total.map(|(c, units)| {
            let v = cycles_to_us(c as f64 / units.max(1) as f64, khz);
            Summary {
                median: v,
                p99: f64::NAN,
                count: units as usize,
            }
        })
    };
    if p.per_page {
        // The whole loop per page: most touches find their page mapped by
        // an earlier fault's block, so the median touch says nothing.
        row.guest = per_page(&guest);
        row.native = per_page(&native);
        let small = run_guest_sized(&path, &p.args, p.mem, Observe::default(), FaultSize::Page4K)?;
        let small = parse_output(&small.stdout).map_err(|e| format!("guest output: {e}"))?;
        let small = per_page(&small).map_or(f64::NAN, |s| s.median);
        row.note = format!(
            "{} MiB in one loop, whole loop per page; --fault-size 4k: {small:.1} us/page",
            p.args[1]
        );
    }
    let mut rows = vec![row];
    if p.row == "anon_touch" {
        rows.push(Row {
            name: "anon_total",
            unit: "us/4KiB page",
            guest: per_page(&guest),
            native: per_page(&native),
            faults: (guest_faults, native.minflt),
            ring0: None,
            note: format!("{} MiB in one loop; p99 n/a", p.args[1]),
        });
    }
    Ok(rows)
}

/// Extra environment strings of the stepped exec that measures what
/// each string costs.
const EXTRA_STRINGS: usize = 64;

pub(super) fn bench_exec(
    o: &Options,
    env: &Env,
    detail: &mut String,
    figures: &mut Figures,
) -> Result<Row, String> {
    let hello = env.images.join("hello_static");
    let observe = Observe {
        trace_mask: category::EXEC,
        ..Default::default()
    };
    let mut guest = Vec::new();
    let mut native = Vec::new();
    for _ in 0..o.runs {
        let run = run_guest(&hello, &[], DEFAULT_MEM, observe.clone())?;
        guest.extend(exec_cycles(&run.records));
        native.push(time_native(&hello)?);
    }
    let khz = env.tsc_khz;
    let guest_us: Vec<f64> = guest.iter().map(|&c| cycles_to_us(c as f64, khz)).collect();
    let mut row = Row {
        name: "exec",
        unit: "us/exec",
        guest: summarize(&guest_us),
        native: summarize(&native),
        note: "guest: ELF load to first instruction; native: fork+exec+wait".into(),
        ..Default::default()
    };
    if let Some(map) = &env.map {
        match step_program(&hello, &[], &[], DEFAULT_MEM, map) {
            Ok(p) => {
                if let Some(n) = p.exec_insns {
                    row.ring0 = Some(format!("{n}/exec"));
                }
                hello_figures(&p, figures);
                hello_detail(&p, detail, env.functions);
                if let Some(base) = p.exec_insns {
                    exec_per_string(&hello, base, map, detail, figures, env.functions);
                }
            }
            Err(e) => {
                let _ = writeln!(detail, "{:<16} single-step failed: {e}", "exec");
            }
        }
        match step_program(&hello, &[], &[], LARGE_MEM, map) {
            Ok(p) => {
                figures.insert(Figure::BootLarge, p.boot_insns as f64);
                let _ = writeln!(
                    detail,
                    "{:<16} stepped run of hello_static with --mem {}G: boot {} instructions \
                     (+{} string iterations)",
                    "exec",
                    LARGE_MEM >> 30,
                    p.boot_insns,
                    p.boot_iterations
                );
                where_line(
                    detail,
                    "boot",
                    &p.boot_functions,
                    p.boot_insns,
                    env.functions,
                );
            }
            Err(e) => {
                let _ = writeln!(
                    detail,
                    "{:<16} single-step with --mem {}G failed: {e}",
                    "exec",
                    LARGE_MEM >> 30
                );
            }
        }
    }
    Ok(row)
}

/// The budgeted figures of a stepped `hello_static` run: boot, exec, the
/// last exit and everything from exec to the end.
fn hello_figures(p: &StepProfile, figures: &mut Figures) {
    figures.insert(Figure::Boot, p.boot_insns as f64);
    figures.insert(Figure::BootIterations, p.boot_iterations as f64);
    let Some(exec) = p.exec_insns else { return };
    figures.insert(Figure::Exec, exec as f64);
    figures.insert(Figure::ExecIterations, p.exec_iterations as f64);
    let after: u64 = p.entries.iter().map(|e| e.insns).sum();
    figures.insert(Figure::HelloExecToExit, (exec + after) as f64);
    let after_iterations: u64 = p.entries.iter().map(|e| e.iterations).sum();
    figures.insert(
        Figure::HelloIterations,
        (p.exec_iterations + after_iterations) as f64,
    );
    if let Some(last) = p
        .entries
        .last()
        .filter(|e| e.is_syscall() && e.rax == EXIT_GROUP)
    {
        figures.insert(Figure::LastExit, last.insns as f64);
    }
}

/// The detail lines of the stepped `hello_static` run: the phases, where
/// each spent its instructions, and the kernel entries after exec.
fn hello_detail(p: &StepProfile, detail: &mut String, shown: Option<usize>) {
    let after: u64 = p.entries.iter().map(|e| e.insns).sum();
    let after_iterations: u64 = p.entries.iter().map(|e| e.iterations).sum();
    let _ = writeln!(
        detail,
        "{:<16} stepped run of hello_static: boot {} instructions (+{} string iterations), \
         exec {} (+{}), {} kernel entries after it ({after} instructions, +{after_iterations})",
        "exec",
        p.boot_insns,
        p.boot_iterations,
        p.exec_insns.map_or("?".into(), |n| n.to_string()),
        p.exec_iterations,
        p.entries.len(),
    );
    where_line(detail, "boot", &p.boot_functions, p.boot_insns, shown);
    if let Some(n) = p.exec_insns {
        where_line(detail, "exec", &p.exec_functions, n, shown);
    }
    let _ = writeln!(
        detail,
        "{:<16}   after exec: {}",
        "",
        entry_kinds(&p.entries).join(", ")
    );
    // The costliest system calls after exec, and the last entry (the
    // exit); with `--functions`, every entry in order.
    let mut calls: Vec<usize> = (0..p.entries.len())
        .filter(|&i| shown.is_some() || p.entries[i].is_syscall())
        .collect();
    if shown.is_none() {
        calls.sort_by_key(|&i| std::cmp::Reverse(p.entries[i].insns));
        calls.truncate(3);
        if let Some(last) = p.entries.len().checked_sub(1) {
            calls.retain(|&i| i != last);
            calls.push(last);
        }
    }
    for i in calls {
        let (e, functions) = (&p.entries[i], &p.entry_functions[i]);
        let what = format!(
            "{} ({} instructions)",
            entry_kinds(std::slice::from_ref(e))[0],
            e.insns
        );
        where_line(detail, &what, functions, e.insns, shown);
    }
    if let (Some((e_seen, e_want)), Some((r_seen, r_want))) = (p.entry_check, p.return_check) {
        let _ = writeln!(
            detail,
            "{:<16} single-step check (first #PF): entry asm {e_seen} reports of \
             {e_want} expected, return asm {r_seen} of {r_want}; {} instructions \
             per round trip added for unreported ones (iretq included); \
             {} hypercall exits counted as instructions; {} user-mode reports",
            "", p.missed_per_entry, p.hypercalls, p.user_reports
        );
    }
}

/// `   <what> where: f 40%, g 20%, ...` for one phase of a stepped run.
fn where_line(
    detail: &mut String,
    what: &str,
    functions: &BTreeMap<String, u64>,
    total: u64,
    shown: Option<usize>,
) {
    if let Some(top) = top_functions(functions, total, (shown, 8)) {
        let _ = writeln!(detail, "{:<16}   {what} where: {top}", "");
    }
}

/// [`EXTRA_STRINGS`] environment strings of the stepped runs that
/// measure what each string costs an exec.
fn extra_strings() -> Vec<String> {
    (0..EXTRA_STRINGS)
        .map(|i| format!("VMRUN_BENCH_{i:02}=value-{i:02}"))
        .collect()
}

/// Workload `p` (stepped as `base`) stepped again with [`EXTRA_STRINGS`]
/// more environment strings, which its `execve` calls pass on: what each
/// string adds to the median `execve`.
fn execve_per_string(
    p: &Program,
    path: &Path,
    base: &StepProfile,
    map: &KernelMap,
    detail: &mut String,
) {
    let with = step_program_sized(
        path,
        &p.step_args,
        &extra_strings(),
        p.mem,
        map,
        p.fault_size,
    );
    let line = match with {
        Ok(with) => match (
            window_medians(base).get("execve"),
            window_medians(&with).get("execve"),
        ) {
            (Some(&a), Some(&b)) => format!(
                "execve with {EXTRA_STRINGS} more environment strings: {b:.0} instructions \
                 ({a:.0} without), {:.1} per string",
                (b - a) / EXTRA_STRINGS as f64
            ),
            _ => "no execve in the stepped loop".to_string(),
        },
        Err(e) => format!("single-step with environment strings failed: {e}"),
    };
    let _ = writeln!(detail, "{:<16} {line}", p.row);
}

/// The exec of `hello_static` stepped again with [`EXTRA_STRINGS`] more
/// environment strings: what each adds to `base`, the exec without them.
fn exec_per_string(
    hello: &Path,
    base: u64,
    map: &KernelMap,
    detail: &mut String,
    figures: &mut Figures,
    shown: Option<usize>,
) {
    match step_program(hello, &[], &extra_strings(), DEFAULT_MEM, map) {
        Ok(p) => {
            let Some(with) = p.exec_insns else { return };
            let per = with.saturating_sub(base) as f64 / EXTRA_STRINGS as f64;
            figures.insert(Figure::ExecPerString, per);
            let _ = writeln!(
                detail,
                "{:<16} stepped exec with {EXTRA_STRINGS} more environment strings: {with} \
                 instructions, {per:.1} per string",
                "exec"
            );
            where_line(detail, "exec", &p.exec_functions, with, shown);
        }
        Err(e) => {
            let _ = writeln!(
                detail,
                "{:<16} single-step with environment strings failed: {e}",
                "exec"
            );
        }
    }
}

/// The wall time of whole `vmrun IMAGE` processes against native runs of
/// the same program, as the row `name`.
pub(super) fn bench_cold_start(
    o: &Options,
    env: &Env,
    name: &'static str,
    image: &str,
) -> Result<Row, String> {
    let Some(vmrun) = &env.vmrun else {
        return Err("no vmrun binary found next to this executable: pass --vmrun PATH".into());
    };
    let program = env.images.join(image);
    let mut guest = Vec::new();
    let mut native = Vec::new();
    for _ in 0..o.runs {
        let mut cmd = Command::new(vmrun);
        cmd.arg(&program)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("{}: {e}", vmrun.display()))?;
        guest.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!(
                "{} {}: {status}",
                vmrun.display(),
                program.display()
            ));
        }
        native.push(time_native(&program)? / 1e3);
    }
    let guest = summarize(&guest);
    let qemu = super::whole::cold_start_qemu_note(&program, o.runs, guest.map(|s| s.median));
    Ok(Row {
        name,
        unit: "ms/run",
        guest,
        native: summarize(&native),
        note: format!("whole `vmrun {image}` process vs native run; {qemu}"),
        ..Default::default()
    })
}

/// The `main <tsc>` line `bench_hello_dyn` prints.
fn main_tsc(stdout: &str) -> Result<u64, String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("main "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no `main <tsc>` line in {stdout:?}"))
}

/// The dynamically linked hello: exec to main's first instruction, in the
/// guest from the EXEC_PHASE START record to the TSC main reads first
/// (the kernel's exec to ld.so's entry, then ld.so and libc's start-up),
/// against a native fork+exec+wait of the same program; natively the same
/// span (execve to main) in the detail lines, and the ring-0 instructions
/// of the exec and of every kernel entry before main.
pub(super) fn bench_exec_dynamic(
    o: &Options,
    env: &Env,
    detail: &mut String,
) -> Result<Row, String> {
    const IMAGE: &str = "bench_hello_dyn";
    let program = env.images.join(IMAGE);
    let observe = Observe {
        trace_mask: category::EXEC,
        ..Default::default()
    };
    let (mut to_main, mut kernel, mut user) = (Vec::new(), Vec::new(), Vec::new());
    let (mut native, mut native_to_main) = (Vec::new(), Vec::new());
    let khz = env.tsc_khz;
    let us = |c: u64| cycles_to_us(c as f64, khz);
    for _ in 0..o.runs {
        let run = run_guest(&program, &[], DEFAULT_MEM, observe.clone())?;
        let main = main_tsc(&run.stdout)?;
        let &[(start, enter)] = exec_spans(&run.records).as_slice() else {
            return Err("expected one EXEC_PHASE START..ENTER_USER span in the trace".into());
        };
        to_main.push(us(main.saturating_sub(start)));
        kernel.push(us(enter.saturating_sub(start)));
        user.push(us(main.saturating_sub(enter)));
        native.push(time_native(&program)?);
        let out = run_native_exec_stamped(&program)?;
        let exec = out
            .lines()
            .find_map(|l| l.strip_prefix("exec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no `exec <tsc>` line in {out:?}"))?;
        native_to_main.push(us(main_tsc(&out)?.saturating_sub(exec)));
    }
    // One run traced for the faults ld.so and libc's start-up take.
    let traced = run_guest(
        &program,
        &[],
        DEFAULT_MEM,
        Observe {
            trace_mask: category::FAULTS | category::SYSCALLS,
            ..Default::default()
        },
    )?;
    let _ = writeln!(
        detail,
        "{:<16} guest faults before main (traced run): {}",
        "exec_dynamic",
        fault_breakdown(&faults_before_marker(&traced.records), khz).join(", ")
    );
    let median = |v: &[f64]| summarize(v).map_or(f64::NAN, |s| s.median);
    let _ = writeln!(
        detail,
        "{:<16} medians over {} runs: guest exec (START to ENTER_USER at ld.so's entry) \
         {:.1} us + ld.so and libc start-up to main {:.1} us = {:.1} us; native execve \
         to main {:.1} us",
        "exec_dynamic",
        o.runs,
        median(&kernel),
        median(&user),
        median(&to_main),
        median(&native_to_main)
    );
    let mut row = Row {
        name: "exec_dynamic",
        unit: "us/exec",
        guest: summarize(&to_main),
        native: summarize(&native),
        note: "guest: exec start to main's first RDTSC; native: fork+exec+wait".into(),
        ..Default::default()
    };
    if let Some(map) = &env.map {
        match step_program(&program, &[], &[], DEFAULT_MEM, map) {
            Ok(p) => {
                let first_marker = p
                    .entries
                    .iter()
                    .position(|e| e.is_syscall() && e.rax == MARKER_SYSCALL)
                    .unwrap_or(p.entries.len());
                let (before, after) = p.entries.split_at(first_marker);
                let before_insns: u64 = before.iter().map(|e| e.insns).sum();
                if let Some(n) = p.exec_insns {
                    row.ring0 = Some(format!("{}/exec+ld.so", n + before_insns));
                }
                let iterations = |e: &[Entry]| e.iter().map(|e| e.iterations).sum::<u64>();
                let _ = writeln!(
                    detail,
                    "{:<16} stepped run of {IMAGE}: boot {} instructions, exec to ld.so's entry \
                     {} (+{} string iterations), before main {} kernel entries ({before_insns} \
                     instructions, +{}), from main on {} ({} instructions, +{})",
                    "exec_dynamic",
                    p.boot_insns,
                    p.exec_insns.map_or("?".into(), |n| n.to_string()),
                    p.exec_iterations,
                    before.len(),
                    iterations(before),
                    after.len(),
                    after.iter().map(|e| e.insns).sum::<u64>(),
                    iterations(after)
                );
                if let Some(n) = p.exec_insns {
                    where_line(detail, "exec", &p.exec_functions, n, o.functions);
                }
                let mut at = 0;
                for (when, entries) in [("before main", before), ("from main on", after)] {
                    let _ = writeln!(
                        detail,
                        "{:<16}   {when}: {}",
                        "",
                        entry_kinds(entries).join(", ")
                    );
                    // Where the entries' instructions went, all together.
                    let mut functions = BTreeMap::new();
                    for f in &p.entry_functions[at..at + entries.len()] {
                        for (name, n) in f {
                            *functions.entry(name.clone()).or_insert(0) += n;
                        }
                    }
                    let total = entries.iter().map(|e| e.insns).sum();
                    where_line(detail, when, &functions, total, o.functions);
                    // With `--functions`, each kernel entry on its own.
                    let calls = entries.iter().zip(&p.entry_functions[at..]);
                    for (e, f) in calls {
                        if o.functions.is_some() {
                            let what = format!(
                                "{} ({} instructions)",
                                entry_kinds(std::slice::from_ref(e))[0],
                                e.insns
                            );
                            where_line(detail, &what, f, e.insns, o.functions);
                        }
                    }
                    at += entries.len();
                }
            }
            Err(e) => {
                let _ = writeln!(detail, "{:<16} single-step failed: {e}", "exec_dynamic");
            }
        }
    }
    Ok(row)
}
