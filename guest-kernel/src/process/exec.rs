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

/// The VMAs for one segment: the file-backed pages (the last of which
/// reads as zero past the file data when bss follows), then anonymous bss.
/// A bss of more pages than `ram_pages` is ENOMEM, as Linux's overcommit
/// heuristic refuses more than all of RAM (and swap) in one `vm_brk`.
fn map_segment(mm: &mut Mm, file: u16, seg: &Segment, ram_pages: u64) -> KResult<()> {
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
        insert_replacing(mm, vma)?;
    }
    let (anon_start, anon_end) = seg.anon_pages();
    if (anon_end - anon_start) / PAGE_SIZE > ram_pages {
        return Err(Errno::ENOMEM);
    }
    if anon_end > anon_start {
        // Linux maps bss read-write whatever the segment says (vm_brk_flags).
        let prot = Prot(prot_of(seg).0 | Prot::RW.0);
        insert_replacing(mm, Vma::anon(anon_start, anon_end, prot, VmFlags::NONE))?;
    }
    Ok(())
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
    for seg in plan.segments() {
        map_segment(mm, file, seg, ram_pages)?;
    }
    if let Some((ifile, iplan)) = interp {
        iplan.check_loadable().map_err(|e| e.errno())?;
        for seg in iplan.segments() {
            map_segment(mm, ifile, seg, ram_pages)?;
        }
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
    let vma = Vma::anon(stack.vma_start, stack.vma_end, prot, VmFlags::GROWSDOWN);
    // A segment already there: EEXIST (from `insert`), as Linux's
    // MAP_FIXED_NOREPLACE gives for an ELF segment over a mapping.
    let i = mm.vmas.insert(vma)?;
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
    let mut at = mm.get_unmapped_area(0, total, false)?;
    let mut vdso = 0;
    for (k, (id, len)) in ids.iter().zip(sizes).enumerate() {
        let prot = if k == 2 {
            Prot(Prot::READ.0 | Prot::EXEC.0)
        } else {
            Prot::READ
        };
        let backing = Backing::File {
            file: *id,
            offset: 0,
            data_end: u64::MAX,
        };
        let vma = Vma {
            backing,
            ..Vma::anon(at, at + len, prot, VmFlags::NONE)
        };
        mm.vmas.insert(vma)?;
        vdso = at;
        at += len;
    }
    let _ = env;
    Ok(vdso)
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
    fn bss_of_more_pages_than_ram_is_enomem_and_maps_nothing() {
        let mut mm = Mm::empty();
        let ram_pages = 1024;
        let too_big = bss((ram_pages + 1) * PAGE_SIZE);
        assert_eq!(
            map_segment(&mut mm, 0, &too_big, ram_pages),
            Err(Errno::ENOMEM)
        );
        assert!(mm.vmas.is_empty());
        let fits = bss(ram_pages * PAGE_SIZE);
        assert_eq!(map_segment(&mut mm, 0, &fits, ram_pages), Ok(()));
        assert_eq!(mm.vmas.len(), 1);
    }
}
