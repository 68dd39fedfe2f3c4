//! vmrun's command line: `--version`, `--help` and usage errors (status
//! 125, like `env` and `docker run`, one line and a hint at --help), which
//! run everywhere; and, on KVM, how the options shape the program's run.

mod common;

use common::*;

#[test]
fn version_prints_vmrun_and_its_version_and_exits_0() {
    let output = vmrun(["--version"]);
    assert_status(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("vmrun "), "{}", describe(&output));
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        describe(&output)
    );
}

#[test]
fn help_lists_every_option_and_exits_0() {
    let output = vmrun(["--help"]);
    assert_status(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--env",
        "--unset",
        "--clear-env",
        "--mem",
        "--verbose",
        "--aslr",
        "--gdb",
        "--version",
        "--help",
    ] {
        assert!(
            stdout.contains(option),
            "--help does not mention {option}:\n{}",
            describe(&output)
        );
    }
}

#[test]
fn no_program_is_a_usage_error_with_status_125() {
    let output = vmrun(NO_ARGS);
    assert_status(&output, 125);
    assert!(
        !output.stderr.is_empty(),
        "no message:\n{}",
        describe(&output)
    );
}

#[test]
fn unknown_option_is_a_usage_error_with_status_125() {
    let output = vmrun(["--no-such-option", "/bin/true"]);
    assert_status(&output, 125);
    assert_stderr_contains(&output, "--no-such-option");
}

#[test]
fn bad_mem_size_is_a_usage_error_with_status_125() {
    let output = vmrun(["--mem", "lots", "/bin/true"]);
    assert_status(&output, 125);
    assert_stderr_contains(&output, "lots");
}

#[test]
fn bad_gdb_address_is_a_usage_error_with_status_125() {
    for bad in ["port", "unix:", "99999"] {
        let output = vmrun(["--gdb", bad, "/bin/true"]);
        assert_status(&output, 125);
        assert_stderr_contains(&output, "--gdb");
    }
}

#[test]
fn help_version_and_usage_errors_to_dev_full_do_not_panic() {
    for (args, expected) in [
        (&["--help"][..], 0),
        (&["--version"][..], 0),
        (&["--no-such-option"][..], 125),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vmrun"));
        command.args(args);
        let status = status_with(command, dev_full(), dev_full());
        assert_eq!(
            shell_status(&status),
            expected,
            "vmrun {args:?}: {status:?}"
        );
    }
}

#[test]
fn a_usage_error_is_one_line_and_a_hint_at_help_not_the_whole_help() {
    let output = vmrun(["--no-such-option", "/bin/true"]);
    assert_status(&output, 125);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", describe(&output));
    assert!(lines[0].starts_with("vmrun: "), "{}", describe(&output));
    assert!(lines[1].contains("--help"), "{}", describe(&output));
}

#[test]
fn clear_env_after_env_keeps_the_variable_as_env_dash_i_does() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/usr/bin/env"]) {
        return;
    }
    let env = std::path::Path::new("/usr/bin/env");
    let native = native(env, ["-i", "A=1", "B=2", "/usr/bin/env"]);
    let guest = vmrun(["-e", "A=1", "-i", "-e", "B=2", "/usr/bin/env"]);
    assert_same("-e A=1 -i -e B=2 env", &native, &guest);
}

#[test]
fn an_output_file_in_a_missing_directory_is_refused_before_the_program_runs() {
    for option in [
        "--svg",
        "--histogram",
        "--stats-json",
        "--pagetables-json",
        "--trace-json",
    ] {
        let path = "/nonexistent-vmrun-dir/out";
        let output = vmrun([option, path, "/bin/echo", "ran"]);
        assert_status(&output, 125);
        assert_stderr_contains(
            &output,
            &format!("{option} {path}: No such file or directory"),
        );
        assert!(
            output.stdout.is_empty(),
            "the program ran:\n{}",
            describe(&output)
        );
    }
}

#[test]
fn vmrun_is_linked_statically_with_no_dynamic_linker_to_run_first() {
    // .cargo/config.toml: a cold start spends nothing in ld.so.
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_vmrun")).expect("read the vmrun binary");
    let elf = goblin::elf::Elf::parse(&bytes).expect("vmrun is an ELF file");
    assert_eq!(elf.interpreter, None, "vmrun names a dynamic linker");
    assert!(elf.libraries.is_empty(), "vmrun needs {:?}", elf.libraries);
}
