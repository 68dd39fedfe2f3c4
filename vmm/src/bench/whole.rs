//! Whole programs, timed from outside: cold start of `busybox true`, and
//! `busybox sha256sum` reading from a pipe, as whole `vmrun` processes
//! against native runs and, where Debian's qemu-user is installed, against
//! `qemu-x86_64`; and the per-call cost of getpid and of one-byte writes,
//! split into the kernel entry, the kernel's instructions and the hypercall.

use super::kernel_map::KernelMap;
use super::output::parse_output;
use super::report::{entry_kinds, top_functions, Row};
use super::runner::{run_guest, run_native, step_program, step_program_with};
use super::stats::{cycles_to_us, summarize};
use super::Options;
use crate::vm::{FaultSize, Observe, DEFAULT_MEM};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The statically linked busybox the whole-program rows run.
const BUSYBOX: &str = "/bin/busybox";

/// Bytes `busybox sha256sum` reads from the pipe: 100 MB, 4 MB with
/// `--quick`.
fn sha256_bytes(o: &Options) -> u64 {
    if o.samples <= 64 {
        4_000_000
    } else {
        100_000_000
    }
}

/// System calls of each kind in the split rows: 10,000, 1,000 with
/// `--quick`.
fn split_calls(o: &Options) -> u64 {
    if o.samples <= 64 {
        1_000
    } else {
        10_000
    }
}

