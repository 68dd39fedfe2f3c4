//! The file service over real host directories made by each test, driven
//! by requests written into a guest RAM, as the guest kernel sends them.

mod escape;
mod ops;

use super::*;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::result::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use vmrun_contract::fs::{op, FsRequest, ROOT_HANDLE, SYNTHETIC};

/// A host directory removed at the end of the test.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vmrun-fs-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// `rel` inside, made with its parents, holding `data`.
    pub(super) fn file(&self, rel: &str, data: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    pub(super) fn dir(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub(super) fn symlink(&self, rel: &str, target: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::os::unix::fs::symlink(target, &p).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) const REQ: u64 = 0x1_0000;
pub(super) const IOV: u64 = 0x1000;
pub(super) const BUF: u64 = 0x4_0000;
pub(super) const BUF_LEN: u64 = 0x1_0000;

/// What a test learns from a statx.
#[derive(Debug)]
pub(super) struct Stx {
    pub mode: u32,
    pub nlink: u32,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
}

impl Stx {
    fn of(s: &[u64; 32]) -> Stx {
        Stx {
            nlink: s[2] as u32,
            mode: ((s[3] >> 32) & 0xffff) as u32,
            ino: s[4],
            size: s[5],
            mtime: s[14] as i64,
        }
    }
}

/// A guest RAM and the file service of one view.
pub(super) struct Guest {
    pub ram: GuestRam,
    pub fs: HostFs,
}

pub(super) fn req(op: u32, handle: u64, path: &[u8]) -> FsRequest {
    let mut r = FsRequest::zeroed();
    r.op = op;
    r.handle = handle;
    r.path[..path.len()].copy_from_slice(path);
    r.path_len = path.len() as u32;
    r
}

pub(super) fn with_path2(mut r: FsRequest, handle2: u64, path2: &[u8]) -> FsRequest {
    r.handle2 = handle2;
    r.path2[..path2.len()].copy_from_slice(path2);
    r.path2_len = path2.len() as u32;
    r
}

pub(super) fn result(r: &FsRequest) -> Result<i64, i32> {
    if r.ret < 0 {
        Err(-r.ret as i32)
    } else {
        Ok(r.ret)
    }
}

impl Guest {
    pub(super) fn new(mounts: &[Mount], default_view: bool) -> Guest {
        Guest {
            ram: GuestRam::new(1 << 20).unwrap(),
            fs: HostFs::open(mounts, default_view).unwrap(),
        }
    }

    /// An isolated view of these (host, guest, access) mounts.
    pub(super) fn isolated(mounts: &[(&Path, &str, Access)]) -> Guest {
        let mounts: Vec<Mount> = mounts
            .iter()
            .map(|(h, g, a)| Mount::new(*h, g.as_bytes(), *a).unwrap())
            .collect();
        Guest::new(&mounts, false)
    }

    /// Send `r`; the request as the host left it.
    pub(super) fn call(&mut self, r: &FsRequest) -> FsRequest {
        self.ram.write_pod(REQ, r).unwrap();
        let ret = self.fs.serve(&self.ram, REQ);
        let mut out = FsRequest::zeroed();
        self.ram
            .read_bytes(REQ, crate::memory::pod_bytes_mut(&mut out))
            .unwrap();
        assert_eq!(ret, out.ret, "the hypercall returns the request's ret");
        out
    }

    /// One IoVec of BUF_LEN (or `len`) bytes at BUF.
    fn one_piece(&self, r: &mut FsRequest, len: u64) {
        self.ram.write_pod(IOV, &IoVec { phys: BUF, len }).unwrap();
        r.iov_phys = IOV;
        r.iov_count = 1;
    }

    pub(super) fn open_req(&mut self, path: &str, flags: i32, mode: u32) -> FsRequest {
        let mut r = req(op::OPEN, ROOT_HANDLE, path.as_bytes());
        r.flags = flags as u32;
        r.mode = u64::from(mode);
        self.call(&r)
    }

    pub(super) fn open(&mut self, path: &str, flags: i32) -> Result<u64, i32> {
        let r = self.open_req(path, flags, 0o644);
        result(&r).map(|_| r.out_handle)
    }

    pub(super) fn open_at(&mut self, dir: u64, path: &str, flags: i32) -> Result<u64, i32> {
        let mut r = req(op::OPEN, dir, path.as_bytes());
        r.flags = flags as u32;
        let r = self.call(&r);
        result(&r).map(|_| r.out_handle)
    }

    pub(super) fn close(&mut self, h: u64) -> Result<i64, i32> {
        result(&self.call(&req(op::CLOSE, h, b"")))
    }

    pub(super) fn pread(&mut self, h: u64, offset: u64, len: u64) -> Result<Vec<u8>, i32> {
        let mut r = req(op::PREAD, h, b"");
        r.offset = offset;
        self.one_piece(&mut r, len);
        let n = result(&self.call(&r))?;
        let mut buf = vec![0; n as usize];
        self.ram.read_bytes(BUF, &mut buf).unwrap();
        Ok(buf)
    }

    /// Write `data`; (bytes written, file size after).
    pub(super) fn pwrite(&mut self, h: u64, offset: u64, data: &[u8]) -> Result<(i64, u64), i32> {
        self.ram.write_bytes(BUF, data).unwrap();
        let mut r = req(op::PWRITE, h, b"");
        r.offset = offset;
        self.one_piece(&mut r, data.len() as u64);
        let out = self.call(&r);
        result(&out).map(|n| (n, out.out_offset))
    }

    pub(super) fn read_file(&mut self, path: &str) -> Result<Vec<u8>, i32> {
        let h = self.open(path, libc::O_RDONLY)?;
        let data = self.pread(h, 0, BUF_LEN);
        self.close(h).unwrap();
        data
    }

    pub(super) fn stat(&mut self, path: &str, flags: i32) -> Result<Stx, i32> {
        let mut r = req(op::STAT, ROOT_HANDLE, path.as_bytes());
        r.flags = flags as u32;
        let out = self.call(&r);
        result(&out).map(|_| Stx::of(&out.statx))
    }

    pub(super) fn fstat(&mut self, h: u64) -> Result<Stx, i32> {
        let out = self.call(&req(op::FSTAT, h, b""));
        result(&out).map(|_| Stx::of(&out.statx))
    }

    /// Every name in directory handle `h`, reading `piece` bytes at a time.
    pub(super) fn list(&mut self, h: u64, piece: u64) -> Result<Vec<String>, i32> {
        let mut names = Vec::new();
        let mut cookie = 0;
        loop {
            let mut r = req(op::GETDENTS, h, b"");
            r.offset = cookie;
            self.one_piece(&mut r, piece);
            let out = self.call(&r);
            let n = result(&out)? as usize;
            if n == 0 {
                break;
            }
            let mut buf = vec![0u8; n];
            self.ram.read_bytes(BUF, &mut buf).unwrap();
            let mut at = 0;
            while at < n {
                let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
                let name = &buf[at + 19..at + reclen];
                let name = &name[..name.iter().position(|&c| c == 0).unwrap()];
                names.push(String::from_utf8_lossy(name).into_owned());
                at += reclen;
            }
            cookie = out.out_offset;
        }
        names.sort();
        Ok(names)
    }

    pub(super) fn list_path(&mut self, path: &str) -> Result<Vec<String>, i32> {
        let h = self.open(path, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let names = self.list(h, BUF_LEN);
        self.close(h).unwrap();
        names
    }

    pub(super) fn path_op(
        &mut self,
        op: u32,
        path: &str,
        flags: i32,
        mode: u32,
    ) -> Result<i64, i32> {
        let mut r = req(op, ROOT_HANDLE, path.as_bytes());
        r.flags = flags as u32;
        r.mode = u64::from(mode);
        result(&self.call(&r))
    }

    pub(super) fn two_path_op(
        &mut self,
        op: u32,
        a: &str,
        b: &str,
        flags: i32,
    ) -> Result<i64, i32> {
        let mut r = with_path2(
            req(op, ROOT_HANDLE, a.as_bytes()),
            ROOT_HANDLE,
            b.as_bytes(),
        );
        r.flags = flags as u32;
        result(&self.call(&r))
    }

    pub(super) fn readlink(&mut self, path: &str) -> Result<Vec<u8>, i32> {
        let mut r = req(op::READLINK, ROOT_HANDLE, path.as_bytes());
        self.one_piece(&mut r, BUF_LEN);
        let n = result(&self.call(&r))?;
        let mut buf = vec![0; n as usize];
        self.ram.read_bytes(BUF, &mut buf).unwrap();
        Ok(buf)
    }
}

/// The canonical guest path an OPEN returned.
pub(super) fn out_path(r: &FsRequest) -> String {
    String::from_utf8_lossy(&r.path[..r.path_len as usize]).into_owned()
}

pub(super) fn host_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Whether the tests run as root (who passes every permission check):
/// the owner of a file they make.
pub(super) fn is_root() -> bool {
    let t = TempDir::new("uid");
    let f = t.file("f", "");
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(f).unwrap()) == 0
}

#[test]
fn request_outside_guest_ram_is_efault() {
    let mut g = Guest::new(&[], false);
    assert_eq!(g.fs.serve(&g.ram, (1 << 20) - 16), -i64::from(libc::EFAULT));
    assert_eq!(g.fs.serve(&g.ram, u64::MAX - 8), -i64::from(libc::EFAULT));
}

#[test]
fn unknown_op_is_enosys() {
    let mut g = Guest::new(&[], false);
    assert_eq!(result(&g.call(&req(999, 0, b""))), Err(libc::ENOSYS));
    assert_eq!(g.fs.stats().calls["unknown"], 1);
}

#[test]
fn synthetic_answer_carries_the_marker() {
    let mut g = Guest::new(&[], true);
    let r = g.open_req("/proc/self/maps", libc::O_RDONLY, 0);
    assert_eq!((r.ret, r.out_handle), (0, SYNTHETIC));
}
