//! `vmrun bench`: each workload inside the guest and natively on the host,
//! in one invocation, with medians, p99s, guest/native ratios and the number
//! of ring-0 instructions each kernel path costs.
//!
//! The workloads are small static C programs (`images/c/bench_*.c`) that time
//! themselves with RDTSC in user mode. User code runs natively inside the
//! guest as well as on the host, so the same program measures both places
//! and prints the same lines (`sample <cycles>`, `total <cycles> <units>`,
//! `minflt <n>`; see `images/c/bench.h`). Exec is timed from the guest
//! kernel's EXEC_PHASE trace records, and cold start as the wall time of a
//! whole `vmrun` process.
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

use crate::hypercall::{self, Action, HostIo, Outcome};
use crate::kvm::{self, Platform};
use crate::loader;
use crate::memory::GuestRam;
use crate::vm::{Event, Observe, RunEnd, Vm, VmConfig, DEFAULT_MEM};
use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use vmrun_contract::trace::{category, exec_phase, kind, Record};
use vmrun_contract::HYPERCALL_PORT;

/// The `vmrun bench` help text.
pub const USAGE: &str = "\
usage: vmrun bench [OPTIONS]

Runs each workload inside the guest and natively on the host and prints, for
each, the median and p99 in both places, the guest/native ratio, the faults
taken and the ring-0 instructions of the kernel path.

options:
  -n, --samples N     timed operations for getpid, brk and 4 KiB faults
                      (default 2000; the 4 KiB fault workload maps N/16
                      regions of 16 pages)
      --anon-mib N    MiB of fresh anonymous memory to touch (default 256)
      --file-pages N  pages of the 8 MiB file arrays to touch (default 2048)
      --runs N        exec and cold-start runs (default 20)
      --quick         tiny counts (-n 64 --anon-mib 8 --file-pages 64
                      --runs 3), for smoke tests
      --no-count      skip counting ring-0 instructions (single-stepping)
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
    /// Timed operations for getpid, brk and the 4 KiB fault workload.
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
            "--vmrun" => o.vmrun = Some(value(name)?.into()),
            "--images" => o.images = Some(value(name)?.into()),
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
/// Pages in each region of the 4 KiB fault workload.
const SMALL_REGION_PAGES: u64 = 16;

// ---------------------------------------------------------------------------
// Statistics and the programs' output

/// The nearest-rank percentile `p` (0-100) of ascending `sorted` values
/// (the median of an even count is the lower middle value); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, p99 and count of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The median (nearest rank).
    pub median: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// How many values.
    pub count: usize,
}

/// Summarise `values` (in any order); `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        median: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        count: v.len(),
    })
}

/// What a workload program printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramOutput {
    /// Cycles of each timed operation, in order.
    pub samples: Vec<u64>,
    /// Cycles of the whole loop and how many units (pages, calls) it covered.
    pub total: Option<(u64, u64)>,
    /// Minor faults taken in the loop; `None` where the program could not
    /// tell (getrusage fails in the guest).
    pub minflt: Option<u64>,
}

/// Parse a workload program's stdout (see `images/c/bench.h`).
pub fn parse_output(text: &str) -> Result<ProgramOutput, String> {
    let mut out = ProgramOutput::default();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("line {}: bad number {s:?} in {line:?}", i + 1))
        };
        match fields.as_slice() {
            [] => {}
            ["sample", c] => out.samples.push(num(c)?),
            ["total", c, u] => out.total = Some((num(c)?, num(u)?)),
            ["minflt", "-1"] => out.minflt = None,
            ["minflt", n] => out.minflt = Some(num(n)?),
            _ => return Err(format!("line {}: unexpected output {line:?}", i + 1)),
        }
    }
    if out.total.is_none() {
        return Err("the program printed no `total` line".into());
    }
    Ok(out)
}

/// TSC cycles to microseconds at `tsc_khz`.
pub fn cycles_to_us(cycles: f64, tsc_khz: u64) -> f64 {
    cycles * 1000.0 / tsc_khz as f64
}

// ---------------------------------------------------------------------------
// Running programs in the guest and on the host

/// Captures the guest program's stdout and stderr.
#[derive(Default)]
pub struct Capture {
    /// Everything written to fd 1.
    pub stdout: Vec<u8>,
    /// Everything written to fd 2 (and guest log lines).
    pub stderr: Vec<u8>,
}

