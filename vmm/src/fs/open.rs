//! OPEN and CLOSE.
//!
//! OPEN resolves the path (following the last symlink unless O_NOFOLLOW or
//! O_CREAT|O_EXCL), then opens what it found: a directory as
//! O_RDONLY|O_DIRECTORY from the fd the walk opened (the very same
//! directory), a regular file relative to its directory's fd with its one
//! name, O_NOFOLLOW, O_NONBLOCK and O_NOCTTY, checked with fstat before
//! anything else; device nodes, FIFOs and sockets are refused (EACCES), so
//! no open can block the VMM or reach a device. A new file is made with
//! O_CREAT|O_EXCL, so a symlink raced in is never followed.

use super::handles::{Handle, Kind};
use super::walk::{Frame, Obj, Target};
use super::{sys, Call, Escape, FsResult, HostFs};
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Linux's O_TMPFILE without O_DIRECTORY.
const O_TMPFILE_BIT: i32 = 0o2000_0000;
/// Internal: a file appeared between the lookup and O_CREAT|O_EXCL;
/// look up again.
const RACED: i32 = -1;
/// Tries of an O_CREAT open that keeps racing with the file's creation.
const CREATE_TRIES: usize = 4;

/// The open flags of one request, decoded.
#[derive(Clone, Copy)]
struct Flags(i32);

impl Flags {
    fn has(self, f: i32) -> bool {
        self.0 & f != 0
    }

    fn path_only(self) -> bool {
        self.has(libc::O_PATH)
    }

    fn writes(self) -> bool {
        self.0 & libc::O_ACCMODE != libc::O_RDONLY || self.has(libc::O_TRUNC)
    }

    /// Whether a directory cannot be opened so (EISDIR).
    fn refuses_dir(self) -> bool {
        !self.path_only() && (self.writes() || self.has(libc::O_CREAT))
    }

    fn exclusive(self) -> bool {
        self.has(libc::O_CREAT) && self.has(libc::O_EXCL)
    }

    /// What the host open of a regular file takes from the guest's flags.
    fn host(self) -> i32 {
        let passed =
            libc::O_ACCMODE | libc::O_TRUNC | libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC;
        (self.0 & passed) | libc::O_NONBLOCK | libc::O_NOCTTY
    }
}

