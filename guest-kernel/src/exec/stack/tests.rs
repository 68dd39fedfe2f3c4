//! Tests of the initial stack: exact addresses and bytes for known input.

use super::*;

/// Memory for [STACK_TOP - SIZE, STACK_TOP) that records each write (and
/// each range it gives to be filled in place, if it gives them).
struct Mem {
    lo: u64,
    bytes: Vec<u8>,
    writes: Vec<(u64, usize)>,
    gives_zeroed: bool,
}

impl Mem {
    fn new(size: u64) -> Mem {
        Mem {
            lo: STACK_TOP - size,
            bytes: vec![0xaa; size as usize],
            writes: Vec::new(),
            gives_zeroed: false,
        }
    }

    fn at(&self, va: u64, len: usize) -> &[u8] {
        let o = (va - self.lo) as usize;
        &self.bytes[o..o + len]
    }

    fn word(&self, va: u64) -> u64 {
        u64::from_le_bytes(self.at(va, 8).try_into().unwrap())
    }

    fn cstr(&self, va: u64) -> &[u8] {
        let o = (va - self.lo) as usize;
        let n = self.bytes[o..].iter().position(|&b| b == 0).unwrap();
        &self.bytes[o..o + n]
    }
}

impl StackSink for Mem {
    fn write(&mut self, va: u64, bytes: &[u8]) -> KResult<()> {
        let o = va.checked_sub(self.lo).ok_or(Errno::EFAULT)? as usize;
        self.bytes
            .get_mut(o..o + bytes.len())
            .ok_or(Errno::EFAULT)?
            .copy_from_slice(bytes);
        self.writes.push((va, bytes.len()));
        Ok(())
    }

    fn zeroed(&mut self, va: u64, len: usize) -> KResult<Option<&mut [u8]>> {
        if !self.gives_zeroed {
            return Ok(None);
        }
        let o = va.checked_sub(self.lo).ok_or(Errno::EFAULT)? as usize;
        let bytes = self.bytes.get_mut(o..o + len).ok_or(Errno::EFAULT)?;
        bytes.fill(0);
        self.writes.push((va, len));
        Ok(Some(bytes))
    }
}

const BLOCK: &[u8] = b"/bin/prog\0prog\0-x\0A=1\0HOME=/r\0";
const RANDOM: [u8; 16] = *b"0123456789abcdef";

fn aux() -> AuxValues {
    AuxValues {
        phdr: 0x400040,
        phent: 56,
        phnum: 9,
        base: 0,
        entry: 0x401000,
        uid: 1000,
        euid: 1001,
        gid: 100,
        egid: 101,
        hwcap: 0x178bfbff,
        hwcap2: 2,
        minsigstksz: DEFAULT_MINSIGSTKSZ,
        random: RANDOM,
        sysinfo_ehdr: 0x7ffff7fc8000,
    }
}

fn build(block: &[u8], argc: u32, envc: u32, mem: u64) -> (StackLayout, Mem) {
    let args = ArgBlock::new(block, argc, envc).unwrap();
    let l = StackLayout::new(&args).unwrap();
    let mut m = Mem::new(mem);
    l.write(&args, &aux(), &mut m).unwrap();
    (l, m)
}

#[test]
fn known_args_land_at_exact_addresses() {
    let args = ArgBlock::new(BLOCK, 2, 2).unwrap();
    let l = StackLayout::new(&args).unwrap();
    assert_eq!(l.execfn, 0x7fff_ffff_efee);
    assert_eq!(l.env_end(), 0x7fff_ffff_efee);
    assert_eq!(
        (l.arg_start, l.arg_end),
        (0x7fff_ffff_efda, 0x7fff_ffff_efe2)
    );
    assert_eq!(l.env_start(), 0x7fff_ffff_efe2);
    assert_eq!(l.platform(), 0x7fff_ffff_efc9);
    assert_eq!(l.random, 0x7fff_ffff_efb9);
    assert_eq!(l.sp, 0x7fff_ffff_ee40);
    assert_eq!(
        (l.argv(), l.envp(), l.auxv),
        (0x7fff_ffff_ee48, 0x7fff_ffff_ee60, 0x7fff_ffff_ee78)
    );
    assert_eq!((l.argc, l.envc), (2, 2));
}