/// Debian's qemu-user emulator for x86-64, if installed.
pub(super) fn qemu_user() -> Option<PathBuf> {
    ["/usr/bin/qemu-x86_64", "/usr/bin/qemu-x86_64-static"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Wall time (ms) of one run of `argv`, with `input` zero bytes written to
/// its stdin through a pipe (its stdout and stderr discarded).
fn time_run(argv: &[&Path], input: u64) -> Result<f64, String> {
    let (program, args) = argv.split_first().ok_or("nothing to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args.iter())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(if input > 0 {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let chunk = vec![0u8; 64 << 10];
        let mut left = input;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stdin
                .write_all(&chunk[..n])
                .map_err(|e| format!("feeding {}: {e}", program.display()))?;
            left -= n as u64;
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        let words: Vec<String> = argv.iter().map(|a| a.display().to_string()).collect();
        return Err(format!("{}: {status}", words.join(" ")));
    }
    Ok(ms)
}

/// The qemu-user part of a row's note: its median and vmrun's ratio to it.
fn qemu_note(guest_median: Option<f64>, qemu: Option<Vec<f64>>) -> String {
    match (qemu.as_deref().and_then(summarize), guest_median) {
        (Some(q), Some(g)) => format!(
            "qemu-user {:.3} ms, vmrun/qemu {:.2}x",
            q.median,
            g / q.median
        ),
        (Some(q), None) => format!("qemu-user {:.3} ms", q.median),
        (None, _) if qemu_user().is_none() => "qemu-user not installed".into(),
        (None, _) => "qemu-user failed".into(),
    }
}

/// A whole-program row's run: `busybox ARGS` with `input` bytes piped in.
struct WholeRun {
    name: &'static str,
    args: Vec<String>,
    /// The arguments of the qemu-user run, if not `args` (a shell loop
    /// whose programs qemu-user must run too: it does not follow an
    /// exec).
    qemu_args: Option<Vec<String>>,
    input: u64,
    note: String,
}

/// One whole-program row: `program` with the run's arguments under vmrun,
/// natively and under qemu-user, `runs` times each.
fn whole_row(env_vmrun: &Path, run: &WholeRun, runs: u64, program: &Path) -> Result<Row, String> {
    let args: Vec<&Path> = run.args.iter().map(Path::new).collect();
    let qemu_args: Vec<&Path> = match &run.qemu_args {
        Some(a) => a.iter().map(Path::new).collect(),
        None => args.clone(),
    };
    let input = run.input;
    let (mut guest, mut native, mut qemu) = (Vec::new(), Vec::new(), Vec::new());
    let qemu_path = qemu_user();
    let mut qemu_ok = qemu_path.is_some();
    for _ in 0..runs {
        let mut g = vec![env_vmrun, program];
        g.extend(&args);
        guest.push(time_run(&g, input)?);
        let mut n = vec![program];
        n.extend(&args);
        native.push(time_run(&n, input)?);
        if let (Some(q), true) = (&qemu_path, qemu_ok) {
            let mut v = vec![q.as_path(), program];
            v.extend(&qemu_args);
            match time_run(&v, input) {
                Ok(ms) => qemu.push(ms),
                Err(_) => qemu_ok = false,
            }
        }
    }
    let guest = summarize(&guest);
    let qemu = if qemu_ok { Some(qemu) } else { None };
    let q = qemu_note(guest.map(|s| s.median), qemu);
    Ok(Row {
        name: run.name,
        unit: "ms/run",
        guest,
        native: summarize(&native),
        note: format!("{}; {q}", run.note),
        ..Default::default()
    })
}

/// The qemu-user note for a cold-start row of `program` (no arguments),
/// `runs` runs; the row's guest median for the ratio.
pub(super) fn cold_start_qemu_note(program: &Path, runs: u64, guest_median: Option<f64>) -> String {
    let Some(q) = qemu_user() else {
        return "qemu-user not installed".into();
    };
    let times: Result<Vec<f64>, String> = (0..runs)
        .map(|_| time_run(&[q.as_path(), program], 0))
        .collect();
    qemu_note(guest_median, times.ok())
}

/// Runs of `busybox true` the `sh_spawn` row's shell loop makes: 20, 5
/// with `--quick`.
fn sh_spawns(o: &Options) -> u64 {
    if o.samples <= 64 {
        5
    } else {
        20
    }
}

/// `busybox sh -c` of a loop running `/bin/busybox true` `n` times: a
/// shell script's fork, exec, exit and wait, `n` times over; with
/// `runner`, each `busybox true` runs under it (qemu-user's run: it
/// emulates the shell only, the programs the shell execs run natively
/// unless it is their runner too).
fn sh_spawn_args(n: u64, runner: Option<&Path>) -> Vec<String> {
    let run = match runner {
        Some(r) => format!("{} /bin/busybox true", r.display()),
        None => "/bin/busybox true".into(),
    };
    let script = format!("i=0; while [ $i -lt {n} ]; do {run}; i=$((i+1)); done");
    vec!["sh".into(), "-c".into(), script]
}

/// The whole-program rows: `busybox true` cold start, `busybox
/// sha256sum` of a pipe and a `busybox sh` loop of spawns; each an
/// `Err((row, why))` if it failed.
pub(super) fn bench_whole_programs(
    o: &Options,
    vmrun: Option<&Path>,
) -> Vec<Result<Row, (&'static str, String)>> {
    let qemu = qemu_user();
    let rows = [
        WholeRun {
            name: "cold_busybox",
            args: vec!["true".into()],
            qemu_args: None,
            input: 0,
            note: "whole `vmrun /bin/busybox true` process vs native run".into(),
        },
        WholeRun {
            name: "sha256_pipe",
            args: vec!["sha256sum".into()],
            qemu_args: None,
            input: sha256_bytes(o),
            note: format!(
                "busybox sha256sum of {} MB from a pipe, 4 KiB per read",
                sha256_bytes(o) / 1_000_000
            ),
        },
        WholeRun {
            name: "sh_spawn",
            args: sh_spawn_args(sh_spawns(o), None),
            qemu_args: qemu
                .as_deref()
                .map(|q| sh_spawn_args(sh_spawns(o), Some(q))),
            input: 0,
            note: format!(
                "busybox sh running /bin/busybox true {} times (fork, exec, exit, wait; \
                 under qemu-user each true runs under it too)",
                sh_spawns(o)
            ),
        },
    ];
    let busybox = Path::new(BUSYBOX);
    rows.into_iter()
        .filter(|run| o.runs_row(run.name))
        .map(|run| {
            let name = run.name;
            let vmrun = vmrun.ok_or((
                name,
                "no vmrun binary found next to this executable: pass --vmrun PATH".into(),
            ))?;
            if !busybox.is_file() {
                // Not a failure of vmrun's: the row says what is missing.
                return Ok(Row {
                    name,
                    unit: "ms/run",
                    note: format!("{BUSYBOX} not installed (Debian: busybox-static)"),
                    ..Default::default()
                });
            }
            // The 100 MB pipe takes some 15 s under vmrun: one run.
            let runs = if run.input > 10_000_000 {
                1
            } else {
                o.runs.min(5)
            };
            whole_row(vmrun, &run, runs, busybox).map_err(|e| (name, e))
        })
        .collect()
}

/// Bytes the stepped `sha256_pipe` run reads: 16 reads of 4 KiB.
const STEPPED_INPUT: usize = 64 << 10;

/// `busybox sha256sum` single-stepped with [`STEPPED_INPUT`] bytes on its
/// stdin (the host's, through the READ hypercall): the ring-0
/// instructions of a 4 KiB read.
pub(super) fn sha256_pipe_ring0(map: &KernelMap, functions: Option<usize>, detail: &mut String) {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        return;
    }
    let args = ["sha256sum".to_string()];
    let input = vec![0u8; STEPPED_INPUT];
    let p = match step_program_with(
        busybox,
        &args,
        &[],
        DEFAULT_MEM,
        map,
        FaultSize::default(),
        input,
    ) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(detail, "{:<16} single-step failed: {e}", "sha256_pipe");
            return;
        }
    };
    // The reads that returned data: all but the last (end of file).
    let reads: Vec<(usize, &super::step::Entry)> = p
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_syscall() && e.rax == 0)
        .collect();
    let full = &reads[..reads.len().saturating_sub(1)];
    let insns: Vec<f64> = full.iter().map(|(_, e)| e.insns as f64).collect();
    let Some(s) = summarize(&insns) else { return };
    let exits = full.iter().map(|(_, e)| e.exits).max().unwrap_or(0);
    let _ = writeln!(
        detail,
        "{:<16} stepped with {} KiB on stdin: read x{} median {:.0} instructions, {exits} VM \
         exits each (4 KiB from the host's stdin)",
        "sha256_pipe",
        STEPPED_INPUT >> 10,
        s.count,
        s.median
    );
    let mut by_fn = std::collections::BTreeMap::new();
    let mut total = 0;
    for (i, e) in full {
        total += e.insns;
        for (name, n) in &p.entry_functions[*i] {
            *by_fn.entry(name.clone()).or_insert(0u64) += n;
        }
    }
    if let Some(top) = top_functions(&by_fn, total, (functions, 8)) {
        let _ = writeln!(detail, "{:<16}   read where: {top}", "");
    }
}

