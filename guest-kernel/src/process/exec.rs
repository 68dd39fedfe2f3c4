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
use crate::mm::phys::PhysMem;
use crate::mm::space::{check_user_range, Mm, MmEnv};
use crate::mm::vma::{Backing, Prot, VmFlags, Vma};
use crate::mm::vma_tree::LEAF_CAP;
use crate::trace::{self, category, kind};
use vmrun_contract::layout::PAGE_SIZE;
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

/// The VMAs for one segment, handed to `areas`: the file-backed pages
/// (the last of which reads as zero past the file data when bss follows),
/// then anonymous bss. A bss of more pages than `ram_pages` is ENOMEM, as
/// Linux's overcommit heuristic refuses more than all of RAM (and swap) in
/// one `vm_brk`.
fn map_segment(
    mm: &mut Mm,
    areas: &mut Areas,
    file: u16,
    seg: &Segment,
    ram_pages: u64,
) -> KResult<()> {
    let (tail_start, tail_end) = seg.zero_tail();
    if seg.file_map_end() > seg.map_start() {
        let data_end = if tail_end > tail_start {
            seg.offset + seg.filesz
        } else {
            u64::MAX
        };
        let backing = Backing::File {
            file,
            offset: seg.map_offset(),
            data_end,
        };
        let vma = Vma {
            backing,
            ..Vma::anon(
                seg.map_start(),
                seg.file_map_end(),
                prot_of(seg),
                VmFlags::NONE,
            )
        };
        areas.add(mm, vma)?;
    }
    let (anon_start, anon_end) = seg.anon_pages();
    if (anon_end - anon_start) / PAGE_SIZE > ram_pages {
        return Err(Errno::ENOMEM);
    }
    if anon_end > anon_start {
        // Linux maps bss read-write whatever the segment says (vm_brk_flags).
        let prot = Prot(prot_of(seg).0 | Prot::RW.0);
        let vma = Vma {
            // The identity its first fault would give it: the areas beside
            // it are the file's, not anonymous ones to share one with.
            anon: mm.next_anon_id(),
            ..Vma::anon(anon_start, anon_end, prot, VmFlags::NONE)
        };
        areas.add(mm, vma)?;
    }
    Ok(())
}

/// Map the segments of the image at `file`, in order, each replacing what
/// it overlaps of earlier ones.
fn map_segments(mm: &mut Mm, file: u16, segs: &[Segment], ram_pages: u64) -> KResult<()> {
    let mut areas = Areas::new();
    let r = segs
        .iter()
        .try_for_each(|seg| map_segment(mm, &mut areas, file, seg, ram_pages));
    // The areas before a failing segment's are mapped, as one by one.
    areas.flush(mm)?;
    r
}

/// Segment areas on their way into the address space: gathered while they
/// ascend apart (nearly every program), then appended in one batch. From
/// the first that does not (out of order, sharing a page, or past a leaf)
/// they go one at a time, and all do if the batch cannot be appended.
struct Areas {
    gathered: [Vma; LEAF_CAP],
    n: usize,
    batch: bool,
}

impl Areas {
    fn new() -> Self {
        const NONE: Vma = Vma::anon(0, 0, Prot::NONE, VmFlags::NONE);
        Areas {
            gathered: [NONE; LEAF_CAP],
            n: 0,
            batch: true,
        }
    }

    #[inline]
    fn add(&mut self, mm: &mut Mm, vma: Vma) -> KResult<()> {
        if self.batch {
            let n = self.n;
            if n < LEAF_CAP && (n == 0 || self.gathered[n - 1].end <= vma.start) {
                self.gathered[n] = vma;
                self.n = n + 1;
                return Ok(());
            }
            self.flush(mm)?;
            self.batch = false;
        }
        insert_replacing(mm, vma)
    }

    /// Insert what was gathered.
    fn flush(&mut self, mm: &mut Mm) -> KResult<()> {
        let areas = &mut self.gathered[..core::mem::take(&mut self.n)];
        if !areas.is_empty() && !mm.vmas.append(areas)? {
            for vma in areas.iter() {
                insert_replacing(mm, *vma)?;
            }
        }
        Ok(())
    }
}

/// Insert `vma`; where it overlaps an earlier segment's last page (two
/// segments may share a page), the later segment's mapping wins, as a
/// MAP_FIXED mapping would.
fn insert_replacing(mm: &mut Mm, vma: Vma) -> KResult<()> {
    // `insert` fails with EEXIST, changing nothing, only on an overlap:
    // the common case (no shared page) pays one search, not two.
    match mm.vmas.insert(vma) {
        Err(Errno::EEXIST) => {
            mm.vmas.remove_range(vma.start, vma.end, |_| {})?;
            mm.vmas.insert(vma).map(|_| ())
        }
        r => r.map(|_| ()),
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
}

impl<M: PhysMem> Sink<'_, '_, '_, M> {
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
}

