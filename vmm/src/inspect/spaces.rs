//! Every live address space at a stop, as the guest exports them
//! ([`VmaExport::spaces`]): each process's pid, page-table root, frame
//! counts and VMAs, and the copy-on-write reference counts they share.
//!
//! The running process comes first; the others are the processes (and
//! thread groups, and vfork children borrowing their parent's) that hold an
//! address space at the stop. Zombies hold none.

use super::maps::{format_vma, FileInfo, MapsError};
use crate::memory::GuestRam;
use vmrun_contract::layout::PAGE_SIZE;
use vmrun_contract::{VmaExport, VmaRecord, MAX_EXPORTED_SPACES, MAX_SPACE_VMAS};

/// One address space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// The process id of the task holding it.
    pub pid: u64,
    /// Physical address of its PML4.
    pub root: u64,
    /// User frames the guest says it maps (4 KiB units).
    pub user_frames: u64,
    /// User page-table pages the guest says it holds (the PML4 excluded).
    pub user_table_pages: u64,
    /// Its areas, sorted by address.
    pub vmas: Vec<VmaRecord>,
    /// Its `mm_struct` fields (see [`VmaExport::mm`]).
    pub mm: [u64; 12],
}

/// The spaces of an export, and whether all of them fit in it.
pub fn spaces_of(export: &VmaExport) -> Result<(Vec<Space>, bool), MapsError> {
    let n = (export.space_count as usize).min(MAX_EXPORTED_SPACES);
    let pool = (export.space_vma_count as usize).min(MAX_SPACE_VMAS);
    let mut out = Vec::with_capacity(n);
    for r in &export.spaces[..n] {
        let first = r.first_vma as usize;
        let vmas = first
            .checked_add(r.vma_count as usize)
            .and_then(|end| export.space_vmas[..pool].get(first..end))
            .ok_or(MapsError::TooManyVmas(r.vma_count))?;
        out.push(Space {
            pid: r.pid,
            root: r.root,
            user_frames: r.user_frames,
            user_table_pages: r.user_table_pages,
            vmas: vmas.to_vec(),
            mm: r.mm,
        });
    }
    let complete = export.space_count as usize <= MAX_EXPORTED_SPACES && pool < MAX_SPACE_VMAS;
    Ok((out, complete))
}

/// The `/proc/PID/maps` text of one space.
pub fn format_space_maps(space: &Space, files: &[FileInfo]) -> String {
    let mut out = String::new();
    for v in &space.vmas {
        out.push_str(&format_vma(v, &space.mm, files));
        out.push('\n');
    }
    out
}

/// The guest's copy-on-write reference counts, as read at a stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareCounts {
    /// Physical address of the frame entry 0 stands for.
    pub first: u64,
    /// Per frame: the mappings beyond the first.
    pub extra: Vec<u16>,
}

impl ShareCounts {
    /// Read the array the export's `share_counts` describe (empty if none,
    /// or if it does not lie in guest RAM).
    pub fn read(ram: &GuestRam, share_counts: [u64; 3]) -> ShareCounts {
        let [phys, first, n] = share_counts;
        if phys == 0 || n > 1 << 26 {
            return ShareCounts::default();
        }
        let mut bytes = vec![0u8; (n * 2) as usize];
        if ram.read_bytes(phys, &mut bytes).is_err() {
            return ShareCounts::default();
        }
        let extra = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        ShareCounts { first, extra }
    }

    /// How many mappings the guest counts for frame `pa` (1 for a frame it
    /// never shared).
    pub fn mappings(&self, pa: u64) -> u64 {
        let extra = pa
            .checked_sub(self.first)
            .and_then(|d| self.extra.get((d / PAGE_SIZE) as usize));
        1 + extra.map_or(0, |&n| u64::from(n))
    }

    /// The frames the guest counts as mapped more than once, with their
    /// counts.
    pub fn shared(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let first = self.first;
        self.extra
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(move |(i, &n)| (first + i as u64 * PAGE_SIZE, 1 + u64::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_counts_count_the_first_mapping_too() {
        let s = ShareCounts {
            first: 0x10_0000,
            extra: vec![0, 2, 0],
        };
        assert_eq!(s.mappings(0x10_1000), 3);
        assert_eq!(s.mappings(0x10_0000), 1);
        assert_eq!(s.mappings(0x1000), 1, "below the allocator");
        assert_eq!(s.mappings(0x90_0000), 1, "above it");
        assert_eq!(s.shared().collect::<Vec<_>>(), [(0x10_1000, 3)]);
    }

    #[test]
    fn spaces_are_read_with_their_own_areas() {
        let mut e = Box::new(VmaExport::zeroed());
        e.space_count = 2;
        e.space_vma_count = 3;
        for (i, s) in [0x1000, 0x2000, 0x3000].iter().enumerate() {
            e.space_vmas[i] = VmaRecord {
                start: *s,
                end: s + 0x1000,
                ..Default::default()
            };
        }
        e.spaces[0].pid = 1;
        e.spaces[0].vma_count = 1;
        e.spaces[1].pid = 2;
        e.spaces[1].first_vma = 1;
        e.spaces[1].vma_count = 2;
        let (spaces, complete) = spaces_of(&e).unwrap();
        assert!(complete);
        assert_eq!(spaces.len(), 2);
        assert_eq!(spaces[1].pid, 2);
        assert_eq!(spaces[1].vmas[0].start, 0x2000);
        e.spaces[1].vma_count = 3;
        assert!(spaces_of(&e).is_err(), "areas beyond the pool");
        e.spaces[1].vma_count = 2;
        e.space_count = MAX_EXPORTED_SPACES as u64 + 1;
        assert!(!spaces_of(&e).unwrap().1);
    }
}
