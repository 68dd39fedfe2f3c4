//! `vmrun`: the command-line front end of the `vmm` library.

use std::ffi::OsString;
use std::process::ExitCode;
use vmm::error::{Error, EXIT_VMRUN_FAILURE};
use vmm::hypercall::Outcome;
use vmm::kvm::Platform;
use vmm::stdio::Stdio;
use vmm::vm::{RunEnd, RunReport, Vm, VmConfig, DEFAULT_MEM};

const USAGE: &str = "\
usage: vmrun [OPTIONS] PROGRAM [ARGS...]

Run an x86-64 Linux ELF program in a KVM virtual machine under vmrun's own
guest kernel. The program's exit status becomes vmrun's.

options:
  -m, --mem SIZE          guest RAM (default 256M; suffixes K, M, G)
  -e, --env NAME=VALUE    set an environment variable for the program
  -u, --unset NAME        remove a variable from the program's environment
  -i, --clear-env         start from an empty environment (default: vmrun's)
      --argv0 NAME        pass NAME as argv[0] instead of PROGRAM
      --aslr              randomise the address-space layout (default: off)
      --stats             print timings and guest counters on stderr at exit
  -v, --verbose           show the guest kernel's log lines
  -V, --version           print the version and the detected KVM platform
  -h, --help              print this help

exit status: the program's; 128+N if killed by signal N; 125 vmrun failed;
126 the program cannot be executed; 127 the program was not found.";

struct Cli {
    config: VmConfig,
    stats: bool,
}

enum Parsed {
    Run(Cli),
    Exit(ExitCode),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let cli = match parse(args) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Exit(code)) => return code,
        Err(msg) => {
            eprintln!("vmrun: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_VMRUN_FAILURE as u8);
        }
    };
    let mut vm = match Vm::new(&cli.config) {
        Ok(vm) => vm,
        Err(e) => return ExitCode::from(fail(&e) as u8),
    };
    let code = match vm.run(&mut Stdio::new(cli.config.verbose)) {
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

fn finish(cli: &Cli, report: &RunReport) -> i32 {
    if cli.stats {
        print_stats(report);
    }
    if let Some(leaks) = report.leaks() {
        eprintln!("vmrun: {leaks}");
        return EXIT_VMRUN_FAILURE;
    }
    let program = cli.config.program.display();
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
        RunEnd::Guest(Outcome::ExecFailed { message, .. }) => {
            eprintln!("vmrun: {program}: {message}");
            vmm::error::EXIT_CANNOT_EXECUTE
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

fn print_stats(report: &RunReport) {
    let t = &report.timings;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let opt = |d: Option<std::time::Duration>| d.map_or("-".into(), |d| format!("{:.3}", ms(d)));
    eprintln!(
        "vmrun: timings (ms since start): vm created {:.3}, loaded {:.3}, kernel entry {}, \
               kernel ready {}, program loaded {}, exit {:.3}; {} vcpu exits",
        ms(t.vm_create),
        ms(t.load),
        opt(t.kernel_entry),
        opt(t.kernel_ready),
        opt(t.exec_loaded),
        ms(t.total),
        t.exits
    );
    if let Some(s) = &report.stats {
        eprintln!(
            "vmrun: guest: {} page faults, {} syscalls, {} hypercalls, peak {} user frames, \
                   {} frames in use at exit ({} kernel), {} user frames and {} user table pages \
                   leaked",
            s.page_faults,
            s.syscalls,
            s.hypercalls,
            s.peak_user_frames,
            s.frames_in_use,
            s.frames_kernel,
            s.user_frames,
            s.user_table_pages
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
    };
    let mut stats = false;
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
            "--stats" => stats = true,
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
    Ok(Parsed::Run(Cli { config, stats }))
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

    fn run_cli(args: &[&str]) -> Cli {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(cli)) => cli,
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
    fn unknown_option_and_missing_program_are_errors() {
        assert!(parse(vec!["--bogus".into()]).is_err());
        assert!(parse(vec!["-i".into()]).is_err());
    }
}
