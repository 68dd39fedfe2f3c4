//! The VMA set (a B+-tree since it holds up to 65,530 areas) against a
//! page-by-page model: after any sequence of inserts, range removals,
//! protection changes and splits over a few thousand pages, with enough
//! areas for a tree three levels deep, the set must describe exactly the
//! model's pages, stay sorted, apart and merged, answer every position and
//! address lookup as a linear scan of its areas does, find the same free
//! gaps as a linear top-down search, and keep its byte counts (for
//! `RLIMIT_AS` and `RLIMIT_DATA`) equal to the sums over its areas.

use super::config;
use crate::errno::Errno;
use crate::mm::vma::{Backing, Prot, VmFlags, Vma, VmaSet};
use proptest::prelude::*;
use std::collections::BTreeMap;

const PAGE: u64 = 4096;
/// Pages the operations range over.
const PAGES: u64 = 4000;

/// One page as the model sees it: protection and whether it was ever
/// writable (`VM_ACCOUNT`, which keeps areas apart).
type Page = (u8, bool);

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert { page: u64, pages: u64, prot: u8 },
    Remove { page: u64, pages: u64 },
    Protect { page: u64, pages: u64, prot: u8 },
    Split { page: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let page = 1..PAGES;
    prop_oneof![
        4 => (page.clone(), 1..6u64, 0..4u8).prop_map(|(page, pages, prot)| Op::Insert { page, pages, prot }),
        1 => (page.clone(), 1..40u64).prop_map(|(page, pages)| Op::Remove { page, pages }),
        1 => (page.clone(), 1..20u64, 0..4u8).prop_map(|(page, pages, prot)| Op::Protect { page, pages, prot }),
        1 => page.prop_map(|page| Op::Split { page }),
    ]
}

fn prot_of(p: u8) -> Prot {
    [Prot::NONE, Prot::READ, Prot::RW, Prot(5)][usize::from(p % 4)]
}

fn apply(set: &mut VmaSet, model: &mut BTreeMap<u64, Page>, op: Op) {
    match op {
        Op::Insert { page, pages, prot } => {
            let (s, e) = (page * PAGE, (page + pages) * PAGE);
            let free = (page..page + pages).all(|p| !model.contains_key(&p));
            let r = set.insert_merged(Vma::anon(s, e, prot_of(prot), VmFlags::NONE));
            if free {
                assert!(r.is_ok(), "{op:?}: {r:?}");
                let account = prot_of(prot).contains(Prot::WRITE);
                for p in page..page + pages {
                    model.insert(p, (prot % 4, account));
                }
            } else {
                assert_eq!(r, Err(Errno::EEXIST), "{op:?}");
            }
        }
        Op::Remove { page, pages } => {
            let mut removed = 0;
            set.remove_range(page * PAGE, (page + pages) * PAGE, |v| removed += v.len())
                .unwrap();
            let before = model.len();
            model.retain(|p, _| *p < page || *p >= page + pages);
            assert_eq!(removed / PAGE, (before - model.len()) as u64, "{op:?}");
        }
        Op::Protect { page, pages, prot } => {
            let r = set.set_prot(page * PAGE, (page + pages) * PAGE, prot_of(prot));
            if !model.contains_key(&page) {
                assert_eq!(r, Err(Errno::ENOMEM), "{op:?}");
                return;
            }
            let mut p = page;
            while p < page + pages {
                let Some(m) = model.get_mut(&p) else { break };
                *m = (prot % 4, m.1 || prot_of(prot).contains(Prot::WRITE));
                p += 1;
            }
            assert_eq!(r, Ok(p * PAGE), "{op:?}");
        }
        Op::Split { page } => {
            set.split_at(page * PAGE).unwrap();
        }
    }
}

/// The old linear top-down gap search (Linux's `unmapped_area_topdown`
/// over a sorted list), as the reference.
fn linear_gap(areas: &[Vma], len: u64, low: u64, high: u64) -> Option<u64> {
    let mut top = high;
    for v in areas.iter().rev() {
        if v.start >= high {
            top = top.min(v.start_gap());
            continue;
        }
        let bottom = v.end.max(low);
        if top >= bottom && top - bottom >= len {
            return Some(top - len);
        }
        top = top.min(v.start_gap());
        if top < low.saturating_add(len) {
            return None;
        }
    }
    (top >= low && top - low >= len).then(|| top - len)
}

