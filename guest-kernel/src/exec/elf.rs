//! The ELF load plan: what Linux's `load_elf_binary` decides before it maps
//! anything.
//!
//! [`LoadPlan::program`] parses and checks an ELF64 x86-64 image (which is
//! hostile input: every field is read with explicit little-endian byte reads
//! and checked before use) and computes where each `PT_LOAD` segment goes,
//! the entry point, the `AT_PHDR` address, the interpreter path, whether the
//! stack is executable, and the `mm_struct` fields Linux derives from the
//! segments (`start_code` … `end_data`, `start_brk`). [`LoadPlan::interpreter`]
//! does the same for a dynamic linker placed in the mmap area. Nothing here
//! maps memory: the kernel glue turns each [`Segment`] into VMAs.
//!
//! Placement with randomisation off: `ET_EXEC` at its own addresses; an
//! `ET_DYN` program, with or without `PT_INTERP`, at `ELF_ET_DYN_BASE`
//! aligned down to the largest power-of-two `p_align`, minus the first
//! segment's `p_vaddr`, page aligned (0x555555554000 for a first vaddr of
//! 0); interpreters top-down from the caller's mmap top, like an
//! `mmap(NULL, total_size)`. The brk starts at the page-aligned end of the
//! highest segment. (Linux 6.x, checked on a 6.18 host under `setarch -R`,
//! places a static PIE top-down in the mmap area and its brk at
//! `ELF_ET_DYN_BASE`; vmrun keeps every program at one predictable base.)

use crate::errno::Errno;
use crate::fmt::MsgBuf;
use crate::mm::space::MMAP_MIN_ADDR;
use vmrun_contract::layout::{PAGE_SIZE, TASK_SIZE};

/// Linux x86-64's `ELF_ET_DYN_BASE`: two thirds of the 47-bit user window.
pub const ELF_ET_DYN_BASE: u64 = TASK_SIZE / 3 * 2;
/// Size of an ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header (`e_phentsize`).
pub const PHDR_SIZE: usize = 56;
/// Largest program header table Linux reads (`load_elf_phdrs`: 64 KiB,
/// 1170 headers).
pub const MAX_PHDR_BYTES: usize = 65536;
/// Most `PT_LOAD` segments a plan holds (real programs have 2 to 5).
pub const MAX_LOADS: usize = 16;
/// Longest `PT_INTERP` path, with its NUL (Linux's PATH_MAX).
pub const MAX_INTERP: u64 = 4096;

/// `ET_EXEC`: an executable at fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `ET_DYN`: a position-independent executable or shared object.
pub const ET_DYN: u16 = 3;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 0x3e;
/// `PT_LOAD`: a segment to map.
pub const PT_LOAD: u32 = 1;
/// `PT_INTERP`: the dynamic linker's path.
pub const PT_INTERP: u32 = 3;
/// `PT_PHDR`: where the program header table is in memory.
pub const PT_PHDR: u32 = 6;
/// `PT_GNU_STACK`: the stack's permissions.
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;
/// Mapping protection bit (Linux `PROT_READ`).
pub const PROT_READ: u32 = 1;
/// Mapping protection bit (Linux `PROT_WRITE`).
pub const PROT_WRITE: u32 = 2;
/// Mapping protection bit (Linux `PROT_EXEC`).
pub const PROT_EXEC: u32 = 4;

const PAGE_MASK: u64 = PAGE_SIZE - 1;

const fn page_down(a: u64) -> u64 {
    a & !PAGE_MASK
}

const fn page_up(a: u64) -> u64 {
    a.wrapping_add(PAGE_MASK) & !PAGE_MASK
}

