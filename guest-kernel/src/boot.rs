//! Boot: from the VMM's 64-bit entry to the program's first instruction.
//!
//! 1. Check the boot info; start the frame allocator on the free RAM.
//! 2. Build the kernel's own page tables (the kernel image with
//!    per-section rights, the user-executable syscall trampoline page, and
//!    a link to the VMM's direct map of all RAM) and switch to them.
//! 3. Load the GDT/TSS and IDT, enable SYSCALL (LSTAR at the trampoline).
//! 4. Exec the program from the file image the VMM placed in RAM, then run.

use crate::arch::layout::ImageLayout;
use crate::arch::phys::DirectMap;
use crate::arch::{cpu, gdt, global::Once, hypercall, idt, trap};
use crate::host::Host;
use crate::run::Kernel;
use alloc::borrow::Cow;
use guest_kernel::errno::Errno;
use guest_kernel::exec::aslr::Layout;
use guest_kernel::fs::cache::{FileInfo, InodeKey};
use guest_kernel::mm::frame::FrameAllocator;
use guest_kernel::mm::paging::{pte, KernelHalf, PageSize, PageTable};
use guest_kernel::mm::phys::PhysMem;
use guest_kernel::mm::space::MmEnv;
use guest_kernel::process::task;
use guest_kernel::process::Process;
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
    let info = read_boot_info(boot_info_phys);
    hypercall::phase(phase::KERNEL_ENTRY);
    let Some(k) = KERNEL.take() else {
        hypercall::panic(b"kmain entered twice")
    };
    let Some(mem) = crate::arch::phys::take(info.mem_size) else {
        hypercall::panic(b"direct map already taken")
    };
    k.frames = FrameAllocator::new(info.free_phys_start, info.free_phys_end);
    k.frames.fault_size = vmrun_contract::FaultSize::from_flags(info.flags);
    k.info = info;
    k.host = Host {
        tsc0,
        tsc_khz: info.tsc_khz,
        realtime0: info.realtime_ns,
        monotonic0: info.monotonic_ns,
    };
    let mut mem = mem;
    mem.enable_trace(info.trace_phys, info.trace_len, info.trace_mask);
    k.kernel = build_kernel_tables(&mut mem, &mut k.frames);
    cpu::load_kernel_tables(&k.kernel);
    setup_cpu();
    let vvar_phys = setup_heap(&mut mem, &mut k.frames, info.mem_size);
    k.fs.connect();
    k.process.0 = Some(alloc::boxed::Box::new(Process::empty()));
    k.tasks.kernel = k.kernel;
    k.tasks.max_tasks = task_limit(crate::arch::heap::free_bytes() as u64);
    k.tasks.heap_free = crate::arch::heap::free_bytes;
    guest_kernel::mm::vma_tree::set_node_limit(vma_node_limit(crate::arch::heap::free_bytes()));
    setup_vdso(k, &mut mem, vvar_phys);
    k.frames_kernel = k.frames.in_use();
    hypercall::phase(phase::KERNEL_READY);
    exec_initial(k, &mut mem);
    hypercall::phase(phase::EXEC_LOADED);
    k.exec_event(&mut mem);
    k.debug_first_stop(&mut mem);
    k.run(&mut mem)
}

fn read_boot_info(pa: u64) -> BootInfo {
    if pa != BOOT_INFO_PHYS {
        hypercall::panic(b"boot info not at the contract's address");
    }
    let info = crate::arch::phys::boot_info();
    if info.magic != BOOT_MAGIC || info.version != CONTRACT_VERSION {
        hypercall::panic(b"boot info magic or version mismatch");
    }
    if info.free_phys_start >= info.free_phys_end || info.free_phys_end > info.mem_size {
        hypercall::panic(b"boot info: bad free memory range");
    }
    info
}

