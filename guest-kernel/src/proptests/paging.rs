//! The page-table code against a model: a map from each mapped 4 KiB page
//! to its frame and flags, plus the set of 2 MiB leaves. After every map,
//! unmap, range unmap, flag change or huge-page split, the leaves the
//! tables hold (and `translate`) must be exactly the model's, and once
//! everything is unmapped every table page must be freed again.

use super::config;
use crate::mm::frame::FrameAllocator;
use crate::mm::paging::{pte, LeafAction, PageSize, PageTable, USER_HALF_END};
use crate::mm::testmem::TestMem;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const PAGE: u64 = 4096;
const HUGE: u64 = 2 << 20;
/// Windows of three 2 MiB regions: across the 1 GiB boundary at 0x4000_0000
/// (two PD tables), and at the very top of the user half.
const BASES: [u64; 2] = [0x3fc0_0000, USER_HALF_END - 3 * HUGE];
const WINDOW_PAGES: u64 = 3 * HUGE / PAGE;
const FLAGS: [u64; 5] = [
    pte::P | pte::US,
    pte::P | pte::US | pte::RW,
    pte::P | pte::US | pte::NX,
    pte::P | pte::US | pte::RW | pte::NX | pte::A | pte::D,
    pte::PROTNONE | pte::US,
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Map4K { va: u64, pa: u64, flags: u64 },
    Map2M { va: u64, pa: u64, flags: u64 },
    Unmap { va: u64 },
    UnmapRange { start: u64, end: u64 },
    SetFlags { va: u64, flags: u64 },
    SplitHuge { va: u64 },
}

fn page_va() -> impl Strategy<Value = u64> {
    (0..BASES.len(), 0..WINDOW_PAGES).prop_map(|(b, p)| BASES[b] + p * PAGE)
}

fn flags() -> impl Strategy<Value = u64> {
    (0..FLAGS.len()).prop_map(|i| FLAGS[i])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (page_va(), 0..4096u64, flags())
            .prop_map(|(va, f, flags)| Op::Map4K { va, pa: (1 << 32) + f * PAGE, flags }),
        1 => (page_va(), 0..64u64, flags()).prop_map(|(va, f, flags)| Op::Map2M {
            va: va & !(HUGE - 1),
            pa: (2 << 32) + f * HUGE,
            flags,
        }),
        2 => page_va().prop_map(|va| Op::Unmap { va }),
        1 => (page_va(), 0..1200u64)
            .prop_map(|(start, n)| Op::UnmapRange { start, end: start + n * PAGE }),
        2 => (page_va(), flags()).prop_map(|(va, flags)| Op::SetFlags { va, flags }),
        1 => page_va().prop_map(|va| Op::SplitHuge { va }),
    ]
}

/// Mapped 4 KiB pages (va → (frame, flags)) and the 2 MiB leaves.
#[derive(Default)]
struct Model {
    pages: BTreeMap<u64, (u64, u64)>,
    huge: BTreeSet<u64>,
}

impl Model {
    fn region_used(&self, va: u64) -> bool {
        self.pages.range(va..va + HUGE).next().is_some()
    }

    /// The pages of the leaf covering `va`: its whole 2 MiB, or one page.
    fn leaf_pages(&self, va: u64) -> Vec<u64> {
        let region = va & !(HUGE - 1);
        if self.huge.contains(&region) {
            (0..HUGE / PAGE).map(|i| region + i * PAGE).collect()
        } else if self.pages.contains_key(&va) {
            vec![va]
        } else {
            vec![]
        }
    }
}

struct Machine {
    mem: TestMem,
    frames: FrameAllocator,
    pt: PageTable,
}

impl Machine {
    fn new() -> Self {
        let mut mem = TestMem::new(16 << 20);
        let mut frames = FrameAllocator::new(1 << 20, 16 << 20);
        let pt = PageTable::new(&mut mem, &mut frames).unwrap();
        Self { mem, frames, pt }
    }

