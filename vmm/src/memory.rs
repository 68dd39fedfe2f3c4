//! Guest RAM: one anonymous mapping registered with KVM as slot 0, and
//! checked accessors for everything the VMM reads or writes in it.
//!
//! Every guest-supplied address and length goes through these accessors,
//! which fail instead of touching memory outside guest RAM.

use crate::error::{Error, Result};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmrun_contract::fs::FsRequest;
use vmrun_contract::{
    trace, BootInfo, CopyItem, GuestStats, Hypercall, IoVec, VmaExport, VmaRecord,
};

/// Plain-old-data types that may be copied to and from guest memory byte
/// for byte.
///
/// # Safety
/// Implementors are `#[repr(C)]`, have no padding and accept every bit
/// pattern.
pub unsafe trait Pod: Copy {}
// SAFETY: each is #[repr(C)] with only u64/u32/i64 and byte-array fields,
// laid out without padding (checked by the size tests below).
unsafe impl Pod for BootInfo {}
// SAFETY: as above.
unsafe impl Pod for Hypercall {}
// SAFETY: as above.
unsafe impl Pod for IoVec {}
// SAFETY: as above (three u64).
unsafe impl Pod for CopyItem {}
// SAFETY: as above (eleven u64s).
unsafe impl Pod for vmrun_contract::UserStrings {}
// SAFETY: as above.
unsafe impl Pod for GuestStats {}
// SAFETY: as above.
unsafe impl Pod for VmaExport {}
// SAFETY: as above: four u64 fields.
unsafe impl Pod for trace::RingHeader {}
// SAFETY: as above: two u32 fields, then a u64 and six u64s (64 bytes, no
// padding: the u32 pair fills the first 8 bytes).
unsafe impl Pod for trace::Record {}
// SAFETY: as above: five u64 fields.
unsafe impl Pod for VmaRecord {}
// SAFETY: a primitive integer.
unsafe impl Pod for u64 {}
// SAFETY: as above: u32 pairs, u64/i64 fields and byte arrays, in an order
// that leaves no padding (checked by the size tests below).
unsafe impl Pod for FsRequest {}
// SAFETY: as above: 22 u64 fields.
unsafe impl Pod for vmrun_contract::debug::UserFrame {}
// SAFETY: as above: six u64 fields.
unsafe impl Pod for vmrun_contract::debug::TaskRecord {}

/// The bytes of a [`Pod`] value, to fill from guest memory.
pub fn pod_bytes_mut<T: Pod>(val: &mut T) -> &mut [u8] {
    // SAFETY: `T: Pod` has no padding and accepts any bit pattern, so its
    // bytes may be viewed and overwritten freely.
    unsafe { std::slice::from_raw_parts_mut(val as *mut T as *mut u8, std::mem::size_of::<T>()) }
}

/// The guest's RAM, starting at guest-physical 0. A clone is another
/// handle on the same memory.
#[derive(Clone)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
}

