//! arch_prctl and set_tid_address: per-thread state.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::process::Process;
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
    if let Some(r) = set_base(cx.p, op, addr) {
        return Ok(r);
    }
    match op {
        code::GET_FS => put_user_u64(&mut cx.p.mm, cx.env, addr, cx.p.fs_base).map(|_| 0),
        code::GET_GS => put_user_u64(&mut cx.p.mm, cx.env, addr, cx.p.gs_base).map(|_| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// arch_prctl's SET_FS and SET_GS (the result, 0 or -EPERM), which touch
/// no memory, so that the system call's short path serves them too (the
/// new base goes to the CPU where `bases_changed` is looked at); None for
/// another operation.
#[inline]
pub fn set_base(p: &mut Process, op: u64, addr: u64) -> Option<i64> {
    let base = match op {
        code::SET_FS => &mut p.fs_base,
        code::SET_GS => &mut p.gs_base,
        _ => return None,
    };
    if addr >= TASK_SIZE {
        return Some(Errno::EPERM.to_ret());
    }
    *base = addr;
    p.bases_changed = true;
    Some(0)
}

/// set_tid_address(tidptr): remembered, cleared and futex-woken when the
/// thread exits; returns the tid.
pub fn set_tid_address<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, ptr: u64) -> i64 {
    cx.p.clear_child_tid = ptr;
    cx.p.pid as i64
}

/// The size of `struct robust_list_head` on x86-64.
pub const ROBUST_LIST_HEAD_SIZE: u64 = 24;

/// set_robust_list(head, len): remembered; the list is walked when the
/// thread exits or execs ([`exit_robust_list`]).
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

/// The calling process's user memory for the robust-list walk.
struct UserWords<'m, 'e, 'a, M: PhysMem> {
    mm: &'m mut crate::mm::space::Mm,
    env: &'e mut crate::mm::space::MmEnv<'a, M>,
}

impl<M: PhysMem> crate::process::robust::RobustMem for UserWords<'_, '_, '_, M> {
    fn read_u64(&mut self, va: u64) -> Option<u64> {
        crate::uaccess::get_user_u64(self.mm, self.env, va).ok()
    }

    fn read_u32(&mut self, va: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        crate::uaccess::copy_from_user(self.mm, self.env, va, &mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }

    fn write_u32(&mut self, va: u64, v: u32) -> bool {
        crate::uaccess::copy_to_user(self.mm, self.env, va, &v.to_le_bytes()).is_ok()
    }

    fn read_head(&mut self, va: u64) -> Option<[u64; 3]> {
        let mut b = [0u8; 24];
        crate::uaccess::copy_from_user(self.mm, self.env, va, &mut b).ok()?;
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(x)
        };
        Some([w(0), w(1), w(2)])
    }
}

/// Thread `tid` (of the caller's group, in the caller's address space)
/// dies with robust list `head`: mark the futexes it owns
/// `FUTEX_OWNER_DIED` and wake one waiter of each that had waiters.
pub fn exit_robust_list<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    tid: u64,
    head: u64,
) {
    if head == 0 {
        return;
    }
    let mut mem = UserWords {
        mm: &mut cx.p.mm,
        env: &mut *cx.env,
    };
    for word in crate::process::robust::exit_robust_list(&mut mem, head, tid) {
        futex_wake_pub(cx, word, 1);
    }
}

/// The whole thread group ends (exit_group, a fatal signal, exec): the
/// robust lists of its other threads and of the caller are walked.
pub fn exit_group_robust_lists<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) {
    use crate::process::task::TaskState;
    let (tgid, me) = (cx.p.tgid, cx.p.pid);
    let lists: alloc::vec::Vec<(u64, u64)> = cx
        .tasks
        .others
        .iter()
        .filter(|t| t.tgid == tgid && t.pid != me && t.robust_list != 0)
        .filter(|t| !matches!(t.state, TaskState::Zombie(_)))
        .map(|t| (t.pid, t.robust_list))
        .collect();
    for (tid, head) in lists {
        exit_robust_list(cx, tid, head);
    }
    let head = core::mem::take(&mut cx.p.robust_list);
    exit_robust_list(cx, me, head);
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
    /// FUTEX_PRIVATE_FLAG.
    pub const PRIVATE: u64 = 128;
    /// PRIVATE and CLOCK_REALTIME bits.
    pub const CMD_MASK: u64 = !(128 | 256);
}

