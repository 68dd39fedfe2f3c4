//! Programs vmrun cannot run are refused with a clear message: malformed
//! ELF files (each made at test time by damaging hello_raw) exit 126, a
//! missing file or ELF interpreter 127, a directory 126.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

// ELF64 header and program header field offsets.
const EI_CLASS: usize = 4;
const E_MACHINE: usize = 0x12;
const E_PHOFF: usize = 0x20;
const E_PHENTSIZE: usize = 0x36;
const E_PHNUM: usize = 0x38;
const P_TYPE: usize = 0;
const P_OFFSET: usize = 8;
const P_VADDR: usize = 0x10;
const P_FILESZ: usize = 0x20;
const P_MEMSZ: usize = 0x28;
const PT_LOAD: u32 = 1;
const KERNEL_HALF: u64 = 0xffff_8880_0000_0000;

/// A directory of its own under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("vmrun-test-{}-{tag}", std::process::id()));
        fs::create_dir_all(&dir).expect("creating a scratch directory");
        ScratchDir(dir)
    }

    /// Writes an executable file `name` holding `bytes`.
    fn program(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).expect("writing a test program");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn write_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn write_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// File offsets of the PT_LOAD program headers, in order.
fn load_headers(elf: &[u8]) -> Vec<usize> {
    let phoff = read_u64(elf, E_PHOFF) as usize;
    let entsize = read_u16(elf, E_PHENTSIZE) as usize;
    let headers = (0..read_u16(elf, E_PHNUM) as usize).map(|i| phoff + i * entsize);
    headers
        .filter(|&ph| read_u32(elf, ph + P_TYPE) == PT_LOAD)
        .collect()
}

fn hello_raw() -> Vec<u8> {
    fs::read(image("hello_raw")).expect("reading hello_raw")
}

/// Damages hello_raw with `damage`, runs it, and expects 126 and `message`.
fn check_refused(tag: &str, damage: impl FnOnce(&mut Vec<u8>), message: &str) {
    if !require_kvm() {
        return;
    }
    let mut elf = hello_raw();
    damage(&mut elf);
    let scratch = ScratchDir::new(tag);
    let output = vmrun([scratch.program(tag, &elf)]);
    assert_status(&output, 126);
    assert_stderr_contains(&output, message);
}

#[test]
fn file_cut_to_30_bytes_is_refused_as_truncated() {
    check_refused("cut30", |elf| elf.truncate(30), "truncated ELF file");
}

#[test]
fn file_cut_inside_a_segments_data_is_refused_as_truncated() {
    let cut = |elf: &mut Vec<u8>| {
        let last = *load_headers(elf).last().expect("a PT_LOAD");
        let middle = read_u64(elf, last + P_OFFSET) + read_u64(elf, last + P_FILESZ) / 2;
        elf.truncate(middle as usize);
    };
    check_refused("cutseg", cut, "truncated ELF file");
}

#[test]
fn bad_magic_is_refused_as_not_an_elf_file() {
    check_refused("magic", |elf| elf[1] = b'X', "not an ELF file (bad magic)");
}

#[test]
fn elf_class_32_is_refused_as_not_64_bit() {
    check_refused("class32", |elf| elf[EI_CLASS] = 1, "not a 64-bit ELF");
}

#[test]
fn machine_3_is_refused_as_wrong_machine() {
    check_refused(
        "machine",
        |elf| write_u16(elf, E_MACHINE, 3),
        "wrong machine 0x3",
    );
}

#[test]
fn filesz_above_memsz_is_refused() {
    let grow = |elf: &mut Vec<u8>| {
        let first = load_headers(elf)[0];
        let memsz = read_u64(elf, first + P_MEMSZ);
        write_u64(elf, first + P_FILESZ, memsz + 1);
    };
    check_refused("filesz", grow, "exceeds p_memsz");
}

#[test]
fn segment_in_the_kernel_half_is_refused_as_beyond_user_space() {
    let moved = |elf: &mut Vec<u8>| {
        let first = load_headers(elf)[0];
        write_u64(elf, first + P_VADDR, KERNEL_HALF);
    };
    check_refused("kernelhalf", moved, "reaches beyond user space");
}

