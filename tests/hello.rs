//! Hello-world programs of every build flavour (no libc, static glibc,
//! static PIE, musl, Rust std) print exactly "hello, world\n" under vmrun,
//! exactly as they do natively, and exit 0 with nothing on stderr.

mod common;

use common::*;
use std::ffi::OsStr;

const HELLO: &[u8] = b"hello, world\n";

/// Runs `name` natively and under vmrun; both must print HELLO cleanly.
fn check_hello(name: &str) {
    if !require_kvm() {
        return;
    }
    let program = image(name);
    let native = native(&program, NO_ARGS);
    assert_clean_exit(&native, HELLO);
    let output = vmrun([&program]);
    assert_clean_exit(&output, &native.stdout);
}

#[test]
fn hello_raw_prints_hello_and_exits_0() {
    check_hello("hello_raw");
}

#[test]
fn hello_static_glibc_prints_hello_and_exits_0() {
    check_hello("hello_static");
}

#[test]
fn hello_static_pie_prints_hello_and_exits_0() {
    check_hello("hello_pie");
}

#[test]
fn hello_rust_std_prints_hello_and_exits_0() {
    check_hello("hello_rust");
}

#[test]
fn hello_musl_prints_hello_and_exits_0() {
    if !vmrun_images::is_built("hello_musl") {
        eprintln!(
            "SKIPPED: hello_musl was not built: musl-gcc is missing (apt-get install musl-tools)"
        );
        return;
    }
    check_hello("hello_musl");
}

#[test]
fn verbose_run_keeps_the_programs_stdout_unchanged() {
    if !require_kvm() {
        return;
    }
    let program = image("hello_static");
    let output = vmrun([OsStr::new("-v"), program.as_os_str()]);
    assert_status(&output, 0);
    assert_eq!(
        output.stdout,
        HELLO,
        "verbose output must go to stderr:\n{}",
        describe(&output)
    );
}
