//! Address-space operations against a page-by-page model: after any
//! sequence of mmap (fixed or not, anonymous or of a file), munmap,
//! mprotect, mremap and writes through the fault path, the VMA set must
//! describe exactly the model's pages (protection and backing), stay
//! sorted, apart and merged, and every readable page must hold what was
//! last written to it (or zero, or the file's bytes), wherever mremap
//! moved it. A call that fails must leave the set as it was (except
//! mprotect, which Linux applies up to the first hole before failing).

use super::config;
use crate::errno::Errno;
use crate::mm::mmap::{map, prot};
use crate::mm::mremap::mremap_flags;
use crate::mm::space::{Mm, MMAP_MIN_ADDR};
use crate::mm::testmem::Fixture;
use crate::mm::vma::{Backing, Prot, Vma};
use crate::uaccess::{copy_from_user, copy_to_user};
use proptest::prelude::*;
use std::collections::BTreeMap;
use vmrun_contract::layout::TASK_SIZE;

const PAGE: u64 = 4096;
/// The window the fixed-address operations use: 64 pages.
const WINDOW: u64 = 0x7000_0000;
const WINDOW_PAGES: u64 = 64;
/// Whole pages of the fixture's file (ten and a half pages long).
const FILE_PAGES: u64 = 10;

/// One page as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Page {
    prot: u8,
    /// File offset of a private file page (None: anonymous).
    file_off: Option<u64>,
    /// Last byte written at the page's start (None: never written).
    written: Option<u8>,
}

impl Page {
    /// Whether the page is wholly past the end of its file (a touch is
    /// SIGBUS for the program, EFAULT for a kernel copy, as on Linux).
    fn past_eof(&self) -> bool {
        self.file_off
            .is_some_and(|off| off >= (FILE_PAGES + 1) * PAGE)
    }

    /// The byte a read of the page's first byte must return, if known.
    fn expected(&self) -> Option<u8> {
        match (self.written, self.file_off) {
            (Some(b), _) => Some(b),
            (None, None) => Some(0),
            (None, Some(off)) if off < FILE_PAGES * PAGE => Some((off / PAGE) as u8 + 1),
            (None, Some(_)) => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    MmapFixed {
        page: u64,
        pages: u64,
        prot: u64,
        file: Option<u64>,
    },
    MmapAnywhere {
        pages: u64,
        prot: u64,
    },
    Munmap {
        page: u64,
        pages: u64,
    },
    Mprotect {
        page: u64,
        pages: u64,
        prot: u64,
    },
    Mremap {
        page: u64,
        old: u64,
        new: u64,
        flags: u64,
        to: u64,
    },
    Write {
        page: u64,
        byte: u8,
    },
}

fn window_page() -> impl Strategy<Value = u64> {
    0..WINDOW_PAGES
}

fn pages() -> impl Strategy<Value = u64> {
    1..12u64
}

fn linux_prot() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(prot::READ),
        Just(prot::READ | prot::WRITE),
        Just(prot::READ | prot::EXEC),
        Just(prot::WRITE),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let file = prop_oneof![3 => Just(None), 1 => (0..FILE_PAGES).prop_map(Some)];
    let mremap = prop_oneof![
        Just(0),
        Just(mremap_flags::MAYMOVE),
        Just(mremap_flags::MAYMOVE | mremap_flags::FIXED),
        Just(mremap_flags::MAYMOVE | mremap_flags::DONTUNMAP),
    ];
    prop_oneof![
        3 => (window_page(), pages(), linux_prot(), file)
            .prop_map(|(page, pages, prot, file)| Op::MmapFixed { page, pages, prot, file }),
        1 => (pages(), linux_prot()).prop_map(|(pages, prot)| Op::MmapAnywhere { pages, prot }),
        2 => (window_page(), pages()).prop_map(|(page, pages)| Op::Munmap { page, pages }),
        2 => (window_page(), pages(), linux_prot())
            .prop_map(|(page, pages, prot)| Op::Mprotect { page, pages, prot }),
        2 => (window_page(), pages(), pages(), mremap, window_page())
            .prop_map(|(page, old, new, flags, to)| Op::Mremap { page, old, new, flags, to }),
        3 => (window_page(), 1..=255u8).prop_map(|(page, byte)| Op::Write { page, byte }),
    ]
}

fn va(page: u64) -> u64 {
    WINDOW + page * PAGE
}

struct World {
    fx: Fixture,
    mm: Mm,
    /// Page address → page.
    model: BTreeMap<u64, Page>,
    /// Frames in use before the address space was made.
    frames_at_start: u64,
}

impl World {
    fn new() -> Self {
        let mut fx = Fixture::new();
        let frames_at_start = fx.frames.in_use();
        let mm = fx.mm();
        Self {
            fx,
            mm,
            model: BTreeMap::new(),
            frames_at_start,
        }
    }

