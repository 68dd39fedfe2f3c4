//! Copying an address space for fork (Linux's `dup_mmap` and
//! `copy_page_range`): the child gets the same areas, and every page the
//! parent has mapped in areas holding private pages (or shared anonymous
//! memory), the private ones copy-on-write; the other areas' pages are
//! faulted in again by the child, as Linux's `vma_needs_copy` decides,
//! except the page-cache leaves that lie in a leaf table copied anyway
//! (a static program's text beside its data): copied as they are, they
//! spare the child's first instruction a fault that maps the whole
//! fault-around window again.
//!
//! A private frame becomes shared: both page tables map it read-only and
//! the frame allocator counts the extra mapping; the first write on either
//! side copies it (or takes it back writable when it is the last mapping,
//! see `fault.rs`). Page-cache frames are mapped as they are (they are
//! never written through a private mapping). 2 MiB anonymous pages are
//! split into 4 KiB ones first, so that sharing is counted per frame.
//!
//! `MAP_SHARED` anonymous memory has no page-cache object behind it (Linux
//! backs it with a shmem file), so a page first touched after the fork
//! would be faulted in separately on each side. Fork therefore populates
//! such areas before sharing them, when free memory allows (at most half
//! of the free frames); both sides then map every page of the area.

use super::paging::{pte, KernelHalf, MapError, PageSize};
use super::phys::PhysMem;
use super::space::{Mm, MmEnv, CHILD_PAGES};
use super::vma::{Backing, Prot, VmFlags, Vma};
use crate::errno::KResult;
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE};

/// Whether `v` is `MAP_SHARED` anonymous memory.
fn shared_anon(v: &Vma) -> bool {
    v.flags.contains(VmFlags::SHARED) && matches!(v.backing, Backing::Anon)
}

const REGION_MASK: u64 = !(HUGE_PAGE_SIZE - 1);

/// What fork does with an area's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AreaCopy {
    /// Copied, private frames made copy-on-write (an area that holds
    /// private pages).
    Private,
    /// Copied, the frames shared writable (`MAP_SHARED` anonymous memory).
    SharedAnon,
    /// Page-cache frames only (a private file area without a private
    /// page): copied as they are in the regions of [`cache_regions`].
    Cache,
    /// Not copied (a shared file mapping, an untouched anonymous area).
    Not,
}

/// The 2 MiB regions in which fork copies the page-cache leaves of the
/// [`AreaCopy::Cache`] ranges of `areas` (sorted, apart): each a region at
/// either end of such a range that a range copied with its private
/// pages also reaches, so that its leaf table is copied anyway, and no
/// [`AreaCopy::Not`] range does, so that the child's table holds every used
/// entry of the parent's. A static program's text and its data, bss and
/// heap share one; a library's text and its data segment too. Each is
/// handed to `f` once, in order (no list is built: its allocation cost a
/// fork more than the search); the first error stops the walk.
fn for_each_cache_region(
    areas: &[(u64, u64, AreaCopy)],
    mut f: impl FnMut(u64) -> KResult<()>,
) -> KResult<()> {
    // The last region handed over, or looked at and left.
    let mut last = None;
    for (i, &(s, e, how)) in areas.iter().enumerate() {
        if how != AreaCopy::Cache {
            continue;
        }
        for r in [s & REGION_MASK, (e - 1) & REGION_MASK] {
            if last.is_some_and(|last| last >= r) {
                continue;
            }
            // The ranges in the region are the neighbours of this one.
            let stop = r.saturating_add(HUGE_PAGE_SIZE);
            let (mut copied, mut not) = (false, false);
            let mut note = |how: AreaCopy| {
                copied |= matches!(how, AreaCopy::Private | AreaCopy::SharedAnon);
                not |= how == AreaCopy::Not;
            };
            let mut j = i;
            while j > 0 && areas[j - 1].1 > r {
                j -= 1;
                note(areas[j].2);
            }
            j = i + 1;
            while j < areas.len() && areas[j].0 < stop {
                note(areas[j].2);
                j += 1;
            }
            if copied && !not {
                f(r)?;
            }
            last = Some(r);
        }
    }
    Ok(())
}

