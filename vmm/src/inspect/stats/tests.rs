use super::*;
use vmrun_contract::trace::resolution;

fn fault(res: u64, cycles: u64) -> Record {
    Record {
        kind: kind::FAULT,
        aux: 0,
        tsc: 0,
        a: [0x40_1000, 4, 0x40_1000, 1, res, cycles],
    }
}

fn sys_exit(nr: u32, cycles: u64) -> Record {
    Record {
        kind: kind::SYSCALL_EXIT,
        aux: nr,
        tsc: 0,
        a: [0, cycles, 0, 0, 0, 0],
    }
}

fn phase(p: u64, tsc: u64) -> Record {
    Record {
        kind: kind::EXEC_PHASE,
        aux: 0,
        tsc,
        a: [p, 0, 0, 0, 0, 0],
    }
}

/// At 2 GHz, 2 cycles are 1 ns.
fn stats() -> Stats {
    let mut s = Stats::new(2_000_000).unwrap();
    for i in 1..=100 {
        s.add(&fault(resolution::ZERO_FILL, i * 20));
    }
    s.add(&fault(resolution::FILE_MAP, 3000));
    s.add(&sys_exit(1, 1000));
    s.add(&sys_exit(1, 3000));
    s.add(&sys_exit(39, 400));
    s.add_all(&[
        phase(exec_phase::START, 50_000),
        phase(exec_phase::ELF_CHECKED, 52_000),
        phase(exec_phase::ENTER_USER, 59_000),
    ]);
    s.vm_exits.insert("io".into(), 12);
    s.boot_phases
        .push(("vm-created".into(), Duration::from_micros(1500)));
    s
}

#[test]
fn fault_percentiles_in_ns() {
    let s = stats();
    let z = &s.faults["zero-fill"];
    // Latencies 10, 20 .. 1000 ns.
    assert_eq!(z.count(), 100);
    assert_eq!(z.quantile(0.5), 500);
    assert_eq!(z.quantile(0.9), 900);
    assert_eq!(z.quantile(0.99), 990);
    assert_eq!(z.max(), 1000);
    assert_eq!(s.all_faults.count(), 101);
    assert_eq!(s.faults["file-map"].max(), 1500);
}

#[test]
fn syscalls_by_name_and_exec_phases() {
    let s = stats();
    assert_eq!(s.syscalls["write"].count(), 2);
    assert_eq!(s.syscalls["getpid"].max(), 200);
    assert_eq!(
        s.execs,
        [vec![
            ("start".to_string(), 0),
            ("elf-checked".to_string(), 1000),
            ("enter-user".to_string(), 4500)
        ]]
    );
}

#[test]
fn record_counts_agree_with_what_was_added() {
    let s = stats();
    assert_eq!(s.records["fault"], 101);
    assert_eq!(s.records["sys-exit"], 3);
    assert_eq!(s.records["exec-phase"], 3);
}

#[test]
fn text_has_aligned_tables() {
    let text = stats().render_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "page faults             count      p50 ns      p90 ns      p99 ns      max ns"
    );
    assert_eq!(
        lines[2],
        "  zero-fill               100         500         900         990        1000"
    );
    assert!(text.contains("  vm-created              1.500 ms\n"));
    assert!(text.contains("  io                       12\n"));
}

#[test]
fn json_has_every_section() {
    let v = stats().to_json();
    assert_eq!(v["unit"], "ns");
    assert_eq!(v["faults"]["zero-fill"]["p99"], 990);
    assert_eq!(v["faults"]["all"]["count"], 101);
    assert_eq!(v["syscalls"]["write"]["max"], 1500);
    assert_eq!(v["execs"][0][2]["phase"], "enter-user");
    assert_eq!(v["vm_exits"]["io"], 12);
    assert_eq!(v["boot_phases"][0]["ns"], 1_500_000);
    assert_eq!(v["records"]["fault"], 101);
}

#[test]
fn log2_buckets_cover_the_range_without_gaps() {
    let s = stats();
    let b = s.faults["zero-fill"].log2_buckets();
    assert_eq!(b.first(), Some(&(8, 1)));
    assert_eq!(b.last(), Some(&(512, 49)));
    assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 100);
}

#[test]
fn unknown_frequency_reports_cycles() {
    let mut s = Stats::new(0).unwrap();
    s.add(&fault(resolution::COW, 777));
    assert_eq!(s.faults["cow"].max(), 777);
    assert!(s
        .render_text()
        .starts_with("page faults             count  p50 cycles"));
}

#[test]
fn file_system_counters_are_in_text_and_json() {
    let mut s = stats();
    s.fs.opens = 3;
    s.fs.calls.insert("open", 4);
    s.fs.escape(crate::fs::Escape::ReadOnly);
    let text = s.render_text();
    assert!(text.contains("file system"));
    assert!(text.contains("  opens                     3\n"));
    assert!(text.contains("  op open                   4\n"));
    assert!(text.contains(&format!("    {:<16} {:>8}\n", "read-only", 1)));
    let v = s.to_json();
    assert_eq!(v["fs"]["opens"], 3);
    assert_eq!(v["fs"]["escapes"]["read-only"], 1);
}
