//! Serving the guest kernel's hypercalls.
//!
//! [`handle`] is a function of guest memory, the request block the guest
//! pointed at, the host's stdio (behind [`HostIo`]) and the host's files
//! (behind [`HostFs`], confined to the guest's view), so it is unit tested
//! with synthetic requests. Every address and length the guest
//! passes is checked against guest RAM; a bad one is answered with -EFAULT
//! (or ends the run for requests that cannot fail gracefully).

use crate::error::Result;
use crate::fs::HostFs;
use crate::memory::GuestRam;
use std::io;
use vmrun_contract::{exit_kind, hc, kill_cause, CopyItem, Hypercall, IoVec, UserStrings};

/// Largest iovec array a WRITE or READ may pass.
pub const MAX_IOVECS: u64 = 1024;
/// Largest message a PANIC, LOG or EXEC_FAILED may pass.
pub const MAX_MESSAGE: u64 = 4096;

const EFAULT: i64 = 14;
const EBADF: i64 = 9;
const EINVAL: i64 = 22;

/// The host side of the guest's stdio.
pub trait HostIo {
    /// Write all of `data` to host fd `fd` (1 or 2).
    fn write(&mut self, fd: u64, data: &[u8]) -> io::Result<()>;
    /// Read up to `buf.len()` bytes from host fd `fd` (0).
    fn read(&mut self, fd: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Fill `buf` with random bytes.
    fn random(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Whether a read of host fd `fd` would return at once (a read of
    /// several pieces goes on to the next only then, so that it returns
    /// what a pipe holds instead of waiting for more, as read(2) does).
    fn ready(&mut self, _fd: u64) -> bool {
        true
    }
    /// Move the offset of host fd `fd` (0, 1 or 2) as lseek(2) does; the
    /// new offset. Stdio that is no file cannot seek (ESPIPE).
    fn seek(&mut self, _fd: u64, _offset: i64, _whence: u32) -> io::Result<u64> {
        Err(io::Error::from_raw_os_error(libc::ESPIPE))
    }
    /// Block for `ns` nanoseconds (the program's nanosleep).
    fn sleep(&mut self, ns: u64) {
        std::thread::sleep(std::time::Duration::from_nanos(ns));
    }
    /// Show a guest kernel log line.
    fn log(&mut self, line: &[u8]);
}

/// How the program's run ended, as the guest reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// exit/exit_group with this status (0-255).
    Exited(i32),
    /// Killed by a signal.
    Signaled {
        /// Signal number (11 for SIGSEGV).
        signal: u32,
        /// Faulting address.
        fault_addr: u64,
        /// Instruction pointer at the fault.
        ip: u64,
        /// Page-fault error code or CPU error code.
        error_code: u64,
        /// Why: a fault, a signal sent, out of memory, a deadlock.
        cause: KillCause,
    },
    /// The initial exec failed (bad ELF, unsupported program, E2BIG...).
    ExecFailed {
        /// Linux errno.
        errno: i64,
        /// The guest's one-line explanation.
        message: String,
    },
    /// The guest kernel panicked.
    GuestPanic(String),
}

/// What the vCPU loop does after a hypercall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Continue,
    /// The trace ring is full: drain it, then resume the guest.
    TraceDrain,
    /// An inspection point: [`vmrun_contract::event`] kind, its two
    /// arguments, user frames held, user table pages held; resume the guest
    /// after inspecting.
    Event(u64, [u64; 4]),
    /// The program stopped for the debugger: the
    /// [`vmrun_contract::hc::DEBUG_STOP`] arguments. The guest waits for
    /// the answer in the block's `ret`.
    Debug([u64; 6]),
    /// Stop: the run is over.
    Stop(Outcome),
}

/// Serve the hypercall whose block is at guest-physical `block`.
pub fn handle(ram: &GuestRam, block: u64, io: &mut impl HostIo, fs: &mut HostFs) -> Result<Action> {
    let mut req: Hypercall = ram.read_pod(block)?;
    let a = req.args;
    let action = match req.nr {
        hc::EXIT => Action::Stop(exit_outcome(a)),
        hc::WRITE => ret(&mut req, do_write(ram, io, a[0], a[1], a[2])),
        hc::READ => ret(&mut req, do_read(ram, io, a[0], a[1], a[2])),
        hc::RANDOM => ret(&mut req, do_random(ram, io, a[0], a[1])),
        hc::SEEK => ret(&mut req, do_seek(io, a[0], a[1], a[2])),
        hc::SLEEP => {
            io.sleep(a[0]);
            ret(&mut req, 0)
        }
        hc::COPY => ret(&mut req, status(ram.copy_within(a[0], a[1], a[2]))),
        hc::COPY_LIST => ret(&mut req, copy_list(ram, a[0], a[1])),
        hc::USER_STRINGS => ret(&mut req, serve_user_strings(ram, a[0])),
        hc::ZERO => ret(&mut req, status(ram.zero(a[0], a[1]))),
        hc::PANIC => Action::Stop(Outcome::GuestPanic(message(ram, a[0], a[1]))),
        hc::EXEC_FAILED => Action::Stop(Outcome::ExecFailed {
            errno: a[0] as i64,
            message: message(ram, a[1], a[2]),
        }),
        hc::LOG => {
            io.log(message(ram, a[0], a[1]).as_bytes());
            Action::Continue
        }
        hc::TRACE_DRAIN => Action::TraceDrain,
        hc::EVENT => Action::Event(a[0], [a[1], a[2], a[3], a[4]]),
        hc::FS => ret(&mut req, fs.serve(ram, a[0])),
        hc::DEBUG_STOP => Action::Debug(a),
        other => Action::Stop(Outcome::GuestPanic(format!("unknown hypercall {other}"))),
    };
    if !matches!(action, Action::Stop(_)) {
        ram.write_pod(block, &req)?;
    }
    Ok(action)
}

fn ret(req: &mut Hypercall, value: i64) -> Action {
    req.ret = value;
    Action::Continue
}

fn status(r: Result<()>) -> i64 {
    if r.is_ok() {
        0
    } else {
        -EFAULT
    }
}

/// Why the guest kernel killed the program ([`kill_cause`] in words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// The signal was sent (kill, raise, abort): no faulting address.
    Sent,
    /// A fault or CPU exception: the address, ip and error code are its.
    Fault,
    /// SIGKILL: the guest kernel ran out of memory for a page fault.
    OutOfMemory,
    /// SIGKILL: every process was blocked forever.
    Deadlock,
    /// SIGSEGV: an exec failed past its point of no return (the fault
    /// address holds the errno).
    ExecFailed,
}

