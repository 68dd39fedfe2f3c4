use super::*;
use crate::inspect::testspace::{legal, Space, CACHE, USER_RW, USER_RX};
use vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT;

#[test]
fn canonical_sign_extends_bit_47() {
    assert_eq!(canonical(0x0000_7fff_ffff_f000), 0x0000_7fff_ffff_f000);
    assert_eq!(canonical(0x0000_8000_0000_0000), 0xffff_8000_0000_0000);
    assert_eq!(canonical(0x0000_ffff_ff5f_f000), 0xffff_ffff_ff5f_f000);
}

#[test]
fn walk_lists_tables_depth_first_with_present_counts() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let shape: Vec<(u8, u32)> = w.tables.iter().map(|t| (t.level, t.present)).collect();
    // PML4: user 0 and 255, kernel 273 (direct map) and 511.
    // User: PDPT(1) PD(2: PT + 2M) PT(6), PDPT(1) PD(1) PT(1).
    // Kernel: PDPT(1) PD(1 leaf), PDPT(2) PD(1) PT(1), PD(1) PT(1).
    let expected = vec![
        (4, 4),
        (3, 1),
        (2, 2),
        (1, 5),
        (3, 1),
        (2, 1),
        (1, 1),
        (3, 1),
        (2, 1),
        (3, 2),
        (2, 1),
        (1, 1),
        (2, 1),
        (1, 1),
    ];
    assert_eq!(shape, expected);
    assert!(w.problems.is_empty(), "{:?}", w.problems);
    assert_eq!(w.tables[1].va_last(), 0x7f_ffff_ffff);
    assert_eq!(w.tables[7].va_start, 0xffff_8880_0000_0000);
}

#[test]
fn walk_finds_leaves_with_size_pa_and_effective_flags() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let text = w.leaves[0];
    assert_eq!(
        (text.va, text.pa, text.size),
        (0x40_0000, CACHE, PageSize::Size4K)
    );
    assert_eq!(text.flags.perms(), "r-x");
    assert!(text.flags.user && text.flags.accessed && !text.flags.dirty);
    let huge = w.leaves.iter().find(|l| l.va == 0x60_0000).unwrap();
    assert_eq!((huge.pa, huge.size), (0xa0_0000, PageSize::Size2M));
    let tramp = w
        .leaves
        .iter()
        .find(|l| l.va == SYSCALL_TRAMPOLINE_VIRT)
        .unwrap();
    assert!(tramp.flags.user && !tramp.flags.writable);
    let ktext = w
        .leaves
        .iter()
        .find(|l| l.va == 0xffff_ffff_8010_0000)
        .unwrap();
    assert!(!ktext.flags.user, "US on the path only, not on the leaf");
    assert_eq!(w.protnone.len(), 1);
    assert_eq!(w.protnone[0].va, 0x50_0000);
}

#[test]
fn user_only_walk_skips_the_kernel_half() {
    let l = legal();
    let opts = WalkOptions { user_only: true };
    let w = walk(&l.space.ram, l.space.cr3, opts).unwrap();
    assert!(w.leaves.iter().all(|l| l.is_user_half()));
    assert_eq!(w.tables.len(), 7);
    assert_eq!(w.tables[0].present, 2);
}

#[test]
fn count_bits_in_table_entries_are_ignored() {
    let mut s = Space::new();
    s.map(0x1000, 0x20_0000, PageSize::Size4K, USER_RW);
    let pml4e = s.read(s.cr3);
    assert_ne!(pml4e >> 52, 0, "the builder sets count bits");
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    assert_eq!(w.leaves[0].pa, 0x20_0000);
    assert!(w.problems.is_empty());
}

#[test]
fn table_pointer_outside_ram_is_a_problem_not_a_crash() {
    let mut s = Space::new();
    let at = s.map(0x1000, 0x20_0000, PageSize::Size4K, USER_RW);
    let pde = s.entry_addr(0x1000, 2);
    s.write(pde, (1 << 40) | bits::P | bits::RW | bits::US);
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    assert!(w.leaves.is_empty());
    assert_eq!(w.problems.len(), 1);
    assert!(w.problems[0].to_string().contains("outside guest RAM"));
    let _ = at;
}

#[test]
fn table_loop_is_reported_once_and_not_followed() {
    let mut s = Space::new();
    s.map(0x1000, 0x20_0000, PageSize::Size4K, USER_RW);
    // Point PML4[1] at the PML4 itself.
    s.write(s.cr3 + 8, s.cr3 | bits::P | bits::RW);
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    assert_eq!(w.problems.len(), 1);
    assert!(w.problems[0].what.contains("already in the walk"));
}

