//! vmrun's check of the host at start: without a usable /dev/kvm it prints
//! one line that names the fix and exits 125, whatever is wrong with it
//! (missing, not permitted, not KVM at all).
//!
//! Each case runs vmrun in a private mount namespace (`unshare --mount`)
//! whose /dev is a fresh tmpfs holding only what the case needs, so the
//! host's own /dev/kvm is never touched and the tests need no KVM. Creating
//! the namespace needs root; elsewhere the tests print SKIPPED.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// What /dev/kvm is inside the namespace.
#[derive(Clone, Copy, Debug)]
enum FakeKvm {
    /// No /dev/kvm at all.
    Missing,
    /// A /dev/kvm with mode 000, opened by the unprivileged user 65534.
    NotPermitted,
    /// A plain empty file: it opens, but KVM's ioctls fail on it.
    NotKvm,
}

impl FakeKvm {
    /// Shell commands that make /dev/kvm so, run after /dev is a fresh
    /// tmpfs holding copies of vmrun and the program; they may prefix the
    /// command line "$@" (for example to drop privileges).
    fn setup(self) -> &'static str {
        match self {
            FakeKvm::Missing => ":",
            FakeKvm::NotPermitted => {
                "touch /dev/kvm && chmod 000 /dev/kvm && \
                 set -- setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\""
            }
            FakeKvm::NotKvm => "touch /dev/kvm && chmod 666 /dev/kvm",
        }
    }
}

/// Whether this process may create a mount namespace; prints SKIPPED if not.
fn require_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["--mount", "true"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ok {
        eprintln!("SKIPPED: `unshare --mount` is not permitted here (needs root and util-linux)");
    }
    ok
}

/// Runs `vmrun hello_raw` with /dev replaced as `kvm` says. vmrun and the
/// program are copied into the new /dev so that an unprivileged user can
/// run them wherever the build tree lives.
fn vmrun_with(kvm: FakeKvm) -> Output {
    let script = format!(
        "mount -t tmpfs vmrun-test /dev && \
         cp \"$1\" /dev/vmrun && cp \"$2\" /dev/program && \
         chmod 755 /dev/vmrun && chmod 644 /dev/program && \
         set -- /dev/vmrun /dev/program && {} && exec \"$@\"",
        kvm.setup()
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c", &script, "sh"])
        .arg(env!("CARGO_BIN_EXE_vmrun"))
        .arg(image("hello_raw"));
    run(command, b"")
}

/// Asserts exit status 125 and exactly one line on stderr holding every
/// piece of `expected`.
fn assert_one_line_125(output: &Output, expected: &[&str]) {
    assert_status(output, 125);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", describe(output));
    for needle in expected {
        assert_stderr_contains(output, needle);
    }
}

#[test]
fn missing_dev_kvm_exits_125_naming_modprobe() {
    if !require_unshare() {
        return;
    }
    let output = vmrun_with(FakeKvm::Missing);
    assert_one_line_125(&output, &["/dev/kvm does not exist", "modprobe"]);
}

#[test]
fn dev_kvm_without_permission_exits_125_naming_the_kvm_group() {
    if !require_unshare() {
        return;
    }
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        eprintln!("SKIPPED: setpriv (util-linux) is missing");
        return;
    }
    let output = vmrun_with(FakeKvm::NotPermitted);
    assert_one_line_125(&output, &["permission denied opening /dev/kvm", "kvm group"]);
}

#[test]
fn dev_kvm_that_is_not_kvm_exits_125_naming_the_api_version() {
    if !require_unshare() {
        return;
    }
    let output = vmrun_with(FakeKvm::NotKvm);
    assert_one_line_125(&output, &["/dev/kvm", "KVM API version"]);
}
