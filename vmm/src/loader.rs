//! Putting the guest kernel, the program file and its arguments into guest
//! RAM, and describing where they went in the boot info.
//!
//! The VMM does not interpret the program: its bytes are read in as they
//! are, straight from the file into guest RAM (they become the guest's page
//! cache for the file), and the guest kernel validates and maps them.

use crate::boot::ImageSegment;
use crate::error::{Error, Result};
use crate::memory::GuestRam;
use goblin::elf::ProgramHeader;
use linux_loader::loader::{elf::Elf, KernelLoader};
use std::ffi::OsString;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use vm_memory::GuestMemoryMmap;
use vmrun_contract::layout::{
    ARGS_MAX, ARGS_PHYS, HUGE_PAGE_SIZE, KERNEL_PHYS, PAGE_SIZE, RANDOM_POOL_BYTES,
    RANDOM_POOL_PHYS,
};
use vmrun_contract::{trace, BootInfo, VmaExport, BOOT_MAGIC, CONTRACT_VERSION};

/// The guest kernel ELF, built by build.rs and embedded in vmrun.
pub static GUEST_KERNEL: &[u8] = &KERNEL_IMAGE.0;

/// Bytes starting on a page boundary, in memory and so in vmrun's file (a
/// loadable segment's offset and address agree modulo the page size).
#[repr(C, align(4096))]
struct PageAligned<T: ?Sized>(T);

/// [`GUEST_KERNEL`], page-aligned so that its segments can be mapped into
/// guest RAM straight from vmrun's file ([`load_kernel`]).
static KERNEL_IMAGE: &PageAligned<[u8]> = &PageAligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/guest-kernel.elf"
)));

/// Where the kernel image landed.
#[derive(Clone, Debug)]
pub struct LoadedKernel {
    /// Virtual entry address.
    pub entry: u64,
    /// End (exclusive) of the image in guest-physical memory.
    pub phys_end: u64,
    /// Its loadable segments, for the kernel's page tables.
    pub segments: Vec<ImageSegment>,
}

/// Load the embedded kernel ([`GUEST_KERNEL`]) into guest RAM: its
/// read-only segments (rodata, text: nine tenths of it) mapped privately
/// from vmrun's own file, so that the guest's first touches bring them in
/// from the host's page cache (a few faults of 16 pages each) instead of
/// the loading thread faulting in and copying some 240 pages; the
/// writable one copied. Where that cannot be done (vmrun's file not
/// readable, the image not where its loaded copy says), every segment is
/// copied as [`load_kernel`] does.
pub fn load_embedded_kernel(ram: &GuestRam) -> Result<LoadedKernel> {
    let image = GUEST_KERNEL;
    let Some(file) = own_image_file(image) else {
        return load_kernel(ram.mem(), image);
    };
    // One parse of the headers serves the segments' rights and placing.
    let (entry, headers) = program_headers(image)?;
    let kernel = LoadedKernel {
        entry,
        phys_end: 0,
        segments: image_segments(&headers),
    };
    let plan = file_segments(image, &headers);
    let mut phys_end = 0;
    for seg in &plan {
        phys_end = phys_end.max(seg.phys + seg.mem_len);
        let len = seg.file_len.next_multiple_of(PAGE);
        let mapped = seg.mappable && ram.map_file(seg.phys, len, &file.0, file.1 + seg.offset)?;
        if !mapped {
            let bytes = image
                .get(seg.offset as usize..(seg.offset + seg.file_len) as usize)
                .ok_or_else(|| Error::KernelLoad("a segment lies outside the image".into()))?;
            // The rest of the segment (its bss) is fresh RAM: zero.
            ram.write_bytes(seg.phys, bytes)?;
        }
    }
    if phys_end < KERNEL_PHYS {
        return Err(Error::KernelLoad(
            "image ends below its load address".into(),
        ));
    }
    Ok(LoadedKernel { phys_end, ..kernel })
}

const PAGE: u64 = vmrun_contract::layout::PAGE_SIZE;

