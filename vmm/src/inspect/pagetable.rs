//! The host's own walk of the guest's x86-64 4-level page tables (Intel SDM
//! vol. 3, 4.5), from a CR3 value, over guest RAM.
//!
//! This is deliberately a second implementation, sharing no code with the
//! guest kernel's page-table builder, so that it can check it. It follows the
//! SDM: an entry's physical address is bits 12..=51 ([`bits::ADDR_MASK`]);
//! PS in a PDPTE or PDE makes a 1 GiB or 2 MiB leaf; access rights are the
//! AND of R/W and U/S over every level and the OR of XD (NX). Bits the CPU
//! ignores are ignored, including the guest's own bookkeeping: a count of
//! used entries in bits 52..=61 of non-leaf entries.
//!
//! One guest convention is recognised on purpose: a non-present leaf with
//! software bit 9 ([`bits::PROTNONE`]) set is a `PROT_NONE` page that keeps
//! its frame. Such leaves are listed apart ([`Walk::protnone`]) so that the
//! frame accounting can count them.
//!
//! The walk never loops or reads outside RAM: a table pointer outside guest
//! RAM or to a table already visited is recorded as a [`WalkProblem`] and not
//! followed.

use super::hex;
use crate::memory::GuestRam;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt;

/// Page-table entry bits the walk reads (SDM tables 4-14 to 4-20).
pub mod bits {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User accessible.
    pub const US: u64 = 1 << 2;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (leaves).
    pub const D: u64 = 1 << 6;
    /// Page size: a PDPTE or PDE that is a leaf.
    pub const PS: u64 = 1 << 7;
    /// Global (leaves).
    pub const G: u64 = 1 << 8;
    /// The guest's software bit for a non-present `PROT_NONE` leaf that
    /// keeps its frame.
    pub const PROTNONE: u64 = 1 << 9;
    /// Execute disable.
    pub const NX: u64 = 1 << 63;
    /// Physical-address bits 12..=51 of an entry.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Entries per table.
const ENTRIES: usize = 512;
/// First PML4 index of the kernel (upper) half.
const KERNEL_HALF_INDEX: usize = 256;
/// First address of the kernel (upper) half.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// Bytes one PML4 covers: the 48-bit address space.
const PML4_SPAN: u64 = 1 << 48;

/// Size of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB (a PTE).
    Size4K,
    /// 2 MiB (a PDE with PS).
    Size2M,
    /// 1 GiB (a PDPTE with PS).
    Size1G,
}

impl PageSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// 4 KiB frames covered.
    pub const fn frames(self) -> u64 {
        self.bytes() >> 12
    }

    /// `4K`, `2M` or `1G`.
    pub const fn label(self) -> &'static str {
        match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        }
    }

    /// The leaf size of an entry at `level` (1 = PT .. 3 = PDPT).
    fn at_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

/// The conventional name of a table at `level`: PML4, PDPT, PD or PT.
pub fn level_name(level: u8) -> &'static str {
    match level {
        4 => "PML4",
        3 => "PDPT",
        2 => "PD",
        1 => "PT",
        _ => "?",
    }
}

/// Bytes one entry of a table at `level` covers.
fn entry_span(level: u8) -> u64 {
    1 << (12 + 9 * (u32::from(level) - 1))
}

/// Sign-extend bit 47 of `va` into bits 48..=63 (a canonical address).
pub fn canonical(va: u64) -> u64 {
    (((va << 16) as i64) >> 16) as u64
}

/// One page-table page found by the walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePage {
    /// Guest-physical address of the page.
    pub phys: u64,
    /// 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT.
    pub level: u8,
    /// First (canonical) virtual address it covers.
    pub va_start: u64,
    /// Bytes of virtual space it covers (for the PML4: both halves, 2^48).
    pub span: u64,
    /// Entries with P set.
    pub present: u32,
    /// Index in [`Walk::tables`] of the table pointing here (None: root).
    pub parent: Option<usize>,
    /// Index of the entry in the parent that points here.
    pub index: u16,
}

impl TablePage {
    /// PML4, PDPT, PD or PT.
    pub fn name(&self) -> &'static str {
        level_name(self.level)
    }

    /// Last virtual address it covers (inclusive, so the top table of the
    /// address space does not overflow).
    pub fn va_last(&self) -> u64 {
        self.va_start.wrapping_add(self.span - 1)
    }

    /// Whether it is a table of the user half (the PML4 is neither half).
    pub fn is_user_half(&self) -> bool {
        self.level < 4 && self.va_start < KERNEL_HALF
    }
}

