//! execve inside the guest, dynamically linked programs and `#!` scripts,
//! each run natively and under vmrun in the same test and compared byte for
//! byte (stdout, stderr, exit status): a static program that execs static,
//! static-PIE, dynamic and script targets and whose failed execs return
//! Linux's errno; execveat(AT_EMPTY_PATH); the host's own dynamic programs
//! and interpreters; vmrun's PROGRAM as a script, found in PATH, or refused
//! as a shell refuses it; the auxiliary vector and the VMAs of a dynamic
//! program against `setarch -R`; a thousand execs that leak nothing.
//!
//! The guest has no fork: every successful exec is the last thing its run
//! does, so each target is one run of `exec_test run TARGET...`.

mod common;

use common::*;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The one environment both runs get: the native run starts from an empty
/// environment with these, the guest from `vmrun -i -e ...` with the same.
const ENV: &[(&str, &str)] = &[("PATH", "/usr/bin:/bin"), ("LC_ALL", "C"), ("TZ", "UTC")];

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("vmrun-exec-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `name` holding `bytes` with permission bits `mode`.
    fn file(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).expect("writing a fixture");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `program args...` natively in `dir` with exactly [`ENV`].
fn native_in(dir: &Path, program: &OsStr, args: &[&OsStr]) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(ENV.iter().copied());
    run(command, b"")
}

/// `vmrun --check -i -e ENV... OPTIONS program args...` in `dir`.
fn guest_in(dir: &Path, options: &[&OsStr], program: &OsStr, args: &[&OsStr]) -> Output {
    let mut all: Vec<OsString> = vec!["-i".into()];
    for (k, v) in ENV {
        all.push("-e".into());
        all.push(format!("{k}={v}").into());
    }
    all.extend(options.iter().map(|o| o.to_os_string()));
    all.push(program.to_os_string());
    all.extend(args.iter().map(|a| a.to_os_string()));
    let mut command = vmrun_command(all);
    command.current_dir(dir);
    run(command, b"")
}

