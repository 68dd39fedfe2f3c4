//! `vmrun bench`: each workload inside the guest and natively on the host,
//! in one invocation, with medians, p99s, guest/native ratios and the number
//! of ring-0 instructions each kernel path costs.
//!
//! The workloads are small static C programs (`images/c/bench_*.c`) that time
//! themselves with RDTSC in user mode. User code runs natively inside the
//! guest as well as on the host, so the same program measures both places
//! and prints the same lines (`sample <cycles>`, `total <cycles> <units>`,
//! `minflt <n>`; see `images/c/bench.h`). Exec is timed from the guest
//! kernel's EXEC_PHASE trace records, for the dynamically linked hello
//! (`bench_hello_dyn`) to the TSC its main reads first, and cold start as
//! the wall time of a whole `vmrun` process. The clock_gettime workload
//! counts the kernel entries its loop takes in the guest: none, the vDSO
//! answers. The file workloads (`bench_fileio`) create a
//! 1 MiB file in the current directory, which the guest sees read-write,
//! and remove it when they exit.
//!
//! Ring-0 instructions are counted by single-stepping the guest under
//! `KVM_SET_GUEST_DEBUG` ([`count_ring0`]): every instruction the vCPU
//! executes in the kernel half ends with a `KVM_EXIT_DEBUG`, and the entry
//! stubs of the guest's IDT (found by their symbols in the embedded kernel
//! ELF) split the run into kernel entries. The measured loop of each program
//! is bracketed by two `getppid` system calls, the markers that delimit the
//! window whose entries are reported. docs/benchmarks.md describes the
//! method, what kvm_pvm fails to report and how that is corrected.
//!
//! Nothing here asserts a timing: figures are printed, never checked.
//!
//! The parts: `workloads` says what each row runs and how it is measured;
//! `runner` runs a program in the guest (plain, traced or single-stepped)
//! and natively; `output` parses what the programs print and `trace` what
//! the guest kernel's trace records say; `kernel_map` reads the kernel's
//! symbols and `step` counts ring-0 instructions with them; `stats` gives
//! the percentiles and `report` formats the table and the detail lines.

mod budgets;
mod kernel_map;
mod output;
mod report;
mod runner;
mod stats;
mod step;
mod trace;
mod whole;
mod workloads;

pub use kernel_map::{demangle, KernelMap};
pub use output::{parse_output, ProgramOutput};
pub use runner::Capture;
pub use stats::{cycles_to_us, percentile, summarize, Summary};
pub use step::{count_ring0, Entry, StepProfile};
pub use trace::{
    entries_in_window, exec_cycles, exec_spans, faults_before_marker, faults_in_window,
    resolution_name,
};

use crate::kvm::{self, Platform};
use crate::loader;
use crate::vm::{Observe, DEFAULT_MEM};
use budgets::{budget_table, Figures};
use report::{format_row, header};
use runner::run_guest;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use workloads::{bench_cold_start, bench_exec, bench_exec_dynamic, bench_program, programs, Env};

/// The `vmrun bench` help text.
pub const USAGE: &str = "\
usage: vmrun bench [OPTIONS]

Runs each workload inside the guest and natively on the host and prints, for
each, the median and p99 in both places, the guest/native ratio, the faults
taken and the ring-0 instructions of the kernel path.

