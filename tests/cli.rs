//! vmrun's command line on its own: `--version`, `--help` and usage errors
//! (status 125, like `env` and `docker run`). None of these touch /dev/kvm,
//! so they run everywhere.

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