#[test]
fn root_outside_ram_is_an_error() {
    let s = Space::new();
    let err = walk(&s.ram, 1 << 40, WalkOptions::default()).unwrap_err();
    assert!(err.to_string().contains("outside guest RAM"));
}

#[test]
fn coalescing_joins_only_contiguous_same_flag_leaves() {
    let mut s = Space::new();
    s.map(0x40_0000, 0x20_0000, PageSize::Size4K, USER_RX);
    s.map(0x40_1000, 0x20_1000, PageSize::Size4K, USER_RX);
    s.map(0x40_2000, 0x20_3000, PageSize::Size4K, USER_RX); // pa gap
    s.map(0x40_3000, 0x20_4000, PageSize::Size4K, USER_RW); // flags differ
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    let text = render_mappings(&w.mappings());
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "0000000000400000-0000000000402000 -> 0x000000200000-0x000000202000 4K x2     r-x user A--",
            "0000000000402000-0000000000403000 -> 0x000000203000-0x000000204000 4K x1     r-x user A--",
            "0000000000403000-0000000000404000 -> 0x000000204000-0x000000205000 4K x1     rw- user AD-",
        ]
    );
}

#[test]
fn tree_text_shows_levels_ranges_and_counts() {
    let mut s = Space::new();
    s.map(0x40_0000, 0x20_0000, PageSize::Size4K, USER_RX);
    s.map(0x40_1000, 0x20_1000, PageSize::Size4K, USER_RX);
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    let expected = "CR3 0x10000\n\
        PML4 @0x10000 (1 present)\n  \
        [  0] PDPT @0x11000 0000000000000000-0000007fffffffff (1 present)\n    \
        [  0] PD @0x12000 0000000000000000-000000003fffffff (1 present)\n      \
        [  2] PT @0x13000 0000000000400000-00000000005fffff (2 present)\n";
    assert_eq!(render_tree(&w), expected);
}

#[test]
fn json_has_tables_mappings_and_hex_addresses() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let v = to_json(&w);
    assert_eq!(v["cr3"], "0x10000");
    assert_eq!(v["tables"][0]["name"], "PML4");
    assert_eq!(v["mappings"][0]["va_start"], "0x400000");
    assert_eq!(v["mappings"][0]["perms"], "r-x");
    assert_eq!(v["protnone"][0]["va"], "0x500000");
    let last = v["mappings"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["va_start"], "0xffffffffff5ff000");
    assert_eq!(last["user"], true);
}

#[test]
fn large_leaf_with_reserved_address_bits_is_a_problem() {
    let mut s = Space::new();
    s.map(0x20_0000, 0x40_0000 | 0x2000, PageSize::Size2M, USER_RW);
    let w = walk(&s.ram, s.cr3, WalkOptions::default()).unwrap();
    assert_eq!(w.leaves[0].pa, 0x40_0000);
    assert!(w.problems[0].what.contains("reserved address bits"));
}

#[test]
fn translate_agrees_with_the_walk() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    for leaf in &w.leaves {
        let t = translate(&l.space.ram, l.space.cr3, leaf.va + 0x123).unwrap();
        assert_eq!(t, *leaf);
    }
    assert_eq!(
        translate(&l.space.ram, l.space.cr3, 0x50_0000),
        None,
        "PROT_NONE"
    );
    assert_eq!(translate(&l.space.ram, l.space.cr3, 0x8000_0000_0000), None);
}

#[test]
fn read_user_crosses_pages_and_stops_at_unmapped_or_kernel_ones() {
    let mut s = Space::new();
    s.map(0x40_0000, 0x20_0000, PageSize::Size4K, USER_RW);
    s.map(0x40_1000, 0x30_0000, PageSize::Size4K, USER_RW);
    s.ram.write_bytes(0x20_0ffe, b"he").unwrap();
    s.ram.write_bytes(0x30_0000, b"llo").unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(read_user(&s.ram, s.cr3, 0x40_0ffe, &mut buf), 5);
    assert_eq!(&buf, b"hello");
    let mut big = [0u8; 0x1000];
    assert_eq!(read_user(&s.ram, s.cr3, 0x40_1800, &mut big), 0x800);
    s.map(0x40_2000, 0x31_0000, PageSize::Size4K, bits::P | bits::RW);
    assert_eq!(
        read_user(&s.ram, s.cr3, 0x40_2000, &mut buf),
        0,
        "supervisor page"
    );
}
