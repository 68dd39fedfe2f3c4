//! The escape suite: nothing outside the granted directories can be read
//! or changed, whatever path, symlink or race the guest tries.

use super::*;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// base/outside/x = "SECRET", base/granted/inside/x = "INSIDE".
fn layout() -> (TempDir, PathBuf) {
    let t = TempDir::new("escape");
    t.file("outside/x", "SECRET");
    t.file("secret.txt", "SECRET");
    t.file("granted/inside/x", "INSIDE");
    let granted = t.path().join("granted");
    (t, granted)
}

#[test]
fn dotdot_chains_stop_at_the_granted_root() {
    let (t, granted) = layout();
    let mut g = Guest::isolated(&[(&granted, "/", Access::ReadWrite)]);
    assert_eq!(g.read_file("/../../secret.txt"), Err(libc::ENOENT));
    assert_eq!(g.read_file("../../../outside/x"), Err(libc::ENOENT));
    assert_eq!(
        g.read_file("/../../../inside/x").unwrap(),
        b"INSIDE",
        "clamped"
    );
    assert_eq!(g.read_file("/inside/../../inside/x").unwrap(), b"INSIDE");
    assert!(g.fs.stats().escapes_of(Escape::DotDotAtRoot) >= 5);
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    assert_eq!(g.read_file("/g/../secret.txt"), Err(libc::ENOENT));
    assert_eq!(g.read_file("/g/../../outside/x"), Err(libc::ENOENT));
    drop(t);
}

#[test]
fn absolute_symlink_to_etc_passwd_stays_in_the_isolated_view() {
    let (t, granted) = layout();
    t.symlink("granted/passwd", "/etc/passwd");
    t.symlink("granted/etc", "/etc");
    let outside = t.path().join("outside");
    t.symlink("granted/host-abs", &outside.to_string_lossy());
    for at in ["/", "/g"] {
        let mut g = Guest::isolated(&[(&granted, at, Access::ReadWrite)]);
        let p = |name: &str| walk::join(at.as_bytes(), name.as_bytes());
        let p = |name: &str| String::from_utf8(p(name)).unwrap();
        // With the granted directory at `/`, its `etc` -> `/etc` is a loop.
        let want = if at == "/" { libc::ELOOP } else { libc::ENOENT };
        assert_eq!(g.read_file(&p("passwd")), Err(want));
        assert_eq!(g.read_file(&p("etc/passwd")), Err(want));
        assert_eq!(g.stat(&p("passwd"), 0).err(), Some(want));
        assert_eq!(g.read_file(&p("host-abs/x")), Err(libc::ENOENT));
    }
}

#[test]
fn relative_symlinks_climbing_out_stay_in_the_view() {
    let (t, granted) = layout();
    t.symlink("granted/up", "../../../../../../../secret.txt");
    t.symlink("granted/inside/up2", "../../outside/x");
    t.symlink("granted/out", "../outside");
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    assert_eq!(g.read_file("/g/up"), Err(libc::ENOENT));
    assert_eq!(g.read_file("/g/inside/up2"), Err(libc::ENOENT));
    assert_eq!(g.read_file("/g/out/x"), Err(libc::ENOENT));
    assert_eq!(
        g.open("/g/out/new", libc::O_CREAT | libc::O_WRONLY),
        Err(libc::ENOENT)
    );
    t.symlink("granted/dangling", "../outside/new");
    let create = libc::O_CREAT | libc::O_WRONLY;
    assert_eq!(g.open("/g/dangling", create), Err(libc::ENOENT));
    t.symlink("granted/dangling-top", "../new");
    assert_eq!(
        g.open("/g/dangling-top", create),
        Err(libc::EROFS),
        "in the virtual root"
    );
    assert!(!t.path().join("outside/new").exists());
}

#[test]
fn a_symlink_resolving_into_the_view_is_interpreted_as_a_guest_path() {
    let (t, granted) = layout();
    t.symlink("granted/to-inside", "/g/inside/x");
    t.symlink("granted/proc-self", "/proc/self/environ");
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadOnly)]);
    assert_eq!(g.read_file("/g/to-inside").unwrap(), b"INSIDE");
    let r = g.open_req("/g/proc-self", libc::O_RDONLY, 0);
    assert_eq!((r.ret, r.out_handle), (0, SYNTHETIC));
    assert_eq!(out_path(&r), "/proc/self/environ");
}