impl HostIo for Capture {
    fn write(&mut self, fd: u64, data: &[u8]) -> std::io::Result<()> {
        match fd {
            1 => self.stdout.extend_from_slice(data),
            _ => self.stderr.extend_from_slice(data),
        }
        Ok(())
    }
    fn read(&mut self, _fd: u64, _buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn random(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
    fn log(&mut self, _line: &[u8]) {}
}

/// One program run in the guest.
struct GuestRun {
    stdout: String,
    page_faults: u64,
    records: Vec<Record>,
    tsc_khz: u64,
}

fn guest_config(program: &Path, args: &[String], mem: u64, observe: Observe) -> VmConfig {
    let mut argv: Vec<OsString> = vec![program.into()];
    argv.extend(args.iter().map(OsString::from));
    VmConfig {
        mem_size: mem,
        program: program.into(),
        argv,
        env: vec![],
        aslr: false,
        verbose: false,
        observe,
    }
}

fn run_guest(
    program: &Path,
    args: &[String],
    mem: u64,
    observe: Observe,
) -> Result<GuestRun, String> {
    let config = guest_config(program, args, mem, observe);
    let mut vm = Vm::new(&config).map_err(|e| format!("{}: {e}", program.display()))?;
    let tsc_khz = vm.boot_info().tsc_khz;
    let mut io = Capture::default();
    let mut records = Vec::new();
    let end = loop {
        let event = vm
            .resume(&mut io, &mut |r: &[Record]| records.extend_from_slice(r))
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if let Event::Finished(end) = event {
            break end;
        }
    };
    let report = vm.report(end);
    match report.outcome {
        RunEnd::Guest(Outcome::Exited(0)) => {}
        other => {
            return Err(format!(
                "{} {} in the guest: {other:?}; stderr: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&io.stderr).trim()
            ))
        }
    }
    Ok(GuestRun {
        stdout: String::from_utf8_lossy(&io.stdout).into_owned(),
        page_faults: report.stats.map_or(0, |s| s.page_faults),
        records,
        tsc_khz,
    })
}

fn run_native(program: &Path, args: &[String]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} natively: {}; stderr: {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The FAULT records the guest wrote between the two marker system calls
/// of a run traced with FAULTS and SYSCALLS; `None` without both markers.
pub fn faults_in_window(records: &[Record]) -> Option<Vec<Record>> {
    let mut markers = 0;
    let mut faults = Vec::new();
    for r in records {
        match r.kind {
            kind::SYSCALL_ENTER if u64::from(r.aux) == MARKER_SYSCALL => {
                markers += 1;
                if markers == 2 {
                    return Some(faults);
                }
            }
            kind::FAULT if markers == 1 => faults.push(*r),
            _ => {}
        }
    }
    None
}

/// The name of a fault resolution (FAULT record a4).
pub fn resolution_name(r: u64) -> &'static str {
    use vmrun_contract::trace::resolution as res;
    match r {
        res::ZERO_FILL => "zero-fill",
        res::ZERO_FILL_HUGE => "zero-fill-2M",
        res::FILE_MAP => "file-map",
        res::FILE_COPY => "file-copy",
        res::FILE_ZERO => "file-zero",
        res::COW => "cow",
        res::MADE_WRITABLE => "made-writable",
        res::SPURIOUS => "spurious",
        res::SIGSEGV => "sigsegv",
        res::OOM => "oom",
        _ => "other",
    }
}

/// One line per resolution: how many faults, and the median cycles the
/// guest kernel spent on each (FAULT a5, measured with tracing on).
fn fault_breakdown(faults: &[Record], tsc_khz: u64) -> Vec<String> {
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

/// Cycles from EXEC_PHASE START to ENTER_USER, per exec in `records`.
pub fn exec_cycles(records: &[Record]) -> Vec<u64> {
    let mut start = None;
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.kind == kind::EXEC_PHASE) {
        match r.a[0] {
            exec_phase::START => start = Some(r.tsc),
            exec_phase::ENTER_USER => {
                if let Some(s) = start.take() {
                    out.push(r.tsc.saturating_sub(s));
                }
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Counting ring-0 instructions by single-stepping

/// Symbols of the guest kernel ELF: where each function is, where the IDT
/// entry stubs are, and which vector each stub serves.
pub struct KernelMap {
    /// (start, end, demangled name), sorted by start.
    symbols: Vec<(u64, u64, String)>,
    /// (start, end, vector) of each `trap_stub_N`.
    stubs: Vec<(u64, u64, u64)>,
    exec_initial: Option<(u64, u64)>,
    trap_common: Option<(u64, u64)>,
    run_user: Option<(u64, u64)>,
}

impl KernelMap {
    /// Read the symbol table of a kernel ELF image.
    pub fn new(image: &[u8]) -> Result<KernelMap, String> {
        let elf = goblin::elf::Elf::parse(image).map_err(|e| format!("kernel ELF: {e}"))?;
        let mut raw: Vec<(u64, u64, String)> = elf
            .syms
            .iter()
            .filter(|s| s.st_value >= KERNEL_HALF && s.st_shndx != 0)
            .filter(|s| matches!(s.st_type(), goblin::elf::sym::STT_FUNC | 0))
            .filter_map(|s| {
                let name = elf.strtab.get_at(s.st_name)?;
                (!name.is_empty()).then(|| (s.st_value, s.st_size, demangle(name)))
            })
            .collect();
        raw.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
        raw.dedup_by_key(|s| s.0);
        if raw.is_empty() {
            return Err("the guest kernel ELF has no symbols".into());
        }
        let symbols: Vec<(u64, u64, String)> = (0..raw.len())
            .map(|i| {
                let (start, size, ref name) = raw[i];
                let next = raw.get(i + 1).map_or(u64::MAX, |n| n.0);
                let end = if size > 0 {
                    (start + size).min(next)
                } else {
                    next
                };
                (start, end, name.clone())
            })
            .collect();
        let find =
            |pred: &dyn Fn(&str) -> bool| symbols.iter().find(|s| pred(&s.2)).map(|s| (s.0, s.1));
        let stubs = symbols
            .iter()
            .filter_map(|(a, b, n)| Some((*a, *b, n.strip_prefix("trap_stub_")?.parse().ok()?)))
            .collect::<Vec<_>>();
        if stubs.is_empty() {
            return Err("the guest kernel ELF has no trap_stub_N symbols".into());
        }
        Ok(KernelMap {
            exec_initial: find(&|n| n.ends_with("boot::exec_initial")),
            trap_common: find(&|n| n == "trap_common"),
            run_user: find(&|n| n == "vmrun_run_user"),
            symbols,
            stubs,
        })
    }

    /// The symbol holding `pc`.
    fn symbol(&self, pc: u64) -> Option<usize> {
        let i = self.symbols.partition_point(|s| s.0 <= pc).checked_sub(1)?;
        (pc < self.symbols[i].1).then_some(i)
    }

    /// The vector whose entry stub holds `pc`.
    fn stub_vector(&self, pc: u64) -> Option<u64> {
        self.stubs
            .iter()
            .find(|s| (s.0..s.1).contains(&pc))
            .map(|s| s.2)
    }
}

/// Legacy Rust symbol demangling, enough for a profile
/// (`_ZN12guest_kernel4boot12exec_initial17h0123456789abcdefE` is
/// `guest_kernel::boot::exec_initial`); other names are returned as they are.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while let Some(len_end) = rest.find(|c: char| !c.is_ascii_digit()) {
        let Ok(len) = rest[..len_end].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(len_end..len_end + len) else {
            return name.to_string();
        };
        // A component that starts with an escape gets a `_` in front.
        parts.push(
            part.strip_prefix('_')
                .filter(|p| p.starts_with('$'))
                .unwrap_or(part),
        );
        rest = &rest[len_end + len..];
    }
    if rest != "E" || parts.is_empty() {
        return name.to_string();
    }
    if let Some(last) = parts.last() {
        if last.len() == 17 && last.starts_with('h') {
            parts.pop();
        }
    }
    let mut s = parts.join("::");
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// One kernel entry seen while single-stepping: a trap from user mode and
/// everything ring 0 did until the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The IDT vector (14: page fault; 6 or 0x80: system call).
    pub vector: u64,
    /// RAX at entry: the system call number for a system call.
    pub rax: u64,
    /// Ring-0 instructions, corrected (see [`StepProfile::missed_per_entry`]).
    pub insns: u64,
    /// Inside the program's measured loop (between the two markers).
    pub in_window: bool,
}

impl Entry {
    /// Whether this entry is a system call.
    pub fn is_syscall(&self) -> bool {
        self.vector == 6 || self.vector == 0x80
    }
}

/// What single-stepping one run found.
#[derive(Clone, Debug, Default)]
pub struct StepProfile {
    /// Ring-0 instructions before the initial exec started.
    pub boot_insns: u64,
    /// Ring-0 instructions from the start of the initial exec to the
    /// program's first instruction (`None` without an `exec_initial` symbol).
    pub exec_insns: Option<u64>,
    /// Every kernel entry, in order.
    pub entries: Vec<Entry>,
    /// Instructions per function, over the entries in the window.
    pub window_functions: BTreeMap<String, u64>,
    /// Single-step reports in the entry path (stub and `trap_common`) of the
    /// first page fault, and how many the instructions there should give.
    pub entry_check: Option<(u64, u64)>,
    /// The same for the return path (`vmrun_run_user`).
    pub return_check: Option<(u64, u64)>,
    /// Instructions kvm_pvm executes without a single-step report on each
    /// round trip, added to every entry (from the checks, plus the `iretq`).
    pub missed_per_entry: u64,
    /// Debug exits reported at user addresses (ring 3 being stepped).
    pub user_reports: u64,
    /// Port-I/O exits (hypercalls), each one instruction without a report.
    pub hypercalls: u64,
}

/// Single-step reports the entry path of an error-code vector (#PF) gives
/// when each instruction reports once: `push vector; jmp trap_common`, then
/// `cld`, 15 pushes, `test`, `jnz`, `fxsave64`, `mov rsp`, 6 pops (the
/// final `ret` reports at its Rust return address). See
/// guest-kernel/src/arch/trap.rs.
const ENTRY_PATH_REPORTS: u64 = 28;
/// The same for the return path: the `call vmrun_run_user` reports at its
/// first byte, then 6 pushes, `mov`, `fxrstor64`, `lea`, 15 pops, `add rsp`
/// report inside it; the final `iretq` reports (if at all) at a user address.
const RETURN_PATH_REPORTS: u64 = 26;

/// Enable single-stepping on `vcpu` and run it to the end of the program,
/// serving hypercalls, counting the ring-0 instructions of each kernel
/// entry. `ram` is the guest's RAM, `io` its stdio, `map` the kernel's
/// symbols. Gives up after `max_steps` debug exits.
pub fn count_ring0(
    vcpu: &mut VcpuFd,
    ram: &GuestRam,
    io: &mut impl HostIo,
    map: &KernelMap,
    max_steps: u64,
) -> Result<StepProfile, String> {
    let debug = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
        ..Default::default()
    };
    vcpu.set_guest_debug(&debug)
        .map_err(|e| format!("KVM_SET_GUEST_DEBUG (single-step): {e}"))?;
    let mut p = StepProfile::default();
    // Where the current reports go: None before exec, Some(usize::MAX)
    // during exec, Some(i) for entry i.
    let mut current: Option<usize> = None;
    let mut exec_started = false;
    let mut exec_reports = 0u64;
    let mut in_window = false;
    let mut markers = 0;
    // Raw reports per entry, corrected at the end.
    let mut raw: Vec<u64> = Vec::new();
    let mut first_fault: Option<usize> = None;
    let (mut entry_path, mut return_path) = (0u64, 0u64);
    let mut steps = 0u64;
    // Whether the last ring-0 report was inside an entry stub (a stub
    // reports once or twice before it jumps to `trap_common`).
    let mut in_stub = false;
    loop {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(format!("KVM_RUN while single-stepping: {e}")),
        };
        match exit {
            VcpuExit::Debug(d) => {
                steps += 1;
                if steps > max_steps {
                    return Err(format!("gave up after {max_steps} single steps"));
                }
                let pc = d.pc;
                if pc < KERNEL_HALF {
                    p.user_reports += 1;
                    continue;
                }
                let stub = map.stub_vector(pc);
                let new_entry = stub.is_some() && !in_stub;
                in_stub = stub.is_some();
                if let (Some(vector), true) = (stub, new_entry) {
                    let rax = vcpu
                        .get_regs()
                        .map_err(|e| format!("KVM_GET_REGS: {e}"))?
                        .rax;
                    let is_syscall = vector == 6 || vector == 0x80;
                    let marker = is_syscall && rax == MARKER_SYSCALL && markers < 2;
                    if marker {
                        markers += 1;
                    }
                    p.entries.push(Entry {
                        vector,
                        rax,
                        insns: 0,
                        in_window: in_window && !marker,
                    });
                    raw.push(0);
                    if marker {
                        in_window = markers == 1;
                    }
                    if vector == 14 && first_fault.is_none() {
                        first_fault = Some(p.entries.len() - 1);
                    }
                    current = Some(p.entries.len() - 1);
                }
                if !exec_started && map.exec_initial.is_some_and(|(a, b)| (a..b).contains(&pc)) {
                    exec_started = true;
                    current = Some(usize::MAX);
                }
                match current {
                    None => p.boot_insns += 1,
                    Some(usize::MAX) => exec_reports += 1,
                    Some(i) => {
                        raw[i] += 1;
                        if p.entries[i].in_window {
                            let name = map.symbol(pc).map_or("?", |s| map.symbols[s].2.as_str());
                            *p.window_functions.entry(name.to_string()).or_default() += 1;
                        }
                        if Some(i) == first_fault {
                            let inside = |r: Option<(u64, u64)>| {
                                r.is_some_and(|(a, b)| (a..b).contains(&pc))
                            };
                            if map.stub_vector(pc).is_some() || inside(map.trap_common) {
                                entry_path += 1;
                            } else if inside(map.run_user) {
                                return_path += 1;
                            }
                        }
                    }
                }
            }
            VcpuExit::IoOut(port, data) if port == HYPERCALL_PORT && data.len() == 4 => {
                let block = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
                p.hypercalls += 1;
                match current {
                    None => p.boot_insns += 1,
                    Some(usize::MAX) => exec_reports += 1,
                    Some(i) => raw[i] += 1,
                }
                match hypercall::handle(ram, block, io).map_err(|e| format!("hypercall: {e}"))? {
                    Action::Stop(Outcome::Exited(0)) => break,
                    Action::Stop(other) => {
                        return Err(format!("the program ended with {other:?} while stepped"))
                    }
                    _ => {}
                }
            }
            other => {
                return Err(format!(
                    "unexpected VM exit while single-stepping: {other:?}"
                ))
            }
        }
    }
    // The checks: reports seen against reports expected in the fixed asm
    // paths of the first page fault; what is missing there is missing on
    // every round trip. The iretq back to user mode never reports in ring 0.
    let (mut missed_entry, mut missed_return) = (0, 1);
    if first_fault.is_some() && map.trap_common.is_some() && map.run_user.is_some() {
        p.entry_check = Some((entry_path, ENTRY_PATH_REPORTS));
        p.return_check = Some((return_path, RETURN_PATH_REPORTS));
        missed_entry = ENTRY_PATH_REPORTS.saturating_sub(entry_path);
        missed_return += RETURN_PATH_REPORTS.saturating_sub(return_path);
    }
    p.missed_per_entry = missed_entry + missed_return;
    for (e, r) in p.entries.iter_mut().zip(raw) {
        e.insns = r + p.missed_per_entry;
    }
    // Exec ends with the first return to user mode.
    p.exec_insns = exec_started.then_some(exec_reports + missed_return);
    Ok(p)
}

/// Single-step one program run in the guest.
fn step_program(
    program: &Path,
    args: &[String],
    mem: u64,
    map: &KernelMap,
) -> Result<StepProfile, String> {
    let config = guest_config(program, args, mem, Observe::default());
    let mut vm = Vm::new(&config).map_err(|e| e.to_string())?;
    let mut io = Capture::default();
    let (vcpu, ram) = vm.vcpu_and_ram();
    count_ring0(vcpu, ram, &mut io, map, 50_000_000)
        .map_err(|e| format!("{}: {e}", program.display()))
}

// ---------------------------------------------------------------------------
// The workloads

/// One row of the results table.
#[derive(Clone, Debug, Default)]
struct Row {
    name: &'static str,
    unit: &'static str,
    guest: Option<Summary>,
    native: Option<Summary>,
    /// Faults in the loop: (guest, native).
    faults: (Option<u64>, Option<u64>),
    /// Ring-0 instructions per operation, with a label.
    ring0: Option<String>,
    note: String,
}

/// A self-timing workload program and how to run it.
struct Program {
    row: &'static str,
    unit: &'static str,
    image: &'static str,
    args: Vec<String>,
    /// Smaller arguments for the single-stepped run.
    step_args: Vec<String>,
    mem: u64,
}

/// Where the programs and `vmrun` are.
struct Env {
    images: PathBuf,
    vmrun: Option<PathBuf>,
    tsc_khz: u64,
    map: Option<KernelMap>,
}

fn programs(o: &Options) -> Vec<Program> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let rounds = (o.samples / SMALL_REGION_PAGES).max(1).to_string();
    let samples = o.samples.to_string();
    let pages = o.file_pages.to_string();
    let step_pages = o.file_pages.min(64).to_string();
    let step_n = o.samples.min(32).to_string();
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
        },
        Program {
            row: "anon_4k_fault",
            unit: "us/fault",
            image: "bench_anon",
            args: vec!["small".into(), rounds],
            step_args: s(&["small", "2"]),
            mem: DEFAULT_MEM,
        },
        Program {
            row: "file_read",
            unit: "us/touch",
            image: "bench_file",
            args: vec!["read".into(), pages.clone()],
            step_args: s(&["read", &step_pages]),
            mem: DEFAULT_MEM,
        },
        Program {
            row: "file_cow",
            unit: "us/touch",
            image: "bench_file",
            args: vec!["cow".into(), pages],
            step_args: s(&["cow", &step_pages]),
            mem: DEFAULT_MEM,
        },
        Program {
            row: "brk_grow",
            unit: "us/step",
            image: "bench_brk",
            args: vec![samples.clone()],
            step_args: vec![step_n.clone()],
            mem: DEFAULT_MEM,
        },
        Program {
            row: "getpid",
            unit: "us/call",
            image: "bench_syscall",
            args: vec![samples],
            step_args: vec![step_n],
            mem: DEFAULT_MEM,
        },
    ]
}

