//! Copying to and from user memory (Linux's `copy_to_user`/`copy_from_user`).
//!
//! The kernel never dereferences a user pointer. Each page of a user buffer
//! is translated through the process's page tables, faulted in exactly as a
//! user access would be (a write to a copy-on-write page copies it), and
//! then reached through physical memory. A pointer that would make the
//! program fault yields EFAULT instead of a kernel fault.

use crate::errno::KResult;
use crate::mm::phys::PhysMem;
use crate::mm::space::{check_user_range, Mm, MmEnv};
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
