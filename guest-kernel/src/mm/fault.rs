//! Page-fault resolution (Linux's `do_user_addr_fault` + `handle_mm_fault`)
//! and the kernel's access to user memory.
//!
//! A fault finds its area (growing a stack area downwards if the address is
//! just below one), checks the access against the area's protection, then
//! resolves it by kind:
//! - anonymous: as `--fault-size` says ([`FaultSize`], kept in the frame
//!   allocator): a zeroed 2 MiB frame where the whole aligned 2 MiB region
//!   lies in a writable anonymous area with nothing mapped in it yet (like
//!   THP), else, in a private writable anonymous area, consecutive zeroed
//!   frames for the free entries of the aligned 64 KiB block (its part
//!   inside the area; like multi-size THP), else one zeroed frame;
//! - file read or exec: the page-cache frame itself, read-only, plus its
//!   neighbours in an aligned window (fault-around; a missing page is read
//!   with the window's missing pages before it: read-around); a page
//!   holding the end of the file data (`data_end` or end of file) gets a
//!   private frame with the data copied and the rest zero;
//! - write to a file page, or to a present read-only page-cache page:
//!   copy-on-write into a private frame.
//!
//! Leaves are installed with Accessed (and Dirty when writable) already
//! set: the host shadows guest page tables and a first touch costs it less
//! then. Page-cache frames are never written, made writable or freed.

use super::paging::{pte, LeafRef, LeafTable, MapError, PageSize, SecondRun, Translation};
use super::phys::PhysMem;
use super::space::{check_user_range, release_frame, Mm, MmEnv, MMAP_MIN_ADDR};
use super::vma::{Backing, Prot, VmFlags, Vma, VmaSet, STACK_GUARD_GAP};
use crate::errno::{Errno, KResult};
use crate::fs::cache::{Inode, Residence};
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE, TASK_SIZE};
use vmrun_contract::{FaultSize, IoVec};

/// Page-fault error code bits (SDM 4.7).
pub mod pf {
    /// The page was present (protection violation).
    pub const P: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from user mode.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging entry.
    pub const RSVD: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const INSTR: u64 = 1 << 4;
}

/// A bit no CPU error code sets, added to one inside the fault path
/// (handed to [`Mm::resolve`]) where the faulting area was
/// [`Vma::is_fresh`] before its lookup marked it mapped: none of its
/// entries is used, so a read fault's fault-around writes them unread. In
/// the error code, which the path carries anyway, rather than in one more
/// argument kept live through it.
const FRESH_AREA: u64 = 1 << 63;

/// Pages mapped around a read fault on the boot program's image (Linux's
/// `fault_around_bytes`, 64 KiB by default there, at most one page
/// table's 2 MiB). A fault costs hundreds of emulated ring-0 instructions
/// where ring 0 is emulated, a PTE of a file lying in RAM whole about
/// two, so vmrun maps the whole 2 MiB region of the fault's page table:
/// the static glibc hello takes 14 faults instead of 22, and a static
/// busybox's headers, text and read-only data (1.8 MiB, in one region)
/// one fault where a 1 MiB window took two (a shell's spawn of `busybox true` takes
/// 2 faults fewer, one in the forked child and one after its exec).
pub const FAULT_AROUND_PAGES: u64 = 512;
/// Pages mapped around a read fault on a host file: one readahead
/// ([`crate::fs::cache::READAHEAD_PAGES`]), which a missing page's read
/// fills whole (read-around from the window's start), the whole 2 MiB
/// region of the fault's page table. Its resident pages are found and
/// mapped by runs of consecutive frames, in the faulting area and in the
/// read-only areas of the same file beside it. With those neighbours
/// mapped, 2 MiB is where a dynamic hello costs least: ld.so and libc's
/// start-up to `main` take 12 faults and 28,287 ring-0 instructions, against
/// 14 and 33,020 with 128 pages, 14 and 33,734 with 256 (a library's
/// text, 1.3 MiB for glibc's, spans several smaller windows, each taking a
/// fault); each area on its own took 18 faults and 33,038 with 128 pages
/// (the read of libc's headers then fills only a quarter of it).
pub const HOST_FAULT_AROUND_PAGES: u64 = 512;

/// Pages an anonymous fault maps at once where the area allows
/// ([`FaultSize::Block64K`] and [`FaultSize::Huge2M`]): a 64 KiB block, as
/// Linux's multi-size THP maps with 64 KiB folios enabled. A fault costs a
/// kernel entry (tens of microseconds where ring 0 is emulated) and some
/// 700 ring-0 instructions; the block's 15 more entries cost about ten
/// each.
pub const ANON_BLOCK_PAGES: u64 = 16;
/// Bytes of [`ANON_BLOCK_PAGES`].
pub const ANON_BLOCK_SIZE: u64 = ANON_BLOCK_PAGES * PAGE_SIZE;

/// The `si_code` of a SIGSEGV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegvCode {
    /// No mapping at the address (`SEGV_MAPERR`).
    MapErr = 1,
    /// The mapping forbids the access (`SEGV_ACCERR`).
    AccErr = 2,
}

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// Deliver SIGSEGV with this code.
    Segv(SegvCode),
    /// No memory for a frame or a table (Linux's OOM kill).
    OutOfMemory,
    /// A file page wholly past the end of the file: deliver SIGBUS
    /// (`BUS_ADRERR`), as Linux's `filemap_fault` does.
    PastEof,
}

/// How a fault was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A zeroed 4 KiB frame in an anonymous area.
    AnonZero,
    /// A zeroed 2 MiB frame in an anonymous area.
    AnonHuge,
    /// A 64 KiB block of zeroed 4 KiB frames in an anonymous area.
    AnonBlock,
    /// The page-cache frame, mapped read-only.
    FileMapped,
    /// A private frame holding file bytes (then zeros).
    FileCopied,
    /// Private frames holding the file bytes of the whole-data pages of a
    /// 64 KiB block, at a write.
    FileCopiedBlock,
    /// A private zero frame in a file area past its data.
    FileZero,
    /// A write to a present page-cache page: copied to a private frame.
    CopyOnWrite,
    /// A write to a present read-only private frame: made writable.
    MadeWritable,
    /// The page was already mapped as the access needs.
    Spurious,
}

/// The result of a resolved fault, for tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultOutcome {
    /// Resolution kind.
    pub kind: FaultKind,
    /// Virtual base of the page (or 2 MiB region) mapped.
    pub va: u64,
    /// Frame mapped at `va`.
    pub frame: u64,
    /// Leaf size.
    pub size: PageSize,
    /// Leaves installed (more than one with fault-around).
    pub pages_mapped: u64,
    /// Whether a stack area grew to cover the address.
    pub stack_grown: bool,
}

impl FaultOutcome {
    fn new(kind: FaultKind, va: u64, frame: u64, size: PageSize) -> Self {
        let pages_mapped = (kind != FaultKind::Spurious) as u64;
        FaultOutcome {
            kind,
            va,
            frame,
            size,
            pages_mapped,
            stack_grown: false,
        }
    }
}

/// Pages of a kernel-provided image that exec maps before any fault (the
/// vDSO's code): `pages` pages at user `va`, the image's frames from `pa`,
/// read-only with `prot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Special {
    /// First user address (page aligned).
    pub va: u64,
    /// First frame of the image.
    pub pa: u64,
    /// Pages mapped.
    pub pages: u64,
    /// Rights (never writable).
    pub prot: Prot,
}

impl Special {
    /// Its leaves, as the page table maps them.
    fn leaves(&self) -> SecondRun {
        SecondRun {
            va: self.va,
            pa: self.pa,
            n: self.pages,
            flags: user_pte_flags(self.prot, false),
        }
    }
}

/// Leaf flags for a user page of an area with `prot`; `writable` says
/// whether this frame may be written (a private frame in a writable area).
/// A `PROT_NONE` area gets a non-present leaf that keeps its frame. Read
/// from a table built by [`pte_flags_of`] (every fault asks).
#[inline]
pub fn user_pte_flags(prot: Prot, writable: bool) -> u64 {
    /// [`pte_flags_of`] for each R/W/X combination, read-only then writable.
    const TABLE: [[u64; 8]; 2] = {
        let mut t = [[0; 8]; 2];
        let mut p = 0;
        while p < 8 {
            t[0][p] = pte_flags_of(Prot(p as u8), false);
            t[1][p] = pte_flags_of(Prot(p as u8), true);
            p += 1;
        }
        t
    };
    TABLE[usize::from(writable)][usize::from(prot.0 & 7)]
}

/// [`user_pte_flags`] computed.
const fn pte_flags_of(prot: Prot, writable: bool) -> u64 {
    if !prot.is_accessible() {
        return pte::PROTNONE | pte::US;
    }
    let mut f = pte::P | pte::US | pte::A;
    if !prot.contains(Prot::EXEC) {
        f |= pte::NX;
    }
    if writable && prot.contains(Prot::WRITE) {
        f |= pte::RW | pte::D;
    }
    f
}

/// The error code a fault signal reports for a fault at `addr` (Linux's
/// `sanitize_error_code`): a user access to the kernel half always looks
/// like a protection fault, so that the kernel's layout does not show, and
/// RSVD, which describes the kernel's tables, is not passed on.
pub fn reported_error_code(addr: u64, error_code: u64) -> u64 {
    let error_code = error_code & !pf::RSVD;
    if addr >= TASK_SIZE {
        error_code | pf::P
    } else {
        error_code
    }
}

/// A fault whose error code has RSVD set. In the kernel half it is any
/// other kernel-half fault (kvm_pvm reports RSVD for some of them). Below,
/// the kernel never sets a reserved bit in a user entry, so the report is
/// the platform's (or a kernel bug): the program, not the kernel, gets the
/// fault, and a retry cannot loop.
fn reserved_bit_fault(addr: u64) -> FaultError {
    if addr >= TASK_SIZE {
        FaultError::Segv(SegvCode::MapErr)
    } else {
        FaultError::Segv(SegvCode::AccErr)
    }
}

/// Linux's `access_error` (exec of a non-exec area is refused at the first
/// fault rather than after mapping the page NX and faulting again).
fn access_error(vma: &Vma, error_code: u64) -> bool {
    if error_code & pf::WRITE != 0 {
        return !vma.prot.contains(Prot::WRITE);
    }
    if error_code & pf::P != 0 {
        return true;
    }
    if error_code & pf::INSTR != 0 && !vma.prot.contains(Prot::EXEC) {
        return true;
    }
    !vma.prot.is_accessible()
}

/// Whether [`Mm::install`] mapped the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Installed {
    Mapped,
    AlreadyMapped,
}

/// A fault that found its page already mapped.
fn spurious(va: u64) -> FaultOutcome {
    FaultOutcome::new(
        FaultKind::Spurious,
        va & !(PAGE_SIZE - 1),
        0,
        PageSize::Size4K,
    )
}

fn oom<T>(_: T) -> FaultError {
    FaultError::OutOfMemory
}

