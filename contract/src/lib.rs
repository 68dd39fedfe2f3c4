//! The contract between vmrun's host side (`vmm`) and its guest kernel.
//!
//! Both programs depend on this crate and nothing else connects them: the
//! guest-physical memory layout, the boot information the VMM writes before
//! the first instruction, the hypercall port and its request block, and the
//! statistics page the guest keeps up to date. Every shared structure is
//! `#[repr(C)]` with explicit padding, so the two sides agree byte for byte;
//! the boot info carries [`BOOT_MAGIC`] and [`CONTRACT_VERSION`], which the
//! guest checks before it trusts anything else.
//!
//! This crate holds layouts and numbers only, no logic.
#![no_std]
#![deny(missing_docs)]

/// Magic value at the start of [`BootInfo`] ("VMRUNBI1" little endian).
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"VMRUNBI1");
/// Version of this contract; bumped on any incompatible change.
pub const CONTRACT_VERSION: u32 = 18;

/// Guest-physical and guest-virtual memory layout.
pub mod layout {
    /// Size of a base page.
    pub const PAGE_SIZE: u64 = 0x1000;
    /// Size of a large (2 MiB) page.
    pub const HUGE_PAGE_SIZE: u64 = 0x20_0000;

    /// Boot GDT written by the VMM (guest physical; GDTR holds its
    /// direct-map address, as nothing maps low memory identically).
    pub const BOOT_GDT_PHYS: u64 = 0x500;
    /// Boot information page, [`super::BootInfo`] (guest physical).
    pub const BOOT_INFO_PHYS: u64 = 0x1000;
    /// The kernel's PML4, written by the VMM (guest physical): CR3 from the
    /// first instruction on, and the kernel's own for the whole run (it
    /// adopts the tables below as they are; see docs/architecture.md).
    pub const BOOT_PML4_PHYS: u64 = 0x2000;
    /// Page directory of the syscall trampoline's 2 MiB region.
    pub const BOOT_PD_TRAMPOLINE_PHYS: u64 = 0x3000;
    /// PDPT of the top 2 GiB: the kernel image and the trampoline.
    pub const BOOT_PDPT_HIGH_PHYS: u64 = 0x4000;
    /// PDPT of the direct map.
    pub const BOOT_PDPT_DIRECT_PHYS: u64 = 0x5000;
    /// First of [`BOOT_PD_COUNT`] consecutive page directories of the
    /// direct map, each mapping 1 GiB with 2 MiB pages: physical 0..4 GiB
    /// (or less RAM).
    pub const BOOT_PD_PHYS: u64 = 0x6000;
    /// Number of direct-map page directories in low memory (the first 4
    /// GiB; the VMM puts those for the RAM above in the top pages of RAM).
    pub const BOOT_PD_COUNT: u64 = 4;
    /// Statistics page, [`super::GuestStats`], written by the guest.
    pub const STATS_PHYS: u64 = 0xa000;
    /// Page directory of the kernel image's GiB: its entries point at the
    /// image's page tables.
    pub const BOOT_PD_IMAGE_PHYS: u64 = 0xb000;
    /// Page table of the syscall trampoline page.
    pub const BOOT_PT_TRAMPOLINE_PHYS: u64 = 0xc000;
    /// First of [`BOOT_PT_IMAGE_COUNT`] consecutive page tables of the
    /// kernel image, one per 2 MiB of physical memory from 0, for the
    /// regions whose segments get 4 KiB leaves (the rodata's): with the
    /// rights of the image's ELF segments (text read+execute, rodata
    /// read-only, data and bss read+write, both no-execute). A segment
    /// that starts a 2 MiB region and is alone in it (the text, the data
    /// and bss, as the linker script places them) is mapped by one 2 MiB
    /// leaf instead, and its table stays unused.
    pub const BOOT_PT_IMAGE_PHYS: u64 = 0xd000;
    /// Number of image page tables: the kernel image must end below
    /// `BOOT_PT_IMAGE_COUNT * 2 MiB` physical.
    pub const BOOT_PT_IMAGE_COUNT: u64 = 3;
    /// The flags of every 2 MiB leaf of the VMM's direct map (present,
    /// writable, accessed, dirty, global, no-execute, supervisor only).
    pub const DIRECT_MAP_LEAF_FLAGS: u64 = 1 | 1 << 1 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 63;
    /// Start of the argument block: exec file name, argv and envp strings.
    pub const ARGS_PHYS: u64 = 0x1_0000;
    /// Largest argument block the VMM passes (Linux's ARG_MAX-like bound).
    pub const ARGS_MAX: u64 = 0x8_0000;
    /// Physical load address of the guest kernel image: its first segment,
    /// the rodata, in the megabyte below [`KERNEL_TEXT_PHYS`].
    pub const KERNEL_PHYS: u64 = 0x10_0000;
    /// Where the image's text starts, with its entry point: a 2 MiB
    /// boundary, so that one 2 MiB leaf maps it (the linker script keeps
    /// the text below [`KERNEL_DATA_PHYS`]). Where ring 0 is emulated every
    /// instruction fetch walks the page tables: three levels instead of
    /// four.
    pub const KERNEL_TEXT_PHYS: u64 = 0x20_0000;
    /// Where the image's data and bss start, the next 2 MiB boundary: one
    /// read+write, no-execute 2 MiB leaf maps them (and the kernel stack
    /// in the bss).
    pub const KERNEL_DATA_PHYS: u64 = 0x40_0000;
    /// The syscall trampoline's frame: the text's second page, the first
    /// holding the entry point (the VMM maps it at
    /// [`SYSCALL_TRAMPOLINE_VIRT`] without knowing the image's symbols).
    pub const SYSCALL_TRAMPOLINE_PHYS: u64 = KERNEL_TEXT_PHYS + PAGE_SIZE;

    /// Virtual base of the kernel image mapping: maps physical 0 here.
    pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
    /// Virtual base of the direct map of all guest RAM.
    pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;
    /// Exclusive upper bound of user addresses (Linux's TASK_SIZE).
    pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
    /// The user-executable page that SYSCALL enters where ring 0 cannot run
    /// supervisor code at native speed (see docs/architecture.md).
    pub const SYSCALL_TRAMPOLINE_VIRT: u64 = 0xffff_ffff_ff5f_f000;
    /// The kernel's pool of random bytes (guest physical,
    /// [`RANDOM_POOL_BYTES`]): the VMM fills it from the host's getrandom
    /// before boot, the kernel hands its bytes out to small `getrandom`
    /// calls and fills it anew with one RANDOM hypercall when it runs
    /// short. Low memory that nothing else uses, never mapped for user
    /// access.
    pub const RANDOM_POOL_PHYS: u64 = 0xe_c000;
    /// Bytes of the random pool: 512 of glibc's 8-byte seeds.
    pub const RANDOM_POOL_BYTES: u64 = PAGE_SIZE;
    /// The working directory of the task that opened the fast call of a
    /// path (guest physical, [`super::trampoline::PATH_BYTE`]), written by
    /// the kernel when it opens it: a word holding its length (0: none
    /// published), then its bytes (at most [`FAST_CWD_MAX`]). The VMM
    /// joins a relative path of `AT_FDCWD` to it, as the kernel does.
    /// Low memory that nothing else uses, never mapped for user access.
    pub const FAST_CWD_PHYS: u64 = 0xe_e000;
    /// The longest working directory [`FAST_CWD_PHYS`] holds (a longer
    /// one is not published: the VMM then declines relative paths).
    pub const FAST_CWD_MAX: u64 = PAGE_SIZE - 8;
    /// The directory fds that the fast call of a path resolves relative
    /// paths from (guest physical): [`FAST_DIRFD_SLOTS`] slots of
    /// [`FAST_DIRFD_SLOT_BYTES`], fd `n`'s at [`fast_dirfd_slot`]`(n)`,
    /// each a word holding the fd plus one (0: none), a word holding the
    /// length of the directory's path, then its bytes (at most
    /// [`FAST_DIRFD_MAX`]). The kernel fills a slot when it serves a call
    /// of a path relative to a directory fd, and when it opens or dups a
    /// directory while the table stays open; it sets the slot's first
    /// word back to 0 when it closes that fd while the table stays open.
    /// The VMM joins a relative path of that fd to it, as the kernel
    /// does. Never mapped for user access.
    pub const FAST_DIRFD_PHYS: u64 = 0xe_d000;
    /// Slots at [`FAST_DIRFD_PHYS`]: `du` and `find` stat the entries of a
    /// directory by one fd and open the next by another.
    pub const FAST_DIRFD_SLOTS: u64 = 4;
    /// Bytes of a slot at [`FAST_DIRFD_PHYS`].
    pub const FAST_DIRFD_SLOT_BYTES: u64 = PAGE_SIZE / FAST_DIRFD_SLOTS;
    /// The longest path a slot at [`FAST_DIRFD_PHYS`] holds (a longer one
    /// is not published: the VMM then declines paths relative to it).
    pub const FAST_DIRFD_MAX: u64 = FAST_DIRFD_SLOT_BYTES - 16;

