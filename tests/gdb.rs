//! `vmrun --gdb`: the real gdb (Debian's, in batch mode) drives a program
//! under vmrun's stub: breakpoints, stepping, variables read and written,
//! watchpoints, a segfault's stop, detaching, and the monitor commands
//! against `--maps` and `--pagetables` of the same stop. Each test listens
//! on a free port (or a Unix socket in its own directory), so the tests
//! run in parallel.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const GDB: &str = "/usr/bin/gdb";

/// Whether the test can run: KVM and gdb (the SVM lane carries Debian's
/// gdb-minimal as /usr/bin/gdb).
fn ready() -> bool {
    require_kvm() && require_programs(&[GDB])
}

/// What one debugged run left: gdb's output, and vmrun's.
struct Debugged {
    gdb: Output,
    vmrun: Output,
}

impl Debugged {
    fn gdb_text(&self) -> String {
        String::from_utf8_lossy(&self.gdb.stdout).into_owned()
            + &String::from_utf8_lossy(&self.gdb.stderr)
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.vmrun.stdout).into_owned()
    }

    fn assert_gdb_says(&self, needle: &str) {
        let text = self.gdb_text();
        assert!(
            text.contains(needle),
            "gdb did not say {needle:?}:\n{text}\nvmrun: {}",
            describe(&self.vmrun)
        );
    }
}

/// Where the stub listens.
enum Via {
    Port,
    Unix,
}

/// `vmrun --gdb` running `gdb_target ARGS`, waiting for gdb.
struct Stub {
    program: std::path::PathBuf,
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    /// What gdb's `target remote` takes.
    target: String,
    dir: std::path::PathBuf,
}

impl Stub {
    fn start(args: &[&str], via: Via) -> Stub {
        Stub::start_program(image("gdb_target"), args, via)
    }

    fn start_program(program: std::path::PathBuf, args: &[&str], via: Via) -> Stub {
        let dir = tempdir();
        let socket = dir.join("gdb.sock");
        let listen = match via {
            Via::Port => "0".to_string(),
            Via::Unix => format!("unix:{}", socket.display()),
        };
        let mut command = vmrun_command(["--gdb", &listen]);
        command.arg(&program).args(args);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmrun");
        let (stderr, target) = watch_stderr(&mut child);
        let target = match target.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => match via {
                Via::Port => format!("127.0.0.1:{}", line.rsplit(':').next().unwrap_or("").trim()),
                Via::Unix => socket.display().to_string(),
            },
            Err(_) => {
                let _ = child.kill();
                panic!("vmrun did not wait for gdb: {}", stderr.join().unwrap());
            }
        };
        Stub {
            program,
            child,
            stderr,
            target,
            dir,
        }
    }

    /// gdb in batch mode on the program, attached, then running `cmds`.
    fn gdb(&self, cmds: &[&str]) -> Command {
        // gdb writes what the stub's monitor commands print to stderr: one
        // stream keeps it in order with the rest. `sh` from PATH: the SVM
        // lane has busybox's, and no /bin/sh.
        let mut gdb = Command::new("sh");
        gdb.args(["-c", "exec \"$0\" \"$@\" 2>&1", GDB])
            .args(["-batch", "-nx", "-ex", "set pagination off"])
            .arg(&self.program)
            .args(["-ex", &format!("target remote {}", self.target)]);
        for c in cmds {
            gdb.args(["-ex", c]);
        }
        gdb
    }

    /// Wait for vmrun to end after gdb did.
    fn finish(mut self, gdb: Output) -> Debugged {
        let status = wait_or_kill(&mut self.child);
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let Some(status) = status else {
            panic!(
                "vmrun did not end after gdb did\ngdb: {}\nvmrun's stderr:\n{}",
                describe(&gdb),
                self.stderr.join().unwrap()
            );
        };
        Debugged {
            gdb,
            vmrun: Output {
                status,
                stdout,
                stderr: self.stderr.join().unwrap().into_bytes(),
            },
        }
    }
}

/// Run `gdb_target ARGS` under `vmrun --gdb`, attach gdb with the
/// commands `cmds` (each an `-ex`), and wait for both to end.
fn debug(args: &[&str], via: Via, cmds: &[&str]) -> Debugged {
    let stub = Stub::start(args, via);
    let gdb = run(stub.gdb(cmds), b"");
    stub.finish(gdb)
}