/// futex(uaddr, op, val, timeout, uaddr2, val3): a wait whose value still
/// matches sleeps (until a wake picks it, or its timeout); a wake picks up
/// to `val` waiters of the same thread group on the address.
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
    let private = a[1] & futex_op::PRIVATE != 0;
    let key = futex_key(cx, uaddr, private);
    match op {
        futex_op::WAKE | futex_op::WAKE_BITSET => Ok(futex_wake_key(cx, key, val) as i64),
        futex_op::WAKE_OP => {
            // *uaddr2 = old OP oparg (nothing runs in between: one CPU),
            // wake val waiters on uaddr, and val2 (timeout's value) on
            // uaddr2 too if old CMP cmparg holds.
            let uaddr2 = a[4];
            if uaddr2 & 3 != 0 {
                return Err(Errno::EINVAL);
            }
            let mut b = [0u8; 4];
            crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, uaddr2, &mut b)?;
            let old = u32::from_le_bytes(b);
            let (new, cond) = wake_op(val3 as u32, old).ok_or(Errno::ENOSYS)?;
            crate::uaccess::copy_to_user(&mut cx.p.mm, cx.env, uaddr2, &new.to_le_bytes())?;
            let mut n = futex_wake_key(cx, key, val);
            if cond {
                let key2 = futex_key(cx, uaddr2, private);
                n += futex_wake_key(cx, key2, timeout & 0x7fff_ffff);
            }
            Ok(n as i64)
        }
        futex_op::REQUEUE | futex_op::CMP_REQUEUE => {
            if op == futex_op::CMP_REQUEUE && current != val3 as u32 {
                return Err(Errno::EAGAIN);
            }
            // Requeued waiters are woken instead: they check their futex
            // word again, as after any spurious wake-up.
            let key2 = futex_key(cx, a[4], private);
            let n = futex_wake_key(cx, key, val) + futex_wake_key(cx, key2, timeout & 0x7fff_ffff);
            Ok(n as i64)
        }
        futex_op::WAIT | futex_op::WAIT_BITSET => {
            if core::mem::take(&mut cx.p.futex_woken) {
                cx.p.futex_wait = None;
                cx.p.deadline = None;
                return Ok(0);
            }
            if core::mem::take(&mut cx.p.timed_out) {
                cx.p.futex_wait = None;
                return Err(Errno::ETIMEDOUT);
            }
            if current != val as u32 {
                cx.p.futex_wait = None;
                cx.p.deadline = None;
                return Err(Errno::EAGAIN);
            }
            if cx.p.futex_wait != Some(key) {
                cx.p.futex_wait = Some(key);
                cx.p.deadline = if timeout == 0 {
                    None
                } else {
                    let ns = super::time::read_timespec(cx, timeout)?;
                    let now = cx.host.now_ns(super::time::Clock::Monotonic);
                    Some(if op == futex_op::WAIT {
                        now.saturating_add(ns)
                    } else if a[1] & 256 != 0 {
                        // An absolute CLOCK_REALTIME time.
                        let real = cx.host.now_ns(super::time::Clock::Realtime);
                        now.saturating_add(ns.saturating_sub(real))
                    } else {
                        ns
                    })
                };
            }
            Err(Errno::ERESTARTSYS)
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

/// Bit 63 of a futex key: the key is the futex word's physical address,
/// shared by every process mapping it (else it is a user address, private
/// to the thread group).
const SHARED_KEY: u64 = 1 << 63;

/// The key waiters on `uaddr` wait under (Linux's get_futex_key): a
/// futex in a MAP_SHARED area, used without FUTEX_PRIVATE_FLAG, is known
/// by its physical address, so that processes sharing the page meet on it
/// whatever address each maps it at; any other by its user address within
/// the thread group. (The word was just read, so its page is present.)
fn futex_key<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    uaddr: u64,
    private: bool,
) -> u64 {
    if private {
        return uaddr;
    }
    let mm = &cx.p.mm;
    let shared = mm
        .vmas
        .find(uaddr)
        .and_then(|i| mm.vmas.get(i))
        .is_some_and(|v| v.flags.contains(crate::mm::vma::VmFlags::SHARED));
    if !shared {
        return uaddr;
    }
    match mm.pt.translate(&*cx.env.mem, uaddr) {
        Some(t) => SHARED_KEY | (t.frame + (uaddr & (t.size.bytes() - 1))),
        None => uaddr,
    }
}

/// FUTEX_WAKE_OP's operation `encoded` (op, cmp, oparg, cmparg) on the old
/// value `old`: the new value and whether the comparison holds (None: an
/// unknown op or cmp).
pub fn wake_op(encoded: u32, old: u32) -> Option<(u32, bool)> {
    let op = (encoded >> 28) & 7;
    let shift_arg = encoded & (8 << 28) != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = (encoded >> 12) & 0xfff;
    let cmparg = encoded & 0xfff;
    // Sign-extend the 12-bit fields as Linux does.
    let oparg_s = ((oparg << 20) as i32 >> 20) as u32;
    oparg = oparg_s;
    if shift_arg {
        oparg = 1u32.checked_shl(oparg).unwrap_or(0);
    }
    let cmparg = ((cmparg << 20) as i32 >> 20) as u32;
    let new = match op {
        0 => oparg,
        1 => old.wrapping_add(oparg),
        2 => old | oparg,
        3 => old & !oparg,
        4 => old ^ oparg,
        _ => return None,
    };
    let (o, c) = (old as i32, cmparg as i32);
    let cond = match cmp {
        0 => o == c,
        1 => o != c,
        2 => o < c,
        3 => o <= c,
        4 => o > c,
        5 => o >= c,
        _ => return None,
    };
    Some((new, cond))
}