/// The access a leaf grants: R/W, U/S and NX combined over every level of
/// the walk, as the CPU checks them; A, D and G from the leaf itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// Writable (R/W set at every level).
    pub writable: bool,
    /// User accessible (U/S set at every level).
    pub user: bool,
    /// Not executable (XD set at some level).
    pub nx: bool,
    /// Accessed.
    pub accessed: bool,
    /// Dirty.
    pub dirty: bool,
    /// Global.
    pub global: bool,
}

impl Flags {
    /// `rwx`-style permissions (`r` always: a present page is readable).
    pub fn perms(&self) -> String {
        let w = if self.writable { 'w' } else { '-' };
        let x = if self.nx { '-' } else { 'x' };
        format!("r{w}{x}")
    }

    /// `user` or `kern`.
    pub fn owner(&self) -> &'static str {
        if self.user {
            "user"
        } else {
            "kern"
        }
    }

    /// `A`, `D` and `G`, each or `-`.
    pub fn adg(&self) -> String {
        let pick = |on: bool, c: char| if on { c } else { '-' };
        [
            pick(self.accessed, 'A'),
            pick(self.dirty, 'D'),
            pick(self.global, 'G'),
        ]
        .iter()
        .collect()
    }
}

/// A leaf entry: a present page, or a guest `PROT_NONE` page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Canonical virtual address of the page.
    pub va: u64,
    /// Physical address of its frame.
    pub pa: u64,
    /// Its size.
    pub size: PageSize,
    /// The raw entry.
    pub pte: u64,
    /// Guest-physical address of the entry.
    pub entry_phys: u64,
    /// Effective access.
    pub flags: Flags,
}

impl Leaf {
    /// Whether the page lies in the user half.
    pub fn is_user_half(&self) -> bool {
        self.va < KERNEL_HALF
    }
}

/// Something in the tables the walk could not follow or the CPU would
/// reject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkProblem {
    /// Guest-physical address of the entry.
    pub entry_phys: u64,
    /// Level of the table holding it.
    pub level: u8,
    /// The virtual address the entry translates.
    pub va: u64,
    /// The raw entry.
    pub entry: u64,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for WalkProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entry {:#018x} at phys {:#x} for va {:#x}: {}",
            level_name(self.level),
            self.entry,
            self.entry_phys,
            self.va,
            self.what
        )
    }
}

/// Which part of the address space to walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Walk only PML4 entries 0..256 (the user half).
    pub user_only: bool,
}

/// Everything one walk found, tables and leaves in address order.
#[derive(Clone, Debug, Default)]
pub struct Walk {
    /// The CR3 value walked.
    pub cr3: u64,
    /// Guest RAM size at the time of the walk.
    pub mem_size: u64,
    /// Table pages, depth first (the PML4 first).
    pub tables: Vec<TablePage>,
    /// Present leaves, by virtual address.
    pub leaves: Vec<Leaf>,
    /// Non-present `PROT_NONE` leaves that keep a frame, by address.
    pub protnone: Vec<Leaf>,
    /// Entries the walk did not follow.
    pub problems: Vec<WalkProblem>,
}

impl Walk {
    /// The present leaves coalesced into mappings.
    pub fn mappings(&self) -> Vec<Mapping> {
        coalesce(&self.leaves)
    }

    /// The leaves (present and `PROT_NONE`) of the user half.
    pub fn user_leaves(&self) -> impl Iterator<Item = &Leaf> {
        let present = self.leaves.iter().filter(|l| l.is_user_half());
        present.chain(self.protnone.iter().filter(|l| l.is_user_half()))
    }
}

/// Why a walk could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// CR3 points outside guest RAM.
    RootOutsideRam {
        /// The CR3 value.
        cr3: u64,
        /// Guest RAM size.
        mem_size: u64,
    },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::RootOutsideRam { cr3, mem_size } => write!(
                f,
                "CR3 {cr3:#x} points outside guest RAM ({mem_size:#x} bytes)"
            ),
        }
    }
}

impl std::error::Error for WalkError {}

