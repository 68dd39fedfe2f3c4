//! The initial user stack, as Linux's `setup_arg_pages` and
//! `create_elf_tables` build it with randomisation off.
//!
//! From the top (`STACK_TOP` = 0x7ffffffff000) down:
//!
//! ```text
//! STACK_TOP - 8     8 zero bytes (the end marker)
//! execfn            the exec file name, NUL terminated   (AT_EXECFN)
//! env_start..       envp strings, envp[0] lowest
//! arg_start..       argv strings, argv[0] lowest         (mm->arg_start)
//!                   align down to 16
//! platform          "x86_64\0"                           (AT_PLATFORM)
//! random            16 random bytes                      (AT_RANDOM)
//!                   unused gap up to 15 bytes
//! auxv              (type, value) pairs, then AT_NULL
//! envp              envc pointers, NULL
//! argv              argc pointers, NULL
//! sp                argc                                 (16-byte aligned)
//! ```
//!
//! [`StackLayout::new`] computes every address first (pure arithmetic on the
//! string lengths and counts); [`StackLayout::write`] then writes the bytes
//! through a [`StackSink`] in a few large chunks (the strings in one piece,
//! the pointer table in buffer-sized pieces), so the kernel can turn each
//! into one copy. The argument strings arrive as an [`ArgBlock`]: one buffer
//! holding the exec file name, then argv, then envp, each NUL terminated,
//! as the VMM passes them (`BootInfo::args_phys`). Argv and envp lie in that
//! buffer in the same order as on the stack, so they are copied as one chunk.

use super::elf::LoadPlan;
use crate::errno::{Errno, KResult};
use alloc::vec::Vec;
use vmrun_contract::layout::{PAGE_SIZE, TASK_SIZE};

/// Top of the user stack (Linux's `STACK_TOP` without randomisation).
pub const STACK_TOP: u64 = TASK_SIZE;
/// Longest single argument or environment string, with its NUL.
pub const MAX_ARG_STRLEN: u64 = 32 * PAGE_SIZE;
/// The stack size limit Linux programs start with (`RLIMIT_STACK`, 8 MiB).
pub const STACK_RLIMIT: u64 = 8 << 20;
/// Room for strings plus argv/envp pointers: a quarter of the stack limit.
pub const ARG_LIMIT: u64 = STACK_RLIMIT / 4;
/// Extra stack `setup_arg_pages` maps below the strings.
pub const STACK_EXPAND: u64 = 128 << 10;
/// The `AT_PLATFORM` string, with its NUL.
pub const PLATFORM: &[u8] = b"x86_64\0";
/// `AT_MINSIGSTKSZ` default: the classic MINSIGSTKSZ, which covers a signal
/// frame with fxsave state (the only FPU state this kernel saves).
pub const DEFAULT_MINSIGSTKSZ: u64 = 2048;
/// `AT_CLKTCK`: clock ticks per second (`USER_HZ`).
pub const CLKTCK: u64 = 100;

/// Auxiliary vector entry types (include/uapi/linux/auxvec.h).
pub mod at {
    /// End of the vector.
    pub const NULL: u64 = 0;
    /// Program headers of the program.
    pub const PHDR: u64 = 3;
    /// Size of one program header.
    pub const PHENT: u64 = 4;
    /// Number of program headers.
    pub const PHNUM: u64 = 5;
    /// Page size.
    pub const PAGESZ: u64 = 6;
    /// Interpreter base address.
    pub const BASE: u64 = 7;
    /// Flags.
    pub const FLAGS: u64 = 8;
    /// Program entry point.
    pub const ENTRY: u64 = 9;
    /// Real uid.
    pub const UID: u64 = 11;
    /// Effective uid.
    pub const EUID: u64 = 12;
    /// Real gid.
    pub const GID: u64 = 13;
    /// Effective gid.
    pub const EGID: u64 = 14;
    /// Platform string address.
    pub const PLATFORM: u64 = 15;
    /// CPUID.1:EDX feature bits.
    pub const HWCAP: u64 = 16;
    /// Clock ticks per second.
    pub const CLKTCK: u64 = 17;
    /// Secure mode (setuid).
    pub const SECURE: u64 = 23;
    /// Address of 16 random bytes.
    pub const RANDOM: u64 = 25;
    /// More feature bits (x86: RING3MWAIT, FSGSBASE).
    pub const HWCAP2: u64 = 26;
    /// Address of the exec file name.
    pub const EXECFN: u64 = 31;
    /// The vDSO's ELF header.
    pub const SYSINFO_EHDR: u64 = 33;
    /// Minimal signal stack size.
    pub const MINSIGSTKSZ: u64 = 51;
}

/// Auxv entries including AT_NULL.
const AUXV_PAIRS: u64 = 20;

