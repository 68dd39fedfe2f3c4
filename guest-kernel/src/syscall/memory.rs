//! mmap, munmap, mprotect, brk, mremap, madvise, msync, mincore, mlock:
//! thin decoders over `mm`, plus what file mappings need from the fd
//! table (the file's page-cache inode, access checks) and the write-back
//! of shared writable file mappings.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::fs::dev::DevNode;
use crate::fs::file::{o, Node};
use crate::fs::host::{self, begin};
use crate::mm::mmap::{map, prot};
use crate::mm::paging::pte;
use crate::mm::phys::PhysMem;
use crate::mm::space::{Mm, MmEnv};
use crate::mm::vma::{Backing, Prot, VmFlags, Vma};
use crate::uaccess::copy_to_user;
use alloc::rc::Rc;
use vmrun_contract::fs::op;
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE, TASK_SIZE};
use vmrun_contract::IoVec;

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// mmap(addr, len, prot, flags, fd, offset)
pub fn mmap<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, a: [u64; 6]) -> KResult<i64> {
    mmap_of(cx.p, cx.env, a)
}

/// [`mmap`] on the syscall stub's short path (`run::short_call`), `a` its
/// six arguments, by process `p`: served by its fds, its address space
/// and the page cache alone, as [`mmap`] serves it (it reads and changes
/// nothing else of the caller's, and neither blocks nor signals), as
/// [`mprotect_short`] serves mprotect. The caller flushes the TLB after
/// it (a fixed mapping may replace pages).
pub fn mmap_short<M: PhysMem>(
    p: &mut crate::process::Process,
    env: &mut MmEnv<'_, M>,
    a: [u64; 6],
) -> i64 {
    match mmap_of(p, env, a) {
        Ok(addr) => addr,
        Err(e) => e.to_ret(),
    }
}

/// [`mmap_short`] of an anonymous mapping (`a[3]` has MAP_ANONYMOUS),
/// served by the caller's address space `mm` alone (with no file, it
/// reads no fd and keeps no file mapped): without the fd table's and the
/// file's code in the way, a dozen and more instructions less.
pub fn mmap_anon_short<M: PhysMem>(mm: &mut Mm, env: &mut MmEnv<'_, M>, a: [u64; 6]) -> i64 {
    debug_assert!(a[3] & map::ANONYMOUS != 0);
    match mm.mmap(env, a[0], a[1], a[2], a[3], None, a[5]) {
        Ok(addr) => addr as i64,
        Err(e) => e.to_ret(),
    }
}

/// [`mmap`] by process `p`, its memory and page cache in `env`.
#[inline(always)]
fn mmap_of<M: PhysMem>(
    p: &mut crate::process::Process,
    env: &mut MmEnv<'_, M>,
    a: [u64; 6],
) -> KResult<i64> {
    let (addr, len, pr, mut flags, fd, off) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let mut file = None;
    if flags & map::ANONYMOUS == 0 {
        let f = p.fds.file(fd as i32 as i64 as u64)?;
        let b = f.borrow();
        let shared = flags & map::TYPE != map::PRIVATE;
        match b.node {
            Node::Host {
                inode: Some(id), ..
            } => {
                if !b.readable() || shared && pr & prot::WRITE != 0 && !b.writable() {
                    return Err(Errno::EACCES);
                }
                if b.flags & o::APPEND != 0 && shared && pr & prot::WRITE != 0 {
                    return Err(Errno::EACCES);
                }
                file = Some(id);
            }
            Node::Dev(DevNode::Zero) => flags |= map::ANONYMOUS,
            Node::Host { .. } if b.flags & o::PATH != 0 => return Err(Errno::EBADF),
            _ => return Err(Errno::ENODEV),
        }
        drop(b);
        if let Some(id) = file {
            // The mapping keeps the file usable (and, for shared
            // writable mappings, a writable handle) until the run ends.
            env.cache.get_ref(id);
            // A file mapped again at once (a library's segments, an mmap
            // each) is kept once: the list answers the same.
            let again = p.mapped_files.last().is_some_and(|l| Rc::ptr_eq(l, &f));
            if !again {
                p.mapped_files.push(f);
            }
        }
    }
    let addr = p.mm.mmap(env, addr, len, pr, flags, file, off)?;
    Ok(addr as i64)
}

/// munmap(addr, len): shared file pages are written back first.
pub fn munmap<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
) -> KResult<i64> {
    if addr & (PAGE_SIZE - 1) == 0 && len > 0 {
        writeback(cx, addr, addr.saturating_add(len));
    }
    cx.p.mm.munmap(cx.env, addr, len).map(|_| 0)
}

/// mprotect(addr, len, prot)
pub fn mprotect<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
    pr: u64,
) -> KResult<i64> {
    cx.p.mm.mprotect(cx.env, addr, len, pr).map(|_| 0)
}

