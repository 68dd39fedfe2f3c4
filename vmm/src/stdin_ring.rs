//! The stdin read-ahead ring (contract `stdin_ring`): bytes of the host's
//! stdin, a pipe, copied into guest memory ahead of the program's reads,
//! which the syscall trampoline hands out in user mode (kvm_pvm), with
//! neither a kernel entry nor a VM exit.
//!
//! On kvm_pvm a read that the VMM answers from the trampoline (a fast
//! call, [`crate::fastcall`]) still costs a VM exit, about 50 µs; a read
//! the trampoline serves from the ring costs the SYSCALL and the copy,
//! about 17 µs. The VMM fills the ring when a fast-call read finds it
//! empty: one tee(2) of up to [`SIZE`] bytes from the host's stdin into a
//! pipe of its own, then a read of that pipe into the ring.
//!
//! tee(2) leaves the bytes in the host's pipe. The VMM takes from the
//! pipe only the bytes the program has taken from the ring (the ring's
//! tail): before any other read of the host's stdin, before the next
//! fill, and at the end of the run ([`StdinRing::settle`]). So the
//! commands after vmrun read from the pipe what they read natively, as
//! when the program reads the pipe itself. (A second reader of the same
//! pipe at the same time, which natively gets the bytes neither reads
//! twice, could see bytes the ring holds.)
//!
//! Every read of the host's stdin goes through [`WithRing`]: bytes in the
//! ring first, then the host's fd. The ring's header words are guest
//! memory that the program can write, so they are checked at every use:
//! a garbled header empties the ring (its bytes are then lost to the
//! program, which garbled them).

use crate::hypercall::HostIo;
use crate::memory::GuestRam;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use vmrun_contract::layout::{STDIN_RING_DATA_PHYS, STDIN_RING_HEADER_PHYS};
pub use vmrun_contract::stdin_ring::SIZE;
use vmrun_contract::stdin_ring::{HEAD, TAIL};

/// Where the ring's bytes come from and where taken ones go: the host's
/// stdin.
pub trait Source {
    /// Copy up to `buf.len()` of the bytes a read would return next,
    /// leaving them to be read (0: end of file).
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Take up to `n` bytes, as a read would (0: end of file).
    fn discard(&mut self, n: usize) -> io::Result<usize>;
}

/// The host's fd 0, a pipe, peeked at through a pipe of the VMM's own.
pub struct PipeSource {
    /// The read and write ends of the VMM's pipe.
    pipe: (OwnedFd, OwnedFd),
    scratch: Vec<u8>,
}

impl PipeSource {
    /// The source for host fd 0 if it is a pipe (None otherwise, or if
    /// the VMM's own pipe cannot be made).
    pub fn stdin() -> Option<PipeSource> {
        let stdin = io::stdin();
        let meta = crate::fs::sys::fstat(stdin.as_fd()).ok()?;
        if meta.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return None;
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both fds were just made by pipe2 and are owned here only.
        let pipe = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // The pipe must hold a whole ring (64 KiB is Linux's default).
        // SAFETY: fcntl on an fd owned here.
        let size = unsafe { libc::fcntl(pipe.1.as_raw_fd(), libc::F_SETPIPE_SZ, SIZE as i32) };
        if size < SIZE as i32 {
            return None;
        }
        Some(PipeSource {
            pipe,
            scratch: Vec::new(),
        })
    }

    fn stdin_fd() -> BorrowedFd<'static> {
        // SAFETY: fd 0 stays open for the life of the process.
        unsafe { BorrowedFd::borrow_raw(0) }
    }
}