/// The values the auxiliary vector reports. Addresses of the strings and
/// random bytes come from the layout, not from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuxValues {
    /// `AT_PHDR`.
    pub phdr: u64,
    /// `AT_PHENT`.
    pub phent: u64,
    /// `AT_PHNUM`.
    pub phnum: u64,
    /// `AT_BASE`: the interpreter's load address, 0 without one.
    pub base: u64,
    /// `AT_ENTRY`: the program's (not the interpreter's) entry point.
    pub entry: u64,
    /// `AT_UID`.
    pub uid: u64,
    /// `AT_EUID`.
    pub euid: u64,
    /// `AT_GID`.
    pub gid: u64,
    /// `AT_EGID`.
    pub egid: u64,
    /// `AT_HWCAP`: CPUID.1:EDX.
    pub hwcap: u64,
    /// `AT_HWCAP2` (x86 Linux always emits it, even when 0).
    pub hwcap2: u64,
    /// `AT_MINSIGSTKSZ`.
    pub minsigstksz: u64,
    /// The bytes `AT_RANDOM` points at.
    pub random: [u8; 16],
    /// `AT_SYSINFO_EHDR`: the vDSO's address (used when the layout was
    /// made with a vDSO).
    pub sysinfo_ehdr: u64,
}

impl AuxValues {
    /// Values for `plan`'s program with the interpreter at `base` (0 if
    /// none): ids 0, hwcaps 0, [`DEFAULT_MINSIGSTKSZ`]; set the rest after.
    #[inline]
    pub fn for_program(plan: &LoadPlan, base: u64, random: [u8; 16]) -> AuxValues {
        AuxValues {
            phdr: plan.phdr,
            phent: plan.phent,
            phnum: plan.phnum,
            base,
            entry: plan.entry,
            minsigstksz: DEFAULT_MINSIGSTKSZ,
            random,
            ..AuxValues::default()
        }
    }
}

/// Where the stack builder writes: user virtual addresses in the new
/// stack's VMA. The kernel implements it over the stack's frames.
pub trait StackSink {
    /// Write `bytes` at user address `va`.
    fn write(&mut self, va: u64, bytes: &[u8]) -> KResult<()>;

    /// The `len` bytes at user address `va`, all zero, to be filled in
    /// place instead of written (a page the sink has just mapped); `None`
    /// where it has none to give, and then the bytes go through
    /// [`Self::write`].
    fn zeroed(&mut self, va: u64, len: usize) -> KResult<Option<&mut [u8]>> {
        let _ = (va, len);
        Ok(None)
    }
}

/// Position of the first NUL in `s`, eight bytes at a time.
fn nul_pos(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut base = 0;
    for c in s.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let w = u64::from_le_bytes(a);
        let marks = w.wrapping_sub(LO) & !w & HI;
        if marks != 0 {
            return Some(base + first_marked_byte(marks));
        }
        base += 8;
    }
    s[base..].iter().position(|&b| b == 0).map(|p| base + p)
}

/// Index of the lowest byte whose bit 7 is set in `marks` (a NUL mask from
/// `nul_pos`, where the lowest mark is exact): a multiply instead of a byte
/// loop or `tzcnt`.
fn first_marked_byte(marks: u64) -> usize {
    let lowest = (marks & marks.wrapping_neg()) >> 7; // 1 << (8 * k)
    (lowest.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize
}

/// Length with the NUL of the string at `s`: E2BIG if longer than
/// [`MAX_ARG_STRLEN`], EINVAL if unterminated.
fn str_len(s: &[u8]) -> KResult<usize> {
    let window = &s[..s.len().min(MAX_ARG_STRLEN as usize)];
    match nul_pos(window) {
        Some(p) => Ok(p + 1),
        None if s.len() > window.len() => Err(Errno::E2BIG),
        None => Err(Errno::EINVAL),
    }
}

/// Each 32-bit half of a word of two lengths less one
/// ([`point_quads`] reads and decrements two lengths as one word): a
/// length of 0 wraps round, so bit 17 or above is set in either half by a
/// length that is 0 or above [`MAX_ARG_STRLEN`]. A 0 in the low half
/// borrows from the high one, but is caught itself.
const LENGTH_ONES: u64 = 1 << 32 | 1;
/// The bits of OR-ed lengths less one that only a bad length sets (see
/// [`LENGTH_ONES`]).
const LENGTH_BAD: u64 = !((MAX_ARG_STRLEN - 1) << 32 | (MAX_ARG_STRLEN - 1));

/// Check the argv and envp strings of a block against their lengths, and
/// store a pointer to each. `strings` is the block from the exec file
/// name's NUL on (the strings follow it); `lens` gives their lengths (LE
/// u32s, NUL included), argv's `argc` first; `out` is the stack's words
/// after argc: argv's pointers go to its first slots, envp's after the
/// NULL that ends argv (one slot on for an empty argv, whose empty
/// argv[0] comes first), and the first string's pointer is `va`. Each
/// string must end with a NUL where its length says, none may be empty
/// or longer than [`MAX_ARG_STRLEN`], and the last must end the block.
/// Returns where argv's strings end (an index of `strings`); None if the
/// table is bad (the caller finds its first bad string with
/// [`check_lengths_exact`]). No scan: one load of each string's last
/// byte. The pointers are stored as the lengths are read, so that the
/// stack's pointer arrays need no pass of their own, each list's straight
/// to its slots. The loops only gather (the lengths less one OR-ed
/// together, the last bytes OR-ed together) and test once after them.
/// Whole fours of lengths go through [`point_quads`], called only for a
/// list that has some; the last few, one at a time, here (inlined: a
/// call's set-up costs more than a short list). None as well for a block
/// of 4 GiB or more (positions then fit in 32 bits, so the sums cannot
/// wrap).
#[inline]
fn check_and_point(
    strings: &[u8],
    lens: &[u8],
    argc: usize,
    va: u64,
    out: &mut [u8],
) -> Option<usize> {
    let len = u32::try_from(strings.len()).ok()?;
    let (argv_lens, envp_lens) = lens.split_at_checked(4 * argc)?;
    let (argv_slots, envp_slots) = out.split_at_mut_checked(8 * argc.max(1) + 8)?;
    let mut walk = Walk {
        buf: strings,
        len: u64::from(len),
        idx: 0,
        next: va,
        bad: 0,
    };
    let argv_end = walk.list(argv_lens, argv_slots)?;
    let end = walk.list(envp_lens, envp_slots)?;
    (walk.bad == 0 && end == strings.len()).then_some(argv_end)
}

/// Where [`check_and_point`]'s walk stands.
struct Walk<'b> {
    buf: &'b [u8],
    /// `buf`'s length (below 2^32).
    len: u64,
    /// Index of the last byte of the string before the next (below 2^32,
    /// as `len` is); the next string starts at user address `next + idx`.
    idx: u64,
    /// The user address of `buf`'s second byte (the first string's).
    next: u64,
    /// Non-zero: a string is bad. The bits of [`LENGTH_BAD`] a length
    /// set (less one), a last byte that was not a NUL, or what
    /// [`point_quads`] found.
    bad: u64,
}