/// Walk the page tables rooted at `cr3` (its address bits; PCID and flag
/// bits are ignored).
pub fn walk(ram: &GuestRam, cr3: u64, opts: WalkOptions) -> Result<Walk, WalkError> {
    let root = cr3 & bits::ADDR_MASK;
    let entries = read_table(ram, root).ok_or(WalkError::RootOutsideRam {
        cr3,
        mem_size: ram.size(),
    })?;
    let mut w = Walker {
        ram,
        opts,
        seen: HashSet::from([root]),
        walk: Walk {
            cr3,
            mem_size: ram.size(),
            ..Walk::default()
        },
    };
    let root_table = TablePage {
        phys: root,
        level: 4,
        va_start: 0,
        span: PML4_SPAN,
        present: 0,
        parent: None,
        index: 0,
    };
    w.visit(root_table, &entries, Access::ROOT);
    Ok(w.walk)
}

/// Read one table page as 512 entries; None if it is not in RAM.
fn read_table(ram: &GuestRam, phys: u64) -> Option<Vec<u64>> {
    let mut buf = vec![0u8; ENTRIES * 8];
    ram.read_bytes(phys, &mut buf).ok()?;
    let words = buf.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    Some(words.collect())
}

/// Rights accumulated down the walk.
#[derive(Clone, Copy)]
struct Access {
    user: bool,
    writable: bool,
    nx: bool,
}

impl Access {
    const ROOT: Access = Access {
        user: true,
        writable: true,
        nx: false,
    };

    fn through(self, entry: u64) -> Access {
        Access {
            user: self.user && entry & bits::US != 0,
            writable: self.writable && entry & bits::RW != 0,
            nx: self.nx || entry & bits::NX != 0,
        }
    }

    fn leaf_flags(self, entry: u64) -> Flags {
        let a = self.through(entry);
        Flags {
            writable: a.writable,
            user: a.user,
            nx: a.nx,
            accessed: entry & bits::A != 0,
            dirty: entry & bits::D != 0,
            global: entry & bits::G != 0,
        }
    }
}

/// Where an entry sits.
#[derive(Clone, Copy)]
struct Slot {
    table: usize,
    level: u8,
    index: usize,
    entry_phys: u64,
    va: u64,
}

struct Walker<'a> {
    ram: &'a GuestRam,
    opts: WalkOptions,
    seen: HashSet<u64>,
    walk: Walk,
}

impl Walker<'_> {
    fn visit(&mut self, table: TablePage, entries: &[u64], access: Access) {
        let (phys, level, va_start) = (table.phys, table.level, table.va_start);
        let id = self.walk.tables.len();
        self.walk.tables.push(table);
        let end = if level == 4 && self.opts.user_only {
            KERNEL_HALF_INDEX
        } else {
            ENTRIES
        };
        for (index, &entry) in entries.iter().enumerate().take(end) {
            let slot = Slot {
                table: id,
                level,
                index,
                entry_phys: phys + index as u64 * 8,
                va: canonical(va_start.wrapping_add(index as u64 * entry_span(level))),
            };
            self.entry(slot, entry, access);
        }
    }

    fn entry(&mut self, slot: Slot, entry: u64, access: Access) {
        if entry & bits::P == 0 {
            self.non_present(slot, entry, access);
            return;
        }
        self.walk.tables[slot.table].present += 1;
        let is_leaf = slot.level == 1 || (entry & bits::PS != 0 && slot.level <= 3);
        if slot.level == 4 && entry & bits::PS != 0 {
            self.problem(slot, entry, "PS set in a PML4 entry (reserved bit)");
        } else if is_leaf {
            self.leaf(slot, entry, access, true);
        } else {
            self.child(slot, entry, access);
        }
    }

    fn non_present(&mut self, slot: Slot, entry: u64, access: Access) {
        if entry & bits::PROTNONE == 0 {
            return;
        }
        if slot.level == 1 || (slot.level <= 3 && entry & bits::PS != 0) {
            self.leaf(slot, entry, access, false);
        }
    }

    fn leaf(&mut self, slot: Slot, entry: u64, access: Access, present: bool) {
        let Some(size) = PageSize::at_level(slot.level) else {
            return;
        };
        let low = size.bytes() - 1;
        let raw = entry & bits::ADDR_MASK;
        // Bit 12 of a large leaf is PAT; the bits above it must be zero.
        if raw & low & !0x1fff != 0 {
            self.problem(
                slot,
                entry,
                "reserved address bits set in a large-page entry",
            );
        }
        let leaf = Leaf {
            va: slot.va,
            pa: raw & !low,
            size,
            pte: entry,
            entry_phys: slot.entry_phys,
            flags: access.leaf_flags(entry),
        };
        if present {
            self.walk.leaves.push(leaf);
        } else {
            self.walk.protnone.push(leaf);
        }
    }

    fn child(&mut self, slot: Slot, entry: u64, access: Access) {
        let phys = entry & bits::ADDR_MASK;
        if !self.seen.insert(phys) {
            self.problem(slot, entry, "points to a table page already in the walk");
            return;
        }
        let Some(entries) = read_table(self.ram, phys) else {
            self.problem(slot, entry, "points to a table page outside guest RAM");
            return;
        };
        let table = TablePage {
            phys,
            level: slot.level - 1,
            va_start: slot.va,
            span: entry_span(slot.level),
            present: 0,
            parent: Some(slot.table),
            index: slot.index as u16,
        };
        self.visit(table, &entries, access.through(entry));
    }

    fn problem(&mut self, slot: Slot, entry: u64, what: &'static str) {
        self.walk.problems.push(WalkProblem {
            entry_phys: slot.entry_phys,
            level: slot.level,
            va: slot.va,
            entry,
            what,
        });
    }
}