#[test]
fn strings_and_pointers_are_written_in_place() {
    let (l, m) = build(BLOCK, 2, 2, 0x1000);
    assert_eq!(l.sp % 16, 0);
    assert_eq!(m.word(l.sp), 2);
    assert_eq!(m.word(STACK_TOP - 8), 0);
    assert_eq!(m.cstr(m.word(l.argv())), b"prog");
    assert_eq!(m.word(l.argv()), l.arg_start);
    assert_eq!(m.cstr(m.word(l.argv() + 8)), b"-x");
    assert_eq!(m.word(l.argv() + 16), 0);
    assert_eq!(m.word(l.envp()), l.env_start());
    assert_eq!(m.cstr(m.word(l.envp())), b"A=1");
    assert_eq!(m.cstr(m.word(l.envp() + 8)), b"HOME=/r");
    assert_eq!(m.word(l.envp() + 16), 0);
    assert_eq!(m.cstr(l.execfn), b"/bin/prog");
    assert_eq!(m.at(l.arg_start, 20), &BLOCK[10..30]);
}

#[test]
fn auxv_follows_linux_order_and_values() {
    let (l, m) = build(BLOCK, 2, 2, 0x1000);
    let want = [
        (at::MINSIGSTKSZ, 2048),
        (at::HWCAP, 0x178bfbff),
        (at::PAGESZ, 4096),
        (at::CLKTCK, 100),
        (at::PHDR, 0x400040),
        (at::PHENT, 56),
        (at::PHNUM, 9),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, 0x401000),
        (at::UID, 1000),
        (at::EUID, 1001),
        (at::GID, 100),
        (at::EGID, 101),
        (at::SECURE, 0),
        (at::RANDOM, l.random),
        (at::HWCAP2, 2),
        (at::EXECFN, l.execfn),
        (at::PLATFORM, l.platform()),
        (at::NULL, 0),
    ];
    for (i, (k, v)) in want.iter().enumerate() {
        let va = l.auxv + 16 * i as u64;
        assert_eq!((m.word(va), m.word(va + 8)), (*k, *v), "entry {i}");
    }
    assert!(l.auxv + 16 * want.len() as u64 <= l.random);
    assert_eq!(m.at(l.random, 16), &RANDOM);
    assert_eq!(m.at(l.platform(), 7), b"x86_64\0");
    assert_eq!(m.cstr(l.execfn), b"/bin/prog");
}

#[test]
fn strings_are_written_as_few_large_chunks() {
    let (l, m) = build(BLOCK, 2, 2, 0x1000);
    assert!(m.writes.contains(&(l.arg_start, 20)));
    // argc up to the strings (the platform string and the alignment
    // after it included): one chunk.
    let below = l.arg_start - l.sp;
    assert!(m.writes.contains(&(l.sp, below as usize)));
    assert!(m.writes.contains(&(l.execfn, 10 + 8)));
    assert_eq!(m.writes.len(), 3);
}

#[test]
fn an_exec_file_name_of_any_length_ends_below_a_zero_word() {
    for len in [1usize, 247, 248, 249, 4000] {
        let mut block = vec![b'n'; len];
        block.extend_from_slice(b"\0prog\0");
        let (l, m) = build(&block, 1, 0, 0x4000);
        assert_eq!(m.word(STACK_TOP - 8), 0, "name of {len} bytes");
        assert_eq!(m.cstr(l.execfn), &block[..len]);
        assert_eq!(l.execfn + len as u64 + 1, STACK_TOP - 8);
    }
}

