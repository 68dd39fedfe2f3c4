//! fstat and newfstatat on the program's stdio (there is no file system
//! in the VM yet: paths do not exist).

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::{copy_from_user, copy_to_user};

/// Size of the x86-64 `struct stat`.
const STAT_SIZE: usize = 144;
/// `AT_EMPTY_PATH`: operate on the dirfd itself.
const AT_EMPTY_PATH: u64 = 0x1000;
/// `S_IFCHR | 0620`, what a terminal looks like, for an unknown host fd.
const DEFAULT_MODE: u32 = 0o020620;

/// The `struct stat` of stdio fd `fd`: the host fd's file type and
/// permission bits, one link, block size 4096, everything else zero.
fn stdio_stat(modes: &[u32; 3], fd: u64) -> KResult<[u8; STAT_SIZE]> {
    let mode = *modes.get(fd as usize).ok_or(Errno::EBADF)?;
    let mode = if mode == 0 { DEFAULT_MODE } else { mode };
    let mut st = [0u8; STAT_SIZE];
    st[16..24].copy_from_slice(&1u64.to_le_bytes()); // st_nlink
    st[24..28].copy_from_slice(&mode.to_le_bytes()); // st_mode
    st[56..64].copy_from_slice(&4096u64.to_le_bytes()); // st_blksize
    Ok(st)
}

/// fstat(fd, statbuf)
pub fn fstat<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
) -> KResult<i64> {
    let st = stdio_stat(&cx.p.stdio_modes, fd)?;
    copy_to_user(&mut cx.p.mm, cx.env, buf, &st)?;
    Ok(0)
}

/// newfstatat(dirfd, path, statbuf, flags): only `AT_EMPTY_PATH` with an
/// empty path (fstat of dirfd) finds anything.
pub fn newfstatat<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    dirfd: u64,
    path: u64,
    buf: u64,
    flags: u64,
) -> KResult<i64> {
    let mut first = [0u8; 1];
    copy_from_user(&mut cx.p.mm, cx.env, path, &mut first)?;
    if first[0] != 0 {
        return Err(Errno::ENOENT);
    }
    if flags & AT_EMPTY_PATH == 0 {
        return Err(Errno::ENOENT);
    }
    fstat(cx, dirfd, buf)
}
