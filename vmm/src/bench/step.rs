//! Counting ring-0 instructions by single-stepping the guest under
//! `KVM_SET_GUEST_DEBUG`: [`count_ring0`] runs the vCPU one instruction per
//! `KVM_EXIT_DEBUG`, splits the reports into kernel entries at the IDT entry
//! stubs, and corrects for the reports kvm_pvm does not deliver
//! ([`StepProfile`]).

use super::kernel_map::KernelMap;
use super::{KERNEL_HALF, MARKER_SYSCALL};
use crate::fs::HostFs;
use crate::hypercall::{self, Action, HostIo, Outcome};
use crate::memory::GuestRam;
use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::collections::BTreeMap;
use vmrun_contract::HYPERCALL_PORT;

/// One kernel entry seen while single-stepping: a trap from user mode and
/// everything ring 0 did until the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The IDT vector (14: page fault; 6 or 0x80: system call).
    pub vector: u64,
    /// RAX at entry: the system call number for a system call.
    pub rax: u64,
    /// Ring-0 instructions, corrected (see [`StepProfile::missed_per_entry`]).
    pub insns: u64,
    /// Inside the program's measured loop (between the two markers).
    pub in_window: bool,
    /// Hypercalls (VM exits to the host) the entry made.
    pub exits: u64,
    /// Iterations of its repeated string instructions (see
    /// [`StepProfile::boot_iterations`]).
    pub iterations: u64,
}

impl Entry {
    /// Whether this entry is a system call.
    pub fn is_syscall(&self) -> bool {
        self.vector == 6 || self.vector == 0x80
    }
}

/// What single-stepping one run found.
#[derive(Clone, Debug, Default)]
pub struct StepProfile {
    /// Ring-0 instructions before the initial exec started.
    pub boot_insns: u64,
    /// The iterations of the boot's `rep movs` and `rep stos`: each such
    /// instruction counts once among the instructions, but runs RCX times,
    /// and where ring 0 is emulated (kvm_pvm) each time costs about what
    /// an instruction does.
    pub boot_iterations: u64,
    /// The same for the initial exec.
    pub exec_iterations: u64,
    /// Ring-0 instructions from the start of the initial exec to the
    /// program's first instruction (`None` without an `exec_initial` symbol).
    pub exec_insns: Option<u64>,
    /// Every kernel entry, in order.
    pub entries: Vec<Entry>,
    /// Instructions per function, over the entries in the window.
    pub window_functions: BTreeMap<String, u64>,
    /// Single-step reports in the entry path (stub and `vmrun_fault_entry`)
    /// of the first page fault, and how many the instructions there should
    /// give.
    pub entry_check: Option<(u64, u64)>,
    /// The same for the return path (`vmrun_fault_return`).
    pub return_check: Option<(u64, u64)>,
    /// Instructions kvm_pvm executes without a single-step report on each
    /// round trip, added to every entry (from the checks, plus the `iretq`).
    pub missed_per_entry: u64,
    /// Debug exits reported at user addresses (ring 3 being stepped).
    pub user_reports: u64,
    /// Port-I/O exits (hypercalls), each one instruction without a report.
    pub hypercalls: u64,
    /// Instructions per function before the initial exec (the boot).
    pub boot_functions: BTreeMap<String, u64>,
    /// Instructions per function in the initial exec.
    pub exec_functions: BTreeMap<String, u64>,
    /// Instructions per function in each kernel entry, in the order of
    /// [`StepProfile::entries`].
    pub entry_functions: Vec<BTreeMap<String, u64>>,
}

/// Single-step reports the entry path of a page fault the fault handler
/// resolves (the first one is: the program's text) gives when each
/// instruction reports once: `cld; jmp vmrun_fault_entry` in the stub,
/// then `test`, `jz`, 9 register stores, 3 argument loads, `mov rcx, cr2`,
/// `mov rsp` (the final `call` reports in the Rust handler). See
/// guest-kernel/src/arch/trap.rs.
const ENTRY_PATH_REPORTS: u64 = 18;
/// The same for the return path: the handler's `ret` reports at
/// `vmrun_fault_return`'s first byte, then `test`, `jz`, 9 register loads
/// and `lea rsp` report inside it; the final `iretq` reports (if at all)
/// at a user address.
const RETURN_PATH_REPORTS: u64 = 13;