impl Mm {
    /// Resolve a page fault at `addr` with SDM `error_code`.
    ///
    /// In line in its callers: the fault entry's handler calls it on every
    /// fault, and a call of its own saves and restores seven registers.
    #[inline(always)]
    pub fn handle_page_fault<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        addr: u64,
        error_code: u64,
    ) -> Result<FaultOutcome, FaultError> {
        debug_assert!(error_code & FRESH_AREA == 0, "a CPU's error code");
        if error_code & pf::RSVD != 0 {
            return Err(reserved_bit_fault(addr));
        }
        if addr >= TASK_SIZE {
            return Err(FaultError::Segv(SegvCode::MapErr));
        }
        // The area found stays the set's hot area, so that the fault path's
        // further reads of it are cheap; it is no longer fresh (the code
        // handed on carries [`FRESH_AREA`] if it was).
        let va = addr & !(PAGE_SIZE - 1);
        match self.vmas.find_hot_mapping(addr, error_code, FRESH_AREA) {
            // The area found is checked as found, not read again.
            Some((_, v, _)) if access_error(v, error_code) => {
                Err(FaultError::Segv(SegvCode::AccErr))
            }
            // With blocks or 2 MiB pages, a fault where nothing is mapped
            // in an anonymous area goes straight to their try, without the
            // general resolution's frame (which the file faults need); one
            // page at a time, to the resolution, where it is in line.
            Some((i, v, code)) if env.frames.fault_size != FaultSize::Page4K => {
                if error_code & pf::P == 0 && v.backing == Backing::Anon {
                    let (prot, has_anon) = (v.prot, v.anon != 0);
                    return self.fault_anon_large(env, i, va, prot, has_anon);
                }
                self.resolve(env, i, va, code)
            }
            Some((i, _, code)) => self.resolve(env, i, va, code),
            None => self.fault_below_areas(env, addr, error_code),
        }
    }

    /// A fault at `addr` in area `i`.
    fn fault_in<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        addr: u64,
        error_code: u64,
    ) -> Result<FaultOutcome, FaultError> {
        let v = &self.vmas[i];
        if access_error(v, error_code) {
            return Err(FaultError::Segv(SegvCode::AccErr));
        }
        let mut code = error_code;
        if v.is_fresh() {
            self.vmas.mark_mapped(i);
            code |= FRESH_AREA;
        }
        self.resolve(env, i, addr & !(PAGE_SIZE - 1), code)
    }

    /// A fault at `addr` outside every area: in a stack area grown down to
    /// it, or SIGSEGV.
    #[inline(never)]
    fn fault_below_areas<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        addr: u64,
        error_code: u64,
    ) -> Result<FaultOutcome, FaultError> {
        const MAPERR: FaultError = FaultError::Segv(SegvCode::MapErr);
        let i = self.vmas.find_next(addr).ok_or(MAPERR)?;
        self.expand_stack(i, addr).map_err(|_| MAPERR)?;
        let out = self.fault_in(env, i, addr, error_code)?;
        Ok(FaultOutcome {
            stack_grown: true,
            ..out
        })
    }

    /// The physical address of user `va` for a kernel access (read, or
    /// write if `write`), faulting the page in as a user access would; a
    /// write to a copy-on-write page copies it. EFAULT where the program
    /// would get SIGSEGV, ENOMEM when out of memory.
    pub fn user_page<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        va: u64,
        write: bool,
    ) -> KResult<u64> {
        check_user_range(va, 1)?;
        let t = self.pt.translate(env.mem, va);
        if let Some(t) = t.filter(|t| allows(t, write)) {
            return Ok(t.pa(va));
        }
        let present = t.is_some_and(|t| t.flags & pte::P != 0);
        let ec = pf::USER | if write { pf::WRITE } else { 0 } | if present { pf::P } else { 0 };
        // A real fault invalidated the program's TLB entry for `va`; this
        // one did not, and a present entry may now map another frame or
        // allow more: flush before the program runs again.
        self.tlb_stale |= present;
        match self.handle_page_fault(env, va, ec) {
            Ok(_) => {}
            Err(FaultError::OutOfMemory) => return Err(Errno::ENOMEM),
            Err(_) => return Err(Errno::EFAULT),
        }
        let t = self.pt.translate(env.mem, va).filter(|t| allows(t, write));
        t.map(|t| t.pa(va)).ok_or(Errno::EFAULT)
    }

    /// The physical address of user `va` (checked by the caller) when its
    /// page is mapped as a kernel access (read, or write if `write`) needs
    /// and a last page table covers it: [`Self::user_page`]'s answer
    /// without its call, walk or fault, for a buffer in a region the
    /// program or the kernel just used. `None`: ask `user_page`.
    #[inline(always)]
    pub fn mapped_user_page<M: PhysMem>(&self, mem: &M, va: u64, write: bool) -> Option<u64> {
        user_leaf_pa(self.pt.cached_leaf(mem, va)?, va, write)
    }

    /// [`Self::mapped_user_page`] by a walk of the page tables, for a page
    /// no last table covers: [`Self::user_page`]'s answer for a mapped
    /// page at the cost of the walk alone. `None`: ask `user_page`.
    #[inline]
    pub fn walked_user_page<M: PhysMem>(&self, mem: &M, va: u64, write: bool) -> Option<u64> {
        user_leaf_pa(self.pt.walked_leaf(mem, va)?, va, write)
    }

    /// [`Self::user_buffer_pieces`]'s one piece for the user buffer `[va,
    /// va + len)` when it lies in one page (and is not empty) that
    /// [`Self::mapped_user_page`] finds mapped as the access needs: a short
    /// write or read in one look. `None`: ask `user_buffer_pieces`.
    #[inline(always)]
    pub fn mapped_user_piece<M: PhysMem>(
        &self,
        mem: &M,
        va: u64,
        len: u64,
        write: bool,
    ) -> Option<IoVec> {
        let in_one_page = len != 0 && len <= PAGE_SIZE - (va & (PAGE_SIZE - 1));
        if !in_one_page || va >= TASK_SIZE - len {
            return None;
        }
        let phys = self.mapped_user_page(mem, va, write)?;
        Some(IoVec { phys, len })
    }

    /// Turn the user buffer `[va, va + len)` into physical pieces in `out`
    /// (physically contiguous pages are joined), faulting pages in as
    /// [`Self::user_page`] does. Stops when `out` is full; returns the
    /// pieces used and the bytes they cover. A fault after some bytes ends
    /// the list early; a fault on the first byte is an error.
    pub fn user_buffer_pieces<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        va: u64,
        len: u64,
        write: bool,
        out: &mut [IoVec],
    ) -> KResult<(usize, u64)> {
        check_user_range(va, len)?;
        let (mut n, mut done) = (0, 0);
        while done < len {
            let cur = va + done;
            // Already mapped as needed: the whole leaf, and the following
            // entries of the same page table, without another walk.
            let run = self.mapped_run(env, cur, len - done, write);
            let (pa, chunk) = match run {
                Some(r) => r,
                None => {
                    let pa = match self.user_page(env, cur, write) {
                        Ok(pa) => pa,
                        Err(e) if done == 0 => return Err(e),
                        Err(_) => break,
                    };
                    (pa, (PAGE_SIZE - (cur & (PAGE_SIZE - 1))).min(len - done))
                }
            };
            if n > 0 && out[n - 1].phys + out[n - 1].len == pa {
                out[n - 1].len += chunk;
            } else if n < out.len() {
                out[n] = IoVec {
                    phys: pa,
                    len: chunk,
                };
                n += 1;
            } else {
                break;
            }
            done += chunk;
        }
        Ok((n, done))
    }

    /// The physically contiguous run of already-accessible memory from
    /// user `va` (at most `left` bytes): its physical address and length.
    fn mapped_run<M: PhysMem>(
        &self,
        env: &mut MmEnv<'_, M>,
        va: u64,
        left: u64,
        write: bool,
    ) -> Option<(u64, u64)> {
        let (t, entry_pa) = self.pt.translate_entry(env.mem, va)?;
        if !allows(&t, write) {
            return None;
        }
        let leaf = t.size.bytes();
        let mut len = (leaf - (va & (leaf - 1))).min(left);
        if t.size == PageSize::Size4K {
            let need = pte::P | pte::US | if write { pte::RW } else { 0 };
            let mut next = entry_pa + 8;
            let mut frame = t.frame + PAGE_SIZE;
            while len < left && next & (PAGE_SIZE - 1) != 0 {
                let e = env.mem.read_u64(next);
                if e & need != need || e & pte::ADDR_MASK != frame {
                    break;
                }
                len = (len + PAGE_SIZE).min(left);
                next += 8;
                frame += PAGE_SIZE;
            }
        }
        Some((t.pa(va), len))
    }

    /// Grow the stack area `i` down to cover `addr` (Linux's
    /// `expand_downwards`): within `RLIMIT_STACK` of its top and within
    /// `RLIMIT_AS`, keeping the guard gap above the previous area.
    pub fn expand_stack(&mut self, i: usize, addr: u64) -> KResult<()> {
        let v = *self.vmas.get(i).ok_or(Errno::EFAULT)?;
        let new_start = addr & !(PAGE_SIZE - 1);
        if !v.flags.contains(VmFlags::GROWSDOWN) || new_start >= v.start {
            return Err(Errno::EFAULT);
        }
        if v.end - new_start > self.stack_limit() || new_start < MMAP_MIN_ADDR {
            return Err(Errno::ENOMEM);
        }
        if !self.may_expand(v.start - new_start, 0) {
            return Err(Errno::ENOMEM);
        }
        if let Some(prev) = i.checked_sub(1).and_then(|p| self.vmas.get(p)) {
            let guarded = !prev.flags.contains(VmFlags::GROWSDOWN) && prev.prot.is_accessible();
            if guarded && new_start - prev.end < STACK_GUARD_GAP {
                return Err(Errno::ENOMEM);
            }
        }
        let backing = match v.backing {
            Backing::File {
                file,
                offset,
                data_end,
            } => {
                let offset = offset
                    .checked_sub(v.start - new_start)
                    .ok_or(Errno::ENOMEM)?;
                Backing::File {
                    file,
                    offset,
                    data_end,
                }
            }
            Backing::Anon => Backing::Anon,
        };
        self.vmas.update(i, |vma| {
            vma.start = new_start;
            vma.backing = backing;
        });
        self.vmas.note_resized(i);
        Ok(())
    }

    /// Resolve a fault with `error_code` at page `va` in area `i`.
    fn resolve<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        error_code: u64,
    ) -> Result<FaultOutcome, FaultError> {
        let write = error_code & pf::WRITE != 0;
        let present = error_code & pf::P != 0;
        // A not-present fault (error code P clear) needs no lookup of the
        // old entry: nothing is mapped there (one CPU, no other writer).
        if present {
            if let Some(slot) = self
                .pt
                .lookup(env.mem, va)
                .filter(|l| l.translation().flags & pte::P != 0)
            {
                return self.fault_present(env, i, va, slot, write);
            }
        }
        let v = self.vmas[i];
        match v.backing {
            Backing::Anon => {
                let (prot, has_anon) = (v.prot, v.anon != 0);
                self.fault_anon_with(env, i, va, prot, has_anon)
            }
            Backing::File { .. } => {
                let fresh = error_code & FRESH_AREA != 0;
                self.fault_file(env, (i, &v), va, write, fresh)
            }
        }
    }

    /// A fault on a present page: write to a read-only page of a writable
    /// area (copy a page-cache page, or make a private frame writable).
    /// The entry `slot` is rewritten in place, without another walk.
    ///
    /// No TLB flush follows: delivering the #PF invalidated the CPU's
    /// entries for the faulting address (Intel SDM 4.10.4.1; AMD alike),
    /// and on this one CPU nothing else caches it. `user_page`, which
    /// resolves faults the CPU never took, asks for the flush itself.
    fn fault_present<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        slot: LeafRef,
        write: bool,
    ) -> Result<FaultOutcome, FaultError> {
        let t = slot.translation();
        let base = va & !(t.size.bytes() - 1);
        if !write || t.flags & pte::RW != 0 {
            return Ok(FaultOutcome::new(
                FaultKind::Spurious,
                base,
                t.frame,
                t.size,
            ));
        }
        let v = &self.vmas[i];
        let (prot, has_anon) = (v.prot, v.anon != 0);
        let shared = v.flags.contains(VmFlags::SHARED);
        let cow = env.frames.is_shared(t.frame);
        if shared || (env.frames.is_private(env.mem, t.frame) && !cow) {
            self.pt
                .rewrite(env.mem, &slot, va, t.frame, t.flags | pte::RW | pte::D);
            self.note_written(va);
            return Ok(FaultOutcome::new(
                FaultKind::MadeWritable,
                base,
                t.frame,
                t.size,
            ));
        }
        let frame = env
            .frames
            .alloc_uninit(env.mem)
            .ok_or(FaultError::OutOfMemory)?;
        env.mem.copy(frame, t.frame, PAGE_SIZE);
        let huge = t.size != PageSize::Size4K;
        if huge {
            self.pt.unmap(env.mem, va);
        } else {
            // The copy takes the old frame's place in one write.
            let flags = user_pte_flags(prot, true);
            self.pt.rewrite(env.mem, &slot, va, frame, flags);
        }
        if cow {
            env.frames.cow_copies += 1;
        }
        if cow && env.frames.unshare(t.frame) {
            // Our mapping of the shared frame is gone (it stays counted by
            // the others); the copy is counted below.
            self.sub_user_frames(1);
        }
        if huge {
            return self.install_private(env, i, va, frame, FaultKind::CopyOnWrite);
        }
        self.add_user_frames(1);
        self.note_written(va);
        if !has_anon {
            self.attach_anon(i);
        }
        Ok(FaultOutcome::new(
            FaultKind::CopyOnWrite,
            va,
            frame,
            PageSize::Size4K,
        ))
    }

    /// Remember the page of `va`, just written after a write fault on a
    /// present read-only page, for the next fork ([`Mm::written`]).
    #[inline(always)]
    pub(super) fn note_written(&mut self, va: u64) {
        self.written[self.written_at % super::space::WRITTEN_PAGES] = va & !(PAGE_SIZE - 1);
        self.written_at = self.written_at.wrapping_add(1);
    }

    /// An anonymous fault: a 2 MiB page or a 64 KiB block where
    /// `--fault-size` and the area allow, else one zeroed page.
    pub(super) fn fault_anon<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
    ) -> Result<FaultOutcome, FaultError> {
        let v = &self.vmas[i];
        let (prot, has_anon) = (v.prot, v.anon != 0);
        if v.is_fresh() {
            self.vmas.mark_mapped(i);
        }
        self.fault_anon_with(env, i, va, prot, has_anon)
    }

    /// [`Self::fault_anon`] in area `i` with rights `prot`, which has an
    /// anonymous-memory identity if `has_anon` (the one-page case inlined
    /// into the fault path, the others not).
    #[inline(always)]
    fn fault_anon_with<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        prot: Prot,
        has_anon: bool,
    ) -> Result<FaultOutcome, FaultError> {
        if env.frames.fault_size != FaultSize::Page4K {
            return self.fault_anon_large(env, i, va, prot, has_anon);
        }
        self.fault_anon_page(env, i, va, prot, has_anon)
    }

    /// One zeroed page at `va` in area `i` (see [`Self::fault_anon_with`]).
    #[inline(always)]
    fn fault_anon_page<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        prot: Prot,
        has_anon: bool,
    ) -> Result<FaultOutcome, FaultError> {
        // One walk: find (or make) the entry, then fill it.
        let slot = match self.pt.leaf_slot(env.mem, env.frames, va) {
            Ok(slot) if !slot.is_used() => slot,
            // Mapped already (one CPU never sees that on a not-present
            // fault) or covered by a 2 MiB leaf.
            Ok(_) | Err(MapError::HugeConflict(_)) => return Ok(spurious(va)),
            Err(e) => return Err(oom(e)),
        };
        let flags = user_pte_flags(prot, true);
        let frame = env
            .frames
            .alloc_zeroed(env.mem)
            .ok_or(FaultError::OutOfMemory)?;
        self.pt.fill(env.mem, &slot, va, frame, flags);
        self.add_user_frames(1);
        if !has_anon {
            self.attach_anon(i);
        }
        Ok(FaultOutcome::new(
            FaultKind::AnonZero,
            va,
            frame,
            PageSize::Size4K,
        ))
    }

    /// A 2 MiB page ([`FaultSize::Huge2M`] only) or a 64 KiB block if they
    /// fit, else one page (the whole outcome made here, not passed on).
    #[inline(never)]
    fn fault_anon_large<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        prot: Prot,
        has_anon: bool,
    ) -> Result<FaultOutcome, FaultError> {
        // Both tries read the area as it is here: one copy.
        let v = self.vmas[i];
        if env.frames.fault_size == FaultSize::Huge2M {
            if let Some(out) = self.try_huge(env, (i, &v), va)? {
                return Ok(out);
            }
        }
        match self.try_block(env, (i, &v), va)? {
            // The area starts inside the aligned block: another may end
            // in it below (only a file area has data to copy; a heap above
            // the bss, as a rule, has none).
            Some(mut out) if out.va & (ANON_BLOCK_SIZE - 1) != 0 => {
                let aligned = out.va & !(ANON_BLOCK_SIZE - 1);
                let [prev, _, _] = self.vmas.around(i);
                let file = |p: &Vma| matches!(p.backing, Backing::File { .. });
                if let Some(prev) = prev.filter(|p| p.end > aligned && file(p)).copied() {
                    out.pages_mapped += self.copy_data_below(env, (i - 1, &prev), aligned);
                }
                Ok(out)
            }
            Some(out) => Ok(out),
            None => self.fault_anon_page(env, i, va, prot, has_anon),
        }
    }

    /// After a block fault in an anonymous area inside the aligned 64 KiB
    /// block from `aligned`: the area `prev` just below it (at `p`), which
    /// ends in the block, if it is a writable private area of the boot
    /// image that holds file data there (a program's data segment below
    /// its bss), has its pages in the block copied as its own first write
    /// would ([`Self::try_copy_block`]). A static program writes both at
    /// start-up: one fault instead of two. Returns the pages copied (0
    /// where not, or when out of memory: the area's own fault copies then).
    #[cold]
    #[inline(never)]
    fn copy_data_below<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        (p, prev): (usize, &Vma),
        aligned: u64,
    ) -> u64 {
        let Backing::File { file, data_end, .. } = prev.backing else {
            return 0;
        };
        let private = prev.prot.contains(Prot::WRITE) && !prev.flags.contains(VmFlags::SHARED);
        let va = aligned.max(prev.start);
        let Some(ino) = env.cache.get(file).filter(|ino| ino.is_image()) else {
            return 0;
        };
        let (data_end, image) = (data_end.min(ino.size), ino.image_base());
        let holds_data = prev.file_offset(va).is_some_and(|off| off < data_end);
        if !private || !holds_data {
            return 0;
        }
        if prev.is_fresh() {
            self.vmas.mark_mapped(p);
        }
        match self.copy_block(env, (p, prev), va, (file, image), data_end) {
            Ok(Some((_, pages))) => pages,
            _ => 0,
        }
    }

    /// Map the private 4 KiB `frame` at `va` with area `i`'s rights: the
    /// fault's outcome is `kind`, or spurious if the page was mapped.
    fn install_private<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        frame: u64,
        kind: FaultKind,
    ) -> Result<FaultOutcome, FaultError> {
        let flags = user_pte_flags(self.vmas[i].prot, true);
        if self.install(env, i, va, frame, PageSize::Size4K, flags)? == Installed::AlreadyMapped {
            return Ok(spurious(va));
        }
        Ok(FaultOutcome::new(kind, va, frame, PageSize::Size4K))
    }

    /// Map a zeroed 2 MiB frame if the aligned region around `va` lies in a
    /// writable anonymous area and nothing is mapped there yet.
    fn try_huge<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        (i, v): (usize, &Vma),
        va: u64,
    ) -> Result<Option<FaultOutcome>, FaultError> {
        let region = va & !(HUGE_PAGE_SIZE - 1);
        let fits = region >= v.start && v.end - region >= HUGE_PAGE_SIZE;
        if !fits || !v.prot.contains(Prot::WRITE) || !self.pt.is_2m_region_empty(env.mem, region) {
            return Ok(None);
        }
        let Some(frame) = env.frames.alloc_huge_zeroed(env.mem) else {
            return Ok(None);
        };
        let flags = user_pte_flags(v.prot, true);
        if self.install(env, i, region, frame, PageSize::Size2M, flags)? == Installed::AlreadyMapped
        {
            return Ok(Some(spurious(va)));
        }
        Ok(Some(FaultOutcome::new(
            FaultKind::AnonHuge,
            region,
            frame,
            PageSize::Size2M,
        )))
    }

    /// Map consecutive zeroed frames at the free entries of the aligned
    /// 64 KiB block around `va` (the part of it inside the area, if the
    /// area ends inside it) if the area is private, writable and anonymous
    /// (like Linux's multi-size THP with 64 KiB folios, which maps whole
    /// blocks inside the area with all entries free: mapping the inside
    /// part and the free entries saves the faults of unaligned areas' first
    /// and last pages and of holes); `None` if not, or no run of frames is
    /// free. The frames are ordinary 4 KiB frames from then on: unmapped,
    /// protected, shared by fork and freed one by one.
    fn try_block<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        (i, v): (usize, &Vma),
        va: u64,
    ) -> Result<Option<FaultOutcome>, FaultError> {
        let aligned = va & !(ANON_BLOCK_SIZE - 1);
        let block = aligned.max(v.start);
        let pages = ((aligned + ANON_BLOCK_SIZE).min(v.end) - block) / PAGE_SIZE;
        if pages < 2 || !v.prot.contains(Prot::WRITE) || v.flags.contains(VmFlags::SHARED) {
            return Ok(None);
        }
        let Some(frame) = env.frames.alloc_run_zeroed(env.mem, pages) else {
            return Ok(None);
        };
        let flags = user_pte_flags(v.prot, true);
        // One walk; entries already used (present, or PROT_NONE leaves) are
        // skipped and keep their frames, the free ones take the run's
        // frames in order, and the frames left over (part of the block
        // was mapped before, as when a heap grows) go back at once.
        let mapped = self
            .pt
            .fill_free_packed(env.mem, env.frames, block, frame, pages, flags);
        let mapped = match mapped {
            Ok(n) => n,
            Err(e) => {
                env.frames.give_back_run_end(env.mem, frame, pages);
                return match e {
                    MapError::AlreadyMapped(_) | MapError::HugeConflict(_) => Ok(None),
                    e => Err(oom(e)),
                };
            }
        };
        if mapped < pages {
            let left = frame + mapped * PAGE_SIZE;
            env.frames.give_back_run_end(env.mem, left, pages - mapped);
        }
        if mapped == 0 {
            return Ok(None);
        }
        self.add_user_frames(mapped);
        self.prepare_anon(i);
        let mut out = FaultOutcome::new(FaultKind::AnonBlock, block, frame, PageSize::Size4K);
        out.pages_mapped = mapped;
        Ok(Some(out))
    }

    /// The block fault [`Self::fault_anon`] would take at `va` in area
    /// `i` if it is private, writable, anonymous and holds `va` (one
    /// lookup for the test and the block), where nothing is mapped in `va`'s
    /// 512 GiB region (an exec's stack): the same frames and entries,
    /// mapped with [`PageTable::map_in_free_region`] instead of a walk
    /// that finds every table missing. Returns the physical address of
    /// `va`; `None`, mapping nothing, where the fault would map something
    /// else (one page, a 2 MiB page, a block the area starts inside) or
    /// the region is used. With `special` (the vDSO code, which exec maps
    /// as [`Self::map_special_area`] would), its pages go in too where they
    /// lie in the block's 1 GiB region but outside its 2 MiB one: their
    /// table is one more of the never-used frames, and no walk looks for
    /// it. The second value says whether they did.
    pub(super) fn populate_fresh_block<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        special: Option<Special>,
    ) -> Option<(u64, bool)> {
        let v = self
            .vmas
            .get(i)
            .filter(|v| super::space::takes_anon_write(v, va))?;
        let huge = va & !(HUGE_PAGE_SIZE - 1);
        let huge_fits = huge >= v.start && v.end - huge >= HUGE_PAGE_SIZE;
        let block = va & !(ANON_BLOCK_SIZE - 1);
        let pages = ((block + ANON_BLOCK_SIZE).min(v.end) - block) / PAGE_SIZE;
        let size = env.frames.fault_size;
        if size == FaultSize::Page4K
            || (size == FaultSize::Huge2M && huge_fits)
            || block < v.start
            || pages < 2
            || !self.pt.region_free(env.mem, block)
        {
            return None;
        }
        let has_anon = v.anon != 0;
        let flags = user_pte_flags(v.prot, true);
        let second = special
            .map(|sp| sp.leaves())
            .filter(|run| run.fits_with(block));
        // The block's frames then its tables, as the fault takes them
        // from the never-used frames.
        let extra = u64::from(second.is_some());
        let frame = env.frames.alloc_fresh_run(pages + 3 + extra)?;
        let tables = frame + pages * PAGE_SIZE;
        self.pt
            .map_in_free_region(env.mem, block, frame, pages, flags, tables, second);
        self.add_user_frames(pages);
        if !has_anon {
            self.attach_anon(i);
        }
        Some((frame + (va - block), second.is_some()))
    }

    /// Map an owned private `frame`; frees it again if mapping fails. A
    /// page already mapped there (a not-present fault for a page that is
    /// present, which one CPU never sees) is [`Installed::AlreadyMapped`].
    fn install<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        frame: u64,
        size: PageSize,
        flags: u64,
    ) -> Result<Installed, FaultError> {
        if let Err(e) = self.pt.map(env.mem, env.frames, va, frame, size, flags) {
            release_frame(env.mem, env.frames, frame, size);
            return match e {
                MapError::AlreadyMapped(_) | MapError::HugeConflict(_) => {
                    Ok(Installed::AlreadyMapped)
                }
                e => Err(oom(e)),
            };
        }
        self.add_user_frames(size.frames());
        self.prepare_anon(i);
        Ok(Installed::Mapped)
    }

    fn fault_file<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        (i, v): (usize, &Vma),
        va: u64,
        write: bool,
        fresh: bool,
    ) -> Result<FaultOutcome, FaultError> {
        let Backing::File {
            file,
            offset,
            data_end,
        } = v.backing
        else {
            return Err(FaultError::Segv(SegvCode::MapErr));
        };
        let ino = env
            .cache
            .get(file)
            .ok_or(FaultError::Segv(SegvCode::MapErr))?;
        let (size, residence) = (ino.size, ino.residence());
        let off = offset.saturating_add(va - v.start);
        if off >= size.next_multiple_of(PAGE_SIZE) {
            return Err(FaultError::PastEof);
        }
        let data_end = data_end.min(size);
        if v.flags.contains(VmFlags::SHARED) && off < size {
            return self.map_shared_page(env, i, va, file, off);
        }
        let whole = off.checked_add(PAGE_SIZE).is_some_and(|e| e <= data_end);
        let copy = off < data_end
            && v.prot.contains(Prot::WRITE)
            && env.frames.fault_size != FaultSize::Page4K;
        if copy {
            if let Some((frame, pages)) = self.try_copy_block(env, i, va, file, data_end)? {
                let kind = FaultKind::FileCopiedBlock;
                let mut out = FaultOutcome::new(kind, va, frame, PageSize::Size4K);
                out.pages_mapped = pages;
                return Ok(out);
            }
        }
        if !write {
            match residence {
                Residence::Special(base) if whole => {
                    let pages = (data_end - off) / PAGE_SIZE;
                    return self.map_special_around(env, i, va, base + off, pages);
                }
                Residence::Image(base) if whole => {
                    return self.map_image_around(env, i, va, (file, base, size), (off, fresh));
                }
                // A host file's page holding its end is mapped from the
                // cache as a whole one (the cache keeps the bytes past the
                // end zero), as Linux maps it, where the area's data runs
                // to the end of the file (no bss starts in the page).
                Residence::Pages if whole || ends_at_eof(v, size) => {
                    return self.map_file_around(env, i, va, file, fresh);
                }
                _ => {}
            }
        }
        let n = data_end.saturating_sub(off).min(PAGE_SIZE);
        let src = match n {
            0 => 0,
            _ => cache_page(env, file, off)?,
        };
        let frame = match n {
            PAGE_SIZE => env.frames.alloc_uninit(env.mem),
            _ => env.frames.alloc_zeroed(env.mem),
        }
        .ok_or(FaultError::OutOfMemory)?;
        if n > 0 {
            env.mem.copy(frame, src, n);
        }
        let kind = if n > 0 {
            FaultKind::FileCopied
        } else {
            FaultKind::FileZero
        };
        self.install_private(env, i, va, frame, kind)
    }

    /// A fault on a page holding file data in the writable private file
    /// area `i` where nothing of the aligned 64 KiB block around `va` is
    /// mapped yet: private copies of the area's pages holding data in the
    /// block (the last one's bytes past the data zeroed, as its own fault
    /// would leave them), in one pass over the entries and one copy per
    /// run of resident page-cache frames (the boot image: one). Pages of
    /// the block not in the cache are read first, around the fault, as
    /// Linux's mmap read-around does. A program's data segment is read
    /// and written all over at start-up (relocations, libc's state): one
    /// fault instead of one or two per page, as an anonymous block fault
    /// maps 64 KiB. Returns the frame mapped at `va` and the pages mapped
    /// (two words, which come back without the fault's outcome copied
    /// through memory), `None` if not (the caller maps the one page).
    #[inline(never)]
    fn try_copy_block<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        file: u16,
        data_end: u64,
    ) -> Result<Option<(u64, u64)>, FaultError> {
        let v = self.vmas[i];
        let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
        let image = ino.image_base();
        self.copy_block(env, (i, &v), va, (file, image), data_end)
    }

    /// [`Self::try_copy_block`] of area `v` (at `i`) of `file`, which lies
    /// whole in RAM from `image` if that is given (its page 0's frame):
    /// the area and the file as the caller has read them already. In line
    /// in both callers (the data block below an anonymous block's fault
    /// saves a second read of both).
    #[inline(always)]
    fn copy_block<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        (i, v): (usize, &Vma),
        va: u64,
        (file, image): (u16, Option<u64>),
        data_end: u64,
    ) -> Result<Option<(u64, u64)>, FaultError> {
        let off_of = |a: u64| v.file_offset(a).unwrap_or(0);
        let aligned = va & !(ANON_BLOCK_SIZE - 1);
        // The end of the pages holding data (the last one may be partial).
        let data_top = v.start + (data_end - off_of(v.start)).next_multiple_of(PAGE_SIZE);
        let block = aligned.max(v.start);
        let end = (aligned + ANON_BLOCK_SIZE).min(v.end).min(data_top);
        let pages = end.saturating_sub(block) / PAGE_SIZE;
        if pages < 2 {
            return Ok(None);
        }
        let first = off_of(block) / PAGE_SIZE;
        let end = first + pages;
        // The boot image lies in RAM whole: its pages are one run there.
        let image = image.map(|base| base + first * PAGE_SIZE);
        if image.is_none() && !self.read_block(env, file, block, (first, end))? {
            return Ok(None);
        }
        let Some((dst, clean)) = env.frames.alloc_run_exact(pages) else {
            return Ok(None);
        };
        let flags = user_pte_flags(v.prot, true);
        let mapped = self
            .pt
            .map_pages_if_free(env.mem, env.frames, block, dst, pages, flags);
        if mapped != Ok(true) {
            // Part of the block is mapped (or a 2 MiB page covers it):
            // the frames go back unwritten.
            env.frames.give_back_run_end(env.mem, dst, pages);
            return match mapped {
                Err(MapError::OutOfMemory) => Err(FaultError::OutOfMemory),
                _ => Ok(None),
            };
        }
        // The bytes past the data in the last page (less than a page) are
        // zero: never-used frames are, so only the data is copied into
        // them; used ones get the whole pages, then the zeros.
        let past_data = (off_of(block) + pages * PAGE_SIZE).saturating_sub(data_end);
        let copied = pages * PAGE_SIZE - if clean { past_data } else { 0 };
        // Nothing runs between the entries' writes and the copies.
        if let Some(src) = image {
            env.mem.copy(dst, src, copied);
        } else {
            let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
            let mem = &mut *env.mem;
            ino.each_resident_run(first, end, |idx, src, n| {
                let to = (idx - first) * PAGE_SIZE;
                mem.copy(dst + to, src, (n * PAGE_SIZE).min(copied - to));
            });
        }
        if past_data > 0 && !clean {
            env.mem.zero(dst + pages * PAGE_SIZE - past_data, past_data);
        }
        self.add_user_frames(pages);
        if v.anon == 0 {
            self.attach_anon(i);
        }
        Ok(Some((dst + (va - block), pages)))
    }

    /// For [`Self::try_copy_block`] of a host file: read pages `[first,
    /// end)` of `file` (mapped from `block` on) into the cache where they
    /// are not, once it is known that the copies will be mapped. False if
    /// they will not be, or a page cannot be read.
    #[inline(never)]
    fn read_block<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        file: u16,
        block: u64,
        (first, end): (u64, u64),
    ) -> Result<bool, FaultError> {
        let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
        let mut at = match ino.next_resident_run(first, end) {
            Some((idx, _, n)) if idx == first => first + n,
            _ => first,
        };
        // Before reading from the host, that the copies will be mapped.
        if at < end && !self.pt.entries_free(env.mem, block, end - first) {
            return Ok(false);
        }
        while at < end {
            let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
            match ino.next_resident_run(at, end) {
                Some((idx, _, n)) if idx == at => at += n,
                // A gap: read it (up to the next cached page) from here.
                _ if cache_page(env, file, at * PAGE_SIZE).is_ok() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// A page of a shared file mapping: the page-cache frame itself, with
    /// the area's rights (writes land in the cache and are written back).
    fn map_shared_page<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        file: u16,
        off: u64,
    ) -> Result<FaultOutcome, FaultError> {
        let frame = cache_page(env, file, off)?;
        let flags = user_pte_flags(self.vmas[i].prot, true);
        let r = self
            .pt
            .map(env.mem, env.frames, va, frame, PageSize::Size4K, flags);
        match r {
            Ok(()) => Ok(FaultOutcome::new(
                FaultKind::FileMapped,
                va,
                frame,
                PageSize::Size4K,
            )),
            Err(MapError::AlreadyMapped(_) | MapError::HugeConflict(_)) => Ok(spurious(va)),
            Err(e) => Err(oom(e)),
        }
    }

    /// Map the page-cache page at `va` (in area `i`) of host file `file`
    /// read-only, reading it from the host if needed (with the file's
    /// pages missing before it back to the window's start, in file order:
    /// an ELF's areas lie in the file as in memory), with the resident
    /// pages holding data of its aligned window ([`HOST_FAULT_AROUND_PAGES`])
    /// that are not mapped yet: those of area `i` and of the read-only private areas of
    /// the same file beside it in its leaf of the area tree, as
    /// [`Self::map_image_around`] maps the boot image's (a library's
    /// headers, text and read-only data are three areas). A neighbour that
    /// had no page mapped yet ([`Vma::is_fresh`]: ld.so maps each segment
    /// over the library's reserved span, then faults them one by one) is
    /// marked as mapped. Where such an area (or area `i`, if it had no page
    /// mapped) reaches past the window, its cached pages in the next 2 MiB
    /// region are mapped too, written unread: glibc's headers end one
    /// region and its text and read-only data fill the next, which took a
    /// fault of its own.
    fn map_file_around<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        file: u16,
        fresh: bool,
    ) -> Result<FaultOutcome, FaultError> {
        let v = &self.vmas[i];
        let off = v.file_offset(va).unwrap_or(0);
        let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
        let window = HOST_FAULT_AROUND_PAGES * PAGE_SIZE;
        let lo = va & !(window - 1);
        let idx = off / PAGE_SIZE;
        let frame = match ino.resident(idx) {
            Some(frame) => frame,
            None => cache_fill(env, file, idx, off.saturating_sub(va - lo) / PAGE_SIZE)?,
        };
        let ino = env.cache.get(file).ok_or(FaultError::OutOfMemory)?;
        let (vmas, mem) = (&self.vmas, &mut *env.mem);
        let table = &mut self.pt.leaf_table(mem, env.frames, va).map_err(oom)?;
        let (leaf, first, own, from) = window_areas(vmas, i, lo)?;
        let mut w = HostWindow {
            file,
            size: ino.size,
            lo,
            hi: lo + window,
            only_free: false,
        };
        let own = (own - from, fresh);
        let (mut mapped, mut marks, on) = fill_host_areas(table, mem, ino, &leaf[from..], own, &w);
        // An area with no page mapped before this fault that reaches past
        // the window (a library's text mapped over its reservation, whose
        // headers' fault comes first) goes on into the next region's
        // table, its entries written unread.
        if on && w.hi < TASK_SIZE {
            (w.lo, w.hi, w.only_free) = (w.hi, w.hi + window, true);
            let table = &mut self.pt.leaf_table(mem, env.frames, w.lo).map_err(oom)?;
            let (more, more_marks, _) = fill_host_areas(table, mem, ino, &leaf[from..], own, &w);
            mapped += more;
            marks |= more_marks;
        }
        // Each fresh neighbour mapped in (a bit per position from `from`).
        let mut bits = marks;
        while bits != 0 {
            self.vmas
                .mark_mapped(first + from + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
        Ok(file_mapped(va, frame, mapped))
    }

    /// [`Self::map_file_around`] in the boot image (`file`, lying in RAM
    /// whole from `base`, `size` bytes; `va` is at file offset `off`):
    /// the whole-data pages not mapped yet in the aligned window around
    /// `va` ([`FAULT_AROUND_PAGES`]) of area `i` and of the read-only
    /// private areas of the same file beside it (an ELF's headers, text
    /// and read-only data are three areas: each page mapped as a read
    /// fault in its own area would map it; the static hello takes 6 faults
    /// instead of 8). Writable neighbours are left to their own faults,
    /// which copy. One walk to the one table they share (a fresh table's
    /// entries are written without being read), then one pass over the
    /// areas of area `i`'s leaf of the area tree that reach into the
    /// window, from the first (a neighbour in another leaf is left to its
    /// own fault). In line in the fault's resolution, which holds all it
    /// needs in registers. Area `i` had no page mapped before this fault
    /// if `fresh` (its mark was taken by the lookup); a forked child's
    /// neighbours with none ([`VmFlags::UNCOPIED`]) are marked as mapped.
    #[inline(always)]
    fn map_image_around<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        (file, base, size): (u16, u64, u64),
        (off, fresh): (u64, bool),
    ) -> Result<FaultOutcome, FaultError> {
        let (lo, hi) = image_window(va);
        let (vmas, mem) = (&self.vmas, &mut *env.mem);
        let table = &mut self.pt.leaf_table(mem, env.frames, va).map_err(oom)?;
        let (leaf, first, own, from) = window_areas(vmas, i, lo)?;
        let w = ImageWindow {
            file,
            base,
            size,
            lo,
            hi,
        };
        let own = (own - from, fresh);
        let mapped = fill_image_areas(table, mem, &leaf[from..], own, &w);
        if self.uncopied {
            self.mark_uncopied_mapped(first + from, hi);
        }
        Ok(file_mapped(va, base + off, mapped))
    }

    /// After [`Self::map_image_around`] mapped pages in a forked child's
    /// neighbours that had none ([`VmFlags::UNCOPIED`]): clear the mark of
    /// the areas of area `i`'s leaf from it on that start below the
    /// window's end `hi` (one that got no page loses no more than its
    /// unread writes). Out of line: a child's first faults alone come
    /// here.
    #[cold]
    #[inline(never)]
    fn mark_uncopied_mapped(&mut self, i: usize, hi: u64) {
        self.vmas.clear_uncopied(i, hi);
    }

    /// [`Self::map_image_around`] in a kernel-provided mapping ([vvar],
    /// [vdso]) `v`, where `va` maps the frame `pa`, the first of `pages`
    /// whole-data pages: the whole-data pages of `v` alone in the window
    /// around `va` (the vDSO's two, its ELF header that the C library
    /// reads at start-up and its code), one run of the image's frames
    /// through one walk. No neighbour is of the same image (the three
    /// images are separate files; a part of one split off by `mprotect`
    /// takes its own fault, as Linux's special mappings fault a page at a
    /// time), so the area tree is not looked at.
    #[inline(always)]
    fn map_special_around<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        pa: u64,
        pages: u64,
    ) -> Result<FaultOutcome, FaultError> {
        let v = &self.vmas[i];
        let (lo, hi) = image_window(va);
        let from = lo.max(v.start);
        let to = hi.min(v.end).min(va + pages * PAGE_SIZE);
        let flags = user_pte_flags(v.prot, false);
        let n = (to - from) / PAGE_SIZE;
        let table = &mut self.pt.leaf_table(env.mem, env.frames, va).map_err(oom)?;
        let mapped = table.fill_free_inside(env.mem, from, pa - (va - from), n, flags);
        Ok(file_mapped(va, pa, mapped))
    }

    /// Map at exec the pages of a kernel-provided image (the vDSO's
    /// code), as their first fault would map them: where
    /// [`Self::populate_fresh_block`] did not map them with the stack.
    pub fn map_special_area<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, sp: Special) {
        let Ok(mut table) = self.pt.leaf_table(env.mem, env.frames, sp.va) else {
            return;
        };
        let run = sp.leaves();
        table.fill_free(env.mem, run.va, run.pa, run.n, run.flags);
    }

    /// Map at exec the page of the interpreter's entry point `entry`, and
    /// its fault-around, as the instruction fetch there that the program
    /// starts with would, and the page of the program's headers `phdr`
    /// (`AT_PHDR`) as the interpreter's first read of them would: the
    /// files lie in the page cache since their headers were read, so this
    /// reads nothing. A page that cannot be mapped so is left to its fault.
    #[inline(never)]
    pub fn map_entry<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, entry: u64, phdr: u64) {
        let _ = self.handle_page_fault(env, entry, pf::USER | pf::INSTR);
        if phdr != 0 {
            let _ = self.handle_page_fault(env, phdr, pf::USER);
        }
    }

    /// Give area `i` an anonymous-memory identity if it has none, reusing
    /// an adjacent area's where they could merge but for protection (as
    /// Linux's `find_mergeable_anon_vma` does).
    #[inline]
    fn prepare_anon(&mut self, i: usize) {
        if self.vmas[i].anon == 0 {
            self.attach_anon(i);
        }
    }

    /// [`Self::prepare_anon`] for an area without an identity yet.
    fn attach_anon(&mut self, i: usize) {
        self.vmas.attach_anon(i, &mut self.last_anon);
    }
}