impl KillCause {
    fn of(word: u64) -> KillCause {
        match word {
            kill_cause::FAULT => KillCause::Fault,
            kill_cause::OUT_OF_MEMORY => KillCause::OutOfMemory,
            kill_cause::DEADLOCK => KillCause::Deadlock,
            kill_cause::EXEC_FAILED => KillCause::ExecFailed,
            _ => KillCause::Sent,
        }
    }
}

fn exit_outcome(a: [u64; 6]) -> Outcome {
    if a[0] == exit_kind::SIGNALED {
        Outcome::Signaled {
            signal: a[1] as u32,
            fault_addr: a[2],
            ip: a[3],
            error_code: a[4],
            cause: KillCause::of(a[5]),
        }
    } else {
        Outcome::Exited((a[1] & 0xff) as i32)
    }
}

fn message(ram: &GuestRam, addr: u64, len: u64) -> String {
    let len = len.min(MAX_MESSAGE);
    match ram.slice(addr, len) {
        Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Err(_) => format!("(message at {addr:#x}+{len:#x} lies outside guest RAM)"),
    }
}

fn iovecs(ram: &GuestRam, addr: u64, count: u64) -> std::result::Result<Vec<IoVec>, i64> {
    if count > MAX_IOVECS {
        return Err(-EINVAL);
    }
    (0..count)
        .map(|i| ram.read_pod::<IoVec>(addr + i * 16).map_err(|_| -EFAULT))
        .collect()
}

