//! The trace ring: draining it from guest memory, and each record as one
//! readable line or one JSON object.
//!
//! The ring is a [`RingHeader`] at `BootInfo::trace_phys`, then, from
//! [`RECORDS_OFFSET`] on, `capacity` [`Record`]s. The guest writes record
//! number `n` (counting from 0 for the whole run) at slot `n % capacity` and
//! then advances `written`; the host reads records `drained..written` and
//! advances `drained`. Both counters only grow. The host drains while the
//! vCPU is stopped (at a hypercall), so there is no race.

use super::hex;
use super::maps::perms;
use super::pagetable::level_name;
use super::syscalls;
use crate::memory::GuestRam;
use serde_json::{json, Map, Value};
use std::fmt;
use vmrun_contract::trace::{
    exec_phase, kind, resolution, syscall_nr, syscall_tid, task_state, vma_kind, Record,
    RingHeader, RECORDS_OFFSET, RECORD_SIZE,
};

/// What one drain found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// The new records, oldest first.
    pub records: Vec<Record>,
    /// Records the guest reports as lost in all (its `lost` counter).
    pub lost: u64,
    /// Records overwritten before the host read them (0 unless the guest
    /// broke the protocol by writing over undrained slots).
    pub overrun: u64,
}

/// Why the ring cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// The header's capacity does not fit the ring's bytes.
    BadCapacity {
        /// The header's capacity.
        capacity: u64,
        /// Bytes of the ring.
        ring_len: u64,
    },
    /// `drained` is ahead of `written`.
    CountersBackwards {
        /// Records written.
        written: u64,
        /// Records drained.
        drained: u64,
    },
    /// The ring is not in guest RAM.
    Memory(String),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::BadCapacity { capacity, ring_len } => write!(
                f,
                "trace ring header claims {capacity} records, which do not fit its {ring_len} bytes"
            ),
            TraceError::CountersBackwards { written, drained } => write!(
                f,
                "trace ring counters went backwards: written {written}, drained {drained}"
            ),
            TraceError::Memory(e) => write!(f, "trace ring: {e}"),
        }
    }
}

impl std::error::Error for TraceError {}

/// Read every record not yet drained from the ring at `phys` (`len` bytes,
/// header included) and mark them drained.
pub fn drain(ram: &GuestRam, phys: u64, len: u64) -> Result<Drained, TraceError> {
    let mem = |e: crate::error::Error| TraceError::Memory(e.to_string());
    let mut h: RingHeader = ram.read_pod(phys).map_err(mem)?;
    check_header(&h, len)?;
    let pending = h.written - h.drained;
    let overrun = pending.saturating_sub(h.capacity);
    let mut records = Vec::with_capacity((pending - overrun) as usize);
    for n in h.drained + overrun..h.written {
        let at = phys + RECORDS_OFFSET + (n % h.capacity) * RECORD_SIZE;
        records.push(ram.read_pod(at).map_err(mem)?);
    }
    h.drained = h.written;
    ram.write_pod(phys + 8, &h.drained).map_err(mem)?;
    Ok(Drained {
        records,
        lost: h.lost,
        overrun,
    })
}

fn check_header(h: &RingHeader, len: u64) -> Result<(), TraceError> {
    let room = len.saturating_sub(RECORDS_OFFSET) / RECORD_SIZE;
    if h.capacity == 0 || h.capacity > room {
        return Err(TraceError::BadCapacity {
            capacity: h.capacity,
            ring_len: len,
        });
    }
    if h.drained > h.written {
        return Err(TraceError::CountersBackwards {
            written: h.written,
            drained: h.drained,
        });
    }
    Ok(())
}

/// Guest TSC to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// TSC frequency in kHz (KVM_GET_TSC_KHZ); 0 if unknown, and then
    /// "nanoseconds" below are cycles.
    pub tsc_khz: u64,
    /// The TSC value that is time zero (e.g. the first record's).
    pub tsc_base: u64,
}

impl Clock {
    /// Nanoseconds for `cycles` (cycles themselves if the frequency is 0).
    pub fn ns(&self, cycles: u64) -> u64 {
        if self.tsc_khz == 0 {
            return cycles;
        }
        (u128::from(cycles) * 1_000_000 / u128::from(self.tsc_khz)) as u64
    }

    /// Microseconds from the base to `tsc`.
    pub fn us_since_base(&self, tsc: u64) -> f64 {
        self.ns(tsc.saturating_sub(self.tsc_base)) as f64 / 1000.0
    }
}

/// The short name of a record kind: `fault`, `pte-set`, `sys-enter`...
pub fn kind_name(k: u32) -> &'static str {
    match k {
        kind::PT_ALLOC => "pt-alloc",
        kind::PT_FREE => "pt-free",
        kind::PTE_SET => "pte-set",
        kind::PTE_CLEAR => "pte-clear",
        kind::CR3_LOAD => "cr3-load",
        kind::VMA_INSERT => "vma-insert",
        kind::VMA_SPLIT => "vma-split",
        kind::VMA_MERGE => "vma-merge",
        kind::VMA_RESIZE => "vma-resize",
        kind::VMA_REMOVE => "vma-remove",
        kind::FAULT => "fault",
        kind::EXEC_PHASE => "exec-phase",
        kind::SYSCALL_ENTER => "sys-enter",
        kind::SYSCALL_EXIT => "sys-exit",
        kind::TASK_STATE => "task",
        _ => "unknown",
    }
}