/// Why an ELF image cannot be loaded. Numbers are as found in the file;
/// `index` is the program header's index (as `readelf -l` counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError<'a> {
    /// The file is shorter than the 64-byte ELF header.
    TooShort {
        /// File length.
        len: u64,
    },
    /// The file is empty (a shell would run it as an empty script).
    Empty,
    /// The first four bytes are not `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not ELFCLASS64.
    BadClass(u8),
    /// `EI_DATA` is not ELFDATA2LSB.
    BadData(u8),
    /// `EI_VERSION` or `e_version` is not EV_CURRENT.
    BadVersion(u64),
    /// `e_machine` is not x86-64.
    BadMachine(u16),
    /// `e_type` is neither ET_EXEC nor ET_DYN.
    BadType(u16),
    /// `e_phentsize` is not 56.
    BadPhentsize(u16),
    /// `e_phnum` is 0.
    NoPhdrs,
    /// The program header table is larger than [`MAX_PHDR_BYTES`].
    TooManyPhdrs(u16),
    /// The program header table runs past the end of the file.
    PhdrsTruncated {
        /// End of the table.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// A writable segment's bss starts inside a page that lies wholly past
    /// the end of the file: Linux's `padzero` cannot clear it (EFAULT).
    BssPastEof {
        /// Program header index.
        index: u64,
        /// End of the segment's file data.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// The segment would map a page below `mmap_min_addr` (EPERM).
    BelowMmapMinAddr {
        /// Program header index.
        index: u64,
        /// Biased start.
        start: u64,
    },
    /// `p_filesz` > `p_memsz`.
    FileszExceedsMemsz {
        /// Program header index.
        index: u64,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// `p_vaddr` and `p_offset` are not congruent modulo the page size.
    Misaligned {
        /// Program header index.
        index: u64,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_offset`.
        offset: u64,
    },
    /// The segment, after the load bias, reaches TASK_SIZE or beyond.
    BeyondTaskSize {
        /// Program header index.
        index: u64,
        /// Biased start.
        start: u64,
        /// Biased end (exclusive).
        end: u64,
    },
    /// An address or offset computation overflows 64 bits.
    AddressOverflow {
        /// Program header index.
        index: u64,
    },
    /// There is no `PT_LOAD` segment.
    NoLoads,
    /// More than [`MAX_LOADS`] `PT_LOAD` segments.
    TooManyLoads,
    /// `PT_INTERP` is empty, too long, outside the file or not NUL terminated.
    BadInterp,
    /// The program needs a dynamic linker, which is not supported yet.
    DynamicUnsupported(&'a [u8]),
}

impl ElfError<'_> {
    /// The errno Linux's execve meets for this: ENOEXEC for format errors,
    /// EINVAL for the segment checks `load_elf_binary` and mmap fail with,
    /// EPERM below `mmap_min_addr`, EFAULT where `padzero` faults.
    pub fn errno(&self) -> Errno {
        match self {
            Self::FileszExceedsMemsz { .. }
            | Self::Misaligned { .. }
            | Self::BeyondTaskSize { .. }
            | Self::AddressOverflow { .. } => Errno::EINVAL,
            Self::BelowMmapMinAddr { .. } => Errno::EPERM,
            Self::BssPastEof { .. } => Errno::EFAULT,
            _ => Errno::ENOEXEC,
        }
    }

    /// Set a segment error's program header index (any other error has
    /// none).
    fn set_index(&mut self, to: u64) {
        match self {
            Self::BssPastEof { index, .. }
            | Self::BelowMmapMinAddr { index, .. }
            | Self::FileszExceedsMemsz { index, .. }
            | Self::Misaligned { index, .. }
            | Self::BeyondTaskSize { index, .. }
            | Self::AddressOverflow { index } => *index = to,
            _ => {}
        }
    }

    /// Whether Linux finds this only while it maps the segments, past the
    /// point of no return: the exec then kills the process with SIGSEGV
    /// instead of failing with the errno.
    pub fn found_while_mapping(&self) -> bool {
        matches!(
            self,
            Self::FileszExceedsMemsz { .. }
                | Self::Misaligned { .. }
                | Self::BeyondTaskSize { .. }
                | Self::AddressOverflow { .. }
                | Self::BelowMmapMinAddr { .. }
                | Self::BssPastEof { .. }
        )
    }

    /// Write the one-line message (no newline) into `m`.
    pub fn write_msg<const N: usize>(&self, m: &mut MsgBuf<N>) {
        match *self {
            Self::TooShort { len } => {
                let m = m.str("truncated ELF file (").dec(len);
                m.str(" bytes, shorter than the ELF header)");
            }
            Self::Empty => {
                m.str("empty file (not an ELF file, and no #! line)");
            }
            Self::BadMagic => {
                m.str("not an ELF file (bad magic)");
            }
            Self::BadClass(c) => {
                m.str("not a 64-bit ELF (EI_CLASS ").dec(c.into()).str(")");
            }
            Self::BadData(d) => {
                m.str("not a little-endian ELF (EI_DATA ")
                    .dec(d.into())
                    .str(")");
            }
            Self::BadVersion(v) => {
                m.str("bad ELF version ").dec(v);
            }
            Self::BadMachine(v) => {
                m.str("wrong machine ")
                    .hex(v.into())
                    .str(" (expected x86-64, 0x3e)");
            }
            Self::BadType(t) => {
                let m = m.str("not an executable or shared object (e_type ");
                m.dec(t.into()).str(")");
            }
            Self::BadPhentsize(s) => {
                m.str("bad program header size ")
                    .dec(s.into())
                    .str(" (expected 56)");
            }
            Self::NoPhdrs => {
                m.str("no program headers");
            }
            Self::TooManyPhdrs(n) => {
                m.str("too many program headers (").dec(n.into()).str(")");
            }
            Self::PhdrsTruncated { end, file_len } => {
                m.str("truncated ELF file (program headers end at ")
                    .hex(end);
                m.str(" past the file's ").hex(file_len).str(" bytes)");
            }
            Self::BssPastEof {
                index,
                end,
                file_len,
            } => {
                m.str("segment ").dec(index).str(": its data ends at ");
                m.hex(end).str(", in a page past the file's ").hex(file_len);
                m.str(" bytes, where its bss cannot be zeroed");
            }
            Self::BelowMmapMinAddr { index, start } => {
                m.str("segment ").dec(index).str(": ").hex(start);
                m.str(" is below mmap_min_addr ").hex(MMAP_MIN_ADDR);
            }
            Self::FileszExceedsMemsz {
                index,
                filesz,
                memsz,
            } => {
                m.str("segment ").dec(index).str(": p_filesz ").hex(filesz);
                m.str(" exceeds p_memsz ").hex(memsz);
            }
            Self::Misaligned {
                index,
                vaddr,
                offset,
            } => {
                m.str("segment ").dec(index).str(": p_vaddr ").hex(vaddr);
                m.str(" and p_offset ")
                    .hex(offset)
                    .str(" differ modulo the page size");
            }
            Self::BeyondTaskSize { index, start, end } => {
                m.str("segment ")
                    .dec(index)
                    .str(": [")
                    .hex(start)
                    .str(", ")
                    .hex(end);
                m.str(") reaches beyond user space (TASK_SIZE ")
                    .hex(TASK_SIZE)
                    .str(")");
            }
            Self::AddressOverflow { index } => {
                m.str("segment ").dec(index).str(": address overflow");
            }
            Self::NoLoads => {
                m.str("no loadable segments");
            }
            Self::TooManyLoads => {
                m.str("too many loadable segments (more than 16)");
            }
            Self::BadInterp => {
                m.str("bad PT_INTERP");
            }
            Self::DynamicUnsupported(path) => {
                m.str("dynamic programs are not supported yet (PT_INTERP ");
                m.bytes(path).str(")");
            }
        }
    }
}

/// One `PT_LOAD` segment with the load bias applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Biased `p_vaddr` (not page aligned).
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_filesz` (≤ `memsz`).
    pub filesz: u64,
    /// `p_offset` (≡ `vaddr` modulo the page size).
    pub offset: u64,
    /// [`PROT_READ`] | [`PROT_WRITE`] | [`PROT_EXEC`] from PF_R/PF_W/PF_X.
    pub prot: u32,
}

impl Segment {
    /// First page of the segment.
    pub const fn map_start(&self) -> u64 {
        page_down(self.vaddr)
    }

    /// End (exclusive, page aligned) of the segment's pages, its bss's
    /// included.
    pub const fn map_end(&self) -> u64 {
        page_up(self.vaddr + self.memsz)
    }

    /// File offset mapped at [`Segment::map_start`].
    pub const fn map_offset(&self) -> u64 {
        self.offset - (self.vaddr & PAGE_MASK)
    }

    /// End (exclusive, page aligned) of the file-backed pages; equal to
    /// `map_start` when the segment has no file data.
    pub const fn file_map_end(&self) -> u64 {
        if self.filesz == 0 {
            self.map_start()
        } else {
            page_up(self.vaddr + self.filesz)
        }
    }

    /// The bytes after the file data in the last file-backed page, which
    /// Linux zeroes (`padzero`): `[vaddr + filesz, file_map_end)`, empty
    /// unless the segment has bss.
    pub const fn zero_tail(&self) -> (u64, u64) {
        let start = self.vaddr + self.filesz;
        if self.memsz > self.filesz && self.filesz != 0 {
            (start, page_up(start))
        } else {
            (start, start)
        }
    }

    /// The anonymous zero pages after the file pages (Linux's `vm_brk_flags`
    /// for the bss): `[file_map_end, page_up(vaddr + memsz))`, possibly empty.
    pub const fn anon_pages(&self) -> (u64, u64) {
        let start = self.file_map_end();
        let end = self.map_end();
        if end > start {
            (start, end)
        } else {
            (start, start)
        }
    }
}

/// Which placement rule an `ET_DYN` image follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Program,
    Interpreter,
}

impl Role {
    #[inline(always)]
    fn of(interpreter: bool) -> Role {
        if interpreter {
            Role::Interpreter
        } else {
            Role::Program
        }
    }
}

/// Everything `load_elf_binary` computes before mapping, for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    segs: [Segment; MAX_LOADS],
    nsegs: usize,
    /// `e_type`: [`ET_EXEC`] or [`ET_DYN`].
    pub e_type: u16,
    /// Biased entry point (`AT_ENTRY`).
    pub entry: u64,
    /// Address of the program headers in memory (`AT_PHDR`).
    pub phdr: u64,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u64,
    /// Size of one program header (`AT_PHENT`), always 56.
    pub phent: u64,
    /// Added to every `p_vaddr`.
    pub load_bias: u64,
    /// File offset and length (without the NUL) of the `PT_INTERP` path.
    pub interp: Option<(u64, u64)>,
    /// `PT_GNU_STACK` has PF_X (absent: not executable, as x86-64 Linux).
    pub exec_stack: bool,
    /// Lowest `p_vaddr` of an executable segment (Linux wraps to bias-1 if none).
    pub start_code: u64,
    /// Highest `p_vaddr + p_filesz` of an executable segment.
    pub end_code: u64,
    /// Highest `p_vaddr` of any segment (Linux's definition).
    pub start_data: u64,
    /// Highest `p_vaddr + p_filesz` of any segment (also Linux's
    /// `elf_bss`, the end of the highest segment's file data).
    pub end_data: u64,
    /// Highest `p_vaddr + p_memsz`.
    pub elf_brk: u64,
    /// Initial `start_brk` = `brk` (page aligned).
    pub start_brk: u64,
    /// A segment Linux would fail to map, past the point of no return
    /// ([`ElfError::found_while_mapping`]): the exec goes ahead and the
    /// process is killed when the segments are mapped. The other fields
    /// are then incomplete.
    pub load_error: Option<ElfError<'static>>,
}

/// A program header's raw fields.
#[derive(Clone, Copy)]
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn le(b: &[u8], off: usize, n: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + n) {
        a[..n].copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// The program header at `off` of `b` (all zero if `b` ends before it).
fn read_phdr(b: &[u8], off: usize) -> Phdr {
    let zero = [0u8; PHDR_SIZE];
    let p: &[u8; PHDR_SIZE] = b
        .get(off..off.saturating_add(PHDR_SIZE))
        .and_then(|s| s.try_into().ok())
        .unwrap_or(&zero);
    phdr(p)
}

/// The little-endian `u16` at byte `o` of `p` (a load at a fixed offset:
/// `o` is a constant where it is called, so the bounds check goes).
#[inline(always)]
fn u16_at<const N: usize>(p: &[u8; N], o: usize) -> u16 {
    u16::from_le_bytes(p[o..o + 2].try_into().unwrap_or_default())
}

/// The little-endian `u32` at byte `o` of `p` (see [`u16_at`]).
#[inline(always)]
fn u32_at<const N: usize>(p: &[u8; N], o: usize) -> u32 {
    u32::from_le_bytes(p[o..o + 4].try_into().unwrap_or_default())
}

/// The little-endian `u64` at byte `o` of `p` (see [`u16_at`]).
#[inline(always)]
fn u64_at<const N: usize>(p: &[u8; N], o: usize) -> u64 {
    u64::from_le_bytes(p[o..o + 8].try_into().unwrap_or_default())
}

/// The fields of program header `p`: loads at fixed offsets (a field at a
/// time through [`le`] costs a copy per field in emulated ring 0).
#[inline(always)]
fn phdr(p: &[u8; PHDR_SIZE]) -> Phdr {
    Phdr {
        p_type: u32_at(p, 0),
        flags: u32_at(p, 4),
        offset: u64_at(p, 8),
        vaddr: u64_at(p, 16),
        filesz: u64_at(p, 32),
        memsz: u64_at(p, 40),
        align: u64_at(p, 48),
    }
}

/// Check the ELF header at the start of `b`, and that the program header
/// table lies in the file's `file_len` bytes; return (e_type, phoff,
/// phnum). A well-formed header passes in four compares (the ident
/// bytes, type and machine, version, and the table's entry size and count
/// each read as one word); any other goes through [`check_ident`], field
/// by field, for its error.
fn check_header(b: &[u8], file_len: u64) -> Result<(u16, usize, usize), ElfError<'static>> {
    const IDENT: u64 = u64::from_le_bytes(*b"\x7fELF\x02\x01\x01\x00");
    const TYPE_MACHINE: u32 = (EM_X86_64 as u32) << 16 | ET_EXEC as u32;
    let (e_type, phnum) = match b.first_chunk::<EHDR_SIZE>() {
        Some(h)
            if file_len != 0
                && u64_at(h, 0) & 0x00ff_ffff_ffff_ffff == IDENT
                && u32_at(h, 16) & !1 == TYPE_MACHINE
                && u32_at(h, 20) == 1
                && u16_at(h, 54) == PHDR_SIZE as u16
                && usize::from(u16_at(h, 56)).wrapping_sub(1) < MAX_PHDR_BYTES / PHDR_SIZE =>
        {
            (u16_at(h, 16), u16_at(h, 56))
        }
        _ => check_ident(b, file_len)?,
    };
    let size = usize::from(phnum) * PHDR_SIZE;
    let phoff = le(b, 32, 8);
    match phoff.checked_add(size as u64) {
        Some(end) if end <= file_len => Ok((e_type, phoff as usize, usize::from(phnum))),
        end => Err(ElfError::PhdrsTruncated {
            end: end.unwrap_or(u64::MAX),
            file_len,
        }),
    }
}

/// The header's fields checked one at a time, in Linux's order: the
/// error of a header [`check_header`]'s compares refuse; (e_type, phnum)
/// if it is well formed after all.
fn check_ident(b: &[u8], file_len: u64) -> Result<(u16, u16), ElfError<'static>> {
    // A text file is "not an ELF file", whatever its length.
    if file_len == 0 {
        return Err(ElfError::Empty);
    }
    if b.len() < 4 || b[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    if b.len() < EHDR_SIZE {
        return Err(ElfError::TooShort {
            len: b.len() as u64,
        });
    }
    if b[4] != 2 {
        return Err(ElfError::BadClass(b[4]));
    }
    if b[5] != 1 {
        return Err(ElfError::BadData(b[5]));
    }
    if b[6] != 1 {
        return Err(ElfError::BadVersion(b[6].into()));
    }
    let version = le(b, 20, 4);
    if version != 1 {
        return Err(ElfError::BadVersion(version));
    }
    let machine = le(b, 18, 2) as u16;
    if machine != EM_X86_64 {
        return Err(ElfError::BadMachine(machine));
    }
    let e_type = le(b, 16, 2) as u16;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::BadType(e_type));
    }
    let phentsize = le(b, 54, 2) as u16;
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(ElfError::BadPhentsize(phentsize));
    }
    let phnum = le(b, 56, 2) as u16;
    if phnum == 0 {
        return Err(ElfError::NoPhdrs);
    }
    if usize::from(phnum) * PHDR_SIZE > MAX_PHDR_BYTES {
        return Err(ElfError::TooManyPhdrs(phnum));
    }
    Ok((e_type, phnum))
}

