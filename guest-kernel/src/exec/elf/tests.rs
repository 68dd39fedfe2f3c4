//! Tests of the ELF load plan over images built here and real binaries.

use super::*;

const MMAP_TOP: u64 = 0x7fff_f7ff_f000;

#[derive(Clone, Copy, Debug)]
struct Ph {
    ty: u32,
    flags: u32,
    off: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn load(flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph {
        ty: PT_LOAD,
        flags,
        off,
        vaddr,
        filesz,
        memsz,
        align: 0x1000,
    }
}

fn other(ty: u32, flags: u32, off: u64, vaddr: u64, filesz: u64) -> Ph {
    Ph {
        ty,
        flags,
        off,
        vaddr,
        filesz,
        memsz: filesz,
        align: 8,
    }
}

fn put(b: &mut [u8], off: usize, v: u64, n: usize) {
    b[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
}

/// An ELF image: header, program headers at 64, zeroed payload up to the
/// end of the last in-file segment.
fn image(e_type: u16, entry: u64, phs: &[Ph]) -> Vec<u8> {
    let mut len = 64 + 56 * phs.len() as u64;
    for p in phs {
        if p.off.saturating_add(p.filesz) < 1 << 24 {
            len = len.max(p.off + p.filesz);
        }
    }
    let mut b = vec![0u8; len as usize];
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    put(&mut b, 16, e_type.into(), 2);
    put(&mut b, 18, 0x3e, 2);
    put(&mut b, 20, 1, 4);
    put(&mut b, 24, entry, 8);
    put(&mut b, 32, 64, 8);
    put(&mut b, 52, 64, 2);
    put(&mut b, 54, 56, 2);
    put(&mut b, 56, phs.len() as u64, 2);
    for (i, p) in phs.iter().enumerate() {
        let o = 64 + 56 * i;
        put(&mut b, o, p.ty.into(), 4);
        put(&mut b, o + 4, p.flags.into(), 4);
        for (k, v) in [p.off, p.vaddr, p.vaddr, p.filesz, p.memsz, p.align]
            .iter()
            .enumerate()
        {
            put(&mut b, o + 8 + 8 * k, *v, 8);
        }
    }
    b
}

/// Text, rodata+headers and data+bss segments at `base`, like ld's output.
fn typical(base: u64) -> Vec<Ph> {
    vec![
        load(PF_R, 0, base, 0x200, 0x200),
        load(PF_R | PF_X, 0x1000, base + 0x1000, 0x123, 0x123),
        load(PF_R | PF_W, 0x2010, base + 0x3010, 0x20, 0x3000),
        other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0),
    ]
}

fn with_interp(mut phs: Vec<Ph>) -> (Vec<u8>, Vec<Ph>) {
    phs.push(other(PT_INTERP, PF_R, 0x100, 0x100, 11));
    let mut b = image(ET_DYN, 0x1000, &phs);
    b[0x100..0x10b].copy_from_slice(b"/lib/ld.so\0");
    (b, phs)
}

fn msg(e: ElfError) -> String {
    let mut m = MsgBuf::<256>::new();
    e.write_msg(&mut m);
    String::from_utf8(m.as_bytes().to_vec()).unwrap()
}

/// The error planning `b` gives, found while checking the headers or
/// left for the mapping (past the point of no return).
fn any_err(b: &[u8]) -> ElfError<'_> {
    match LoadPlan::program(b, MMAP_TOP) {
        Err(e) => e,
        Ok(plan) => plan.load_error.expect("an error"),
    }
}

/// The error Linux meets only while mapping the segments.
fn late(b: &[u8]) -> ElfError<'static> {
    let plan = LoadPlan::program(b, MMAP_TOP).expect("the headers are fine");
    let e = plan.check_loadable().unwrap_err();
    assert!(e.found_while_mapping(), "{}", msg(e));
    assert_eq!(plan.loadable(), Err(e.errno()), "the mapping's errno");
    e
}

