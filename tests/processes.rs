//! Processes in the guest: fork with copy-on-write, vfork and posix_spawn,
//! wait and zombies, orphans, pipes and SIGPIPE, signal handlers. Every test
//! runs the same thing natively and under vmrun in the same test and
//! compares exit status, stdout and stderr byte for byte.
//!
//! The shells are Debian's busybox-static (tests that need it say SKIPPED
//! without it) and the host's dynamically linked bash and dash; the C
//! programs are `proc_test`, `signal_test` and the libc-free `fork_loop`
//! (images/c/). No test relies on preemption: every process that waits for
//! another blocks in the kernel (a pipe, wait), none spins.

mod common;

use common::*;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The one environment both runs get: the native run starts from an empty
/// environment with these, the guest from `vmrun -i -e ...` with the same.
const ENV: &[(&str, &str)] = &[("PATH", "/usr/bin:/bin"), ("LC_ALL", "C"), ("TZ", "UTC")];

const BUSYBOX: &str = "/bin/busybox";

/// A fresh directory under the system temp dir with two empty working
/// directories, `native/` and `guest/`, one per run. Removed on success,
/// kept (and named on stderr) when the test fails.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "vmrun-processes-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        for dir in ["native", "guest"] {
            fs::create_dir_all(root.join(dir)).expect("creating a scratch directory");
        }
        Scratch { root }
    }

    fn native(&self) -> PathBuf {
        self.root.join("native")
    }

    fn guest(&self) -> PathBuf {
        self.root.join("guest")
    }

    /// Writes `name` holding `bytes` into both working directories.
    fn both(&self, name: &str, bytes: &[u8]) {
        for dir in [self.native(), self.guest()] {
            fs::write(dir.join(name), bytes).expect("writing a fixture");
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "processes test: kept {} for inspection",
                self.root.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// `program args...` natively in `dir` with exactly [`ENV`].
fn native_in(dir: &Path, program: &OsStr, args: &[OsString]) -> Output {
    run(native_command_in(dir, program, args), b"")
}

fn native_command_in(dir: &Path, program: &OsStr, args: &[OsString]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(ENV.iter().copied());
    command
}

/// `vmrun --check -i -e ENV... program args...` in `dir`.
fn guest_in(dir: &Path, program: &OsStr, args: &[OsString]) -> Output {
    run(guest_command_in(dir, program, args), b"")
}

fn guest_command_in(dir: &Path, program: &OsStr, args: &[OsString]) -> Command {
    let mut all: Vec<OsString> = vec!["-i".into()];
    for (k, v) in ENV {
        all.push("-e".into());
        all.push(format!("{k}={v}").into());
    }
    all.push(program.to_os_string());
    all.extend(args.iter().cloned());
    let mut command = vmrun_command(all);
    command.current_dir(dir);
    command
}

/// GNU env, which sets signal dispositions before it execs a program.
const GNU_ENV: &str = "/usr/bin/env";

/// Whether [`GNU_ENV`] takes `--ignore-signal` (coreutils 8.31 on).
fn env_sets_signals() -> bool {
    Command::new(GNU_ENV)
        .args(["--ignore-signal=HUP", "--default-signal=INT", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// [`env_sets_signals`], printing a SKIPPED line when it does not.
fn have_env_signal_options() -> bool {
    let ok = env_sets_signals();
    if !ok {
        eprintln!("SKIPPED: {GNU_ENV} lacks --ignore-signal (coreutils 8.31 or later has it)");
    }
    ok
}

/// `command` started through GNU env with `option` (`--ignore-signal=...`
/// or `--default-signal=...`): the program (vmrun, or the native program)
/// starts with those dispositions whatever this test was started with.
fn via_env(option: &str, command: &Command) -> Command {
    let mut wrapped = Command::new(GNU_ENV);
    wrapped
        .arg(option)
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear()
        .envs(ENV.iter().copied());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// [`same`], both runs started through GNU env with `option` (see
/// [`via_env`]).
fn same_via_env(tag: &str, option: &str, program: &str, args: &[&str]) -> Output {
    let s = Scratch::new(tag);
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let what = format!("env {option} {program} {args:?}");
    let native = run(
        via_env(
            option,
            &native_command_in(&s.native(), program.as_ref(), &args),
        ),
        b"",
    );
    assert_status(&native, 0);
    let guest = run(
        via_env(
            option,
            &guest_command_in(&s.guest(), program.as_ref(), &args),
        ),
        b"",
    );
    assert_same(&what, &native, &guest);
    native
}

/// Runs `program args...` natively in `s.native()` and under vmrun in
/// `s.guest()`, asserts that the native run exited with `status` (so the
/// comparison means something) and that both runs are alike; returns the
/// native run.
fn same_in(s: &Scratch, program: impl AsRef<OsStr>, args: &[&str], status: i32) -> Output {
    let program = program.as_ref();
    let what = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let native = native_in(&s.native(), program, &args);
    assert_status(&native, status);
    let guest = guest_in(&s.guest(), program, &args);
    assert_same(&what, &native, &guest);
    native
}

/// [`same_in`] in a scratch directory of its own, expecting status 0.
fn same(tag: &str, program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    same_in(&Scratch::new(tag), program, args, 0)
}

/// Whether busybox is installed; prints a SKIPPED line when it is not.
fn have_busybox() -> bool {
    let ok = Path::new(BUSYBOX).is_file();
    if !ok {
        eprintln!("SKIPPED: {BUSYBOX} is missing (Debian: apt-get install busybox-static)");
    }
    ok
}

/// `busybox sh -c SCRIPT` natively and under vmrun, compared; returns the
/// native run.
fn busybox_sh(tag: &str, script: &str) -> Output {
    same(tag, BUSYBOX, &["sh", "-c", script])
}

fn have(program: &str) -> bool {
    let ok = Path::new(program).is_file();
    if !ok {
        eprintln!("SKIPPED: {program} is missing");
    }
    ok
}

/// Runs `image mode args...` natively and under vmrun, compared; returns
/// the native run's stdout as text.
fn image_mode(name: &str, args: &[&str]) -> String {
    let native = same(name, image(name), args);
    String::from_utf8(native.stdout).expect("UTF-8 output")
}

fn proc_test(args: &[&str]) -> String {
    image_mode("proc_test", args)
}

fn signal_test(args: &[&str]) -> String {
    image_mode("signal_test", args)
}

// ---------------------------------------------------------------------------
// busybox sh

#[test]
fn busybox_sh_two_stage_pipeline() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh("bb-pipe2", "echo one two | wc -w");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn busybox_sh_three_stage_pipeline() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh("bb-pipe3", "seq 1 1000 | sort -r | head -3");
    assert_eq!(out.stdout, b"999\n998\n997\n");
}

#[test]
fn busybox_sh_command_substitution() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh(
        "bb-subst",
        "x=$(echo hi); echo $x; y=\"$(seq 3 | tr '\\n' ,)\"; echo \"[$y]\"",
    );
    assert_eq!(out.stdout, b"hi\n[1,2,3,]\n");
}

#[test]
fn busybox_sh_subshell_and_pipeline_status() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let script = "(exit 7); echo $?; false | true; echo $?; true | false; echo $?; (exit 5)";
    let out = same_in(
        &Scratch::new("bb-status"),
        BUSYBOX,
        &["sh", "-c", script],
        5,
    );
    assert_eq!(out.stdout, b"7\n0\n1\n");
}

#[test]
fn busybox_sh_background_and_wait() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh(
        "bb-wait",
        "sleep 0.1 & wait; echo waited; (exit 4) & wait $!; echo \"status $?\"",
    );
    assert_eq!(out.stdout, b"waited\nstatus 4\n");
}

#[test]
fn busybox_sh_trap_on_sigint_sent_to_itself() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    // A non-interactive shell cannot trap a signal it was started with
    // ignored: both runs start with SIGINT at its default, whatever this
    // test was started with (without GNU env, as it was started).
    let script = "trap 'echo caught INT' INT; kill -INT $$; echo after";
    let out = match env_sets_signals() {
        true => same_via_env(
            "bb-trap",
            "--default-signal=INT",
            BUSYBOX,
            &["sh", "-c", script],
        ),
        false => busybox_sh("bb-trap", script),
    };
    assert_eq!(out.stdout, b"caught INT\nafter\n");
}

#[test]
fn signals_ignored_when_vmrun_starts_stay_ignored_in_the_program() {
    if !require_kvm() || !have_busybox() || !have_env_signal_options() {
        return;
    }
    // As after a native exec: the program starts with SIGHUP, SIGINT and
    // SIGPIPE ignored, /proc/self/status says so, a trap on one of them
    // does nothing, and sending it to itself is survived.
    let script = "grep -E '^Sig(Blk|Ign|Cgt)' /proc/self/status; \
                  trap 'echo caught INT' INT; kill -INT $$; kill -HUP $$; echo survived";
    let out = same_via_env(
        "ignored-at-start",
        "--ignore-signal=HUP,INT,PIPE",
        BUSYBOX,
        &["sh", "-c", script],
    );
    // SIGHUP, SIGINT and SIGPIPE; the C library's own 32 and 33 may be
    // ignored too, if this test was started so.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(sig_ign(&text) & !(3 << 31), 0x1003, "{text}");
    assert!(text.ends_with("survived\n"), "{text}");
    // And with nothing ignored on entry, nothing is.
    let out = same_via_env(
        "defaults-at-start",
        "--default-signal=HUP,INT,PIPE",
        BUSYBOX,
        &["grep", "-E", "^Sig(Blk|Ign|Cgt)", "/proc/self/status"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(sig_ign(&text) & 0x1003, 0, "{text}");
}

/// The SigIgn mask of a `/proc/PID/status` text.
fn sig_ign(status: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .unwrap_or_else(|| panic!("no SigIgn line in {status}"));
    u64::from_str_radix(hex, 16).expect("SigIgn in hex")
}

#[test]
fn vmrun_started_with_sighup_ignored_survives_a_hangup() {
    if !require_kvm() || !have_busybox() || !have_env_signal_options() {
        return;
    }
    // `nohup vmrun ...`: vmrun leaves a stop signal it was started with
    // ignored alone, so a hangup neither ends the run nor reaches the
    // program. Once the program has said it runs, vmrun's own handlers
    // are in place; then the hangup is sent to vmrun.
    use std::io::{BufRead, BufReader, Read};
    let s = Scratch::new("nohup");
    let args: Vec<OsString> = ["sh", "-c", "echo ready; sleep 1; echo done"]
        .iter()
        .map(OsString::from)
        .collect();
    let mut command = via_env(
        "--ignore-signal=HUP",
        &guest_command_in(&s.guest(), BUSYBOX.as_ref(), &args),
    );
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting vmrun");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("reading vmrun's stdout");
    assert_eq!(line, "ready\n");
    let hup = Command::new(BUSYBOX)
        .args(["kill", "-HUP", &child.id().to_string()])
        .status()
        .expect("running busybox kill");
    assert!(hup.success());
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .expect("reading vmrun's stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("reading vmrun's stderr");
    let status = child.wait().expect("waiting for vmrun");
    assert_eq!(rest, "done\n", "stderr: {stderr}");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn busybox_sh_redirections_to_files() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let s = Scratch::new("bb-redirect");
    let script = "echo first > out.txt; echo second >> out.txt; cat < out.txt; \
                  ls missing-file 2> err.txt; echo \"ls status $?\"; cat err.txt; \
                  wc -l < out.txt > count.txt; \
                  exec 3> fd3.txt; echo via-fd3 >&3; exec 3>&-; \
                  { echo grouped; echo to-stderr >&2; } > group.txt 2>&1; \
                  cat fd3.txt count.txt group.txt";
    let native = same_in(&s, BUSYBOX, &["sh", "-c", script], 0);
    assert!(String::from_utf8_lossy(&native.stdout).contains("via-fd3"));
    for name in ["out.txt", "err.txt", "count.txt", "fd3.txt", "group.txt"] {
        let want = fs::read(s.native().join(name)).expect("the native run's file");
        let got = fs::read(s.guest().join(name))
            .unwrap_or_else(|e| panic!("the guest did not write {name}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name} differs"
        );
    }
}

/// ~100 KiB of numbered lines.
fn text_fixture() -> Vec<u8> {
    (0..4000)
        .map(|i| format!("line {i:05} value {}\n", (i * 7919) % 1000))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn busybox_zcat_of_a_gzip_file_made_natively() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let s = Scratch::new("bb-zcat");
    let text = text_fixture();
    s.both("data.txt", &text);
    // gzip it natively with busybox, and keep a copy for each run.
    let gzip = native_in(
        &s.native(),
        OsStr::new(BUSYBOX),
        &["gzip".into(), "-k".into(), "data.txt".into()],
    );
    assert_status(&gzip, 0);
    let gz = fs::read(s.native().join("data.txt.gz")).expect("the gzip file");
    assert!(gz.starts_with(&[0x1f, 0x8b]), "not a gzip file");
    fs::write(s.guest().join("data.txt.gz"), &gz).unwrap();
    let native = same_in(&s, BUSYBOX, &["zcat", "data.txt.gz"], 0);
    assert_eq!(native.stdout, text);
    let native = same_in(
        &s,
        BUSYBOX,
        &[
            "sh",
            "-c",
            "zcat data.txt.gz | wc -l; zcat < data.txt.gz | tail -1",
        ],
        0,
    );
    assert_eq!(native.stdout, b"4000\nline 03999 value 81\n");
}

// ---------------------------------------------------------------------------
// The host's bash and dash (dynamically linked)

const SHELL_SCRIPT: &str = "echo one two | wc -w; x=$(echo hi | tr a-z A-Z); echo \"$x\"; \
     seq 1 1000 | sort -rn | head -3; n=$(seq 1 100 | wc -l); echo \"n=$n\"; \
     (exit 7); echo $?; false | true; echo $?; echo end | cat | cat | cat";

const SHELL_OUTPUT: &[u8] = b"2\nHI\n1000\n999\n998\nn=100\n7\n0\nend\n";

/// Debian's bash-static (static glibc) with the same pipes and `$(...)`.
#[test]
fn bash_static_pipes_and_command_substitution() {
    if !require_kvm() || !have("/bin/bash-static") {
        return;
    }
    let out = same("bash-static", "/bin/bash-static", &["-c", SHELL_SCRIPT]);
    assert_eq!(out.stdout, SHELL_OUTPUT);
}

/// Debian's sash (static) runs an external command: it forks and execs
/// it, where it once said "fork failed".
#[test]
fn sash_runs_an_external_command() {
    if !require_kvm() || !have("/bin/sash") {
        return;
    }
    let out = same("sash", "/bin/sash", &["-c", "/bin/echo external from sash"]);
    assert_eq!(out.stdout, b"external from sash\n");
}

#[test]
fn bash_pipes_and_command_substitution() {
    if !require_kvm() || !have("/bin/bash") {
        return;
    }
    let out = same("bash", "/bin/bash", &["-c", SHELL_SCRIPT]);
    assert_eq!(out.stdout, SHELL_OUTPUT);
}

#[test]
fn dash_pipes_and_command_substitution() {
    if !require_kvm() || !have("/bin/dash") {
        return;
    }
    let out = same("dash", "/bin/dash", &["-c", SHELL_SCRIPT]);
    assert_eq!(out.stdout, SHELL_OUTPUT);
}

// ---------------------------------------------------------------------------
// C programs: fork, exec, wait

#[test]
fn fork_exec_wait_reports_exit_status_and_signal() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["exec_wait"]);
    assert!(out.contains("exec of `exit 3`: exited with 3\n"), "{out}");
    assert!(
        out.contains("exec of `raise`: killed by signal 15"),
        "{out}"
    );
}

#[test]
fn parent_kills_a_blocked_child() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["kill_child"]);
    assert!(out.contains("killed by signal 15"), "{out}");
}

#[test]
fn posix_spawn_and_wait() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["spawn"]);
    assert!(out.contains("exited with 5"), "{out}");
}