/// The outcome of a read fault that mapped the page-cache frame `frame`
/// at `va` and `mapped` pages in all.
#[inline(always)]
fn file_mapped(va: u64, frame: u64, mapped: u64) -> FaultOutcome {
    let mut out = FaultOutcome::new(FaultKind::FileMapped, va, frame, PageSize::Size4K);
    out.pages_mapped = mapped;
    out
}

/// The fault-around window `[lo, hi)` of a fault at `va` in memory the
/// kernel holds whole (the boot image, the vDSO and vvar): the aligned
/// [`FAULT_AROUND_PAGES`] around `va`, cut to the 2 MiB region of `va`'s
/// page table, so that every run mapped in it stays inside that one table
/// ([`LeafTable::fill_next_uncounted`] relies on it).
#[inline(always)]
fn image_window(va: u64) -> (u64, u64) {
    let window = FAULT_AROUND_PAGES * PAGE_SIZE;
    let lo = va & !(window - 1);
    (lo, (lo + window).min((va | (HUGE_PAGE_SIZE - 1)) + 1))
}

/// The areas of the area tree's leaf holding area `i` (a fault's), the
/// index of its first, `i`'s place in it, and the place of the first area
/// there that reaches into a fault-around window starting at `lo`: the
/// leaf's areas are in address order, so those from the first ending above
/// `lo` reach into the window until one starts at its end (a neighbour in
/// another leaf is left to its own fault).
#[inline(always)]
fn window_areas(
    vmas: &VmaSet,
    i: usize,
    lo: u64,
) -> Result<(&[Vma], usize, usize, usize), FaultError> {
    let (leaf, first) = vmas.leaf_of(i);
    let own = i.wrapping_sub(first);
    if own >= leaf.len() {
        return Err(FaultError::OutOfMemory);
    }
    let mut from = own;
    while let Some(n) = from.checked_sub(1).and_then(|p| leaf.get(p)) {
        if n.end <= lo {
            break;
        }
        from -= 1;
    }
    Ok((leaf, first, own, from))
}

