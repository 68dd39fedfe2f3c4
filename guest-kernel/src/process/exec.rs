//! The loading half of `execve`: turn a [`LoadPlan`] (and the
//! interpreter's) into VMAs, build the initial stack, and fill in the
//! `mm_struct` fields, as Linux's `load_elf_binary` does after it has
//! checked the images.
//!
//! Nothing is copied from the file here: segments become file-backed VMAs
//! whose pages the fault handler maps from the page cache on first touch.
//! Only the stack pages holding the arguments are written now.

use crate::errno::{Errno, KResult};
use crate::exec::aslr::Layout;
use crate::exec::{ArgBlock, AuxValues, LoadPlan, Segment, StackLayout, StackSink};
use crate::mm::fault::Special;
use crate::mm::phys::PhysMem;
use crate::mm::space::{check_user_range, Mm, MmEnv, MMAP_MIN_ADDR};
use crate::mm::vma::{Backing, Prot, VmFlags, Vma, VmaBatch};
use crate::trace::{self, category, kind};
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE};
use vmrun_contract::trace::exec_phase;
use vmrun_contract::vvar;

/// Where the new program starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// First instruction.
    pub ip: u64,
    /// Initial stack pointer (argc is there).
    pub sp: u64,
}

fn prot_of(seg: &Segment) -> Prot {
    Prot::from_linux(u64::from(seg.prot))
}

const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// The VMAs for one segment, handed to `areas`: the file-backed pages
/// (the last of which reads as zero past the file data when bss follows:
/// [`Segment::zero_tail`]), then anonymous bss ([`Segment::anon_pages`]).
/// A bss of more pages than `ram_pages` is ENOMEM, as Linux's overcommit
/// heuristic refuses more than all of RAM (and swap) in one `vm_brk`.
/// The bounds are worked out here in one go from the segment's fields,
/// which the plan checked (nothing overflows), not through the
/// `Segment` methods one by one.
fn map_segment(
    mm: &mut Mm,
    areas: &mut Areas,
    (file, flags): (u16, VmFlags),
    seg: &Segment,
    ram_pages: u64,
) -> KResult<()> {
    let start = seg.map_start();
    let mut anon_start = start;
    if seg.filesz != 0 {
        let data = seg.vaddr + seg.filesz;
        let end = (data + PAGE_MASK) & !PAGE_MASK;
        anon_start = end;
        let data_end = if seg.memsz > seg.filesz && data & PAGE_MASK != 0 {
            seg.offset + seg.filesz
        } else {
            u64::MAX
        };
        let backing = Backing::File {
            file,
            offset: seg.map_offset(),
            data_end,
        };
        areas.add_with(mm, (start, end), true, || Vma {
            backing,
            ..Vma::anon(start, end, prot_of(seg), flags)
        })?;
    }
    let anon_end = (seg.vaddr + seg.memsz + PAGE_MASK) & !PAGE_MASK;
    if anon_end > anon_start {
        if (anon_end - anon_start) / PAGE_SIZE > ram_pages {
            return Err(Errno::ENOMEM);
        }
        // Linux maps bss read-write whatever the segment says (vm_brk_flags).
        let prot = Prot(prot_of(seg).0 | Prot::RW.0);
        // The identity its first fault would give it: the areas beside it
        // are the file's, not anonymous ones to share one with.
        let anon = mm.next_anon_id();
        areas.add_with(mm, (anon_start, anon_end), true, || Vma {
            anon,
            ..Vma::anon(anon_start, anon_end, prot, VmFlags::NONE)
        })?;
    }
    Ok(())
}

/// Map the segments of the image at `file`, in order, each replacing what
/// it overlaps of earlier ones, into `areas`; its file areas with `flags`.
fn map_segments(
    mm: &mut Mm,
    areas: &mut Areas,
    file: (u16, VmFlags),
    segs: &[Segment],
    ram_pages: u64,
) -> KResult<()> {
    let mut r = Ok(());
    for seg in segs {
        r = map_segment(mm, areas, file, seg, ram_pages);
        if r.is_err() {
            break;
        }
    }
    areas.gathered_replace();
    r
}

/// Areas on their way into the address space: gathered while they ascend
/// apart (nearly every exec: the segments, the vDSO above them and the
/// stack at the top), then appended in one batch. From the first that
/// does not (out of order, sharing a page, or past a leaf) they go one at
/// a time, and all do if the batch cannot be appended.
struct Areas {
    gathered: VmaBatch,
    /// How many of the gathered areas, the first ones, replace what they
    /// overlap (the segments': they come before the vDSO and the stack).
    replacing: usize,
    /// Where the last area added went, once it is in the set.
    last: usize,
}

impl Areas {
    fn new() -> Self {
        Areas {
            gathered: VmaBatch::new(),
            replacing: 0,
            last: 0,
        }
    }

    /// Add the area `make` builds, which spans `[start, end)`: into the
    /// batch (inlined, so that the caller builds it in its slot there) if
    /// it extends the batch, else by itself, replacing what it overlaps
    /// if `replacing` (a segment's area) or failing with EEXIST if it
    /// overlaps anything (from `insert`, as Linux's MAP_FIXED_NOREPLACE
    /// gives for an ELF segment over a mapping).
    #[inline(always)]
    fn add_with(
        &mut self,
        mm: &mut Mm,
        (start, end): (u64, u64),
        replacing: bool,
        make: impl Fn() -> Vma,
    ) -> KResult<()> {
        if self.gathered.push_with(start, end, &make) {
            return Ok(());
        }
        self.add_apart(mm, &make(), replacing)
    }

