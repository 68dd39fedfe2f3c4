//! Paths as system calls receive them: copied in from user memory, and
//! sorted into those the kernel serves itself (`/dev`, `/proc`) and those
//! the host resolves inside the guest's view.

use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::mm::space::{Mm, MmEnv};
use crate::uaccess::{copy_from_user, first_nul};
use vmrun_contract::fs::PATH_MAX;
use vmrun_contract::layout::PAGE_SIZE;

/// Copy the NUL-terminated string at user `va` (Linux's
/// `strncpy_from_user` for paths): ENAMETOOLONG if no NUL within
/// `PATH_MAX`, EFAULT for a bad pointer, ENOENT for an empty path.
pub fn user_path<M: PhysMem>(mm: &mut Mm, env: &mut MmEnv<'_, M>, va: u64) -> KResult<Vec<u8>> {
    let p = user_string(mm, env, va, PATH_MAX)?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(p)
}

/// Whether the NUL-terminated user string at `va` is `s` (no NUL in it,
/// at most 15 bytes; "" for an empty one), read in place when it lies in one page that
/// [`Mm::mapped_user_page`] finds: what [`user_path`] would give, without
/// its copy (false also when that cannot tell: ask `user_path`). The
/// bytes are compared as two words.
#[inline]
pub fn user_string_is<M: PhysMem>(mm: &Mm, mem: &M, va: u64, s: &[u8]) -> bool {
    let (mut want, mut got) = ([0u8; 16], [0u8; 16]);
    let n = s.len() + 1;
    if n > want.len() || n as u64 > PAGE_SIZE - (va & (PAGE_SIZE - 1)) {
        return false;
    }
    let Some(pa) = mm.mapped_user_page(mem, va, false) else {
        return false;
    };
    want[..s.len()].copy_from_slice(s);
    mem.read_bytes(pa, &mut got[..n]);
    let words = |b: [u8; 16]| u128::from_le_bytes(b);
    words(got) == words(want)
}

/// The NUL-terminated user string at `va` read into `buf` in place, 64
/// bytes at a time, without its NUL: when it ends within the first
/// `pieces` pieces of 64 bytes of `buf` and within `va`'s page, mapped
/// readable (a system call's short path reads a path straight into the
/// host's request so). None, with nothing changed but `buf`, otherwise
/// ([`user_path`] reads it).
#[inline(always)]
pub fn user_string_in_page<'a, M: PhysMem>(
    mm: &Mm,
    mem: &M,
    va: u64,
    buf: &'a mut [u8],
    pieces: usize,
) -> Option<&'a [u8]> {
    let pa = mm.mapped_user_page(mem, va, false)?;
    let room = PAGE_SIZE - (va & (PAGE_SIZE - 1));
    for i in 0..pieces {
        if room < 64 * (i as u64 + 1) {
            return None;
        }
        let piece: &mut [u8; 64] = buf.get_mut(64 * i..64 * (i + 1))?.try_into().ok()?;
        mem.read_bytes(pa + 64 * i as u64, piece);
        if let Some(n) = first_nul(piece) {
            return Some(&buf[..64 * i + n]);
        }
    }
    None
}