/// Runs `program args...` natively and under vmrun in `dir`, asserts that
/// the native run exited 0 (so that the comparison means something) and
/// that both are alike; returns the native run.
fn same_in(dir: &Path, program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    let what = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let args = os(args);
    let native = native_in(dir, program, &args);
    assert_status(&native, 0);
    let guest = guest_in(dir, &[], program, &args);
    assert_same(&what, &native, &guest);
    native
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The static exec_test, as a string for argument lists.
fn exec_test() -> String {
    path_str(&image("exec_test")).to_string()
}

/// A copy of `elf` with its e_machine set to 0x28 (32-bit ARM).
fn foreign_machine(elf: &[u8]) -> Vec<u8> {
    let mut elf = elf.to_vec();
    elf[0x12..0x14].copy_from_slice(&0x28u16.to_le_bytes());
    elf
}

/// A copy of the dynamic `program` whose PT_INTERP names `interp` instead
/// of glibc's ld.so (same length, so nothing else moves).
fn with_interp(program: &Path, interp: &str) -> Option<Vec<u8>> {
    let old = b"/lib64/ld-linux-x86-64.so.2\0";
    assert_eq!(
        interp.len() + 1,
        old.len(),
        "{interp} must be as long as ld.so's path"
    );
    let mut image = fs::read(program).ok()?;
    let at = image.windows(old.len()).position(|w| w == old)?;
    image[at..at + interp.len()].copy_from_slice(interp.as_bytes());
    Some(image)
}

// ---------------------------------------------------------------------------
// A static program execs static, static-PIE, dynamic and script targets

#[test]
fn static_program_execs_static_static_pie_dynamic_and_script_targets() {
    if !require_kvm() {
        return;
    }
    if !have(&["/bin/sh", "/bin/echo"]) {
        return;
    }
    let s = Scratch::new("targets");
    // A script run by dash, one nested inside it (#! naming a script),
    // and one whose #! line has an argument.
    let script = s.file(
        "script.sh",
        b"#!/bin/sh\necho \"script $0 with $# args: $*\"\nexit 3\n",
        0o755,
    );
    let nested = s.file(
        "nested",
        format!("#!{}\n", script.display()).as_bytes(),
        0o755,
    );
    let with_arg = s.file("with-arg", b"#!/bin/echo from-the-line\n", 0o755);
    let me = exec_test();
    let pie = image("exec_test_pie");
    let targets: Vec<Vec<&str>> = vec![
        vec![&me, "args", "one", "two words", ""],
        vec![path_str(&pie), "args", "x"],
        vec!["/bin/echo", "dynamic", "echo"],
        vec![path_str(&script), "a", "b"],
        vec![path_str(&nested), "n"],
        vec![path_str(&with_arg), "tail"],
    ];
    for target in targets {
        let mut args = vec!["run"];
        args.extend(&target);
        let native = native_in(&s.0, OsStr::new(&me), &os(&args));
        let guest = guest_in(&s.0, &[], OsStr::new(&me), &os(&args));
        // The script exits 3; every other target exits 0.
        let want = if target[0] == path_str(&script) || target[0] == path_str(&nested) {
            3
        } else {
            0
        };
        assert_status(&native, want);
        assert_same(
            &format!("exec_test run {}", target.join(" ")),
            &native,
            &guest,
        );
    }
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

/// The fixtures of the failing execs, made in `s`, as (name, errno) pairs
/// in the order `exec_test try` is given them.
fn failure_fixtures(s: &Scratch) -> Vec<(String, &'static str)> {
    let static_elf = fs::read(image("hello_static")).unwrap();
    s.file("text", b"just some text\n", 0o755);
    s.file("empty", b"", 0o755);
    s.file("no-x-bit", &static_elf, 0o644);
    fs::create_dir_all(s.path("dir")).unwrap();
    s.file("arm-elf", &foreign_machine(&static_elf), 0o755);
    s.file("bad-interp.sh", b"#!/nonexistent/interpreter\n", 0o755);
    let long = format!("#!/{}\n", "a".repeat(300));
    s.file("long-line.sh", long.as_bytes(), 0o755);
    // Six #! levels: Linux runs at most five nested interpreters (ELOOP).
    s.file("s0", b"#!/bin/echo\n", 0o755);
    for i in 1..=6 {
        let line = format!("#!{}\n", s.path(&format!("s{}", i - 1)).display());
        s.file(&format!("s{i}"), line.as_bytes(), 0o755);
    }
    let mut list = vec![
        ("missing".to_string(), "ENOENT"),
        ("text".into(), "ENOEXEC"),
        ("empty".into(), "ENOEXEC"),
        ("no-x-bit".into(), "EACCES"),
        ("dir".into(), "EACCES"),
        ("arm-elf".into(), "ENOEXEC"),
        ("bad-interp.sh".into(), "ENOENT"),
        ("long-line.sh".into(), "ENOEXEC"),
        ("s6".into(), "ELOOP"),
        ("text/below-a-file".into(), "ENOTDIR"),
    ];
    if let Some(elf) = with_interp(Path::new("/bin/true"), "/lib64/ld-linux-x86-64.so.X") {
        s.file("no-interp", &elf, 0o755);
        list.push(("no-interp".into(), "ENOENT"));
    }
    list
}

#[test]
fn failed_execs_return_linuxs_errno_and_the_caller_keeps_running() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("failures");
    let list = failure_fixtures(&s);
    let mut args = vec!["try"];
    args.extend(list.iter().map(|(name, _)| name.as_str()));
    let native = same_in(&s.0, exec_test(), &args);
    // The fixtures are what they claim: the native errnos are the expected.
    let mut want: String = list
        .iter()
        .map(|(name, errno)| format!("{name}: -1 {errno}\n"))
        .collect();
    want += &format!("still running after {} failed execs\n", list.len());
    assert_eq!(String::from_utf8_lossy(&native.stdout), want);
}

/// The interpreter checks of load_elf_binary: an interpreter too short for
/// an ELF header is EIO (elf_read), one whose magic is bad or whose program
/// headers cannot be read is ELIBBAD (the program's own would be ENOEXEC).
#[test]
fn bad_elf_interpreters_return_eio_or_elibbad() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("badinterp");
    let ld = fs::read("/lib64/ld-linux-x86-64.so.2").unwrap();
    // A relative PT_INTERP of ld.so's length, resolved in the cwd.
    let cases = [
        ("./interp-cut-to-40-bytes-xx", ld[..40].to_vec()),
        ("./interp-cut-to-64-bytes-xx", ld[..64].to_vec()),
        // Text longer than an ELF header: a bad magic number.
        (
            "./interp-as-text-file-xxxxx",
            b"not an ELF at all\n".repeat(8),
        ),
    ];
    let mut args = vec!["try".to_string()];
    for (i, (interp, bytes)) in cases.iter().enumerate() {
        s.file(interp, bytes, 0o755);
        let program = with_interp(Path::new("/bin/true"), interp).expect("/bin/true");
        let name = format!("uses-interp-{i}");
        s.file(&name, &program, 0o755);
        args.push(name);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let native = same_in(&s.0, exec_test(), &args);
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "uses-interp-0: -1 EIO\nuses-interp-1: -1 ELIBBAD\nuses-interp-2: -1 ELIBBAD\n\
         still running after 3 failed execs\n"
    );
}

