//! The guest's VMAs in exactly the format of Linux's `/proc/PID/maps`, so
//! that a run under vmrun diffs cleanly against a native one.
//!
//! Linux (`fs/proc/task_mmu.c`, `show_vma_header_prefix` and
//! `show_map_vma`) prints each area as
//! `%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ` (start, end, r/w/x, p or s,
//! file offset, device major:minor, inode, and a space), then, if the area
//! has a name, pads with spaces to column 72 (`seq_setwidth(25 + 6 *
//! sizeof(void *) - 1)`), adds one more space (`seq_pad(m, ' ')`) and the
//! name. A file mapping is named by its path; an anonymous area is `[heap]`
//! if it overlaps the brk range, as `vma_is_initial_heap` tests it
//! (`vm_start < brk && vm_end > start_brk`), and `[stack]` if it contains
//! `start_stack` (`vm_start <= start_stack <= vm_end`).

use crate::memory::{pod_bytes_mut, GuestRam};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use vmrun_contract::{vma_flags, VmaExport, VmaRecord, MAX_EXPORTED_VMAS};

/// Indices into [`VmaExport::mm`] (Linux's `mm_struct` field names).
pub mod mm_index {
    /// Start of the text.
    pub const START_CODE: usize = 0;
    /// End of the text.
    pub const END_CODE: usize = 1;
    /// Start of the data.
    pub const START_DATA: usize = 2;
    /// End of the data.
    pub const END_DATA: usize = 3;
    /// Start of the brk heap.
    pub const START_BRK: usize = 4;
    /// Current program break.
    pub const BRK: usize = 5;
    /// Initial stack pointer's page (argc's address).
    pub const START_STACK: usize = 6;
    /// Start of the argument strings.
    pub const ARG_START: usize = 7;
    /// End of the argument strings.
    pub const ARG_END: usize = 8;
    /// Start of the environment strings.
    pub const ENV_START: usize = 9;
    /// End of the environment strings.
    pub const ENV_END: usize = 10;
    /// Top of the mmap area.
    pub const MMAP_BASE: usize = 11;
}

/// Column at which Linux pads the header before the name (72 on 64-bit),
/// after which one space and the name follow.
const NAME_COLUMN: usize = 25 + 6 * 8 - 1;

/// A file a VMA may map ([`VmaRecord::file`] indexes a list of these), with
/// what `stat` says of it on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Path as shown in the maps (absolute, canonical).
    pub path: String,
    /// Major number of the device holding it.
    pub dev_major: u32,
    /// Minor number of the device holding it.
    pub dev_minor: u32,
    /// Inode number.
    pub inode: u64,
}

impl FileInfo {
    /// `stat` `path` on the host; the path is shown as given.
    pub fn from_path(path: &Path) -> std::io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        Ok(FileInfo {
            path: path.to_string_lossy().into_owned(),
            dev_major: dev_major(meta.dev()),
            dev_minor: dev_minor(meta.dev()),
            inode: meta.ino(),
        })
    }
}

/// Major number of a Linux `dev_t` as `stat` returns it (glibc's
/// `gnu_dev_major`: bits 8..=19 and 32..=43).
pub fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// Minor number of a Linux `dev_t` (glibc's `gnu_dev_minor`: bits 0..=7
/// and 20..=31).
pub fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

/// Why an export cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapsError {
    /// The export claims more areas than it can hold.
    TooManyVmas(u64),
    /// The export area is not in guest RAM.
    Memory(String),
}

impl fmt::Display for MapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapsError::TooManyVmas(n) => write!(
                f,
                "VMA export claims {n} areas, more than an address space can have \
                 ({MAX_AREAS})"
            ),
            MapsError::Memory(e) => write!(f, "cannot read the VMA export: {e}"),
        }
    }
}

impl std::error::Error for MapsError {}

/// Most areas an address space can have (Linux's `vm.max_map_count`, and
/// one more that mmap allows past it).
const MAX_AREAS: u64 = 65_531;

