//! The kernel's own `/proc`: the calling process under `self` (and under
//! its pid), and a few machine-wide files. File contents are generated
//! when the file is opened, in exactly Linux's formats.

use alloc::vec::Vec;

use super::cache::PageCache;
use super::dev::dt;
use super::stat::{Attr, S_IFDIR, S_IFLNK, S_IFREG};
use crate::mm::space::Mm;
use crate::mm::vma::{Backing, Prot, VmFlags};

/// What a path under `/proc` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEntry {
    /// A directory, with its entries.
    Dir(Vec<(Vec<u8>, u8)>),
    /// A generated file.
    File(ProcFile),
    /// A symbolic link (target computed by the caller).
    Link(ProcLink),
}

/// Generated files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcFile {
    /// `self/maps`.
    Maps,
    /// `self/smaps`.
    Smaps,
    /// `self/smaps_rollup`.
    SmapsRollup,
    /// `self/comm`.
    Comm,
    /// `self/status`.
    Status,
    /// `self/cmdline`.
    Cmdline,
    /// `self/environ`.
    Environ,
    /// `self/auxv`.
    Auxv,
    /// `self/stat`.
    Stat,
    /// `cpuinfo`.
    Cpuinfo,
    /// `meminfo`.
    Meminfo,
    /// `sys/kernel/osrelease`.
    Osrelease,
    /// `version`.
    Version,
    /// `uptime`.
    Uptime,
    /// `mounts` and `self/mounts`.
    Mounts,
}

/// Symbolic links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcLink {
    /// `self` -> the pid.
    SelfDir,
    /// `self/exe`.
    Exe,
    /// `self/cwd`.
    Cwd,
    /// `self/root`.
    Root,
    /// `self/fd/N`.
    Fd(u64),
}

/// The guest's kernel release (what `uname -r` says).
pub const OSRELEASE: &[u8] = b"6.1.0-vmrun";

fn names(list: &[(&[u8], u8)]) -> Vec<(Vec<u8>, u8)> {
    list.iter().map(|(n, t)| (n.to_vec(), *t)).collect()
}

const PID_ENTRIES: [(&[u8], u8); 15] = [
    (b"auxv", dt::REG),
    (b"cmdline", dt::REG),
    (b"comm", dt::REG),
    (b"cwd", dt::LNK),
    (b"environ", dt::REG),
    (b"exe", dt::LNK),
    (b"fd", dt::DIR),
    (b"maps", dt::REG),
    (b"mounts", dt::REG),
    (b"root", dt::LNK),
    (b"smaps", dt::REG),
    (b"smaps_rollup", dt::REG),
    (b"stat", dt::REG),
    (b"status", dt::REG),
    (b"task", dt::DIR),
];

/// Whether [`lookup`] reads the fd list for `rest`: only under an `fd`
/// directory (a caller spares itself listing them otherwise).
pub fn reads_fds(rest: &[u8]) -> bool {
    rest.ends_with(b"/fd") || rest.windows(4).any(|w| w == b"/fd/")
}

/// Look up `rest` (the part after "/proc") for process `pid` with the
/// open fds `fds` (only read where [`reads_fds`] says).
pub fn lookup(rest: &[u8], pid: u64, fds: &[u64]) -> Option<ProcEntry> {
    let mut parts = rest.split(|&b| b == b'/').filter(|c| !c.is_empty());
    let Some(first) = parts.next() else {
        let mut root = names(&[
            (b"cpuinfo", dt::REG),
            (b"meminfo", dt::REG),
            (b"mounts", dt::LNK),
            (b"self", dt::LNK),
            (b"sys", dt::DIR),
            (b"uptime", dt::REG),
            (b"version", dt::REG),
        ]);
        root.insert(0, (dec(pid), dt::DIR));
        return Some(ProcEntry::Dir(root));
    };
    let second = parts.next();
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let is_pid = first == b"self" || first == dec(pid).as_slice();
    if first == b"self" && second.is_none() {
        return Some(ProcEntry::Link(ProcLink::SelfDir));
    }
    if is_pid {
        return pid_entry(second, third, fds);
    }
    Some(match (first, second, third) {
        (b"cpuinfo", None, _) => ProcEntry::File(ProcFile::Cpuinfo),
        (b"meminfo", None, _) => ProcEntry::File(ProcFile::Meminfo),
        (b"version", None, _) => ProcEntry::File(ProcFile::Version),
        (b"uptime", None, _) => ProcEntry::File(ProcFile::Uptime),
        (b"mounts", None, _) => ProcEntry::File(ProcFile::Mounts),
        (b"sys", None, _) => ProcEntry::Dir(names(&[(b"kernel", dt::DIR)])),
        (b"sys", Some(b"kernel"), None) => ProcEntry::Dir(names(&[(b"osrelease", dt::REG)])),
        (b"sys", Some(b"kernel"), Some(b"osrelease")) => ProcEntry::File(ProcFile::Osrelease),
        _ => return None,
    })
}

