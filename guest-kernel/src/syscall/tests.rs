//! System calls run against fake physical memory and a fake host.

use super::time::Clock;
use super::*;
use crate::errno::KResult;
use crate::fs::cache::PageCache;
use crate::fs::host::NoHost;
use crate::mm::frame::FrameAllocator;
use crate::mm::paging::KernelHalf;
use crate::mm::space::Mm;
use crate::mm::testmem::TestMem;
use crate::uaccess::{copy_from_user, copy_to_user};

#[derive(Default)]
struct FakeHost {
    written: Vec<(u64, Vec<u8>)>,
    /// The fd and the pieces of each read.
    reads: Vec<(u64, Vec<IoVec>)>,
    mem_snapshot: Vec<IoVec>,
    random_pieces: Vec<IoVec>,
    slept: Vec<u64>,
    /// The fd, offset and whence of each seek.
    seeks: Vec<(u64, u64, u64)>,
}

impl HostIo for FakeHost {
    fn write(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        self.mem_snapshot = iov.to_vec();
        self.written.push((fd, vec![]));
        iov.iter().map(|v| v.len as i64).sum()
    }
    fn read(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        self.reads.push((fd, iov.to_vec()));
        iov.iter().map(|v| v.len as i64).sum()
    }
    fn random(&mut self, iov: &[IoVec]) -> i64 {
        self.random_pieces = iov.to_vec();
        iov.iter().map(|v| v.len as i64).sum()
    }
    fn sleep(&mut self, ns: u64) {
        self.slept.push(ns);
    }
    fn seek(&mut self, fd: u64, offset: u64, whence: u64) -> i64 {
        self.seeks.push((fd, offset, whence));
        match offset as i64 {
            o if o < 0 => -(Errno::EINVAL as i64),
            o => o + 100 * fd as i64,
        }
    }
    fn now_ns(&mut self, clock: Clock) -> u64 {
        match clock {
            Clock::Realtime => 1_700_000_000_123_456_789,
            Clock::Monotonic => 42_000_000_007,
        }
    }
}

const MEM: u64 = 16 << 20;
const PROT_RW: u64 = 3;
const MAP_PRIVATE_ANON: u64 = 0x22;

struct World {
    mem: TestMem,
    frames: FrameAllocator,
    cache: PageCache,
    fs: NoHost,
    tasks: crate::process::task::Tasks,
    p: Process,
    host: FakeHost,
    buf: u64,
}

impl World {
    /// The process and the environment its memory calls take.
    fn parts(&mut self) -> (&mut Process, MmEnv<'_, TestMem>) {
        let env = MmEnv {
            mem: &mut self.mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.fs,
        };
        (&mut self.p, env)
    }

