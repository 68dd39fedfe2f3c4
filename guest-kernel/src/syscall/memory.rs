//! mmap, munmap, mprotect, brk: thin decoders over `mm`.

use super::{Ctx, HostIo};
use crate::errno::KResult;
use crate::mm::phys::PhysMem;

/// mmap(addr, len, prot, flags, fd, offset)
pub fn mmap<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, a: [u64; 6]) -> KResult<i64> {
    let addr =
        cx.p.mm
            .mmap(cx.env, a[0], a[1], a[2], a[3], a[4] as i32 as i64, a[5])?;
    Ok(addr as i64)
}

/// munmap(addr, len)
pub fn munmap<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
) -> KResult<i64> {
    cx.p.mm.munmap(cx.env, addr, len).map(|_| 0)
}

/// mprotect(addr, len, prot)
pub fn mprotect<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
    prot: u64,
) -> KResult<i64> {
    cx.p.mm.mprotect(cx.env, addr, len, prot).map(|_| 0)
}

/// brk(addr): the new break, or the old one if it could not move.
pub fn brk<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, addr: u64) -> i64 {
    cx.p.mm.brk(cx.env, addr) as i64
}
