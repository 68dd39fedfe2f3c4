//! vmrun's exit does not wait for the host kernel to tear down the VM and
//! guest RAM: a helper process that shares them holds them while vmrun
//! exits and dies of SIGKILL once vmrun is gone (`sys::hand_off_teardown`).
//! This binary makes itself a child subreaper, so that the helper,
//! orphaned when vmrun exits, is reparented here and its end can be seen.
//! It is a test binary of its own: a subreaper reaps the orphans of every
//! test in its process.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn the_teardown_helper_outlives_vmrun_and_ends_once_it_is_gone() {
    if !require_kvm() {
        return;
    }
    // SAFETY: prctl with integer arguments changes only this process's
    // subreaper flag.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let output = vmrun([image("hello_static")]);
    assert_clean_exit(&output, b"hello, world\n");
    // vmrun is reaped: its helper, if it made one, was reparented to this
    // process as vmrun exited, and dies of the SIGKILL vmrun's end sent it
    // (or, where vmrun was gone before the helper asked for that signal,
    // as on a slow host, exits at once with status 0).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    let pid = loop {
        // SAFETY: waitpid writes one int into the valid `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid != 0 || Instant::now() > deadline {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        pid > 0,
        "no helper was left to hold the VM's teardown (waitpid: {pid}, {})",
        std::io::Error::last_os_error()
    );
    let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
    let left = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(
        killed || left,
        "the helper ended with status {status:#x}: neither by SIGKILL nor by its own exit"
    );
}