/// A boot image fault-around's window `[lo, hi)` (in one page table's
/// span) over the image `file`, lying in RAM whole from `base`, `size`
/// bytes.
struct ImageWindow {
    file: u16,
    base: u64,
    size: u64,
    lo: u64,
    hi: u64,
}

/// Map read-only through `table` the pages in window `w` holding file
/// data whole of `areas` (in address order, from the first reaching into
/// the window): those of area `own` (private and accessible, as its fault
/// found; with no page mapped before if `own_fresh`) and of the read-only
/// private areas of the same file, a forked child's that had no page
/// mapped ([`VmFlags::UNCOPIED`]) among them (its caller clears their
/// marks). Returns the pages mapped. A neighbour that mmap made and that
/// has had no fault yet
/// ([`VmFlags::FRESH`]) is left to its own fault, which records that
/// pages are mapped in it. The runs of an area with no page mapped are
/// written unread. In line in the fault's resolution (a call's saved
/// registers and moved arguments cost more than the loop's spills).
#[inline(always)]
fn fill_image_areas<M: PhysMem>(
    table: &mut LeafTable<'_>,
    mem: &mut M,
    areas: &[Vma],
    (own, own_fresh): (usize, bool),
    w: &ImageWindow,
) -> u64 {
    let own = areas
        .get(own)
        .map_or(core::ptr::null(), |v| v as *const Vma);
    let mut mapped = 0;
    for n in areas {
        if n.start >= w.hi {
            break;
        }
        let (offset, data_end) = match n.backing {
            Backing::File {
                file,
                offset,
                data_end,
            } if file == w.file => (offset, data_end.min(w.size)),
            _ => continue,
        };
        // Readable or executable, not writable, not shared.
        let read_only = matches!(n.prot.0, 1 | 4 | 5) && !n.flags.contains(VmFlags::SHARED);
        if (!read_only || n.flags.contains(VmFlags::FRESH)) && !core::ptr::eq(n, own) {
            continue;
        }
        let data_top = n.start + data_end.saturating_sub(offset) / PAGE_SIZE * PAGE_SIZE;
        let (from, to) = (w.lo.max(n.start), w.hi.min(n.end).min(data_top));
        if to <= from {
            continue;
        }
        // In the window's table, above the runs before, and the image's
        // pages; free whole in an area with no page mapped (the faulting
        // one's mark was taken by the lookup).
        let free = || n.flags.contains(VmFlags::UNCOPIED) || own_fresh && core::ptr::eq(n, own);
        let entry = (w.base + offset + (from - n.start)) | user_pte_flags(n.prot, false);
        let pages = (to - from) / PAGE_SIZE;
        mapped += table.fill_next_uncounted(mem, from, entry, (pages, free));
    }
    table.add_to_count(mem, mapped);
    mapped
}

/// The end of a host file area's pages that a read maps from the page
/// cache whole, for the area's `data_end` and the file's `size`: up to the
/// end of the file's last page (its bytes past the end are zero in the
/// cache) unless a bss starts before it, then up to the bss's page.
#[inline(always)]
fn host_data_top(data_end: u64, size: u64) -> u64 {
    match data_end >= size {
        true => size.next_multiple_of(PAGE_SIZE),
        false => data_end,
    }
}

/// Whether the data of file area `v` runs to the end of its file (`size`
/// bytes; no bss starts in the file's last page).
#[inline(always)]
fn ends_at_eof(v: &Vma, size: u64) -> bool {
    matches!(v.backing, Backing::File { data_end, .. } if data_end >= size)
}

/// A host file fault-around's window `[lo, hi)` (in one page table's
/// span) over `file`, `size` bytes long.
struct HostWindow {
    file: u16,
    size: u64,
    lo: u64,
    hi: u64,
    /// Only the areas whose entries are known free (the next region's,
    /// past the fault's own).
    only_free: bool,
}

/// Map read-only through `table` the cached pages of `ino` (the file of
/// window `w`) in the window that hold file data and are not mapped yet,
/// of `areas` (in address order, from the first reaching into the
/// window): those of area `own` (private, as its fault found), and of the
/// read-only private areas of the same file, each up to its
/// [`host_data_top`].
/// Each run of physically consecutive cached pages (a fill's readahead is
/// one or a few) is written as a run ([`LeafTable::fill_free_inside`]);
/// in an area that had no page mapped before this fault (area `own` if
/// `own_fresh`, whose mark its lookup took; a fresh neighbour) unread
/// ([`LeafTable::fill_known_free`]).
/// Returns the pages mapped, a bit for each fresh neighbour (by
/// position in `areas`, the first 64) that a page was mapped in, and
/// whether an area whose entries were known free reaches past the window.
/// With `w.only_free`, only such areas are mapped.
fn fill_host_areas<M: PhysMem>(
    table: &mut LeafTable<'_>,
    mem: &mut M,
    ino: &Inode,
    areas: &[Vma],
    (own, own_fresh): (usize, bool),
    w: &HostWindow,
) -> (u64, u64, bool) {
    let (mut mapped, mut fresh, mut on) = (0, 0, false);
    for (k, n) in areas.iter().enumerate() {
        if n.start >= w.hi {
            break;
        }
        let (offset, top) = match n.backing {
            Backing::File {
                file,
                offset,
                data_end,
            } if file == w.file => (offset, host_data_top(data_end, w.size)),
            _ => continue,
        };
        // Readable or executable, not writable, not shared (and, if fresh,
        // among the first 64, whose marks come back).
        let read_only = matches!(n.prot.0, 1 | 4 | 5) && !n.flags.contains(VmFlags::SHARED);
        if !(k == own || read_only && (k < 64 || !n.is_fresh())) {
            continue;
        }
        // An area that had no page mapped before this fault (the faulting
        // one's mark was taken by the lookup) has every entry free: written
        // unread.
        let known_free = if k == own { own_fresh } else { n.is_fresh() };
        if w.only_free && !known_free {
            continue;
        }
        let data_top = n.start + top.saturating_sub(offset) / PAGE_SIZE * PAGE_SIZE;
        let (from, to) = (w.lo.max(n.start), w.hi.min(n.end).min(data_top));
        if to <= from {
            continue;
        }
        on |= known_free && data_top > w.hi && n.end > w.hi;
        let flags = user_pte_flags(n.prot, false);
        let first = (offset + (from - n.start)) / PAGE_SIZE;
        let end = first + (to - from) / PAGE_SIZE;
        let before = mapped;
        if known_free {
            ino.each_resident_run(first, end, |idx, pa, len| {
                let at = from + (idx - first) * PAGE_SIZE;
                mapped += table.fill_known_free(mem, at, pa, len, flags);
            });
        } else {
            ino.each_resident_run(first, end, |idx, pa, len| {
                let at = from + (idx - first) * PAGE_SIZE;
                mapped += table.fill_free_inside(mem, at, pa, len, flags);
            });
        }
        if mapped > before && n.is_fresh() {
            fresh |= 1 << k;
        }
    }
    (mapped, fresh, on)
}

/// The page-cache frame holding file offset `off` (page aligned) of
/// `file`; a page that cannot be read is SIGBUS as in Linux (reported as
/// the fault's SIGSEGV until signals carry codes), no memory is OOM. A
/// resident page is found here, with no call to the cache's reads;
/// [`cache_fill`] reads the others.
#[inline(never)]
fn cache_page<M: PhysMem>(env: &mut MmEnv<'_, M>, file: u16, off: u64) -> Result<u64, FaultError> {
    let idx = off / PAGE_SIZE;
    match env.cache.get(file).and_then(|ino| ino.resident(idx)) {
        Some(frame) => Ok(frame),
        None => cache_fill(env, file, idx, idx),
    }
}