fn err_msg(b: &[u8]) -> String {
    msg(any_err(b))
}

fn prog_msg(e_type: u16, phs: &[Ph]) -> String {
    err_msg(&image(e_type, 0, phs))
}

#[test]
fn et_exec_plan_matches_linux() {
    let b = image(ET_EXEC, 0x401000, &typical(0x400000));
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(p.load_bias, 0);
    assert_eq!(p.entry, 0x401000);
    assert_eq!(p.phdr, 0x400040);
    assert_eq!((p.phnum, p.phent), (4, 56));
    assert_eq!((p.start_code, p.end_code), (0x401000, 0x401123));
    assert_eq!((p.start_data, p.end_data), (0x403010, 0x403030));
    assert_eq!(
        (p.end_data, p.elf_brk, p.start_brk),
        (0x403030, 0x406010, 0x407000)
    );
    assert_eq!(p.interp, None);
    assert!(!p.exec_stack);
    let s = p.segments();
    assert_eq!(s.len(), 3);
    assert_eq!((s[0].vaddr, s[0].prot), (0x400000, PROT_READ));
    assert_eq!((s[1].vaddr, s[1].prot), (0x401000, PROT_READ | PROT_EXEC));
    assert_eq!(
        s[2],
        Segment {
            vaddr: 0x403010,
            memsz: 0x3000,
            filesz: 0x20,
            offset: 0x2010,
            prot: 3
        }
    );
    assert_eq!(p.require_static(&b), Ok(()));
}

#[test]
fn bss_segment_splits_into_file_tail_and_anon_pages() {
    let b = image(ET_EXEC, 0x401000, &typical(0x400000));
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    let bss = p.segments()[2];
    assert_eq!((bss.map_start(), bss.map_offset()), (0x403000, 0x2000));
    assert_eq!(bss.file_map_end(), 0x404000);
    assert_eq!(bss.zero_tail(), (0x403030, 0x404000));
    assert_eq!(bss.anon_pages(), (0x404000, 0x407000));
    let text = p.segments()[1];
    assert_eq!(text.zero_tail(), (0x401123, 0x401123));
    assert_eq!(text.anon_pages().0, text.anon_pages().1);
}

#[test]
fn bss_only_segment_is_all_anon() {
    let mut phs = typical(0x400000);
    phs.push(load(PF_R | PF_W, 0, 0x410000, 0, 0x1800));
    let p = LoadPlan::program(&image(ET_EXEC, 0x401000, &phs), MMAP_TOP).unwrap();
    let s = p.segments()[3];
    assert_eq!(s.file_map_end(), 0x410000);
    assert_eq!(s.anon_pages(), (0x410000, 0x412000));
    assert_eq!(p.start_brk, 0x412000);
}

#[test]
fn static_pie_loads_at_elf_et_dyn_base_with_brk_after_its_bss() {
    let b = image(ET_DYN, 0x1000, &typical(0));
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(p.load_bias, 0x5555_5555_4000);
    assert_eq!(p.entry, 0x5555_5555_5000);
    assert_eq!(p.phdr, 0x5555_5555_4040);
    assert_eq!(p.start_brk, 0x5555_5555_b000);
    assert_eq!(p.interp, None);
}

#[test]
fn pie_with_interp_loads_at_elf_et_dyn_base() {
    let (b, _) = with_interp(typical(0));
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(p.load_bias, 0x5555_5555_4000);
    assert_eq!(p.entry, 0x5555_5555_5000);
    assert_eq!(p.phdr, 0x5555_5555_4040);
    assert_eq!(p.start_brk, 0x5555_5555_b000);
    assert_eq!(p.interp_path(&b), Some(&b"/lib/ld.so"[..]));
    let e = p.require_static(&b).unwrap_err();
    assert_eq!(
        msg(e),
        "dynamic programs are not supported yet (PT_INTERP /lib/ld.so)"
    );
    assert_eq!(e.errno(), Errno::ENOEXEC);
}

