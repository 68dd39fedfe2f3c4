//! The program's registers as gdb's x86-64 Linux target description has
//! them, from and to where the guest kernel saved them: its trap frame
//! ([`UserFrame`]) and the FXSAVE image, and the FS and GS bases the stop
//! reports.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
use gdbstub_arch::x86::reg::{X86_64CoreRegs, F80};
use gdbstub_arch::x86::X86_64_SSE;
use vmrun_contract::debug::UserFrame;

/// x86-64 as gdb describes a Linux process: `gdbstub_arch`'s core and SSE
/// registers, then orig_rax and the FS and GS bases, in the order of
/// gdb's amd64 Linux description (core, sse, linux, segments), which gdb
/// takes since the target description names no registers of its own.
pub enum X86_64Linux {}

impl Arch for X86_64Linux {
    type Usize = u64;
    type Registers = LinuxRegs;
    type RegId = X86_64CoreRegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        X86_64_SSE::target_description_xml()
    }
}

/// The registers of [`X86_64Linux`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinuxRegs {
    /// General, x87 and SSE registers.
    pub core: X86_64CoreRegs,
    /// The system call number at a system call stop; -1 here (no stop is
    /// inside a system call).
    pub orig_rax: u64,
    /// FS base (glibc's thread pointer).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
}

/// Bytes of the core and SSE registers in gdb's `g` packet.
const CORE_BYTES: usize = 0x218;

impl Registers for LinuxRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for word in [self.orig_rax, self.fs_base, self.gs_base] {
            for b in word.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.core.gdb_deserialize(bytes)?;
        let words: Vec<u64> = bytes
            .get(CORE_BYTES..)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if let [orig_rax, fs_base, gs_base, ..] = words[..] {
            (self.orig_rax, self.fs_base, self.gs_base) = (orig_rax, fs_base, gs_base);
        }
        Ok(())
    }
}

fn u16_at(fx: &[u8; 512], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([fx[at], fx[at + 1]]))
}

fn u32_at(fx: &[u8; 512], at: usize) -> u32 {
    u32::from_le_bytes([fx[at], fx[at + 1], fx[at + 2], fx[at + 3]])
}

/// gdb's full tag word from FXSAVE's abridged one: a register in use is
/// shown valid (00), an empty one empty (11).
fn full_tag(abridged: u8) -> u32 {
    (0..8).fold(0, |tag, i| match abridged & (1 << i) {
        0 => tag | 3 << (2 * i),
        _ => tag,
    })
}

/// FXSAVE's abridged tag from gdb's full one.
fn abridged_tag(full: u32) -> u8 {
    (0..8).fold(0, |tag, i| match (full >> (2 * i)) & 3 {
        3 => tag,
        _ => tag | 1 << i,
    })
}

/// Fill `regs` from the saved frame and FXSAVE image.
pub fn to_gdb(f: &UserFrame, fx: &[u8; 512], regs: &mut X86_64CoreRegs) {
    regs.regs = [
        f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp, f.r8, f.r9, f.r10, f.r11, f.r12,
        f.r13, f.r14, f.r15,
    ];
    regs.rip = f.rip;
    regs.eflags = f.rflags as u32;
    regs.segments.cs = f.cs as u32;
    regs.segments.ss = f.ss as u32;
    regs.segments.ds = 0;
    regs.segments.es = 0;
    regs.segments.fs = 0;
    regs.segments.gs = 0;
    for (i, st) in regs.st.iter_mut().enumerate() {
        let at = 32 + 16 * i;
        let mut v: F80 = [0; 10];
        v.copy_from_slice(&fx[at..at + 10]);
        *st = v;
    }
    regs.fpu.fctrl = u16_at(fx, 0);
    regs.fpu.fstat = u16_at(fx, 2);
    regs.fpu.ftag = full_tag(fx[4]);
    regs.fpu.fop = u16_at(fx, 6);
    regs.fpu.fioff = u32_at(fx, 8);
    regs.fpu.fiseg = u32_at(fx, 12) & 0xffff;
    regs.fpu.fooff = u32_at(fx, 16);
    regs.fpu.foseg = u32_at(fx, 20) & 0xffff;
    for (i, x) in regs.xmm.iter_mut().enumerate() {
        let at = 160 + 16 * i;
        let mut b = [0u8; 16];
        b.copy_from_slice(&fx[at..at + 16]);
        *x = u128::from_le_bytes(b);
    }
    regs.mxcsr = u32_at(fx, 24);
}

/// Write what gdb changed back into the frame and FXSAVE image (the
/// segment selectors stay: the guest kernel keeps its user selectors,
/// and it also filters RFLAGS and RIP before it returns to the program).
pub fn from_gdb(regs: &X86_64CoreRegs, f: &mut UserFrame, fx: &mut [u8; 512]) {
    let r = &regs.regs;
    [
        f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp, f.r8, f.r9, f.r10, f.r11, f.r12,
        f.r13, f.r14, f.r15,
    ] = *r;
    f.rip = regs.rip;
    f.rflags = (f.rflags & !0xffff_ffff) | u64::from(regs.eflags);
    for (i, st) in regs.st.iter().enumerate() {
        let at = 32 + 16 * i;
        fx[at..at + 10].copy_from_slice(st);
    }
    fx[0..2].copy_from_slice(&(regs.fpu.fctrl as u16).to_le_bytes());
    fx[2..4].copy_from_slice(&(regs.fpu.fstat as u16).to_le_bytes());
    fx[4] = abridged_tag(regs.fpu.ftag);
    fx[6..8].copy_from_slice(&(regs.fpu.fop as u16).to_le_bytes());
    for (i, x) in regs.xmm.iter().enumerate() {
        let at = 160 + 16 * i;
        fx[at..at + 16].copy_from_slice(&x.to_le_bytes());
    }
    // MXCSR bits above 0xffff fault on FXRSTOR: keep them clear.
    fx[24..28].copy_from_slice(&(regs.mxcsr & 0xffff).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_through_gdbs_layout() {
        let f = UserFrame {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rbp: 7,
            rsp: 8,
            r8: 9,
            r15: 16,
            rip: 0x401000,
            rflags: 0x246,
            cs: 0x33,
            ss: 0x2b,
            ..Default::default()
        };
        let mut fx = [0u8; 512];
        fx[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fx[160] = 0xaa;
        let mut regs = X86_64CoreRegs::default();
        to_gdb(&f, &fx, &mut regs);
        assert_eq!(regs.regs[0], 1);
        assert_eq!(regs.regs[7], 8);
        assert_eq!(regs.rip, 0x401000);
        assert_eq!(regs.segments.cs, 0x33);
        assert_eq!(regs.mxcsr, 0x1f80);
        assert_eq!(regs.xmm[0], 0xaa);
        assert_eq!(regs.fpu.ftag, 0xffff, "an empty x87 stack");
        let (mut f2, mut fx2) = (UserFrame::default(), [0u8; 512]);
        from_gdb(&regs, &mut f2, &mut fx2);
        assert_eq!(f2.rip, f.rip);
        assert_eq!(f2.rsp, f.rsp);
        assert_eq!(f2.r15, 16);
        assert_eq!(fx2, fx);
    }
}