/// The kernel heap (1/64 of RAM, 2 to 32 MiB) and the page-cache bitmap
/// at its start, in consecutive fresh 2 MiB frames (which need no
/// zeroing).
/// Returns the vDSO data pages ([vvar] then [vvar_vclock], zeroed), which
/// sit between the bitmap and the heap.
fn setup_heap(mem: &mut DirectMap, frames: &mut FrameAllocator, mem_size: u64) -> u64 {
    let bits = frames.cache_bits_bytes().next_multiple_of(PAGE_SIZE);
    let vvar = (vvar::VVAR_PAGES + vvar::VCLOCK_PAGES) * PAGE_SIZE;
    let reserved = bits + vvar;
    let size =
        ((mem_size / 64 + reserved).clamp(2 << 20, 32 << 20)).next_multiple_of(HUGE_PAGE_SIZE);
    let Some(mut base) = frames.alloc_huge_zeroed(mem) else {
        oom()
    };
    for _ in 1..size / HUGE_PAGE_SIZE {
        match frames.alloc_huge_zeroed(mem) {
            Some(pa) if pa + HUGE_PAGE_SIZE == base => base = pa,
            _ => hypercall::panic(b"kernel heap frames are not consecutive"),
        }
    }
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
    for i in 0..pages {
        k.frames.set_cache(mem, vvar_phys + i * PAGE_SIZE, true);
    }
    let data = [
        vvar::MAGIC,
        k.host.tsc0,
        k.host.mult(),
        info.realtime_ns,
        info.monotonic_ns,
    ];
    for (i, w) in data.iter().enumerate() {
        mem.write_u64(vvar_phys + 8 * i as u64, *w);
    }
    let cache = &mut k.cache;
    let vvar_len = vvar::VVAR_PAGES * PAGE_SIZE;
    let ids = (
        cache.add_special(b"[vvar]", vvar_phys, vvar_len, 1),
        cache.add_special(
            b"[vvar_vclock]",
            vvar_phys + vvar_len,
            vvar::VCLOCK_PAGES * PAGE_SIZE,
            2,
        ),
        cache.add_special(b"[vdso]", info.vdso_phys, info.vdso_len, 3),
    );
    if let (Ok(a), Ok(b), Ok(c)) = ids {
        if info.vdso_phys != 0 && info.vdso_len > 0 {
            k.process.vdso = Some([a, b, c]);
        }
    }
}

fn oom() -> ! {
    hypercall::panic(b"out of memory building the kernel page tables")
}

/// The kernel's page tables; returns their PML4 and used kernel-half
/// entries.
fn build_kernel_tables(mem: &mut DirectMap, frames: &mut FrameAllocator) -> KernelHalf {
    let Ok(mut pt) = PageTable::new(mem, frames) else {
        oom()
    };
    let kernel_rw = pte::P | pte::RW | pte::A | pte::D | pte::G | pte::NX;
    link_direct_map(mem, pt.root());
    let img = ImageLayout::get();
    let sections = [
        (img.text, img.trampoline, pte::P | pte::A | pte::G),
        (img.trampoline, img.trampoline_end, pte::P | pte::A | pte::G),
        (img.rodata, img.data, pte::P | pte::A | pte::G | pte::NX),
        (img.data, img.end, kernel_rw),
    ];
    for (start, end, flags) in sections {
        map_4k_run(&mut pt, mem, frames, start, end, flags);
    }
    let tramp = ImageLayout::phys(img.trampoline);
    let user_x = pte::P | pte::US | pte::A;
    pt.map(
        mem,
        frames,
        SYSCALL_TRAMPOLINE_VIRT,
        tramp,
        PageSize::Size4K,
        user_x,
    )
    .unwrap_or_else(|_| oom());
    allow_user_path(mem, pt.root(), SYSCALL_TRAMPOLINE_VIRT);
    let pml4_index = |va: u64| (va >> 39) & 0x1ff;
    let used = [DIRECT_MAP_BASE, KERNEL_VIRT_BASE, SYSCALL_TRAMPOLINE_VIRT].map(pml4_index);
    KernelHalf::new(pt.root(), &used)
}

/// Link the VMM's direct map of all RAM (its PDPT and page directories of
/// 2 MiB leaves, `DIRECT_MAP_LEAF_FLAGS`) into the kernel's PML4: one
/// entry, whatever the RAM size, where building it here would take a write
/// per 2 MiB (32,768 at 64 GiB). The guest builds every other table; these
/// stay the VMM's, never written or freed, outside the frame allocator.
fn link_direct_map(mem: &mut DirectMap, root: u64) {
    let entry = BOOT_PDPT_DIRECT_PHYS | pte::P | pte::RW | pte::A;
    let slot = root + ((DIRECT_MAP_BASE >> 39) & 0x1ff) * 8;
    mem.write_u64(slot, entry);
    trace::emit(
        mem,
        category::PAGE_TABLES,
        kind::PTE_SET,
        0,
        [DIRECT_MAP_BASE, 4, BOOT_PDPT_DIRECT_PHYS, entry, 0, 0],
    );
}

/// Map `[start, end)` of the kernel image to its physical pages.
fn map_4k_run(
    pt: &mut PageTable,
    mem: &mut DirectMap,
    frames: &mut FrameAllocator,
    start: u64,
    end: u64,
    flags: u64,
) {
    let mut va = start;
    while va < end {
        let n = (end - va) / PAGE_SIZE;
        let done = pt.map_pages(
            mem,
            frames,
            va,
            ImageLayout::phys(va),
            n,
            PageSize::Size4K,
            flags,
        );
        let done = done.unwrap_or_else(|_| oom());
        if done == 0 {
            hypercall::panic(b"kernel image pages overlap");
        }
        va += done * PAGE_SIZE;
    }
}