#[test]
fn pie_with_large_p_align_aligns_the_base() {
    let mut phs = typical(0);
    phs[1].align = 0x20_0000;
    let (b, _) = with_interp(phs);
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(p.load_bias, 0x5555_5540_0000);
}

#[test]
fn interpreter_goes_below_mmap_top_with_its_own_brk() {
    let b = image(ET_DYN, 0x1000, &typical(0));
    let p = LoadPlan::interpreter(&b, MMAP_TOP).unwrap();
    assert_eq!(p.base(), MMAP_TOP - 0x7000);
    assert_eq!(p.start_brk, MMAP_TOP);
}

#[test]
fn gnu_stack_with_pf_x_makes_stack_executable() {
    let mut phs = typical(0x400000);
    phs[3].flags |= PF_X;
    let p = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert!(p.exec_stack);
    phs.pop();
    let p = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert!(!p.exec_stack);
}

#[test]
fn phdrs_outside_segments_use_pt_phdr() {
    let mut phs = typical(0x400000);
    phs[0] = load(PF_R, 0x1000, 0x400000, 0x100, 0x100);
    phs[1].off = 0x2000;
    phs[1].vaddr = 0x401000;
    phs.push(other(PT_PHDR, PF_R, 64, 0x3ff040, 4 * 56));
    let p = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert_eq!(p.phdr, 0x3ff040);
}

#[test]
fn no_executable_segment_wraps_start_code_like_linux() {
    let phs = [load(PF_R | PF_W, 0, 0x400000, 0x100, 0x100)];
    let p = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert_eq!((p.start_code, p.end_code), (u64::MAX, 0));
}

#[test]
fn short_file_with_the_magic_is_truncated() {
    let e = LoadPlan::program(&[0x7f, b'E', b'L', b'F', 2], MMAP_TOP).unwrap_err();
    assert_eq!(
        msg(e),
        "truncated ELF file (5 bytes, shorter than the ELF header)"
    );
    assert_eq!(e.errno(), Errno::ENOEXEC);
}

#[test]
fn short_and_text_files_are_not_elf() {
    for f in [&b"\x7fE"[..], b"echo hi\n"] {
        let e = LoadPlan::program(f, MMAP_TOP).unwrap_err();
        assert_eq!(msg(e), "not an ELF file (bad magic)");
        assert_eq!(e.errno(), Errno::ENOEXEC);
    }
}

#[test]
fn an_empty_file_is_called_empty() {
    let e = LoadPlan::program(b"", MMAP_TOP).unwrap_err();
    assert_eq!(msg(e), "empty file (not an ELF file, and no #! line)");
    assert_eq!(e.errno(), Errno::ENOEXEC);
}

#[test]
fn a_prefix_is_parsed_against_the_whole_file_length() {
    let phs = [load(PF_R | PF_X, 0, 0x400000, 0x1000, 0x1000)];
    let img = image(ET_EXEC, 0x400000, &phs);
    let span = header_span(&img[..64]).unwrap() as usize;
    let p = LoadPlan::parse_prefix(&img[..span], img.len() as u64, false, MMAP_TOP, 0).unwrap();
    assert_eq!(p, LoadPlan::program(&img, MMAP_TOP).unwrap());
    let phs = [load(PF_R | PF_W, 0, 0x400000, 0x1800, 0x3000)];
    let img = image(ET_EXEC, 0x400000, &phs);
    let p = LoadPlan::parse_prefix(&img[..span], img.len() as u64, false, MMAP_TOP, 0).unwrap();
    assert_eq!(p.load_error, None);
    let p = LoadPlan::parse_prefix(&img[..span], 0x800, false, MMAP_TOP, 0).unwrap();
    let e = p.load_error.unwrap();
    assert!(msg(e).contains("file's 0x800 bytes"), "{}", msg(e));
    // A prefix cut short of the table's end is refused at its length.
    let short = LoadPlan::parse_prefix(&img[..span - 1], img.len() as u64, false, MMAP_TOP, 0);
    let want = format!(
        "truncated ELF file (program headers end at {span:#x} past the file's {:#x} bytes)",
        span - 1
    );
    assert_eq!(msg(short.unwrap_err()), want);
}