    fn map_model(&mut self, start: u64, pages: u64, prot: u64, file: Option<u64>) {
        for i in 0..pages {
            let page = Page {
                prot: Prot::from_linux(prot).0,
                file_off: file.map(|f| f * PAGE + i * PAGE),
                written: None,
            };
            self.model.insert(start + i * PAGE, page);
        }
    }

    fn unmap_model(&mut self, start: u64, end: u64) {
        self.model.retain(|&p, _| p < start || p >= end);
    }

    fn vmas(&self) -> Vec<Vma> {
        self.mm.vmas.iter().copied().collect()
    }

    /// The model's pages as the VMA set describes them.
    fn pages_of_vmas(&self) -> BTreeMap<u64, (u8, Option<u64>)> {
        let mut pages = BTreeMap::new();
        for v in self.mm.vmas.iter() {
            for p in (v.start..v.end).step_by(PAGE as usize) {
                pages.insert(p, (v.prot.0, v.file_offset(p)));
            }
        }
        pages
    }
}

fn step(w: &mut World, op: Op) -> Result<(), TestCaseError> {
    let before = w.vmas();
    let mut env = w.fx.env();
    let anon = map::PRIVATE | map::ANONYMOUS;
    match op {
        Op::MmapFixed {
            page,
            pages,
            prot,
            file,
        } => {
            let flags = if file.is_some() { map::PRIVATE } else { anon } | map::FIXED;
            let off = file.unwrap_or(0) * PAGE;
            let r = w.mm.mmap(
                &mut env,
                va(page),
                pages * PAGE,
                prot,
                flags,
                file.map(|_| 0),
                off,
            );
            prop_assert_eq!(r, Ok(va(page)));
            w.unmap_model(va(page), va(page + pages));
            w.map_model(va(page), pages, prot, file);
        }
        Op::MmapAnywhere { pages, prot } => {
            let r = w.mm.mmap(&mut env, 0, pages * PAGE, prot, anon, None, 0);
            let start = r.map_err(|e| TestCaseError::fail(format!("mmap: {e:?}")))?;
            prop_assert!(start >= MMAP_MIN_ADDR && start + pages * PAGE <= TASK_SIZE);
            prop_assert!(w.model.range(start..start + pages * PAGE).next().is_none());
            w.map_model(start, pages, prot, None);
        }
        Op::Munmap { page, pages } => {
            prop_assert_eq!(w.mm.munmap(&mut env, va(page), pages * PAGE), Ok(()));
            w.unmap_model(va(page), va(page + pages));
        }
        Op::Mprotect { page, pages, prot } => {
            let r = w.mm.mprotect(&mut env, va(page), pages * PAGE, prot);
            // Linux changes the areas from the start up to the first hole.
            let mut reached = va(page);
            while reached < va(page + pages) && w.model.contains_key(&reached) {
                w.model.get_mut(&reached).unwrap().prot = Prot::from_linux(prot).0;
                reached += PAGE;
            }
            prop_assert_eq!(r.is_ok(), reached == va(page + pages), "{:?}", r);
        }
        Op::Mremap {
            page,
            old,
            new,
            flags,
            to,
        } => {
            let (old_start, old_len, new_len) = (va(page), old * PAGE, new * PAGE);
            let r =
                w.mm.mremap(&mut env, old_start, old_len, new_len, flags, va(to));
            match r {
                Ok(start) => {
                    // (Shrinking in place only unmaps the tail, mapped or
                    // not, as Linux does: the pages kept may be holes.)
                    let moved: Vec<(u64, Page)> = (0..old.min(new))
                        .filter_map(|i| Some((i * PAGE, *w.model.get(&(old_start + i * PAGE))?)))
                        .collect();
                    if flags & mremap_flags::DONTUNMAP != 0 {
                        // The old range stays mapped, its pages emptied.
                        for p in (old_start..old_start + old_len).step_by(PAGE as usize) {
                            w.model.get_mut(&p).unwrap().written = None;
                        }
                    } else {
                        w.unmap_model(old_start, old_start + old_len);
                    }
                    if start != old_start {
                        prop_assert!(
                            flags & mremap_flags::FIXED != 0
                                || w.model.range(start..start + new_len).next().is_none()
                        );
                    }
                    w.unmap_model(start, start + new_len);
                    for (off, p) in moved {
                        w.model.insert(start + off, p);
                    }
                    // Growth continues the area: same protection, next
                    // file offsets, nothing written.
                    for i in old..new {
                        let first = w.model[&start];
                        let page = Page {
                            written: None,
                            file_off: first.file_off.map(|f| f + i * PAGE),
                            ..first
                        };
                        w.model.insert(start + i * PAGE, page);
                    }
                }
                // Like Linux's mremap_to, a MREMAP_FIXED move unmaps the
                // target (and the tail a shrink drops) before it finds the
                // old range unmapped (EFAULT).
                Err(Errno::EFAULT) if flags & mremap_flags::FIXED != 0 => {
                    w.unmap_model(va(to), va(to) + new_len);
                    if new_len < old_len {
                        w.unmap_model(old_start + new_len, old_start + old_len);
                    }
                }
                Err(e) => prop_assert_eq!(
                    w.vmas(),
                    before,
                    "mremap failed ({:?}) but changed the areas",
                    e
                ),
            }
        }
        Op::Write { page, byte } => {
            let r = copy_to_user(&mut w.mm, &mut env, va(page), &[byte]);
            let writable = w
                .model
                .get(&va(page))
                .is_some_and(|p| p.prot & Prot::WRITE.0 != 0 && !p.past_eof());
            prop_assert_eq!(r.is_ok(), writable, "{:?}", r);
            if writable {
                w.model.get_mut(&va(page)).unwrap().written = Some(byte);
            }
        }
    }
    Ok(())
}

/// The set against the model, its own invariants, and the pages' bytes.
fn check(w: &mut World) -> Result<(), TestCaseError> {
    let want: BTreeMap<u64, (u8, Option<u64>)> = w
        .model
        .iter()
        .map(|(&a, p)| (a, (p.prot, p.file_off)))
        .collect();
    prop_assert_eq!(w.pages_of_vmas(), want);
    let vmas = w.vmas();
    for v in &vmas {
        prop_assert!(v.start < v.end && (v.start | v.end) % PAGE == 0);
        prop_assert!(v.start >= MMAP_MIN_ADDR && v.end <= TASK_SIZE);
    }
    for pair in vmas.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        prop_assert!(a.end <= b.start, "{a:?} overlaps {b:?}");
        // Two untouched anonymous neighbours alike in all else (VM_ACCOUNT
        // included, as in Linux) are merged.
        let plain = |v: &Vma| v.backing == Backing::Anon && v.anon == 0;
        let same = a.prot == b.prot && a.flags == b.flags;
        prop_assert!(
            !(a.end == b.start && plain(&a) && plain(&b) && same),
            "{a:?} and {b:?} not merged"
        );
    }
    let pages: Vec<(u64, Page)> = w.model.iter().map(|(&a, &p)| (a, p)).collect();
    let mut env = w.fx.env();
    for (addr, page) in pages {
        if page.prot & Prot::READ.0 == 0 {
            continue;
        }
        let Some(want) = page.expected() else {
            continue;
        };
        let mut b = [0u8];
        prop_assert_eq!(copy_from_user(&mut w.mm, &mut env, addr, &mut b), Ok(()));
        prop_assert_eq!(b[0], want, "page {:#x}", addr);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn prop_address_space_matches_a_page_model(ops in prop::collection::vec(op(), 1..30)) {
        let mut w = World::new();
        for op in ops {
            step(&mut w, op)?;
            check(&mut w).map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
        }
        // Tearing down returns every frame, the page-table pages included.
        w.mm.teardown(&mut w.fx.mem, &mut w.fx.frames);
        prop_assert_eq!(w.fx.frames.in_use(), w.frames_at_start);
    }
}