#[test]
fn execveat_with_at_empty_path_runs_an_opened_static_program() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("fexec");
    let me = exec_test();
    same_in(&s.0, &me, &["fexec", &me, "args", "through", "an fd"]);
    same_in(
        &s.0,
        &me,
        &["fexec", path_str(&image("exec_test_pie")), "args"],
    );
}

/// execve's argv and envp as Linux reads them, whether the host gathers
/// them in one exit (every page mapped for the user) or the kernel reads
/// them itself: 340 strings across pages, strings and an array on pages
/// never touched (faulted in), on a PROT_NONE page or in the kernel's half
/// (EFAULT, though vmrun maps user pages there), the longest
/// string and one byte more (E2BIG), and strings near and past the limit
/// (E2BIG, where the kernel's heap once ran out and it panicked).
#[test]
fn execve_reads_argv_and_envp_as_linux_does() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("strings");
    let me = exec_test();
    let native = same_in(&s.0, &me, &["strings", &me]);
    let out = String::from_utf8_lossy(&native.stdout);
    for line in [
        "many: argc 40 envc 300",
        "prot-none string: EFAULT",
        "prot-none array: EFAULT",
        "kernel-half string: EFAULT",
        "vsyscall string: EFAULT",
        "too long: E2BIG",
        "near the limit: argc 17 envc 1",
        "past the limit: E2BIG",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
}

#[test]
fn exec_closes_cloexec_fds_and_resets_caught_signals() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("cloexec");
    let me = exec_test();
    let native = same_in(&s.0, &me, &["cloexec", &me]);
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "fd 3: open\nfd 4: EBADF\nSIGUSR1: default\nSIGUSR2: ignored\n"
    );
}

// ---------------------------------------------------------------------------
// The host's own dynamic programs

/// A directory for ls with fixed names, sizes and mtimes (its parent too,
/// since `ls -la` shows `..`).
fn listing_fixture(s: &Scratch) -> PathBuf {
    let dir = s.path("listing");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a.txt"), b"alpha\n").unwrap();
    fs::write(dir.join("b.bin"), [0u8, 1, 2, 3, 255]).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    let touched = Command::new("touch")
        .env("TZ", "UTC")
        .args(["-h", "-d", "2024-01-02 03:04:05"])
        .args(["a.txt", "b.bin", "link", "sub", ".", ".."].map(|n| dir.join(n)))
        .output()
        .expect("running touch");
    assert!(touched.status.success(), "{}", describe(&touched));
    dir
}

#[test]
fn host_coreutils_run_as_natively() {
    if !require_kvm() {
        return;
    }
    if !have(&[
        "/bin/echo",
        "/bin/cat",
        "/bin/ls",
        "/usr/bin/sha256sum",
        "/usr/bin/sort",
    ]) {
        return;
    }
    let s = Scratch::new("coreutils");
    let text = "pear\napple\nfig\nbanana\napple\n";
    s.file("fruit.txt", text.as_bytes(), 0o644);
    let dir = listing_fixture(&s);
    same_in(&s.0, "/bin/echo", &["hello", "from", "/bin/echo"]);
    same_in(&s.0, "/bin/cat", &["fruit.txt"]);
    same_in(&s.0, "/bin/ls", &["-la", path_str(&dir)]);
    same_in(&s.0, "/usr/bin/sha256sum", &["fruit.txt"]);
    same_in(&s.0, "/usr/bin/sort", &["-u", "fruit.txt"]);
    // Failing the same way: ls of a missing file (status 2).
    let args = os(&["missing-file"]);
    let native = native_in(&s.0, OsStr::new("/bin/ls"), &args);
    assert_status(&native, 2);
    assert_same(
        "ls missing-file",
        &native,
        &guest_in(&s.0, &[], OsStr::new("/bin/ls"), &args),
    );
}