/// `merged`: whether no two touching areas may be alike (false once a
/// bare split made such a pair, as Linux's `split_vma` leaves them).
fn check(set: &VmaSet, model: &BTreeMap<u64, Page>, probes: &[(u64, u64, u64)], merged: bool) {
    let areas: Vec<Vma> = set.iter().copied().collect();
    assert_eq!(areas.len(), set.len());
    let mut pages = BTreeMap::new();
    for (i, v) in areas.iter().enumerate() {
        assert!(v.start < v.end && v.start % PAGE == 0 && v.end % PAGE == 0);
        assert_eq!(set.get(i), Some(v), "position {i}");
        let account = v.flags.contains(VmFlags::ACCOUNT);
        for p in v.start / PAGE..v.end / PAGE {
            pages.insert(p, (v.prot.0 & 7, account));
        }
    }
    let want: BTreeMap<u64, Page> = model
        .iter()
        .map(|(p, (prot, acc))| (*p, (prot_of(*prot).0, *acc)))
        .collect();
    assert_eq!(pages, want, "pages");
    for w in areas.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap {w:?}");
        let same = w[0].prot == w[1].prot && w[0].flags == w[1].flags;
        assert!(
            !(merged && w[0].end == w[1].start && same),
            "not merged: {w:?}"
        );
    }
    let total: u64 = areas.iter().map(|v| v.len()).sum();
    let data: u64 = areas.iter().filter(|v| v.is_data()).map(|v| v.len()).sum();
    assert_eq!((set.total_bytes(), set.data_bytes()), (total, data));
    for &(a, len, low) in probes {
        let addr = a * PAGE + 123;
        let next = areas.iter().position(|v| v.end > addr);
        assert_eq!(set.find_next(addr), next, "find_next {addr:#x}");
        let inside = next.filter(|&i| areas[i].start <= addr);
        assert_eq!(set.find(addr), inside, "find {addr:#x}");
        let (len, low, high) = (len * PAGE, low * PAGE, a * PAGE);
        assert_eq!(
            set.find_gap_top_down(len, low, high),
            linear_gap(&areas, len, low, high),
            "gap of {len:#x} in [{low:#x}, {high:#x})"
        );
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn prop_vma_set_matches_a_page_model(
        fill in 0..700u64,
        ops in prop::collection::vec(op(), 1..300),
        probes in prop::collection::vec((0..PAGES + 10, 1..30u64, 0..PAGES / 2), 20),
    ) {
        let mut set = VmaSet::new();
        let mut model = BTreeMap::new();
        // Start from many small areas, so that the tree has three levels.
        for k in 0..fill {
            let (page, prot) = (1 + 5 * k % PAGES, (k % 3) as u8);
            apply(&mut set, &mut model, Op::Insert { page, pages: 2, prot });
        }
        let mut merged = true;
        for op in ops {
            apply(&mut set, &mut model, op);
            merged &= !matches!(op, Op::Split { .. });
            check(&set, &model, &probes[..2], merged);
        }
        check(&set, &model, &probes, merged);
    }
}

/// An operation of the set's users whose one-leaf fast paths
/// ([`VmaSet::replace_in_fresh_area`], the cut of one area in
/// [`VmaSet::remove_range`], the in-place [`VmaSet::set_prot`]) must
/// leave exactly what the general paths' steps leave.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// An mmap at a free place: `fresh` as mmap makes it, `file` a
    /// mapping of file 1 at the offset of its address (so that neighbours
    /// merge as a library's reservation and segments do).
    Insert {
        page: u64,
        pages: u64,
        prot: u8,
        fresh: bool,
        file: bool,
    },
    /// A MAP_FIXED mapping over whatever is there (its pages unmapped).
    Replace {
        page: u64,
        pages: u64,
        prot: u8,
        file: bool,
    },
    Remove {
        page: u64,
        pages: u64,
    },
    Protect {
        page: u64,
        pages: u64,
        prot: u8,
    },
    /// A fault: the area gets an anonymous identity and is no longer fresh.
    Touch {
        page: u64,
    },
    /// A bare split, which leaves two parts that could merge.
    Split {
        page: u64,
    },
    /// A stack's area (growing down, with a guard gap below it).
    Stack {
        page: u64,
        pages: u64,
    },
    /// An mmap with no address: at the highest gap below `top` that a
    /// top-down search finds, as `get_unmapped_area` places it.
    MapFree {
        pages: u64,
        prot: u8,
        top: u64,
        file: bool,
    },
}

