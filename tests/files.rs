//! Files: the guest's view of the host's file tree. Each test runs the same
//! command natively and under vmrun, in the same test, and compares exit
//! status, stdout and stderr byte for byte; commands that write work on two
//! identical copies of the same fixtures (one per run) and the two trees
//! are compared afterwards. The last tests check what only vmrun does: the
//! default view (host tree read-only, current directory read-write) and
//! `--isolate` with `--mount`, which must not let a path escape.
//!
//! Most commands are Debian's busybox-static (`.ci/run` installs it; tests
//! that need it say SKIPPED without it). Both runs pass the same argv
//! (`/bin/busybox APPLET ARGS...`), and busybox names the applet, not
//! argv[0], in its messages, so even stderr must match byte for byte.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The fixed modification time every fixture gets, as `touch -d` reads it
/// (with TZ=UTC). Older than six months, so `ls -l` prints the year.
const FIXED_MTIME: &str = "2021-02-03 04:05:06";

// ---------------------------------------------------------------------------
// Workspaces and fixtures

/// A fresh directory under the system's temporary directory with two
/// identical copies of the fixtures, `native/` and `guest/`. Removed when
/// the test passes; kept (and named on stderr) when it fails.
struct Workspace {
    root: PathBuf,
}

impl Workspace {
    fn new(test: &str) -> Workspace {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "vmrun-files-{test}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // Files the runs create get the same modes whatever umask the test
        // harness started with: the native child inherits this one, and so
        // does vmrun (should the guest take the host's rather than start at
        // Linux's 022). Every test here wants the same, so setting it for
        // the whole process is harmless.
        // SAFETY: umask only swaps the process's file-mode mask.
        unsafe { libc::umask(0o022) };
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        Workspace { root }
    }

    /// A new workspace whose `native/` and `guest/` hold the standard
    /// fixtures ([`populate`]), all with the fixed mtime.
    fn with_fixtures(test: &str) -> Workspace {
        let ws = Workspace::new(test);
        for dir in [ws.native(), ws.guest()] {
            fs::create_dir(&dir).unwrap();
            populate(&dir);
            fix_mtimes(&dir);
        }
        ws
    }

    fn native(&self) -> PathBuf {
        self.root.join("native")
    }

    fn guest(&self) -> PathBuf {
        self.root.join("guest")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("files test: kept {} for inspection", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// ~200 KiB of numbered lines: more than a page, with repeats for sort.
fn big_text() -> String {
    (0..6000)
        .map(|i| {
            format!(
                "line {i:05} value {} {}\n",
                (i * 7919) % 1000,
                ["alpha", "beta", "gamma"][i % 3]
            )
        })
        .collect()
}

/// Every byte value, then a pseudo-random tail.
fn binary_bytes() -> Vec<u8> {
    (0..=255u8)
        .chain((0..700u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8))
        .collect()
}

const LINES: &str = "pear,3,green\napple,10,red\nbanana,7,yellow\napple,10,red\n\
                     cherry,25,red\nbanana,7,yellow\ndate,4,brown\n";
const DUPS: &str = "a\na\nb\nc\nc\nc\na\nd\n";

/// The standard fixtures:
///
/// ```text
/// hello.txt  lines.txt  dups.txt  big.txt  binary.bin  hello-link -> hello.txt
/// tree/ a.txt b.txt run.sh(0755) link -> a.txt  empty/  sub/ c.txt  deep/ d.txt
/// ```
fn populate(dir: &Path) {
    let write = |name: &str, bytes: &[u8]| {
        fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"))
    };
    write("hello.txt", b"hello, world\n");
    write("lines.txt", LINES.as_bytes());
    write("dups.txt", DUPS.as_bytes());
    write("big.txt", big_text().as_bytes());
    write("binary.bin", &binary_bytes());
    symlink("hello.txt", dir.join("hello-link")).unwrap();
    for sub in ["tree/empty", "tree/sub/deep"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    write("tree/a.txt", b"alpha red\nsecond line of a\n");
    write("tree/b.txt", b"beta green\n");
    write("tree/run.sh", b"#!/bin/sh\necho red\n");
    fs::set_permissions(dir.join("tree/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write("tree/sub/c.txt", b"gamma red\nanother red line\n");
    write("tree/sub/deep/d.txt", b"delta blue\n");
    symlink("a.txt", dir.join("tree/link")).unwrap();
}

/// Sets every path under `dir`, and `dir` itself, to [`FIXED_MTIME`] with
/// the host's `touch -h -d` (symlinks themselves, not their targets).
fn fix_mtimes(dir: &Path) {
    let mut paths = Vec::new();
    collect_paths(dir, &mut paths);
    paths.push(dir.to_path_buf());
    let output = Command::new("touch")
        .env("TZ", "UTC")
        .args(["-h", "-d", FIXED_MTIME])
        .args(&paths)
        .output()
        .expect("running touch");
    assert!(
        output.status.success(),
        "touch -h -d failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn collect_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            collect_paths(&path, out);
        }
        out.push(path);
    }
}

/// What a tree holds, for comparing the native and the guest copy after
/// commands that write: every path (relative), its type, permission bits,
/// and contents or symlink target. Not times, inodes or sizes of
/// directories, which differ between two copies legitimately.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Link { target: PathBuf },
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut map = BTreeMap::new();
    snapshot_into(dir, Path::new(""), &mut map);
    map
}

fn snapshot_into(dir: &Path, rel: &Path, map: &mut BTreeMap<PathBuf, Node>) {
    for entry in fs::read_dir(dir.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        let path = dir.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let node = if meta.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&path).unwrap(),
            }
        } else if meta.is_dir() {
            snapshot_into(dir, &rel, map);
            Node::Dir { mode }
        } else {
            Node::File {
                mode,
                bytes: fs::read(&path).unwrap(),
            }
        };
        map.insert(rel, node);
    }
}

/// Asserts the native and guest copies hold the same tree; the message
/// names the paths that differ (not megabytes of contents).
fn assert_same_trees(ws: &Workspace, after: &str) {
    let native = snapshot(&ws.native());
    let guest = snapshot(&ws.guest());
    if native == guest {
        return;
    }
    let mut report = String::new();
    for (path, node) in &native {
        match guest.get(path) {
            None => report += &format!("  only native: {}\n", path.display()),
            Some(g) if g != node => {
                report += &format!(
                    "  differs: {} (native {}, guest {})\n",
                    path.display(),
                    brief(node),
                    brief(g)
                )
            }
            Some(_) => {}
        }
    }
    for path in guest.keys().filter(|p| !native.contains_key(*p)) {
        report += &format!("  only guest: {}\n", path.display());
    }
    panic!(
        "after {after}, the guest's copy differs from the native one (workspace {}):\n{report}",
        ws.root.display()
    );
}

fn brief(node: &Node) -> String {
    match node {
        Node::Dir { mode } => format!("dir {mode:o}"),
        Node::File { mode, bytes } => format!("file {mode:o}, {} bytes", bytes.len()),
        Node::Link { target } => format!("symlink -> {}", target.display()),
    }
}

// ---------------------------------------------------------------------------
// Running things natively and under vmrun

/// Debian's busybox-static, or `None` after a SKIPPED line.
fn busybox() -> Option<&'static Path> {
    let path = Path::new("/bin/busybox");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIPPED: /bin/busybox is missing (apt-get install busybox-static)");
        None
    }
}

