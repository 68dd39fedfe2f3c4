//! `struct stat` and `struct statx` as Linux x86-64 lays them out.
//!
//! The host answers with a raw `struct statx`; `stat`, `lstat`, `fstat`
//! and `newfstatat` turn it into a `struct stat` the way Linux's
//! `cp_new_stat` does. Nodes the kernel serves itself get a [`Attr`]
//! turned into either form.

/// File type mask and types (`S_IF*`).
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// Size of `struct stat`.
pub const STAT_SIZE: usize = 144;
/// Size of `struct statx`.
pub const STATX_SIZE: usize = 256;

/// The attributes of a node the kernel serves itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    /// `st_mode`.
    pub mode: u32,
    /// `st_ino`.
    pub ino: u64,
    /// Device major, minor.
    pub dev: (u32, u32),
    /// `st_rdev` major, minor.
    pub rdev: (u32, u32),
    /// Links.
    pub nlink: u32,
    /// Size.
    pub size: u64,
    /// Time (all three), seconds.
    pub time: i64,
}

/// Linux's `new_encode_dev`.
pub fn encode_dev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

fn u32_at(b: &[u8; STATX_SIZE], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8; STATX_SIZE], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

#[inline(always)]
fn put(st: &mut [u8], off: usize, v: u64) {
    st[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
fn put32(st: &mut [u8], off: usize, v: u32) {
    st[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// The statx words of a request as bytes.
pub fn statx_bytes(words: &[u64; 32]) -> [u8; STATX_SIZE] {
    let mut b = [0u8; STATX_SIZE];
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// Fields of a `struct statx` the kernel itself uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatxInfo {
    /// `stx_mode`.
    pub mode: u32,
    /// `stx_ino`.
    pub ino: u64,
    /// `st_dev` encoded.
    pub dev: u64,
    /// `stx_size`.
    pub size: u64,
    /// `stx_mtime`.
    pub mtime: (i64, u32),
}

/// Read the fields the kernel uses out of a raw `struct statx`.
pub fn statx_info(b: &[u8; STATX_SIZE]) -> StatxInfo {
    StatxInfo {
        mode: u32::from(b[28]) | (u32::from(b[29]) << 8),
        ino: u64_at(b, 32),
        dev: encode_dev(u32_at(b, 136), u32_at(b, 140)),
        size: u64_at(b, 40),
        mtime: (u64_at(b, 112) as i64, u32_at(b, 120)),
    }
}

/// [`statx_info`] of the `struct statx` words the host hands back, read
/// in place: an open needs these fields only, not the bytes made first.
pub fn statx_info_words(w: &[u64; 32]) -> StatxInfo {
    StatxInfo {
        mode: (w[3] >> 32) as u32 & 0xffff,
        ino: w[4],
        dev: encode_dev(w[17] as u32, (w[17] >> 32) as u32),
        size: w[5],
        mtime: (w[14] as i64, w[15] as u32),
    }
}

/// `struct stat` from a raw `struct statx` (Linux's `cp_new_stat`).
pub fn stat_from_statx(b: &[u8; STATX_SIZE]) -> [u8; STAT_SIZE] {
    let mut st = [0u8; STAT_SIZE];
    put(&mut st, 0, encode_dev(u32_at(b, 136), u32_at(b, 140)));
    put(&mut st, 8, u64_at(b, 32));
    put(&mut st, 16, u64::from(u32_at(b, 16)));
    put32(&mut st, 24, u32::from(b[28]) | (u32::from(b[29]) << 8));
    put32(&mut st, 28, u32_at(b, 20));
    put32(&mut st, 32, u32_at(b, 24));
    put(&mut st, 40, encode_dev(u32_at(b, 128), u32_at(b, 132)));
    put(&mut st, 48, u64_at(b, 40));
    put(&mut st, 56, u64::from(u32_at(b, 4)));
    put(&mut st, 64, u64_at(b, 48));
    // atime, mtime, ctime: seconds then nanoseconds.
    for (k, src) in [64usize, 112, 96].into_iter().enumerate() {
        put(&mut st, 72 + 16 * k, u64_at(b, src));
        put(&mut st, 80 + 16 * k, u64::from(u32_at(b, src + 8)));
    }
    st
}

/// [`stat_from_statx`] of the `struct statx` words the host hands back,
/// read in place (glibc's `fstat` of each library ld.so opens lands here):
/// no statx bytes are made first and parsed.
pub fn stat_from_statx_words(w: &[u64; 32]) -> [u8; STAT_SIZE] {
    let lo = |k: usize| w[k] as u32;
    let hi = |k: usize| (w[k] >> 32) as u32;
    let mut st = [0u8; STAT_SIZE];
    put(&mut st, 0, encode_dev(lo(17), hi(17)));
    put(&mut st, 8, w[4]);
    put(&mut st, 16, u64::from(lo(2)));
    put32(&mut st, 24, hi(3) & 0xffff);
    put32(&mut st, 28, hi(2));
    put32(&mut st, 32, lo(3));
    put(&mut st, 40, encode_dev(lo(16), hi(16)));
    put(&mut st, 48, w[5]);
    put(&mut st, 56, u64::from(hi(0)));
    put(&mut st, 64, w[6]);
    // atime, mtime, ctime: seconds then nanoseconds.
    for (k, src) in [8usize, 14, 12].into_iter().enumerate() {
        put(&mut st, 72 + 16 * k, w[src]);
        put(&mut st, 80 + 16 * k, u64::from(lo(src + 1)));
    }
    st
}

/// `struct statx` of a kernel node.
pub fn statx_of(a: &Attr) -> [u8; STATX_SIZE] {
    let mut b = [0u8; STATX_SIZE];
    put32(&mut b, 0, 0x7ff); // STATX_BASIC_STATS
    put32(&mut b, 4, 4096);
    put32(&mut b, 16, a.nlink);
    b[28..30].copy_from_slice(&(a.mode as u16).to_le_bytes());
    put(&mut b, 32, a.ino);
    put(&mut b, 40, a.size);
    put(&mut b, 48, a.size.div_ceil(512));
    for ts in [64usize, 80, 96, 112] {
        put(&mut b, ts, a.time as u64);
    }
    put32(&mut b, 128, a.rdev.0);
    put32(&mut b, 132, a.rdev.1);
    put32(&mut b, 136, a.dev.0);
    put32(&mut b, 140, a.dev.1);
    b
}

/// `struct stat` of a kernel node: the fields of [`stat_from_statx`] of
/// [`statx_of`], written directly (fstat of stdout is in every program's
/// start; inlined, so that an `Attr` of constants folds).
#[inline(always)]
pub fn stat_of(a: &Attr) -> [u8; STAT_SIZE] {
    let mut st = [0u8; STAT_SIZE];
    put(&mut st, 0, encode_dev(a.dev.0, a.dev.1));
    put(&mut st, 8, a.ino);
    put(&mut st, 16, u64::from(a.nlink));
    put32(&mut st, 24, u32::from(a.mode as u16));
    put(&mut st, 40, encode_dev(a.rdev.0, a.rdev.1));
    put(&mut st, 48, a.size);
    put(&mut st, 56, 4096);
    put(&mut st, 64, a.size.div_ceil(512));
    for k in 0..3 {
        put(&mut st, 72 + 16 * k, a.time as u64);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statx_info_of_the_words_is_that_of_their_bytes() {
        let w: [u64; 32] =
            core::array::from_fn(|k| 0x0123_4567_89ab_cdef_u64.rotate_left(k as u32 * 5));
        assert_eq!(statx_info_words(&w), statx_info(&statx_bytes(&w)));
    }

    #[test]
    fn stat_of_the_words_is_that_of_their_bytes() {
        let w: [u64; 32] =
            core::array::from_fn(|k| 0xfedc_ba98_7654_3210_u64.rotate_left(k as u32 * 7));
        assert_eq!(stat_from_statx_words(&w), stat_from_statx(&statx_bytes(&w)));
    }

    #[test]
    fn encode_dev_matches_linux_for_small_and_large_numbers() {
        assert_eq!(encode_dev(8, 1), 0x801);
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(259, 0x12345), 0x12310345);
    }

    #[test]
    fn stat_from_statx_places_every_field() {
        let a = Attr {
            mode: S_IFREG | 0o644,
            ino: 77,
            dev: (8, 2),
            rdev: (0, 0),
            nlink: 3,
            size: 5000,
            time: 1_700_000_000,
        };
        let st = stat_of(&a);
        let w = |o: usize| u64::from_le_bytes(st[o..o + 8].try_into().unwrap());
        assert_eq!(w(0), 0x802);
        assert_eq!(w(8), 77);
        assert_eq!(w(16), 3);
        assert_eq!(w(24) as u32, S_IFREG | 0o644);
        assert_eq!(w(48), 5000);
        assert_eq!(w(56), 4096);
        assert_eq!(w(64), 10);
        assert_eq!(w(88), 1_700_000_000);
        let info = statx_info(&statx_of(&a));
        assert_eq!((info.ino, info.size, info.dev), (77, 5000, 0x802));
        assert_eq!(info.mode, S_IFREG | 0o644);
    }

    #[test]
    fn stat_of_is_stat_from_statx_of_the_statx() {
        let attrs = [
            Attr {
                mode: S_IFCHR | 0o620,
                nlink: 1,
                ..Attr::default()
            },
            Attr {
                mode: S_IFREG | 0o644,
                ino: u64::MAX,
                dev: (259, 0x12345),
                rdev: (0xfff_fff, 0xfff_ffff),
                nlink: u32::MAX,
                size: u64::MAX,
                time: -1,
            },
        ];
        for a in attrs {
            assert_eq!(stat_of(&a), stat_from_statx(&statx_of(&a)), "{a:?}");
        }
    }
}
