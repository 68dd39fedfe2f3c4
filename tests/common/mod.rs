//! Shared support for vmrun's integration tests: skipping without KVM,
//! running a program under `vmrun` and natively on the host (with a timeout
//! and optional standard input), and checking exit statuses and vmrun's
//! Linux-style "Segmentation fault at ..." line.
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// An empty argument list, for programs run without arguments.
pub const NO_ARGS: [&str; 0] = [];

/// How long one program may run before the test kills it and fails
/// (seconds; override with VMRUN_TEST_TIMEOUT).
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// True if /dev/kvm can be opened read-write. Otherwise prints a loud
/// `SKIPPED:` line on stderr, and the test should return at once; the test
/// binary then says, after the harness's closing "test result" line, how
/// many of its tests did not run.
pub fn require_kvm() -> bool {
    match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: /dev/kvm is not available ({e}); this test needs KVM");
            count_kvm_skip();
            false
        }
    }
}

/// True if every one of `programs` exists on this host. Otherwise prints a
/// `SKIPPED:` line (the SVM lane's minimal root file system lacks most
/// host programs), and the test should return at once.
pub fn require_programs(programs: &[&str]) -> bool {
    match programs.iter().find(|p| !Path::new(p).exists()) {
        None => true,
        Some(p) => {
            eprintln!("SKIPPED: {p} is not on this host; this test runs it");
            false
        }
    }
}

/// Tests of this binary that did not run for want of /dev/kvm.
static KVM_SKIPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_kvm_skip() {
    use std::sync::atomic::Ordering;
    if KVM_SKIPS.fetch_add(1, Ordering::SeqCst) == 0 {
        // SAFETY: atexit only records a plain function pointer; the
        // function reads an atomic and writes to stderr, both valid at exit.
        unsafe { libc::atexit(report_kvm_skips) };
    }
}

/// Runs at exit, after the harness's summary: a test that returned early
/// counts as "ok" there, so say how many did not run.
extern "C" fn report_kvm_skips() {
    let skipped = KVM_SKIPS.load(std::sync::atomic::Ordering::SeqCst);
    let _ = writeln!(
        std::io::stderr(),
        "\nWARNING: {skipped} KVM tests of {} did not run: /dev/kvm is not available \
         (they count as passed above)\n",
        std::env::args().next().unwrap_or_default()
    );
}

/// The built guest program `name` from the vmrun-images crate.
pub fn image(name: &str) -> PathBuf {
    vmrun_images::path(name)
}

/// A `vmrun` command with the given arguments (options, PROGRAM, its args).
///
/// Every program the suite runs is run in check mode: the host walks the
/// guest's page tables at exec and at exit and checks them against its VMAs
/// and frame accounting, and any violation fails the test (exit 125).
pub fn vmrun_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_vmrun"));
    command.arg("--check").args(args);
    command
}

/// A command that runs `program` natively on the host.
pub fn native_command<I, S>(program: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Runs `vmrun ARGS...` with empty standard input.
pub fn vmrun<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(vmrun_command(args), b"")
}

/// Runs `program ARGS...` natively with empty standard input.
pub fn native<I, S>(program: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(native_command(program, args), b"")
}

