//! Pipes: a ring of up to 64 KiB in the kernel heap shared by a read end
//! and a write end, with Linux's semantics: a read of an empty pipe waits
//! while a writer exists and then sees end of file; a write waits for room
//! while a reader exists and fails with EPIPE (and SIGPIPE) when none is
//! left; writes of at most PIPE_BUF bytes are never split.
//!
//! The bytes move between the ring and a program's pages in at most two
//! pieces each way ([`Pipe::unread`], [`Pipe::space`]), with no copy in
//! between: where ring 0 is emulated each piece of a kilobyte or more is
//! one host copy (see `arch::mem`), where a copy through a buffer cost
//! three string moves in ring 0.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

/// A pipe's capacity (Linux's default, 16 pages).
pub const PIPE_SIZE: usize = 65536;

/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

/// The shared part of a pipe.
#[derive(Debug, Default)]
pub struct Pipe {
    /// The ring: empty until the first write, then grown by doubling from
    /// [`PIPE_BUF`] to [`PIPE_SIZE`] bytes as the unread bytes need (an
    /// idle pipe holds little of the kernel heap).
    ring: Vec<u8>,
    /// Where the first unread byte is in the ring.
    head: usize,
    /// Bytes written and not yet read.
    len: usize,
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
            readers: 1,
            writers: 1,
            ..Pipe::default()
        }))
    }

    /// Bytes written and not yet read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the ring holds now (it grows as writes need).
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Room left.
    pub fn room(&self) -> usize {
        PIPE_SIZE - self.len
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

    /// The heap bytes a write of `n` more bytes would take for the ring to
    /// grow (0 when it holds them already).
    pub fn growth_for(&self, n: usize) -> usize {
        let need = self.len + n;
        if need <= self.ring.len() {
            return 0;
        }
        need.next_power_of_two().clamp(PIPE_BUF, PIPE_SIZE)
    }

    /// The first `n` unread bytes (at most [`Self::len`]), in order: the
    /// part up to the ring's end and the part from its start.
    pub fn unread(&self, n: usize) -> (&[u8], &[u8]) {
        let n = n.min(self.len);
        let first = n.min(self.ring.len() - self.head);
        (
            &self.ring[self.head..self.head + first],
            &self.ring[..n - first],
        )
    }

    /// Drop the first `n` unread bytes (they were read).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = match self.len {
            0 => 0,
            _ => (self.head + n) % self.ring.len(),
        };
    }

    /// Room for `n` more bytes (at most [`Self::room`]), in order, the
    /// ring grown first as needed: where [`Self::commit`] then takes them.
    pub fn space(&mut self, n: usize) -> (&mut [u8], &mut [u8]) {
        let n = n.min(self.room());
        let grow = self.growth_for(n);
        if grow != 0 {
            self.grow(grow);
        }
        let cap = self.ring.len();
        let tail = (self.head + self.len) % cap.max(1);
        let first = n.min(cap - tail);
        let (low, high) = self.ring.split_at_mut(tail);
        (&mut high[..first], &mut low[..n - first])
    }

    /// Take the first `n` bytes of [`Self::space`] as written.
    pub fn commit(&mut self, n: usize) {
        self.len += n.min(self.ring.len() - self.len);
    }

    /// A ring of `cap` bytes holding the unread bytes from its start.
    fn grow(&mut self, cap: usize) {
        let mut ring = alloc::vec![0u8; cap];
        let (a, b) = self.unread(self.len);
        ring[..a.len()].copy_from_slice(a);
        ring[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.ring = ring;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write `data` whole (it fits).
    fn put(p: &mut Pipe, data: &[u8]) {
        let (a, b) = p.space(data.len());
        assert_eq!(a.len() + b.len(), data.len());
        let k = a.len();
        a.copy_from_slice(&data[..k]);
        b.copy_from_slice(&data[k..]);
        p.commit(data.len());
    }

    /// Read up to `n` bytes.
    fn take(p: &mut Pipe, n: usize) -> Vec<u8> {
        let (a, b) = p.unread(n);
        let out = [a, b].concat();
        p.consume(out.len());
        out
    }

    #[test]
    fn small_writes_are_all_or_nothing_and_large_ones_fill_the_room() {
        let p = Pipe::new();
        let mut b = p.borrow_mut();
        put(&mut b, &alloc::vec![7u8; PIPE_SIZE - 100]);
        assert_eq!(b.writable_now(50), 50);
        assert_eq!(b.writable_now(200), 0, "PIPE_BUF writes are atomic");
        assert_eq!(b.writable_now(10_000), 100);
    }

    #[test]
    fn bytes_come_out_in_order_across_the_rings_end_and_its_growth() {
        let mut p = Pipe::default();
        assert_eq!(p.growth_for(1), PIPE_BUF, "the first write allocates");
        let mut next = 0u32;
        let mut expect = 0u32;
        let gen = |from: &mut u32, n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    *from += 1;
                    (*from % 251) as u8
                })
                .collect()
        };
        // Writes and reads of sizes that wrap the ring at every offset
        // and make it grow while it wraps.
        for (w, r) in [
            (3000, 1000),
            (3000, 4500),
            (5000, 100),
            (20_000, 7000),
            (40_000, 60_000),
        ] {
            let w = w.min(p.room());
            put(&mut p, &gen(&mut next, w));
            let got = take(&mut p, r);
            assert_eq!(got, gen(&mut expect, got.len()));
        }
        let rest = take(&mut p, PIPE_SIZE);
        assert_eq!(rest, gen(&mut expect, rest.len()));
        assert_eq!(next, expect, "every byte read once");
        assert!(p.is_empty());
        assert!(p.ring.len() <= PIPE_SIZE);
    }

    #[test]
    fn the_ring_grows_by_doubling_only_as_far_as_the_unread_bytes_need() {
        let mut p = Pipe::default();
        put(&mut p, &[1; 10]);
        assert_eq!(p.ring.len(), PIPE_BUF);
        put(&mut p, &[2; PIPE_BUF]);
        assert_eq!(p.ring.len(), 2 * PIPE_BUF);
        assert_eq!(take(&mut p, PIPE_BUF + 10).len(), PIPE_BUF + 10);
        put(&mut p, &[3; 2 * PIPE_BUF]);
        assert_eq!(p.ring.len(), 2 * PIPE_BUF, "room after the reads");
        put(&mut p, &alloc::vec![4; PIPE_SIZE - 2 * PIPE_BUF]);
        assert_eq!((p.ring.len(), p.len(), p.room()), (PIPE_SIZE, PIPE_SIZE, 0));
        let (a, b) = p.space(1);
        assert_eq!(a.len() + b.len(), 0, "a full pipe has no space");
    }
}
