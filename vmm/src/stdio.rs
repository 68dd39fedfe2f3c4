//! The guest program's stdio, connected to vmrun's own, and the host's
//! randomness.

use crate::hypercall::HostIo;
use std::io::{self, Read, Write};

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

    fn read(&mut self, _fd: u64, buf: &mut [u8]) -> io::Result<usize> {
        io::stdin().lock().read(buf)
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

    fn log(&mut self, line: &[u8]) {
        if self.verbose {
            let mut err = io::stderr().lock();
            let _ = err.write_all(b"[guest] ");
            let _ = err.write_all(line);
            let _ = err.write_all(b"\n");
        }
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
