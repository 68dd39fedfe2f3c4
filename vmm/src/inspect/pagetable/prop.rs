//! Property test: the host's walker reads the tables the guest kernel's own
//! page-table code builds (`guest_kernel::mm::paging`, run here over guest
//! RAM) exactly as the guest sees them. After random maps (4 KiB and 2 MiB,
//! present and `PROT_NONE`), range unmaps, flag changes and huge-page
//! splits, the walk's user leaves must be the guest's own list of leaves
//! with the same frames, sizes and access, `translate` must agree with the
//! guest's, and the walk must report no problem. (`cargo test -p vmm
//! prop_`; `PROPTEST_CASES=N` for a longer run, see docs/hardening.md.)

use super::*;
use guest_kernel::mm::frame::FrameAllocator;
use guest_kernel::mm::paging::{self as gp, pte, LeafAction, PageTable};
use guest_kernel::mm::phys::PhysMem;
use proptest::prelude::*;
use proptest::test_runner::Config;

const MIB: u64 = 1 << 20;
const HUGE: u64 = 2 * MIB;
/// Table pages come from [1 MiB, 16 MiB); leaf frames lie in [16, 32) MiB.
const RAM: u64 = 32 * MIB;
const FRAMES: u64 = 16 * MIB;
/// Windows of three 2 MiB regions: across 1 GiB at 0x4000_0000, and at the
/// top of the user half.
const BASES: [u64; 2] = [0x3fc0_0000, gp::USER_HALF_END - 3 * HUGE];
const FLAGS: [u64; 5] = [
    pte::P | pte::US,
    pte::P | pte::US | pte::RW,
    pte::P | pte::US | pte::NX,
    pte::P | pte::US | pte::RW | pte::NX | pte::A | pte::D,
    pte::PROTNONE | pte::US,
];

/// Guest RAM as the guest kernel's physical memory.
struct Ram<'a>(&'a GuestRam);

impl PhysMem for Ram<'_> {
    fn read_u64(&self, pa: u64) -> u64 {
        self.0.read_pod(pa).expect("table read inside RAM")
    }

    fn write_u64(&mut self, pa: u64, val: u64) {
        self.0.write_pod(pa, &val).expect("table write inside RAM");
    }

    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        self.0.read_bytes(pa, buf).expect("read inside RAM");
    }

    fn write_bytes(&mut self, pa: u64, buf: &[u8]) {
        self.0.write_bytes(pa, buf).expect("write inside RAM");
    }

    fn bytes_mut(&mut self, pa: u64, len: u64) -> &mut [u8] {
        self.0.slice_mut(pa, len).expect("bytes inside RAM")
    }

    fn zero(&mut self, pa: u64, len: u64) {
        self.write_bytes(pa, &vec![0; len as usize]);
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) {
        let mut buf = vec![0; len as usize];
        self.read_bytes(src, &mut buf);
        self.write_bytes(dst, &buf);
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Map {
        va: u64,
        pa: u64,
        huge: bool,
        flags: u64,
    },
    UnmapRange {
        start: u64,
        pages: u64,
    },
    SetFlags {
        va: u64,
        flags: u64,
    },
    SplitHuge {
        va: u64,
    },
}

fn page_va() -> impl Strategy<Value = u64> {
    (0..BASES.len(), 0..3 * HUGE / 4096).prop_map(|(b, p)| BASES[b] + p * 4096)
}

fn flags() -> impl Strategy<Value = u64> {
    (0..FLAGS.len()).prop_map(|i| FLAGS[i])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (page_va(), 0..(RAM - FRAMES) / 4096, flags()).prop_map(|(va, f, flags)| {
            Op::Map { va, pa: FRAMES + f * 4096, huge: false, flags }
        }),
        1 => (page_va(), 0..(RAM - FRAMES) / HUGE, flags()).prop_map(|(va, f, flags)| {
            Op::Map { va: va & !(HUGE - 1), pa: FRAMES + f * HUGE, huge: true, flags }
        }),
        1 => (page_va(), 0..1200u64).prop_map(|(start, pages)| Op::UnmapRange { start, pages }),
        2 => (page_va(), flags()).prop_map(|(va, flags)| Op::SetFlags { va, flags }),
        1 => page_va().prop_map(|va| Op::SplitHuge { va }),
    ]
}

fn apply(pt: &mut PageTable, mem: &mut Ram, frames: &mut FrameAllocator, op: Op) {
    // Refusals (a used entry, a huge conflict) are part of the game: the
    // comparison below is what is checked.
    match op {
        Op::Map {
            va,
            pa,
            huge,
            flags,
        } => {
            let size = if huge {
                gp::PageSize::Size2M
            } else {
                gp::PageSize::Size4K
            };
            let _ = pt.map(mem, frames, va, pa, size, flags);
        }
        Op::UnmapRange { start, pages } => {
            let end = start + pages * 4096;
            pt.unmap_range(mem, frames, start, end, |_, _, _| {})
                .unwrap();
        }
        Op::SetFlags { va, flags } => {
            let _ = pt.set_flags(mem, va, flags);
        }
        Op::SplitHuge { va } => pt.split_huge(mem, frames, va).unwrap(),
    }
}

/// The guest's leaves: (va, frame, bytes, flags).
fn guest_leaves(
    pt: &mut PageTable,
    mem: &mut Ram,
    frames: &mut FrameAllocator,
) -> Vec<(u64, u64, u64, u64)> {
    let mut leaves = Vec::new();
    pt.update_range(mem, frames, 0, gp::USER_HALF_END, |_, _, l| {
        leaves.push((l.va, l.frame, l.size.bytes(), l.flags));
        LeafAction::Keep
    })
    .unwrap();
    leaves
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_host_walk_reads_the_guest_built_tables_as_the_guest_does(
        ops in proptest::collection::vec(op(), 1..40),
        probes in proptest::collection::vec(page_va(), 16),
    ) {
        let ram = GuestRam::new(RAM).unwrap();
        let mut mem = Ram(&ram);
        let mut frames = FrameAllocator::new(MIB, FRAMES);
        let mut pt = PageTable::new(&mut mem, &mut frames).unwrap();
        for op in ops {
            apply(&mut pt, &mut mem, &mut frames, op);
        }
        let want = guest_leaves(&mut pt, &mut mem, &mut frames);
        let w = walk(&ram, pt.root(), WalkOptions { user_only: true }).unwrap();
        prop_assert!(w.problems.is_empty(), "{:?}", w.problems);
        let mut got: Vec<&Leaf> = w.user_leaves().collect();
        got.sort_by_key(|l| l.va);
        prop_assert_eq!(got.len(), want.len());
        for (l, &(va, frame, bytes, flags)) in got.iter().zip(&want) {
            prop_assert_eq!((l.va, l.pa, l.size.bytes()), (va, frame, bytes));
            let present = flags & pte::P != 0;
            prop_assert_eq!(l.pte & bits::P != 0, present);
            if present {
                prop_assert_eq!(l.flags.writable, flags & pte::RW != 0);
                prop_assert_eq!(l.flags.user, flags & pte::US != 0);
                prop_assert_eq!(l.flags.nx, flags & pte::NX != 0);
            }
        }
        for va in probes {
            let host = translate(&ram, pt.root(), va + 0x321)
                .map(|l| l.pa + ((va + 0x321) & (l.size.bytes() - 1)));
            let guest = pt
                .translate(&mem, va + 0x321)
                .filter(|t| t.flags & pte::P != 0)
                .map(|t| t.pa(va + 0x321));
            prop_assert_eq!(host, guest, "va {:#x}", va + 0x321);
        }
    }
}