/// The `sh_spawn` loop single-stepped with two runs of `busybox true`
/// and with four: the ring-0 instructions one more run costs (every
/// kernel entry of every process from the shell's exec to its exit), and
/// by kind of entry, those of the four-run loop.
pub(super) fn sh_spawn_ring0(map: &KernelMap, functions: Option<usize>, detail: &mut String) {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        return;
    }
    let total = |p: &super::step::StepProfile| p.entries.iter().map(|e| e.insns).sum::<u64>();
    let two = step_program(busybox, &sh_spawn_args(2, None), &[], DEFAULT_MEM, map);
    let four = step_program(busybox, &sh_spawn_args(4, None), &[], DEFAULT_MEM, map);
    let (two, four) = match (two, four) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(detail, "{:<16} single-step failed: {e}", "sh_spawn");
            return;
        }
    };
    let per = total(&four).saturating_sub(total(&two)) as f64 / 2.0;
    let iterations =
        |p: &super::step::StepProfile| p.entries.iter().map(|e| e.iterations).sum::<u64>();
    let per_iterations = iterations(&four).saturating_sub(iterations(&two)) as f64 / 2.0;
    let _ = writeln!(
        detail,
        "{:<16} stepped `busybox sh -c` loops of 2 and 4 runs of `busybox true`: {per:.0} \
         instructions per run (+{per_iterations:.0} string iterations; every process's kernel \
         entries); the 4-run loop: {}",
        "sh_spawn",
        entry_kinds(&four.entries).join(", ")
    );
    let mut by_fn = std::collections::BTreeMap::new();
    for f in &four.entry_functions {
        for (name, n) in f {
            *by_fn.entry(name.clone()).or_insert(0u64) += n;
        }
    }
    if let Some(top) = top_functions(&by_fn, total(&four), (functions, 8)) {
        let _ = writeln!(detail, "{:<16}   where: {top}", "");
    }
}

