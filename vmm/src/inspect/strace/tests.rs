use super::*;

fn enter(nr: u32, a: [u64; 6]) -> Record {
    Record {
        kind: kind::SYSCALL_ENTER,
        aux: nr,
        tsc: 0,
        a,
    }
}

fn exit(nr: u32, ret: i64) -> Record {
    Record {
        kind: kind::SYSCALL_EXIT,
        aux: nr,
        tsc: 0,
        a: [ret as u64, 100, 0, 0, 0, 0],
    }
}

/// User memory: `bytes` at 0x402000, nothing elsewhere.
fn memory(bytes: &'static [u8]) -> impl Fn(u64, &mut [u8]) -> usize {
    move |va: u64, buf: &mut [u8]| {
        let Some(off) = va.checked_sub(0x40_2000) else {
            return 0;
        };
        let src = bytes.get(off as usize..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        n
    }
}

#[test]
fn raw_hello_gives_exactly_stracess_lines() {
    let mem = memory(b"hello, world\n");
    let records = [
        enter(1, [1, 0x40_2000, 13, 0, 0, 0]),
        exit(1, 13),
        enter(60, [0, 0, 0, 0, 0, 0]),
    ];
    let mut lines = strace_lines(&records, &mem);
    lines.push(exited_line(0));
    assert_eq!(
        lines,
        [
            r#"write(1, "hello, world\n", 13) = 13"#,
            "exit(0) = ?",
            "+++ exited with 0 +++",
        ]
    );
}

#[test]
fn errors_print_errno_name_and_text() {
    let mem = memory(b"/etc/passwd\0");
    let records = [enter(2, [0x40_2000, 0, 0, 0, 0, 0]), exit(2, -38)];
    assert_eq!(
        strace_lines(&records, &mem),
        [r#"open("/etc/passwd", O_RDONLY) = -1 ENOSYS (Function not implemented)"#]
    );
}

#[test]
fn open_with_o_creat_shows_the_mode() {
    let mem = memory(b"out\0");
    let records = [enter(2, [0x40_2000, 0o1101, 0o644, 0, 0, 0]), exit(2, 3)];
    assert_eq!(
        strace_lines(&records, &mem),
        [r#"open("out", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3"#]
    );
}

#[test]
fn unknown_call_prints_number_and_hex_args() {
    let records = [enter(999, [1, 2, 0x10, 0, 0, 0]), exit(999, -38)];
    assert_eq!(
        strace_lines(&records, &NoMemory),
        ["syscall_999(0x1, 0x2, 0x10, 0x0, 0x0, 0x0) = -1 ENOSYS (Function not implemented)"]
    );
}

#[test]
fn mmap_brk_and_arch_prctl_read_like_strace() {
    let records = [
        enter(12, [0, 0, 0, 0, 0, 0]),
        exit(12, 0x4c_c000),
        enter(9, [0, 8192, 3, 0x22, u64::MAX, 0]),
        exit(9, 0x7fff_f7ff_9000),
        enter(158, [0x1002, 0x4c_9380, 0, 0, 0, 0]),
        exit(158, 0),
        enter(228, [1, 0x7fff_ffff_e000, 0, 0, 0, 0]),
        exit(228, 0),
    ];
    assert_eq!(
        strace_lines(&records, &NoMemory),
        [
            "brk(NULL) = 0x4cc000",
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff9000",
            "arch_prctl(ARCH_SET_FS, 0x4c9380) = 0",
            "clock_gettime(CLOCK_MONOTONIC, 0x7fffffffe000) = 0",
        ]
    );
}

#[test]
fn read_shows_the_bytes_it_returned() {
    let mem = memory(b"abc\x01def");
    let records = [enter(0, [0, 0x40_2000, 100, 0, 0, 0]), exit(0, 5)];
    assert_eq!(
        strace_lines(&records, &mem),
        [r#"read(0, "abc\1d", 100) = 5"#]
    );
    let failed = [enter(0, [0, 0x40_2000, 100, 0, 0, 0]), exit(0, -9)];
    assert_eq!(
        strace_lines(&failed, &mem),
        ["read(0, 0x402000, 100) = -1 EBADF (Bad file descriptor)"]
    );
}

#[test]
fn long_buffers_are_cut_at_32_bytes() {
    let mem = memory(b"0123456789abcdef0123456789abcdefXYZ");
    let records = [enter(1, [2, 0x40_2000, 35, 0, 0, 0]), exit(1, 35)];
    assert_eq!(
        strace_lines(&records, &mem),
        [r#"write(2, "0123456789abcdef0123456789abcdef"..., 35) = 35"#]
    );
}

#[test]
fn unreadable_buffer_prints_its_address() {
    let records = [enter(1, [1, 0x1000, 4, 0, 0, 0]), exit(1, -14)];
    assert_eq!(
        strace_lines(&records, &NoMemory),
        ["write(1, 0x1000, 4) = -1 EFAULT (Bad address)"]
    );
}

#[test]
fn quoting_matches_strace_escapes() {
    assert_eq!(quote(b"a\"b\\c\t\r\x0b\x0c", false), r#""a\"b\\c\t\r\v\f""#);
    assert_eq!(quote(b"\x00\x01x", false), r#""\0\1x""#);
    assert_eq!(quote(b"\x001", false), r#""\0001""#);
    assert_eq!(quote(b"\xff\x7f", true), r#""\377\177"..."#);
}

#[test]
fn unmatched_exit_and_dangling_enter() {
    let records = [exit(39, 1), enter(0, [0, 0x40_2000, 1, 0, 0, 0])];
    assert_eq!(
        strace_lines(&records, &NoMemory),
        ["<... getpid resumed>) = 1", "read(0, 0x402000, 1) = ?"]
    );
}

#[test]
fn killed_line_names_the_signal() {
    assert_eq!(killed_line(11), "+++ killed by SIGSEGV +++");
}

#[test]
fn glibc_start_up_calls_read_like_strace() {
    let mem = memory(b"\x01\x02\0");
    let records = [
        enter(302, [0, 3, 0, 0x7fff_ffff_eca0, 0, 0]),
        exit(302, 0),
        enter(318, [0x40_2000, 2, 1, 0, 0, 0]),
        exit(318, 2),
        enter(262, [1, 0x40_2002, 0x7fff_ffff_eaa0, 0x1000, 0, 0]),
        exit(262, 0),
        enter(16, [1, 0x5401, 0x7fff_ffff_e000, 0, 0, 0]),
        exit(16, -25),
    ];
    assert_eq!(
        strace_lines(&records, &mem),
        [
            "prlimit64(0, RLIMIT_STACK, NULL, 0x7fffffffeca0) = 0",
            r#"getrandom("\1\2", 2, GRND_NONBLOCK) = 2"#,
            r#"newfstatat(1, "", 0x7fffffffeaa0, AT_EMPTY_PATH) = 0"#,
            "ioctl(1, TCGETS, 0x7fffffffe000) = -1 ENOTTY (Inappropriate ioctl for device)",
        ]
    );
}