impl Source for PipeSource {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stdin = Self::stdin_fd();
        // SAFETY: tee between two pipe fds that stay open for the call.
        let n = unsafe { libc::tee(stdin.as_raw_fd(), self.pipe.1.as_raw_fd(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut got = 0;
        while got < n {
            match crate::fs::sys::read(self.pipe.0.as_fd(), &mut buf[got..n]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(libc::EINTR) => continue,
                Err(e) => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok(got)
    }

    /// Never more than the pipe holds now: the bytes a peek copied are
    /// there unless a second reader took them, and then this must not
    /// wait for (and take) bytes that came later.
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        let mut held: libc::c_int = 0;
        // SAFETY: FIONREAD writes the bytes a pipe holds into the int.
        if unsafe { libc::ioctl(0, libc::FIONREAD, &mut held) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let want = n.min(SIZE as usize).min(held.max(0) as usize);
        if want == 0 {
            return Ok(0);
        }
        self.scratch.resize(want, 0);
        loop {
            match crate::fs::sys::read(Self::stdin_fd(), &mut self.scratch[..want]) {
                Err(libc::EINTR) => continue,
                r => return r.map_err(io::Error::from_raw_os_error),
            }
        }
    }
}

/// The ring's state on the VMM's side.
pub struct StdinRing<S: Source = PipeSource> {
    source: S,
    /// Bytes the last fill put in (the head it wrote).
    filled: u64,
    /// Of those, bytes already taken from the host's stdin.
    settled: u64,
    /// Set when the source failed to peek: reads go straight to the host.
    off: bool,
    /// Fills so far that put bytes in.
    fills: u64,
}

impl<S: Source> StdinRing<S> {
    /// An empty ring over `source`; `ram`'s header is set empty.
    pub fn new(source: S, ram: &GuestRam) -> io::Result<StdinRing<S>> {
        write_word(ram, HEAD, 0)?;
        write_word(ram, TAIL, 0)?;
        Ok(StdinRing {
            source,
            filled: 0,
            settled: 0,
            off: false,
            fills: 0,
        })
    }

    /// Fills so far that put bytes in.
    pub fn fills(&self) -> u64 {
        self.fills
    }

    /// The bytes the program took from the ring so far, if the header is
    /// sane (the head is what the VMM wrote, the tail within it).
    fn taken(&self, ram: &GuestRam) -> Option<u64> {
        let head = read_word(ram, HEAD)?;
        let tail = read_word(ram, TAIL)?;
        (head == self.filled && tail <= head).then_some(tail)
    }

    /// Bytes in the ring not taken yet (0 if the header is garbled).
    pub fn pending(&self, ram: &GuestRam) -> u64 {
        self.taken(ram).map_or(0, |t| self.filled - t)
    }

    /// Take from the host's stdin the bytes the program took from the
    /// ring and the VMM has not (all of the last fill if the header is
    /// garbled).
    pub fn settle(&mut self, ram: &GuestRam) -> io::Result<()> {
        let taken = self.taken(ram).unwrap_or(self.filled);
        while self.settled < taken {
            match self.source.discard((taken - self.settled) as usize)? {
                0 => break,
                n => self.settled += n as u64,
            }
        }
        // Never twice: bytes a second reader took meanwhile are gone.
        self.settled = taken;
        Ok(())
    }

    /// Copy up to `buf.len()` bytes from the ring into `buf`, moving the
    /// tail; how many.
    pub fn take(&mut self, ram: &GuestRam, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tail) = self.taken(ram) else {
            return Ok(0);
        };
        let n = (self.filled - tail).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let at = (tail + done as u64) % SIZE;
            let k = (n - done).min((SIZE - at) as usize);
            ram.read_bytes(STDIN_RING_DATA_PHYS + at, &mut buf[done..done + k])
                .map_err(|e| io::Error::other(e.to_string()))?;
            done += k;
        }
        write_word(ram, TAIL, tail + n as u64)?;
        Ok(n)
    }

    /// Refill the empty ring from the host's stdin (blocking as a read
    /// would): settle, then peek at up to [`SIZE`] bytes; how many (0 at
    /// end of file).
    pub fn fill(&mut self, ram: &GuestRam) -> io::Result<u64> {
        self.settle(ram)?;
        let data = ram
            .slice_mut(STDIN_RING_DATA_PHYS, SIZE)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let n = match self.source.peek(data) {
            Ok(n) => n,
            Err(e) => {
                // EAGAIN, EINTR: the read that follows says it. Any other
                // error turns the ring off for the run.
                let transient = [libc::EAGAIN, libc::EINTR];
                if !e.raw_os_error().is_some_and(|c| transient.contains(&c)) {
                    self.off = true;
                }
                return Err(e);
            }
        };
        write_word(ram, TAIL, 0)?;
        write_word(ram, HEAD, n as u64)?;
        self.filled = n as u64;
        self.settled = 0;
        self.fills += u64::from(n > 0);
        Ok(n as u64)
    }

    /// A read of the host's stdin into `buf` through the ring: its bytes
    /// first; else, with `fill` (a fast call), a fill and then its bytes;
    /// else the host's fd, read by `io` once the ring is settled.
    pub fn read(
        &mut self,
        ram: &GuestRam,
        io: &mut impl HostIo,
        buf: &mut [u8],
        fill: bool,
    ) -> io::Result<usize> {
        if self.pending(ram) > 0 || buf.is_empty() {
            return self.take(ram, buf);
        }
        self.settle(ram)?;
        if fill && !self.off {
            return match self.fill(ram)? {
                0 => Ok(0),
                _ => self.take(ram, buf),
            };
        }
        io.read(0, buf)
    }
}

/// A [`HostIo`] whose reads of fd 0 go through the stdin ring first, if
/// there is one (see [`StdinRing::read`]); everything else is `inner`'s.
pub struct WithRing<'a, H: HostIo, S: Source> {
    /// The run's stdio.
    pub inner: &'a mut H,
    /// The ring (None: it is off, and this is `inner`).
    pub ring: Option<&'a mut StdinRing<S>>,
    /// Guest RAM, where the ring is.
    pub ram: &'a GuestRam,
    /// Whether an empty ring is filled (a fast call's read).
    pub fill: bool,
}

impl<H: HostIo, S: Source> HostIo for WithRing<'_, H, S> {
    fn write(&mut self, fd: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write(fd, data)
    }
    fn read(&mut self, fd: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self.ring.as_deref_mut() {
            Some(ring) if fd == 0 => ring.read(self.ram, self.inner, buf, self.fill),
            _ => self.inner.read(fd, buf),
        }
    }
    fn random(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.random(buf)
    }
    fn ready(&mut self, fd: u64) -> bool {
        if let Some(ring) = self.ring.as_deref_mut().filter(|_| fd == 0) {
            if ring.pending(self.ram) > 0 {
                return true;
            }
            if ring.settle(self.ram).is_err() {
                return false;
            }
        }
        self.inner.ready(fd)
    }
    fn seek(&mut self, fd: u64, offset: i64, whence: u32) -> io::Result<u64> {
        self.inner.seek(fd, offset, whence)
    }
    fn sleep(&mut self, ns: u64) {
        self.inner.sleep(ns)
    }
    fn log(&mut self, line: &[u8]) {
        self.inner.log(line)
    }
}

fn read_word(ram: &GuestRam, offset: u64) -> Option<u64> {
    ram.read_pod(STDIN_RING_HEADER_PHYS + offset).ok()
}

fn write_word(ram: &GuestRam, offset: u64, v: u64) -> io::Result<()> {
    ram.write_pod(STDIN_RING_HEADER_PHYS + offset, &v)
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests;