/// The areas an export holds: all of them, or the first
/// [`MAX_EXPORTED_VMAS`] when [`export_truncated`].
pub fn export_vmas(export: &VmaExport) -> Result<&[VmaRecord], MapsError> {
    if export.count > MAX_AREAS {
        return Err(MapsError::TooManyVmas(export.count));
    }
    let n = (export.count as usize).min(MAX_EXPORTED_VMAS);
    Ok(&export.vmas[..n])
}

/// Whether the running space has more areas than the export holds.
pub fn export_truncated(export: &VmaExport) -> bool {
    export.count as usize > MAX_EXPORTED_VMAS
}

/// Read the export area at guest-physical `phys` and check its count.
pub fn read_export(ram: &GuestRam, phys: u64) -> Result<VmaExport, MapsError> {
    let mut export = VmaExport::zeroed();
    ram.read_bytes(phys, pod_bytes_mut(&mut export))
        .map_err(|e| MapsError::Memory(e.to_string()))?;
    export_vmas(&export)?;
    Ok(export)
}

/// The whole maps text: one line per area, each ending in a newline.
pub fn format_maps(export: &VmaExport, files: &[FileInfo]) -> Result<String, MapsError> {
    let vmas = export_vmas(export)?;
    let mut out = String::new();
    for v in vmas {
        out.push_str(&format_vma(v, &export.mm, files));
        out.push('\n');
    }
    if export_truncated(export) {
        let more = export.count as usize - vmas.len();
        out.push_str(&format!(
            "[vmrun: {more} more areas above, not in the VMA export of {MAX_EXPORTED_VMAS}]\n"
        ));
    }
    Ok(out)
}

/// The files an export's areas map, indexed by [`VmaRecord::file`], from
/// the guest's file records; `program` stands in for the boot image, whose
/// identity the guest may not know (device and inode 0, a path).
pub fn files_of_export(export: &VmaExport, program: &FileInfo) -> Vec<FileInfo> {
    let n = (export.file_count as usize).min(export.files.len());
    let records = &export.files[..n];
    let top = records.iter().map(|r| r.id as usize + 1).max().unwrap_or(0);
    let mut files: Vec<FileInfo> = (0..top)
        .map(|i| FileInfo {
            path: format!("[file {i}]"),
            dev_major: 0,
            dev_minor: 0,
            inode: 0,
        })
        .collect();
    for r in records {
        let len = (r.path_len as usize).min(r.path.len());
        let path = String::from_utf8_lossy(&r.path[..len]).into_owned();
        let special = path.starts_with('[');
        files[r.id as usize] = if r.dev == 0 && r.ino == 0 && !special {
            program.clone()
        } else {
            FileInfo {
                path,
                dev_major: dev_major(r.dev),
                dev_minor: dev_minor(r.dev),
                inode: r.ino,
            }
        };
    }
    if files.is_empty() {
        files.push(program.clone());
    }
    files
}

/// One maps line, without the newline.
pub fn format_vma(v: &VmaRecord, mm: &[u64; 12], files: &[FileInfo]) -> String {
    let file = file_of(v, files);
    let (offset, major, minor, inode) = match (v.flags & vma_flags::FILE != 0, file) {
        (true, Some(f)) => (v.offset, f.dev_major, f.dev_minor, f.inode),
        (true, None) => (v.offset, 0, 0, 0),
        _ => (0, 0, 0, 0),
    };
    let mut line = format!(
        "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
        v.start,
        v.end,
        perms(v.flags),
        offset,
        major,
        minor,
        inode
    );
    if let Some(name) = vma_name(v, mm, file) {
        pad_to(&mut line, NAME_COLUMN);
        line.push(' ');
        line.push_str(&name);
    }
    line
}

fn file_of<'a>(v: &VmaRecord, files: &'a [FileInfo]) -> Option<&'a FileInfo> {
    if v.flags & vma_flags::FILE == 0 {
        return None;
    }
    usize::try_from(v.file).ok().and_then(|i| files.get(i))
}

