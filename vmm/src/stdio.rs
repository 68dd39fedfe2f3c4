//! The guest program's stdio, connected to vmrun's own.

use crate::hypercall::HostIo;
use std::io::{self, Read, Write};

/// Host stdin/stdout/stderr for the guest.
pub struct Stdio {
    verbose: bool,
}

impl Stdio {
    /// Connect to the process's stdio; `verbose` shows guest log lines.
    pub fn new(verbose: bool) -> Stdio {
        Stdio { verbose }
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

    fn log(&mut self, line: &[u8]) {
        if self.verbose {
            let mut err = io::stderr().lock();
            let _ = err.write_all(b"[guest] ");
            let _ = err.write_all(line);
            let _ = err.write_all(b"\n");
        }
    }
}