/// Translate one virtual address as the CPU would: the leaf that maps it,
/// with its effective flags, or None if it is not mapped (not present, not
/// canonical, or a table outside RAM).
pub fn translate(ram: &GuestRam, cr3: u64, va: u64) -> Option<Leaf> {
    if canonical(va) != va {
        return None;
    }
    let mut table = cr3 & bits::ADDR_MASK;
    let mut access = Access::ROOT;
    for level in (1..=4u8).rev() {
        let index = (va / entry_span(level)) % ENTRIES as u64;
        let entry_phys = table + index * 8;
        let entry: u64 = ram.read_pod(entry_phys).ok()?;
        if entry & bits::P == 0 || (level == 4 && entry & bits::PS != 0) {
            return None;
        }
        if level == 1 || entry & bits::PS != 0 {
            let size = PageSize::at_level(level)?;
            return Some(Leaf {
                va: va & !(size.bytes() - 1),
                pa: entry & bits::ADDR_MASK & !(size.bytes() - 1),
                size,
                pte: entry,
                entry_phys,
                flags: access.leaf_flags(entry),
            });
        }
        access = access.through(entry);
        table = entry & bits::ADDR_MASK;
    }
    None
}

/// Copy user-accessible memory at `va` into `buf` through the page tables
/// at `cr3`; returns the bytes copied, stopping at the first page that is
/// not mapped for user access.
pub fn read_user(ram: &GuestRam, cr3: u64, va: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let Some(at) = va.checked_add(done as u64) else {
            break;
        };
        let Some(leaf) = translate(ram, cr3, at).filter(|l| l.flags.user) else {
            break;
        };
        let offset = at - leaf.va;
        let n = ((leaf.size.bytes() - offset) as usize).min(buf.len() - done);
        if ram
            .read_bytes(leaf.pa + offset, &mut buf[done..done + n])
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

/// A run of leaves with contiguous virtual and physical addresses, the same
/// size and the same flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address.
    pub va: u64,
    /// First physical address.
    pub pa: u64,
    /// Size of each leaf.
    pub size: PageSize,
    /// Number of leaves.
    pub pages: u64,
    /// Their common flags.
    pub flags: Flags,
}

impl Mapping {
    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.pages * self.size.bytes()
    }

    /// Whether it covers nothing (never, for a mapping from a walk).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// End of the virtual range, exclusive (2^64 for the top page).
    pub fn va_end(&self) -> u128 {
        u128::from(self.va) + u128::from(self.len())
    }

    /// End of the physical range, exclusive.
    pub fn pa_end(&self) -> u64 {
        self.pa + self.len()
    }

    fn extends_to(&self, leaf: &Leaf) -> bool {
        let same = leaf.size == self.size && leaf.flags == self.flags;
        same && u128::from(leaf.va) == self.va_end() && leaf.pa == self.pa_end()
    }
}