/// How a fault was resolved: `zero-fill`, `file-copy`, `cow`...
pub fn resolution_name(r: u64) -> &'static str {
    match r {
        resolution::ZERO_FILL => "zero-fill",
        resolution::ZERO_FILL_HUGE => "zero-fill-2M",
        resolution::ZERO_FILL_64K => "zero-fill-64K",
        resolution::FILE_MAP => "file-map",
        resolution::FILE_COPY => "file-copy",
        resolution::FILE_COPY_64K => "file-copy-64K",
        resolution::FILE_ZERO => "file-zero",
        resolution::COW => "cow",
        resolution::MADE_WRITABLE => "made-writable",
        resolution::SPURIOUS => "spurious",
        resolution::SIGSEGV => "sigsegv",
        resolution::OOM => "oom",
        resolution::SIGBUS => "sigbus",
        _ => "unknown",
    }
}

/// The kind of VMA a fault hit: `anon`, `file`, `stack`, `heap`, `none`.
pub fn vma_kind_name(k: u64) -> &'static str {
    match k {
        vma_kind::NONE => "none",
        vma_kind::ANON => "anon",
        vma_kind::FILE => "file",
        vma_kind::STACK => "stack",
        vma_kind::HEAP => "heap",
        _ => "unknown",
    }
}

/// An exec phase: `start`, `elf-checked`, ... `enter-user`.
pub fn exec_phase_name(p: u64) -> &'static str {
    match p {
        exec_phase::START => "start",
        exec_phase::ELF_CHECKED => "elf-checked",
        exec_phase::ADDRESS_SPACE => "address-space",
        exec_phase::SEGMENTS_MAPPED => "segments-mapped",
        exec_phase::STACK_BUILT => "stack-built",
        exec_phase::ENTER_USER => "enter-user",
        exec_phase::TORN_DOWN => "old-mm-torn-down",
        _ => "unknown",
    }
}

/// A page-fault error code as words: `user write present`.
pub fn fault_error_text(err: u64) -> String {
    let mut w = vec![if err & 4 != 0 { "user" } else { "kernel" }];
    w.push(if err & 16 != 0 {
        "exec"
    } else if err & 2 != 0 {
        "write"
    } else {
        "read"
    });
    w.push(if err & 1 != 0 {
        "present"
    } else {
        "not-present"
    });
    if err & 8 != 0 {
        w.push("reserved-bit");
    }
    w.join(" ")
}

/// One record as a line: time since the clock's base in µs, the kind, and
/// its arguments named.
///
/// ```text
///     12.345 us fault      addr 0x401000 ip 0x401000 error 0x14 (user exec not-present) vma file -> file-map in 2100 cycles (2.1 us)
/// ```
pub fn format_record(r: &Record, clock: &Clock) -> String {
    format!(
        "{:>12.3} us {:<10} {}",
        clock.us_since_base(r.tsc),
        kind_name(r.kind),
        record_args(r, clock)
    )
}

fn record_args(r: &Record, clock: &Clock) -> String {
    let a = &r.a;
    match r.kind {
        kind::PT_ALLOC | kind::PT_FREE => format!(
            "{} @{:#x} covering {:#x}-{:#x}",
            level_name(a[0] as u8),
            a[3],
            a[1],
            a[2]
        ),
        kind::PTE_SET | kind::PTE_CLEAR => format!(
            "va {:#x} level {} frame {:#x} entry {:#018x}",
            a[0], a[1], a[2], a[3]
        ),
        kind::CR3_LOAD => format!("{:#x}", a[0]),
        kind::VMA_INSERT | kind::VMA_RESIZE => vma_args(a),
        kind::VMA_SPLIT => format!("{} at {:#x}", vma_args(a), a[5]),
        kind::VMA_MERGE | kind::VMA_REMOVE => format!("{:#x}-{:#x}", a[0], a[1]),
        kind::FAULT => fault_args(a, clock),
        kind::EXEC_PHASE => exec_phase_name(a[0]).to_string(),
        kind::SYSCALL_ENTER => format!(
            "{} {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
            syscall_nr(r.aux),
            syscalls::name(syscall_nr(r.aux)),
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5]
        ),
        kind::SYSCALL_EXIT => format!(
            "{} {} = {} in {}",
            syscall_nr(r.aux),
            syscalls::name(syscall_nr(r.aux)),
            a[0] as i64,
            cycles_text(a[1], clock)
        ),
        kind::TASK_STATE => task_args(r),
        _ => format!("kind {} aux {} args {:x?}", r.kind, r.aux, a),
    }
}

/// `pid 3 (process 3) zombie status 0x300`, `pid 2 (process 2) new, parent 1`.
fn task_args(r: &Record) -> String {
    let a = &r.a;
    let detail = match a[0] {
        task_state::ZOMBIE => format!(" status {:#x}", a[2]),
        task_state::NEW => format!(", parent {}", a[2]),
        _ => String::new(),
    };
    format!(
        "pid {} (process {}) {}{detail}",
        r.aux,
        a[1],
        task_state::name(a[0])
    )
}

