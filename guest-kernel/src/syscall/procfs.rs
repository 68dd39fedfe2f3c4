//! The per-process `/proc` files that need the process: status, stat,
//! cmdline and environ (read from its memory), and the machine-wide ones.

use alloc::vec::Vec;

use super::{Ctx, HostIo};
use crate::fs::cache::InodeKey;
use crate::fs::host::{self, begin, set_path};
use crate::fs::proc::{self, Text};
use crate::fs::stat;
use crate::mm::phys::PhysMem;
use crate::uaccess::copy_from_user;
use vmrun_contract::fs::{op, ROOT_HANDLE};

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// The bytes of user memory `[start, end)` (empty where unreadable).
pub fn user_range<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    start: u64,
    end: u64,
) -> Vec<u8> {
    let len = end.saturating_sub(start).min(1 << 20) as usize;
    let mut b = alloc::vec![0u8; len];
    if copy_from_user(&mut cx.p.mm, cx.env, start, &mut b).is_err() {
        b.clear();
    }
    b
}

/// The boot program's inode learns its host identity (device and inode
/// number, for maps) the first time a maps listing needs it.
pub fn fill_image_identity<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    let Some(id) = cx.p.image_inode else { return };
    let Some(ino) = cx.env.cache.get(id) else {
        return;
    };
    if ino.key != InodeKey::UNKNOWN {
        return;
    }
    let path = ino.path.clone();
    let r = begin(&mut *cx.env.host, op::STAT, ROOT_HANDLE);
    if set_path(r, false, &path).is_err() || host::call(&mut *cx.env.host, &[]).is_err() {
        return;
    }
    let info = stat::statx_info(&stat::statx_bytes(&cx.env.host.req().statx));
    cx.env.cache.set_key(
        id,
        InodeKey {
            dev: info.dev,
            ino: info.ino,
        },
    );
}

fn kb(pages: u64) -> u64 {
    pages * 4
}

/// `/proc/self/status`.
pub fn status<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, t: &mut Text) {
    let comm = cx.p.comm();
    let name = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(16)];
    let vsz: u64 = cx.p.mm.vmas.iter().map(|v| v.end - v.start).sum::<u64>() / 4096;
    let rss = cx.p.mm.user_frames;
    let pid = cx.p.pid;
    t.s(b"Name:\t")
        .s(name)
        .s(b"\nUmask:\t0")
        .dec(u64::from(cx.p.umask >> 6 & 7))
        .dec(u64::from(cx.p.umask >> 3 & 7))
        .dec(u64::from(cx.p.umask & 7));
    t.s(b"\nState:\tR (running)\nTgid:\t")
        .dec(pid)
        .s(b"\nNgid:\t0\nPid:\t")
        .dec(pid);
    t.s(b"\nPPid:\t0\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\n");
    t.s(b"VmPeak:\t")
        .dec(kb(vsz))
        .s(b" kB\nVmSize:\t")
        .dec(kb(vsz))
        .s(b" kB\n");
    t.s(b"VmHWM:\t")
        .dec(kb(cx.p.mm.peak_user_frames()))
        .s(b" kB\nVmRSS:\t")
        .dec(kb(rss))
        .s(b" kB\n");
    let (ignored, caught) = crate::signal::ignored_and_caught(&cx.p.sigactions);
    t.s(
        b"Threads:\t1\nSigQ:\t0/0\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t",
    )
    .hex(cx.p.sigmask, 16)
    .s(b"\nSigIgn:\t")
    .hex(ignored, 16)
    .s(b"\nSigCgt:\t")
    .hex(caught, 16);
    t.s(b"\nCpus_allowed:\t1\nCpus_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n");
}

/// `/proc/self/stat` (the fields programs read: pid, comm, state, ppid,
/// and the memory sizes).
pub fn stat<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, t: &mut Text) {
    let comm = cx.p.comm();
    let name = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(16)];
    let vsz: u64 = cx.p.mm.vmas.iter().map(|v| v.end - v.start).sum();
    t.dec(cx.p.pid)
        .s(b" (")
        .s(&name[..name.len().min(15)])
        .s(b") R 0 ")
        .dec(cx.p.pid)
        .s(b" ")
        .dec(cx.p.pid);
    t.s(b" 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 0 ")
        .dec(vsz)
        .s(b" ")
        .dec(cx.p.mm.user_frames);
    t.s(b" 18446744073709551615 ")
        .dec(cx.p.mm.start_code)
        .s(b" ")
        .dec(cx.p.mm.end_code)
        .s(b" ")
        .dec(cx.p.mm.start_stack);
    t.s(b" 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 ")
        .dec(cx.p.mm.start_data)
        .s(b" ")
        .dec(cx.p.mm.end_data)
        .s(b" ")
        .dec(cx.p.mm.start_brk);
    t.s(b" ")
        .dec(cx.p.mm.arg_start)
        .s(b" ")
        .dec(cx.p.mm.arg_end)
        .s(b" ")
        .dec(cx.p.mm.env_start)
        .s(b" ")
        .dec(cx.p.mm.env_end)
        .s(b" 0\n");
}

