//! The x86-64 state the guest kernel starts in: a boot GDT, the kernel's
//! page tables and the registers for entering its ELF entry point in
//! 64-bit mode (as Firecracker enters a vmlinux), with the boot-info
//! address in RDI.
//!
//! The page tables, all supervisor-only but for the trampoline, are the
//! kernel's own for the whole run (it adopts them as they are,
//! docs/architecture.md): the kernel image at its link base with the
//! rights of its ELF segments ([`ImageSegment`]: text read+execute, rodata
//! read-only, data and bss read+write, both no-execute, all global), the
//! text and the data each by one 2 MiB leaf, the rodata in 4 KiB pages;
//! the syscall trampoline page, the text's second
//! ([`SYSCALL_TRAMPOLINE_PHYS`]), user read+execute at
//! [`SYSCALL_TRAMPOLINE_VIRT`]; and all of RAM at the direct-map base in
//! 2 MiB no-execute global leaves ([`DIRECT_MAP_LEAF_FLAGS`]). The direct
//! map's page directories for the first 4 GiB are in low memory; those of
//! the RAM above sit in the top pages of RAM ([`high_pds_phys`]), outside
//! the range the guest allocates from. Nothing maps low memory
//! identically: the boot GDT is reached through the direct map.

use crate::error::{Error, Result};
use crate::memory::GuestRam;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vmrun_contract::layout::*;

/// Boot GDT selector of the 64-bit kernel code segment.
pub const BOOT_CS: u16 = 0x10;
/// Boot GDT selector of the kernel data segment.
pub const BOOT_DS: u16 = 0x18;

/// The boot GDT: null, unused, 64-bit code (0x10), data (0x18).
pub const BOOT_GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_G: u64 = 1 << 8;
const PTE_NX: u64 = 1 << 63;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

fn pml4_index(va: u64) -> u64 {
    (va >> 39) & 0x1ff
}

fn pdpt_index(va: u64) -> u64 {
    (va >> 30) & 0x1ff
}

fn pd_index(va: u64) -> u64 {
    (va >> 21) & 0x1ff
}

fn pt_index(va: u64) -> u64 {
    (va >> 12) & 0x1ff
}

/// One loadable segment of the kernel image (an ELF `PT_LOAD`): its
/// physical pages and the rights its 4 KiB leaves get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSegment {
    /// First physical byte (page aligned).
    pub phys: u64,
    /// Bytes in memory (bss included).
    pub len: u64,
    /// `PF_W`: writable.
    pub writable: bool,
    /// `PF_X`: executable.
    pub executable: bool,
}

impl ImageSegment {
    /// The leaf flags of its pages: present, accessed, global; dirty and
    /// writable or no-execute as its rights say.
    fn leaf_flags(&self) -> u64 {
        let mut flags = PTE_P | PTE_A | PTE_G;
        if self.writable {
            flags |= PTE_RW | PTE_D;
        }
        if !self.executable {
            flags |= PTE_NX;
        }
        flags
    }
}

/// Boot page directories for the RAM above the first [`BOOT_PD_COUNT`]
/// GiB (one per GiB, 60 at most).
fn high_pd_count(ram_size: u64) -> u64 {
    ram_size.div_ceil(1 << 30).saturating_sub(BOOT_PD_COUNT)
}

/// Where the page directories for the RAM above 4 GiB start: the top pages
/// of RAM (`ram_size` itself when there are none). The guest's free range
/// ends at or below this address.
pub fn high_pds_phys(ram_size: u64) -> u64 {
    (ram_size & !(PAGE_SIZE - 1)) - high_pd_count(ram_size) * PAGE_SIZE
}

/// The boot page directory of GiB `g` of RAM.
fn boot_pd(ram_size: u64, g: u64) -> u64 {
    match g.checked_sub(BOOT_PD_COUNT) {
        None => BOOT_PD_PHYS + g * PAGE_SIZE,
        Some(high) => high_pds_phys(ram_size) + high * PAGE_SIZE,
    }
}

