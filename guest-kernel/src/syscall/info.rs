//! uname: what the program learns about "the kernel".

use super::{Ctx, HostIo};
use crate::errno::KResult;
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
