//! The catalogue of guest test programs: each image's name, source file,
//! compiler and flags. `build.rs` compiles from this table and `lib.rs`
//! answers questions about it, so the two can never disagree.

/// The toolchain that builds an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compiler {
    /// The host's `gcc` (glibc, or no libc at all). Required.
    Gcc,
    /// `musl-gcc` from Debian's `musl-tools`. Optional: the image is skipped without it.
    MuslGcc,
    /// The `rustc` that builds this crate, linking glibc statically.
    Rustc,
}

impl Compiler {
    /// The program run for this toolchain (`rustc` is Cargo's `$RUSTC` when set).
    pub fn command(self) -> &'static str {
        match self {
            Compiler::Gcc => "gcc",
            Compiler::MuslGcc => "musl-gcc",
            Compiler::Rustc => "rustc",
        }
    }

    /// Whether images built with it are skipped, rather than failing the
    /// build, when it is missing.
    pub fn is_optional(self) -> bool {
        self == Compiler::MuslGcc
    }
}

/// One guest program: how it is built and what it is for.
#[derive(Debug)]
pub struct Image {
    /// The name tests use, and the file name of the built program.
    pub name: &'static str,
    /// The source file, relative to `images/c/`.
    pub source: &'static str,
    /// The toolchain that builds it.
    pub compiler: Compiler,
    /// Compiler flags (besides the source, `-I images/c` and `-o`).
    pub flags: &'static [&'static str],
    /// One line on what it checks.
    pub summary: &'static str,
}

/// Flags for statically linked C programs.
const STATIC: &[&str] = &["-static", "-O2", "-Wall", "-Wextra"];
/// Flags for the libc-free program: our own `_start`, no startup files.
const NO_LIBC: &[&str] = &[
    "-nostdlib",
    "-static",
    "-O2",
    "-fno-pie",
    "-no-pie",
    "-fno-stack-protector",
    "-ffreestanding",
    "-Wall",
    "-Wextra",
];
/// Flags for a static PIE: ET_DYN without PT_INTERP, relocating itself.
const STATIC_PIE: &[&str] = &["-static-pie", "-fpie", "-O2", "-Wall", "-Wextra"];
/// Flags for a Rust std program linked statically against glibc.
const RUST_STATIC: &[&str] = &[
    "-C",
    "opt-level=2",
    "-C",
    "target-feature=+crt-static",
    "--edition=2021",
];

/// Flags for dynamically linked programs (glibc's or musl's ld.so as
/// PT_INTERP; gcc's default PIE, so ET_DYN at 0x555555554000).
const STATIC_DEBUG: &[&str] = &["-static", "-g", "-O0", "-Wall", "-Wextra"];

const DYNAMIC: &[&str] = &["-O2", "-Wall", "-Wextra"];
/// Flags for a Rust std program linked dynamically against glibc.
const RUST_DYNAMIC: &[&str] = &["-C", "opt-level=2", "--edition=2021"];

const fn c_image(name: &'static str, source: &'static str, summary: &'static str) -> Image {
    Image {
        name,
        source,
        compiler: Compiler::Gcc,
        flags: STATIC,
        summary,
    }
}