#[test]
fn posix_spawn_of_a_missing_program_returns_enoent() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["spawn_missing"]);
    assert!(out.contains("ENOENT"), "{out}");
}

#[test]
fn vfork_then_exit_or_exec() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["vfork"]);
    assert!(out.contains("vfork+_exit(9): exited with 9\n"), "{out}");
    assert!(out.contains("`exit 6`: exited with 6\n"), "{out}");
}

#[test]
fn zombie_is_visible_to_waitid_wnowait_until_reaped() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["zombie"]);
    assert!(out.contains("waitid WNOWAIT 2: pid matches"), "{out}");
    assert!(out.contains("wait4 again: -1 (ECHILD)"), "{out}");
}

#[test]
fn kill_finds_a_zombie_until_it_is_reaped() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["zombie_kill"]);
    assert!(out.contains("kill(pid, 0) = 0 (found)"), "{out}");
}

#[test]
fn wnohang_on_a_live_child_and_without_children() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["wnohang"]);
    assert!(out.contains("WNOHANG on a live child: 0\n"), "{out}");
}

#[test]
fn orphan_is_reparented_to_pid_1() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("orphan");
    let program = image("proc_test");
    let args = vec![OsString::from("orphan")];
    let native = native_in(&s.native(), program.as_os_str(), &args);
    assert_status(&native, 0);
    let want = "grandchild: ppid changed: yes; ppid is 1: yes\n";
    let native_text = String::from_utf8_lossy(&native.stdout);
    let guest = guest_in(&s.guest(), program.as_os_str(), &args);
    if native_text.contains(want) {
        assert_same("proc_test orphan", &native, &guest);
    } else {
        // A subreaper on the host (systemd --user, a container's init)
        // adopts the native orphan; in the guest it must still be pid 1.
        eprintln!("note: the native orphan was adopted by a subreaper:\n{native_text}");
        assert_status(&guest, 0);
        assert!(
            String::from_utf8_lossy(&guest.stdout).contains(want),
            "{}",
            describe(&guest)
        );
    }
}