/// The same environment for both runs: the guest inherits vmrun's, so
/// setting it on both commands makes dates (TZ) and messages (LC_ALL) alike.
fn prepare(command: &mut Command, dir: &Path) {
    command.current_dir(dir).env("TZ", "UTC").env("LC_ALL", "C");
}

fn native_in(dir: &Path, program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    prepare(&mut command, dir);
    run(command, stdin)
}

/// `vmrun --check OPTIONS PROGRAM ARGS...` run in `dir`.
fn guest_in(dir: &Path, options: &[&OsStr], program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all: Vec<&OsStr> = options.to_vec();
    all.push(program.as_os_str());
    all.extend(args.iter().map(OsStr::new));
    let mut command = vmrun_command(all);
    prepare(&mut command, dir);
    run(command, stdin)
}

/// Up to 3000 bytes of a stream, for failure messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(3000)]).into_owned();
    if bytes.len() > 3000 {
        format!("{text}... ({} bytes in all)", bytes.len())
    } else {
        text
    }
}

fn account(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        shell_status(&output.status),
        excerpt(&output.stdout),
        excerpt(&output.stderr)
    )
}

/// Where two byte strings first differ, for failure messages.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// Asserts the two runs agree byte for byte: status, stdout and stderr.
fn assert_same_output(what: &str, native: &Output, guest: &Output) {
    let status = shell_status(&native.status) == shell_status(&guest.status);
    let stdout = first_difference(&native.stdout, &guest.stdout);
    let stderr = first_difference(&native.stderr, &guest.stderr);
    assert!(
        status && stdout.is_none() && stderr.is_none(),
        "`{what}`: vmrun differs from native (status same: {status}, first stdout \
         difference at {stdout:?}, first stderr difference at {stderr:?})\n\
         ===== native =====\n{}\n===== vmrun =====\n{}",
        account(native),
        account(guest)
    );
}

/// Asserts the native run ended with `status`: the fixtures and the command
/// do what the test means, before vmrun is compared with them.
fn assert_native_status(what: &str, native: &Output, status: i32) {
    assert_eq!(
        shell_status(&native.status),
        status,
        "`{what}` natively (the test's own expectation):\n{}",
        account(native)
    );
}

/// One command for both runs: busybox applet and arguments, standard input,
/// and the exit status it has natively.
struct Step<'a> {
    args: &'a [&'a str],
    stdin: &'a [u8],
    status: i32,
}