    /// The slot at [`FAST_DIRFD_PHYS`] that publishes directory fd `fd`.
    pub const fn fast_dirfd_slot(fd: u64) -> u64 {
        FAST_DIRFD_PHYS + fd % FAST_DIRFD_SLOTS * FAST_DIRFD_SLOT_BYTES
    }
    /// The stdin read-ahead ring's header page (guest physical): the
    /// [`super::stdin_ring`] words. Low memory between the argument block
    /// and the kernel image, which nothing else uses.
    pub const STDIN_RING_HEADER_PHYS: u64 = 0xe_f000;
    /// The stdin ring's bytes ([`super::stdin_ring::SIZE`], guest
    /// physical), right after its header.
    pub const STDIN_RING_DATA_PHYS: u64 = STDIN_RING_HEADER_PHYS + PAGE_SIZE;
    /// Where the header is mapped, user-writable and no-execute, when the
    /// ring is on ([`super::boot_flags::STDIN_RING`]): the pages right
    /// below the trampoline, in its page table.
    pub const STDIN_RING_HEADER_VIRT: u64 = SYSCALL_TRAMPOLINE_VIRT - 0x11000;
    /// Where the ring's bytes are mapped, the same way.
    pub const STDIN_RING_DATA_VIRT: u64 = STDIN_RING_HEADER_VIRT + PAGE_SIZE;
    /// Smallest guest RAM size the VMM accepts.
    pub const MIN_MEM: u64 = 16 << 20;
    /// Largest guest RAM size the VMM accepts.
    pub const MAX_MEM: u64 = 64 << 30;

    /// Bytes of the page-cache bitmap the kernel keeps for `frames`
    /// managed 4 KiB frames: one bit each, in whole words.
    pub const fn cache_bitmap_bytes(frames: u64) -> u64 {
        frames.div_ceil(64) * 8
    }

    /// Bytes the kernel carves from its heap's start for `frames`
    /// managed 4 KiB frames: the page-cache bitmap, then the vvar pages.
    pub const fn kernel_heap_reserved(frames: u64) -> u64 {
        cache_bitmap_bytes(frames).next_multiple_of(PAGE_SIZE)
            + (super::vvar::VVAR_PAGES + super::vvar::VCLOCK_PAGES) * PAGE_SIZE
    }

    /// Bytes of the kernel heap for `mem_size` bytes of RAM and `reserved`
    /// bytes carved from its start ([`kernel_heap_reserved`]): 1/64 of
    /// RAM plus those, at least 2 and at most 32 MiB, in whole 2 MiB
    /// frames. The kernel takes it at boot as the top fresh 2 MiB frames
    /// of its free memory (below the 2 MiB-aligned end of
    /// `free_phys_end`), so that the VMM knows where it lies without being
    /// told.
    pub const fn kernel_heap_bytes(mem_size: u64, reserved: u64) -> u64 {
        let size = mem_size / 64 + reserved;
        let size = if size < 2 << 20 {
            2 << 20
        } else if size > 32 << 20 {
            32 << 20
        } else {
            size
        };
        size.next_multiple_of(HUGE_PAGE_SIZE)
    }
}

/// Bits of [`BootInfo::flags`].
pub mod boot_flags {
    /// The host is kvm_pvm: ring 0 is emulated and SYSCALL keeps user rights.
    pub const PLATFORM_PVM: u32 = 1 << 0;
    /// Randomise the address space layout (`--aslr`).
    pub const ASLR: u32 = 1 << 1;
    /// Send kernel log lines to the host (`--verbose`).
    pub const VERBOSE: u32 = 1 << 2;
    /// Stop at exec (after loading, before the first instruction) and at
    /// exit (before teardown) with [`super::hc::EVENT`], after exporting the
    /// VMAs, so that the host can inspect the address space.
    pub const NOTIFY_EXEC_EXIT: u32 = 1 << 3;
    /// Stop with [`super::hc::EVENT`] every
    /// [`super::BootInfo::notify_fault_every`] page faults (needs
    /// [`NOTIFY_EXEC_EXIT`] for the VMA export area).
    pub const NOTIFY_FAULTS: u32 = 1 << 4;
    /// Stop with [`super::hc::EVENT`] after every system call.
    pub const NOTIFY_SYSCALLS: u32 = 1 << 5;
    /// A debugger is attached (`--gdb`): stop with [`super::hc::DEBUG_STOP`]
    /// before the program's first instruction, at #BP and #DB, and before
    /// a fault signal is delivered (see [`super::debug`]).
    pub const DEBUGGER: u32 = 1 << 6;
    /// Map one 4 KiB page per anonymous fault, as Linux without
    /// (multi-size) transparent huge pages does (`--fault-size 4k`).
    pub const FAULT_4K: u32 = 1 << 7;
    /// Map 64 KiB blocks but no 2 MiB pages on an anonymous fault
    /// (`--fault-size 64k`). Neither bit: 64 KiB blocks and 2 MiB pages.
    pub const FAULT_NO_2M: u32 = 1 << 8;
    /// The stdin read-ahead ring is on ([`super::stdin_ring`]): the VMM
    /// mapped it (kvm_pvm only, where the trampoline runs with user rights
    /// and can serve a read from it) and fills it from a host stdin that
    /// is a pipe.
    pub const STDIN_RING: u32 = 1 << 10;
    /// At the end of the run, tear every address space down, empty the
    /// page cache and report what remains in [`super::GuestStats`] (the
    /// leak check). Without it the last exit saves only what outlives the
    /// VM (shared file mappings written back) and frees nothing: the host
    /// discards the whole VM.
    pub const LEAK_CHECK: u32 = 1 << 9;
}

/// How much an anonymous page fault maps (`--fault-size`), carried in
/// [`BootInfo::flags`] as [`boot_flags::FAULT_4K`] / [`boot_flags::FAULT_NO_2M`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultSize {
    /// One 4 KiB page per fault (Linux's behaviour without THP).
    Page4K,
    /// The aligned 64 KiB block around the address when it lies inside one
    /// private writable anonymous area with nothing mapped in it (Linux's
    /// multi-size THP with 64 KiB enabled); else one page.
    Block64K,
    /// As [`FaultSize::Block64K`], and a 2 MiB page where the whole aligned
    /// 2 MiB region lies in such an area with nothing mapped in it.
    #[default]
    Huge2M,
}

impl FaultSize {
    /// The [`BootInfo::flags`] bits for this policy.
    pub const fn flags(self) -> u32 {
        match self {
            FaultSize::Page4K => boot_flags::FAULT_4K,
            FaultSize::Block64K => boot_flags::FAULT_NO_2M,
            FaultSize::Huge2M => 0,
        }
    }

    /// The policy [`BootInfo::flags`] selects.
    pub const fn from_flags(flags: u32) -> FaultSize {
        if flags & boot_flags::FAULT_4K != 0 {
            FaultSize::Page4K
        } else if flags & boot_flags::FAULT_NO_2M != 0 {
            FaultSize::Block64K
        } else {
            FaultSize::Huge2M
        }
    }
}