/// Run one self-timing program in both places; the rows it gives (the
/// bulk touch also gives the per-page total) and the ring-0 detail lines.
fn bench_program(p: &Program, env: &Env, detail: &mut String) -> Result<Vec<Row>, String> {
    let path = env.images.join(p.image);
    let guest_run = run_guest(&path, &p.args, p.mem, Observe::default())?;
    let guest = parse_output(&guest_run.stdout).map_err(|e| format!("guest output: {e}"))?;
    let native =
        parse_output(&run_native(&path, &p.args)?).map_err(|e| format!("native output: {e}"))?;
    let traced = run_guest(
        &path,
        &p.args,
        p.mem,
        Observe {
            trace_mask: category::FAULTS | category::SYSCALLS,
            ..Default::default()
        },
    )?;
    let window_faults = faults_in_window(&traced.records);
    let guest_faults = window_faults.as_ref().map(|f| f.len() as u64);
    if let Some(f) = window_faults.as_ref().filter(|f| !f.is_empty()) {
        let _ = writeln!(
            detail,
            "{:<14} guest faults in the loop (traced run `{}`): {}",
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
        ..Default::default()
    };
    if p.row == "anon_touch" {
        row.note = format!("whole guest run: {} faults", guest_run.page_faults);
    }
    if env.tsc_khz != guest_run.tsc_khz {
        row.note = format!("guest TSC {} kHz", guest_run.tsc_khz);
    }
    let ops = guest.samples.len() as u64;
    if let Some(map) = &env.map {
        match step_program(&path, &p.step_args, p.mem, map) {
            Ok(profile) => {
                let (label, text) = ring0_detail(p.row, &p.step_args, &profile, ops > 0);
                row.ring0 = label;
                detail.push_str(&text);
            }
            Err(e) => {
                let _ = writeln!(detail, "{:<14} single-step failed: {e}", p.row);
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
            "{:<14} guest loop {:.1} ms: the {k} slowest operations (as many as faults) {:.1} ms, \
             the other {} {:.1} ms",
            p.row,
            cycles_to_us(total as f64, khz) / 1e3,
            cycles_to_us(slowest as f64, khz) / 1e3,
            sorted.len().saturating_sub(k as usize),
            cycles_to_us(sorted.iter().skip(k as usize).sum::<u64>() as f64, khz) / 1e3
        );
    }
    let mut rows = vec![row];
    if p.row == "anon_touch" {
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

/// The ring-0 label for the table and the detail lines of one profile.
fn ring0_detail(
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

fn bench_exec(o: &Options, env: &Env, detail: &mut String) -> Result<Row, String> {
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
        match step_program(&hello, &[], DEFAULT_MEM, map) {
            Ok(p) => {
                if let Some(n) = p.exec_insns {
                    row.ring0 = Some(format!("{n}/exec"));
                }
                let _ = writeln!(
                    detail,
                    "{:<14} stepped run of hello_static: boot {} instructions, exec {}, \
                     {} kernel entries after it ({} instructions)",
                    "exec",
                    p.boot_insns,
                    p.exec_insns.map_or("?".into(), |n| n.to_string()),
                    p.entries.len(),
                    p.entries.iter().map(|e| e.insns).sum::<u64>()
                );
                if let (Some((e_seen, e_want)), Some((r_seen, r_want))) =
                    (p.entry_check, p.return_check)
                {
                    let _ = writeln!(
                        detail,
                        "{:<14} single-step check (first #PF): entry asm {e_seen} reports of \
                         {e_want} expected, return asm {r_seen} of {r_want}; {} instructions \
                         per round trip added for unreported ones (iretq included); \
                         {} hypercall exits counted as instructions; {} user-mode reports",
                        "", p.missed_per_entry, p.hypercalls, p.user_reports
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(detail, "{:<14} single-step failed: {e}", "exec");
            }
        }
    }
    Ok(row)
}

/// Wall time of one native fork+exec+wait of `program`, in microseconds.
fn time_native(program: &Path) -> Result<f64, String> {
    let mut cmd = Command::new(program);
    cmd.env_clear().stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let elapsed = t.elapsed().as_secs_f64() * 1e6;
    if !status.success() {
        return Err(format!("{}: {status}", program.display()));
    }
    Ok(elapsed)
}

fn bench_cold_start(o: &Options, env: &Env) -> Result<Row, String> {
    let Some(vmrun) = &env.vmrun else {
        return Err("no vmrun binary found next to this executable: pass --vmrun PATH".into());
    };
    let hello = env.images.join("hello_static");
    let mut guest = Vec::new();
    let mut native = Vec::new();
    for _ in 0..o.runs {
        let mut cmd = Command::new(vmrun);
        cmd.arg(&hello).stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("{}: {e}", vmrun.display()))?;
        guest.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!("{} {}: {status}", vmrun.display(), hello.display()));
        }
        native.push(time_native(&hello)? / 1e3);
    }
    Ok(Row {
        name: "cold_start",
        unit: "ms/run",
        guest: summarize(&guest),
        native: summarize(&native),
        note: "whole `vmrun hello_static` process vs native run".into(),
        ..Default::default()
    })
}

/// `vmrun` next to the running executable, or in its parent directory
/// (where `cargo run --example` and test binaries find it).
fn find_vmrun() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("vmrun"), dir.parent()?.join("vmrun")]
        .into_iter()
        .find(|p| p.is_file())
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
fn format_row(r: &Row) -> String {
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

fn header() -> String {
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
            eprintln!("vmrun bench: {e}");
            return 2;
        }
    };
    if let Err(e) = kvm::open() {
        eprintln!("vmrun bench: {e}");
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
    };
    // The TSC frequency KVM reports, from a first guest run (also a warm-up).
    let hello = env.images.join("hello_static");
    match run_guest(&hello, &[], DEFAULT_MEM, Observe::default()) {
        Ok(run) if run.tsc_khz > 0 => env.tsc_khz = run.tsc_khz,
        Ok(_) => {
            eprintln!("vmrun bench: KVM reports no TSC frequency");
            return 1;
        }
        Err(e) => {
            eprintln!("vmrun bench: {e}");
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
            format!("{name:<14} FAILED: {e}")
        });
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    for p in programs(&o) {
        match bench_program(&p, &env, &mut detail) {
            Ok(rows) => rows.iter().for_each(|r| emit(out, Ok(format_row(r)))),
            Err(e) => {
                if p.row == "anon_touch" {
                    emit(out, Err(("anon_total", "see anon_touch".into())));
                }
                emit(out, Err((p.row, e)));
            }
        }
    }
    let exec = bench_exec(&o, &env, &mut detail);
    emit(out, exec.map(|r| format_row(&r)).map_err(|e| ("exec", e)));
    let cold = bench_cold_start(&o, &env);
    emit(
        out,
        cold.map(|r| format_row(&r)).map_err(|e| ("cold_start", e)),
    );
    text.clear();
    if o.count {
        text += "\nring-0 instructions (KVM single-step; separate runs with small counts):\n";
        text += &detail;
    }
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
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&four, 50.0), 2.0);
        assert_eq!(percentile(&four, 99.0), 4.0);
    }

    #[test]
    fn summaries_sort_their_input() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 3.0,
                p99: 5.0,
                count: 5
            }
        );
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn program_output_is_parsed() {
        let out = parse_output("sample 10\nsample 20\n\ntotal 300 2\nminflt 2\n").unwrap();
        assert_eq!(
            out,
            ProgramOutput {
                samples: vec![10, 20],
                total: Some((300, 2)),
                minflt: Some(2),
            }
        );
        let guest = parse_output("total 1 1\nminflt -1\n").unwrap();
        assert_eq!(guest.minflt, None);
    }

    #[test]
    fn bad_program_output_is_refused_with_the_line() {
        let e = parse_output("sample 10\nhello\ntotal 1 1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("hello"), "{e}");
        let e = parse_output("sample x\ntotal 1 1\n").unwrap_err();
        assert!(e.contains("bad number \"x\""), "{e}");
        assert!(parse_output("sample 1\n")
            .unwrap_err()
            .contains("no `total`"));
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
        assert!(parse_args(&args(&["--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
    }

    fn rec(kind: u32, aux: u32, tsc: u64, a0: u64) -> Record {
        Record {
            kind,
            aux,
            tsc,
            a: [a0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn faults_are_counted_between_the_markers() {
        let m = MARKER_SYSCALL as u32;
        let records = [
            rec(kind::FAULT, 0, 1, 0),
            rec(kind::SYSCALL_ENTER, m, 2, 0),
            rec(kind::FAULT, 0, 3, 0),
            rec(kind::SYSCALL_ENTER, 39, 4, 0),
            rec(kind::FAULT, 0, 5, 0),
            rec(kind::SYSCALL_ENTER, m, 6, 0),
            rec(kind::FAULT, 0, 7, 0),
        ];
        assert_eq!(faults_in_window(&records).map(|f| f.len()), Some(2));
        assert_eq!(faults_in_window(&records).unwrap()[0].tsc, 3);
        assert_eq!(faults_in_window(&records[..3]), None);
    }

    #[test]
    fn exec_time_runs_from_start_to_enter_user() {
        let records = [
            rec(kind::EXEC_PHASE, 0, 100, exec_phase::START),
            rec(kind::EXEC_PHASE, 0, 150, exec_phase::ELF_CHECKED),
            rec(kind::FAULT, 0, 160, 0),
            rec(kind::EXEC_PHASE, 0, 400, exec_phase::ENTER_USER),
        ];
        assert_eq!(exec_cycles(&records), vec![300]);
        assert_eq!(exec_cycles(&records[1..]), Vec::<u64>::new());
    }

    #[test]
    fn cycles_convert_with_the_tsc_frequency() {
        assert_eq!(cycles_to_us(2_000.0, 2_000_000), 1.0);
    }

    #[test]
    fn rust_symbols_are_demangled() {
        assert_eq!(
            demangle("_ZN12guest_kernel4boot12exec_initial17h0123456789abcdefE"),
            "guest_kernel::boot::exec_initial"
        );
        assert_eq!(
            demangle("_ZN12guest_kernel2mm5fault45_$LT$impl$u20$guest_kernel..mm..space..Mm$GT$17handle_page_fault17h0123456789abcdefE"),
            "guest_kernel::mm::fault::<impl guest_kernel::mm::space::Mm>::handle_page_fault"
        );
        assert_eq!(demangle("trap_stub_14"), "trap_stub_14");
        assert_eq!(demangle("_ZN3bad"), "_ZN3bad");
    }

    #[test]
    fn the_embedded_kernel_has_the_symbols_stepping_needs() {
        let map = KernelMap::new(loader::GUEST_KERNEL).unwrap();
        assert!(map.stubs.iter().any(|s| s.2 == 14));
        assert!(map.stubs.iter().any(|s| s.2 == 0x80));
        assert!(map.trap_common.is_some() && map.run_user.is_some());
        let (pf, _, _) = *map.stubs.iter().find(|s| s.2 == 14).unwrap();
        assert_eq!(map.stub_vector(pf + 2), Some(14));
        assert_eq!(map.stub_vector(0x40_0000), None);
    }

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