const fn ok<'a>(args: &'a [&'a str]) -> Step<'a> {
    Step {
        args,
        stdin: b"",
        status: 0,
    }
}

const fn fails<'a>(args: &'a [&'a str]) -> Step<'a> {
    Step {
        args,
        stdin: b"",
        status: 1,
    }
}

/// Runs each step natively and under vmrun, both in `dir` (for commands
/// that only read: both see the very same files), and compares them.
fn same_in_one_dir(bb: &Path, dir: &Path, steps: &[Step]) {
    for step in steps {
        let what = step.args.join(" ");
        let native = native_in(dir, bb, step.args, step.stdin);
        assert_native_status(&what, &native, step.status);
        let guest = guest_in(dir, &[], bb, step.args, step.stdin);
        assert_same_output(&what, &native, &guest);
    }
}

/// Runs each step natively in `native/` and under vmrun in `guest/`,
/// compares the runs, then compares the two trees.
fn same_in_copies(bb: &Path, ws: &Workspace, steps: &[Step]) {
    for step in steps {
        let what = step.args.join(" ");
        let native = native_in(&ws.native(), bb, step.args, step.stdin);
        assert_native_status(&what, &native, step.status);
        let guest = guest_in(&ws.guest(), &[], bb, step.args, step.stdin);
        assert_same_output(&what, &native, &guest);
        assert_same_trees(ws, &what);
    }
}

// ---------------------------------------------------------------------------
// busybox: reading

#[test]
fn busybox_text_tools_read_files_as_natively() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("text");
    same_in_one_dir(
        bb,
        &ws.native(),
        &[
            ok(&["cat", "hello.txt"]),
            ok(&["cat", "hello.txt", "big.txt", "hello-link"]),
            ok(&["cat", "binary.bin"]),
            ok(&["sort", "lines.txt"]),
            ok(&["sort", "-t", ",", "-k", "2", "-n", "-r", "lines.txt"]),
            ok(&["sort", "-u", "big.txt"]),
            ok(&["sha256sum", "big.txt", "binary.bin", "hello.txt"]),
            ok(&["md5sum", "big.txt", "binary.bin", "tree/sub/c.txt"]),
            ok(&["wc", "big.txt", "lines.txt", "binary.bin"]),
            ok(&["head", "-n", "3", "big.txt"]),
            ok(&["head", "-c", "100", "binary.bin"]),
            ok(&["tail", "-n", "5", "big.txt"]),
            ok(&["tail", "-c", "33", "big.txt"]),
            ok(&["grep", "-rn", "red", "tree"]),
            ok(&["grep", "-c", "gamma", "big.txt"]),
            ok(&["awk", "-F,", "{ s += $2 } END { print s, NR }", "lines.txt"]),
            ok(&["awk", "-F,", "$3 == \"red\" { print $1 }", "lines.txt"]),
            Step {
                args: &["tr", "a-z", "A-Z"],
                stdin: LINES.as_bytes(),
                status: 0,
            },
            Step {
                args: &["tr", "-d", "\\n"],
                stdin: b"hello, world\n",
                status: 0,
            },
            ok(&["cut", "-d", ",", "-f", "1,3", "lines.txt"]),
            ok(&["cut", "-c", "6-10", "big.txt"]),
            ok(&["uniq", "-c", "dups.txt"]),
            ok(&["uniq", "-d", "dups.txt"]),
            ok(&["od", "-A", "x", "-t", "x1", "binary.bin"]),
            ok(&["od", "-c", "hello.txt"]),
        ],
    );
}

#[test]
fn busybox_ls_find_du_and_stat_see_the_same_directory() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("ls");
    // Both runs list the same directory (`tree/..` is `native/`, whose
    // mtime is fixed too), so sizes, link counts and blocks agree.
    same_in_one_dir(
        bb,
        &ws.native(),
        &[
            ok(&["ls", "-la", "tree"]),
            ok(&["ls", "-la", "tree/sub", "tree/empty"]),
            ok(&["ls", "-la", "tree/link"]),
            ok(&["ls", "-la", "hello-link"]),
            ok(&["ls", "-laR", "tree"]),
            ok(&["ls", "-lL", "tree/link"]),
            ok(&["ls", "-1"]),
            ok(&["ls", "-la", "--full-time", "tree"]),
            ok(&["find", "tree"]),
            ok(&["find", ".", "-name", "*.txt", "-type", "f"]),
            ok(&["find", "tree", "-type", "l"]),
            ok(&["find", "tree", "-type", "d", "-empty"]),
            ok(&["du", "-a", "tree"]),
            ok(&["du", "-s", "."]),
            // Everything but access and change times (which reads move).
            ok(&[
                "stat",
                "-c",
                "%n|%s|%b|%a|%A|%F|%h|%u|%g|%U|%G|%Y|%N",
                "hello.txt",
                "hello-link",
                "tree",
                "tree/run.sh",
                "tree/link",
                "tree/empty",
                "binary.bin",
            ]),
            ok(&["stat", "-L", "-c", "%n %s %F", "tree/link"]),
            ok(&["readlink", "tree/link"]),
            ok(&["pwd"]),
        ],
    );
}

// ---------------------------------------------------------------------------
// busybox: writing (each run on its own copy)

