//! The stdin ring on kvm_pvm: with vmrun's fd 0 a pipe, the syscall
//! trampoline hands out most reads of it from the ring, with no VM exit,
//! and the VMM fills the ring once per 64 KiB. One test in its own
//! process, as it puts a pipe on the process's fd 0.

mod common;

use common::*;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use vmm::kvm::Platform;
use vmm::vm::{Vm, VmConfig};

/// `read_stdin` (1000-byte reads, each written to stdout) on 1 MiB from
/// a pipe on fd 0: the output is the input; the VMM filled the ring about
/// 16 times, and the fast calls it answered are the writes and those
/// fills, not the reads (about 1,050 of them); the pipe is empty after
/// the run. Where the host is not kvm_pvm the ring stays off and every
/// read is a fast call.
#[test]
fn the_trampoline_serves_reads_of_a_piped_stdin_from_the_ring() {
    if !require_kvm() {
        return;
    }
    let input: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are new and owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup2 onto fd 0, which this process owns for the test.
    assert_eq!(unsafe { libc::dup2(r.as_raw_fd(), 0) }, 0);
    drop(r);
    let feed = input.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(w);
        w.write_all(&feed).unwrap();
    });
    let config = VmConfig {
        read_ahead_stdin: true,
        ..VmConfig::for_program(image("read_stdin"))
    };
    let mut vm = Vm::new(&config).unwrap();
    let pvm = vm.platform == Platform::Pvm;
    let mut io = Captured {
        from_stdin: true,
        ..Default::default()
    };
    let report = run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    writer.join().unwrap();
    assert!(io.out == input, "stdout is stdin");
    assert_eq!(String::from_utf8_lossy(&io.err), "read 1048576 bytes\n");
    let writes = (input.len() as u64).div_ceil(1000);
    let t = &report.timings;
    if pvm {
        assert!(
            (16..=40).contains(&t.stdin_ring_fills),
            "fills: {}",
            t.stdin_ring_fills
        );
        assert!(
            t.fast_calls < writes + t.stdin_ring_fills + 50,
            "{} fast calls for {writes} writes and {} fills: the reads were the VMM's",
            t.fast_calls,
            t.stdin_ring_fills
        );
        // The first, which opens the fast call, is the kernel's.
        assert!(
            io.reads <= 2,
            "{} reads of fd 0 not from the ring",
            io.reads
        );
    } else {
        assert_eq!(t.stdin_ring_fills, 0, "the ring is kvm_pvm's only");
    }
    // The pipe gave up every byte, and no more.
    let mut rest = [0u8; 16];
    // SAFETY: a read of fd 0 into a local buffer.
    let n = unsafe { libc::read(0, rest.as_mut_ptr().cast(), rest.len()) };
    assert_eq!(n, 0, "the pipe is at its end");
}