/// The queries `bench_syscall` makes in its calibration modes (mode,
/// system call number): like getpid they stay inside the kernel, each
/// with its own number of ring-0 instructions, more than getpid's.
const CALIBRATION_CALLS: [(&str, u64); 3] = [("prlimit", 302), ("sigaction", 13), ("rusage", 98)];

/// A system call `bench_syscall` made many times in a row: the median
/// call as the program timed it, and the ring-0 instructions and
/// hypercalls of one call as the stepped run counted them.
struct CallCost {
    median_us: f64,
    insns: f64,
    exits: f64,
}

/// getpid and one-byte writes to stderr, many in a row (`bench_syscall
/// CALLS [write]`): per call, the time measured in the program (median),
/// split into the kernel entry and return, the instructions and the
/// hypercall. The entry's and an instruction's costs come from a straight
/// line fitted through the median calls of getpid and of three queries
/// that stay inside the kernel too but take more instructions (time
/// against the stepped runs' counts: the intercept is what an entry and
/// return cost, the slope what an instruction costs); a write's hypercall
/// is the rest of its time. No traced run: tracing a call sends it down
/// the long path and adds its records' cost.
pub(super) fn bench_syscall_split(
    o: &Options,
    images: &Path,
    tsc_khz: u64,
    map: Option<&KernelMap>,
    detail: &mut String,
) -> Vec<Result<Row, (&'static str, String)>> {
    let program = images.join("bench_syscall");
    let calls = split_calls(o).to_string();
    let mut points = Vec::new();
    let mut seen = Vec::new();
    if let Some(map) = map {
        for (mode, nr) in CALIBRATION_CALLS {
            match call_cost(&program, &calls, Some(mode), nr, tsc_khz, map) {
                Ok(Some(c)) => {
                    let exits = match c.exits {
                        0.0 => String::new(),
                        e => format!(", {e:.0} exits: left out"),
                    };
                    seen.push(format!(
                        "{mode} {:.0} insns {:.1} us{exits}",
                        c.insns, c.median_us
                    ));
                    if c.exits == 0.0 {
                        points.push((c.insns, c.median_us));
                    }
                }
                Ok(None) => seen.push(format!("{mode}: no call seen")),
                Err(e) => seen.push(format!("{mode}: {e}")),
            }
        }
    }
    let mut rows = Vec::new();
    for (name, mode, nr) in [("getpid_10k", None, 39u64), ("write_10k", Some("write"), 1)] {
        let row = split_row(
            &program,
            name,
            &calls,
            (mode, nr),
            tsc_khz,
            map,
            &mut points,
        );
        let row = row.map(|(row, point, loop_line)| {
            if !point.is_empty() {
                seen.insert(0, point);
            }
            let _ = writeln!(detail, "{name:<16} {calls} calls: {loop_line}");
            row
        });
        rows.push(row.map_err(|e| (name, e)));
    }
    if map.is_some() {
        let _ = writeln!(
            detail,
            "{:<16} entry and instruction costs fitted through (median calls): {}",
            "getpid_10k",
            seen.join(", ")
        );
    }
    rows
}

/// The median call of `bench_syscall CALLS [MODE]` (system call `nr`) and
/// the ring-0 instructions and hypercalls of one, from a stepped run of 32
/// calls; `None` if the stepped run saw none of them.
fn call_cost(
    program: &Path,
    calls: &str,
    mode: Option<&str>,
    nr: u64,
    khz: u64,
    map: &KernelMap,
) -> Result<Option<CallCost>, String> {
    let args: Vec<String> = [calls].into_iter().chain(mode).map(String::from).collect();
    let run = run_guest(program, &args, DEFAULT_MEM, Observe::default())?;
    let guest = parse_output(&run.stdout).map_err(|e| format!("guest output: {e}"))?;
    let median = |v: &[u64]| {
        let us: Vec<f64> = v.iter().map(|&c| cycles_to_us(c as f64, khz)).collect();
        summarize(&us).map(|s| s.median)
    };
    let (Some(median_us), Some((insns, exits))) = (
        median(&guest.samples),
        stepped_call(program, mode, nr, map)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(CallCost {
        median_us,
        insns,
        exits,
    }))
}