/// vmrun's own file, open, and the offset of `image` in it, if the file
/// holds the same bytes there (the first page of them is compared).
fn own_image_file(image: &[u8]) -> Option<(std::fs::File, u64)> {
    use std::os::unix::fs::FileExt;
    let offset = crate::sys::own_file_offset(image.as_ptr(), image.len())?;
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    let head = &image[..image.len().min(PAGE as usize)];
    let mut buf = vec![0u8; head.len()];
    file.read_exact_at(&mut buf, offset).ok()?;
    (buf == head && offset % PAGE == 0).then_some((file, offset))
}

/// A loadable segment of the kernel image, as [`load_embedded_kernel`]
/// places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileSegment {
    /// Guest-physical address.
    phys: u64,
    /// Offset of its bytes in the image.
    offset: u64,
    /// Bytes in the image.
    file_len: u64,
    /// Bytes in memory (the rest zero).
    mem_len: u64,
    /// Whether it can be mapped from the file: read-only, page-aligned in
    /// both places, nothing to zero after its bytes, and the image's bytes
    /// up to its last page's end zero (as a copy would leave them).
    mappable: bool,
}

/// The loadable segments of `image`, whose program headers are `headers`,
/// as [`load_embedded_kernel`] places them.
fn file_segments(image: &[u8], headers: &[ProgramHeader]) -> Vec<FileSegment> {
    use goblin::elf::program_header::{PF_W, PT_LOAD};
    headers
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD && ph.p_memsz > 0)
        .map(|ph| {
            let end = ph.p_offset + ph.p_filesz;
            let tail = image.get(end as usize..end.next_multiple_of(PAGE) as usize);
            FileSegment {
                phys: ph.p_paddr,
                offset: ph.p_offset,
                file_len: ph.p_filesz,
                mem_len: ph.p_memsz,
                mappable: ph.p_flags & PF_W == 0
                    && ph.p_offset % PAGE == 0
                    && ph.p_paddr % PAGE == 0
                    && ph.p_filesz == ph.p_memsz
                    && tail.is_some_and(|t| t.iter().all(|&b| b == 0)),
            }
        })
        .collect()
}

/// Load the kernel ELF `image` at its physical addresses, copying it.
pub fn load_kernel(mem: &GuestMemoryMmap, image: &[u8]) -> Result<LoadedKernel> {
    let mut cursor = Cursor::new(image);
    let res =
        Elf::load(mem, None, &mut cursor, None).map_err(|e| Error::KernelLoad(format!("{e}")))?;
    if res.kernel_end < KERNEL_PHYS {
        return Err(Error::KernelLoad(
            "image ends below its load address".into(),
        ));
    }
    Ok(LoadedKernel {
        entry: res.kernel_load.0,
        phys_end: res.kernel_end,
        segments: image_segments(&program_headers(image)?.1),
    })
}

/// The `PT_LOAD` segments of the program headers `headers` with their
/// physical addresses and rights.
fn image_segments(headers: &[ProgramHeader]) -> Vec<ImageSegment> {
    use goblin::elf::program_header::{PF_W, PF_X, PT_LOAD};
    headers
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD && ph.p_memsz > 0)
        .map(|ph| ImageSegment {
            phys: ph.p_paddr,
            len: ph.p_memsz,
            writable: ph.p_flags & PF_W != 0,
            executable: ph.p_flags & PF_X != 0,
        })
        .collect()
}

/// The image's entry address and program headers.
///
/// Only the ELF header and the program headers are read: a whole parse
/// would also read the kernel's section headers, symbols and strings, which
/// nothing here needs (about 30 us of every start).
fn program_headers(image: &[u8]) -> Result<(u64, Vec<ProgramHeader>)> {
    use goblin::container::Ctx;
    let bad = |e: goblin::error::Error| Error::KernelLoad(format!("{e}"));
    let header = goblin::elf::Elf::parse_header(image).map_err(bad)?;
    let ctx = Ctx::new(
        header.container().map_err(bad)?,
        header.endianness().map_err(bad)?,
    );
    let headers =
        ProgramHeader::parse(image, header.e_phoff as usize, header.e_phnum as usize, ctx)
            .map_err(bad)?;
    Ok((header.e_entry, headers))
}

