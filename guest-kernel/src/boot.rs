//! Boot: from the VMM's 64-bit entry to the program's first instruction.
//!
//! 1. Check the boot info; start the frame allocator on the free RAM.
//! 2. Adopt the kernel's page tables, which the VMM wrote by the contract
//!    (the kernel image with per-segment rights, the user-executable
//!    syscall trampoline page, the direct map of all RAM) and CR3 already
//!    points at: from here on they are the kernel's, and a traced boot
//!    reports every table and entry of them.
//! 3. Load the GDT/TSS and IDT, enable SYSCALL (LSTAR at the trampoline).
//! 4. Exec the program from the file image the VMM placed in RAM, then run.

use crate::arch::phys::DirectMap;
use crate::arch::{cpu, gdt, global::Once, hypercall, idt, trap};
use crate::host::Host;
use crate::run::Kernel;
use alloc::borrow::Cow;
use guest_kernel::errno::Errno;
use guest_kernel::exec::aslr::Layout;
use guest_kernel::fs::cache::InodeKey;
use guest_kernel::mm::frame::FrameAllocator;
use guest_kernel::mm::paging::{pte, KernelHalf, KERNEL_HALF};
use guest_kernel::mm::phys::PhysMem;
use guest_kernel::mm::space::MmEnv;
use guest_kernel::process::task;
use guest_kernel::process::Process;
use guest_kernel::syscall::exec::BootArgs;
use guest_kernel::syscall::{self, Ctx};
use guest_kernel::trace::{self, category, kind};
use vmrun_contract::layout::*;
use vmrun_contract::trace::exec_phase;
use vmrun_contract::{boot_flags, phase, vvar, BootInfo, BOOT_MAGIC, CONTRACT_VERSION};

static KERNEL: Once<Kernel> = Once::new(Kernel::empty());

/// The Rust entry point, called by `_start` with the boot-info address.
#[no_mangle]
pub extern "C" fn kmain(boot_info_phys: u64) -> ! {
    let tsc0 = cpu::rdtsc();
    let Some(k) = KERNEL.take() else {
        hypercall::panic(b"kmain entered twice")
    };
    read_boot_info(boot_info_phys, &mut k.info);
    let info = &k.info;
    let Some(mem) = crate::arch::phys::take(info.mem_size) else {
        hypercall::panic(b"direct map already taken")
    };
    k.frames = FrameAllocator::new(info.free_phys_start, info.free_phys_end);
    k.frames.fault_size = vmrun_contract::FaultSize::from_flags(info.flags);
    k.host = Host {
        tsc0,
        tsc_khz: info.tsc_khz,
        realtime0: info.realtime_ns,
        monotonic0: info.monotonic_ns,
        last_stream: 0,
        random_pool: guest_kernel::syscall::random_pool::RandomPool::full(),
        mem_size: info.mem_size,
    };
    let mut mem = mem;
    stamp_at(&mut mem, phase::KERNEL_ENTRY, tsc0);
    mem.enable_trace(info.trace_phys, info.trace_len, info.trace_mask);
    k.kernel = adopt_kernel_tables(&mut mem);
    setup_cpu(info.flags & boot_flags::PLATFORM_PVM != 0);
    if info.flags & boot_flags::PLATFORM_PVM == 0 {
        trap::table_test_in_ring0(&mut mem);
    } else {
        crate::arch::mem::host_bulk(info.mem_size);
    }
    let vvar_phys = setup_heap(&mut k.frames, info.mem_size);
    k.fs.connect();
    k.process.0 = Some(alloc::boxed::Box::new(Process::empty()));
    init_process(k, &mut mem);
    k.watch_faults(&mem);
    k.hwcap = (u64::from(cpu::cpuid(1, 0)[3]), 0);
    k.random_state = u64::from_le_bytes(k.info.random[..8].try_into().unwrap_or_default());
    k.tasks.kernel = k.kernel;
    k.tasks.max_tasks = task_limit(crate::arch::heap::free_bytes() as u64);
    k.tasks.heap_free = crate::arch::heap::free_bytes;
    guest_kernel::mm::vma_tree::set_node_limit(vma_node_limit(crate::arch::heap::free_bytes()));
    setup_vdso(k, &mut mem, vvar_phys);
    k.frames_kernel = k.frames.in_use();
    stamp_phase(&mut mem, phase::KERNEL_READY);
    exec_initial(k, &mut mem);
    stamp_phase(&mut mem, phase::EXEC_LOADED);
    k.exec_event(&mut mem);
    k.debug_first_stop(&mut mem);
    run(k, &mut mem)
}

/// The run loop, with the kernel at its static's fixed address: every
/// kernel entry reaches the kernel's fields through a constant address,
/// not a register the loop must keep (a few instructions per entry).
#[inline(never)]
fn run(k: &'static mut Kernel, mem: &mut DirectMap) -> ! {
    KERNEL.rebind(k).run(mem)
}