/// What the VMM tells the guest kernel at boot; lives at
/// [`layout::BOOT_INFO_PHYS`]; its address is also passed in RDI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// [`CONTRACT_VERSION`].
    pub version: u32,
    /// [`boot_flags`] bits.
    pub flags: u32,
    /// Bytes of guest RAM, starting at physical 0.
    pub mem_size: u64,
    /// First physical byte of the loaded kernel image.
    pub kernel_phys_start: u64,
    /// End (exclusive) of the kernel image including its bss.
    pub kernel_phys_end: u64,
    /// Physical address of the program file's bytes (page aligned).
    pub file_phys: u64,
    /// Length of the program file in bytes.
    pub file_len: u64,
    /// Physical address of the argument block: the exec file name, then
    /// `argc` argument strings, then `envc` environment strings, each
    /// NUL-terminated.
    pub args_phys: u64,
    /// Length of the argument block in bytes.
    pub args_len: u64,
    /// Number of argument strings.
    pub argc: u32,
    /// Number of environment strings.
    pub envc: u32,
    /// Physical address of the lengths of the argument block's strings
    /// (little-endian u32 each, the NUL included: the exec file name, then
    /// argv, then envp), so the guest checks each string's end instead of
    /// scanning for it; 0 if absent.
    pub args_lens_phys: u64,
    /// Physical address of the program's absolute, canonical path (what
    /// `/proc/self/exe` reads as), not NUL-terminated.
    pub exe_path_phys: u64,
    /// Length of that path.
    pub exe_path_len: u64,
    /// First physical byte the guest may allocate (page aligned).
    pub free_phys_start: u64,
    /// End (exclusive) of allocatable physical memory.
    pub free_phys_end: u64,
    /// Guest TSC frequency in kHz, as KVM reports it (0 if unknown).
    pub tsc_khz: u64,
    /// Host CLOCK_REALTIME in ns just before the vCPU first runs.
    pub realtime_ns: u64,
    /// Host CLOCK_MONOTONIC in ns at the same moment.
    pub monotonic_ns: u64,
    /// 16 random bytes for AT_RANDOM, from the host's getrandom.
    pub random: [u8; 16],
    /// Seed for address randomisation (used with [`boot_flags::ASLR`]).
    pub aslr_seed: u64,
    /// `st_mode` of the host's fds 0, 1 and 2 (0 where unknown), so that
    /// `fstat` on the program's stdio tells a pipe from a file or terminal.
    pub stdio_modes: [u32; 4],
    /// Physical address of the trace ring ([`trace::RingHeader`] then
    /// records); 0 when tracing is off.
    pub trace_phys: u64,
    /// Bytes of the trace ring, header included.
    pub trace_len: u64,
    /// [`trace::category`] bits to record.
    pub trace_mask: u32,
    /// With [`boot_flags::NOTIFY_FAULTS`]: stop every this many faults.
    pub notify_fault_every: u32,
    /// Physical address of the VMA export area ([`VmaExport`]); 0 if none.
    pub vma_export_phys: u64,
    /// Physical address of the guest path of the initial working directory
    /// (not NUL-terminated; "/" when the host's is not visible).
    pub cwd_phys: u64,
    /// Length of that path.
    pub cwd_len: u64,
    /// Physical address of the vDSO image (page aligned; 0: none).
    pub vdso_phys: u64,
    /// Its length in bytes (a whole number of pages).
    pub vdso_len: u64,
    /// The program file's host identity when the VMM read it: its device
    /// (as glibc's `makedev` of a statx's major and minor), inode number
    /// (0: unknown, as for a program handed over as bytes) and
    /// modification time (seconds, nanoseconds). The guest's page cache
    /// then knows the file it holds in RAM when the program opens or execs
    /// that file again by a path.
    pub file_dev: u64,
    /// See [`BootInfo::file_dev`].
    pub file_ino: u64,
    /// See [`BootInfo::file_dev`].
    pub file_mtime_sec: i64,
    /// See [`BootInfo::file_dev`].
    pub file_mtime_nsec: u64,
    /// Signals the first process starts with ignored (bit `n - 1` for
    /// signal `n`), as a native execve keeps SIG_IGN: those vmrun itself
    /// was started with ignored (under `nohup`, say, or as a background
    /// job of a non-interactive shell). SIGKILL and SIGSTOP are never
    /// ignored.
    pub ignored_signals: u64,
}

impl BootInfo {
    /// All fields zero (for statics; not a valid boot info).
    pub const fn zeroed() -> BootInfo {
        BootInfo {
            magic: 0,
            version: 0,
            flags: 0,
            mem_size: 0,
            kernel_phys_start: 0,
            kernel_phys_end: 0,
            file_phys: 0,
            file_len: 0,
            args_phys: 0,
            args_len: 0,
            argc: 0,
            envc: 0,
            args_lens_phys: 0,
            exe_path_phys: 0,
            exe_path_len: 0,
            free_phys_start: 0,
            free_phys_end: 0,
            tsc_khz: 0,
            realtime_ns: 0,
            monotonic_ns: 0,
            random: [0; 16],
            aslr_seed: 0,
            stdio_modes: [0; 4],
            trace_phys: 0,
            trace_len: 0,
            trace_mask: 0,
            notify_fault_every: 0,
            vma_export_phys: 0,
            cwd_phys: 0,
            cwd_len: 0,
            vdso_phys: 0,
            vdso_len: 0,
            file_dev: 0,
            file_ino: 0,
            file_mtime_sec: 0,
            file_mtime_nsec: 0,
            ignored_signals: 0,
        }
    }
}

/// The I/O port the guest writes a [`Hypercall`] block's physical address to
/// (a 32-bit `out`).
pub const HYPERCALL_PORT: u16 = 0x0700;

/// The I/O port of the syscall trampoline's fast call: an `out` of AL to
/// it (the only port the TSS's I/O bitmap opens below ring 0) asks the
/// VMM to serve a `read` of the host's stdin, a `write` to its stdout or
/// stderr, or a call of a host path (a stat, a link's text, access)
/// straight from the program's registers, with no kernel entry
/// (see [`trampoline`] and docs/architecture.md, "Fast calls").
pub const FAST_CALL_PORT: u16 = 0xf1;

/// The syscall trampoline page ([`layout::SYSCALL_TRAMPOLINE_VIRT`]):
/// offsets of what the VMM and the guest both rely on.
///
/// The trampoline tests the call against [`trampoline::TABLE`] and, for a
/// call the kernel opened there, makes the fast call's `out`. The VMM
/// finds RIP at [`trampoline::OUT`] or [`trampoline::SLOW`]: to decline,
/// it resumes the vCPU unchanged and the trampoline's `int 0x80` enters
/// the kernel; to answer,
/// it sets RAX and returns to the program (on kvm_pvm, where the
/// trampoline runs with user rights, by setting RIP and RFLAGS as SYSRET
/// would; on VMX/SVM, where it runs in ring 0, through the trampoline's
/// `sysretq` at [`trampoline::SYSRET`]).
pub mod trampoline {
    /// Offset of the fast call's `out` (two bytes). KVM on VMX/SVM stops
    /// with RIP here and moves it past the `out` when the vCPU resumes,
    /// unless the VMM has set RIP; kvm_pvm stops with RIP at [`SLOW`].
    pub const OUT: u64 = SLOW - 2;
    /// Offset of the instruction after the fast call's `out`, which is the
    /// slow path's `int 0x80` (#UD arrives here on kvm_pvm).
    pub const SLOW: u64 = 48;
    /// Offset just after that `int 0x80` (where vector 0x80 arrives on
    /// VMX/SVM).
    pub const SLOW_RETURN: u64 = SLOW + 2;
    /// Offset of the trampoline's `sysretq`.
    pub const SYSRET: u64 = SLOW + 4;
    /// Offset of the fast-call table: user-readable, written by the kernel
    /// through the direct map, indexed by call number times four plus fd.
    /// Byte `fd` says whether a `read` of fd 0 to 2 may be a fast call,
    /// byte `4 + fd` the same of a `write`, byte `80 + fd`
    /// ([`WRITEV_BYTES`]) of a `writev`: [`OPEN`] and the host stream (0
    /// to 2) the fd is, or 0; byte [`PATH_BYTE`] whether the calls of a
    /// path may be. Every other byte up to [`TABLE_SPAN`] is 0.
    pub const TABLE: u64 = 0x800;
    /// Offset from [`TABLE`] of the `writev` bytes (call 20 times four),
    /// in a word of their own (with [`PATH_BYTE`]).
    pub const WRITEV_BYTES: u64 = 4 * 20;
    /// Offset from [`TABLE`] of the byte that opens the calls of a path
    /// to the VMM ([`OPEN`] or 0), in the word of the `writev` bytes:
    /// `newfstatat`, `statx`, `readlink`, `readlinkat`, `getxattr`,
    /// `lgetxattr`, `access`, `faccessat` and `faccessat2`, of a path the
    /// kernel would only pass on to the host. The trampoline tests it for
    /// those calls whatever their other arguments; the VMM serves a path
    /// the host resolves and declines the rest.
    pub const PATH_BYTE: u64 = WRITEV_BYTES + 4;
    /// Bytes of the table the trampoline may index (calls 0 to 20).
    pub const TABLE_SPAN: u64 = WRITEV_BYTES + 8;
    /// The bit of a [`TABLE`] byte that opens its call.
    pub const OPEN: u8 = 0x80;
    /// The bit of [`TABLE`]'s byte 0 (a read of fd 0, the host's stdin)
    /// that sends the read to the stdin ring first ([`super::stdin_ring`]),
    /// served by the trampoline itself; only with [`OPEN`], and only where
    /// the trampoline runs with user rights (kvm_pvm).
    pub const RING: u8 = 0x40;
}

