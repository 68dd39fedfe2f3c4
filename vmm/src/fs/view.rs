//! The guest's view of the host's files: a list of mounts, each a host
//! directory shown at a guest path, read-only or read-write.
//!
//! The default view is the host's `/` read-only at `/` and the host's
//! current directory read-write at its own path. `--isolate` drops it: only
//! the named mounts are visible, and the guest's `/` and the ancestors of
//! mount points that no mount covers are *virtual* read-only directories
//! holding just the mount points' names. Guest `/proc` and `/dev` belong
//! to the guest kernel and cannot be mounted over; guest `/sys` is an empty
//! virtual directory unless a mount is placed there.
//!
//! Guest `/dev/shm` (Linux: a tmpfs, where `shm_open` and `sem_open` make
//! their files) is a directory made empty for each view in the host's
//! temp directory, mode 0700, shown read-write in every view and removed
//! with what the program left in it when the view is dropped, or by
//! [`remove_private_dirs`] when vmrun exits without dropping it.

use super::sys;
use crate::error::{Error, Result};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use vmrun_contract::fs::synthetic;

/// Whether the guest may change what a mount shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only; every change is refused with EROFS.
    ReadOnly,
    /// Reads and changes, with the vmrun user's own rights.
    ReadWrite,
}

/// A host directory shown at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The host directory.
    pub host: PathBuf,
    /// The guest path: absolute and normalised (no `.`, `..` or `//`).
    pub guest: Vec<u8>,
    /// Read-only or read-write.
    pub access: Access,
}

impl Mount {
    /// A mount of `host` at `guest`, checking the guest path.
    pub fn new(
        host: impl Into<PathBuf>,
        guest: &[u8],
        access: Access,
    ) -> std::result::Result<Mount, String> {
        Ok(Mount {
            host: host.into(),
            guest: normalize_guest(guest)?,
            access,
        })
    }

    /// Parse the command line's `HOST:GUEST[:ro|rw]` (read-write by default,
    /// as `docker run --volume`).
    pub fn parse(spec: &str) -> std::result::Result<Mount, String> {
        let fields: Vec<&str> = spec.split(':').collect();
        let (host, guest, access) = match fields[..] {
            [host, guest] => (host, guest, Access::ReadWrite),
            [host, guest, "rw"] => (host, guest, Access::ReadWrite),
            [host, guest, "ro"] => (host, guest, Access::ReadOnly),
            _ => {
                return Err(format!(
                    "--mount {spec}: expected HOST:GUEST, HOST:GUEST:ro or HOST:GUEST:rw"
                ))
            }
        };
        if host.is_empty() {
            return Err(format!("--mount {spec}: the host directory is empty"));
        }
        Mount::new(host, guest.as_bytes(), access).map_err(|e| format!("--mount {spec}: {e}"))
    }
}