/// Copy the boot info into `info` (one block copy, straight into the
/// kernel's state) and check it.
fn read_boot_info(pa: u64, info: &mut BootInfo) {
    if pa != BOOT_INFO_PHYS {
        hypercall::panic(b"boot info not at the contract's address");
    }
    *info = crate::arch::phys::boot_info();
    if info.magic != BOOT_MAGIC || info.version != CONTRACT_VERSION {
        hypercall::panic(b"boot info magic or version mismatch");
    }
    if info.free_phys_start >= info.free_phys_end || info.free_phys_end > info.mem_size {
        hypercall::panic(b"boot info: bad free memory range");
    }
}

/// The kernel heap (1/64 of RAM, 2 to 32 MiB) and the page-cache bitmap
/// at its start, in consecutive fresh 2 MiB frames (which need no
/// zeroing).
/// Returns the vDSO data pages ([vvar] then [vvar_vclock], zeroed), which
/// sit between the bitmap and the heap.
fn setup_heap(frames: &mut FrameAllocator, mem_size: u64) -> u64 {
    let bits = frames.cache_bits_bytes().next_multiple_of(PAGE_SIZE);
    let reserved = vmrun_contract::layout::kernel_heap_reserved(frames.total());
    let size = vmrun_contract::layout::kernel_heap_bytes(mem_size, reserved);
    let Some(base) = frames.alloc_huge_run_fresh(size / HUGE_PAGE_SIZE) else {
        oom()
    };
    frames.use_cache_bits(base);
    crate::arch::heap::init(DIRECT_MAP_BASE + base + reserved, size - reserved);
    base + bits
}

/// The VMA tree nodes of all address spaces may take three quarters of a
/// fresh heap of `heap` bytes (at the default 256 MiB of RAM, enough for
/// Linux's 65,530 areas in one process): a program that maps areas until
/// memory runs out gets ENOMEM, and the rest stays for tasks, files and
/// everything else.
fn vma_node_limit(heap: usize) -> usize {
    heap / 4 * 3 / guest_kernel::mm::vma_tree::NODE_BYTES
}

/// The task limit for a kernel heap of `heap` bytes.
fn task_limit(heap: u64) -> usize {
    (heap as usize / task::TASK_HEAP_BYTES).clamp(64, task::MAX_TASKS)
}

/// The vDSO and its data pages as page-cache images (marked so that the
/// checker and unmapping treat them as shared, never owned), and the data
/// page filled for the vDSO's clocks.
fn setup_vdso(k: &mut Kernel, mem: &mut DirectMap, vvar_phys: u64) {
    let info = k.info;
    let pages = vvar::VVAR_PAGES + vvar::VCLOCK_PAGES;
    k.frames.set_cache_run(mem, vvar_phys, pages, true);
    let data = [
        vvar::MAGIC,
        k.host.tsc0,
        k.host.mult(),
        info.realtime_ns,
        info.monotonic_ns,
    ];
    mem.write_words(vvar_phys, &data);
    let vvar_len = vvar::VVAR_PAGES * PAGE_SIZE;
    let ids = k.cache.add_specials([
        (b"[vvar]", vvar_phys, vvar_len),
        (
            b"[vvar_vclock]",
            vvar_phys + vvar_len,
            vvar::VCLOCK_PAGES * PAGE_SIZE,
        ),
        (b"[vdso]", info.vdso_phys, info.vdso_len),
    ]);
    if let Ok(ids) = ids {
        if info.vdso_phys != 0 && info.vdso_len > 0 {
            k.process.vdso = Some(ids);
        }
    }
}

fn oom() -> ! {
    hypercall::panic(b"out of memory setting up the kernel")
}

/// The kernel's page tables as the VMM wrote them (`contract::layout`:
/// the PML4 at `BOOT_PML4_PHYS`, loaded in CR3 since the first
/// instruction): the kernel takes them over as they are. Writing the
/// image's 4 KiB entries here cost over 2,000 emulated instructions per
/// boot; every table a program uses (its user half) is still the
/// kernel's own work. With page-table tracing on, each adopted table and
/// entry is reported as if written now.
fn adopt_kernel_tables(mem: &mut DirectMap) -> KernelHalf {
    if crate::arch::layout::trampoline_phys() != SYSCALL_TRAMPOLINE_PHYS {
        hypercall::panic(b"the syscall trampoline is not where the contract puts it");
    }
    if trace::on(mem, category::PAGE_TABLES) {
        trace_adopted(mem, BOOT_PML4_PHYS, 4, KERNEL_HALF);
    }
    KERNEL_TABLES
}

