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
use vmrun_contract::layout::PAGE_SIZE;

/// Bytes from `va` to the end of its page, capped at `left`.
#[inline(always)]
fn chunk(va: u64, left: usize) -> usize {
    ((PAGE_SIZE - (va & (PAGE_SIZE - 1))) as usize).min(left)
}

/// Copy `data` to user address `va`.
///
/// Out of line (as [`copy_from_user`]): inlined into the kernel's main
/// loop, the copies' page walks crowd its registers, and every entry then
/// pays for spills.
#[inline(never)]
pub fn copy_to_user<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    data: &[u8],
) -> KResult<()> {
    check_user_range(va, data.len() as u64)?;
    // Most copies (a struct, a short string) lie in one page: one
    // translation and one write, without the loop's bookkeeping (an empty
    // copy touches no page).
    if !data.is_empty() && chunk(va, data.len()) == data.len() {
        let pa = mm.user_page(env, va, true)?;
        env.mem.write_bytes(pa, data);
        return Ok(());
    }
    let mut done = 0;
    while done < data.len() {
        let cur = va + done as u64;
        let n = chunk(cur, data.len() - done);
        let pa = mm.user_page(env, cur, true)?;
        env.mem.write_bytes(pa, &data[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Copy from user address `va` into `buf`.
#[inline(never)]
pub fn copy_from_user<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    buf: &mut [u8],
) -> KResult<()> {
    check_user_range(va, buf.len() as u64)?;
    // As in `copy_to_user`: a copy within one page takes one translation.
    if !buf.is_empty() && chunk(va, buf.len()) == buf.len() {
        let pa = mm.user_page(env, va, false)?;
        env.mem.read_bytes(pa, buf);
        return Ok(());
    }
    let mut done = 0;
    while done < buf.len() {
        let cur = va + done as u64;
        let n = chunk(cur, buf.len() - done);
        let pa = mm.user_page(env, cur, false)?;
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
