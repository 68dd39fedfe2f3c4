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