/// A NUL-terminated user string of fewer than `max` bytes, without its NUL
/// (an empty one is allowed). ENAMETOOLONG when longer.
pub fn user_string<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    va: u64,
    max: usize,
) -> KResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = va;
    // Copy up to the end of each page in chunks of 64 bytes: short paths
    // cost one small copy, and a string ending before an unmapped page is
    // never read past.
    loop {
        let to_page_end = (PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize;
        let n = to_page_end.min(64).min(max + 1 - out.len());
        let mut chunk = [0u8; 64];
        copy_from_user(mm, env, cur, &mut chunk[..n])?;
        if let Some(z) = first_nul(&chunk).filter(|&z| z < n) {
            if out.is_empty() {
                // The usual short string: one allocation of its size (none
                // for an empty one, as `fstatat(fd, "", AT_EMPTY_PATH)`).
                return Ok(match z {
                    0 => Vec::new(),
                    _ => chunk[..z].to_vec(),
                });
            }
            out.extend_from_slice(&chunk[..z]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() >= max {
            return Err(Errno::ENAMETOOLONG);
        }
        cur += n as u64;
    }
}

/// Where a path leads, as far as the kernel can tell without the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served<'a> {
    /// Under `/dev`: the rest after "/dev" ("" or "/name...").
    Dev(&'a [u8]),
    /// Under `/proc`: the rest after "/proc".
    Proc(&'a [u8]),
    /// Elsewhere: the host resolves it.
    Host,
}

/// Lexically normalise an absolute path: no `.`, no empty components, `..`
/// applied (stopping at `/`). Only for paths known to have no symlinks
/// before the point that matters (the kernel's own trees have none that
/// lead out).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for c in &parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Whether `path` is absolute and already normal ([`normalize`] would
/// return it unchanged): no empty, `.` or `..` component, no trailing `/`
/// (but `/` itself).
pub fn is_normal(path: &[u8]) -> bool {
    let Some((b'/', rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // The length of the current component, and how many of its bytes
    // are dots (equal for "", "." and "..").
    let (mut len, mut dots) = (0usize, 0usize);
    for &b in rest {
        if b == b'/' {
            if len == dots && len <= 2 {
                return false;
            }
            (len, dots) = (0, 0);
        } else {
            len += 1;
            dots += usize::from(b == b'.');
        }
    }
    !(len == dots && len <= 2)
}

/// The last component of `path`: what follows its last `/` (all of it if
/// none). The search runs from the end eight bytes at a time (a byte loop
/// costs seven instructions per byte of a name like `hello_static`), the
/// few bytes at the front one at a time.
pub fn basename(path: &[u8]) -> &[u8] {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const SLASHES: u64 = u64::from_le_bytes([b'/'; 8]);
    let mut end = path.len();
    while let Some(word) = end.checked_sub(8).and_then(|s| path.get(s..end)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w) ^ SLASHES;
        // The high bit of each byte that is zero in `x` (a `/` in the
        // word), without the borrows of the shorter test that would also
        // flag a byte above a zero one.
        let slashes = !(((x & !HIGH) + !HIGH) | x) & HIGH;
        if slashes != 0 {
            let last = 7 - slashes.leading_zeros() as usize / 8;
            return &path[end - 8 + last + 1..];
        }
        end -= 8;
    }
    let head = &path[..end];
    head.iter()
        .rposition(|&b| b == b'/')
        .map_or(path, |i| &path[i + 1..])
}

/// Join `rel` onto directory `dir` (both guest paths). The result is
/// allocated once at its final size: growing a copy of `dir` by the
/// separator and `rel` reallocates twice, the costliest part of a
/// relative `open`.
pub fn join(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    if rel.first() == Some(&b'/') {
        return rel.to_vec();
    }
    let sep = dir.last() != Some(&b'/');
    let mut p = Vec::with_capacity(dir.len() + usize::from(sep) + rel.len());
    p.extend_from_slice(dir);
    if sep {
        p.push(b'/');
    }
    p.extend_from_slice(rel);
    p
}

/// Which tree an absolute, normalised path lies in (the rest borrowed from
/// it: sorting a path allocates nothing).
pub fn served(canonical: &[u8]) -> Served<'_> {
    if let Some(rest) = under(canonical, b"/dev") {
        // `/dev/shm` is the host's: a directory the VMM makes for the run
        // and shows there read-write (Linux: a tmpfs).
        if under(rest, b"/shm").is_some() {
            return Served::Host;
        }
        return Served::Dev(rest);
    }
    match under(canonical, b"/proc") {
        Some(rest) => Served::Proc(rest),
        None => Served::Host,
    }
}

/// Whether the absolute `path` may lie in `/dev` or `/proc`: its first
/// component other than `.` starts with `dev` or `proc` (or with a dot, or
/// it has none). When not, normalising it cannot lead there (and
/// [`served_locally`] leaves a path with `..` to the host), so the host
/// resolves it as it is: a look at its first bytes instead of a scan of
/// all of them.
pub fn maybe_served(path: &[u8]) -> bool {
    let mut rest = path;
    while let [b'/', r @ ..] | [b'.', b'/', r @ ..] = rest {
        rest = r;
    }
    matches!(
        rest,
        [] | [b'.', ..] | [b'd', b'e', b'v', ..] | [b'p', b'r', b'o', b'c', ..]
    )
}

/// What follows `root` in `path` if `path` is `root` or lies below it.
fn under<'a>(path: &'a [u8], root: &[u8]) -> Option<&'a [u8]> {
    path.strip_prefix(root)
        .filter(|rest| rest.first().is_none_or(|&b| b == b'/'))
}

/// Whether the kernel may sort `path` (relative to `cwd`) itself: the
/// joined path contains no `..` (which could climb out of a symlinked
/// directory) and lies under `/dev` or `/proc`, whose trees the host never
/// holds. Returns the normalised path then (for [`served`] to sort).
pub fn served_locally(cwd: &[u8], path: &[u8]) -> Option<Vec<u8>> {
    let joined = join(cwd, path);
    if joined.split(|&b| b == b'/').any(|c| c == b"..") {
        return None;
    }
    let n = normalize(&joined);
    (served(&n) != Served::Host).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basename_is_what_follows_the_last_slash() {
        let cases: [(&[u8], &[u8]); 12] = [
            (b"", b""),
            (b"hello", b"hello"),
            (b"/", b""),
            (b"/a", b"a"),
            (b"a/", b""),
            (b"/bin/busybox", b"busybox"),
            (
                b"/work/target/release/build/out/hello_static",
                b"hello_static",
            ),
            (b"/a/.hidden", b".hidden"),
            (b"/a/./b//c", b"c"),
            (b"/x/01234567", b"01234567"),
            (b"/x/0123456/", b""),
            (
                b"no_slash_but_longer_than_sixteen",
                b"no_slash_but_longer_than_sixteen",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(basename(p), want, "{p:?}");
        }
        // Every position of the last slash against the word boundaries,
        // with bytes around it that the shorter zero-byte test misreads.
        for len in 0..40 {
            for at in 0..len {
                let mut p: Vec<u8> = (0..len)
                    .map(|i| [b'.', 0x01, 0xaf, 0x30, b'x'][i % 5])
                    .collect();
                p[at] = b'/';
                let want = &p[p.iter().rposition(|&b| b == b'/').unwrap() + 1..];
                assert_eq!(basename(&p), want, "{p:?}");
            }
        }
    }

    #[test]
    fn first_nul_finds_the_first_zero_byte_in_any_word() {
        for at in 0..64 {
            // Bytes that the zero-byte test could misread around the NUL.
            let mut chunk = [0x01u8; 64];
            chunk[..at].iter_mut().enumerate().for_each(|(i, b)| {
                *b = [0x01, 0x80, 0xff, b'/'][i % 4];
            });
            chunk[at] = 0;
            assert_eq!(first_nul(&chunk), Some(at), "{at}");
        }
        assert_eq!(first_nul(&[0x01; 64]), None);
    }

    #[test]
    fn normalize_removes_dots_and_stops_at_root() {
        assert_eq!(normalize(b"/a/./b//c/"), b"/a/b/c");
        assert_eq!(normalize(b"/a/../../b"), b"/b");
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b"/.."), b"/");
    }

    #[test]
    fn normal_paths_are_those_normalize_leaves_alone() {
        for p in [&b"/"[..], b"/proc/self/exe", b"/a", b"/a.b/..c/.d/.../x."] {
            assert!(is_normal(p), "{p:?}");
            assert_eq!(normalize(p), p);
        }
        for p in [
            &b""[..],
            b"a/b",
            b"//",
            b"/a/",
            b"/a//b",
            b"/./a",
            b"/../a",
            b"/a/..",
            b"/a/.",
        ] {
            assert!(!is_normal(p), "{p:?}");
        }
    }

    #[test]
    fn dev_and_proc_paths_are_served_by_the_kernel() {
        assert_eq!(served(b"/dev/null"), Served::Dev(b"/null"));
        assert_eq!(served(b"/dev"), Served::Dev(b""));
        assert_eq!(served(b"/device"), Served::Host);
        assert_eq!(served(b"/dev/shm"), Served::Host);
        assert_eq!(served(b"/dev/shm/sem.x"), Served::Host);
        assert_eq!(served(b"/dev/shmx"), Served::Dev(b"/shmx"));
        assert_eq!(served(b"/proc/self/maps"), Served::Proc(b"/self/maps"));
        assert_eq!(served(b"/proc"), Served::Proc(b""));
        assert_eq!(served(b"/procfs/x"), Served::Host);
        assert_eq!(served(b"/etc/passwd"), Served::Host);
    }

    #[test]
    fn only_paths_whose_first_component_is_dev_or_proc_may_be_served() {
        for p in [
            &b"/dev/null"[..],
            b"/proc",
            b"//proc/self",
            b"/./dev/../etc",
            b"/.//./proc/x",
            b"/",
            b"/.",
            b"/..",
            b"/../proc",
            // Looked at further (not served: see `served`).
            b"/device",
            b"/procfs/x",
        ] {
            assert!(maybe_served(p), "{p:?}");
        }
        for p in [
            &b"/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"/./etc/dev",
            b"/usr/../proc/self",
        ] {
            assert!(!maybe_served(p), "{p:?}");
            assert_eq!(served_locally(b"/", p), None, "{p:?}");
        }
    }

    #[test]
    fn relative_paths_join_the_cwd_and_dotdot_goes_to_the_host() {
        assert_eq!(
            served_locally(b"/proc/self", b"maps"),
            Some(b"/proc/self/maps".to_vec())
        );
        assert_eq!(served_locally(b"/dev", b"../etc"), None);
        assert_eq!(
            served_locally(b"/home", b"/dev//zero"),
            Some(b"/dev/zero".to_vec())
        );
        assert_eq!(served_locally(b"/home", b"x"), None);
    }

    #[test]
    fn join_puts_one_slash_between_and_keeps_an_absolute_rel() {
        let cases: [(&[u8], &[u8], &[u8]); 5] = [
            (b"/work", b"f.tmp", b"/work/f.tmp"),
            (b"/", b"f", b"/f"),
            (b"/a/", b"b/c", b"/a/b/c"),
            (b"/a", b"/etc/x", b"/etc/x"),
            (b"/a", b"", b"/a/"),
        ];
        for (dir, rel, want) in cases {
            let got = join(dir, rel);
            assert_eq!(got, want, "{dir:?} + {rel:?}");
            assert_eq!(got.capacity(), got.len(), "{dir:?} + {rel:?}");
        }
    }
}