options:
  -n, --samples N     timed operations for getpid, clock_gettime, brk,
                      4 KiB faults, cached preads, open+close and futex
                      wakes (default 2000; the 4 KiB fault workload maps
                      N/16 regions of 16 pages, the 1 MiB file read reads
                      N/20 times, as many 1 MiB regions are unmapped;
                      N/10 pipe round trips, at least 8, and N/100
                      forks, at least 4)
      --anon-mib N    MiB of fresh anonymous memory to touch (default 256)
      --file-pages N  pages of the 8 MiB file arrays to touch (default 2048)
      --runs N        exec and cold-start runs, static and dynamic
                      (default 20)
      --quick         tiny counts (-n 64 --anon-mib 8 --file-pages 64
                      --runs 3; 4 MB for sha256sum, 1000 calls for the
                      getpid/write split), for smoke tests
      --no-count      skip counting ring-0 instructions (single-stepping)
      --functions N   how many functions each `where:` line names, the
                      costliest first (default 6 for a row's loop, 8 for
                      the phases of the exec rows; 0: all of them); given,
                      the lines also show each function's instructions,
                      the exec row names every entry after exec, and the
                      exec_dynamic row each kernel entry
      --only ROWS     run only these workloads (comma-separated row names,
                      e.g. `exec,getpid`; `anon_touch` also gives
                      `anon_total`)
      --vmrun PATH    the vmrun binary for the cold-start workload (default:
                      `vmrun` next to this executable or in its parent)
      --images DIR    where the bench_* and hello_static programs are
                      (default: the directory this build put them in)
  -h, --help          print this help
";

/// The system call the workloads issue just before and just after their
/// measured loop (`getppid`), to delimit it when single-stepping.
pub const MARKER_SYSCALL: u64 = 110;

/// The first address of the kernel half: stepped instructions at or above
/// it are ring-0 instructions of the guest kernel.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// The options of one `vmrun bench` invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Timed operations for getpid, clock_gettime, brk, the 4 KiB fault
    /// workload, cached
    /// preads and open+close (the 1 MiB file read does a twentieth).
    pub samples: u64,
    /// MiB of anonymous memory for the bulk touch.
    pub anon_mib: u64,
    /// Pages of the file arrays to touch.
    pub file_pages: u64,
    /// Runs of the exec and cold-start workloads.
    pub runs: u64,
    /// Count ring-0 instructions by single-stepping.
    pub count: bool,
    /// The vmrun binary for the cold start.
    pub vmrun: Option<PathBuf>,
    /// Where the workload programs are.
    pub images: Option<PathBuf>,
    /// Run only the workloads of these rows (empty: all).
    pub only: Vec<String>,
    /// How many functions each `where:` line names (`None`: the default
    /// of each line; `Some(0)`: all).
    pub functions: Option<usize>,
}

impl Options {
    /// Whether the workload of row `name` runs.
    fn runs_row(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            samples: 2000,
            anon_mib: 256,
            file_pages: 2048,
            runs: 20,
            count: true,
            vmrun: None,
            images: None,
            only: Vec::new(),
            functions: None,
        }
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run the benchmark.
    Run(Options),
    /// Print the help.
    Help,
}

/// Parse `vmrun bench`'s arguments (without `bench` itself).
pub fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        let number = |what: &str, v: String| -> Result<u64, String> {
            match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{what}: expected a positive number, got {v:?}")),
            }
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-n" | "--samples" => o.samples = number(name, value(name)?)?,
            "--anon-mib" => o.anon_mib = number(name, value(name)?)?,
            "--file-pages" => o.file_pages = number(name, value(name)?)?,
            "--runs" => o.runs = number(name, value(name)?)?,
            "--quick" => {
                o.samples = 64;
                o.anon_mib = 8;
                o.file_pages = 64;
                o.runs = 3;
            }
            "--no-count" => o.count = false,
            "--functions" => {
                let v = value(name)?;
                let n = v
                    .parse::<usize>()
                    .map_err(|_| format!("{name}: expected a number, got {v:?}"))?;
                o.functions = Some(if n == 0 { usize::MAX } else { n });
            }
            "--vmrun" => o.vmrun = Some(value(name)?.into()),
            "--images" => o.images = Some(value(name)?.into()),
            "--only" => {
                o.only = value(name)?
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect();
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if o.file_pages > FILE_ARRAY_PAGES {
        return Err(format!(
            "--file-pages: at most {FILE_ARRAY_PAGES} (the arrays are 8 MiB)"
        ));
    }
    if o.anon_mib > 16 << 10 {
        return Err("--anon-mib: at most 16384".into());
    }
    Ok(Parsed::Run(o))
}