#[test]
fn long_table_is_written_in_contiguous_chunks() {
    let mut block = b"/p\0".to_vec();
    for i in 0..300 {
        block.extend_from_slice(format!("arg{i}\0").as_bytes());
    }
    let (l, m) = build(&block, 300, 0, 0x4000);
    assert_eq!(m.word(l.sp), 300);
    for i in 0..300u64 {
        assert_eq!(
            m.cstr(m.word(l.argv() + 8 * i)),
            format!("arg{i}").as_bytes()
        );
    }
    assert_eq!(m.word(l.envp()), 0);
    assert_eq!(m.word(l.auxv + 15 * 16 + 8), l.random);
    let table: Vec<_> = m.writes.iter().filter(|w| w.0 < l.random).collect();
    for pair in table.windows(2) {
        assert_eq!(pair[0].0 + pair[0].1 as u64, pair[1].0);
    }
}

#[test]
fn empty_argv_gets_an_empty_argv0_like_linux() {
    let (l, m) = build(b"/bin/prog\0A=1\0", 0, 1, 0x1000);
    assert_eq!(l.argc, 1);
    assert_eq!(m.word(l.sp), 1);
    assert_eq!(m.word(l.argv()), l.arg_start);
    assert_eq!(m.cstr(l.arg_start), b"");
    assert_eq!(l.arg_end, l.arg_start + 1);
    assert_eq!(m.word(l.argv() + 8), 0);
    assert_eq!(m.cstr(m.word(l.envp())), b"A=1");
}

#[test]
fn stack_vma_is_128k_below_the_strings_page() {
    let l = StackLayout::new(&ArgBlock::new(BLOCK, 2, 2).unwrap()).unwrap();
    assert_eq!((l.vma_start, l.vma_end), (0x7fff_fffd_e000, STACK_TOP));
}

#[test]
fn stack_vma_reaches_down_to_a_deep_table() {
    let mut block = b"/p\0".to_vec();
    block.resize(3 + 100_000, 0);
    let l = StackLayout::new(&ArgBlock::new(&block, 0, 100_000).unwrap()).unwrap();
    assert_eq!(l.vma_start, l.sp & !0xfff);
    assert!(l.vma_start < (l.arg_start & !0xfff) - STACK_EXPAND);
}

#[test]
fn string_over_max_arg_strlen_is_e2big() {
    let mut block = b"/p\0".to_vec();
    block.resize(3 + MAX_ARG_STRLEN as usize - 1, b'x');
    block.push(0);
    assert!(ArgBlock::new(&block, 1, 0).is_ok());
    block.insert(3, b'x');
    assert_eq!(ArgBlock::new(&block, 1, 0).unwrap_err(), Errno::E2BIG);
}

#[test]
fn strings_over_a_quarter_of_the_stack_limit_are_e2big() {
    let mut block = b"/p\0".to_vec();
    let one = vec![b'e'; 100_000];
    for _ in 0..21 {
        block.extend_from_slice(&one);
        block.push(0);
    }
    let args = ArgBlock::new(&block, 0, 21).unwrap();
    assert_eq!(StackLayout::new(&args).unwrap_err(), Errno::E2BIG);
    let args = ArgBlock::new(&block[..3 + 20 * 100_001], 0, 20).unwrap();
    assert!(StackLayout::new(&args).is_ok());
}