#[test]
fn busybox_sed_in_place_edits_the_copy_as_natively() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("sed");
    same_in_copies(
        bb,
        &ws,
        &[
            ok(&[
                "sed",
                "-i",
                "-e",
                "s/apple/APPLE/g",
                "-e",
                "/date/d",
                "lines.txt",
            ]),
            ok(&["sed", "-i", "s/red/RED/", "tree/a.txt", "tree/sub/c.txt"]),
            ok(&["cat", "lines.txt", "tree/a.txt", "tree/sub/c.txt"]),
        ],
    );
    let edited = fs::read_to_string(ws.native().join("lines.txt")).unwrap();
    assert!(
        edited.contains("APPLE,10,red") && !edited.contains("date"),
        "{edited}"
    );
}

#[test]
fn busybox_cp_mv_rm_and_mkdir_change_the_copy_as_natively() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("cp");
    same_in_copies(
        bb,
        &ws,
        &[
            ok(&["cp", "hello.txt", "copy.txt"]),
            ok(&["cp", "big.txt", "binary.bin", "tree/empty"]),
            ok(&["cp", "-r", "tree", "tree2"]),
            ok(&["mv", "copy.txt", "moved.txt"]),
            ok(&["mv", "tree2/sub", "tree2/sub-moved"]),
            ok(&["mv", "moved.txt", "tree2/sub-moved/deep"]),
            ok(&["mkdir", "-p", "new/a/b/c"]),
            ok(&["mkdir", "-p", "new/a/b/c"]),
            ok(&["mkdir", "-m", "700", "private"]),
            ok(&["cp", "tree/run.sh", "new/a/b/c/"]),
            ok(&["ln", "-s", "../hello.txt", "new/up-link"]),
            ok(&["ln", "hello.txt", "hard-link"]),
            ok(&["cat", "new/up-link", "hard-link"]),
            ok(&["rm", "tree2/sub-moved/deep/moved.txt"]),
            ok(&["rm", "-r", "tree2/sub-moved"]),
            fails(&["rmdir", "new/a/b/c/../../b/c/../c"]),
            ok(&["rm", "-rf", "tree2", "private"]),
            ok(&["chmod", "600", "hello.txt"]),
            ok(&["touch", "-d", FIXED_MTIME, "new/made-by-touch"]),
            ok(&["ls", "-1", "new"]),
            ok(&["find", "new"]),
        ],
    );
    let native = ws.native();
    assert!(native.join("new/a/b/c/run.sh").is_file());
    assert!(!native.join("tree2").exists());
    assert!(native.join("tree/empty/big.txt").is_file());
}

#[test]
fn busybox_gzip_and_gunzip_round_trip_as_natively() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("gzip");
    same_in_copies(
        bb,
        &ws,
        &[
            ok(&["gzip", "big.txt"]),
            ok(&["gzip", "-k", "binary.bin"]),
            ok(&["gzip", "-c", "lines.txt"]),
            ok(&["gzip", "-t", "big.txt.gz", "binary.bin.gz"]),
            ok(&["gunzip", "big.txt.gz"]),
            ok(&["gunzip", "-c", "binary.bin.gz"]),
            ok(&["rm", "binary.bin.gz"]),
        ],
    );
    assert_eq!(
        fs::read(ws.native().join("big.txt")).unwrap(),
        big_text().as_bytes()
    );
}

#[test]
fn busybox_tar_create_and_extract_round_trip_as_natively() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("tar");
    // `-o`: extract without chown (ownership is not what is tested here).
    same_in_copies(
        bb,
        &ws,
        &[
            ok(&["tar", "cf", "out.tar", "tree", "hello.txt", "hello-link"]),
            ok(&["tar", "tvf", "out.tar"]),
            ok(&["mkdir", "x"]),
            ok(&["tar", "xof", "out.tar", "-C", "x"]),
            ok(&["ls", "-1R", "x"]),
            ok(&["tar", "xOf", "out.tar", "tree/sub/c.txt"]),
        ],
    );
    let native = snapshot(&ws.native().join("tree"));
    let extracted = snapshot(&ws.native().join("x/tree"));
    assert!(native == extracted, "tar x did not restore tree/ natively");
}

// ---------------------------------------------------------------------------
// busybox: errors

#[test]
fn busybox_errors_on_missing_files_and_directories_are_as_native() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("errors");
    same_in_copies(
        bb,
        &ws,
        &[
            fails(&["cat", "missing.txt"]),
            fails(&["cat", "hello.txt", "missing.txt", "lines.txt"]),
            // A directory opened and read as a file: EISDIR from read.
            fails(&["cat", "tree"]),
            // ... and opened for writing: EISDIR from open.
            Step {
                args: &["tee", "tree"],
                stdin: b"text\n",
                status: 1,
            },
            fails(&["ls", "missing.txt"]),
            fails(&["mkdir", "tree"]),
            fails(&["rmdir", "tree"]),
            fails(&["rm", "tree"]),
            fails(&["rm", "missing.txt"]),
            fails(&["cp", "hello.txt", "hello.txt/x"]),
            fails(&["cat", "hello.txt/"]),
            fails(&["mv", "missing.txt", "x.txt"]),
            fails(&["head", "tree/missing/x"]),
            fails(&["readlink", "-v", "hello.txt"]),
            // A path through a device: ENOTDIR, as through a file.
            fails(&["cat", "/dev/null/x"]),
            Step {
                args: &["tee", "/dev/null/x"],
                stdin: b"text\n",
                status: 1,
            },
        ],
    );
}