    /// Add the read-only areas of whole files that `parts` gives, end to
    /// end from `start` (the vDSO's; see [`VmaBatch::push_files`]), none
    /// replacing anything: into the batch, else one by one, by
    /// themselves.
    #[inline(always)]
    fn add_files<const N: usize>(
        &mut self,
        mm: &mut Mm,
        start: u64,
        parts: [(u64, Prot, u16); N],
    ) -> KResult<()> {
        if self.gathered.push_files(start, parts) {
            return Ok(());
        }
        let mut at = start;
        for (size, prot, file) in parts {
            self.add_apart(mm, &Vma::whole_file(at, at + size, prot, file), false)?;
            at += size;
        }
        Ok(())
    }

    /// Mark the areas gathered so far as ones that replace what they
    /// overlap (after the segments, whose areas come first: nothing is
    /// kept per area).
    fn gathered_replace(&mut self) {
        self.replacing = self.gathered.areas().len();
    }

    /// Insert `vma` by itself, after what was gathered, replacing what it
    /// overlaps if `replacing`; from now on every area goes this way.
    #[inline(never)]
    fn add_apart(&mut self, mm: &mut Mm, vma: &Vma, replacing: bool) -> KResult<()> {
        if replacing {
            // A segment's: every area gathered before it is one too.
            self.gathered_replace();
        }
        self.flush(mm)?;
        self.gathered.close();
        self.last = if replacing {
            insert_replacing(mm, *vma)?
        } else {
            mm.vmas.insert(*vma)?
        };
        Ok(())
    }

    /// Where `len` bytes go in the mmap area, as `get_unmapped_area(0,
    /// len)` would place them once the batch is in: with only the batch
    /// below `mmap_base` (an exec), its first try, the room above the last
    /// area, needs no search.
    #[inline]
    fn unmapped_area(&mut self, mm: &mut Mm, len: u64) -> KResult<u64> {
        if mm.vmas.is_empty() && !len.is_multiple_of(HUGE_PAGE_SIZE) {
            if let Some(at) = mm.mmap_base.checked_sub(len) {
                if self.gathered.end().max(MMAP_MIN_ADDR) <= at {
                    return Ok(at);
                }
            }
        }
        self.searched_area(mm, len)
    }

    /// [`Self::unmapped_area`] by `get_unmapped_area`'s search, the batch
    /// in first.
    #[inline(never)]
    fn searched_area(&mut self, mm: &mut Mm, len: u64) -> KResult<u64> {
        self.flush(mm)?;
        mm.get_unmapped_area(0, len, false)
    }

    /// Insert what was gathered; returns the position of the last area
    /// added. Inlined: an exec's batch goes in whole, its leaf taken as
    /// the empty set's root.
    #[inline(always)]
    fn flush(&mut self, mm: &mut Mm) -> KResult<usize> {
        if !self.gathered.is_empty() && mm.vmas.append(&mut self.gathered) {
            self.replacing = 0;
            self.last = mm.vmas.len() - 1;
            return Ok(self.last);
        }
        self.flush_apart(mm)
    }

    /// [`Self::flush`] of a batch that cannot be appended (or of none):
    /// its areas inserted one by one.
    #[inline(never)]
    fn flush_apart(&mut self, mm: &mut Mm) -> KResult<usize> {
        if self.gathered.is_empty() {
            return Ok(self.last);
        }
        let replacing = core::mem::take(&mut self.replacing);
        let mut inserted = self.gathered.areas().iter().enumerate();
        let r = inserted.try_for_each(|(k, vma)| {
            self.last = if k < replacing {
                insert_replacing(mm, *vma)?
            } else {
                mm.vmas.insert(*vma)?
            };
            Ok(())
        });
        self.gathered.clear();
        r.map(|()| self.last)
    }
}

/// Insert `vma`; where it overlaps an earlier segment's last page (two
/// segments may share a page), the later segment's mapping wins, as a
/// MAP_FIXED mapping would. Returns its position.
fn insert_replacing(mm: &mut Mm, vma: Vma) -> KResult<usize> {
    // `insert` fails with EEXIST, changing nothing, only on an overlap:
    // the common case (no shared page) pays one search, not two.
    match mm.vmas.insert(vma) {
        Err(Errno::EEXIST) => {
            mm.vmas.remove_range(vma.start, vma.end, |_| {})?;
            mm.vmas.insert(vma)
        }
        r => r,
    }
}

/// Writes the stack through the process's page tables. The stack builder
/// writes a dozen small pieces, nearly all to the same page: the page's
/// physical address is kept, so only a new page costs a translation (or a
/// fault).
struct Sink<'m, 'e, 'a, M: PhysMem> {
    mm: &'m mut Mm,
    env: &'e mut MmEnv<'a, M>,
    /// The user page last translated and its physical address.
    page: Option<(u64, u64)>,
    /// The new stack area, until its first page is mapped: nothing is
    /// mapped in it, so the first page written is mapped as its fault
    /// would map it, without the fault's lookups.
    fresh: Option<usize>,
    /// The vDSO code, to be mapped with the stack's first block where
    /// they share a directory; None once it is mapped.
    special: Option<Special>,
}

