//! uname: what the program learns about "the kernel"; the ids of the
//! guest's one user, root.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::copy_to_user;

/// Length of each field of `struct utsname`.
const FIELD: usize = 65;

/// The fields of `struct utsname`, in order.
pub const UTSNAME: [&[u8]; 6] = [
    b"Linux",
    b"vmrun",
    b"6.1.0-vmrun",
    b"#1 vmrun guest kernel",
    b"x86_64",
    b"(none)",
];

/// uname(buf)
pub fn uname<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, buf: u64) -> KResult<i64> {
    let mut u = [0u8; FIELD * 6];
    for (i, f) in UTSNAME.iter().enumerate() {
        u[i * FIELD..i * FIELD + f.len()].copy_from_slice(f);
    }
    copy_to_user(&mut cx.p.mm, cx.env, buf, &u)?;
    Ok(0)
}

/// getgroups(size, list): the guest's one user, root, is in no
/// supplementary group: 0 whatever the list (EINVAL for a negative size,
/// as Linux).
pub fn getgroups(size: u64) -> KResult<i64> {
    if (size as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// getresuid(ruid, euid, suid) and getresgid(rgid, egid, sgid): root's
/// 0 in each of the three `u32`s (EFAULT for a bad pointer, as Linux, the
/// ones before it written).
pub fn getres_ids<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    ids: [u64; 3],
) -> KResult<i64> {
    for at in ids {
        copy_to_user(&mut cx.p.mm, cx.env, at, &0u32.to_le_bytes())?;
    }
    Ok(0)
}

/// sysinfo(info): the guest's uptime and RAM, one process.
pub fn sysinfo<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, buf: u64) -> KResult<i64> {
    let uptime = cx.host.now_ns(super::time::Clock::Monotonic) / 1_000_000_000;
    let total = cx.env.frames.total() * 4096;
    let free = total - cx.env.frames.in_use() * 4096;
    let mut b = [0u8; 112];
    b[0..8].copy_from_slice(&uptime.to_le_bytes());
    b[32..40].copy_from_slice(&total.to_le_bytes());
    b[40..48].copy_from_slice(&free.to_le_bytes());
    b[80..82].copy_from_slice(&1u16.to_le_bytes()); // procs
    b[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
    copy_to_user(&mut cx.p.mm, cx.env, buf, &b)?;
    Ok(0)
}

/// sched_getaffinity(pid, len, mask): one CPU.
pub fn sched_getaffinity<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    pid: u64,
    len: u64,
    mask: u64,
) -> KResult<i64> {
    if pid != 0 && pid != cx.p.pid {
        return Err(crate::errno::Errno::ESRCH);
    }
    if len < 8 {
        return Err(crate::errno::Errno::EINVAL);
    }
    copy_to_user(&mut cx.p.mm, cx.env, mask, &1u64.to_le_bytes())?;
    Ok(8)
}

/// prctl(option, ...): the thread name and the dumpable flag.
pub fn prctl<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    option: u64,
    arg: u64,
) -> KResult<i64> {
    const PR_GET_DUMPABLE: u64 = 3;
    const PR_SET_DUMPABLE: u64 = 4;
    const PR_SET_NAME: u64 = 15;
    const PR_GET_NAME: u64 = 16;
    match option {
        PR_GET_DUMPABLE => Ok(1),
        PR_SET_DUMPABLE if arg <= 1 => Ok(0),
        PR_SET_NAME => {
            let name = crate::fs::path::user_string(&mut cx.p.mm, cx.env, arg, 4096)?;
            cx.p.set_comm(&name);
            Ok(0)
        }
        PR_GET_NAME => {
            let comm = cx.p.comm();
            copy_to_user(&mut cx.p.mm, cx.env, arg, &comm)?;
            Ok(0)
        }
        _ => Err(crate::errno::Errno::EINVAL),
    }
}

/// statfs/fstatfs: one file system description for every file (Linux's
/// ext4 magic, 4 KiB blocks, 255-byte names; sizes from the guest's RAM).
pub fn statfs_buf(total_frames: u64, free_frames: u64) -> [u8; 120] {
    let mut b = [0u8; 120];
    let put =
        |b: &mut [u8; 120], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, 0xef53); // f_type
    put(&mut b, 8, 4096); // f_bsize
    put(&mut b, 16, total_frames); // f_blocks
    put(&mut b, 24, free_frames); // f_bfree
    put(&mut b, 32, free_frames); // f_bavail
    put(&mut b, 40, 1 << 20); // f_files
    put(&mut b, 48, 1 << 19); // f_ffree
    put(&mut b, 64, 255); // f_namelen
    put(&mut b, 72, 4096); // f_frsize
    b
}