impl GuestRam {
    /// Map `size` bytes of zeroed anonymous memory.
    pub fn new(size: u64) -> Result<GuestRam> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|e| Error::Memory(format!("cannot map {size} bytes: {e}")))?;
        Ok(GuestRam { mem, size })
    }

    /// The underlying vm-memory object (for loaders).
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Bytes of RAM.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ask the host kernel to back guest RAM with transparent huge pages:
    /// the first touch of guest memory then costs one host fault per 2 MiB
    /// instead of one per 4 KiB. Advisory: an error is ignored.
    pub fn advise_huge_pages(&self) {
        let Ok(host) = self.host_ptr(0, self.size) else {
            return;
        };
        // SAFETY: madvise only changes the paging policy of our own live
        // mapping of `size` bytes; it does not change its contents.
        unsafe { libc::madvise(host.cast(), self.size as usize, libc::MADV_HUGEPAGE) };
    }

    /// Ask the host kernel to back `[gpa, gpa + len)` with 4 KiB pages
    /// after all: for guest memory that a run touches only here and there
    /// (the kernel image's first two 2 MiB regions, the kernel heap at the
    /// top), where the first touch of a transparent huge page would zero
    /// 2 MiB (about 0.7 ms here) for the few pages used. Advisory: an
    /// error is ignored.
    pub fn advise_small_pages(&self, gpa: u64, len: u64) {
        let Ok(host) = self.host_ptr(gpa, len) else {
            return;
        };
        // SAFETY: as for `advise_huge_pages`: a policy change of part of
        // our own live mapping, checked to lie inside it.
        unsafe { libc::madvise(host.cast(), len as usize, libc::MADV_NOHUGEPAGE) };
    }

    /// Back `[gpa, gpa + len)` with `file` from `offset` instead of the
    /// anonymous memory there, privately (a write copies the page): its
    /// pages then come from the host's page cache as they are first
    /// touched, instead of being faulted in and copied all at once. All
    /// three page-aligned; only before the vCPU first runs, while nothing
    /// else uses that part of guest RAM. Whether it was mapped: where it
    /// was not (an unaligned request, a file the host cannot map), the
    /// range is still the anonymous memory it was. An error for a range
    /// outside RAM, or if a failed mapping left a hole that fresh memory
    /// could not fill (guest RAM is then unusable).
    pub fn map_file(&self, gpa: u64, len: u64, file: &std::fs::File, offset: u64) -> Result<bool> {
        use std::os::fd::AsRawFd;
        let page = vmrun_contract::layout::PAGE_SIZE;
        let offset = i64::try_from(offset)
            .ok()
            .filter(|&o| (o as u64).is_multiple_of(page));
        let aligned = gpa.is_multiple_of(page) && len.is_multiple_of(page) && len > 0;
        let (Some(offset), true) = (offset, aligned) else {
            return Ok(false);
        };
        let host = self.host_ptr(gpa, len)?;
        // SAFETY: MAP_FIXED replaces pages inside our own mapping of guest
        // RAM (checked above) with a private mapping of the same size and
        // rights; no reference into them is live (the loading thread,
        // the only user of guest RAM before the first run, calls this).
        let p = unsafe {
            libc::mmap(
                host.cast(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                offset,
            )
        };
        if p == host.cast() {
            return Ok(true);
        }
        let error = std::io::Error::last_os_error();
        // A failed MAP_FIXED may have unmapped the range: put fresh memory
        // back, so that guest RAM has no hole.
        // SAFETY: as above, anonymous memory in place of the same range.
        let back = unsafe {
            libc::mmap(
                host.cast(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        match back == host.cast() {
            true => Ok(false),
            false => Err(Error::Memory(format!(
                "mapping a file at {gpa:#x} failed ({error}) and left guest RAM there unmapped: {}",
                std::io::Error::last_os_error()
            ))),
        }
    }

    /// Register the RAM with the VM as memory slot 0.
    pub fn register(&self, vm: &VmFd) -> Result<()> {
        let host = self.host_ptr(0, self.size)?;
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: self.size,
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping of `size` bytes owned by
        // `self.mem`, which the `Vm` keeps alive for as long as the VM fd.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| Error::KvmIoctl("KVM_SET_USER_MEMORY_REGION", e))
    }

    fn check(&self, gpa: u64, len: u64) -> Result<()> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::Memory(format!(
                "range {gpa:#x}+{len:#x} lies outside guest RAM ({:#x} bytes)",
                self.size
            ))),
        }
    }

    fn host_ptr(&self, gpa: u64, len: u64) -> Result<*mut u8> {
        self.check(gpa, len)?;
        self.mem
            .get_host_address(GuestAddress(gpa))
            .map_err(|e| Error::Memory(format!("{gpa:#x}: {e}")))
    }

    /// Copy `data` into guest memory at `gpa`.
    pub fn write_bytes(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.check(gpa, data.len() as u64)?;
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|e| Error::Memory(format!("write at {gpa:#x}: {e}")))
    }

    /// Read `len` bytes of `file` (from its current offset) straight into
    /// guest memory at `gpa`, without a copy in between; a file shorter
    /// than `len` is an error.
    pub fn read_file_into(&self, gpa: u64, file: &std::fs::File, len: u64) -> Result<()> {
        self.check(gpa, len)?;
        let mut src = file;
        self.mem
            .read_exact_volatile_from(GuestAddress(gpa), &mut src, len as usize)
            .map_err(|e| Error::Memory(format!("reading the program into {gpa:#x}: {e}")))
    }

    /// Copy guest memory at `gpa` into `buf`.
    pub fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.check(gpa, buf.len() as u64)?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|e| Error::Memory(format!("read at {gpa:#x}: {e}")))
    }

    /// Write a contract structure at `gpa`.
    pub fn write_pod<T: Pod>(&self, gpa: u64, val: &T) -> Result<()> {
        // SAFETY: `T: Pod` has no padding, so all its bytes are initialised.
        let bytes = unsafe {
            std::slice::from_raw_parts(val as *const T as *const u8, std::mem::size_of::<T>())
        };
        self.write_bytes(gpa, bytes)
    }

    /// Read a contract structure from `gpa`.
    pub fn read_pod<T: Pod + Default>(&self, gpa: u64) -> Result<T> {
        let mut val = T::default();
        self.read_bytes(gpa, pod_bytes_mut(&mut val))?;
        Ok(val)
    }

    /// Set `len` bytes at `gpa` to zero.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<()> {
        let p = self.host_ptr(gpa, len)?;
        // SAFETY: `host_ptr` checked that [gpa, gpa+len) lies in the mapping.
        unsafe { std::ptr::write_bytes(p, 0, len as usize) };
        Ok(())
    }

    /// Copy `len` bytes from `src` to `dst` inside guest memory.
    pub fn copy_within(&self, dst: u64, src: u64, len: u64) -> Result<()> {
        let d = self.host_ptr(dst, len)?;
        let s = self.host_ptr(src, len)?;
        // SAFETY: both ranges were checked to lie in the mapping; `copy`
        // is correct even if they overlap.
        unsafe { std::ptr::copy(s, d, len as usize) };
        Ok(())
    }

    /// Borrow `len` bytes at `gpa` (for writing guest output to a host fd).
    pub fn slice(&self, gpa: u64, len: u64) -> Result<&[u8]> {
        let p = self.host_ptr(gpa, len)?;
        // SAFETY: checked range; the vCPU is stopped while the VMM handles a
        // hypercall, so nothing writes the memory during the borrow.
        Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    /// Mutably borrow `len` bytes at `gpa` (for reading host input).
    #[allow(clippy::mut_from_ref)]
    pub fn slice_mut(&self, gpa: u64, len: u64) -> Result<&mut [u8]> {
        let p = self.host_ptr(gpa, len)?;
        // SAFETY: checked range; the vCPU is stopped and the VMM holds no
        // other borrow of guest memory while filling it.
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_structs_have_no_padding() {
        assert_eq!(
            std::mem::size_of::<trace::Record>() as u64,
            trace::RECORD_SIZE
        );
        assert_eq!(std::mem::size_of::<trace::RingHeader>(), 32);
        assert_eq!(std::mem::size_of::<VmaRecord>(), 40);
        assert_eq!(std::mem::size_of::<vmrun_contract::SpaceRecord>(), 18 * 8);
        assert_eq!(
            std::mem::size_of::<VmaExport>(),
            8 + 96 + 256 * 40 + 24 + 8 + 64 * 256 + 24 + 8 + 128 * 144 + 8 + 4096 * 40
        );
        assert_eq!(
            std::mem::size_of::<BootInfo>(),
            27 * 8 + 16 + 8 + 16 + 8 * 4
        );
        assert_eq!(
            std::mem::size_of::<FsRequest>(),
            8 + 6 * 8 + 4 * 8 + 8 + 8 * 9 + 3 * 8 + 256 + 2 * 4096
        );
        assert_eq!(std::mem::size_of::<Hypercall>(), 8 * 8);
        assert_eq!(std::mem::size_of::<IoVec>(), 16);
        assert_eq!(std::mem::size_of::<vmrun_contract::UserStrings>(), 11 * 8);
    }

    #[test]
    fn a_file_maps_over_guest_ram_or_leaves_it_as_it_was() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let path = std::env::temp_dir().join(format!("vmrun-map-file-{}", std::process::id()));
        std::fs::write(&path, [7u8; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(ram.map_file(0x4000, 0x2000, &file, 0).unwrap());
        let mut buf = [0u8; 4];
        ram.read_bytes(0x5ffc, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        // Private: the guest's write stays in guest RAM.
        ram.write_bytes(0x4000, &[1]).unwrap();
        let mut back = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, 0).unwrap();
        assert_eq!(back, [7]);
        // Unaligned, or a file the host cannot map (a directory): not
        // mapped, and the memory there is still RAM.
        assert!(!ram.map_file(0x8800, 0x1000, &file, 0).unwrap());
        assert!(!ram.map_file(0x8000, 0x1000, &file, 0x800).unwrap());
        let not_mappable = std::fs::File::open(std::env::temp_dir()).unwrap();
        assert!(!ram.map_file(0x8000, 0x1000, &not_mappable, 0).unwrap());
        ram.write_bytes(0x8000, &[5; 8]).unwrap();
        let mut eight = [0u8; 8];
        ram.read_bytes(0x8000, &mut eight).unwrap();
        assert_eq!(eight, [5; 8]);
        assert!(ram.map_file(0xff000, 0x2000, &file, 0).is_err(), "past RAM");
    }

    #[test]
    fn access_past_the_end_of_ram_is_refused() {
        let ram = GuestRam::new(1 << 20).unwrap();
        assert!(ram.write_bytes((1 << 20) - 2, &[1, 2, 3]).is_err());
        assert!(ram.zero(u64::MAX - 1, 4).is_err());
        assert!(ram.copy_within(0, 1 << 20, 1).is_err());
    }

    #[test]
    fn pod_round_trips_through_guest_memory() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let v = IoVec {
            phys: 0x1234,
            len: 99,
        };
        ram.write_pod(0x800, &v).unwrap();
        assert_eq!(ram.read_pod::<IoVec>(0x800).unwrap(), v);
    }

    #[test]
    fn a_file_is_read_straight_into_guest_memory_and_a_short_one_refused() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("vmrun-read-into-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"program bytes")
            .unwrap();
        let ram = GuestRam::new(1 << 20).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        ram.read_file_into(0x3000, &file, 13).unwrap();
        let mut buf = [0u8; 13];
        ram.read_bytes(0x3000, &mut buf).unwrap();
        assert_eq!(&buf, b"program bytes");
        let file = std::fs::File::open(&path).unwrap();
        assert!(ram.read_file_into(0x3000, &file, 14).is_err(), "shorter");
        let file = std::fs::File::open(&path).unwrap();
        assert!(ram.read_file_into((1 << 20) - 4, &file, 13).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn zero_and_copy_within_move_bytes() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_bytes(0x100, b"abcdef").unwrap();
        ram.copy_within(0x200, 0x100, 6).unwrap();
        ram.zero(0x102, 2).unwrap();
        let mut buf = [0u8; 6];
        ram.read_bytes(0x200, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        ram.read_bytes(0x100, &mut buf).unwrap();
        assert_eq!(&buf, b"ab\0\0ef");
    }
}
