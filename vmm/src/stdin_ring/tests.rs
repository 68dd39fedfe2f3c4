use super::*;

/// A host stdin that is a byte string: peeks copy, discards take.
#[derive(Default)]
struct Bytes {
    data: Vec<u8>,
    /// Bytes taken so far.
    pos: usize,
    peeks: usize,
    fail: Option<i32>,
}

impl Source for Bytes {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.fail {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.peeks += 1;
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        Ok(n)
    }
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        let n = n.min(self.data.len() - self.pos);
        self.pos += n;
        Ok(n)
    }
}

/// The host's fd 0 read straight (the reads that bypass the ring).
#[derive(Default)]
struct Direct {
    reads: Vec<usize>,
}

impl HostIo for Direct {
    fn write(&mut self, _fd: u64, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn read(&mut self, _fd: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.push(buf.len());
        Ok(0)
    }
    fn random(&mut self, _buf: &mut [u8]) -> io::Result<()> {
        Ok(())
    }
    fn log(&mut self, _line: &[u8]) {}
}

fn ram() -> GuestRam {
    GuestRam::new(2 << 20).unwrap()
}

fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn ring(ram: &GuestRam, data: Vec<u8>) -> StdinRing<Bytes> {
    let source = Bytes {
        data,
        ..Default::default()
    };
    StdinRing::new(source, ram).unwrap()
}

#[test]
fn reads_through_the_ring_give_the_stream_in_order_and_take_only_what_was_read() {
    let ram = ram();
    let data = input(3 * SIZE as usize + 12_345);
    let mut r = ring(&ram, data.clone());
    let mut io = Direct::default();
    let mut got = Vec::new();
    let sizes = [1usize, 4096, 7, 65_536, 100_000, 4095, 3];
    for (i, size) in sizes.iter().cycle().enumerate() {
        let mut buf = vec![0u8; *size];
        let n = r.read(&ram, &mut io, &mut buf, true).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= *size);
        got.extend_from_slice(&buf[..n]);
        // The host's pipe gave up only bytes the program had taken.
        assert!(r.source.pos <= got.len(), "read {i}");
        assert_eq!(&data[..r.source.pos], &got[..r.source.pos]);
    }
    assert_eq!(got, data);
    assert!(io.reads.is_empty(), "every read came from the ring");
    r.settle(&ram).unwrap();
    assert_eq!(r.source.pos, data.len());
}

#[test]
fn settling_takes_from_the_host_exactly_the_bytes_the_program_took() {
    let ram = ram();
    let data = input(100_000);
    let mut r = ring(&ram, data.clone());
    assert_eq!(r.fill(&ram).unwrap(), SIZE);
    assert_eq!(r.source.pos, 0, "a fill leaves the bytes in the pipe");
    let mut buf = [0u8; 10];
    assert_eq!(r.take(&ram, &mut buf).unwrap(), 10);
    assert_eq!(buf, data[..10]);
    // The trampoline takes 90 more, moving the tail itself.
    write_word(&ram, TAIL, 100).unwrap();
    assert_eq!(r.pending(&ram), SIZE - 100);
    r.settle(&ram).unwrap();
    assert_eq!(r.source.pos, 100);
    r.settle(&ram).unwrap();
    assert_eq!(r.source.pos, 100, "never twice");
    let mut buf = [0u8; 5];
    assert_eq!(r.take(&ram, &mut buf).unwrap(), 5);
    assert_eq!(buf, data[100..105]);
}

#[test]
fn a_read_without_a_fill_goes_to_the_host_once_the_ring_is_empty_and_settled() {
    let ram = ram();
    let mut r = ring(&ram, input(50));
    let mut io = Direct::default();
    let mut buf = [0u8; 20];
    assert_eq!(r.read(&ram, &mut io, &mut buf, true).unwrap(), 20);
    assert_eq!(
        r.read(&ram, &mut io, &mut buf, false).unwrap(),
        20,
        "the ring's bytes first"
    );
    assert_eq!(r.read(&ram, &mut io, &mut buf, false).unwrap(), 10);
    assert!(io.reads.is_empty());
    assert_eq!(r.read(&ram, &mut io, &mut buf, false).unwrap(), 0);
    assert_eq!(io.reads, vec![20], "then the host's fd");
    assert_eq!(r.source.pos, 50, "settled first");
}

#[test]
fn end_of_file_reads_zero_and_a_failed_peek_turns_the_ring_off() {
    let ram = ram();
    let mut r = ring(&ram, Vec::new());
    let mut io = Direct::default();
    let mut buf = [0u8; 8];
    assert_eq!(r.read(&ram, &mut io, &mut buf, true).unwrap(), 0);
    assert!(io.reads.is_empty(), "end of file from the peek");

    let mut r = ring(&ram, input(10));
    r.source.fail = Some(libc::EAGAIN);
    assert!(r.read(&ram, &mut io, &mut buf, true).is_err());
    assert!(!r.off, "EAGAIN is the read's answer, not the ring's end");
    r.source.fail = Some(libc::EINVAL);
    assert!(r.read(&ram, &mut io, &mut buf, true).is_err());
    assert!(r.off);
    r.source.fail = None;
    assert_eq!(r.read(&ram, &mut io, &mut buf, true).unwrap(), 0);
    assert_eq!(io.reads, vec![8], "straight to the host's fd");
    assert_eq!(r.source.peeks, 0);
}

#[test]
fn a_garbled_header_empties_the_ring_and_nothing_is_copied_from_it() {
    let ram = ram();
    for (head, tail) in [(SIZE, SIZE + 1), (SIZE + 5, 0), (7, 3), (u64::MAX, 0)] {
        let data = input(2 * SIZE as usize);
        let mut r = ring(&ram, data.clone());
        r.fill(&ram).unwrap();
        write_word(&ram, HEAD, head).unwrap();
        write_word(&ram, TAIL, tail).unwrap();
        assert_eq!(r.pending(&ram), 0, "{head} {tail}");
        let mut buf = [0u8; 16];
        assert_eq!(r.take(&ram, &mut buf).unwrap(), 0);
        // The next read settles the whole fill and goes on from there.
        let mut io = Direct::default();
        assert_eq!(r.read(&ram, &mut io, &mut buf, true).unwrap(), 16);
        assert_eq!(buf, data[SIZE as usize..SIZE as usize + 16]);
    }
}