/// Pages the steps range over: few, so that most land on or beside areas.
const STEP_PAGES: u64 = 120;

fn step() -> impl Strategy<Value = Step> {
    let page = 1..STEP_PAGES;
    let flag = any::<bool>();
    prop_oneof![
        3 => (page.clone(), 1..12u64, 0..4u8, flag, flag).prop_map(
            |(page, pages, prot, fresh, file)| Step::Insert { page, pages, prot, fresh, file }
        ),
        4 => (page.clone(), 1..8u64, 0..4u8, flag).prop_map(
            |(page, pages, prot, file)| Step::Replace { page, pages, prot, file }
        ),
        1 => (page.clone(), 1..10u64).prop_map(|(page, pages)| Step::Remove { page, pages }),
        1 => (page.clone(), 1..10u64, 0..4u8).prop_map(
            |(page, pages, prot)| Step::Protect { page, pages, prot }
        ),
        1 => page.clone().prop_map(|page| Step::Touch { page }),
        1 => page.clone().prop_map(|page| Step::Split { page }),
        1 => (page.clone(), 1..4u64).prop_map(|(page, pages)| Step::Stack { page, pages }),
        // Searches below one top, as an mmap's below `mmap_base`, most of
        // them: what one search learns serves the next.
        3 => (1..6u64, 0..4u8, prop_oneof![page, Just(STEP_PAGES)], flag).prop_map(
            |(pages, prot, top, file)| Step::MapFree { pages, prot, top, file }
        ),
    ]
}

/// The area of `[page, page + pages)` a step maps, fresh as mmap makes it.
fn mapping(page: u64, pages: u64, prot: u8, file: bool) -> Vma {
    let (s, e) = (page * PAGE, (page + pages) * PAGE);
    let mut v = Vma::anon(s, e, prot_of(prot), VmFlags::FRESH);
    if file {
        v.backing = Backing::File {
            file: 1,
            offset: s,
            data_end: u64::MAX,
        };
    }
    v
}

/// A MAP_FIXED mapping's change of the set, as `Mm::map_over` makes it
/// (the fast path first, else the steps).
fn replace(set: &mut VmaSet, vma: Vma) -> Result<usize, Errno> {
    if let Some(i) = set.replace_in_fresh_area(vma) {
        return Ok(i);
    }
    let i = set.replace_range(vma)?;
    Ok(set.merge_around(i))
}

