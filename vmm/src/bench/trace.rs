//! What the guest kernel's trace records say about a run: the page faults
//! taken between the two marker system calls, the name of each fault
//! resolution, the kernel entries in the loop, and the TSC of each exec's
//! EXEC_PHASE START and ENTER_USER records.

use super::MARKER_SYSCALL;
use vmrun_contract::trace::{exec_phase, kind, syscall_nr, Record};

/// The FAULT records the guest wrote between the two marker system calls
/// of a run traced with FAULTS and SYSCALLS; `None` without both markers.
pub fn faults_in_window(records: &[Record]) -> Option<Vec<Record>> {
    let mut markers = 0;
    let mut faults = Vec::new();
    for r in records {
        match r.kind {
            kind::SYSCALL_ENTER if u64::from(syscall_nr(r.aux)) == MARKER_SYSCALL => {
                markers += 1;
                if markers == 2 {
                    return Some(faults);
                }
            }
            kind::FAULT if markers == 1 => faults.push(*r),
            _ => {}
        }
    }
    None
}

/// The FAULT records before the first marker system call (for a program
/// whose main makes it first thing: the faults of exec, ld.so and libc's
/// start-up).
pub fn faults_before_marker(records: &[Record]) -> Vec<Record> {
    records
        .iter()
        .take_while(|r| {
            !(r.kind == kind::SYSCALL_ENTER && u64::from(syscall_nr(r.aux)) == MARKER_SYSCALL)
        })
        .filter(|r| r.kind == kind::FAULT)
        .copied()
        .collect()
}

/// The kernel entries the guest traced between the two marker system calls
/// of a run traced with FAULTS and SYSCALLS: (system calls, faults), the
/// markers themselves not counted; `None` without both markers.
pub fn entries_in_window(records: &[Record]) -> Option<(u64, u64)> {
    let mut markers = 0;
    let (mut syscalls, mut faults) = (0, 0);
    for r in records {
        match r.kind {
            kind::SYSCALL_ENTER if u64::from(syscall_nr(r.aux)) == MARKER_SYSCALL => {
                markers += 1;
                if markers == 2 {
                    return Some((syscalls, faults));
                }
            }
            kind::SYSCALL_ENTER if markers == 1 => syscalls += 1,
            kind::FAULT if markers == 1 => faults += 1,
            _ => {}
        }
    }
    None
}

/// The name of a fault resolution (FAULT record a4).
pub fn resolution_name(r: u64) -> &'static str {
    use vmrun_contract::trace::resolution as res;
    match r {
        res::ZERO_FILL => "zero-fill",
        res::ZERO_FILL_HUGE => "zero-fill-2M",
        res::ZERO_FILL_64K => "zero-fill-64K",
        res::FILE_MAP => "file-map",
        res::FILE_COPY => "file-copy",
        res::FILE_COPY_64K => "file-copy-64K",
        res::FILE_ZERO => "file-zero",
        res::COW => "cow",
        res::MADE_WRITABLE => "made-writable",
        res::SPURIOUS => "spurious",
        res::SIGSEGV => "sigsegv",
        res::OOM => "oom",
        _ => "other",
    }
}

/// Cycles from EXEC_PHASE START to ENTER_USER, per exec in `records`.
pub fn exec_cycles(records: &[Record]) -> Vec<u64> {
    exec_spans(records)
        .iter()
        .map(|(start, enter)| enter.saturating_sub(*start))
        .collect()
}

/// The TSC of EXEC_PHASE START and of the ENTER_USER that follows it, per
/// exec in `records`.
pub fn exec_spans(records: &[Record]) -> Vec<(u64, u64)> {
    let mut start = None;
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.kind == kind::EXEC_PHASE) {
        match r.a[0] {
            exec_phase::START => start = Some(r.tsc),
            exec_phase::ENTER_USER => {
                if let Some(s) = start.take() {
                    out.push((s, r.tsc));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u32, aux: u32, tsc: u64, a0: u64) -> Record {
        Record {
            kind,
            aux,
            tsc,
            a: [a0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn faults_are_counted_between_the_markers() {
        let m = MARKER_SYSCALL as u32;
        let records = [
            rec(kind::FAULT, 0, 1, 0),
            rec(kind::SYSCALL_ENTER, m, 2, 0),
            rec(kind::FAULT, 0, 3, 0),
            rec(kind::SYSCALL_ENTER, 39, 4, 0),
            rec(kind::FAULT, 0, 5, 0),
            rec(kind::SYSCALL_ENTER, m, 6, 0),
            rec(kind::FAULT, 0, 7, 0),
        ];
        assert_eq!(faults_in_window(&records).map(|f| f.len()), Some(2));
        assert_eq!(faults_in_window(&records).unwrap()[0].tsc, 3);
        assert_eq!(faults_in_window(&records[..3]), None);
        assert_eq!(entries_in_window(&records), Some((1, 2)));
        assert_eq!(entries_in_window(&records[..3]), None);
        assert_eq!(faults_before_marker(&records).len(), 1);
    }

    #[test]
    fn exec_time_runs_from_start_to_enter_user() {
        let records = [
            rec(kind::EXEC_PHASE, 0, 100, exec_phase::START),
            rec(kind::EXEC_PHASE, 0, 150, exec_phase::ELF_CHECKED),
            rec(kind::FAULT, 0, 160, 0),
            rec(kind::EXEC_PHASE, 0, 400, exec_phase::ENTER_USER),
        ];
        assert_eq!(exec_cycles(&records), vec![300]);
        assert_eq!(exec_spans(&records), vec![(100, 400)]);
        assert_eq!(exec_cycles(&records[1..]), Vec::<u64>::new());
    }
}