impl Mm {
    /// A copy of this address space for a forked child; `sp` is the
    /// caller's user stack pointer at the call (0 if none), whose page the
    /// child gets a copy of at once ([`Self::copy_stack_top`]).
    pub fn fork_copy<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        kernel: &KernelHalf,
        child: &mut Mm,
        sp: u64,
    ) -> KResult<()> {
        child.init(env.mem, env.frames, kernel)?;
        // Both address spaces' frames are shared from here on.
        (self.may_share, child.may_share) = (true, true);
        self.vmas.copy_into(&mut child.vmas)?;
        child.vmas.set_journaling(false);
        child.copy_layout(self);
        // As Linux's `vma_needs_copy`: an area that never had a private
        // page (no anonymous identity: text, read-only data, an untouched
        // mapping, a shared file mapping) maps nothing a fault in the
        // child would not map the same way, so its entries are not copied,
        // but for the page-cache leaves that share a leaf table with copied
        // ones (see `cache_regions`). Shared anonymous memory has no page
        // cache behind it: always. One pass over the child's areas (the
        // parent's, cloned), a leaf of the area tree at a time, sorts them
        // and marks those fork copies nothing of (a shared file mapping,
        // an untouched anonymous area) as having no page mapped in the
        // child ([`VmFlags::UNCOPIED`]): its first fault in one writes the
        // entries unread. A private file area is not marked, whether its
        // leaves are copied or not: clearing the mark of the copied ones
        // afterwards (a search of the area tree each) cost some 250
        // instructions a fork; a library's text alone in its table then
        // takes its first fault in the child into a new table, one that
        // is known empty anyway.
        let mut areas: alloc::vec::Vec<(u64, u64, AreaCopy)> = alloc::vec::Vec::new();
        let _ = areas.try_reserve_exact(self.vmas.len());
        let mut shared_anon_pages = 0;
        child.vmas.mark_uncopied_where(|v| {
            let shared = shared_anon(v);
            if shared && v.prot != Prot::NONE {
                shared_anon_pages += (v.end - v.start) / PAGE_SIZE;
            }
            let how = if shared {
                AreaCopy::SharedAnon
            } else if v.anon != 0 {
                AreaCopy::Private
            } else if !v.flags.contains(VmFlags::SHARED)
                && matches!(v.backing, Backing::File { .. })
            {
                AreaCopy::Cache
            } else {
                AreaCopy::Not
            };
            super::space::push_joined(&mut areas, (v.start, v.end, how));
            how == AreaCopy::Not
        });
        child.uncopied = true;
        if shared_anon_pages > 0 {
            self.populate_shared_anon(env, shared_anon_pages);
        }
        for &(start, end, how) in &areas {
            match how {
                AreaCopy::Private => self.share_range(env, child, start, end, false)?,
                AreaCopy::SharedAnon => self.share_range(env, child, start, end, true)?,
                AreaCopy::Cache | AreaCopy::Not => {}
            }
        }
        for_each_cache_region(&areas, |region| {
            let cache = areas.iter().filter(|a| a.2 == AreaCopy::Cache);
            let spans = cache.map(|a| (a.0, a.1));
            let (mem, frames) = (&mut *env.mem, &mut *env.frames);
            let r = self
                .pt
                .copy_cache_leaves(&mut child.pt, mem, frames, region, spans);
            r.map_err(|e| e.errno())
        })?;
        if sp != 0 {
            self.copy_stack_top(env, child, sp & !(PAGE_SIZE - 1));
        }
        self.copy_written(env, child);
        self.copy_child_written(env, child);
        env.mem.flush_copies();
        self.tlb_stale = true;
        child.peak_before_drop = child.user_frames;
        Ok(())
    }

    /// Fault in every missing page of the accessible `MAP_SHARED`
    /// anonymous areas (`pages` in all), if they fit in half the free
    /// frames; otherwise (or when memory runs out midway) leave the rest to
    /// be faulted in later.
    fn populate_shared_anon<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, pages: u64) {
        let shared_anon = |v: &Vma| shared_anon(v) && v.prot != Prot::NONE;
        let free = env.frames.total() - env.frames.in_use();
        if pages == 0 || pages > free / 2 {
            return;
        }
        let mut i = 0;
        while i < self.vmas.len() {
            let v = self.vmas[i];
            if shared_anon(&v) {
                let mut va = v.start;
                while va < v.end {
                    let missing = self
                        .pt
                        .translate(env.mem, va)
                        .is_none_or(|t| t.flags & pte::P == 0);
                    if missing && self.fault_anon(env, i, va).is_err() {
                        return;
                    }
                    va += PAGE_SIZE;
                }
            }
            i += 1;
        }
    }

    /// Fork's eager copy of the page at `va`, the page of the caller's
    /// stack its stack pointer is in, which both sides write as soon as
    /// they run (the parent's return from the call, the child's first
    /// calls): see [`Self::copy_for_child`].
    fn copy_stack_top<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, child: &mut Mm, va: u64) {
        let writable = |v: &Vma| v.prot.contains(Prot::WRITE) && !v.flags.contains(VmFlags::SHARED);
        if self.vmas.area_at(va).is_some_and(writable) {
            self.copy_for_child(env, child, va, 0);
        }
    }

    /// The pages the last write faults took ([`Mm::written`]), which this
    /// process wrote after its last fork and is likely to write after
    /// this one too (a shell's job table and allocator state, the libc
    /// state a fork changes), are copied for the child at once, each if it
    /// is still dirty: a page copied at an earlier fork is left clean, so
    /// one not written since is no longer copied (and is forgotten).
    fn copy_written<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, child: &mut Mm) {
        for k in 0..self.written.len() {
            let va = self.written[k];
            if va == 0 {
                continue;
            }
            let writable =
                |v: &Vma| v.prot.contains(Prot::WRITE) && !v.flags.contains(VmFlags::SHARED);
            let area = self.vmas.find_hot(va).is_some_and(|(_, v)| writable(v));
            if !area || self.copy_for_child(env, child, va, pte::D).is_none() {
                self.written[k] = 0;
            }
        }
    }

    /// The pages the last child wrote before its exec or exit
    /// ([`Mm::child_written`]), which this child is likely to write too,
    /// each then taking a copy-on-write fault (a shell's child writes the
    /// same pages of libc's data and bss every time): copied for it at
    /// once, as [`Self::copy_written`] copies the parent's. Each copy is
    /// noted in the child's [`Mm::written`] (its first slots: a fork's
    /// child starts with none) and the address of its entry in
    /// [`Mm::precopied`], so that it hands the page back if it wrote it
    /// ([`Self::writes_since_fork`]).
    fn copy_child_written<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, child: &mut Mm) {
        let mut n = 0;
        for k in 0..CHILD_PAGES {
            let va = self.child_written[k];
            if va == 0 {
                break;
            }
            let writable =
                |v: &Vma| v.prot.contains(Prot::WRITE) && !v.flags.contains(VmFlags::SHARED);
            if !self.vmas.find_hot(va).is_some_and(|(_, v)| writable(v)) {
                continue;
            }
            if let Some(entry_pa) = self.copy_for_child(env, child, va, 0) {
                debug_assert_eq!(child.written_at, n, "a fork's child has written nothing");
                child.precopied[n] = entry_pa;
                child.note_written(va);
                n += 1;
            }
        }
    }

    /// What this forked child (not exec'd since: [`Mm::uncopied`]) wrote
    /// of its parent's memory, for the parent's next fork
    /// ([`Mm::child_written`]): the pages of its [`Mm::written`], but for
    /// those its fork copied for it ([`Mm::precopied`]) whose entry is
    /// clean (not written). None for any other address space. Called
    /// before its exec or exit tears it down. (Had it taken so many write
    /// faults that they overwrote the first slots, such a page might be
    /// left out: only a copy the next fork does not make.)
    pub fn writes_since_fork<M: PhysMem>(&self, mem: &M) -> Option<[u64; CHILD_PAGES]> {
        if !self.uncopied {
            return None;
        }
        let mut out = [0; CHILD_PAGES];
        let mut n = 0;
        let own = pte::P | pte::RW | pte::D;
        for (k, &va) in self.written.iter().enumerate() {
            if n == CHILD_PAGES {
                break;
            }
            if va == 0 || out[..n].contains(&va) {
                continue;
            }
            let entry_pa = self.precopied.get(k).copied().unwrap_or(0);
            if entry_pa != 0 && mem.read_u64(entry_pa) & own != own {
                continue;
            }
            out[n] = va;
            n += 1;
        }
        Some(out)
    }

    /// The private page at `va` of a writable private area, which this
    /// fork has just shared (and whose entry has the flags of `need`),
    /// and which both sides are likely to write soon, each then taking a
    /// write fault (a copy on one side, the frame taken back writable on
    /// the other): the child gets its own copy now (one page copied, by
    /// the host where ring 0 is emulated) and the parent keeps its frame
    /// writable (if no other child still shares it), both clean. The
    /// physical address of the child's entry if it was copied; a page not
    /// so shared (or out of memory) stays as it is.
    fn copy_for_child<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        child: &mut Mm,
        va: u64,
        need: u64,
    ) -> Option<u64> {
        let (Some(mine), Some(theirs)) =
            (self.pt.lookup(env.mem, va), child.pt.lookup(env.mem, va))
        else {
            return None;
        };
        let (t, c) = (mine.translation(), theirs.translation());
        let flags = pte::P | pte::RW | need;
        let ours =
            t.size == PageSize::Size4K && c.frame == t.frame && t.flags & flags == pte::P | need;
        if !ours || !env.frames.is_private(env.mem, t.frame) || !env.frames.is_shared(t.frame) {
            return None;
        }
        let frame = env.frames.alloc_uninit(env.mem)?;
        // With the other eager copies of this fork, in one go at its end.
        env.mem.copy_deferred(frame, t.frame, PAGE_SIZE);
        // Writable but clean on both sides: the next fork tells a page
        // written since (dirty) from one only copied here.
        let flags = (t.flags | pte::RW) & !pte::D;
        child.pt.rewrite(env.mem, &theirs, va, frame, flags);
        // The child's count stays: its copy replaces the shared frame.
        env.frames.unshare(t.frame);
        if !env.frames.is_shared(t.frame) {
            self.pt.rewrite(env.mem, &mine, va, t.frame, flags);
        }
        Some(theirs.entry_pa())
    }

    fn copy_layout(&mut self, from: &Mm) {
        self.start_code = from.start_code;
        self.end_code = from.end_code;
        self.start_data = from.start_data;
        self.end_data = from.end_data;
        self.start_brk = from.start_brk;
        self.brk = from.brk;
        self.start_stack = from.start_stack;
        self.arg_start = from.arg_start;
        self.arg_end = from.arg_end;
        self.env_start = from.env_start;
        self.env_end = from.env_end;
        self.mmap_base = from.mmap_base;
        self.last_anon = from.last_anon;
        self.rlim = from.rlim;
    }

    /// Map every leaf of `[start, end)` into `child` as well; private
    /// frames become read-only in both and counted as shared.
    fn share_range<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        child: &mut Mm,
        start: u64,
        end: u64,
        shared_area: bool,
    ) -> KResult<()> {
        let mut counted = 0;
        let r = self.pt.copy_leaves(
            &mut child.pt,
            env.mem,
            env.frames,
            (start, end),
            |m, fr, l| {
                // Whether the run's frames are private (each now has one
                // more mapping) or page-cache ones (or outside RAM); a mix
                // goes leaf by leaf.
                let private = if l.pages == 1 {
                    let private = fr.owns(l.frame) && !fr.is_cache(m, l.frame);
                    if private && !fr.share(l.frame) {
                        return Err(MapError::OutOfMemory);
                    }
                    private
                } else {
                    match fr.share_run(m, l.frame, l.pages) {
                        Some(private) => private,
                        None => return Ok(None),
                    }
                };
                if !private {
                    return Ok(Some((!0, !0)));
                }
                counted += l.pages;
                // MAP_SHARED anonymous memory: both map the same frame,
                // writable; a private frame becomes copy-on-write.
                let keep = match shared_area {
                    true => !0,
                    false => !pte::RW,
                };
                Ok(Some((keep, keep)))
            },
        );
        child.user_frames += counted;
        r.map_err(|e| e.errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fault::pf;
    use crate::mm::testmem::Fixture;
    use crate::uaccess::{copy_from_user, copy_to_user};
    use vmrun_contract::layout::HUGE_PAGE_SIZE;

    /// A private mapping of four pages of the page cache's file 0.
    fn file(start: u64, prot: Prot) -> Vma {
        Vma {
            backing: Backing::File {
                file: 0,
                offset: 0,
                data_end: u64::MAX,
            },
            ..Vma::anon(start, start + 0x4000, prot, VmFlags::NONE)
        }
    }

    /// Give `mm` a read-only file area (the text) at `text` and a
    /// writable one (the data) at `data`: a read maps the text's
    /// page-cache pages, a write to the data's second page copies its
    /// block.
    fn text_and_data(fx: &mut Fixture, mm: &mut Mm, text: u64, data: u64) {
        mm.vmas.insert(file(text, Prot::READ)).unwrap();
        mm.vmas.insert(file(data, Prot::RW)).unwrap();
        mm.handle_page_fault(&mut fx.env(), text, pf::USER).unwrap();
        let write = pf::USER | pf::WRITE;
        mm.handle_page_fault(&mut fx.env(), data + 0x1000, write)
            .unwrap();
    }

    #[test]
    fn fork_copies_only_areas_holding_private_pages_and_teardown_frees_all() {
        let mut fx = Fixture::new();
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        text_and_data(&mut fx, &mut parent, 0x40_0000, 0x60_0000);
        assert_eq!(parent.user_frames, 4);
        let mut child = fx.fork(&mut parent, 0);
        assert!(
            child.pt.translate(&fx.mem, 0x40_0000).is_none(),
            "no private page there: the child faults it in itself"
        );
        for k in 0..4 {
            let va = 0x60_0000 + k * PAGE_SIZE;
            let (p, c) = (
                parent.pt.translate(&fx.mem, va),
                child.pt.translate(&fx.mem, va),
            );
            assert_eq!(p.map(|t| t.frame), c.map(|t| t.frame), "page {k}");
            assert_eq!(c.unwrap().flags & pte::RW, 0);
        }
        assert_eq!(child.user_frames, 4);
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    /// The regions [`for_each_cache_region`] hands over, in order.
    fn cache_regions(areas: &[(u64, u64, AreaCopy)]) -> alloc::vec::Vec<u64> {
        let mut regions = alloc::vec::Vec::new();
        for_each_cache_region(areas, |r| {
            regions.push(r);
            Ok(())
        })
        .unwrap();
        regions
    }

    #[test]
    fn cache_regions_are_those_a_copied_range_reaches_and_no_other_area() {
        let m = HUGE_PAGE_SIZE;
        // A static image: text, then data to heap, in one region; a
        // library whose text spans two regions, its data in the second;
        // a text alone in its region; a text beside a shared file mapping
        // and data.
        let areas = [
            (0x40_1000, 0x5d_b000, AreaCopy::Cache),
            (0x5d_b000, 0x5f_0000, AreaCopy::Private),
            (6 * m + 0x1000, 7 * m + 0x1000, AreaCopy::Cache),
            (7 * m + 0x1000, 7 * m + 0x5000, AreaCopy::Private),
            (9 * m, 9 * m + 0x3000, AreaCopy::Cache),
            (11 * m, 11 * m + 0x3000, AreaCopy::Cache),
            (11 * m + 0x3000, 11 * m + 0x4000, AreaCopy::Not),
            (11 * m + 0x5000, 11 * m + 0x6000, AreaCopy::SharedAnon),
        ];
        assert_eq!(
            cache_regions(&areas),
            [0x40_0000, 7 * m],
            "not the library's first region, the lone text's, nor beside the shared mapping"
        );
        assert!(cache_regions(&areas[..1]).is_empty());
        // A region left is looked at once, whichever of its text ranges
        // comes first.
        let two_texts = [
            (0x40_0000, 0x40_1000, AreaCopy::Cache),
            (0x40_2000, 0x40_3000, AreaCopy::Cache),
            (0x40_3000, 0x40_4000, AreaCopy::Not),
            (0x40_4000, 0x40_5000, AreaCopy::Private),
        ];
        assert!(cache_regions(&two_texts).is_empty());
    }

    #[test]
    fn fork_copies_the_text_that_shares_a_leaf_table_with_the_data_and_teardown_frees_all() {
        let mut fx = Fixture::new();
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        text_and_data(&mut fx, &mut parent, 0x40_0000, 0x40_4000);
        let mut child = fx.fork(&mut parent, 0);
        for k in 0..8 {
            let va = 0x40_0000 + k * PAGE_SIZE;
            let (p, c) = (
                parent.pt.translate(&fx.mem, va),
                child.pt.translate(&fx.mem, va),
            );
            assert_eq!(p.map(|t| t.frame), c.map(|t| t.frame), "page {k}");
            assert_eq!(p.map(|t| t.flags), c.map(|t| t.flags), "page {k}");
        }
        assert!(
            child.pt.translate(&fx.mem, 0x40_0000).is_some(),
            "the text's page"
        );
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    #[test]
    fn fork_shares_frames_read_only_and_the_first_write_copies() {
        let mut fx = Fixture::new();
        // One page per fault: the counts below are of the one page written.
        fx.frames.fault_size = vmrun_contract::FaultSize::Page4K;
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        let a = parent
            .mmap(&mut fx.env(), 0, 0x2000, 3, 0x22, None, 0)
            .unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a, b"parent").unwrap();
        let mut child = fx.fork(&mut parent, 0);
        assert_eq!((parent.user_frames, child.user_frames), (1, 1));
        let pt = parent.pt.translate(&fx.mem, a).unwrap();
        let ct = child.pt.translate(&fx.mem, a).unwrap();
        assert_eq!(pt.frame, ct.frame, "one frame, mapped twice");
        assert_eq!(pt.flags & pte::RW, 0, "read-only in the parent");
        assert_eq!(ct.flags & pte::RW, 0, "read-only in the child");
        assert!(fx.frames.is_shared(pt.frame));
        // The parent writes: it gets its own copy; the child keeps the old bytes.
        parent
            .handle_page_fault(&mut fx.env(), a, pf::USER | pf::WRITE | pf::P)
            .unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a, b"PARENT").unwrap();
        let mut buf = [0u8; 6];
        copy_from_user(&mut child, &mut fx.env(), a, &mut buf).unwrap();
        assert_eq!(&buf, b"parent");
        assert!(!fx.frames.is_shared(ct.frame), "the child's is its own now");
        // The child's write then takes its frame back without a copy.
        let used = fx.frames.in_use();
        child
            .handle_page_fault(&mut fx.env(), a, pf::USER | pf::WRITE | pf::P)
            .unwrap();
        assert_eq!(fx.frames.in_use(), used);
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(
            fx.frames.in_use(),
            before - 1,
            "every frame back (the parent's PML4 too)"
        );
    }

    #[test]
    fn the_page_at_the_stack_pointer_is_copied_at_fork_and_writable_on_both_sides() {
        let mut fx = Fixture::new();
        fx.frames.fault_size = vmrun_contract::FaultSize::Page4K;
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        let a = parent
            .mmap(&mut fx.env(), 0, 0x2000, 3, 0x22, None, 0)
            .unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a, b"other").unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a + 0x1ff0, b"stack").unwrap();
        let sp = a + 0x1f80;
        let mut child = fx.fork(&mut parent, sp);
        let hot = a + 0x1000;
        let (p, c) = (
            parent.pt.translate(&fx.mem, hot).unwrap(),
            child.pt.translate(&fx.mem, hot).unwrap(),
        );
        assert_ne!(p.frame, c.frame, "the child has its own copy");
        assert_ne!(p.flags & c.flags & pte::RW, 0, "writable in both");
        assert!(!fx.frames.is_shared(p.frame) && !fx.frames.is_shared(c.frame));
        let other = parent.pt.translate(&fx.mem, a).unwrap();
        assert_eq!(other.frame, child.pt.translate(&fx.mem, a).unwrap().frame);
        assert!(
            fx.frames.is_shared(other.frame),
            "the other page stays shared"
        );
        assert_eq!((parent.user_frames, child.user_frames), (2, 2));
        // The copy holds the bytes; writes on each side stay on that side.
        let mut buf = [0u8; 5];
        copy_from_user(&mut child, &mut fx.env(), a + 0x1ff0, &mut buf).unwrap();
        assert_eq!(&buf, b"stack");
        copy_to_user(&mut child, &mut fx.env(), a + 0x1ff0, b"CHILD").unwrap();
        copy_from_user(&mut parent, &mut fx.env(), a + 0x1ff0, &mut buf).unwrap();
        assert_eq!(&buf, b"stack");
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    #[test]
    fn a_stack_page_another_child_shares_stays_read_only_in_the_parent() {
        let mut fx = Fixture::new();
        fx.frames.fault_size = vmrun_contract::FaultSize::Page4K;
        let mut parent = fx.mm();
        let a = parent
            .mmap(&mut fx.env(), 0, 0x1000, 3, 0x22, None, 0)
            .unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a, b"stack").unwrap();
        let mut first = fx.fork(&mut parent, 0);
        let mut second = fx.fork(&mut parent, a + 0x800);
        let p = parent.pt.translate(&fx.mem, a).unwrap();
        assert_eq!(p.frame, first.pt.translate(&fx.mem, a).unwrap().frame);
        assert_ne!(p.frame, second.pt.translate(&fx.mem, a).unwrap().frame);
        assert_eq!(p.flags & pte::RW, 0, "the first child still maps it");
        assert!(fx.frames.is_shared(p.frame));
        for mm in [&mut second, &mut first, &mut parent] {
            mm.teardown(&mut fx.mem, &mut fx.frames);
        }
    }

    /// A parent (one page per fault) with two private pages written,
    /// `hot` ("hot") and `cold` ("cold"), and the frames in use before
    /// its mapping.
    fn parent_with_two_pages(fx: &mut Fixture) -> (Mm, u64, u64, u64) {
        fx.frames.fault_size = vmrun_contract::FaultSize::Page4K;
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        let a = parent
            .mmap(&mut fx.env(), 0, 0x2000, 3, 0x22, None, 0)
            .unwrap();
        let (hot, cold) = (a, a + 0x1000);
        copy_to_user(&mut parent, &mut fx.env(), hot, b"hot").unwrap();
        copy_to_user(&mut parent, &mut fx.env(), cold, b"cold").unwrap();
        (parent, before, hot, cold)
    }

    #[test]
    fn a_page_written_since_the_last_fork_is_copied_at_the_next_and_one_left_alone_is_shared() {
        let mut fx = Fixture::new();
        let (mut parent, before, hot, cold) = parent_with_two_pages(&mut fx);
        let mut first = fx.fork(&mut parent, 0);
        // After the first fork the parent writes one page (a copy on
        // write): the second fork copies it for its child at once.
        copy_to_user(&mut parent, &mut fx.env(), hot, b"HOT").unwrap();
        let mut second = fx.fork(&mut parent, 0);
        let p = parent.pt.translate(&fx.mem, hot).unwrap();
        let c = second.pt.translate(&fx.mem, hot).unwrap();
        assert_ne!(p.frame, c.frame, "the written page is the child's own");
        assert_ne!(p.flags & c.flags & pte::RW, 0, "writable on both sides");
        assert_eq!((p.flags | c.flags) & pte::D, 0, "and clean");
        let mut buf = [0u8; 3];
        copy_from_user(&mut second, &mut fx.env(), hot, &mut buf).unwrap();
        assert_eq!(&buf, b"HOT");
        let p = parent.pt.translate(&fx.mem, cold).unwrap();
        let c = second.pt.translate(&fx.mem, cold).unwrap();
        assert_eq!(p.frame, c.frame, "a page not written since stays shared");
        assert_eq!((p.flags | c.flags) & pte::RW, 0);
        // Not written since the second fork: the third shares it.
        let mut third = fx.fork(&mut parent, 0);
        let p = parent.pt.translate(&fx.mem, hot).unwrap();
        assert_eq!(p.frame, third.pt.translate(&fx.mem, hot).unwrap().frame);
        assert!(fx.frames.is_shared(p.frame));
        for mm in [&mut third, &mut second, &mut first, &mut parent] {
            mm.teardown(&mut fx.mem, &mut fx.frames);
        }
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    /// What the CPU does to the entry of `va` when the program writes the
    /// page through it: sets its dirty bit.
    fn cpu_writes(fx: &mut Fixture, mm: &Mm, va: u64) {
        let leaf = mm.pt.lookup(&fx.mem, va).unwrap();
        let entry = fx.mem.read_u64(leaf.entry_pa());
        assert_ne!(entry & pte::RW, 0, "a write through a writable entry");
        fx.mem.write_u64(leaf.entry_pa(), entry | pte::D);
    }

    #[test]
    fn the_pages_a_child_wrote_before_its_exec_are_copied_for_the_next_child_at_once() {
        let mut fx = Fixture::new();
        let (mut parent, before, hot, cold) = parent_with_two_pages(&mut fx);
        let mut first = fx.fork(&mut parent, 0);
        assert_eq!(
            parent.writes_since_fork(&fx.mem),
            None,
            "not a forked child"
        );
        // The first child writes one page (a copy-on-write fault) before
        // its exec, which hands that page to the parent.
        copy_to_user(&mut first, &mut fx.env(), hot, b"one").unwrap();
        parent.child_written = first.writes_since_fork(&fx.mem).unwrap();
        assert_eq!(parent.child_written, [hot, 0, 0, 0]);
        // The second child has its own copy of it from the start, with the
        // parent's bytes; the other page stays shared.
        let mut second = fx.fork(&mut parent, 0);
        let p = parent.pt.translate(&fx.mem, hot).unwrap();
        let c = second.pt.translate(&fx.mem, hot).unwrap();
        assert_ne!(p.frame, c.frame, "the child's own copy");
        assert_ne!(p.flags & c.flags & pte::RW, 0, "writable on both sides");
        let mut buf = [0u8; 3];
        copy_from_user(&mut second, &mut fx.env(), hot, &mut buf).unwrap();
        assert_eq!(&buf, b"hot");
        let p = parent.pt.translate(&fx.mem, cold).unwrap();
        assert_eq!(p.frame, second.pt.translate(&fx.mem, cold).unwrap().frame);
        // Not written by the second child (its copy is clean): not handed
        // on, and the third child shares the page.
        assert_eq!(second.writes_since_fork(&fx.mem).unwrap(), [0; 4]);
        // Written by it without a fault: handed on.
        cpu_writes(&mut fx, &second, hot);
        parent.child_written = second.writes_since_fork(&fx.mem).unwrap();
        assert_eq!(parent.child_written, [hot, 0, 0, 0]);
        parent.child_written = [0; 4];
        let mut third = fx.fork(&mut parent, 0);
        let p = parent.pt.translate(&fx.mem, hot).unwrap();
        assert_eq!(p.frame, third.pt.translate(&fx.mem, hot).unwrap().frame);
        // A page of an area the parent has made read-only since is not
        // copied writable for the child.
        parent.child_written = [hot, 0, 0, 0];
        parent.mprotect(&mut fx.env(), hot, 0x2000, 1).unwrap();
        let mut fourth = fx.fork(&mut parent, 0);
        let c = fourth.pt.translate(&fx.mem, hot).unwrap();
        assert_eq!(c.flags & pte::RW, 0, "read-only in the child too");
        assert_eq!(c.frame, parent.pt.translate(&fx.mem, hot).unwrap().frame);
        for mm in [
            &mut fourth,
            &mut third,
            &mut second,
            &mut first,
            &mut parent,
        ] {
            mm.teardown(&mut fx.mem, &mut fx.frames);
        }
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    #[test]
    fn a_2m_page_is_split_and_shared_page_by_page_at_fork() {
        let mut fx = Fixture::new();
        fx.frames.fault_size = vmrun_contract::FaultSize::Huge2M;
        let mut parent = fx.mm();
        let before = fx.frames.in_use();
        // 4 MiB of private anonymous memory, 2 MiB aligned: a write maps
        // its first 2 MiB as one page.
        let a = parent
            .mmap(&mut fx.env(), 0, 0x40_0000, 3, 0x22, None, 0)
            .unwrap();
        let huge = a.next_multiple_of(HUGE_PAGE_SIZE);
        copy_to_user(&mut parent, &mut fx.env(), huge + 0x1000, b"parent").unwrap();
        let t = parent.pt.translate(&fx.mem, huge).unwrap();
        assert_eq!(t.size, PageSize::Size2M, "the write mapped a 2 MiB page");
        let mut child = fx.fork(&mut parent, 0);
        for va in [huge, huge + 0x1000, huge + HUGE_PAGE_SIZE - 0x1000] {
            let (p, c) = (
                parent.pt.translate(&fx.mem, va).unwrap(),
                child.pt.translate(&fx.mem, va).unwrap(),
            );
            assert_eq!((p.size, c.size), (PageSize::Size4K, PageSize::Size4K));
            assert_eq!(p.frame, c.frame, "{va:#x}: one frame");
            assert_eq!((p.flags | c.flags) & pte::RW, 0, "{va:#x}: read-only");
        }
        // The child's write copies; the parent keeps its bytes.
        copy_to_user(&mut child, &mut fx.env(), huge + 0x1000, b"child!").unwrap();
        let mut buf = [0u8; 6];
        copy_from_user(&mut parent, &mut fx.env(), huge + 0x1000, &mut buf).unwrap();
        assert_eq!(&buf, b"parent");
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(fx.frames.in_use(), before - 1, "every frame back");
    }

    #[test]
    fn shared_anonymous_pages_first_touched_after_fork_are_shared() {
        let mut fx = Fixture::new();
        let mut parent = fx.mm();
        // MAP_SHARED | MAP_ANONYMOUS, three pages; only the first touched.
        let a = parent
            .mmap(&mut fx.env(), 0, 0x3000, 3, 0x21, None, 0)
            .unwrap();
        copy_to_user(&mut parent, &mut fx.env(), a, b"before").unwrap();
        let mut child = fx.fork(&mut parent, 0);
        // The child writes the third page; the parent sees it.
        copy_to_user(&mut child, &mut fx.env(), a + 0x2000, b"child").unwrap();
        let mut buf = [0u8; 5];
        copy_from_user(&mut parent, &mut fx.env(), a + 0x2000, &mut buf).unwrap();
        assert_eq!(&buf, b"child");
        for va in [a, a + 0x1000, a + 0x2000] {
            let pt = parent.pt.translate(&fx.mem, va).unwrap();
            let ct = child.pt.translate(&fx.mem, va).unwrap();
            assert_eq!(pt.frame, ct.frame, "{va:#x}: one frame");
            assert_ne!(pt.flags & pte::RW, 0, "{va:#x}: writable in both");
        }
        child.teardown(&mut fx.mem, &mut fx.frames);
        parent.teardown(&mut fx.mem, &mut fx.frames);
    }
}
