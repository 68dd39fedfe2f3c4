//! The program's fate becomes vmrun's exit status: a plain exit code passes
//! through, and death by SIGSEGV gives 139 with a Linux-style
//! "Segmentation fault at 0x... ip 0x... (error 0x...)" line on stderr whose
//! address and page-fault error code are the real ones.

mod common;

use common::*;
use std::ffi::OsStr;

#[test]
fn exit42_exits_with_status_42() {
    if !require_kvm() {
        return;
    }
    let output = vmrun([image("exit42")]);
    assert_status(&output, 42);
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        describe(&output)
    );
}

#[test]
fn null_deref_exits_139_and_reports_a_user_write_fault_at_0x0() {
    if !require_kvm() {
        return;
    }
    let program = image("null_deref");
    assert_status(&native(&program, NO_ARGS), 139);
    let output = vmrun([&program]);
    let report = assert_segv(&output);
    assert_eq!(
        output.stdout, b"before the fault\n",
        "output before the fault was lost"
    );
    assert_eq!(report.addr, 0, "{}", describe(&output));
    assert_fault_error(&report, PF_WRITE | PF_USER, &output);
}

#[test]
fn mmap_test_write_after_munmap_exits_139_and_reports_the_unmapped_address() {
    check_mmap_segv("segv-after-munmap", PF_WRITE | PF_USER);
}

#[test]
fn mmap_test_write_after_mprotect_read_exits_139_and_reports_a_protection_fault() {
    check_mmap_segv("segv-after-mprotect", PF_PRESENT | PF_WRITE | PF_USER);
}

/// Runs a fatal mode of mmap_test: it dies at the address it announced.
fn check_mmap_segv(mode: &str, error: u64) {
    if !require_kvm() {
        return;
    }
    let program = image("mmap_test");
    assert_status(&native(&program, [mode]), 139);
    let output = vmrun([program.as_os_str(), OsStr::new(mode)]);
    let report = assert_segv(&output);
    assert_eq!(
        report.addr,
        announced_address(&output.stdout),
        "{}",
        describe(&output)
    );
    assert_fault_error(&report, error, &output);
}

/// The error code's present, write and user bits are exactly `expected`.
fn assert_fault_error(report: &SegvReport, expected: u64, output: &std::process::Output) {
    let bits = report.error & (PF_PRESENT | PF_WRITE | PF_USER);
    assert_eq!(
        bits,
        expected,
        "page-fault error code {:#x}:\n{}",
        report.error,
        describe(output)
    );
}

#[test]
fn segv_report_parses_a_linux_style_line() {
    let line = "vmrun: Segmentation fault at 0x0 ip 0x401b2d (error 0x6)";
    let report = SegvReport::parse_line(line);
    assert_eq!(
        report,
        Some(SegvReport {
            addr: 0,
            ip: 0x401b2d,
            error: 6
        })
    );
}

#[test]
fn segv_report_rejects_malformed_lines() {
    for line in [
        "Segmentation fault at 0x0",
        "Segmentation fault at 0x0 ip 0x1 (error 0x6",
        "Segmentation fault at 0xZZ ip 0x1 (error 0x6)",
        "Segmentation fault at 0 ip 0x1 (error 0x6)",
        "Segmentation fault at 0x0 ip 0x1 (error 6)",
    ] {
        assert_eq!(SegvReport::parse_line(line), None, "{line}");
    }
}

#[test]
fn bad_address_accesses_to_kernel_half_and_non_canonical_addresses_signal_as_natively() {
    if !require_kvm() {
        return;
    }
    // With 5-level paging (la57) the host's user space reaches past 2^47,
    // where vmrun's 4-level guest has non-canonical addresses and the
    // kernel half: the native faults differ by design.
    let la57 = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .any(|l| l.starts_with("flags") && l.contains(" la57"))
    });
    if la57 {
        eprintln!("SKIPPED: this host's CPU has 5-level paging; its user space is larger");
        return;
    }
    // Each access is repeated: on some platforms a fault in the kernel half
    // carries different error-code bits from one run or access to the next.
    let program = image("bad_address");
    let native = native(&program, ["catch", "8"]);
    let guest = vmrun([program.as_os_str(), OsStr::new("catch"), OsStr::new("8")]);
    assert_same("bad_address catch 8", &native, &guest);
}

#[test]
fn bad_address_read_of_the_first_kernel_half_address_exits_139_in_every_run() {
    if !require_kvm() {
        return;
    }
    let program = image("bad_address");
    for addr in ["0xffff800000000000", "0xffff808000000000", "0x800000000000"] {
        let args = ["read", addr];
        let native_status = shell_status(&native(&program, args).status);
        assert_eq!(native_status, 139, "native read of {addr}");
        for _ in 0..4 {
            let output = vmrun([program.as_os_str(), OsStr::new("read"), OsStr::new(addr)]);
            assert_status(&output, native_status);
            assert!(output.stdout.is_empty(), "{}", describe(&output));
        }
    }
}

#[test]
fn bad_address_touch_of_a_file_page_past_its_end_is_sigbus_as_natively() {
    if !require_kvm() {
        return;
    }
    let program = image("bad_address");
    for args in [&["pasteof"][..], &["pasteof", "die"]] {
        let native = native(&program, args);
        let mut guest_args = vec![program.as_os_str()];
        guest_args.extend(args.iter().map(OsStr::new));
        let guest = vmrun(guest_args);
        assert_eq!(
            (shell_status(&guest.status), &guest.stdout),
            (shell_status(&native.status), &native.stdout),
            "bad_address {args:?} differs from the native run:\n{}",
            describe(&guest)
        );
    }
}

#[test]
fn vmrun_output_to_dev_full_keeps_the_programs_status() {
    if !require_kvm() {
        return;
    }
    // vmrun's own lines (strace, stats, maps) cannot be written; the
    // program writes nothing and its status must come through.
    let command = vmrun_command(["--strace", "--stats", "--maps", "--"]);
    let mut command = command;
    command.arg(image("exit42"));
    let status = status_with(command, dev_full(), dev_full());
    assert_eq!(shell_status(&status), 42, "{status:?}");
    // A fault's "Segmentation fault at ..." line is lost too, not the 139.
    let mut command = vmrun_command(["--stats"]);
    command.arg(image("null_deref"));
    let status = status_with(command, std::process::Stdio::null(), dev_full());
    assert_eq!(shell_status(&status), 139, "{status:?}");
}

#[test]
fn a_signal_sent_with_kill_is_reported_as_a_shell_does_without_a_fault_address() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/bin/bash"]) {
        return;
    }
    let bash = std::path::Path::new("/bin/bash");
    for (signal, status, line) in [
        ("SEGV", 139, "vmrun: Segmentation fault\n"),
        ("TERM", 143, "vmrun: Terminated\n"),
    ] {
        let script = format!("kill -{signal} $$");
        assert_status(&native(bash, ["-c", &script]), status);
        let output = vmrun([bash.as_os_str(), OsStr::new("-c"), OsStr::new(&script)]);
        assert_status(&output, status);
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            line,
            "{}",
            describe(&output)
        );
    }
}