/// [`cache_page`] for page `idx` not in RAM: read from the host, with the
/// pages missing before it back to page `first` (read-around).
#[inline(never)]
fn cache_fill<M: PhysMem>(
    env: &mut MmEnv<'_, M>,
    file: u16,
    idx: u64,
    first: u64,
) -> Result<u64, FaultError> {
    env.cache
        .fill_around(env.mem, env.frames, &mut *env.host, file, idx, first)
        .map_err(|e| match e {
            Errno::ENOMEM => FaultError::OutOfMemory,
            _ => FaultError::Segv(SegvCode::MapErr),
        })
}

/// Whether a translation allows a kernel access on behalf of the user.
/// The physical address of user `va` through its 4 KiB leaf entry `e` if
/// that maps it as a kernel access (read, or write if `write`) needs.
#[inline(always)]
fn user_leaf_pa(e: u64, va: u64, write: bool) -> Option<u64> {
    let need = pte::P | pte::US | if write { pte::RW } else { 0 };
    (e & need == need).then_some((e & pte::ADDR_MASK) | (va & (PAGE_SIZE - 1)))
}

fn allows(t: &Translation, write: bool) -> bool {
    let need = pte::P | pte::US | if write { pte::RW } else { 0 };
    t.flags & need == need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::space::STACK_LIMIT;
    use crate::mm::testmem::Fixture;

    const U: u64 = pf::USER;
    const UW: u64 = pf::USER | pf::WRITE;
    const FP: u64 = Fixture::FILE_PHYS;
    const MIB: u64 = 1 << 20;

    fn fault(
        mm: &mut Mm,
        fx: &mut Fixture,
        addr: u64,
        ec: u64,
    ) -> Result<FaultOutcome, FaultError> {
        mm.handle_page_fault(&mut fx.env(), addr, ec)
    }

    fn file_vma(start: u64, pages: u64, prot: Prot, offset: u64, data_end: u64) -> Vma {
        Vma {
            backing: Backing::File {
                file: 0,
                offset,
                data_end,
            },
            ..Vma::anon(start, start + pages * PAGE_SIZE, prot, VmFlags::NONE)
        }
    }

    /// `v` (a [`file_vma`]) backed by the page cache's file `id`.
    fn of_file(mut v: Vma, id: u16) -> Vma {
        if let Backing::File { file, .. } = &mut v.backing {
            *file = id;
        }
        v
    }

    /// mmap of the file in inode `id` as `areas` say (start, pages,
    /// rights, file offset), each area fresh as mmap makes it.
    fn map_file_areas(fx: &mut Fixture, mm: &mut Mm, id: u16, areas: &[(u64, u64, Prot, u64)]) {
        for &(start, pages, prot, offset) in areas {
            let v = of_file(file_vma(start, pages, prot, offset, u64::MAX), id);
            mm.map_region(&mut fx.env(), v).unwrap();
        }
    }

    /// A host file of `size` bytes in the page cache, none of it cached,
    /// read through `handle` (None: it cannot be read).
    fn host_file(fx: &mut Fixture, size: u64, handle: Option<u64>) -> u16 {
        let info = crate::fs::cache::FileInfo {
            key: crate::fs::cache::InodeKey { dev: 1, ino: 2 },
            size,
            mtime: (0, 0),
        };
        let (id, _) = fx
            .cache
            .attach(&mut fx.mem, &mut fx.frames, info, b"/file2", handle, false)
            .unwrap();
        id
    }

    /// A host that serves reads of a file of `len` bytes and records each
    /// read's (offset, length) in bytes (the bytes are not checked).
    struct Reader {
        req: vmrun_contract::fs::FsRequest,
        len: u64,
        reads: Vec<(u64, u64)>,
    }

    impl Reader {
        fn new(len: u64) -> Self {
            Reader {
                req: vmrun_contract::fs::FsRequest::zeroed(),
                len,
                reads: Vec::new(),
            }
        }
    }

    impl crate::fs::host::FsHost for Reader {
        fn req(&mut self) -> &mut vmrun_contract::fs::FsRequest {
            &mut self.req
        }
        fn submit(&mut self, iov: &[IoVec]) -> i64 {
            let len: u64 = iov.iter().map(|v| v.len).sum();
            let len = len.min(self.len.saturating_sub(self.req.offset));
            self.reads.push((self.req.offset, len));
            len as i64
        }
    }

    fn setup() -> (Fixture, Mm) {
        let mut fx = Fixture::new();
        let mm = fx.mm();
        (fx, mm)
    }

    fn flags_at(mm: &Mm, fx: &Fixture, va: u64) -> u64 {
        mm.pt.translate(&fx.mem, va).unwrap().flags
    }

    #[test]
    fn pte_flags_follow_the_area_rights_and_the_frame_writability() {
        let rw = pte::P | pte::US | pte::A | pte::NX;
        assert_eq!(user_pte_flags(Prot::RW, true), rw | pte::RW | pte::D);
        assert_eq!(user_pte_flags(Prot::RW, false), rw);
        assert_eq!(user_pte_flags(Prot::READ, true), rw);
        let rx = Prot::READ | Prot::EXEC;
        assert_eq!(user_pte_flags(rx, true), pte::P | pte::US | pte::A);
        assert_eq!(user_pte_flags(Prot::NONE, true), pte::PROTNONE | pte::US);
        for p in 0..8 {
            for w in [false, true] {
                assert_eq!(user_pte_flags(Prot(p), w), pte_flags_of(Prot(p), w));
            }
        }
    }

    #[test]
    fn anon_read_fault_maps_zeroed_frame_with_accessed_and_dirty() {
        let (mut fx, mut mm) = setup();
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(Vma::anon(0x1000_0000, 0x1000_4000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x1000_1010, U).unwrap();
        assert_eq!(
            (out.kind, out.va, out.size),
            (FaultKind::AnonZero, 0x1000_1000, PageSize::Size4K)
        );
        let want = pte::P | pte::US | pte::A | pte::RW | pte::D | pte::NX;
        assert_eq!(flags_at(&mm, &fx, 0x1000_1000), want);
        assert_eq!(fx.mem.byte(out.frame + 7), 0);
        assert_eq!(mm.user_frames, 1);
        assert_ne!(mm.vmas.get(0).unwrap().anon, 0, "anon identity attached");
    }

    #[test]
    fn a_first_fault_takes_a_touching_mergeable_neighbours_identity() {
        let (mut fx, mut mm) = setup();
        fx.frames.fault_size = FaultSize::Page4K;
        // Writable both: the same flags (accounted), other rights.
        let rwx = Prot::RW | Prot::EXEC;
        let area = |start: u64, prot| Vma::anon(start, start + 0x4000, prot, VmFlags::NONE);
        for (start, prot) in [
            (0x1000_0000, Prot::RW),
            (0x1000_4000, rwx),
            (0x2000_0000, Prot::RW),
            (0x4000_0000, Prot::RW),
            (0x4000_4000, rwx),
            (0x4000_8000, Prot::RW),
        ] {
            mm.vmas.insert(area(start, prot)).unwrap();
        }
        let id_at = |mm: &Mm, va: u64| {
            let i = mm.vmas.find_next(va).unwrap();
            mm.vmas.get(i).unwrap().anon
        };
        for va in [
            0x1000_0000,
            0x1000_4000,
            0x2000_0000,
            0x4000_0000,
            0x4000_4000,
        ] {
            fault(&mut mm, &mut fx, va, U).unwrap();
        }
        let first = id_at(&mm, 0x1000_0000);
        assert_ne!(first, 0);
        assert_eq!(id_at(&mm, 0x1000_4000), first, "the previous area's");
        let apart = id_at(&mm, 0x2000_0000);
        assert!(
            apart != 0 && apart != first,
            "no touching neighbour: a new one"
        );
        // A touching next area that could merge decides, even without an
        // identity yet: then a new one, not the previous area's.
        let prev = id_at(&mm, 0x4000_0000);
        let mid = id_at(&mm, 0x4000_4000);
        assert!(mid != 0 && mid != prev);
        assert_eq!(id_at(&mm, 0x4000_8000), 0, "not faulted yet");
        fault(&mut mm, &mut fx, 0x4000_8000, U).unwrap();
        assert_eq!(id_at(&mm, 0x4000_8000), mid, "the previous area's");
    }

    #[test]
    fn anon_fault_in_large_writable_area_maps_huge_page() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4040_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x4010_0123, UW).unwrap();
        assert_eq!(
            (out.kind, out.va, out.size),
            (FaultKind::AnonHuge, 0x4000_0000, PageSize::Size2M)
        );
        assert_eq!(out.frame % HUGE_PAGE_SIZE, 0);
        assert_eq!(mm.user_frames, 512);
        let again = fault(&mut mm, &mut fx, 0x4010_0000, UW).unwrap();
        assert_eq!(again.kind, FaultKind::Spurious);
    }

    #[test]
    fn anon_fault_uses_4k_when_region_not_inside_area_or_area_read_only() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x4000_1000, 0x4040_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        mm.vmas
            .insert(Vma::anon(
                0x5000_0000,
                0x5040_0000,
                Prot::READ,
                VmFlags::NONE,
            ))
            .unwrap();
        assert_eq!(
            fault(&mut mm, &mut fx, 0x4000_5000, U).unwrap().kind,
            FaultKind::AnonBlock,
            "not the 2 MiB region"
        );
        assert_eq!(
            fault(&mut mm, &mut fx, 0x4020_0000, U).unwrap().kind,
            FaultKind::AnonHuge
        );
        assert_eq!(
            fault(&mut mm, &mut fx, 0x5000_0000, U).unwrap().kind,
            FaultKind::AnonZero
        );
        assert_eq!(flags_at(&mm, &fx, 0x5000_0000) & pte::RW, 0);
    }

    #[test]
    fn anon_fault_in_partly_mapped_region_stays_4k_until_region_empties() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4040_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(
            fault(&mut mm, &mut fx, 0x4000_0000, U).unwrap().kind,
            FaultKind::AnonHuge
        );
        mm.munmap(&mut fx.env(), 0x4000_0000, PAGE_SIZE).unwrap();
        assert_eq!(mm.user_frames, 511);
        mm.vmas
            .insert_merged(Vma::anon(0x4000_0000, 0x4000_1000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(mm.vmas.len(), 1, "merged back");
        let in_use = fx.frames.in_use();
        let out = fault(&mut mm, &mut fx, 0x4000_0000, U).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonBlock, 1));
        assert_eq!(mm.user_frames, 512);
        assert_eq!(fx.frames.in_use(), in_use + 1, "15 frames given back");
        mm.munmap(&mut fx.env(), 0x4000_0000, HUGE_PAGE_SIZE)
            .unwrap();
        mm.vmas
            .insert_merged(Vma::anon(0x4000_0000, 0x4020_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(
            fault(&mut mm, &mut fx, 0x4000_0000, U).unwrap().kind,
            FaultKind::AnonHuge
        );
        assert_eq!(mm.user_frames, 512);
    }

    #[test]
    fn anon_fault_maps_the_aligned_64k_block_when_it_lies_in_the_area() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x1000_0000, 0x1004_1000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x1001_3008, UW).unwrap();
        assert_eq!(
            (out.kind, out.va, out.pages_mapped),
            (FaultKind::AnonBlock, 0x1001_0000, ANON_BLOCK_PAGES)
        );
        assert_eq!(mm.user_frames, ANON_BLOCK_PAGES);
        for k in 0..ANON_BLOCK_PAGES {
            let t = mm
                .pt
                .translate(&fx.mem, 0x1001_0000 + k * PAGE_SIZE)
                .unwrap();
            assert_eq!(t.frame, out.frame + k * PAGE_SIZE, "consecutive frames");
            assert_ne!(t.flags & pte::RW, 0);
        }
        // The last block sticks out of the area, one page inside: one page.
        let out = fault(&mut mm, &mut fx, 0x1004_0000, UW).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonZero, 1));
        // An area starting inside a block: the block's part inside it.
        mm.vmas
            .insert(Vma::anon(0x3000_3000, 0x3001_2000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x3000_8000, UW).unwrap();
        assert_eq!(
            (out.kind, out.va, out.pages_mapped),
            (FaultKind::AnonBlock, 0x3000_3000, 13)
        );
        assert!(mm.pt.translate(&fx.mem, 0x3000_2000).is_none());
        let out = fault(&mut mm, &mut fx, 0x3001_1000, UW).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonBlock, 2));
        // A block with one entry used: its free entries, the used one keeps
        // its frame, and no frame leaks.
        let used = mm.pt.translate(&fx.mem, 0x1001_4000).unwrap().frame;
        mm.munmap(&mut fx.env(), 0x1001_0000, 0x4000).unwrap();
        mm.munmap(&mut fx.env(), 0x1001_5000, 0xb000).unwrap();
        mm.vmas
            .insert_merged(Vma::anon(0x1001_0000, 0x1001_4000, Prot::RW, VmFlags::NONE))
            .unwrap();
        mm.vmas
            .insert_merged(Vma::anon(0x1001_5000, 0x1002_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let (frames, in_use) = (mm.user_frames, fx.frames.in_use());
        let out = fault(&mut mm, &mut fx, 0x1001_8000, UW).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonBlock, 15));
        assert_eq!(mm.pt.translate(&fx.mem, 0x1001_4000).unwrap().frame, used);
        assert_eq!(mm.user_frames, frames + 15);
        assert_eq!(fx.frames.in_use(), in_use + 15, "the skipped frame freed");
        mm.vmas
            .insert(Vma::anon(
                0x2000_0000,
                0x2001_0000,
                Prot::READ,
                VmFlags::NONE,
            ))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x2000_0000, U).unwrap();
        assert_eq!(out.kind, FaultKind::AnonZero, "read-only area");
    }

    #[test]
    fn a_block_whose_first_half_is_mapped_takes_half_a_run() {
        let (mut fx, mut mm) = setup();
        fx.frames.fault_size = FaultSize::Block64K;
        // A heap that grew: its first half-block mapped, then it grew on.
        let heap = |end| Vma::anon(0x5000_0000, end, Prot::RW, VmFlags::NONE);
        mm.vmas.insert(heap(0x5000_8000)).unwrap();
        let out = fault(&mut mm, &mut fx, 0x5000_0000, UW).unwrap();
        assert_eq!(out.pages_mapped, 8);
        mm.vmas.clear();
        mm.vmas.insert(heap(0x5002_0000)).unwrap();
        let in_use = fx.frames.in_use();
        let out = fault(&mut mm, &mut fx, 0x5000_9000, UW).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonBlock, 8));
        assert_eq!(fx.frames.in_use(), in_use + 8, "the unused half given back");
        let first = mm.pt.translate(&fx.mem, 0x5000_8000).unwrap().frame;
        assert_eq!(first, out.frame);
        let last = mm.pt.translate(&fx.mem, 0x5000_f000).unwrap().frame;
        assert_eq!(last, first + 7 * PAGE_SIZE, "free entries packed in order");
        // The next block's run starts where the given-back frames were.
        let out = fault(&mut mm, &mut fx, 0x5001_0000, UW).unwrap();
        assert_eq!(out.frame, first + 8 * PAGE_SIZE);
        assert_eq!(mm.user_frames, 32);
    }

    #[test]
    fn fault_size_policy_decides_between_page_block_and_huge_page() {
        let area = || Vma::anon(0x4000_0000, 0x4040_0000, Prot::RW, VmFlags::NONE);
        for (size, kind, pages) in [
            (FaultSize::Page4K, FaultKind::AnonZero, 1),
            (FaultSize::Block64K, FaultKind::AnonBlock, ANON_BLOCK_PAGES),
            (FaultSize::Huge2M, FaultKind::AnonHuge, 1),
        ] {
            let (mut fx, mut mm) = setup();
            fx.frames.fault_size = size;
            mm.vmas.insert(area()).unwrap();
            let out = fault(&mut mm, &mut fx, 0x4010_0000, UW).unwrap();
            assert_eq!((out.kind, out.pages_mapped), (kind, pages), "{size:?}");
        }
    }

    #[test]
    fn anon_fault_falls_back_to_4k_when_no_huge_frame_is_free() {
        let (mut fx, mut mm) = setup();
        while fx.frames.alloc_huge_zeroed(&mut fx.mem).is_some() {}
        while fx
            .frames
            .alloc_run_zeroed(&mut fx.mem, ANON_BLOCK_PAGES)
            .is_some()
        {}
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4040_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(
            fault(&mut mm, &mut fx, 0x4000_0000, UW).unwrap().kind,
            FaultKind::AnonZero
        );
    }

    #[test]
    fn fault_outside_any_area_or_above_task_size_is_maperr() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x1000_0000, 0x1000_4000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let maperr = Err(FaultError::Segv(SegvCode::MapErr));
        assert_eq!(fault(&mut mm, &mut fx, 0x1000_4000, U), maperr);
        assert_eq!(fault(&mut mm, &mut fx, 0x0fff_ffff, U), maperr);
        assert_eq!(fault(&mut mm, &mut fx, TASK_SIZE, U), maperr);
        assert_eq!(fault(&mut mm, &mut fx, 0xffff_8880_0000_0000, U), maperr);
    }

    #[test]
    fn rsvd_fault_is_maperr_in_the_kernel_half_and_accerr_below() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x1000_0000, 0x1000_4000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let rsvd = U | pf::P | pf::RSVD;
        for addr in [TASK_SIZE, 0xffff_8000_0000_0000, !0xfff] {
            let got = fault(&mut mm, &mut fx, addr, rsvd);
            assert_eq!(got, Err(FaultError::Segv(SegvCode::MapErr)), "{addr:#x}");
        }
        let got = fault(&mut mm, &mut fx, 0x1000_0000, rsvd);
        assert_eq!(got, Err(FaultError::Segv(SegvCode::AccErr)));
    }

    #[test]
    fn reported_error_code_is_a_protection_fault_in_the_kernel_half_without_rsvd() {
        let rsvd = U | pf::P | pf::RSVD;
        assert_eq!(reported_error_code(0xffff_8000_0000_0000, U), U | pf::P);
        assert_eq!(reported_error_code(TASK_SIZE, rsvd), U | pf::P);
        assert_eq!(reported_error_code(0x1000, U | pf::WRITE), U | pf::WRITE);
        assert_eq!(reported_error_code(0x1000, rsvd), U | pf::P);
    }

    #[test]
    fn forbidden_accesses_are_accerr() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(
                0x1000_0000,
                0x1000_1000,
                Prot::READ,
                VmFlags::NONE,
            ))
            .unwrap();
        mm.vmas
            .insert(Vma::anon(
                0x2000_0000,
                0x2000_1000,
                Prot::NONE,
                VmFlags::NONE,
            ))
            .unwrap();
        let accerr = Err(FaultError::Segv(SegvCode::AccErr));
        assert_eq!(fault(&mut mm, &mut fx, 0x1000_0000, UW), accerr);
        assert_eq!(fault(&mut mm, &mut fx, 0x1000_0000, U | pf::INSTR), accerr);
        assert_eq!(fault(&mut mm, &mut fx, 0x2000_0000, U), accerr);
        assert_eq!(fault(&mut mm, &mut fx, 0x1000_0000, U | pf::P), accerr);
        assert_eq!(mm.user_frames, 0);
    }

    #[test]
    fn fault_below_stack_grows_it_within_limit_and_guard_gap() {
        let (mut fx, mut mm) = setup();
        let top = 0x7fff_ffff_f000;
        mm.vmas
            .insert(Vma::anon(top - 0x2_1000, top, Prot::RW, VmFlags::GROWSDOWN))
            .unwrap();
        let out = fault(&mut mm, &mut fx, top - 0x3_0008, UW).unwrap();
        assert!(out.stack_grown);
        assert_eq!(mm.vmas.get(0).unwrap().start, top - 0x3_1000);
        let maperr = Err(FaultError::Segv(SegvCode::MapErr));
        assert_eq!(fault(&mut mm, &mut fx, top - STACK_LIMIT - 1, UW), maperr);
        assert!(
            fault(&mut mm, &mut fx, top - STACK_LIMIT, UW)
                .unwrap()
                .stack_grown
        );
        let below = top - STACK_LIMIT - STACK_GUARD_GAP;
        mm.vmas
            .insert(Vma::anon(
                below - 0x1000,
                below + 0x1000,
                Prot::READ,
                VmFlags::NONE,
            ))
            .unwrap();
        mm.vmas.update(1, |v| v.start = top - 0x10_0000);
        assert_eq!(
            fault(&mut mm, &mut fx, top - STACK_LIMIT, UW),
            maperr,
            "guard gap"
        );
    }

    #[test]
    fn file_read_fault_maps_page_cache_read_only_with_fault_around() {
        let (mut fx, mut mm) = setup();
        let rx = Prot::READ | Prot::EXEC;
        mm.vmas
            .insert(file_vma(0x40_0000, 8, rx, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x40_3000, U | pf::INSTR).unwrap();
        assert_eq!(
            (out.kind, out.frame, out.pages_mapped),
            (FaultKind::FileMapped, FP + 0x3000, 8)
        );
        assert_eq!(
            mm.pt.translate(&fx.mem, 0x40_7000).unwrap().frame,
            FP + 0x7000
        );
        assert_eq!(flags_at(&mm, &fx, 0x40_0000), pte::P | pte::US | pte::A);
        assert_eq!(mm.user_frames, 0);
        assert_eq!(mm.vmas.get(0).unwrap().anon, 0);
    }

    #[test]
    fn file_fault_around_stops_at_last_whole_data_page() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(file_vma(0x40_0000, 12, Prot::READ, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x40_0000, U).unwrap();
        assert_eq!(out.pages_mapped, 10, "page 10 holds the end of the file");
        assert!(mm.pt.translate(&fx.mem, 0x40_a000).is_none());
    }

    #[test]
    fn file_page_not_in_ram_that_cannot_be_read_is_a_segv_and_keeps_no_frame() {
        let (mut fx, mut mm) = setup();
        let id = host_file(&mut fx, 4 * PAGE_SIZE, None);
        let v = of_file(file_vma(0x80_0000, 4, Prot::RW, 0, u64::MAX), id);
        mm.vmas.insert(v).unwrap();
        let frames = fx.frames.in_use();
        for ec in [U, UW] {
            let got = fault(&mut mm, &mut fx, 0x80_1000, ec);
            assert_eq!(got, Err(FaultError::Segv(SegvCode::MapErr)));
        }
        assert!(mm.pt.translate(&fx.mem, 0x80_1000).is_none());
        assert_eq!(fx.frames.in_use(), frames, "no frame kept");
        // The resident image pages still map from RAM.
        mm.vmas
            .insert(file_vma(0x40_0000, 2, Prot::READ, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x40_1000, U).unwrap();
        assert_eq!((out.kind, out.frame), (FaultKind::FileMapped, FP + 0x1000));
    }

    #[test]
    fn file_page_holding_data_end_gets_private_copy_and_zero_tail() {
        let (mut fx, mut mm) = setup();
        // One page per fault (the block is copied in the test below).
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(file_vma(0x60_0000, 3, Prot::RW, 0x2000, 0x3800))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x60_1000, U).unwrap();
        assert_eq!(out.kind, FaultKind::FileCopied);
        assert!(fx.frames.owns(out.frame));
        assert_eq!(
            (fx.mem.byte(out.frame), fx.mem.byte(out.frame + 0x7ff)),
            (4, 4)
        );
        assert_eq!(
            (
                fx.mem.byte(out.frame + 0x800),
                fx.mem.byte(out.frame + 0xfff)
            ),
            (0, 0)
        );
        assert_ne!(flags_at(&mm, &fx, 0x60_1000) & pte::RW, 0);
        assert_eq!(
            fault(&mut mm, &mut fx, 0x60_2000, U).unwrap().kind,
            FaultKind::FileZero
        );
        let out = fault(&mut mm, &mut fx, 0x60_0000, U).unwrap();
        assert_eq!((out.kind, out.frame), (FaultKind::FileMapped, FP + 0x2000));
        assert_eq!(flags_at(&mm, &fx, 0x60_0000) & pte::RW, 0);
        assert_eq!(fx.mem.byte(FP + 0x3800), 4, "page cache untouched");
    }

    #[test]
    fn file_page_partly_past_end_of_file_is_copied_and_a_page_past_it_is_sigbus() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(file_vma(0x40_0000, 12, Prot::READ, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x40_a000, U).unwrap();
        assert_eq!(out.kind, FaultKind::FileCopied);
        assert_eq!(
            (
                fx.mem.byte(out.frame + 0x7ff),
                fx.mem.byte(out.frame + 0x800)
            ),
            (11, 0)
        );
        for (va, error) in [(0x40_b000, U), (0x40_bff8, U)] {
            let got = fault(&mut mm, &mut fx, va, error);
            assert_eq!(got, Err(FaultError::PastEof), "{va:#x}");
        }
    }

    #[test]
    fn write_to_present_page_cache_page_copies_it() {
        let (mut fx, mut mm) = setup();
        // One page per fault: a read maps page-cache pages around it.
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(file_vma(0x40_0000, 4, Prot::RW, 0, u64::MAX))
            .unwrap();
        fault(&mut mm, &mut fx, 0x40_2000, U).unwrap();
        let out = fault(&mut mm, &mut fx, 0x40_2000, UW | pf::P).unwrap();
        assert_eq!(out.kind, FaultKind::CopyOnWrite);
        assert!(fx.frames.owns(out.frame));
        assert_eq!(fx.mem.byte(out.frame + 0xfff), 3);
        assert_eq!(
            mm.pt.translate(&fx.mem, 0x40_2000).unwrap().frame,
            out.frame
        );
        assert_ne!(flags_at(&mm, &fx, 0x40_2000) & pte::D, 0);
        let out = fault(&mut mm, &mut fx, 0x40_3000, UW | pf::P).unwrap();
        assert_eq!(
            (out.kind, fx.mem.byte(out.frame)),
            (FaultKind::CopyOnWrite, 4),
            "faulted around"
        );
        mm.vmas
            .insert(file_vma(0x50_0000, 4, Prot::RW, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x50_1000, UW).unwrap();
        assert_eq!(
            (out.kind, fx.mem.byte(out.frame)),
            (FaultKind::FileCopied, 2)
        );
        assert_eq!(mm.user_frames, 3);
    }

    #[test]
    fn a_write_to_an_unmapped_data_block_copies_its_pages_holding_data() {
        let (mut fx, mut mm) = setup();
        // Pages 0x61_0000.. hold file pages 2..=3 and half of page 4 (data
        // ends at 0x4800), then a page past the data.
        mm.vmas
            .insert(file_vma(0x60_e000, 6, Prot::RW, 0, 0x4800))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x61_1000, UW).unwrap();
        assert_eq!(
            (out.kind, out.pages_mapped),
            (FaultKind::FileCopiedBlock, 3),
            "the block from 0x61_0000: two whole pages and the last one's data"
        );
        assert_eq!(mm.user_frames, 3);
        for (k, byte) in [(0, 3), (1, 4), (2, 5)] {
            let t = mm.pt.translate(&fx.mem, 0x61_0000 + k * PAGE_SIZE).unwrap();
            assert!(fx.frames.owns(t.frame) && t.flags & pte::RW != 0);
            assert_eq!(
                (fx.mem.byte(t.frame), fx.mem.byte(t.frame + 0x7ff)),
                (byte, byte)
            );
        }
        let last = mm.pt.translate(&fx.mem, 0x61_2000).unwrap().frame;
        assert_eq!(
            (fx.mem.byte(last + 0x800), fx.mem.byte(last + 0xfff)),
            (0, 0)
        );
        assert_eq!(fx.mem.byte(FP + 0x4800), 5, "page cache untouched");
        assert!(
            mm.pt.translate(&fx.mem, 0x61_3000).is_none(),
            "past the data"
        );
        assert!(
            mm.pt.translate(&fx.mem, 0x60_f000).is_none(),
            "another block"
        );
        // The block below holds a mapped page: each page there is copied
        // on its own.
        fx.frames.fault_size = FaultSize::Page4K;
        fault(&mut mm, &mut fx, 0x60_e000, UW).unwrap();
        fx.frames.fault_size = FaultSize::Huge2M;
        let out = fault(&mut mm, &mut fx, 0x60_f000, UW).unwrap();
        assert_eq!(
            (out.kind, fx.mem.byte(out.frame)),
            (FaultKind::FileCopied, 2)
        );
        // A read copies a block too: the data is written soon after.
        mm.vmas
            .insert(file_vma(0x70_0000, 3, Prot::RW, 0, u64::MAX))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x70_0000, U).unwrap();
        assert_eq!(
            (out.kind, out.pages_mapped),
            (FaultKind::FileCopiedBlock, 3)
        );
    }

    #[test]
    fn a_data_block_copied_into_used_frames_gets_its_tail_zeroed() {
        let (mut fx, mut mm) = setup();
        // The block's frames come from a freed huge frame full of old data.
        let huge = fx.frames.alloc_huge_zeroed(&mut fx.mem).unwrap();
        for k in 0..HUGE_PAGE_SIZE / 8 {
            fx.mem.write_u64(huge + 8 * k, u64::MAX);
        }
        while fx
            .frames
            .alloc_run_uninit(&mut fx.mem, 512)
            .is_some_and(|r| r.2)
        {}
        fx.frames.free_huge(&mut fx.mem, huge);
        let (_, _, clean) = fx.frames.alloc_run_uninit(&mut fx.mem, 1).unwrap();
        assert!(!clean, "the huge frame is carved");
        mm.vmas
            .insert(file_vma(0x61_0000, 3, Prot::RW, 2 * PAGE_SIZE, 0x4800))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x61_0000, UW).unwrap();
        assert_eq!(
            (out.kind, out.pages_mapped),
            (FaultKind::FileCopiedBlock, 3)
        );
        let last = mm.pt.translate(&fx.mem, 0x61_2000).unwrap().frame;
        assert!((huge..huge + HUGE_PAGE_SIZE).contains(&last));
        let bytes = [0, 0x7ff, 0x800, 0xfff].map(|o| fx.mem.byte(last + o));
        assert_eq!(bytes, [5, 5, 0, 0], "the data, then zeros");
    }

    #[test]
    fn a_block_fault_above_the_images_data_copies_its_data_in_the_block() {
        let (mut fx, mut mm) = setup();
        // A data segment (file pages 1..=2 and half of page 3) and the bss
        // above it, both in the block from 0x61_0000.
        mm.vmas
            .insert(file_vma(0x61_0000, 3, Prot::RW, PAGE_SIZE, 0x3800))
            .unwrap();
        mm.vmas
            .insert(Vma::anon(0x61_3000, 0x61_5000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x61_4008, UW).unwrap();
        assert_eq!(
            (out.kind, out.va, out.pages_mapped),
            (FaultKind::AnonBlock, 0x61_3000, 5),
            "two zeroed pages and three copied"
        );
        assert_eq!(mm.user_frames, 5);
        for (k, byte) in [(0, 2), (1, 3), (2, 4)] {
            let t = mm.pt.translate(&fx.mem, 0x61_0000 + k * PAGE_SIZE).unwrap();
            assert!(fx.frames.owns(t.frame) && t.flags & pte::RW != 0);
            assert_eq!(fx.mem.byte(t.frame + 0x7ff), byte);
        }
        let last = mm.pt.translate(&fx.mem, 0x61_2000).unwrap().frame;
        assert_eq!(fx.mem.byte(last + 0x800), 0, "past the data");
        assert_ne!(mm.vmas.get(0).unwrap().anon, 0, "the data area's identity");
        // The data's next write finds its page mapped: no fault.
        assert_eq!(
            fault(&mut mm, &mut fx, 0x61_1000, UW).unwrap().kind,
            FaultKind::Spurious
        );
    }

    #[test]
    fn a_block_fault_above_other_areas_maps_its_own_pages_only() {
        let (mut fx, mut mm) = setup();
        // Read-only file data below one bss, a mapped data page below
        // another, anonymous memory below a third.
        let below = [
            file_vma(0x61_0000, 2, Prot::READ, 0, u64::MAX),
            file_vma(0x71_0000, 2, Prot::RW, 0, u64::MAX),
            Vma::anon(0x81_0000, 0x81_2000, Prot::RW, VmFlags::NONE),
        ];
        for v in below {
            let bss = Vma::anon(v.end, v.end + 2 * PAGE_SIZE, Prot::RW, VmFlags::NONE);
            mm.vmas.insert(v).unwrap();
            mm.vmas.insert(bss).unwrap();
        }
        fx.frames.fault_size = FaultSize::Page4K;
        fault(&mut mm, &mut fx, 0x71_0000, UW).unwrap();
        fx.frames.fault_size = FaultSize::Huge2M;
        for base in [0x61_0000, 0x71_0000, 0x81_0000] {
            let out = fault(&mut mm, &mut fx, base + 0x2000, UW).unwrap();
            assert_eq!((out.kind, out.pages_mapped), (FaultKind::AnonBlock, 2));
            assert!(mm.pt.translate(&fx.mem, base + PAGE_SIZE).is_none());
        }
    }

    #[test]
    fn a_data_block_fault_reads_the_pages_it_lacks_from_the_host() {
        let (mut fx, mut mm) = setup();
        let id = host_file(&mut fx, 8 * PAGE_SIZE, Some(3));
        let v = of_file(file_vma(0x80_0000, 8, Prot::RW, 0, u64::MAX), id);
        mm.vmas.insert(v).unwrap();
        let mut host = Reader::new(8 * PAGE_SIZE);
        // A read of page 6 first: pages 6 and 7 are cached.
        let mut env = fx.env_with(&mut host);
        crate::fs::cache::PageCache::page(env.cache, env.mem, env.frames, env.host, id, 6).unwrap();
        let out = mm.handle_page_fault(&mut env, 0x80_3000, UW).unwrap();
        assert_eq!(
            (out.kind, out.pages_mapped),
            (FaultKind::FileCopiedBlock, 8)
        );
        assert_eq!(
            host.reads,
            [(6 * PAGE_SIZE, 2 * PAGE_SIZE), (0, 6 * PAGE_SIZE)],
            "the pages before the cached ones, read around the fault"
        );
        assert_eq!(fx.cache.get(id).unwrap().cached_pages(), 8);
        assert_eq!(mm.user_frames, 8);
    }

    #[test]
    fn a_host_file_read_fault_reads_around_and_maps_its_window() {
        const W: u64 = HOST_FAULT_AROUND_PAGES;
        let (p, size) = (PAGE_SIZE, (2 * W + 8) * PAGE_SIZE);
        let (mut fx, mut mm) = setup();
        let id = host_file(&mut fx, size, Some(3));
        let v = of_file(
            file_vma(0x80_0000, 2 * W, Prot::READ | Prot::EXEC, 0, u64::MAX),
            id,
        );
        mm.vmas.insert(v).unwrap();
        let mut host = Reader::new(size);
        let mut env = fx.env_with(&mut host);
        // Page W + 6: its window (pages W..2W) is read whole and mapped.
        let out = mm
            .handle_page_fault(&mut env, 0x80_0000 + (W + 6) * p, U)
            .unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::FileMapped, W));
        // Page 10, below: read back to its window's start, not past the
        // pages cached already.
        let out = mm.handle_page_fault(&mut env, 0x80_a000, U).unwrap();
        assert_eq!(out.pages_mapped, W);
        assert_eq!(host.reads, [(W * p, W * p), (0, W * p)]);
        let ino = fx.cache.get(id).unwrap();
        for page in [0, 10, W - 1, W, W + 6, 2 * W - 1] {
            let t = mm.pt.translate(&fx.mem, 0x80_0000 + page * PAGE_SIZE);
            assert_eq!(t.map(|t| t.frame), ino.resident(page), "page {page}");
        }
        assert_eq!(mm.user_frames, 0, "page-cache frames, not the program's");
    }

    #[test]
    fn a_host_file_fault_maps_its_read_only_neighbours_and_marks_fresh_ones_mapped() {
        let (mut fx, mut mm) = setup();
        let size = 0xa800;
        let id = host_file(&mut fx, size, Some(3));
        let rx = Prot::READ | Prot::EXEC;
        for (start, pages, prot, offset, data_end) in [
            (0x80_0000, 1, Prot::READ, 0, u64::MAX),
            (0x80_1000, 4, rx, 0x1000, u64::MAX),
            (0x80_5000, 2, Prot::READ, 0x5000, u64::MAX),
            (0x80_7000, 1, rx, 0x7000, 0x7800),
            (0x80_8000, 2, Prot::RW, 0x8000, u64::MAX),
            (0x80_a000, 1, Prot::READ, 0xa000, u64::MAX),
        ] {
            let v = of_file(file_vma(start, pages, prot, offset, data_end), id);
            // As mmap makes them: fresh.
            mm.map_region(&mut fx.env(), v).unwrap();
        }
        let mut host = Reader::new(size);
        let mut env = fx.env_with(&mut host);
        // A fetch in the text: the file is read from its start (the
        // window's, in file order) and the read-only areas' pages mapped.
        let out = mm
            .handle_page_fault(&mut env, 0x80_2000, U | pf::INSTR)
            .unwrap();
        assert_eq!(host.reads, [(0, size)]);
        // Headers 1, text 4, read-only data 2, the page holding the end of
        // the file 1; not the page whose bytes past 0x7800 read as zero
        // (bss), nor the writable area's.
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::FileMapped, 8));
        let ino = fx.cache.get(id).unwrap();
        for page in [0, 1, 4, 5, 6, 10] {
            let t = mm.pt.translate(&fx.mem, 0x80_0000 + page * PAGE_SIZE);
            assert_eq!(t.map(|t| t.frame), ino.resident(page), "page {page}");
            assert_eq!(t.unwrap().flags & pte::RW, 0, "page {page}");
        }
        for page in [7, 8, 9] {
            let t = mm.pt.translate(&fx.mem, 0x80_0000 + page * PAGE_SIZE);
            assert!(t.is_none(), "page {page}");
        }
        assert!(!mm.vmas.all_fresh(0x80_0000, 0x80_1000));
        assert!(!mm.vmas.all_fresh(0x80_5000, 0x80_7000));
        assert!(!mm.vmas.all_fresh(0x80_a000, 0x80_b000));
        assert!(mm.vmas.all_fresh(0x80_7000, 0x80_a000), "nothing mapped");
        // Mapping over a neighbour mapped so unmaps its pages.
        let v = Vma::anon(0x80_5000, 0x80_7000, Prot::READ, VmFlags::NONE);
        mm.map_region(&mut fx.env(), v).unwrap();
        assert!(mm.pt.translate(&fx.mem, 0x80_5000).is_none());
        assert_eq!(mm.user_frames, 0, "page-cache frames, not the program's");
    }

    #[test]
    fn a_fresh_neighbour_reaching_past_the_window_is_mapped_on_into_the_next_region() {
        let (mut fx, mut mm) = setup();
        let size = 0xc800;
        let id = host_file(&mut fx, size, Some(3));
        let rx = Prot::READ | Prot::EXEC;
        // A library whose headers end a 2 MiB region: its text runs on
        // into the next one, its read-only data lies there whole.
        let areas = [
            (0x9f_e000, 1, Prot::READ, 0),
            (0x9f_f000, 9, rx, 0x1000),
            (0xa0_8000, 2, Prot::READ, 0xa000),
            (0xa0_a000, 2, Prot::RW, 0xc000),
        ];
        map_file_areas(&mut fx, &mut mm, id, &areas);
        let mut host = Reader::new(size);
        let mut env = fx.env_with(&mut host);
        let out = mm.handle_page_fault(&mut env, 0x9f_e000, U).unwrap();
        assert_eq!(host.reads, [(0, size)]);
        // Headers 1 and text 1 in the fault's region, text 8 and read-only
        // data 2 in the next; not the writable area's.
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::FileMapped, 12));
        let ino = fx.cache.get(id).unwrap();
        for page in 0..12 {
            let t = mm.pt.translate(&fx.mem, 0x9f_e000 + page * PAGE_SIZE);
            assert_eq!(t.map(|t| t.frame), ino.resident(page), "page {page}");
        }
        for page in 12..14 {
            assert!(mm
                .pt
                .translate(&fx.mem, 0x9f_e000 + page * PAGE_SIZE)
                .is_none());
        }
        assert!(!mm.vmas.all_fresh(0x9f_f000, 0xa0_0000));
        assert!(!mm.vmas.all_fresh(0xa0_8000, 0xa0_a000));
        assert!(mm.vmas.all_fresh(0xa0_a000, 0xa0_c000), "nothing mapped");
        assert_eq!(mm.user_frames, 0, "page-cache frames, not the program's");
    }

    #[test]
    fn map_entry_maps_the_entry_window_as_its_fetch_fault_would_and_leaves_a_bad_one() {
        let (mut fx, mut mm) = setup();
        let size = 0x5000;
        let id = host_file(&mut fx, size, Some(3));
        let rx = Prot::READ | Prot::EXEC;
        let areas = [
            (0x80_0000, 1, Prot::READ, 0),
            (0x80_1000, 3, rx, 0x1000),
            (0x80_4000, 1, Prot::RW, 0x4000),
        ];
        map_file_areas(&mut fx, &mut mm, id, &areas);
        let mut host = Reader::new(size);
        let mut env = fx.env_with(&mut host);
        // Not executable, and outside every area: nothing mapped.
        mm.map_entry(&mut env, 0x80_4000, 0);
        mm.map_entry(&mut env, 0x90_0000, 0);
        assert!(mm.pt.translate(env.mem, 0x80_4000).is_none());
        mm.map_entry(&mut env, 0x80_2010, 0);
        let ino = fx.cache.get(id).unwrap();
        for page in 0..4 {
            let t = mm.pt.translate(&fx.mem, 0x80_0000 + page * PAGE_SIZE);
            assert_eq!(t.map(|t| t.frame), ino.resident(page), "page {page}");
        }
        assert!(mm.pt.translate(&fx.mem, 0x80_4000).is_none());
        assert!(!mm.vmas.all_fresh(0x80_1000, 0x80_4000));
    }

    #[test]
    fn a_fresh_areas_entries_are_written_unread_and_only_a_fresh_areas() {
        // The unread writes check (debug) that every entry was free.
        const W: u64 = HOST_FAULT_AROUND_PAGES;
        let (p, size) = (PAGE_SIZE, W * PAGE_SIZE);
        let (mut fx, mut mm) = setup();
        let id = host_file(&mut fx, size, Some(3));
        let v = of_file(file_vma(0x80_0000, W, Prot::READ, 0, u64::MAX), id);
        // The one page `k` of the area, as an area of its own.
        let page = |k: u64| Vma {
            start: v.start + k * p,
            end: v.start + (k + 1) * p,
            backing: Backing::File {
                file: id,
                offset: k * p,
                data_end: u64::MAX,
            },
            ..v
        };
        let mut host = Reader::new(size);
        // A fresh area, then one mapped over it after its pages were
        // mapped (mmap unmaps them: the new area is fresh, its entries
        // free again).
        for round in 0..2 {
            mm.map_region(&mut fx.env(), v).unwrap();
            assert!(mm.vmas.all_fresh(0x80_0000, 0x80_0000 + size));
            let mut env = fx.env_with(&mut host);
            let out = mm.handle_page_fault(&mut env, 0x80_3000, U).unwrap();
            assert_eq!(
                (out.kind, out.pages_mapped),
                (FaultKind::FileMapped, W),
                "{round}"
            );
            assert!(!mm.vmas.all_fresh(0x80_0000, 0x80_1000));
        }
        // A page unmapped from the middle: the two parts had pages, so are
        // not fresh, and the next fault there maps the one free entry only.
        mm.do_munmap(&mut fx.env(), 0x80_5000, 0x80_6000).unwrap();
        mm.map_region(&mut fx.env(), page(5)).unwrap();
        let mut env = fx.env_with(&mut host);
        // The new page's own area is fresh; its neighbours' pages stay.
        let out = mm.handle_page_fault(&mut env, 0x80_5000, U).unwrap();
        assert_eq!(out.pages_mapped, 1);
        mm.do_munmap(&mut fx.env(), 0x80_7000, 0x80_8000).unwrap();
        let mut env = fx.env_with(&mut host);
        let before = mm.pt.translate(env.mem, 0x80_6000).map(|t| t.frame);
        assert!(mm.vmas.find(0x80_7000).is_none());
        let w = page(7);
        mm.vmas
            .insert(Vma {
                flags: w.flags.kind(),
                ..w
            })
            .unwrap();
        // Not fresh (inserted as an area with pages): entries read, the
        // used ones around kept.
        let out = mm.handle_page_fault(&mut env, 0x80_7000, U).unwrap();
        assert_eq!(out.pages_mapped, 1);
        assert_eq!(mm.pt.translate(&fx.mem, 0x80_6000).map(|t| t.frame), before);
        let ino = fx.cache.get(id).unwrap();
        for page in 0..W {
            let t = mm.pt.translate(&fx.mem, 0x80_0000 + page * p);
            assert_eq!(t.map(|t| t.frame), ino.resident(page), "page {page}");
        }
    }

    #[test]
    fn a_host_files_last_page_is_mapped_from_the_cache_unless_a_bss_starts_in_it() {
        let (mut fx, mut mm) = setup();
        let size = 0x1800;
        let id = host_file(&mut fx, size, Some(3));
        for (start, data_end) in [(0x80_0000, u64::MAX), (0xa0_0000, 0x1400)] {
            let v = of_file(file_vma(start, 2, Prot::READ, 0, data_end), id);
            mm.vmas.insert(v).unwrap();
        }
        let mut host = Reader::new(size);
        let mut env = fx.env_with(&mut host);
        let out = mm.handle_page_fault(&mut env, 0x80_1000, U).unwrap();
        let cached = env.cache.get(id).unwrap().resident(1);
        assert_eq!(
            (out.kind, Some(out.frame), out.pages_mapped),
            (FaultKind::FileMapped, cached, 2)
        );
        // With a bss from 0x1400, the page is a private copy.
        let out = mm.handle_page_fault(&mut env, 0xa0_1000, U).unwrap();
        assert_eq!(out.kind, FaultKind::FileCopied);
        assert_ne!(Some(out.frame), cached);
    }

    #[test]
    fn fault_around_in_the_image_maps_its_read_only_neighbours_too() {
        let (mut fx, mut mm) = setup();
        let rx = Prot::READ | Prot::EXEC;
        for (start, pages, prot, offset) in [
            (0x40_0000, 1, Prot::READ, 0),
            (0x40_1000, 2, rx, 0x1000),
            (0x40_3000, 2, Prot::READ, 0x3000),
            (0x40_5000, 2, Prot::RW, 0x5000),
            (0x40_7000, 1, Prot::NONE, 0x7000),
            (0x40_8000, 1, Prot::READ, 0x8000),
        ] {
            let v = file_vma(start, pages, prot, offset, u64::MAX);
            mm.vmas.insert(v).unwrap();
        }
        let out = fault(&mut mm, &mut fx, 0x40_1000, U | pf::INSTR).unwrap();
        assert_eq!((out.kind, out.pages_mapped), (FaultKind::FileMapped, 6));
        for page in [0, 1, 2, 3, 4, 8] {
            let t = mm
                .pt
                .translate(&fx.mem, 0x40_0000 + page * PAGE_SIZE)
                .unwrap();
            assert_eq!(t.frame, FP + page * PAGE_SIZE, "page {page}");
            assert_eq!(t.flags & pte::RW, 0);
        }
        assert_eq!(
            flags_at(&mm, &fx, 0x40_3000) & pte::NX,
            pte::NX,
            "its own rights"
        );
        for page in [5, 6, 7] {
            let va = 0x40_0000 + page * PAGE_SIZE;
            assert!(
                mm.pt.translate(&fx.mem, va).is_none(),
                "writable or PROT_NONE: {page}"
            );
        }
    }

    #[test]
    fn a_forked_childs_image_beside_its_data_is_copied_and_the_tables_count_stays_exact() {
        let (mut fx, mut parent) = setup();
        let rx = Prot::READ | Prot::EXEC;
        for (start, pages, prot, offset) in [
            (0x40_0000, 1, Prot::READ, 0),
            (0x40_1000, 2, rx, 0x1000),
            (0x40_3000, 2, Prot::READ, 0x3000),
            (0x40_5000, 2, Prot::RW, 0x5000),
        ] {
            let v = file_vma(start, pages, prot, offset, u64::MAX);
            parent.vmas.insert(v).unwrap();
        }
        // The data's private pages share the text's table: the child's is
        // not a fresh one.
        fault(&mut parent, &mut fx, 0x40_5000, UW).unwrap();
        let out = fault(&mut parent, &mut fx, 0x40_1000, U | pf::INSTR).unwrap();
        assert_eq!(out.pages_mapped, 5);
        let mut child = fx.fork(&mut parent, 0);
        // The image's page-cache leaves share the copied data's table:
        // fork copies them too, and the child needs no fault there.
        assert!(!child.vmas.all_fresh(0x40_0000, 0x40_7000), "copied");
        for page in 0..7 {
            let va = 0x40_0000 + page * PAGE_SIZE;
            let (p, c) = (
                parent.pt.translate(&fx.mem, va),
                child.pt.translate(&fx.mem, va),
            );
            assert_eq!(p.map(|t| t.frame), c.map(|t| t.frame), "page {page}");
            assert_eq!(p.map(|t| t.flags), c.map(|t| t.flags), "page {page}");
        }
        // Mapping over the neighbour unmaps its page: it is known mapped.
        let v = Vma::anon(0x40_0000, 0x40_1000, Prot::READ, VmFlags::NONE);
        child.map_region(&mut fx.env(), v).unwrap();
        assert!(child.pt.translate(&fx.mem, 0x40_0000).is_none());
        let mut n = 0;
        child
            .pt
            .unmap_range(
                &mut fx.mem,
                &mut fx.frames,
                0x40_0000,
                0x60_0000,
                |_, _, l| n += l.pages,
            )
            .unwrap();
        assert_eq!(n, 6, "the table's count stayed exact");
    }

    #[test]
    fn image_fault_around_leaves_a_fresh_mmap_neighbour_to_its_own_fault() {
        let (mut fx, mut mm) = setup();
        let rx = Prot::READ | Prot::EXEC;
        for (start, pages, prot, offset) in [
            (0x40_0000, 1, Prot::READ, 0),
            (0x40_1000, 2, rx, 0x1000),
            (0x40_5000, 2, Prot::RW, 0x5000),
        ] {
            // As mmap makes them: fresh.
            let v = file_vma(start, pages, prot, offset, u64::MAX);
            mm.map_region(&mut fx.env(), v).unwrap();
        }
        assert!(mm.vmas.all_fresh(0x40_0000, 0x40_3000));
        let out = fault(&mut mm, &mut fx, 0x40_1000, U | pf::INSTR).unwrap();
        assert_eq!(out.pages_mapped, 2, "its own pages only");
        assert!(!mm.vmas.all_fresh(0x40_1000, 0x40_3000));
        assert!(mm.vmas.all_fresh(0x40_0000, 0x40_1000));
        assert!(mm.pt.translate(&fx.mem, 0x40_0000).is_none());
        // The neighbour's own fault maps it, and it is fresh no more:
        // mapping over it unmaps the page.
        fault(&mut mm, &mut fx, 0x40_0000, U).unwrap();
        assert!(!mm.vmas.all_fresh(0x40_0000, 0x40_1000));
        assert!(mm.pt.translate(&fx.mem, 0x40_0000).is_some());
        let v = Vma::anon(0x40_0000, 0x40_1000, Prot::READ, VmFlags::NONE);
        mm.map_region(&mut fx.env(), v).unwrap();
        assert!(mm.pt.translate(&fx.mem, 0x40_0000).is_none());
        assert!(
            mm.vmas.all_fresh(0x40_5000, 0x40_7000),
            "writable: not mapped"
        );
    }

    #[test]
    fn a_kernel_provided_mapping_maps_its_own_pages_in_the_window_not_its_neighbours() {
        let (mut fx, mut mm) = setup();
        let ids = fx
            .cache
            .add_specials([
                (b"[vvar]".as_slice(), 0x30_0000, 2 * PAGE_SIZE),
                (b"[vdso]".as_slice(), 0x31_0000, 2 * PAGE_SIZE),
            ])
            .unwrap();
        let rx = Prot::READ | Prot::EXEC;
        let base = 0x7fff_f7ff_c000;
        for (k, prot) in [(0, Prot::READ), (1, rx)] {
            let start = base + k as u64 * 2 * PAGE_SIZE;
            let v = Vma {
                backing: Backing::File {
                    file: ids[k],
                    offset: 0,
                    data_end: u64::MAX,
                },
                ..Vma::anon(start, start + 2 * PAGE_SIZE, prot, VmFlags::NONE)
            };
            mm.vmas.insert(v).unwrap();
        }
        let vdso = base + 2 * PAGE_SIZE;
        let out = fault(&mut mm, &mut fx, vdso + 0x20, U).unwrap();
        assert_eq!(
            (out.kind, out.frame, out.pages_mapped),
            (FaultKind::FileMapped, 0x31_0000, 2)
        );
        let t = mm.pt.translate(&fx.mem, vdso + PAGE_SIZE).unwrap();
        assert_eq!((t.frame, t.flags & (pte::RW | pte::NX)), (0x31_1000, 0));
        assert!(
            mm.pt.translate(&fx.mem, base).is_none(),
            "[vvar] is another image"
        );
        // A write to the read-only area is refused; [vvar]'s own fault maps
        // both its pages.
        assert!(fault(&mut mm, &mut fx, base, U | pf::WRITE).is_err());
        let out = fault(&mut mm, &mut fx, base + PAGE_SIZE, U).unwrap();
        assert_eq!((out.frame, out.pages_mapped), (0x30_1000, 2));
        assert_eq!(flags_at(&mm, &fx, base) & pte::NX, pte::NX);
    }

    #[test]
    fn image_fault_around_in_a_writable_area_maps_it_and_a_later_fault_only_free_entries() {
        let (mut fx, mut mm) = setup();
        // One page per fault: a read in a writable area maps, not copies.
        fx.frames.fault_size = FaultSize::Page4K;
        for (start, pages, prot, offset) in [
            (0x40_0000, 1, Prot::READ, 0),
            (0x40_1000, 2, Prot::RW, 0x1000),
            (0x40_3000, 1, Prot::RW, 0x3000),
            (0x40_4000, 1, Prot::READ, 0x4000),
        ] {
            let v = file_vma(start, pages, prot, offset, u64::MAX);
            mm.vmas.insert(v).unwrap();
        }
        // Its own writable area's pages and the read-only neighbours'.
        let out = fault(&mut mm, &mut fx, 0x40_2000, U).unwrap();
        assert_eq!((out.kind, out.frame), (FaultKind::FileMapped, FP + 0x2000));
        assert_eq!(out.pages_mapped, 4);
        for page in [0, 1, 2, 4] {
            let t = mm.pt.translate(&fx.mem, 0x40_0000 + page * PAGE_SIZE);
            assert_eq!(
                t.map(|t| (t.frame, t.flags & pte::RW)),
                Some((FP + page * PAGE_SIZE, 0))
            );
        }
        assert!(
            mm.pt.translate(&fx.mem, 0x40_3000).is_none(),
            "the other writable area"
        );
        // The table is used now: the neighbours mapped before are kept,
        // only the free page is written.
        let out = fault(&mut mm, &mut fx, 0x40_3000, U).unwrap();
        assert_eq!((out.frame, out.pages_mapped), (FP + 0x3000, 1));
        let mut n = 0;
        mm.pt
            .unmap_range(
                &mut fx.mem,
                &mut fx.frames,
                0x40_0000,
                0x60_0000,
                |_, _, l| n += l.pages,
            )
            .unwrap();
        assert_eq!(n, 5, "the table's count stayed exact");
    }

    #[test]
    fn write_to_read_only_private_frame_in_writable_area_makes_it_writable() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x1000_0000, 0x1000_1000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let out = fault(&mut mm, &mut fx, 0x1000_0000, U).unwrap();
        let ro = flags_at(&mm, &fx, 0x1000_0000) & !(pte::RW | pte::D);
        mm.pt.set_flags(&mut fx.mem, 0x1000_0000, ro);
        let again = fault(&mut mm, &mut fx, 0x1000_0000, UW | pf::P).unwrap();
        assert_eq!(
            (again.kind, again.frame),
            (FaultKind::MadeWritable, out.frame)
        );
        assert_ne!(flags_at(&mm, &fx, 0x1000_0000) & pte::RW, 0);
    }

    #[test]
    fn user_page_faults_in_and_write_copies_cow_page() {
        let (mut fx, mut mm) = setup();
        // One page per fault: a read maps the page-cache page.
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(file_vma(0x40_0000, 4, Prot::RW, 0, u64::MAX))
            .unwrap();
        let pa = mm.user_page(&mut fx.env(), 0x40_1234, false).unwrap();
        assert_eq!(pa, FP + 0x1234);
        let pa = mm.user_page(&mut fx.env(), 0x40_1234, true).unwrap();
        assert!(fx.frames.owns(pa));
        assert_eq!(pa & 0xfff, 0x234);
        assert_eq!(
            mm.user_page(&mut fx.env(), 0x40_1234, true),
            Ok(pa),
            "now direct"
        );
    }

    #[test]
    fn mapped_user_page_answers_as_user_page_and_follows_every_change() {
        let (mut fx, mut mm) = setup();
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(file_vma(0x40_0000, 4, Prot::RW, 0, u64::MAX))
            .unwrap();
        let va = 0x40_1234;
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), None, "not mapped");
        let pa = mm.user_page(&mut fx.env(), va, false).unwrap();
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), Some(pa));
        assert_eq!(
            mm.mapped_user_page(&fx.mem, va, true),
            None,
            "a shared page-cache page: a write copies it first"
        );
        assert_eq!(
            mm.mapped_user_page(&fx.mem, 0x40_8000, false),
            None,
            "outside"
        );
        let copy = mm.user_page(&mut fx.env(), va, true).unwrap();
        assert_ne!(copy, pa);
        assert_eq!(mm.mapped_user_page(&fx.mem, va, true), Some(copy));
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), Some(copy));
        mm.mprotect(&mut fx.env(), 0x40_0000, 0x4000, 1).unwrap();
        assert_eq!(mm.mapped_user_page(&fx.mem, va, true), None, "read-only");
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), Some(copy));
        mm.mprotect(&mut fx.env(), 0x40_0000, 0x4000, 0).unwrap();
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), None, "PROT_NONE");
        mm.do_munmap(&mut fx.env(), 0x40_0000, 0x40_4000).unwrap();
        assert_eq!(mm.mapped_user_page(&fx.mem, va, false), None, "unmapped");
        assert_eq!(
            mm.user_page(&mut fx.env(), va, false),
            Err(Errno::EFAULT),
            "and user_page agrees"
        );
    }

    #[test]
    fn mapped_user_piece_is_user_buffer_pieces_one_piece_or_none() {
        let (mut fx, mut mm) = setup();
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4000_2000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let piece =
            |mm: &Mm, fx: &Fixture, va, len, write| mm.mapped_user_piece(&fx.mem, va, len, write);
        assert_eq!(piece(&mm, &fx, 0x4000_0010, 8, false), None, "not yet");
        mm.user_page(&mut fx.env(), 0x4000_0000, true).unwrap();
        let mut out = [IoVec::default(); 2];
        for (va, len) in [(0x4000_0010, 8), (0x4000_0000, PAGE_SIZE), (0x4000_0fff, 1)] {
            let got = piece(&mm, &fx, va, len, true).unwrap();
            let (n, done) = mm
                .user_buffer_pieces(&mut fx.env(), va, len, true, &mut out)
                .unwrap();
            assert_eq!((n, done, out[0]), (1, len, got));
        }
        assert_eq!(piece(&mm, &fx, 0x4000_0ff0, 0x20, false), None, "two pages");
        assert_eq!(piece(&mm, &fx, 0x4000_0010, 0, false), None, "empty");
        assert_eq!(piece(&mm, &fx, 0x4000_1000, 8, false), None, "unmapped");
        mm.mprotect(&mut fx.env(), 0x4000_0000, 0x1000, 1).unwrap();
        assert_eq!(piece(&mm, &fx, 0x4000_0010, 8, true), None, "read-only");
        assert!(piece(&mm, &fx, 0x4000_0010, 8, false).is_some());
        assert_eq!(piece(&mm, &fx, TASK_SIZE - 8, 8, false), None);
        assert_eq!(piece(&mm, &fx, u64::MAX - 7, 8, false), None);
    }

    #[test]
    fn user_page_is_efault_where_program_would_segfault() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(
                0x1000_0000,
                0x1000_1000,
                Prot::READ,
                VmFlags::NONE,
            ))
            .unwrap();
        assert_eq!(
            mm.user_page(&mut fx.env(), 0x2000_0000, false),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            mm.user_page(&mut fx.env(), 0x1000_0000, true),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            mm.user_page(&mut fx.env(), u64::MAX, false),
            Err(Errno::EFAULT)
        );
        assert!(mm.user_page(&mut fx.env(), 0x1000_0000, false).is_ok());
    }

    #[test]
    fn user_buffer_pieces_joins_contiguous_pages_and_caps() {
        let (mut fx, mut mm) = setup();
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4040_0000, Prot::RW, VmFlags::NONE))
            .unwrap();
        mm.vmas
            .insert(Vma::anon(0x5000_0000, 0x5000_4000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let mut out = [IoVec::default(); 2];
        let (n, done) = mm
            .user_buffer_pieces(&mut fx.env(), 0x4000_0800, 3 * MIB, true, &mut out)
            .unwrap();
        assert_eq!((n, done), (2, 3 * MIB), "two huge pages");
        assert_eq!(out[0].len, 2 * MIB - 0x800);
        let (n, done) = mm
            .user_buffer_pieces(&mut fx.env(), 0x5000_0800, 0x3000, false, &mut out)
            .unwrap();
        // One fault maps the area's 4 pages from consecutive frames.
        assert_eq!((n, done), (1, 0x3000), "consecutive fresh frames join");
        assert_eq!(out[0].len, 0x3000);
        let mut one = [IoVec::default(); 1];
        let r = mm.user_buffer_pieces(&mut fx.env(), 0x4000_0800, 3 * MIB, false, &mut one);
        assert_eq!(r, Ok((1, 2 * MIB - 0x800)), "capped at one piece");
        let r = mm.user_buffer_pieces(&mut fx.env(), 0x4000_0000, u64::MAX, false, &mut out);
        assert_eq!(r, Err(Errno::EFAULT));
        let (n, done) = mm
            .user_buffer_pieces(&mut fx.env(), 0x5000_3000, 0x2000, false, &mut out)
            .unwrap();
        assert_eq!((n, done), (1, 0x1000), "stops at the unmapped page");
    }
}