impl Walk<'_> {
    /// Walk the strings whose lengths are `lens`, storing their pointers
    /// in `out`: returns where they end (None: a string ends past the
    /// block, or `out` has fewer slots than `lens` has lengths). Whole
    /// fours first, then the last few one at a time.
    #[inline(always)]
    fn list(&mut self, lens: &[u8], out: &mut [u8]) -> Option<usize> {
        let (lens, _) = lens.as_chunks::<4>();
        let (slots, _) = out.as_chunks_mut::<8>();
        // One slot a length: the fours of both, and what is left of both,
        // then come out the same length (no bound to take the lesser of).
        let slots = slots.get_mut(..lens.len())?;
        let (quads, ones) = lens.as_chunks::<4>();
        let (quad_slots, one_slots) = slots.as_chunks_mut::<4>();
        if !quads.is_empty() {
            let (end, bad) = point_quads(self.buf, quads, quad_slots, self.idx as u32, self.next);
            (self.idx, self.bad) = (end, self.bad | bad);
        }
        for (l, o) in ones.iter().zip(one_slots) {
            let n = u32::from_le_bytes(*l);
            *o = self.next.wrapping_add(self.idx).to_le_bytes();
            let over = u64::from(n.wrapping_sub(1)) & LENGTH_BAD;
            let end = self.idx + u64::from(n);
            if end >= self.len {
                return None;
            }
            self.bad |= over | u64::from(self.buf[end as usize]);
            self.idx = end;
        }
        Some(self.idx as usize + 1)
    }
}