/// `/proc/cpuinfo`: the guest's one CPU.
pub fn cpuinfo<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, t: &mut Text) {
    let _ = cx;
    t.s(b"processor\t: 0\nvendor_id\t: vmrun\nmodel name\t: vmrun virtual CPU\ncpu MHz\t\t: 0.000\ncache size\t: 0 KB\nphysical id\t: 0\nsiblings\t: 1\ncore id\t\t: 0\ncpu cores\t: 1\napicid\t\t: 0\nfpu\t\t: yes\nflags\t\t: fpu sse sse2 syscall nx lm\nbogomips\t: 0.00\naddress sizes\t: 46 bits physical, 48 bits virtual\n\n");
}

/// `/proc/meminfo`: the guest's RAM and what is free of it.
pub fn meminfo<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, t: &mut Text) {
    let total = cx.env.frames.total();
    let free = total - cx.env.frames.in_use();
    let cached = cx.env.cache.frames_held();
    t.s(b"MemTotal:       ")
        .dec(kb(total))
        .s(b" kB\nMemFree:        ")
        .dec(kb(free))
        .s(b" kB\nMemAvailable:   ")
        .dec(kb(free + cached));
    t.s(b" kB\nBuffers:        0 kB\nCached:         ")
        .dec(kb(cached))
        .s(b" kB\nSwapTotal:      0 kB\nSwapFree:       0 kB\n");
}

/// `/proc/uptime`.
pub fn uptime<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, t: &mut Text) {
    let ns = cx.host.now_ns(super::time::Clock::Monotonic);
    let cs = ns / 10_000_000;
    t.dec(cs / 100)
        .s(b".")
        .dec(cs % 100 / 10)
        .dec(cs % 10)
        .s(b" 0.00\n");
}

/// `/proc/self/auxv`: the auxiliary vector as it lies above the initial
/// stack pointer (Linux keeps a copy; programs do not overwrite theirs).
pub fn auxv<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) -> Vec<u8> {
    let sp = cx.p.mm.start_stack;
    let word = |cx: &mut Cx<'_, '_, '_, M, H>, va: u64| {
        crate::uaccess::get_user_u64(&mut cx.p.mm, cx.env, va).ok()
    };
    let Some(argc) = word(cx, sp) else {
        return Vec::new();
    };
    let mut va = sp + 8 * (argc + 2);
    for _ in 0..100_000 {
        match word(cx, va) {
            Some(0) => break,
            Some(_) => va += 8,
            None => return Vec::new(),
        }
    }
    let start = va + 8;
    let mut end = start;
    for _ in 0..64 {
        let Some(t) = word(cx, end) else { break };
        end += 16;
        if t == 0 {
            break;
        }
    }
    user_range(cx, start, end)
}

/// What each area of the process holds now (one walk of its leaves).
fn usage_of<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    start: u64,
    end: u64,
) -> proc::Usage {
    use crate::mm::paging::{pte, LeafAction, PageSize};
    let mut u = proc::Usage::default();
    let env = &mut *cx.env;
    let _ =
        cx.p.mm
            .pt
            .update_range(env.mem, env.frames, start, end, |m, fr, l| {
                if l.flags & pte::P != 0 {
                    let bytes = l.size.bytes();
                    u.rss += bytes;
                    if l.flags & pte::D != 0 && l.flags & pte::RW != 0 {
                        u.dirty += bytes;
                    }
                    if fr.is_private(m, l.frame) {
                        u.anon += bytes;
                        if l.size == PageSize::Size2M {
                            u.anon_huge += bytes;
                        }
                    }
                }
                LeafAction::Keep
            });
    u
}

/// `/proc/self/smaps` (`rollup`: `/proc/self/smaps_rollup`).
pub fn smaps<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, rollup: bool) -> Vec<u8> {
    fill_image_identity(cx);
    let areas: Vec<crate::mm::vma::Vma> = cx.p.mm.vmas.iter().copied().collect();
    let mut t = Text::default();
    let mut total = proc::Usage::default();
    for v in &areas {
        let u = usage_of(cx, v.start, v.end);
        if rollup {
            total.rss += u.rss;
            total.dirty += u.dirty;
            total.anon += u.anon;
            total.anon_huge += u.anon_huge;
            continue;
        }
        proc::map_line(&mut t, &cx.p.mm, cx.env.cache, v);
        proc::smaps_fields(&mut t, v.end - v.start, &u, false);
        let special = match v.backing {
            crate::mm::vma::Backing::File { file, .. } => {
                cx.env.cache.get(file).is_some_and(|i| i.special)
            }
            crate::mm::vma::Backing::Anon => false,
        };
        t.s(b"THPeligible:           0\nVmFlags: ")
            .s(&proc::vm_flags(v, special))
            .s(b"\n");
    }
    if rollup {
        let (lo, hi) = (
            areas.first().map_or(0, |v| v.start),
            areas.last().map_or(0, |v| v.end),
        );
        let line = t.0.len();
        t.hex(lo, 8).s(b"-").hex(hi, 8).s(b" ---p 00000000 00:00 0");
        t.pad(72, line).s(b" [rollup]\n");
        proc::smaps_fields(&mut t, 0, &total, true);
    }
    t.0
}