/// The kernel half the VMM's tables use: the direct map's PML4 entry and
/// the one of the image and the trampoline (a constant, copied at boot).
const KERNEL_TABLES: KernelHalf = KernelHalf::new(
    BOOT_PML4_PHYS,
    &[
        (DIRECT_MAP_BASE >> 39) & 0x1ff,
        (KERNEL_VIRT_BASE >> 39) & 0x1ff,
    ],
);

/// Trace the table at `table` (level 4 = PML4; below, covering from
/// `base`) and everything under it, as `pt-alloc` and `pte-set` records.
/// Of the PML4 only the kernel half is walked, and the direct map is
/// reported as its one PML4 entry, not its thousands of leaves.
fn trace_adopted(mem: &mut DirectMap, table: u64, level: u64, base: u64) {
    let span = 1u64 << (12 + 9 * (level - 1));
    let (first, start, end) = match level {
        4 => (256, 0, 1 << 48),
        _ => (0, base, base.wrapping_add(span * 512)),
    };
    let a = [level, start, end, table, 0, 0];
    trace::emit(mem, category::PAGE_TABLES, kind::PT_ALLOC, 0, a);
    for i in first..512 {
        let entry = mem.read_u64(table + i * 8);
        if entry & pte::P == 0 {
            continue;
        }
        let va = base + (i - first) * span;
        let frame = entry & pte::ADDR_MASK;
        let a = [va, level, frame, entry, 0, 0];
        trace::emit(mem, category::PAGE_TABLES, kind::PTE_SET, 0, a);
        if level > 1 && entry & pte::PS == 0 && va != DIRECT_MAP_BASE {
            trace_adopted(mem, frame, level - 1, va);
        }
    }
}

/// Descriptor tables, SYSCALL, and the CR4 features CPUID offers; `pvm`:
/// the host is kvm_pvm, where SYSCALL keeps user rights.
fn setup_cpu(pvm: bool) {
    let top = trap::user_frame_top();
    gdt::init(top, &[top, trap::double_fault_stack_top()]);
    idt::init();
    let efer = cpu::rdmsr(cpu::MSR_EFER);
    cpu::wrmsr(cpu::MSR_EFER, efer | cpu::EFER_SCE | cpu::EFER_NXE);
    let star = (u64::from(gdt::USER_CS32 & !3) << 48) | (u64::from(gdt::KERNEL_CS) << 32);
    cpu::wrmsr(cpu::MSR_STAR, star);
    cpu::wrmsr(cpu::MSR_LSTAR, SYSCALL_TRAMPOLINE_VIRT);
    // Mask IF, TF, DF, AC, NT and IOPL on entry, as Linux does; but IF
    // on kvm_pvm, where the trampoline runs with user rights: there it may
    // return to the program itself (the stdin ring), which it could not
    // do with interrupts off (a POPF in user mode leaves IF as it is), and
    // an interrupt there is one in user mode (`trap::in_trampoline`).
    let mask = if pvm { 0x4_7500 } else { 0x4_7700 };
    cpu::wrmsr(cpu::MSR_SFMASK, mask);
    cpu::enable_features();
}

/// What a failed load of the initial program means, by its errno.
fn commit_failure(e: Errno) -> &'static [u8] {
    match e {
        Errno::EEXIST => {
            b"cannot set up the program's address space: a PT_LOAD segment lies where the \
              stack goes (just below the top of user space)"
        }
        Errno::ENOMEM => b"cannot set up the program's address space: out of guest memory",
        _ => b"cannot set up the program's address space",
    }
}

fn exec_fail(errno: Errno, msg: &[u8]) -> ! {
    hypercall::exec_failed(errno as u64, msg)
}

/// The first process's state from before its exec: its working directory,
/// fds 0, 1 and 2 (the host's stdio), as Linux's `kernel_init` gives init
/// its root and opens the console before it execs it, and the signals
/// vmrun was started with ignored, which an exec keeps.
fn init_process(k: &mut Kernel, mem: &mut DirectMap) {
    let info = &k.info;
    let p: &mut Process = &mut k.process;
    if info.cwd_len > 0 {
        let cwd = crate::arch::phys::bytes(mem, info.cwd_phys, info.cwd_len.min(4095));
        p.cwd = Cow::Borrowed(cwd);
    }
    p.init_stdio();
    let m = info.stdio_modes;
    p.stdio_modes = [m[0], m[1], m[2]];
    if info.ignored_signals != 0 {
        let (actions, set) = (&mut p.sigactions, &mut p.sigactions_set);
        guest_kernel::signal::ignore_inherited(actions, set, info.ignored_signals);
    }
}

