//! The guest program's stdio, connected to vmrun's own, and the host's
//! randomness.

use crate::fs::sys;
use crate::hypercall::HostIo;
use crate::inspect::syscalls;
use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Host stdin/stdout/stderr for the guest.
pub struct Stdio {
    verbose: bool,
    urandom: Option<std::fs::File>,
}

impl Stdio {
    /// Connect to the process's stdio; `verbose` shows guest log lines.
    pub fn new(verbose: bool) -> Stdio {
        Stdio {
            verbose,
            urandom: None,
        }
    }
}

impl HostIo for Stdio {
    fn write(&mut self, fd: u64, data: &[u8]) -> io::Result<()> {
        if fd == 1 {
            let mut out = io::stdout().lock();
            out.write_all(data)?;
            out.flush()
        } else {
            io::stderr().lock().write_all(data)
        }
    }

    /// One read(2) of fd 0 for at most what the program asked: nothing is
    /// read ahead (Rust's buffered stdin would take 8 KiB from a pipe or a
    /// file that a process after vmrun reads on from, as in `{ vmrun prog;
    /// cat; } < file`).
    fn read(&mut self, _fd: u64, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(io::stdin().as_fd(), buf).map_err(io::Error::from_raw_os_error)
    }

    fn ready(&mut self, _fd: u64) -> bool {
        sys::readable_now(io::stdin().as_fd())
    }

    /// lseek(2) of vmrun's own fd 0, 1 or 2 (stdout is flushed after every
    /// write, so no output waits in a buffer).
    fn seek(&mut self, fd: u64, offset: i64, whence: u32) -> io::Result<u64> {
        let at = match fd {
            0 => sys::lseek(io::stdin().as_fd(), offset, whence as i32),
            1 => sys::lseek(io::stdout().as_fd(), offset, whence as i32),
            _ => sys::lseek(io::stderr().as_fd(), offset, whence as i32),
        };
        at.map(|at| at as u64).map_err(io::Error::from_raw_os_error)
    }

    fn random(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if self.urandom.is_none() {
            self.urandom = Some(std::fs::File::open("/dev/urandom")?);
        }
        match self.urandom.as_mut() {
            Some(f) => f.read_exact(buf),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// Sleeps in steps of at most 100 ms, so that SIGINT or SIGTERM
    /// ([`crate::interrupt`]) ends a long sleep of the program's at once.
    fn sleep(&mut self, ns: u64) {
        let end = Instant::now() + Duration::from_nanos(ns);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if left.is_zero() || crate::interrupt::requested().is_some() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    fn log(&mut self, line: &[u8]) {
        if self.verbose {
            let line = name_syscall(line);
            let mut err = io::stderr().lock();
            let _ = err.write_all(b"[guest] ");
            let _ = err.write_all(&line);
            let _ = err.write_all(b"\n");
        }
    }
}

/// A guest log line with "system call N (unknown)" given the name that
/// `--strace` uses: the guest kernel's own table names only the calls it
/// implements, the host's ([`crate::inspect::syscalls`]) names them all.
pub fn name_syscall(line: &[u8]) -> Cow<'_, [u8]> {
    const PREFIX: &[u8] = b"system call ";
    const UNKNOWN: &[u8] = b" (unknown)";
    let Some(rest) = line.strip_prefix(PREFIX) else {
        return Cow::Borrowed(line);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let nr = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<u32>().ok());
    match (
        nr.and_then(syscalls::lookup),
        rest[digits..].strip_prefix(UNKNOWN),
    ) {
        (Some(call), Some(tail)) => {
            let mut named = line[..PREFIX.len() + digits].to_vec();
            named.extend_from_slice(format!(" ({})", call.name).as_bytes());
            named.extend_from_slice(tail);
            Cow::Owned(named)
        }
        _ => Cow::Borrowed(line),
    }
}

/// Stdio for runs whose output nobody reads (benchmarks, tests): writes
/// are dropped, reads see end of file, randomness is the host's.
#[derive(Default)]
pub struct Discard {
    urandom: Option<std::fs::File>,
}

impl HostIo for Discard {
    fn write(&mut self, _fd: u64, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn read(&mut self, _fd: u64, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }

    fn random(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if self.urandom.is_none() {
            self.urandom = Some(std::fs::File::open("/dev/urandom")?);
        }
        match self.urandom.as_mut() {
            Some(f) => f.read_exact(buf),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn log(&mut self, _line: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::name_syscall;

    #[test]
    fn an_unknown_system_call_gets_the_strace_name() {
        let line = b"system call 334 (unknown) is not implemented: ENOSYS";
        assert_eq!(
            &*name_syscall(line),
            b"system call 334 (rseq) is not implemented: ENOSYS"
        );
    }

    #[test]
    fn other_lines_and_numbers_no_table_knows_stay_as_they_are() {
        for line in [
            &b"system call 9999 (unknown) is not implemented: ENOSYS"[..],
            b"system call 12 (brk) did something",
            b"syscall entry: vector 0x80",
            b"system call ",
        ] {
            assert_eq!(&*name_syscall(line), line);
        }
    }
}