/// [`check_and_point`]'s walk of whole fours of lengths, from the string
/// after the one whose last byte is at `idx`, whose pointer is `next +
/// idx`: stores the pointers in `out` (one quad of pointers for each quad
/// of lengths, as far as both go) and returns the index of the last
/// string's last byte, and non-zero if a string is bad (a length, a last
/// byte, or an end past the block; the index is then where the walk
/// stopped). Not inlined: in its own frame the loop keeps every value in
/// a register.
#[inline(never)]
fn point_quads(
    buf: &[u8],
    quads: &[[[u8; 4]; 4]],
    out: &mut [[[u8; 8]; 4]],
    idx: u32,
    next: u64,
) -> (u64, u64) {
    // Positions below 2^32: the sums cannot wrap, and the compiler sees
    // that the quad's first three strings end inside the block when its
    // fourth does (one bounds check a quad).
    let Ok(len) = u32::try_from(buf.len()) else {
        return (idx.into(), 1);
    };
    let len = u64::from(len);
    let mut idx = u64::from(idx);
    // The lengths less one of the first and second word of each quad,
    // OR-ed together apart (two chains, not one).
    let (mut over_a, mut over_b) = (0u64, 0u64);
    // Non-zero: a string's last byte was not its NUL.
    let mut last = 0u8;
    for (l, o) in quads.iter().zip(out) {
        let l = l.as_flattened();
        let a = u64::from_le_bytes(l[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(l[8..].try_into().unwrap_or_default());
        over_a |= a.wrapping_sub(LENGTH_ONES);
        over_b |= b.wrapping_sub(LENGTH_ONES);
        let s1 = idx + (a & 0xffff_ffff);
        let s2 = s1 + (a >> 32);
        let s3 = s2 + (b & 0xffff_ffff);
        let end = s3 + (b >> 32);
        *o = [idx, s1, s2, s3].map(|s| next.wrapping_add(s).to_le_bytes());
        if end >= len {
            return (idx, 1);
        }
        last |= buf[s1 as usize] | buf[s2 as usize] | buf[s3 as usize] | buf[end as usize];
        idx = end;
    }
    (idx, (over_a | over_b) & LENGTH_BAD | u64::from(last))
}

/// [`check_and_point`] one string at a time, stopping at the first bad one:
/// the errno a table that fails the fast check gets.
fn check_lengths_exact(buf: &[u8], lens: &[u8], start: usize) -> KResult<usize> {
    let mut end = start;
    for l in lens.chunks_exact(4) {
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        // One compare for both bounds: 0 wraps to the largest value.
        if len.wrapping_sub(1) >= MAX_ARG_STRLEN as usize {
            return Err(if len == 0 {
                Errno::EINVAL
            } else {
                Errno::E2BIG
            });
        }
        // No overflow: each length is at most MAX_ARG_STRLEN.
        end += len;
        if buf.get(end - 1) != Some(&0) {
            return Err(Errno::EINVAL);
        }
    }
    Ok(end)
}

/// Skip `n` strings of `s` from `pos`; return the new position.
fn skip_strings(s: &[u8], mut pos: usize, n: u64) -> KResult<usize> {
    for _ in 0..n {
        pos += str_len(&s[pos..])?;
    }
    Ok(pos)
}

/// Bytes of pointer table an [`ArgTable`] holds in place: argc and the
/// pointers of a program with a hundred or so strings (as many as let an
/// exec's whole plan stay a small heap block, 2 KiB).
pub const ARG_TABLE_INLINE: usize = 960;

/// Where [`ArgBlock::with_lengths`] builds the stack's argc and pointer
/// arrays: in place when they are small (most programs), so that an exec
/// allocates no heap block for them; on the heap when not.
pub struct ArgTable {
    inline: [u8; ARG_TABLE_INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl ArgTable {
    /// An empty table.
    pub const fn new() -> ArgTable {
        ArgTable {
            inline: [0; ARG_TABLE_INLINE],
            len: 0,
            heap: Vec::new(),
        }
    }

    /// The table made `len` bytes long (ENOMEM if the heap cannot hold
    /// it), and whether its bytes may be other than zero: a new table's
    /// are zero, a table used before keeps the last one's bytes (not
    /// zeroed again: the caller writes what is not a pointer).
    fn sized(&mut self, len: usize) -> KResult<(&mut [u8], bool)> {
        self.heap.clear();
        if let Some(t) = self.inline.get_mut(..len) {
            let used = core::mem::replace(&mut self.len, len) != 0;
            return Ok((t, used));
        }
        self.len = 0;
        self.heap
            .try_reserve_exact(len)
            .map_err(|_| Errno::ENOMEM)?;
        self.heap.resize(len, 0);
        Ok((&mut self.heap[..], false))
    }

    /// Free the heap block of a large table (a plan kept for the next
    /// exec holds no more heap than a small one).
    pub fn release_heap(&mut self) {
        if self.heap.capacity() != 0 {
            self.heap = Vec::new();
        }
    }

    /// The table's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self.len {
            0 => &self.heap,
            n => &self.inline[..n],
        }
    }
}

impl Default for ArgTable {
    fn default() -> Self {
        ArgTable::new()
    }
}

/// Where the parts of an argument block end, as
/// [`ArgBlock::with_lengths`] found them: the exec file name's length and
/// the argument strings' (NULs included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgShape {
    execfn_len: usize,
    argv_len: usize,
    /// The stack top its pointer table was built for.
    top: u64,
}

impl ArgShape {
    /// The shape of no block (a placeholder until one is checked).
    pub const EMPTY: ArgShape = ArgShape {
        execfn_len: 0,
        argv_len: 0,
        top: 0,
    };
}

/// A checked view of the argument block: exec file name, `argc` argument
/// strings, `envc` environment strings, each NUL terminated, nothing after.
#[derive(Clone, Copy, Debug)]
pub struct ArgBlock<'a> {
    buf: &'a [u8],
    argc: u64,
    envc: u64,
    execfn_len: usize,
    argv_len: usize,
    /// The stack's words from argc to the NULL after the envp pointers
    /// (8 bytes each), built while a table of lengths was checked: the
    /// stack then needs no pass over the strings.
    table: Option<&'a [u8]>,
    /// The stack top `table` points below.
    top: u64,
}

