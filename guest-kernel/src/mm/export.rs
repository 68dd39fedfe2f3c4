//! Exporting an address space's VMAs to the host (the layout of
//! `contract::VmaExport`), so that the host can print /proc/PID/maps and
//! check the page tables against the areas.

use super::phys::PhysMem;
use super::space::Mm;
use super::vma::{Backing, Prot, VmFlags, Vma};
use crate::fs::cache::PageCache;
use core::mem::offset_of;
use vmrun_contract::{
    vma_flags, VmaExport, MAX_EXPORTED_FILES, MAX_EXPORTED_SPACES, MAX_EXPORTED_VMAS,
    MAX_SPACE_VMAS,
};

/// Offset of `VmaExport::vmas` (count, then 12 mm fields).
const VMAS_OFFSET: u64 = 8 + 12 * 8;
/// Size of one `VmaRecord`.
const RECORD: u64 = 40;
/// Size of one `FileRecord`.
const FILE_RECORD: u64 = 256;
/// Size of one `SpaceRecord`.
const SPACE_RECORD: u64 = core::mem::size_of::<vmrun_contract::SpaceRecord>() as u64;

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

/// Write the files the areas of `mms` map (their identity and path, from
/// the page cache) after the page-cache bitmap fields.
pub fn export_files<'a, M: PhysMem>(
    mms: impl Iterator<Item = &'a Mm>,
    cache: &PageCache,
    mem: &mut M,
    pa: u64,
) {
    let count_at = pa + VMAS_OFFSET + RECORD * MAX_EXPORTED_VMAS as u64 + 24;
    let mut ids: alloc::vec::Vec<u16> = mms
        .flat_map(|mm| mm.vmas.iter())
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

/// Write every live address space (`spaces`: the pid holding it and its
/// `Mm`, the running one first) into the export area at physical `pa`, and
/// where the copy-on-write reference counts are (`share_counts`: array,
/// first frame, entries), so that the host checks sharing across them.
pub fn export_spaces<'a, M: PhysMem>(
    spaces: impl Iterator<Item = (u64, &'a Mm)>,
    mem: &mut M,
    pa: u64,
    share_counts: [u64; 3],
) {
    write_words(
        mem,
        pa + offset_of!(VmaExport, share_counts) as u64,
        &share_counts,
    );
    let spaces_at = pa + offset_of!(VmaExport, spaces) as u64;
    let vmas_at = pa + offset_of!(VmaExport, space_vmas) as u64;
    let (mut n, mut first) = (0u64, 0usize);
    for (pid, mm) in spaces {
        n += 1;
        if n as usize > MAX_EXPORTED_SPACES {
            continue;
        }
        let count = mm.vmas.len().min(MAX_SPACE_VMAS - first);
        for (i, v) in mm.vmas.iter().take(count).enumerate() {
            write_vma(mem, vmas_at + RECORD * (first + i) as u64, v);
        }
        let at = spaces_at + SPACE_RECORD * (n - 1);
        let head = [
            pid,
            mm.pt.root(),
            mm.user_frames,
            mm.user_table_pages(),
            first as u64,
            count as u64,
        ];
        write_words(mem, at, &head);
        write_words(mem, at + 48, &mm_fields(mm));
        first += count;
    }
    write_words(mem, pa + offset_of!(VmaExport, space_count) as u64, &[n]);
    let count_at = pa + offset_of!(VmaExport, space_vma_count) as u64;
    write_words(mem, count_at, &[first as u64]);
}

fn write_words<M: PhysMem>(mem: &mut M, at: u64, words: &[u64]) {
    for (k, w) in words.iter().enumerate() {
        mem.write_u64(at + 8 * k as u64, *w);
    }
}

fn write_vma<M: PhysMem>(mem: &mut M, at: u64, v: &Vma) {
    let (file, offset) = file_of(v);
    write_words(mem, at, &[v.start, v.end, flags_of(v), offset, file]);
}

/// The `mm_struct` fields the export carries, in its order.
fn mm_fields(mm: &Mm) -> [u64; 12] {
    [
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
    ]
}

/// Write `mm`'s areas and layout fields at physical `pa`, and where the
/// page-cache bitmap (`cache_bits`: bitmap, first frame, frames) is.
pub fn export_vmas<M: PhysMem>(mm: &Mm, mem: &mut M, pa: u64, cache_bits: [u64; 3]) {
    let bits_at = pa + VMAS_OFFSET + RECORD * MAX_EXPORTED_VMAS as u64;
    for (k, w) in cache_bits.iter().enumerate() {
        mem.write_u64(bits_at + 8 * k as u64, *w);
    }
    // The count is the true one: above MAX_EXPORTED_VMAS the host knows
    // the records it reads are the first areas only.
    let n = mm.vmas.len().min(MAX_EXPORTED_VMAS);
    mem.write_u64(pa, mm.vmas.len() as u64);
    write_words(mem, pa + 8, &mm_fields(mm));
    for (i, v) in mm.vmas.iter().take(n).enumerate() {
        write_vma(mem, pa + VMAS_OFFSET + RECORD * i as u64, v);
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

    #[test]
    fn every_space_is_exported_with_its_pid_root_counts_and_areas() {
        let mut mem = TestMem::new(4 << 20);
        let mut frames = FrameAllocator::new(1 << 20, 2 << 20);
        let root = frames.alloc_zeroed(&mut mem).unwrap();
        let kernel = KernelHalf::new(root, &[]);
        let mut a = Mm::new(&mut mem, &mut frames, &kernel).unwrap();
        let mut b = Mm::new(&mut mem, &mut frames, &kernel).unwrap();
        a.vmas
            .insert(Vma::anon(0x1000, 0x3000, Prot::RW, VmFlags::NONE))
            .unwrap();
        b.vmas
            .insert(Vma::anon(0x5000, 0x6000, Prot::RW, VmFlags::NONE))
            .unwrap();
        b.vmas
            .insert(Vma::anon(0x8000, 0x9000, Prot(1), VmFlags::NONE))
            .unwrap();
        b.user_frames = 7;
        b.brk = 0x4242;
        let pa = 0x200000;
        export_spaces([(1, &a), (9, &b)].into_iter(), &mut mem, pa, [0x1234, 5, 6]);
        let e = |off: usize| pa + off as u64;
        assert_eq!(mem.read_u64(e(offset_of!(VmaExport, space_count))), 2);
        assert_eq!(mem.read_u64(e(offset_of!(VmaExport, space_vma_count))), 3);
        assert_eq!(mem.read_u64(e(offset_of!(VmaExport, share_counts))), 0x1234);
        let s1 = e(offset_of!(VmaExport, spaces)) + SPACE_RECORD;
        let words: Vec<u64> = (0..6).map(|k| mem.read_u64(s1 + 8 * k)).collect();
        assert_eq!(words, [9, b.pt.root(), 7, b.user_table_pages(), 1, 2]);
        assert_eq!(mem.read_u64(s1 + 48 + 5 * 8), 0x4242, "brk");
        let v2 = e(offset_of!(VmaExport, space_vmas)) + 2 * RECORD;
        assert_eq!((mem.read_u64(v2), mem.read_u64(v2 + 8)), (0x8000, 0x9000));
    }
}