#[test]
fn header_field_errors_have_exact_messages() {
    let good = image(ET_EXEC, 0, &typical(0x400000));
    let cases: [(usize, &[u8], &str); 9] = [
        (0, b"\x7fELG", "not an ELF file (bad magic)"),
        (4, &[1], "not a 64-bit ELF (EI_CLASS 1)"),
        (5, &[2], "not a little-endian ELF (EI_DATA 2)"),
        (6, &[0], "bad ELF version 0"),
        (20, &[2], "bad ELF version 2"),
        (18, &[0x28, 0], "wrong machine 0x28 (expected x86-64, 0x3e)"),
        (16, &[4, 0], "not an executable or shared object (e_type 4)"),
        (54, &[32, 0], "bad program header size 32 (expected 56)"),
        (56, &[0, 0], "no program headers"),
    ];
    for (off, bytes, want) in cases {
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        assert_eq!(err_msg(&b), want);
    }
}

#[test]
fn phdrs_over_64_kib_are_too_many() {
    let mut b = image(ET_EXEC, 0, &typical(0x400000));
    b.resize(64 + 1171 * 56, 0);
    put(&mut b, 56, 1171, 2);
    assert_eq!(err_msg(&b), "too many program headers (1171)");
    // 1170 headers (65520 bytes): the typical ones, then PT_NULL entries.
    put(&mut b, 56, 1170, 2);
    let plan = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!((plan.phnum, plan.segments().len()), (1170, 3));
    assert_eq!(plan.load_error, None);
}

#[test]
fn a_table_read_apart_is_parsed_as_if_it_were_in_place() {
    let img = image(ET_EXEC, 0x401000, &typical(0x400000));
    let whole = LoadPlan::program(&img, MMAP_TOP).unwrap();
    let table = &img[64..64 + 4 * 56];
    let len = img.len() as u64;
    let apart = LoadPlan::parse_parts(&img[..64], table, len, false, MMAP_TOP, 0).unwrap();
    assert_eq!(apart, whole);
    let short = LoadPlan::parse_parts(&img[..64], &table[..100], len, false, MMAP_TOP, 0);
    assert!(msg(short.unwrap_err()).contains("program headers end at 0x120"));
}

#[test]
fn phdrs_past_file_end_are_truncated() {
    let mut b = image(ET_EXEC, 0, &typical(0x400000));
    let len = b.len() as u64;
    put(&mut b, 32, len - 8, 8);
    let want = format!(
        "truncated ELF file (program headers end at {:#x} past the file's {:#x} bytes)",
        len - 8 + 4 * 56,
        len
    );
    assert_eq!(err_msg(&b), want);
    put(&mut b, 32, u64::MAX - 8, 8);
    assert!(err_msg(&b).contains("end at 0xffffffffffffffff"));
}

#[test]
fn segment_data_past_file_end_is_mapped_as_linux_maps_it() {
    let mut b = image(ET_EXEC, 0, &typical(0x400000));
    let len = b.len() as u64;
    b.truncate(len as usize - 0x10);
    let plan = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(plan.load_error, None);
    assert_eq!(plan.segments()[2].filesz, 0x20);
    // Cut inside the first page: padzero clears the bss start in a page
    // that still holds file bytes.
    b.truncate(0x2001);
    assert_eq!(LoadPlan::program(&b, MMAP_TOP).unwrap().load_error, None);
}