    fn new() -> World {
        let mut mem = TestMem::new(MEM);
        let mut frames = FrameAllocator::new(1 << 20, MEM);
        let kroot = frames.alloc_zeroed(&mut mem).unwrap();
        let mut p = Process::empty();
        let kernel = KernelHalf::new(kroot, &[]);
        *p.mm = Mm::new(&mut mem, &mut frames, &kernel).unwrap();
        p.init_stdio();
        let mut w = World {
            mem,
            frames,
            cache: PageCache::new(),
            fs: NoHost::new(),
            tasks: crate::process::task::Tasks::new(),
            p,
            host: FakeHost::default(),
            buf: 0,
        };
        let a = w.call(
            nr::MMAP,
            [0, 0x4000, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
        );
        w.buf = a.unwrap_ret() as u64;
        w
    }

    fn call(&mut self, n: u64, a: [u64; 6]) -> Action {
        let mut env = MmEnv {
            mem: &mut self.mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.fs,
        };
        let mut cx = Ctx {
            p: &mut self.p,
            env: &mut env,
            host: &mut self.host,
            tasks: &mut self.tasks,
        };
        dispatch(&mut cx, n, &a)
    }

    fn poke(&mut self, va: u64, data: &[u8]) {
        let (p, mut env) = self.parts();
        copy_to_user(&mut p.mm, &mut env, va, data).unwrap();
    }

    fn peek(&mut self, va: u64, len: usize) -> Vec<u8> {
        let (p, mut env) = self.parts();
        let mut b = vec![0; len];
        copy_from_user(&mut p.mm, &mut env, va, &mut b).unwrap();
        b
    }
}

impl World {
    /// `copy_to_user` of `data` at `va`, then `copy_from_user` of as many
    /// bytes back: each one's result.
    fn copy_both(&mut self, va: u64, data: &[u8]) -> (KResult<()>, KResult<Vec<u8>>) {
        let (p, mut env) = self.parts();
        let put = copy_to_user(&mut p.mm, &mut env, va, data);
        let mut b = vec![0; data.len()];
        let got = copy_from_user(&mut p.mm, &mut env, va, &mut b).map(|()| b);
        (put, got)
    }
}

#[test]
fn user_copies_within_one_page_and_across_pages_agree() {
    let mut w = World::new();
    let data: Vec<u8> = (0..40u8).collect();
    // Inside a page, ending at its last byte, and across into the next.
    for va in [w.buf + 0x100, w.buf + 0x1000 - 40, w.buf + 0x1000 - 17] {
        let (put, got) = w.copy_both(va, &data);
        assert_eq!(put, Ok(()));
        assert_eq!(got, Ok(data.clone()));
    }
    assert_eq!(w.peek(w.buf + 0x1000 - 17, 17), data[..17].to_vec());
    assert_eq!(w.peek(w.buf + 0x1000, 23), data[17..].to_vec());
}

#[test]
fn user_copies_of_unmapped_memory_are_efault_in_one_page_or_across() {
    let mut w = World::new();
    let last = w.buf + 0x3000;
    assert_eq!(
        w.call(nr::MUNMAP, [last, 0x1000, 0, 0, 0, 0]).unwrap_ret(),
        0
    );
    let data = [7u8; 32];
    // Wholly in the unmapped page: the one-page path.
    let (put, got) = w.copy_both(last + 0x10, &data);
    assert_eq!(put, Err(Errno::EFAULT));
    assert_eq!(got, Err(Errno::EFAULT));
    // Starting in a mapped page, ending in the unmapped one.
    let (put, got) = w.copy_both(last - 16, &data);
    assert_eq!(put, Err(Errno::EFAULT));
    assert_eq!(got, Err(Errno::EFAULT));
    // An empty copy touches no page.
    assert_eq!(w.copy_both(last, &[]), (Ok(()), Ok(vec![])));
}

#[test]
fn user_copies_in_a_page_no_last_table_covers_walk_or_fault_it_in() {
    const MAP_FIXED: u64 = 0x10;
    let mut w = World::new();
    w.frames.fault_size = vmrun_contract::FaultSize::Page4K;
    // Four areas 2 MiB apart: touching the last three leaves no last page
    // table over the first.
    let base = 0x7000_0000_u64;
    for k in 0..4 {
        let at = base + k * 0x20_0000;
        let r = w.call(
            nr::MMAP,
            [
                at,
                0x2000,
                PROT_RW,
                MAP_PRIVATE_ANON | MAP_FIXED,
                u64::MAX,
                0,
            ],
        );
        assert_eq!(r.unwrap_ret() as u64, at);
    }
    w.poke(base, b"first");
    for k in 1..4 {
        w.poke(base + k * 0x20_0000, b"other");
        let _ = w.peek(base + k * 0x20_0000 + 0x1000, 1);
    }
    assert_eq!(w.p.mm.mapped_user_page(&w.mem, base, true), None);
    // Mapped: found by the walk; the copy lands where a read finds it.
    let data: Vec<u8> = (1..=24u8).collect();
    let (put, got) = w.copy_both(base + 0x10, &data);
    assert_eq!((put, got), (Ok(()), Ok(data.clone())));
    assert_eq!(w.peek(base, 5), b"first");
    // Not faulted in yet, its table not a last one: faulted in by the copy.
    let _ = w.peek(base + 0x20_0000, 1);
    let _ = w.peek(base + 0x40_0000, 1);
    let _ = w.peek(base + 0x60_0000, 1);
    assert!(w.p.mm.pt.translate(&w.mem, base + 0x1000).is_none());
    let (put, got) = w.copy_both(base + 0x1ff0, &data[..16]);
    assert_eq!((put, got), (Ok(()), Ok(data[..16].to_vec())));
    // Unmapped, past the user range, or a kernel address: EFAULT.
    for bad in [
        base + 0x8000,
        vmrun_contract::layout::TASK_SIZE,
        u64::MAX - 7,
    ] {
        assert_eq!(w.copy_both(bad, &data[..8]).0, Err(Errno::EFAULT));
        assert_eq!(w.copy_both(bad, &data[..8]).1, Err(Errno::EFAULT));
    }
}

trait Ret {
    fn unwrap_ret(self) -> i64;
}

impl Ret for Action {
    fn unwrap_ret(self) -> i64 {
        match self {
            Action::Return(v) => v,
            other => panic!("expected a return, got {other:?}"),
        }
    }
}

impl World {
    /// `uaccess::user_page_quick` of `va`.
    fn quick_page(&mut self, va: u64, write: bool) -> KResult<u64> {
        let (p, mut env) = self.parts();
        crate::uaccess::user_page_quick(&mut p.mm, &mut env, va, write)
    }
}

#[test]
fn user_page_quick_answers_as_user_page_mapped_or_not() {
    use vmrun_contract::layout::TASK_SIZE;
    let mut w = World::new();
    // Mapped: the quick look's answer.
    w.poke(w.buf, b"x");
    let pa = w.p.mm.mapped_user_page(&w.mem, w.buf, true);
    assert_eq!(w.quick_page(w.buf + 8, true).ok(), pa.map(|p| p + 8));
    // Not faulted in yet: faulted in, then found by the quick look too.
    let fresh = w.call(
        nr::MMAP,
        [0, 0x1000, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
    );
    let fresh = fresh.unwrap_ret() as u64;
    assert_eq!(w.p.mm.mapped_user_page(&w.mem, fresh, false), None);
    let pa = w.quick_page(fresh, false).unwrap();
    assert_eq!(w.p.mm.mapped_user_page(&w.mem, fresh, false), Some(pa));
    // Read-only for a write, past the user range, or unmapped: EFAULT.
    let ro = w.call(nr::MMAP, [0, 0x1000, 1, MAP_PRIVATE_ANON, u64::MAX, 0]);
    let ro = ro.unwrap_ret() as u64;
    assert!(w.quick_page(ro, false).is_ok());
    assert_eq!(w.quick_page(ro, true), Err(Errno::EFAULT));
    assert_eq!(w.quick_page(TASK_SIZE, false), Err(Errno::EFAULT));
    assert_eq!(w.quick_page(TASK_SIZE - 0x1000, false), Err(Errno::EFAULT));
}

#[test]
fn write_hands_the_host_physical_pieces_of_the_buffer() {
    let mut w = World::new();
    w.poke(w.buf + 0xff0, b"0123456789abcdefXYZ");
    let r = w
        .call(nr::WRITE, [1, w.buf + 0xff0, 19, 0, 0, 0])
        .unwrap_ret();
    assert_eq!(r, 19);
    let total: u64 = w.host.mem_snapshot.iter().map(|v| v.len).sum();
    assert_eq!(total, 19);
}

#[test]
fn write_to_stdio_within_one_page_is_one_host_write_of_that_piece() {
    let mut w = World::new();
    w.poke(w.buf + 0x10, b"hello\n");
    let r = w
        .call(nr::WRITE, [2, w.buf + 0x10, 6, 0, 0, 0])
        .unwrap_ret();
    assert_eq!(r, 6);
    assert_eq!(w.host.written.len(), 1);
    assert_eq!(w.host.written[0].0, 2);
    let pa = w.p.mm.mapped_user_page(&w.mem, w.buf + 0x10, false);
    assert_eq!(
        w.host.mem_snapshot,
        vec![IoVec {
            phys: pa.unwrap(),
            len: 6
        }]
    );
    // Another page of the mapping (faulted in first if need be).
    let r = w
        .call(nr::WRITE, [1, w.buf + 0x3000, 4, 0, 0, 0])
        .unwrap_ret();
    assert_eq!((r, w.host.written.len()), (4, 2));
    // Nothing to write, or stdin (read-only): as before, no host write.
    assert_eq!(w.call(nr::WRITE, [1, w.buf, 0, 0, 0, 0]).unwrap_ret(), 0);
    assert_eq!(w.call(nr::WRITE, [0, w.buf, 4, 0, 0, 0]).unwrap_ret(), -9);
    assert_eq!(w.host.written.len(), 2);
}

#[test]
fn write_from_unmapped_or_kernel_address_is_efault() {
    let mut w = World::new();
    assert_eq!(w.call(nr::WRITE, [1, 0x1, 10, 0, 0, 0]).unwrap_ret(), -14);
    assert_eq!(
        w.call(nr::WRITE, [1, 0xffff_8880_0000_0000, 10, 0, 0, 0])
            .unwrap_ret(),
        -14
    );
    assert!(w.host.written.is_empty());
}

#[test]
fn write_to_an_unknown_fd_is_ebadf() {
    let mut w = World::new();
    assert_eq!(w.call(nr::WRITE, [7, w.buf, 1, 0, 0, 0]).unwrap_ret(), -9);
}

#[test]
fn writev_gathers_all_buffers_into_one_host_write() {
    let mut w = World::new();
    let (b, iov) = (w.buf, w.buf + 0x1000);
    w.poke(b, b"hello, world\n");
    let mut raw = Vec::new();
    for (base, len) in [(b, 7u64), (b + 7, 0), (b + 7, 6)] {
        raw.extend_from_slice(&base.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
    }
    w.poke(iov, &raw);
    assert_eq!(w.call(nr::WRITEV, [1, iov, 3, 0, 0, 0]).unwrap_ret(), 13);
    assert_eq!(w.host.written.len(), 1);
    assert_eq!(
        w.call(nr::WRITEV, [1, iov, 5000, 0, 0, 0]).unwrap_ret(),
        -22
    );
}

#[test]
fn writev_over_more_pages_than_the_few_pieces_gathers_them_all() {
    let mut w = World::new();
    let big = w
        .call(
            nr::MMAP,
            [0, 0x8000, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
        )
        .unwrap_ret() as u64;
    let iov = w.buf;
    let mut raw = Vec::new();
    // 0x100 bytes from each of six pages, then 0x3000 bytes across four.
    for (base, len) in (0..6)
        .map(|i| (big + i * 0x1000 + 0x800, 0x100u64))
        .chain([(big, 0x3000)])
    {
        raw.extend_from_slice(&base.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
    }
    w.poke(iov, &raw);
    assert_eq!(
        w.call(nr::WRITEV, [1, iov, 7, 0, 0, 0]).unwrap_ret(),
        0x3600
    );
    assert_eq!(w.host.written.len(), 1);
    let pieces = w.host.mem_snapshot.len();
    assert!(pieces > 4, "{pieces} pieces");
}

#[test]
fn pages_spanned_bounds_the_pieces_of_a_writev() {
    use super::files::pages_spanned;
    assert_eq!(pages_spanned(&[]), 0);
    assert_eq!(pages_spanned(&[(0x1000, 0), (0x1ff0, 0x20)]), 2);
    assert_eq!(pages_spanned(&[(0x1000, 0x1000), (0x5000, 1)]), 2);
    assert_eq!(
        pages_spanned(&[(0xfff, u64::MAX)]),
        u64::MAX.div_ceil(0x1000)
    );
}

#[test]
fn unknown_syscall_is_enosys() {
    let mut w = World::new();
    assert_eq!(w.call(1000, [0; 6]).unwrap_ret(), -38);
}

#[test]
fn exit_group_keeps_the_low_byte_of_the_status() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::EXIT_GROUP, [0x12a, 0, 0, 0, 0, 0]),
        Action::Exit(0x2a)
    );
}

#[test]
fn uname_fills_utsname_and_rejects_null() {
    let mut w = World::new();
    assert_eq!(w.call(nr::UNAME, [w.buf, 0, 0, 0, 0, 0]).unwrap_ret(), 0);
    let u = w.peek(w.buf, 65 * 6);
    assert_eq!(&u[..6], b"Linux\0");
    assert_eq!(&u[65 * 4..65 * 4 + 7], b"x86_64\0");
    assert_eq!(w.call(nr::UNAME, [0, 0, 0, 0, 0, 0]).unwrap_ret(), -14);
}

#[test]
fn arch_prctl_sets_and_reads_back_fs_base() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::ARCH_PRCTL, [0x1002, 0x7000_1234, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert!(w.p.bases_changed);
    assert_eq!(
        w.call(nr::ARCH_PRCTL, [0x1003, w.buf, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.peek(w.buf, 8), 0x7000_1234u64.to_le_bytes());
    assert_eq!(
        w.call(nr::ARCH_PRCTL, [0x1002, 0xffff_8000_0000_0000, 0, 0, 0, 0])
            .unwrap_ret(),
        -1
    );
    assert_eq!(
        w.call(nr::ARCH_PRCTL, [0x9999, 0, 0, 0, 0, 0]).unwrap_ret(),
        -22
    );
}

#[test]
fn set_base_serves_only_set_fs_and_set_gs_as_arch_prctl_does() {
    let mut w = World::new();
    assert_eq!(super::set_base(&mut w.p, 0x1003, w.buf), None, "GET_FS");
    assert_eq!(super::set_base(&mut w.p, 0x9999, 0), None);
    assert!(!w.p.bases_changed);
    assert_eq!(super::set_base(&mut w.p, 0x1001, 0x7000_5678), Some(0));
    assert_eq!((w.p.gs_base, w.p.fs_base), (0x7000_5678, 0));
    assert!(w.p.bases_changed);
    w.p.bases_changed = false;
    assert_eq!(
        super::set_base(&mut w.p, 0x1002, vmrun_contract::layout::TASK_SIZE),
        Some(-1),
        "EPERM, nothing changed"
    );
    assert_eq!((w.p.fs_base, w.p.bases_changed), (0, false));
    assert_eq!(super::set_base(&mut w.p, 0x1002, 0x7000_1234), Some(0));
    assert_eq!((w.p.fs_base, w.p.bases_changed), (0x7000_1234, true));
}

#[test]
fn rt_sigaction_round_trips_and_refuses_sigkill() {
    let mut w = World::new();
    let act: Vec<u8> = [0x401000u64, 0x0400_0000, 0x401100, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.poke(w.buf, &act);
    assert_eq!(
        w.call(nr::RT_SIGACTION, [11, w.buf, 0, 8, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(
        w.call(nr::RT_SIGACTION, [11, 0, w.buf + 64, 8, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.peek(w.buf + 64, 32), act);
    assert_eq!(
        w.call(nr::RT_SIGACTION, [9, w.buf, 0, 8, 0, 0])
            .unwrap_ret(),
        -22
    );
    assert_eq!(
        w.call(nr::RT_SIGACTION, [11, w.buf, 0, 4, 0, 0])
            .unwrap_ret(),
        -22
    );
}

#[test]
fn tgkill_of_self_with_sigabrt_kills_but_ignored_signal_returns() {
    let mut w = World::new();
    assert_eq!(w.call(nr::TGKILL, [1, 1, 6, 0, 0, 0]), Action::Kill(6));
    let ign: Vec<u8> = [1u64, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.poke(w.buf, &ign);
    w.call(nr::RT_SIGACTION, [15, w.buf, 0, 8, 0, 0]);
    assert_eq!(w.call(nr::KILL, [1, 15, 0, 0, 0, 0]).unwrap_ret(), 0);
    assert_eq!(w.call(nr::KILL, [77, 15, 0, 0, 0, 0]).unwrap_ret(), -3);
}

#[test]
fn clock_gettime_writes_a_timespec() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::CLOCK_GETTIME, [1, w.buf, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    let t = w.peek(w.buf, 16);
    assert_eq!(u64::from_le_bytes(t[..8].try_into().unwrap()), 42);
    assert_eq!(u64::from_le_bytes(t[8..].try_into().unwrap()), 7);
    assert_eq!(
        w.call(nr::CLOCK_GETTIME, [99, w.buf, 0, 0, 0, 0])
            .unwrap_ret(),
        -22
    );
}

#[test]
fn poll_reports_stdio_ready_and_other_fds_invalid() {
    let mut w = World::new();
    let mut fds = Vec::new();
    for (fd, ev) in [(1i32, 4u16), (9, 1)] {
        fds.extend_from_slice(&fd.to_le_bytes());
        fds.extend_from_slice(&ev.to_le_bytes());
        fds.extend_from_slice(&0u16.to_le_bytes());
    }
    w.poke(w.buf, &fds);
    assert_eq!(w.call(nr::POLL, [w.buf, 2, 0, 0, 0, 0]).unwrap_ret(), 2);
    let out = w.peek(w.buf, 16);
    assert_eq!(u16::from_le_bytes([out[6], out[7]]), 4);
    assert_eq!(u16::from_le_bytes([out[14], out[15]]), 0x20);
}

#[test]
fn readlink_proc_self_exe_returns_the_program_path() {
    let mut w = World::new();
    w.p.set_exe(b"/usr/bin/prog");
    w.poke(w.buf, b"/proc/self/exe\0");
    let n = w
        .call(nr::READLINK, [w.buf, w.buf + 0x100, 64, 0, 0, 0])
        .unwrap_ret();
    assert_eq!(w.peek(w.buf + 0x100, n as usize), b"/usr/bin/prog");
    w.poke(w.buf, b"/etc/passwd\0");
    assert_eq!(
        w.call(nr::READLINK, [w.buf, w.buf + 0x100, 64, 0, 0, 0])
            .unwrap_ret(),
        -2
    );
    // Read in place or copied (across a page end), the same answers.
    let exe = b"/proc/self/exe";
    for at in [w.buf + 0x200, w.buf + 0x1000 - 8] {
        w.poke(at, b"/proc/self/exe\0");
        let in_place = crate::fs::path::user_string_is(&w.p.mm, &w.mem, at, exe);
        assert_eq!(in_place, at == w.buf + 0x200);
        let r = w.call(nr::READLINK, [at, w.buf + 0x300, 4, 0, 0, 0]);
        assert_eq!(r.unwrap_ret(), 4);
        assert_eq!(w.peek(w.buf + 0x300, 4), b"/usr");
        let r = w.call(nr::READLINK, [at, w.buf + 0x300, 0, 0, 0, 0]);
        assert_eq!(r.unwrap_ret(), -22, "EINVAL for no room");
    }
    for other in [
        &b"/proc/self/exe/\0"[..],
        b"/proc/self/ex\0",
        b"/proc/self/exe2\0",
    ] {
        w.poke(w.buf + 0x200, other);
        assert!(!crate::fs::path::user_string_is(
            &w.p.mm,
            &w.mem,
            w.buf + 0x200,
            exe
        ));
    }
    assert!(!crate::fs::path::user_string_is(
        &w.p.mm, &w.mem, 0x1000, exe
    ));
}

#[test]
fn brk_grows_and_shrinks_within_the_heap() {
    let mut w = World::new();
    w.p.mm.start_brk = 0x60_0000;
    w.p.mm.brk = 0x60_0000;
    assert_eq!(w.call(nr::BRK, [0, 0, 0, 0, 0, 0]).unwrap_ret(), 0x60_0000);
    assert_eq!(
        w.call(nr::BRK, [0x62_1000, 0, 0, 0, 0, 0]).unwrap_ret(),
        0x62_1000
    );
    w.poke(0x62_0ff8, b"12345678");
    assert_eq!(
        w.call(nr::BRK, [0x60_1000, 0, 0, 0, 0, 0]).unwrap_ret(),
        0x60_1000
    );
    assert_eq!(
        w.call(nr::BRK, [0x10, 0, 0, 0, 0, 0]).unwrap_ret(),
        0x60_1000
    );
}

#[test]
fn brk_short_answers_as_dispatch_does_and_leaves_lowering_and_journaling_to_it() {
    let mut w = World::new();
    let ram = w.frames.total();
    w.p.mm.start_brk = 0x60_0000;
    w.p.mm.brk = 0x60_0000;
    assert_eq!(brk_short(&mut w.p, 0x62_1000, ram), Some(0x62_1000));
    assert_eq!(brk_short(&mut w.p, 0x63_0000, ram), Some(0x63_0000));
    assert_eq!(brk_short(&mut w.p, 0, ram), Some(0x63_0000));
    assert_eq!(brk_short(&mut w.p, 0x61_0000, ram), None);
    assert_eq!(w.p.mm.brk, 0x63_0000);
    w.p.mm.vmas.set_journaling(true);
    assert_eq!(brk_short(&mut w.p, 0x64_0000, ram), None);
    assert_eq!(
        w.call(nr::BRK, [0x64_0000, 0, 0, 0, 0, 0]).unwrap_ret(),
        0x64_0000
    );
}

impl World {
    /// Call `n` with arguments `a` as `run::short_call` routes it to a
    /// short reply; None: left to the full path.
    fn call_short(&mut self, n: u64, a: [u64; 4]) -> Option<i64> {
        let (p, mem, host) = (&self.p, &mut self.mem, &mut self.host);
        match short_route(n) {
            ShortRoute::Prlimit => prlimit64_short(p, mem, a),
            ShortRoute::Getrandom => getrandom_short(p, mem, host, a),
            ShortRoute::Readlink => readlink_short(p, mem, a[0], a[1], a[2]),
            ShortRoute::Readlinkat => readlink_short(p, mem, a[1], a[2], a[3]),
            ShortRoute::Newfstatat => newfstatat_short(p, mem, a),
            _ => None,
        }
    }
}

#[test]
fn short_replies_answer_as_dispatch_does_or_leave_the_call_untouched() {
    let mut w = World::new();
    w.frames.fault_size = vmrun_contract::FaultSize::Page4K;
    w.p.set_exe(b"/usr/bin/prog");
    w.p.stdio_modes = [0, 0o010600, 0];
    let (exe, empty, out) = (w.buf + 0x100, w.buf + 0x180, w.buf + 0x200);
    w.poke(exe, b"/proc/self/exe\0");
    w.poke(empty, b"\0");
    // Never touched: not mapped yet, so only the full path (which faults
    // it in) may write there.
    let untouched = w.buf + 0x3000;
    let (pid, fdcwd) = (w.p.pid, AT_FDCWD);
    let calls: [(u64, [u64; 4], Option<i64>); 26] = [
        (nr::PRLIMIT64, [0, 3, 0, out], Some(0)),
        (nr::PRLIMIT64, [0, 7, 0, out], Some(0)),
        (nr::PRLIMIT64, [0, 16, 0, out], None),
        (nr::PRLIMIT64, [0, 3, 0, 0], None),
        (nr::PRLIMIT64, [0, 3, 0, untouched], None),
        (nr::PRLIMIT64, [pid, 3, 0, out], None),
        (nr::PRLIMIT64, [0, 3, out, out], None),
        (nr::GETRANDOM, [out, 8, 1, 0], Some(8)),
        (nr::GETRANDOM, [out, 8, 8, 0], None),
        (nr::GETRANDOM, [out, 0, 0, 0], None),
        (nr::GETRANDOM, [w.buf + 0xffc, 8, 0, 0], None),
        (nr::GETRANDOM, [untouched, 8, 0, 0], None),
        (nr::READLINK, [exe, out, 64, 0], Some(13)),
        (nr::READLINK, [exe, out, 4, 0], Some(4)),
        (nr::READLINK, [exe, out, 0, 0], None),
        (nr::READLINK, [empty, out, 64, 0], None),
        (nr::READLINK, [exe, untouched, 64, 0], None),
        (nr::READLINKAT, [fdcwd, exe, out, 64], Some(13)),
        (nr::READLINKAT, [99, exe, out, 64], Some(13)),
        (nr::NEWFSTATAT, [1, empty, out, 0x1000], Some(0)),
        (nr::NEWFSTATAT, [0, empty, out, 0x1000], Some(0)),
        (nr::NEWFSTATAT, [1, empty, out, 0], None),
        (nr::NEWFSTATAT, [1, exe, out, 0x1000], None),
        (nr::NEWFSTATAT, [5, empty, out, 0x1000], None),
        (nr::NEWFSTATAT, [fdcwd, empty, out, 0x1000], None),
        (nr::NEWFSTATAT, [1, empty, untouched, 0x1000], None),
    ];
    let fill = [0xa5u8; 0x100];
    for (n, a, want) in calls {
        w.poke(out, &fill);
        w.host.random_pieces.clear();
        let got = w.call_short(n, a);
        assert_eq!(got, want, "call {n} {a:x?}");
        let short_bytes = w.peek(out, fill.len());
        let short_pieces = core::mem::take(&mut w.host.random_pieces);
        assert!(w.p.mm.mapped_user_page(&w.mem, untouched, false).is_none());
        let Some(v) = got else {
            assert_eq!(short_bytes, fill, "call {n} {a:x?}: nothing written");
            assert!(short_pieces.is_empty(), "call {n} {a:x?}: no random");
            continue;
        };
        w.poke(out, &fill);
        let full = w.call(n, [a[0], a[1], a[2], a[3], 0, 0]).unwrap_ret();
        assert_eq!(full, v, "call {n} {a:x?}: the full path's answer");
        assert_eq!(w.peek(out, fill.len()), short_bytes, "call {n} {a:x?}");
        assert_eq!(w.host.random_pieces, short_pieces, "call {n} {a:x?}");
    }
}

impl World {
    /// mprotect as `run::short_call` serves it.
    fn mprotect_short(&mut self, a: [u64; 3]) -> i64 {
        let (p, mut env) = self.parts();
        mprotect_short(&mut p.mm, &mut env, a)
    }

    /// mmap as `run::short_call` serves it.
    fn mmap_short(&mut self, a: [u64; 6]) -> i64 {
        let (p, mut env) = self.parts();
        match a[3] & crate::mm::mmap::map::ANONYMOUS {
            0 => mmap_short(p, &mut env, a),
            _ => mmap_anon_short(&mut p.mm, &mut env, a),
        }
    }

    /// The areas and the flags of the pages mapped in `[start, end)`.
    fn memory_map(&self, start: u64, end: u64) -> (Vec<crate::mm::vma::Vma>, Vec<u64>) {
        let vmas = (0..self.p.mm.vmas.len())
            .filter_map(|i| self.p.mm.vmas.get(i).copied())
            .collect();
        let flags = (start..end)
            .step_by(vmrun_contract::layout::PAGE_SIZE as usize)
            .map(|va| {
                let t = self.p.mm.pt.translate(&self.mem, va);
                t.map_or(0, |t| t.flags)
            })
            .collect();
        (vmas, flags)
    }
}

#[test]
fn mprotect_short_answers_and_changes_what_dispatch_does() {
    let (mut short, mut full) = (World::new(), World::new());
    let b = short.buf;
    assert_eq!(b, full.buf);
    for w in [&mut short, &mut full] {
        w.poke(b, &[1; 0x4000]);
    }
    let calls = [
        [b, 0x1000, 1],
        [b + 0x1000, 0x2000, 0],
        [b + 0x3000, 0x1000, 7],
        [b, 0x4000, 3],
        [b, 0x8000, 1],
        [b + 1, 0x1000, 1],
        [b, 0x1000, 0x10],
        [b, 0, 1],
        [0x1000, 0x1000, 1],
    ];
    for a in calls {
        let got = short.mprotect_short(a);
        let want = full.call(nr::MPROTECT, [a[0], a[1], a[2], 0, 0, 0]);
        assert_eq!(got, want.unwrap_ret(), "mprotect {a:x?}");
        assert_eq!(
            short.memory_map(b, b + 0x8000),
            full.memory_map(b, b + 0x8000),
            "mprotect {a:x?}"
        );
    }
}

#[test]
fn mmap_short_answers_and_maps_what_dispatch_does() {
    let (mut short, mut full) = (World::new(), World::new());
    let b = short.buf;
    assert_eq!(b, full.buf);
    for w in [&mut short, &mut full] {
        w.poke(b, &[1; 0x4000]);
    }
    // private | anonymous, with FIXED, FIXED_NOREPLACE, NORESERVE, a bad
    // offset, a zero length, a hint, a free place, over written pages;
    // then of fds that cannot be mapped.
    let (anon, fixed, noreplace, noreserve) = (0x22, 0x10, 0x10_0000, 0x4000);
    let calls = [
        [0, 0x3000, 3, anon, u64::MAX, 0],
        [0, 0x1000, 1, anon, 5, 0],
        [b + 0x1000, 0x2000, 3, anon | fixed, u64::MAX, 0],
        [b, 0x1000, 3, anon | noreplace, u64::MAX, 0],
        [b + 0x8000, 0x1000, 3, anon | noreplace, u64::MAX, 0],
        [b + 0x10_0000, 0x1000, 0, anon, u64::MAX, 0],
        [0, 0x4000, 3, anon | noreserve, u64::MAX, 0],
        [0, 0x1000, 3, anon, u64::MAX, 0x800],
        [0, 0, 3, anon, u64::MAX, 0],
        [b + 1, 0x1000, 3, anon | fixed, u64::MAX, 0],
        [0, 0x1000, 3, 0x20, u64::MAX, 0],
        // Of a file: a bad fd, stdio's.
        [0, 0x1000, 1, 0x02, 99, 0],
        [0, 0x1000, 1, 0x02, 1, 0],
    ];
    for a in calls {
        let got = short.mmap_short(a);
        let want = full.call(nr::MMAP, a);
        assert_eq!(got, want.unwrap_ret(), "mmap {a:x?}");
        assert_eq!(
            short.memory_map(b, b + 0x8000),
            full.memory_map(b, b + 0x8000),
            "mmap {a:x?}"
        );
    }
    assert_eq!(short.memory_map(0, 0), full.memory_map(0, 0));
}

#[test]
fn munmap_short_answers_and_unmaps_what_dispatch_does_and_leaves_writeback_to_it() {
    use crate::fs::file::{o, Node, OpenFile};
    let (mut short, mut full) = (World::new(), World::new());
    let b = short.buf;
    assert_eq!(b, full.buf);
    for w in [&mut short, &mut full] {
        w.poke(b, &[1; 0x4000]);
    }
    let calls = [
        [b + 0x1000, 0x1000],
        [b + 0x3000, 0x1800],
        [b, 0x8000],
        [b + 1, 0x1000],
        [b, 0],
        [!0xfff, 0x1000],
    ];
    for a in calls {
        let (p, mut env) = short.parts();
        let got = munmap_short(p, &mut env, a);
        let want = full.call(nr::MUNMAP, [a[0], a[1], 0, 0, 0, 0]);
        assert_eq!(got, Some(want.unwrap_ret()), "munmap {a:x?}");
        assert_eq!(
            short.memory_map(b, b + 0x8000),
            full.memory_map(b, b + 0x8000),
            "munmap {a:x?}"
        );
    }
    // A mapped file open for writing: the full path writes back first.
    let rw = OpenFile::new(Node::Dev(crate::fs::dev::DevNode::Zero), o::RDWR);
    short.p.mapped_files.push(rw);
    let (p, mut env) = short.parts();
    assert_eq!(munmap_short(p, &mut env, [b, 0x1000]), None);
}

#[test]
fn write_short_writes_to_stdio_as_dispatch_does_and_leaves_the_rest_untouched() {
    let mut w = World::new();
    w.frames.fault_size = vmrun_contract::FaultSize::Page4K;
    let b = w.buf;
    w.poke(b, b"hello, world\n");
    let untouched = b + 0x3000;
    let calls: [([u64; 3], bool); 8] = [
        ([1, b, 13], true),
        ([2, b + 7, 6], true),
        ([1, b, 0], false),
        ([0, b, 13], false),
        ([5, b, 13], false),
        ([1, b + 0xffc, 8], false),
        ([1, untouched, 8], false),
        ([1, 0, 8], false),
    ];
    for (a, served) in calls {
        w.host.written.clear();
        let (p, mem, host) = (&w.p, &w.mem, &mut w.host);
        let got = write_short(p, mem, host, a);
        assert_eq!(got.is_some(), served, "write {a:x?}");
        let short_writes = core::mem::take(&mut w.host.written);
        let short_pieces = core::mem::take(&mut w.host.mem_snapshot);
        assert!(w.p.mm.mapped_user_page(&w.mem, untouched, false).is_none());
        let Some(got) = got else {
            assert!(short_writes.is_empty(), "write {a:x?}: nothing written");
            continue;
        };
        let full = w.call(nr::WRITE, [a[0], a[1], a[2], 0, 0, 0]).unwrap_ret();
        assert_eq!(got, Ok(full), "write {a:x?}");
        assert_eq!(w.host.written, short_writes, "write {a:x?}");
        assert_eq!(w.host.mem_snapshot, short_pieces, "write {a:x?}");
    }
}

#[test]
fn prlimit_reports_the_stack_limit_and_refuses_raising_the_hard_limit() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::PRLIMIT64, [0, 3, 0, w.buf, 0, 0]).unwrap_ret(),
        0
    );
    assert_eq!(w.peek(w.buf, 8), (8u64 << 20).to_le_bytes());
    // Lower RLIMIT_AS to 1 MiB soft, 2 MiB hard; read it back.
    w.poke(w.buf, &(1u64 << 20).to_le_bytes());
    w.poke(w.buf + 8, &(2u64 << 20).to_le_bytes());
    assert_eq!(
        w.call(nr::PRLIMIT64, [0, 9, w.buf, 0, 0, 0]).unwrap_ret(),
        0
    );
    assert_eq!(
        w.call(nr::GETRLIMIT, [9, w.buf + 16, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.peek(w.buf + 16, 8), (1u64 << 20).to_le_bytes());
    assert_eq!(w.peek(w.buf + 24, 8), (2u64 << 20).to_le_bytes());
    // Raising the hard limit is EPERM; soft above hard is EINVAL.
    w.poke(w.buf + 8, &(4u64 << 20).to_le_bytes());
    assert_eq!(
        w.call(nr::SETRLIMIT, [9, w.buf, 0, 0, 0, 0]).unwrap_ret(),
        -(Errno::EPERM as i64)
    );
    w.poke(w.buf, &(8u64 << 20).to_le_bytes());
    w.poke(w.buf + 8, &(2u64 << 20).to_le_bytes());
    assert_eq!(
        w.call(nr::SETRLIMIT, [9, w.buf, 0, 0, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
    assert_eq!(
        w.call(nr::GETRLIMIT, [16, w.buf, 0, 0, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
}

#[test]
fn prlimit_of_the_own_limit_checks_the_resource_and_the_pointer() {
    let mut w = World::new();
    // pid 0 (the quick read) and the caller's own pid: the same answer.
    let pid = w.p.pid;
    for who in [0, pid] {
        assert_eq!(
            w.call(nr::PRLIMIT64, [who, 3, 0, w.buf + 0x40, 0, 0])
                .unwrap_ret(),
            0
        );
        assert_eq!(w.peek(w.buf + 0x40, 8), (8u64 << 20).to_le_bytes());
    }
    assert_eq!(
        w.call(nr::PRLIMIT64, [0, 16, 0, w.buf, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
    for bad in [0x1000, vmrun_contract::layout::TASK_SIZE - 8, u64::MAX - 7] {
        assert_eq!(
            w.call(nr::PRLIMIT64, [0, 3, 0, bad, 0, 0]).unwrap_ret(),
            -(Errno::EFAULT as i64)
        );
    }
    assert_eq!(
        w.call(nr::PRLIMIT64, [pid + 1, 3, 0, w.buf, 0, 0])
            .unwrap_ret(),
        -(Errno::ESRCH as i64)
    );
}

#[test]
fn getrandom_fills_one_piece_or_several_and_checks_its_arguments() {
    let mut w = World::new();
    // In one page: one piece at the buffer; across a page end: the pieces
    // of both pages (joined where the frames are contiguous).
    w.poke(w.buf + 0x1000, b"x");
    let first = w.p.mm.mapped_user_page(&w.mem, w.buf + 0x10, true);
    for (at, len, most) in [(w.buf + 0x10, 8, 1), (w.buf + 0xffc, 8, 2)] {
        w.host.random_pieces.clear();
        let r = w.call(nr::GETRANDOM, [at, len, 0, 0, 0, 0]).unwrap_ret();
        assert_eq!(r, len as i64);
        assert!((1..=most).contains(&w.host.random_pieces.len()));
        let total: u64 = w.host.random_pieces.iter().map(|v| v.len).sum();
        assert_eq!(total, len);
    }
    w.call(nr::GETRANDOM, [w.buf + 0x10, 8, 0, 0, 0, 0]);
    assert_eq!(w.host.random_pieces[0].phys, first.unwrap());
    assert_eq!(
        w.call(nr::GETRANDOM, [w.buf, 0, 0, 0, 0, 0]).unwrap_ret(),
        0
    );
    assert_eq!(
        w.call(nr::GETRANDOM, [w.buf, 8, 8, 0, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
    for bad in [0x1000, vmrun_contract::layout::TASK_SIZE - 4, u64::MAX - 7] {
        assert_eq!(
            w.call(nr::GETRANDOM, [bad, 8, 0, 0, 0, 0]).unwrap_ret(),
            -(Errno::EFAULT as i64)
        );
    }
}

#[test]
fn fstat_of_stdio_is_the_stat_of_its_attributes_and_other_fds_keep_theirs() {
    use crate::fs::stat::{self, Attr};
    let mut w = World::new();
    w.p.stdio_modes = [0, 0o010600, 0o100644];
    for (fd, mode) in [(0, 0o020620), (1, 0o010600)] {
        assert_eq!(w.call(nr::FSTAT, [fd, w.buf, 0, 0, 0, 0]).unwrap_ret(), 0);
        let want = stat::stat_of(&Attr {
            mode,
            nlink: 1,
            ..Attr::default()
        });
        assert_eq!(w.peek(w.buf, 144), want.to_vec());
    }
    // A stream that is a regular file (or a block device): its stat is
    // the host's, asked by the stream's handle (this world's host finds
    // nothing), as for the statx of it and of /proc/self/fd/N.
    for call in [nr::FSTAT, nr::STATX] {
        use crate::fs::host::FsHost;
        *w.fs.req() = vmrun_contract::fs::FsRequest::zeroed();
        let args = match call {
            nr::FSTAT => [2, w.buf, 0, 0, 0, 0],
            _ => {
                w.poke(w.buf + 0x300, b"\0");
                [2, w.buf + 0x300, 0x1000, 0x7ff, w.buf, 0]
            }
        };
        assert_eq!(
            w.call(call, args).unwrap_ret(),
            -(Errno::ENOENT as i64),
            "{call}"
        );
        assert_eq!(w.fs.req().op, vmrun_contract::fs::op::FSTAT);
        assert_eq!(w.fs.req().handle, vmrun_contract::fs::STDIO_HANDLE + 2);
    }
    // A pipe's through the general path.
    let fds = w.buf + 0x200;
    assert_eq!(w.call(nr::PIPE2, [fds, 0, 0, 0, 0, 0]).unwrap_ret(), 0);
    let b = w.peek(fds, 4);
    let rd = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    assert_eq!(w.call(nr::FSTAT, [rd, w.buf, 0, 0, 0, 0]).unwrap_ret(), 0);
    let st = w.peek(w.buf, 144);
    assert_eq!(
        u32::from_le_bytes(st[24..28].try_into().unwrap()),
        stat::S_IFIFO | 0o600
    );
    // A bad buffer: EFAULT, for stdio and the rest.
    for fd in [1, rd] {
        for bad in [0x1000, vmrun_contract::layout::TASK_SIZE - 8, u64::MAX - 7] {
            assert_eq!(
                w.call(nr::FSTAT, [fd, bad, 0, 0, 0, 0]).unwrap_ret(),
                -(Errno::EFAULT as i64)
            );
        }
    }
}

#[test]
fn lseek_of_stdio_moves_the_host_file_and_a_pipe_or_terminal_cannot_seek() {
    let mut w = World::new();
    // stdin a file, stdout a pipe, stderr a terminal.
    w.p.stdio_modes = [0o100644, 0o010600, 0o020620];
    assert_eq!(w.call(nr::LSEEK, [0, 5, 0, 0, 0, 0]).unwrap_ret(), 5);
    assert_eq!(w.host.seeks, vec![(0, 5, 0)]);
    // The host's error comes back as it is.
    let back = (-4091i64) as u64;
    assert_eq!(
        w.call(nr::LSEEK, [0, back, 1, 0, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
    assert_eq!(w.host.seeks[1], (0, back, 1));
    // A dup of stdin is the same host file.
    assert_eq!(w.call(nr::DUP, [0, 0, 0, 0, 0, 0]).unwrap_ret(), 3);
    assert_eq!(w.call(nr::LSEEK, [3, 7, 2, 0, 0, 0]).unwrap_ret(), 7);
    // No host call for what cannot seek or a bad whence.
    w.host.seeks.clear();
    for fd in [1, 2] {
        assert_eq!(
            w.call(nr::LSEEK, [fd, 0, 1, 0, 0, 0]).unwrap_ret(),
            -(Errno::ESPIPE as i64)
        );
    }
    assert_eq!(
        w.call(nr::LSEEK, [0, 0, 5, 0, 0, 0]).unwrap_ret(),
        -(Errno::EINVAL as i64)
    );
    assert!(w.host.seeks.is_empty());
}

#[test]
fn fcntl_reads_stdio_flags_and_rejects_other_fds() {
    let mut w = World::new();
    assert_eq!(w.call(nr::FCNTL, [1, 3, 0, 0, 0, 0]).unwrap_ret(), 1);
    assert_eq!(w.call(nr::FCNTL, [0, 1, 0, 0, 0, 0]).unwrap_ret(), 0);
    assert_eq!(w.call(nr::FCNTL, [5, 1, 0, 0, 0, 0]).unwrap_ret(), -9);
}

#[test]
fn fcntl_on_the_short_path_answers_as_the_full_path_or_leaves_the_call_to_it() {
    const F_DUPFD_CLOEXEC: u64 = 1030;
    let mut w = World::new();
    // F_GETFD, F_SETFD, F_GETFL of fds 0 to 2 and of a bad fd, with the
    // close-on-exec flag set in between: each answer is the full path's.
    for (cmd, arg) in [(1, 0), (3, 0), (2, 1), (1, 0), (2, 0), (1, 0), (3, 0)] {
        for fd in [0, 1, 2] {
            let short = fcntl_short(&mut w.p, fd, cmd, arg);
            let full = w.call(nr::FCNTL, [fd, cmd, arg, 0, 0, 0]).unwrap_ret();
            assert_eq!(short, Some(full), "fcntl({fd}, {cmd}, {arg})");
        }
        assert_eq!(
            fcntl_short(&mut w.p, 5, cmd, arg),
            None,
            "a bad fd: the full path's"
        );
    }
    // Any other command is the full path's, with nothing done.
    let before = w.call(nr::FCNTL, [1, 1, 0, 0, 0, 0]).unwrap_ret();
    assert_eq!(fcntl_short(&mut w.p, 1, F_DUPFD_CLOEXEC, 3), None);
    assert_eq!(fcntl_short(&mut w.p, 1, 4, 0), None);
    assert_eq!(w.call(nr::FCNTL, [1, 1, 0, 0, 0, 0]).unwrap_ret(), before);
    assert_eq!(
        w.call(nr::FCNTL, [3, 1, 0, 0, 0, 0]).unwrap_ret(),
        -9,
        "no fd was made"
    );
}

#[test]
fn the_read_that_ends_a_listing_is_the_short_paths_only_at_the_end() {
    use crate::fs::file::{Node, OpenFile};
    let mut w = World::new();
    let node = Node::Host {
        handle: 9,
        inode: None,
        cache_owns_handle: false,
        mode: 0o040755,
        path: b"/d".to_vec(),
    };
    let dir = OpenFile::new(node, 0);
    let fd = w.p.fds.alloc(dir.clone(), false).unwrap();
    assert_eq!(
        getdents_end_short(&w.p, fd),
        None,
        "not at its end: the full path's"
    );
    dir.borrow_mut().dir_end = true;
    assert_eq!(getdents_end_short(&w.p, fd), Some(0));
    assert_eq!(
        getdents_end_short(&w.p, fd + 1),
        None,
        "a bad fd: the full path's EBADF"
    );
    // An lseek forgets the end (SEEK_SET asks the host nothing).
    assert_eq!(w.call(nr::LSEEK, [fd, 0, 0, 0, 0, 0]).unwrap_ret(), 0);
    assert_eq!(getdents_end_short(&w.p, fd), None);
    // stdin (the host's stdio, no directory): the full path's.
    assert_eq!(getdents_end_short(&w.p, 0), None);
}

#[test]
fn fstat_of_stdout_reports_the_host_file_type() {
    let mut w = World::new();
    w.p.stdio_modes = [0o020620, 0o010600, 0];
    assert_eq!(w.call(nr::FSTAT, [1, w.buf, 0, 0, 0, 0]).unwrap_ret(), 0);
    let st = w.peek(w.buf, 144);
    assert_eq!(u32::from_le_bytes(st[24..28].try_into().unwrap()), 0o010600);
    assert_eq!(w.call(nr::FSTAT, [3, w.buf, 0, 0, 0, 0]).unwrap_ret(), -9);
    w.poke(w.buf + 0x200, b"\0");
    let r = w
        .call(nr::NEWFSTATAT, [2, w.buf + 0x200, w.buf, 0x1000, 0, 0])
        .unwrap_ret();
    assert_eq!(r, 0);
    w.poke(w.buf + 0x200, b"/etc\0");
    let r = w
        .call(nr::NEWFSTATAT, [2, w.buf + 0x200, w.buf, 0, 0, 0])
        .unwrap_ret();
    assert_eq!(r, -2);
    // fstatat(fd, "", AT_EMPTY_PATH) is fstat (its path read in place, at
    // a page's last byte too); without the flag, ENOENT; from an unmapped
    // page, EFAULT.
    for at in [w.buf + 0x1fff, w.buf + 0x300] {
        w.poke(at, b"\0");
        assert!(crate::fs::path::user_string_is(&w.p.mm, &w.mem, at, b""));
        let r = w.call(nr::NEWFSTATAT, [1, at, w.buf + 0x400, 0x1000, 0, 0]);
        assert_eq!(r.unwrap_ret(), 0);
        assert_eq!(w.peek(w.buf + 0x400, 144), st);
        let r = w.call(nr::NEWFSTATAT, [1, at, w.buf + 0x400, 0, 0, 0]);
        assert_eq!(r.unwrap_ret(), -2);
        let r = w.call(nr::NEWFSTATAT, [9, at, w.buf + 0x400, 0x1000, 0, 0]);
        assert_eq!(r.unwrap_ret(), -9);
    }
    let r = w.call(nr::NEWFSTATAT, [1, 0x1000, w.buf + 0x400, 0x1000, 0, 0]);
    assert_eq!(r.unwrap_ret(), -14);
}

/// The kernel's own nodes (/dev/null, a /proc file) are dated at the
/// host's boot (realtime less monotonic), the same at every stat, not at
/// the time of the stat. Unknown flags of newfstatat, statx and
/// faccessat2, statx's two sync types together and its reserved mask bit
/// are EINVAL, as in Linux.
#[test]
fn the_kernels_nodes_are_dated_at_boot_and_bad_stat_flags_are_einval() {
    let mut w = World::new();
    let boot = (1_700_000_000_123_456_789u64 - 42_000_000_007) / 1_000_000_000;
    for path in [&b"/dev/null\0"[..], b"/proc/self/status\0"] {
        w.poke(w.buf + 0x200, path);
        let r = w.call(nr::NEWFSTATAT, [AT_FDCWD, w.buf + 0x200, w.buf, 0, 0, 0]);
        assert_eq!(r.unwrap_ret(), 0);
        let st = w.peek(w.buf, 144);
        let mtime = u64::from_le_bytes(st[88..96].try_into().unwrap());
        assert_eq!(mtime, boot, "{}", String::from_utf8_lossy(path));
    }
    w.poke(w.buf + 0x200, b"/dev/null\0");
    let at = w.buf + 0x200;
    let calls = [
        (nr::NEWFSTATAT, [AT_FDCWD, at, w.buf, 0x2, 0, 0]),
        (nr::STATX, [AT_FDCWD, at, 0x6000, 0x7ff, w.buf, 0]),
        (nr::STATX, [AT_FDCWD, at, 0x4, 0x7ff, w.buf, 0]),
        (nr::STATX, [AT_FDCWD, at, 0, 0x8000_0000, w.buf, 0]),
        (nr::FACCESSAT2, [AT_FDCWD, at, 4, 0x4, 0, 0]),
    ];
    for (n, a) in calls {
        assert_eq!(w.call(n, a).unwrap_ret(), -22, "{} {a:x?}", name(n));
    }
    // Either sync type alone, and AT_EACCESS, are fine.
    assert_eq!(
        w.call(nr::STATX, [AT_FDCWD, at, 0x4000, 0x7ff, w.buf, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(
        w.call(nr::FACCESSAT2, [AT_FDCWD, at, 4, 0x200, 0, 0])
            .unwrap_ret(),
        0
    );
}

fn timespec(sec: i64, nsec: i64) -> Vec<u8> {
    [sec.to_le_bytes(), nsec.to_le_bytes()].concat()
}

#[test]
fn nanosleep_sleeps_on_the_host_and_checks_the_timespec() {
    let mut w = World::new();
    w.poke(w.buf, &timespec(1, 500));
    assert_eq!(
        w.call(nr::NANOSLEEP, [w.buf, 0, 0, 0, 0, 0]).unwrap_ret(),
        0
    );
    assert_eq!(w.host.slept, [1_000_000_500]);
    w.poke(w.buf, &timespec(0, 1_000_000_000));
    assert_eq!(
        w.call(nr::NANOSLEEP, [w.buf, 0, 0, 0, 0, 0]).unwrap_ret(),
        -22
    );
    assert_eq!(w.call(nr::NANOSLEEP, [0, 0, 0, 0, 0, 0]).unwrap_ret(), -14);
}

#[test]
fn clock_nanosleep_absolute_waits_only_until_the_deadline() {
    let mut w = World::new();
    // The fake monotonic clock reads 42.000000007 s.
    w.poke(w.buf, &timespec(43, 7));
    assert_eq!(
        w.call(nr::CLOCK_NANOSLEEP, [1, 1, w.buf, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.host.slept, [1_000_000_000]);
    w.poke(w.buf, &timespec(1, 0));
    assert_eq!(
        w.call(nr::CLOCK_NANOSLEEP, [1, 1, w.buf, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.host.slept[1], 0, "a deadline in the past does not sleep");
    assert_eq!(
        w.call(nr::CLOCK_NANOSLEEP, [77, 0, w.buf, 0, 0, 0])
            .unwrap_ret(),
        -22
    );
}

#[test]
fn a_pipe_is_full_when_the_kernel_heap_runs_short() {
    let mut w = World::new();
    let fds = w.buf + 0x100;
    assert_eq!(w.call(nr::PIPE2, [fds, 0o4000, 0, 0, 0, 0]).unwrap_ret(), 0);
    let b = w.peek(fds, 8);
    let wr = u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    assert_eq!(
        w.call(nr::WRITE, [wr, w.buf, 100, 0, 0, 0]).unwrap_ret(),
        100
    );
    fn short() -> usize {
        4 * crate::process::task::TASK_HEAP_BYTES + 30
    }
    w.tasks.heap_free = short;
    assert_eq!(
        w.call(nr::WRITE, [wr, w.buf, 100, 0, 0, 0]).unwrap_ret(),
        100,
        "the ring the first write took (4 KiB) holds it"
    );
    assert_eq!(
        w.call(nr::WRITE, [wr, w.buf, 4000, 0, 0, 0]).unwrap_ret(),
        Errno::EAGAIN.to_ret(),
        "a nonblocking write the ring would grow for waits for heap, as for a full pipe"
    );
    assert_eq!(
        w.call(nr::WRITE, [wr, w.buf, 10_000, 0, 0, 0]).unwrap_ret(),
        4096 - 200,
        "a write over PIPE_BUF fills what the ring holds"
    );
}

#[test]
fn signalfd_reads_the_pending_signals_of_its_mask_in_order() {
    let mut w = World::new();
    let (usr1, usr2) = (1u64 << 9, 1u64 << 11);
    w.poke(w.buf, &usr1.to_le_bytes());
    let nonblock = u64::from(crate::fs::file::o::NONBLOCK);
    let fd = w
        .call(nr::SIGNALFD4, [u64::MAX, w.buf, 8, nonblock, 0, 0])
        .unwrap_ret() as u64;
    let out = w.buf + 0x1000;
    assert_eq!(w.call(nr::READ, [fd, out, 256, 0, 0, 0]).unwrap_ret(), -11);
    for sig in [10, 12] {
        let info = crate::signal::frame::SigInfo::sent(sig, 0, 7);
        w.p.post_signal(sig, info);
        w.p.sigmask |= 1 << (sig - 1);
    }
    assert_eq!(w.call(nr::READ, [fd, out, 127, 0, 0, 0]).unwrap_ret(), -22);
    assert_eq!(w.call(nr::READ, [fd, out, 256, 0, 0, 0]).unwrap_ret(), 128);
    assert_eq!(w.peek(out, 4), 10u32.to_le_bytes());
    assert_eq!(w.peek(out + 12, 4), 7u32.to_le_bytes(), "ssi_pid");
    assert_eq!(w.p.sig_pending, usr2, "SIGUSR2 is not in the mask");
    w.poke(w.buf, &(usr1 | usr2).to_le_bytes());
    let again = w.call(nr::SIGNALFD, [fd, w.buf, 8, 0, 0, 0]).unwrap_ret();
    assert_eq!(again as u64, fd, "a new mask for the same fd");
    assert_eq!(w.call(nr::READ, [fd, out, 256, 0, 0, 0]).unwrap_ret(), 128);
    assert_eq!(w.peek(out, 4), 12u32.to_le_bytes());
    assert_eq!(
        w.call(nr::SIGNALFD, [1, w.buf, 8, 0, 0, 0]).unwrap_ret(),
        -22
    );
    assert_eq!(
        w.call(nr::SIGNALFD4, [u64::MAX, w.buf, 4, 0, 0, 0])
            .unwrap_ret(),
        -22
    );
}

#[test]
fn timer_syscalls_arm_read_back_and_delete() {
    let mut w = World::new();
    let (sev, id_at, its, old) = (w.buf, w.buf + 0x100, w.buf + 0x200, w.buf + 0x300);
    let mut raw = [0u8; 64];
    raw[..8].copy_from_slice(&99u64.to_le_bytes());
    raw[8..12].copy_from_slice(&12u32.to_le_bytes()); // SIGUSR2
    w.poke(sev, &raw);
    let r = w.call(nr::TIMER_CREATE, [1, sev, id_at, 0, 0, 0]);
    assert_eq!(r.unwrap_ret(), 0);
    let id = u64::from(u32::from_le_bytes(w.peek(id_at, 4).try_into().unwrap()));
    // 1.5 s, then every 250 ms.
    let spec = [0u64, 250_000_000, 1, 500_000_000];
    let bytes: Vec<u8> = spec.iter().flat_map(|v| v.to_le_bytes()).collect();
    w.poke(its, &bytes);
    let r = w.call(nr::TIMER_SETTIME, [id, 0, its, old, 0, 0]);
    assert_eq!(r, Action::TimersChanged(0));
    assert_eq!(w.peek(old, 32), [0u8; 32], "it was disarmed");
    assert_eq!(
        w.call(nr::TIMER_GETTIME, [id, old, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    assert_eq!(w.peek(old, 32), bytes, "the fake clock stands still");
    assert_eq!(
        w.call(nr::TIMER_GETOVERRUN, [id, 0, 0, 0, 0, 0])
            .unwrap_ret(),
        0
    );
    let t = w.tasks.timers.of(1).next().unwrap();
    assert_eq!((t.value, t.interval), (99, 250_000_000));
    assert_eq!(
        w.call(nr::TIMER_DELETE, [id, 0, 0, 0, 0, 0]).unwrap_ret(),
        0
    );
    assert_eq!(
        w.call(nr::TIMER_DELETE, [id, 0, 0, 0, 0, 0]).unwrap_ret(),
        -22
    );
    assert_eq!(
        w.call(nr::TIMER_CREATE, [2, sev, id_at, 0, 0, 0])
            .unwrap_ret(),
        -22
    );
}

#[test]
fn identity_calls_answer_as_dispatch_does_and_no_other_call_is_one() {
    let mut w = World::new();
    w.p.pid = 7;
    w.p.tgid = 5;
    w.p.ppid = 3;
    w.p.pgid = 2;
    let ids = [
        (nr::GETPID, 5),
        (nr::GETTID, 7),
        (nr::GETPPID, 3),
        (nr::GETPGRP, 2),
        (nr::GETUID, 0),
        (nr::GETGID, 0),
        (nr::GETEUID, 0),
        (nr::GETEGID, 0),
    ];
    for (n, want) in ids {
        assert_eq!(identity(&w.p, n), Some(want), "{}", name(n));
        assert_eq!(w.call(n, [0; 6]).unwrap_ret(), want, "{}", name(n));
    }
    for n in 0..512 {
        if !ids.iter().any(|&(i, _)| i == n) {
            assert_eq!(identity(&w.p, n), None, "{}", name(n));
        }
    }
}

/// The short path's set_tid_address, set_robust_list and rseq do what
/// the full path does, and leave every other call to it.
#[test]
fn own_state_calls_match_the_full_path() {
    let (mut short, mut full) = (World::new(), World::new());
    for w in [&mut short, &mut full] {
        w.p.pid = 9;
    }
    let calls = [
        (nr::SET_TID_ADDRESS, [0x7000, 0]),
        (nr::SET_ROBUST_LIST, [0x8000, 24]),
        (nr::SET_ROBUST_LIST, [0x9000, 23]),
        (nr::RSEQ, [0x1000, 32]),
    ];
    for (n, a) in calls {
        let got = short_route(n).own_state(&mut short.p, a);
        let want = full.call(n, [a[0], a[1], 0, 0, 0, 0]).unwrap_ret();
        assert_eq!(got, Some(want), "{}", name(n));
        assert_eq!(
            (short.p.clear_child_tid, short.p.robust_list),
            (full.p.clear_child_tid, full.p.robust_list),
            "{}",
            name(n)
        );
    }
    assert_eq!(short.p.robust_list, 0x8000, "a wrong size changes nothing");
    for n in (0..512).filter(|&n| !calls.iter().any(|&(c, _)| c == n)) {
        assert_eq!(
            short_route(n).own_state(&mut short.p, [1, 24]),
            None,
            "{}",
            name(n)
        );
    }
}

/// The short path's table sends each call it serves to its own route,
/// sigreturn to the loop, and every other call, above the table too, to
/// the full path.
#[test]
fn short_routes_name_the_short_calls_and_send_the_rest_to_the_full_path() {
    use ShortRoute as R;
    let routes = [
        (nr::RT_SIGRETURN, R::Loop),
        (nr::SIGALTSTACK, R::Loop),
        (nr::BRK, R::Brk),
        (nr::ARCH_PRCTL, R::Bases),
        (nr::EXIT_GROUP, R::ExitGroup),
        (nr::GETPID, R::Tgid),
        (nr::GETTID, R::Pid),
        (nr::GETPPID, R::Ppid),
        (nr::GETPGRP, R::Pgid),
        (nr::GETUID, R::Root),
        (nr::GETGID, R::Root),
        (nr::GETEUID, R::Root),
        (nr::GETEGID, R::Root),
        (nr::SET_TID_ADDRESS, R::SetTidAddress),
        (nr::SET_ROBUST_LIST, R::SetRobustList),
        (nr::RSEQ, R::Rseq),
        (nr::PRLIMIT64, R::Prlimit),
        (nr::GETRANDOM, R::Getrandom),
        (nr::READLINK, R::Readlink),
        (nr::READLINKAT, R::Readlinkat),
        (nr::NEWFSTATAT, R::Newfstatat),
        (nr::STATX, R::Path),
        (nr::GETXATTR, R::Path),
        (nr::LGETXATTR, R::Path),
        (nr::ACCESS, R::Access),
        (nr::FACCESSAT, R::Path),
        (nr::FACCESSAT2, R::Path),
        (nr::CLOSE, R::Close),
        (nr::MPROTECT, R::Mprotect),
        (nr::MMAP, R::Mmap),
        (nr::MUNMAP, R::Munmap),
        (nr::WRITE, R::Write),
        (nr::WRITEV, R::Writev),
        (nr::READ, R::Read),
        (nr::PREAD64, R::Pread),
        (nr::RT_SIGACTION, R::Sigaction),
        (nr::WAIT4, R::Wait4),
        (nr::CLONE, R::Loop),
        (nr::CLONE3, R::Loop),
        (nr::FORK, R::Loop),
        (nr::VFORK, R::Loop),
        (nr::OPEN, R::Neutral),
        (nr::OPENAT, R::Neutral),
        (nr::GETDENTS64, R::Getdents),
        (nr::LSEEK, R::Neutral),
        (nr::FSTAT, R::Neutral),
        (nr::FCNTL, R::Fcntl),
    ];
    for n in 0..1024 {
        let want = routes
            .iter()
            .find(|&&(c, _)| c == n)
            .map_or(R::Full, |&(_, r)| r);
        assert_eq!(short_route(n), want, "{}", name(n));
    }
    assert_eq!(short_route(u64::MAX), R::Full);
    assert_eq!(short_route(1 << 32 | nr::GETPID), R::Full);
}

#[test]
fn calls_that_keep_the_fast_call_table_open_leave_stdio_fds_and_flags_alone() {
    const F_DUPFD: u64 = 0;
    const F_GETFD: u64 = 1;
    const F_SETFD: u64 = 2;
    const F_GETFL: u64 = 3;
    const F_SETFL: u64 = 4;
    const F_DUPFD_CLOEXEC: u64 = 1030;
    let enoent = Errno::ENOENT.to_ret();
    // Reading a directory, seeking, fstat: whatever the fd.
    for n in [nr::GETDENTS64, nr::LSEEK, nr::FSTAT] {
        for fd in [0, 1, 2, 3, 9] {
            assert!(keeps_fast_calls(n, fd, 0, 0), "{} of fd {fd}", name(n));
        }
    }
    // An open keeps it unless its new fd is a stdio one; a failed one does.
    for n in [nr::OPEN, nr::OPENAT] {
        for (ret, keeps) in [
            (3, true),
            (40, true),
            (enoent, true),
            (0, false),
            (1, false),
            (2, false),
        ] {
            assert_eq!(keeps_fast_calls(n, 0, 0, ret), keeps, "{} = {ret}", name(n));
        }
    }
    // fcntl: a dup as an open; F_SETFL of fds 0 to 2 (O_NONBLOCK on stdin)
    // does not keep it; the other commands do.
    for cmd in [F_DUPFD, F_DUPFD_CLOEXEC] {
        assert!(keeps_fast_calls(nr::FCNTL, 1, cmd, 5));
        assert!(!keeps_fast_calls(nr::FCNTL, 5, cmd, 2));
    }
    assert!(!keeps_fast_calls(nr::FCNTL, 0, F_SETFL, 0));
    assert!(keeps_fast_calls(nr::FCNTL, 3, F_SETFL, 0));
    for cmd in [F_GETFD, F_SETFD, F_GETFL] {
        assert!(keeps_fast_calls(nr::FCNTL, 0, cmd, 0));
    }
    // Anything else closes it: dup2 onto a stdio fd, chdir, close, exec.
    for n in [
        nr::DUP2,
        nr::DUP3,
        nr::DUP,
        nr::CHDIR,
        nr::FCHDIR,
        nr::CLOSE,
        nr::EXECVE,
        nr::IOCTL,
    ] {
        assert!(!keeps_fast_calls(n, 3, 0, 0), "{}", name(n));
    }
    // The calls that may make a directory's fd, which its publication
    // follows: opens with O_DIRECTORY (openat's flags are its third
    // argument, open's its second) and dups, that succeeded.
    let dir = u64::from(crate::fs::file::o::DIRECTORY);
    assert!(may_make_dir_fd(nr::OPENAT, 0, dir, 3) && may_make_dir_fd(nr::OPEN, dir, 0, 0));
    assert!(!may_make_dir_fd(nr::OPENAT, dir, 0, 3) && !may_make_dir_fd(nr::OPEN, 0, dir, 3));
    assert!(may_make_dir_fd(nr::FCNTL, F_DUPFD_CLOEXEC, 0, 5));
    assert!(may_make_dir_fd(nr::FCNTL, F_DUPFD, 0, 4));
    assert!(!may_make_dir_fd(nr::OPENAT, 0, dir, enoent));
    assert!(!may_make_dir_fd(nr::FCNTL, F_GETFD, 0, 1));
    assert!(!may_make_dir_fd(nr::GETDENTS64, 0, dir, 3));
}

#[test]
fn proc_maps_too_large_for_the_kernel_heap_is_enomem_at_open() {
    let mut w = World::new();
    w.poke(w.buf, b"/proc/self/maps\0");
    let at_fdcwd = (-100i64) as u64;
    let fd = w
        .call(nr::OPENAT, [at_fdcwd, w.buf, 0, 0, 0, 0])
        .unwrap_ret();
    assert!(fd >= 0, "opens with room: {fd}");
    fn tiny() -> usize {
        100
    }
    w.tasks.heap_free = tiny;
    assert_eq!(
        w.call(nr::OPENAT, [at_fdcwd, w.buf, 0, 0, 0, 0])
            .unwrap_ret(),
        Errno::ENOMEM.to_ret()
    );
}

impl World {
    /// `user_string_array` of the pointer array at `va` (strings of at
    /// most `max` bytes with the NUL): the block and the lengths, or the
    /// error.
    fn strings(&mut self, va: u64, max: usize) -> KResult<(Vec<u8>, Vec<u32>)> {
        let (p, mut env) = self.parts();
        let (mut block, mut lens) = (b"head\0".to_vec(), Vec::new());
        let limits = (max, 1000);
        let n = crate::uaccess::user_string_array(
            &mut p.mm,
            &mut env,
            va,
            limits,
            &mut block,
            &mut lens,
            |_| Ok(()),
        )?;
        let lens: Vec<u32> = lens
            .chunks_exact(4)
            .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]))
            .collect();
        assert_eq!(n as usize, lens.len());
        Ok((block, lens))
    }
}

#[test]
fn string_arrays_are_read_as_exec_copies_them() {
    let mut w = World::new();
    let (buf, ptrs) = (w.buf, w.buf + 0x3e00);
    // End to end (read ahead and taken where they lie), one far apart,
    // an empty one, one across a page end, and one ending on the last
    // byte of the mapping (nothing past it may be read).
    let long: Vec<u8> = (0..300).map(|i| b'a' + (i % 26) as u8).collect();
    let mut at = Vec::new();
    let mut put = |w: &mut World, va: u64, s: &[u8]| {
        let mut b = s.to_vec();
        b.push(0);
        w.poke(va, &b);
        at.push(va);
    };
    put(&mut w, buf + 0x10, b"PATH=/usr/bin:/bin");
    put(&mut w, buf + 0x10 + 19, b"HOME=/root");
    put(&mut w, buf + 0x10 + 30, b"");
    put(&mut w, buf + 0x800, b"TERM=dumb");
    put(&mut w, buf + 0x1000 - 100, &long);
    put(&mut w, buf + 0x4000 - 6, b"LAST=");
    let mut table: Vec<u8> = at.iter().flat_map(|p| p.to_le_bytes()).collect();
    table.extend_from_slice(&0u64.to_le_bytes());
    w.poke(ptrs, &table);
    let (block, lens) = w.strings(ptrs, 1000).unwrap();
    let mut want = b"head\0PATH=/usr/bin:/bin\0HOME=/root\0\0TERM=dumb\0".to_vec();
    want.extend_from_slice(&long);
    want.extend_from_slice(b"\0LAST=\0");
    assert_eq!(block, want);
    assert_eq!(lens, [19, 11, 1, 10, 301, 6]);
    // A string longer than the limit, with its NUL, is E2BIG; one as long
    // is taken.
    assert_eq!(w.strings(ptrs, 300).map(|_| ()), Err(Errno::E2BIG));
    assert!(w.strings(ptrs, 301).is_ok());
    // A pointer or an array outside the mappings is EFAULT.
    w.poke(ptrs + 8, &0x10u64.to_le_bytes());
    assert_eq!(w.strings(ptrs, 1000).map(|_| ()), Err(Errno::EFAULT));
    assert_eq!(
        w.strings(buf + 0x4000 - 8, 1000).map(|_| ()),
        Err(Errno::EFAULT)
    );
    // An array not 8-aligned is read as well.
    let odd = buf + 0x2001;
    let mut table: Vec<u8> = at[..2].iter().flat_map(|p| p.to_le_bytes()).collect();
    table.extend_from_slice(&0u64.to_le_bytes());
    w.poke(odd, &table);
    let (block, lens) = w.strings(odd, 1000).unwrap();
    assert_eq!(block, b"head\0PATH=/usr/bin:/bin\0HOME=/root\0".to_vec());
    assert_eq!(lens, [19, 11]);
}

/// `pieces` with physically adjacent ones joined (the full path joins
/// them, the short one gives a page's each).
fn joined(pieces: &[IoVec]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for v in pieces {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == v.phys => last.1 += v.len,
            _ => out.push((v.phys, v.len)),
        }
    }
    out
}

#[test]
fn read_short_reads_stdio_as_dispatch_does_and_leaves_the_rest_untouched() {
    let mut w = World::new();
    w.frames.fault_size = vmrun_contract::FaultSize::Page4K;
    let b = w.buf;
    // Map the first three pages (written once each); the fourth is left
    // unmapped.
    for page in 0..3 {
        w.poke(b + page * 0x1000, b"x");
    }
    let untouched = b + 0x3000;
    let calls: [([u64; 3], bool); 9] = [
        ([0, b, 4096], true),
        ([0, b + 0x80, 4096], true),
        ([0, b + 0x10, 100], true),
        ([0, b, 0], false),
        ([0, b + 0x800, 8192], false),
        ([0, b + 0x2800, 4096], false),
        ([5, b, 16], false),
        ([1, b, 16], false),
        ([0, 0, 16], false),
    ];
    for (a, served) in calls {
        w.host.reads.clear();
        let (p, mem, host) = (&w.p, &w.mem, &mut w.host);
        let got = read_short(p, mem, host, a);
        assert_eq!(got.is_some(), served, "read {a:x?}");
        let short_reads = core::mem::take(&mut w.host.reads);
        assert!(w.p.mm.mapped_user_page(&w.mem, untouched, false).is_none());
        let Some(got) = got else {
            assert!(short_reads.is_empty(), "read {a:x?}: nothing read");
            continue;
        };
        let full = w.call(nr::READ, [a[0], a[1], a[2], 0, 0, 0]).unwrap_ret();
        assert_eq!(got, Ok(full), "read {a:x?}");
        let pieces = |r: &[(u64, Vec<IoVec>)]| -> Vec<(u64, Vec<(u64, u64)>)> {
            r.iter().map(|(fd, v)| (*fd, joined(v))).collect()
        };
        assert_eq!(pieces(&w.host.reads), pieces(&short_reads), "read {a:x?}");
    }
}

#[test]
fn rt_sigaction_short_sets_and_reads_actions_as_dispatch_does() {
    let mut w = World::new();
    w.frames.fault_size = vmrun_contract::FaultSize::Page4K;
    let b = w.buf;
    let (act, oact) = (b + 0x100, b + 0x200);
    let mut raw = Vec::new();
    for v in [0x40_1000u64, 0x0400_0000, 0x40_2000, 1 << 8 | 1 << 18] {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    w.poke(act, &raw);
    w.poke(oact, &[0xa5; 32]);
    let untouched = b + 0x3000;
    let calls: [([u64; 4], bool); 9] = [
        ([10, act, oact, 8], true),
        ([10, 0, oact, 8], true),
        ([12, act, 0, 8], true),
        ([10, act, oact, 4], false),
        ([0, act, oact, 8], false),
        ([65, act, oact, 8], false),
        ([9, act, 0, 8], false),
        ([9, 0, oact, 8], true),
        ([10, act, untouched, 8], false),
    ];
    for (a, served) in calls {
        // Served short, then in full from the same start: the same
        // answer, actions and old action written back.
        let before = w.p.sigactions;
        let (p, mem) = (&mut w.p, &mut w.mem);
        let got = signal::rt_sigaction_short(p, mem, a);
        assert_eq!(got.is_some(), served, "rt_sigaction {a:x?}");
        assert!(w.p.mm.mapped_user_page(&w.mem, untouched, false).is_none());
        let Some(got) = got else {
            assert_eq!(
                w.p.sigactions, before,
                "rt_sigaction {a:x?}: nothing changed"
            );
            continue;
        };
        let (after, out) = (w.p.sigactions, w.peek(oact, 32));
        // The full path from the same start.
        w.p.sigactions = before;
        w.poke(oact, &[0xa5; 32]);
        let full = w
            .call(nr::RT_SIGACTION, [a[0], a[1], a[2], a[3], 0, 0])
            .unwrap_ret();
        assert_eq!(got, full, "rt_sigaction {a:x?}");
        assert_eq!(w.p.sigactions, after, "rt_sigaction {a:x?}");
        assert_eq!(w.peek(oact, 32), out, "rt_sigaction {a:x?}");
        w.poke(oact, &[0xa5; 32]);
    }
}

/// A file of two and a half pages, `/data`, cached whole (the boot
/// image's kind of inode: its pages lie in RAM): its inode.
fn cache_data_file(w: &mut World) -> u16 {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let phys = 0x10000;
    w.mem.write_bytes(phys, &data);
    w.cache
        .add_image(
            data.len() as u64,
            b"/data",
            (phys, crate::fs::cache::InodeKey::UNKNOWN, (0, 0)),
        )
        .unwrap()
}

/// A read-only fd of the host file in inode `id` ([`cache_data_file`]).
fn open_cached(w: &mut World, id: u16) -> u64 {
    use crate::fs::file::{o, Node, OpenFile};
    use crate::fs::stat::S_IFREG;
    let node = Node::Host {
        handle: 7,
        inode: Some(id),
        cache_owns_handle: false,
        mode: S_IFREG | 0o644,
        path: b"/data".to_vec(),
    };
    w.p.fds
        .alloc(OpenFile::new(node, o::RDONLY), false)
        .unwrap()
}

#[test]
fn a_short_read_of_a_cached_file_is_the_full_paths_read() {
    let mut w = World::new();
    let id = cache_data_file(&mut w);
    let (short_fd, full_fd) = (open_cached(&mut w, id), open_cached(&mut w, id));
    // Both buffers mapped writable (a short read maps nothing).
    w.poke(w.buf, &[0; 0x4000]);
    let (short_buf, full_buf) = (w.buf + 0x123, w.buf + 0x2123);
    let mut served = 0;
    for count in [100, 4096, 1000, 3000, 2000, 4096, 4096, 10] {
        let short =
            files::read_cached_short(&w.p, &w.cache, &mut w.mem, short_fd, short_buf, count);
        let full = w
            .call(nr::READ, [full_fd, full_buf, count, 0, 0, 0])
            .unwrap_ret();
        let n = short.expect("a cached read of at most a page is short") as usize;
        served += 1;
        assert_eq!(n as i64, full, "count {count}");
        assert_eq!(w.peek(short_buf, n), w.peek(full_buf, n), "count {count}");
    }
    assert_eq!(served, 8);
    let pos = |w: &World, fd| w.p.fds.get(fd).unwrap().file.borrow().pos;
    assert_eq!(pos(&w, short_fd), 10_000, "at the end, as the full path's");
    assert_eq!(pos(&w, short_fd), pos(&w, full_fd));
    // Left to the full path, with nothing done: a read of more than a
    // page, a buffer outside the user half or not mapped, stdin, a bad fd.
    let at = |w: &mut World, fd, buf, count| {
        files::read_cached_short(&w.p, &w.cache, &mut w.mem, fd, buf, count)
    };
    w.p.fds.get(short_fd).unwrap().file.borrow_mut().pos = 0;
    assert_eq!(at(&mut w, short_fd, short_buf, 4097), None);
    assert_eq!(at(&mut w, short_fd, 0xffff_8000_0000_0000, 16), None);
    assert_eq!(at(&mut w, short_fd, 0x1000, 16), None);
    assert_eq!(at(&mut w, 0, short_buf, 16), None);
    assert_eq!(at(&mut w, 99, short_buf, 16), None);
    assert_eq!(pos(&w, short_fd), 0, "nothing moved");
    // At the end of the file: 0, as the full path says.
    w.p.fds.get(short_fd).unwrap().file.borrow_mut().pos = 20_000;
    assert_eq!(at(&mut w, short_fd, short_buf, 16), Some(0));
}

#[test]
fn a_short_pread_of_a_cached_file_is_the_full_paths_pread() {
    let mut w = World::new();
    let id = cache_data_file(&mut w);
    let fd = open_cached(&mut w, id);
    w.poke(w.buf, &[0; 0x4000]);
    let (short_buf, full_buf) = (w.buf + 0x123, w.buf + 0x2123);
    let at = |w: &mut World, buf, count, off| {
        files::pread64_cached_short(&w.p, &w.cache, &mut w.mem, [fd, buf, count, off])
    };
    for (count, off) in [(784, 64), (832, 0), (4096, 4000), (100, 9950), (16, 20_000)] {
        let short = at(&mut w, short_buf, count, off).expect("short") as usize;
        let full = w
            .call(nr::PREAD64, [fd, full_buf, count, off, 0, 0])
            .unwrap_ret();
        assert_eq!(short as i64, full, "count {count} at {off}");
        assert_eq!(w.peek(short_buf, short), w.peek(full_buf, short));
    }
    let pos = w.p.fds.get(fd).unwrap().file.borrow().pos;
    assert_eq!(pos, 0, "pread moves no position");
    // Left to the full path: a negative offset (EINVAL there), more than
    // a page, a buffer not mapped.
    assert_eq!(at(&mut w, short_buf, 16, u64::MAX - 7), None);
    assert_eq!(at(&mut w, short_buf, 4097, 0), None);
    assert_eq!(at(&mut w, 0x1000, 16, 0), None);
}

#[test]
fn access_short_asks_the_host_for_an_absolute_path_read_in_place_and_leaves_the_rest() {
    use vmrun_contract::fs::op;
    let mut w = World::new();
    let long = [b'a'; 300];
    let cases: [(&[u8], u64, bool); 8] = [
        (b"/etc/ld.so.preload", 0x200, true),
        (b"/usr/bin/../lib/x", 0x200, true),
        (b"etc/passwd", 0x200, false),
        (b"", 0x200, false),
        (b"/proc/self/status", 0x200, false),
        (b"/dev/null", 0x200, false),
        // Across a page's end: the full path copies it.
        (b"/etc/passwd", 0x1000 - 6, false),
        (&long, 0x200, false),
    ];
    for (path, off, short) in cases {
        let at = w.buf + off;
        let mut s = path.to_vec();
        s.push(0);
        w.poke(at, &s);
        let full = w.call(nr::ACCESS, [at, 4, 0, 0, 0, 0]).unwrap_ret();
        let r = super::access_short(&w.p, &w.mem, &mut w.fs, at, 4);
        assert_eq!(r.is_some(), short, "{}", String::from_utf8_lossy(path));
        if let Some(v) = r {
            assert_eq!(v, full, "the full path's answer (NoHost: ENOENT)");
            let req = crate::fs::host::FsHost::req(&mut w.fs);
            assert_eq!(req.op, op::ACCESS);
            assert_eq!(req.mode, 4);
            assert_eq!(&req.path[..req.path_len as usize], path);
        }
    }
    w.poke(w.buf, b"/etc/passwd\0");
    assert!(super::access_short(&w.p, &w.mem, &mut w.fs, w.buf, 8).is_none());
    assert!(super::access_short(&w.p, &w.mem, &mut w.fs, 0x1000, 0).is_none());
}

#[test]
fn a_short_close_of_a_host_file_is_the_full_paths_close() {
    use crate::fs::file::{o, Node, OpenFile};
    use crate::fs::stat::S_IFREG;
    let mut w = World::new();
    let phys = 0x10000;
    let id = w
        .cache
        .add_image(
            4096,
            b"/data",
            (phys, crate::fs::cache::InodeKey::UNKNOWN, (0, 0)),
        )
        .unwrap();
    let users = |w: &World| w.cache.get(id).unwrap().users;
    let open = |w: &mut World| {
        w.cache.get_ref(id);
        let node = Node::Host {
            handle: 7,
            inode: Some(id),
            cache_owns_handle: true,
            mode: S_IFREG | 0o644,
            path: b"/data".to_vec(),
        };
        w.p.fds
            .alloc(OpenFile::new(node, o::RDONLY), false)
            .unwrap()
    };
    let before = users(&w);
    // One description in two fds (dup), each way: only the last close
    // releases the inode.
    for short in [true, false] {
        let fd = open(&mut w);
        let dup = w.call(nr::DUP, [fd, 0, 0, 0, 0, 0]).unwrap_ret() as u64;
        for (fd, left) in [(fd, before + 1), (dup, before)] {
            if short {
                let r = files::close_short(&mut w.p, &mut w.cache, &mut w.fs, fd);
                assert_eq!(r, Some(0));
            } else {
                assert_eq!(w.call(nr::CLOSE, [fd, 0, 0, 0, 0, 0]).unwrap_ret(), 0);
            }
            assert!(w.p.fds.get(fd).is_err(), "fd {fd} closed");
            assert_eq!(users(&w), left, "short {short}");
        }
        // Closed already: the full path says EBADF.
        assert_eq!(
            files::close_short(&mut w.p, &mut w.cache, &mut w.fs, fd),
            None
        );
    }
    // A pipe's end (its close wakes the other end) is left to the full
    // path, untouched.
    let fds = w.buf;
    assert_eq!(w.call(nr::PIPE2, [fds, 0, 0, 0, 0, 0]).unwrap_ret(), 0);
    let r = u32::from_le_bytes(w.peek(fds, 4).try_into().unwrap()) as u64;
    assert_eq!(
        files::close_short(&mut w.p, &mut w.cache, &mut w.fs, r),
        None
    );
    assert!(w.p.fds.get(r).is_ok());
}