/// Pages in each of `bench_file`'s two arrays.
const FILE_ARRAY_PAGES: u64 = 2048;

/// `vmrun` next to the running executable, or in its parent directory
/// (where `cargo run --example` and test binaries find it).
fn find_vmrun() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("vmrun"), dir.parent()?.join("vmrun")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Run `vmrun bench` with `args` (the arguments after `bench`), printing
/// to stdout; returns the exit status: 0, 1 if a workload failed, 2 for a
/// usage error, 125 without a usable /dev/kvm.
pub fn run(args: &[String]) -> i32 {
    run_with_output(args, &mut std::io::stdout().lock())
}

/// [`run`], printing the results to `out` (errors still go to stderr).
pub fn run_with_output(args: &[String], out: &mut dyn Write) -> i32 {
    let o = match parse_args(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            let _ = write!(out, "{USAGE}");
            return 0;
        }
        Err(e) => {
            crate::errln!("vmrun bench: {e}");
            return 2;
        }
    };
    if let Err(e) = kvm::open() {
        crate::errln!("vmrun bench: {e}");
        return crate::error::EXIT_VMRUN_FAILURE;
    }
    let started = Instant::now();
    let images = o
        .images
        .clone()
        .unwrap_or_else(|| vmrun_images::dir().to_path_buf());
    let mut env = Env {
        images,
        vmrun: o.vmrun.clone().or_else(find_vmrun),
        tsc_khz: 0,
        map: None,
        functions: o.functions,
    };
    // The TSC frequency KVM reports, from a first guest run (also a warm-up).
    let hello = env.images.join("hello_static");
    match run_guest(&hello, &[], DEFAULT_MEM, Observe::default()) {
        Ok(run) if run.tsc_khz > 0 => env.tsc_khz = run.tsc_khz,
        Ok(_) => {
            crate::errln!("vmrun bench: KVM reports no TSC frequency");
            return 1;
        }
        Err(e) => {
            crate::errln!("vmrun bench: {e}");
            return 1;
        }
    }
    let mut detail = String::new();
    if o.count && Platform::detect() == Platform::Hardware {
        // KVM single-steps with RFLAGS.TF, which the CPU clears when it
        // delivers a trap to ring 0: stepping never follows into the kernel
        // where ring 0 is native (docs/platforms.md).
        let _ = writeln!(
            detail,
            "ring-0 instructions not counted on VMX/SVM: single-stepping does not follow \
             traps into ring 0 there"
        );
    } else if o.count {
        match KernelMap::new(loader::GUEST_KERNEL) {
            Ok(map) => env.map = Some(map),
            Err(e) => {
                let _ = writeln!(detail, "no ring-0 counts: {e}");
            }
        }
    }
    let platform = match Platform::detect() {
        Platform::Pvm => "kvm_pvm",
        Platform::Hardware => "VMX/SVM",
    };
    let mut text = format!(
        "vmrun bench: platform {platform}, TSC {:.3} MHz; g/n = guest/native median; \
         faults = faults taken in the loop (guest/native)\n{}\n",
        env.tsc_khz as f64 / 1000.0,
        header()
    );
    let _ = out.write_all(text.as_bytes());
    let mut failed = false;
    let mut emit = |out: &mut dyn Write, line: Result<String, (&str, String)>| {
        let line = line.unwrap_or_else(|(name, e)| {
            failed = true;
            format!("{name:<16} FAILED: {e}")
        });
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let mut figures = Figures::new();
    for p in programs(&o).iter().filter(|p| o.runs_row(p.row)) {
        match bench_program(p, &env, &mut detail, &mut figures) {
            Ok(rows) => rows.iter().for_each(|r| emit(out, Ok(format_row(r)))),
            Err(e) => {
                if p.row == "anon_touch" {
                    emit(out, Err(("anon_total", "see anon_touch".into())));
                }
                emit(out, Err((p.row, e)));
            }
        }
    }
    if o.runs_row("exec") {
        let exec = bench_exec(&o, &env, &mut detail, &mut figures);
        emit(out, exec.map(|r| format_row(&r)).map_err(|e| ("exec", e)));
    }
    if o.runs_row("exec_dynamic") {
        let exec_dyn = bench_exec_dynamic(&o, &env, &mut detail);
        emit(
            out,
            exec_dyn
                .map(|r| format_row(&r))
                .map_err(|e| ("exec_dynamic", e)),
        );
    }
    for (name, image) in [
        ("cold_start", "hello_static"),
        ("cold_start_dyn", "bench_hello_dyn"),
    ] {
        if o.runs_row(name) {
            let cold = bench_cold_start(&o, &env, name, image);
            emit(out, cold.map(|r| format_row(&r)).map_err(|e| (name, e)));
        }
    }
    for row in whole::bench_whole_programs(&o, env.vmrun.as_deref()) {
        emit(out, row.map(|r| format_row(&r)));
    }
    if let (true, Some(map)) = (o.runs_row("sha256_pipe"), env.map.as_ref()) {
        whole::sha256_pipe_ring0(map, env.functions, &mut detail);
    }
    if let (true, Some(map)) = (o.runs_row("sh_spawn"), env.map.as_ref()) {
        whole::sh_spawn_ring0(map, env.functions, &mut detail);
    }
    let split =
        whole::bench_syscall_split(&o, &env.images, env.tsc_khz, env.map.as_ref(), &mut detail);
    for row in split {
        emit(out, row.map(|r| format_row(&r)));
    }
    text.clear();
    if o.count {
        text += "\nring-0 instructions (KVM single-step; separate runs with small counts):\n";
        text += &detail;
    }
    text += "\n";
    text += &budget_table(&figures);
    let _ = writeln!(
        text,
        "\nbench took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = out.write_all(text.as_bytes());
    i32::from(failed)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_refuse() {
        assert_eq!(parse_args(&[]).unwrap(), Parsed::Run(Options::default()));
        let Parsed::Run(o) =
            parse_args(&args(&["-n", "10", "--anon-mib=16", "--no-count"])).unwrap()
        else {
            panic!()
        };
        assert_eq!((o.samples, o.anon_mib, o.count), (10, 16, false));
        let Parsed::Run(q) = parse_args(&args(&["--quick", "--vmrun", "/x/vmrun"])).unwrap() else {
            panic!()
        };
        assert_eq!((q.samples, q.runs), (64, 3));
        assert_eq!(q.vmrun, Some(PathBuf::from("/x/vmrun")));
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), Parsed::Help);
        assert!(parse_args(&args(&["-n"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_args(&args(&["-n", "0"]))
            .unwrap_err()
            .contains("positive"));
        assert!(parse_args(&args(&["--file-pages", "4096"])).is_err());
        let Parsed::Run(only) = parse_args(&args(&["--only", "exec,getpid"])).unwrap() else {
            panic!()
        };
        assert_eq!(only.only, ["exec", "getpid"]);
        assert!(only.runs_row("exec") && !only.runs_row("anon_touch"));
        assert!(o.runs_row("anon_touch"), "every row without --only");
        let shown = |a: &[&str]| match parse_args(&args(a)) {
            Ok(Parsed::Run(o)) => Ok(o.functions),
            Ok(Parsed::Help) => Err("help".to_string()),
            Err(e) => Err(e),
        };
        assert_eq!(shown(&[]), Ok(None));
        assert_eq!(shown(&["--functions", "12"]), Ok(Some(12)));
        assert_eq!(shown(&["--functions=0"]), Ok(Some(usize::MAX)), "0: all");
        assert!(shown(&["--functions", "x"]).unwrap_err().contains("number"));
        assert!(parse_args(&args(&["--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
    }
}
