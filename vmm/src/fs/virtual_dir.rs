//! Virtual directories: the isolated root, ancestors of mount points that
//! no mount covers, and `/sys`. Read-only (mode 0555), listing `.`, `..`
//! and the names of the mount points (and virtual directories) in them;
//! the virtual root also lists `dev`, `proc` and `sys`. Inode numbers are
//! made up from the guest path.

use super::sys::{Errno, StatxBytes};
use super::view::View;
use super::walk::join;

/// Linux's DT_DIR.
const DT_DIR: u8 = 4;
/// Bytes of a `linux_dirent64` before its name.
const DIRENT_HEADER: usize = 19;

/// A made-up inode number for guest path `p` (FNV-1a, never 0).
pub fn fake_ino(p: &[u8]) -> u64 {
    let h = p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    h.max(1)
}

/// The statx of the virtual directory at `guest`.
pub fn statx(guest: &[u8]) -> StatxBytes {
    let mut b = [0u8; 256];
    b[0..4].copy_from_slice(&libc::STATX_BASIC_STATS.to_le_bytes());
    b[4..8].copy_from_slice(&4096u32.to_le_bytes());
    b[16..20].copy_from_slice(&2u32.to_le_bytes());
    b[28..30].copy_from_slice(&((libc::S_IFDIR | 0o555) as u16).to_le_bytes());
    b[32..40].copy_from_slice(&fake_ino(guest).to_le_bytes());
    let mut out = [0u64; 32];
    for (i, w) in out.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *w = u64::from_le_bytes(word);
    }
    out
}

/// The entries of the virtual directory at `guest`: (name, inode).
fn entries(view: &View, guest: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let parent = match guest.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/".to_vec(),
        Some(i) => guest[..i].to_vec(),
    };
    let mut names = view.children_of(guest);
    if guest == b"/" {
        names.extend([b"dev".to_vec(), b"proc".to_vec(), b"sys".to_vec()]);
        names.sort();
        names.dedup();
    }
    let mut v = vec![
        (b".".to_vec(), fake_ino(guest)),
        (b"..".to_vec(), fake_ino(&parent)),
    ];
    v.extend(names.into_iter().map(|n| {
        let ino = fake_ino(&join(guest, &n));
        (n, ino)
    }));
    v
}

/// `linux_dirent64` records of the virtual directory at `guest` from
/// cookie `cookie` into `buf`: (bytes written, next cookie). EINVAL if
/// `buf` cannot hold the first one.
pub fn getdents(
    view: &View,
    guest: &[u8],
    cookie: u64,
    buf: &mut [u8],
) -> Result<(usize, u64), Errno> {
    let mut at = 0;
    let mut next = cookie;
    for (name, ino) in entries(view, guest).into_iter().skip(cookie as usize) {
        let reclen = (DIRENT_HEADER + name.len() + 1).next_multiple_of(8);
        if at + reclen > buf.len() {
            if at == 0 {
                return Err(libc::EINVAL);
            }
            break;
        }
        next += 1;
        let rec = &mut buf[at..at + reclen];
        rec.fill(0);
        rec[0..8].copy_from_slice(&ino.to_le_bytes());
        rec[8..16].copy_from_slice(&next.to_le_bytes());
        rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
        rec[18] = DT_DIR;
        rec[DIRENT_HEADER..DIRENT_HEADER + name.len()].copy_from_slice(&name);
        at += reclen;
    }
    Ok((at, next))
}
