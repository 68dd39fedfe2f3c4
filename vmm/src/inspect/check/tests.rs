use super::*;
use crate::inspect::pagetable::{bits, walk, PageSize, WalkOptions};
use crate::inspect::testspace::{legal, Legal, CACHE, USER_RW};
use vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT;

fn run(l: &Legal) -> Vec<Violation> {
    run_with(l, &l.vmas, l.user_frames, l.user_tables)
}

fn run_with(l: &Legal, vmas: &[VmaRecord], frames: u64, tables: u64) -> Vec<Violation> {
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    check(&CheckInput {
        walk: &w,
        vmas,
        user_frames: frames,
        user_table_pages: tables,
        page_cache: CACHE..CACHE + 0x4000,
        cache_frames: &CacheBitmap::default(),
        trampoline: SYSCALL_TRAMPOLINE_VIRT,
    })
}

fn texts(v: &[Violation]) -> Vec<String> {
    v.iter().map(|v| v.to_string()).collect()
}

#[test]
fn legal_address_space_passes() {
    let l = legal();
    assert_eq!(texts(&run(&l)), Vec::<String>::new());
}

#[test]
fn writable_pte_in_read_only_file_vma_is_reported_precisely() {
    let l = legal();
    l.space.set(l.text, bits::RW);
    let v = run(&l);
    assert_eq!(
        texts(&v),
        [
            "leaf 0x400000-0x401000 -> 0x800000 (PTE 0x0000000000800027 at phys 0x13000): \
             writable but VMA 0x400000-0x402000 r-xp is not writable",
            "leaf 0x400000-0x401000 -> 0x800000 (PTE 0x0000000000800027 at phys 0x13000): \
             page-cache frame mapped writable",
        ]
    );
}

#[test]
fn vma_corrupted_to_read_only_makes_its_writable_leaf_a_violation() {
    let l = legal();
    let mut vmas = l.vmas.clone();
    vmas[1].flags &= !vma_flags::WRITE;
    let v = run_with(&l, &vmas, l.user_frames, l.user_tables);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(matches!(v[0], Violation::WritableNotAllowed(at, _) if at.va == 0x40_2000));
}

#[test]
fn leaf_outside_any_vma_is_reported() {
    let l = legal();
    let mut vmas = l.vmas.clone();
    vmas[6].end = 0x7fff_ffff_e000; // the stack VMA no longer covers its page
    let v = run_with(&l, &vmas, l.user_frames, l.user_tables);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert_eq!(
        v[0].to_string(),
        "leaf 0x7fffffffe000-0x7ffffffff000 -> 0x903000 (PTE 0x8000000000903067 at phys 0x16ff0): \
         lies outside every VMA"
    );
}

#[test]
fn user_bit_on_a_kernel_page_is_reported() {
    let mut l = legal();
    let ktext = 0xffff_ffff_8010_0000;
    l.space.allow_user(ktext);
    l.space.set(l.ktext, bits::US);
    let v = run(&l);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(matches!(v[0], Violation::KernelPageUser(at) if at.va == ktext));
    assert!(v[0]
        .to_string()
        .ends_with("kernel-half page is user-accessible"));
}

#[test]
fn user_bit_on_a_kernel_leaf_under_a_supervisor_table_is_harmless() {
    let l = legal();
    l.space.set(l.ktext, bits::US);
    assert_eq!(texts(&run(&l)), Vec::<String>::new());
}

#[test]
fn writable_trampoline_is_reported() {
    let l = legal();
    l.space.set(l.trampoline, bits::RW);
    let v = run(&l);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(v[0].to_string().contains("writable (must be read-only)"));
}

#[test]
fn frame_mapped_twice_is_reported_with_both_leaves() {
    let mut l = legal();
    let mut vmas = l.vmas.clone();
    vmas[2].end = 0x40_5000;
    l.space.map(0x40_4000, 0x90_1000, PageSize::Size4K, USER_RW);
    let v = run_with(&l, &vmas, l.user_frames, l.user_tables);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    let Violation::FrameMappedTwice {
        frame,
        frames,
        first,
        second,
    } = &v[0]
    else {
        panic!("{:?}", v[0]);
    };
    assert_eq!((*frame, *frames), (0x90_1000, 1));
    assert_eq!((first.va, second.va), (0x40_3000, 0x40_4000));
}

#[test]
fn huge_page_overlapping_a_small_one_counts_shared_frames() {
    let mut l = legal();
    let mut vmas = l.vmas.clone();
    vmas[2].end = 0x40_5000;
    l.space.map(0x40_4000, 0xa0_5000, PageSize::Size4K, USER_RW);
    let v = run_with(&l, &vmas, l.user_frames, l.user_tables);
    assert!(matches!(
        v[..],
        [Violation::FrameMappedTwice {
            frame: 0xa0_5000,
            frames: 1,
            ..
        }]
    ));
}

#[test]
fn page_cache_frames_may_be_mapped_many_times_read_only() {
    // legal() maps CACHE at 0x400000 and 0x480000 already.
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let n = w.leaves.iter().filter(|x| x.pa == CACHE).count();
    assert_eq!(n, 2);
    assert!(run(&l).is_empty());
}

