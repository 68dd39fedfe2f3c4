//! vmrun's check of the host at start: without a usable /dev/kvm it prints
//! one line that names the fix and exits 125, whatever is wrong with it
//! (missing, not permitted, not KVM at all).
//!
//! Each case runs vmrun in a private mount namespace (`unshare --mount`)
//! whose /dev is a fresh tmpfs holding only what the case needs (unshare
//! makes the new namespace's mounts private, so the host's own /dev is never
//! touched) and the tests need no KVM. Creating
//! the namespace needs root; elsewhere the tests print SKIPPED.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};

/// What /dev/kvm is inside the namespace.
#[derive(Clone, Debug)]
enum FakeKvm {
    /// No /dev/kvm at all.
    Missing,
    /// A /dev/kvm with mode 000, opened by the unprivileged user 65534
    /// (switched to by this setpriv).
    NotPermitted(PathBuf),
    /// A plain empty file: it opens, but KVM's ioctls fail on it.
    NotKvm,
}

impl FakeKvm {
    /// Shell commands that make /dev/kvm so, run after /dev is a fresh
    /// tmpfs holding copies of vmrun and the program; they may prefix the
    /// command line "$@" (for example to drop privileges).
    fn setup(&self) -> String {
        match self {
            FakeKvm::Missing => ":".into(),
            FakeKvm::NotPermitted(setpriv) => format!(
                "touch /dev/kvm && chmod 000 /dev/kvm && \
                 set -- '{}' --reuid=65534 --regid=65534 --clear-groups \"$@\"",
                setpriv.display()
            ),
            FakeKvm::NotKvm => "touch /dev/kvm && chmod 666 /dev/kvm".into(),
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

/// util-linux's setpriv, found in PATH. Busybox's setpriv applet cannot
/// change user ids, so applet links (symlinks) do not count, and the shell
/// gets the absolute path: a busybox shell may prefer its own applet to
/// PATH. Prints SKIPPED if there is none.
fn find_setpriv() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("setpriv"))
        .find(|candidate| candidate.is_file() && !candidate.is_symlink());
    if found.is_none() {
        eprintln!("SKIPPED: util-linux's setpriv is not in PATH");
    }
    found
}

/// Runs `vmrun hello_raw` with /dev replaced as `kvm` says. vmrun and the
/// program are copied into the new /dev so that an unprivileged user can
/// run them wherever the build tree lives.
fn vmrun_with(kvm: FakeKvm) -> Output {
    let script = format!(
        "mount -t tmpfs vmrun-test /dev && \
         cp \"$1\" /dev/vmrun && cp \"$2\" /dev/program && \
         chmod 755 /dev/vmrun /dev/program && \
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
    let Some(setpriv) = find_setpriv() else {
        return;
    };
    let output = vmrun_with(FakeKvm::NotPermitted(setpriv));
    assert_one_line_125(
        &output,
        &["permission denied opening /dev/kvm", "kvm group"],
    );
}

#[test]
fn dev_kvm_that_is_not_kvm_exits_125_naming_the_api_version() {
    if !require_unshare() {
        return;
    }
    let output = vmrun_with(FakeKvm::NotKvm);
    assert_one_line_125(&output, &["/dev/kvm", "KVM API version"]);
}
