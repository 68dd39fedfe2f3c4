//! Copying to and from user memory (Linux's `copy_to_user`/`copy_from_user`).
//!
//! The kernel never dereferences a user pointer. Each page of a user buffer
//! is translated through the process's page tables, faulted in exactly as a
//! user access would be (a write to a copy-on-write page copies it), and
//! then reached through physical memory. A pointer that would make the
//! program fault yields EFAULT instead of a kernel fault.

use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::mm::space::{check_user_range, Mm, MmEnv};
use alloc::vec::Vec;
use vmrun_contract::layout::{PAGE_SIZE, TASK_SIZE};

/// Bytes from `va` to the end of its page, capped at `left`.
#[inline(always)]
fn chunk(va: u64, left: usize) -> usize {
    ((PAGE_SIZE - (va & (PAGE_SIZE - 1))) as usize).min(left)
}

/// Where the user buffer `[va, va + len)` lies, as a copy's quick cases
/// see it.
enum Place {
    /// In one page that is mapped as the access needs and a last page
    /// table covers (see [`Mm::mapped_user_page`]): most copies, a struct or
    /// a short string, take this one look, inlined, without a call or a
    /// walk. The physical address of `va`.
    Mapped(u64),
    /// In one page below [`TASK_SIZE`] (its range checked) that no last
    /// table places: one walk, no more checks.
    OnePage,
    /// Anywhere else (empty, across pages, or not a user range).
    Other,
}

/// [`Place`] of the user buffer `[va, va + len)` for an access (read, or
/// write if `write`).
#[inline(always)]
fn place<M: PhysMem>(mm: &Mm, env: &MmEnv<'_, M>, va: u64, len: usize, write: bool) -> Place {
    let one_page = len != 0 && chunk(va, len) == len && va < TASK_SIZE - len as u64;
    if !one_page {
        return Place::Other;
    }
    match mm.mapped_user_page(env.mem, va, write) {
        Some(pa) => Place::Mapped(pa),
        None => Place::OnePage,
    }
}

/// The physical address of user `va` for a copy within its page that
/// [`place`] found no last table for: a walk of the page tables (the
/// buffer's table is not a last one), else [`Mm::user_page`] (a fault).
#[inline(always)]
fn one_walked_page<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    write: bool,
) -> KResult<u64> {
    match mm.walked_user_page(env.mem, va, write) {
        Some(pa) => Ok(pa),
        None => mm.user_page(env, va, write),
    }
}

/// The physical address of user `va` for a kernel access (read, or write
/// if `write`), faulted in as a user access would be: the one look of
/// [`Mm::mapped_user_page`] where a last table answers, else
/// [`Mm::user_page`] (for each page of a longer buffer).
#[inline(always)]
pub fn user_page_quick<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    write: bool,
) -> KResult<u64> {
    let quick = match va < TASK_SIZE {
        true => mm.mapped_user_page(env.mem, va, write),
        false => None,
    };
    match quick {
        Some(pa) => Ok(pa),
        None => mm.user_page(env, va, write),
    }
}

/// Copy `data` to user address `va`.
#[inline(always)]
pub fn copy_to_user<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    data: &[u8],
) -> KResult<()> {
    match place(mm, env, va, data.len(), true) {
        Place::Mapped(pa) => {
            env.mem.write_bytes(pa, data);
            Ok(())
        }
        Place::OnePage => copy_to_one_page_walked(mm, env, va, data),
        Place::Other => copy_to_user_walked(mm, env, va, data),
    }
}

/// [`copy_to_user`] for a system call's short path, which may change
/// nothing it cannot finish: `data` written when it lands in one page
/// already mapped writable ([`Mm::mapped_user_piece`]); `None`, nothing
/// written, otherwise (the full path then copies it as usual).
#[inline(always)]
pub fn copy_to_mapped_page<M: PhysMem>(mm: &Mm, mem: &mut M, va: u64, data: &[u8]) -> Option<()> {
    let piece = mm.mapped_user_piece(mem, va, data.len() as u64, true)?;
    mem.write_bytes(piece.phys, data);
    Some(())
}

/// [`copy_to_mapped_page`] where no last table covers `va` (a struct on
/// the stack after faults elsewhere, as ld.so's `prlimit64`): one walk.
#[inline(never)]
pub fn copy_to_walked_page<M: PhysMem>(mm: &Mm, mem: &mut M, va: u64, data: &[u8]) -> Option<()> {
    let len = data.len() as u64;
    let in_one_page = len != 0 && len <= PAGE_SIZE - (va & (PAGE_SIZE - 1));
    if !in_one_page || va >= TASK_SIZE - len {
        return None;
    }
    let pa = mm.walked_user_page(mem, va, true)?;
    mem.write_bytes(pa, data);
    Some(())
}

/// [`copy_to_user`] within one page that no last table covers (a struct
/// on the stack after faults elsewhere): one walk, the range checked by
/// [`place`] already. Out of line, as [`copy_to_user_walked`].
#[inline(never)]
fn copy_to_one_page_walked<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    data: &[u8],
) -> KResult<()> {
    let pa = one_walked_page(mm, env, va, true)?;
    env.mem.write_bytes(pa, data);
    Ok(())
}