#[test]
fn frame_count_mismatch_is_a_leak_report() {
    let l = legal();
    let v = run_with(&l, &l.vmas, l.user_frames + 1, l.user_tables);
    assert_eq!(
        texts(&v),
        ["user frames: the guest counts 517, its page tables map 516 (4 KiB units, page cache excluded)"]
    );
}

#[test]
fn table_count_mismatch_is_reported() {
    let l = legal();
    let v = run_with(&l, &l.vmas, l.user_frames, l.user_tables - 1);
    assert_eq!(v, [Violation::TablePageCount { guest: 5, found: 6 }]);
}

#[test]
fn missing_nx_in_a_non_executable_vma_is_reported() {
    let l = legal();
    l.space.clear(l.data, bits::NX);
    let v = run(&l);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(matches!(v[0], Violation::ExecutableNotAllowed(at, _) if at.va == 0x40_2000));
}

#[test]
fn present_leaf_in_a_prot_none_vma_is_reported() {
    let l = legal();
    l.space.set(l.guard, bits::P | bits::A | bits::NX);
    let v = run(&l);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(v[0].to_string().contains("which is PROT_NONE"));
}

#[test]
fn supervisor_leaf_in_the_user_half_is_reported() {
    let l = legal();
    l.space.clear(l.bss, bits::US);
    let v = run(&l);
    assert_eq!(v.len(), 1, "{:?}", texts(&v));
    assert!(matches!(v[0], Violation::NotUser(at) if at.va == 0x40_3000));
}

#[test]
fn overlapping_vmas_are_reported() {
    let l = legal();
    let mut vmas = l.vmas.clone();
    vmas[2].start = 0x40_1000;
    let v = run_with(&l, &vmas, l.user_frames, l.user_tables);
    assert_eq!(
        texts(&v),
        ["VMA 0x401000-0x404000 rw-p (#2): overlaps or precedes the VMA before it"]
    );
}

#[test]
fn stack_leaf_dropped_by_the_guest_without_accounting_is_a_count_mismatch() {
    let l = legal();
    l.space.write(l.stack, 0);
    let v = run(&l);
    assert!(matches!(
        v[..],
        [Violation::UserFrameCount {
            guest: 516,
            found: 515
        }]
    ));
}

#[test]
fn frames_in_the_guest_cache_bitmap_are_page_cache() {
    let bits = CacheBitmap {
        first: 0x10_0000,
        words: vec![0b101],
    };
    assert!(bits.contains(0x10_0000));
    assert!(!bits.contains(0x10_1000));
    assert!(bits.contains(0x10_2000));
    assert!(!bits.contains(0xf_f000));
    assert!(!bits.contains(0x50_0000));
}

/// A parent (pid 1) and its forked child (pid 2): page 0x1000 of each maps
/// frame 0x900000, shared copy-on-write; page 0x2000 maps a private frame
/// of each; page 0x3000 maps frame 0x903000, which the two share through
/// a MAP_SHARED area; page 0x4000 maps the page cache in both.
struct Forked {
    space: crate::inspect::testspace::Space,
    roots: [u64; 2],
    vmas: Vec<VmaRecord>,
    /// Entries of page 0x1000 in each.
    cow: [u64; 2],
    shares: crate::inspect::spaces::ShareCounts,
}

const COW_FRAME: u64 = 0x90_0000;

fn forked() -> Forked {
    use crate::inspect::testspace::{vma, Space, USER_R};
    let rw = vma_flags::READ | vma_flags::WRITE;
    let vmas = vec![
        vma(0x1000, 0x3000, rw, 0),
        vma(0x3000, 0x4000, rw | vma_flags::SHARED, 0),
        vma(0x4000, 0x5000, vma_flags::READ | vma_flags::FILE, 0),
    ];
    let mut s = Space::new();
    let mut roots = [0; 2];
    let mut cow = [0; 2];
    for (i, private) in [0x90_1000, 0x90_2000].into_iter().enumerate() {
        roots[i] = if i == 0 { s.cr3 } else { s.new_root() };
        cow[i] = s.map(0x1000, COW_FRAME, PageSize::Size4K, USER_R);
        s.map(0x2000, private, PageSize::Size4K, USER_RW);
        s.map(0x3000, 0x90_3000, PageSize::Size4K, USER_RW);
        s.map(0x4000, CACHE, PageSize::Size4K, USER_R);
    }
    let mut extra = vec![0u16; 4];
    extra[0] = 1; // the COW frame
    extra[3] = 1; // the MAP_SHARED frame
    Forked {
        space: s,
        roots,
        vmas,
        cow,
        shares: crate::inspect::spaces::ShareCounts {
            first: COW_FRAME,
            extra,
        },
    }
}