/// Check one `PT_LOAD` as Linux's mapping loop does. File data past the
/// end of the file is mapped as Linux maps it (a touch of a page wholly
/// past the end is SIGBUS); segments may overlap or come in any order (a
/// later one replaces what it overlaps, as MAP_FIXED does).
/// An error's index is 0, for the caller to set ([`ElfError::set_index`]):
/// the header loop keeps no count of the headers.
#[inline(always)]
fn check_load(file_len: u64, ph: &Phdr) -> Result<(), ElfError<'static>> {
    if ph.filesz > ph.memsz {
        let (filesz, memsz) = (ph.filesz, ph.memsz);
        return Err(ElfError::FileszExceedsMemsz {
            index: 0,
            filesz,
            memsz,
        });
    }
    if (ph.vaddr ^ ph.offset) & PAGE_MASK != 0 {
        let (vaddr, offset) = (ph.vaddr, ph.offset);
        return Err(ElfError::Misaligned {
            index: 0,
            vaddr,
            offset,
        });
    }
    let (Some(_), Some(fend)) = (
        ph.vaddr.checked_add(ph.memsz),
        ph.offset.checked_add(ph.filesz),
    ) else {
        return Err(ElfError::AddressOverflow { index: 0 });
    };
    let end = ph.vaddr + ph.memsz;
    if end > TASK_SIZE {
        return Err(ElfError::BeyondTaskSize {
            index: 0,
            start: ph.vaddr,
            end,
        });
    }
    // A bss: `p_memsz` past `p_filesz` (which does not exceed it here).
    let zeroed = ph.memsz != ph.filesz && ph.filesz != 0 && fend & PAGE_MASK != 0;
    if zeroed && ph.flags & PF_W != 0 && page_down(fend) >= file_len {
        return Err(ElfError::BssPastEof {
            index: 0,
            end: fend,
            file_len,
        });
    }
    Ok(())
}