/// Read vmrun's stderr on a thread: the "waiting for gdb" line is sent on
/// the channel, and all of it is returned at the end.
fn watch_stderr(child: &mut Child) -> (std::thread::JoinHandle<String>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    let handle = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("waiting for gdb on") {
                let addr = line.split(" on ").nth(1).unwrap_or("").to_string();
                let addr = addr.split(' ').next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    (handle, rx)
}

/// vmrun's status, or None if it did not end within two minutes (it is
/// killed then).
fn wait_or_kill(child: &mut Child) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for vmrun") {
            return Some(status);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tempdir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("vmrun-gdb-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The program's line natively.
fn native_line() -> String {
    let out = native(&image("gdb_target"), NO_ARGS);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn break_at_main_step_print_and_set_a_variable() {
    if !ready() {
        return;
    }
    let d = debug(
        &[],
        Via::Port,
        &[
            "break main",
            "continue",
            "next",
            "print local",
            "print counter",
            "step",
            "bt 1",
            "finish",
            "next",
            "print counter",
            "print sum",
            "set var local = 99",
            "continue",
        ],
    );
    d.assert_gdb_says("Breakpoint 1, main (argc=1");
    d.assert_gdb_says("$1 = 42");
    d.assert_gdb_says("$2 = 7");
    d.assert_gdb_says("add (a=42, b=7)");
    // `finish` printed $3 (add's value); counter is not yet assigned.
    d.assert_gdb_says("$4 = 7");
    d.assert_gdb_says("$5 = 49");
    d.assert_gdb_says("[Inferior 1 (process 1) exited normally]");
    assert_eq!(d.stdout(), "local 99 counter 49 sum 49 heap 1\n");
    assert_status(&d.vmrun, 0);
}

#[test]
fn next_steps_over_a_call_and_registers_are_the_programs() {
    if !ready() {
        return;
    }
    let d = debug(
        &[],
        Via::Port,
        &[
            "print $pc == (long)&_start",
            "print $cs",
            "print $ss",
            "break add",
            "continue",
            "print $rdi",
            "print $rsi",
            "finish",
            "stepi",
            "stepi",
            "print $pc > (long)&main",
            "print *(long *)$fs_base == $fs_base && $fs_base != 0",
            "delete",
            "continue",
        ],
    );
    // The first stop is the program's first instruction.
    d.assert_gdb_says("$1 = 1");
    // User-mode selectors, as Linux shows them.
    d.assert_gdb_says("$2 = 51");
    d.assert_gdb_says("$3 = 43");
    // The arguments of add(42, 7) in the System V registers.
    d.assert_gdb_says("$4 = 42");
    d.assert_gdb_says("$5 = 7");
    d.assert_gdb_says("Value returned is $6 = 49");
    d.assert_gdb_says("$7 = 1");
    // glibc's thread control block starts with a pointer to itself.
    d.assert_gdb_says("$8 = 1");
    assert_eq!(d.stdout(), native_line());
    assert_status(&d.vmrun, 0);
}

#[test]
fn detach_at_the_first_instruction_runs_to_the_normal_exit() {
    if !ready() {
        return;
    }
    let d = debug(&[], Via::Unix, &["info registers rip", "detach"]);
    d.assert_gdb_says("rip");
    assert_eq!(d.stdout(), native_line());
    assert_status(&d.vmrun, 0);
}

#[test]
fn software_watchpoint_stops_where_the_global_changes() {
    if !ready() {
        return;
    }
    let d = debug(
        &[],
        Via::Port,
        &[
            "break main",
            "continue",
            "set can-use-hw-watchpoints 0",
            "watch counter",
            "continue",
            "delete",
            "continue",
        ],
    );
    d.assert_gdb_says("Old value = 7");
    d.assert_gdb_says("New value = 49");
    assert_eq!(d.stdout(), native_line());
}

#[test]
fn hardware_watchpoint_is_refused_with_gdbs_error() {
    if !ready() {
        return;
    }
    let d = debug(
        &[],
        Via::Port,
        &["break main", "continue", "watch counter", "continue"],
    );
    d.assert_gdb_says("Could not insert hardware watchpoint");
}

#[test]
fn segfault_stops_at_the_faulting_instruction_then_kills() {
    if !ready() {
        return;
    }
    let d = debug(
        &["segv"],
        Via::Port,
        &[
            "continue",
            "x/i $pc",
            "print $rax",
            "monitor siginfo",
            "continue",
        ],
    );
    d.assert_gdb_says("pid 1 stopped: signal 11, fault address 0x10");
    d.assert_gdb_says("Program received signal SIGSEGV, Segmentation fault.");
    d.assert_gdb_says("in crash () at");
    d.assert_gdb_says("movl   $0x1,(%rax)");
    d.assert_gdb_says("$1 = 16");
    d.assert_gdb_says("Program terminated with signal SIGSEGV");
    let native = native(&image("gdb_target"), ["segv"]);
    assert_eq!(d.vmrun.stdout, native.stdout);
    assert_eq!(shell_status(&d.vmrun.status), 139);
}

/// The lines of `text` between the line containing `from` and the next
/// one containing `to` (or the end).
fn section(text: &str, from: &str, to: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.contains(from))
        .skip(1)
        .take_while(|l| !l.contains(to))
        .map(str::to_string)
        .collect()
}

#[test]
fn monitor_maps_and_pagetables_match_the_inspector_at_the_same_stop() {
    if !ready() {
        return;
    }
    // The segfault's stop in gdb is the state --maps and --pagetables show
    // at the exit the fault causes.
    let d = debug(
        &["segv"],
        Via::Port,
        &[
            "continue",
            "echo ==maps\\n",
            "monitor maps",
            "echo ==tables\\n",
            "monitor pagetables",
            "echo ==end\\n",
            "continue",
        ],
    );
    let program = image("gdb_target");
    let mut command = vmrun_command(["--stats", "--maps", "--pagetables"]);
    command.arg(&program).arg("segv");
    let inspected = run(command, b"");
    let seen = String::from_utf8_lossy(&inspected.stderr).into_owned();
    let gdb = d.gdb_text();
    let maps = section(&gdb, "==maps", "==tables");
    assert!(!maps.is_empty(), "{gdb}");
    assert_eq!(maps, section(&seen, "maps at exit", "page tables at exit"));
    let tree = section(&gdb, "page tables (pid 1", "user mappings");
    assert_eq!(tree, section(&seen, "page tables at exit", "user mappings"));
    let mappings = section(&gdb, "user mappings (pid 1", "==end");
    let expected = section(&seen, "user mappings at exit", "page faults ");
    assert!(!mappings.is_empty(), "{gdb}");
    assert_eq!(mappings, expected);
}

#[test]
fn monitor_pt_check_stats_and_help() {
    if !ready() {
        return;
    }
    let d = debug(
        &[],
        Via::Port,
        &[
            "break main",
            "continue",
            "monitor help",
            "eval \"monitor pt %p\", &counter",
            "monitor pt 0x10",
            "monitor check",
            "monitor stats",
            "monitor ps",
            "monitor frobnicate",
            "continue",
        ],
    );
    for command in ["maps", "pt ADDR", "pagetables", "stats", "check"] {
        d.assert_gdb_says(&format!("monitor {command}"));
    }
    let gdb = d.gdb_text();
    let walk: Vec<&str> = gdb
        .lines()
        .skip_while(|l| !l.starts_with("walk of 0x4"))
        .take(6)
        .collect();
    assert!(
        walk[1].contains("PML4[") && walk[1].contains(" P W U"),
        "{gdb}"
    );
    assert!(walk[4].contains("PT  ["), "{gdb}");
    assert!(walk[5].contains("(4 KiB page)"), "{gdb}");
    d.assert_gdb_says("walk of 0x10 from CR3");
    d.assert_gdb_says("not present: an access faults");
    d.assert_gdb_says("check: ok");
    d.assert_gdb_says("page faults");
    d.assert_gdb_says("pid 1 CR3");
    d.assert_gdb_says("unknown monitor command 'frobnicate'");
    assert_eq!(d.stdout(), native_line());
}

#[test]
fn interrupt_stops_a_spinning_program_where_it_spins() {
    if !ready() {
        return;
    }
    let stub = Stub::start(&["spin"], Via::Port);
    let log = stub.dir.join("gdb.log");
    let mut gdb = stub.gdb(&[
        "continue",
        "print spinning",
        "set var spinning = 0",
        "continue",
    ]);
    let file = std::fs::File::create(&log).expect("gdb log");
    let mut child = gdb
        .stdin(Stdio::null())
        .stdout(file)
        .spawn()
        .expect("start gdb");
    // gdb's Ctrl-C is a SIGINT to gdb, which sends the stub an interrupt.
    // Send it until gdb shows the stop (the stub takes it at the program's
    // next timer tick), with time between for the stop to arrive.
    let start = Instant::now();
    let seen = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("SIGINT, Interrupt")
    };
    while !seen(&log) && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(3));
        if !seen(&log) {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
    }
    let status = wait_or_kill(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let Some(status) = status else {
        panic!("gdb did not end:\n{text}");
    };
    let gdb = Output {
        status,
        stdout: text.into_bytes(),
        stderr: vec![],
    };
    let d = stub.finish(gdb);
    d.assert_gdb_says("Program received signal SIGINT, Interrupt.");
    // The spin loop's line (gdb prints its text where the source file is
    // at hand, and the SVM lane's initramfs has no sources).
    let line = include_str!("../images/c/gdb_target.c")
        .lines()
        .position(|l| l.trim() == "while (spinning)")
        .expect("the spin loop")
        + 1;
    d.assert_gdb_says("in main (argc=2, ");
    d.assert_gdb_says(&format!("gdb_target.c:{line}\n"));
    d.assert_gdb_says("$1 = 1");
    d.assert_gdb_says("[Inferior 1 (process 1) exited normally]");
    assert_eq!(d.stdout(), native_line());
    assert_status(&d.vmrun, 0);
}

#[test]
fn kill_ends_the_run_as_sigkill_does() {
    if !ready() {
        return;
    }
    let d = debug(&[], Via::Port, &["break main", "continue", "kill"]);
    d.assert_gdb_says("Kill the program being debugged?");
    assert_eq!(d.stdout(), "");
    assert_eq!(shell_status(&d.vmrun.status), 137);
}

#[test]
fn dynamic_program_stops_at_the_interpreters_entry() {
    let echo = std::path::Path::new("/bin/echo");
    if !ready() || !require_programs(&["/bin/echo"]) {
        return;
    }
    let stub = Stub::start_program(echo.to_path_buf(), &["hi"], Via::Port);
    let gdb = run(
        stub.gdb(&[
            "x/i $pc",
            "stepi",
            "stepi",
            "info symbol $pc",
            "set breakpoint pending on",
            "break write",
            "continue",
            "print $rdx",
            "info sharedlibrary",
            "continue",
        ]),
        b"",
    );
    let d = stub.finish(gdb);
    d.assert_gdb_says("in _start () from /lib64/ld-linux-x86-64.so.2");
    d.assert_gdb_says("_dl_start");
    // The auxiliary vector leads gdb to libc; a breakpoint in its code
    // (a page the program had not touched yet) stops the write of "hi\n".
    d.assert_gdb_says("Breakpoint 1, ");
    d.assert_gdb_says("write (fd=1");
    d.assert_gdb_says("$1 = 3");
    d.assert_gdb_says("libc.so.6");
    d.assert_gdb_says("[Inferior 1 (process 1) exited normally]");
    assert_eq!(d.stdout(), "hi\n");
    assert_status(&d.vmrun, 0);
}

#[test]
fn processes_are_threads_with_their_own_memory_and_registers() {
    if !ready() {
        return;
    }
    let d = debug(
        &["fork"],
        Via::Port,
        &[
            "break child_work",
            "continue",
            "info threads",
            "next",
            "print counter",
            "thread 1",
            "print counter",
            "bt 2",
            "monitor ps",
            "monitor maps 2",
            "continue",
        ],
    );
    // The child (pid 2) stops at the breakpoint in the text it shares
    // with its parent; the parent waits in wait4, its registers where the
    // scheduler saved them.
    d.assert_gdb_says("Thread 2 hit Breakpoint 1, child_work ()");
    d.assert_gdb_says("Thread 1.1");
    d.assert_gdb_says("$1 = 100");
    d.assert_gdb_says("$2 = 49");
    d.assert_gdb_says("in wait4 ()");
    d.assert_gdb_says("in main (argc=2");
    d.assert_gdb_says("pid 2 CR3");
    d.assert_gdb_says("pid 1 CR3");
    d.assert_gdb_says("[heap]");
    d.assert_gdb_says("[Inferior 1 (process 1) exited normally]");
    let native = native(&image("gdb_target"), ["fork"]);
    assert_eq!(d.vmrun.stdout, native.stdout);
    assert_status(&d.vmrun, 0);
}