#[test]
fn a_hundred_children_in_parallel() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["parallel", "100"]);
    assert_eq!(
        out,
        "100 children reaped, 100 with their own status, sum 4950 (expected 4950)\n"
    );
}

#[test]
fn one_mib_through_a_pipe() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["pipe_1m"]);
    assert!(out.contains("read 1048576 bytes"), "{out}");
    assert!(out.contains("as sent"), "{out}");
}

#[test]
fn sigpipe_kills_a_writer_and_ignored_gives_epipe() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["sigpipe"]);
    assert!(out.contains("writer: killed by signal 13"), "{out}");
    assert!(out.contains("write = -1 (EPIPE)"), "{out}");
}

/// The user's SSE registers and MXCSR stay in the FPU while the kernel
/// runs and are saved only when the running task changes: parent and child
/// each keep their own values across blocking pipe reads (task switches),
/// writes, and a signal handler that overwrites them.
#[test]
fn sse_state_survives_task_switches_and_signal_handlers() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["fpu"]);
    assert_eq!(
        out,
        "fpu: parent and child kept their SSE state; child status 0\n"
    );
}

#[test]
fn copy_on_write_parent_and_child_see_their_own_values() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["cow"]);
    assert!(
        out.contains("child sees global 1, heap -1, anon child, stack 11, untouched p\n"),
        "{out}"
    );
    assert!(
        out.contains("parent sees global 2, heap -2, anon parent, stack 22, untouched p\n"),
        "{out}"
    );
}