/// Run `op` over the guest-memory pieces of the iovec array at `iov`, in
/// order, until one transfers less than its length: the bytes transferred,
/// or -errno if the first piece failed (an error after some bytes ends the
/// transfer short, as a partial read or write does).
pub(crate) fn transfer(
    ram: &GuestRam,
    iov: u64,
    count: u64,
    op: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> i64 {
    match iovecs(ram, iov, count) {
        Ok(iov) => transfer_pieces(ram, &iov, op),
        Err(e) => e,
    }
}

/// [`transfer`] over pieces already read from the guest.
fn transfer_pieces(
    ram: &GuestRam,
    iov: &[IoVec],
    mut op: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> i64 {
    let mut total = 0i64;
    for piece in iov {
        let Ok(buf) = ram.slice_mut(piece.phys, piece.len) else {
            return if total > 0 { total } else { -EFAULT };
        };
        match op(buf) {
            Ok(n) => {
                total += n as i64;
                if (n as u64) < piece.len {
                    break;
                }
            }
            Err(e) if total == 0 => return -i64::from(e.raw_os_error().unwrap_or(5)),
            Err(_) => break,
        }
    }
    total
}

fn do_write(ram: &GuestRam, io: &mut impl HostIo, fd: u64, iov: u64, count: u64) -> i64 {
    match iovecs(ram, iov, count) {
        Ok(iov) => write_pieces(ram, io, fd, &iov),
        Err(e) => e,
    }
}

/// A write of the guest-memory pieces `iov` to host fd `fd` (1 or 2): the
/// bytes written, or -errno. The WRITE hypercall and the fast call's write.
pub(crate) fn write_pieces(ram: &GuestRam, io: &mut impl HostIo, fd: u64, iov: &[IoVec]) -> i64 {
    if fd != 1 && fd != 2 {
        return -EBADF;
    }
    transfer_pieces(ram, iov, |buf| io.write(fd, buf).map(|_| buf.len()))
}

/// A read of host fd 0 into the pieces: each read(2) after the first
/// only if it would not block, so that a pipe's reader gets what the pipe
/// holds, not a wait for a later write to fill its buffer.
fn do_read(ram: &GuestRam, io: &mut impl HostIo, fd: u64, iov: u64, count: u64) -> i64 {
    match iovecs(ram, iov, count) {
        Ok(iov) => read_pieces(ram, io, fd, &iov),
        Err(e) => e,
    }
}

/// A read of host fd `fd` (0) into the guest-memory pieces `iov`, as
/// [`do_read`] describes: the bytes read, or -errno. The READ hypercall
/// and the fast call's read.
pub(crate) fn read_pieces(ram: &GuestRam, io: &mut impl HostIo, fd: u64, iov: &[IoVec]) -> i64 {
    if fd != 0 {
        return -EBADF;
    }
    let mut first = true;
    transfer_pieces(ram, iov, |buf| {
        if !std::mem::take(&mut first) && !io.ready(fd) {
            return Ok(0);
        }
        io.read(fd, buf)
    })
}

fn do_seek(io: &mut impl HostIo, fd: u64, offset: u64, whence: u64) -> i64 {
    if fd > 2 {
        return -EBADF;
    }
    let Ok(whence) = u32::try_from(whence) else {
        return -i64::from(libc::EINVAL);
    };
    match io.seek(fd, offset as i64, whence) {
        Ok(at) => at as i64,
        Err(e) => -i64::from(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// [`hc::COPY_LIST`]: every range is checked before anything is copied.
fn copy_list(ram: &GuestRam, list: u64, count: u64) -> i64 {
    if count > vmrun_contract::COPY_LIST_MAX {
        return -EINVAL;
    }
    let size = std::mem::size_of::<CopyItem>() as u64;
    let items: Option<Vec<CopyItem>> = (0..count)
        .map(|i| ram.read_pod::<CopyItem>(list + i * size).ok())
        .collect();
    let Some(items) = items else {
        return -EFAULT;
    };
    let inside = |pa: u64, len: u64| pa.checked_add(len).is_some_and(|end| end <= ram.size());
    if !items
        .iter()
        .all(|c| inside(c.dst, c.len) && inside(c.src, c.len))
    {
        return -EFAULT;
    }
    for c in &items {
        if ram.copy_within(c.dst, c.src, c.len).is_err() {
            return -EFAULT;
        }
    }
    0
}

/// The most string bytes (with 8 for each pointer) one
/// [`hc::USER_STRINGS`] gathers.
pub const BUDGET_MAX: u64 = 64 << 20;

/// How [`user_strings`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gathered {
    /// The strings of each array were written, this many bytes.
    Done {
        /// Strings of each array.
        counts: [u64; 2],
        /// Their bytes, NUL included.
        bytes: u64,
    },
    /// Nothing was written: the strings need this much room.
    Room {
        /// Strings of each array.
        counts: [u64; 2],
        /// Their bytes, NUL included.
        bytes: u64,
    },
    /// The kernel reads them itself: a pointer or string not mapped for
    /// user access, a string longer than the limit, or the budget passed
    /// (its own path faults pages in, or fails with Linux's errno).
    OwnPath,
}

/// [`hc::USER_STRINGS`]: the request at `at`, answered in place.
fn serve_user_strings(ram: &GuestRam, at: u64) -> i64 {
    use vmrun_contract::user_strings::{OWN_PATH, ROOM};
    let Ok(mut req) = ram.read_pod::<UserStrings>(at) else {
        return -EFAULT;
    };
    let r = match user_strings(ram, &req) {
        Gathered::Done { counts, bytes } => {
            (req.counts, req.bytes) = (counts, bytes);
            0
        }
        Gathered::Room { counts, bytes } => {
            (req.counts, req.bytes) = (counts, bytes);
            ROOM
        }
        Gathered::OwnPath => return OWN_PATH,
    };
    match ram.write_pod(at, &req) {
        Ok(()) => r,
        Err(_) => -EFAULT,
    }
}

/// execve's string gathering ([`hc::USER_STRINGS`]): the strings the
/// NULL-ended pointer arrays at `req.arrays` point at, read through the
/// page tables at `req.root` with the user's rights, as the kernel's own
/// loop reads them. Pure over guest memory, so that a hostile array
/// (unmapped, kernel-only, endless) only sends the kernel down its own
/// path, and nothing is written unless all of it fits.
pub fn user_strings(ram: &GuestRam, req: &UserStrings) -> Gathered {
    let inside = |pa: u64, len: Option<u64>| {
        len.and_then(|len| pa.checked_add(len))
            .is_some_and(|end| end <= ram.size())
    };
    if !inside(req.block, Some(req.block_room)) || !inside(req.lens, req.lens_room.checked_mul(4)) {
        return Gathered::OwnPath;
    }
    let mut got = Strings {
        bytes: Vec::new(),
        lens: Vec::new(),
        // Linux's limit is a quarter of the stack limit; past this, the
        // host would only be copying a kernel bug's worth of memory.
        budget: req.budget.min(BUDGET_MAX),
    };
    let mut counts = [0; 2];
    for (count, &array) in counts.iter_mut().zip(&req.arrays) {
        match got.gather(ram, req.root, array) {
            Some(n) => *count = n,
            None => return Gathered::OwnPath,
        }
    }
    let bytes = got.bytes.len() as u64;
    if bytes > req.block_room || counts[0] + counts[1] > req.lens_room {
        return Gathered::Room { counts, bytes };
    }
    let written = ram.write_bytes(req.block, &got.bytes).is_ok()
        && ram.write_bytes(req.lens, &got.lens).is_ok();
    match written {
        true => Gathered::Done { counts, bytes },
        false => Gathered::OwnPath,
    }
}

/// [`crate::inspect::pagetable::read_user`] within the program's half of
/// the address space, as the kernel's own reads check it: the pages the
/// kernel maps for the user above it (the syscall trampoline, the stdin
/// ring) are no program memory a pointer may name.
fn read_user(ram: &GuestRam, root: u64, va: u64, buf: &mut [u8]) -> usize {
    let room = vmrun_contract::layout::TASK_SIZE.saturating_sub(va);
    let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    crate::inspect::pagetable::read_user(ram, root, va, &mut buf[..n])
}

/// Strings gathered so far, and the budget left.
struct Strings {
    bytes: Vec<u8>,
    lens: Vec<u8>,
    budget: u64,
}

impl Strings {
    /// Append the strings of the array at user address `array` (none if
    /// 0); how many, or None for the kernel's own path.
    fn gather(&mut self, ram: &GuestRam, root: u64, array: u64) -> Option<u64> {
        use vmrun_contract::{layout::PAGE_SIZE, user_strings::MAX_LEN};
        if array == 0 {
            return Some(0);
        }
        let mut piece = [0u8; 512];
        for count in 0u64.. {
            let mut word = [0u8; 8];
            let at = array.checked_add(count.checked_mul(8)?)?;
            if read_user(ram, root, at, &mut word) < 8 {
                return None;
            }
            let p = u64::from_le_bytes(word);
            if p == 0 {
                return Some(count);
            }
            // Up to its NUL, a page's rest at most a read.
            let mut len = 0u64;
            loop {
                let at = p.checked_add(len)?;
                let room = (PAGE_SIZE - at % PAGE_SIZE).min(piece.len() as u64) as usize;
                let got = read_user(ram, root, at, &mut piece[..room]);
                if got == 0 {
                    return None;
                }
                let nul = piece[..got].iter().position(|&b| b == 0);
                let take = nul.map_or(got, |z| z + 1);
                self.bytes.extend_from_slice(&piece[..take]);
                len += take as u64;
                if len > MAX_LEN {
                    return None;
                }
                if nul.is_some() {
                    break;
                }
            }
            self.budget = self.budget.checked_sub(len + 8)?;
            self.lens.extend_from_slice(&(len as u32).to_le_bytes());
        }
        None
    }
}

fn do_random(ram: &GuestRam, io: &mut impl HostIo, iov: u64, count: u64) -> i64 {
    transfer(ram, iov, count, |buf| io.random(buf).map(|_| buf.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::pagetable::{bits, PageSize};
    use crate::inspect::testspace::{Space, USER_RW, USER_RX};

    #[derive(Default)]
    struct FakeIo {
        out: Vec<(u64, Vec<u8>)>,
        input: Vec<u8>,
        logs: Vec<String>,
        slept: Vec<u64>,
        /// Seeks asked (fd, offset, whence); answered when set.
        seeks: Vec<(u64, i64, u32)>,
        seekable: bool,
        /// Whether a read would block (a pipe whose writer has not
        /// written more yet), and how often that was asked.
        would_block: bool,
        asked_ready: usize,
    }

    impl HostIo for FakeIo {
        fn write(&mut self, fd: u64, data: &[u8]) -> io::Result<()> {
            self.out.push((fd, data.to_vec()));
            Ok(())
        }
        fn read(&mut self, _fd: u64, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
        fn random(&mut self, buf: &mut [u8]) -> io::Result<()> {
            buf.fill(0xa5);
            Ok(())
        }
        fn log(&mut self, line: &[u8]) {
            self.logs.push(String::from_utf8_lossy(line).into());
        }
        fn sleep(&mut self, ns: u64) {
            self.slept.push(ns);
        }
        fn ready(&mut self, _fd: u64) -> bool {
            self.asked_ready += 1;
            !self.would_block
        }
        fn seek(&mut self, fd: u64, offset: i64, whence: u32) -> io::Result<u64> {
            self.seeks.push((fd, offset, whence));
            match self.seekable {
                true => Ok(offset as u64 + 1000),
                false => Err(io::Error::from_raw_os_error(libc::ESPIPE)),
            }
        }
    }

    const BLOCK: u64 = 0x1000;

    #[test]
    fn seek_moves_a_stdio_fd_of_the_host_and_passes_its_error_on() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo {
            seekable: true,
            ..FakeIo::default()
        };
        let back = (-4091i64) as u64;
        let (action, ret) = call(&ram, &mut io, hc::SEEK, [0, back, 1, 0, 0, 0]);
        assert_eq!((action, ret), (Action::Continue, 1000 - 4091));
        assert_eq!(io.seeks, vec![(0, -4091, 1)]);
        // Only fds 0 to 2, and no whence past 32 bits, reach the host.
        assert_eq!(call(&ram, &mut io, hc::SEEK, [3, 0, 0, 0, 0, 0]).1, -EBADF);
        let bad = call(&ram, &mut io, hc::SEEK, [0, 0, 1 << 32, 0, 0, 0]).1;
        assert_eq!(bad, -i64::from(libc::EINVAL));
        assert_eq!(io.seeks.len(), 1);
        io.seekable = false;
        let pipe = call(&ram, &mut io, hc::SEEK, [1, 0, 1, 0, 0, 0]).1;
        assert_eq!(pipe, -i64::from(libc::ESPIPE));
        // Stdio that is not vmrun's own (benchmarks, tests) cannot seek.
        let mut discard = crate::stdio::Discard::default();
        assert!(discard.seek(0, 0, 1).is_err());
    }

    fn call(ram: &GuestRam, io: &mut FakeIo, nr: u64, args: [u64; 6]) -> (Action, i64) {
        ram.write_pod(BLOCK, &Hypercall { nr, args, ret: 0 })
            .unwrap();
        let mut fs = HostFs::open(&[], false).unwrap();
        let action = handle(ram, BLOCK, io, &mut fs).unwrap();
        (action, ram.read_pod::<Hypercall>(BLOCK).unwrap().ret)
    }

    #[test]
    fn write_gathers_iovecs_to_the_host_fd() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_bytes(0x3000, b"hello, ").unwrap();
        ram.write_bytes(0x5000, b"world\n").unwrap();
        ram.write_pod(
            0x2000,
            &IoVec {
                phys: 0x3000,
                len: 7,
            },
        )
        .unwrap();
        ram.write_pod(
            0x2010,
            &IoVec {
                phys: 0x5000,
                len: 6,
            },
        )
        .unwrap();
        let mut io = FakeIo::default();
        let (action, ret) = call(&ram, &mut io, hc::WRITE, [1, 0x2000, 2, 0, 0, 0]);
        assert_eq!((action, ret), (Action::Continue, 13));
        let all: Vec<u8> = io.out.iter().flat_map(|(_, d)| d.clone()).collect();
        assert_eq!(all, b"hello, world\n");
    }

    #[test]
    fn write_outside_guest_ram_returns_efault() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_pod(
            0x2000,
            &IoVec {
                phys: 0xff000,
                len: 0x2000,
            },
        )
        .unwrap();
        let mut io = FakeIo::default();
        assert_eq!(
            call(&ram, &mut io, hc::WRITE, [1, 0x2000, 1, 0, 0, 0]).1,
            -EFAULT
        );
        assert_eq!(
            call(&ram, &mut io, hc::WRITE, [1, u64::MAX - 4, 1, 0, 0, 0]).1,
            -EFAULT
        );
        assert!(io.out.is_empty());
    }

    #[test]
    fn write_to_other_fds_is_ebadf() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo::default();
        assert_eq!(
            call(&ram, &mut io, hc::WRITE, [7, 0x2000, 0, 0, 0, 0]).1,
            -EBADF
        );
    }

    #[test]
    fn read_fills_guest_memory_from_stdin() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_pod(
            0x2000,
            &IoVec {
                phys: 0x4000,
                len: 16,
            },
        )
        .unwrap();
        let mut io = FakeIo {
            input: b"abc".to_vec(),
            ..Default::default()
        };
        assert_eq!(call(&ram, &mut io, hc::READ, [0, 0x2000, 1, 0, 0, 0]).1, 3);
        let mut buf = [0u8; 3];
        ram.read_bytes(0x4000, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
    }

    #[test]
    fn a_read_goes_on_to_the_next_piece_only_if_it_would_not_block() {
        let ram = GuestRam::new(1 << 20).unwrap();
        for (k, phys) in [0x4000u64, 0x8000].into_iter().enumerate() {
            let piece = IoVec { phys, len: 4096 };
            ram.write_pod(0x2000 + 16 * k as u64, &piece).unwrap();
        }
        // The first piece is read whatever comes (it may block, as
        // read(2) does); the second only if more is there now.
        let mut io = FakeIo {
            input: vec![7; 6000],
            would_block: true,
            ..Default::default()
        };
        assert_eq!(
            call(&ram, &mut io, hc::READ, [0, 0x2000, 2, 0, 0, 0]).1,
            4096
        );
        assert_eq!((io.asked_ready, io.input.len()), (1, 6000 - 4096));
        io.would_block = false;
        io.input = vec![7; 6000];
        assert_eq!(
            call(&ram, &mut io, hc::READ, [0, 0x2000, 2, 0, 0, 0]).1,
            6000
        );
        // A short first piece ends the read without asking.
        io.input = vec![7; 100];
        io.asked_ready = 0;
        assert_eq!(
            call(&ram, &mut io, hc::READ, [0, 0x2000, 2, 0, 0, 0]).1,
            100
        );
        assert_eq!(io.asked_ready, 0);
    }

    #[test]
    fn random_fills_every_piece() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_pod(
            0x2000,
            &IoVec {
                phys: 0x4000,
                len: 8,
            },
        )
        .unwrap();
        ram.write_pod(
            0x2010,
            &IoVec {
                phys: 0x6000,
                len: 8,
            },
        )
        .unwrap();
        let mut io = FakeIo::default();
        assert_eq!(
            call(&ram, &mut io, hc::RANDOM, [0x2000, 2, 0, 0, 0, 0]).1,
            16
        );
        let mut buf = [0u8; 8];
        ram.read_bytes(0x6000, &mut buf).unwrap();
        assert_eq!(buf, [0xa5; 8]);
    }

    #[test]
    fn exit_and_signal_end_the_run() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo::default();
        let (a, _) = call(&ram, &mut io, hc::EXIT, [exit_kind::EXITED, 42, 0, 0, 0, 0]);
        assert_eq!(a, Action::Stop(Outcome::Exited(42)));
        let (a, _) = call(
            &ram,
            &mut io,
            hc::EXIT,
            [exit_kind::SIGNALED, 11, 0, 0x401000, 4, kill_cause::FAULT],
        );
        let want = Outcome::Signaled {
            signal: 11,
            fault_addr: 0,
            ip: 0x401000,
            error_code: 4,
            cause: KillCause::Fault,
        };
        assert_eq!(a, Action::Stop(want));
    }

    #[test]
    fn panic_message_is_read_from_guest_memory() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_bytes(0x3000, b"oops at x.rs:1").unwrap();
        let mut io = FakeIo::default();
        let (a, _) = call(&ram, &mut io, hc::PANIC, [0x3000, 14, 0, 0, 0, 0]);
        assert_eq!(
            a,
            Action::Stop(Outcome::GuestPanic("oops at x.rs:1".into()))
        );
    }

    #[test]
    fn event_and_trace_drain_pause_for_the_host() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo::default();
        let (a, _) = call(&ram, &mut io, hc::EVENT, [2, 7, 3, 9, 4, 0]);
        assert_eq!(a, Action::Event(2, [7, 3, 9, 4]));
        assert_eq!(
            call(&ram, &mut io, hc::TRACE_DRAIN, [0; 6]).0,
            Action::TraceDrain
        );
    }

    #[test]
    fn sleep_blocks_the_host_for_the_asked_time() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo::default();
        assert_eq!(
            call(&ram, &mut io, hc::SLEEP, [1_500, 0, 0, 0, 0, 0]).0,
            Action::Continue
        );
        assert_eq!(io.slept, [1_500]);
    }

    #[test]
    fn unknown_hypercall_stops_the_run() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut io = FakeIo::default();
        assert!(matches!(
            call(&ram, &mut io, 999, [0; 6]).0,
            Action::Stop(Outcome::GuestPanic(_))
        ));
    }

    #[test]
    fn copy_and_zero_check_their_ranges() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_bytes(0x3000, b"xyz").unwrap();
        let mut io = FakeIo::default();
        assert_eq!(
            call(&ram, &mut io, hc::COPY, [0x4000, 0x3000, 3, 0, 0, 0]).1,
            0
        );
        assert_eq!(
            call(&ram, &mut io, hc::ZERO, [0xff000, 0x2000, 0, 0, 0, 0]).1,
            -EFAULT
        );
        let mut buf = [0u8; 3];
        ram.read_bytes(0x4000, &mut buf).unwrap();
        assert_eq!(&buf, b"xyz");
    }

    fn copy_items(ram: &GuestRam, at: u64, items: &[CopyItem]) {
        for (i, c) in items.iter().enumerate() {
            ram.write_pod(at + 24 * i as u64, c).unwrap();
        }
    }

    #[test]
    fn a_copy_list_copies_every_range_or_none_if_one_lies_outside_ram() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_bytes(0x3000, b"abc").unwrap();
        ram.write_bytes(0x5000, b"def").unwrap();
        let mut io = FakeIo::default();
        let item = |dst, src, len| CopyItem { dst, src, len };
        copy_items(
            &ram,
            0x8000,
            &[item(0x4000, 0x3000, 3), item(0x6000, 0x5000, 3)],
        );
        let list = [0x8000, 2, 0, 0, 0, 0];
        assert_eq!(call(&ram, &mut io, hc::COPY_LIST, list).1, 0);
        let mut buf = [0u8; 3];
        ram.read_bytes(0x4000, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        ram.read_bytes(0x6000, &mut buf).unwrap();
        assert_eq!(&buf, b"def");
        // The second range ends past RAM: the first is not copied either.
        copy_items(
            &ram,
            0x8000,
            &[item(0x7000, 0x3000, 3), item(0xff000, 0x5000, 0x2000)],
        );
        assert_eq!(call(&ram, &mut io, hc::COPY_LIST, list).1, -EFAULT);
        ram.read_bytes(0x7000, &mut buf).unwrap();
        assert_eq!(buf, [0; 3]);
        let too_many = [0x8000, vmrun_contract::COPY_LIST_MAX + 1, 0, 0, 0, 0];
        assert_eq!(call(&ram, &mut io, hc::COPY_LIST, too_many).1, -EINVAL);
    }

    /// A user array at 0x40_0000 (4 KiB pages at 0x20_0000 on) pointing
    /// at `strings`, laid end to end from 0x40_1ff8 so that the first
    /// crosses a page; the output goes to 0x80_0000 (strings) and
    /// 0x80_8000 (lengths).
    fn string_space(strings: &[&[u8]]) -> (Space, Vec<u64>) {
        let mut s = Space::new();
        for k in 0..4 {
            s.map(
                0x40_0000 + k * 0x1000,
                0x20_0000 + k * 0x1000,
                PageSize::Size4K,
                USER_RW,
            );
        }
        let mut at = 0x40_1ff8;
        let mut ptrs = Vec::new();
        for (i, text) in strings.iter().enumerate() {
            ptrs.push(at);
            let pa = 0x20_0000 + (at - 0x40_0000);
            s.ram.write_bytes(pa, text).unwrap();
            s.ram.write_bytes(pa + text.len() as u64, &[0]).unwrap();
            at += text.len() as u64 + 1;
            s.ram.write_pod(0x20_0000 + 8 * i as u64, &ptrs[i]).unwrap();
        }
        s.ram
            .write_pod(0x20_0000 + 8 * strings.len() as u64, &0u64)
            .unwrap();
        (s, ptrs)
    }

    fn room(arrays: [u64; 2], block_room: u64, lens_room: u64, budget: u64) -> UserStrings {
        UserStrings {
            root: 0,
            arrays,
            block: 0x80_0000,
            block_room,
            lens: 0x80_8000,
            lens_room,
            budget,
            ..UserStrings::default()
        }
    }

    fn gather(s: &Space, mut req: UserStrings) -> Gathered {
        req.root = s.cr3;
        user_strings(&s.ram, &req)
    }

    /// The request answered through the hypercall: its result, counts and
    /// bytes.
    fn gather_call(s: &Space, mut req: UserStrings) -> (i64, [u64; 2], u64) {
        req.root = s.cr3;
        s.ram.write_pod(0x90_0000, &req).unwrap();
        let mut io = FakeIo::default();
        let r = call(
            &s.ram,
            &mut io,
            hc::USER_STRINGS,
            [0x90_0000, 0, 0, 0, 0, 0],
        )
        .1;
        let back = s.ram.read_pod::<UserStrings>(0x90_0000).unwrap();
        (r, back.counts, back.bytes)
    }

    const ARGV: [u64; 2] = [0x40_0000, 0];

    #[test]
    fn user_strings_gathers_argv_and_envp_through_the_page_tables() {
        let (s, _) = string_space(&[b"PATH=/bin", b"", b"HOME=/root"]);
        let got = gather(&s, room([0x40_0000, 0x40_0008], 4096, 16, 1 << 20));
        assert_eq!(
            got,
            Gathered::Done {
                counts: [3, 2],
                bytes: 22 + 12
            }
        );
        let mut block = [0u8; 34];
        s.ram.read_bytes(0x80_0000, &mut block).unwrap();
        assert_eq!(&block, b"PATH=/bin\0\0HOME=/root\0\0HOME=/root\0");
        let mut lens = [0u8; 20];
        s.ram.read_bytes(0x80_8000, &mut lens).unwrap();
        let want = [
            10, 0, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0,
        ];
        assert_eq!(lens, want);
        // Empty arrays and none.
        let (s, _) = string_space(&[]);
        let none = gather(&s, room([0x40_0000, 0], 4096, 16, 1 << 20));
        assert_eq!(
            none,
            Gathered::Done {
                counts: [0, 0],
                bytes: 0
            }
        );
        // Through the hypercall: the request is answered in place.
        let (s, _) = string_space(&[b"a=1", b"bb=2"]);
        assert_eq!(gather_call(&s, room(ARGV, 4096, 16, 4096)), (0, [2, 0], 9));
    }

    #[test]
    fn user_strings_asks_for_room_and_writes_nothing_until_it_has_it() {
        let (s, _) = string_space(&[b"A=1", b"B=22"]);
        let short = gather(&s, room(ARGV, 8, 16, 1 << 20));
        assert_eq!(
            short,
            Gathered::Room {
                counts: [2, 0],
                bytes: 9
            }
        );
        let few = gather(&s, room([0x40_0000, 0x40_0000], 64, 3, 1 << 20));
        assert_eq!(
            few,
            Gathered::Room {
                counts: [2, 2],
                bytes: 18
            }
        );
        let mut block = [0u8; 9];
        s.ram.read_bytes(0x80_0000, &mut block).unwrap();
        assert_eq!(block, [0; 9], "nothing written");
        let room_code = vmrun_contract::user_strings::ROOM;
        assert_eq!(
            gather_call(&s, room(ARGV, 8, 16, 4096)),
            (room_code, [2, 0], 9)
        );
    }

    #[test]
    fn user_strings_leaves_unmapped_kernel_long_or_costly_strings_to_the_kernel() {
        // The budget: "A=1" and "B=22" cost 12 and 13.
        let (s, _) = string_space(&[b"A=1", b"B=22"]);
        let fits = gather(&s, room(ARGV, 64, 16, 25));
        assert_eq!(
            fits,
            Gathered::Done {
                counts: [2, 0],
                bytes: 9
            }
        );
        assert_eq!(gather(&s, room(ARGV, 64, 16, 24)), Gathered::OwnPath);
        let own = vmrun_contract::user_strings::OWN_PATH;
        assert_eq!(gather_call(&s, room(ARGV, 64, 16, 24)).0, own);
        // A pointer to an unmapped page, and an array on one.
        let (mut s, _) = string_space(&[b"A=1"]);
        s.ram.write_pod(0x20_0000, &0x50_0000u64).unwrap();
        assert_eq!(gather(&s, room(ARGV, 64, 16, 1 << 20)), Gathered::OwnPath);
        let unmapped = room([0x40_0000, 0x60_0000], 64, 16, 1 << 20);
        assert_eq!(gather(&s, unmapped), Gathered::OwnPath);
        // A string on a supervisor-only page.
        s.map(0x50_0000, 0x30_0000, PageSize::Size4K, bits::P | bits::RW);
        assert_eq!(gather(&s, room(ARGV, 64, 16, 1 << 20)), Gathered::OwnPath);
        // One on a user page of the kernel's half (the trampoline's), and
        // one that runs up to the program's half's end.
        use vmrun_contract::layout::{SYSCALL_TRAMPOLINE_VIRT, TASK_SIZE};
        s.map(
            SYSCALL_TRAMPOLINE_VIRT,
            0x31_0000,
            PageSize::Size4K,
            USER_RX,
        );
        s.ram.write_bytes(0x31_0000, b"A=1\0").unwrap();
        s.ram
            .write_pod(0x20_0000, &SYSCALL_TRAMPOLINE_VIRT)
            .unwrap();
        assert_eq!(gather(&s, room(ARGV, 64, 16, 1 << 20)), Gathered::OwnPath);
        s.map(TASK_SIZE - 0x1000, 0x32_0000, PageSize::Size4K, USER_RW);
        s.ram.write_bytes(0x32_0000, &[b'x'; 0x1000]).unwrap();
        s.ram.write_pod(0x20_0000, &(TASK_SIZE - 0x1000)).unwrap();
        assert_eq!(gather(&s, room(ARGV, 64, 16, 1 << 20)), Gathered::OwnPath);
        s.ram.write_bytes(0x32_0fff, &[0]).unwrap();
        let last = Gathered::Done {
            counts: [1, 0],
            bytes: 0x1000,
        };
        assert_eq!(gather(&s, room(ARGV, 0x1000, 16, 1 << 20)), last);
        // A string that runs off its mapped pages with no NUL.
        let (s, _) = string_space(&[b"A=1"]);
        s.ram.write_pod(0x20_0000, &0x40_3ffcu64).unwrap();
        s.ram.write_bytes(0x20_3ffc, b"xxxx").unwrap();
        assert_eq!(gather(&s, room(ARGV, 64, 16, 1 << 20)), Gathered::OwnPath);
        // Output outside RAM.
        let (s, _) = string_space(&[b"A=1"]);
        let mut out = room(ARGV, 64, 16, 1 << 20);
        out.block = s.ram.size() - 8;
        assert_eq!(gather(&s, out), Gathered::OwnPath);
    }

    #[test]
    fn user_strings_stops_at_the_longest_string_linux_takes() {
        use vmrun_contract::user_strings::MAX_LEN;
        let mut s = Space::new();
        let pages = MAX_LEN / 0x1000 + 2;
        for k in 0..pages {
            let at = k * 0x1000;
            s.map(0x40_0000 + at, 0x20_0000 + at, PageSize::Size4K, USER_RW);
        }
        s.ram.write_pod(0x20_0000, &0x40_1000u64).unwrap();
        s.ram.write_pod(0x20_0008, &0u64).unwrap();
        let long = vec![b'x'; MAX_LEN as usize - 1];
        s.ram.write_bytes(0x20_1000, &long).unwrap();
        let out = room(ARGV, 2 * MAX_LEN, 16, 1 << 20);
        let whole = Gathered::Done {
            counts: [1, 0],
            bytes: MAX_LEN,
        };
        assert_eq!(gather(&s, out), whole);
        s.ram.write_bytes(0x20_1000 + MAX_LEN - 1, b"y").unwrap();
        assert_eq!(gather(&s, out), Gathered::OwnPath);
    }
}
