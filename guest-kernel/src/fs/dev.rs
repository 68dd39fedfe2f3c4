//! The kernel's own `/dev`: null, zero, full, random, urandom and tty, and
//! the `stdin`/`stdout`/`stderr`/`fd` links into `/proc/self/fd`. Its
//! `shm` is the host's (see [`super::path::served`]): only listed here.

use super::stat::{Attr, S_IFCHR, S_IFDIR, S_IFLNK};

/// A device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevNode {
    /// `/dev/null`: reads end at once, writes vanish.
    Null,
    /// `/dev/zero`: reads zeros, writes vanish.
    Zero,
    /// `/dev/full`: reads zeros, writes fail with ENOSPC.
    Full,
    /// `/dev/random`: the host's randomness.
    Random,
    /// `/dev/urandom`: the same.
    Urandom,
    /// `/dev/tty`: the host's terminal (vmrun's stdin for reading, its
    /// stderr for writing).
    Tty,
}

/// `d_type` values.
pub mod dt {
    /// Character device.
    pub const CHR: u8 = 2;
    /// Directory.
    pub const DIR: u8 = 4;
    /// Regular file.
    pub const REG: u8 = 8;
    /// Symbolic link.
    pub const LNK: u8 = 10;
}

/// The names in `/dev`, in listing order, with their types.
pub const ENTRIES: [(&[u8], u8); 11] = [
    (b"fd", dt::LNK),
    (b"full", dt::CHR),
    (b"null", dt::CHR),
    (b"random", dt::CHR),
    (b"shm", dt::DIR),
    (b"stderr", dt::LNK),
    (b"stdin", dt::LNK),
    (b"stdout", dt::LNK),
    (b"tty", dt::CHR),
    (b"urandom", dt::CHR),
    (b"zero", dt::CHR),
];

/// What a name under `/dev` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevEntry {
    /// `/dev` itself.
    Dir,
    /// A device.
    Node(DevNode),
    /// A symbolic link with this target.
    Link(&'static [u8]),
}

impl DevNode {
    /// Its path.
    pub fn path(&self) -> &'static [u8] {
        match self {
            DevNode::Null => b"/dev/null",
            DevNode::Zero => b"/dev/zero",
            DevNode::Full => b"/dev/full",
            DevNode::Random => b"/dev/random",
            DevNode::Urandom => b"/dev/urandom",
            DevNode::Tty => b"/dev/tty",
        }
    }

    /// Device major and minor, as Linux numbers them.
    pub fn rdev(&self) -> (u32, u32) {
        match self {
            DevNode::Null => (1, 3),
            DevNode::Zero => (1, 5),
            DevNode::Full => (1, 7),
            DevNode::Random => (1, 8),
            DevNode::Urandom => (1, 9),
            DevNode::Tty => (5, 0),
        }
    }
}

/// Look up `rest`, the part of a canonical path after `/dev` ("" or
/// "/name").
pub fn lookup(rest: &[u8]) -> Option<DevEntry> {
    Some(match rest {
        b"" | b"/" => DevEntry::Dir,
        b"/null" => DevEntry::Node(DevNode::Null),
        b"/zero" => DevEntry::Node(DevNode::Zero),
        b"/full" => DevEntry::Node(DevNode::Full),
        b"/random" => DevEntry::Node(DevNode::Random),
        b"/urandom" => DevEntry::Node(DevNode::Urandom),
        b"/tty" => DevEntry::Node(DevNode::Tty),
        b"/stdin" => DevEntry::Link(b"/proc/self/fd/0"),
        b"/stdout" => DevEntry::Link(b"/proc/self/fd/1"),
        b"/stderr" => DevEntry::Link(b"/proc/self/fd/2"),
        b"/fd" => DevEntry::Link(b"/proc/self/fd"),
        _ => return None,
    })
}

/// Why `/dev` has no entry `rest`: ENOTDIR when a component before its
/// last is a device (`/dev/null/x`), as a walk through a file says, else
/// ENOENT.
pub fn missing(rest: &[u8]) -> crate::errno::Errno {
    let through_node = rest
        .iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &c)| c == b'/')
        .any(|(i, _)| matches!(lookup(&rest[..i]), Some(DevEntry::Node(_))));
    match through_node {
        true => crate::errno::Errno::ENOTDIR,
        false => crate::errno::Errno::ENOENT,
    }
}

/// The attributes of a `/dev` entry (devtmpfs: device 0:5).
pub fn attr(e: DevEntry, boot_time: i64) -> Attr {
    let (mode, rdev, ino, size) = match e {
        DevEntry::Dir => (S_IFDIR | 0o755, (0, 0), 1, 0),
        DevEntry::Node(n) => (S_IFCHR | 0o666, n.rdev(), 10 + n.rdev().1 as u64, 0),
        DevEntry::Link(t) => (
            S_IFLNK | 0o777,
            (0, 0),
            100 + t.len() as u64,
            t.len() as u64,
        ),
    };
    Attr {
        mode,
        ino,
        dev: (0, 5),
        rdev,
        // `/dev` holds one directory, `shm`.
        nlink: if e == DevEntry::Dir { 3 } else { 1 },
        size,
        time: boot_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_linux_device_numbers() {
        assert_eq!(lookup(b"/null"), Some(DevEntry::Node(DevNode::Null)));
        assert_eq!(DevNode::Zero.rdev(), (1, 5));
        assert_eq!(lookup(b"/stdout"), Some(DevEntry::Link(b"/proc/self/fd/1")));
        assert_eq!(lookup(b"/nope"), None);
        assert_eq!(missing(b"/nope"), crate::errno::Errno::ENOENT);
        assert_eq!(missing(b"/null/x"), crate::errno::Errno::ENOTDIR);
        assert_eq!(missing(b"/zero/a/b"), crate::errno::Errno::ENOTDIR);
        assert_eq!(missing(b"/nope/x"), crate::errno::Errno::ENOENT);
        let a = attr(DevEntry::Node(DevNode::Null), 0);
        assert_eq!(a.mode, S_IFCHR | 0o666);
    }
}