#[test]
fn malformed_block_is_einval() {
    assert_eq!(ArgBlock::new(b"/p\0a\0", 2, 0).unwrap_err(), Errno::EINVAL);
    assert_eq!(
        ArgBlock::new(b"/p\0a\0junk", 1, 0).unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(ArgBlock::new(b"", 0, 0).unwrap_err(), Errno::EINVAL);
}

#[test]
fn sink_errors_propagate() {
    let args = ArgBlock::new(BLOCK, 2, 2).unwrap();
    let l = StackLayout::new(&args).unwrap();
    let mut m = Mem::new(0x100);
    assert_eq!(l.write(&args, &aux(), &mut m), Err(Errno::EFAULT));
}

#[test]
fn nul_pos_finds_the_first_nul_at_every_offset() {
    for n in 0..40 {
        let mut s = vec![b'a'; 40];
        s[n] = 0;
        s.push(0);
        assert_eq!(nul_pos(&s), Some(n));
    }
    assert_eq!(nul_pos(&[0x80, 0x81, 1, 2, 3, 4, 5, 6, 7]), None);
}

#[test]
fn nul_pos_is_exact_when_bytes_after_the_nul_look_like_nuls() {
    // 0x01 after a NUL borrows in the word trick: the lowest mark must win.
    for n in 0..8 {
        let mut s = vec![0x01u8; 16];
        s[..n].fill(b'z');
        s[n] = 0;
        assert_eq!(nul_pos(&s), Some(n));
        s[n + 1..].fill(0);
        assert_eq!(nul_pos(&s), Some(n));
    }
}

#[test]
fn wrong_environment_count_is_einval_when_writing() {
    let mut m = Mem::new(0x1000);
    for envc in [1, 3] {
        let args = ArgBlock::new(BLOCK, 2, envc).unwrap();
        let l = StackLayout::new(&args).unwrap();
        assert_eq!(l.write(&args, &aux(), &mut m), Err(Errno::EINVAL));
    }
    assert_eq!(ArgBlock::new(b"/p\0a\0", 1, 1).unwrap_err(), Errno::EINVAL);
    assert_eq!(ArgBlock::new(b"/p\0a\0e", 1, 1).unwrap_err(), Errno::EINVAL);
    let mut block = b"/p\0".to_vec();
    block.resize(3 + MAX_ARG_STRLEN as usize, b'e');
    block.push(0);
    let args = ArgBlock::new(&block, 0, 1).unwrap();
    let l = StackLayout::new(&args).unwrap();
    let mut m = Mem::new(STACK_TOP - l.sp + 64);
    assert_eq!(l.write(&args, &aux(), &mut m), Err(Errno::E2BIG));
}

/// The host's length table for `BLOCK`.
fn lens(strings: &[&[u8]]) -> Vec<u8> {
    strings
        .iter()
        .flat_map(|s| (s.len() as u32 + 1).to_le_bytes())
        .collect()
}

#[test]
fn length_table_gives_the_same_stack_as_scanning() {
    let table = lens(&[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"]);
    let mut ptrs = ArgTable::new();
    let with = ArgBlock::with_lengths(BLOCK, &table, 2, 2, STACK_TOP, &mut ptrs).unwrap();
    let (scanned, scanned_mem) = build(BLOCK, 2, 2, 0x4000);
    let l = StackLayout::new(&with).unwrap();
    assert_eq!(l, scanned);
    let mut m = Mem::new(0x4000);
    l.write(&with, &aux(), &mut m).unwrap();
    assert_eq!(m.bytes, scanned_mem.bytes);
}

#[test]
fn a_stack_with_its_pointer_table_is_filled_in_place_where_the_sink_gives_zeroed_bytes() {
    // Two arguments and two variables; an empty argv (given an empty
    // argv[0]) and one variable.
    let full: &[&[u8]] = &[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"];
    let no_argv: &[&[u8]] = &[b"/bin/prog", b"A=1"];
    let cases = [
        (BLOCK, full, 2, 2),
        (&b"/bin/prog\0A=1\0"[..], no_argv, 0, 1),
    ];
    for (block, strings, argc, envc) in cases {
        let table = lens(strings);
        let mut ptrs = ArgTable::new();
        let with = ArgBlock::with_lengths(block, &table, argc, envc, STACK_TOP, &mut ptrs).unwrap();
        let (scanned, scanned_mem) = build(block, argc, envc, 0x4000);
        let l = StackLayout::new(&with).unwrap();
        assert_eq!(l, scanned);
        for gives_zeroed in [true, false] {
            let mut m = Mem::new(0x4000);
            m.gives_zeroed = gives_zeroed;
            l.write(&with, &aux(), &mut m).unwrap();
            if gives_zeroed {
                assert_eq!(m.writes, [(l.sp, (STACK_TOP - l.sp) as usize)]);
            }
            assert_eq!(
                m.bytes, scanned_mem.bytes,
                "the same bytes, every one written"
            );
        }
    }
}

/// The pointer table of a short block (`/p a`) built in `used`, and the
/// same built in a new table, to compare.
fn short_table_in(used: &mut ArgTable) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let short: &[u8] = b"/p\0a\0";
    let short_lens = lens(&[b"/p", b"a"]);
    let built = |t: &mut ArgTable| {
        let b = ArgBlock::with_lengths(short, &short_lens, 1, 0, STACK_TOP, t).unwrap();
        b.table.map(<[u8]>::to_vec)
    };
    (built(used), built(&mut ArgTable::new()))
}

#[test]
fn an_arg_table_used_again_holds_only_the_new_pointers() {
    let table = lens(&[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"]);
    let mut reused = ArgTable::new();
    ArgBlock::with_lengths(BLOCK, &table, 2, 2, STACK_TOP, &mut reused).unwrap();
    let (again, want) = short_table_in(&mut reused);
    assert_eq!(again, want, "the NULL words are zero again");
}

#[test]
fn a_block_rebuilt_from_its_checked_shape_gives_the_same_stack() {
    let table = lens(&[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"]);
    let mut ptrs = ArgTable::new();
    let with = ArgBlock::with_lengths(BLOCK, &table, 2, 2, STACK_TOP, &mut ptrs).unwrap();
    let again = ArgBlock::checked(BLOCK, with.table.unwrap(), 2, 2, with.shape()).unwrap();
    let l = StackLayout::new(&with).unwrap();
    assert_eq!(StackLayout::new(&again).unwrap(), l);
    let (mut a, mut b) = (Mem::new(0x4000), Mem::new(0x4000));
    l.write(&with, &aux(), &mut a).unwrap();
    l.write(&again, &aux(), &mut b).unwrap();
    assert_eq!(a.bytes, b.bytes);
    // A shape that does not fit the block is refused, never sliced.
    let short_table = lens(&[b"/p"]);
    let mut short_ptrs = ArgTable::new();
    let short =
        ArgBlock::with_lengths(b"/p\0", &short_table, 0, 0, STACK_TOP, &mut short_ptrs).unwrap();
    let ptrs = with.table.unwrap();
    assert_eq!(
        ArgBlock::checked(b"/p", ptrs, 2, 2, with.shape()).unwrap_err(),
        Errno::EINVAL
    );
    let mismatched = ArgBlock::checked(BLOCK, short.table.unwrap(), 2, 2, with.shape()).unwrap();
    assert_eq!(
        l.write(&mismatched, &aux(), &mut Mem::new(0x4000)),
        Err(Errno::EINVAL)
    );
    assert!(ArgBlock::checked(BLOCK, ptrs, 2, 2, short.shape()).is_ok());
}

#[test]
fn length_table_that_disagrees_with_the_block_is_refused() {
    let check = |t: &[u8], argc, envc| {
        ArgBlock::with_lengths(BLOCK, t, argc, envc, STACK_TOP, &mut ArgTable::new()).map(|_| ())
    };
    let good = lens(&[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"]);
    assert!(check(&good, 2, 2).is_ok());
    // One length too long: the NUL is not where it says.
    let mut shifted = good.clone();
    shifted[4] += 1;
    assert_eq!(check(&shifted, 2, 2).unwrap_err(), Errno::EINVAL);
    // A zero length, a table of the wrong size, lengths short of the block.
    let mut zero = good.clone();
    zero[8] = 0;
    assert!(check(&zero, 2, 2).is_err());
    assert!(check(&good[..16], 2, 2).is_err());
    assert!(check(&good[..16], 2, 1).is_err());
    // A length past the block.
    let mut huge = good;
    huge[16..20].copy_from_slice(&(u32::MAX).to_le_bytes());
    assert!(check(&huge, 2, 2).is_err());
}

#[test]
fn many_strings_by_length_give_the_same_stack_as_scanning() {
    // 150 environment strings: the pointer table fills the 512-byte buffer
    // more than twice, and an odd count leaves a single length after the
    // pairs the check reads.
    for envc in [149u32, 150] {
        let mut strings: Vec<Vec<u8>> = vec![b"/bin/prog".to_vec(), b"prog".to_vec()];
        for i in 0..envc {
            strings.push(format!("VAR{i}={}", "x".repeat(i as usize % 23)).into_bytes());
        }
        let refs: Vec<&[u8]> = strings.iter().map(|s| s.as_slice()).collect();
        let table = lens(&refs);
        let block: Vec<u8> = strings
            .iter()
            .flat_map(|s| s.iter().copied().chain([0]))
            .collect();
        let mut ptrs = ArgTable::new();
        let with = ArgBlock::with_lengths(&block, &table, 1, envc, STACK_TOP, &mut ptrs).unwrap();
        let (scanned, scanned_mem) = build(&block, 1, envc, 0x8000);
        let l = StackLayout::new(&with).unwrap();
        assert_eq!(l, scanned);
        let mut m = Mem::new(0x8000);
        l.write(&with, &aux(), &mut m).unwrap();
        assert_eq!(m.bytes, scanned_mem.bytes);
    }
}

#[test]
fn argv_and_envp_walked_as_one_give_the_same_stack_as_scanning_at_every_split() {
    // The pointers of both lists are stored in a row, then envp's move up
    // past argv's NULL: every count of each, across the four-length turns.
    for argc in 0..7u32 {
        for envc in 0..7u32 {
            let mut strings: Vec<Vec<u8>> = vec![b"/bin/prog".to_vec()];
            for i in 0..argc {
                strings.push(format!("arg{i}{}", "y".repeat(i as usize)).into_bytes());
            }
            for i in 0..envc {
                strings.push(format!("V{i}={}", "x".repeat(i as usize % 3)).into_bytes());
            }
            let refs: Vec<&[u8]> = strings.iter().map(|s| s.as_slice()).collect();
            let table = lens(&refs);
            let block: Vec<u8> = strings
                .iter()
                .flat_map(|s| s.iter().copied().chain([0]))
                .collect();
            let mut ptrs = ArgTable::new();
            let with =
                ArgBlock::with_lengths(&block, &table, argc, envc, STACK_TOP, &mut ptrs).unwrap();
            let (scanned, scanned_mem) = build(&block, argc, envc, 0x4000);
            let l = StackLayout::new(&with).unwrap();
            assert_eq!(l, scanned, "argc {argc} envc {envc}");
            let mut m = Mem::new(0x4000);
            l.write(&with, &aux(), &mut m).unwrap();
            assert_eq!(m.bytes, scanned_mem.bytes, "argc {argc} envc {envc}");
        }
    }
}

#[test]
fn the_fast_length_check_agrees_with_the_string_by_string_one() {
    // The fast check, with the pointers it stores checked when it passes,
    // for every split of the strings into argv and envp. The strings
    // start at 1 (after the exec file name, here a NUL); it passes only
    // when the last string ends the block.
    let fast = |buf: &[u8], t: &[u8], argc: usize| {
        let buf = [&[0], buf].concat();
        let n = t.len() / 4;
        let mut out = vec![0u8; 8 * (n + 3)];
        let r = check_and_point(&buf, t, argc, 0x7000, &mut out);
        if let Some(argv_end) = r {
            let mut va = 0x7000u64;
            let envp = 8 * argc.max(1) + 8;
            for (i, l) in t.chunks_exact(4).enumerate() {
                let at = if i < argc {
                    8 * i
                } else {
                    envp + 8 * (i - argc)
                };
                assert_eq!(out[at..at + 8], va.to_le_bytes());
                va += u64::from(u32::from_le_bytes(l.try_into().unwrap()));
                if i + 1 == argc {
                    assert_eq!(va - 0x7000 + 1, argv_end as u64);
                }
            }
            // The NULL after argv is left alone.
            assert_eq!(out[envp - 8..envp], [0; 8]);
        }
        r.is_some()
    };
    let good = lens(&[b"/bin/prog", b"prog", b"-x", b"A=1", b"HOME=/r"]);
    let big = (MAX_ARG_STRLEN as u32 + 1).to_le_bytes();
    let values: [[u8; 4]; 6] = [
        0u32.to_le_bytes(),
        1u32.to_le_bytes(),
        2u32.to_le_bytes(),
        big,
        u32::MAX.to_le_bytes(),
        31u32.to_le_bytes(),
    ];
    // Every table of up to five entries (a turn of four, then one): the
    // good one with any one or two entries replaced.
    for i in 0..5 {
        for j in i..5 {
            for vi in &values {
                for vj in &values {
                    let mut t = good.clone();
                    t[4 * i..4 * i + 4].copy_from_slice(vi);
                    t[4 * j..4 * j + 4].copy_from_slice(vj);
                    for n in 0..=5 {
                        let t = &t[..4 * n];
                        let exact = check_lengths_exact(BLOCK, t, 0) == Ok(BLOCK.len());
                        for argc in 0..=n {
                            assert_eq!(fast(BLOCK, t, argc), exact, "table {t:?} argc {argc}");
                        }
                    }
                }
            }
        }
    }
    for argc in 0..=5 {
        assert!(fast(BLOCK, &good, argc));
    }
    // A string longer than the limit in a block long enough to hold it.
    let mut long = vec![b'a'; MAX_ARG_STRLEN as usize + 8];
    long[9] = 0;
    let t = [10u32.to_le_bytes(), big].concat();
    assert!(!fast(&long, &t, 1));
}

#[test]
fn with_a_vdso_the_auxv_starts_with_sysinfo_ehdr_and_sp_moves_down_one_pair() {
    let block = b"/p\0p\0E=1\0";
    let args = ArgBlock::new(block, 1, 1).unwrap();
    let plain = StackLayout::new(&args).unwrap();
    let l = StackLayout::new_below_with(&args, STACK_TOP, true).unwrap();
    assert_eq!(l.sp, plain.sp - 16);
    let mut mem = Mem::new(0x2000);
    l.write(&args, &aux(), &mut mem).unwrap();
    assert_eq!(mem.word(l.auxv), at::SYSINFO_EHDR);
    assert_eq!(mem.word(l.auxv + 8), 0x7ffff7fc8000);
    assert_eq!(mem.word(l.auxv + 16), at::MINSIGSTKSZ);
}

#[test]
fn an_arg_table_whose_heap_was_released_builds_a_small_table_again() {
    // More pointers than the inline bytes hold: the table is on the heap.
    let many: Vec<Vec<u8>> = (0..200).map(|i| format!("V{i}=x").into_bytes()).collect();
    let mut strs: Vec<&[u8]> = vec![b"/bin/prog", b"prog"];
    strs.extend(many.iter().map(|v| &v[..]));
    let mut block = Vec::new();
    for s in &strs {
        block.extend_from_slice(s);
        block.push(0);
    }
    let mut table = ArgTable::new();
    let envc = strs.len() as u32 - 2;
    let big = ArgBlock::with_lengths(&block, &lens(&strs), 1, envc, STACK_TOP, &mut table)
        .unwrap()
        .table
        .unwrap()
        .len();
    assert!(big > ARG_TABLE_INLINE);
    table.release_heap();
    let (again, want) = short_table_in(&mut table);
    assert_eq!(again, want);
}