/// `rwxp`-style permissions of [`vma_flags`].
pub fn perms(flags: u64) -> String {
    let bit = |b: u64, c: char| if flags & b != 0 { c } else { '-' };
    let share = if flags & vma_flags::SHARED != 0 {
        's'
    } else {
        'p'
    };
    [
        bit(vma_flags::READ, 'r'),
        bit(vma_flags::WRITE, 'w'),
        bit(vma_flags::EXEC, 'x'),
        share,
    ]
    .iter()
    .collect()
}

/// The name Linux shows for an area: the file's path (with `\n` escaped
/// as `\012`, as `seq_path` does), `[heap]`, `[stack]`, or none.
pub fn vma_name(v: &VmaRecord, mm: &[u64; 12], file: Option<&FileInfo>) -> Option<String> {
    if v.flags & vma_flags::FILE != 0 {
        let path = file.map_or_else(|| format!("[file {}]", v.file), |f| f.path.clone());
        return Some(path.replace('\n', "\\012"));
    }
    let (start_brk, brk) = (mm[mm_index::START_BRK], mm[mm_index::BRK]);
    if v.start < brk && v.end > start_brk {
        return Some("[heap]".into());
    }
    let stack = mm[mm_index::START_STACK];
    if v.start <= stack && v.end >= stack {
        return Some("[stack]".into());
    }
    None
}