impl HostFs {
    pub(super) fn open_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let flags = Flags(call.req.flags as i32);
        if flags.has(O_TMPFILE_BIT) {
            return Err(libc::EOPNOTSUPP);
        }
        let path = call.path()?;
        let running = match flags.writes() {
            true => running_images(call),
            false => Vec::new(),
        };
        let follow = !flags.has(libc::O_NOFOLLOW) && !flags.exclusive();
        for _ in 0..CREATE_TRIES {
            let target = self.resolve(call.req.handle, &path, follow)?;
            let guest = target.guest().to_vec();
            let handle = match target {
                Target::Synthetic(p) => return Ok(call.synthetic(&p)),
                Target::Missing { dir, name, .. } => {
                    self.create(dir, &name, guest, flags, call.req.mode as u32)
                }
                _ if flags.exclusive() => Err(libc::EEXIST),
                Target::Entry { dir, name, obj, .. } => {
                    self.open_entry(&dir, &name, obj, guest, flags, &running)
                }
                Target::Dir(frame) => self.open_frame(frame, flags),
            };
            match handle {
                Err(RACED) => continue,
                Err(e) => return Err(e),
                Ok(h) => return self.install(call, h),
            }
        }
        Err(libc::EEXIST)
    }

    /// Put `h` in the table and answer with it.
    fn install(&mut self, call: &mut Call, h: Handle) -> FsResult<i64> {
        let stx = self.statx_of(h.fd(), &h.guest)?;
        let guest = h.guest.clone();
        let id = self.handles.insert(h)?;
        self.count_open();
        call.req.out_handle = id;
        call.req.statx = stx;
        call.set_path(&guest);
        Ok(0)
    }

    pub(super) fn close_op(&mut self, call: &mut Call) -> FsResult<i64> {
        self.handles.remove(call.req.handle)?;
        Ok(0)
    }

    /// O_CREAT of `name`, missing from `dir`.
    fn create(
        &mut self,
        dir: Frame,
        name: &CStr,
        guest: Vec<u8>,
        flags: Flags,
        mode: u32,
    ) -> FsResult<Handle> {
        if !flags.has(libc::O_CREAT) || flags.path_only() {
            return Err(libc::ENOENT);
        }
        if flags.has(libc::O_DIRECTORY) {
            return Err(libc::EINVAL);
        }
        self.require_writable(dir.writable(&self.view))?;
        let Some(dir_fd) = dir.fd(&self.view) else {
            return Err(libc::EROFS);
        };
        let host = flags.host() | libc::O_CREAT | libc::O_EXCL;
        let fd = match sys::open_beneath(dir_fd, name, host, mode & 0o7777) {
            Err(libc::EEXIST) if !flags.exclusive() => return Err(RACED),
            other => other?,
        };
        self.undo_umask(&fd, mode);
        Ok(Handle {
            kind: Kind::File(fd),
            guest,
            mount: dir.mount,
            writable: true,
            is_dir: false,
        })
    }

    /// Give a new file or directory exactly `mode`, whatever the VMM's
    /// umask took away.
    pub(super) fn undo_umask(&self, fd: &OwnedFd, mode: u32) {
        if mode & self.umask & 0o777 != 0 {
            let _ = sys::fchmod(fd.as_fd(), mode & 0o7777);
        }
    }

    /// Open `name` in `dir`, which the walk found as `obj`; ETXTBSY if it
    /// is to be written and is one of the `running` programs.
    fn open_entry(
        &mut self,
        dir: &Frame,
        name: &CStr,
        obj: Obj,
        guest: Vec<u8>,
        flags: Flags,
        running: &[(u64, u64)],
    ) -> FsResult<Handle> {
        let kind = obj.kind();
        let is_dir = kind == libc::S_IFDIR;
        let writable = dir.writable(&self.view);
        let handle = |kind| Handle {
            kind,
            guest,
            mount: dir.mount,
            writable,
            is_dir,
        };
        // A symlink met with O_NOFOLLOW is ELOOP (below), before O_DIRECTORY.
        let eloop = kind == libc::S_IFLNK && !flags.path_only();
        if flags.has(libc::O_DIRECTORY) && !is_dir && !eloop {
            return Err(libc::ENOTDIR);
        }
        if flags.path_only() {
            return Ok(handle(Kind::Path(obj.fd)));
        }
        match kind {
            libc::S_IFLNK => Err(libc::ELOOP),
            libc::S_IFDIR if flags.refuses_dir() => Err(libc::EISDIR),
            libc::S_IFDIR => Ok(handle(Kind::Dir(open_dir(obj.fd.as_fd())?))),
            libc::S_IFREG => {
                if flags.writes() {
                    self.require_writable(writable)?;
                    if !running.is_empty() {
                        let st = sys::fstat(obj.fd.as_fd())?;
                        if running.contains(&(st.st_dev, st.st_ino)) {
                            return Err(libc::ETXTBSY);
                        }
                    }
                }
                let Some(dir_fd) = dir.fd(&self.view) else {
                    return Err(libc::ENOENT);
                };
                let fd = sys::open_beneath(dir_fd, name, flags.host(), 0)?;
                self.check_regular(&fd)?;
                Ok(handle(Kind::File(fd)))
            }
            _ => self.refuse_special(),
        }
    }

    /// A file opened by name must still be a regular file (a device node
    /// or FIFO may have been swapped in since the lookup).
    fn check_regular(&mut self, fd: &OwnedFd) -> FsResult<()> {
        let st = sys::fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            Ok(())
        } else {
            self.refuse_special()
        }
    }

    fn refuse_special<T>(&mut self) -> FsResult<T> {
        self.stats.escape(Escape::SpecialFile);
        Err(libc::EACCES)
    }

    /// Open a directory reached as a whole (root, mount root, virtual).
    fn open_frame(&mut self, frame: Frame, flags: Flags) -> FsResult<Handle> {
        if flags.refuses_dir() {
            return Err(libc::EISDIR);
        }
        let writable = frame.writable(&self.view);
        let kind = match frame.fd(&self.view) {
            None => Kind::Virtual,
            Some(fd) if flags.path_only() => Kind::Path(
                fd.try_clone_to_owned()
                    .map_err(|e| e.raw_os_error().unwrap_or(libc::EMFILE))?,
            ),
            Some(fd) => Kind::Dir(open_dir(fd)?),
        };
        Ok(Handle {
            kind,
            guest: frame.guest,
            mount: frame.mount,
            writable,
            is_dir: true,
        })
    }
}

/// The (device, inode) pairs an OPEN that writes carries in `path2`: the
/// files the guest's processes run.
fn running_images(call: &Call) -> Vec<(u64, u64)> {
    let n = (call.req.path2_len as usize).min(call.req.path2.len()) / 16;
    call.req.path2[..n * 16]
        .chunks_exact(16)
        .map(|c| {
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
            (word(&c[..8]), word(&c[8..]))
        })
        .collect()
}

/// The directory `fd` (O_PATH) itself, opened O_RDONLY|O_DIRECTORY.
fn open_dir(fd: BorrowedFd<'_>) -> FsResult<OwnedFd> {
    sys::open_beneath(fd, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}