/// `/a//b/./c/` → `/a/b/c`; refuses relative paths, `..`, NUL and the
/// guest kernel's own directories.
fn normalize_guest(path: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if path.first() != Some(&b'/') {
        return Err(format!(
            "the guest path {} is not absolute",
            String::from_utf8_lossy(path)
        ));
    }
    if path.contains(&0) || path.split(|&c| c == b'/').any(|c| c == b"..") {
        return Err("the guest path must not contain `..` or NUL".into());
    }
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|&c| c == b'/') {
        if !comp.is_empty() && comp != b"." {
            out.push(b'/');
            out.extend_from_slice(comp);
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if out.len() >= vmrun_contract::fs::PATH_MAX {
        return Err("the guest path is too long".into());
    }
    for dir in [synthetic::PROC, synthetic::DEV] {
        if is_at_or_below(&out, dir) {
            return Err(format!(
                "{} is served by the guest kernel and cannot be mounted over",
                String::from_utf8_lossy(dir)
            ));
        }
    }
    Ok(out)
}

/// Whether guest path `path` is `dir` or lies below it (both normalised).
pub fn is_at_or_below(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (is_strictly_below(path, dir))
}

fn is_strictly_below(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return path.len() > 1;
    }
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// A mount with its host directory open.
#[derive(Debug)]
pub struct OpenMount {
    /// What was asked.
    pub mount: Mount,
    /// The host directory, O_PATH.
    pub root: OwnedFd,
    /// Its device number (to notice host mount points during a walk).
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
}

/// The mounts the guest sees, their host directories open.
#[derive(Debug)]
pub struct View {
    mounts: Vec<OpenMount>,
    /// The host directory shown at [`SHM`], if it could be made.
    shm: Option<PathBuf>,
}

/// Guest `/dev/shm`.
pub const SHM: &[u8] = b"/dev/shm";

/// The directories made for [`SHM`] and not yet removed.
static PRIVATE_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A new empty directory for [`SHM`] in the host's temp directory, mode
/// 0700 (None if none can be made there: the guest then has no
/// `/dev/shm`, as before one existed).
fn make_shm_dir() -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static MADE: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("vmrun-shm-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                let mut dirs = PRIVATE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
                dirs.push(path.clone());
                return Some(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Removes every [`SHM`] directory still there, with its files: for a
/// process that ends by `exit` without dropping its views.
pub fn remove_private_dirs() {
    let dirs = std::mem::take(&mut *PRIVATE_DIRS.lock().unwrap_or_else(|e| e.into_inner()));
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(dir) = self.shm.take() {
            let mut dirs = PRIVATE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
            dirs.retain(|d| *d != dir);
            drop(dirs);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl View {
    /// Open the host directories of `mounts`, after the default view's two
    /// mounts when `default_view` (later mounts hide earlier ones at the
    /// same guest path).
    pub fn open(mounts: &[Mount], default_view: bool) -> Result<View> {
        let mut all = Vec::new();
        if default_view {
            all.extend(default_mounts());
        }
        all.extend(mounts.iter().cloned());
        let mut view = View {
            mounts: all
                .into_iter()
                .map(open_mount)
                .collect::<Result<Vec<_>>>()?,
            shm: make_shm_dir(),
        };
        if let Some(dir) = &view.shm {
            let shm = Mount {
                host: dir.clone(),
                guest: SHM.to_vec(),
                access: Access::ReadWrite,
            };
            if let Ok(m) = open_mount(shm) {
                view.mounts.push(m);
            }
        }
        Ok(view)
    }

    /// The mounts, in order.
    pub fn mounts(&self) -> &[OpenMount] {
        &self.mounts
    }

    /// The mount placed exactly at guest path `path`, if any (the last one).
    pub fn mount_at(&self, path: &[u8]) -> Option<usize> {
        self.mounts.iter().rposition(|m| m.mount.guest == path)
    }

    /// Whether some mount point lies strictly below guest path `path`.
    pub fn has_mount_below(&self, path: &[u8]) -> bool {
        self.mounts
            .iter()
            .any(|m| is_strictly_below(&m.mount.guest, path))
    }

    /// The names of the mount points and virtual directories directly in
    /// the virtual directory `path`, sorted, without duplicates.
    pub fn children_of(&self, path: &[u8]) -> Vec<Vec<u8>> {
        let skip = if path == b"/" { 1 } else { path.len() + 1 };
        let mut names: Vec<Vec<u8>> = self
            .mounts
            .iter()
            .filter(|m| is_strictly_below(&m.mount.guest, path))
            .filter_map(|m| m.mount.guest[skip..].split(|&c| c == b'/').next())
            .map(<[u8]>::to_vec)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The host directory of mount `m`.
    pub fn root_fd(&self, m: usize) -> BorrowedFd<'_> {
        self.mounts[m].root.as_fd()
    }

    /// Whether mount `m` is writable.
    pub fn writable(&self, m: usize) -> bool {
        self.mounts[m].mount.access == Access::ReadWrite
    }
}

/// The host's `/` read-only and its current directory read-write (if it
/// can be shown: not below /proc or /dev).
fn default_mounts() -> Vec<Mount> {
    let mut v = vec![Mount {
        host: "/".into(),
        guest: b"/".to_vec(),
        access: Access::ReadOnly,
    }];
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(m) = Mount::new(&cwd, cwd.as_os_str().as_bytes(), Access::ReadWrite) {
            if open_mount(m.clone()).is_ok() {
                v.push(m);
            }
        }
    }
    v
}

fn open_mount(mut mount: Mount) -> Result<OpenMount> {
    if let Ok(canonical) = std::fs::canonicalize(&mount.host) {
        mount.host = canonical;
    }
    let fail = |why: String| Error::Config(format!("--mount {}: {why}", mount.host.display()));
    let root = open_host_dir(&mount.host).map_err(|e| fail(errno_text(e)))?;
    let st = sys::fstat(root.as_fd()).map_err(|e| fail(errno_text(e)))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(fail("not a directory".into()));
    }
    let fs_type = sys::fs_type(root.as_fd()).map_err(|e| fail(errno_text(e)))?;
    if sys::PSEUDO_FS_MAGICS.contains(&fs_type) {
        return Err(fail(
            "the host's kernel file systems (/proc, /sys...) cannot be shown to the guest".into(),
        ));
    }
    Ok(OpenMount {
        dev: st.st_dev,
        ino: st.st_ino,
        mount,
        root,
    })
}

/// Open a host directory the user named, O_PATH. The user is trusted: the
/// host resolves its path as usual (symlinks included); only the walks made
/// on the guest's behalf are confined.
fn open_host_dir(path: &Path) -> sys::SysResult<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// The text of a host errno.
pub fn errno_text(e: sys::Errno) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_spec_parses_host_guest_and_access() {
        let m = Mount::parse("/srv/data:/data:ro").unwrap();
        assert_eq!(m.host, PathBuf::from("/srv/data"));
        assert_eq!(m.guest, b"/data");
        assert_eq!(m.access, Access::ReadOnly);
        assert_eq!(Mount::parse("x:/a//b/./").unwrap().guest, b"/a/b");
        assert_eq!(
            Mount::parse("x:/y").unwrap().access,
            Access::ReadWrite,
            "read-write by default, as docker"
        );
    }

    #[test]
    fn mount_spec_errors_say_what_is_wrong() {
        assert!(Mount::parse("/x").unwrap_err().contains("HOST:GUEST"));
        assert!(Mount::parse("/x:rel").unwrap_err().contains("not absolute"));
        assert!(Mount::parse("/x:/y:rx").is_err());
        assert!(Mount::parse("/x:/a/../b").unwrap_err().contains(".."));
        assert!(Mount::parse("/x:/proc")
            .unwrap_err()
            .contains("guest kernel"));
        assert!(Mount::parse("/x:/dev/shm").unwrap_err().contains("/dev"));
        assert!(Mount::parse("/x:/devices").is_ok());
    }

    #[test]
    fn below_is_by_whole_components() {
        assert!(is_at_or_below(b"/proc/self", b"/proc"));
        assert!(!is_at_or_below(b"/procfs", b"/proc"));
        assert!(is_at_or_below(b"/a", b"/"));
    }

    #[test]
    fn host_proc_cannot_be_mounted() {
        let m = Mount::parse("/proc:/p:ro").unwrap();
        let err = View::open(&[m], false).unwrap_err().to_string();
        assert!(err.contains("kernel file systems"), "{err}");
    }

    #[test]
    fn virtual_children_are_the_next_components_of_mount_points() {
        let dir = std::env::temp_dir();
        let mounts = [
            Mount::new(&dir, b"/a/b", Access::ReadOnly).unwrap(),
            Mount::new(&dir, b"/a/c/d", Access::ReadOnly).unwrap(),
            Mount::new(&dir, b"/e", Access::ReadOnly).unwrap(),
        ];
        let view = View::open(&mounts, false).unwrap();
        assert_eq!(
            view.children_of(b"/"),
            [b"a".to_vec(), b"dev".to_vec(), b"e".to_vec()],
            "and /dev/shm's"
        );
        assert_eq!(view.children_of(b"/a"), [b"b".to_vec(), b"c".to_vec()]);
        assert!(view.has_mount_below(b"/a/c"));
        assert!(!view.has_mount_below(b"/e"));
        assert_eq!(view.mount_at(b"/e"), Some(2));
    }

    #[test]
    fn every_view_has_a_private_dev_shm_removed_with_it() {
        let view = View::open(&[], false).unwrap();
        let m = view.mount_at(SHM).expect("a /dev/shm mount");
        assert!(view.writable(m));
        let dir = view.shm.clone().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        std::fs::write(dir.join("sem.left"), b"x").unwrap();
        let other = View::open(&[], false).unwrap();
        assert_ne!(other.shm, view.shm, "each view its own");
        drop(view);
        assert!(!dir.exists(), "removed with what was left in it");
    }
}
