//! `vmrun bench` end to end with tiny counts: every workload prints its
//! line, none fails, and the single-step counts appear. No timing is
//! asserted (the figures depend on the machine and its load).

mod common;

/// The first column of every row of the results table.
const WORKLOADS: [&str; 30] = [
    "anon_touch",
    "anon_total",
    "anon_1m",
    "anon_3m",
    "anon_4k_fault",
    "file_read",
    "file_cow",
    "file_cow_4k",
    "brk_grow",
    "getpid",
    "clock_gettime",
    "file_read_cached",
    "file_read_1m",
    "open_close",
    "stat_path",
    "fork_exit_wait",
    "fork_exec_wait",
    "context_switch",
    "cow_fault",
    "pipe_roundtrip",
    "futex_wake",
    "exec",
    "exec_dynamic",
    "cold_start",
    "cold_start_dyn",
    "cold_busybox",
    "sha256_pipe",
    "sh_spawn",
    "getpid_10k",
    "write_10k",
];

/// The first column of every row of the budget table.
const BUDGETED_PATHS: [&str; 10] = [
    "getpid round trip",
    "anonymous 4 KiB fault",
    "file COW fault (4k)",
    "brk step",
    "exec of a static hello",
    "exec: per extra string",
    "boot at 256 MiB",
    "boot at 64 GiB",
    "last process's exit",
    "static hello, exec to exit",
];

#[test]
fn bench_prints_every_workload_line() {
    if !common::require_kvm() {
        return;
    }
    let args: Vec<String> = [
        "--quick",
        "--runs",
        "2",
        "--vmrun",
        env!("CARGO_BIN_EXE_vmrun"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut out = Vec::new();
    let status = vmm::bench::run_with_output(&args, &mut out);
    let text = String::from_utf8(out).expect("bench output is UTF-8");
    println!("{text}");
    assert_eq!(status, 0, "bench failed:\n{text}");
    assert!(!text.contains("FAILED"), "{text}");
    for name in WORKLOADS {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{text}"));
        // workload, unit, four figures, ratio, sample counts at least.
        assert!(row.split_whitespace().count() >= 8, "short row: {row}");
    }
    assert!(text.contains("ring-0 instructions"), "{text}");
    // The budget table: every budgeted path with its budget and a status
    // (whether the budgets are met is not checked).
    assert!(text.contains("budgets (ring-0 instructions"), "{text}");
    for path in BUDGETED_PATHS {
        let row = text
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("no budget row for {path} in:\n{text}"));
        assert!(row.contains('≤'), "no budget in {row}");
        assert!(
            row.ends_with(" met") || row.ends_with("not measured"),
            "no status in {row}"
        );
    }
    assert!(text.contains("measured budgets met"), "{text}");
    if vmm::kvm::Platform::detect() == vmm::kvm::Platform::Hardware {
        assert!(text.contains("not counted on VMX/SVM"), "{text}");
        return;
    }
    assert!(text.contains("single-step check"), "{text}");
    for path in BUDGETED_PATHS {
        let row = text.lines().find(|l| l.starts_with(path)).unwrap();
        assert!(!row.ends_with("not measured"), "stepping measures {row}");
    }
    // What an extra environment string costs the in-guest execve, and a
    // shell's spawn of busybox (with busybox-static installed).
    assert!(
        text.contains("execve with 64 more environment strings"),
        "{text}"
    );
    if std::path::Path::new("/bin/busybox").is_file() {
        assert!(text.contains("instructions per run"), "{text}");
    }
    // The iterations of repeated string instructions, which the counts
    // above take as one instruction each: the boot copies its boot info
    // with `rep movs`, so there are some.
    let iterations = text
        .lines()
        .find_map(|l| l.split_once("at about an instruction's cost): boot "))
        .map(|(_, rest)| {
            rest.split(',')
                .next()
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        });
    assert!(iterations.is_some_and(|n| n > 0), "{text}");
    assert!(
        text.contains("(+") && text.contains(" string iterations)"),
        "{text}"
    );
    // The system-call split: the getpid row names the three parts, from
    // the line fitted through the in-kernel calls' points; the write row
    // says its calls were fast calls, which the VMM answers without a
    // kernel entry.
    assert!(
        text.contains("entry and instruction costs fitted through"),
        "{text}"
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap()
    };
    let getpid = row("getpid_10k");
    assert!(
        getpid.contains("entry+return") && getpid.contains("hypercall"),
        "no split in {getpid}"
    );
    let write = row("write_10k");
    assert!(
        write.contains("fast calls") && write.contains("no kernel entry"),
        "no fast calls in {write}"
    );
    for path in ["#PF", "getpid", "brk", "pread64", "openat"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(path)),
            "no ring-0 count for {path} in:\n{text}"
        );
    }
}

#[test]
fn bench_help_and_bad_options() {
    let mut out = Vec::new();
    assert_eq!(vmm::bench::run_with_output(&["--help".into()], &mut out), 0);
    assert!(String::from_utf8_lossy(&out).contains("usage: vmrun bench"));
    assert_eq!(
        vmm::bench::run_with_output(&["--bogus".into()], &mut Vec::new()),
        2
    );
}

/// The stepped runs' counts do not depend on where vmrun's own stdout
/// goes: the guest is told its stdio are pipes (where the bench keeps the
/// program's output), not vmrun's file or terminal. Once, a file there sent
/// the static hello's fstat of its stdout to the host and put its exec to
/// exit over budget (597 instructions for that fstat against 193).
#[test]
fn budget_counts_are_the_same_whatever_vmruns_stdout_is() {
    if !common::require_kvm() {
        return;
    }
    let file = std::env::temp_dir().join(format!("vmrun-bench-out-{}", std::process::id()));
    let bench = |to_file: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vmrun"));
        command.args(["bench", "--quick", "--only", "exec", "--functions", "0"]);
        let text = if to_file {
            let out = std::fs::File::create(&file).unwrap();
            assert!(command.stdout(out).status().unwrap().success());
            std::fs::read_to_string(&file).unwrap()
        } else {
            let out = command.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .map(str::to_string)
        };
        let budget = line("static hello, exec to exit");
        assert!(budget.is_some(), "no budget row in:\n{text}");
        // The stepped run's calls: none where ring 0 is not counted
        // (VMX/SVM), and then both runs lack them alike.
        (budget, line("after exec:"))
    };
    let to_pipe = bench(false);
    let to_file = bench(true);
    let _ = std::fs::remove_file(&file);
    if vmm::kvm::Platform::detect() == vmm::kvm::Platform::Pvm {
        assert!(to_pipe.1.is_some(), "no stepped calls: {to_pipe:?}");
    }
    assert_eq!(to_pipe, to_file);
}
