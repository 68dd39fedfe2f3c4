//! `vmrun`: the command-line front end of the `vmm` library.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use vmm::error::{Error, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_VMRUN_FAILURE};
use vmm::fs::Mount;
use vmm::hypercall::{KillCause, Outcome};
use vmm::kvm::Platform;
use vmm::session::Session;
use vmm::session::{SessionReport, Watch};
use vmm::stdio::Stdio;
use vmm::vm::{FaultSize, RunEnd, RunReport, VmConfig};
use vmrun_contract::trace::category;

/// Records the signals vmrun was started with ignored, before `main`: Rust's
/// runtime sets SIGPIPE to SIG_IGN before it calls `main`, and the program
/// must start with the dispositions vmrun was given, as after a native exec.
#[used]
#[link_section = ".init_array"]
static RECORD_IGNORED_SIGNALS: extern "C" fn() = vmm::interrupt::record_start;

/// `vmrun [OPTIONS] PROGRAM [ARGS...]` and `vmrun bench [...]`.
#[derive(Parser, Debug)]
#[command(
    name = "vmrun",
    about = "Run an x86-64 Linux ELF program (or a #! script) in a KVM virtual machine \
             under vmrun's own guest kernel. The program's exit status becomes vmrun's.",
    long_about = None,
    override_usage = "vmrun [OPTIONS] PROGRAM [ARGS...]\n       vmrun bench [BENCH OPTIONS]     (see `vmrun bench --help`)",
    after_help = AFTER_HELP,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    args_override_self = true,
    term_width = 80
)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,

    /// Guest RAM (suffixes K, M, G)
    #[arg(short, long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    mem: u64,
    /// Set an environment variable for the program (applied in order with -u)
    #[arg(short, long, value_name = "NAME=VALUE", value_parser = parse_assignment)]
    env: Vec<OsString>,
    /// Remove a variable from the program's environment
    #[arg(short, long, value_name = "NAME")]
    unset: Vec<OsString>,
    /// Start from an empty environment, wherever it is given (default: vmrun's);
    /// -e and -u apply after it
    #[arg(short = 'i', long)]
    clear_env: bool,
    /// Pass NAME as argv[0] instead of PROGRAM
    #[arg(long, value_name = "NAME")]
    argv0: Option<OsString>,
    /// Randomise the address-space layout (default: off)
    #[arg(long)]
    aslr: bool,
    /// Show the guest kernel's log lines
    #[arg(short, long)]
    verbose: bool,
    /// How much an anonymous page fault maps: 4k (one page per fault, as
    /// Linux without transparent huge pages), 64k (the aligned 64 KiB block
    /// where the area allows, as Linux's 64 KiB multi-size THP), 2m (64k, and
    /// a 2 MiB page where the whole aligned 2 MiB lies in the area)
    #[arg(long, value_name = "SIZE", default_value = "2m", value_parser = parse_fault_size)]
    fault_size: FaultSize,
    /// Print the version and the detected KVM platform
    #[arg(short = 'V', long)]
    version: bool,

    /// Show host directory HOST at the absolute guest path GUEST, read-write
    /// unless :ro (repeatable; --volume is the same, as in docker)
    #[arg(long, visible_alias = "volume", value_name = "HOST:GUEST[:ro|rw]",
          help_heading = FILES)]
    mount: Vec<String>,
    /// Hide the host's file tree and current directory: the guest sees only
    /// its --mount directories
    #[arg(long, help_heading = FILES)]
    isolate: bool,

    /// Print trace records as they happen; CATS is a comma list of pt, vma,
    /// fault, syscall, exec, task, all (those six), and boot (the guest
    /// kernel's own page tables, adopted at boot before the program's exec)
    #[arg(long, value_name = "CATS", value_parser = parse_categories, help_heading = OBSERVE)]
    trace: Option<u32>,
    /// Write trace records as JSON lines to FILE (the categories of --trace,
    /// or all)
    #[arg(long, value_name = "FILE", help_heading = OBSERVE)]
    trace_json: Option<PathBuf>,
    /// Print system calls as strace does
    #[arg(long, help_heading = OBSERVE)]
    strace: bool,
    /// Print the VMAs at exec and at exit, as /proc/PID/maps prints them
    #[arg(long, help_heading = OBSERVE)]
    maps: bool,
    /// Print the page-table tree and user mappings at exit, as the host walks
    /// them from CR3
    #[arg(long, help_heading = OBSERVE)]
    pagetables: bool,
    /// Write that walk as JSON to FILE
    #[arg(long, value_name = "FILE", help_heading = OBSERVE)]
    pagetables_json: Option<PathBuf>,
    /// Check the page tables against the VMAs and the frame accounting at
    /// exec and exit (and every N faults); a violation stops the run (exit 125)
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true,
          default_missing_value = "0", help_heading = OBSERVE)]
    check: Option<u32>,
    /// Draw the page-table tree at exit as SVG
    #[arg(long, value_name = "FILE", help_heading = OBSERVE)]
    svg: Option<PathBuf>,
    /// Draw the page-fault latency histogram as SVG
    #[arg(long, value_name = "FILE", help_heading = OBSERVE)]
    histogram: Option<PathBuf>,
    /// Print fault, syscall, exec and boot statistics
    #[arg(long, help_heading = OBSERVE)]
    stats: bool,
    /// Write the statistics as JSON to FILE
    #[arg(long, value_name = "FILE", help_heading = OBSERVE)]
    stats_json: Option<PathBuf>,
    /// Stop the program before its first instruction and wait for gdb on
    /// 127.0.0.1:PORT (0: a free port, printed) or the Unix socket PATH
    /// (`target remote :PORT` or `target remote PATH` in gdb)
    #[arg(long, value_name = "PORT|unix:PATH", value_parser = vmm::gdb::Listen::parse,
          help_heading = OBSERVE)]
    gdb: Option<vmm::gdb::Listen>,

    /// The program (looked up in PATH if it has no slash) and its arguments;
    /// everything after PROGRAM goes to it
    #[arg(value_name = "PROGRAM", trailing_var_arg = true, num_args = 1..)]
    program: Vec<OsString>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Benchmark workloads inside the guest and natively (see `vmrun bench --help`)
    #[command(disable_help_flag = true)]
    Bench {
        /// `vmrun bench`'s own options
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

const FILES: &str = "Files (guest /proc and /dev are the guest kernel's own, never the host's)";
const OBSERVE: &str = "Observing the guest (output on stderr unless a FILE is given)";

const AFTER_HELP: &str = "\
A PROGRAM without a slash is looked up in PATH, as a shell does. The guest sees
the host's file tree read-only and the current directory read-write.

Exit status: the program's; 128+N if killed by signal N; 125 vmrun failed;
126 the program cannot be executed; 127 the program was not found.";

struct Cli {
    config: VmConfig,
    watch: Watch,
    gdb: Option<vmm::gdb::Listen>,
}

enum Parsed {
    Run(Box<Cli>),
    Bench(Vec<String>),
    Exit(ExitCode),
}

fn main() -> ExitCode {
    let mut cli = match parse(std::env::args_os()) {
        Ok(Parsed::Run(cli)) => *cli,
        Ok(Parsed::Bench(args)) => {
            return ExitCode::from(vmm::bench::run(&args).clamp(0, 255) as u8)
        }
        Ok(Parsed::Exit(code)) => return code,
        Err(msg) => {
            vmm::errln!("vmrun: {msg}\nTry 'vmrun --help' for more information.");
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
    if let Err(e) = vmm::interrupt::install() {
        vmm::errln!("vmrun: cannot handle SIGINT and SIGTERM ({e}): an interrupt loses the trace");
    }
    if let Some(listen) = &cli.gdb {
        let code = match vmm::gdb::serve(session, Stdio::new(cli.config.verbose), listen) {
            Ok(vmm::gdb::Ended::Finished(report)) => finish(&cli, &report),
            Ok(vmm::gdb::Ended::Killed) => {
                vmm::errln!("vmrun: the program was killed by the debugger");
                128 + 9 // SIGKILL, as a native kill from gdb ends it
            }
            Err(e) => fail(&e),
        };
        let _ = std::io::Write::flush(&mut std::io::stdout());
        vmm::fs::view::remove_private_dirs();
        std::process::exit(code)
    }
    let (code, interrupted) = match session.run(&mut Stdio::new(cli.config.verbose)) {
        Ok(report) => (finish(&cli, &report), interrupted_by(&report)),
        Err(e) => (fail(&e), None),
    };
    // Exit without tearing the VM down piece by piece: unmapping hundreds
    // of MiB of guest RAM and destroying the VM take longer than the whole
    // run of a small program, and the kernel reclaims all of it at exit.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    vmm::fs::view::remove_private_dirs();
    vmm::sys::hand_off_teardown();
    if let Some(signal) = interrupted {
        // The trace, statistics and JSON files are written: now end as
        // the signal would have ended vmrun.
        vmm::interrupt::die_by(signal)
    }
    std::process::exit(code)
}

/// The signal that stopped the run, if one did.
fn interrupted_by(report: &SessionReport) -> Option<i32> {
    match report.run.outcome {
        RunEnd::Interrupted(signal) => Some(signal),
        _ => None,
    }
}

fn fail(e: &Error) -> i32 {
    vmm::errln!("vmrun: {e}");
    e.exit_status()
}

fn finish(cli: &Cli, session: &SessionReport) -> i32 {
    if !session.violations.is_empty() {
        vmm::errln!(
            "vmrun: page-table check failed at {} ({} violations):",
            session.violation_at,
            session.violations.len()
        );
        for v in &session.violations {
            vmm::errln!("vmrun:   {v}");
        }
        return EXIT_VMRUN_FAILURE;
    }
    let report = &session.run;
    if cli.watch.stats {
        print_stats(report);
    }
    if let Some(leaks) = report.leaks() {
        vmm::errln!("vmrun: {leaks}");
        return EXIT_VMRUN_FAILURE;
    }
    let code = match &report.outcome {
        RunEnd::Guest(Outcome::Exited(status)) => *status,
        RunEnd::Guest(Outcome::Signaled {
            signal,
            fault_addr,
            ip,
            error_code,
            cause,
        }) => {
            if let Some(line) = killed_line(*signal, *cause, *fault_addr, *ip, *error_code) {
                vmm::errln!("vmrun: {line}");
            }
            if *cause == KillCause::OutOfMemory {
                let mib = cli.config.mem_size >> 20;
                vmm::errln!("vmrun: (the guest has {mib} MiB of RAM; --mem gives it more)");
            }
            128 + *signal as i32
        }
        RunEnd::Guest(Outcome::ExecFailed { errno, message }) => {
            exec_failed(&cli.config.program, *errno, message)
        }
        RunEnd::Guest(Outcome::GuestPanic(msg)) => {
            vmm::errln!("vmrun: guest kernel panic: {msg}");
            EXIT_VMRUN_FAILURE
        }
        RunEnd::VmFailure(dump) => {
            vmm::errln!("vmrun: the VM stopped unexpectedly: {dump}");
            EXIT_VMRUN_FAILURE
        }
        RunEnd::Interrupted(signal) => {
            let name = vmm::interrupt::signal_name(*signal);
            vmm::errln!("vmrun: stopped by {name}; the program did not finish");
            128 + signal
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
        vmm::errln!("vmrun: {shown}: cannot execute: required file not found ({message})");
        EXIT_NOT_FOUND
    } else {
        vmm::errln!("vmrun: {shown}: {message}");
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
            vmm::errln!("vmrun: {}: command not found", name.to_string_lossy());
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

/// What an exec that failed past its point of no return ran into, by its
/// errno.
fn exec_failure(errno: u64) -> &'static str {
    match errno {
        17 => "EEXIST: a segment lies where the stack goes",
        12 => "ENOMEM: out of guest memory for its segments",
        14 => "EFAULT: a segment's bss could not be cleared",
        1 => "EPERM: a segment below the lowest mappable address",
        22 => "EINVAL: a segment the address space cannot hold",
        _ => "its segments could not be mapped",
    }
}

/// The line vmrun prints (after "vmrun: ") for a program killed by
/// `signal`: a fault's with its address, ip and error code; a sent
/// signal's as a shell prints it; none for SIGPIPE, of which a shell says
/// nothing (`prog | head`).
fn killed_line(signal: u32, cause: KillCause, addr: u64, ip: u64, error: u64) -> Option<String> {
    let name = signal_name(signal);
    Some(match (cause, signal) {
        (_, 13) => return None,
        (KillCause::OutOfMemory, _) => format!("{name}: out of guest memory"),
        (KillCause::Deadlock, _) => format!("{name}: every process was blocked (deadlock)"),
        (KillCause::ExecFailed, _) => format!(
            "{name}: the exec failed past its point of no return ({}), as Linux kills it",
            exec_failure(addr)
        ),
        (KillCause::Fault, 7 | 11) => format!("{name} at {addr:#x} ip {ip:#x} (error {error:#x})"),
        (KillCause::Fault, 4 | 5 | 8) => format!("{name} at ip {ip:#x}"),
        _ => name,
    })
}

/// The description a shell (bash's strsignal) prints for a fatal signal.
fn signal_name(signal: u32) -> String {
    let name = match signal {
        1 => "Hangup",
        2 => "Interrupt",
        3 => "Quit",
        4 => "Illegal instruction",
        5 => "Trace/breakpoint trap",
        6 => "Aborted",
        7 => "Bus error",
        8 => "Floating point exception",
        9 => "Killed",
        10 => "User defined signal 1",
        11 => "Segmentation fault",
        12 => "User defined signal 2",
        14 => "Alarm clock",
        15 => "Terminated",
        24 => "CPU time limit exceeded",
        25 => "File size limit exceeded",
        26 => "Virtual timer expired",
        27 => "Profiling timer expired",
        31 => "Bad system call",
        n => return format!("Killed by signal {n}"),
    };
    name.into()
}

/// The guest's counters at exit (the timings and the rest are in the
/// statistics `--stats` prints from the trace).
fn print_stats(report: &RunReport) {
    if let Some(s) = &report.stats {
        vmm::errln!(
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
        vmm::errln!(
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

/// The command line (with vmrun's own name first) to what to do, or a
/// one-line usage error.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    match plain_run(&args) {
        Some(cli) => Ok(Parsed::Run(Box::new(cli))),
        None => parse_with_clap(args),
    }
}

/// [`parse`] for every command line.
fn parse_with_clap(args: Vec<OsString>) -> Result<Parsed, String> {
    let matches = match Args::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let args = Args::from_arg_matches(&matches).map_err(|e| first_line(&e))?;
    if let Some(Sub::Bench { args }) = args.command {
        return Ok(Parsed::Bench(args));
    }
    if args.version {
        print_version();
        return Ok(Parsed::Exit(ExitCode::SUCCESS));
    }
    let env = environment(&args, &matches);
    let mut program = args.program.into_iter();
    let name = program.next().ok_or("missing PROGRAM")?;
    let mut argv = vec![args.argv0.unwrap_or_else(|| name.clone())];
    argv.extend(program);
    let mounts = args
        .mount
        .iter()
        .map(|m| Mount::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let config = VmConfig {
        mem_size: args.mem,
        program: name.into(),
        argv,
        env,
        aslr: args.aslr,
        verbose: args.verbose,
        fault_size: args.fault_size,
        observe: Default::default(),
        mounts,
        default_view: !args.isolate,
        stdio_modes: None,
        read_ahead_stdin: true,
        ignored_signals: vmm::interrupt::ignored_at_start(),
    };
    let trace = args.trace.unwrap_or(0);
    let watch = Watch {
        trace,
        trace_json: args
            .trace_json
            .map(|p| (p, if trace != 0 { trace } else { ALL_CATEGORIES })),
        strace: args.strace,
        maps: args.maps,
        pagetables: args.pagetables,
        pagetables_json: args.pagetables_json,
        check: args.check.is_some(),
        check_every: args.check.unwrap_or(0),
        svg: args.svg,
        histogram: args.histogram,
        stats: args.stats,
        stats_json: args.stats_json,
        debugger: args.gdb.is_some(),
    };
    let gdb = args.gdb;
    Ok(Parsed::Run(Box::new(Cli { config, watch, gdb })))
}

/// `vmrun PROGRAM [ARGS...]` with no option before PROGRAM, as clap
/// parses it (everything after PROGRAM is the program's), without building
/// clap's parser: about a tenth of a millisecond of a short run. None for
/// every other command line.
fn plain_run(args: &[OsString]) -> Option<Cli> {
    let program = args.get(1)?;
    let name = program.as_encoded_bytes();
    if name.starts_with(b"-") || name == b"bench" {
        return None;
    }
    let config = VmConfig {
        env: std::env::vars_os().map(|(k, v)| join_env(&k, &v)).collect(),
        argv: args[1..].to_vec(),
        read_ahead_stdin: true,
        ignored_signals: vmm::interrupt::ignored_at_start(),
        ..VmConfig::for_program(program)
    };
    Some(Cli {
        config,
        watch: Watch::default(),
        gdb: None,
    })
}

/// --help prints the help (status 0); every other error is one line for
/// the caller to print with a hint at --help.
fn usage_error(e: clap::Error) -> Result<Parsed, String> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            vmm::outln!("{}", e.render().to_string().trim_end());
            Ok(Parsed::Exit(ExitCode::SUCCESS))
        }
        ErrorKind::MissingRequiredArgument => Err("missing PROGRAM".into()),
        _ => Err(first_line(&e)),
    }
}

/// clap's message without its "error: " prefix, usage and tips.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("bad command line");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The program's environment: vmrun's own, or empty with -i wherever it
/// is given, then every -e and -u in the order they were given.
fn environment(args: &Args, matches: &clap::ArgMatches) -> Vec<OsString> {
    let mut env: Vec<OsString> = match args.clear_env {
        true => vec![],
        false => std::env::vars_os().map(|(k, v)| join_env(&k, &v)).collect(),
    };
    let indices = |id: &str| -> Vec<usize> {
        matches
            .indices_of(id)
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let mut edits: Vec<(usize, Option<&OsString>, &OsString)> = Vec::new();
    edits.extend(
        indices("env")
            .into_iter()
            .zip(&args.env)
            .map(|(i, a)| (i, Some(a), a)),
    );
    edits.extend(
        indices("unset")
            .into_iter()
            .zip(&args.unset)
            .map(|(i, n)| (i, None, n)),
    );
    edits.sort_by_key(|e| e.0);
    for (_, set, name) in edits {
        match set {
            Some(assignment) => set_env(&mut env, assignment.clone()),
            None => unset_env(&mut env, name),
        }
    }
    env
}

const ALL_CATEGORIES: u32 = category::PAGE_TABLES
    | category::VMAS
    | category::FAULTS
    | category::SYSCALLS
    | category::EXEC
    | category::TASKS;

/// `pt,vma,fault,syscall,exec,task,boot` or `all` to category bits.
fn parse_categories(list: &str) -> Result<u32, String> {
    list.split(',').try_fold(0, |mask, name| {
        let bit = match name.trim() {
            "pt" | "pagetables" => category::PAGE_TABLES,
            "vma" | "vmas" => category::VMAS,
            "fault" | "faults" => category::FAULTS,
            "syscall" | "syscalls" => category::SYSCALLS,
            "exec" => category::EXEC,
            "boot" => vmm::session::BOOT,
            "task" | "tasks" => category::TASKS,
            "all" => ALL_CATEGORIES,
            other => {
                return Err(format!(
                    "unknown category {other:?} (pt, vma, fault, syscall, exec, task, boot, all)"
                ))
            }
        };
        Ok(mask | bit)
    })
}

fn print_version() {
    vmm::outln!("vmrun {}", env!("CARGO_PKG_VERSION"));
    match vmm::kvm::open() {
        Ok(_) => vmm::outln!("KVM: {}", Platform::detect().describe()),
        Err(e) => vmm::outln!("KVM: unavailable: {e}"),
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

fn set_env(env: &mut Vec<OsString>, assignment: OsString) {
    unset_env(env, &OsString::from_vec(env_name(&assignment)));
    env.push(assignment);
}

/// `--env`'s value: NAME=VALUE.
fn parse_assignment(s: &str) -> Result<OsString, String> {
    match s.split_once('=') {
        Some((name, _)) if !name.is_empty() => Ok(s.into()),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
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
        .ok_or_else(|| "not a size (examples: 256M, 1G)".to_string())
}

/// `--fault-size`: 4k, 64k or 2m (any case).
fn parse_fault_size(s: &str) -> Result<FaultSize, String> {
    match s.to_ascii_lowercase().as_str() {
        "4k" => Ok(FaultSize::Page4K),
        "64k" => Ok(FaultSize::Block64K),
        "2m" => Ok(FaultSize::Huge2M),
        _ => Err("expected 4k, 64k or 2m".to_string()),
    }
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

    fn parse_args(args: &[&str]) -> Result<Parsed, String> {
        parse(
            std::iter::once("vmrun")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    fn run_cli(args: &[&str]) -> Cli {
        match parse_args(args) {
            Ok(Parsed::Run(cli)) => *cli,
            Ok(_) => panic!("expected a run"),
            Err(e) => panic!("expected a run: {e}"),
        }
    }

    #[test]
    fn clear_env_after_env_keeps_the_env_and_env_and_unset_apply_in_order() {
        let cli = run_cli(&["-e", "A=1", "-i", "-e", "B=2", "p"]);
        assert_eq!(cli.config.env, vec![OsString::from("A=1"), "B=2".into()]);
        let cli = run_cli(&["-i", "-e", "A=1", "-u", "A", "p"]);
        assert!(cli.config.env.is_empty());
        let cli = run_cli(&["-i", "-u", "A", "-e", "A=1", "p"]);
        assert_eq!(cli.config.env, vec![OsString::from("A=1")]);
    }

    #[test]
    fn double_dash_ends_the_options_and_the_program_may_start_with_a_dash() {
        let cli = run_cli(&["-m", "64M", "--", "-prog", "--mem", "x"]);
        assert_eq!(cli.config.program, PathBuf::from("-prog"));
        assert_eq!(cli.config.argv, vec!["-prog", "--mem", "x"]);
        assert_eq!(cli.config.mem_size, 64 << 20);
    }

    #[test]
    fn an_option_given_twice_takes_the_last_value_and_lists_keep_every_value() {
        let cli = run_cli(&["--check", "--check=5", "-m", "64M", "-m", "128M", "p"]);
        assert_eq!((cli.watch.check_every, cli.config.mem_size), (5, 128 << 20));
        let cli = run_cli(&[
            "--strace", "--strace", "--mount", "/a:/x", "--mount", "/b:/y", "p",
        ]);
        assert!(cli.watch.strace);
        assert_eq!(cli.config.mounts.len(), 2);
    }

    #[test]
    fn bench_takes_its_own_options_unparsed() {
        let args = ["bench", "--quick", "-n", "5", "--help"];
        match parse_args(&args) {
            Ok(Parsed::Bench(rest)) => assert_eq!(rest, ["--quick", "-n", "5", "--help"]),
            _ => panic!("expected bench"),
        }
    }

    #[test]
    fn check_takes_an_optional_count_after_an_equals_sign() {
        let cli = run_cli(&["--check", "p"]);
        assert!(cli.watch.check && cli.watch.check_every == 0);
        assert_eq!(cli.config.argv, vec!["p"]);
        assert_eq!(run_cli(&["--check=7", "p"]).watch.check_every, 7);
        assert!(parse_args(&["--check=x", "p"]).is_err());
    }

    /// `vmrun` and `args`.
    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("vmrun")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn a_plain_run_is_what_clap_makes_of_it() {
        for args in [
            &["p"][..],
            &["./prog", "-e", "X=1", "--mem", "1G", "--"],
            &["/bin/ls", "/", "bench"],
            &["help", "--help", "-V"],
            &[""],
        ] {
            let plain = plain_run(&argv(args)).expect("a plain run");
            let Ok(Parsed::Run(clap)) = parse_with_clap(argv(args)) else {
                panic!("clap makes no run of {args:?}")
            };
            let debug = |cli: &Cli| format!("{:?} {:?} {:?}", cli.config, cli.watch, cli.gdb);
            assert_eq!(debug(&plain), debug(&clap), "{args:?}");
        }
    }

    #[test]
    fn options_and_bench_are_left_to_clap() {
        for args in [
            &["-m", "1G", "p"][..],
            &["--", "p"],
            &["bench"],
            &["-"],
            &[],
        ] {
            assert!(plain_run(&argv(args)).is_none(), "{args:?}");
        }
    }

    #[test]
    fn the_default_mem_is_the_librarys() {
        assert_eq!(run_cli(&["p"]).config.mem_size, vmm::vm::DEFAULT_MEM);
    }

    #[test]
    fn env_needs_name_equals_value() {
        let err = parse_args(&["-e", "NOEQUALS", "p"]).err().unwrap();
        assert!(err.contains("NAME=VALUE"), "{err}");
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
            let err = parse_args(&["--mount", spec, "p"]);
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
    fn a_sent_signal_has_no_address_and_a_fault_has_its_own() {
        let sent = killed_line(11, KillCause::Sent, 0, 0x401000, 0);
        assert_eq!(sent.as_deref(), Some("Segmentation fault"));
        let fault = killed_line(11, KillCause::Fault, 0x10, 0x401000, 6);
        assert_eq!(
            fault.as_deref(),
            Some("Segmentation fault at 0x10 ip 0x401000 (error 0x6)")
        );
        assert_eq!(
            killed_line(15, KillCause::Sent, 0, 0, 0).as_deref(),
            Some("Terminated")
        );
        assert_eq!(killed_line(13, KillCause::Sent, 0, 0, 0), None);
        let oom = killed_line(9, KillCause::OutOfMemory, 0x7000, 0x401000, 6);
        assert_eq!(oom.as_deref(), Some("Killed: out of guest memory"));
    }

    #[test]
    fn unknown_option_and_missing_program_are_errors() {
        assert!(parse_args(&["--bogus"]).is_err());
        assert_eq!(parse_args(&["-i"]).err().unwrap(), "missing PROGRAM");
    }
}