// ---------------------------------------------------------------------------
// Our own programs

#[test]
fn file_mmap_maps_files_and_remaps_as_natively() {
    if !require_kvm() {
        return;
    }
    let ws = Workspace::new("mmap");
    for dir in [ws.native(), ws.guest()] {
        fs::create_dir(&dir).unwrap();
    }
    let program = image("file_mmap");
    let native = native_in(&ws.native(), &program, &["data.bin"], b"");
    assert_native_status("file_mmap data.bin", &native, 0);
    assert!(
        native.stdout.ends_with(b"all checks passed\n") && native.stderr.is_empty(),
        "{}",
        account(&native)
    );
    let guest = guest_in(&ws.guest(), &[], &program, &["data.bin"], b"");
    assert_same_output("file_mmap data.bin", &native, &guest);
    assert_same_trees(&ws, "file_mmap");
}

/// The calls of a path (stat, lstat, statx, readlink, access, and by a path
/// relative to the working directory; the VMM's fast call once the first
/// has gone through the kernel) give what they give natively, and each
/// answer is byte for byte the one the kernel gives for the same path
/// relative to a dirfd: files, a directory, links (followed and not), a
/// dangling one, missing paths, a file used as a directory, `.` and `..`
/// on the way, under `/usr` (the host's tree) and in the fixtures (the
/// current directory, read-write). Then the bad calls: a bad buffer, a bad
/// path, an empty one, unknown flags, a path or a name too long. Both runs
/// stat the same fixtures, so inode numbers match too. The lines of
/// extended attributes and write access depend on the host's file system
/// and on vmrun's view of it, so they are compared only with a run under
/// `--strace`, where every call enters the kernel: that run's output is
/// the fast calls' run's, every line.
#[test]
fn calls_of_a_path_are_as_native_and_as_the_kernels() {
    if !require_kvm() {
        return;
    }
    let ws = Workspace::with_fixtures("stat-paths");
    let dir = ws.native();
    let d = dir.display();
    let paths: Vec<String> = [
        "hello.txt",
        "hello-link",
        "tree",
        "tree/run.sh",
        "tree/link",
        "tree/sub/deep/d.txt",
        "missing",
        "hello.txt/x",
        "tree/./sub/../a.txt",
        "dangling",
    ]
    .iter()
    .map(|p| format!("{d}/{p}"))
    .chain(["/usr/lib".to_string(), "/usr/bin/env".to_string()])
    .collect();
    symlink("nowhere", dir.join("dangling")).unwrap();
    let mut args: Vec<&str> = vec!["-n", "300"];
    args.extend(paths.iter().map(String::as_str));
    let program = image("stat_paths");
    let native = native_in(&dir, &program, &args, b"");
    assert_native_status("stat_paths", &native, 0);
    let text = String::from_utf8_lossy(&native.stdout);
    assert!(!text.contains("DIFFERENT"), "{text}");
    let guest = guest_in(&dir, &[], &program, &args, b"");
    let without_xattr = |o: &Output| Output {
        stdout: String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("host "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes(),
        ..o.clone()
    };
    assert_same_output(
        "stat_paths",
        &without_xattr(&native),
        &without_xattr(&guest),
    );
    let traced = guest_in(&dir, &["--strace".as_ref()], &program, &args, b"");
    assert!(traced.status.success(), "{}", account(&traced));
    assert!(
        traced.stdout == guest.stdout,
        "under --strace (every call in the kernel):\n{}\nwith fast calls:\n{}",
        excerpt(&traced.stdout),
        excerpt(&guest.stdout)
    );
}

/// A store through a shared writable file mapping reaches the file when
/// the program exits without msync or munmap: with the leak check (`--check`
/// tears every address space down at the end) and without it (the last
/// exit frees nothing, but still writes shared mappings back).
#[test]
fn shared_map_stores_reach_the_file_at_exit_with_or_without_the_leak_check() {
    if !require_kvm() {
        return;
    }
    let ws = Workspace::new("shared-store");
    let program = image("shared_store");
    let original = vec![b'.'; 100];
    let dirs = ["native", "checked", "plain"].map(|d| ws.root.join(d));
    for dir in &dirs {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("data"), &original).unwrap();
    }
    let native = native_in(&dirs[0], &program, &["data"], b"");
    assert_native_status("shared_store data", &native, 0);
    let checked = guest_in(&dirs[1], &[], &program, &["data"], b"");
    assert_status(&checked, 0);
    let mut plain = Command::new(env!("CARGO_BIN_EXE_vmrun"));
    plain.arg(&program).arg("data");
    prepare(&mut plain, &dirs[2]);
    let plain = run(plain, b"");
    assert_status(&plain, 0);
    let want = fs::read(dirs[0].join("data")).unwrap();
    assert!(
        want.starts_with(b"stored through a shared map\n"),
        "{want:?}"
    );
    for dir in &dirs[1..] {
        assert_eq!(
            fs::read(dir.join("data")).unwrap(),
            want,
            "{}",
            dir.display()
        );
    }
}