/// Small getrandom calls come from the kernel's pool, a refill when it
/// runs short (600 seeds of 8 bytes outlast its 4 KiB), large ones and
/// /dev/urandom reads from the host: every seed differs from every other,
/// and the lengths are as natively.
#[test]
fn random_bytes_from_the_pool_and_the_host_never_repeat() {
    if !require_kvm() || !have(&["/usr/bin/python3"]) {
        return;
    }
    let s = Scratch::new("random");
    same_in(
        &s.0,
        "/usr/bin/python3",
        &[
            "-S",
            "-c",
            "import os; seeds = [os.getrandom(8) for _ in range(600)]; \
             big = os.getrandom(10000); \
             reads = [os.urandom(16) for _ in range(300)]; \
             print(len(set(seeds)), len(big), len(set(reads)), len(set(seeds + reads)))",
        ],
    );
}

#[test]
fn host_interpreters_python_perl_and_lua_run_as_natively() {
    if !require_kvm() {
        return;
    }
    if !have(&["/usr/bin/python3", "/usr/bin/perl"]) {
        return;
    }
    let s = Scratch::new("interpreters");
    same_in(
        &s.0,
        "/usr/bin/python3",
        &[
            "-S",
            "-c",
            "import sys; print(sys.argv, sum(range(100)), 'é'.encode())",
            "x",
        ],
    );
    same_in(
        &s.0,
        "/usr/bin/perl",
        &[
            "-e",
            "print join(',', map { $_ * $_ } 1..6), \" $0 @ARGV\\n\"",
            "y",
        ],
    );
    let lua = Path::new("/usr/bin/lua5.4");
    if lua.exists() {
        same_in(
            &s.0,
            lua,
            &["-e", "print(string.format('%d %s', 6 * 7, _VERSION))"],
        );
    } else {
        eprintln!("SKIPPED: lua5.4 is not installed (apt-get install lua5.4)");
    }
}

#[test]
fn dynamic_rust_musl_and_klibc_programs_run_as_natively() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("runtimes");
    same_in(&s.0, image("hello_rust_dyn"), &[]);
    if vmrun_images::is_built("hello_musl_dyn") {
        same_in(&s.0, image("hello_musl_dyn"), &[]);
    } else {
        eprintln!("SKIPPED: musl-gcc was missing at build time (apt-get install musl-tools)");
    }
    let klibc_sh = Path::new("/usr/lib/klibc/bin/sh");
    if klibc_sh.exists() {
        same_in(&s.0, klibc_sh, &["-c", "echo hi"]);
    } else {
        eprintln!("SKIPPED: klibc's sh is not installed (apt-get install klibc-utils)");
    }
}

// ---------------------------------------------------------------------------
// vmrun's PROGRAM: a script, a name found in PATH, refusals

#[test]
fn a_script_as_program_and_a_program_found_in_path_run_as_natively() {
    if !require_kvm() {
        return;
    }
    if !have(&["/bin/sh", "/usr/bin/echo"]) {
        return;
    }
    let s = Scratch::new("program");
    s.file("hello.sh", b"#!/bin/sh\necho \"$0: $*\"\n", 0o755);
    same_in(&s.0, s.path("hello.sh"), &["a", "b c"]);
    // A name without a slash: /usr/bin/echo through PATH (both runs have
    // PATH=/usr/bin:/bin), and argv[0] stays "echo".
    same_in(&s.0, "echo", &["hi", "there"]);
    same_in(&s.0, "sh", &["-c", "echo \"$0\""]);
}