/// Wake up to `n` waiters under `key`: threads of the caller's group for
/// a private key, any process for a shared one.
fn futex_wake_key<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, key: u64, n: u64) -> u64 {
    let tgid = cx.p.tgid;
    let mut woken = 0;
    for t in cx.tasks.others.iter_mut() {
        if woken >= n {
            break;
        }
        let mine = key & SHARED_KEY != 0 || t.tgid == tgid;
        if mine && t.futex_wait == Some(key) && !t.futex_woken {
            t.futex_woken = true;
            t.state = crate::process::task::TaskState::Runnable;
            woken += 1;
        }
    }
    if woken > 0 {
        cx.tasks.woke = true;
    }
    woken
}

/// Wake up to `n` waiters on `uaddr` used as a shared futex would be
/// (thread exit's clear_child_tid; a robust futex of a dying thread).
pub fn futex_wake_pub<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    uaddr: u64,
    n: u64,
) -> u64 {
    let key = futex_key(cx, uaddr, false);
    futex_wake_key(cx, key, n)
}

/// membarrier(cmd, flags, cpu_id) as Linux answers on one CPU: every
/// barrier is already implied (one CPU, a system call is a full barrier),
/// so the commands QUERY lists succeed at once, except that a private
/// expedited barrier needs its registration first (EPERM, as Linux);
/// `registered` is the address space's record of them.
pub fn membarrier(cmd: u64, flags: u64, registered: &mut u64) -> KResult<i64> {
    // GLOBAL, GLOBAL_EXPEDITED and its REGISTER, PRIVATE_EXPEDITED and its
    // REGISTER, PRIVATE_EXPEDITED_SYNC_CORE and its REGISTER.
    const SUPPORTED: u64 = 0x7f;
    const PRIVATE_EXPEDITED: u64 = 8;
    const REGISTER_PRIVATE_EXPEDITED: u64 = 16;
    const PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
    const REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 64;
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let needs = match cmd {
        0 => return Ok(SUPPORTED as i64),
        PRIVATE_EXPEDITED => REGISTER_PRIVATE_EXPEDITED,
        PRIVATE_EXPEDITED_SYNC_CORE => REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
        c if c.is_power_of_two() && c & SUPPORTED != 0 => 0,
        _ => return Err(Errno::EINVAL),
    };
    if needs != 0 && *registered & needs == 0 {
        return Err(Errno::EPERM);
    }
    if cmd & (4 | REGISTER_PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) != 0 {
        *registered |= cmd;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_op_applies_its_operation_and_comparison_as_linux() {
        // FUTEX_OP(op, oparg, cmp, cmparg) = op<<28 | cmp<<24 | oparg<<12 | cmparg.
        let enc = |op: u32, oparg: u32, cmp: u32, cmparg: u32| {
            (op << 28) | (cmp << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff)
        };
        // glibc's old condvar: SET 0, compare old > 1.
        assert_eq!(wake_op(enc(0, 0, 4, 1), 2), Some((0, true)));
        assert_eq!(wake_op(enc(0, 0, 4, 1), 1), Some((0, false)));
        assert_eq!(wake_op(enc(1, 5, 0, 7), 2), Some((7, false)), "ADD, EQ");
        assert_eq!(wake_op(enc(1, 5, 0, 2), 2), Some((7, true)));
        assert_eq!(
            wake_op(enc(2, 0xf0, 1, 0), 0x0f),
            Some((0xff, true)),
            "OR, NE"
        );
        assert_eq!(wake_op(enc(3, 1, 2, 0), 3), Some((2, false)), "ANDN, LT");
        assert_eq!(wake_op(enc(4, 1, 3, 3), 3), Some((2, true)), "XOR, LE");
        assert_eq!(
            wake_op(enc(8, 4, 5, 0), 0),
            Some((16, true)),
            "SET 1<<4, GE"
        );
        assert_eq!(
            wake_op(enc(1, 0xfff, 0, 1), 1),
            Some((0, true)),
            "oparg -1, old 1 == 1"
        );
        assert_eq!(wake_op(enc(5, 0, 0, 0), 0), None, "unknown op");
        assert_eq!(wake_op(enc(0, 0, 6, 0), 0), None, "unknown cmp");
    }

    #[test]
    fn membarrier_lists_and_accepts_its_commands() {
        let mut reg = 0;
        assert_eq!(membarrier(0, 0, &mut reg), Ok(0x7f));
        assert_eq!(
            membarrier(8, 0, &mut reg),
            Err(Errno::EPERM),
            "not registered"
        );
        assert_eq!(
            membarrier(32, 0, &mut reg),
            Err(Errno::EPERM),
            "not registered"
        );
        for cmd in [1, 2, 4, 16, 8, 64, 32] {
            assert_eq!(membarrier(cmd, 0, &mut reg), Ok(0), "command {cmd}");
        }
        assert_eq!(reg, 4 | 16 | 64);
        assert_eq!(
            membarrier(3, 0, &mut reg),
            Err(Errno::EINVAL),
            "two commands"
        );
        assert_eq!(
            membarrier(128, 0, &mut reg),
            Err(Errno::EINVAL),
            "RSEQ: not listed"
        );
        assert_eq!(membarrier(8, 1, &mut reg), Err(Errno::EINVAL), "flags");
    }
}
