//! A little builder of address spaces in synthetic guest memory, for the
//! inspector's tests: page tables written by hand (not by the guest's
//! code), and a small legal process image to corrupt.

use super::pagetable::{bits, PageSize, KERNEL_HALF};
use crate::memory::GuestRam;
use vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT;
use vmrun_contract::{vma_flags, VmaExport, VmaRecord};

/// A used-entry count the guest keeps in bits 52..=61 of non-leaf entries;
/// written into every table entry here so that the walker must mask it.
const COUNT_BITS: u64 = 7 << 52;

/// Flags of a user 4 KiB leaf.
pub const USER_RX: u64 = bits::P | bits::US | bits::A;
/// Flags of a user read-only, non-executable leaf.
pub const USER_R: u64 = bits::P | bits::US | bits::A | bits::NX;
/// Flags of a user writable leaf.
pub const USER_RW: u64 = bits::P | bits::US | bits::RW | bits::A | bits::D | bits::NX;

/// Page tables being built in 16 MiB of guest RAM.
pub struct Space {
    /// The memory.
    pub ram: GuestRam,
    /// The PML4's address.
    pub cr3: u64,
    next: u64,
}

impl Space {
    /// An empty PML4 at 0x10000; table pages follow it.
    pub fn new() -> Space {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut s = Space {
            ram,
            cr3: 0,
            next: 0x10000,
        };
        s.cr3 = s.alloc();
        s
    }

    /// Start another address space in the same memory: a new PML4 that
    /// later calls build in; returns it.
    pub fn new_root(&mut self) -> u64 {
        self.cr3 = self.alloc();
        self.cr3
    }

    /// A zeroed page for a table.
    pub fn alloc(&mut self) -> u64 {
        let p = self.next;
        self.next += 0x1000;
        p
    }

    /// Read the entry at `pa`.
    pub fn read(&self, pa: u64) -> u64 {
        self.ram.read_pod::<u64>(pa).unwrap()
    }

    /// Write the entry at `pa`.
    pub fn write(&self, pa: u64, v: u64) {
        self.ram.write_pod(pa, &v).unwrap();
    }

    /// Set `b` in the entry at `pa`.
    pub fn set(&self, pa: u64, b: u64) {
        self.write(pa, self.read(pa) | b);
    }

    /// Clear `b` in the entry at `pa`.
    pub fn clear(&self, pa: u64, b: u64) {
        self.write(pa, self.read(pa) & !b);
    }

    /// Address of the entry for `va` in its table at `level`, creating the
    /// tables above it (user half: P|RW|US; kernel half: P|RW).
    pub fn entry_addr(&mut self, va: u64, level: u8) -> u64 {
        let mut table = self.cr3;
        for l in (level + 1..=4).rev() {
            let at = table + index(va, l) * 8;
            if self.read(at) & bits::P == 0 {
                let user = if va < KERNEL_HALF { bits::US } else { 0 };
                let new = self.alloc();
                self.write(at, new | bits::P | bits::RW | bits::A | user | COUNT_BITS);
            }
            table = self.read(at) & bits::ADDR_MASK;
        }
        table + index(va, level) * 8
    }

    /// Map `va` to `pa` with a leaf of `size` and `flags`; returns the
    /// entry's address.
    pub fn map(&mut self, va: u64, pa: u64, size: PageSize, flags: u64) -> u64 {
        let (level, ps) = match size {
            PageSize::Size4K => (1, 0),
            PageSize::Size2M => (2, bits::PS),
            PageSize::Size1G => (3, bits::PS),
        };
        let at = self.entry_addr(va, level);
        self.write(at, pa | flags | ps);
        at
    }

    /// Set US on the PML4, PDPT and PD entries leading to `va`.
    pub fn allow_user(&mut self, va: u64) {
        for level in [4, 3, 2] {
            let at = self.entry_addr(va, level);
            self.set(at, bits::US);
        }
    }
}