fn vma_args(a: &[u64; 6]) -> String {
    let file = if a[2] & vmrun_contract::vma_flags::FILE != 0 {
        format!(" file {} offset {:#x}", a[3], a[4])
    } else {
        String::new()
    };
    format!("{:#x}-{:#x} {}{file}", a[0], a[1], perms(a[2]))
}

fn fault_args(a: &[u64; 6], clock: &Clock) -> String {
    format!(
        "addr {:#x} ip {:#x} error {:#x} ({}) vma {} -> {} in {}",
        a[0],
        a[2],
        a[1],
        fault_error_text(a[1]),
        vma_kind_name(a[3]),
        resolution_name(a[4]),
        cycles_text(a[5], clock)
    )
}

fn cycles_text(cycles: u64, clock: &Clock) -> String {
    if clock.tsc_khz == 0 {
        return format!("{cycles} cycles");
    }
    format!(
        "{cycles} cycles ({:.3} us)",
        clock.ns(cycles) as f64 / 1000.0
    )
}

/// One record as a JSON object: `kind`, `tsc`, `t_us`, and the kind's
/// fields by name (addresses as hex strings, counts as numbers).
pub fn record_json(r: &Record, clock: &Clock) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), kind_name(r.kind).into());
    m.insert("tsc".into(), r.tsc.into());
    m.insert("t_us".into(), json!(clock.us_since_base(r.tsc)));
    for (k, v) in record_fields(r, clock) {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

fn record_fields(r: &Record, clock: &Clock) -> Vec<(&'static str, Value)> {
    let a = &r.a;
    let h = |v: u64| Value::from(hex(v));
    match r.kind {
        kind::PT_ALLOC | kind::PT_FREE => vec![
            ("level", a[0].into()),
            ("va_start", h(a[1])),
            ("va_end", h(a[2])),
            ("frame", h(a[3])),
        ],
        kind::PTE_SET | kind::PTE_CLEAR => vec![
            ("va", h(a[0])),
            ("level", a[1].into()),
            ("frame", h(a[2])),
            ("entry", h(a[3])),
        ],
        kind::CR3_LOAD => vec![("cr3", h(a[0]))],
        kind::VMA_INSERT | kind::VMA_SPLIT | kind::VMA_RESIZE => vec![
            ("start", h(a[0])),
            ("end", h(a[1])),
            ("perms", perms(a[2]).into()),
            ("flags", a[2].into()),
            ("file", a[3].into()),
            ("offset", h(a[4])),
            ("at", h(a[5])),
        ],
        kind::VMA_MERGE | kind::VMA_REMOVE => vec![("start", h(a[0])), ("end", h(a[1]))],
        kind::FAULT => vec![
            ("addr", h(a[0])),
            ("error", a[1].into()),
            ("ip", h(a[2])),
            ("vma", vma_kind_name(a[3]).into()),
            ("resolution", resolution_name(a[4]).into()),
            ("cycles", a[5].into()),
            ("ns", clock.ns(a[5]).into()),
        ],
        kind::EXEC_PHASE => vec![("phase", exec_phase_name(a[0]).into())],
        kind::SYSCALL_ENTER => vec![
            ("nr", syscall_nr(r.aux).into()),
            ("tid", syscall_tid(r.aux).into()),
            ("name", syscalls::name(syscall_nr(r.aux)).into()),
            ("args", a.iter().map(|&v| h(v)).collect::<Vec<_>>().into()),
        ],
        kind::SYSCALL_EXIT => vec![
            ("nr", syscall_nr(r.aux).into()),
            ("tid", syscall_tid(r.aux).into()),
            ("name", syscalls::name(syscall_nr(r.aux)).into()),
            ("result", (a[0] as i64).into()),
            ("cycles", a[1].into()),
            ("ns", clock.ns(a[1]).into()),
        ],
        kind::TASK_STATE => vec![
            ("tid", r.aux.into()),
            ("pid", a[1].into()),
            ("state", task_state::name(a[0]).into()),
            ("detail", a[2].into()),
        ],
        _ => vec![
            ("raw_kind", r.kind.into()),
            ("aux", r.aux.into()),
            ("args", a.iter().map(|&v| h(v)).collect::<Vec<_>>().into()),
        ],
    }
}

/// The category bit ([`vmrun_contract::trace::category`]) a kind belongs
/// to (0 for an unknown kind).
pub fn category_of(k: u32) -> u32 {
    use vmrun_contract::trace::category::*;
    match k {
        kind::PT_ALLOC..=kind::CR3_LOAD => PAGE_TABLES,
        kind::VMA_INSERT..=kind::VMA_REMOVE => VMAS,
        kind::FAULT => FAULTS,
        kind::EXEC_PHASE => EXEC,
        kind::SYSCALL_ENTER | kind::SYSCALL_EXIT => SYSCALLS,
        kind::TASK_STATE => TASKS,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
