//! Running one workload program: in the guest (its stdout captured, its
//! trace records collected), in the guest under single-step (through
//! [`count_ring0`]), and natively on the host as a child process (also
//! timed from just before its execve to a TSC it prints).

use super::kernel_map::KernelMap;
use super::step::{count_ring0, StepProfile};
use crate::hypercall::{HostIo, Outcome};
use crate::vm::{Event, FaultSize, Observe, RunEnd, Vm, VmConfig};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use vmrun_contract::trace::Record;

/// Captures the guest program's stdout and stderr, and gives it `stdin`.
#[derive(Default)]
pub struct Capture {
    /// Everything written to fd 1.
    pub stdout: Vec<u8>,
    /// Everything written to fd 2 (and guest log lines).
    pub stderr: Vec<u8>,
    /// What fd 0 reads, then end of file.
    pub stdin: Vec<u8>,
    /// How much of `stdin` was read.
    pub read: usize,
}

impl HostIo for Capture {
    fn write(&mut self, fd: u64, data: &[u8]) -> std::io::Result<()> {
        match fd {
            1 => self.stdout.extend_from_slice(data),
            _ => self.stderr.extend_from_slice(data),
        }
        Ok(())
    }
    fn read(&mut self, fd: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = match fd {
            0 => &self.stdin[self.read..],
            _ => &[],
        };
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.read += n;
        Ok(n)
    }
    fn random(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
    fn log(&mut self, _line: &[u8]) {}
}

/// One program run in the guest.
pub(super) struct GuestRun {
    pub(super) stdout: String,
    pub(super) page_faults: u64,
    pub(super) records: Vec<Record>,
    pub(super) tsc_khz: u64,
    /// Calls the VMM answered from the syscall trampoline (`fastcall`).
    pub(super) fast_calls: u64,
}

fn guest_config(
    program: &Path,
    args: &[String],
    mem: u64,
    observe: Observe,
    fault_size: FaultSize,
) -> VmConfig {
    // The runs keep the program's output in memory, as a pipe would
    // (not wherever vmrun's own stdout goes: a file there would send the
    // program's fstat of its stdout to the host and change the counts).
    let pipe = libc::S_IFIFO | 0o600;
    let mut config = VmConfig {
        mem_size: mem,
        observe,
        fault_size,
        stdio_modes: Some([pipe, pipe, pipe, 0]),
        ..VmConfig::for_program(program)
    };
    config.argv.extend(args.iter().map(OsString::from));
    config
}

pub(super) fn run_guest(
    program: &Path,
    args: &[String],
    mem: u64,
    observe: Observe,
) -> Result<GuestRun, String> {
    run_guest_sized(program, args, mem, observe, FaultSize::default())
}

/// [`run_guest`] with a `--fault-size` policy.
pub(super) fn run_guest_sized(
    program: &Path,
    args: &[String],
    mem: u64,
    observe: Observe,
    fault_size: FaultSize,
) -> Result<GuestRun, String> {
    let config = guest_config(program, args, mem, observe, fault_size);
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
        fast_calls: report.timings.fast_calls,
    })
}

pub(super) fn run_native(program: &Path, args: &[String]) -> Result<String, String> {
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

/// Wall time of one native fork+exec+wait of `program`, in microseconds.
pub(super) fn time_native(program: &Path) -> Result<f64, String> {
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

/// The TSC, fenced as `images/c/bench.h` reads it.
fn tsc() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: LFENCE and RDTSC have no memory effects; every x86-64 CPU
    // has both (SSE2 is part of the baseline).
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

/// Run `program` natively with the TSC read in the child just before its
/// execve, written to its stdout as `exec <tsc>` ahead of what the program
/// prints; the program's stdout (that line first).
pub(super) fn run_native_exec_stamped(program: &Path) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.env_clear().stdin(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before execve and only
    // formats into a stack buffer and calls write(2), which is
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            let mut line = *b"exec 00000000000000000000\n";
            let mut t = tsc();
            for digit in line[5..25].iter_mut().rev() {
                *digit = b'0' + (t % 10) as u8;
                t /= 10;
            }
            let n = libc::write(1, line.as_ptr().cast(), line.len());
            if n != line.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!("{} natively: {}", program.display(), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Single-step one program run in the guest, with `env` as its
/// environment (NAME=VALUE strings).
pub(super) fn step_program(
    program: &Path,
    args: &[String],
    env: &[String],
    mem: u64,
    map: &KernelMap,
) -> Result<StepProfile, String> {
    step_program_sized(program, args, env, mem, map, FaultSize::default())
}

/// [`step_program`] with a `--fault-size` policy.
pub(super) fn step_program_sized(
    program: &Path,
    args: &[String],
    env: &[String],
    mem: u64,
    map: &KernelMap,
    fault_size: FaultSize,
) -> Result<StepProfile, String> {
    step_program_with(program, args, env, mem, map, fault_size, Vec::new())
}

/// [`step_program_sized`] with `stdin` for the program to read.
pub(super) fn step_program_with(
    program: &Path,
    args: &[String],
    env: &[String],
    mem: u64,
    map: &KernelMap,
    fault_size: FaultSize,
    stdin: Vec<u8>,
) -> Result<StepProfile, String> {
    let mut config = guest_config(program, args, mem, Observe::default(), fault_size);
    config.env.extend(env.iter().map(OsString::from));
    let mut vm = Vm::new(&config).map_err(|e| e.to_string())?;
    let mut io = Capture {
        stdin,
        ..Default::default()
    };
    let (vcpu, ram, fs) = vm.vcpu_and_ram();
    count_ring0(vcpu, ram, &mut io, fs, map, 50_000_000)
        .map_err(|e| format!("{}: {e}", program.display()))
}