fn index(va: u64, level: u8) -> u64 {
    (va >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff
}

/// A VMA.
pub fn vma(start: u64, end: u64, flags: u64, offset: u64) -> VmaRecord {
    VmaRecord {
        start,
        end,
        flags,
        offset,
        file: 0,
    }
}

/// An export of `vmas` with `mm`.
pub fn export(vmas: &[VmaRecord], mm: [u64; 12]) -> Box<VmaExport> {
    let mut e = Box::new(VmaExport::zeroed());
    e.count = vmas.len() as u64;
    e.mm = mm;
    e.vmas[..vmas.len()].copy_from_slice(vmas);
    e
}

/// Physical start of the page cache (the program file) in [`legal`].
pub const CACHE: u64 = 0x80_0000;
/// Physical frame of the syscall trampoline in [`legal`].
pub const TRAMPOLINE_FRAME: u64 = 0x10_5000;

/// Entry addresses of the leaves of [`legal`], to corrupt.
pub struct Legal {
    /// The tables.
    pub space: Space,
    /// The VMAs.
    pub vmas: Vec<VmaRecord>,
    /// User frames the guest holds (4 KiB units).
    pub user_frames: u64,
    /// User table pages the guest holds.
    pub user_tables: u64,
    /// Leaf of the text page 0x400000 (page cache).
    pub text: u64,
    /// Leaf of the data page 0x402000 (a private copy).
    pub data: u64,
    /// Leaf of the bss page 0x403000.
    pub bss: u64,
    /// Leaf of the PROT_NONE page 0x500000.
    pub guard: u64,
    /// Leaf of the stack page 0x7fff_ffffe000.
    pub stack: u64,
    /// Leaf of the kernel text page 0xffff_ffff_8010_0000.
    pub ktext: u64,
    /// Leaf of the trampoline.
    pub trampoline: u64,
}

/// A small legal process image: text from the page cache (two pages, one
/// mapped twice on purpose), a private data page, bss, a PROT_NONE page
/// that keeps its frame, a 2 MiB anonymous page, a stack page; in the
/// kernel half a direct-map 2 MiB page, a kernel text page and the
/// trampoline.
pub fn legal() -> Legal {
    let mut s = Space::new();
    let r = vma_flags::READ;
    let (w, x, f) = (vma_flags::WRITE, vma_flags::EXEC, vma_flags::FILE);
    let vmas = vec![
        vma(0x40_0000, 0x40_2000, r | x | f, 0),
        vma(0x40_2000, 0x40_3000, r | w | f, 0x2000),
        vma(0x40_3000, 0x40_4000, r | w, 0),
        vma(0x48_0000, 0x48_1000, r | f, 0),
        vma(0x50_0000, 0x50_1000, 0, 0),
        vma(0x60_0000, 0x80_0000, r | w, 0),
        vma(
            0x7fff_fffd_e000,
            0x7fff_ffff_f000,
            r | w | vma_flags::GROWSDOWN,
            0,
        ),
    ];
    let text = s.map(0x40_0000, CACHE, PageSize::Size4K, USER_RX);
    s.map(0x40_1000, CACHE + 0x1000, PageSize::Size4K, USER_RX);
    let data = s.map(0x40_2000, 0x90_0000, PageSize::Size4K, USER_RW);
    let bss = s.map(0x40_3000, 0x90_1000, PageSize::Size4K, USER_RW);
    s.map(0x48_0000, CACHE, PageSize::Size4K, USER_R);
    let guard = s.map(
        0x50_0000,
        0x90_2000,
        PageSize::Size4K,
        bits::PROTNONE | bits::US,
    );
    s.map(0x60_0000, 0xa0_0000, PageSize::Size2M, USER_RW);
    let stack = s.map(0x7fff_ffff_e000, 0x90_3000, PageSize::Size4K, USER_RW);
    let kernel = bits::P | bits::A | bits::G;
    s.map(
        0xffff_8880_0000_0000,
        0,
        PageSize::Size2M,
        kernel | bits::RW | bits::NX,
    );
    let ktext = s.map(0xffff_ffff_8010_0000, 0x10_0000, PageSize::Size4K, kernel);
    let trampoline = s.map(
        SYSCALL_TRAMPOLINE_VIRT,
        TRAMPOLINE_FRAME,
        PageSize::Size4K,
        bits::P | bits::US | bits::A,
    );
    s.allow_user(SYSCALL_TRAMPOLINE_VIRT);
    Legal {
        space: s,
        vmas,
        user_frames: 4 + 512,
        user_tables: 6,
        text,
        data,
        bss,
        guard,
        stack,
        ktext,
        trampoline,
    }
}
