//! Running one workload program: in the guest (its stdout captured, its
//! trace records collected), in the guest under single-step (through
//! [`count_ring0`]), and natively on the host as a child process.

use super::kernel_map::KernelMap;
use super::step::{count_ring0, StepProfile};
use crate::hypercall::{HostIo, Outcome};
use crate::vm::{Event, Observe, RunEnd, Vm, VmConfig};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use vmrun_contract::trace::Record;

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
pub(super) struct GuestRun {
    pub(super) stdout: String,
    pub(super) page_faults: u64,
    pub(super) records: Vec<Record>,
    pub(super) tsc_khz: u64,
}

fn guest_config(program: &Path, args: &[String], mem: u64, observe: Observe) -> VmConfig {
    let mut config = VmConfig {
        mem_size: mem,
        observe,
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

/// Single-step one program run in the guest.
pub(super) fn step_program(
    program: &Path,
    args: &[String],
    mem: u64,
    map: &KernelMap,
) -> Result<StepProfile, String> {
    let config = guest_config(program, args, mem, Observe::default());
    let mut vm = Vm::new(&config).map_err(|e| e.to_string())?;
    let mut io = Capture::default();
    let (vcpu, ram, fs) = vm.vcpu_and_ram();
    count_ring0(vcpu, ram, &mut io, fs, map, 50_000_000)
        .map_err(|e| format!("{}: {e}", program.display()))
}