/// Runs `command` to completion feeding it `stdin`, collecting its output;
/// kills it and panics if it outlives the timeout.
pub fn run(mut command: Command, stdin: &[u8]) -> Output {
    let description = format!("{command:?}");
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A program a test has just written can be busy for a moment: another
    // test thread that forks while the file is open for writing holds a
    // writable descriptor of it until its child execs (ETXTBSY).
    let mut busy = 0;
    let mut child = loop {
        match command.spawn() {
            Ok(child) => break child,
            Err(e) if e.raw_os_error() == Some(26) && busy < 100 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start {description}: {e}"),
        }
    };
    let feeder = feed(&mut child, stdin.to_vec());
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_with_timeout(&mut child, &description);
    // The program may exit without reading all its input: a broken pipe is fine.
    let _ = feeder.join();
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

/// Runs `command` with empty standard input and the given stdout and
/// stderr (a file such as /dev/full, a closed pipe...), returning its
/// status; kills it and panics if it outlives the timeout.
pub fn status_with(mut command: Command, stdout: Stdio, stderr: Stdio) -> ExitStatus {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    wait_with_timeout(&mut child, &description)
}

/// Runs `command` as `command | head -c LIMIT` would: reads the first
/// `limit` bytes of its stdout, then closes the pipe, so that its next
/// write meets a reader that is gone. The Output holds those bytes, all
/// of stderr and the status.
pub fn run_into_closed_pipe(mut command: Command, limit: usize) -> Output {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let stderr = drain(child.stderr.take());
    let mut head = vec![0; limit];
    let mut pipe = child.stdout.take().expect("stdout is piped");
    pipe.read_exact(&mut head)
        .unwrap_or_else(|e| panic!("{description}: reading {limit} bytes: {e}"));
    drop(pipe);
    let status = wait_with_timeout(&mut child, &description);
    Output {
        status,
        stdout: head,
        stderr: join(stderr),
    }
}

/// /dev/full opened for writing: every write fails with ENOSPC.
pub fn dev_full() -> Stdio {
    OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("opening /dev/full")
        .into()
}

fn feed(child: &mut Child, input: Vec<u8>) -> JoinHandle<()> {
    let mut pipe = child.stdin.take().expect("stdin is piped");
    thread::spawn(move || {
        let _ = pipe.write_all(&input);
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    let mut pipe = pipe.expect("output is piped");
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)
            .expect("reading a child's output");
        bytes
    })
}

fn join(reader: JoinHandle<Vec<u8>>) -> Vec<u8> {
    reader.join().expect("output reader thread")
}

fn wait_with_timeout(child: &mut Child, description: &str) -> ExitStatus {
    let timeout = timeout();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} still running after {timeout:?}: killed");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn timeout() -> Duration {
    let secs = std::env::var("VMRUN_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// The exit status as a shell reports it: the exit code, or 128 + signal.
pub fn shell_status(status: &ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => panic!("{status:?} has neither an exit code nor a signal"),
    }
}

/// A readable account of a run, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        shell_status(&output.status),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that the two runs are alike byte for byte: stdout,
/// stderr and the shell-style exit status.
pub fn assert_same(what: &str, native: &Output, guest: &Output) {
    let same = native.stdout == guest.stdout
        && native.stderr == guest.stderr
        && shell_status(&native.status) == shell_status(&guest.status);
    assert!(
        same,
        "{what}: vmrun differs from the native run\n=== native ===\n{}\n=== vmrun ===\n{}",
        describe(native),
        describe(guest)
    );
}

/// Asserts the shell-style exit status of a run.
pub fn assert_status(output: &Output, expected: i32) {
    assert_eq!(
        shell_status(&output.status),
        expected,
        "unexpected exit status:\n{}",
        describe(output)
    );
}

/// Asserts a clean run: exit status 0, exactly `stdout`, nothing on stderr.
pub fn assert_clean_exit(output: &Output, stdout: &[u8]) {
    assert_status(output, 0);
    assert_eq!(
        output.stdout,
        stdout,
        "unexpected stdout:\n{}",
        describe(output)
    );
    assert!(
        output.stderr.is_empty(),
        "unexpected stderr:\n{}",
        describe(output)
    );
}

/// Asserts that stderr contains `needle`.
pub fn assert_stderr_contains(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(needle),
        "stderr lacks {needle:?}:\n{}",
        describe(output)
    );
}

/// vmrun's report of a fatal page fault:
/// `Segmentation fault at 0x<addr> ip 0x<ip> (error 0x<code>)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegvReport {
    /// The faulting address (CR2).
    pub addr: u64,
    /// The user instruction pointer.
    pub ip: u64,
    /// The page-fault error code (bit 0 present, 1 write, 2 user).
    pub error: u64,
}

