use super::*;

const RING: u64 = 0x4000;

fn rec(kind: u32, aux: u32, tsc: u64, a: [u64; 6]) -> Record {
    Record { kind, aux, tsc, a }
}

/// A ring of `capacity` records with records `from..to` written (record n
/// has tsc n) and `drained` as given.
fn ring(capacity: u64, drained: u64, to: u64) -> GuestRam {
    let ram = GuestRam::new(1 << 20).unwrap();
    let h = RingHeader {
        written: to,
        drained,
        lost: 0,
        capacity,
    };
    ram.write_pod(RING, &h).unwrap();
    for n in drained..to {
        let at = RING + RECORDS_OFFSET + (n % capacity) * 64;
        ram.write_pod(at, &rec(kind::CR3_LOAD, 0, n, [n, 0, 0, 0, 0, 0]))
            .unwrap();
    }
    ram
}

fn ring_len(capacity: u64) -> u64 {
    RECORDS_OFFSET + capacity * 64
}

#[test]
fn drain_reads_pending_records_in_order_across_the_wrap() {
    let ram = ring(4, 6, 9);
    let d = drain(&ram, RING, ring_len(4)).unwrap();
    let tscs: Vec<u64> = d.records.iter().map(|r| r.tsc).collect();
    assert_eq!(tscs, [6, 7, 8]);
    let h: RingHeader = ram.read_pod(RING).unwrap();
    assert_eq!((h.written, h.drained), (9, 9));
    assert!(drain(&ram, RING, ring_len(4)).unwrap().records.is_empty());
}

#[test]
fn overwritten_records_are_counted_not_misread() {
    let ram = ring(4, 0, 4);
    // The guest wrote two more over undrained slots.
    ram.write_pod(RING, &9u64).unwrap();
    let d = drain(&ram, RING, ring_len(4)).unwrap();
    assert_eq!((d.records.len(), d.overrun), (4, 5));
}

#[test]
fn capacity_that_does_not_fit_is_an_error() {
    let ram = ring(4, 0, 0);
    let err = drain(&ram, RING, ring_len(3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace ring header claims 4 records, which do not fit its 256 bytes"
    );
}

#[test]
fn counters_going_backwards_is_an_error() {
    let ram = ring(4, 0, 0);
    ram.write_pod(RING + 8, &3u64).unwrap();
    assert!(matches!(
        drain(&ram, RING, ring_len(4)),
        Err(TraceError::CountersBackwards {
            written: 0,
            drained: 3
        })
    ));
}

const CLOCK: Clock = Clock {
    tsc_khz: 2_000_000,
    tsc_base: 1_000_000,
};

#[test]
fn fault_line_names_everything() {
    let r = rec(
        kind::FAULT,
        0,
        1_000_000 + 24_690,
        [
            0x40_1000,
            0x14,
            0x40_1000,
            vma_kind::FILE,
            resolution::FILE_MAP,
            4200,
        ],
    );
    assert_eq!(
        format_record(&r, &CLOCK),
        "      12.345 us fault      addr 0x401000 ip 0x401000 error 0x14 (user exec not-present) \
         vma file -> file-map in 4200 cycles (2.100 us)"
    );
}

#[test]
fn page_table_and_vma_lines() {
    let alloc = rec(
        kind::PT_ALLOC,
        0,
        1_000_000,
        [1, 0x40_0000, 0x60_0000, 0x20_3000, 0, 0],
    );
    assert_eq!(
        format_record(&alloc, &CLOCK),
        "       0.000 us pt-alloc   PT @0x203000 covering 0x400000-0x600000"
    );
    let flags = vmrun_contract::vma_flags::READ
        | vmrun_contract::vma_flags::EXEC
        | vmrun_contract::vma_flags::FILE;
    let ins = rec(
        kind::VMA_INSERT,
        0,
        1_000_000,
        [0x40_0000, 0x40_2000, flags, 0, 0x1000, 0],
    );
    assert_eq!(
        format_record(&ins, &CLOCK),
        "       0.000 us vma-insert 0x400000-0x402000 r-xp file 0 offset 0x1000"
    );
}

#[test]
fn syscall_lines_and_json() {
    // write (1) by thread 2: the id rides in aux's high 16 bits.
    let exit = rec(
        kind::SYSCALL_EXIT,
        1 | 2 << 16,
        1_002_000,
        [13, 3000, 0, 0, 0, 0],
    );
    assert_eq!(
        format_record(&exit, &CLOCK),
        "       1.000 us sys-exit   1 write = 13 in 3000 cycles (1.500 us)"
    );
    let v = record_json(&exit, &CLOCK);
    assert_eq!(
        v.to_string(),
        r#"{"cycles":3000,"kind":"sys-exit","name":"write","nr":1,"ns":1500,"result":13,"t_us":1.0,"tid":2,"tsc":1002000}"#
    );
}

#[test]
fn unknown_kind_still_prints() {
    let r = rec(99, 7, 1_000_000, [1, 2, 3, 4, 5, 6]);
    assert!(format_record(&r, &CLOCK).contains("kind 99 aux 7"));
    assert_eq!(record_json(&r, &CLOCK)["raw_kind"], 99);
}

#[test]
fn zero_tsc_khz_reports_cycles() {
    let c = Clock {
        tsc_khz: 0,
        tsc_base: 0,
    };
    assert_eq!(c.ns(1234), 1234);
    let exit = rec(kind::SYSCALL_EXIT, 39, 0, [7, 50, 0, 0, 0, 0]);
    assert!(format_record(&exit, &c).ends_with("getpid = 7 in 50 cycles"));
}

#[test]
fn categories_cover_every_kind() {
    use vmrun_contract::trace::category;
    assert_eq!(category_of(kind::PTE_SET), category::PAGE_TABLES);
    assert_eq!(category_of(kind::VMA_MERGE), category::VMAS);
    assert_eq!(category_of(kind::SYSCALL_EXIT), category::SYSCALLS);
    assert!((1..=14).all(|k| category_of(k) != 0));
}

#[test]
fn task_state_records_name_the_task_and_its_state() {
    use vmrun_contract::trace::{category, task_state};
    let clock = Clock {
        tsc_khz: 1_000_000,
        tsc_base: 0,
    };
    let zombie = rec(
        kind::TASK_STATE,
        7,
        0,
        [task_state::ZOMBIE, 7, 0x300, 0, 0, 0],
    );
    let line = format_record(&zombie, &clock);
    assert!(
        line.ends_with("task       pid 7 (process 7) zombie status 0x300"),
        "{line}"
    );
    let new = rec(kind::TASK_STATE, 8, 0, [task_state::NEW, 8, 1, 0, 0, 0]);
    assert!(format_record(&new, &clock).ends_with("pid 8 (process 8) new, parent 1"));
    let thread = rec(kind::TASK_STATE, 9, 0, [task_state::DEAD, 7, 0, 0, 0, 0]);
    assert!(format_record(&thread, &clock).ends_with("pid 9 (process 7) dead"));
    let json = record_json(&new, &clock);
    assert_eq!(json["state"], "new");
    assert_eq!(json["tid"], 8);
    assert_eq!(category_of(kind::TASK_STATE), category::TASKS);
}