/// [`mprotect`] on the syscall stub's short path (`run::short_call`),
/// `a` its three arguments: served by the caller's address space `mm`
/// alone, as [`mprotect`] serves it (it reads and changes nothing else of
/// the caller's, and neither blocks nor signals). The caller flushes the
/// TLB after it, as it would after any call.
pub fn mprotect_short<M: PhysMem>(mm: &mut Mm, env: &mut MmEnv<'_, M>, a: [u64; 3]) -> i64 {
    match mm.mprotect(env, a[0], a[1], a[2]) {
        Ok(()) => 0,
        Err(e) => e.to_ret(),
    }
}

/// [`munmap`] on the syscall stub's short path (`run::short_call`), `a`
/// its two arguments, by process `p`: served by its address space alone
/// when no mapped file is open for writing (then [`munmap`] has nothing to
/// write back, and reads and changes nothing else of the caller's); None,
/// having done nothing, otherwise. The caller flushes the TLB after it,
/// as it would after any call.
pub fn munmap_short<M: PhysMem>(
    p: &mut crate::process::Process,
    env: &mut MmEnv<'_, M>,
    a: [u64; 2],
) -> Option<i64> {
    if writable_mapped(p) {
        return None;
    }
    Some(match p.mm.munmap(env, a[0], a[1]) {
        Ok(()) => 0,
        Err(e) => e.to_ret(),
    })
}

/// brk(addr): the new break, or the old one if it could not move.
pub fn brk<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, addr: u64) -> i64 {
    cx.p.mm.brk(cx.env, addr) as i64
}

/// mremap(old, old_len, new_len, flags, new_addr)
pub fn mremap<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, a: [u64; 6]) -> KResult<i64> {
    let r = cx.p.mm.mremap(cx.env, a[0], a[1], a[2], a[3], a[4])?;
    Ok(r as i64)
}

/// Check that `[addr, addr + len)` is page aligned at its start and wholly
/// mapped; returns its page-aligned end.
fn mapped_range<M: PhysMem, H: HostIo>(
    cx: &Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
) -> KResult<Option<u64>> {
    if addr & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    let len = crate::mm::space::page_align_up(len).ok_or(Errno::ENOMEM)?;
    if len == 0 {
        return Ok(None);
    }
    let end = addr
        .checked_add(len)
        .filter(|&e| e <= TASK_SIZE)
        .ok_or(Errno::ENOMEM)?;
    let mut a = addr;
    while a < end {
        let i = cx.p.mm.vmas.find(a).ok_or(Errno::ENOMEM)?;
        a = cx.p.mm.vmas[i].end;
    }
    Ok(Some(end))
}

/// madvise(addr, len, advice): DONTNEED and FREE drop the pages (zero on
/// the next touch for anonymous memory); every other advice Linux knows is
/// accepted as a hint.
pub fn madvise<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
    advice: u64,
) -> KResult<i64> {
    const DONTNEED: u64 = 4;
    const FREE: u64 = 8;
    const KNOWN: [u64; 21] = [
        0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    ];
    if !KNOWN.contains(&advice) {
        return Err(Errno::EINVAL);
    }
    let Some(end) = mapped_range(cx, addr, len)? else {
        return Ok(0);
    };
    if advice == DONTNEED || advice == FREE {
        cx.p.mm.zap_range(cx.env, addr, end)?;
    }
    Ok(0)
}

/// mincore(addr, len, vec): one byte per page, 1 where a page is mapped.
/// The vector is filled one 2 MiB region (512 bytes) at a time, so that a
/// range of any size needs no kernel memory, and an empty region costs one
/// walk rather than one per page.
pub fn mincore<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
    vec: u64,
) -> KResult<i64> {
    let Some(end) = mapped_range(cx, addr, len)? else {
        return Ok(0);
    };
    let mut out = [0u8; (HUGE_PAGE_SIZE / PAGE_SIZE) as usize];
    let (mut va, mut dst) = (addr, vec);
    while va < end {
        let step_end = ((va | (HUGE_PAGE_SIZE - 1)) + 1).min(end);
        let out = &mut out[..((step_end - va) / PAGE_SIZE) as usize];
        let pt = &cx.p.mm.pt;
        let empty = pt.is_2m_region_empty(cx.env.mem, va);
        for (k, b) in out.iter_mut().enumerate() {
            let t = (!empty).then(|| pt.translate(cx.env.mem, va + k as u64 * PAGE_SIZE));
            let present = t.flatten().is_some_and(|t| t.flags & pte::P != 0);
            *b = u8::from(present);
        }
        copy_to_user(&mut cx.p.mm, cx.env, dst, out)?;
        dst += out.len() as u64;
        va = step_end;
    }
    Ok(0)
}