#[test]
fn a_fork_copies_the_stack_page_at_once_and_neither_side_faults_on_it() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    // The shell forks at one stack depth for each command: that page is
    // the child's own copy from the fork on, so no write fault on the
    // stack comes before the child's exec (`cow`), nor from the child on
    // it (`made-writable`) while the parent waits.
    let output = vmrun([
        "--check",
        "--trace",
        "fault,task",
        BUSYBOX,
        "sh",
        "-c",
        "/bin/busybox true; /bin/busybox true; echo done",
    ]);
    assert_status(&output, 0);
    assert_eq!(output.stdout, b"done\n");
    let err = String::from_utf8_lossy(&output.stderr);
    let stack_faults: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("vma stack -> cow"))
        .collect();
    assert!(stack_faults.is_empty(), "{stack_faults:?} in:\n{err}");
    assert!(err.contains("pid 3 (process 3) new"), "{err}");
}

/// Each child of a loop writes the same pages before it exits, as a
/// shell's children write libc's state before they exec: from the second
/// on, the fork copies those pages for the child at once. Each child still
/// sees the parent's bytes, never an earlier child's, and the parent keeps
/// its own.
#[test]
fn each_child_of_a_loop_sees_the_parents_memory_not_an_earlier_childs() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["cow_children", "4"]);
    let mut want = String::new();
    for i in 1..=4 {
        want += &format!("child {i} sees data p, bss b, heap -5\nchild: exited with 0\n");
    }
    want += "parent keeps data p, bss b, heap -5\n";
    assert_eq!(out, want);
}

/// A shell's children write the same pages of libc's data and bss between
/// their fork and their exec. The first child takes a copy-on-write fault
/// on each; its exec hands them to the shell, whose next fork copies them
/// for the next child at once: a loop of six spawns takes hardly more such
/// faults than a loop of two (three more a spawn otherwise).
#[test]
fn a_shells_children_take_the_pages_the_last_one_wrote_without_faults() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let cow_faults = |n: usize| {
        let script = "/bin/busybox true; ".repeat(n) + "echo done";
        let output = vmrun(["--check", "--trace", "fault", BUSYBOX, "sh", "-c", &script]);
        assert_status(&output, 0);
        assert_eq!(output.stdout, b"done\n");
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        (err.lines().filter(|l| l.contains("-> cow")).count(), err)
    };
    let ((two, _), (six, err)) = (cow_faults(2), cow_faults(6));
    assert!(
        six <= two + 2,
        "{two} copy-on-write faults for two spawns, {six} for six:\n{err}"
    );
}

#[test]
fn a_thousand_fork_exit_wait_rounds() {
    if !require_kvm() {
        return;
    }
    // No libc: a round is little more than the fork. vmrun's leak check at
    // exit covers every child's frames and page tables.
    let out = image_mode("fork_loop", &["1000"]);
    assert_eq!(out, "1000 rounds of fork, exit and wait\n");
}

#[test]
fn fork_exit_wait_rounds_with_glibc() {
    if !require_kvm() {
        return;
    }
    let out = proc_test(&["fork_loop", "50"]);
    assert_eq!(out, "50 rounds of fork, exit and wait\n");
}

// ---------------------------------------------------------------------------
// Signal handlers

#[test]
fn sigsegv_handler_gets_si_addr_and_siglongjmps_out() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["segv"]);
    assert_eq!(
        out,
        "unmapped: caught signal 11 (SEGV), SEGV_MAPERR, si_addr is the bad pointer\n\
         read-only: caught signal 11 (SEGV), SEGV_ACCERR, si_addr is the bad pointer\n\
         unmapped again: caught signal 11 (SEGV), SEGV_MAPERR, si_addr is the bad pointer\n\
         SIGSEGV blocked after siglongjmp: no\n"
    );
}

/// SIGTRAP as Linux's traps give it: int3 with SI_KERNEL and no address,
/// a trap-flag single step with TRAP_TRACE and the next instruction's
/// address; the handler returns and the program goes on.
#[test]
fn sigtrap_from_int3_and_the_trap_flag_has_linuxs_si_code() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["trap"]);
    assert_eq!(
        out,
        "int3: signal 5 (TRAP), si_code 128, si_addr NULL\n\
         trap flag: signal 5 (TRAP), si_code 2, si_addr set\n"
    );
}

#[test]
fn handler_runs_on_the_alternate_stack() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["altstack"]);
    assert!(out.contains("ran on the alternate stack: yes"), "{out}");
}