impl<'m, 'e, 'a, M: PhysMem> Sink<'m, 'e, 'a, M> {
    /// A sink for the stack in area `fresh` (nothing mapped in it yet, if
    /// given), which maps `special` with the stack's first block where it
    /// can.
    #[inline(always)]
    fn new(
        mm: &'m mut Mm,
        env: &'e mut MmEnv<'a, M>,
        fresh: Option<usize>,
        special: Option<Special>,
    ) -> Self {
        Sink {
            mm,
            env,
            page: None,
            fresh,
            special,
        }
    }

    fn page_pa(&mut self, page: u64) -> KResult<u64> {
        match self.page {
            Some((p, pa)) if p == page => Ok(pa),
            _ => {
                let pa = match self.fresh.take() {
                    Some(i) => self.mm.populate_anon(self.env, i, page)?,
                    None => self.mm.user_page(self.env, page, true)?,
                };
                self.page = Some((page, pa));
                Ok(pa)
            }
        }
    }

    /// [`StackSink::write`] of `bytes` (within user space) page by page.
    #[inline(never)]
    fn write_pages(&mut self, va: u64, bytes: &[u8]) -> KResult<()> {
        let mut done = 0;
        while done < bytes.len() {
            let cur = va + done as u64;
            let off = cur & (PAGE_SIZE - 1);
            let n = ((PAGE_SIZE - off) as usize).min(bytes.len() - done);
            let pa = self.page_pa(cur - off)?;
            self.env.mem.write_bytes(pa + off, &bytes[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

impl<M: PhysMem> StackSink for Sink<'_, '_, '_, M> {
    /// The bytes within one page (an exec's whole stack image, which ends
    /// at the page-aligned top) take one translation and one copy, without
    /// the loop's state; longer pieces go page by page.
    fn write(&mut self, va: u64, bytes: &[u8]) -> KResult<()> {
        check_user_range(va, bytes.len() as u64)?;
        let off = va & (PAGE_SIZE - 1);
        if !bytes.is_empty() && off + bytes.len() as u64 <= PAGE_SIZE {
            let pa = self.page_pa(va - off)?;
            self.env.mem.write_bytes(pa + off, bytes);
            return Ok(());
        }
        self.write_pages(va, bytes)
    }

    /// The bytes within the first page written, when the stack's first
    /// block is mapped fresh there ([`Mm::populate_fresh`]): the image is
    /// built in place, with no buffer to zero and copy. They lie in user
    /// space when they are given: in one page of the stack's area.
    fn zeroed(&mut self, va: u64, len: usize) -> KResult<Option<&mut [u8]>> {
        let off = va & (PAGE_SIZE - 1);
        let Some(i) = self
            .fresh
            .filter(|_| len > 0 && off + len as u64 <= PAGE_SIZE)
        else {
            return Ok(None);
        };
        let Some((pa, both)) = self.mm.populate_fresh(self.env, i, va, self.special) else {
            return Ok(None);
        };
        // Not kept as the page last translated: the stack is built in
        // these bytes whole, and a later write looks the page up.
        self.fresh = None;
        if both {
            self.special = None;
        }
        Ok(Some(self.env.mem.bytes_mut(pa, len as u64)))
    }
}

/// Load `plan` (for the image at `file` in the file table) into the fresh
/// address space `mm`, with `args` on the stack as `stack` lays it out
/// (for the same `args`, `layout.stack_top` and vDSO) and `aux` in its
/// auxiliary vector.
#[allow(clippy::too_many_arguments)]
pub fn load_elf_binary<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    file: u16,
    plan: &LoadPlan,
    interp: Option<(u16, &LoadPlan)>,
    vdso: Option<[u16; 3]>,
    (args, stack): (&ArgBlock, &StackLayout),
    aux: &AuxValues,
    layout: &Layout,
) -> KResult<EntryState> {
    let mut aux = *aux;
    // The vDSO goes top-down from here, like any mmap.
    mm.mmap_base = layout.mmap_base - mm.mmap_base_shift();
    let mut areas = Areas::new();
    // Every exec adds areas: the leaf is allocated before the segments'
    // loop, which keeps many values in registers.
    areas.gathered.allocate();
    let mapped = map_areas(mm, env, &mut areas, (file, plan), interp, vdso, stack);
    // The areas before a failing one are mapped, as one by one.
    let i = areas.flush(mm)?;
    if let Some(ehdr) = mapped? {
        aux.sysinfo_ehdr = ehdr;
    }
    // The stack, the last area added: its first page is written now.
    mm.vmas.make_hot(i);
    let phase = [exec_phase::SEGMENTS_MAPPED, 0, 0, 0, 0, 0];
    trace::emit(env.mem, category::EXEC, kind::EXEC_PHASE, 0, phase);
    // The vDSO's code is mapped now, as its first fault would map it:
    // with the stack's first block where they share a directory (one
    // batch of tables, no walk).
    let special = match (vdso, aux.sysinfo_ehdr) {
        (Some(ids), va) if va != 0 => env.cache.get(ids[2]).and_then(|image| {
            Some(Special {
                va,
                pa: image.image_base()?,
                pages: vvar::VDSO_PAGES,
                prot: Prot(Prot::READ.0 | Prot::EXEC.0),
            })
        }),
        _ => None,
    };
    let mut sink = Sink::new(mm, env, Some(i), special);
    stack.write(args, &aux, &mut sink)?;
    let (mm, special) = (sink.mm, sink.special);
    if let Some(sp) = special {
        mm.map_special_area(env, sp);
    }
    if let Some((_, iplan)) = interp {
        mm.map_entry(env, iplan.entry, aux.phdr);
    }
    set_mm_fields(mm, plan, stack, layout);
    Ok(EntryState {
        ip: interp.map_or(plan.entry, |(_, i)| i.entry),
        sp: stack.sp,
    })
}

/// Add the program's and the interpreter's segments, the vDSO and the
/// stack to `areas`; returns the vDSO's address, if it has one.
fn map_areas<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    areas: &mut Areas,
    (file, plan): (u16, &LoadPlan),
    interp: Option<(u16, &LoadPlan)>,
    vdso: Option<[u16; 3]>,
    stack: &StackLayout,
) -> KResult<Option<u64>> {
    let ram_pages = env.frames.total();
    plan.loadable()?;
    map_segments(mm, areas, (file, VmFlags::NONE), plan.segments(), ram_pages)?;
    let ehdr = match interp {
        Some(interp) => map_interp(mm, areas, interp, vdso, ram_pages)?,
        None => match vdso {
            Some(ids) => Some(map_vdso(mm, areas, ids)?),
            None => None,
        },
    };
    let mut prot = Prot::RW;
    if plan.exec_stack {
        prot = Prot(prot.0 | Prot::EXEC.0);
    }
    // The identity its first fault would give it: no area next to it is a
    // growing-down one to share one with.
    let anon = mm.next_anon_id();
    let (start, end) = (stack.vma_start, stack.vma_end);
    areas.add_with(mm, (start, end), false, || Vma {
        anon,
        ..Vma::anon(start, end, prot, VmFlags::GROWSDOWN)
    })?;
    Ok(ehdr)
}

/// Add the interpreter's segments and the vDSO; returns the vDSO's
/// address, if it has one. Where the vDSO will go right below the
/// interpreter ([`vdso_below`]), it joins the batch first, so that the
/// areas still ascend: one batch, not three areas inserted one by one
/// after a search.
fn map_interp(
    mm: &mut Mm,
    areas: &mut Areas,
    (ifile, iplan): (u16, &LoadPlan),
    vdso: Option<[u16; 3]>,
    ram_pages: u64,
) -> KResult<Option<u64>> {
    iplan.loadable()?;
    let below = vdso.zip(vdso_below(mm, areas, iplan.segments()));
    let placed = match below {
        Some((ids, at)) => Some(place_vdso(mm, areas, ids, at)?),
        None => None,
    };
    // No page is mapped in the interpreter's file areas until its first
    // fault ([`VmFlags::FRESH`], as in the areas of the libraries it maps
    // itself): that fault writes the entries of its fault-around unread.
    let fresh = (ifile, VmFlags::FRESH);
    map_segments(mm, areas, fresh, iplan.segments(), ram_pages)?;
    Ok(match (placed, vdso) {
        (Some(at), _) => Some(at),
        (None, Some(ids)) => Some(map_vdso(mm, areas, ids)?),
        (None, None) => None,
    })
}

/// Map [vvar], [vvar_vclock] and [vdso] (Linux's
/// `arch_setup_additional_pages`) top-down in the mmap area, below the
/// interpreter; returns the vDSO's address (`AT_SYSINFO_EHDR`).
#[inline(always)]
fn map_vdso(mm: &mut Mm, areas: &mut Areas, ids: [u16; 3]) -> KResult<u64> {
    let base = areas.unmapped_area(mm, VDSO_SPAN)?;
    place_vdso(mm, areas, ids, base)
}

/// The bytes of [vvar], [vvar_vclock] and [vdso] together.
const VDSO_SPAN: u64 = (vvar::VVAR_PAGES + vvar::VCLOCK_PAGES + vvar::VDSO_PAGES) * PAGE_SIZE;

/// Where `get_unmapped_area` will put the vDSO once the interpreter's
/// segments `segs` are in, if that is right below them and above what is
/// gathered (the program's): in an exec's empty set it searches top-down
/// from `mmap_base`, and the interpreter was placed at the top, so the
/// first gap that fits is the one below it unless a gap above it, or one
/// between its segments, does. `None` where the vDSO goes elsewhere
/// ([`map_vdso`] places it then).
fn vdso_below(mm: &Mm, areas: &Areas, segs: &[Segment]) -> Option<u64> {
    let (lo, hi) = (segs.first()?.map_start(), segs.last()?.map_end());
    // Ascending (as ELF orders PT_LOAD), with no hole the vDSO fits in.
    let tight = segs.windows(2).all(|w| {
        w[0].map_start() <= w[1].map_start() && w[1].map_start() < w[0].map_end() + VDSO_SPAN
    });
    let room_above = mm.mmap_base.checked_sub(hi)?;
    let at = lo.checked_sub(VDSO_SPAN)?;
    let fits = at >= areas.gathered.end().max(MMAP_MIN_ADDR);
    (mm.vmas.is_empty() && tight && room_above < VDSO_SPAN && fits).then_some(at)
}

/// Add [vvar], [vvar_vclock] and [vdso] end to end from `base`; returns
/// the vDSO's address.
#[inline(always)]
fn place_vdso(mm: &mut Mm, areas: &mut Areas, ids: [u16; 3], base: u64) -> KResult<u64> {
    let sizes = [vvar::VVAR_PAGES, vvar::VCLOCK_PAGES, vvar::VDSO_PAGES].map(|p| p * PAGE_SIZE);
    // Page aligned already (the mmap top and the sizes are whole pages):
    // said again so that the three areas' alignment tests fold away.
    let base = base & !(PAGE_SIZE - 1);
    let code = Prot(Prot::READ.0 | Prot::EXEC.0);
    let parts = [
        (sizes[0], Prot::READ, ids[0]),
        (sizes[1], Prot::READ, ids[1]),
        (sizes[2], code, ids[2]),
    ];
    areas.add_files(mm, base, parts)?;
    Ok(base + sizes[0] + sizes[1])
}

/// The `mm_struct` fields of the loaded program (`mmap_base` was set
/// before its areas were placed).
fn set_mm_fields(mm: &mut Mm, plan: &LoadPlan, stack: &StackLayout, layout: &Layout) {
    mm.start_code = plan.start_code;
    mm.end_code = plan.end_code;
    mm.start_data = plan.start_data;
    mm.end_data = plan.end_data;
    mm.start_brk = plan.start_brk + layout.brk_offset;
    mm.brk = mm.start_brk;
    let layout = stack;
    mm.start_stack = layout.sp;
    mm.arg_start = layout.arg_start;
    mm.arg_end = layout.arg_end;
    mm.env_start = layout.env_start();
    mm.env_end = layout.env_end();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bss(memsz: u64) -> Segment {
        Segment {
            vaddr: 0x40_0000,
            memsz,
            filesz: 0,
            offset: 0,
            prot: 3,
        }
    }

    impl Areas {
        fn add(&mut self, mm: &mut Mm, vma: Vma, replacing: bool) -> KResult<()> {
            self.add_with(mm, (vma.start, vma.end), replacing, || vma)
        }
    }

    /// Map `segs` as an exec does, through a batch.
    fn map_all(mm: &mut Mm, segs: &[Segment], ram_pages: u64) -> KResult<()> {
        let mut areas = Areas::new();
        let r = map_segments(mm, &mut areas, (0, VmFlags::NONE), segs, ram_pages);
        areas.flush(mm)?;
        r
    }

    #[test]
    fn segments_sharing_a_page_or_out_of_order_map_as_one_by_one() {
        let seg = |vaddr: u64, len: u64, prot: u32| Segment {
            vaddr,
            memsz: len,
            filesz: len,
            offset: vaddr - 0x40_0000,
            prot,
        };
        let segs = [
            seg(0x40_0000, 0x1800, 1),
            seg(0x40_1800, 0x1000, 3),
            seg(0x60_0000, 0x1000, 1),
            seg(0x50_0000, 0x1000, 5),
        ];
        let mut mm = Mm::empty();
        assert_eq!(map_all(&mut mm, &segs, 1024), Ok(()));
        let got: alloc::vec::Vec<_> = mm.vmas.iter().map(|v| (v.start, v.end, v.prot)).collect();
        let want = [
            (0x40_0000, 0x40_1000, Prot::READ),
            (0x40_1000, 0x40_3000, Prot::RW),
            (0x50_0000, 0x50_1000, Prot(Prot::READ.0 | Prot::EXEC.0)),
            (0x60_0000, 0x60_1000, Prot::READ),
        ];
        assert_eq!(got, want, "the later segment wins the shared page");
    }

    #[test]
    fn the_batch_places_an_area_where_get_unmapped_area_would() {
        let top = 0x7fff_f7ff_f000;
        let len = 0x8000;
        // No area, one far below the top, one just under it, one above it.
        for seg in [
            None,
            Some(0x40_0000),
            Some(top - 0x1000),
            Some(top + 0x1000),
        ] {
            let seg = seg.map(|at| Vma::anon(at, at + PAGE_SIZE, Prot::READ, VmFlags::NONE));
            let (mut mm, mut reference) = (Mm::empty(), Mm::empty());
            mm.mmap_base = top;
            reference.mmap_base = top;
            let mut areas = Areas::new();
            if let Some(v) = seg {
                areas.add(&mut mm, v, true).unwrap();
                reference.vmas.insert(v).unwrap();
            }
            let got = areas.unmapped_area(&mut mm, len);
            assert_eq!(got, reference.get_unmapped_area(0, len, false), "{seg:?}");
            areas.flush(&mut mm).unwrap();
            assert_eq!(mm.vmas.len(), reference.vmas.len());
        }
    }

    #[test]
    fn the_vdso_below_the_interpreter_is_where_get_unmapped_area_puts_it() {
        let top = 0x7fff_f7ff_f000;
        let seg = |vaddr: u64, len: u64| Segment {
            vaddr,
            memsz: len,
            filesz: len,
            offset: 0,
            prot: 5,
        };
        let program = Vma::anon(
            0x5555_5555_4000,
            0x5555_5556_0000,
            Prot::READ,
            VmFlags::NONE,
        );
        let cases: [(&[Segment], bool); 6] = [
            // ld.so at the top, end to end: right below it.
            (
                &[seg(top - 0x35000, 0x1000), seg(top - 0x34000, 0x34000)],
                true,
            ),
            // Room above it: there (the batch's own first try).
            (
                &[seg(top - 0x45000, 0x1000), seg(top - 0x44000, 0x34000)],
                false,
            ),
            // A hole between its segments the vDSO fits in: there.
            (
                &[seg(top - 0x85000, 0x1000), seg(top - 0x34000, 0x34000)],
                false,
            ),
            // A hole too small for it: below.
            (
                &[seg(top - 0x3a000, 0x1000), seg(top - 0x34000, 0x34000)],
                true,
            ),
            // At the top but reaching down to just above the program: no
            // room below it, elsewhere.
            (&[seg(0x5555_5556_2000, top - 0x5555_5556_2000)], false),
            // Out of order: left to the search.
            (
                &[seg(top - 0x34000, 0x34000), seg(top - 0x35000, 0x1000)],
                false,
            ),
        ];
        for (segs, below) in cases {
            let (mut mm, mut reference) = (Mm::empty(), Mm::empty());
            mm.mmap_base = top;
            reference.mmap_base = top;
            let mut areas = Areas::new();
            areas.add(&mut mm, program, true).unwrap();
            reference.vmas.insert(program).unwrap();
            let got = vdso_below(&mm, &areas, segs);
            assert_eq!(got.is_some(), below, "{segs:x?}");
            for s in segs {
                let v = Vma::anon(s.map_start(), s.map_end(), Prot::READ, VmFlags::NONE);
                let _ = reference.vmas.insert(v);
            }
            if let Some(at) = got {
                let want = reference.get_unmapped_area(0, VDSO_SPAN, false);
                assert_eq!(Ok(at), want, "{segs:x?}");
            }
        }
    }

    #[test]
    fn the_interpreters_file_areas_are_mapped_fresh_and_its_bss_not() {
        let seg = |vaddr: u64, filesz: u64, memsz: u64, prot: u32| Segment {
            vaddr,
            memsz,
            filesz,
            offset: vaddr - 0x7fff_f7fc_0000,
            prot,
        };
        let segs = [
            seg(0x7fff_f7fc_0000, 0x1000, 0x1000, 4),
            seg(0x7fff_f7fc_1000, 0x3000, 0x3000, 5),
            seg(0x7fff_f7fc_4000, 0x1800, 0x3000, 6),
        ];
        let mut mm = Mm::empty();
        let mut areas = Areas::new();
        let fresh = (3, VmFlags::FRESH);
        map_segments(&mut mm, &mut areas, fresh, &segs, 1024).unwrap();
        areas.flush(&mut mm).unwrap();
        assert!(mm.vmas.all_fresh(0x7fff_f7fc_0000, 0x7fff_f7fc_6000));
        let bss = mm.vmas[mm.vmas.find(0x7fff_f7fc_6000).unwrap()];
        assert!(matches!(bss.backing, Backing::Anon) && !bss.is_fresh());
    }

    #[test]
    fn a_new_area_over_a_gathered_one_is_eexist_and_the_batch_is_mapped() {
        let mut mm = Mm::empty();
        let mut areas = Areas::new();
        let seg = Vma::anon(0x40_0000, 0x40_2000, Prot::READ, VmFlags::NONE);
        areas.add(&mut mm, seg, true).unwrap();
        let stack = Vma::anon(0x40_1000, 0x40_3000, Prot::RW, VmFlags::GROWSDOWN);
        assert_eq!(areas.add(&mut mm, stack, false), Err(Errno::EEXIST));
        assert_eq!(areas.flush(&mut mm), Ok(0), "the segment's position");
        assert_eq!(
            mm.vmas.iter().copied().collect::<alloc::vec::Vec<_>>(),
            [seg]
        );
    }

    #[test]
    fn a_batch_inserted_one_by_one_replaces_with_the_segments_areas_only() {
        let mut mm = Mm::empty();
        let old = Vma::anon(0x40_0000, 0x40_1000, Prot::RW, VmFlags::NONE);
        let below_stack = Vma::anon(0x7000_0000, 0x7000_1000, Prot::RW, VmFlags::NONE);
        mm.vmas.insert(old).unwrap();
        mm.vmas.insert(below_stack).unwrap();
        let mut areas = Areas::new();
        let seg = Segment {
            vaddr: 0x40_0000,
            memsz: 0x2000,
            filesz: 0x2000,
            offset: 0,
            prot: 1,
        };
        map_segments(&mut mm, &mut areas, (0, VmFlags::NONE), &[seg], 1024).unwrap();
        let stack = Vma::anon(0x7000_0000, 0x7000_2000, Prot::RW, VmFlags::GROWSDOWN);
        areas.add(&mut mm, stack, false).unwrap();
        assert_eq!(areas.flush(&mut mm), Err(Errno::EEXIST), "the stack's");
        let got: alloc::vec::Vec<_> = mm.vmas.iter().map(|v| (v.start, v.end, v.prot)).collect();
        let want = [
            (0x40_0000, 0x40_2000, Prot::READ),
            (0x7000_0000, 0x7000_1000, Prot::RW),
        ];
        assert_eq!(got, want, "the segment replaced the old area");
    }

    #[test]
    fn a_new_area_over_an_area_flushed_before_is_eexist() {
        let mut mm = Mm::empty();
        let mut areas = Areas::new();
        let seg = Vma::anon(0x40_0000, 0x40_2000, Prot::READ, VmFlags::NONE);
        areas.add(&mut mm, seg, true).unwrap();
        areas.flush(&mut mm).unwrap();
        let stack = Vma::anon(0x40_1000, 0x40_3000, Prot::RW, VmFlags::GROWSDOWN);
        areas.add(&mut mm, stack, false).unwrap();
        assert_eq!(areas.flush(&mut mm), Err(Errno::EEXIST));
        assert_eq!(
            mm.vmas.iter().copied().collect::<alloc::vec::Vec<_>>(),
            [seg]
        );
    }

    #[test]
    fn flush_gives_the_position_of_the_last_area_added() {
        let mut mm = Mm::empty();
        let mut areas = Areas::new();
        let vma = |k: u64| Vma::anon(k << 20, (k << 20) + PAGE_SIZE, Prot::READ, VmFlags::NONE);
        areas.add(&mut mm, vma(3), true).unwrap();
        areas.add(&mut mm, vma(5), true).unwrap();
        assert_eq!(areas.flush(&mut mm), Ok(1), "appended in one batch");
        areas.add(&mut mm, vma(4), true).unwrap();
        assert_eq!(
            areas.flush(&mut mm),
            Ok(1),
            "inserted apart, between the two"
        );
    }

    #[test]
    fn the_sink_writes_within_a_page_and_across_pages_alike() {
        use crate::mm::testmem::Fixture;
        let mut fx = Fixture::new();
        let mut mm = fx.mm();
        let (start, end) = (0x7ff0_0000, 0x7ff0_3000);
        let i = mm
            .vmas
            .insert(Vma::anon(start, end, Prot::RW, VmFlags::GROWSDOWN))
            .unwrap();
        let bytes: alloc::vec::Vec<u8> = (0..=255u8).cycle().take(0x1400).collect();
        let mut env = fx.env();
        let mut sink = Sink::new(&mut mm, &mut env, Some(i), None);
        let pieces = [
            (end - 0x10, 0x10),
            (end - 0x1010, 0x1000),
            (start + 0x10, 0x1400),
            (start, 0),
        ];
        for (va, len) in pieces {
            assert_eq!(sink.write(va, &bytes[..len]), Ok(()), "{va:#x}+{len:#x}");
        }
        assert_eq!(
            sink.write(vmrun_contract::layout::TASK_SIZE - 8, &[0; 16]),
            Err(Errno::EFAULT)
        );
        for (va, len) in pieces {
            for (k, &byte) in bytes[..len].iter().enumerate() {
                let va = va + k as u64;
                let pa = mm.pt.translate(&fx.mem, va).unwrap().pa(va);
                assert_eq!(fx.mem.byte(pa), byte, "{va:#x}");
            }
        }
    }

    #[test]
    fn the_sink_gives_a_fresh_stack_block_zeroed_in_place_and_nothing_else() {
        use crate::mm::testmem::Fixture;
        use vmrun_contract::FaultSize;
        for policy in [FaultSize::Page4K, FaultSize::Block64K, FaultSize::Huge2M] {
            let mut fx = Fixture::new();
            fx.frames.fault_size = policy;
            let mut mm = fx.mm();
            let (start, end) = (0x7ff0_0000, 0x7ff2_0000);
            let i = mm
                .vmas
                .insert(Vma::anon(start, end, Prot::RW, VmFlags::GROWSDOWN))
                .unwrap();
            let va = end - 0x100;
            {
                let mut env = fx.env();
                let mut sink = Sink::new(&mut mm, &mut env, Some(i), None);
                let across = sink.zeroed(end - 0x1001, 0x1001).map(|b| b.is_some());
                assert_eq!(across, Ok(false), "{policy:?}: two pages");
                let given = sink.zeroed(va, 0x100).unwrap().map(|b| {
                    assert!(b.iter().all(|&x| x == 0), "{policy:?}");
                    b.fill(7);
                });
                assert_eq!(given.is_some(), policy != FaultSize::Page4K, "{policy:?}");
                if given.is_none() {
                    sink.write(va, &[7; 0x100]).unwrap();
                }
                let again = sink.zeroed(va - 0x100, 0x100).map(|b| b.is_some());
                assert_eq!(again, Ok(false), "{policy:?}: mapped already");
                sink.write(va - 8, &[9; 8]).unwrap();
            }
            for (k, byte) in (0..0x108).map(|k| (k, if k < 8 { 9 } else { 7 })) {
                let at = va - 8 + k;
                let pa = mm.pt.translate(&fx.mem, at).unwrap().pa(at);
                assert_eq!(fx.mem.byte(pa), byte, "{policy:?} {at:#x}");
            }
        }
    }

    #[test]
    fn the_vdso_code_is_mapped_with_the_stacks_first_block_where_they_share_a_directory() {
        use crate::mm::paging::pte;
        use crate::mm::testmem::Fixture;
        let (start, end) = (0x7ff0_0000, 0x7ff2_0000);
        // In the stack's 1 GiB region, another 2 MiB one: with the block,
        // in a fourth table. In another 1 GiB region, or in the stack's
        // 2 MiB one: not with it, left to `map_special_area`.
        for (va, with_block) in [
            (0x7f00_0000, true),
            (0x3f00_0000, false),
            (0x7fe0_0000, false),
        ] {
            let mut fx = Fixture::new();
            let mut mm = fx.mm();
            let i = mm
                .vmas
                .insert(Vma::anon(start, end, Prot::RW, VmFlags::GROWSDOWN))
                .unwrap();
            let image = fx.frames.alloc_fresh_run(2).unwrap();
            let code = Prot(Prot::READ.0 | Prot::EXEC.0);
            let special = Special {
                va,
                pa: image,
                pages: 2,
                prot: code,
            };
            let tables = mm.pt.table_pages();
            let left = {
                let mut env = fx.env();
                let mut sink = Sink::new(&mut mm, &mut env, Some(i), Some(special));
                assert!(sink.zeroed(end - 0x100, 0x100).unwrap().is_some());
                sink.special
            };
            assert_eq!(left.is_none(), with_block, "{va:#x}");
            if with_block {
                assert_eq!(mm.pt.table_pages(), tables + 4, "{va:#x}");
            }
            if let Some(sp) = left {
                mm.map_special_area(&mut fx.env(), sp);
            }
            for k in 0..2 {
                let t = mm.pt.translate(&fx.mem, va + k * PAGE_SIZE).unwrap();
                assert_eq!(t.frame, image + k * PAGE_SIZE, "{va:#x}");
                assert_eq!(t.flags & pte::RW, 0, "{va:#x}: read-only");
                assert_ne!(t.flags & pte::US, 0, "{va:#x}");
            }
            assert!(mm.pt.translate(&fx.mem, va + 2 * PAGE_SIZE).is_none());
            let top = mm.pt.translate(&fx.mem, end - 8).unwrap();
            assert_ne!(top.flags & pte::RW, 0, "{va:#x}: the stack is writable");
        }
    }

    #[test]
    fn the_sink_gives_no_block_of_an_area_a_write_fault_would_not_fill() {
        use crate::mm::testmem::Fixture;
        let (start, end) = (0x7ff0_0000, 0x7ff2_0000);
        let read_only = Vma::anon(start, end, Prot::READ, VmFlags::GROWSDOWN);
        let shared = Vma::anon(start, end, Prot::RW, VmFlags::SHARED);
        let file = Vma {
            backing: Backing::File {
                file: 0,
                offset: 0,
                data_end: u64::MAX,
            },
            ..Vma::anon(start, end, Prot::RW, VmFlags::NONE)
        };
        for (vma, va) in [
            (read_only, end - 0x100),
            (shared, end - 0x100),
            (file, end - 0x100),
            (
                Vma::anon(start, end, Prot::RW, VmFlags::GROWSDOWN),
                end + 0x100,
            ),
        ] {
            let mut fx = Fixture::new();
            let mut mm = fx.mm();
            let i = mm.vmas.insert(vma).unwrap();
            let mut env = fx.env();
            let mut sink = Sink::new(&mut mm, &mut env, Some(i), None);
            let given = sink.zeroed(va, 0x80).map(|b| b.is_some());
            assert_eq!(given, Ok(false), "{vma:?} {va:#x}");
            assert_eq!(
                sink.mm.pt.translate(sink.env.mem, va),
                None,
                "nothing mapped"
            );
        }
    }

    #[test]
    fn a_segment_maps_the_pages_its_methods_give() {
        let page = PAGE_SIZE;
        for lead in [0, 0x18, page - 8] {
            for filesz in [0, 1, page - lead, page, 2 * page + 5] {
                for extra in [0, 1, page - 1, page, 3 * page] {
                    let vaddr = 0x40_0000 + lead;
                    let seg = Segment {
                        vaddr,
                        memsz: filesz + extra,
                        filesz,
                        offset: 0x3000 + lead,
                        prot: 5,
                    };
                    let mut want = alloc::vec::Vec::new();
                    if seg.file_map_end() > seg.map_start() {
                        let (tail_start, tail_end) = seg.zero_tail();
                        let data_end = if tail_end > tail_start {
                            seg.offset + seg.filesz
                        } else {
                            u64::MAX
                        };
                        let backing = Backing::File {
                            file: 7,
                            offset: seg.map_offset(),
                            data_end,
                        };
                        want.push((seg.map_start(), seg.file_map_end(), backing));
                    }
                    let (anon_start, anon_end) = seg.anon_pages();
                    if anon_end > anon_start {
                        want.push((anon_start, anon_end, Backing::Anon));
                    }
                    let mut mm = Mm::empty();
                    let mut areas = Areas::new();
                    map_segments(&mut mm, &mut areas, (7, VmFlags::NONE), &[seg], 1024).unwrap();
                    areas.flush(&mut mm).unwrap();
                    let got: alloc::vec::Vec<_> = mm
                        .vmas
                        .iter()
                        .map(|v| (v.start, v.end, v.backing))
                        .collect();
                    assert_eq!(got, want, "{seg:?}");
                }
            }
        }
    }

    #[test]
    fn bss_of_more_pages_than_ram_is_enomem_and_maps_nothing() {
        let mut mm = Mm::empty();
        let ram_pages = 1024;
        let too_big = bss((ram_pages + 1) * PAGE_SIZE);
        assert_eq!(map_all(&mut mm, &[too_big], ram_pages), Err(Errno::ENOMEM));
        assert!(mm.vmas.is_empty());
        let fits = bss(ram_pages * PAGE_SIZE);
        assert_eq!(map_all(&mut mm, &[fits], ram_pages), Ok(()));
        assert_eq!(mm.vmas.len(), 1);
    }
}