/// The exec file name, argument and environment strings, laid out as the
/// boot info's argument block: each NUL-terminated, in that order.
pub fn args_block(execfn: &[u8], argv: &[OsString], envp: &[OsString]) -> Result<Vec<u8>> {
    let mut block = Vec::new();
    for s in std::iter::once(execfn).chain(argv.iter().chain(envp).map(|s| s.as_bytes())) {
        if s.contains(&0) {
            return Err(Error::Config(
                "arguments and environment must not contain NUL".into(),
            ));
        }
        block.extend_from_slice(s);
        block.push(0);
    }
    // Room is kept for the canonical path and the working directory (up to
    // 4 KiB each) and the length table (4 bytes a string) after the block.
    let strings = 1 + argv.len() + envp.len();
    let table = 4 * strings as u64;
    let needed = block.len() as u64 + PATHS_ROOM + table;
    if needed > ARGS_MAX {
        return Err(Error::Config(too_long(block.len() as u64, strings, needed)));
    }
    Ok(block)
}

/// Room kept in the argument block for the program's canonical path and
/// the working directory (4 KiB each) and the block's terminator.
const PATHS_ROOM: u64 = 2 * 4096 + 8;

/// The E2BIG message: every part of what the block must hold, so that the
/// sum, not just the strings, is seen to exceed the limit.
fn too_long(bytes: u64, strings: usize, needed: u64) -> String {
    format!(
        "argument list too long: {strings} strings of {bytes} bytes (program name, arguments \
         and environment), plus a 4-byte length for each string and {PATHS_ROOM} bytes for \
         the program's paths, need {needed} bytes of vmrun's {ARGS_MAX}-byte argument block"
    )
}

/// The lengths of the argument block's strings, NUL included, as the
/// guest reads them (little-endian u32 each).
pub fn string_lengths(execfn: &[u8], argv: &[OsString], envp: &[OsString]) -> Vec<u8> {
    std::iter::once(execfn.len())
        .chain(argv.iter().chain(envp).map(|s| s.as_bytes().len()))
        .flat_map(|n| (n as u32 + 1).to_le_bytes())
        .collect()
}

/// The vDSO image (built from vmm/vdso/ by the build script).
pub static VDSO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// Everything that goes into guest RAM before the first instruction.
pub struct BootPayload<'a> {
    /// The program file.
    pub program: ProgramSource<'a>,
    /// The argument block from [`args_block`].
    pub args: &'a [u8],
    /// Its strings' lengths from [`string_lengths`].
    pub lens: &'a [u8],
    /// The program's absolute, canonical path.
    pub exe_path: &'a [u8],
    /// The guest path of the initial working directory.
    pub cwd: &'a [u8],
    /// Number of argv strings in the block.
    pub argc: u32,
    /// Number of environment strings in the block.
    pub envc: u32,
    /// [`vmrun_contract::boot_flags`] bits.
    pub flags: u32,
    /// 16 random bytes for AT_RANDOM.
    pub random: [u8; 16],
    /// Seed for `--aslr` (independent of the AT_RANDOM bytes the program
    /// can read).
    pub aslr_seed: u64,
    /// Trace categories to record (0: none).
    pub trace_mask: u32,
    /// Trace ring capacity in records.
    pub trace_records: u64,
    /// Reserve the VMA export area.
    pub vma_export: bool,
    /// Stop every this many faults (with the NOTIFY_FAULTS flag).
    pub notify_fault_every: u32,
}

/// Regions carved from the top of RAM for the host's observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TopRegions {
    trace_phys: u64,
    trace_len: u64,
    vma_export_phys: u64,
    free_end: u64,
}

/// Place the VMA export area and the trace ring at the top of RAM, below
/// the boot page directories of the RAM above 4 GiB.
fn top_regions(ram_size: u64, p: &BootPayload) -> TopRegions {
    let mut top = crate::boot::high_pds_phys(ram_size);
    let mut r = TopRegions::default();
    if p.vma_export {
        top -= page_align(std::mem::size_of::<VmaExport>() as u64);
        r.vma_export_phys = top;
    }
    if p.trace_mask != 0 {
        r.trace_len = page_align(trace::RECORDS_OFFSET + p.trace_records * trace::RECORD_SIZE);
        top -= r.trace_len;
        r.trace_phys = top;
    }
    r.free_end = top;
    r
}