/// Every image, required and optional.
pub const IMAGES: &[Image] = &[
    Image {
        name: "hello_raw",
        source: "hello_raw.c",
        compiler: Compiler::Gcc,
        flags: NO_LIBC,
        summary: "write(2) and exit(2) through raw `syscall`, no libc",
    },
    c_image("hello_static", "hello.c", "glibc -static printf"),
    Image {
        name: "hello_pie",
        source: "hello.c",
        compiler: Compiler::Gcc,
        flags: STATIC_PIE,
        summary: "glibc -static-pie printf (ET_DYN without PT_INTERP)",
    },
    Image {
        name: "hello_musl",
        source: "hello.c",
        compiler: Compiler::MuslGcc,
        flags: STATIC,
        summary: "musl -static printf",
    },
    Image {
        name: "printf_lines_musl",
        source: "printf_lines.c",
        compiler: Compiler::MuslGcc,
        flags: STATIC,
        summary: "musl -static printf of N lines (stdio flushes with writev)",
    },
    Image {
        name: "hello_rust",
        source: "hello.rs",
        compiler: Compiler::Rustc,
        flags: RUST_STATIC,
        summary: "Rust std println!, crt-static (a static PIE)",
    },
    c_image("exit42", "exit42.c", "returns 42 from main"),
    c_image(
        "null_deref",
        "null_deref.c",
        "prints a line, then stores through NULL: SIGSEGV",
    ),
    c_image(
        "bad_address",
        "bad_address.c",
        "reads, writes and jumps to kernel-half and non-canonical addresses: SIGSEGV",
    ),
    c_image(
        "bad_pointers",
        "bad_pointers.c",
        "system calls with kernel-half, non-canonical and straddling pointers and absurd lengths",
    ),
    c_image(
        "inspect",
        "inspect.c",
        "argv, envp, auxv, .data/.bss and stack self-checks",
    ),
    Image {
        name: "inspect_pie",
        source: "inspect.c",
        compiler: Compiler::Gcc,
        flags: STATIC_PIE,
        summary: "inspect as a static PIE: AT_ENTRY and AT_PHDR include the load bias",
    },
    c_image(
        "brk_test",
        "brk_test.c",
        "raw brk: grow, shrink, regrow reads zero",
    ),
    c_image(
        "mmap_test",
        "mmap_test.c",
        "anonymous mmap/munmap/mprotect, fatal modes",
    ),
    c_image(
        "limits",
        "limits.c",
        "vm.max_map_count, RLIMIT_AS/DATA/STACK against mmap, brk and the stack",
    ),
    c_image(
        "touch_mem",
        "touch_mem.c",
        "touches one byte per page of N MiB",
    ),
    c_image(
        "fault_size",
        "fault_size.c",
        "anonymous faults per page touched; contents after munmap, mprotect, mremap and fork of 64 KiB blocks and 2 MiB pages",
    ),
    c_image(
        "maps_probe",
        "maps_probe.c",
        "heap, mmap, mprotect, munmap, then its own /proc/self/maps",
    ),
    c_image(
        "write_binary",
        "write_binary.c",
        "byte-exact binary output, writev",
    ),
    c_image(
        "read_stdin",
        "read_stdin.c",
        "cat: stdin to stdout, byte count on stderr",
    ),
    c_image(
        "stdin_reads",
        "stdin_reads.c",
        "reads of stdin of every size into fresh, split and bad buffers, with alarms and a fork",
    ),
    c_image(
        "stat_paths",
        "stat_paths.c",
        "stat, lstat and statx of absolute paths, each against the same call by a dirfd",
    ),
    c_image(
        "walk_tree",
        "walk_tree.c",
        "a directory tree walked as du walks it (openat, fcntl, a dup, getdents64, fstatat by the dup), and an fd number reused",
    ),
    c_image(
        "bench_anon",
        "bench_anon.c",
        "vmrun bench: timed anonymous faults (bulk MiB touch, 64 KiB maps)",
    ),
    c_image(
        "bench_file",
        "bench_file.c",
        "vmrun bench: timed read and copy-on-write faults on 8 MiB file arrays",
    ),
    c_image(
        "bench_brk",
        "bench_brk.c",
        "vmrun bench: timed sbrk(4096) plus first touch",
    ),
    c_image(
        "bench_syscall",
        "bench_syscall.c",
        "vmrun bench: timed syscall(SYS_getpid), a one-byte write and three in-kernel queries",
    ),
    c_image(
        "bench_fileio",
        "bench_fileio.c",
        "vmrun bench: timed cached 4 KiB pread, 1 MiB pread and open+close of a 1 MiB file",
    ),
    c_image(
        "bench_proc",
        "bench_proc.c",
        "vmrun bench: timed fork+_exit+wait4, a pipe round trip between two processes, FUTEX_WAKE",
    ),
    c_image(
        "bench_clock",
        "bench_clock.c",
        "vmrun bench: timed clock_gettime(CLOCK_MONOTONIC), through the vDSO",
    ),
    Image {
        name: "bench_hello_dyn",
        source: "bench_hello_dyn.c",
        compiler: Compiler::Gcc,
        flags: &["-O2", "-Wall", "-Wextra"],
        summary: "vmrun bench: dynamically linked hello that reads the TSC first thing in main",
    },
    c_image(
        "bad_syscall_args",
        "bad_syscall_args.c",
        "EFAULT, EBADF and ENOSYS checks",
    ),
    c_image(
        "file_mmap",
        "file_mmap.c",
        "file-backed MAP_PRIVATE (copy-on-write) and MAP_SHARED maps, mremap, MADV_DONTNEED",
    ),
    c_image(
        "shared_store",
        "shared_store.c",
        "stores through a MAP_SHARED file map and exits without msync: written back at exit",
    ),
    Image {
        name: "files_rs",
        source: "files_rs.rs",
        compiler: Compiler::Rustc,
        flags: RUST_STATIC,
        summary: "Rust std files: write, read back, read_dir, rename, metadata, permissions",
    },
    c_image(
        "proc_maps",
        "proc_maps.c",
        "copies its own /proc/self/maps to stdout in small reads",
    ),
    c_image(
        "exec_test",
        "exec_test.c",
        "execve/execveat of a target, failing execs that must return, cloexec, an exec loop",
    ),
    Image {
        name: "exec_loop",
        source: "exec_loop.c",
        compiler: Compiler::Gcc,
        flags: NO_LIBC,
        summary: "no libc: execs itself N times, then exits 0 (the exec leak check)",
    },
    Image {
        name: "exec_test_pie",
        source: "exec_test.c",
        compiler: Compiler::Gcc,
        flags: STATIC_PIE,
        summary: "exec_test as a static PIE (an exec target of another kind)",
    },
    c_image(
        "auxv",
        "auxv.c",
        "prints its auxiliary vector and getauxval's answers",
    ),
    Image {
        name: "auxv_dyn",
        source: "auxv.c",
        compiler: Compiler::Gcc,
        flags: DYNAMIC,
        summary: "auxv, dynamically linked (AT_BASE is ld.so's)",
    },
    Image {
        name: "proc_maps_dyn",
        source: "proc_maps.c",
        compiler: Compiler::Gcc,
        flags: DYNAMIC,
        summary: "proc_maps, dynamically linked: ld.so and libc.so.6 in its maps",
    },
    Image {
        name: "hello_rust_dyn",
        source: "hello.rs",
        compiler: Compiler::Rustc,
        flags: RUST_DYNAMIC,
        summary: "Rust std println!, linked dynamically against glibc",
    },
    Image {
        name: "hello_musl_dyn",
        source: "hello.c",
        compiler: Compiler::MuslGcc,
        flags: DYNAMIC,
        summary: "musl printf, dynamically linked (ld-musl as PT_INTERP)",
    },
    c_image(
        "proc_test",
        "proc_test.c",
        "fork/exec/wait, posix_spawn, vfork, zombies, orphans, pipes, SIGPIPE, copy-on-write",
    ),
    Image {
        name: "fork_loop",
        source: "fork_loop.c",
        compiler: Compiler::Gcc,
        flags: NO_LIBC,
        summary: "no libc: N rounds of fork, exit and wait4 (the fork leak check)",
    },
    c_image(
        "proc_edge",
        "proc_edge.c",
        "alarms while others block, SIGCHLD to a killer, exit and raise from a thread",
    ),
    c_image(
        "timers",
        "timers.c",
        "POSIX timers: signals with SI_TIMER, overruns, SIGEV_THREAD_ID and SIGEV_THREAD, exec",
    ),
    c_image(
        "signalfd",
        "signalfd.c",
        "signalfd: reads, mask updates, blocking, poll and epoll, SIGCHLD and timer signals",
    ),
    c_image(
        "robust",
        "robust.c",
        "robust mutexes: a thread or a process dies holding one, the next lock gets EOWNERDEAD",
    ),
    c_image(
        "vsyscall",
        "vsyscall.c",
        "calls the legacy vsyscall page; exec of a file open for writing (ETXTBSY)",
    ),
    c_image(
        "threads",
        "threads.c",
        "glibc pthreads: four threads, a mutex, a condition variable, join",
    ),
    Image {
        name: "threads_musl",
        source: "threads.c",
        compiler: Compiler::MuslGcc,
        flags: STATIC,
        summary: "musl pthreads: the same program",
    },
    Image {
        name: "threads_rs",
        source: "threads_rs.rs",
        compiler: Compiler::Rustc,
        flags: RUST_STATIC,
        summary: "Rust std threads with a channel, an Arc and a Mutex",
    },
    c_image(
        "signal_test",
        "signal_test.c",
        "signal handlers: SIGSEGV with siginfo, sigaltstack, blocked then unblocked, kill",
    ),
    Image {
        name: "gdb_target",
        source: "gdb_target.c",
        compiler: Compiler::Gcc,
        flags: STATIC_DEBUG,
        summary: "debug info, a local, a global, a malloc that grows the heap; `segv` crashes",
    },
    c_image(
        "syscall_fuzz",
        "syscall_fuzz.c",
        "SEED COUNT: raw syscalls 0-500 with edge-case arguments; must survive them and exit 0",
    ),
];