/// Write the boot GDT and the kernel's page tables: the image's
/// `segments`, the trampoline, with `stdin_ring` the stdin ring's pages
/// below it, and the direct map of all of RAM.
pub fn write_boot_tables(
    ram: &GuestRam,
    segments: &[ImageSegment],
    stdin_ring: bool,
) -> Result<()> {
    for (i, d) in BOOT_GDT.iter().enumerate() {
        ram.write_pod(BOOT_GDT_PHYS + 8 * i as u64, d)?;
    }
    write_direct_map(ram)?;
    write_image_tables(ram, segments)?;
    let holds_trampoline =
        |s: &&ImageSegment| (s.phys..s.phys + s.len).contains(&SYSCALL_TRAMPOLINE_PHYS);
    if !segments
        .iter()
        .find(holds_trampoline)
        .is_some_and(|s| s.executable && !s.writable)
    {
        return Err(Error::KernelLoad(format!(
            "the syscall trampoline's page {SYSCALL_TRAMPOLINE_PHYS:#x} is not in a read+execute segment"
        )));
    }
    let table = |phys: u64| phys | PTE_P | PTE_RW | PTE_A;
    let user_table = |phys: u64| table(phys) | PTE_US;
    let tramp = SYSCALL_TRAMPOLINE_VIRT;
    let leaf = SYSCALL_TRAMPOLINE_PHYS | PTE_P | PTE_US | PTE_A;
    ram.write_pod(BOOT_PT_TRAMPOLINE_PHYS + pt_index(tramp) * 8, &leaf)?;
    if stdin_ring {
        // The header and the bytes: user-writable, no-execute.
        for i in 0..vmrun_contract::stdin_ring::PAGES {
            let va = STDIN_RING_HEADER_VIRT + i * PAGE_SIZE;
            let leaf = (STDIN_RING_HEADER_PHYS + i * PAGE_SIZE)
                | PTE_P
                | PTE_RW
                | PTE_US
                | PTE_A
                | PTE_D
                | PTE_NX;
            ram.write_pod(BOOT_PT_TRAMPOLINE_PHYS + pt_index(va) * 8, &leaf)?;
        }
    }
    let pd = BOOT_PD_TRAMPOLINE_PHYS + pd_index(tramp) * 8;
    ram.write_pod(pd, &user_table(BOOT_PT_TRAMPOLINE_PHYS))?;
    let high = BOOT_PDPT_HIGH_PHYS + pdpt_index(tramp) * 8;
    ram.write_pod(high, &user_table(BOOT_PD_TRAMPOLINE_PHYS))?;
    let image = BOOT_PDPT_HIGH_PHYS + pdpt_index(KERNEL_VIRT_BASE) * 8;
    ram.write_pod(image, &table(BOOT_PD_IMAGE_PHYS))?;
    // One PML4 entry covers the image and the trampoline: the user bit on
    // it opens only the path to the trampoline, whose leaf alone has it.
    let hi = BOOT_PML4_PHYS + pml4_index(KERNEL_VIRT_BASE) * 8;
    ram.write_pod(hi, &user_table(BOOT_PDPT_HIGH_PHYS))?;
    let dm = BOOT_PML4_PHYS + pml4_index(DIRECT_MAP_BASE) * 8;
    ram.write_pod(dm, &table(BOOT_PDPT_DIRECT_PHYS))
}

/// The direct map: a leaf for every 2 MiB of RAM (rounded up), each
/// directory written in one piece.
fn write_direct_map(ram: &GuestRam) -> Result<()> {
    let leaves = ram.size().div_ceil(HUGE_PAGE_SIZE);
    let gibs = leaves.div_ceil(512).max(1);
    let mut pd = [0u8; PAGE_SIZE as usize];
    for g in 0..gibs {
        for (i, entry) in pd.chunks_exact_mut(8).enumerate() {
            let n = g * 512 + i as u64;
            let e = if n < leaves {
                (n * HUGE_PAGE_SIZE) | DIRECT_MAP_LEAF_FLAGS
            } else {
                0
            };
            entry.copy_from_slice(&e.to_le_bytes());
        }
        let at = boot_pd(ram.size(), g);
        ram.write_bytes(at, &pd)?;
        ram.write_pod(
            BOOT_PDPT_DIRECT_PHYS + g * 8,
            &(at | PTE_P | PTE_RW | PTE_A),
        )?;
    }
    Ok(())
}