#[test]
fn files_rs_rust_std_file_api_works_as_natively() {
    if !require_kvm() {
        return;
    }
    let ws = Workspace::new("files-rs");
    for dir in [ws.native(), ws.guest()] {
        fs::create_dir_all(dir.join("work")).unwrap();
        fs::write(dir.join("work/existing.txt"), b"was here first\n").unwrap();
    }
    let program = image("files_rs");
    let native = native_in(&ws.native(), &program, &["work"], b"");
    assert_native_status("files_rs work", &native, 0);
    assert!(
        native.stdout.ends_with(b"done\n") && native.stderr.is_empty(),
        "{}",
        account(&native)
    );
    let guest = guest_in(&ws.guest(), &[], &program, &["work"], b"");
    assert_same_output("files_rs work", &native, &guest);
    assert_same_trees(&ws, "files_rs");
}

/// The lines of a maps listing without Linux's vDSO-family lines (vmrun's
/// guest has no vDSO, and the host's view never lists one).
fn maps_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !(l.contains("[vdso]") || l.contains("[vvar") || l.contains("[vsyscall]")))
        .collect()
}

/// Whether `line` looks like a maps line: `start-end perms ...` in hex.
fn is_maps_line(line: &str) -> bool {
    let Some((range, rest)) = line.split_once(' ') else {
        return false;
    };
    let Some((start, end)) = range.split_once('-') else {
        return false;
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    hex(start) && hex(end) && rest.len() >= 4
}

#[test]
fn proc_self_maps_equals_the_hosts_maps_view_at_exit() {
    if !require_kvm() {
        return;
    }
    let ws = Workspace::new("maps");
    let program = fs::canonicalize(image("proc_maps")).unwrap();
    // Natively the program must print a maps listing naming itself.
    let native = native_in(&ws.root, &program, &[], b"");
    assert_native_status("proc_maps", &native, 0);
    let native_text = String::from_utf8_lossy(&native.stdout);
    assert!(
        native_text.contains("[stack]") && native_text.contains(&*program.to_string_lossy()),
        "{}",
        account(&native)
    );

    // Under vmrun the guest kernel's /proc/self/maps (stdout) must equal
    // the host's own rendering of the exported VMAs at exit (stderr, after
    // "vmrun: maps at exit (pid 1):"): nothing is mapped after the file is read.
    let guest = guest_in(&ws.root, &[OsStr::new("--maps")], &program, &[], b"");
    assert_status(&guest, 0);
    let stderr = String::from_utf8_lossy(&guest.stderr);
    let at_exit = stderr
        .split("vmrun: maps at exit (pid 1):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no maps at exit:\n{}", account(&guest)));
    let host_view: Vec<&str> = maps_lines(at_exit)
        .into_iter()
        .take_while(|l| is_maps_line(l))
        .collect();
    let guest_text = String::from_utf8_lossy(&guest.stdout);
    let guest_view = maps_lines(&guest_text);
    assert!(!host_view.is_empty(), "{}", account(&guest));
    assert_eq!(
        guest_view, host_view,
        "the guest's /proc/self/maps (left) against vmrun --maps at exit (right)"
    );
}

// ---------------------------------------------------------------------------
// What only vmrun does: the views

/// Runs busybox under vmrun only (nothing native to compare with).
fn guest_bb(bb: &Path, dir: &Path, options: &[&OsStr], args: &[&str]) -> Output {
    guest_in(dir, options, bb, args, b"")
}

/// Asserts a failed run with exactly `stderr` and nothing on stdout.
fn assert_fails_with(output: &Output, what: &str, stderr: &str) {
    assert!(
        shell_status(&output.status) == 1
            && output.stdout.is_empty()
            && String::from_utf8_lossy(&output.stderr) == stderr,
        "`{what}` should fail with {stderr:?}:\n{}",
        account(output)
    );
}

/// Asserts a failed run whose stderr contains `needle`.
fn assert_fails_mentioning(output: &Output, what: &str, needle: &str) {
    assert!(
        shell_status(&output.status) != 0
            && String::from_utf8_lossy(&output.stderr).contains(needle),
        "`{what}` should fail mentioning {needle:?}:\n{}",
        account(output)
    );
}

fn assert_succeeds_with(output: &Output, what: &str, stdout: &[u8]) {
    assert!(
        shell_status(&output.status) == 0 && output.stdout == stdout && output.stderr.is_empty(),
        "`{what}` should print {:?}:\n{}",
        String::from_utf8_lossy(stdout),
        account(output)
    );
}