/// The ring-0 instructions and hypercalls of one call of system call `nr`
/// in a stepped run of `bench_syscall 32 [MODE]` (the mean over its calls
/// between the markers); `None` if the run saw none.
fn stepped_call(
    program: &Path,
    mode: Option<&str>,
    nr: u64,
    map: &KernelMap,
) -> Result<Option<(f64, f64)>, String> {
    let step_args: Vec<String> = ["32"].into_iter().chain(mode).map(String::from).collect();
    let p = step_program(program, &step_args, &[], DEFAULT_MEM, map)?;
    let mine: Vec<_> = p
        .entries
        .iter()
        .filter(|e| e.in_window && e.is_syscall() && e.rax == nr)
        .collect();
    if mine.is_empty() {
        return Ok(None);
    }
    let n = mine.len() as f64;
    Ok(Some((
        mine.iter().map(|e| e.insns).sum::<u64>() as f64 / n,
        mine.iter().map(|e| e.exits).sum::<u64>() as f64 / n,
    )))
}

/// The least-squares line `t = entry + per_insn * i` through `points`
/// (instructions, µs): `(entry, per_insn)`, or `None` with fewer than two
/// distinct instruction counts or a slope that is not positive (noise
/// larger than the spread).
fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean = |f: &dyn Fn(&(f64, f64)) -> f64| points.iter().map(f).sum::<f64>() / n;
    let (mi, mt) = (mean(&|p| p.0), mean(&|p| p.1));
    let sii: f64 = points.iter().map(|p| (p.0 - mi) * (p.0 - mi)).sum();
    let sit: f64 = points.iter().map(|p| (p.0 - mi) * (p.1 - mt)).sum();
    if points.len() < 2 || sii <= 0.0 || sit <= 0.0 {
        return None;
    }
    let slope = sit / sii;
    Some((mt - slope * mi, slope))
}