/// Enable single-stepping on `vcpu` and run it to the end of the program,
/// serving hypercalls, counting the ring-0 instructions of each kernel
/// entry. `ram` is the guest's RAM, `io` its stdio, `fs` its file
/// service, `map` the kernel's symbols. Gives up after `max_steps` debug exits.
pub fn count_ring0(
    vcpu: &mut VcpuFd,
    ram: &GuestRam,
    io: &mut impl HostIo,
    fs: &mut HostFs,
    map: &KernelMap,
    max_steps: u64,
) -> Result<StepProfile, String> {
    let debug = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
        ..Default::default()
    };
    vcpu.set_guest_debug(&debug)
        .map_err(|e| format!("KVM_SET_GUEST_DEBUG (single-step): {e}"))?;
    let mut p = StepProfile::default();
    // Where the current reports go: None before exec, Some(usize::MAX)
    // during exec, Some(i) for entry i.
    let mut current: Option<usize> = None;
    let mut exec_started = false;
    let mut exec_reports = 0u64;
    let mut in_window = false;
    let mut markers = 0;
    // Raw reports per entry, corrected at the end.
    let mut raw: Vec<u64> = Vec::new();
    let mut first_fault: Option<usize> = None;
    let (mut entry_path, mut return_path) = (0u64, 0u64);
    let mut steps = 0u64;
    // Whether the last ring-0 report was inside an entry stub (a stub
    // reports once or twice before it jumps on).
    let mut in_stub = false;
    // The last ring-0 report's address.
    let mut last_pc = 0;
    // Reports per symbol index: boot, exec, each entry.
    let (mut boot_fns, mut exec_fns) = (BTreeMap::new(), BTreeMap::new());
    let mut entry_fns: Vec<BTreeMap<usize, u64>> = Vec::new();
    loop {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(format!("KVM_RUN while single-stepping: {e}")),
        };
        match exit {
            VcpuExit::Debug(d) => {
                steps += 1;
                if steps > max_steps {
                    return Err(format!("gave up after {max_steps} single steps"));
                }
                let pc = d.pc;
                if pc < KERNEL_HALF {
                    p.user_reports += 1;
                    continue;
                }
                let stub = map.stub_vector(pc);
                let new_entry = stub.is_some() && !in_stub;
                in_stub = stub.is_some();
                if let (Some(vector), true) = (stub, new_entry) {
                    let rax = vcpu
                        .get_regs()
                        .map_err(|e| format!("KVM_GET_REGS: {e}"))?
                        .rax;
                    let is_syscall = vector == 6 || vector == 0x80;
                    let marker = is_syscall && rax == MARKER_SYSCALL && markers < 2;
                    if marker {
                        markers += 1;
                    }
                    p.entries.push(Entry {
                        vector,
                        rax,
                        insns: 0,
                        in_window: in_window && !marker,
                        exits: 0,
                        iterations: 0,
                    });
                    raw.push(0);
                    if marker {
                        in_window = markers == 1;
                    }
                    if vector == 14 && first_fault.is_none() {
                        first_fault = Some(p.entries.len() - 1);
                    }
                    current = Some(p.entries.len() - 1);
                    entry_fns.push(BTreeMap::new());
                }
                if !exec_started && map.exec_initial.is_some_and(|(a, b)| (a..b).contains(&pc)) {
                    exec_started = true;
                    current = Some(usize::MAX);
                }
                // A string instruction reports once (kvm_pvm's emulator
                // runs its iterations in one step; one reported again at
                // the same place is not counted twice).
                if pc != last_pc && map.repeated_string_op(pc) {
                    let n = vcpu
                        .get_regs()
                        .map_err(|e| format!("KVM_GET_REGS: {e}"))?
                        .rcx;
                    match current {
                        None => p.boot_iterations += n,
                        Some(usize::MAX) => p.exec_iterations += n,
                        Some(i) => p.entries[i].iterations += n,
                    }
                }
                last_pc = pc;
                let symbol = map.symbol(pc).unwrap_or(usize::MAX);
                match current {
                    None => {
                        p.boot_insns += 1;
                        *boot_fns.entry(symbol).or_insert(0u64) += 1;
                    }
                    Some(usize::MAX) => {
                        exec_reports += 1;
                        *exec_fns.entry(symbol).or_insert(0u64) += 1;
                    }
                    Some(i) => {
                        raw[i] += 1;
                        *entry_fns[i].entry(symbol).or_insert(0u64) += 1;
                        if p.entries[i].in_window {
                            let name = map.symbol(pc).map_or("?", |s| map.symbols[s].2.as_str());
                            *p.window_functions.entry(name.to_string()).or_default() += 1;
                        }
                        if Some(i) == first_fault {
                            let inside = |r: Option<(u64, u64)>| {
                                r.is_some_and(|(a, b)| (a..b).contains(&pc))
                            };
                            if map.stub_vector(pc).is_some() || inside(map.fault_entry) {
                                entry_path += 1;
                            } else if inside(map.fault_return) {
                                return_path += 1;
                            }
                        }
                    }
                }
            }
            VcpuExit::IoOut(port, data) if port == HYPERCALL_PORT && data.len() == 4 => {
                let block = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
                p.hypercalls += 1;
                match current {
                    None => p.boot_insns += 1,
                    Some(usize::MAX) => exec_reports += 1,
                    Some(i) => {
                        raw[i] += 1;
                        p.entries[i].exits += 1;
                    }
                }
                match hypercall::handle(ram, block, io, fs)
                    .map_err(|e| format!("hypercall: {e}"))?
                {
                    Action::Stop(Outcome::Exited(0)) => break,
                    Action::Stop(other) => {
                        return Err(format!("the program ended with {other:?} while stepped"))
                    }
                    _ => {}
                }
            }
            // The syscall trampoline's fast call: declined, so that the
            // kernel's path serves the call and is counted (the vCPU goes
            // on into it as it is).
            VcpuExit::IoOut(vmrun_contract::FAST_CALL_PORT, _) => {}
            other => {
                return Err(format!(
                    "unexpected VM exit while single-stepping: {other:?}"
                ))
            }
        }
    }
    // The checks: reports seen against reports expected in the fixed asm
    // paths of the first page fault; what is missing there is missing on
    // every round trip. The iretq back to user mode never reports in ring 0.
    let (mut missed_entry, mut missed_return) = (0, 1);
    if first_fault.is_some() && map.fault_entry.is_some() && map.fault_return.is_some() {
        p.entry_check = Some((entry_path, ENTRY_PATH_REPORTS));
        p.return_check = Some((return_path, RETURN_PATH_REPORTS));
        missed_entry = ENTRY_PATH_REPORTS.saturating_sub(entry_path);
        missed_return += RETURN_PATH_REPORTS.saturating_sub(return_path);
    }
    p.missed_per_entry = missed_entry + missed_return;
    let names = |counts: BTreeMap<usize, u64>| -> BTreeMap<String, u64> {
        let mut named = BTreeMap::new();
        for (symbol, n) in counts {
            let name = map.symbols.get(symbol).map_or("?", |s| s.2.as_str());
            *named.entry(name.to_string()).or_default() += n;
        }
        named
    };
    p.boot_functions = names(boot_fns);
    p.exec_functions = names(exec_fns);
    p.entry_functions = entry_fns.into_iter().map(names).collect();
    for (e, r) in p.entries.iter_mut().zip(raw) {
        e.insns = r + p.missed_per_entry;
    }
    // Exec ends with the first return to user mode.
    p.exec_insns = exec_started.then_some(exec_reports + missed_return);
    Ok(p)
}
