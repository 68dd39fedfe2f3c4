//! Standard input and output pass through vmrun byte for byte (binary data,
//! NULs, large and vectored writes), and system calls with bad pointers,
//! bad descriptors or unknown numbers fail with Linux's errno values.

mod common;

use common::*;
use std::path::Path;
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
    // With its calls watched, every call enters the kernel: rseq and the
    // ids too, which the syscall trampoline answers itself otherwise.
    let traced = run(
        vmrun_command(["--strace".as_ref(), program.as_os_str()]),
        input,
    );
    assert_status(&traced, 0);
    assert_eq!(traced.stdout, native.stdout, "{}", describe(&traced));
    let calls = String::from_utf8_lossy(&traced.stderr);
    assert!(
        calls.contains("rseq(NULL, 32, 0, 0x53053053) = -1 ENOSYS"),
        "{calls}"
    );
}

/// The guest's one user is root, in no supplementary group: busybox's
/// `id` asks for its groups (getgroups), which must not fail (it was
/// ENOSYS: "id: can't get groups", status 1, where `id -G` printed
/// nothing). Not compared with a native run, whose user may be another.
#[test]
fn id_reports_the_guests_root_user_and_no_groups() {
    if !require_kvm() || !require_programs(&["/bin/busybox"]) {
        return;
    }
    // Numbers only: the names come from the host's /etc/passwd and
    // /etc/group, which a minimal host may not have.
    for (option, ids) in [("-u", "0"), ("-g", "0"), ("-G", "0")] {
        let output = run(vmrun_command(["/bin/busybox", "id", option]), b"");
        assert_clean_exit(&output, format!("{ids}\n").as_bytes());
    }
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

/// `sh -c SCRIPT` with `VMRUN` and `INPUT` in its environment, fed `stdin`.
fn shell(script: &str, vmrun: &str, input: &std::path::Path, stdin: &[u8]) -> Output {
    let mut command = std::process::Command::new("/bin/sh");
    command
        .args(["-c", script])
        .env("VMRUN", vmrun)
        .env("INPUT", input);
    run(command, stdin)
}

/// vmrun's stdin is the one the shell around it shares with the commands
/// after it, as a program's own stdin is natively: a read takes from the
/// host's fd no more than the program asked for (the stdin ring reads a
/// pipe ahead with tee(2), which leaves the bytes in it, and takes only
/// those the program read), and an lseek of the program's on a file
/// moves the shared offset (busybox head reads 4 KiB and seeks back to
/// what it printed). So what the next command reads is what it reads
/// natively, from a file and from a pipe.
#[test]
fn stdin_is_left_where_the_program_left_it_for_the_commands_after() {
    if !require_kvm() || !require_programs(&["/bin/busybox", "/bin/sh"]) {
        return;
    }
    let text: String = (1..=5000).map(|i| format!("{i}\n")).collect();
    let input = std::env::temp_dir().join(format!("vmrun-stdin-{}", std::process::id()));
    std::fs::write(&input, &text).unwrap();
    let vmrun = format!("{} --check", env!("CARGO_BIN_EXE_vmrun"));
    let scripts = [
        // A file: head seeks back to byte 5.
        (
            r#"{ $VMRUN busybox head -c 5; echo '|'; busybox head -c 20; } < "$INPUT""#,
            &b""[..],
        ),
        // A pipe: dd reads exactly one block of 5 bytes.
        (
            r#"{ $VMRUN busybox dd bs=5 count=1 2>/dev/null; echo '|'; busybox head -c 20; }"#,
            text.as_bytes(),
        ),
    ];
    for (script, stdin) in scripts {
        let native = shell(script, "", &input, stdin);
        let guest = shell(script, &vmrun, &input, stdin);
        assert_eq!(
            native.stdout, b"1\n2\n3|\n\n4\n5\n6\n7\n8\n9\n10\n11\n1",
            "{script}"
        );
        assert_same(script, &native, &guest);
    }
    let _ = std::fs::remove_file(&input);
}

/// 1 MiB through a pipe into `stdin_reads`, which reads it in pieces of
/// 0 to 100,000 bytes into static, page-straddling and untouched buffers,
/// fails reads into bad buffers with EFAULT (taking nothing), takes
/// SIGALRM every millisecond and forks a child that reads a part: the
/// same bytes, hash and EFAULTs as natively, where the trampoline serves
/// most reads from the stdin ring (kvm_pvm) and where the kernel does.
/// Then 2,000 bytes one a read, with a spinning child there to switch to,
/// and a program that writes garbage into the ring's header and bytes.
/// Then, stopped after 1, 4096 and 300,000 bytes, the rest of the pipe is
/// what a command after it reads natively (the ring took no more than the
/// program read), with the page-table checker on too, which allows the
/// ring's pages.
#[test]
fn stdin_reads_of_every_shape_from_a_pipe_are_as_native() {
    if !require_kvm() {
        return;
    }
    let input: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let program = image("stdin_reads");
    let native = run(native_command(&program, NO_ARGS), &input);
    assert!(
        String::from_utf8_lossy(&native.stdout)
            .contains("read 1033576 bytes, hash cc46affb8ba07879, bad buffers failed with EFAULT"),
        "native stdin_reads changed?\n{}",
        describe(&native)
    );
    for check in [false, true] {
        let mut guest = vmrun_command(if check { ["--check"].as_slice() } else { &[] });
        guest.arg(&program);
        assert_same("stdin_reads", &native, &run(guest, &input));
    }
    // One byte a read, with alarms and a spinning child: timer ticks and
    // signals come while the trampoline copies, and wait for it to end.
    let bytes = &input[..2000];
    let native = run(native_command(&program, ["bytes"]), bytes);
    let guest = run(
        vmrun_command([program.as_os_str(), "bytes".as_ref()]),
        bytes,
    );
    assert_same("stdin_reads bytes", &native, &guest);
    // A program that writes garbage where the ring is mapped (SIGSEGV,
    // caught, natively) garbles at most its own input and reads on.
    let native = run(native_command(&program, ["garble"]), &input);
    let guest = run(
        vmrun_command([program.as_os_str(), "garble".as_ref()]),
        &input,
    );
    assert_same("stdin_reads garble", &native, &guest);
    if !require_programs(&["/bin/sh", "/usr/bin/md5sum"]) {
        return;
    }
    let input_file = std::env::temp_dir().join(format!("vmrun-ring-{}", std::process::id()));
    for limit in ["1", "4096", "300000"] {
        let script = format!(
            r#"{{ $VMRUN "{}" {limit}; /usr/bin/md5sum; }}"#,
            program.display()
        );
        let native = shell(&script, "", &input_file, &input);
        let vmrun = env!("CARGO_BIN_EXE_vmrun").to_string();
        for v in [vmrun.clone(), format!("{vmrun} --check")] {
            assert_same(&script, &native, &shell(&script, &v, &input_file, &input));
        }
    }
}

/// Reads of stdin and writes to stdout and stderr go where they go
/// natively while a shell moves its fds 0 to 2 between them: the VMM
/// answers such a call from the syscall trampoline only while the kernel
/// has it open (docs/architecture.md, "Fast calls"), and every dup2,
/// close, fork, exec and task switch closes it first. Builtins write from
/// the shell itself; `cat` and `head` are children reading the shell's
/// stdin.
#[test]
fn stdio_goes_where_natively_while_a_shell_moves_its_fds() {
    if !require_kvm() || !require_programs(&["/bin/busybox"]) {
        return;
    }
    let script = r#"
        echo out 1; echo err 1 >&2
        read a; echo "read $a"
        exec 3>&1 1>&2 2>&3
        echo out 2; echo err 2 >&2
        read b; echo "read $b" >&2
        busybox head -n 2
        exec 2>&1
        busybox cat >&2
        exec 1>&-
        echo gone 2>/dev/null; echo "status $?" >&2
        exec 1>&3
        echo out 3
    "#;
    let input: String = (1..=200).map(|i| format!("line {i}\n")).collect();
    let native = run(
        native_command(Path::new("/bin/busybox"), ["sh", "-c", script]),
        input.as_bytes(),
    );
    assert!(
        native.stdout.ends_with(b"out 3\n") && !native.stderr.is_empty(),
        "{}",
        describe(&native)
    );
    let guest = run(
        vmrun_command(["/bin/busybox", "sh", "-c", script]),
        input.as_bytes(),
    );
    assert_same("a shell moving its stdio", &native, &guest);
}

/// A program whose stdin or stdout is a file sees that file's stat, as
/// natively: its size, times, inode and mode (gzip stores the mtime in its
/// header and checks the size it read against it; `wc -c` and `tail` use
/// the size), and a stream that is a pipe stays a pipe. Checked with
/// python3's fstat of fds 0 to 2 and with gzip's output, byte for byte.
#[test]
fn a_stdio_stream_that_is_a_file_has_the_files_stat_as_natively() {
    if !require_kvm() || !require_programs(&["/bin/sh", "/usr/bin/python3"]) {
        return;
    }
    let input = std::env::temp_dir().join(format!("vmrun-stdio-stat-{}", std::process::id()));
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&input, &data).unwrap();
    // Of stdin (the file) everything; of stdout (a pipe) and stderr
    // (/dev/null) the mode.
    let fstat = r#"
import os
for fd in 0, 1, 2:
    s = os.fstat(fd)
    file = fd == 0
    print(fd, oct(s.st_mode), *((s.st_size, s.st_mtime_ns, s.st_ino) if file else ()))
"#;
    let mut scripts = vec![String::from(
        r#"$VMRUN /usr/bin/python3 -c "$PROG" < "$INPUT" 2>/dev/null | cat"#,
    )];
    if std::path::Path::new("/usr/bin/gzip").is_file() {
        scripts.push("$VMRUN /usr/bin/gzip -c -1 < \"$INPUT\" | od -An -tx1 | head -3".into());
        scripts.push("$VMRUN /usr/bin/wc -c < \"$INPUT\"".into());
    }
    for script in &scripts {
        let run_with = |vmrun: &str| {
            let mut command = std::process::Command::new("/bin/sh");
            command
                .args(["-c", script])
                .env("VMRUN", vmrun)
                .env("INPUT", &input)
                .env("PROG", fstat);
            run(command, b"")
        };
        let native = run_with("");
        assert_status(&native, 0);
        assert!(!native.stdout.is_empty(), "{script}: {}", describe(&native));
        let guest = run_with(env!("CARGO_BIN_EXE_vmrun"));
        assert_same(script, &native, &guest);
    }
    let _ = std::fs::remove_file(&input);
}