/// Where the sparsely used top of RAM starts: the kernel heap, which the
/// kernel takes at boot as the top fresh 2 MiB frames of `[free_start,
/// free_end)` ([`vmrun_contract::layout::kernel_heap_bytes`]), and the
/// regions above it. A run touches a few of their pages; the heap fills
/// only as the kernel's tables grow.
fn sparse_top(ram_size: u64, free_start: u64, free_end: u64) -> u64 {
    let frames = (free_end / PAGE_SIZE).saturating_sub(page_align(free_start) / PAGE_SIZE);
    let reserved = vmrun_contract::layout::kernel_heap_reserved(frames);
    let heap = vmrun_contract::layout::kernel_heap_bytes(ram_size, reserved);
    (free_end & !(HUGE_PAGE_SIZE - 1)).saturating_sub(heap)
}

fn page_align(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Where the program's bytes come from.
#[derive(Clone, Copy, Debug)]
pub enum ProgramSource<'a> {
    /// Bytes already in vmrun's memory.
    Bytes(&'a [u8]),
    /// An open file, at offset 0, of this length: read straight into guest
    /// memory (one copy, from the host's page cache).
    File(&'a std::fs::File, u64),
}

impl ProgramSource<'_> {
    /// The program's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            ProgramSource::Bytes(b) => b.len() as u64,
            ProgramSource::File(_, len) => *len,
        }
    }

    /// Whether the program is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copy the program and arguments in after the kernel; returns the boot
/// info that describes them, for [`write_boot_info`] (its TSC frequency
/// and clocks not yet filled in).
pub fn write_payload(ram: &GuestRam, kernel: &LoadedKernel, p: &BootPayload) -> Result<BootInfo> {
    let file_phys = page_align(kernel.phys_end);
    let file_len = p.program.len();
    let vdso_phys = page_align(file_phys + file_len);
    let vdso_len = vmrun_contract::vvar::VDSO_PAGES * PAGE_SIZE;
    let free_start = vdso_phys + vdso_len;
    let top = top_regions(ram.size(), p);
    if free_start + (4 << 20) > top.free_end {
        return Err(Error::Config(format!(
            "the program ({file_len} bytes) does not fit in guest memory ({} MiB): raise --mem",
            ram.size() >> 20
        )));
    }
    let sparse = sparse_top(ram.size(), free_start, top.free_end);
    ram.advise_small_pages(sparse, ram.size() - sparse);
    let identity = match p.program {
        ProgramSource::Bytes(b) => {
            ram.write_bytes(file_phys, b)?;
            None
        }
        ProgramSource::File(f, len) => {
            ram.read_file_into(file_phys, f, len)?;
            f.metadata().ok()
        }
    };
    if VDSO.len() as u64 > vdso_len {
        return Err(Error::Config(format!(
            "the vDSO ({} bytes) is larger than {vdso_len}",
            VDSO.len()
        )));
    }
    ram.write_bytes(vdso_phys, VDSO)?;
    // The kernel's pool of random bytes: the first getrandom of every
    // program it runs takes its seed from it, without a hypercall.
    let pool = crate::sys::random_bytes::<{ RANDOM_POOL_BYTES as usize }>();
    ram.write_bytes(RANDOM_POOL_PHYS, &pool)?;
    ram.write_bytes(ARGS_PHYS, p.args)?;
    let exe_path_phys = ARGS_PHYS + p.args.len() as u64;
    let exe_path = &p.exe_path[..p.exe_path.len().min(4096)];
    ram.write_bytes(exe_path_phys, exe_path)?;
    let lens_phys = (exe_path_phys + exe_path.len() as u64).next_multiple_of(8);
    ram.write_bytes(lens_phys, p.lens)?;
    let cwd_phys = lens_phys + p.lens.len() as u64;
    let cwd = &p.cwd[..p.cwd.len().min(4095)];
    ram.write_bytes(cwd_phys, cwd)?;
    let info = BootInfo {
        magic: BOOT_MAGIC,
        version: CONTRACT_VERSION,
        flags: p.flags,
        mem_size: ram.size(),
        kernel_phys_start: KERNEL_PHYS,
        kernel_phys_end: kernel.phys_end,
        file_phys,
        file_len,
        args_phys: ARGS_PHYS,
        args_len: p.args.len() as u64,
        argc: p.argc,
        envc: p.envc,
        args_lens_phys: lens_phys,
        exe_path_phys,
        exe_path_len: exe_path.len() as u64,
        free_phys_start: free_start,
        free_phys_end: top.free_end,
        trace_phys: top.trace_phys,
        trace_len: top.trace_len,
        trace_mask: p.trace_mask,
        notify_fault_every: p.notify_fault_every,
        vma_export_phys: top.vma_export_phys,
        cwd_phys,
        cwd_len: cwd.len() as u64,
        vdso_phys,
        vdso_len,
        tsc_khz: 0,
        realtime_ns: 0,
        monotonic_ns: 0,
        random: p.random,
        aslr_seed: p.aslr_seed,
        stdio_modes: crate::sys::stdio_modes(),
        file_dev: identity.as_ref().map_or(0, |m| m.dev()),
        file_ino: identity.as_ref().map_or(0, |m| m.ino()),
        file_mtime_sec: identity.as_ref().map_or(0, |m| m.mtime()),
        file_mtime_nsec: identity.as_ref().map_or(0, |m| m.mtime_nsec() as u64),
        ignored_signals: 0,
    };
    if top.trace_phys != 0 {
        let capacity = (top.trace_len - trace::RECORDS_OFFSET) / trace::RECORD_SIZE;
        let header = trace::RingHeader {
            capacity,
            ..Default::default()
        };
        ram.write_pod(top.trace_phys, &header)?;
    }
    Ok(info)
}