impl<'a> ArgBlock<'a> {
    /// Check the exec file name and the `argc` argument strings of `buf`,
    /// and that `buf` ends with a NUL. E2BIG if one is longer than
    /// [`MAX_ARG_STRLEN`]; EINVAL if the block is malformed. The `envc`
    /// environment strings are checked the same way (exactly `envc`, and
    /// nothing after) by [`StackLayout::write`], which has to walk them
    /// anyway: one pass over them instead of two (each instruction counts
    /// in emulated ring 0, and environments run to kilobytes).
    pub fn new(buf: &'a [u8], argc: u32, envc: u32) -> KResult<ArgBlock<'a>> {
        let execfn_len = str_len(buf)?;
        let argv_end = skip_strings(buf, execfn_len, argc.into())?;
        let complete = match envc {
            0 => argv_end == buf.len(),
            _ => argv_end < buf.len() && buf.last() == Some(&0),
        };
        if !complete {
            return Err(Errno::EINVAL);
        }
        let argv_len = argv_end - execfn_len;
        Ok(ArgBlock {
            buf,
            argc: argc.into(),
            envc: envc.into(),
            execfn_len,
            argv_len,
            table: None,
            top: 0,
        })
    }

    /// The block with a table of its string lengths (`lens`: one LE u32
    /// per string, NUL included), for a stack ending at `top`. Checking it
    /// costs a few instructions a string instead of a scan: the lengths
    /// must add up to the block, each string must end in a NUL exactly
    /// where its length says, and none may exceed [`MAX_ARG_STRLEN`]
    /// (E2BIG). A string with an earlier NUL inside merely reads shorter,
    /// as it would from any exec caller. The same pass fills `table` with
    /// the stack's argc and pointer arrays (see [`StackLayout::write`]);
    /// E2BIG if the pointers alone exceed [`ARG_LIMIT`], ENOMEM if the
    /// table cannot be allocated.
    pub fn with_lengths(
        buf: &'a [u8],
        lens: &'a [u8],
        argc: u32,
        envc: u32,
        top: u64,
        table: &'a mut ArgTable,
    ) -> KResult<ArgBlock<'a>> {
        let n = 1 + argc as usize + envc as usize;
        if lens.len() != 4 * n {
            return Err(Errno::EINVAL);
        }
        let shown = u64::from(argc).max(1);
        let words = (shown + u64::from(envc) + 3) as usize;
        if 8 * (words as u64 - 3) >= ARG_LIMIT {
            return Err(Errno::E2BIG);
        }
        let (table, used) = table.sized(8 * words)?;
        // The strings lie just below the exec file name (see the module
        // docs); an empty argv gets an empty argv[0] one byte below them.
        let strings = top.wrapping_sub(8 + buf.len() as u64);
        table[..8].copy_from_slice(&shown.to_le_bytes());
        if argc == 0 {
            table[8..16].copy_from_slice(&strings.wrapping_sub(1).to_le_bytes());
        }
        if used {
            // The NULLs after the argv and the envp pointers (the walk
            // below writes every pointer).
            let argv_null = 8 + 8 * shown as usize;
            let null = 0u64.to_le_bytes();
            table[argv_null..argv_null + 8].copy_from_slice(&null);
            table[8 * words - 8..].copy_from_slice(&null);
        }
        let (name, strs) = lens.split_at(4);
        let execfn_len = check_lengths_exact(buf, name, 0)?;
        if u32::try_from(buf.len()).is_err() {
            // Far over ARG_LIMIT, and past what the walk's positions hold.
            return Err(Errno::E2BIG);
        }
        // From the exec file name's NUL (execfn_len is at least 1).
        let from = execfn_len - 1;
        let Some(argv_end) =
            check_and_point(&buf[from..], strs, argc as usize, strings, &mut table[8..])
        else {
            // Only a bad table fails the walk; this finds its first bad
            // string.
            check_lengths_exact(buf, strs, execfn_len)?;
            return Err(Errno::EINVAL);
        };
        let argv_len = argv_end - 1;
        let table: &'a [u8] = table;
        Ok(ArgBlock {
            buf,
            argc: argc.into(),
            envc: envc.into(),
            execfn_len,
            argv_len,
            table: Some(table),
            top,
        })
    }

    /// Its shape, to rebuild the view later with [`ArgBlock::checked`].
    pub fn shape(&self) -> ArgShape {
        ArgShape {
            execfn_len: self.execfn_len,
            argv_len: self.argv_len,
            top: self.top,
        }
    }

    /// The view of a block and pointer table that
    /// [`ArgBlock::with_lengths`] already checked and built, and found
    /// `shape` in (an exec's commit, after its prepare): no string is
    /// checked again, only that the shape fits `buf` (EINVAL if not; the
    /// table's size is checked when the stack is written).
    pub fn checked(
        buf: &'a [u8],
        table: &'a [u8],
        argc: u32,
        envc: u32,
        shape: ArgShape,
    ) -> KResult<ArgBlock<'a>> {
        if shape.execfn_len.saturating_add(shape.argv_len) > buf.len() {
            return Err(Errno::EINVAL);
        }
        Ok(ArgBlock {
            buf,
            argc: argc.into(),
            envc: envc.into(),
            execfn_len: shape.execfn_len,
            argv_len: shape.argv_len,
            table: Some(table),
            top: shape.top,
        })
    }

    /// The exec file name with its NUL.
    #[inline]
    pub fn execfn(&self) -> &'a [u8] {
        &self.buf[..self.execfn_len]
    }

    /// The argv strings then the envp strings, each with its NUL.
    #[inline]
    pub fn strings(&self) -> &'a [u8] {
        &self.buf[self.execfn_len..]
    }

    /// Number of argument strings.
    pub fn argc(&self) -> u64 {
        self.argc
    }

    /// Number of environment strings.
    pub fn envc(&self) -> u64 {
        self.envc
    }
}

