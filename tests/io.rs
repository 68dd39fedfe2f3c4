//! Standard input and output pass through vmrun byte for byte (binary data,
//! NULs, large and vectored writes), and system calls with bad pointers,
//! bad descriptors or unknown numbers fail with Linux's errno values.

mod common;

use common::*;
use std::process::Output;

#[test]
fn write_binary_output_is_byte_identical_to_native() {
    if !require_kvm() {
        return;
    }
    let program = image("write_binary");
    let native = native(&program, NO_ARGS);
    assert_clean_exit(&native, &native.stdout);
    assert_eq!(
        native.stdout.len(),
        256 + 4096 + 65537 + 31 + 5,
        "native write_binary changed?"
    );
    assert_clean_exit(&vmrun([&program]), &native.stdout);
}

/// 100 KiB with every byte value, not periodic at any power of two.
fn patterned_input() -> Vec<u8> {
    (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[test]
fn read_stdin_echoes_100_kib_of_patterned_input_unchanged() {
    if !require_kvm() {
        return;
    }
    let input = patterned_input();
    let output = run(vmrun_command([image("read_stdin")]), &input);
    assert_status(&output, 0);
    assert!(
        output.stdout == input,
        "stdout differs from stdin:\n{}",
        describe(&output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "read 102400 bytes\n"
    );
}

#[test]
fn read_stdin_with_empty_input_reads_0_bytes() {
    if !require_kvm() {
        return;
    }
    let output = vmrun([image("read_stdin")]);
    assert_status(&output, 0);
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "read 0 bytes\n");
}

#[test]
fn bad_syscall_args_get_efault_ebadf_enosys_and_print_all_ok() {
    if !require_kvm() {
        return;
    }
    let program = image("bad_syscall_args");
    // The read checks need waiting input: at EOF a read never touches the buffer.
    let input = b"0123456789abcdef0123456789abcdef";
    let native = run(native_command(&program, NO_ARGS), input);
    assert_clean_exit(&native, &native.stdout);
    assert!(
        native.stdout.ends_with(b"all ok\n"),
        "{}",
        describe(&native)
    );
    assert_clean_exit(&run(vmrun_command([&program]), input), &native.stdout);
}

#[test]
fn bad_pointers_fail_every_system_call_as_natively() {
    if !require_kvm() {
        return;
    }
    let program = image("bad_pointers");
    // Randomisation off natively, as under vmrun: the page below the top
    // of user space is then the stack's in both runs.
    if !std::path::Path::new("/usr/bin/setarch").exists() {
        eprintln!("SKIPPED: setarch is missing");
        return;
    }
    let mut setarch = std::process::Command::new("/usr/bin/setarch");
    setarch.arg("-R").arg(&program);
    let native = run(setarch, b"");
    assert_status(&native, 0);
    let guest = vmrun([&program]);
    assert_same("bad_pointers", &native, &guest);
}

/// `yes | head -c 10`: the writer's next write meets a closed pipe.
fn yes_into_a_closed_pipe(args: &[&str]) -> (Output, Output) {
    let program = std::path::Path::new(args[0]);
    let native = run_into_closed_pipe(native_command(program, &args[1..]), 10);
    let guest = run_into_closed_pipe(vmrun_command(args), 10);
    (native, guest)
}

#[test]
fn writing_to_a_closed_stdout_pipe_kills_with_sigpipe_status_141_as_native() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/usr/bin/yes"]) {
        return;
    }
    let (native, guest) = yes_into_a_closed_pipe(&["/usr/bin/yes"]);
    assert_status(&native, 141);
    // As in a shell, death by SIGPIPE is silent: status 141, no message.
    assert_same("yes | head -c 10", &native, &guest);
}

#[test]
fn writing_to_a_closed_stdout_pipe_with_sigpipe_ignored_fails_with_epipe_as_native() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/usr/bin/env", "/usr/bin/yes"]) {
        return;
    }
    let (native, guest) =
        yes_into_a_closed_pipe(&["/usr/bin/env", "--ignore-signal=PIPE", "/usr/bin/yes"]);
    assert_stderr_contains(&native, "Broken pipe");
    assert_same("env --ignore-signal=PIPE yes | head -c 10", &native, &guest);
}

#[test]
fn verbose_names_an_unimplemented_system_call_as_strace_does() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/bin/ls"]) {
        return;
    }
    // glibc's start-up makes calls the guest kernel may not implement
    // (rseq): -v names each, never "(unknown)", for a call strace knows.
    let output = run(vmrun_command(["-v", "/bin/ls", "/"]), b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| l.contains("system call ")) {
        assert!(!line.contains("(unknown)"), "{line}\n{}", describe(&output));
    }
}
