//! A `Vec<u8>`-backed [`PhysMem`] for unit tests, with counters of the bulk
//! operations the kernel would delegate to the host.

use super::phys::PhysMem;

/// Fake guest-physical memory starting at physical address 0.
pub struct TestMem {
    bytes: Vec<u8>,
    /// Number of `zero` calls (host hypercalls in the kernel).
    pub zero_calls: u64,
    /// Number of `copy` calls.
    pub copy_calls: u64,
    /// Trace categories recorded into `records`.
    pub trace_mask: u32,
    /// Trace records emitted, in order.
    pub records: Vec<vmrun_contract::trace::Record>,
}

impl TestMem {
    /// `size` bytes of zeroed memory.
    pub fn new(size: u64) -> Self {
        Self {
            bytes: vec![0; size as usize],
            zero_calls: 0,
            copy_calls: 0,
            trace_mask: 0,
            records: Vec::new(),
        }
    }

    /// Kinds of the records emitted so far.
    pub fn record_kinds(&self) -> Vec<u32> {
        self.records.iter().map(|r| r.kind).collect()
    }

    /// Fill `len` bytes at `pa` with `byte`.
    pub fn fill(&mut self, pa: u64, len: u64, byte: u8) {
        self.bytes[pa as usize..(pa + len) as usize].fill(byte);
    }

    /// The byte at `pa`.
    pub fn byte(&self, pa: u64) -> u8 {
        self.bytes[pa as usize]
    }
}

impl PhysMem for TestMem {
    fn read_u64(&self, pa: u64) -> u64 {
        assert_eq!(pa % 8, 0, "unaligned read_u64 at {pa:#x}");
        let a = pa as usize;
        u64::from_le_bytes(self.bytes[a..a + 8].try_into().unwrap())
    }

    fn write_u64(&mut self, pa: u64, val: u64) {
        assert_eq!(pa % 8, 0, "unaligned write_u64 at {pa:#x}");
        let a = pa as usize;
        self.bytes[a..a + 8].copy_from_slice(&val.to_le_bytes());
    }

    fn bytes_mut(&mut self, pa: u64, len: u64) -> &mut [u8] {
        &mut self.bytes[pa as usize..(pa + len) as usize]
    }

    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        let a = pa as usize;
        buf.copy_from_slice(&self.bytes[a..a + buf.len()]);
    }

    fn write_bytes(&mut self, pa: u64, buf: &[u8]) {
        let a = pa as usize;
        self.bytes[a..a + buf.len()].copy_from_slice(buf);
    }

    fn zero(&mut self, pa: u64, len: u64) {
        self.zero_calls += 1;
        self.bytes[pa as usize..(pa + len) as usize].fill(0);
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) {
        self.copy_calls += 1;
        let (d, s, n) = (dst as usize, src as usize, len as usize);
        assert!(d + n <= s || s + n <= d, "overlapping copy");
        self.bytes.copy_within(s..s + n, d);
    }

    fn trace_on(&self, category: u32) -> bool {
        self.trace_mask & category != 0
    }

    fn trace(&mut self, record: &vmrun_contract::trace::Record) {
        self.records.push(*record);
    }
}

/// A machine for address-space tests: 64 MiB of RAM, a kernel PML4, a
/// file image (page cache) and a frame allocator for the rest.
pub struct Fixture {
    /// The memory.
    pub mem: TestMem,
    /// Frames in `[FRAMES_START, 64 MiB)`.
    pub frames: crate::mm::frame::FrameAllocator,
    /// Holds file 0 at [`Fixture::FILE_PHYS`].
    pub cache: crate::fs::cache::PageCache,
    /// A host without files.
    pub host: crate::fs::host::NoHost,
    /// A kernel PML4 with one kernel-half entry (511).
    pub kernel: crate::mm::paging::KernelHalf,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// Physical address of file 0.
    pub const FILE_PHYS: u64 = 0x20_0000;
    /// Length of file 0: ten pages and a half.
    pub const FILE_LEN: u64 = 10 * 4096 + 2048;
    /// First frame of the allocator.
    pub const FRAMES_START: u64 = 0x40_0000;

    /// The machine; file 0's page `i` is filled with byte `i + 1`.
    pub fn new() -> Self {
        let mut mem = TestMem::new(64 << 20);
        for i in 0..11 {
            let len = (Self::FILE_LEN - i * 4096).min(4096);
            mem.fill(Self::FILE_PHYS + i * 4096, len, i as u8 + 1);
        }
        let kernel_root = 0x1000;
        mem.write_u64(kernel_root + 511 * 8, 0x3000 | 3);
        let mut cache = crate::fs::cache::PageCache::new();
        cache
            .add_image(
                Self::FILE_LEN,
                b"/file",
                (Self::FILE_PHYS, crate::fs::cache::InodeKey::UNKNOWN, (0, 0)),
            )
            .unwrap();
        let frames = crate::mm::frame::FrameAllocator::new(Self::FRAMES_START, 64 << 20);
        Self {
            mem,
            frames,
            cache,
            host: crate::fs::host::NoHost::new(),
            kernel: crate::mm::paging::KernelHalf::new(kernel_root, &[511]),
        }
    }

    /// A new address space.
    pub fn mm(&mut self) -> crate::mm::space::Mm {
        crate::mm::space::Mm::new(&mut self.mem, &mut self.frames, &self.kernel).unwrap()
    }

    /// The environment for `Mm` operations.
    pub fn env(&mut self) -> crate::mm::space::MmEnv<'_, TestMem> {
        crate::mm::space::MmEnv {
            mem: &mut self.mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.host,
        }
    }

    /// A child of `parent`, forked with the user stack pointer `sp` (0:
    /// none) as `Mm::fork_copy` makes it.
    pub fn fork(&mut self, parent: &mut crate::mm::space::Mm, sp: u64) -> crate::mm::space::Mm {
        let kernel = self.kernel;
        let mut child = crate::mm::space::Mm::empty();
        parent
            .fork_copy(&mut self.env(), &kernel, &mut child, sp)
            .unwrap();
        child
    }

    /// [`Self::env`] with `host` as the file service (a test's reader of
    /// a host file).
    pub fn env_with<'a>(
        &'a mut self,
        host: &'a mut dyn crate::fs::host::FsHost,
    ) -> crate::mm::space::MmEnv<'a, TestMem> {
        crate::mm::space::MmEnv { host, ..self.env() }
    }
}