#[test]
fn writable_bss_starting_in_a_page_past_the_file_end_is_efault_while_mapping() {
    let mut b = image(ET_EXEC, 0, &typical(0x400000));
    b.truncate(0x2000);
    let e = late(&b);
    let want = "segment 2: its data ends at 0x2030, in a page past the file's 0x2000 bytes, \
                where its bss cannot be zeroed";
    assert_eq!(msg(e), want);
    assert_eq!(e.errno(), Errno::EFAULT);
    // Read-only: Linux ignores the failed padzero.
    let mut phs = typical(0x400000);
    phs[2].flags = PF_R;
    let mut b = image(ET_EXEC, 0, &phs);
    b.truncate(0x2000);
    assert_eq!(LoadPlan::program(&b, MMAP_TOP).unwrap().load_error, None);
}

#[test]
fn segment_below_mmap_min_addr_is_eperm_while_mapping() {
    let phs = [load(PF_R | PF_X, 0, 0, 0x200, 0x200)];
    let e = late(&image(ET_EXEC, 0, &phs));
    assert_eq!(msg(e), "segment 0: 0x0 is below mmap_min_addr 0x10000");
    assert_eq!(e.errno(), Errno::EPERM);
    let phs = [load(PF_R | PF_X, 0, 0xf000, 0x200, 0x200)];
    assert_eq!(late(&image(ET_EXEC, 0, &phs)).errno(), Errno::EPERM);
    let phs = [load(PF_R | PF_X, 0, 0x10000, 0x200, 0x200)];
    let plan = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert_eq!(plan.load_error, None);
}

#[test]
fn filesz_over_memsz_is_einval() {
    let mut phs = typical(0x400000);
    phs[1].filesz = 0x200;
    let e = late(&image(ET_EXEC, 0, &phs));
    assert_eq!(msg(e), "segment 1: p_filesz 0x200 exceeds p_memsz 0x123");
    assert_eq!(e.errno(), Errno::EINVAL);
}

#[test]
fn vaddr_offset_incongruent_is_rejected() {
    let mut phs = typical(0x400000);
    phs[2].vaddr += 8;
    let want = "segment 2: p_vaddr 0x403018 and p_offset 0x2010 differ modulo the page size";
    assert_eq!(prog_msg(ET_EXEC, &phs), want);
}

#[test]
fn segment_beyond_task_size_is_rejected() {
    let phs = [load(PF_R, 0, 0x7fff_ffff_e000, 0x100, 0x2000)];
    let e = late(&image(ET_EXEC, 0, &phs));
    let want = "segment 0: [0x7fffffffe000, 0x800000000000) reaches beyond user space \
                (TASK_SIZE 0x7ffffffff000)";
    assert_eq!(msg(e), want);
    assert_eq!(e.errno(), Errno::EINVAL);
    let ok = [load(PF_R, 0, 0x7fff_ffff_e000, 0x100, 0x1000)];
    assert!(LoadPlan::program(&image(ET_EXEC, 0, &ok), MMAP_TOP).is_ok());
}

#[test]
fn pie_pushed_beyond_task_size_by_bias_is_rejected() {
    let (b, _) = with_interp(vec![load(PF_R, 0, 0, 0x200, 0x3000_0000_0000)]);
    assert!(err_msg(&b).contains("reaches beyond user space"));
}

#[test]
fn a_late_error_names_the_segment_by_its_program_header_index() {
    let phs = [
        other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0),
        load(PF_R, 0, 0x400000, 0x200, 0x200),
        other(PT_PHDR, PF_R, 0x40, 0x400040, 0x38),
        load(PF_R | PF_X, 0x1000, 0x1000, 0x100, 0x100),
    ];
    let e = late(&image(ET_EXEC, 0, &phs));
    assert_eq!(msg(e), "segment 3: 0x1000 is below mmap_min_addr 0x10000");
    let phs = [
        other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0),
        load(PF_R, 0, 0, 0x400, 0x400),
        load(PF_R, 0x1000, 0x1000, 0x200, 0x3000_0000_0000),
        other(PT_INTERP, PF_R, 0x300, 0x300, 11),
    ];
    let mut b = image(ET_DYN, 0x1000, &phs);
    b[0x300..0x30b].copy_from_slice(b"/lib/ld.so\0");
    let want = "segment 2: [0x555555555000, 0x855555555000) reaches beyond user space";
    assert!(err_msg(&b).starts_with(want), "{}", err_msg(&b));
}