fn pid_entry(second: Option<&[u8]>, third: Option<&[u8]>, fds: &[u64]) -> Option<ProcEntry> {
    Some(match (second, third) {
        (None, _) => ProcEntry::Dir(names(&PID_ENTRIES)),
        (Some(b"fd"), None) => ProcEntry::Dir(fds.iter().map(|&f| (dec(f), dt::LNK)).collect()),
        (Some(b"fd"), Some(n)) => {
            let fd = parse_dec(n)?;
            fds.contains(&fd)
                .then_some(ProcEntry::Link(ProcLink::Fd(fd)))?
        }
        (Some(b"task"), None) => ProcEntry::Dir(Vec::new()),
        (Some(name), None) => match name {
            b"maps" => ProcEntry::File(ProcFile::Maps),
            b"smaps" => ProcEntry::File(ProcFile::Smaps),
            b"smaps_rollup" => ProcEntry::File(ProcFile::SmapsRollup),
            b"comm" => ProcEntry::File(ProcFile::Comm),
            b"status" => ProcEntry::File(ProcFile::Status),
            b"cmdline" => ProcEntry::File(ProcFile::Cmdline),
            b"environ" => ProcEntry::File(ProcFile::Environ),
            b"auxv" => ProcEntry::File(ProcFile::Auxv),
            b"stat" => ProcEntry::File(ProcFile::Stat),
            b"mounts" => ProcEntry::File(ProcFile::Mounts),
            b"exe" => ProcEntry::Link(ProcLink::Exe),
            b"cwd" => ProcEntry::Link(ProcLink::Cwd),
            b"root" => ProcEntry::Link(ProcLink::Root),
            _ => return None,
        },
        _ => return None,
    })
}

/// The attributes of a `/proc` entry (procfs: device 0:22, times at boot).
pub fn attr(e: &ProcEntry, ino: u64, boot_time: i64) -> Attr {
    let (mode, nlink) = match e {
        ProcEntry::Dir(_) => (S_IFDIR | 0o555, 2),
        ProcEntry::File(_) => (S_IFREG | 0o444, 1),
        ProcEntry::Link(_) => (S_IFLNK | 0o777, 1),
    };
    Attr {
        mode,
        ino,
        dev: (0, 22),
        rdev: (0, 0),
        nlink,
        size: 0,
        time: boot_time,
    }
}