/// vmrun refuses what execve refuses with the status bash gives the same
/// PROGRAM, at once (a device is not read, a FIFO not waited on).
#[test]
fn unusable_programs_are_refused_at_once_with_bashs_status() {
    if !require_kvm() {
        return;
    }
    let bash = Path::new("/bin/bash");
    if !bash.exists() {
        eprintln!("SKIPPED: /bin/bash is missing: no shell to compare statuses with");
        return;
    }
    let s = Scratch::new("refused");
    let static_elf = fs::read(image("hello_static")).unwrap();
    s.file("no-x-bit", &static_elf, 0o644);
    s.file("arm-elf", &foreign_machine(&static_elf), 0o755);
    s.file("bad-interp.sh", b"#!/nonexistent/interpreter\n", 0o755);
    let fifo = s.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|st| st.success()), "mkfifo failed");
    let mut programs: Vec<(String, i32)> = vec![
        ("/dev/zero".into(), 126),
        ("/dev/null".into(), 126),
        (path_str(&fifo).into(), 126),
        (path_str(&s.0).into(), 126),
        (path_str(&s.path("no-x-bit")).into(), 126),
        (path_str(&s.path("arm-elf")).into(), 126),
        (path_str(&s.path("missing")).into(), 127),
        (path_str(&s.path("bad-interp.sh")).into(), 127),
        ("no-such-command-anywhere".into(), 127),
    ];
    if let Some(elf) = with_interp(Path::new("/bin/true"), "/lib64/ld-linux-x86-64.so.X") {
        s.file("no-interp", &elf, 0o755);
        programs.push((path_str(&s.path("no-interp")).into(), 127));
    }
    for (program, status) in programs {
        let shell = native_in(&s.0, bash.as_os_str(), &os(&["-c", "\"$0\"", &program]));
        assert_status(&shell, status);
        let started = Instant::now();
        let guest = guest_in(&s.0, &[], OsStr::new(&program), &[]);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{program}: slow refusal"
        );
        assert_status(&guest, status);
        let stderr = String::from_utf8_lossy(&guest.stderr);
        assert!(
            stderr.starts_with(&format!("vmrun: {program}")) && stderr.lines().count() == 1,
            "{program}: not one line naming it:\n{}",
            describe(&guest)
        );
        assert!(guest.stdout.is_empty(), "{program}: {}", describe(&guest));
    }
}

// ---------------------------------------------------------------------------
// The auxiliary vector and the VMAs against `setarch -R`

/// Whether every one of `programs` exists on this host (else a SKIPPED
/// line: the comparison needs them natively, e.g. in the SVM lane's
/// minimal root file system).
fn have(programs: &[&str]) -> bool {
    for p in programs {
        if !Path::new(p).exists() {
            eprintln!("SKIPPED: {p} is not on this host; the native run needs it");
            return false;
        }
    }
    true
}