#[test]
fn address_overflow_is_rejected() {
    let phs = [load(PF_R, 0, 0xffff_ffff_ffff_f000, 0x100, 0x2000)];
    assert_eq!(prog_msg(ET_EXEC, &phs), "segment 0: address overflow");
    let phs = [load(PF_R, 0xffff_ffff_ffff_f000, 0x1000, 0x2000, 0x2000)];
    assert_eq!(prog_msg(ET_EXEC, &phs), "segment 0: address overflow");
}

#[test]
fn overlapping_or_unordered_segments_are_planned_in_header_order() {
    let mut phs = typical(0x400000);
    phs[1].memsz = 0x3000;
    let plan = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    assert_eq!(plan.load_error, None);
    assert_eq!(plan.segments()[1].memsz, 0x3000);
    let mut phs = typical(0x400000);
    phs.swap(0, 1);
    let plan = LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).unwrap();
    let starts: Vec<u64> = plan.segments().iter().map(|s| s.vaddr).collect();
    assert_eq!(starts, [0x401000, 0x400000, 0x403010]);
    assert_eq!(plan.elf_brk, 0x406010);
}

/// The `mm_struct` bounds as Linux computes them, segment by segment:
/// (start_code, end_code, start_data, end_data, elf_brk).
fn bounds_of(phs: &[Ph]) -> (u64, u64, u64, u64, u64) {
    let mut b = (u64::MAX, 0, 0, 0, 0);
    for p in phs.iter().filter(|p| p.ty == PT_LOAD) {
        if p.flags & PF_X != 0 {
            b.0 = b.0.min(p.vaddr);
            b.1 = b.1.max(p.vaddr + p.filesz);
        }
        b.2 = b.2.max(p.vaddr);
        b.3 = b.3.max(p.vaddr + p.filesz);
        b.4 = b.4.max(p.vaddr + p.memsz);
    }
    b
}

#[test]
fn the_bounds_are_the_segments_extremes_in_any_order() {
    // In order, each past the end of the one before; then a text segment
    // longer than the next one's start, and a bss reaching past it.
    let sets = [
        typical(0x400000),
        vec![
            load(PF_R | PF_X, 0, 0x400000, 0x5000, 0x5000),
            load(PF_R, 0x3000, 0x403000, 0x100, 0x100),
            load(PF_R | PF_W, 0x4000, 0x404000, 0x10, 0x10),
        ],
        vec![
            load(PF_R | PF_W, 0, 0x400000, 0x800, 0x9000),
            load(PF_R | PF_X, 0x1000, 0x401000, 0x200, 0x200),
            load(PF_R, 0x2000, 0x402000, 0x100, 0x100),
        ],
    ];
    for phs in sets {
        for (a, b, c) in [
            (0, 1, 2),
            (0, 2, 1),
            (1, 0, 2),
            (1, 2, 0),
            (2, 0, 1),
            (2, 1, 0),
        ] {
            let order = [phs[a], phs[b], phs[c]];
            let plan = LoadPlan::program(&image(ET_EXEC, 0, &order), MMAP_TOP).unwrap();
            assert_eq!(plan.load_error, None);
            let got = (
                plan.start_code,
                plan.end_code,
                plan.start_data,
                plan.end_data,
                plan.elf_brk,
            );
            assert_eq!(got, bounds_of(&order), "order {a} {b} {c}");
            assert_eq!(plan.start_brk, page_up(bounds_of(&order).4));
        }
    }
}