fn pad_to(line: &mut String, column: usize) {
    while line.len() < column {
        line.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::testspace::{export, vma};
    use vmrun_contract::vma_flags::{EXEC, FILE, READ, SHARED, WRITE};

    fn hello_file() -> FileInfo {
        FileInfo {
            path: "/work/images/hello".into(),
            dev_major: 0xfe,
            dev_minor: 0,
            inode: 247030,
        }
    }

    fn mm() -> [u64; 12] {
        let mut mm = [0; 12];
        mm[mm_index::START_BRK] = 0x4c_c000;
        mm[mm_index::BRK] = 0x4e_e000;
        mm[mm_index::START_STACK] = 0x7fff_ffff_e9a0;
        mm
    }

    #[test]
    fn static_program_maps_match_linux_byte_for_byte() {
        let vmas = [
            vma(0x40_0000, 0x40_1000, READ | FILE, 0),
            vma(0x40_1000, 0x49_8000, READ | EXEC | FILE, 0x1000),
            vma(0x4c_5000, 0x4c_9000, READ | WRITE | FILE, 0xc4000),
            vma(0x4c_9000, 0x4c_c000, READ | WRITE, 0),
            vma(0x4c_c000, 0x4e_e000, READ | WRITE, 0),
            vma(0x7fff_f7ff_9000, 0x7fff_f7ffd000, READ | WRITE, 0),
            vma(0x7fff_fffd_e000, 0x7fff_ffff_f000, READ | WRITE, 0),
        ];
        let text = format_maps(&export(&vmas, mm()), &[hello_file()]).unwrap();
        let expected = "\
00400000-00401000 r--p 00000000 fe:00 247030                             /work/images/hello
00401000-00498000 r-xp 00001000 fe:00 247030                             /work/images/hello
004c5000-004c9000 rw-p 000c4000 fe:00 247030                             /work/images/hello
004c9000-004cc000 rw-p 00000000 00:00 0 
004cc000-004ee000 rw-p 00000000 00:00 0                                  [heap]
7ffff7ff9000-7ffff7ffd000 rw-p 00000000 00:00 0 
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(text, expected);
    }

    #[test]
    fn name_starts_at_column_73_like_linux() {
        let line = format_vma(
            &vma(0x5555_5555_4000, 0x5555_5555_6000, READ | FILE, 0),
            &mm(),
            &[hello_file()],
        );
        assert_eq!(line.find('/'), Some(73));
        assert_eq!(
            line,
            "555555554000-555555556000 r--p 00000000 fe:00 247030                     /work/images/hello"
        );
    }

    #[test]
    fn empty_brk_range_names_no_heap() {
        let mut mm = mm();
        mm[mm_index::BRK] = mm[mm_index::START_BRK];
        let bss = vma(0x4c_9000, 0x4c_c000, READ | WRITE, 0);
        assert_eq!(vma_name(&bss, &mm, None), None);
    }

    #[test]
    fn shared_and_unknown_file_mappings() {
        let mut v = vma(0x1000, 0x2000, READ | SHARED | FILE, 0x3000);
        v.file = 7;
        assert_eq!(
            format_vma(&v, &mm(), &[]),
            "00001000-00002000 r--s 00003000 00:00 0                                  [file 7]"
        );
    }

    #[test]
    fn more_vmas_than_an_address_space_can_have_is_refused() {
        let mut e = export(&[], mm());
        e.count = 65_532;
        assert_eq!(format_maps(&e, &[]), Err(MapsError::TooManyVmas(65_532)));
    }

    #[test]
    fn a_truncated_export_lists_what_it_holds_and_says_how_many_more() {
        let vmas: Vec<VmaRecord> = (0..MAX_EXPORTED_VMAS as u64)
            .map(|k| vma(0x40_0000 + k * 0x2000, 0x40_1000 + k * 0x2000, READ, 0))
            .collect();
        let mut e = export(&vmas, mm());
        e.count = 1000;
        assert!(export_truncated(&e));
        let text = format_maps(&e, &[]).unwrap();
        assert_eq!(text.lines().count(), MAX_EXPORTED_VMAS + 1);
        assert!(text.ends_with("[vmrun: 744 more areas above, not in the VMA export of 256]\n"));
    }

    #[test]
    fn dev_t_splits_like_glibc() {
        // makedev(0xfe, 0) and makedev(259, 0x12345).
        assert_eq!((dev_major(0xfe00), dev_minor(0xfe00)), (0xfe, 0));
        let dev = (0x12345 & 0xff) | ((0x12345 & !0xff) << 12) | (259 << 8);
        assert_eq!((dev_major(dev), dev_minor(dev)), (259, 0x12345));
    }

    #[test]
    fn file_info_matches_stat_of_a_host_file() {
        let f = FileInfo::from_path(Path::new("/proc/self/exe")).unwrap();
        let meta = std::fs::metadata("/proc/self/exe").unwrap();
        assert_eq!(f.inode, meta.ino());
        assert_eq!(libc::makedev(f.dev_major, f.dev_minor), meta.dev());
    }

    #[test]
    fn export_round_trips_through_guest_memory() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let vmas = [vma(0x40_0000, 0x40_1000, READ | FILE, 0)];
        let mut e = export(&vmas, mm());
        ram.write_pod(0x1000, &*e).unwrap();
        let back = read_export(&ram, 0x1000).unwrap();
        assert_eq!((back.count, back.mm, back.vmas[0]), (1, e.mm, vmas[0]));
        e.count = 70_000;
        ram.write_pod(0x1000, &*e).unwrap();
        assert_eq!(
            read_export(&ram, 0x1000).unwrap_err(),
            MapsError::TooManyVmas(70_000)
        );
    }

    #[test]
    fn exported_file_records_name_the_files_and_the_boot_image_falls_back() {
        let mut e = export(&[], mm());
        let rec = |id: u64, dev: u64, ino: u64, path: &str| {
            let mut r = vmrun_contract::FileRecord {
                id,
                dev,
                ino,
                path_len: path.len() as u64,
                ..Default::default()
            };
            r.path[..path.len()].copy_from_slice(path.as_bytes());
            r
        };
        e.files[0] = rec(0, 0, 0, "/p");
        e.files[1] = rec(3, 0x801, 77, "/lib/libc.so.6");
        e.files[2] = rec(4, 0, 0, "[vdso]");
        e.file_count = 3;
        let files = files_of_export(&e, &hello_file());
        assert_eq!(files.len(), 5);
        assert_eq!(files[0], hello_file());
        assert_eq!(
            (files[3].dev_major, files[3].dev_minor, files[3].inode),
            (8, 1, 77)
        );
        assert_eq!(files[3].path, "/lib/libc.so.6");
        assert_eq!(files[4].path, "[vdso]");
        assert_eq!(files[1].path, "[file 1]");
    }
}