/// Every address of the initial stack, and its VMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackLayout {
    /// The initial stack pointer: argc is here (`mm->start_stack`), and the
    /// lowest address the stack builder writes.
    pub sp: u64,
    /// argc as the program sees it (1 with an empty argv[0] if argv was empty,
    /// as Linux does since 5.18).
    pub argc: u64,
    /// envc.
    pub envc: u64,
    /// Address of the auxiliary vector.
    pub auxv: u64,
    /// First byte of argv[0]'s string (`mm->arg_start`).
    pub arg_start: u64,
    /// End of the argument strings (`mm->arg_end`), where the environment
    /// strings start ([`Self::env_start`]).
    pub arg_end: u64,
    /// The exec file name (`AT_EXECFN`), right after the environment
    /// strings ([`Self::env_end`]).
    pub execfn: u64,
    /// The 16 random bytes (`AT_RANDOM`), right below the platform string
    /// ([`Self::platform`]).
    pub random: u64,
    /// Start of the stack VMA (page aligned).
    pub vma_start: u64,
    /// End of the stack VMA: [`STACK_TOP`], or lower when randomised.
    pub vma_end: u64,
    empty_argv0: bool,
    /// Whether the auxv starts with `AT_SYSINFO_EHDR`.
    vdso: bool,
}

impl StackLayout {
    /// The layout of no stack (a placeholder until one is laid out).
    pub const EMPTY: StackLayout = StackLayout {
        sp: 0,
        argc: 0,
        envc: 0,
        auxv: 0,
        arg_start: 0,
        arg_end: 0,
        execfn: 0,
        random: 0,
        vma_start: 0,
        vma_end: 0,
        empty_argv0: false,
        vdso: false,
    };

    /// Lay out the stack for `args` below [`STACK_TOP`]. E2BIG if the
    /// strings and the argv/envp pointers exceed [`ARG_LIMIT`], as Linux's
    /// `bprm_stack_limits`.
    pub fn new(args: &ArgBlock) -> KResult<StackLayout> {
        Self::new_below(args, STACK_TOP)
    }

    /// [`Self::new`] with the stack ending at `top` (page aligned, at most
    /// [`STACK_TOP`]; lower when the layout is randomised).
    pub fn new_below(args: &ArgBlock, top: u64) -> KResult<StackLayout> {
        Self::new_below_with(args, top, false)
    }

    /// [`Self::new_below`], with `AT_SYSINFO_EHDR` first in the auxv when
    /// a vDSO is mapped (as Linux x86-64 always has). Inlined: built in
    /// its caller's place, not returned through a copy or two.
    #[inline]
    pub fn new_below_with(args: &ArgBlock, top: u64, vdso: bool) -> KResult<StackLayout> {
        // `top` in [STACK_RLIMIT, STACK_TOP] in one compare (below, it wraps).
        let in_range = top.wrapping_sub(STACK_RLIMIT) <= STACK_TOP - STACK_RLIMIT;
        if !in_range || !top.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let empty = args.argc == 0;
        let argc = args.argc.max(1);
        let ptrs = (argc + args.envc) * 8;
        // The whole block, and an empty argv[0] (no slice of it taken:
        // its bounds were checked when the block was).
        let total = args.buf.len() as u64 + empty as u64;
        let strings = total - args.execfn_len as u64;
        if ptrs >= ARG_LIMIT || total > ARG_LIMIT - ptrs {
            return Err(Errno::E2BIG);
        }
        let execfn = top - 8 - args.execfn_len as u64;
        let arg_start = execfn - strings;
        let arg_end = arg_start + empty as u64 + args.argv_len as u64;
        let platform = (arg_start & !15) - PLATFORM.len() as u64;
        let random = platform - 16;
        let items = (argc + 1) + (args.envc + 1) + 1;
        let pairs = AUXV_PAIRS + u64::from(vdso);
        let sp = (random - (2 * pairs + items) * 8) & !15;
        Ok(StackLayout {
            sp,
            argc,
            envc: args.envc,
            auxv: sp + 8 * items,
            arg_start,
            arg_end,
            execfn,
            random,
            vma_start: stack_vma_start(top, arg_start, sp),
            vma_end: top,
            empty_argv0: empty,
            vdso,
        })
    }

    /// Address of the argv pointer array, right above argc.
    pub fn argv(&self) -> u64 {
        self.sp + 8
    }

    /// Address of the envp pointer array, right above argv's NULL.
    pub fn envp(&self) -> u64 {
        self.argv() + (self.argc + 1) * 8
    }

    /// First byte of envp[0]'s string (`mm->env_start`).
    pub fn env_start(&self) -> u64 {
        self.arg_end
    }

    /// End of the environment strings (`mm->env_end`).
    pub fn env_end(&self) -> u64 {
        self.execfn
    }

    /// The platform string (`AT_PLATFORM`).
    pub fn platform(&self) -> u64 {
        self.random + 16
    }