#[test]
fn the_bias_checked_at_the_bounds_moves_the_segments_as_each_checked_does() {
    let sets = [
        typical(0),
        typical(0x400000),
        vec![
            load(PF_R | PF_X, 0, 0x2000, 0x5000, 0x5000),
            load(PF_R, 0x3000, 0x3000, 0x100, 0x100),
            load(PF_R | PF_W, 0x4000, 0x1000, 0x10, 0x10),
        ],
        vec![
            load(PF_R, 0, 0, 0, 0),
            load(PF_R | PF_X, 0x1000, 0x11000, 0x100, 0x100),
        ],
        vec![load(PF_R, 0, TASK_SIZE - 0x3000, 0x100, 0x2000)],
    ];
    let biases = [
        0x1000,
        0x10000,
        0x5555_5555_4000,
        TASK_SIZE - 0x2000,
        0u64.wrapping_sub(0x1000),
        0u64.wrapping_sub(0x400000),
        0u64.wrapping_sub(0x401000),
        0u64.wrapping_sub(0x3000),
    ];
    for phs in &sets {
        // The plan before the bias: the same headers in an ET_EXEC (whose
        // own checks may fail below mmap_min_addr: that is not the point).
        let mut unbiased = LoadPlan::program(&image(ET_EXEC, 0x1000, phs), MMAP_TOP).unwrap();
        unbiased.load_error = None;
        let lowest = phs.iter().map(|p| p.vaddr).min().unwrap();
        for bias in biases {
            let (mut fast, mut each) = (unbiased, unbiased);
            fast.load_bias = bias;
            each.load_bias = bias;
            let got = fast.apply_bias(lowest);
            assert_eq!(got, each.apply_bias_each(), "bias {bias:#x} of {phs:?}");
            if got.is_ok() {
                assert_eq!(fast, each, "bias {bias:#x}");
            }
        }
    }
}

#[test]
fn a_segment_below_mmap_min_addr_is_found_in_any_order() {
    let phs = [
        load(PF_R, 0, 0x400000, 0x200, 0x200),
        load(PF_R | PF_X, 0x1000, 0x1000, 0x100, 0x100),
    ];
    for order in [[phs[0], phs[1]], [phs[1], phs[0]]] {
        let e = late(&image(ET_EXEC, 0, &order));
        assert!(matches!(
            e,
            ElfError::BelowMmapMinAddr { start: 0x1000, .. }
        ));
    }
}

#[test]
fn segments_sharing_a_page_are_accepted() {
    let phs = [
        load(PF_R | PF_X, 0, 0x400000, 0x1800, 0x1800),
        load(PF_R | PF_W, 0x1800, 0x401800, 0x100, 0x100),
    ];
    assert!(LoadPlan::program(&image(ET_EXEC, 0, &phs), MMAP_TOP).is_ok());
}

#[test]
fn no_pt_load_is_rejected() {
    let phs = [other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0)];
    assert_eq!(prog_msg(ET_EXEC, &phs), "no loadable segments");
}

#[test]
fn seventeen_loads_are_too_many() {
    let phs: Vec<Ph> = (0..17)
        .map(|i| load(PF_R, 0, 0x400000 + i * 0x1000, 0x10, 0x10))
        .collect();
    assert_eq!(
        prog_msg(ET_EXEC, &phs),
        "too many loadable segments (more than 16)"
    );
}

#[test]
fn malformed_interp_is_bad_pt_interp() {
    let (mut b, _) = with_interp(typical(0));
    b[0x10a] = b'x';
    assert_eq!(err_msg(&b), "bad PT_INTERP");
    let mut phs = typical(0);
    phs.push(other(PT_INTERP, PF_R, 0x100, 0, 1));
    assert_eq!(prog_msg(ET_DYN, &phs), "bad PT_INTERP");
    phs.pop();
    phs.push(other(PT_INTERP, PF_R, 0x1_0000_0000, 0, 8));
    assert_eq!(prog_msg(ET_DYN, &phs), "bad PT_INTERP");
}