/// `setarch -R program args...` natively in `dir` with [`ENV`], or None
/// (with a SKIPPED line) when setarch cannot turn randomisation off here.
fn native_no_aslr(dir: &Path, program: &Path, args: &[&str]) -> Option<Output> {
    if !have(&["/usr/bin/setarch"]) {
        return None;
    }
    let mut all = vec![OsStr::new("-R"), program.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    let output = native_in(dir, OsStr::new("setarch"), &all);
    if output.status.success() {
        Some(output)
    } else {
        eprintln!(
            "SKIPPED: `setarch -R` cannot run here:\n{}",
            describe(&output)
        );
        None
    }
}

/// auxv lines whose values differ by design ("vector" lines are the
/// kernel's vector as the program found it, "getauxval" lines what glibc
/// answers), with the reason. They are left out of the comparison.
const AUXV_DIFFERENT_BY_DESIGN: &[(&str, &str, &str)] = &[
    // Linux sizes the signal frame from the XSAVE area (AVX, AVX-512...);
    // the guest saves the FPU with fxsave64 (512 bytes; xsave is unusable
    // in ring 0 here) and gives its own, smaller minimum.
    (
        "vector",
        "AT_MINSIGSTKSZ",
        "signal frame size from fxsave, not XSAVE",
    ),
    ("getauxval", "AT_MINSIGSTKSZ", "the same value"),
    // Linux reports HWCAP2_FSGSBASE (bit 1) because it enables CR4.FSGSBASE;
    // the guest kernel leaves user FSGSBASE off.
    ("vector", "AT_HWCAP2", "no user FSGSBASE in the guest"),
    ("getauxval", "AT_HWCAP2", "the same value"),
    // Linux 6.3+ gives rseq's feature size and alignment; the guest has no
    // rseq (the call is ENOSYS), so it gives neither.
    ("vector", "AT_RSEQ_FEATURE_SIZE", "no rseq in the guest"),
    ("vector", "AT_RSEQ_ALIGN", "no rseq in the guest"),
    ("getauxval", "AT_RSEQ_FEATURE_SIZE", "the same"),
    ("getauxval", "AT_RSEQ_ALIGN", "the same"),
    // Static glibc answers AT_HWCAP with its own HWCAP_X86_* bits from the
    // CPU features it finds usable: HWCAP_X86_AVX512_1 needs the OS to
    // enable AVX-512 state in XCR0, which the guest (fxsave only) does not.
    // The kernel's AT_HWCAP in the vector is compared.
    (
        "getauxval",
        "AT_HWCAP",
        "glibc's usable-feature bits: no AVX-512 state in the guest",
    ),
];

/// The lines of auxv's output with the by-design entries taken out, and
/// AT_SYSINFO_EHDR taken out when `drop_vdso` (a guest without a vDSO).
fn comparable_auxv(stdout: &[u8], drop_vdso: bool) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| {
            let mut words = l.split(' ');
            let (how, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let by_design = AUXV_DIFFERENT_BY_DESIGN
                .iter()
                .any(|(h, n, _)| *h == how && *n == name);
            let no_vdso = drop_vdso && name == "AT_SYSINFO_EHDR";
            !(by_design || no_vdso)
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn auxv_equals_linuxs_apart_from_the_entries_that_differ_by_design() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("auxv");
    for name in ["auxv", "auxv_dyn"] {
        let program = fs::canonicalize(image(name)).unwrap();
        let Some(native) = native_no_aslr(&s.0, &program, &[]) else {
            return;
        };
        let guest = guest_in(&s.0, &[], program.as_os_str(), &[]);
        assert_status(&guest, 0);
        assert!(guest.stderr.is_empty(), "{}", describe(&guest));
        // Until the guest maps a vDSO it gives no AT_SYSINFO_EHDR; once it
        // does, the address must be Linux's.
        let guest_text = String::from_utf8_lossy(&guest.stdout);
        let no_vdso = !guest_text.contains("vector AT_SYSINFO_EHDR");
        let (n, g) = (
            comparable_auxv(&native.stdout, no_vdso),
            comparable_auxv(&guest.stdout, no_vdso),
        );
        assert_eq!(n, g, "{name}: native auxv (left) against vmrun's (right)");
        // What must be there, with the values a dynamic PIE gets.
        let has = |entry: &str| g.iter().any(|l| l.starts_with(entry));
        for entry in [
            "vector AT_PHDR",
            "vector AT_ENTRY",
            "vector AT_RANDOM",
            "vector AT_EXECFN",
        ] {
            assert!(has(entry), "{name}: no {entry}");
        }
        if name == "auxv_dyn" {
            assert!(has("vector AT_PHDR 0x555555554040"), "{g:?}");
            assert!(has("vector AT_BASE 0x7ffff7"), "{g:?}");
        }
    }
}

/// The exec maps the vDSO's code, which every C library reads as it
/// starts: a static glibc hello and a dynamic one (ld.so reads it) take no
/// fault there, and print what they print natively.
#[test]
fn the_vdso_code_is_mapped_at_exec_and_takes_no_fault() {
    if !require_kvm() {
        return;
    }
    for name in ["hello_static", "hello_rust_dyn"] {
        let program = image(name);
        let native = native(&program, NO_ARGS);
        let output = vmrun([
            "--maps".as_ref(),
            "--trace".as_ref(),
            "fault".as_ref(),
            program.as_os_str(),
        ]);
        assert_status(&output, 0);
        assert_eq!(output.stdout, native.stdout, "{}", describe(&output));
        let err = String::from_utf8_lossy(&output.stderr);
        let (start, end) = err
            .lines()
            .find(|l| l.ends_with("[vdso]"))
            .and_then(|l| l.split_whitespace().next()?.split_once('-'))
            .map(|(a, b)| {
                (
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                )
            })
            .unwrap_or_else(|| panic!("no [vdso] line in:\n{err}"));
        let faults: Vec<u64> = err
            .lines()
            .filter_map(|l| l.split(" fault ").nth(1))
            .filter_map(|f| f.split_whitespace().nth(1))
            .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            .collect();
        assert!(!faults.is_empty(), "no fault traced:\n{err}");
        assert!(
            faults.iter().all(|a| !(start..end).contains(a)),
            "{name}: a fault in [vdso] {start:#x}-{end:#x}:\n{err}"
        );
    }
}

/// A dynamic program's start-up takes no instruction-fetch fault, nor one
/// on its program headers: the exec maps the interpreter's entry page with
/// its fault-around (its headers, text and read-only data), as that first
/// fetch would, and the page of `AT_PHDR` (a PIE's first, at
/// 0x555555554000), as the interpreter's first read would; the read fault
/// on a library's headers maps its text and read-only data on into the
/// next 2 MiB region (glibc's headers end one). Each prints what it prints
/// natively.
#[test]
fn a_dynamic_start_takes_no_instruction_fetch_fault() {
    if !require_kvm() {
        return;
    }
    for name in ["hello_rust_dyn", "hello_musl_dyn"] {
        let program = image(name);
        let native = native(&program, NO_ARGS);
        let output = vmrun(["--trace".as_ref(), "fault".as_ref(), program.as_os_str()]);
        assert_status(&output, 0);
        assert_eq!(output.stdout, native.stdout, "{}", describe(&output));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(" fault "), "{name}: no fault traced:\n{err}");
        assert!(
            !err.lines()
                .any(|l| l.contains(" fault ") && l.contains("user exec")),
            "{name}: an instruction-fetch fault:\n{err}"
        );
        assert!(
            !err.contains(" fault      addr 0x555555554"),
            "{name}: a fault on the program's headers:\n{err}"
        );
    }
}

/// Whether `line` is one of Linux's vDSO-family lines.
fn is_vdso_line(line: &str) -> bool {
    ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"]
        .iter()
        .any(|tag| line.ends_with(tag))
}

#[test]
fn vmas_of_a_dynamic_program_at_exit_equal_linuxs_maps() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("maps");
    let program = fs::canonicalize(image("proc_maps_dyn")).unwrap();
    let Some(native) = native_no_aslr(&s.0, &program, &[]) else {
        return;
    };
    let native_text = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native_text.contains("ld-linux-x86-64.so.2") && native_text.contains("libc.so.6"));
    let guest = guest_in(&s.0, &[OsStr::new("--maps")], program.as_os_str(), &[]);
    assert_status(&guest, 0);
    let guest_text = String::from_utf8_lossy(&guest.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&guest.stderr).into_owned();
    let at_exit = stderr
        .split("vmrun: maps at exit (pid 1):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no maps at exit:\n{}", describe(&guest)));
    let host_view: Vec<&str> = at_exit.lines().take_while(|l| l.contains('-')).collect();

    // The host's view of the exported VMAs equals Linux's listing entry for
    // entry without the vDSO family: [vsyscall] is no VMA on Linux either
    // (the gate area, added to the listing), and a guest without a vDSO
    // has no [vvar]/[vvar_vclock]/[vdso].
    let without_vdso = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !is_vdso_line(l))
            .map(String::from)
            .collect()
    };
    let host_view_rest: Vec<String> = host_view
        .iter()
        .filter(|l| !is_vdso_line(l))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        without_vdso(&native_text),
        host_view_rest,
        "native /proc/self/maps (left) against vmrun --maps at exit (right)"
    );
    // The guest's own /proc/self/maps: all of Linux's lines once the guest
    // shows a [vdso]; without one, the same comparison as above.
    if guest_text.contains("[vdso]") {
        assert_eq!(
            native_text, guest_text,
            "native (left) and guest /proc/self/maps"
        );
    } else {
        assert_eq!(without_vdso(&native_text), without_vdso(&guest_text));
    }
}