/// Set the user bit on the table entries leading to `va` (the trampoline
/// is the only user-accessible page in the kernel half).
fn allow_user_path(mem: &mut DirectMap, root: u64, va: u64) {
    let mut table = root;
    for level in [4u32, 3, 2] {
        let entry = table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        let e = mem.read_u64(entry);
        mem.write_u64(entry, e | pte::US);
        table = e & pte::ADDR_MASK;
    }
}

/// Descriptor tables, SYSCALL, and the CR4 features CPUID offers.
fn setup_cpu() {
    let top = trap::user_frame_top();
    gdt::init(top, &[top, trap::double_fault_stack_top()]);
    idt::init();
    let efer = cpu::rdmsr(cpu::MSR_EFER);
    cpu::wrmsr(cpu::MSR_EFER, efer | cpu::EFER_SCE | cpu::EFER_NXE);
    let star = (u64::from(gdt::USER_CS32 & !3) << 48) | (u64::from(gdt::KERNEL_CS) << 32);
    cpu::wrmsr(cpu::MSR_STAR, star);
    cpu::wrmsr(cpu::MSR_LSTAR, SYSCALL_TRAMPOLINE_VIRT);
    // Mask IF, TF, DF, AC, NT and IOPL on entry, as Linux does.
    cpu::wrmsr(cpu::MSR_SFMASK, 0x4_7700);
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

/// Exec the program the VMM placed in RAM: the same two steps as an
/// in-guest execve (checks, then the point of no return), from the image
/// already in RAM instead of a file opened by path.
fn exec_initial(k: &mut Kernel, mem: &mut DirectMap) {
    let info = k.info;
    let argbuf = crate::arch::phys::bytes(mem, info.args_phys, info.args_len);
    if info.args_lens_phys == 0 {
        exec_fail(Errno::E2BIG, b"no argument length table");
    }
    let n = 4 * (1 + u64::from(info.argc) + u64::from(info.envc));
    let lens = crate::arch::phys::bytes(mem, info.args_lens_phys, n);
    let layout = if info.flags & boot_flags::ASLR != 0 {
        Layout::randomized(info.aslr_seed)
    } else {
        Layout::FIXED
    };
    k.process.layout = layout;
    let exe_path = crate::arch::phys::bytes(mem, info.exe_path_phys, info.exe_path_len.min(4096));
    let image = FileInfo {
        key: InodeKey { dev: 0, ino: 0 },
        size: info.file_len,
        mtime: (0, 0),
    };
    let Ok(id) = k.cache.add_image(image, exe_path, info.file_phys) else {
        exec_fail(Errno::ENOEXEC, b"file image is not page aligned")
    };
    let p: &mut Process = &mut k.process;
    p.image_inode = Some(id);
    if info.cwd_len > 0 {
        p.cwd = crate::arch::phys::bytes(mem, info.cwd_phys, info.cwd_len.min(4095)).to_vec();
    }
    p.init_stdio();
    p.stdio_modes = [
        info.stdio_modes[0],
        info.stdio_modes[1],
        info.stdio_modes[2],
    ];
    k.hwcap = (u64::from(cpu::cpuid(1, 0)[3]), 0);
    k.random_state = u64::from_le_bytes(info.random[..8].try_into().unwrap_or_default());
    // The exec file name's length is the table's first (its NUL
    // included), checked again with the whole table in `prepare`: no
    // byte-by-byte scan for its end.
    let execfn_len = lens
        .get(..4)
        .map_or(0, |l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
    let execfn = match argbuf.get(..execfn_len.saturating_sub(1)) {
        Some(name) if argbuf.get(name.len()) == Some(&0) => Cow::Borrowed(name),
        _ => exec_fail(Errno::EINVAL, b"bad argument length table"),
    };
    let boot_args = (
        Cow::Borrowed(argbuf),
        Cow::Borrowed(lens),
        info.argc,
        info.envc,
    );
    let mut env = MmEnv {
        mem,
        frames: &mut k.frames,
        cache: &mut k.cache,
        host: &mut k.fs,
    };
    let mut cx = Ctx {
        p: &mut k.process,
        env: &mut env,
        host: &mut k.host,
        tasks: &mut k.tasks,
    };
    let plan =
        match syscall::exec::prepare(&mut cx, id, None, execfn, Some(boot_args), None, layout) {
            Ok(plan) => plan,
            Err(e) => exec_fail(e.errno, &e.message),
        };
    cx.p.mm
        .vmas
        .set_journaling(trace::on(cx.env.mem, category::VMAS));
    if let Some(e) = plan.late_error() {
        let mut m = guest_kernel::fmt::MsgBuf::<256>::new();
        m.str("exec fails past the point of no return (SIGSEGV): ");
        e.write_msg(&mut m);
        hypercall::log(m.as_bytes());
    }
    // The boot random bytes for AT_RANDOM (the host's getrandom), as before.
    let entry = syscall::exec::commit(&mut cx, &k.kernel, plan, k.hwcap, info.random);
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