/// Apply `s` to `set`; what it returned, for comparison.
fn apply_step(set: &mut VmaSet, last: &mut u32, s: Step) -> String {
    match s {
        Step::Insert {
            page,
            pages,
            prot,
            fresh,
            file,
        } => {
            let mut v = mapping(page, pages, prot, file);
            if !fresh {
                v.flags = VmFlags::NONE;
            }
            format!("{:?}", set.insert_merged(v))
        }
        Step::Replace {
            page,
            pages,
            prot,
            file,
        } => {
            let v = mapping(page, pages, prot, file);
            let r = replace(set, v);
            // The area returned holds the mapping's start.
            if let Ok(i) = r {
                let a = set.get(i).copied().unwrap();
                assert!(a.contains(v.start), "{s:?}: {a:?}");
            }
            format!("{r:?}")
        }
        Step::Remove { page, pages } => {
            let mut removed = 0;
            let r = set.remove_range(page * PAGE, (page + pages) * PAGE, |v| removed += v.len());
            format!("{r:?} {removed}")
        }
        Step::Protect { page, pages, prot } => {
            format!(
                "{:?}",
                set.set_prot(page * PAGE, (page + pages) * PAGE, prot_of(prot))
            )
        }
        Step::Touch { page } => match set.find(page * PAGE) {
            Some(i) => {
                set.attach_anon(i, last);
                set.mark_mapped(i);
                format!("touched {i}")
            }
            None => "hole".into(),
        },
        Step::Split { page } => format!("{:?}", set.split_at(page * PAGE)),
        Step::Stack { page, pages } => {
            let (s, e) = (page * PAGE, (page + pages) * PAGE);
            let v = Vma::anon(s, e, Prot::RW, VmFlags::GROWSDOWN);
            format!("{:?}", set.insert_merged(v))
        }
        Step::MapFree {
            pages,
            prot,
            top,
            file,
        } => match set.find_gap_top_down(pages * PAGE, PAGE, top * PAGE) {
            // What the last search learnt changes no answer: a copy, which
            // knows nothing, finds the same.
            a if a
                != set
                    .try_clone()
                    .unwrap()
                    .find_gap_top_down(pages * PAGE, PAGE, top * PAGE) =>
            {
                panic!("{s:?}: {a:?}, not what a search of every area finds")
            }
            Some(a) => {
                let r = set.insert_merged(mapping(a / PAGE, pages, prot, file));
                format!("{a:#x} {r:?}")
            }
            None => "no gap".into(),
        },
    }
}

/// Every field of every area (the freshness flag and anonymous identity
/// included, which `Vma`'s equality leaves out or a merge depends on).
fn exact(set: &VmaSet) -> Vec<(u64, u64, u8, u8, Backing, u32)> {
    set.iter()
        .map(|v| (v.start, v.end, v.prot.0, v.flags.0, v.backing, v.anon))
        .collect()
}

proptest! {
    #![proptest_config(config(64))]

    /// The fast paths against the general ones: one set with its journal
    /// on (which turns the fast paths off) and one without, given the same
    /// steps, return the same and hold the same areas, exactly; the fast
    /// set's positions, byte counts and pages also match a page model.
    #[test]
    fn prop_one_leaf_fast_paths_match_the_general_steps(
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let (mut fast, mut slow) = (VmaSet::new(), VmaSet::new());
        slow.set_journaling(true);
        let (mut last_fast, mut last_slow) = (0, 0);
        let mut model = BTreeMap::new();
        for s in steps {
            let a = apply_step(&mut fast, &mut last_fast, s);
            let b = apply_step(&mut slow, &mut last_slow, s);
            slow.take_journal(|_| ());
            prop_assert_eq!(&a, &b, "{:?}", s);
            prop_assert_eq!(exact(&fast), exact(&slow), "{:?}", s);
            match s {
                Step::Insert { page, pages, prot, .. } if a.starts_with("Ok") => {
                    let account = prot_of(prot).contains(Prot::WRITE);
                    for p in page..page + pages {
                        model.insert(p, (prot % 4, account));
                    }
                }
                Step::Stack { page, pages } if a.starts_with("Ok") => {
                    for p in page..page + pages {
                        model.insert(p, (2, true));
                    }
                }
                Step::MapFree { pages, prot, .. } if a.starts_with("0x") => {
                    prop_assert!(a.ends_with(")") && a.contains("Ok"), "{}", a);
                    let page = u64::from_str_radix(&a[2..a.find(' ').unwrap()], 16).unwrap() / PAGE;
                    let account = prot_of(prot).contains(Prot::WRITE);
                    for p in page..page + pages {
                        model.insert(p, (prot % 4, account));
                    }
                }
                Step::Replace { page, pages, prot, .. } => {
                    let account = prot_of(prot).contains(Prot::WRITE);
                    for p in page..page + pages {
                        model.insert(p, (prot % 4, account));
                    }
                }
                Step::Remove { page, pages } => {
                    model.retain(|p, _| *p < page || *p >= page + pages);
                }
                Step::Protect { page, pages, prot } => {
                    let mut p = page;
                    while p < page + pages {
                        let Some(m) = model.get_mut(&p) else { break };
                        *m = (prot % 4, m.1 || prot_of(prot).contains(Prot::WRITE));
                        p += 1;
                    }
                }
                _ => {}
            }
            check(&fast, &model, &[], false);
        }
    }
}