// ---------------------------------------------------------------------------
// A thousand execs leak nothing

/// From `vmrun --stats`: frames in use at exit, and the leak counts.
fn frames_at_exit(stderr: &str) -> (u64, String) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("vmrun: guest:"))
        .unwrap_or_else(|| panic!("no guest statistics line in:\n{stderr}"));
    let before = line
        .split(" frames in use at exit")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {line:?}"));
    let leaked = line.rsplit(", ").next().unwrap_or("").to_string();
    (before, leaked)
}

/// Pages the guest's page cache read from the host, from the statistics
/// line `--stats` prints at exit.
fn host_pages_read(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find_map(|l| l.split("page cache: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no page-cache count in:\n{text}"))
}

#[test]
fn a_program_execing_its_own_unchanged_file_maps_it_from_ram() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("self-exec");
    // exec_loop execs itself through argv[0]: every exec opens the file
    // the VMM loaded, unchanged, and finds it in RAM.
    let program = image("exec_loop");
    let args = os(&["3"]);
    let native = native_in(&s.0, program.as_os_str(), &args);
    assert_status(&native, 0);
    // (--stats adds its tables to stderr: stdout and status are compared.)
    let stats = [OsStr::new("--stats")];
    let guest = guest_in(&s.0, &stats, program.as_os_str(), &args);
    assert_status(&guest, 0);
    assert_eq!(guest.stdout, native.stdout, "{}", describe(&guest));
    assert_eq!(host_pages_read(&guest.stderr), 0, "{}", describe(&guest));
    if !require_programs(&["/bin/busybox"]) {
        return;
    }
    // busybox's sh running busybox applets (a copy, named so that busybox
    // takes its first argument as the applet): the same file again, until
    // the program changes it (touch gives it a new modification time):
    // from then on it is the host's file, read into the page cache.
    let copy = s.path("busybox");
    fs::copy("/bin/busybox", &copy).unwrap();
    for (script, changed) in [
        (
            "./busybox echo one; ./busybox true; ./busybox echo two",
            false,
        ),
        (
            "./busybox echo one; ./busybox touch busybox; ./busybox echo two",
            true,
        ),
    ] {
        let args = os(&["sh", "-c", script]);
        let native = native_in(&s.0, copy.as_os_str(), &args);
        assert_status(&native, 0);
        let guest = guest_in(&s.0, &stats, OsStr::new("./busybox"), &args);
        assert_status(&guest, 0);
        assert_eq!(native.stdout, b"one\ntwo\n");
        assert_eq!(
            guest.stdout,
            native.stdout,
            "{script}: {}",
            describe(&guest)
        );
        let read = host_pages_read(&guest.stderr);
        assert_eq!(
            read > 0,
            changed,
            "{script}: {read} pages read from the host"
        );
    }
}