/// The stdin read-ahead ring: bytes of the host's stdin (a pipe) that the
/// VMM copied ahead of the program's reads, for the syscall trampoline to
/// hand out without leaving user mode (kvm_pvm, where a kernel entry or a
/// VM exit costs tens of microseconds and the trampoline runs at native
/// speed). The VMM copies with tee(2), which leaves the bytes in the pipe,
/// and takes from the pipe only what the program read: what the commands
/// after vmrun read from the pipe is what they read natively.
///
/// The header page ([`layout::STDIN_RING_HEADER_PHYS`]) holds two words:
/// [`HEAD`] (the bytes put in since the VMM last emptied it, written by
/// the VMM only) and [`TAIL`] (the bytes taken out, moved by whoever takes
/// them: the trampoline, or the VMM serving a read). Byte `i` of the
/// stream is at `i % SIZE` of the data. Both are user-writable: a program
/// that writes them garbles only its own stdin, and the VMM and the
/// trampoline check them before they copy.
pub mod stdin_ring {
    /// Bytes of the ring (a power of two).
    pub const SIZE: u64 = 0x1_0000;
    /// Pages the ring takes, mapped in a row: the header page, then its
    /// bytes.
    pub const PAGES: u64 = 1 + SIZE / super::layout::PAGE_SIZE;
    /// Offset of the head word in the header page.
    pub const HEAD: u64 = 0;
    /// Offset of the tail word in the header page (a cache line away).
    pub const TAIL: u64 = 64;
}

/// Hypercall numbers ([`Hypercall::nr`]).
pub mod hc {
    /// The program ended. args: kind ([`super::exit_kind`]), status or
    /// signal, fault address, fault ip, fault error code, and for a signal
    /// its [`super::kill_cause`]. Does not return.
    pub const EXIT: u64 = 1;
    /// Write to a host fd (1 or 2). args: fd, physical address of an array
    /// of [`super::IoVec`], count. Returns bytes written or -errno.
    pub const WRITE: u64 = 2;
    /// Read from a host fd (0). args: fd, iovec array address, count.
    /// Returns bytes read, 0 at end of file, or -errno.
    pub const READ: u64 = 3;
    /// The kernel panicked. args: message address, length. Does not return.
    pub const PANIC: u64 = 4;
    /// Copy guest-physical memory. args: destination, source, length.
    pub const COPY: u64 = 5;
    /// Zero guest-physical memory. args: destination, length.
    pub const ZERO: u64 = 6;
    /// The initial exec failed. args: errno, message address, length. Does
    /// not return.
    pub const EXEC_FAILED: u64 = 7;
    /// A kernel log line (shown with `--verbose`). args: address, length.
    pub const LOG: u64 = 8;
    /// Fill guest memory with random bytes from the host's getrandom.
    /// args: iovec array address, count. Returns bytes filled or -errno.
    pub const RANDOM: u64 = 10;
    /// The trace ring is full: drain it. No args. Returns 0.
    pub const TRACE_DRAIN: u64 = 11;
    /// Sleep: the host blocks the vCPU for args[0] nanoseconds. Returns 0.
    pub const SLEEP: u64 = 13;
    /// A point where the host may inspect the guest (see
    /// [`super::boot_flags`]). args: [`super::event`] kind, two per-kind
    /// arguments (FAULT: fault count, address; SYSCALL: number, result; EXEC,
    /// EXIT: 0, 0), user frames held (4 KiB units), user page-table pages
    /// held. Before EXEC, EXIT and FAULT stops the VMAs are exported.
    pub const EVENT: u64 = 12;
    // 9 was PHASE, the kernel entry's milestone, now stamped in
    // [`super::GuestStats::phase_tsc`] like the others.
    /// A file-system call: args[0] is the physical address of a
    /// [`super::fs::FsRequest`]. Returns what the request's `ret` says.
    pub const FS: u64 = 14;
    /// The program stopped for the debugger (with [`super::boot_flags::DEBUGGER`]).
    /// args: [`super::debug::reason`] | signal << 8 | pid << 32, the fault
    /// address (0 if none), the physical address of the user's saved
    /// registers ([`super::debug::UserFrame`]), the physical address of
    /// its FXSAVE image (512 bytes), the physical address of an array of
    /// [`super::debug::TaskRecord`] (every task, the stopped one first),
    /// and its length. The VMAs are
    /// exported first when the export area exists. The host may change
    /// the frame and the FXSAVE image; returns a [`super::debug::resume`]
    /// word.
    pub const DEBUG_STOP: u64 = 15;
    /// Move the file offset of host fd 0, 1 or 2 (a regular file the
    /// host's stdio is redirected to). args: fd, offset (two's complement),
    /// whence (lseek's). Returns the new offset or -errno.
    pub const SEEK: u64 = 16;
    /// Copy guest-physical memory, several ranges at once. args: the
    /// physical address of an array of [`super::CopyItem`], their count
    /// (at most [`super::COPY_LIST_MAX`]). Returns 0, or -EFAULT and
    /// copies nothing if a range lies outside RAM (-EINVAL for too many).
    pub const COPY_LIST: u64 = 17;
    /// Gather execve's argv and envp through the program's page tables,
    /// as the kernel's own loop would read them, in one exit. args[0]: the
    /// physical address of a [`super::UserStrings`] request. Returns 0
    /// with the request's counts and bytes filled in; or
    /// [`super::user_strings::OWN_PATH`] when the kernel must read them
    /// itself (a page not mapped for the user, a string longer than
    /// [`super::user_strings::MAX_LEN`], the budget passed: its own path
    /// then faults pages in or fails as Linux does); or
    /// [`super::user_strings::ROOM`] with the counts and bytes it needs
    /// when the room is short. Nothing is written unless all of it fits.
    pub const USER_STRINGS: u64 = 18;
}

/// [`hc::USER_STRINGS`]'s limits and answers.
pub mod user_strings {
    /// Longest string, NUL included (Linux's MAX_ARG_STRLEN).
    pub const MAX_LEN: u64 = 32 * super::layout::PAGE_SIZE;
    /// The kernel reads the strings itself.
    pub const OWN_PATH: i64 = -1;
    /// More room is needed (see [`super::hc::USER_STRINGS`]).
    pub const ROOM: i64 = -2;
}

/// The debugger stop ([`hc::DEBUG_STOP`]).
pub mod debug {
    /// Why the program stopped (low byte of args[0]).
    pub mod reason {
        /// Before the first instruction of the program (after its exec).
        pub const EXEC: u64 = 1;
        /// An `int3` (#BP) was executed; the saved RIP is after it.
        pub const BREAKPOINT: u64 = 2;
        /// A single step (or a debug exception, #DB) completed.
        pub const STEP: u64 = 3;
        /// A signal is about to be delivered (its number is in args[0]
        /// bits 8-15, the fault address in args[1]).
        pub const SIGNAL: u64 = 4;
        /// The host asked for a stop ([`super::INTERRUPT_REQUEST`]).
        pub const INTERRUPT: u64 = 5;
    }

