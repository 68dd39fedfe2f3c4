//! The page cache's index of a file's pages against a model: a map from
//! each cached page to its frame. Fills record runs of frames where pages
//! are absent (in frames that may or may not continue a neighbouring
//! run), a truncation drops the pages past a point, and after each step
//! every question a fault or a read asks (the frame of a page, the next
//! resident run, the absent pages after and before a page, the pages of a
//! range) must get the model's answer, before and after the index keeps
//! its pages in an array as well (more than `DENSE_RUNS` runs).

use super::config;
use crate::fs::cache::PageIndex;
use proptest::prelude::*;
use std::collections::BTreeMap;

const PAGE: u64 = 4096;
/// Pages in the file: small, so that fills meet and runs join.
const PAGES: u64 = 96;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Fill from page `idx` at most `n` absent pages into frames from
    /// frame number `frame`, or right after the frames of the page before
    /// `idx` when `follow` (so that runs continue one another).
    Fill {
        idx: u64,
        n: u64,
        frame: u64,
        follow: bool,
    },
    Truncate {
        keep: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Short fills often, so that a file makes more runs than
        // DENSE_RUNS and its index keeps the array too.
        6 => (0..PAGES, prop_oneof![1..4u64, 1..20u64], 0..1u64 << 20, any::<bool>())
            .prop_map(|(idx, n, frame, follow)| Op::Fill { idx, n, frame, follow }),
        1 => (0..PAGES + 4).prop_map(|keep| Op::Truncate { keep }),
    ]
}

/// The model's answer to `next_run`: the first cached page in `[idx, end)`
/// and how many pages from it go on in consecutive frames.
fn model_next_run(m: &BTreeMap<u64, u64>, idx: u64, end: u64) -> Option<(u64, u64, u64)> {
    let (&first, &pa) = m.range(idx..end).next()?;
    let n = (first..end)
        .take_while(|i| m.get(i) == Some(&(pa + (i - first) * PAGE)))
        .count() as u64;
    Some((first, pa, n))
}

fn check(ix: &PageIndex, m: &BTreeMap<u64, u64>) -> Result<(), TestCaseError> {
    prop_assert_eq!(ix.len(), m.len());
    for idx in 0..PAGES + 4 {
        prop_assert_eq!(ix.get(idx), m.get(&idx).copied(), "get {}", idx);
        for max in [1, 7, 64] {
            let absent = (idx..idx + max).take_while(|i| !m.contains_key(i)).count() as u64;
            prop_assert_eq!(
                ix.absent_run(idx, max),
                absent,
                "absent_run {} {}",
                idx,
                max
            );
        }
        for first in [0, idx / 2, idx] {
            let from = (first..idx)
                .rev()
                .find(|i| m.contains_key(i))
                .map_or(first, |i| i + 1);
            prop_assert_eq!(
                ix.absent_from(idx, first),
                from,
                "absent_from {} {}",
                idx,
                first
            );
        }
        for end in [idx, idx + 1, idx + 9, PAGES + 4] {
            // A run the index splits where the model sees one would only
            // cost a fault-around another step; the index joins them.
            let want = model_next_run(m, idx, end).map(|(i, pa, _)| (i, pa));
            let got = ix.next_run(idx, end);
            prop_assert_eq!(
                got.map(|(i, pa, _)| (i, pa)),
                want,
                "next_run {} {}",
                idx,
                end
            );
            if let Some((i, _, n)) = got {
                prop_assert_eq!(Some(n), model_next_run(m, i, end).map(|r| r.2));
            }
            // Every run in the range in turn, as a fault-around maps them.
            let mut each = Vec::new();
            ix.each_run(idx, end, |i, pa, n| each.push((i, pa, n)));
            let mut want = Vec::new();
            let mut at = idx;
            while let Some(r) = model_next_run(m, at, end) {
                want.push(r);
                at = r.0 + r.2;
            }
            prop_assert_eq!(each, want, "each_run {} {}", idx, end);
        }
    }
    let pairs: Vec<(u64, u64)> = m.range(3..=40).map(|(&i, &f)| (i, f)).collect();
    prop_assert_eq!(ix.range(3, 40), pairs);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn prop_page_index_matches_a_map_of_pages(ops in proptest::collection::vec(op(), 1..60)) {
        let mut ix = PageIndex::default();
        let mut m: BTreeMap<u64, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Fill { idx, n, frame, follow } => {
                    let n = ix.absent_run(idx, n.min(PAGES - idx));
                    if n == 0 {
                        continue;
                    }
                    let pa = match (follow, idx.checked_sub(1).and_then(|p| m.get(&p))) {
                        (true, Some(&prev)) => prev + PAGE,
                        // Frames far from every other fill's, unless it follows.
                        _ => (frame + 1) << 24,
                    };
                    ix.insert_absent_run(idx, pa, n);
                    for k in 0..n {
                        m.insert(idx + k, pa + k * PAGE);
                    }
                }
                Op::Truncate { keep } => {
                    let mut gone = ix.split_off(keep);
                    gone.sort_unstable();
                    let mut want: Vec<u64> = m.split_off(&keep).into_values().collect();
                    want.sort_unstable();
                    prop_assert_eq!(gone, want);
                }
            }
            check(&ix, &m)?;
        }
    }
}