/// Check `PT_INTERP`; return the path's offset and length without the NUL.
/// The path's NUL is checked when it lies in `b`; otherwise the caller
/// reads the path and checks it (see [`LoadPlan::interp_path`]).
fn check_interp(b: &[u8], file_len: u64, ph: &Phdr) -> Result<(u64, u64), ElfError<'static>> {
    if ph.filesz < 2 || ph.filesz > MAX_INTERP {
        return Err(ElfError::BadInterp);
    }
    let end = ph
        .offset
        .checked_add(ph.filesz)
        .ok_or(ElfError::BadInterp)?;
    if end > file_len {
        return Err(ElfError::BadInterp);
    }
    match b.get(end.wrapping_sub(1) as usize) {
        Some(0) | None => Ok((ph.offset, ph.filesz - 1)),
        _ => Err(ElfError::BadInterp),
    }
}

/// The program header index of the `n`-th `PT_LOAD` of the `phnum` in
/// `table` (for an error message: the plan keeps no index per segment).
fn load_index(table: &[u8], phnum: usize, n: usize) -> u64 {
    (0..phnum)
        .filter(|&i| read_phdr(table, i * PHDR_SIZE).p_type == PT_LOAD)
        .nth(n)
        .unwrap_or(0) as u64
}

/// How many bytes from the start of a file [`LoadPlan::parse_prefix`]
/// needs, from its first [`EHDR_SIZE`] bytes: through the end of the
/// program header table (None if that is absurd; the parser says why).
pub fn header_span(ehdr: &[u8]) -> Option<u64> {
    if ehdr.len() < EHDR_SIZE {
        return None;
    }
    let phnum = le(ehdr, 56, 2);
    let end = le(ehdr, 32, 8).checked_add(phnum * PHDR_SIZE as u64)?;
    (end <= (MAX_PHDR_BYTES + 2 * EHDR_SIZE) as u64 * 16).then_some(end.max(EHDR_SIZE as u64))
}