    /// The host's answer to a stop: a command in the low byte, a signal to
    /// deliver (0: none) in bits 8-15.
    pub mod resume {
        /// Run on.
        pub const CONTINUE: u64 = 0;
        /// Run one instruction (the kernel sets RFLAGS.TF for it).
        pub const STEP: u64 = 1;
        /// Run on and never stop for the debugger again.
        pub const DETACH: u64 = 2;
        /// Map the page at the address in bits 12-63 as a read fault of
        /// the program would (so that the host can write a breakpoint
        /// into it), then stop again for the debugger.
        pub const FAULT_IN: u64 = 3;
    }

    /// Written to [`super::GuestStats::host_signal`] with a forced timer
    /// tick: stop for the debugger at the next tick (gdb's Ctrl-C).
    pub const INTERRUPT_REQUEST: u64 = 1 << 32;

    /// One task at a debugger stop: the stopped one's registers are where
    /// its trap left them, another's where the scheduler saved them (the
    /// same [`UserFrame`] layout and an FXSAVE image).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TaskRecord {
        /// Its thread id (a process's pid is its first thread's).
        pub pid: u64,
        /// Its thread group (the process's pid).
        pub tgid: u64,
        /// Physical address of its saved registers ([`UserFrame`]).
        pub frame_phys: u64,
        /// Physical address of its FXSAVE image.
        pub fpu_phys: u64,
        /// Its FS base.
        pub fs_base: u64,
        /// Its GS base.
        pub gs_base: u64,
    }

    /// The user's registers as the kernel saved them at the trap, lowest
    /// address first (the guest kernel's trap frame).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[allow(missing_docs)]
    pub struct UserFrame {
        pub r15: u64,
        pub r14: u64,
        pub r13: u64,
        pub r12: u64,
        pub r11: u64,
        pub rbp: u64,
        pub rdi: u64,
        pub rsi: u64,
        pub rdx: u64,
        pub r10: u64,
        pub r8: u64,
        pub r9: u64,
        pub rcx: u64,
        pub rbx: u64,
        pub rax: u64,
        /// Trap vector.
        pub vector: u64,
        /// CPU error code.
        pub error_code: u64,
        pub rip: u64,
        pub cs: u64,
        pub rflags: u64,
        pub rsp: u64,
        pub ss: u64,
    }
}

/// The host file-system calls ([`hc::FS`]).
///
/// The guest names host files only by *handles*: small numbers the host
/// hands out, each standing for one host file or directory it opened inside
/// the guest's view. Every path the guest passes is resolved by the host
/// inside that view, one component at a time (`..` never climbs above the
/// view's root, symlinks are interpreted as guest paths), so nothing outside
/// what the user granted can be named. The guest never sees a host fd.
pub mod fs {
    /// Longest path (with its NUL) a request carries, Linux's PATH_MAX.
    pub const PATH_MAX: usize = 4096;
    /// The handle that stands for the root of the guest's view: paths are
    /// resolved from it (absolute paths always are).
    pub const ROOT_HANDLE: u64 = 0;
    /// `out_handle` of a lookup that landed in a directory the guest kernel
    /// serves itself ([`synthetic`]): `path` then holds the canonical guest
    /// path and `path_len` its length; `ret` is 0.
    pub const SYNTHETIC: u64 = u64::MAX;
    /// The handles that stand for vmrun's own stdin, stdout and stderr
    /// (`STDIO_HANDLE + k` for stream `k`) in an FSTAT request: the guest
    /// asks for the stat of a stream that is a regular file or a block
    /// device, whose size and times a program reads (gzip, `wc -c`).
    pub const STDIO_HANDLE: u64 = u64::MAX - 3;

    /// The directories the guest kernel serves itself (never the host's).
    pub mod synthetic {
        /// `/proc`.
        pub const PROC: &[u8] = b"/proc";
        /// `/dev`.
        pub const DEV: &[u8] = b"/dev";
    }

    /// [`FsRequest::op`] values. Path arguments are `path` (and `path2`),
    /// resolved from `handle` (and `handle2`): [`super::fs::ROOT_HANDLE`] or
    /// a directory handle. Results are `ret` (-errno on failure) and the
    /// output fields each op names.
    pub mod op {
        /// Open `path` with Linux open `flags` (O_CREAT/O_EXCL/O_TRUNC/
        /// O_APPEND/O_DIRECTORY/O_NOFOLLOW/O_PATH honoured, O_CLOEXEC and
        /// O_NONBLOCK ignored) and `mode`. Out: `out_handle`, `statx` of the
        /// opened file, and `path` = its canonical guest path. For an open
        /// that writes (O_WRONLY, O_RDWR, O_TRUNC), `path2` holds
        /// `path2_len / 16` (device, inode) pairs, little-endian u64 each:
        /// the files the guest's processes run, which the host refuses to
        /// open so with ETXTBSY before it opens anything.
        pub const OPEN: u32 = 1;
        /// Close `handle`.
        pub const CLOSE: u32 = 2;
        /// Read from `handle` at `offset` into the IoVec array
        /// `iov_phys`/`iov_count`. ret: bytes read.
        pub const PREAD: u32 = 3;
        /// Write to `handle` at `offset` (u64::MAX: at the end, O_APPEND)
        /// from the IoVec array. ret: bytes written; `out_offset` the file
        /// size after the write.
        pub const PWRITE: u32 = 4;
        /// statx of `handle` itself. Out: `statx`.
        pub const FSTAT: u32 = 5;
        /// statx of `path` (`flags`: AT_SYMLINK_NOFOLLOW). Out: `statx`.
        pub const STAT: u32 = 6;
        /// Directory entries of `handle` from cookie `offset` as Linux
        /// `linux_dirent64` records into the IoVec array (one piece). ret:
        /// bytes written (0 at the end); `out_offset` the next cookie;
        /// `out_handle` 1 if the host found no entry past it (a read from
        /// there would give 0 now), else 0.
        pub const GETDENTS: u32 = 7;
        /// The target of symlink `path` into the IoVec array (one piece).
        /// ret: its length (not NUL-terminated, truncated to the piece).
        pub const READLINK: u32 = 8;
        /// Remove `path` (`flags`: AT_REMOVEDIR for a directory).
        pub const UNLINK: u32 = 9;
        /// Make directory `path` with `mode`.
        pub const MKDIR: u32 = 10;
        /// Rename `path` (from `handle`) to `path2` (from `handle2`) with
        /// renameat2 `flags`.
        pub const RENAME: u32 = 11;
        /// Make a symlink at `path2` (from `handle2`) whose target is the
        /// text `path`.
        pub const SYMLINK: u32 = 12;
        /// Hard-link `path` (from `handle`) as `path2` (from `handle2`);
        /// `flags`: AT_SYMLINK_FOLLOW. Only within one view.
        pub const LINK: u32 = 13;
        /// chmod `path` (`flags`: AT_SYMLINK_NOFOLLOW; AT_EMPTY_PATH with an
        /// empty path: `handle` itself) to `mode`.
        pub const CHMOD: u32 = 14;
        /// Set times of `path` (`flags` as CHMOD) to `times` (atime sec,
        /// nsec, mtime sec, nsec; nsec UTIME_NOW or UTIME_OMIT as Linux).
        pub const UTIMENS: u32 = 15;
        /// Set the size of `handle` (or of `path` if `path_len` > 0) to
        /// `offset`.
        pub const TRUNCATE: u32 = 16;
        /// fsync `handle` (`flags` 1: fdatasync).
        pub const FSYNC: u32 = 17;
        /// access(2) check of `path` for `mode` (R_OK/W_OK/X_OK, F_OK 0);
        /// `flags`: AT_SYMLINK_NOFOLLOW, AT_EACCESS.
        pub const ACCESS: u32 = 18;
        /// SEEK_DATA (`mode` 3) or SEEK_HOLE (4) on `handle` from `offset`.
        /// ret: the resulting offset.
        pub const SEEK: u32 = 19;
    }

    /// Most handles an [`FsRequest`] carries to be closed before its op.
    pub const DEFERRED_CLOSES: usize = 8;

