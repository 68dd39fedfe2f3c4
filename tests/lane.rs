//! The SVM lane's judgement of one test (tests/nested/init, sourced with
//! LANE_INIT_TEST=1): a test that printed the SKIPPED line of
//! `require_kvm` is a SKIP, not a PASS, wherever the harness put the line.
//! And a test binary run without /dev/kvm ends by saying how many of its
//! KVM tests did not run. No KVM involved.

use std::path::Path;
use std::process::Command;

/// Runs init's `run_test` on a fake test binary that prints `log` and
/// exits 0; returns init's verdict line and its counters.
/// (None, with a SKIPPED line, where the source tree is absent, as inside
/// the lane itself.)
fn judge(tag: &str, log: &str) -> Option<String> {
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nested/init");
    if !init.is_file() {
        eprintln!("SKIPPED: {} is not here", init.display());
        return None;
    }
    let dir = std::env::temp_dir().join(format!("vmrun-lane-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("fake-test");
    std::fs::write(&fake, format!("#!/bin/sh\nprintf '%s\\n' '{log}'\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        ". '{}'; TEST_TIMEOUT=30; run_test '{}' t suite::t; \
         echo \"$passed passed, $failed failed, $skipped skipped\"",
        init.display(),
        fake.display()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("LANE_INIT_TEST", "1")
        .env("TMPDIR", &dir)
        .output()
        .expect("running sh");
    let _ = std::fs::remove_dir_all(&dir);
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_skipped_line_after_the_harness_test_name_counts_as_a_skip() {
    let log = "test t ... SKIPPED: /dev/kvm is not available; this test needs KVM";
    let Some(verdict) = judge("skip", log) else {
        return;
    };
    assert!(
        verdict.contains("SKIP suite::t: /dev/kvm is not available"),
        "{verdict}"
    );
    assert!(
        verdict.contains("0 passed, 0 failed, 1 skipped"),
        "{verdict}"
    );
}

#[test]
fn a_test_that_printed_no_skipped_line_passes() {
    let Some(verdict) = judge("pass", "test t ... ok") else {
        return;
    };
    assert!(verdict.contains("PASS suite::t"), "{verdict}");
    assert!(
        verdict.contains("1 passed, 0 failed, 0 skipped"),
        "{verdict}"
    );
}

mod common;

/// A KVM test that, run without /dev/kvm, only skips (run by the next test).
#[test]
fn probe_requires_kvm() {
    let _ = common::require_kvm();
}

#[test]
fn a_test_binary_run_without_dev_kvm_ends_by_saying_how_many_kvm_tests_did_not_run() {
    // This binary again, in a mount namespace whose /dev is an empty tmpfs.
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg("mount -t tmpfs none /dev && exec \"$0\" --exact probe_requires_kvm")
        .arg(&exe)
        .output()
        .expect("running unshare");
    if !output.status.success() && output.stdout.is_empty() {
        eprintln!(
            "SKIPPED: cannot hide /dev/kvm with unshare -m: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.contains("WARNING: 1 KVM tests") && last.contains("did not run"),
        "stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
}
