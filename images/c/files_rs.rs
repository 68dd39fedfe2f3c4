//! files_rs: Rust std's file API on a directory given as the only argument.
//!
//! Writes a file there, reads it back, lists the directory with `read_dir`
//! (names sorted, with their types), renames the file, checks its metadata
//! (length, type, permission bits under a known umask and after
//! `set_permissions`), appends to it, checks that bytes cut off by a
//! truncation read back as zeros when the file grows over them again (by a
//! write further on, or a larger `set_len`; the cut made by `set_len`, by
//! an open with O_TRUNC or by truncate(2) while another descriptor reads the
//! file), and checks two errors (a
//! missing file, a directory read as a file). Every line it prints is fixed text, with no
//! paths, times or inode numbers, so its output is the same natively and
//! under vmrun. A failed check panics (exit status 101). At exit the
//! directory holds `renamed.txt` (mode 0600) besides what was there before.
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

extern "C" {
    /// glibc's umask(2) wrapper (`mode_t` is `unsigned int`).
    fn umask(mask: u32) -> u32;
    /// glibc's truncate(2) wrapper (`off_t` is `long`).
    fn truncate(path: *const std::ffi::c_char, length: i64) -> i32;
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

/// All of `f` from its start, in reads of one page (each a small read,
/// which a page cache serves from its pages).
fn read_by_pages(f: &mut File) -> Vec<u8> {
    f.seek(SeekFrom::Start(0)).expect("seek to the start");
    let (mut all, mut page) = (Vec::new(), [0u8; 4096]);
    loop {
        match f.read(&mut page).expect("read a page") {
            0 => return all,
            n => all.extend_from_slice(&page[..n]),
        }
    }
}

/// Write 40,000 bytes that are not zero to `path` and read them back by
/// pages, cut the file to 5,000 bytes, write "end" at 30,000: the bytes
/// between read as zeros, as a hole does; then cut it to 5,000 again and
/// grow it to 50,000 with `set_len`: all zeros past 5,000 again.
fn truncate_and_grow(path: &Path) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create the file to cut");
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8 + 1).collect();
    f.write_all(&bytes).expect("write 40,000 bytes");
    assert_eq!(read_by_pages(&mut f), bytes, "read back before the cut");
    f.set_len(5_000).expect("cut to 5,000");
    f.seek(SeekFrom::Start(30_000)).expect("seek to 30,000");
    f.write_all(b"end").expect("write past the cut");
    let after = read_by_pages(&mut f);
    assert_eq!(after.len(), 30_003);
    assert_eq!(after[..5_000], bytes[..5_000], "the bytes kept");
    let stale = after[5_000..30_000].iter().filter(|&&b| b != 0).count();
    assert_eq!(stale, 0, "bytes cut off came back after a write further on");
    assert_eq!(&after[30_000..], b"end");
    f.set_len(5_000).expect("cut to 5,000 again");
    f.set_len(50_000).expect("grow to 50,000");
    let grown = read_by_pages(&mut f);
    let stale = grown[5_000..].iter().filter(|&&b| b != 0).count();
    assert_eq!((grown.len(), stale), (50_000, 0), "bytes cut off came back");
    drop(f);
    println!("truncate and grow: the bytes cut off read as zeros");

    // Cut while another descriptor has the file open (its pages cached):
    // by an open with O_TRUNC, whose write-only descriptor then writes
    // further on, and by truncate(2) of the path.
    fs::write(path, &bytes).expect("write 40,000 bytes again");
    let mut reader = File::open(path).expect("open to read");
    assert_eq!(read_by_pages(&mut reader), bytes);
    let mut writer = File::create(path).expect("open with O_TRUNC");
    writer.seek(SeekFrom::Start(30_000)).expect("seek");
    writer.write_all(b"end").expect("write past the cut");
    let seen = read_by_pages(&mut reader);
    let stale = seen[..30_000].iter().filter(|&&b| b != 0).count();
    assert_eq!((seen.len(), stale), (30_003, 0), "O_TRUNC left the old bytes");
    assert_eq!(&seen[30_000..], b"end");
    println!("O_TRUNC while open: the reader sees the hole and the write");

    fs::write(path, &bytes).expect("write 40,000 bytes once more");
    assert_eq!(read_by_pages(&mut reader), bytes);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { truncate(c_path.as_ptr(), 5_000) }, 0, "truncate");
    let mut page = [0u8; 4096];
    reader.seek(SeekFrom::Start(8_192)).expect("seek past the end");
    assert_eq!(reader.read(&mut page).expect("read past the end"), 0);
    writer.seek(SeekFrom::Start(30_000)).expect("seek");
    writer.write_all(b"end").expect("write past the cut");
    let seen = read_by_pages(&mut reader);
    let stale = seen[5_000..30_000].iter().filter(|&&b| b != 0).count();
    assert_eq!((seen.len(), stale), (30_003, 0), "truncate(2) left the old bytes");
    println!("truncate(2) while open: the reader sees the new end and the hole");
    drop((reader, writer));
    fs::remove_file(path).expect("remove the cut file");
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

    truncate_and_grow(&dir.join("cut.bin"));

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