/// Linux's `make_prot`: PF_R/PF_W/PF_X to PROT_READ/PROT_WRITE/PROT_EXEC.
const fn make_prot(flags: u32) -> u32 {
    let mut prot = 0;
    if flags & PF_R != 0 {
        prot |= PROT_READ;
    }
    if flags & PF_W != 0 {
        prot |= PROT_WRITE;
    }
    if flags & PF_X != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// [`make_prot`] of each combination of the three flags.
const PROT_OF: [u32; 8] = {
    let mut t = [0; 8];
    let mut f = 0;
    while f < 8 {
        t[f] = make_prot(f as u32);
        f += 1;
    }
    t
};

/// [`make_prot`] by table lookup (the bits swap places: a dozen shifts
/// and masks otherwise).
fn prot_of(flags: u32) -> u32 {
    PROT_OF[(flags & 7) as usize]
}

/// The errno of a segment error (out of line: rarely asked).
#[cold]
#[inline(never)]
fn load_errno(e: ElfError<'static>) -> Errno {
    e.errno()
}

/// The plan's `elf_brk` while the headers are read, once a segment started
/// below the end of the one before: no segment ends there (`check_load`
/// keeps them below TASK_SIZE).
const OUT_OF_ORDER: u64 = u64::MAX;

/// The plan's `phdr` while the headers are read and no segment holds the
/// program header table: no address a segment maps (`check_load` keeps
/// them below TASK_SIZE).
const NO_HOLDER: u64 = u64::MAX;

/// What [`LoadPlan::read_headers`] finds besides the segments and bounds.
struct Gathered {
    /// The largest power-of-two `p_align` of an `ET_DYN`'s segments (0
    /// for an `ET_EXEC`, whose placement does not use it).
    max_align: u64,
    /// `PT_PHDR`'s address (0 without one).
    pt_phdr: u64,
    /// The lowest `p_vaddr`.
    lowest: u64,
}

impl LoadPlan {
    /// A plan before its headers are read: copied as one block from a
    /// constant (field by field it costs a store per word of the segment
    /// array).
    pub const EMPTY: LoadPlan = LoadPlan {
        segs: [Segment {
            vaddr: 0,
            memsz: 0,
            filesz: 0,
            offset: 0,
            prot: 0,
        }; MAX_LOADS],
        nsegs: 0,
        e_type: 0,
        entry: 0,
        phdr: 0,
        phnum: 0,
        phent: PHDR_SIZE as u64,
        load_bias: 0,
        interp: None,
        exec_stack: false,
        start_code: u64::MAX,
        end_code: 0,
        start_data: 0,
        end_data: 0,
        elf_brk: 0,
        start_brk: 0,
        load_error: None,
    };

    /// Make this plan one to parse into again, as [`LoadPlan::EMPTY`]
    /// was: the fields the parse compares or keeps before it writes them
    /// (the code and data bounds, the break, the interpreter, the stack
    /// flag and the late error) are set as `EMPTY` has them; the others,
    /// the segments among them, are written before they are read (a
    /// field at a time: the 16 segments are not copied).
    pub fn clear(&mut self) {
        let e = &LoadPlan::EMPTY;
        self.start_code = e.start_code;
        self.end_code = e.end_code;
        self.start_data = e.start_data;
        self.end_data = e.end_data;
        self.elf_brk = e.elf_brk;
        self.interp = e.interp;
        self.exec_stack = e.exec_stack;
        self.load_error = e.load_error;
    }

    /// Whether the plan is one to parse into: the fields
    /// [`Self::clear`] sets are as [`LoadPlan::EMPTY`] has them.
    pub fn is_clear(&self) -> bool {
        let e = &LoadPlan::EMPTY;
        (
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
        ) == (e.start_code, e.end_code, e.start_data, e.end_data)
            && (self.elf_brk, self.interp, self.exec_stack) == (e.elf_brk, e.interp, e.exec_stack)
            && self.load_error == e.load_error
            && self.phent == e.phent
    }

    /// Plan the program being exec'd. `mmap_top` is the top of the
    /// top-down mmap area (0x7ffff7fff000 with randomisation off); programs
    /// do not use it (see the module docs), interpreters do.
    pub fn program(image: &[u8], mmap_top: u64) -> Result<LoadPlan, ElfError<'static>> {
        Self::parse(image, None, image.len() as u64, Role::Program, mmap_top, 0)
    }

    /// [`Self::parse_prefix`] for a file whose program header table lies
    /// beyond what [`header_span`] allows (anywhere in the file, as Linux
    /// reads it): `ehdr` is the ELF header, `table` the bytes at `e_phoff`
    /// (up to [`MAX_PHDR_BYTES`]).
    pub fn parse_parts(
        ehdr: &[u8],
        table: &[u8],
        file_len: u64,
        interpreter: bool,
        mmap_top: u64,
        dyn_offset: u64,
    ) -> Result<LoadPlan, ElfError<'static>> {
        let mut plan = LoadPlan::EMPTY;
        plan.parts_into((ehdr, table), file_len, interpreter, (mmap_top, dyn_offset))?;
        Ok(plan)
    }

    /// Plan from the first bytes of a file of `file_len` bytes (at least
    /// [`header_span`] of them): as [`Self::program_randomized`] for a
    /// program, or as [`Self::interpreter`] when `interpreter`.
    #[inline]
    pub fn parse_prefix(
        prefix: &[u8],
        file_len: u64,
        interpreter: bool,
        mmap_top: u64,
        dyn_offset: u64,
    ) -> Result<LoadPlan, ElfError<'static>> {
        let mut plan = LoadPlan::EMPTY;
        plan.prefix_into(prefix, file_len, interpreter, (mmap_top, dyn_offset))?;
        Ok(plan)
    }

    /// [`Self::parse_prefix`] into this plan, in place: a plan as
    /// [`LoadPlan::EMPTY`] made it (an exec's is, inside the exec plan
    /// copied from its empty form: it is not cleared a second time).
    #[inline]
    pub fn prefix_into(
        &mut self,
        prefix: &[u8],
        file_len: u64,
        interpreter: bool,
        (mmap_top, dyn_offset): (u64, u64),
    ) -> Result<(), ElfError<'static>> {
        let role = Role::of(interpreter);
        self.parse_into(prefix, None, file_len, role, mmap_top, dyn_offset)
    }

    /// [`Self::parse_parts`] into this plan, in place: a plan as
    /// [`LoadPlan::EMPTY`] made it.
    pub fn parts_into(
        &mut self,
        (ehdr, table): (&[u8], &[u8]),
        file_len: u64,
        interpreter: bool,
        (mmap_top, dyn_offset): (u64, u64),
    ) -> Result<(), ElfError<'static>> {
        let role = Role::of(interpreter);
        self.parse_into(ehdr, Some(table), file_len, role, mmap_top, dyn_offset)
    }

    /// [`Self::program`] with an `ET_DYN` program placed `dyn_offset`
    /// bytes (page aligned) above `ELF_ET_DYN_BASE`, as address-space
    /// randomisation does.
    pub fn program_randomized(
        image: &[u8],
        mmap_top: u64,
        dyn_offset: u64,
    ) -> Result<LoadPlan, ElfError<'static>> {
        Self::parse(
            image,
            None,
            image.len() as u64,
            Role::Program,
            mmap_top,
            dyn_offset,
        )
    }

    /// Plan a dynamic linker: an `ET_DYN` goes top-down just below
    /// `mmap_top`, an `ET_EXEC` at its own addresses. Its `AT_BASE` is
    /// [`LoadPlan::base`].
    pub fn interpreter(image: &[u8], mmap_top: u64) -> Result<LoadPlan, ElfError<'static>> {
        Self::parse(
            image,
            None,
            image.len() as u64,
            Role::Interpreter,
            mmap_top,
            0,
        )
    }

    /// The `PT_LOAD` segments, biased, in program header order (mapped in
    /// that order: a later one replaces what it overlaps).
    #[inline]
    pub fn segments(&self) -> &[Segment] {
        &self.segs[..self.nsegs]
    }

    /// Address of the first mapped page (an interpreter's `AT_BASE`).
    pub fn base(&self) -> u64 {
        self.segs[0].map_start()
    }

    /// The `PT_INTERP` path (without its NUL), if any.
    pub fn interp_path<'a>(&self, image: &'a [u8]) -> Option<&'a [u8]> {
        let (off, len) = self.interp?;
        image.get(off as usize..off.checked_add(len)? as usize)
    }

    /// Fail with [`ElfError::DynamicUnsupported`] if the program has a
    /// `PT_INTERP` (until dynamic loading lands).
    pub fn require_static<'a>(&self, image: &'a [u8]) -> Result<(), ElfError<'a>> {
        match self.interp_path(image) {
            Some(path) => Err(ElfError::DynamicUnsupported(path)),
            None => Ok(()),
        }
    }

    /// Plan from `b` (the ELF header, and the program header table at
    /// `e_phoff` unless `table` holds it).
    fn parse(
        b: &[u8],
        table: Option<&[u8]>,
        file_len: u64,
        role: Role,
        mmap_top: u64,
        dyn_offset: u64,
    ) -> Result<LoadPlan, ElfError<'static>> {
        let mut plan = LoadPlan::EMPTY;
        plan.parse_into(b, table, file_len, role, mmap_top, dyn_offset)?;
        Ok(plan)
    }

    /// [`Self::parse`] into this plan, in place (a plan is some 800
    /// bytes: returned by value it is copied at each level). The plan is
    /// as [`LoadPlan::EMPTY`] made it: every caller's is fresh, so it is
    /// not cleared here.
    fn parse_into(
        &mut self,
        b: &[u8],
        table: Option<&[u8]>,
        file_len: u64,
        role: Role,
        mmap_top: u64,
        dyn_offset: u64,
    ) -> Result<(), ElfError<'static>> {
        let (e_type, phoff, phnum) = check_header(b, file_len)?;
        let size = phnum * PHDR_SIZE;
        // The table, read apart or in `b`; short of its end, the bytes at
        // hand end at `got` (in `b`, the caller read too little of the
        // file: see `header_span`).
        let whole = match table {
            Some(table) => table.get(..size).ok_or(phoff + table.len()),
            None => b.get(phoff..phoff + size).ok_or(b.len()),
        };
        let whole = match whole {
            Ok(whole) => whole,
            Err(got) => {
                let end = (phoff + size) as u64;
                let file_len = got as u64;
                return Err(ElfError::PhdrsTruncated { end, file_len });
            }
        };
        debug_assert!(self.is_clear(), "parse into a used plan");
        let plan = self;
        plan.e_type = e_type;
        plan.entry = le(b, 24, 8);
        plan.phnum = phnum as u64;
        // Exactly the `phnum` headers: no bounds check per header, and
        // their count is `phnum` without a division by the header size.
        let (headers, _) = whole.as_chunks::<PHDR_SIZE>();
        let found = match e_type {
            ET_DYN => plan.read_headers::<true>(headers, b, file_len, phoff as u64)?,
            _ => plan.read_headers::<false>(headers, b, file_len, phoff as u64)?,
        };
        if let Some(e) = &mut plan.load_error {
            // The failing header is the PT_LOAD after the `nsegs` read.
            e.set_index(load_index(whole, phnum, plan.nsegs));
            plan.phdr = 0;
            return Ok(());
        }
        let holder = core::mem::take(&mut plan.phdr);
        if plan.nsegs == 0 {
            return Err(ElfError::NoLoads);
        }
        plan.load_bias = match plan.choose_bias(role, mmap_top, found.max_align, dyn_offset) {
            Ok(bias) => bias,
            Err(e) => {
                plan.load_error = Some(e);
                return Ok(());
            }
        };
        // Linux 6.x takes AT_PHDR from the PT_LOAD holding e_phoff; if none
        // does, PT_PHDR is the better guess than Linux's bare load bias.
        let phdr = match holder {
            NO_HOLDER => found.pt_phdr,
            holder => holder,
        };
        plan.phdr = phdr.wrapping_add(plan.load_bias);
        let checked = match plan.load_bias {
            // No address moves, and the loop saw every segment start at or
            // above mmap_min_addr.
            0 if found.lowest >= MMAP_MIN_ADDR => Ok(()),
            0 => plan.check_unbiased(),
            _ => plan.apply_bias(found.lowest),
        };
        match checked {
            Ok(()) => plan.set_brk(),
            Err((n, mut e)) => {
                e.set_index(load_index(whole, phnum, n));
                plan.load_error = Some(e);
            }
        }
        Ok(())
    }

    /// Read the program `headers` (of image `b`, `file_len` bytes) into
    /// the plan: its segments (unbiased), interpreter and stack flag, and
    /// the `mm_struct` bounds (unbiased), which `check_load` keeps from
    /// overflowing. `phdr` is left for the caller to take: where the last
    /// segment whose file data holds offset `phoff` (the table's) maps it,
    /// or [`NO_HOLDER`]. A segment that fails [`check_load`] ends the
    /// reading with `load_error` set, its index 0 for the caller to set
    /// (the bounds are then those of the segments before it). The bounds
    /// start as [`LoadPlan::EMPTY`] has them. The code bounds, and the
    /// holder, are compared with the plan's field and stored when they
    /// move (kept in registers, they crowd the loop's values onto the
    /// stack); the others are set after the loop by [`Self::set_bounds`],
    /// from the last segment when each starts at or past the end of the
    /// one before, as the ELF specification orders them: meanwhile
    /// `elf_brk` holds the end of the last segment read, or
    /// [`OUT_OF_ORDER`] for good once one starts below it.
    /// `DYNAMIC`: the image is an `ET_DYN`, whose segments' alignment its
    /// placement needs (a loop of its own for each type: the `ET_EXEC`'s
    /// neither tests the type nor looks at `p_align` at each segment).
    #[inline(never)]
    fn read_headers<const DYNAMIC: bool>(
        &mut self,
        headers: &[[u8; PHDR_SIZE]],
        b: &[u8],
        file_len: u64,
        phoff: u64,
    ) -> Result<Gathered, ElfError<'static>> {
        let mut found = Gathered {
            max_align: 0,
            pt_phdr: 0,
            lowest: u64::MAX,
        };
        self.phdr = NO_HOLDER;
        let mut nsegs = 0;
        for raw in headers {
            match u32_at(raw, 0) {
                PT_LOAD => {
                    let ph = phdr(raw);
                    if let Err(e) = check_load(file_len, &ph) {
                        self.load_error = Some(e);
                        break;
                    }
                    let Some(seg) = self.segs.get_mut(nsegs) else {
                        return Err(ElfError::TooManyLoads);
                    };
                    *seg = Segment {
                        vaddr: ph.vaddr,
                        memsz: ph.memsz,
                        filesz: ph.filesz,
                        offset: ph.offset,
                        prot: prot_of(ph.flags),
                    };
                    nsegs += 1;
                    let fend = ph.vaddr + ph.filesz;
                    if ph.flags & PF_X != 0 {
                        if ph.vaddr < self.start_code {
                            self.start_code = ph.vaddr;
                        }
                        if fend > self.end_code {
                            self.end_code = fend;
                        }
                    }
                    self.elf_brk = match ph.vaddr >= self.elf_brk {
                        true => ph.vaddr + ph.memsz,
                        false => OUT_OF_ORDER,
                    };
                    let into = phoff.wrapping_sub(ph.offset);
                    if into < ph.filesz {
                        self.phdr = ph.vaddr + into;
                    }
                    if DYNAMIC && ph.align.is_power_of_two() && ph.align > found.max_align {
                        found.max_align = ph.align;
                    }
                }
                PT_INTERP => self.read_interp(raw, b, file_len)?,
                PT_GNU_STACK => self.exec_stack = u32_at(raw, 4) & PF_X != 0,
                PT_PHDR => found.pt_phdr = u64_at(raw, 16),
                _ => {}
            }
        }
        self.nsegs = nsegs;
        found.lowest = self.set_bounds();
        Ok(found)
    }

    /// Set `start_data`, `end_data` and `elf_brk` from the segments read
    /// (left as [`LoadPlan::EMPTY`] has them if there are none); the
    /// lowest `p_vaddr`. `elf_brk` is as [`Self::read_headers`]'s loop
    /// leaves it: unless [`OUT_OF_ORDER`], each segment starts at or past
    /// the end (`p_vaddr + p_memsz`) of the one before, so that the last
    /// one holds the highest address, file data end and memory end (its
    /// `p_filesz` ≤ `p_memsz`; `elf_brk` is its end already), and the
    /// first the lowest address; otherwise every segment is looked at.
    #[inline(always)]
    fn set_bounds(&mut self) -> u64 {
        let segs = &self.segs[..self.nsegs];
        if self.elf_brk != OUT_OF_ORDER {
            if let (Some(first), Some(last)) = (segs.first(), segs.last()) {
                self.start_data = last.vaddr;
                self.end_data = last.vaddr + last.filesz;
                return first.vaddr;
            }
            return u64::MAX;
        }
        self.elf_brk = 0;
        let mut lowest = u64::MAX;
        for seg in segs {
            self.start_data = self.start_data.max(seg.vaddr);
            self.end_data = self.end_data.max(seg.vaddr + seg.filesz);
            self.elf_brk = self.elf_brk.max(seg.vaddr + seg.memsz);
            lowest = lowest.min(seg.vaddr);
        }
        lowest
    }

    /// Take the first `PT_INTERP` header `raw`'s path (of image `b`,
    /// `file_len` bytes); a later one is ignored, as Linux does. Out of
    /// line: with the interpreter read in the header loop, the loop keeps
    /// it in registers shuffled at every header, and a static program has
    /// none.
    #[inline(never)]
    fn read_interp(
        &mut self,
        raw: &[u8; PHDR_SIZE],
        b: &[u8],
        file_len: u64,
    ) -> Result<(), ElfError<'static>> {
        if self.interp.is_none() {
            self.interp = Some(check_interp(b, file_len, &phdr(raw))?);
        }
        Ok(())
    }

    /// The error Linux would meet mapping the segments, if any (inlined:
    /// nearly always none, and the caller wants only its errno).
    #[inline]
    pub fn check_loadable(&self) -> Result<(), ElfError<'static>> {
        self.load_error.map_or(Ok(()), Err)
    }

    /// The errno of [`Self::check_loadable`]'s error, if any: one test of
    /// the error's presence, its errno out of line (mapped in line, the
    /// errno's table is reached for no error as well).
    #[inline]
    pub fn loadable(&self) -> Result<(), Errno> {
        match self.load_error {
            None => Ok(()),
            Some(e) => Err(load_errno(e)),
        }
    }

    /// The load bias by Linux's rules (randomisation off). `max_align`:
    /// the segments' largest power-of-two `p_align`.
    fn choose_bias(
        &self,
        role: Role,
        mmap_top: u64,
        max_align: u64,
        dyn_offset: u64,
    ) -> Result<u64, ElfError<'static>> {
        let first = self.segs[0].vaddr;
        if self.e_type == ET_EXEC {
            return Ok(0);
        }
        let align = page_up(max_align).max(PAGE_SIZE);
        // Every ET_DYN program, static PIE included, goes at ELF_ET_DYN_BASE
        // (0x555555554000 for a first vaddr of 0), as vmrun's layout promises.
        // Linux 6.x instead lets mmap place a static PIE top-down; vmrun keeps
        // all PIEs at one predictable base.
        if role == Role::Program {
            // `align` is a multiple of the page size: a `dyn_offset` not
            // page aligned is aligned here.
            let base = (ELF_ET_DYN_BASE + dyn_offset) & !(align - 1);
            return Ok(page_down(base.wrapping_sub(first)));
        }
        // Top-down in the mmap area, like mmap(NULL, total_mapping_size).
        let last = &self.segs[self.nsegs - 1];
        let span = page_up(last.vaddr + last.memsz).wrapping_sub(page_down(first));
        let overflow = ElfError::AddressOverflow { index: 0 };
        let base = page_down(mmap_top.checked_sub(span).ok_or(overflow)?);
        Ok(base.wrapping_sub(page_down(first)))
    }

    /// Add the bias to every address and check the segments against
    /// TASK_SIZE. An error comes with its segment's number (its index 0,
    /// for the caller to set: nothing is kept per segment for it).
    /// `lowest`: the lowest `p_vaddr`. Every segment lies between it and
    /// `elf_brk`: when those two, biased, pass the checks (and do not wrap
    /// around), every segment does, and only its address moves.
    fn apply_bias(&mut self, lowest: u64) -> Result<(), (usize, ElfError<'static>)> {
        let bias = self.load_bias;
        let (low, high) = (lowest.wrapping_add(bias), self.elf_brk.wrapping_add(bias));
        if !(low <= high && high <= TASK_SIZE && page_down(low) >= MMAP_MIN_ADDR) {
            return self.apply_bias_each();
        }
        for seg in &mut self.segs[..self.nsegs] {
            seg.vaddr = seg.vaddr.wrapping_add(bias);
        }
        self.bias_bounds();
        Ok(())
    }

    /// [`Self::apply_bias`] with each segment checked, in order: the first
    /// that fails is the error's.
    fn apply_bias_each(&mut self) -> Result<(), (usize, ElfError<'static>)> {
        let bias = self.load_bias;
        for (n, seg) in self.segs[..self.nsegs].iter_mut().enumerate() {
            seg.vaddr = seg.vaddr.wrapping_add(bias);
            let Some(end) = seg.vaddr.checked_add(seg.memsz) else {
                return Err((n, ElfError::AddressOverflow { index: 0 }));
            };
            if end > TASK_SIZE {
                let start = seg.vaddr;
                let e = ElfError::BeyondTaskSize {
                    index: 0,
                    start,
                    end,
                };
                return Err((n, e));
            }
            if seg.memsz > 0 && seg.map_start() < MMAP_MIN_ADDR {
                let start = seg.vaddr;
                return Err((n, ElfError::BelowMmapMinAddr { index: 0, start }));
            }
        }
        self.bias_bounds();
        Ok(())
    }

    /// Add the bias to the entry point and the `mm_struct` bounds.
    #[inline(always)]
    fn bias_bounds(&mut self) {
        let bias = self.load_bias;
        self.entry = self.entry.wrapping_add(bias);
        self.start_code = self.start_code.wrapping_add(bias);
        self.end_code = self.end_code.wrapping_add(bias);
        self.start_data = self.start_data.wrapping_add(bias);
        self.end_data = self.end_data.wrapping_add(bias);
        self.elf_brk = self.elf_brk.wrapping_add(bias);
    }

    /// [`Self::apply_bias`] for a bias of 0: `check_load` kept every
    /// segment below TASK_SIZE, so only `mmap_min_addr` is left to check,
    /// and no address changes.
    fn check_unbiased(&self) -> Result<(), (usize, ElfError<'static>)> {
        for (n, seg) in self.segments().iter().enumerate() {
            if seg.memsz > 0 && seg.map_start() < MMAP_MIN_ADDR {
                let start = seg.vaddr;
                return Err((n, ElfError::BelowMmapMinAddr { index: 0, start }));
            }
        }
        Ok(())
    }

    /// The initial brk, from the biased bounds.
    fn set_brk(&mut self) {
        self.start_brk = page_up(self.elf_brk);
    }
}

#[cfg(test)]
mod tests;
