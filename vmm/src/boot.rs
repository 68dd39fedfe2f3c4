//! The x86-64 state the guest kernel starts in: a boot GDT, boot page
//! tables and the registers for entering its ELF entry point in 64-bit mode
//! (as Firecracker enters a vmlinux), with the boot-info address in RDI.
//!
//! The boot page tables map, all with 2 MiB pages and supervisor-only:
//! the first GiB identically, the first GiB again at the kernel's link base
//! (0xffffffff80000000), both through one executable page directory
//! ([`BOOT_PD_IMAGE_PHYS`]), and all of RAM at the direct-map base, with
//! no-execute global leaves ([`DIRECT_MAP_LEAF_FLAGS`]). The direct map's
//! page directories for the first 4 GiB are in low memory; those of the RAM
//! above sit in the top pages of RAM ([`high_pds_phys`]), outside the range
//! the guest allocates from. The kernel switches to a PML4 of its own at
//! once, which maps its image with its own tables and links this direct
//! map (its PDPT and directories) as it is: the one part of the kernel
//! half the VMM writes, so that the guest's boot costs the same at every
//! RAM size (docs/architecture.md).

use crate::error::Result;
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
const PTE_PS: u64 = 1 << 7;

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

/// Write the boot GDT and page tables for all of RAM.
pub fn write_boot_tables(ram: &GuestRam) -> Result<()> {
    for (i, d) in BOOT_GDT.iter().enumerate() {
        ram.write_pod(BOOT_GDT_PHYS + 8 * i as u64, d)?;
    }
    // The direct map: a leaf for every 2 MiB of RAM (rounded up), each
    // directory written in one piece.
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
        ram.write_pod(BOOT_PDPT_DIRECT_PHYS + g * 8, &(at | PTE_P | PTE_RW))?;
    }
    let table = |phys: u64| phys | PTE_P | PTE_RW;
    // The first GiB, executable, identically and at the link base.
    for (i, entry) in pd.chunks_exact_mut(8).enumerate() {
        let e = (i as u64 * HUGE_PAGE_SIZE) | PTE_P | PTE_RW | PTE_PS;
        entry.copy_from_slice(&e.to_le_bytes());
    }
    ram.write_bytes(BOOT_PD_IMAGE_PHYS, &pd)?;
    ram.write_pod(BOOT_PDPT_LOW_PHYS, &table(BOOT_PD_IMAGE_PHYS))?;
    let high = BOOT_PDPT_HIGH_PHYS + pdpt_index(KERNEL_VIRT_BASE) * 8;
    ram.write_pod(high, &table(BOOT_PD_IMAGE_PHYS))?;
    ram.write_pod(BOOT_PML4_PHYS, &table(BOOT_PDPT_LOW_PHYS))?;
    let hi = BOOT_PML4_PHYS + pml4_index(KERNEL_VIRT_BASE) * 8;
    ram.write_pod(hi, &table(BOOT_PDPT_HIGH_PHYS))?;
    let dm = BOOT_PML4_PHYS + pml4_index(DIRECT_MAP_BASE) * 8;
    ram.write_pod(dm, &table(BOOT_PDPT_DIRECT_PHYS))
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
    sregs.gdt.base = BOOT_GDT_PHYS;
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

    /// Walk the boot tables as the CPU does for a 2 MiB mapping.
    fn walk(ram: &GuestRam, va: u64) -> Option<u64> {
        let pml4e = read(ram, BOOT_PML4_PHYS + pml4_index(va) * 8);
        if pml4e & PTE_P == 0 {
            return None;
        }
        let pdpte = read(ram, (pml4e & !0xfff) + pdpt_index(va) * 8);
        if pdpte & PTE_P == 0 {
            return None;
        }
        let pde = read(ram, (pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8);
        let frame = pde & 0x000f_ffff_ffe0_0000;
        (pde & PTE_P != 0 && pde & PTE_PS != 0).then(|| frame + (va & 0x1f_ffff))
    }

    #[test]
    fn boot_tables_map_kernel_identity_and_direct_map() {
        let ram = GuestRam::new(64 << 20).unwrap();
        write_boot_tables(&ram).unwrap();
        assert_eq!(walk(&ram, 0x10_0000), Some(0x10_0000));
        assert_eq!(walk(&ram, KERNEL_VIRT_BASE + 0x10_1234), Some(0x10_1234));
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + 0x3f_0008), Some(0x3f_0008));
        assert_eq!(walk(&ram, 0x7fff_0000_0000), None);
    }

    #[test]
    fn the_direct_map_is_no_execute_and_the_image_mapping_executable() {
        let ram = GuestRam::new(64 << 20).unwrap();
        write_boot_tables(&ram).unwrap();
        let pd_entry = |pdpt: u64, va: u64| {
            let pdpte = read(&ram, pdpt + pdpt_index(va) * 8);
            read(&ram, (pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8)
        };
        let dm = pd_entry(BOOT_PDPT_DIRECT_PHYS, DIRECT_MAP_BASE + (4 << 20));
        assert_eq!(dm, (4 << 20) | DIRECT_MAP_LEAF_FLAGS);
        let image = pd_entry(BOOT_PDPT_HIGH_PHYS, KERNEL_VIRT_BASE + (1 << 20));
        assert_eq!(image & (1 << 63), 0, "the kernel's first code must run");
        // Only RAM is direct-mapped: 64 MiB is 32 leaves.
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + (64 << 20)), None);
    }

    #[test]
    fn boot_direct_map_covers_every_gib_of_a_three_gib_ram() {
        let ram = GuestRam::new(3 << 30).unwrap();
        write_boot_tables(&ram).unwrap();
        assert_eq!(
            walk(&ram, DIRECT_MAP_BASE + (2 << 30) + 5),
            Some((2 << 30) + 5)
        );
        assert_eq!(walk(&ram, DIRECT_MAP_BASE + (3 << 30)), None);
    }

    #[test]
    fn boot_direct_map_covers_ram_above_four_gib_from_directories_at_the_top() {
        let size = (6 << 30) + (512 << 20);
        let ram = GuestRam::new(size).unwrap();
        write_boot_tables(&ram).unwrap();
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