#[test]
fn phnum_0xffff_is_refused_as_too_many_program_headers() {
    check_refused(
        "phnum",
        |elf| write_u16(elf, E_PHNUM, 0xffff),
        "too many program headers",
    );
}

#[test]
fn phentsize_32_is_refused_as_bad_program_header_size() {
    check_refused(
        "phentsize",
        |elf| write_u16(elf, E_PHENTSIZE, 32),
        "bad program header size",
    );
}

#[test]
fn dynamic_program_with_a_missing_interpreter_is_refused() {
    if !require_kvm() {
        return;
    }
    let program = Path::new("/bin/true");
    if !program.exists() {
        eprintln!("SKIPPED: /bin/true does not exist on this host");
        return;
    }
    // The same program with its PT_INTERP path pointing nowhere.
    let mut image = std::fs::read(program).unwrap();
    let want = b"/lib64/ld-linux-x86-64.so.2\0";
    let at = image
        .windows(want.len())
        .position(|w| w == want)
        .expect("/bin/true names glibc's ld.so");
    image[at + want.len() - 2] = b'X';
    let scratch = ScratchDir::new("nointerp");
    let copy = scratch.program("true-nointerp", &image);
    // execve gives ENOENT for a missing interpreter: bash 5.2 and dash exit
    // 127 ("cannot execute: required file not found", "not found").
    let output = vmrun([&copy]);
    assert_status(&output, 127);
    assert_stderr_contains(
        &output,
        "ELF interpreter /lib64/ld-linux-x86-64.so.X: ENOENT",
    );
}

#[test]
fn missing_file_exits_127_with_no_such_file() {
    if !require_kvm() {
        return;
    }
    let scratch = ScratchDir::new("missing");
    let output = vmrun([scratch.0.join("no-such-program")]);
    assert_status(&output, 127);
    assert_stderr_contains(&output, "No such file or directory");
}

#[test]
fn directory_exits_126() {
    if !require_kvm() {
        return;
    }
    let scratch = ScratchDir::new("directory");
    assert_status(&vmrun([&scratch.0]), 126);
}

#[test]
fn damaging_helpers_find_hello_raws_load_segments() {
    let elf = hello_raw();
    let loads = load_headers(&elf);
    assert!(!loads.is_empty(), "hello_raw has no PT_LOAD");
    let last = *loads.last().unwrap();
    assert!(
        read_u64(&elf, last + P_FILESZ) >= 2,
        "the last PT_LOAD must have file data to cut"
    );
    assert!(read_u64(&elf, last + P_OFFSET) + read_u64(&elf, last + P_FILESZ) <= elf.len() as u64);
}

#[test]
fn an_empty_file_is_refused_as_empty_and_a_text_file_as_not_an_elf_file() {
    check_refused("empty", |elf| elf.clear(), "empty file (not an ELF file");
    check_refused(
        "text",
        |elf| *elf = b"hello\nthis is text\n".to_vec(),
        "not an ELF file (bad magic)",
    );
}

#[test]
fn a_file_without_execute_permission_is_refused_with_permission_denied_and_126() {
    if !require_kvm() {
        return;
    }
    let scratch = ScratchDir::new("noexec");
    let program = scratch.program("noexec", &hello_raw());
    fs::set_permissions(&program, fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = vmrun([&program]);
    assert_status(&output, 126);
    assert_stderr_contains(&output, "Permission denied");
}

#[test]
fn a_script_with_a_shebang_line_runs_as_natively() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/bin/echo"]) {
        return;
    }
    let scratch = ScratchDir::new("shebang");
    let script = scratch.program("script", b"#!/bin/echo from\n");
    let native = native(&script, ["x"]);
    assert_same(
        "#!/bin/echo script",
        &native,
        &vmrun([script.as_os_str(), "x".as_ref()]),
    );
}

#[test]
fn a_segment_where_the_stack_goes_is_refused_saying_so() {
    let over_stack = |elf: &mut Vec<u8>| {
        let last = *load_headers(elf).last().expect("a PT_LOAD");
        let page_offset = read_u64(elf, last + P_VADDR) & 0xfff;
        // The last page below the stack's top at 0x7ffffffff000.
        write_u64(elf, last + P_VADDR, 0x7fff_ffff_d000 + page_offset);
    };
    check_refused(
        "overstack",
        over_stack,
        "a PT_LOAD segment lies where the stack goes",
    );
}