#[test]
fn default_view_is_the_host_tree_read_only_and_the_cwd_read_write() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::with_fixtures("default-view");
    let guest = ws.guest();

    // The guest starts in the host's current directory.
    let native_pwd = native_in(&guest, bb, &["pwd"], b"");
    assert_native_status("pwd", &native_pwd, 0);
    assert_same_output("pwd", &native_pwd, &guest_bb(bb, &guest, &[], &["pwd"]));

    // Outside it, the host's files are readable, by absolute and relative path...
    let elsewhere = ws.native().join("hello.txt");
    let elsewhere = elsewhere.to_str().unwrap();
    assert_succeeds_with(
        &guest_bb(bb, &guest, &[], &["cat", elsewhere]),
        "cat",
        b"hello, world\n",
    );
    assert_succeeds_with(
        &guest_bb(bb, &guest, &[], &["cat", "../native/hello.txt"]),
        "cat ../native/hello.txt",
        b"hello, world\n",
    );
    // ... but not writable.
    let output = guest_bb(bb, &guest, &[], &["touch", "../outside.txt"]);
    assert_fails_with(
        &output,
        "touch ../outside.txt",
        "touch: ../outside.txt: Read-only file system\n",
    );
    assert!(!ws.path("outside.txt").exists());
    let output = guest_bb(bb, &guest, &[], &["rm", elsewhere]);
    assert_fails_mentioning(&output, "rm outside the cwd", "Read-only file system");
    assert!(ws.native().join("hello.txt").exists());

    // Inside it, writes reach the host.
    assert_succeeds_with(
        &guest_bb(bb, &guest, &[], &["cp", "hello.txt", "made-in-guest.txt"]),
        "cp in the cwd",
        b"",
    );
    assert_eq!(
        fs::read(guest.join("made-in-guest.txt")).unwrap(),
        b"hello, world\n"
    );
}

#[test]
fn isolate_with_mounts_lets_no_path_escape() {
    if !require_kvm() {
        return;
    }
    let Some(bb) = busybox() else { return };
    let ws = Workspace::new("escape");
    let data = ws.path("data");
    let ro = ws.path("ro");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::create_dir(&ro).unwrap();
    fs::write(data.join("hello.txt"), b"inside data\n").unwrap();
    fs::write(ro.join("file.txt"), b"read-only file\n").unwrap();
    // Natively these point out of the directory, to real files.
    symlink("/etc/passwd", data.join("link-abs")).unwrap();
    symlink("../../../../etc/hostname", data.join("link-rel")).unwrap();
    symlink("/", data.join("link-root")).unwrap();
    symlink("../..", data.join("link-up")).unwrap();

    let data_mount = format!("{}:/data", data.display());
    let ro_mount = format!("{}:/ro:ro", ro.display());
    let options: Vec<&OsStr> = vec![
        "--isolate".as_ref(),
        "--mount".as_ref(),
        data_mount.as_ref(),
        "--mount".as_ref(),
        ro_mount.as_ref(),
    ];
    let vm = |args: &[&str]| guest_bb(bb, &ws.root, &options, args);

    // What was granted works...
    assert_succeeds_with(
        &vm(&["cat", "/data/hello.txt"]),
        "cat /data/hello.txt",
        b"inside data\n",
    );
    assert_succeeds_with(
        &vm(&["cat", "/ro/file.txt"]),
        "cat /ro/file.txt",
        b"read-only file\n",
    );
    assert_succeeds_with(
        &vm(&["cp", "/ro/file.txt", "/data/copied.txt"]),
        "cp /ro/file.txt /data/copied.txt",
        b"",
    );
    assert_eq!(
        fs::read(data.join("copied.txt")).unwrap(),
        b"read-only file\n"
    );

    // ... and nothing else can be named: `..` stops at the view's root and
    // symlinks are resolved inside the view.
    for path in [
        "/etc/passwd",
        "/data/../../etc/passwd",
        "/data/sub/../../../etc/hostname",
        "/data/link-abs",
        "/data/link-rel",
        "/data/link-root/etc/passwd",
        "/data/link-up/etc/passwd",
    ] {
        let output = vm(&["cat", path]);
        assert_fails_with(
            &output,
            &format!("cat {path}"),
            &format!("cat: can't open '{path}': No such file or directory\n"),
        );
    }
    for path in ["/proc/self/root/etc/passwd", "/proc/self/cwd/../etc/passwd"] {
        let output = vm(&["cat", path]);
        assert!(
            shell_status(&output.status) != 0 && output.stdout.is_empty(),
            "`cat {path}` must fail under --isolate:\n{}",
            account(&output)
        );
    }
    // A symlink the guest makes itself is no way out either.
    assert_succeeds_with(
        &vm(&["ln", "-s", "../../../etc/passwd", "/data/made-link"]),
        "ln -s",
        b"",
    );
    assert_fails_with(
        &vm(&["cat", "/data/made-link"]),
        "cat /data/made-link",
        "cat: can't open '/data/made-link': No such file or directory\n",
    );
    let listing = vm(&["ls", "/data/../.."]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        !listing.lines().any(|l| l == "etc" || l == "usr"),
        "the isolated root lists host directories:\n{listing}"
    );

    // The read-only mount refuses every change.
    for (args, needle) in [
        (
            &["touch", "/ro/new.txt"][..],
            "touch: /ro/new.txt: Read-only file system\n",
        ),
        (
            &["mkdir", "/ro/dir"][..],
            "mkdir: can't create directory '/ro/dir': Read-only file system\n",
        ),
        (
            &["rm", "/ro/file.txt"][..],
            "rm: can't remove '/ro/file.txt': Read-only file system\n",
        ),
    ] {
        assert_fails_with(&vm(args), &args.join(" "), needle);
    }
    let output = vm(&["cp", "/data/hello.txt", "/ro/copy.txt"]);
    assert_fails_mentioning(&output, "cp into /ro", "Read-only file system");
    let output = vm(&["sed", "-i", "s/read/write/", "/ro/file.txt"]);
    assert_fails_mentioning(&output, "sed -i on /ro", "Read-only file system");
    // A hard link from the read-only mount into the writable one.
    let output = vm(&["ln", "/ro/file.txt", "/data/x"]);
    assert_fails_mentioning(&output, "ln /ro/file.txt /data/x", "ln: ");
    assert!(!data.join("x").exists(), "ln made /data/x");

    let mut left: Vec<String> = fs::read_dir(&ro)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["file.txt"], "the read-only directory changed");
    assert_eq!(fs::read(ro.join("file.txt")).unwrap(), b"read-only file\n");
}

