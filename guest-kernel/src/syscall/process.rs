//! arch_prctl and set_tid_address: per-thread state.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::put_user_u64;
use vmrun_contract::layout::TASK_SIZE;

/// arch_prctl codes.
pub mod code {
    #![allow(missing_docs)]
    pub const SET_GS: u64 = 0x1001;
    pub const SET_FS: u64 = 0x1002;
    pub const GET_FS: u64 = 0x1003;
    pub const GET_GS: u64 = 0x1004;
}

/// arch_prctl(code, addr)
pub fn arch_prctl<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    op: u64,
    addr: u64,
) -> KResult<i64> {
    match op {
        code::SET_FS | code::SET_GS => {
            if addr >= TASK_SIZE {
                return Err(Errno::EPERM);
            }
            if op == code::SET_FS {
                cx.p.fs_base = addr;
            } else {
                cx.p.gs_base = addr;
            }
            cx.p.bases_changed = true;
            Ok(0)
        }
        code::GET_FS => put_user_u64(&mut cx.p.mm, cx.env, addr, cx.p.fs_base).map(|_| 0),
        code::GET_GS => put_user_u64(&mut cx.p.mm, cx.env, addr, cx.p.gs_base).map(|_| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// set_tid_address(tidptr): remembered (no threads yet); returns the tid.
pub fn set_tid_address<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, ptr: u64) -> i64 {
    cx.p.clear_child_tid = ptr;
    cx.p.pid as i64
}

/// The size of `struct robust_list_head` on x86-64.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;

/// set_robust_list(head, len): remembered (used by futex cleanup at thread
/// exit, which a single-threaded process never needs).
pub fn set_robust_list<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    head: u64,
    len: u64,
) -> KResult<i64> {
    if len != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    cx.p.robust_list = head;
    Ok(0)
}

/// futex operations (`op & FUTEX_CMD_MASK`).
mod futex_op {
    pub const WAIT: u64 = 0;
    pub const WAKE: u64 = 1;
    pub const REQUEUE: u64 = 3;
    pub const CMP_REQUEUE: u64 = 4;
    pub const WAKE_OP: u64 = 5;
    pub const WAIT_BITSET: u64 = 9;
    pub const WAKE_BITSET: u64 = 10;
    /// PRIVATE and CLOCK_REALTIME bits.
    pub const CMD_MASK: u64 = !(128 | 256);
}

/// futex(uaddr, op, val, timeout, uaddr2, val3) for a process of one
/// thread: nobody else can wait, so a wake finds no waiter, and a wait
/// whose value still matches can only time out (or would block for good:
/// it returns EINTR, a spurious wake-up callers retry after).
pub fn futex<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, a: [u64; 6]) -> KResult<i64> {
    let (uaddr, op, val, timeout, val3) = (a[0], a[1] & futex_op::CMD_MASK, a[2], a[3], a[5]);
    if uaddr & 3 != 0 {
        return Err(Errno::EINVAL);
    }
    let mut word = || -> KResult<u32> {
        let mut b = [0u8; 4];
        crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, uaddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    };
    let current = word()?;
    match op {
        futex_op::WAKE | futex_op::WAKE_BITSET | futex_op::REQUEUE | futex_op::WAKE_OP => Ok(0),
        futex_op::CMP_REQUEUE => {
            if current != val3 as u32 {
                return Err(Errno::EAGAIN);
            }
            Ok(0)
        }
        futex_op::WAIT | futex_op::WAIT_BITSET => {
            if current != val as u32 {
                return Err(Errno::EAGAIN);
            }
            if timeout == 0 {
                return Err(Errno::EINTR);
            }
            let ns = super::time::read_timespec(cx, timeout)?;
            if op == futex_op::WAIT {
                cx.host.sleep(ns);
            } else {
                // WAIT_BITSET takes an absolute time.
                let clock = if a[1] & 256 != 0 {
                    super::time::Clock::Realtime
                } else {
                    super::time::Clock::Monotonic
                };
                let now = cx.host.now_ns(clock);
                cx.host.sleep(ns.saturating_sub(now));
            }
            Err(Errno::ETIMEDOUT)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// getcpu(cpu, node): CPU 0 of node 0.
pub fn getcpu<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    cpu: u64,
    node: u64,
) -> KResult<i64> {
    for p in [cpu, node] {
        if p != 0 {
            crate::uaccess::copy_to_user(&mut cx.p.mm, cx.env, p, &0u32.to_le_bytes())?;
        }
    }
    Ok(0)
}