/// Bytes read from the page cache and through a pipe between guest
/// processes, in pieces around the size from which the kernel has the host
/// move them where ring 0 is emulated (1 KiB, `arch::mem::HOST_BULK_MIN`)
/// and across page boundaries, are the bytes read natively; on kvm_pvm a
/// 4 KiB read of a cached file is one host copy (a hypercall each), where
/// ring 0 is native (VMX/SVM) none.
#[test]
fn file_and_pipe_bytes_moved_in_bulk_are_exact_and_moved_by_the_host_where_ring0_is_emulated() {
    if !require_kvm() || !require_programs(&["/bin/busybox"]) {
        return;
    }
    let input = std::env::temp_dir().join(format!("vmrun-bulk-{}", std::process::id()));
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&input, &data).unwrap();
    let script = format!(
        "for bs in 1000 1023 1024 1025 4095 4096 4097 20000; do
            /bin/busybox dd if={f} bs=$bs 2>/dev/null | /bin/busybox sha256sum
            /bin/busybox dd if={f} bs=$bs skip=1 2>/dev/null | /bin/busybox wc -c
        done",
        f = input.display()
    );
    let args: [&std::ffi::OsStr; 3] = ["sh".as_ref(), "-c".as_ref(), script.as_ref()];
    let (native, guest) = native_and_guest("/bin/busybox", &args);
    assert_status(&native, 0);
    assert_eq!(native.stdout.iter().filter(|&&b| b == b'\n').count(), 16);
    assert_same("dd | sha256sum, dd | wc -c", &native, &guest);

    // 74 reads of 4 KiB from the page cache (the file is read into it in
    // a few pieces of read-ahead).
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vmrun"));
    command
        .args(["--stats", "/bin/busybox", "dd", "bs=4096", "of=/dev/null"])
        .arg(format!("if={}", input.display()));
    let out = run(command, b"");
    let _ = std::fs::remove_file(&input);
    assert_status(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    let hypercalls: u64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("hypercall"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hypercall count in {err}"));
    if vmm::kvm::Platform::detect() == vmm::kvm::Platform::Pvm {
        assert!(hypercalls >= 74, "{hypercalls} hypercalls: {err}");
    } else {
        assert!(hypercalls < 74, "{hypercalls} hypercalls: {err}");
    }
}

/// `sendfile` into a pipe (from an offset and from the file's position, a
/// pipe with no reader, a full nonblocking one) and the ioctls Linux
/// serves for every fd (FIONREAD of a pipe, FIOCLEX, FIONCLEX, FIONBIO,
/// which Python's `os.set_blocking` makes) behave as natively.
#[test]
fn sendfile_into_a_pipe_and_the_generic_ioctls_are_as_native() {
    if !require_kvm() || !require_programs(&["/usr/bin/python3"]) {
        return;
    }
    let input = std::env::temp_dir().join(format!("vmrun-sendfile-{}", std::process::id()));
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(&input, &data).unwrap();
    let script = r#"import os, sys, hashlib
path = sys.argv[1]
fd = os.open(path, os.O_RDONLY)
r, w = os.pipe()
n = os.sendfile(w, fd, 100, 5000)
m = os.sendfile(w, fd, None, 3000)
print(n, m, os.lseek(fd, 0, os.SEEK_CUR))
os.close(w)
data = b''
while True:
    c = os.read(r, 65536)
    if not c:
        break
    data += c
print(len(data), hashlib.sha256(data).hexdigest())
r2, w2 = os.pipe()
os.close(r2)
try:
    os.sendfile(w2, fd, 0, 10)
except BrokenPipeError:
    print("EPIPE")
r3, w3 = os.pipe()
os.set_blocking(w3, False)
total = 0
try:
    while True:
        total += os.sendfile(w3, fd, total, 300000)
except BlockingIOError:
    print("EAGAIN", total)
got = b''
while len(got) < total:
    got += os.read(r3, 65536)
with open(path, 'rb') as f:
    print(got == f.read()[:total])
import fcntl, termios, struct
r4, w4 = os.pipe()
os.write(w4, b'x' * 1234)
print(struct.unpack('i', fcntl.ioctl(r4, termios.FIONREAD, b'\0' * 4))[0])
fcntl.ioctl(r4, termios.FIOCLEX)
print(fcntl.fcntl(r4, fcntl.F_GETFD))
fcntl.ioctl(r4, termios.FIONCLEX)
print(fcntl.fcntl(r4, fcntl.F_GETFD))
print(os.get_blocking(w4))
os.set_blocking(w4, False)
print(os.get_blocking(w4), fcntl.fcntl(w4, fcntl.F_GETFL) & os.O_NONBLOCK != 0)
os.set_blocking(w4, True)
print(os.get_blocking(w4))
try:
    fcntl.ioctl(r4, termios.TCGETS, b'\0' * 64)
except OSError as e:
    print(e.errno)
"#;
    let args: [&std::ffi::OsStr; 3] = ["-c".as_ref(), script.as_ref(), input.as_ref()];
    let (native, guest) = native_and_guest("/usr/bin/python3", &args);
    let _ = std::fs::remove_file(&input);
    assert_status(&native, 0);
    assert!(
        String::from_utf8_lossy(&native.stdout).contains("EAGAIN 65536"),
        "{}",
        describe(&native)
    );
    assert_same("python3 sendfile and ioctls", &native, &guest);
}

/// `program` with `args` run natively and under vmrun, with no input.
fn native_and_guest(program: &str, args: &[&std::ffi::OsStr]) -> (Output, Output) {
    let mut native = std::process::Command::new(program);
    native.args(args);
    let mut guest = std::process::Command::new(env!("CARGO_BIN_EXE_vmrun"));
    guest.arg(program).args(args);
    (run(native, b""), run(guest, b""))
}