#[test]
fn sigaltstack_reports_ss_onstack_inside_the_handler() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["altstack_flags"]);
    assert!(out.contains("SS_ONSTACK set"), "{out}");
}

#[test]
fn blocked_signal_is_delivered_when_unblocked() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["blocked"]);
    assert_eq!(
        out,
        "blocked: handler calls 0, SIGUSR1 pending: yes\n\
         unblocked: handler calls 1\n\
         SIGUSR1 pending now: no\n"
    );
}

#[test]
fn kill_term_reaches_a_childs_handler() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["kill_handler"]);
    assert_eq!(out, "child: caught SIGTERM\nchild exited with 3\n");
}

#[test]
fn sa_restart_read_returns_the_data_after_a_handler() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["sa_restart"]);
    assert!(out.contains("read = 5 (hello), handler calls 1\n"), "{out}");
}

#[test]
fn sigsuspend_runs_the_sigchld_handler() {
    if !require_kvm() {
        return;
    }
    let out = signal_test(&["sigsuspend"]);
    assert!(
        out.contains("sigsuspend = -1 (EINTR), SIGCHLD handler calls 1\n"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Threads

#[test]
fn glibc_musl_and_rust_threads_sum_under_a_mutex_and_join() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("threads", &[]);
    assert_eq!(out, "total=1000000 joined=10\n");
    if vmrun_images::is_built("threads_musl") {
        image_mode("threads_musl", &[]);
    } else {
        eprintln!("SKIPPED: musl-gcc was missing at build time (apt-get install musl-tools)");
    }
    let out = image_mode("threads_rs", &[]);
    assert_eq!(out, "total 7998000 ids 6 counter 4\n");
}

#[test]
fn debian_gojq_a_go_program_runs_as_natively() {
    if !require_kvm() {
        return;
    }
    let gojq = "/usr/bin/gojq";
    if !have(gojq) {
        return;
    }
    let s = Scratch::new("gojq");
    for dir in [s.native(), s.guest()] {
        std::fs::write(dir.join("in.json"), b"{\"a\":[1,2,3],\"b\":{\"c\":\"x\"}}").unwrap();
    }
    same_in(
        &s,
        gojq,
        &["-c", "{sum: (.a | add), keys: keys, c: .b.c}", "in.json"],
        0,
    );
}

// ---------------------------------------------------------------------------
// Corners: alarms, SIGCHLD to the killer, a thread ending the process

#[test]
fn alarms_sigchld_and_threads_that_end_the_process_behave_as_natively() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("proc_edge", &["alarm_pause"]);
    assert_eq!(out, "alarm 14\nchild read 0\nchild status 0\n");
    let out = image_mode("proc_edge", &["kill_sigchld"]);
    assert_eq!(out, "got signal 17, child killed by 15\n");
    let s = Scratch::new("edge");
    same_in(&s, image("proc_edge"), &["thread_exit"], 5);
    let out = same_in(&s, image("proc_edge"), &["clear_sighand"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "child: SIGUSR1 default, SIGUSR2 ignored\nparent: clone3 ok, SIGUSR1 handled\n"
    );
    let out = same_in(&s, image("proc_edge"), &["sigwait"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sigwaitinfo 10, from the child 1, code 0\nsigtimedwait -1 EAGAIN\n\
         sigwait 14\nchild status 0\n"
    );
    let out = same_in(&s, image("proc_edge"), &["thread_kill"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pthread_kill: handled by the target\ntkill: handled by the target\n"
    );
    let out = same_in(&s, image("proc_edge"), &["shared_anon"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "child0 [] child2 grandchild3\n"
    );
    // The identity calls' short path (the syscall stub's handler) and
    // the full path keep every register the ABI says they keep.
    let out = same_in(&s, image("proc_edge"), &["syscall_regs"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "getpid: registers kept\ngetuid: registers kept\n\
         getppid: registers kept\nsched_yield: registers kept\n"
    );
    let out = same_in(&s, image("proc_edge"), &["alarm_ignored"], 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sleep left 0\n");
    // Killed by a signal: vmrun adds its one line on stderr, so compare
    // the statuses and stdout here.
    for (mode, sig) in [("thread_raise", 15), ("alarm_sleep", 14)] {
        let native = native_in(
            &s.native(),
            image("proc_edge").as_os_str(),
            &[OsString::from(mode)],
        );
        let guest = guest_in(
            &s.guest(),
            image("proc_edge").as_os_str(),
            &[OsString::from(mode)],
        );
        assert_eq!(native.status.signal(), Some(sig), "{mode} natively");
        assert_eq!(guest.status.code(), Some(128 + sig), "{mode} under vmrun");
        assert_eq!(native.stdout, guest.stdout, "{mode}");
    }
}

// ---------------------------------------------------------------------------
// Preemption: the timer interrupt

/// A task that never enters the kernel does not keep the CPU: the host's
/// timer interrupt lets the others run (without it each of these runs
/// spins until the test's timeout).
#[test]
fn a_task_that_makes_no_system_call_is_preempted() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("spin");
    for (mode, says) in [
        ("spin_child", "spinning child killed by 9\n"),
        ("spin_thread", "spinning thread stopped, spun yes\n"),
        // The ticks are off while the parent waits with no timeout; the
        // child's write that wakes it turns them on again, and so does a
        // vfork child's exec, which releases its parent.
        ("wake_spin", "woken parent's spinning child killed by 9\n"),
        ("vfork_spin", "vfork parent's spinning child killed by 9\n"),
        // A single process: the ticks fire its interval timer while it
        // spins.
        (
            "spin_itimer",
            "itimer ran the handler at least 3 times during the spin\n",
        ),
    ] {
        let out = same_in(&s, image("proc_edge"), &[mode], 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), says, "{mode}");
    }
    let args = [OsString::from("spin_alarm")];
    let native = native_in(&s.native(), image("proc_edge").as_os_str(), &args);
    let guest = guest_in(&s.guest(), image("proc_edge").as_os_str(), &args);
    assert_eq!(native.status.signal(), Some(14), "spin_alarm natively");
    assert_eq!(
        guest.status.code(),
        Some(128 + 14),
        "spin_alarm under vmrun"
    );
}

/// busybox sh: a background subshell spinning in a shell loop (no system
/// call in it) is killed by the foreground shell, which must get the CPU.
/// The shell prints "Terminated" only if `wait` is what reaps the job, not
/// if the job was reaped before (natively too that depends on timing, as on
/// a slow emulated host): `wait`'s stderr is not compared.
#[test]
fn busybox_sh_kills_a_spinning_background_job() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh(
        "bb-spin",
        "(while :; do :; done) & sleep 0.05; kill $!; wait $! 2>/dev/null; echo status $?",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status 143\n");
}

/// `--stats` counts the timer interrupts: some while a child spins, none
/// in a run of one process without an alarm.
#[test]
fn stats_count_timer_interrupts_only_when_wanted() {
    if !require_kvm() {
        return;
    }
    let ticks = |out: &Output| -> u64 {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("timer interrupts"))
            .unwrap_or_else(|| panic!("no timer line in {err}"));
        let before = line.split(" timer interrupts").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let out = vmrun([
        "--stats".as_ref(),
        image("proc_edge").as_os_str(),
        "spin_child".as_ref(),
    ]);
    assert_status(&out, 0);
    assert!(ticks(&out) > 0, "{}", describe(&out));
    let out = vmrun(["--stats".as_ref(), image("hello_static").as_os_str()]);
    assert_status(&out, 0);
    assert_eq!(ticks(&out), 0, "{}", describe(&out));
}

/// CPU time: the CPU-time clocks, times, getrusage and wait4's rusage grow
/// while a process computes, not while it sleeps, and count reaped
/// children (each line says whether a figure passed a threshold, so the
/// outputs compare without timings).
#[test]
fn cpu_time_counts_computing_not_sleeping_and_children() {
    if !require_kvm() {
        return;
    }
    let out = same_in(
        &Scratch::new("cputime"),
        image("proc_edge"),
        &["cputime"],
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "computing 60 ms: process clock grew, thread clock grew\n\
         sleeping 200 ms: not counted\n\
         times: self counted\n\
         getrusage self: counted\n\
         wait4 rusage of a child computing 80 ms: counted\n\
         getrusage children: counted\n\
         times: children counted\n"
    );
}

// ---------------------------------------------------------------------------
// Job control: stop and continue

#[test]
fn stop_and_continue_a_child_as_natively() {
    if !require_kvm() {
        return;
    }
    let out = same_in(&Scratch::new("stop"), image("proc_edge"), &["stop_cont"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "WUNTRACED: stopped 1 by 19\n\
         stop: SIGCHLD code CLD_STOPPED status 19\n\
         WNOHANG|WUNTRACED again: 0\n\
         WCONTINUED: continued 1\n\
         cont: SIGCHLD code CLD_CONTINUED status 18\n\
         waitid WSTOPPED: CLD_STOPPED by 20\n\
         tstp: SIGCHLD code CLD_STOPPED status 20\n\
         SIGTERM to the stopped child, WNOHANG: 0\n\
         after SIGCONT: killed by 15\n\
         SIGKILL to a stopped child: killed by 9\n"
    );
}

/// busybox sh: `kill -STOP`, `kill -CONT`, `kill %1` and a SIGKILL to a
/// stopped job. The shell's own job report ("Terminated", "Killed") goes
/// to /dev/null: it is printed only when `wait` itself reaps the job, so
/// whether it appears depends on whether the child died before the shell
/// reached `wait`, which varies between native runs on a slow CPU.
#[test]
fn busybox_sh_stops_continues_and_kills_jobs() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    let out = busybox_sh(
        "bb-jobs",
        "sleep 5 & p=$!; kill -STOP $p; kill -CONT $p; kill %1; wait $p 2>/dev/null; \
         echo status $?; \
         sleep 3 & kill -TSTP $!; kill -KILL $!; wait $! 2>/dev/null; echo status $?",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "status 143\nstatus 137\n"
    );
}

// ---------------------------------------------------------------------------
// Limits: tasks, kernel heap, memory

/// `vmrun ARGS...` checked: exit status 0 and the stdout it printed.
fn guest_stdout(args: &[&str]) -> String {
    let out = vmrun(args);
    assert_status(&out, 0);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A thread bomb ends with EAGAIN at the task limit (the kernel heap's
/// size over 32 KiB: 189 threads besides the main one at the default
/// 256 MiB), not with a guest kernel panic, and the checker passes.
#[test]
fn a_thread_bomb_ends_with_eagain_at_the_task_limit() {
    if !require_kvm() {
        return;
    }
    let edge = image("proc_edge");
    let out = guest_stdout(&["--check", edge.to_str().unwrap(), "task_limit"]);
    let n: usize = out
        .strip_prefix("clone failed with EAGAIN after ")
        .and_then(|r| r.strip_suffix(" threads\n"))
        .unwrap_or_else(|| panic!("unexpected: {out}"))
        .parse()
        .unwrap();
    assert!((100..512).contains(&n), "{n} threads");
}

/// Full pipes take kernel heap: when it runs short, a write finds the pipe
/// full (EAGAIN here) instead of panicking the guest kernel.
#[test]
fn pipes_that_exhaust_the_kernel_heap_find_writes_full() {
    if !require_kvm() {
        return;
    }
    let edge = image("proc_edge");
    let out = guest_stdout(&["--check", edge.to_str().unwrap(), "pipe_heap"]);
    assert_eq!(out, "stopped by EAGAIN after many full pipes\n");
}

/// A COW fault that finds no free frame kills only the child that
/// faulted (SIGKILL, as Linux's OOM killer would); the parent goes on.
#[test]
fn a_cow_fault_without_memory_kills_only_the_child() {
    if !require_kvm() {
        return;
    }
    let edge = image("proc_edge");
    let out = guest_stdout(&["--mem", "20M", edge.to_str().unwrap(), "cow_oom", "8"]);
    assert_eq!(out, "child killed by 9\nparent still sees 1\n");
}

/// Futexes across processes: process-shared semaphores, a mutex and a
/// condition variable in a MAP_SHARED page meet on the page's physical
/// address (without that, both processes wait for ever: a deadlock).
#[test]
fn process_shared_semaphores_mutex_and_condvar_work_across_fork() {
    if !require_kvm() {
        return;
    }
    let out = same_in(
        &Scratch::new("pshared"),
        image("proc_edge"),
        &["pshared"],
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ping-pong 100 rounds; the child's condvar saw 42\n"
    );
}

/// kill(0, sig) reaches the caller's process group only: the sender and
/// its parent, not a sibling in a group of its own.
#[test]
fn kill_zero_signals_the_callers_process_group_only() {
    if !require_kvm() {
        return;
    }
    let out = same_in(&Scratch::new("pgrp"), image("proc_edge"), &["kill_pgrp"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "B killed by 10; the parent handled SIGUSR1 1 time(s); A killed by 9\n"
    );
}

// ---------------------------------------------------------------------------
// POSIX timers

/// timer_create and friends: signals with SI_TIMER and the sigev_value,
/// readings of timer_gettime and timer_settime's old value, overruns of a
/// blocked signal, CLOCK_BOOTTIME with TIMER_ABSTIME.
#[test]
fn posix_timers_signal_read_back_and_count_overruns() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("timers", &["signal"]);
    assert_eq!(
        out,
        "handler ran 5 times; wrong si_code 0, value 0, timer id 0\n"
    );
    let out = image_mode("timers", &["settime"]);
    assert_eq!(
        out,
        "new timer: value 0 interval 0\n\
         old setting of a disarmed timer: 0 0\n\
         armed for 10 s: value in (9 s, 10 s] yes, interval 0\n\
         re-armed: old value in (9 s, 10 s] yes, old interval 0\n\
         interval 2000000000, value in (4 s, 5 s] yes\n\
         disarmed: old value > 0 yes; now 0 0\n\
         realtime absolute +3 s: value in (2 s, 3 s] yes\n\
         monotonic absolute in the past, one shot: value 0\n\
         the same with a 1 s interval: value in (0, 1 s] yes\n\
         tv_nsec 10^9: -1 EINVAL\n\
         gettime of a deleted timer: -1 EINVAL\n\
         delete of a deleted timer: -1 EINVAL\n\
         clock 99: -1 EINVAL\n\
         signal 0: -1 EINVAL\n\
         sigev_notify 9: -1 EINVAL\n\
         SIGEV_THREAD_ID of no thread of ours: -1 EINVAL\n"
    );
    let out = image_mode("timers", &["overrun"]);
    assert_eq!(
        out,
        "getoverrun before the signal is taken: 0\n\
         sigwaitinfo: SI_TIMER yes, value 7, overrun > 0 yes, getoverrun the same yes\n"
    );
    let out = image_mode("timers", &["boottime"]);
    assert_eq!(
        out,
        "boottime timer: signal SIGRTMIN+2, value 5, overrun 0\n"
    );
}

/// Timers and threads: SIGEV_THREAD_ID reaches the named thread, glibc's
/// SIGEV_THREAD runs its callback (through its helper thread, which waits
/// in sigwaitinfo), and a process that spins without system calls gets
/// its timer's signals from the timer interrupt.
#[test]
fn posix_timers_reach_threads_and_spinning_processes() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("timers", &["thread_id"]);
    assert_eq!(
        out,
        "helper thread took signal 10 (SI_TIMER yes) with value 77; \
         main thread has it pending: no\n"
    );
    let out = image_mode("timers", &["sigev_thread"]);
    assert_eq!(
        out,
        "SIGEV_THREAD callback ran at least 3 times, wrong values 0\n"
    );
    let out = image_mode("timers", &["spin"]);
    assert_eq!(out, "the timer's handler ran 3 times during the spin\n");
}

/// A fork child inherits no timers; exec deletes an armed one whose
/// signal would kill the new image.
#[test]
fn posix_timers_are_not_inherited_by_fork_and_deleted_by_exec() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("timers", &["fork_exec"]);
    assert_eq!(
        out,
        "fork child: gettime of the parent's timer -1 EINVAL\n\
         after exec: alive; gettime of the old timer -1 EINVAL\n"
    );
}

// ---------------------------------------------------------------------------
// signalfd

/// signalfd: non-blocking and blocking reads, mask updates, poll, select
/// and epoll readiness, SIGCHLD and POSIX timer signals, the errors.
#[test]
fn signalfd_reads_pending_signals_as_natively() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("signalfd", &["basic"]);
    assert_eq!(
        out,
        "cloexec yes, nonblock yes\n\
         empty: -1 EAGAIN\n\
         poll empty: 0\n\
         poll with SIGUSR2 pending: 0\n\
         poll with SIGUSR1 pending: 1 revents 0x1\n\
         read 128: signo 10 code 0 pid is ours yes\n\
         mask update returns the fd: yes\n\
         read 256: signos 10 12\n\
         still pending: SIGUSR1 0 SIGUSR2 0\n\
         read of 100 bytes: -1 EINVAL\n\
         sizemask 4: -1 EINVAL\n\
         flags 1: -1 EINVAL\n\
         signalfd on stdout: -1 EINVAL\n\
         write: -1 EINVAL\n"
    );
    let out = image_mode("signalfd", &["blocking"]);
    assert_eq!(out, "blocking read 128: signo 10 from the child yes\n");
    let out = image_mode("signalfd", &["epoll"]);
    assert_eq!(
        out,
        "epoll_wait 1: data 7 events 0x1\nselect: 1 ready 1\nread 128: signo 12\n\
         epoll_wait after the read: 0\n"
    );
    let out = image_mode("signalfd", &["sigchld"]);
    assert_eq!(
        out,
        "read 128: signo 17 code CLD_EXITED pid the child's status 3\n"
    );
    let out = image_mode("signalfd", &["timer"]);
    let line = "read 128: SIGRTMIN+0 code SI_TIMER yes, timer id ours, int 1234, ptr 1234\n";
    assert_eq!(out, line.repeat(2));
}

// ---------------------------------------------------------------------------
// Robust futexes

/// Robust mutexes: the owner (a thread, a process, a thread of a process
/// that execs) dies holding the mutex, and the next lock, or the one
/// already waiting, returns EOWNERDEAD. Without the kernel's walk of the
/// robust list each of these locks waits for ever.
#[test]
fn robust_mutex_of_a_dead_owner_gives_eownerdead() {
    if !require_kvm() {
        return;
    }
    let out = image_mode("robust", &["thread"]);
    assert_eq!(
        out,
        "lock after the owner exited: EOWNERDEAD\nconsistent: 0\nunlock: 0\nlock again: 0\n"
    );
    let out = image_mode("robust", &["waiter"]);
    assert_eq!(
        out,
        "waiting lock woken when the owner exited: EOWNERDEAD\n"
    );
    let out = image_mode("robust", &["process"]);
    assert_eq!(out, "lock after the child died holding it: EOWNERDEAD\n");
    let out = image_mode("robust", &["exec"]);
    assert_eq!(
        out,
        "lock after the holder's process exec'd: EOWNERDEAD (exec'd image exited 7)\n"
    );
}

/// CPU-time itimers: ITIMER_VIRTUAL and ITIMER_PROF count the process's
/// CPU time (not its sleep) and fire at the timer interrupt.
#[test]
fn cpu_time_itimers_fire_as_the_process_computes() {
    if !require_kvm() {
        return;
    }
    let out = same_in(
        &Scratch::new("cpu-itimer"),
        image("proc_edge"),
        &["cpu_itimer"],
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "virtual armed: interval 20000 us, value within it\n\
         virtual fired 3 times while computing; old interval 20000 us\n\
         disarmed: 0 0\n\
         prof after a 200 ms sleep: not fired\n\
         prof fired once while computing; now 0 0\n"
    );
}

/// What `multiprocessing` does with `/dev/shm`: `sem_open` for its locks
/// and queues, `shm_open` for `SharedMemory`, each mapped shared by
/// processes made by fork.
const SHM_SCRIPT: &str = r#"
import multiprocessing as mp
import sys
from multiprocessing import shared_memory

def child(name, q):
    m = shared_memory.SharedMemory(name)
    q.put(bytes(m.buf[:5]))
    m.buf[5:10] = b"world"
    m.close()

if __name__ == "__main__":
    a = shared_memory.SharedMemory(create=True, size=4096)
    a.buf[:5] = b"hello"
    q = mp.Queue()
    p = mp.Process(target=child, args=(a.name, q))
    p.start()
    print("child saw", q.get())
    p.join()
    print("parent sees", bytes(a.buf[:10]), "child status", p.exitcode)
    a.close()
    a.unlink()
    with mp.Pool(2) as pool:
        print("pool sum", sum(pool.map(abs, range(-50, 50))))
    with open("/dev/shm/" + sys.argv[1], "w") as f:
        f.write("left behind")
"#;

#[test]
fn python_multiprocessing_shares_memory_through_dev_shm() {
    if !require_kvm() || !require_programs(&["/usr/bin/python3"]) {
        return;
    }
    // The guest's /dev/shm is a directory vmrun makes for the run in its
    // temp directory and removes afterwards, with what was left in it.
    let s = Scratch::new("py-shm");
    s.both("shm.py", SHM_SCRIPT.as_bytes());
    let tmp = s.root.join("tmp");
    fs::create_dir_all(&tmp).expect("a temp directory for vmrun");
    let left_name = format!(
        "vmrun-test-{}",
        s.root.file_name().unwrap().to_string_lossy()
    );
    let args: Vec<OsString> = vec!["shm.py".into(), left_name.clone().into()];
    let native = run(
        native_command_in(&s.native(), "/usr/bin/python3".as_ref(), &args),
        b"",
    );
    let _ = fs::remove_file(Path::new("/dev/shm").join(&left_name));
    let mut guest = guest_command_in(&s.guest(), "/usr/bin/python3".as_ref(), &args);
    guest.env("TMPDIR", &tmp);
    let guest = run(guest, b"");
    assert_status(&native, 0);
    assert_same("python3 multiprocessing with /dev/shm", &native, &guest);
    assert_eq!(
        String::from_utf8_lossy(&guest.stdout),
        "child saw b'hello'\nparent sees b'helloworld' child status 0\npool sum 2500\n"
    );
    let left: Vec<_> = fs::read_dir(&tmp)
        .expect("vmrun's temp directory")
        .collect();
    assert!(left.is_empty(), "vmrun left {left:?} in its temp directory");
}

#[test]
fn a_running_program_cannot_be_opened_for_writing() {
    if !require_kvm() || !have_busybox() {
        return;
    }
    // As Linux's deny_write_access: while a process runs a file, an open
    // of it for writing or truncation is ETXTBSY (and the host file is
    // left as it was), for the program itself and for a child's; once the
    // child has exited, its file can be written again.
    let s = Scratch::new("etxtbsy");
    s.both(
        "inner.sh",
        b"echo x >> ./busybox; echo \"append $?\"\n\
          true > ./busybox; echo \"truncating open $?\"\n\
          truncate -s 0 ./busybox; echo \"truncate $?\"\n\
          ./copy/busybox sh -c 'echo y >> ./copy/busybox; echo \"child append $?\"'\n\
          echo z >> ./copy/busybox; echo \"after the child $?\"\n\
          cmp -s ./busybox /bin/busybox; echo \"unchanged $?\"\n",
    );
    let script = "cp /bin/busybox ./busybox && mkdir copy && cp /bin/busybox copy/busybox \
                  && exec ./busybox sh inner.sh";
    let out = same_in(&s, BUSYBOX, &["sh", "-c", script], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "append 1\ntruncating open 1\ntruncate 1\nchild append 1\nafter the child 0\nunchanged 0\n"
    );
}