impl<M: PhysMem> StackSink for Sink<'_, '_, '_, M> {
    fn write(&mut self, va: u64, bytes: &[u8]) -> KResult<()> {
        check_user_range(va, bytes.len() as u64)?;
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
    let ram_pages = env.frames.total();
    plan.check_loadable().map_err(|e| e.errno())?;
    map_segments(mm, file, plan.segments(), ram_pages)?;
    if let Some((ifile, iplan)) = interp {
        iplan.check_loadable().map_err(|e| e.errno())?;
        map_segments(mm, ifile, iplan.segments(), ram_pages)?;
    }
    if let Some(ids) = vdso {
        aux.sysinfo_ehdr = map_vdso(mm, env, ids)?;
    }
    let phase = [exec_phase::SEGMENTS_MAPPED, 0, 0, 0, 0, 0];
    trace::emit(env.mem, category::EXEC, kind::EXEC_PHASE, 0, phase);
    let mut prot = Prot::RW;
    if plan.exec_stack {
        prot = Prot(prot.0 | Prot::EXEC.0);
    }
    let vma = Vma {
        // The identity its first fault would give it: no area next to it
        // is a growing-down one to share one with.
        anon: mm.next_anon_id(),
        ..Vma::anon(stack.vma_start, stack.vma_end, prot, VmFlags::GROWSDOWN)
    };
    // A segment already there: EEXIST (from `insert`), as Linux's
    // MAP_FIXED_NOREPLACE gives for an ELF segment over a mapping.
    let i = mm.vmas.insert_hot(vma)?;
    let mut sink = Sink {
        mm,
        env,
        page: None,
        fresh: Some(i),
    };
    stack.write(args, &aux, &mut sink)?;
    let mm = sink.mm;
    set_mm_fields(mm, plan, stack, layout);
    Ok(EntryState {
        ip: interp.map_or(plan.entry, |(_, i)| i.entry),
        sp: stack.sp,
    })
}

/// Map [vvar], [vvar_vclock] and [vdso] (Linux's
/// `arch_setup_additional_pages`) top-down in the mmap area, below the
/// interpreter; returns the vDSO's address (`AT_SYSINFO_EHDR`).
fn map_vdso<M: PhysMem>(mm: &mut Mm, env: &mut MmEnv<'_, M>, ids: [u16; 3]) -> KResult<u64> {
    let sizes = [vvar::VVAR_PAGES, vvar::VCLOCK_PAGES, vvar::VDSO_PAGES].map(|p| p * PAGE_SIZE);
    let total: u64 = sizes.iter().sum();
    let base = mm.get_unmapped_area(0, total, false)?;
    let mut at = base;
    let mut areas = [0, 1, 2].map(|k| {
        let prot = if k == 2 {
            Prot(Prot::READ.0 | Prot::EXEC.0)
        } else {
            Prot::READ
        };
        let backing = Backing::File {
            file: ids[k],
            offset: 0,
            data_end: u64::MAX,
        };
        at += sizes[k];
        Vma {
            backing,
            ..Vma::anon(at - sizes[k], at, prot, VmFlags::NONE)
        }
    });
    // Past the segments (nearly always): one append.
    if !mm.vmas.append(&mut areas)? {
        for vma in areas {
            mm.vmas.insert(vma)?;
        }
    }
    let _ = env;
    Ok(base + sizes[0] + sizes[1])
}

fn set_mm_fields(mm: &mut Mm, plan: &LoadPlan, stack: &StackLayout, layout: &Layout) {
    mm.start_code = plan.start_code;
    mm.end_code = plan.end_code;
    mm.start_data = plan.start_data;
    mm.end_data = plan.end_data;
    mm.start_brk = plan.start_brk + layout.brk_offset;
    mm.brk = mm.start_brk;
    mm.mmap_base = layout.mmap_base - mm.mmap_base_shift();
    let layout = stack;
    mm.start_stack = layout.sp;
    mm.arg_start = layout.arg_start;
    mm.arg_end = layout.arg_end;
    mm.env_start = layout.env_start;
    mm.env_end = layout.env_end;
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
        assert_eq!(map_segments(&mut mm, 0, &segs, 1024), Ok(()));
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
    fn bss_of_more_pages_than_ram_is_enomem_and_maps_nothing() {
        let mut mm = Mm::empty();
        let ram_pages = 1024;
        let too_big = bss((ram_pages + 1) * PAGE_SIZE);
        assert_eq!(
            map_segments(&mut mm, 0, &[too_big], ram_pages),
            Err(Errno::ENOMEM)
        );
        assert!(mm.vmas.is_empty());
        let fits = bss(ram_pages * PAGE_SIZE);
        assert_eq!(map_segments(&mut mm, 0, &[fits], ram_pages), Ok(()));
        assert_eq!(mm.vmas.len(), 1);
    }
}