/// Page-fault error code bits, as in the SDM and Linux's `X86_PF_*`.
pub const PF_PRESENT: u64 = 1;
pub const PF_WRITE: u64 = 2;
pub const PF_USER: u64 = 4;

impl SegvReport {
    /// Finds and parses the first report line in `stderr`.
    pub fn find(stderr: &[u8]) -> Option<SegvReport> {
        String::from_utf8_lossy(stderr)
            .lines()
            .find_map(Self::parse_line)
    }

    /// Parses one line that contains a report, anywhere in the line.
    pub fn parse_line(line: &str) -> Option<SegvReport> {
        let start = line.find("Segmentation fault at ")?;
        let rest = &line[start + "Segmentation fault at ".len()..];
        let (addr, rest) = hex(rest)?;
        let (ip, rest) = hex(rest.strip_prefix(" ip ")?)?;
        let (error, rest) = hex(rest.strip_prefix(" (error ")?)?;
        rest.starts_with(')')
            .then_some(SegvReport { addr, ip, error })
    }
}

/// Parses `0x` and lowercase hex digits at the start of `s`.
fn hex(s: &str) -> Option<(u64, &str)> {
    let digits = s.strip_prefix("0x")?;
    let len = digits
        .bytes()
        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .count();
    let value = u64::from_str_radix(&digits[..len], 16).ok()?;
    Some((value, &digits[len..]))
}

/// Asserts death by SIGSEGV under vmrun: status 139 and a report line.
pub fn assert_segv(output: &Output) -> SegvReport {
    assert_status(output, 139);
    SegvReport::find(&output.stderr).unwrap_or_else(|| {
        panic!(
            "no \"Segmentation fault at ...\" line:\n{}",
            describe(output)
        )
    })
}

/// The address a fatal mode of mmap_test announced with "touching 0x...".
pub fn announced_address(stdout: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("touching "))
        .expect("a \"touching\" line");
    let (addr, rest) = hex(line).expect("a hex address after \"touching\"");
    assert!(rest.is_empty(), "junk after the address in {line:?}");
    addr
}

/// Run `vm` to its end with the host's stdio `io`, handing its trace
/// records to `records`; the report, after checking that the program
/// The host's stdio for a library run (`vmm::vm::Vm` with this as its
/// `HostIo`): stdin from `input`, or from the test process's own fd 0 if
/// `from_stdin`, the reads that reach it counted; what the program writes
/// kept by stream (fd 1 in `out`, every other in `err`).
#[derive(Default)]
pub struct Captured {
    pub input: Vec<u8>,
    pub from_stdin: bool,
    pub reads: u64,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

impl vmm::hypercall::HostIo for Captured {
    fn write(&mut self, fd: u64, data: &[u8]) -> std::io::Result<()> {
        match fd {
            1 => self.out.extend_from_slice(data),
            _ => self.err.extend_from_slice(data),
        }
        Ok(())
    }
    fn read(&mut self, _fd: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        if self.from_stdin {
            // SAFETY: a read of fd 0 into the buffer given.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(n as usize);
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }
    fn random(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(7);
        Ok(())
    }
    fn log(&mut self, _line: &[u8]) {}
}

/// exited with status 0 (`what` the program's stderr for the message).
pub fn run_to_clean_exit<H: vmm::hypercall::HostIo>(
    vm: &mut vmm::vm::Vm,
    io: &mut H,
    records: &mut dyn FnMut(&[vmrun_contract::trace::Record]),
    stderr: impl Fn(&H) -> String,
) -> vmm::vm::RunReport {
    let report = loop {
        match vm.resume(io, records).unwrap() {
            vmm::vm::Event::Finished(end) => break vm.report(end),
            _ => continue,
        }
    };
    assert!(
        matches!(
            report.outcome,
            vmm::vm::RunEnd::Guest(vmm::hypercall::Outcome::Exited(0))
        ),
        "{:?}: {}",
        report.outcome,
        stderr(io)
    );
    report
}
