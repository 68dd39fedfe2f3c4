//! Each operation on a read-write mount, checked on the host.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn rw(t: &TempDir) -> Guest {
    Guest::isolated(&[(t.path(), "/w", Access::ReadWrite)])
}

#[test]
fn create_write_read_and_stat_a_file() {
    let t = TempDir::new("rw");
    let mut g = rw(&t);
    let r = g.open_req("/w/new.txt", libc::O_CREAT | libc::O_RDWR, 0o640);
    assert_eq!(r.ret, 0);
    assert_eq!(out_path(&r), "/w/new.txt");
    assert_eq!(Stx::of(&r.statx).mode, libc::S_IFREG | 0o640, "exact mode");
    let h = r.out_handle;
    assert_eq!(g.pwrite(h, 0, b"hello world"), Ok((11, 11)));
    assert_eq!(g.pread(h, 6, 100).unwrap(), b"world");
    assert_eq!(g.fstat(h).unwrap().size, 11);
    assert_eq!(
        std::fs::read(t.path().join("new.txt")).unwrap(),
        b"hello world"
    );
    let meta = std::fs::metadata(t.path().join("new.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(g.close(h), Ok(0));
    assert_eq!(g.close(h), Err(libc::EBADF));
    assert_eq!(g.pread(h, 0, 1), Err(libc::EBADF));
    let s = g.fs.stats();
    assert_eq!((s.opens, s.bytes_written, s.bytes_read), (1, 11, 5));
}

#[test]
fn append_writes_at_the_end_and_report_the_size() {
    let t = TempDir::new("append");
    t.file("log", "abc");
    let mut g = rw(&t);
    let h = g.open("/w/log", libc::O_WRONLY).unwrap();
    assert_eq!(g.pwrite(h, u64::MAX, b"def"), Ok((3, 6)));
    assert_eq!(g.pwrite(h, 0, b"X"), Ok((1, 6)));
    assert_eq!(std::fs::read(t.path().join("log")).unwrap(), b"Xbcdef");
}

#[test]
fn read_only_and_write_only_handles_keep_their_mode() {
    let t = TempDir::new("modes");
    t.file("f", "data");
    let mut g = rw(&t);
    let ro = g.open("/w/f", libc::O_RDONLY).unwrap();
    assert_eq!(g.pwrite(ro, 0, b"x"), Err(libc::EBADF));
    let wo = g.open("/w/f", libc::O_WRONLY).unwrap();
    assert_eq!(g.pread(wo, 0, 4), Err(libc::EBADF));
    let trunc = g.open("/w/f", libc::O_WRONLY | libc::O_TRUNC).unwrap();
    assert_eq!(g.fstat(trunc).unwrap().size, 0);
}

#[test]
fn an_open_that_writes_a_running_program_is_etxtbsy_and_changes_nothing() {
    let t = TempDir::new("txt");
    let prog = t.file("prog", "ELF...");
    t.file("other", "data");
    let mut g = rw(&t);
    let meta = std::fs::metadata(&prog).unwrap();
    let mut running = Vec::new();
    for (dev, ino) in [(1, 2), (meta.dev(), meta.ino())] {
        running.extend_from_slice(&u64::to_le_bytes(dev));
        running.extend_from_slice(&u64::to_le_bytes(ino));
    }
    let open = |g: &mut Guest, path: &str, flags: i32| {
        let mut r = with_path2(req(op::OPEN, ROOT_HANDLE, path.as_bytes()), 0, &running);
        r.flags = flags as u32;
        let r = g.call(&r);
        result(&r).map(|_| r.out_handle)
    };
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        assert_eq!(open(&mut g, "/w/prog", flags), Err(libc::ETXTBSY));
    }
    assert_eq!(std::fs::read(&prog).unwrap(), b"ELF...", "not truncated");
    assert!(
        open(&mut g, "/w/prog", libc::O_RDONLY).is_ok(),
        "reading is fine"
    );
    assert!(open(&mut g, "/w/other", libc::O_WRONLY | libc::O_TRUNC).is_ok());
    // Without the list (an old guest, or nothing running), as before.
    assert!(g.open("/w/prog", libc::O_WRONLY).is_ok());
}

#[test]
fn open_errors_are_linux_errors() {
    let t = TempDir::new("errs");
    t.file("f", "");
    t.dir("d");
    t.symlink("l", "f");
    let mut g = rw(&t);
    assert_eq!(g.open("/w/missing", libc::O_RDONLY), Err(libc::ENOENT));
    assert_eq!(g.open("/w/f/x", libc::O_RDONLY), Err(libc::ENOTDIR));
    assert_eq!(g.open("/w/f/", libc::O_RDONLY), Err(libc::ENOTDIR));
    assert_eq!(
        g.open("/w/f", libc::O_RDONLY | libc::O_DIRECTORY),
        Err(libc::ENOTDIR)
    );
    assert_eq!(g.open("/w/d", libc::O_WRONLY), Err(libc::EISDIR));
    assert_eq!(
        g.open("/w/d", libc::O_CREAT | libc::O_RDONLY),
        Err(libc::EISDIR)
    );
    assert_eq!(
        g.open("/w", libc::O_CREAT | libc::O_RDONLY),
        Err(libc::EISDIR)
    );
    let excl = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    assert_eq!(g.open("/w/f", excl), Err(libc::EEXIST));
    assert_eq!(g.open("/w/l", excl), Err(libc::EEXIST));
    assert_eq!(
        g.open("/w/l", libc::O_RDONLY | libc::O_NOFOLLOW),
        Err(libc::ELOOP)
    );
    assert!(g.open("/w/l", libc::O_PATH | libc::O_NOFOLLOW).is_ok());
    assert!(g.open("/w/l", libc::O_RDONLY).is_ok());
}

#[test]
fn open_follows_symlinks_and_returns_the_canonical_path() {
    let t = TempDir::new("canon");
    t.file("a/b/target.txt", "T");
    t.symlink("rel", "a/./b/../b/target.txt");
    t.symlink("abs", "/w/a/b");
    let mut g = rw(&t);
    let r = g.open_req("/w/rel", libc::O_RDONLY, 0);
    assert_eq!(out_path(&r), "/w/a/b/target.txt");
    let r = g.open_req("/w//abs/./target.txt", libc::O_RDONLY, 0);
    assert_eq!(out_path(&r), "/w/a/b/target.txt");
    let r = g.open_req("/w/a/b/..", libc::O_RDONLY, 0);
    assert_eq!(out_path(&r), "/w/a");
    assert!(g.fs.stats().symlinks >= 2);
}

#[test]
fn relative_paths_walk_from_a_directory_handle() {
    let t = TempDir::new("rel");
    t.file("sub/f", "in sub");
    let mut g = rw(&t);
    let d = g
        .open("/w/sub", libc::O_RDONLY | libc::O_DIRECTORY)
        .unwrap();
    let f = g.open_at(d, "f", libc::O_RDONLY).unwrap();
    assert_eq!(g.pread(f, 0, 100).unwrap(), b"in sub");
    assert_eq!(g.open_at(f, "x", libc::O_RDONLY), Err(libc::ENOTDIR));
    assert_eq!(g.open_at(9999, "x", libc::O_RDONLY), Err(libc::EBADF));
    assert!(g.open_at(9999, "/w/sub/f", libc::O_RDONLY).is_ok());
    let p = g.open_at(d, "../sub", libc::O_PATH).unwrap();
    assert_eq!(g.fstat(p).unwrap().mode & libc::S_IFMT, libc::S_IFDIR);
}

#[test]
fn getdents_lists_a_host_directory_in_small_pieces() {
    let t = TempDir::new("dents");
    let mut want = vec![".".to_string(), "..".to_string()];
    for i in 0..50 {
        let name = format!("file-with-a-longish-name-{i:03}");
        t.file(&name, "");
        want.push(name);
    }
    want.sort();
    let mut g = rw(&t);
    let h = g.open("/w", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    assert_eq!(g.list(h, 200).unwrap(), want);
    assert_eq!(
        g.list(h, 8),
        Err(libc::EINVAL),
        "a piece too small for one record"
    );
    let f = g
        .open("/w/file-with-a-longish-name-000", libc::O_RDONLY)
        .unwrap();
    assert_eq!(g.list(f, 200), Err(libc::ENOTDIR));
}

/// GETDENTS says when no entry follows the cookie it returns: at once
/// for a piece that holds the whole directory, only with the last piece
/// for small ones, and for a read at the end; the next piece is where the
/// last one stopped (the probe of the end moves nothing).
#[test]
fn getdents_says_where_the_entries_end() {
    let t = TempDir::new("dents-end");
    for i in 0..20 {
        t.file(&format!("entry-{i:02}"), "");
    }
    let mut g = rw(&t);
    let h = g.open("/w", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    let read = |g: &mut Guest, cookie: u64, piece: u64| {
        let mut r = req(op::GETDENTS, h, b"");
        r.offset = cookie;
        g.one_piece(&mut r, piece);
        let out = g.call(&r);
        (result(&out).unwrap(), out.out_offset, out.out_handle)
    };
    let (n, end_cookie, end) = read(&mut g, 0, 4096);
    assert!(
        n > 0 && end == 1,
        "the whole directory: {n} bytes, end {end}"
    );
    assert_eq!(read(&mut g, end_cookie, 4096), (0, end_cookie, 1));
    let (mut cookie, mut pieces, mut ends) = (0, 0, vec![]);
    loop {
        let (n, next, end) = read(&mut g, cookie, 100);
        if n == 0 {
            break;
        }
        (cookie, pieces) = (next, pieces + 1);
        ends.push(end);
    }
    assert_eq!(ends.iter().filter(|&&e| e == 1).count(), 1, "{ends:?}");
    assert_eq!(ends.last(), Some(&1));
    assert_eq!(pieces, 8, "22 records of 24 or 32 bytes, three to a piece");
    assert_eq!(g.list(h, 100).unwrap().len(), 22);
}

/// Handles a request carries to be closed are closed before its op and
/// counted as CLOSE requests; an unknown one is an error counted and
/// ignored; the list comes back empty.
#[test]
fn a_request_closes_the_handles_it_carries_first() {
    let t = TempDir::new("deferred-close");
    t.file("f", "abc");
    let mut g = rw(&t);
    let a = g.open("/w/f", libc::O_RDONLY).unwrap();
    let b = g.open("/w", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    let mut r = req(op::STAT, ROOT_HANDLE, b"/w/f");
    r.close_count = 3;
    r.closes[..3].copy_from_slice(&[a, b, 9999]);
    let closes = g.fs.stats().calls.get("close").copied().unwrap_or(0);
    let out = g.call(&r);
    assert_eq!((out.ret, out.close_count), (0, 0));
    assert_eq!(g.fs.stats().calls.get("close").copied(), Some(closes + 3));
    assert_eq!(g.close(a), Err(libc::EBADF), "closed already");
    assert_eq!(g.list(b, 4096), Err(libc::EBADF));
}

#[test]
fn mkdir_unlink_and_rmdir() {
    let t = TempDir::new("mkdir");
    let mut g = rw(&t);
    assert_eq!(g.path_op(op::MKDIR, "/w/d/", 0, 0o750), Ok(0));
    let meta = std::fs::metadata(t.path().join("d")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    assert_eq!(g.path_op(op::MKDIR, "/w/d", 0, 0o750), Err(libc::EEXIST));
    t.file("d/f", "");
    assert_eq!(
        g.path_op(op::UNLINK, "/w/d", libc::AT_REMOVEDIR, 0),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(g.path_op(op::UNLINK, "/w/d", 0, 0), Err(libc::EISDIR));
    assert_eq!(g.path_op(op::UNLINK, "/w/d/f", 0, 0), Ok(0));
    assert_eq!(g.path_op(op::UNLINK, "/w/d/f", 0, 0), Err(libc::ENOENT));
    assert_eq!(g.path_op(op::UNLINK, "/w/d/", libc::AT_REMOVEDIR, 0), Ok(0));
    assert!(!t.path().join("d").exists());
    assert_eq!(
        g.path_op(op::UNLINK, "/w", libc::AT_REMOVEDIR, 0),
        Err(libc::EBUSY)
    );
}

#[test]
fn rename_symlink_link_and_readlink() {
    let t = TempDir::new("names");
    t.file("a", "A");
    let mut g = rw(&t);
    assert_eq!(g.two_path_op(op::RENAME, "/w/a", "/w/b", 0), Ok(0));
    assert_eq!(std::fs::read(t.path().join("b")).unwrap(), b"A");
    assert_eq!(g.two_path_op(op::SYMLINK, "b", "/w/s", 0), Ok(0));
    assert_eq!(g.readlink("/w/s").unwrap(), b"b");
    assert_eq!(g.read_file("/w/s").unwrap(), b"A");
    assert_eq!(g.readlink("/w/b"), Err(libc::EINVAL));
    assert_eq!(
        g.two_path_op(op::SYMLINK, "x", "/w/s", 0),
        Err(libc::EEXIST)
    );
    assert_eq!(g.two_path_op(op::LINK, "/w/b", "/w/c", 0), Ok(0));
    assert_eq!(std::fs::metadata(t.path().join("b")).unwrap().nlink(), 2);
    assert_eq!(g.two_path_op(op::LINK, "/w/s", "/w/hs", 0), Ok(0));
    let hs = std::fs::symlink_metadata(t.path().join("hs")).unwrap();
    assert!(
        hs.file_type().is_symlink(),
        "without AT_SYMLINK_FOLLOW the link itself"
    );
    let follow = libc::AT_SYMLINK_FOLLOW;
    assert_eq!(g.two_path_op(op::LINK, "/w/s", "/w/hf", follow), Ok(0));
    assert!(std::fs::symlink_metadata(t.path().join("hf"))
        .unwrap()
        .is_file());
    assert_eq!(
        g.two_path_op(op::LINK, "/w/b", "/w/c", 0),
        Err(libc::EEXIST)
    );
    let noreplace = libc::RENAME_NOREPLACE as i32;
    assert_eq!(
        g.two_path_op(op::RENAME, "/w/b", "/w/c", noreplace),
        Err(libc::EEXIST)
    );
}

#[test]
fn chmod_utimens_truncate_access_and_fsync() {
    let t = TempDir::new("attrs");
    t.file("f", "0123456789");
    let mut g = rw(&t);
    assert_eq!(g.path_op(op::CHMOD, "/w/f", 0, 0o600), Ok(0));
    let mode = std::fs::metadata(t.path().join("f"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    let mut r = req(op::UTIMENS, ROOT_HANDLE, b"/w/f");
    r.times = [1_000_000, 0, 2_000_000, 500];
    assert_eq!(g.call(&r).ret, 0);
    let st = g.stat("/w/f", 0).unwrap();
    assert_eq!(st.mtime, 2_000_000);
    let mut r = req(op::TRUNCATE, ROOT_HANDLE, b"/w/f");
    r.offset = 4;
    assert_eq!(g.call(&r).ret, 0);
    assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"0123");
    let h = g.open("/w/f", libc::O_RDWR).unwrap();
    let mut r = req(op::TRUNCATE, h, b"");
    r.offset = 2;
    assert_eq!(g.call(&r).ret, 0);
    assert_eq!(g.fstat(h).unwrap().size, 2);
    assert_eq!(g.call(&req(op::FSYNC, h, b"")).ret, 0);
    let mut r = req(op::CHMOD, h, b"");
    r.flags = libc::AT_EMPTY_PATH as u32;
    r.mode = 0o644;
    assert_eq!(g.call(&r).ret, 0);
    assert_eq!(g.stat("/w/f", 0).unwrap().mode, libc::S_IFREG | 0o644);
    assert_eq!(g.path_op(op::ACCESS, "/w/f", 0, libc::R_OK as u32), Ok(0));
    assert_eq!(g.path_op(op::ACCESS, "/w/nope", 0, 0), Err(libc::ENOENT));
}

#[test]
fn stat_follows_symlinks_unless_told_not_to() {
    let t = TempDir::new("stat");
    t.file("f", "12345");
    t.symlink("l", "f");
    let mut g = rw(&t);
    assert_eq!(g.stat("/w/l", 0).unwrap().size, 5);
    let l = g.stat("/w/l", libc::AT_SYMLINK_NOFOLLOW).unwrap();
    assert_eq!(l.mode & libc::S_IFMT, libc::S_IFLNK);
    let host = std::fs::metadata(t.path().join("f")).unwrap();
    assert_eq!(g.stat("/w/f", 0).unwrap().ino, host.ino());
    assert_eq!(g.stat("/w/f", 0).unwrap().nlink, 1);
}

#[test]
fn permission_denied_on_the_host_passes_through() {
    if is_root() {
        return; // root reads everything natively too
    }
    let t = TempDir::new("perm");
    let f = t.file("secret", "x");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut g = rw(&t);
    assert_eq!(g.open("/w/secret", libc::O_RDONLY), Err(libc::EACCES));
}

#[test]
fn the_default_view_shows_the_host_read_only_and_the_cwd_read_write() {
    let mut g = Guest::new(&[], true);
    assert!(g.stat("/etc", 0).is_ok());
    assert_eq!(
        g.open("/etc/vmrun-test", libc::O_CREAT | libc::O_WRONLY),
        Err(libc::EROFS)
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(g.fs.initial_cwd(), host_bytes(&cwd));
    let r = g.open_req(
        &cwd.to_string_lossy(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    );
    assert_eq!(r.ret, 0);
    let h = r.out_handle;
    assert!(
        g.fs.handles.get(h).unwrap().writable,
        "the cwd is read-write"
    );
}

#[test]
fn cwd_outside_the_isolated_view_is_the_root_and_a_mounted_cwd_is_found() {
    let t = TempDir::new("cwd");
    let mut g = rw(&t);
    assert_eq!(g.fs.initial_cwd(), b"/");
    let cwd = std::env::current_dir().unwrap();
    let mut g = Guest::isolated(&[(&cwd, "/src", Access::ReadOnly)]);
    assert_eq!(g.fs.initial_cwd(), b"/src");
}

#[test]
fn too_many_handles_is_emfile() {
    let mut g = Guest::new(&[], false);
    for _ in 0..handles::MAX_HANDLES {
        g.open("/", libc::O_RDONLY).unwrap();
    }
    assert_eq!(g.open("/", libc::O_RDONLY), Err(libc::EMFILE));
}

#[test]
fn fs_hypercall_goes_through_the_hypercall_handler() {
    use crate::hypercall::{handle, Action, HostIo};
    struct NoIo;
    impl HostIo for NoIo {
        fn write(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
        fn random(&mut self, _: &mut [u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn log(&mut self, _: &[u8]) {}
    }
    let t = TempDir::new("hc");
    t.file("f", "via hc");
    let mut g = rw(&t);
    let mut r = req(op::OPEN, ROOT_HANDLE, b"/w/f");
    r.flags = libc::O_RDONLY as u32;
    g.ram.write_pod(REQ, &r).unwrap();
    let hc = vmrun_contract::Hypercall {
        nr: vmrun_contract::hc::FS,
        args: [REQ, 0, 0, 0, 0, 0],
        ret: -1,
    };
    g.ram.write_pod(0x800, &hc).unwrap();
    let action = handle(&g.ram, 0x800, &mut NoIo, &mut g.fs).unwrap();
    assert_eq!(action, Action::Continue);
    assert_eq!(
        g.ram
            .read_pod::<vmrun_contract::Hypercall>(0x800)
            .unwrap()
            .ret,
        0
    );
    assert_eq!(g.fs.open_handles(), 1);
}