    /// Every leaf of the user half, as 4 KiB pages, and the 2 MiB leaves.
    fn leaves(&mut self) -> (BTreeMap<u64, (u64, u64)>, BTreeSet<u64>) {
        let (mut pages, mut huge) = (BTreeMap::new(), BTreeSet::new());
        let (mem, frames) = (&mut self.mem, &mut self.frames);
        self.pt
            .update_range(mem, frames, 0, USER_HALF_END, |_, _, l| {
                if l.size == PageSize::Size2M {
                    huge.insert(l.va);
                }
                for i in 0..l.size.bytes() / PAGE {
                    pages.insert(l.va + i * PAGE, (l.frame + i * PAGE, l.flags));
                }
                LeafAction::Keep
            })
            .unwrap();
        (pages, huge)
    }
}

/// Apply `op` to the tables and the model; the results must agree.
fn step(m: &mut Machine, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    let (mem, frames) = (&mut m.mem, &mut m.frames);
    match op {
        Op::Map4K { va, pa, flags } => {
            let r = m.pt.map(mem, frames, va, pa, PageSize::Size4K, flags);
            prop_assert_eq!(r.is_ok(), !model.pages.contains_key(&va), "{:?}", r);
            if r.is_ok() {
                model.pages.insert(va, (pa, flags));
            }
        }
        Op::Map2M { va, pa, flags } => {
            let r = m.pt.map(mem, frames, va, pa, PageSize::Size2M, flags);
            prop_assert_eq!(r.is_ok(), !model.region_used(va), "{:?}", r);
            if r.is_ok() {
                for i in 0..HUGE / PAGE {
                    model.pages.insert(va + i * PAGE, (pa + i * PAGE, flags));
                }
                model.huge.insert(va);
            }
        }
        Op::Unmap { va } => {
            let gone = model.leaf_pages(va);
            let r = m.pt.unmap(mem, va);
            prop_assert_eq!(r.is_some(), !gone.is_empty());
            if let Some((frame, size, flags)) = r {
                prop_assert_eq!(size.bytes(), gone.len() as u64 * PAGE);
                prop_assert_eq!((frame, flags), model.pages[&gone[0]]);
            }
            for p in gone {
                model.pages.remove(&p);
            }
            model.huge.remove(&(va & !(HUGE - 1)));
        }
        Op::UnmapRange { start, end } => {
            let mut removed = 0;
            m.pt.unmap_range(mem, frames, start, end, |_, _, l| {
                removed += l.size.bytes() * l.pages
            })
            .unwrap();
            let before = model.pages.len();
            model.pages.retain(|&p, _| p < start || p >= end);
            prop_assert_eq!(removed, (before - model.pages.len()) as u64 * PAGE);
            if start < end {
                // Split if straddling, else gone: no 2 MiB leaf either way.
                model.huge.retain(|&r| r + HUGE <= start || r >= end);
            }
        }
        Op::SetFlags { va, flags } => {
            let pages = model.leaf_pages(va);
            let old = m.pt.set_flags(mem, va, flags);
            prop_assert_eq!(old, pages.first().map(|p| model.pages[p].1));
            for p in pages {
                model.pages.get_mut(&p).unwrap().1 = flags;
            }
        }
        Op::SplitHuge { va } => {
            m.pt.split_huge(mem, frames, va).unwrap();
            model.huge.remove(&(va & !(HUGE - 1)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn prop_page_table_matches_a_model_of_its_mappings(
        ops in prop::collection::vec(op(), 1..40),
        probes in prop::collection::vec(page_va(), 8),
    ) {
        let mut m = Machine::new();
        let frames_at_start = m.frames.in_use();
        let mut model = Model::default();
        for op in ops {
            step(&mut m, &mut model, op)?;
            let (pages, huge) = m.leaves();
            prop_assert_eq!(&pages, &model.pages, "after {:?}", op);
            prop_assert_eq!(&huge, &model.huge, "after {:?}", op);
            for &va in &probes {
                let t = m.pt.translate(&m.mem, va + 0x123);
                let want = model.pages.get(&va).map(|&(pa, flags)| (pa + 0x123, flags));
                prop_assert_eq!(t.map(|t| (t.pa(va + 0x123), t.flags)), want);
            }
        }
        // Unmapping everything frees every table page but the PML4.
        let (mem, frames) = (&mut m.mem, &mut m.frames);
        m.pt.unmap_range(mem, frames, 0, USER_HALF_END, |_, _, _| {}).unwrap();
        prop_assert_eq!(m.leaves().0.len(), 0);
        prop_assert_eq!(m.pt.table_pages(), 1);
        prop_assert_eq!(m.frames.in_use(), frames_at_start);
    }
}