#[test]
fn every_truncation_of_a_valid_image_is_planned_or_refused_cleanly() {
    let (b, phs) = with_interp(typical(0));
    let headers = 64 + 56 * phs.len();
    for n in 0..b.len() {
        let plan = LoadPlan::program(&b[..n], MMAP_TOP);
        // Cut inside the headers or the PT_INTERP path: refused; cut
        // inside segment data: mapped as far as the file goes.
        assert_eq!(plan.is_err(), n < headers || n < 0x10b, "{n}");
    }
}

fn real(path: &str) -> Option<Vec<u8>> {
    let b = std::fs::read(path).ok();
    if b.is_none() {
        eprintln!("skipping: {path} not readable");
    }
    b
}

#[test]
fn host_true_is_a_dynamic_pie() {
    // Debian's coreutils are position-independent and dynamically linked
    // (this test binary is not: the workspace links statically).
    let Some(b) = real("/bin/true") else {
        return;
    };
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert_eq!(p.e_type, ET_DYN);
    assert!(p.phnum > 0 && !p.segments().is_empty());
    let path = p.interp_path(&b).unwrap();
    assert!(path.starts_with(b"/"), "{path:?}");
    assert_eq!(p.load_bias & 0xfff, 0);
    assert!(p.segments().iter().any(|s| s.prot & PROT_EXEC != 0));
    assert!(p.phdr >= p.base() && p.entry > p.base());
    assert!(msg(p.require_static(&b).unwrap_err()).starts_with("dynamic programs are not"));
}

#[test]
fn bin_true_parses() {
    let Some(b) = real("/bin/true") else { return };
    let p = LoadPlan::program(&b, MMAP_TOP).unwrap();
    assert!(p.phnum > 0);
    assert!(p.interp.is_some());
    assert!(p.start_brk > p.end_data);
}

#[test]
fn prot_table_matches_make_prot_for_every_flag_word() {
    for flags in (0..16).chain([0x8000_0005, u32::MAX]) {
        assert_eq!(prot_of(flags), make_prot(flags), "flags {flags:#x}");
    }
    assert_eq!(prot_of(PF_R | PF_X), PROT_READ | PROT_EXEC);
}

/// `plan` parsed from `b` (a program) into `into`, as an exec parses into
/// its plan block.
fn parsed_into(mut into: LoadPlan, b: &[u8]) -> LoadPlan {
    into.prefix_into(b, b.len() as u64, false, (MMAP_TOP, 0))
        .expect("a good image");
    into
}

#[test]
fn a_cleared_plan_parses_as_an_empty_one() {
    // A used plan: more segments, an interpreter, an executable stack,
    // bounds out of order.
    let mut phs = typical(0x40_0000);
    phs.push(load(PF_R | PF_X, 0x5000, 0x60_0000, 0x10, 0x10));
    phs.push(load(PF_R, 0x6000, 0x50_0000, 0x10, 0x10));
    phs[3] = other(PT_GNU_STACK, PF_R | PF_W | PF_X, 0, 0, 0);
    let (used_image, _) = with_interp(phs);
    let mut used = parsed_into(LoadPlan::EMPTY, &used_image);
    assert!(used.interp.is_some() && used.exec_stack);
    assert!(!used.is_clear());
    used.clear();
    assert!(used.is_clear());
    for b in [
        image(ET_EXEC, 0x40_1000, &typical(0x40_0000)),
        image(ET_DYN, 0x1000, &typical(0)),
    ] {
        let want = parsed_into(LoadPlan::EMPTY, &b);
        let got = parsed_into(used, &b);
        assert_eq!(got.segments(), want.segments());
        // Equal but for the segments past the count.
        let segs = want.segs;
        assert_eq!(LoadPlan { segs, ..got }, want);
    }
}