fn sharing(f: &Forked, frames: [u64; 2]) -> Vec<String> {
    let walks: Vec<Walk> = f
        .roots
        .iter()
        .map(|&r| walk(&f.space.ram, r, WalkOptions { user_only: true }).unwrap())
        .collect();
    let spaces: Vec<SpaceCheck> = (0..2)
        .map(|i| SpaceCheck {
            pid: i as u64 + 1,
            walk: &walks[i],
            vmas: &f.vmas,
            user_frames: frames[i],
        })
        .collect();
    let v = check_sharing(&SharingInput {
        spaces: &spaces,
        shares: &f.shares,
        page_cache: CACHE..CACHE + 0x4000,
        cache_frames: &CacheBitmap::default(),
    });
    v.iter().map(|v| v.to_string()).collect()
}

#[test]
fn copy_on_write_sharing_read_only_with_matching_counts_passes() {
    let f = forked();
    assert_eq!(sharing(&f, [3, 3]), Vec::<String>::new());
}

#[test]
fn frame_writable_in_two_private_mappings_is_a_violation() {
    let f = forked();
    for at in f.cow {
        f.space.set(at, bits::RW);
    }
    let v = sharing(&f, [3, 3]);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with(
        "frame 0x900000 has 2 mappings but pid 1 maps it writable and private (copy-on-write broken)"
    ));
    assert!(v[1].contains("but pid 2 maps it writable"), "{v:?}");
}

#[test]
fn shared_frame_writable_in_one_private_mapping_is_a_violation() {
    let f = forked();
    f.space.set(f.cow[1], bits::RW);
    let v = sharing(&f, [3, 3]);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("but pid 2 maps it writable"));
}

#[test]
fn reference_count_below_the_mappings_found_is_a_violation() {
    let mut f = forked();
    f.shares.extra[0] = 0;
    let v = sharing(&f, [3, 3]);
    assert_eq!(
        v,
        [
            "frame 0x900000: the guest counts 1 mappings, the walks find 2 (pids [1, 2])",
            "user frames of all spaces: the guest counts 6, the reference counts of the frames found add up to 5",
        ]
    );
}

#[test]
fn reference_count_of_a_frame_mapped_nowhere_is_a_violation() {
    let mut f = forked();
    f.shares.extra[2] = 1;
    let v = sharing(&f, [3, 3]);
    assert_eq!(
        v,
        [
            "frame 0x902000: the guest counts 2 mappings, the walks find 1 (pids [2])",
            "user frames of all spaces: the guest counts 6, the reference counts of the frames found add up to 7",
        ]
    );
    let mut f = forked();
    f.shares.extra.push(2);
    let v = sharing(&f, [3, 3]);
    assert_eq!(
        v,
        ["frame 0x904000: the guest counts 3 mappings, the walks find 0 (pids [])"]
    );
}

#[test]
fn frame_counts_that_do_not_add_up_across_spaces_are_a_violation() {
    let f = forked();
    let v = sharing(&f, [3, 4]);
    assert_eq!(
        v,
        ["user frames of all spaces: the guest counts 7, the reference counts of the frames found add up to 6"]
    );
}

#[test]
fn a_page_table_page_in_two_spaces_is_a_violation() {
    let f = forked();
    // The child's PML4 entry for the low half points at the parent's PDPT.
    let parent = f.space.read(f.roots[0]);
    f.space.write(f.roots[1], parent);
    let v = sharing(&f, [3, 3]);
    assert!(
        v.iter().any(|t| t.contains("belongs to pid 1 and pid 2")),
        "{v:?}"
    );
}

/// The stdin ring's pages below the trampoline, user-writable and
/// no-execute on their own frames, pass; an executable one, one on another
/// frame and a user page next to them are reported.
#[test]
fn the_stdin_ring_pages_pass_and_a_wrong_one_is_reported() {
    use vmrun_contract::layout::{PAGE_SIZE, STDIN_RING_HEADER_PHYS, STDIN_RING_HEADER_VIRT};
    let mut l = legal();
    let pages = vmrun_contract::stdin_ring::PAGES;
    let page = |i: u64| {
        (
            STDIN_RING_HEADER_VIRT + i * PAGE_SIZE,
            STDIN_RING_HEADER_PHYS + i * PAGE_SIZE,
        )
    };
    for i in 0..pages {
        let (va, pa) = page(i);
        l.space.map(va, pa, PageSize::Size4K, USER_RW);
    }
    assert_eq!(texts(&run(&l)), Vec::<String>::new());
    let (last, last_pa) = page(pages - 1);
    let wrong = [
        (last, last_pa, USER_RW & !bits::NX),
        (last, last_pa + PAGE_SIZE, USER_RW),
        (
            STDIN_RING_HEADER_VIRT - PAGE_SIZE,
            STDIN_RING_HEADER_PHYS - PAGE_SIZE,
            USER_RW,
        ),
    ];
    for (va, pa, flags) in wrong {
        let mut l = legal();
        for i in 0..pages {
            let (va, pa) = page(i);
            l.space.map(va, pa, PageSize::Size4K, USER_RW);
        }
        l.space.map(va, pa, PageSize::Size4K, flags);
        let v = texts(&run(&l));
        assert_eq!(v.len(), 1, "{va:#x} {pa:#x} {flags:#x}: {v:?}");
        assert!(
            v[0].contains("kernel-half page is user-accessible"),
            "{v:?}"
        );
    }
}