/// Exec the program the VMM placed in RAM: the same two steps as an
/// in-guest execve (checks, then the point of no return), from the image
/// already in RAM instead of a file opened by path. Out of line: `vmrun
/// bench` counts the exec's instructions from its first.
#[inline(never)]
fn exec_initial(k: &mut Kernel, mem: &mut DirectMap) {
    let info = k.info;
    let argbuf = crate::arch::phys::bytes(mem, info.args_phys, info.args_len);
    if info.args_lens_phys == 0 {
        exec_fail(Errno::E2BIG, b"no argument length table");
    }
    let n = 4 * (1 + u64::from(info.argc) + u64::from(info.envc));
    let lens = crate::arch::phys::bytes(mem, info.args_lens_phys, n);
    // The process, looked up once (each use through `Current` tests that
    // there is one).
    let process: &mut Process = &mut k.process;
    // The process's layout for its later execs: the fixed one is there
    // already, as `Process::empty` made it.
    let layout = if info.flags & boot_flags::ASLR != 0 {
        process.layout = Layout::randomized(info.aslr_seed);
        process.layout
    } else {
        Layout::FIXED
    };
    let exe_path = crate::arch::phys::bytes(mem, info.exe_path_phys, info.exe_path_len.min(4096));
    // The file's host identity (zero if unknown), so that a later open
    // of it finds it here.
    let key = InodeKey {
        dev: info.file_dev,
        ino: info.file_ino,
    };
    let mtime = (info.file_mtime_sec, info.file_mtime_nsec as u32);
    let image = (info.file_phys, key, mtime);
    let Ok(id) = k.cache.add_image(info.file_len, exe_path, image) else {
        exec_fail(Errno::ENOEXEC, b"file image is not page aligned")
    };
    // The exec file name's length is the table's first (its NUL
    // included), checked again with the whole table in `prepare`: no
    // byte-by-byte scan for its end.
    let execfn_len = lens
        .get(..4)
        .map_or(0, |l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
    let name_len = execfn_len.saturating_sub(1);
    let execfn = match argbuf.get(name_len) {
        Some(0) => Cow::Borrowed(&argbuf[..name_len]),
        _ => exec_fail(Errno::EINVAL, b"bad argument length table"),
    };
    let boot_args = BootArgs {
        block: argbuf,
        lens,
        argc: info.argc,
        envc: info.envc,
        image: crate::arch::phys::bytes(mem, info.file_phys, info.file_len),
    };
    let mut env = MmEnv {
        mem,
        frames: &mut k.frames,
        cache: &mut k.cache,
        host: &mut k.fs,
    };
    let mut cx = Ctx {
        p: process,
        env: &mut env,
        host: &mut k.host,
        tasks: &mut k.tasks,
    };
    let plan = &mut k.boot_plan;
    if let Err(e) = syscall::exec::prepare_boot(&mut cx, id, execfn, boot_args, layout, plan) {
        exec_fail(e.errno, &e.message)
    }
    // The fresh process's areas journal nothing unless the trace asks.
    if trace::on(cx.env.mem, category::VMAS) {
        cx.p.mm.vmas.set_journaling(true);
    }
    if let Some(e) = plan.late_error() {
        let mut m = guest_kernel::fmt::MsgBuf::<256>::new();
        m.str("exec fails past the point of no return (SIGSEGV): ");
        e.write_msg(&mut m);
        hypercall::log(m.as_bytes());
    }
    // The boot random bytes for AT_RANDOM (the host's getrandom), as before.
    let entry = syscall::exec::commit(&mut cx, &k.kernel, plan, k.hwcap, info.random);
    // What the plan holds on the heap (an interpreter's plan) is not
    // needed again.
    plan.interp = None;
    let entry = match entry {
        Ok(entry) => entry,
        // Past the point of no return Linux kills the process instead of
        // failing the execve; vmrun says why.
        Err(e) => {
            hypercall::log(commit_failure(e));
            k.kill_after_failed_exec(mem, e)
        }
    };
    k.enter_user(entry);
    exec_phase(mem, exec_phase::ENTER_USER);
}

/// Stamp boot milestone `p` with the TSC in the stats page, where the host
/// reads it at the end of the run (a hypercall would cost a VM exit).
fn stamp_phase(mem: &mut DirectMap, p: u64) {
    stamp_at(mem, p, cpu::rdtsc());
}

/// Stamp milestone `p` as reached at the guest TSC `tsc`.
fn stamp_at(mem: &mut DirectMap, p: u64, tsc: u64) {
    let at = STATS_PHYS + vmrun_contract::PHASE_TSC_OFFSET + 8 * p;
    mem.write_u64(at, tsc);
}

/// Trace an exec phase (the record's TSC says when).
fn exec_phase(mem: &mut DirectMap, phase: u64) {
    trace::emit(
        mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [phase, 0, 0, 0, 0, 0],
    );
}