#[test]
fn hard_link_from_a_read_only_view_into_a_writable_one_is_exdev() {
    let (t, granted) = layout();
    let scratch = t.dir("scratch");
    let mut g = Guest::isolated(&[
        (&granted, "/ro", Access::ReadOnly),
        (&scratch, "/rw", Access::ReadWrite),
        (&granted, "/same-rw", Access::ReadWrite),
    ]);
    assert_eq!(
        g.two_path_op(op::LINK, "/ro/inside/x", "/rw/x", 0),
        Err(libc::EXDEV)
    );
    assert_eq!(
        g.two_path_op(op::LINK, "/ro/inside/x", "/same-rw/y", 0),
        Err(libc::EXDEV)
    );
    assert_eq!(
        g.two_path_op(op::RENAME, "/ro/inside/x", "/rw/x", 0),
        Err(libc::EXDEV)
    );
    assert_eq!(
        g.two_path_op(op::LINK, "/proc/self/exe", "/rw/exe", 0),
        Err(libc::EXDEV)
    );
    assert!(!scratch.join("x").exists());
    assert!(!granted.join("y").exists());
    assert_eq!(g.fs.stats().escapes_of(Escape::CrossMount), 3);
}

#[test]
fn every_change_in_a_read_only_view_is_erofs() {
    let (t, granted) = layout();
    let mut g = Guest::isolated(&[(&granted, "/ro", Access::ReadOnly)]);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(
            g.open("/ro/inside/x", flags),
            Err(libc::EROFS),
            "{flags:#o}"
        );
    }
    assert_eq!(
        g.open("/ro/new", libc::O_CREAT | libc::O_RDONLY),
        Err(libc::EROFS)
    );
    assert!(g
        .open("/ro/inside/x", libc::O_CREAT | libc::O_RDONLY)
        .is_ok());
    assert_eq!(g.path_op(op::MKDIR, "/ro/d", 0, 0o755), Err(libc::EROFS));
    assert_eq!(
        g.path_op(op::UNLINK, "/ro/inside/x", 0, 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.two_path_op(op::RENAME, "/ro/inside/x", "/ro/y", 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.two_path_op(op::SYMLINK, "x", "/ro/s", 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.two_path_op(op::LINK, "/ro/inside/x", "/ro/l", 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.path_op(op::CHMOD, "/ro/inside/x", 0, 0o777),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.path_op(op::UTIMENS, "/ro/inside/x", 0, 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.path_op(op::TRUNCATE, "/ro/inside/x", 0, 0),
        Err(libc::EROFS)
    );
    assert_eq!(
        g.path_op(op::ACCESS, "/ro/inside/x", 0, libc::W_OK as u32),
        Err(libc::EROFS)
    );
    let h = g.open("/ro/inside/x", libc::O_RDONLY).unwrap();
    let mut r = req(op::TRUNCATE, h, b"");
    r.offset = 0;
    assert_eq!(g.call(&r).ret, -i64::from(libc::EROFS));
    assert_eq!(g.pwrite(h, 0, b"x"), Err(libc::EBADF));
    assert_eq!(std::fs::read(granted.join("inside/x")).unwrap(), b"INSIDE");
    assert!(g.fs.stats().escapes_of(Escape::ReadOnly) >= 14);
    drop(t);
}

#[test]
fn a_symlink_swapped_in_between_two_requests_is_followed_inside_the_view() {
    let (t, granted) = layout();
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    let d = g
        .open("/g/inside", libc::O_RDONLY | libc::O_DIRECTORY)
        .unwrap();
    assert_eq!(g.read_file("/g/inside/x").unwrap(), b"INSIDE");
    std::fs::rename(granted.join("inside"), granted.join("moved")).unwrap();
    let outside = t.path().join("outside");
    std::os::unix::fs::symlink(&outside, granted.join("inside")).unwrap();
    assert_eq!(g.read_file("/g/inside/x"), Err(libc::ENOENT));
    assert_eq!(g.open_at(d, "x", libc::O_RDONLY), Err(libc::ENOENT));
    std::fs::remove_file(granted.join("inside")).unwrap();
    std::os::unix::fs::symlink("../outside", granted.join("inside")).unwrap();
    assert_eq!(g.read_file("/g/inside/x"), Err(libc::ENOENT));
    assert_eq!(g.open_at(d, "x", libc::O_RDONLY), Err(libc::ENOENT));
}

#[test]
fn a_directory_flipping_with_a_symlink_never_opens_anything_outside() {
    let (t, granted) = layout();
    let outside = t.path().join("outside");
    std::os::unix::fs::symlink(&outside, granted.join("flip-abs")).unwrap();
    std::os::unix::fs::symlink("../outside", granted.join("flip-rel")).unwrap();
    let dir = std::fs::File::open(&granted).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let fd = dir.as_fd();
            let exchange = libc::RENAME_EXCHANGE;
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for other in [c"flip-abs", c"flip-rel"] {
                    let _ = sys::renameat2(fd, c"inside", fd, other, exchange);
                    let _ = sys::renameat2(fd, c"inside", fd, other, exchange);
                    flips += 2;
                }
            }
            flips
        })
    };
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    let (mut inside, mut missing) = (0, 0);
    for i in 0..3000 {
        let path = ["/g/inside/x", "/g/inside/../inside/x", "/g/./inside/x"][i % 3];
        match g.read_file(path) {
            Ok(data) => {
                assert_eq!(data, b"INSIDE", "read {path} outside the view");
                inside += 1;
            }
            Err(e) => {
                assert!([libc::ENOENT, libc::ENOTDIR].contains(&e), "{e}");
                missing += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 0 && inside + missing == 3000);
    assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"SECRET");
}

#[test]
fn fifos_sockets_and_device_nodes_are_refused_without_blocking() {
    let (t, granted) = layout();
    let dir = std::fs::File::open(&granted).unwrap();
    sys::mknodat(dir.as_fd(), c"fifo", libc::S_IFIFO | 0o666, 0).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(granted.join("sock")).unwrap();
    let null = sys::mknodat(
        dir.as_fd(),
        c"null",
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    let mut g = Guest::isolated(&[
        (&granted, "/g", Access::ReadWrite),
        (Path::new("/dev"), "/hostdev", Access::ReadOnly),
    ]);
    let started = std::time::Instant::now();
    for flags in [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR] {
        assert_eq!(g.open("/g/fifo", flags), Err(libc::EACCES));
        assert_eq!(g.open("/g/sock", flags), Err(libc::EACCES));
        assert_eq!(
            g.open("/hostdev/null", flags & !libc::O_ACCMODE),
            Err(libc::EACCES)
        );
        if null.is_ok() {
            assert_eq!(g.open("/g/null", flags), Err(libc::EACCES));
        }
    }
    assert_eq!(g.path_op(op::TRUNCATE, "/g/fifo", 0, 0), Err(libc::EINVAL));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        g.open("/g/fifo", libc::O_PATH).is_ok(),
        "O_PATH opens nothing"
    );
    assert!(g.stat("/g/fifo", 0).is_ok());
    assert!(g.fs.stats().escapes_of(Escape::SpecialFile) >= 9);
    drop(t);
}

#[test]
fn proc_and_dev_lookups_are_the_guest_kernels() {
    let mut g = Guest::new(&[], true);
    for (path, canonical) in [
        ("/proc/self/maps", "/proc/self/maps"),
        ("/proc/self/../1/./status", "/proc/1/status"),
        ("/proc", "/proc"),
        ("/dev/null", "/dev/null"),
        ("//dev/./pts/../tty", "/dev/tty"),
        (
            "/etc/../proc/self/root/etc/passwd",
            "/proc/self/root/etc/passwd",
        ),
        ("/../../dev/pts/", "/dev/pts"),
    ] {
        let r = g.open_req(path, libc::O_RDONLY, 0);
        assert_eq!((r.ret, r.out_handle), (0, SYNTHETIC), "{path}");
        assert_eq!(out_path(&r), canonical, "{path}");
    }
    let root = g.open("/", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    let mut r = req(op::OPEN, root, b"proc/self/fd/3");
    r.flags = libc::O_RDONLY as u32;
    let r = g.call(&r);
    assert_eq!(
        (r.out_handle, out_path(&r)),
        (SYNTHETIC, "/proc/self/fd/3".into())
    );
    let r = g.open_req("/proc/..", libc::O_RDONLY, 0);
    assert_eq!((r.ret, out_path(&r)), (0, "/".into()));
    assert_ne!(r.out_handle, SYNTHETIC);
    let mut r = req(op::STAT, ROOT_HANDLE, b"/dev/zero");
    r.flags = 0;
    let r = g.call(&r);
    assert_eq!(
        (r.ret, r.out_handle, out_path(&r)),
        (0, SYNTHETIC, "/dev/zero".into())
    );
    assert_eq!(g.list_path("/sys").unwrap(), [".", ".."]);
    assert_eq!(g.open("/sys/kernel", libc::O_RDONLY), Err(libc::ENOENT));
    // Below the guest's /dev, /dev/shm is a host directory of the view's
    // own, empty and writable; `..` from it is the guest's /dev again.
    let r = g.open_req("/../../dev/shm/", libc::O_RDONLY | libc::O_DIRECTORY, 0);
    assert_eq!((r.ret, out_path(&r)), (0, "/dev/shm".into()));
    assert_ne!(r.out_handle, SYNTHETIC);
    assert_eq!(g.list_path("/dev/shm").unwrap(), [".", ".."]);
    let f = g.open(
        "/dev/shm/sem.x",
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
    );
    assert!(f.is_ok_and(|h| h != SYNTHETIC), "{f:?}");
    assert_eq!(g.list_path("/dev/shm").unwrap(), [".", "..", "sem.x"]);
    let r = g.open_req("/dev/shm/..", libc::O_RDONLY, 0);
    assert_eq!((r.ret, r.out_handle), (0, SYNTHETIC));
    assert_eq!(out_path(&r), "/dev");
}

#[test]
fn the_isolated_root_lists_only_mount_points() {
    let (t, granted) = layout();
    let mut g = Guest::isolated(&[
        (&granted, "/a/b", Access::ReadWrite),
        (&granted, "/c", Access::ReadOnly),
    ]);
    assert_eq!(
        g.list_path("/").unwrap(),
        [".", "..", "a", "c", "dev", "proc", "sys"]
    );
    assert_eq!(g.list_path("/a").unwrap(), [".", "..", "b"]);
    assert_eq!(g.list_path("/a/b").unwrap(), [".", "..", "inside"]);
    let root = g.open("/", libc::O_RDONLY).unwrap();
    assert_eq!(g.list(root, 24).unwrap().len(), 7, "one record per piece");
    assert_eq!(g.list(root, 16), Err(libc::EINVAL));
    let st = g.stat("/a", 0).unwrap();
    assert_eq!((st.mode, st.nlink), (libc::S_IFDIR | 0o555, 2));
    assert_eq!(g.fstat(ROOT_HANDLE).unwrap().mode, libc::S_IFDIR | 0o555);
    assert_eq!(g.path_op(op::MKDIR, "/new", 0, 0o755), Err(libc::EROFS));
    assert_eq!(
        g.open("/new", libc::O_CREAT | libc::O_WRONLY),
        Err(libc::EROFS)
    );
    assert_eq!(g.open("/a", libc::O_WRONLY), Err(libc::EISDIR));
    assert_eq!(g.open("/etc/passwd", libc::O_RDONLY), Err(libc::ENOENT));
    assert_eq!(
        g.path_op(op::UNLINK, "/a", libc::AT_REMOVEDIR, 0),
        Err(libc::EBUSY)
    );
    assert_eq!(g.pread(root, 0, 10), Err(libc::EISDIR));
    drop(t);
}

#[test]
fn overlong_paths_and_names_are_enametoolong() {
    let (_t, granted) = layout();
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    let long = format!("/g/{}", "a/".repeat(2047));
    assert_eq!(long.len(), 4097);
    let mut r = req(op::OPEN, ROOT_HANDLE, &long.as_bytes()[..4095]);
    assert_eq!(
        g.call(&r).ret,
        -i64::from(libc::ENOENT),
        "4095 bytes is a path"
    );
    r.path_len = 4096;
    assert_eq!(g.call(&r).ret, -i64::from(libc::ENAMETOOLONG));
    r.path_len = u32::MAX;
    assert_eq!(g.call(&r).ret, -i64::from(libc::ENAMETOOLONG));
    let name = format!("/g/{}", "n".repeat(256));
    assert_eq!(g.open(&name, libc::O_RDONLY), Err(libc::ENAMETOOLONG));
    let name = format!("/g/{}", "n".repeat(255));
    assert_eq!(g.open(&name, libc::O_RDONLY), Err(libc::ENOENT));
}

#[test]
fn symlink_loops_and_long_chains_are_eloop() {
    let (t, granted) = layout();
    t.symlink("granted/a", "b");
    t.symlink("granted/b", "a");
    t.symlink("granted/l0", "inside/x");
    for i in 1..=41 {
        t.symlink(&format!("granted/l{i}"), &format!("l{}", i - 1));
    }
    let mut g = Guest::isolated(&[(&granted, "/g", Access::ReadWrite)]);
    assert_eq!(g.open("/g/a", libc::O_RDONLY), Err(libc::ELOOP));
    assert_eq!(g.open("/g/a/x", libc::O_RDONLY), Err(libc::ELOOP));
    assert_eq!(g.read_file("/g/l39").unwrap(), b"INSIDE", "40 links");
    assert_eq!(
        g.open("/g/l40", libc::O_RDONLY),
        Err(libc::ELOOP),
        "41 links"
    );
}

#[test]
fn host_pseudo_file_systems_are_never_reached() {
    let mut g = Guest::new(&[], true);
    let r = g.open_req("/sys/kernel", libc::O_RDONLY, 0);
    assert_eq!(r.ret, -i64::from(libc::ENOENT));
    let mut g = Guest::isolated(&[(Path::new("/"), "/host", Access::ReadOnly)]);
    assert_eq!(
        g.open("/host/proc/self/environ", libc::O_RDONLY),
        Err(libc::ENOENT)
    );
    assert_eq!(
        g.open("/host/sys/kernel", libc::O_RDONLY),
        Err(libc::ENOENT)
    );
    assert!(g.fs.stats().escapes_of(Escape::PseudoFs) >= 2);
}