/// One split row: `bench_syscall` timed natively and in the guest, its
/// call counted, and the split from the line fitted through `points`
/// (getpid's point is added to them first). Returns the row, its point's
/// description (empty if it is none) and the loop's times.
fn split_row(
    program: &Path,
    name: &'static str,
    calls: &str,
    (mode, nr): (Option<&str>, u64),
    khz: u64,
    map: Option<&KernelMap>,
    points: &mut Vec<(f64, f64)>,
) -> Result<(Row, String, String), String> {
    let mut args = vec![calls.to_string()];
    args.extend(mode.map(String::from));
    let us = |c: f64| cycles_to_us(c, khz);
    let run = run_guest(program, &args, DEFAULT_MEM, Observe::default())?;
    let guest = parse_output(&run.stdout).map_err(|e| format!("guest output: {e}"))?;
    let native =
        parse_output(&run_native(program, &args)?).map_err(|e| format!("native output: {e}"))?;
    let per_call = |v: &[u64]| summarize(&v.iter().map(|&c| us(c as f64)).collect::<Vec<_>>());
    let mut row = Row {
        name,
        unit: "us/call",
        guest: per_call(&guest.samples),
        native: per_call(&native.samples),
        ..Default::default()
    };
    let t = row.guest.map(|s| s.median);
    let counted = match map {
        Some(map) => stepped_call(program, mode, nr, map)?,
        None => None,
    };
    let mut point = String::new();
    if let (Some((i, e)), Some(t)) = (counted, t) {
        row.ring0 = Some(format!("{i:.0}/call"));
        if e == 0.0 {
            points.push((i, t));
            point = format!("getpid {i:.0} insns {t:.1} us");
        }
    }
    let fast = mode.is_some() && run.fast_calls >= guest.samples.len() as u64 / 2;
    let split = match (t, counted, fit_line(points)) {
        // Served by the VMM from the syscall trampoline: no kernel entry.
        // The stepped run declines them, so its count is the kernel's.
        (Some(t), Some((i, _)), _) if fast => format!(
            "fast calls ({} of them): the VMM answers from the syscall trampoline, \
             {t:.1} us a call with no kernel entry; the kernel's path, which the \
             count steps, {i:.0} instructions",
            run.fast_calls
        ),
        (Some(t), Some((i, exits)), Some((entry, c))) => {
            let instr = i * c;
            format!(
                "entry+return {entry:.1} us, instructions {instr:.1} us ({i:.0} at {c:.2} us), \
                 hypercall {:.1} us ({exits:.0} exits)",
                (t - entry - instr).max(0.0),
            )
        }
        (_, None, _) => "no split without the ring-0 count".into(),
        _ => "no split: the in-kernel calls' times do not rise with their instructions".into(),
    };
    let what = match mode {
        Some(_) => "one-byte write(2) to stderr (a pipe to vmrun)",
        None => "syscall(SYS_getpid)",
    };
    let loop_avg = guest
        .total
        .map_or(f64::NAN, |(c, n)| us(c as f64 / n.max(1) as f64));
    row.note = format!("{calls} x {what}; {split}");
    let loop_line = format!(
        "guest loop {loop_avg:.1} us per call (mean), median {:.1}",
        t.unwrap_or(f64::NAN)
    );
    Ok((row, point, loop_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qemu_note_gives_the_median_and_the_ratio_or_why_not() {
        let note = qemu_note(Some(30.0), Some(vec![10.0, 12.0, 11.0]));
        assert_eq!(note, "qemu-user 11.000 ms, vmrun/qemu 2.73x");
        let none = qemu_note(Some(30.0), None);
        let want = if qemu_user().is_some() {
            "qemu-user failed"
        } else {
            "qemu-user not installed"
        };
        assert_eq!(none, want);
    }

    #[test]
    fn quick_runs_use_small_inputs() {
        let quick = Options {
            samples: 64,
            ..Default::default()
        };
        assert_eq!(
            (sha256_bytes(&quick), split_calls(&quick)),
            (4_000_000, 1_000)
        );
        let full = Options::default();
        assert_eq!(
            (sha256_bytes(&full), split_calls(&full)),
            (100_000_000, 10_000)
        );
    }

    #[test]
    fn the_fitted_line_gives_the_entry_and_the_instruction_costs() {
        // 60 µs an entry, 0.5 µs an instruction, with noise either side.
        let points = [(56.0, 88.5), (120.0, 119.5), (183.0, 151.5), (263.0, 191.5)];
        let (entry, per_insn) = fit_line(&points).unwrap();
        assert!((entry - 60.0).abs() < 1.5, "{entry}");
        assert!((per_insn - 0.5).abs() < 0.01, "{per_insn}");
        // One point, one count, or times falling with more instructions:
        // no line.
        assert_eq!(fit_line(&points[..1]), None);
        assert_eq!(fit_line(&[(56.0, 80.0), (56.0, 90.0)]), None);
        assert_eq!(fit_line(&[(56.0, 90.0), (120.0, 80.0)]), None);
    }

    #[test]
    fn the_shell_loop_runs_each_program_under_the_runner_it_is_given() {
        let plain = sh_spawn_args(3, None);
        assert_eq!(plain[..2], ["sh", "-c"]);
        assert!(
            plain[2].contains("$i -lt 3 ]; do /bin/busybox true;"),
            "{plain:?}"
        );
        let qemu = sh_spawn_args(3, Some(Path::new("/usr/bin/qemu-x86_64")));
        assert!(
            qemu[2].contains("do /usr/bin/qemu-x86_64 /bin/busybox true;"),
            "{qemu:?}"
        );
    }

    #[test]
    fn a_failing_program_is_an_error_naming_it() {
        let e = time_run(&[Path::new("/bin/false")], 0).unwrap_err();
        assert!(e.contains("/bin/false"), "{e}");
        assert!(time_run(&[Path::new("/bin/cat")], 100_000).is_ok());
    }
}
