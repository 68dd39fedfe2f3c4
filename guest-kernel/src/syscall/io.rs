//! read, write, writev: the program's stdio, served by the host.
//!
//! User buffers are turned into physical pieces and handed to the host in
//! one hypercall per call; no byte of them is copied in ring 0.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::copy_from_user;
use vmrun_contract::IoVec;

/// Most pieces one hypercall carries (a short read/write past that is
/// legal, and programs loop).
pub const MAX_PIECES: usize = 64;
/// Largest iovec count writev accepts (Linux's UIO_MAXIOV).
pub const UIO_MAXIOV: u64 = 1024;
/// Largest single transfer (Linux's MAX_RW_COUNT, 2 GiB less a page).
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

fn check_fd_out(fd: u64) -> KResult<()> {
    if fd == 1 || fd == 2 {
        Ok(())
    } else {
        Err(Errno::EBADF)
    }
}

/// read(fd, buf, count)
pub fn read<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    if fd != 0 {
        return Err(Errno::EBADF);
    }
    if count == 0 {
        return Ok(0);
    }
    let mut iov = [IoVec::default(); MAX_PIECES];
    let (n, _) =
        cx.p.mm
            .user_buffer_pieces(cx.env, buf, count.min(MAX_RW_COUNT), true, &mut iov)?;
    Ok(cx.host.read(fd, &iov[..n]))
}

/// write(fd, buf, count)
pub fn write<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    check_fd_out(fd)?;
    if count == 0 {
        return Ok(0);
    }
    let mut iov = [IoVec::default(); MAX_PIECES];
    let (n, _) =
        cx.p.mm
            .user_buffer_pieces(cx.env, buf, count.min(MAX_RW_COUNT), false, &mut iov)?;
    Ok(cx.host.write(fd, &iov[..n]))
}

/// writev(fd, iov, iovcnt): all buffers gathered into one host write (up to
/// [`MAX_PIECES`] pieces; the rest is a short write, as Linux may do).
pub fn writev<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    uiov: u64,
    cnt: u64,
) -> KResult<i64> {
    check_fd_out(fd)?;
    if cnt > UIO_MAXIOV {
        return Err(Errno::EINVAL);
    }
    let mut pieces = [IoVec::default(); MAX_PIECES];
    let mut used = 0;
    for i in 0..cnt {
        let (base, len) = user_iovec(cx, uiov + i * 16)?;
        if len == 0 {
            continue;
        }
        if used == MAX_PIECES {
            break;
        }
        let (n, done) =
            cx.p.mm
                .user_buffer_pieces(cx.env, base, len, false, &mut pieces[used..])?;
        used += n;
        if done < len {
            break;
        }
    }
    if used == 0 {
        return Ok(0);
    }
    Ok(cx.host.write(fd, &pieces[..used]))
}

fn user_iovec<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    va: u64,
) -> KResult<(u64, u64)> {
    let mut raw = [0u8; 16];
    copy_from_user(&mut cx.p.mm, cx.env, va, &mut raw)?;
    let base = u64::from_le_bytes(raw[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let len = u64::from_le_bytes(raw[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if len > MAX_RW_COUNT {
        return Err(Errno::EINVAL);
    }
    Ok((base, len))
}
