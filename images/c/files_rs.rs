//! files_rs: Rust std's file API on a directory given as the only argument.
//!
//! Writes a file there, reads it back, lists the directory with `read_dir`
//! (names sorted, with their types), renames the file, checks its metadata
//! (length, type, permission bits under a known umask and after
//! `set_permissions`), appends to it, and checks two errors (a missing file,
//! a directory read as a file). Every line it prints is fixed text, with no
//! paths, times or inode numbers, so its output is the same natively and
//! under vmrun. A failed check panics (exit status 101). At exit the
//! directory holds `renamed.txt` (mode 0600) besides what was there before.
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

extern "C" {
    /// glibc's umask(2) wrapper (`mode_t` is `unsigned int`).
    fn umask(mask: u32) -> u32;
}

const CONTENT: &str = "first line\nsecond line\nthird line, a little longer\n";

fn listing(dir: &Path) -> String {
    let mut entries: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let kind = entry.file_type().expect("file_type");
            let tag = if kind.is_dir() {
                "/"
            } else if kind.is_symlink() {
                "@"
            } else {
                ""
            };
            format!("{}{tag}", entry.file_name().to_string_lossy())
        })
        .collect();
    entries.sort();
    entries.join(" ")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: files_rs DIR");
    let dir = Path::new(&dir);
    // SAFETY: umask has no memory-safety preconditions.
    unsafe { umask(0o022) };

    let file = dir.join("greeting.txt");
    fs::write(&file, CONTENT).expect("write");
    println!("wrote {} bytes", CONTENT.len());
    let back = fs::read_to_string(&file).expect("read back");
    assert_eq!(back, CONTENT, "read back differs");
    println!("read back: ok");

    fs::create_dir(dir.join("sub")).expect("create_dir");
    fs::write(dir.join("sub").join("inner"), b"x").expect("write inner");
    fs::write(dir.join("b.txt"), b"").expect("write b.txt");
    println!("entries: {}", listing(dir));

    let renamed = dir.join("renamed.txt");
    fs::rename(&file, &renamed).expect("rename");
    let gone = fs::metadata(&file).expect_err("the old name still exists");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    println!("renamed; old name: {:?}", gone.kind());
    println!("entries: {}", listing(dir));

    let meta = fs::metadata(&renamed).expect("metadata");
    println!(
        "len {} is_file {} is_dir {} mode {:o}",
        meta.len(),
        meta.is_file(),
        meta.is_dir(),
        mode(&renamed)
    );
    let sub = fs::metadata(dir.join("sub")).expect("metadata of sub");
    println!(
        "sub: is_dir {} mode {:o}",
        sub.is_dir(),
        mode(&dir.join("sub"))
    );

    fs::set_permissions(&renamed, fs::Permissions::from_mode(0o600)).expect("set_permissions");
    println!("after set_permissions: mode {:o}", mode(&renamed));

    let mut f = OpenOptions::new()
        .append(true)
        .open(&renamed)
        .expect("open for append");
    f.write_all(b"appended\n").expect("append");
    f.sync_all().expect("sync_all");
    drop(f);
    let len = fs::metadata(&renamed).expect("metadata").len();
    assert_eq!(len, (CONTENT.len() + 9) as u64);
    println!("after append: len {len}");

    let missing = fs::read(dir.join("no-such-file")).expect_err("reading a missing file");
    println!(
        "missing file: {:?} (errno {})",
        missing.kind(),
        missing.raw_os_error().unwrap_or(0)
    );
    let is_dir = fs::read(dir.join("sub")).expect_err("reading a directory");
    println!(
        "directory as a file: errno {}",
        is_dir.raw_os_error().unwrap_or(0)
    );

    fs::remove_file(dir.join("sub").join("inner")).expect("remove inner");
    fs::remove_dir(dir.join("sub")).expect("remove_dir");
    fs::remove_file(dir.join("b.txt")).expect("remove b.txt");
    println!("entries: {}", listing(dir));
    println!("done");
}
