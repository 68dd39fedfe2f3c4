//! Programs nobody here wrote, as Debian ships them: glibc's static-PIE
//! `ldconfig` and `busybox-static` (when installed; `.ci/run` installs
//! it). Their output under vmrun must equal their native output.

mod common;

use common::*;
use std::path::Path;

/// Run `program args` natively and under vmrun; both must succeed with
/// the same stdout and nothing on stderr.
fn same_as_native(program: &Path, args: &[&str]) {
    let native = native(program, args);
    assert_status(&native, 0);
    let mut all = vec![program.as_os_str().to_owned()];
    all.extend(args.iter().map(|a| a.into()));
    let output = vmrun(all);
    assert_clean_exit(&output, &native.stdout);
}

fn busybox() -> Option<&'static Path> {
    let path = Path::new("/bin/busybox");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIPPED: /bin/busybox is missing (apt-get install busybox-static)");
        None
    }
}

#[test]
fn debian_ldconfig_static_pie_prints_its_version() {
    if !require_kvm() {
        return;
    }
    let ldconfig = Path::new("/sbin/ldconfig");
    if !ldconfig.exists() {
        eprintln!("SKIPPED: /sbin/ldconfig is missing");
        return;
    }
    same_as_native(ldconfig, &["--version"]);
}

#[test]
fn busybox_echo_and_seq_match_native() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    same_as_native(bb, &["echo", "hello", "from", "busybox"]);
    same_as_native(bb, &["seq", "1", "3", "20"]);
    same_as_native(bb, &["printf", "%s-%d\\n", "x", "42"]);
}

#[test]
fn busybox_uname_reports_the_guest_kernel() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let output = vmrun([bb.as_os_str(), "uname".as_ref(), "-sm".as_ref()]);
    assert_clean_exit(&output, b"Linux x86_64\n");
}

#[test]
fn busybox_false_exits_1() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    assert_status(&vmrun([bb.as_os_str(), "false".as_ref()]), 1);
}

#[test]
fn busybox_sleep_returns_after_sleeping() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    assert_clean_exit(
        &vmrun([bb.as_os_str(), "sleep".as_ref(), "0.05".as_ref()]),
        b"",
    );
}