/// Execs recorded in a `--stats-json` file.
fn execs_in(json: &Path) -> usize {
    let text = fs::read_to_string(json).expect("reading the --stats-json file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("--stats-json is JSON");
    value["execs"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_thousand_execs_leave_the_frame_count_where_one_does() {
    if !require_kvm() {
        return;
    }
    const EXECS: usize = 1000;
    let s = Scratch::new("loop");
    let program = image("exec_loop");
    let mut frames = Vec::new();
    for n in [1, EXECS] {
        let count = n.to_string();
        let native = native_in(&s.0, program.as_os_str(), &os(&[&count]));
        assert_status(&native, 0);
        let json = s.path(&format!("stats-{n}.json"));
        let options = [
            OsStr::new("--stats"),
            OsStr::new("--stats-json"),
            json.as_os_str(),
        ];
        let guest = guest_in(&s.0, &options, program.as_os_str(), &os(&[&count]));
        // vmrun itself exits 125 if the guest leaked a frame or table page.
        assert_status(&guest, 0);
        assert_eq!(guest.stdout, native.stdout, "{}", describe(&guest));
        // The boot exec plus n execve calls.
        assert_eq!(execs_in(&json), n + 1);
        let (in_use, leaked) = frames_at_exit(&String::from_utf8_lossy(&guest.stderr));
        assert_eq!(leaked, "0 user frames and 0 user table pages leaked");
        frames.push(in_use);
    }
    assert_eq!(
        frames[0], frames[1],
        "frames in use at exit after 1 exec (left) and after {EXECS} (right)"
    );
}

#[test]
fn the_vsyscall_page_is_emulated_and_exec_of_a_file_open_for_writing_is_etxtbsy() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("vsyscall");
    // A copy to open for writing and exec (the image itself is shared).
    let copy = s.path("victim");
    fs::copy(image("exit42"), &copy).unwrap();
    let expected = "time plausible 1\ngettimeofday 0, plausible 1, agrees with time 1\n\
         getcpu 0, cpu below 1024 1, node 0\nexec of a file open for writing: ETXTBSY\n";
    // The native side needs a host kernel that still emulates the page
    // (vsyscall=xonly or emulate); with vsyscall=none the program would
    // die natively, so only the guest's run is checked.
    let host_has_vsyscall = fs::read_to_string("/proc/self/maps")
        .map(|m| m.contains("[vsyscall]"))
        .unwrap_or(false);
    let out = if host_has_vsyscall {
        same_in(&s.0, image("vsyscall"), &[path_str(&copy)])
    } else {
        eprintln!("host kernel has no vsyscall page: checking the guest's run only");
        let guest = guest_in(
            &s.0,
            &[],
            image("vsyscall").as_os_str(),
            &os(&[path_str(&copy)]),
        );
        assert_status(&guest, 0);
        guest
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn clock_gettime_in_a_loop_takes_no_kernel_entry() {
    if !require_kvm() {
        return;
    }
    let s = Scratch::new("vdso");
    let mut cmd = vmrun_command([
        OsStr::new("--stats"),
        image("bench_clock").as_os_str(),
        OsStr::new("5000"),
    ]);
    cmd.current_dir(&s.0);
    let out = run(cmd, b"");
    assert_status(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    // The system-call table lists every call the guest served by name.
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("system calls"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(!table.is_empty(), "no system-call table in:\n{err}");
    assert!(
        table.iter().all(|l| !l.contains("clock_gettime")),
        "clock_gettime entered the kernel:\n{}",
        table.join("\n")
    );
}