/// [`copy_to_user`] past its quick cases (a buffer across pages, an empty
/// one, one at the top of the user range): each page translated (faulted
/// in as needed) on its own.
///
/// Out of line (as [`copy_from_user_walked`]): inlined into the kernel's
/// main loop, the copies' page walks crowd its registers, and every entry
/// then pays for spills.
#[inline(never)]
fn copy_to_user_walked<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    data: &[u8],
) -> KResult<()> {
    check_user_range(va, data.len() as u64)?;
    let mut done = 0;
    while done < data.len() {
        let cur = va + done as u64;
        let n = chunk(cur, data.len() - done);
        let pa = user_page_quick(mm, env, cur, true)?;
        env.mem.write_bytes(pa, &data[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Copy from user address `va` into `buf`.
#[inline(always)]
pub fn copy_from_user<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    buf: &mut [u8],
) -> KResult<()> {
    match place(mm, env, va, buf.len(), false) {
        Place::Mapped(pa) => {
            env.mem.read_bytes(pa, buf);
            Ok(())
        }
        Place::OnePage => copy_from_one_page_walked(mm, env, va, buf),
        Place::Other => copy_from_user_walked(mm, env, va, buf),
    }
}

/// [`copy_from_user`] within one page that no last table covers, as
/// [`copy_to_one_page_walked`].
#[inline(never)]
fn copy_from_one_page_walked<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    buf: &mut [u8],
) -> KResult<()> {
    let pa = one_walked_page(mm, env, va, false)?;
    env.mem.read_bytes(pa, buf);
    Ok(())
}

/// [`copy_from_user`] past its quick cases, as [`copy_to_user_walked`].
#[inline(never)]
fn copy_from_user_walked<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    buf: &mut [u8],
) -> KResult<()> {
    check_user_range(va, buf.len() as u64)?;
    let mut done = 0;
    while done < buf.len() {
        let cur = va + done as u64;
        let n = chunk(cur, buf.len() - done);
        let pa = user_page_quick(mm, env, cur, false)?;
        env.mem.read_bytes(pa, &mut buf[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Reads of many small pieces of user memory, most of them in one page
/// (an exec's argument strings and their pointer arrays): the page last
/// read has its physical address kept, so each further piece in it costs
/// no translation. Reads only: a read never changes a mapping, and nothing
/// else runs between the pieces of one system call.
pub struct PageReader {
    /// The user page last translated (`u64::MAX`: none) and its physical
    /// address.
    page: u64,
    pa: u64,
}

impl Default for PageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PageReader {
    pub const fn new() -> Self {
        PageReader {
            page: u64::MAX,
            pa: 0,
        }
    }

    /// The physical address of user `va` for a read, faulted in as a user
    /// read would be (EFAULT where the program would fault).
    #[inline(always)]
    fn pa<M: PhysMem>(&mut self, mm: &mut Mm, env: &mut MmEnv<'_, M>, va: u64) -> KResult<u64> {
        let page = va & !(PAGE_SIZE - 1);
        if page != self.page {
            check_user_range(va, 1)?;
            self.pa = user_page_quick(mm, env, page, false)?;
            self.page = page;
        }
        Ok(self.pa + (va - page))
    }

    /// The u64 at user `va` (8-aligned within a page; any other goes as
    /// [`get_user_u64`]).
    #[inline]
    pub fn u64<M: PhysMem>(
        &mut self,
        mm: &mut Mm,
        env: &mut MmEnv<'_, M>,
        va: u64,
    ) -> KResult<u64> {
        if va & 7 != 0 {
            return get_user_u64(mm, env, va);
        }
        let pa = self.pa(mm, env, va)?;
        Ok(env.mem.read_u64(pa))
    }
}

/// Bytes of user memory an array's strings are read in at a time, at
/// most (never past a page the strings do not reach into).
const STRINGS_PIECE: usize = 256;

/// Append the NUL-terminated user strings that the pointer array at `va`
/// lists, up to its NULL pointer and at most `limit` of them, to `block`,
/// each with its NUL, and their lengths (NUL included) as LE u32s to
/// `lens`, as Linux's `copy_strings` takes an exec's argv or envp: E2BIG
/// for a string longer than `max` with its NUL; `each` hears every
/// string's length and may stop the copy with an error. Returns how many.
///
/// Strings are read in pieces of up to [`STRINGS_PIECE`] bytes straight
/// into `block`, within the page they start in: a piece that holds a
/// string's NUL often holds the next strings too (a program's argv and
/// envp lie end to end), and those are then taken where they already
/// are. Nothing is read past a page the strings do not reach into, so a
/// read faults exactly where Linux's `strnlen_user` would.
#[allow(clippy::too_many_arguments)]
pub fn user_string_array<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    (max, limit): (usize, u64),
    block: &mut Vec<u8>,
    lens: &mut Vec<u8>,
    mut each: impl FnMut(u64) -> KResult<()>,
) -> KResult<u64> {
    let (mut array, mut strings) = (PageReader::new(), PageReader::new());
    // `block[kept..]` holds the user bytes from `next` on, read ahead.
    let kept = block.len();
    let mut next = u64::MAX;
    let mut taken = kept;
    let r = (|| {
        for i in 0..limit {
            let p = array.u64(mm, env, va + 8 * i)?;
            if p == 0 {
                return Ok(i);
            }
            if p != next {
                // Not where the last one ended: read from here.
                block.truncate(taken);
                next = p;
            }
            let start = taken;
            let mut scanned = taken;
            let len = loop {
                if let Some(z) = find_nul(&block[scanned..]) {
                    break scanned + z + 1 - start;
                }
                scanned = block.len();
                if scanned - start >= max {
                    return Err(Errno::E2BIG);
                }
                // Read on: from the first byte not read yet, to the end of
                // its page at most.
                let at = next + (scanned - start) as u64;
                let n = chunk(at, STRINGS_PIECE);
                let pa = strings.pa(mm, env, at)?;
                // Strings past what the kernel heap holds are past Linux's
                // limit too (a quarter of the stack limit): E2BIG, not a
                // failed allocation.
                if block.try_reserve(n).is_err() {
                    return Err(Errno::E2BIG);
                }
                // Appended straight from the page: no zeroing first.
                block.extend_from_slice(env.mem.bytes_mut(pa, n as u64));
            };
            if len > max {
                return Err(Errno::E2BIG);
            }
            taken = start + len;
            next += len as u64;
            lens.extend_from_slice(&(len as u32).to_le_bytes());
            each(len as u64)?;
        }
        Ok(limit)
    })();
    block.truncate(taken);
    r
}

/// The position of the first NUL byte in `bytes`, found eight bytes at a
/// time as [`first_nul`] finds it.
#[inline(always)]
fn find_nul(bytes: &[u8]) -> Option<usize> {
    let (words, rest) = bytes.as_chunks::<8>();
    for (i, w) in words.iter().enumerate() {
        let x = u64::from_le_bytes(*w);
        let zeros = x.wrapping_sub(NUL_LOW) & !x & NUL_HIGH;
        if zeros != 0 {
            return Some(i * 8 + zeros.trailing_zeros() as usize / 8);
        }
    }
    let z = rest.iter().position(|&b| b == 0)?;
    Some(words.len() * 8 + z)
}

/// A one in each byte, and each byte's high bit: the zero-byte test.
const NUL_LOW: u64 = 0x0101_0101_0101_0101;
const NUL_HIGH: u64 = 0x8080_8080_8080_8080;

/// The position of the first NUL byte in `piece`, found eight bytes at a
/// time (a byte loop costs four instructions per byte of a string).
#[inline(always)]
pub fn first_nul(piece: &[u8; 64]) -> Option<usize> {
    if piece[0] == 0 {
        // An empty string (`fstatat(fd, "", AT_EMPTY_PATH)`, glibc's fstat).
        return Some(0);
    }
    for (i, word) in piece.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        // The high bit of each zero byte, and possibly of bytes above the
        // first zero one (borrows): the lowest bit set is exact.
        let zeros = x.wrapping_sub(NUL_LOW) & !x & NUL_HIGH;
        if zeros != 0 {
            return Some(i * 8 + zeros.trailing_zeros() as usize / 8);
        }
    }
    None
}

/// Read a user u64 at `va`.
pub fn get_user_u64<M: PhysMem>(mm: &mut Mm, env: &mut MmEnv<'_, M>, va: u64) -> KResult<u64> {
    let mut b = [0u8; 8];
    copy_from_user(mm, env, va, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Write a user u64 at `va`.
pub fn put_user_u64<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    v: u64,
) -> KResult<()> {
    copy_to_user(mm, env, va, &v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::Fixture;
    use crate::mm::vma::{Prot, VmFlags, Vma};
    use vmrun_contract::FaultSize;

    #[test]
    fn copy_to_walked_page_writes_a_mapped_writable_page_and_nothing_else() {
        let mut fx = Fixture::new();
        let mut mm = fx.mm();
        fx.frames.fault_size = FaultSize::Page4K;
        mm.vmas
            .insert(Vma::anon(0x4000_0000, 0x4000_2000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let data = [7u8; 16];
        let walked =
            |mm: &Mm, fx: &mut Fixture, va| copy_to_walked_page(mm, &mut fx.mem, va, &data);
        assert_eq!(walked(&mm, &mut fx, 0x4000_0010), None, "not mapped yet");
        let pa = mm.user_page(&mut fx.env(), 0x4000_0000, true).unwrap();
        assert_eq!(walked(&mm, &mut fx, 0x4000_0010), Some(()));
        let mut back = [0u8; 16];
        fx.mem.read_bytes(pa + 0x10, &mut back);
        assert_eq!(back, data);
        assert_eq!(walked(&mm, &mut fx, 0x4000_0ff8), None, "two pages");
        assert_eq!(walked(&mm, &mut fx, TASK_SIZE - 8), None);
        mm.mprotect(&mut fx.env(), 0x4000_0000, 0x1000, 1).unwrap();
        assert_eq!(walked(&mm, &mut fx, 0x4000_0010), None, "read-only");
    }
}