/// msync(addr, len, flags): shared file pages are written back.
pub fn msync<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
    flags: u64,
) -> KResult<i64> {
    const ASYNC: u64 = 1;
    const INVALIDATE: u64 = 2;
    const SYNC: u64 = 4;
    if flags & !(ASYNC | INVALIDATE | SYNC) != 0 || flags & ASYNC != 0 && flags & SYNC != 0 {
        return Err(Errno::EINVAL);
    }
    let Some(end) = mapped_range(cx, addr, len)? else {
        return Ok(0);
    };
    writeback(cx, addr, end);
    Ok(0)
}

/// mlock/munlock(addr, len): every page stays in RAM anyway.
pub fn mlock<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    addr: u64,
    len: u64,
) -> KResult<i64> {
    let start = addr & !(PAGE_SIZE - 1);
    mapped_range(cx, start, len + (addr - start)).map(|_| 0)
}

/// Write the present pages of shared writable file mappings in
/// `[start, end)` back to their files.
pub fn writeback<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, start: u64, end: u64) {
    if !any_writable_mapped(cx) {
        return;
    }
    // The areas from the first ending past `start`, not every area.
    let vmas = &cx.p.mm.vmas;
    let first = vmas.find_next(start).unwrap_or(vmas.len());
    let areas: alloc::vec::Vec<_> = (first..vmas.len())
        .map_while(|i| vmas.get(i).filter(|v| v.start < end))
        .filter(|v| shared_writable(v))
        .copied()
        .collect();
    write_back_areas(cx, areas, start, end);
}

/// [`writeback`] of the whole address space (at an exec or an exit): the
/// areas read a leaf of the area tree at a time, not looked up one by one
/// (most address spaces have no shared writable mapping at all, and
/// then none is looked at).
#[inline]
pub fn writeback_all<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    if any_writable_mapped(cx) {
        write_back_all_areas(cx);
    }
}

/// [`writeback_all`] once a mapped file is open for writing (out of
/// line: the exec's path, which calls it, keeps the registers it had).
#[inline(never)]
fn write_back_all_areas<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    let mut areas = alloc::vec::Vec::new();
    cx.p.mm.vmas.for_each_leaf(|leaf| {
        areas.extend(leaf.iter().filter(|v| shared_writable(v)).copied());
    });
    write_back_areas(cx, areas, 0, vmrun_contract::layout::TASK_SIZE);
}

/// Whether a file mapped is open for writing: without one no area has
/// pages to write back ([`writable_handle`] finds no handle for any), so
/// the areas need not be looked at (a dynamic linker's munmap of the
/// cache it read).
fn any_writable_mapped<M: PhysMem, H: HostIo>(cx: &Cx<'_, '_, '_, M, H>) -> bool {
    writable_mapped(cx.p)
}

/// [`any_writable_mapped`] of process `p`.
#[inline(always)]
fn writable_mapped(p: &crate::process::Process) -> bool {
    p.mapped_files.iter().any(|f| f.borrow().writable())
}

/// Whether writes to area `v` go to its file (or shared memory).
fn shared_writable(v: &Vma) -> bool {
    v.flags.contains(VmFlags::SHARED) && v.prot.contains(Prot::WRITE)
}

/// Write the present pages of `areas` (shared and writable) within
/// `[start, end)` back to their files.
fn write_back_areas<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    areas: alloc::vec::Vec<Vma>,
    start: u64,
    end: u64,
) {
    for v in areas {
        let Backing::File { file, offset, .. } = v.backing else {
            continue;
        };
        let Some(handle) = writable_handle(cx, file) else {
            continue;
        };
        let size = cx.env.cache.get(file).map_or(0, |i| i.size);
        let mut wrote = false;
        let mut a = v.start.max(start);
        while a < v.end.min(end) {
            let off = offset + (a - v.start);
            let t = cx.p.mm.pt.translate(cx.env.mem, a);
            if let Some(t) = t.filter(|t| t.flags & crate::mm::paging::pte::RW != 0) {
                if off < size {
                    let iov = [IoVec {
                        phys: t.frame,
                        len: (size - off).min(PAGE_SIZE),
                    }];
                    begin(&mut *cx.env.host, op::PWRITE, handle).offset = off;
                    let _ = host::call(&mut *cx.env.host, &iov);
                    wrote = true;
                }
            }
            a += PAGE_SIZE;
        }
        if wrote {
            cx.env.cache.written_back(file);
        }
    }
}

/// A writable host handle of inode `id` among the mapped files.
fn writable_handle<M: PhysMem, H: HostIo>(cx: &Cx<'_, '_, '_, M, H>, id: u16) -> Option<u64> {
    cx.p.mapped_files.iter().find_map(|f| {
        let b = f.borrow();
        match b.node {
            Node::Host {
                handle,
                inode: Some(i),
                ..
            } if i == id && b.writable() => Some(handle),
            _ => None,
        }
    })
}