    /// The auxiliary vector in Linux 6.x x86-64 order (no vDSO, so no
    /// AT_SYSINFO_EHDR; no rseq, so no AT_RSEQ_*), without AT_NULL.
    pub fn auxv_entries(&self, aux: &AuxValues) -> [(u64, u64); AUXV_PAIRS as usize - 1] {
        [
            (at::MINSIGSTKSZ, aux.minsigstksz),
            (at::HWCAP, aux.hwcap),
            (at::PAGESZ, PAGE_SIZE),
            (at::CLKTCK, CLKTCK),
            (at::PHDR, aux.phdr),
            (at::PHENT, aux.phent),
            (at::PHNUM, aux.phnum),
            (at::BASE, aux.base),
            (at::FLAGS, 0),
            (at::ENTRY, aux.entry),
            (at::UID, aux.uid),
            (at::EUID, aux.euid),
            (at::GID, aux.gid),
            (at::EGID, aux.egid),
            (at::SECURE, 0),
            (at::RANDOM, self.random),
            (at::HWCAP2, aux.hwcap2),
            (at::EXECFN, self.execfn),
            (at::PLATFORM, self.platform()),
        ]
    }

    /// Write the whole stack for the same `args` it was laid out for,
    /// through `sink` (EINVAL, E2BIG: the environment strings are not
    /// what [`ArgBlock::new`] was told): a stack whose pointer table came
    /// with `args` filled in place if the sink gives its bytes zeroed
    /// ([`StackSink::zeroed`]: the stack's fresh page); else the strings
    /// in one chunk, the file name, then everything below the
    /// strings (argc, the pointer arrays, the auxv, the random bytes, the
    /// platform string and the alignment after it) in chunks of up to
    /// [`TABLE_BUF`] bytes, lowest address first: one chunk for all but
    /// the longest argument lists. Every byte from `sp` to the top is
    /// written.
    pub fn write(
        &self,
        args: &ArgBlock,
        aux: &AuxValues,
        sink: &mut impl StackSink,
    ) -> KResult<()> {
        let table = args.table;
        if let Some(table) = table {
            // Built for this layout: same top, same number of words.
            let words = self.argc + self.envc + 3;
            if args.top != self.vma_end || table.len() as u64 != 8 * words {
                return Err(Errno::EINVAL);
            }
            if let Some(image) = sink.zeroed(self.sp, (self.vma_end - self.sp) as usize)? {
                return self.fill_image(args, table, aux, image);
            }
        }
        // The file name and the zero word after it, in one piece when the
        // name is short.
        let name = args.execfn();
        let mut end = [0u8; 256];
        match end.get_mut(..name.len() + 8) {
            Some(piece) => {
                piece[..name.len()].copy_from_slice(name);
                sink.write(self.execfn, piece)?;
            }
            None => {
                sink.write(self.vma_end - 8, &[0; 8])?;
                sink.write(self.execfn, name)?;
            }
        }
        let strings = self.arg_start + self.empty_argv0 as u64;
        if self.empty_argv0 {
            sink.write(self.arg_start, &[0])?;
        }
        sink.write(strings, args.strings())?;
        let mut t = Table {
            buf: [0; TABLE_BUF],
            len: 0,
            va: self.sp,
            sink,
        };
        if let Some(table) = table {
            t.push_bytes(table)?;
        } else {
            t.push(self.argc)?;
            if self.empty_argv0 {
                t.push(self.arg_start)?;
            }
            let rest = t.push_ptrs(args.strings(), strings, args.argc)?;
            t.push(0)?;
            let rest = t.push_ptrs(rest, self.env_start(), args.envc)?;
            if !rest.is_empty() {
                return Err(Errno::EINVAL);
            }
            t.push(0)?;
        }
        let (tail, len) = self.tail(*aux);
        t.push_bytes(&tail[..len])?;
        t.flush()
    }