/// The kernel image's leaves, segment by segment, and the image
/// directory's entries: a 2 MiB leaf for each 2 MiB region that a segment
/// starts and has to itself ([`huge_leaf`]), elsewhere 4 KiB leaves in the
/// image page tables.
fn write_image_tables(ram: &GuestRam, segments: &[ImageSegment]) -> Result<()> {
    let limit = BOOT_PT_IMAGE_COUNT * HUGE_PAGE_SIZE;
    let mut pts = [[0u64; 512]; BOOT_PT_IMAGE_COUNT as usize];
    let mut huge = [0u64; BOOT_PT_IMAGE_COUNT as usize];
    for seg in segments {
        let end = seg.phys.checked_add(seg.len).filter(|&e| e <= limit);
        let Some(end) = end.filter(|_| seg.phys % PAGE_SIZE == 0) else {
            return Err(Error::KernelLoad(format!(
                "segment at {:#x} ({:#x} bytes) is not page aligned or ends above {limit:#x}",
                seg.phys, seg.len
            )));
        };
        for pa in (seg.phys..end).step_by(PAGE_SIZE as usize) {
            let region = (pa / HUGE_PAGE_SIZE) as usize;
            let slot = &mut pts[region][pt_index(pa) as usize];
            if *slot != 0 {
                return Err(Error::KernelLoad(format!(
                    "segments share the page at {pa:#x}"
                )));
            }
            *slot = pa | seg.leaf_flags();
        }
        if let Some(leaf) = huge_leaf(seg, segments) {
            huge[(seg.phys / HUGE_PAGE_SIZE) as usize] = leaf;
        }
    }
    for (i, pt) in pts.iter().enumerate() {
        let va = KERNEL_VIRT_BASE + i as u64 * HUGE_PAGE_SIZE;
        let entry = if huge[i] != 0 {
            huge[i]
        } else if pt.iter().any(|&e| e != 0) {
            let at = BOOT_PT_IMAGE_PHYS + i as u64 * PAGE_SIZE;
            let bytes: Vec<u8> = pt.iter().flat_map(|e| e.to_le_bytes()).collect();
            ram.write_bytes(at, &bytes)?;
            at | PTE_P | PTE_RW | PTE_A
        } else {
            continue;
        };
        ram.write_pod(BOOT_PD_IMAGE_PHYS + pd_index(va) * 8, &entry)?;
    }
    Ok(())
}