    /// The request block of [`super::hc::FS`]. The guest fills the inputs,
    /// the host the outputs; `ret` is also the hypercall's return value.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct FsRequest {
        /// [`op`] value.
        pub op: u32,
        /// Per-op flags (Linux's own values).
        pub flags: u32,
        /// Directory handle for `path`, or the file handle.
        pub handle: u64,
        /// Directory handle for `path2`.
        pub handle2: u64,
        /// Mode bits (open, mkdir, chmod, access, seek whence).
        pub mode: u64,
        /// File offset, length or directory cookie.
        pub offset: u64,
        /// Physical address of an array of [`super::super::IoVec`].
        pub iov_phys: u64,
        /// Entries in that array.
        pub iov_count: u64,
        /// utimensat times: atime sec, nsec, mtime sec, nsec.
        pub times: [i64; 4],
        /// Handles the guest let go of since its last request, which the
        /// host closes (as CLOSE, errors ignored) before it serves this
        /// one: `closes[..close_count]`. The host sets the count back to
        /// 0. The guest sends a handle here instead of a CLOSE request of
        /// its own unless it was opened for writing, or the list is full.
        pub close_count: u64,
        /// See [`Self::close_count`].
        pub closes: [u64; DEFERRED_CLOSES],
        /// Bytes of `path` used (no NUL).
        pub path_len: u32,
        /// Bytes of `path2` used (no NUL).
        pub path2_len: u32,
        /// Result: -errno, or per op.
        pub ret: i64,
        /// OPEN: the new handle (or [`SYNTHETIC`]); GETDENTS: 1 at the
        /// directory's end.
        pub out_handle: u64,
        /// GETDENTS: next cookie; PWRITE: file size afterwards.
        pub out_offset: u64,
        /// OPEN, FSTAT, STAT: Linux's `struct statx` (256 bytes).
        pub statx: [u64; 32],
        /// First path (OPEN also returns the canonical guest path here).
        pub path: [u8; PATH_MAX],
        /// Second path.
        pub path2: [u8; PATH_MAX],
    }

    impl FsRequest {
        /// An empty request (for statics).
        pub const fn zeroed() -> FsRequest {
            FsRequest {
                op: 0,
                flags: 0,
                handle: 0,
                handle2: 0,
                mode: 0,
                offset: 0,
                iov_phys: 0,
                iov_count: 0,
                times: [0; 4],
                close_count: 0,
                closes: [0; DEFERRED_CLOSES],
                path_len: 0,
                path2_len: 0,
                ret: 0,
                out_handle: 0,
                out_offset: 0,
                statx: [0; 32],
                path: [0; PATH_MAX],
                path2: [0; PATH_MAX],
            }
        }
    }
}

/// The vDSO's data page ([vvar]), which the guest kernel writes and the
/// vDSO reads, 6 pages below the vDSO's first byte (Linux's places: 4
/// pages of [vvar], 2 of [vvar_vclock], then 2 of [vdso]).
pub mod vvar {
    /// Pages of [vvar].
    pub const VVAR_PAGES: u64 = 4;
    /// Pages of [vvar_vclock].
    pub const VCLOCK_PAGES: u64 = 2;
    /// Pages of [vdso] (the image is padded to this).
    pub const VDSO_PAGES: u64 = 2;
    /// [`VvarData::magic`] ("VMRUVVAR").
    pub const MAGIC: u64 = 0x5241_5656_5552_4d56;

    /// The data the vDSO's clocks are computed from.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct VvarData {
        /// [`MAGIC`] once written.
        pub magic: u64,
        /// The TSC at boot.
        pub tsc0: u64,
        /// Nanoseconds per TSC tick, 32.32 fixed point.
        pub mult: u64,
        /// CLOCK_REALTIME at boot, ns.
        pub realtime0: u64,
        /// CLOCK_MONOTONIC at boot, ns.
        pub monotonic0: u64,
    }
}

/// Values of the first argument of [`hc::EXIT`].
pub mod exit_kind {
    /// exit/exit_group with a status.
    pub const EXITED: u64 = 0;
    /// Killed by a signal.
    pub const SIGNALED: u64 = 1;
}

/// Why a [`exit_kind::SIGNALED`] program was killed: the sixth argument of
/// [`hc::EXIT`], so that the host can say it in words.
pub mod kill_cause {
    /// The signal was sent (kill, tkill, raise, abort): there is no faulting
    /// address.
    pub const SENT: u64 = 0;
    /// A fault or CPU exception of the program; address, ip and error code
    /// are the fault's.
    pub const FAULT: u64 = 1;
    /// SIGKILL because the guest kernel had no memory left for a fault.
    pub const OUT_OF_MEMORY: u64 = 2;
    /// SIGKILL because every process was blocked forever.
    pub const DEADLOCK: u64 = 3;
    /// SIGSEGV because an exec failed past its point of no return (as
    /// Linux kills the process then); the address word holds the errno.
    pub const EXEC_FAILED: u64 = 4;
}

/// Kinds of [`hc::EVENT`].
pub mod event {
    /// A program was loaded; its first instruction is next.
    pub const EXEC: u64 = 1;
    /// The program ended; its address space is still intact.
    pub const EXIT: u64 = 2;
    /// The Nth page fault was just resolved.
    pub const FAULT: u64 = 3;
    /// A system call was just served (its SYSCALL_ENTER and SYSCALL_EXIT
    /// records are in the trace ring; exit and exit_group stop at EXIT).
    pub const SYSCALL: u64 = 4;
}

/// Boot and exec milestones, stamped by the guest with its TSC in
/// [`GuestStats::phase_tsc`].
pub mod phase {
    /// The kernel's Rust entry ran.
    pub const KERNEL_ENTRY: u64 = 1;
    /// Page tables, GDT, IDT and the frame allocator are up.
    pub const KERNEL_READY: u64 = 2;
    /// The program's ELF is loaded and its stack built.
    pub const EXEC_LOADED: u64 = 3;
}

/// The block a hypercall passes; its physical address is written to
/// [`HYPERCALL_PORT`]. The host writes [`Hypercall::ret`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Hypercall {
    /// One of [`hc`].
    pub nr: u64,
    /// Arguments, as the hypercall defines them.
    pub args: [u64; 6],
    /// Result, written by the host.
    pub ret: i64,
}

/// A [`hc::USER_STRINGS`] request (guest-physical addresses).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserStrings {
    /// The physical address of the process's PML4.
    pub root: u64,
    /// The user addresses of the NULL-ended pointer arrays, argv's then
    /// envp's (0: none).
    pub arrays: [u64; 2],
    /// Where the strings go, NUL included, end to end (argv's first).
    pub block: u64,
    /// Bytes of room there.
    pub block_room: u64,
    /// Where their lengths go, NUL included, a little-endian u32 each.
    pub lens: u64,
    /// Lengths of room there.
    pub lens_room: u64,
    /// What the strings may cost: each its length plus 8 (a pointer), as
    /// Linux's `copy_strings` counts them against its limit.
    pub budget: u64,
    /// Out: the strings of each array (written, or needed with ROOM).
    pub counts: [u64; 2],
    /// Out: their bytes (written, or needed with ROOM).
    pub bytes: u64,
}

/// One copy of a [`hc::COPY_LIST`] hypercall (guest-physical, no overlap).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyItem {
    /// Destination.
    pub dst: u64,
    /// Source.
    pub src: u64,
    /// Bytes.
    pub len: u64,
}

/// The most copies one [`hc::COPY_LIST`] hypercall takes.
pub const COPY_LIST_MAX: u64 = 16;

