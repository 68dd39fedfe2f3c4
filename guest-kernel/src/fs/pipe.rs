//! Pipes: a 64 KiB ring of bytes in the kernel heap shared by a read end
//! and a write end, with Linux's semantics: a read of an empty pipe waits
//! while a writer exists and then sees end of file; a write waits for room
//! while a reader exists and fails with EPIPE (and SIGPIPE) when none is
//! left; writes of at most PIPE_BUF bytes are never split.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::RefCell;

/// A pipe's capacity (Linux's default, 16 pages).
pub const PIPE_SIZE: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

/// The shared part of a pipe.
#[derive(Debug, Default)]
pub struct Pipe {
    /// The bytes written and not yet read.
    pub buf: VecDeque<u8>,
    /// Open read ends.
    pub readers: u32,
    /// Open write ends.
    pub writers: u32,
}

/// A shared pipe.
pub type PipeRef = Rc<RefCell<Pipe>>;

impl Pipe {
    /// A new pipe with one read end and one write end.
    pub fn new() -> PipeRef {
        Rc::new(RefCell::new(Pipe {
            buf: VecDeque::new(),
            readers: 1,
            writers: 1,
        }))
    }

    /// Room left.
    pub fn room(&self) -> usize {
        PIPE_SIZE - self.buf.len()
    }

    /// How many of `len` bytes a write may put in now (0: it must wait).
    pub fn writable_now(&self, len: usize) -> usize {
        let room = self.room();
        if len <= PIPE_BUF && room < len {
            0
        } else {
            room.min(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_writes_are_all_or_nothing_and_large_ones_fill_the_room() {
        let p = Pipe::new();
        let mut b = p.borrow_mut();
        b.buf.extend(core::iter::repeat_n(0u8, PIPE_SIZE - 100));
        assert_eq!(b.writable_now(50), 50);
        assert_eq!(b.writable_now(200), 0, "PIPE_BUF writes are atomic");
        assert_eq!(b.writable_now(10_000), 100);
    }
}