/// fstat (glibc's `newfstatat(fd, "", AT_EMPTY_PATH)`) of host files open
/// by fd, which the kernel serves on its short path, gives what it gives
/// natively and what a stat of the same path gives: a regular file, a
/// directory, `O_PATH` fds of a file and of a symlink itself, and EBADF
/// for a closed fd. Checked with python3.
#[test]
fn fstat_of_a_host_file_by_fd_is_the_stat_of_its_path_as_natively() {
    if !require_kvm() || !require_programs(&["/usr/bin/python3"]) {
        return;
    }
    let prog = r#"
import os
def show(s):
    return (oct(s.st_mode), s.st_size, s.st_ino, s.st_nlink, s.st_uid, s.st_gid, s.st_mtime_ns, s.st_blocks)
for path, flags in (("/etc/passwd", os.O_RDONLY), ("/usr/bin", os.O_RDONLY), ("/usr/bin/python3", os.O_PATH), ("/bin/sh", os.O_PATH | os.O_NOFOLLOW)):
    fd = os.open(path, flags)
    a = show(os.fstat(fd))
    b = show(os.stat(path, follow_symlinks=not flags & os.O_NOFOLLOW))
    print(path, a, a == b)
    os.close(fd)
    try:
        os.fstat(fd)
    except OSError as e:
        print("closed", e.errno)
"#;
    let args: [&OsStr; 3] = ["/usr/bin/python3".as_ref(), "-c".as_ref(), prog.as_ref()];
    let native = run(native_command(Path::new(args[0]), &args[1..]), b"");
    assert_status(&native, 0);
    assert_eq!(
        String::from_utf8_lossy(&native.stdout)
            .matches(") True")
            .count(),
        4,
        "{}",
        describe(&native)
    );
    let guest = run(vmrun_command(args), b"");
    assert_same("python3 fstat of host files", &native, &guest);
}

/// access(2) of absolute host paths, which the kernel serves on its short
/// path (ld.so's of `/etc/ld.so.preload`), gives what it gives natively:
/// an existing file, directory and program for each mode the host's view
/// allows, a missing file and directory, a path through a file, one with
/// `..`, and, still served by the full path, `/proc` and `/dev` paths, a
/// relative one, an empty one and one of 300 bytes. Checked with python3
/// calling libc's access for its errno.
#[test]
fn access_of_host_paths_answers_as_natively() {
    if !require_kvm() || !require_programs(&["/usr/bin/python3"]) {
        return;
    }
    let prog = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
paths = ["/etc/passwd", "/usr/bin", "/usr/bin/python3", "/etc/ld.so.preload.missing",
         "/no/such/dir/x", "/etc/passwd/x", "/usr/bin/../bin/python3", "/proc/self/status",
         "/dev/null", "etc", "", "/" + "a" * 299]
for path in paths:
    for mode in 0, 1, 4, 5:
        ctypes.set_errno(0)
        r = libc.access(path.encode(), mode)
        print(path[:40], mode, r, ctypes.get_errno() if r else 0)
"#;
    let args: [&OsStr; 3] = ["/usr/bin/python3".as_ref(), "-c".as_ref(), prog.as_ref()];
    let mut native = native_command(Path::new(args[0]), &args[1..]);
    native.current_dir("/");
    let native = run(native, b"");
    assert_status(&native, 0);
    assert!(
        String::from_utf8_lossy(&native.stdout).contains("/etc/ld.so.preload.missing 0 -1 2"),
        "{}",
        describe(&native)
    );
    let mut guest = vmrun_command(args);
    guest.current_dir("/");
    let guest = run(guest, b"");
    assert_same("python3 access of host paths", &native, &guest);
}