/// One piece of a scatter/gather list in guest-physical memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoVec {
    /// Guest-physical address.
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Counters the guest keeps at [`layout::STATS_PHYS`]; the host reads them
/// when the program exits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestStats {
    /// [`BOOT_MAGIC`] once the guest has initialised the page.
    pub magic: u64,
    /// Frames the allocator manages.
    pub frames_total: u64,
    /// Frames allocated now (user pages, page tables, kernel use).
    pub frames_in_use: u64,
    /// Frames the kernel itself holds for good (its page tables, buffers).
    pub frames_kernel: u64,
    /// User data frames in use now.
    pub user_frames: u64,
    /// User page-table pages in use now.
    pub user_table_pages: u64,
    /// Page faults handled.
    pub page_faults: u64,
    /// System calls handled.
    pub syscalls: u64,
    /// Peak of `user_frames`.
    pub peak_user_frames: u64,
    /// Processes and threads created (fork, vfork, clone).
    pub forks: u64,
    /// Switches from one process or thread to another.
    pub context_switches: u64,
    /// Zombies reaped by wait.
    pub zombies_reaped: u64,
    /// Pages copied on write after fork.
    pub cow_copies: u64,
    /// File pages the page cache read from the host.
    pub cache_pages_read: u64,
    /// Host reads that filled them.
    pub cache_fills: u64,
    /// Timer interrupts taken (see `timer_wanted`).
    pub timer_ticks: u64,
    /// Nonzero while the guest wants timer interrupts: more than one task
    /// exists (to preempt one that runs without entering the kernel) or an
    /// alarm is armed. The host reads it while the vCPU runs.
    pub timer_wanted: u64,
    /// A signal vmrun received (Ctrl-C's SIGINT, SIGTERM, SIGHUP, SIGQUIT)
    /// for the guest to deliver, written by the host before it injects a
    /// timer interrupt; the guest takes it (sets it back to 0) at that
    /// interrupt.
    pub host_signal: u64,
    /// The guest's TSC when it reached each boot milestone (index: the
    /// [`phase`] number; 0 where not reached): the host turns it into its
    /// own time with the guest TSC it read before the vCPU first ran, so
    /// that no milestone costs a VM exit.
    pub phase_tsc: [u64; 4],
    /// The page-table root (CR3) of the task whose calls
    /// [`trampoline::TABLE`] opens: the VMM finds a fast call's buffer
    /// through it.
    pub fast_cr3: u64,
}

/// Byte offset of [`GuestStats::fast_cr3`] in the stats page.
pub const FAST_CR3_OFFSET: u64 = core::mem::offset_of!(GuestStats, fast_cr3) as u64;

/// Byte offset of [`GuestStats::phase_tsc`] in the stats page.
pub const PHASE_TSC_OFFSET: u64 = core::mem::offset_of!(GuestStats, phase_tsc) as u64;

/// Vector of the timer interrupt the host injects while
/// [`GuestStats::timer_wanted`] is set.
pub const TIMER_VECTOR: u8 = 0x20;

/// Byte offset of [`GuestStats::host_signal`] in the stats page.
pub const HOST_SIGNAL_OFFSET: u64 = core::mem::offset_of!(GuestStats, host_signal) as u64;

/// Byte offset of [`GuestStats::timer_wanted`] in the stats page.
pub const TIMER_WANTED_OFFSET: u64 = core::mem::offset_of!(GuestStats, timer_wanted) as u64;

/// Most VMAs of the running address space the export area holds (a
/// process may have up to 65,531: the export then holds the first ones).
pub const MAX_EXPORTED_VMAS: usize = 256;

/// The VMA export area: the guest writes it before an EXEC or EXIT event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmaExport {
    /// Number of areas of the running address space; `vmas` holds the
    /// first `min(count, MAX_EXPORTED_VMAS)` of them (more: truncated).
    pub count: u64,
    /// `mm_struct` fields: start_code, end_code, start_data, end_data,
    /// start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end,
    /// mmap_base.
    pub mm: [u64; 12],
    /// The areas, sorted by address.
    pub vmas: [VmaRecord; MAX_EXPORTED_VMAS],
    /// The page cache's frames: the physical address of the guest's bitmap
    /// (one bit per frame, set for page-cache frames; 0 if none), the
    /// physical address of the frame bit 0 stands for, and the number of
    /// frames the bitmap covers.
    pub cache_bits: [u64; 3],
    /// Number of valid entries in `files`.
    pub file_count: u64,
    /// The files the areas map (by [`VmaRecord::file`]), as far as they fit;
    /// with several address spaces, the files of all of them.
    pub files: [FileRecord; MAX_EXPORTED_FILES],
    /// Where the guest keeps its copy-on-write reference counts: the
    /// physical address of an array of little-endian `u16`, one per frame
    /// of its allocator, each the number of mappings of the frame beyond
    /// the first (0 if no frame was ever shared), the physical address of
    /// the frame entry 0 stands for, and the number of entries.
    pub share_counts: [u64; 3],
    /// Number of live address spaces (may exceed what `spaces` holds).
    pub space_count: u64,
    /// Every live address space, the running one first, as far as they
    /// fit.
    pub spaces: [SpaceRecord; MAX_EXPORTED_SPACES],
    /// Number of valid entries in `space_vmas`.
    pub space_vma_count: u64,
    /// The areas of `spaces`, each space's from its
    /// [`SpaceRecord::first_vma`].
    pub space_vmas: [VmaRecord; MAX_SPACE_VMAS],
}

impl VmaExport {
    /// All fields zero: no areas, no spaces.
    pub const fn zeroed() -> VmaExport {
        const NO_VMA: VmaRecord = VmaRecord {
            start: 0,
            end: 0,
            flags: 0,
            offset: 0,
            file: 0,
        };
        const NO_FILE: FileRecord = FileRecord {
            id: 0,
            dev: 0,
            ino: 0,
            path_len: 0,
            path: [0; 224],
        };
        const NO_SPACE: SpaceRecord = SpaceRecord {
            pid: 0,
            root: 0,
            user_frames: 0,
            user_table_pages: 0,
            first_vma: 0,
            vma_count: 0,
            mm: [0; 12],
        };
        VmaExport {
            count: 0,
            mm: [0; 12],
            vmas: [NO_VMA; MAX_EXPORTED_VMAS],
            cache_bits: [0; 3],
            file_count: 0,
            files: [NO_FILE; MAX_EXPORTED_FILES],
            share_counts: [0; 3],
            space_count: 0,
            spaces: [NO_SPACE; MAX_EXPORTED_SPACES],
            space_vma_count: 0,
            space_vmas: [NO_VMA; MAX_SPACE_VMAS],
        }
    }
}

/// Most address spaces the export area describes.
pub const MAX_EXPORTED_SPACES: usize = 128;

/// Most areas of all address spaces together the export area holds.
pub const MAX_SPACE_VMAS: usize = 4096;

/// One live address space (a process, or a thread group: its threads
/// share it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceRecord {
    /// The process id (the thread group's) of the task holding it.
    pub pid: u64,
    /// Physical address of its PML4.
    pub root: u64,
    /// User frames it maps, in 4 KiB units (frames shared with other
    /// spaces included).
    pub user_frames: u64,
    /// Its user page-table pages (the PML4 excluded).
    pub user_table_pages: u64,
    /// Index of its first area in [`VmaExport::space_vmas`].
    pub first_vma: u64,
    /// Number of its areas there (fewer than it has if they did not fit).
    pub vma_count: u64,
    /// Its `mm_struct` fields, as [`VmaExport::mm`].
    pub mm: [u64; 12],
}

/// Most files the export area describes.
pub const MAX_EXPORTED_FILES: usize = 64;

/// One file a VMA maps, as `/proc/PID/maps` names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// The file's index ([`VmaRecord::file`]).
    pub id: u64,
    /// `st_dev` (encoded as `stat` returns it; 0 with `ino` 0: unknown to
    /// the guest, the host finds it).
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Bytes of `path` used.
    pub path_len: u64,
    /// The canonical guest path (truncated).
    pub path: [u8; 224],
}

impl Default for FileRecord {
    fn default() -> Self {
        FileRecord {
            id: 0,
            dev: 0,
            ino: 0,
            path_len: 0,
            path: [0; 224],
        }
    }
}

/// One exported VMA.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaRecord {
    /// First address.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// [`vma_flags`] bits.
    pub flags: u64,
    /// File offset of `start` for a file mapping.
    pub offset: u64,
    /// Index of the file (0: the program) for a file mapping.
    pub file: u64,
}

/// Bits of [`VmaRecord::flags`].
pub mod vma_flags {
    /// Readable.
    pub const READ: u64 = 1 << 0;
    /// Writable.
    pub const WRITE: u64 = 1 << 1;
    /// Executable.
    pub const EXEC: u64 = 1 << 2;
    /// Shared mapping.
    pub const SHARED: u64 = 1 << 3;
    /// Grows down (a stack).
    pub const GROWSDOWN: u64 = 1 << 4;
    /// Backed by a file.
    pub const FILE: u64 = 1 << 5;
}

