//! Exporting an address space's VMAs to the host (the layout of
//! `contract::VmaExport`), so that the host can print /proc/PID/maps and
//! check the page tables against the areas.

use super::phys::PhysMem;
use super::space::Mm;
use super::vma::{Backing, Prot, VmFlags, Vma};
use crate::fs::cache::PageCache;
use vmrun_contract::{vma_flags, MAX_EXPORTED_FILES, MAX_EXPORTED_VMAS};

/// Offset of `VmaExport::vmas` (count, then 12 mm fields).
const VMAS_OFFSET: u64 = 8 + 12 * 8;
/// Size of one `VmaRecord`.
const RECORD: u64 = 40;
/// Size of one `FileRecord`.
const FILE_RECORD: u64 = 256;

/// The contract's flag bits for `v`.
pub fn flags_of(v: &Vma) -> u64 {
    let mut f = 0;
    for (p, bit) in [
        (Prot::READ, vma_flags::READ),
        (Prot::WRITE, vma_flags::WRITE),
        (Prot::EXEC, vma_flags::EXEC),
    ] {
        if v.prot.contains(p) {
            f |= bit;
        }
    }
    if v.flags.contains(VmFlags::SHARED) {
        f |= vma_flags::SHARED;
    }
    if v.flags.contains(VmFlags::GROWSDOWN) {
        f |= vma_flags::GROWSDOWN;
    }
    if matches!(v.backing, Backing::File { .. }) {
        f |= vma_flags::FILE;
    }
    f
}

/// The file index and offset of `v` (0, 0 for anonymous memory).
pub fn file_of(v: &Vma) -> (u64, u64) {
    match v.backing {
        Backing::File { file, offset, .. } => (u64::from(file), offset),
        Backing::Anon => (0, 0),
    }
}

/// Write the files the areas map (their identity and path, from the page
/// cache) after the page-cache bitmap fields.
pub fn export_files<M: PhysMem>(mm: &Mm, cache: &PageCache, mem: &mut M, pa: u64) {
    let count_at = pa + VMAS_OFFSET + RECORD * MAX_EXPORTED_VMAS as u64 + 24;
    let mut ids: alloc::vec::Vec<u16> = mm
        .vmas
        .iter()
        .filter_map(|v| match v.backing {
            Backing::File { file, .. } => Some(file),
            Backing::Anon => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(MAX_EXPORTED_FILES);
    mem.write_u64(count_at, ids.len() as u64);
    for (i, id) in ids.iter().enumerate() {
        let at = count_at + 8 + FILE_RECORD * i as u64;
        let Some(ino) = cache.get(*id) else { continue };
        let path = &ino.path[..ino.path.len().min(224)];
        let (dev, inode) = if ino.special {
            (0, 0)
        } else {
            (ino.key.dev, ino.key.ino)
        };
        for (k, w) in [u64::from(*id), dev, inode, path.len() as u64]
            .iter()
            .enumerate()
        {
            mem.write_u64(at + 8 * k as u64, *w);
        }
        mem.write_bytes(at + 32, path);
    }
}

/// Write `mm`'s areas and layout fields at physical `pa`, and where the
/// page-cache bitmap (`cache_bits`: bitmap, first frame, frames) is.
pub fn export_vmas<M: PhysMem>(mm: &Mm, mem: &mut M, pa: u64, cache_bits: [u64; 3]) {
    let bits_at = pa + VMAS_OFFSET + RECORD * MAX_EXPORTED_VMAS as u64;
    for (k, w) in cache_bits.iter().enumerate() {
        mem.write_u64(bits_at + 8 * k as u64, *w);
    }
    let n = mm.vmas.len().min(MAX_EXPORTED_VMAS);
    mem.write_u64(pa, n as u64);
    let fields = [
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        mm.mmap_base,
    ];
    for (i, f) in fields.iter().enumerate() {
        mem.write_u64(pa + 8 + 8 * i as u64, *f);
    }
    for (i, v) in mm.vmas.iter().take(n).enumerate() {
        let at = pa + VMAS_OFFSET + RECORD * i as u64;
        let (file, offset) = file_of(v);
        for (k, w) in [v.start, v.end, flags_of(v), offset, file]
            .iter()
            .enumerate()
        {
            mem.write_u64(at + 8 * k as u64, *w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::frame::FrameAllocator;
    use crate::mm::paging::KernelHalf;
    use crate::mm::testmem::TestMem;

    #[test]
    fn export_writes_count_fields_and_records_in_contract_layout() {
        let mut mem = TestMem::new(4 << 20);
        let mut frames = FrameAllocator::new(1 << 20, 4 << 20);
        let root = frames.alloc_zeroed(&mut mem).unwrap();
        let mut mm = Mm::new(&mut mem, &mut frames, &KernelHalf::new(root, &[])).unwrap();
        let text = Vma {
            backing: Backing::File {
                file: 0,
                offset: 0x1000,
                data_end: u64::MAX,
            },
            ..Vma::anon(0x401000, 0x402000, Prot(5), VmFlags::NONE)
        };
        mm.vmas.insert(text).unwrap();
        mm.vmas
            .insert(Vma::anon(
                0x7fff_0000_0000,
                0x7fff_0002_0000,
                Prot::RW,
                VmFlags::GROWSDOWN,
            ))
            .unwrap();
        mm.start_brk = 0x405000;
        mm.brk = 0x406000;
        export_vmas(&mm, &mut mem, 0x2000, [0; 3]);
        assert_eq!(mem.read_u64(0x2000), 2);
        assert_eq!(mem.read_u64(0x2000 + 8 + 5 * 8), 0x406000);
        let r0 = 0x2000 + VMAS_OFFSET;
        assert_eq!(mem.read_u64(r0), 0x401000);
        assert_eq!(
            mem.read_u64(r0 + 16),
            vma_flags::READ | vma_flags::EXEC | vma_flags::FILE
        );
        assert_eq!(mem.read_u64(r0 + 24), 0x1000);
        let r1 = r0 + RECORD;
        assert_eq!(
            mem.read_u64(r1 + 16),
            vma_flags::READ | vma_flags::WRITE | vma_flags::GROWSDOWN
        );
    }
}