/// The 2 MiB leaf that maps the 2 MiB region `seg` starts, if it starts
/// one (on its boundary) and no other segment reaches into it. The leaf also maps the region's bytes past the segment's
/// end with its rights; an executable segment gets one only if those
/// bytes are the image's own (a later segment starts at or past the
/// region's end), which the guest never hands out as frames: no page of
/// program data is ever executable through the image. Past the data and
/// bss, the last segment, lie the program file and free RAM: mapped
/// read+write and no-execute there, as the direct map maps all of RAM.
fn huge_leaf(seg: &ImageSegment, segments: &[ImageSegment]) -> Option<u64> {
    let region = seg.phys;
    let region_end = region + HUGE_PAGE_SIZE;
    let alone = segments
        .iter()
        .filter(|s| *s != seg)
        .all(|s| s.phys + s.len <= region || s.phys >= region_end);
    let tail_is_image = segments.iter().any(|s| s.phys >= region_end);
    (region.is_multiple_of(HUGE_PAGE_SIZE) && alone && (!seg.executable || tail_is_image))
        .then(|| region | seg.leaf_flags() | PTE_PS)
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Put `sregs` into 64-bit mode on the boot GDT and page tables.
pub fn setup_sregs(sregs: &mut kvm_sregs) {
    let code = segment(BOOT_CS, true);
    let data = segment(BOOT_DS, false);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = DIRECT_MAP_BASE + BOOT_GDT_PHYS;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = BOOT_PML4_PHYS;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
}

/// General registers for entering the kernel at `entry`.
pub fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: BOOT_INFO_PHYS,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ram: &GuestRam, pa: u64) -> u64 {
        ram.read_pod::<u64>(pa).unwrap()
    }

    /// A kernel image as the linker script lays it out: rodata, text (the
    /// trampoline first) at 2 MiB, data and bss at 4 MiB.
    const IMAGE: [ImageSegment; 3] = [
        ImageSegment {
            phys: KERNEL_PHYS,
            len: 0x7300,
            writable: false,
            executable: false,
        },
        ImageSegment {
            phys: KERNEL_TEXT_PHYS,
            len: 0x5a000,
            writable: false,
            executable: true,
        },
        ImageSegment {
            phys: KERNEL_DATA_PHYS,
            len: 0x19ad0,
            writable: true,
            executable: false,
        },
    ];

    fn tables(size: u64) -> GuestRam {
        let ram = GuestRam::new(size).unwrap();
        write_boot_tables(&ram, &IMAGE, false).unwrap();
        ram
    }

    /// Walk the tables as the CPU does: the leaf entry mapping `va`.
    fn leaf(ram: &GuestRam, va: u64) -> Option<u64> {
        let mut table = BOOT_PML4_PHYS;
        for level in [4u32, 3, 2, 1] {
            let e = read(ram, table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8);
            if e & PTE_P == 0 {
                return None;
            }
            if level == 1 || e & PTE_PS != 0 {
                return Some(e);
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        None
    }

    /// The physical address `va` maps to.
    fn walk(ram: &GuestRam, va: u64) -> Option<u64> {
        let e = leaf(ram, va)?;
        let size = if e & PTE_PS != 0 {
            HUGE_PAGE_SIZE
        } else {
            PAGE_SIZE
        };
        Some((e & 0x000f_ffff_ffff_f000 & !(size - 1)) + (va & (size - 1)))
    }

    #[test]
    fn tables_map_the_image_and_the_direct_map_and_nothing_low() {
        let ram = tables(64 << 20);
        assert_eq!(walk(&ram, KERNEL_VIRT_BASE + 0x10_1234), Some(0x10_1234));
        assert_eq!(walk(&ram, KERNEL_VIRT_BASE + 0x20_1234), Some(0x20_1234));
        assert_eq!(walk(&ram, KERNEL_VIRT_BASE + 0x41_1234), Some(0x41_1234));
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + 0x3f_0008), Some(0x3f_0008));
        assert_eq!(walk(&ram, 0x10_0000), None);
        assert_eq!(
            walk(&ram, KERNEL_VIRT_BASE),
            None,
            "only the image is mapped"
        );
        assert_eq!(
            walk(&ram, KERNEL_VIRT_BASE + 0x10_8000),
            None,
            "past the rodata"
        );
        assert_eq!(
            walk(&ram, KERNEL_VIRT_BASE + 0x60_0000),
            None,
            "past the data's 2 MiB"
        );
        assert_eq!(walk(&ram, 0x7fff_0000_0000), None);
    }

    #[test]
    fn image_leaves_have_the_rights_of_their_segments() {
        let ram = tables(64 << 20);
        let at = |pa: u64| leaf(&ram, KERNEL_VIRT_BASE + pa).unwrap();
        let rights = |e: u64| (e & PTE_RW != 0, e & PTE_NX == 0, e & PTE_US != 0);
        assert_eq!(rights(at(0x20_5000)), (false, true, false), "text");
        assert_eq!(rights(at(0x10_5000)), (false, false, false), "rodata");
        assert_eq!(rights(at(0x41_b000)), (true, false, false), "bss");
        assert_ne!(at(0x20_5000) & PTE_G, 0);
    }

    #[test]
    fn the_text_and_the_data_are_2m_leaves_and_the_rodata_4k_pages() {
        let ram = tables(64 << 20);
        let at = |pa: u64| leaf(&ram, KERNEL_VIRT_BASE + pa).unwrap();
        assert_eq!(at(0x20_5000) & PTE_PS, PTE_PS, "text");
        assert_eq!(at(0x41_b000) & PTE_PS, PTE_PS, "data and bss");
        assert_eq!(at(0x10_5000) & PTE_PS, 0, "rodata");
        assert_eq!(at(0x3f_f000) & 0x000f_ffff_ffff_f000, 0x20_0000);
    }

    #[test]
    fn a_segment_sharing_its_2m_region_or_text_ending_the_image_gets_4k_pages() {
        let ram = GuestRam::new(64 << 20).unwrap();
        let mut shared = IMAGE;
        // The data right after the text, in the text's 2 MiB region: the
        // text's page tail would be data, executable.
        shared[2].phys = KERNEL_TEXT_PHYS + 0x5a000;
        write_boot_tables(&ram, &shared, false).unwrap();
        let e = leaf(&ram, KERNEL_VIRT_BASE + KERNEL_TEXT_PHYS).unwrap();
        assert_eq!(e & PTE_PS, 0);
        let data = leaf(&ram, KERNEL_VIRT_BASE + KERNEL_TEXT_PHYS + 0x5a000).unwrap();
        assert_eq!(data & (PTE_PS | PTE_RW | PTE_NX), PTE_RW | PTE_NX);
        // An image whose text is its last segment: the region's tail is
        // not the image's.
        let ram = GuestRam::new(64 << 20).unwrap();
        write_boot_tables(&ram, &IMAGE[..2], false).unwrap();
        let e = leaf(&ram, KERNEL_VIRT_BASE + KERNEL_TEXT_PHYS).unwrap();
        assert_eq!(e & PTE_PS, 0);
        assert_eq!(
            leaf(&ram, KERNEL_VIRT_BASE + KERNEL_TEXT_PHYS + 0x5a000),
            None
        );
    }

    #[test]
    fn the_trampoline_is_the_one_user_page_and_maps_the_contracts_frame() {
        let ram = tables(64 << 20);
        let e = leaf(&ram, SYSCALL_TRAMPOLINE_VIRT).unwrap();
        assert_eq!(e & 0x000f_ffff_ffff_f000, SYSCALL_TRAMPOLINE_PHYS);
        assert_eq!(e & (PTE_US | PTE_RW | PTE_NX), PTE_US);
    }

    #[test]
    fn an_image_without_the_trampoline_segment_or_with_shared_pages_is_refused() {
        let ram = GuestRam::new(64 << 20).unwrap();
        assert!(write_boot_tables(&ram, &[IMAGE[0], IMAGE[2]], false).is_err());
        let mut overlapping = IMAGE;
        overlapping[0].len = KERNEL_TEXT_PHYS + PAGE_SIZE - KERNEL_PHYS;
        assert!(write_boot_tables(&ram, &overlapping, false).is_err());
        let mut huge = IMAGE;
        huge[2].len = BOOT_PT_IMAGE_COUNT * HUGE_PAGE_SIZE;
        assert!(write_boot_tables(&ram, &huge, false).is_err());
    }

    #[test]
    fn the_direct_map_is_no_execute() {
        let ram = tables(64 << 20);
        let dm = leaf(&ram, DIRECT_MAP_BASE + (4 << 20)).unwrap();
        assert_eq!(dm, (4 << 20) | DIRECT_MAP_LEAF_FLAGS);
        // Only RAM is direct-mapped: 64 MiB is 32 leaves.
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + (64 << 20)), None);
    }

    #[test]
    fn boot_direct_map_covers_every_gib_of_a_three_gib_ram() {
        let ram = tables(3 << 30);
        assert_eq!(
            walk(&ram, DIRECT_MAP_BASE + (2 << 30) + 5),
            Some((2 << 30) + 5)
        );
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + (3 << 30)), None);
    }

    #[test]
    fn boot_direct_map_covers_ram_above_four_gib_from_directories_at_the_top() {
        let size = (6 << 30) + (512 << 20);
        let ram = tables(size);
        assert_eq!(high_pds_phys(size), size - 3 * PAGE_SIZE);
        for pa in [(4 << 30) + 8, (5 << 30) + 0x20_0010, size - 8] {
            assert_eq!(walk(&ram, DIRECT_MAP_BASE + pa), Some(pa), "{pa:#x}");
        }
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + (7 << 30)), None);
    }

    #[test]
    fn no_high_directories_up_to_four_gib() {
        assert_eq!(high_pds_phys(4 << 30), 4 << 30);
        assert_eq!(high_pds_phys(256 << 20), 256 << 20);
        assert_eq!(high_pds_phys(MAX_MEM), MAX_MEM - 60 * PAGE_SIZE);
    }

    #[test]
    fn sregs_enter_long_mode_with_paging() {
        let mut s = kvm_sregs::default();
        setup_sregs(&mut s);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_ne!(s.cr0 & CR0_PG, 0);
        assert_eq!(s.cs.l, 1);
        assert_eq!(s.cr3, BOOT_PML4_PHYS);
    }
}