/// The trace channel: fixed-size records in a ring in guest memory.
pub mod trace {
    /// Record categories ([`super::BootInfo::trace_mask`]).
    pub mod category {
        /// Page-table pages and entries, CR3 loads.
        pub const PAGE_TABLES: u32 = 1 << 0;
        /// VMA changes.
        pub const VMAS: u32 = 1 << 1;
        /// Page faults.
        pub const FAULTS: u32 = 1 << 2;
        /// System calls.
        pub const SYSCALLS: u32 = 1 << 3;
        /// Exec phases.
        pub const EXEC: u32 = 1 << 4;
        /// Task life cycle: state changes of processes and threads.
        pub const TASKS: u32 = 1 << 5;
    }

    /// Record kinds ([`Record::kind`]) and their arguments.
    pub mod kind {
        /// A page-table page was allocated: a0 level (1 = PT .. 4 = PML4),
        /// a1 first virtual address it covers, a2 end, a3 frame.
        pub const PT_ALLOC: u32 = 1;
        /// A page-table page was freed: as [`PT_ALLOC`].
        pub const PT_FREE: u32 = 2;
        /// An entry was set: a0 virtual address, a1 level, a2 frame, a3 the
        /// whole entry.
        pub const PTE_SET: u32 = 3;
        /// An entry was cleared: a0 virtual address, a1 level, a2 frame,
        /// a3 the old entry.
        pub const PTE_CLEAR: u32 = 4;
        /// CR3 was loaded: a0 the value.
        pub const CR3_LOAD: u32 = 5;
        /// A VMA was inserted: a0 start, a1 end, a2 [`super::super::vma_flags`],
        /// a3 file, a4 offset.
        pub const VMA_INSERT: u32 = 6;
        /// A VMA was split at a5: as [`VMA_INSERT`] for the original.
        pub const VMA_SPLIT: u32 = 7;
        /// Two VMAs were merged into a0..a1.
        pub const VMA_MERGE: u32 = 8;
        /// A VMA changed bounds or rights: the new values.
        pub const VMA_RESIZE: u32 = 9;
        /// A VMA (or part) was removed: a0 start, a1 end.
        pub const VMA_REMOVE: u32 = 10;
        /// A page fault: a0 address, a1 error code, a2 ip, a3 VMA kind
        /// ([`super::vma_kind`]), a4 resolution ([`super::resolution`]),
        /// a5 TSC cycles spent in the kernel.
        pub const FAULT: u32 = 11;
        /// An exec phase: a0 [`super::exec_phase`]; the record's TSC says
        /// when.
        pub const EXEC_PHASE: u32 = 12;
        /// System call entry: `aux` the number in its low 16 bits and the
        /// calling thread's id in the high 16 (see [`super::syscall_nr`]),
        /// a0..a5 arguments.
        pub const SYSCALL_ENTER: u32 = 13;
        /// System call exit: `aux` as for entry, a0 result, a1 cycles.
        pub const SYSCALL_EXIT: u32 = 14;
        /// A task changed state: `aux` its thread id, a0 the new state
        /// ([`super::task_state`]), a1 its process id, a2 for ZOMBIE the
        /// wait status, for NEW the parent's process id.
        pub const TASK_STATE: u32 = 15;
    }

    /// Task states (TASK_STATE a0).
    pub mod task_state {
        /// Created by fork, vfork or clone; ready to run.
        pub const NEW: u64 = 1;
        /// Now on the CPU.
        pub const RUNNING: u64 = 2;
        /// Left the CPU ready to run again (preempted or yielded).
        pub const RUNNABLE: u64 = 3;
        /// Left the CPU waiting for something (a child, a pipe, a timer).
        pub const BLOCKED: u64 = 4;
        /// Stopped by a stop signal.
        pub const STOPPED: u64 = 5;
        /// Exited; waits for its parent to reap it.
        pub const ZOMBIE: u64 = 6;
        /// Gone without a zombie: a thread that exited.
        pub const DEAD: u64 = 7;
        /// Its parent's wait reaped it: gone.
        pub const REAPED: u64 = 8;

        /// The state's name, as the trace prints it.
        pub const fn name(state: u64) -> &'static str {
            match state {
                NEW => "new",
                RUNNING => "running",
                RUNNABLE => "runnable",
                BLOCKED => "blocked",
                STOPPED => "stopped",
                ZOMBIE => "zombie",
                DEAD => "dead",
                REAPED => "reaped",
                _ => "?",
            }
        }
    }

    /// How a fault was resolved (FAULT a4).
    pub mod resolution {
        #![allow(missing_docs)]
        pub const ZERO_FILL: u64 = 1;
        pub const ZERO_FILL_HUGE: u64 = 2;
        pub const FILE_MAP: u64 = 3;
        pub const FILE_COPY: u64 = 4;
        pub const FILE_ZERO: u64 = 5;
        pub const COW: u64 = 6;
        pub const MADE_WRITABLE: u64 = 7;
        pub const SPURIOUS: u64 = 8;
        pub const SIGSEGV: u64 = 9;
        pub const OOM: u64 = 10;
        pub const SIGBUS: u64 = 11;
        /// A 64 KiB block of zeroed 4 KiB pages.
        pub const ZERO_FILL_64K: u64 = 12;
        /// Private copies of a private file area's pages in a 64 KiB
        /// block, at a write.
        pub const FILE_COPY_64K: u64 = 13;
    }

    /// The system call number of a SYSCALL_ENTER/EXIT record's `aux`.
    pub const fn syscall_nr(aux: u32) -> u32 {
        aux & 0xffff
    }

    /// The calling thread's id (its pid, for a process of one thread) of a
    /// SYSCALL_ENTER/EXIT record's `aux` (ids wrap at 65536).
    pub const fn syscall_tid(aux: u32) -> u32 {
        aux >> 16
    }

    /// Kind of VMA a fault hit (FAULT a3).
    pub mod vma_kind {
        #![allow(missing_docs)]
        pub const NONE: u64 = 0;
        pub const ANON: u64 = 1;
        pub const FILE: u64 = 2;
        pub const STACK: u64 = 3;
        pub const HEAP: u64 = 4;
    }

    /// Exec phases (EXEC_PHASE a0).
    pub mod exec_phase {
        #![allow(missing_docs)]
        pub const START: u64 = 1;
        pub const ELF_CHECKED: u64 = 2;
        pub const ADDRESS_SPACE: u64 = 3;
        pub const SEGMENTS_MAPPED: u64 = 4;
        pub const STACK_BUILT: u64 = 5;
        pub const ENTER_USER: u64 = 6;
        /// An in-guest execve tore the old address space down.
        pub const TORN_DOWN: u64 = 7;
    }

    /// Offset of the first record from the ring's start (the header is
    /// padded to one record).
    pub const RECORDS_OFFSET: u64 = 64;
    /// Size of one [`Record`].
    pub const RECORD_SIZE: u64 = 64;

    /// The ring's header, at [`super::BootInfo::trace_phys`]; records
    /// follow at [`RECORDS_OFFSET`], record `i` at index `i % capacity`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct RingHeader {
        /// Records the guest has written in all (monotonic).
        pub written: u64,
        /// Records the host has drained in all (monotonic).
        pub drained: u64,
        /// Records dropped (never, with a draining host; counted anyway).
        pub lost: u64,
        /// Capacity in records.
        pub capacity: u64,
    }

    /// One trace record.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Record {
        /// [`kind`].
        pub kind: u32,
        /// Per-kind extra (the system call number).
        pub aux: u32,
        /// TSC when the event happened.
        pub tsc: u64,
        /// Per-kind arguments.
        pub a: [u64; 6],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_size_survives_the_boot_flags_and_leaves_other_bits_alone() {
        for size in [FaultSize::Page4K, FaultSize::Block64K, FaultSize::Huge2M] {
            let flags = size.flags() | boot_flags::ASLR | boot_flags::VERBOSE;
            assert_eq!(FaultSize::from_flags(flags), size);
            assert_eq!(size.flags() & (boot_flags::ASLR | boot_flags::VERBOSE), 0);
        }
        assert_eq!(FaultSize::from_flags(0), FaultSize::default());
        assert_eq!(FaultSize::default(), FaultSize::Huge2M);
    }
}
