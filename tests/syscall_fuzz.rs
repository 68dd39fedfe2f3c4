//! The guest syscall fuzzer (images/c/syscall_fuzz.c) under `vmrun --check
//! --isolate`: raw system calls 0-500 with edge-case arguments from a fixed
//! seed. The guest kernel must answer every one without panicking, keep
//! the page tables consistent with the VMAs (the checker runs at exec and
//! exit), and let the program finish with its own exit status 0.
//!
//! Longer runs: `vmrun --check --isolate syscall_fuzz SEED COUNT` with other
//! seeds and counts (see docs/hardening.md).

mod common;

use common::*;

/// Calls per run here: a few seconds of guest time on a slow nested host.
const COUNT: u64 = 30_000;

fn fuzz(seed: u64) {
    let output = vmrun([
        "--isolate".into(),
        image("syscall_fuzz").into_os_string(),
        seed.to_string().into(),
        COUNT.to_string().into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panic"),
        "seed {seed}: {}",
        describe(&output)
    );
    assert_status(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let made: u64 = stdout
        .strip_prefix("syscall_fuzz: done, ")
        .and_then(|rest| rest.strip_suffix(" calls made\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("seed {seed}: no final line: {}", describe(&output)));
    // Denied numbers are skipped (about a fifth); most calls must really
    // have been made.
    assert!(
        made > COUNT / 2,
        "seed {seed}: only {made} of {COUNT} calls made"
    );
}

#[test]
fn syscall_fuzzer_seed_1_survives_30000_calls_and_exits_0() {
    if !require_kvm() {
        return;
    }
    fuzz(1);
}
