//! `vmrun`: the command-line front end of the `vmm` library.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vmm::error::{Error, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_VMRUN_FAILURE};
use vmm::fs::Mount;
use vmm::hypercall::Outcome;
use vmm::kvm::Platform;
use vmm::session::Session;
use vmm::session::{SessionReport, Watch};
use vmm::stdio::Stdio;
use vmm::vm::{RunEnd, RunReport, VmConfig, DEFAULT_MEM};
use vmrun_contract::trace::category;

const USAGE: &str = "\
usage: vmrun [OPTIONS] PROGRAM [ARGS...]
       vmrun bench [BENCH OPTIONS]     (see `vmrun bench --help`)

Run an x86-64 Linux ELF program (or a #! script) in a KVM virtual machine
under vmrun's own guest kernel. The program's exit status becomes vmrun's.
A PROGRAM without a slash is looked up in PATH, as a shell does.
The guest sees the host's file tree read-only and the current directory read-write.

options:
  -m, --mem SIZE          guest RAM (default 256M; suffixes K, M, G)
  -e, --env NAME=VALUE    set an environment variable for the program
  -u, --unset NAME        remove a variable from the program's environment
  -i, --clear-env         start from an empty environment (default: vmrun's)
      --argv0 NAME        pass NAME as argv[0] instead of PROGRAM
      --aslr              randomise the address-space layout (default: off)
  -v, --verbose           show the guest kernel's log lines

files (guest /proc and /dev are the guest kernel's own, never the host's):
      --mount HOST:GUEST[:ro|rw]
                          show host directory HOST at the absolute guest
                          path GUEST, read-write unless :ro (repeatable;
                          --volume is the same, as in docker)
      --isolate           hide the host's file tree and current directory:
                          the guest sees only its --mount directories

observing the guest (output on stderr unless a FILE is given):
      --trace CATS        print trace records as they happen; CATS is a
                          comma list of pt, vma, fault, syscall, exec,
                          task, all
      --trace-json FILE   write trace records as JSON lines to FILE (the
                          categories of --trace, or all)
      --strace            print system calls as strace does
      --maps              print the VMAs at exec and at exit, as
                          /proc/PID/maps prints them
      --pagetables        print the page-table tree and user mappings at
                          exit, as the host walks them from CR3
      --pagetables-json FILE  write that walk as JSON to FILE
      --check[=N]         check the page tables against the VMAs and the
                          frame accounting at exec and exit (and every N
                          faults); a violation stops the run (exit 125)
      --svg FILE          draw the page-table tree at exit as SVG
      --histogram FILE    draw the page-fault latency histogram as SVG
      --stats             print fault, syscall, exec and boot statistics
      --stats-json FILE   write the statistics as JSON to FILE
  -V, --version           print the version and the detected KVM platform
  -h, --help              print this help

exit status: the program's; 128+N if killed by signal N; 125 vmrun failed;
126 the program cannot be executed; 127 the program was not found.";

struct Cli {
    config: VmConfig,
    watch: Watch,
}

enum Parsed {
    Run(Box<Cli>),
    Exit(ExitCode),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "bench") {
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return ExitCode::from(vmm::bench::run(&rest).clamp(0, 255) as u8);
    }
    let mut cli = match parse(args) {
        Ok(Parsed::Run(cli)) => *cli,
        Ok(Parsed::Exit(code)) => return code,
        Err(msg) => {
            eprintln!("vmrun: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_VMRUN_FAILURE as u8);
        }
    };
    if let Err(code) = locate_program(&mut cli.config) {
        return ExitCode::from(code as u8);
    }
    let mut session = match Session::new(&cli.config, cli.watch.clone()) {
        Ok(session) => session,
        Err(e) => return ExitCode::from(fail(&e) as u8),
    };
    let code = match session.run(&mut Stdio::new(cli.config.verbose)) {
        Ok(report) => finish(&cli, &report),
        Err(e) => fail(&e),
    };
    // Exit without tearing the VM down piece by piece: unmapping hundreds
    // of MiB of guest RAM and destroying the VM take longer than the whole
    // run of a small program, and the kernel reclaims all of it at exit.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

fn fail(e: &Error) -> i32 {
    eprintln!("vmrun: {e}");
    e.exit_status()
}

fn finish(cli: &Cli, session: &SessionReport) -> i32 {
    if !session.violations.is_empty() {
        eprintln!(
            "vmrun: page-table check failed at {} ({} violations):",
            session.violation_at,
            session.violations.len()
        );
        for v in &session.violations {
            eprintln!("vmrun:   {v}");
        }
        return EXIT_VMRUN_FAILURE;
    }
    let report = &session.run;
    if cli.watch.stats {
        print_stats(report);
    }
    if let Some(leaks) = report.leaks() {
        eprintln!("vmrun: {leaks}");
        return EXIT_VMRUN_FAILURE;
    }
    let code = match &report.outcome {
        RunEnd::Guest(Outcome::Exited(status)) => *status,
        RunEnd::Guest(Outcome::Signaled {
            signal,
            fault_addr,
            ip,
            error_code,
        }) => {
            let name = signal_name(*signal);
            match signal {
                7 | 11 => {
                    eprintln!("vmrun: {name} at {fault_addr:#x} ip {ip:#x} (error {error_code:#x})")
                }
                4 | 5 | 8 => eprintln!("vmrun: {name} at ip {ip:#x}"),
                _ => eprintln!("vmrun: {name}"),
            }
            128 + *signal as i32
        }
        RunEnd::Guest(Outcome::ExecFailed { errno, message }) => {
            exec_failed(&cli.config.program, *errno, message)
        }
        RunEnd::Guest(Outcome::GuestPanic(msg)) => {
            eprintln!("vmrun: guest kernel panic: {msg}");
            EXIT_VMRUN_FAILURE
        }
        RunEnd::VmFailure(dump) => {
            eprintln!("vmrun: the VM stopped unexpectedly: {dump}");
            EXIT_VMRUN_FAILURE
        }
    };
    code
}

/// Reports a failed exec of PROGRAM with the status a shell gives for the
/// same execve errno. ENOENT for a file that is there means a missing
/// interpreter, an ELF's PT_INTERP or a `#!` line's: bash 5.2 ("cannot
/// execute: required file not found") and dash ("not found") both exit 127
/// for either. Every other errno (ENOEXEC, EACCES, ELOOP, E2BIG...) is
/// "cannot execute", 126. The guest's message says which file and why.
fn exec_failed(program: &Path, errno: i64, message: &str) -> i32 {
    let shown = program.display();
    if errno == i64::from(libc::ENOENT) {
        eprintln!("vmrun: {shown}: cannot execute: required file not found ({message})");
        EXIT_NOT_FOUND
    } else {
        eprintln!("vmrun: {shown}: {message}");
        EXIT_CANNOT_EXECUTE
    }
}

/// PROGRAM as a shell finds it: a name with a slash is used as it is; a
/// name without one is looked up in the directories of PATH (the program's
/// environment's, after -e/-u/-i, as env(1) does; "/bin:/usr/bin" when it
/// has none), taking the first executable regular file. A file found
/// without execute permission is used only if nothing executable is found,
/// so that it fails with "Permission denied" (126) as in bash; nothing
/// found at all is "command not found" (127). argv[0] stays the name given.
fn locate_program(config: &mut VmConfig) -> Result<(), i32> {
    let name = config.program.as_os_str();
    if name.as_encoded_bytes().contains(&b'/') {
        return Ok(());
    }
    let search = config
        .env
        .iter()
        .find(|e| env_name(e) == b"PATH")
        .map(|e| OsString::from_vec(e.as_encoded_bytes()[b"PATH=".len()..].to_vec()))
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    match find_in_path(name, &search) {
        Some(path) => {
            config.program = path;
            Ok(())
        }
        None => {
            eprintln!("vmrun: {}: command not found", name.to_string_lossy());
            Err(EXIT_NOT_FOUND)
        }
    }
}

/// The search path execvp(3) uses when PATH is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The first executable regular file `name` in the directories of `search`
/// (an empty entry is the current directory), else the first regular file
/// `name` that is not executable, else None.
fn find_in_path(name: &OsStr, search: &OsStr) -> Option<PathBuf> {
    let mut not_executable = None;
    for dir in std::env::split_paths(search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if is_executable(&candidate) {
            return Some(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    not_executable
}

/// Whether vmrun's effective user may execute `path`.
fn is_executable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// The description a shell prints for a fatal signal.
fn signal_name(signal: u32) -> String {
    match signal {
        4 => "Illegal instruction".into(),
        5 => "Trace/breakpoint trap".into(),
        6 => "Aborted".into(),
        9 => "Killed".into(),
        7 => "Bus error".into(),
        8 => "Floating point exception".into(),
        11 => "Segmentation fault".into(),
        n => format!("Killed by signal {n}"),
    }
}

/// The guest's counters at exit (the timings and the rest are in the
/// statistics `--stats` prints from the trace).
fn print_stats(report: &RunReport) {
    if let Some(s) = &report.stats {
        eprintln!(
            "vmrun: guest: {} page faults, {} syscalls, peak {} user frames, \
                   {} frames in use at exit ({} kernel), {} user frames and {} user table pages \
                   leaked",
            s.page_faults,
            s.syscalls,
            s.peak_user_frames,
            s.frames_in_use,
            s.frames_kernel,
            s.user_frames,
            s.user_table_pages
        );
        eprintln!(
            "vmrun: guest: {} forks, {} context switches, {} timer interrupts, {} zombies \
                   reaped, {} pages copied on write; page cache: {} pages read from the host in \
                   {} reads",
            s.forks,
            s.context_switches,
            s.timer_ticks,
            s.zombies_reaped,
            s.cow_copies,
            s.cache_pages_read,
            s.cache_fills
        );
    }
}

fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut config = VmConfig {
        mem_size: DEFAULT_MEM,
        program: Default::default(),
        argv: vec![],
        env: std::env::vars_os().map(|(k, v)| join_env(&k, &v)).collect(),
        aslr: false,
        verbose: false,
        observe: Default::default(),
        mounts: vec![],
        default_view: true,
    };
    let mut watch = Watch::default();
    let mut argv0 = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match s.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                print_version();
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-m" | "--mem" => config.mem_size = parse_size(&value(&s)?.to_string_lossy())?,
            "-e" | "--env" => set_env(&mut config.env, value(&s)?)?,
            "-u" | "--unset" => unset_env(&mut config.env, &value(&s)?),
            "-i" | "--clear-env" => config.env.clear(),
            "--argv0" => argv0 = Some(value(&s)?),
            "--aslr" => config.aslr = true,
            "--mount" | "--volume" => config
                .mounts
                .push(Mount::parse(&value(&s)?.to_string_lossy())?),
            "--isolate" => config.default_view = false,
            "--stats" => watch.stats = true,
            "--stats-json" => watch.stats_json = Some(value(&s)?.into()),
            "--trace" => watch.trace = parse_categories(&value(&s)?.to_string_lossy())?,
            "--trace-json" => watch.trace_json = Some((value(&s)?.into(), 0)),
            "--strace" => watch.strace = true,
            "--maps" => watch.maps = true,
            "--pagetables" => watch.pagetables = true,
            "--pagetables-json" => watch.pagetables_json = Some(value(&s)?.into()),
            "--check" => watch.check = true,
            "--svg" => watch.svg = Some(value(&s)?.into()),
            "--histogram" => watch.histogram = Some(value(&s)?.into()),
            _ if s.starts_with("--check=") => {
                watch.check = true;
                watch.check_every = s["--check=".len()..]
                    .parse()
                    .map_err(|_| format!("{s}: expected --check=N with N a number of faults"))?;
            }
            "-v" | "--verbose" => config.verbose = true,
            "--" => {
                config.program = it.next().ok_or("missing PROGRAM")?.into();
                break;
            }
            _ if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => {
                config.program = arg.into();
                break;
            }
        }
    }
    if config.program.as_os_str().is_empty() {
        return Err("missing PROGRAM".into());
    }
    config
        .argv
        .push(argv0.unwrap_or_else(|| config.program.clone().into_os_string()));
    config.argv.extend(it);
    if let Some((_, mask)) = &mut watch.trace_json {
        *mask = if watch.trace != 0 {
            watch.trace
        } else {
            ALL_CATEGORIES
        };
    }
    Ok(Parsed::Run(Box::new(Cli { config, watch })))
}

const ALL_CATEGORIES: u32 = category::PAGE_TABLES
    | category::VMAS
    | category::FAULTS
    | category::SYSCALLS
    | category::EXEC
    | category::TASKS;

/// `pt,vma,fault,syscall,exec` or `all` to category bits.
fn parse_categories(list: &str) -> Result<u32, String> {
    list.split(',').try_fold(0, |mask, name| {
        let bit = match name.trim() {
            "pt" | "pagetables" => category::PAGE_TABLES,
            "vma" | "vmas" => category::VMAS,
            "fault" | "faults" => category::FAULTS,
            "syscall" | "syscalls" => category::SYSCALLS,
            "exec" => category::EXEC,
            "task" | "tasks" => category::TASKS,
            "all" => ALL_CATEGORIES,
            other => {
                return Err(format!(
                    "--trace: unknown category {other:?} (pt, vma, fault, syscall, exec, task, all)"
                ))
            }
        };
        Ok(mask | bit)
    })
}

fn print_version() {
    println!("vmrun {}", env!("CARGO_PKG_VERSION"));
    match vmm::kvm::open() {
        Ok(_) => println!("KVM: {}", Platform::detect().describe()),
        Err(e) => println!("KVM: unavailable: {e}"),
    }
}

fn join_env(k: &std::ffi::OsStr, v: &std::ffi::OsStr) -> OsString {
    let mut s = k.to_os_string();
    s.push("=");
    s.push(v);
    s
}

fn env_name(entry: &OsString) -> Vec<u8> {
    let b = entry.as_encoded_bytes();
    b[..b.iter().position(|&c| c == b'=').unwrap_or(b.len())].to_vec()
}

fn set_env(env: &mut Vec<OsString>, assignment: OsString) -> Result<(), String> {
    if !assignment.as_encoded_bytes().contains(&b'=') {
        return Err(format!(
            "--env {}: expected NAME=VALUE",
            assignment.to_string_lossy()
        ));
    }
    unset_env(env, &OsString::from_vec(env_name(&assignment)));
    env.push(assignment);
    Ok(())
}

fn unset_env(env: &mut Vec<OsString>, name: &OsString) {
    env.retain(|e| env_name(e) != name.as_encoded_bytes());
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or(format!("--mem {s}: not a size (examples: 256M, 1G)"))
}

trait FromVec {
    fn from_vec(v: Vec<u8>) -> Self;
}

impl FromVec for OsString {
    fn from_vec(v: Vec<u8>) -> OsString {
        std::os::unix::ffi::OsStringExt::from_vec(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm::fs::Access;

    fn run_cli(args: &[&str]) -> Cli {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(cli)) => *cli,
            _ => panic!("expected a run"),
        }
    }

    #[test]
    fn options_before_program_and_args_after_it() {
        let cli = run_cli(&["-i", "-e", "A=1", "--mem", "512M", "prog", "-e", "x"]);
        assert_eq!(cli.config.mem_size, 512 << 20);
        assert_eq!(cli.config.env, vec![OsString::from("A=1")]);
        assert_eq!(cli.config.argv, vec!["prog", "-e", "x"]);
    }

    #[test]
    fn env_set_replaces_and_unset_removes() {
        let cli = run_cli(&["-i", "-e", "A=1", "-e", "B=2", "-e", "A=3", "-u", "B", "p"]);
        assert_eq!(cli.config.env, vec![OsString::from("A=3")]);
    }

    #[test]
    fn sizes_take_suffixes_and_reject_garbage() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn trace_categories_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse_categories("pt,fault"),
            Ok(category::PAGE_TABLES | category::FAULTS)
        );
        assert_eq!(parse_categories("all"), Ok(ALL_CATEGORIES));
        assert!(parse_categories("pt,disk").unwrap_err().contains("disk"));
    }

    #[test]
    fn observation_options_fill_the_watch() {
        let cli = run_cli(&[
            "--maps",
            "--check=100",
            "--trace-json",
            "t.jsonl",
            "--strace",
            "p",
        ]);
        assert!(cli.watch.maps && cli.watch.check && cli.watch.strace);
        assert_eq!(cli.watch.check_every, 100);
        assert_eq!(
            cli.watch.trace_json.as_ref().map(|(_, m)| *m),
            Some(ALL_CATEGORIES)
        );
        assert!(cli.watch.observe().stop_at_exec_exit);
    }

    #[test]
    fn mounts_and_isolate_fill_the_view() {
        let cli = run_cli(&[
            "--isolate",
            "--mount",
            "/srv:/data:ro",
            "--volume",
            "/tmp:/scratch",
            "p",
        ]);
        assert!(!cli.config.default_view);
        let m = &cli.config.mounts;
        assert_eq!(
            (m[0].guest.as_slice(), m[0].access),
            (&b"/data"[..], Access::ReadOnly)
        );
        assert_eq!(
            (m[1].guest.as_slice(), m[1].access),
            (&b"/scratch"[..], Access::ReadWrite)
        );
        assert!(run_cli(&["p"]).config.default_view);
    }

    #[test]
    fn mounting_over_proc_or_dev_is_refused() {
        for spec in ["/x:/proc", "/x:/dev:ro", "/x:relative", "/x"] {
            let err = parse(vec!["--mount".into(), spec.into(), "p".into()]);
            assert!(matches!(err, Err(msg) if msg.contains("--mount")), "{spec}");
        }
    }

    /// A fresh directory under the temp dir, for PATH lookups.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmrun-main-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn path_lookup_takes_the_first_executable_regular_file() {
        let root = scratch("lookup");
        let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(a.join("prog")).unwrap(); // a directory: skipped
        file(&b.join("prog"), 0o755);
        file(&c.join("prog"), 0o755);
        let search = std::env::join_paths([&a, &b, &c]).unwrap();
        assert_eq!(find_in_path("prog".as_ref(), &search), Some(b.join("prog")));
        assert_eq!(find_in_path("nothing".as_ref(), &search), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_name_with_a_slash_is_not_looked_up_and_argv0_stays_the_name() {
        let mut cli = run_cli(&["-i", "-e", "PATH=/nonexistent", "./prog", "x"]);
        assert_eq!(locate_program(&mut cli.config), Ok(()));
        assert_eq!(cli.config.program, PathBuf::from("./prog"));
        let root = scratch("argv0");
        file(&root.join("tool"), 0o700);
        let path = format!("PATH=/nonexistent::{}", root.display());
        let mut cli = run_cli(&["-i", "-e", &path, "tool", "x"]);
        assert_eq!(locate_program(&mut cli.config), Ok(()));
        assert_eq!(cli.config.program, root.join("tool"));
        assert_eq!(cli.config.argv, vec!["tool", "x"]);
        let mut cli = run_cli(&["-i", "-e", &path, "no-such-tool-here"]);
        assert_eq!(locate_program(&mut cli.config), Err(EXIT_NOT_FOUND));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn unknown_option_and_missing_program_are_errors() {
        assert!(parse(vec!["--bogus".into()]).is_err());
        assert!(parse(vec!["-i".into()]).is_err());
    }
}
