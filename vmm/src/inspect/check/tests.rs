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