/// Coalesce leaves (sorted by address) into mappings.
pub fn coalesce(leaves: &[Leaf]) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for leaf in leaves {
        match out.last_mut() {
            Some(m) if m.extends_to(leaf) => m.pages += 1,
            _ => out.push(Mapping {
                va: leaf.va,
                pa: leaf.pa,
                size: leaf.size,
                pages: 1,
                flags: leaf.flags,
            }),
        }
    }
    out
}

/// The table tree as indented text, one table page per line:
///
/// ```text
/// PML4 @0x10000 (2 present)
///   [  0] PDPT @0x11000 0000000000000000-0000007fffffffff (1 present)
///     [  2] PD @0x12000 0000000000400000-... (3 present)
/// ```
pub fn render_tree(walk: &Walk) -> String {
    let mut out = format!("CR3 {:#x}\n", walk.cr3);
    for t in &walk.tables {
        out.push_str(&tree_line(t));
        out.push('\n');
    }
    for p in &walk.problems {
        out.push_str(&format!("problem: {p}\n"));
    }
    out
}

fn tree_line(t: &TablePage) -> String {
    let present = format!("({} present)", t.present);
    if t.parent.is_none() {
        return format!("{} @{:#x} {present}", t.name(), t.phys);
    }
    let indent = "  ".repeat(usize::from(4 - t.level));
    format!(
        "{indent}[{:3}] {} @{:#x} {:016x}-{:016x} {present}",
        t.index,
        t.name(),
        t.phys,
        t.va_start,
        t.va_last()
    )
}

/// The mappings as a list, one per line, with a header:
///
/// ```text
/// 0000000000400000-0000000000402000 -> 0x000000800000-0x000000802000 4K x2     r-x user A--
/// ```
///
/// virtual range, physical range, leaf size and count, effective
/// permissions, user or kernel, and Accessed/Dirty/Global.
pub fn render_mappings(mappings: &[Mapping]) -> String {
    let mut out = format!(
        "{:<33}    {:<29} {:<9} {:<3} {:<4} {}\n",
        "# virtual range", "physical range", "size x n", "rwx", "who", "ADG"
    );
    for m in mappings {
        out.push_str(&mapping_line(m));
        out.push('\n');
    }
    out
}

/// One line of [`render_mappings`].
pub fn mapping_line(m: &Mapping) -> String {
    format!(
        "{:016x}-{:016x} -> {:#014x}-{:#014x} {} x{:<5} {} {} {}",
        m.va,
        m.va_end(),
        m.pa,
        m.pa_end(),
        m.size.label(),
        m.pages,
        m.flags.perms(),
        m.flags.owner(),
        m.flags.adg()
    )
}

/// The walk as JSON: `cr3`, `tables`, `mappings`, `protnone` and
/// `problems`; addresses as hex strings.
pub fn to_json(walk: &Walk) -> Value {
    json!({
        "cr3": hex(walk.cr3),
        "tables": walk.tables.iter().map(table_json).collect::<Vec<_>>(),
        "mappings": walk.mappings().iter().map(mapping_json).collect::<Vec<_>>(),
        "protnone": walk.protnone.iter().map(leaf_json).collect::<Vec<_>>(),
        "problems": walk.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}

fn table_json(t: &TablePage) -> Value {
    json!({
        "level": t.level,
        "name": t.name(),
        "phys": hex(t.phys),
        "va_start": hex(t.va_start),
        "va_last": hex(t.va_last()),
        "present": t.present,
        "parent": t.parent,
        "index": t.index,
    })
}

fn mapping_json(m: &Mapping) -> Value {
    json!({
        "va_start": hex(m.va),
        "va_end": format!("{:#x}", m.va_end()),
        "pa_start": hex(m.pa),
        "pa_end": hex(m.pa_end()),
        "size": m.size.label(),
        "pages": m.pages,
        "perms": m.flags.perms(),
        "user": m.flags.user,
        "writable": m.flags.writable,
        "nx": m.flags.nx,
        "accessed": m.flags.accessed,
        "dirty": m.flags.dirty,
        "global": m.flags.global,
    })
}

fn leaf_json(l: &Leaf) -> Value {
    json!({
        "va": hex(l.va),
        "pa": hex(l.pa),
        "size": l.size.label(),
        "pte": hex(l.pte),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop;
