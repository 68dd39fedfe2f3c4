//! What execve hands a program under vmrun (argv, envp, auxv, .data/.bss,
//! the entry stack), seen by the `inspect` image and compared line by line
//! with a native run of the same binary. Also vmrun's environment options:
//! `-i/--clear-env`, `-e/--env NAME=VALUE`, `-u/--unset NAME`, and that
//! everything after PROGRAM belongs to the program.

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The program's arguments in these tests: a space inside one, and an empty one.
const ARGS: [&str; 3] = ["a", "b c", ""];

/// inspect's stdout without the lines that may legitimately differ between
/// vmrun and native runs ("varies: ..."), after checking that it passed its
/// self-checks.
fn stable_lines(output: &Output) -> Vec<String> {
    assert_status(output, 0);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.ends_with("self-checks ok\n"),
        "inspect's self-checks:\n{}",
        describe(output)
    );
    text.lines()
        .filter(|line| !line.starts_with("varies:"))
        .map(str::to_owned)
        .collect()
}

/// The `envp[i]="..."` values inspect printed, in order.
fn printed_env(lines: &[String]) -> Vec<String> {
    let values = lines
        .iter()
        .filter_map(|line| line.strip_prefix("envp[")?.split_once("]=\""));
    values
        .map(|(_, value)| value.trim_end_matches('"').to_owned())
        .collect()
}

/// Runs inspect under `vmrun OPTIONS inspect ARGS`, with `host_env` applied
/// to vmrun's own environment.
fn vmrun_inspect(options: &[&str], args: &[&str], host_env: impl Fn(&mut Command)) -> Vec<String> {
    let program = image("inspect");
    let mut command = vmrun_command(options.iter().map(OsStr::new));
    command.arg(&program).args(args);
    host_env(&mut command);
    stable_lines(&run(command, b""))
}

/// Runs inspect natively with `env` applied to its environment.
fn native_inspect(program: &Path, args: &[&str], env: impl Fn(&mut Command)) -> Vec<String> {
    let mut command = native_command(program, args);
    env(&mut command);
    stable_lines(&run(command, b""))
}

/// Like `env -i A=1 B=2`.
fn env_a1_b2(command: &mut Command) {
    command.env_clear().env("A", "1").env("B", "2");
}

#[test]
fn inspect_with_clear_env_matches_a_native_run_under_env_i() {
    if !require_kvm() {
        return;
    }
    let program = image("inspect");
    let native = native_inspect(&program, &ARGS, env_a1_b2);
    let under_vmrun = vmrun_inspect(&["-i", "-e", "A=1", "-e", "B=2"], &ARGS, |_| {});
    assert_eq!(under_vmrun, native);
    let execfn = format!("AT_EXECFN=\"{}\"", program.display());
    for expected in [
        "argc=4",
        "argv[2]=\"b c\"",
        "argv[3]=\"\"",
        "envc=2",
        &execfn,
    ] {
        assert!(
            under_vmrun.iter().any(|line| line == expected),
            "no {expected:?} in {under_vmrun:#?}"
        );
    }
    assert_eq!(printed_env(&under_vmrun), ["A=1", "B=2"]);
}

#[test]
fn inspect_static_pie_matches_a_native_run_under_env_i() {
    if !require_kvm() {
        return;
    }
    let program = image("inspect_pie");
    let native = native_inspect(&program, &ARGS, env_a1_b2);
    let mut command = vmrun_command(["-i", "-e", "A=1", "-e", "B=2"]);
    command.arg(&program).args(ARGS);
    assert_eq!(stable_lines(&run(command, b"")), native);
}

#[test]
fn inspect_long_options_work_like_short_ones() {
    if !require_kvm() {
        return;
    }
    let short = vmrun_inspect(&["-i", "-e", "A=1", "-e", "B=2"], &ARGS, |_| {});
    let long = vmrun_inspect(
        &["--clear-env", "--env", "A=1", "--env", "B=2"],
        &ARGS,
        |_| {},
    );
    assert_eq!(long, short);
}

#[test]
fn inspect_without_clear_env_sees_vmruns_environment_like_a_native_run() {
    if !require_kvm() {
        return;
    }
    let marker = |command: &mut Command| {
        command.env("VMRUN_TEST_MARKER", "passed through");
    };
    let native = native_inspect(&image("inspect"), &ARGS, marker);
    let under_vmrun = vmrun_inspect(&[], &ARGS, marker);
    assert_eq!(under_vmrun, native);
    assert!(printed_env(&under_vmrun).contains(&"VMRUN_TEST_MARKER=passed through".to_owned()));
}

#[test]
fn inspect_with_unset_does_not_see_the_unset_variable() {
    if !require_kvm() {
        return;
    }
    let host_env = |command: &mut Command| {
        command
            .env("VMRUN_TEST_DROP", "1")
            .env("VMRUN_TEST_KEEP", "2");
    };
    let short = printed_env(&vmrun_inspect(&["-u", "VMRUN_TEST_DROP"], &[], host_env));
    let long = printed_env(&vmrun_inspect(
        &["--unset", "VMRUN_TEST_DROP"],
        &[],
        host_env,
    ));
    for env in [short, long] {
        assert!(env.contains(&"VMRUN_TEST_KEEP=2".to_owned()), "{env:#?}");
        assert!(
            !env.iter().any(|var| var.starts_with("VMRUN_TEST_DROP=")),
            "{env:#?}"
        );
    }
}

#[test]
fn inspect_env_option_overrides_a_variable_of_the_host() {
    if !require_kvm() {
        return;
    }
    let host_env = |command: &mut Command| {
        command.env("VMRUN_TEST_VAR", "host");
    };
    let env = printed_env(&vmrun_inspect(
        &["-e", "VMRUN_TEST_VAR=option"],
        &[],
        host_env,
    ));
    let values: Vec<&String> = env
        .iter()
        .filter(|var| var.starts_with("VMRUN_TEST_VAR="))
        .collect();
    assert_eq!(values, ["VMRUN_TEST_VAR=option"]);
}

#[test]
fn inspect_gets_options_after_program_as_its_own_arguments() {
    if !require_kvm() {
        return;
    }
    let args = ["-e", "X=1", "-v", "--help"];
    let lines = vmrun_inspect(&["-i"], &args, |_| {});
    let native = native_inspect(&image("inspect"), &args, |command| {
        command.env_clear();
    });
    assert_eq!(lines, native);
    assert!(printed_env(&lines).is_empty(), "{lines:#?}");
}

#[test]
fn inspect_with_aslr_still_passes_its_self_checks() {
    if !require_kvm() {
        return;
    }
    let lines = vmrun_inspect(&["--aslr", "-i"], &ARGS, |_| {});
    assert!(lines.contains(&"argc=4".to_owned()), "{lines:#?}");
}