/// Write the boot info where the guest kernel looks for it, with the
/// host's clocks read now: the kernel takes them as the time of its first
/// instruction, which follows soon after.
pub fn write_boot_info(ram: &GuestRam, info: &mut BootInfo) -> Result<()> {
    info.realtime_ns = crate::sys::clock_ns(libc::CLOCK_REALTIME);
    info.monotonic_ns = crate::sys::clock_ns(libc::CLOCK_MONOTONIC);
    ram.write_pod(vmrun_contract::layout::BOOT_INFO_PHYS, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload of `program` with every option off.
    fn payload(program: &[u8]) -> BootPayload<'_> {
        BootPayload {
            program: ProgramSource::Bytes(program),
            args: b"p\0",
            lens: &[2, 0, 0, 0],
            exe_path: b"/p",
            cwd: b"/",
            argc: 0,
            envc: 0,
            flags: 0,
            random: [0; 16],
            aslr_seed: 0,
            trace_mask: 0,
            trace_records: 0,
            vma_export: false,
            notify_fault_every: 0,
        }
    }

    #[test]
    fn trace_ring_and_vma_export_sit_at_the_top_of_ram() {
        let p = BootPayload {
            trace_mask: 1,
            trace_records: 1000,
            vma_export: true,
            ..payload(b"")
        };
        let r = top_regions(64 << 20, &p);
        let export_pages = page_align(std::mem::size_of::<VmaExport>() as u64);
        assert_eq!(r.vma_export_phys, (64 << 20) - export_pages);
        assert_eq!(r.trace_phys + r.trace_len, r.vma_export_phys);
        assert!(r.trace_len >= 64 + 1000 * 64);
        assert_eq!(r.free_end, r.trace_phys);
    }

    #[test]
    fn the_sparse_top_starts_at_the_kernel_heap_below_the_last_whole_2_mib_frame() {
        const MIB: u64 = 1 << 20;
        // 256 MiB, nothing carved at the top: a 4 MiB heap plus its
        // bitmap and vvar pages takes three 2 MiB frames.
        assert_eq!(sparse_top(256 * MIB, 5 * MIB, 256 * MIB), 250 * MIB);
        // A trace ring below the top: the heap ends at the 2 MiB boundary
        // below it, the sliver above staying sparse too.
        assert_eq!(sparse_top(256 * MIB, 5 * MIB, 255 * MIB), 248 * MIB);
        // The smallest RAM: a 2 MiB heap; the largest: 32 MiB.
        assert_eq!(sparse_top(16 * MIB, 5 * MIB, 16 * MIB), 14 * MIB);
        assert_eq!(
            sparse_top(64 << 30, 5 * MIB, 64 << 30),
            (64 << 30) - 32 * MIB
        );
    }

    #[test]
    fn top_regions_and_free_memory_end_below_the_high_boot_directories() {
        let p = BootPayload {
            trace_mask: 1,
            trace_records: 1000,
            vma_export: true,
            ..payload(b"")
        };
        let size = 6 << 30;
        let r = top_regions(size, &p);
        let export_pages = page_align(std::mem::size_of::<VmaExport>() as u64);
        assert_eq!(r.vma_export_phys, size - 2 * PAGE_SIZE - export_pages);
        assert_eq!(
            top_regions(size, &payload(b"")).free_end,
            size - 2 * PAGE_SIZE
        );
    }

    #[test]
    fn args_block_is_execfn_then_argv_then_envp() {
        let argv = vec![OsString::from("prog"), OsString::from("a b")];
        let envp = vec![OsString::from("X=1")];
        let b = args_block(b"/bin/prog", &argv, &envp).unwrap();
        assert_eq!(b, b"/bin/prog\0prog\0a b\0X=1\0");
    }

    #[test]
    fn string_lengths_count_each_nul() {
        let argv = vec![OsString::from("prog"), OsString::from("")];
        let lens = string_lengths(b"/bin/prog", &argv, &[OsString::from("X=1")]);
        assert_eq!(lens, [10, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0]);
    }

    #[test]
    fn args_block_rejects_oversized_lists() {
        let big = vec![OsString::from("x".repeat(ARGS_MAX as usize))];
        let err = args_block(b"p", &big, &[]).unwrap_err();
        assert!(err.to_string().contains("argument list too long"));
    }

    #[test]
    fn args_block_refusal_names_the_length_table_that_pushes_it_over() {
        // 120000 empty arguments: 120 KB of strings, but 480 KB of lengths.
        let argv = vec![OsString::new(); 120_000];
        let msg = args_block(b"p", &argv, &[]).unwrap_err().to_string();
        assert!(msg.contains("120001 strings of 120002 bytes"), "{msg}");
        assert!(msg.contains("4-byte length for each string"), "{msg}");
        let needed = 120_002 + PATHS_ROOM + 4 * 120_001;
        assert!(msg.contains(&format!("need {needed} bytes")), "{msg}");
        assert!(needed > ARGS_MAX);
    }

    #[test]
    fn embedded_kernel_loads_at_one_mib_and_enters_its_text_high() {
        use vmrun_contract::layout::{KERNEL_TEXT_PHYS, KERNEL_VIRT_BASE};
        let ram = GuestRam::new(32 << 20).unwrap();
        let k = load_kernel(ram.mem(), GUEST_KERNEL).unwrap();
        assert_eq!(k.entry, KERNEL_VIRT_BASE + KERNEL_TEXT_PHYS);
        assert!(k.phys_end > KERNEL_PHYS);
    }

    /// Which files back guest RAM's host range `[start, end)`, as
    /// /proc/self/maps says (an empty name for anonymous memory).
    fn backing(ram: &GuestRam, gpa: u64, len: u64) -> Vec<String> {
        let base = ram.slice(0, 1).unwrap().as_ptr() as u64;
        let (start, end) = (base + gpa, base + gpa + len);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (lo, hi) = f.next()?.split_once('-')?;
                let (lo, hi) = (
                    u64::from_str_radix(lo, 16).ok()?,
                    u64::from_str_radix(hi, 16).ok()?,
                );
                (lo < end && hi > start).then(|| f.nth(4).unwrap_or("").to_string())
            })
            .collect()
    }

    #[test]
    fn the_kernels_read_only_segments_are_mapped_from_vmruns_file_and_the_data_copied() {
        let ram = GuestRam::new(32 << 20).unwrap();
        let k = load_embedded_kernel(&ram).unwrap();
        let copied = load_kernel(GuestRam::new(32 << 20).unwrap().mem(), GUEST_KERNEL).unwrap();
        assert_eq!((k.entry, k.phys_end), (copied.entry, copied.phys_end));
        assert_eq!(k.segments, copied.segments);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let headers = program_headers(GUEST_KERNEL).unwrap().1;
        for (seg, plan) in k.segments.iter().zip(file_segments(GUEST_KERNEL, &headers)) {
            // The same bytes as a copy, up to the last page's end.
            let len = plan.mem_len.next_multiple_of(PAGE);
            let mut want = vec![0u8; len as usize];
            want[..plan.file_len as usize].copy_from_slice(
                &GUEST_KERNEL[plan.offset as usize..(plan.offset + plan.file_len) as usize],
            );
            assert_eq!(ram.slice(seg.phys, len).unwrap(), &want[..], "{seg:?}");
            let files = backing(&ram, seg.phys, len);
            match seg.writable {
                true => assert!(files.iter().all(|f| f.is_empty()), "{seg:?}: {files:?}"),
                false => assert!(files.iter().all(|f| *f == exe), "{seg:?}: {files:?}"),
            }
        }
        // Around them, anonymous RAM as before.
        assert_eq!(backing(&ram, 0, KERNEL_PHYS), [""]);
    }

    #[test]
    fn a_segment_is_mapped_only_if_read_only_aligned_without_bss_and_zero_to_its_pages_end() {
        let headers = program_headers(GUEST_KERNEL).unwrap().1;
        let plan = file_segments(GUEST_KERNEL, &headers);
        let mappable: Vec<bool> = plan.iter().map(|s| s.mappable).collect();
        assert_eq!(mappable, [true, true, false]);
        // The same image with a byte after the text's end: copied.
        let mut image = GUEST_KERNEL.to_vec();
        image[(plan[1].offset + plan[1].file_len) as usize] = 1;
        let changed = file_segments(&image, &headers);
        assert_eq!((changed[0].mappable, changed[1].mappable), (true, false));
    }

    #[test]
    fn embedded_kernel_segments_are_rodata_text_and_data_the_text_and_data_on_2m_boundaries() {
        use vmrun_contract::layout::{KERNEL_DATA_PHYS, KERNEL_TEXT_PHYS};
        let ram = GuestRam::new(32 << 20).unwrap();
        let k = load_kernel(ram.mem(), GUEST_KERNEL).unwrap();
        let rights: Vec<(bool, bool)> = k
            .segments
            .iter()
            .map(|s| (s.writable, s.executable))
            .collect();
        assert_eq!(rights, [(false, false), (false, true), (true, false)]);
        let starts: Vec<u64> = k.segments.iter().map(|s| s.phys).collect();
        assert_eq!(starts, [KERNEL_PHYS, KERNEL_TEXT_PHYS, KERNEL_DATA_PHYS]);
        let text = k.segments[1].phys..k.segments[1].phys + k.segments[1].len;
        assert!(text.contains(&vmrun_contract::layout::SYSCALL_TRAMPOLINE_PHYS));
        assert!(text.end <= KERNEL_DATA_PHYS);
        assert!(k.phys_end <= KERNEL_DATA_PHYS + vmrun_contract::layout::HUGE_PAGE_SIZE);
    }

    #[test]
    fn working_directory_is_written_after_the_length_table() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let k = LoadedKernel {
            entry: 0,
            phys_end: 2 << 20,
            segments: Vec::new(),
        };
        let p = BootPayload {
            cwd: b"/home/u/src",
            ..payload(b"\x7fELF")
        };
        let info = write_payload(&ram, &k, &p).unwrap();
        assert_eq!(info.cwd_phys, info.args_lens_phys + 4);
        let mut cwd = vec![0u8; info.cwd_len as usize];
        ram.read_bytes(info.cwd_phys, &mut cwd).unwrap();
        assert_eq!(cwd, b"/home/u/src");
    }

    #[test]
    fn payload_that_does_not_fit_is_refused() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let k = LoadedKernel {
            entry: 0,
            phys_end: 2 << 20,
            segments: Vec::new(),
        };
        let big = vec![0u8; 13 << 20];
        let err = write_payload(&ram, &k, &payload(&big)).unwrap_err();
        assert!(err.to_string().contains("--mem"));
    }
}