    /// Fill `image`, the zero bytes from `sp` to the top, with the stack
    /// whose pointer `table` was built with `args` (EINVAL if `image` is
    /// not that long). Inlined into [`Self::write`], its one caller.
    #[inline(always)]
    fn fill_image(
        &self,
        args: &ArgBlock,
        table: &[u8],
        aux: &AuxValues,
        image: &mut [u8],
    ) -> KResult<()> {
        let at = (self.auxv - self.sp) as usize;
        self.put_tail(aux, image.get_mut(at..).ok_or(Errno::EINVAL)?);
        let strings = self.arg_start + u64::from(self.empty_argv0);
        let pieces: [(u64, &[u8]); 3] = [
            (self.sp, table),
            (strings, args.strings()),
            (self.execfn, args.execfn()),
        ];
        for (va, bytes) in pieces {
            let at = (va - self.sp) as usize;
            image
                .get_mut(at..at + bytes.len())
                .ok_or(Errno::EINVAL)?
                .copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The bytes from the auxv up to the argument strings: the pairs
    /// (AT_NULL last), zeros up to the random bytes, the random bytes, the
    /// platform string and zeros up to the strings; and how many of them
    /// there are (so that the stack is written without a gap). Out of
    /// line, with its own copy of the values: the caller's then need not
    /// lie in memory for [`Self::fill_image`], which writes them straight
    /// into the stack.
    #[inline(never)]
    fn tail(&self, aux: AuxValues) -> ([u8; TAIL_MAX], usize) {
        let mut b = [0u8; TAIL_MAX];
        self.put_tail(&aux, &mut b);
        (b, (self.arg_start - self.auxv) as usize)
    }

    /// Write [`Self::tail`]'s bytes into `b`, the zero bytes from the auxv
    /// on (up to the strings or past them; nothing is written past its
    /// end). Every pair lands at a fixed offset in the first
    /// [`PAIRS_MAX`] bytes (one store a word, no fill level to test); the
    /// random bytes, above the pairs, are written after them. AT_NULL's
    /// pair is left as it is (zero). Inlined: an exec's values are stored
    /// from where they are worked out, not gathered in memory first.
    #[inline(always)]
    fn put_tail(&self, aux: &AuxValues, b: &mut [u8]) {
        let random = (self.random - self.auxv) as usize;
        if let Some(pairs) = b.first_chunk_mut::<PAIRS_MAX>() {
            // With a vDSO, AT_SYSINFO_EHDR comes first and the rest one
            // pair up.
            let o = 16 * usize::from(self.vdso);
            put_pair(pairs, 0, at::SYSINFO_EHDR, aux.sysinfo_ehdr);
            for (i, &(k, v)) in self.auxv_entries(aux).iter().enumerate() {
                put_pair(pairs, o + 16 * i, k, v);
            }
            // AT_NULL's pair, all zero, is there already.
        }
        if let Some(dst) = b.get_mut(random..random + 16 + PLATFORM.len()) {
            dst[..16].copy_from_slice(&aux.random);
            dst[16..].copy_from_slice(PLATFORM);
        }
    }
}

/// Bytes of the auxv pairs with `AT_SYSINFO_EHDR` (AT_NULL included).
const PAIRS_MAX: usize = 16 * (AUXV_PAIRS as usize + 1);

/// Most bytes [`StackLayout::tail`] gives: every auxv pair with
/// `AT_SYSINFO_EHDR` and AT_NULL, up to 15 bytes of alignment, the random
/// bytes, the platform string and up to 15 bytes of alignment.
const TAIL_MAX: usize = 16 * (AUXV_PAIRS as usize + 1) + 15 + 16 + PLATFORM.len() + 15;

/// Store one auxv pair at byte `at` of `b` (a pair without a vDSO is
/// overwritten by the first real one).
#[inline(always)]
fn put_pair(b: &mut [u8; PAIRS_MAX], at: usize, key: u64, value: u64) {
    b[at..at + 8].copy_from_slice(&key.to_le_bytes());
    b[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
}

/// Linux's stack VMA after exec: `STACK_EXPAND` below the page holding the
/// lowest string (capped by the stack limit), extended down to `sp`.
/// Inlined: a few instructions, fewer than its call.
#[inline(always)]
fn stack_vma_start(top: u64, arg_start: u64, sp: u64) -> u64 {
    let base = arg_start & !(PAGE_SIZE - 1);
    let start = if top - base + STACK_EXPAND > STACK_RLIMIT {
        top - STACK_RLIMIT
    } else {
        base - STACK_EXPAND
    };
    start.min(sp & !(PAGE_SIZE - 1))
}

/// Bytes the table buffer holds (the words below the strings of a
/// program with a few dozen environment strings fit at once).
const TABLE_BUF: usize = 1024;

/// Buffers table words and writes them in contiguous chunks.
struct Table<'s, S: StackSink> {
    buf: [u8; TABLE_BUF],
    len: usize,
    va: u64,
    sink: &'s mut S,
}

impl<S: StackSink> Table<'_, S> {
    fn push(&mut self, word: u64) -> KResult<()> {
        if self.len == TABLE_BUF {
            self.flush()?;
        }
        self.buf[self.len..self.len + 8].copy_from_slice(&word.to_le_bytes());
        self.len += 8;
        Ok(())
    }

    fn flush(&mut self) -> KResult<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.sink.write(self.va, &self.buf[..self.len])?;
        self.va += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Push `bytes` after the words; more than the buffer holds goes to
    /// the sink in one piece.
    fn push_bytes(&mut self, bytes: &[u8]) -> KResult<()> {
        if self.len + bytes.len() > TABLE_BUF {
            self.flush()?;
            if bytes.len() > TABLE_BUF {
                self.sink.write(self.va, bytes)?;
                self.va += bytes.len() as u64;
                return Ok(());
            }
        }
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(Errno::EINVAL)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Push pointers to the `n` strings at the start of `s`, which lies at
    /// user address `va`; return the rest of `s`.
    fn push_ptrs<'b>(&mut self, mut s: &'b [u8], mut va: u64, n: u64) -> KResult<&'b [u8]> {
        for _ in 0..n {
            self.push(va)?;
            let len = str_len(s)?;
            s = &s[len..];
            va += len as u64;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