/// Decimal digits of `v`.
pub fn dec(v: u64) -> Vec<u8> {
    let mut t = Text::default();
    t.dec(v);
    t.0
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

/// A growing text buffer with the number formats `/proc` uses.
#[derive(Default)]
pub struct Text(pub Vec<u8>);

impl Text {
    /// Append bytes.
    pub fn s(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    /// Append `v` in decimal.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            d[19 - n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        self.s(&d[20 - n..])
    }

    /// Append `v` in lower-case hex, zero-padded to `width` digits.
    pub fn hex(&mut self, v: u64, width: usize) -> &mut Self {
        let mut d = [0u8; 16];
        let mut n = 0;
        let mut x = v;
        loop {
            d[15 - n] = b"0123456789abcdef"[(x & 0xf) as usize];
            n += 1;
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        for _ in n..width {
            self.0.push(b'0');
        }
        self.s(&d[16 - n..])
    }

    /// Pad with spaces to `column`.
    pub fn pad(&mut self, column: usize, line_start: usize) -> &mut Self {
        while self.0.len() - line_start < column {
            self.0.push(b' ');
        }
        self
    }
}

/// An upper bound of the bytes `/proc/self/maps` of `mm` takes (each line
/// is at most 80 bytes and its path): with tens of thousands of areas the
/// text is megabytes, and the kernel heap may not hold it.
pub fn maps_size(mm: &Mm, cache: &PageCache) -> usize {
    let path = |v: &crate::mm::vma::Vma| match v.backing {
        Backing::File { file, .. } => cache.get(file).map_or(0, |i| i.path.len()),
        Backing::Anon => 0,
    };
    mm.vmas.iter().map(|v| 80 + path(v)).sum::<usize>() + 80
}

/// `/proc/self/maps` of `mm` (Linux's `show_map_vma`).
pub fn maps(mm: &Mm, cache: &PageCache) -> Vec<u8> {
    let mut t = Text::default();
    for v in mm.vmas.iter() {
        map_line(&mut t, mm, cache, v);
    }
    vsyscall_line(&mut t);
    t.0
}

/// The legacy vsyscall page's maps line, which the kernel emulates (xonly).
pub fn vsyscall_line(t: &mut Text) {
    let line = t.0.len();
    t.s(b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0");
    t.pad(72, line).s(b" [vsyscall]\n");
}

/// One maps line of area `v`.
pub fn map_line(t: &mut Text, mm: &Mm, cache: &PageCache, v: &crate::mm::vma::Vma) {
    {
        let line = t.0.len();
        let shared = v.flags.contains(VmFlags::SHARED);
        let (off, dev, ino, path) = match v.backing {
            Backing::File { file, offset, .. } => match cache.get(file) {
                Some(i) if i.special => (0, 0, 0, Some(&*i.path)),
                Some(i) => (offset, i.key.dev, i.key.ino, Some(&*i.path)),
                None => (offset, 0, 0, None),
            },
            Backing::Anon => (0, 0, 0, None),
        };
        let bit = |p: Prot, c: u8| if v.prot.contains(p) { c } else { b'-' };
        t.hex(v.start, 8).s(b"-").hex(v.end, 8).s(b" ");
        t.s(&[
            bit(Prot::READ, b'r'),
            bit(Prot::WRITE, b'w'),
            bit(Prot::EXEC, b'x'),
            if shared { b's' } else { b'p' },
        ]);
        let (major, minor) = decode_dev(dev);
        t.s(b" ")
            .hex(off, 8)
            .s(b" ")
            .hex(major, 2)
            .s(b":")
            .hex(minor, 2);
        t.s(b" ").dec(ino).s(b" ");
        let name: Option<&[u8]> = if let Some(p) = path {
            Some(p)
        } else if v.start < mm.brk && v.end > mm.start_brk {
            Some(b"[heap]")
        } else if v.start <= mm.start_stack && v.end >= mm.start_stack {
            Some(b"[stack]")
        } else {
            None
        };
        if let Some(n) = name {
            t.pad(72, line).s(b" ");
            for &c in n {
                if c == b'\n' {
                    t.s(b"\\012");
                } else {
                    t.0.push(c);
                }
            }
        }
        t.s(b"\n");
    }
}

/// Sizes of one area for smaps, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Mapped (resident) bytes.
    pub rss: u64,
    /// Of which written (dirty).
    pub dirty: u64,
    /// Of which anonymous (private frames, not the page cache).
    pub anon: u64,
    /// Of which in 2 MiB anonymous pages.
    pub anon_huge: u64,
}

/// The `VmFlags:` mnemonics of area `v` (Linux's `show_smap_vma_flags`).
pub fn vm_flags(v: &crate::mm::vma::Vma, special: bool) -> Vec<u8> {
    let mut t = Text::default();
    let shared = v.flags.contains(VmFlags::SHARED);
    for (on, name) in [
        (v.prot.contains(Prot::READ), &b"rd"[..]),
        (v.prot.contains(Prot::WRITE), b"wr"),
        (v.prot.contains(Prot::EXEC), b"ex"),
        (shared, b"sh"),
        (true, b"mr"),
        (!special || v.prot.contains(Prot::EXEC), b"mw"),
        (!special || v.prot.contains(Prot::EXEC), b"me"),
        (shared, b"ms"),
        (v.flags.contains(VmFlags::GROWSDOWN), b"gd"),
        (special, b"de"),
        (v.flags.contains(VmFlags::ACCOUNT), b"ac"),
    ] {
        if on {
            t.s(name).s(b" ");
        }
    }
    t.0
}

/// The usage lines of smaps (and smaps_rollup) for `u`.
pub fn smaps_fields(t: &mut Text, size: u64, u: &Usage, rollup: bool) {
    let kb = |t: &mut Text, name: &[u8], bytes: u64| {
        let line = t.0.len();
        t.s(name);
        t.pad(16, line);
        let v = proc_dec(bytes / 1024);
        for _ in v.len()..8 {
            t.s(b" ");
        }
        t.s(&v).s(b" kB\n");
    };
    if !rollup {
        kb(t, b"Size:", size);
        kb(t, b"KernelPageSize:", 4096);
        kb(t, b"MMUPageSize:", 4096);
    }
    kb(t, b"Rss:", u.rss);
    kb(t, b"Pss:", u.rss);
    kb(t, b"Pss_Dirty:", u.dirty);
    if rollup {
        kb(t, b"Pss_Anon:", u.anon);
        kb(t, b"Pss_File:", u.rss - u.anon);
        kb(t, b"Pss_Shmem:", 0);
    }
    kb(t, b"Shared_Clean:", 0);
    kb(t, b"Shared_Dirty:", 0);
    kb(t, b"Private_Clean:", u.rss - u.dirty);
    kb(t, b"Private_Dirty:", u.dirty);
    kb(t, b"Referenced:", u.rss);
    kb(t, b"Anonymous:", u.anon);
    kb(t, b"KSM:", 0);
    kb(t, b"LazyFree:", 0);
    kb(t, b"AnonHugePages:", u.anon_huge);
    for name in [
        &b"ShmemPmdMapped:"[..],
        b"FilePmdMapped:",
        b"Shared_Hugetlb:",
        b"Private_Hugetlb:",
        b"Swap:",
        b"SwapPss:",
        b"Locked:",
    ] {
        kb(t, name, 0);
    }
}

fn proc_dec(v: u64) -> Vec<u8> {
    dec(v)
}

/// Major and minor of an encoded `dev_t` (glibc's `major`/`minor`).
pub fn decode_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_and_pid_paths_resolve_the_same() {
        assert_eq!(
            lookup(b"/self/maps", 1, &[]),
            Some(ProcEntry::File(ProcFile::Maps))
        );
        assert_eq!(
            lookup(b"/1/maps", 1, &[]),
            Some(ProcEntry::File(ProcFile::Maps))
        );
        assert_eq!(lookup(b"/2/maps", 1, &[]), None);
        assert_eq!(
            lookup(b"/self", 1, &[]),
            Some(ProcEntry::Link(ProcLink::SelfDir))
        );
        assert_eq!(
            lookup(b"/self/fd/3", 1, &[0, 3]),
            Some(ProcEntry::Link(ProcLink::Fd(3)))
        );
        assert_eq!(lookup(b"/self/fd/4", 1, &[0, 3]), None);
        assert_eq!(
            lookup(b"/sys/kernel/osrelease", 1, &[]),
            Some(ProcEntry::File(ProcFile::Osrelease))
        );
    }

    #[test]
    fn the_fd_list_is_read_only_under_an_fd_directory() {
        for rest in [&b"/self/fd"[..], b"/self/fd/3", b"/1/fd/", b"/1/fd"] {
            assert!(reads_fds(rest), "{rest:?}");
        }
        for rest in [&b"/self/exe"[..], b"/self/fdinfo", b"/self/maps", b""] {
            assert!(!reads_fds(rest), "{rest:?}");
            assert_eq!(lookup(rest, 1, &[]), lookup(rest, 1, &[0, 1, 2]));
        }
    }

    #[test]
    fn text_formats_numbers_as_proc_does() {
        let mut t = Text::default();
        t.hex(0x400000, 8)
            .s(b" ")
            .hex(0, 8)
            .s(b" ")
            .hex(8, 2)
            .s(b" ")
            .dec(1234);
        assert_eq!(t.0, b"00400000 00000000 08 1234");
        assert_eq!(decode_dev(0x801), (8, 1));
    }
}
