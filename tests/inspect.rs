//! The host's view of the guest: strace, /proc/PID/maps, the page-table
//! checker (which must be able to fail), trace records against counters,
//! and the picture and JSON outputs.

mod common;

use common::*;
use std::path::Path;
use vmm::inspect::check::{
    check, check_sharing, CacheBitmap, CheckInput, SharingInput, SpaceCheck,
};
use vmm::inspect::pagetable::{walk, WalkOptions};
use vmm::stdio::Discard;
use vmm::vm::{Event, Observe, RunEnd, Vm, VmConfig};
use vmrun_contract::layout::{PAGE_SIZE, SYSCALL_TRAMPOLINE_VIRT};
use vmrun_contract::trace::{category, kind};
use vmrun_contract::{vma_flags, VmaExport};

fn config(program: &str, observe: Observe) -> VmConfig {
    VmConfig {
        observe,
        ..VmConfig::for_program(image(program))
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn strace_of_the_raw_hello_is_exactly_its_two_calls() {
    if !require_kvm() {
        return;
    }
    let output = vmrun([
        "-i".as_ref(),
        "--strace".as_ref(),
        image("hello_raw").as_os_str(),
    ]);
    assert_status(&output, 0);
    assert_eq!(
        stderr_of(&output),
        "write(1, \"hello, world\\n\", 13) = 13\nexit(0) = ?\n+++ exited with 0 +++\n"
    );
}

/// The mmap-area lines of a maps listing, shifted so that the area's top
/// is 0 (Linux puts [vvar] and [vdso] at its top; vmrun has no vDSO).
fn normalise(maps: &str) -> Vec<String> {
    let lines: Vec<&str> = maps.lines().collect();
    let vdso_start = lines
        .iter()
        .find(|l| l.contains("[vvar]"))
        .map(|l| u64::from_str_radix(&l[..l.find('-').unwrap()], 16).unwrap());
    let mut out = Vec::new();
    for l in lines {
        if l.contains("[vvar") || l.contains("[vdso]") || l.contains("[vsyscall]") {
            continue;
        }
        let (range, rest) = l.split_once(' ').unwrap();
        let (s, e) = range.split_once('-').unwrap();
        let (s, e) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(e, 16).unwrap(),
        );
        let mmap_area = s >= 0x7ff0_0000_0000 && !rest.contains("[stack]");
        let top = vdso_start.unwrap_or(0x7fff_f7ff_f000);
        if mmap_area {
            out.push(format!("top-{:x}..top-{:x} {rest}", top - s, top - e));
        } else {
            out.push(l.to_string());
        }
    }
    out
}

#[test]
fn maps_at_exit_equal_what_linux_shows_for_the_same_program() {
    if !require_kvm() {
        return;
    }
    let program = std::fs::canonicalize(image("maps_probe")).unwrap();
    let native = std::process::Command::new("setarch")
        .args(["x86_64", "-R"])
        .arg(&program)
        .env_clear()
        .output();
    let native = match native {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => o,
        _ => {
            eprintln!("SKIPPED: `setarch -R` cannot run here, so there is no native maps listing");
            return;
        }
    };
    let output = vmrun(["-i".as_ref(), "--maps".as_ref(), program.as_os_str()]);
    assert_status(&output, 0);
    let err = stderr_of(&output);
    let at_exit = err
        .split("vmrun: maps at exit (pid 1):\n")
        .nth(1)
        .expect("maps at exit");
    let native_maps = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(normalise(at_exit), normalise(&native_maps));
}

#[test]
fn every_program_passes_the_checker_at_exec_exit_and_every_fault() {
    if !require_kvm() {
        return;
    }
    for (program, args) in [
        ("hello_static", vec![]),
        ("hello_pie", vec![]),
        ("mmap_test", vec![]),
        ("brk_test", vec![]),
        ("touch_mem", vec!["8"]),
    ] {
        let mut all = vec![
            "-i".into(),
            "--check=1".into(),
            image(program).into_os_string(),
        ];
        all.extend(args.iter().map(|a| a.into()));
        let output = vmrun(all);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{program}: {}",
            stderr_of(&output)
        );
    }
}

#[test]
fn forking_programs_pass_the_checker_across_all_processes_at_every_fault() {
    if !require_kvm() {
        return;
    }
    for (program, args) in [("proc_test", vec!["cow"]), ("fork_loop", vec!["30"])] {
        let native = native(&image(program), &args);
        let mut all = vec!["--check=1".into(), image(program).into_os_string()];
        all.extend(args.iter().map(|a| a.into()));
        let guest = vmrun(all);
        assert_same(program, &native, &guest);
    }
}

#[test]
fn maps_and_page_tables_show_every_live_process_headed_by_its_pid() {
    if !require_kvm() {
        return;
    }
    let output = vmrun([
        "--maps".as_ref(),
        "--pagetables".as_ref(),
        image("proc_test").as_os_str(),
        "exec_wait".as_ref(),
    ]);
    assert_status(&output, 0);
    let err = stderr_of(&output);
    let headers: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vmrun: maps at"))
        .collect();
    // The child's exec stops show the child and its waiting parent.
    assert_eq!(
        headers,
        [
            "vmrun: maps at exec (pid 1):",
            "vmrun: maps at exec (pid 2):",
            "vmrun: maps at exec (pid 1):",
            "vmrun: maps at exec (pid 3):",
            "vmrun: maps at exec (pid 1):",
            "vmrun: maps at exit (pid 1):",
        ]
    );
    let child = err
        .split("vmrun: maps at exec (pid 2):\n")
        .nth(1)
        .and_then(|rest| rest.split("vmrun: maps at exec (pid 1):\n").next())
        .expect("the child's maps");
    assert!(child.contains("[stack]"), "{child}");
    assert!(
        err.contains("vmrun: page tables at exit (pid 1, CR3 0x"),
        "{err}"
    );
    assert!(
        err.contains("vmrun: user mappings at exit (pid 1):"),
        "{err}"
    );
}

/// The address spaces at a fault stop where a forked child shares frames
/// copy-on-write with its parent: the walks, the spaces, and the inputs of
/// the sharing check.
struct SharedStop {
    vm: Vm,
    spaces: Vec<vmm::inspect::spaces::Space>,
    walks: Vec<vmm::inspect::pagetable::Walk>,
    shares: vmm::inspect::spaces::ShareCounts,
    cache: CacheBitmap,
    page_cache: std::ops::Range<u64>,
}

impl SharedStop {
    /// Run `proc_test cow`, stopping after every fault, to the first stop
    /// where two spaces map a private frame in common.
    fn find() -> SharedStop {
        let observe = Observe {
            stop_at_exec_exit: true,
            fault_every: 1,
            ..Default::default()
        };
        let mut cfg = config("proc_test", observe);
        cfg.argv.push("cow".into());
        let mut vm = Vm::new(&cfg).unwrap();
        loop {
            match vm.resume(&mut Discard::default(), &mut |_| {}).unwrap() {
                Event::Fault { .. } => {}
                Event::Finished(end) => panic!("no stop with shared frames: {end:?}"),
                _ => continue,
            }
            let export = vm.vma_export().unwrap();
            let (spaces, complete) = vmm::inspect::spaces::spaces_of(&export).unwrap();
            assert!(complete);
            if spaces.len() < 2 {
                continue;
            }
            let walks = spaces
                .iter()
                .map(|s| walk(vm.ram(), s.root, WalkOptions { user_only: true }).unwrap())
                .collect();
            let info = vm.boot_info();
            let cache_end = ((info.file_phys + info.file_len).div_ceil(PAGE_SIZE) * PAGE_SIZE)
                .max(info.vdso_phys + info.vdso_len);
            let stop = SharedStop {
                shares: vmm::inspect::spaces::ShareCounts::read(vm.ram(), export.share_counts),
                cache: CacheBitmap::read(vm.ram(), export.cache_bits),
                page_cache: info.file_phys..cache_end,
                vm,
                spaces,
                walks,
            };
            if stop.shared_leaf().is_some() {
                return stop;
            }
            vm = stop.vm;
        }
    }

    /// A leaf of the second space whose frame the first maps too, outside
    /// the page cache.
    fn shared_leaf(&self) -> Option<vmm::inspect::pagetable::Leaf> {
        let first: std::collections::HashSet<u64> =
            self.walks[0].user_leaves().map(|l| l.pa).collect();
        self.walks[1]
            .user_leaves()
            .find(|l| {
                first.contains(&l.pa)
                    && !self.page_cache.contains(&l.pa)
                    && !self.cache.contains(l.pa)
                    && l.pte & 1 != 0
            })
            .cloned()
    }

    fn check(&self, shares: &vmm::inspect::spaces::ShareCounts) -> Vec<String> {
        let checks: Vec<SpaceCheck> = self
            .spaces
            .iter()
            .zip(&self.walks)
            .map(|(s, w)| SpaceCheck {
                pid: s.pid,
                walk: w,
                vmas: &s.vmas,
                user_frames: s.user_frames,
            })
            .collect();
        check_sharing(&SharingInput {
            spaces: &checks,
            shares,
            page_cache: self.page_cache.clone(),
            cache_frames: &self.cache,
        })
        .iter()
        .map(|v| v.to_string())
        .collect()
    }
}

#[test]
fn checker_accepts_copy_on_write_sharing_only_with_the_guests_reference_counts() {
    if !require_kvm() {
        return;
    }
    let stop = SharedStop::find();
    let leaf = stop.shared_leaf().unwrap();
    assert!(!leaf.flags.writable, "a shared private frame is read-only");
    assert_eq!(stop.check(&stop.shares), Vec::<String>::new());
    // Without the guest's counts each shared frame has one mapping too many.
    let none = vmm::inspect::spaces::ShareCounts::default();
    let frame = format!(
        "frame {:#x}: the guest counts 1 mappings, the walks find 2",
        leaf.pa
    );
    let violations = stop.check(&none);
    assert!(
        violations.iter().any(|v| v.starts_with(&frame)),
        "{violations:#?}"
    );
}

#[test]
fn checker_reports_a_copy_on_write_frame_made_writable_behind_the_kernels_back() {
    if !require_kvm() {
        return;
    }
    let mut stop = SharedStop::find();
    let leaf = stop.shared_leaf().unwrap();
    stop.vm
        .ram()
        .write_pod(leaf.entry_phys, &(leaf.pte | 0x2))
        .unwrap();
    let root = stop.spaces[1].root;
    stop.walks[1] = walk(stop.vm.ram(), root, WalkOptions { user_only: true }).unwrap();
    let pid = stop.spaces[1].pid;
    let expected = format!("but pid {pid} maps it writable and private (copy-on-write broken)");
    let violations = stop.check(&stop.shares);
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&expected) && v.contains(&format!("{:#x}", leaf.pa))),
        "{violations:#?}"
    );
}

/// Run `program` to its exec event and return the VM stopped there.
fn stopped_at_exec(program: &str) -> Vm {
    let observe = Observe {
        stop_at_exec_exit: true,
        ..Default::default()
    };
    let mut vm = Vm::new(&config(program, observe)).unwrap();
    match vm.resume(&mut Discard::default(), &mut |_| {}).unwrap() {
        Event::Exec { .. } => vm,
        other => panic!("expected the exec event, got {other:?}"),
    }
}

/// Check `vm`'s tables against the VMAs in `export`; the violations as text.
fn check_now(vm: &Vm, export: &VmaExport, frames: u64, tables: u64) -> Vec<String> {
    let w = walk(
        vm.ram(),
        vm.cr3().unwrap(),
        WalkOptions { user_only: false },
    )
    .unwrap();
    let info = vm.boot_info();
    // The program image and the vDSO image after it.
    let cache_end = ((info.file_phys + info.file_len).div_ceil(PAGE_SIZE) * PAGE_SIZE)
        .max(info.vdso_phys + info.vdso_len);
    let input = CheckInput {
        walk: &w,
        vmas: &export.vmas[..export.count as usize],
        user_frames: frames,
        user_table_pages: tables,
        page_cache: info.file_phys..cache_end,
        cache_frames: &CacheBitmap::read(vm.ram(), export.cache_bits),
        trampoline: SYSCALL_TRAMPOLINE_VIRT,
    };
    check(&input).iter().map(|v| v.to_string()).collect()
}

/// Run to the exit event (with faults resolved along the way).
fn stopped_at_exit(program: &str) -> (Vm, u64, u64) {
    let observe = Observe {
        stop_at_exec_exit: true,
        ..Default::default()
    };
    let mut vm = Vm::new(&config(program, observe)).unwrap();
    loop {
        match vm.resume(&mut Discard::default(), &mut |_| {}).unwrap() {
            Event::Exit {
                user_frames,
                user_tables,
            } => return (vm, user_frames, user_tables),
            Event::Finished(end) => panic!("finished without an exit event: {end:?}"),
            _ => {}
        }
    }
}

#[test]
fn checker_reports_a_pte_made_writable_behind_the_kernels_back() {
    if !require_kvm() {
        return;
    }
    let (vm, frames, tables) = stopped_at_exit("hello_static");
    let export = vm.vma_export().unwrap();
    assert!(
        check_now(&vm, &export, frames, tables).is_empty(),
        "the real tables are clean"
    );
    let w = walk(vm.ram(), vm.cr3().unwrap(), WalkOptions { user_only: true }).unwrap();
    let text = w
        .leaves
        .iter()
        .find(|l| l.va >= 0x40_1000 && l.va < 0x47_9000)
        .expect("a mapped text page");
    vm.ram()
        .write_pod(text.entry_phys, &(text.pte | 0x2))
        .unwrap();
    let violations = check_now(&vm, &export, frames, tables);
    let expected = format!("{:#x}", text.va);
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&expected) && v.contains("writable but VMA")),
        "{violations:#?}"
    );
}

#[test]
fn checker_reports_a_vma_that_no_longer_allows_its_pages() {
    if !require_kvm() {
        return;
    }
    let (vm, frames, tables) = stopped_at_exit("hello_static");
    let mut export = vm.vma_export().unwrap();
    let i = (0..export.count as usize)
        .find(|&i| export.vmas[i].flags & vma_flags::EXEC != 0)
        .expect("an executable VMA");
    export.vmas[i].flags &= !vma_flags::EXEC;
    let at = vm.boot_info().vma_export_phys + 8 + 12 * 8 + 40 * i as u64 + 16;
    vm.ram().write_pod(at, &export.vmas[i].flags).unwrap();
    let reread = vm.vma_export().unwrap();
    let violations = check_now(&vm, &reread, frames, tables);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("executable (NX clear) but VMA")),
        "{violations:#?}"
    );
}

#[test]
fn checker_reports_a_frame_count_that_disagrees_with_the_tables() {
    if !require_kvm() {
        return;
    }
    let vm = stopped_at_exec("hello_static");
    let export = vm.vma_export().unwrap();
    let violations = check_now(&vm, &export, 999, 0);
    assert!(
        violations.iter().any(|v| v.contains("999")),
        "{violations:#?}"
    );
}

#[test]
fn trace_records_agree_with_the_guest_counters() {
    if !require_kvm() {
        return;
    }
    let observe = Observe {
        trace_mask: category::FAULTS | category::SYSCALLS,
        trace_records: 64,
        ..Default::default()
    };
    let mut vm = Vm::new(&config("hello_static", observe)).unwrap();
    let (mut faults, mut syscalls) = (0u64, 0u64);
    let end = loop {
        let event = vm
            .resume(&mut Discard::default(), &mut |records| {
                for r in records {
                    faults += u64::from(r.kind == kind::FAULT);
                    syscalls += u64::from(r.kind == kind::SYSCALL_ENTER);
                }
            })
            .unwrap();
        if let Event::Finished(end) = event {
            break end;
        }
    };
    assert!(matches!(end, RunEnd::Guest(_)), "{end:?}");
    let report = vm.report(end);
    let stats = report.stats.expect("guest counters");
    assert_eq!(faults, stats.page_faults);
    assert_eq!(syscalls, stats.syscalls);
    // The static hello takes 5 faults (one copies its data and bss).
    assert!(faults >= 4 && syscalls > 5);
    assert_eq!(
        vm.trace_lost(),
        0,
        "a small ring drains, it does not lose records"
    );
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vmrun-inspect-{}-{name}", std::process::id()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn json_and_svg_outputs_are_written_and_well_formed() {
    if !require_kvm() {
        return;
    }
    let (trace, stats, svg, hist, pt) = (
        temp("t.jsonl"),
        temp("s.json"),
        temp("pt.svg"),
        temp("h.svg"),
        temp("pt.json"),
    );
    let output = vmrun([
        "-i".as_ref(),
        "--trace-json".as_ref(),
        trace.as_os_str(),
        "--stats-json".as_ref(),
        stats.as_os_str(),
        "--svg".as_ref(),
        svg.as_os_str(),
        "--histogram".as_ref(),
        hist.as_os_str(),
        "--pagetables-json".as_ref(),
        pt.as_os_str(),
        image("hello_static").as_os_str(),
    ]);
    assert_clean_exit(&output, b"hello, world\n");
    let lines = read(&trace);
    assert!(lines.lines().count() > 100);
    for line in lines.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each trace line is JSON");
    }
    let stats_json: serde_json::Value = serde_json::from_str(&read(&stats)).unwrap();
    assert!(stats_json.is_object());
    let tables: serde_json::Value = serde_json::from_str(&read(&pt)).unwrap();
    assert!(tables.is_object());
    for picture in [&svg, &hist] {
        let text = read(picture);
        assert!(text.trim_start().starts_with("<svg") || text.starts_with("<?xml"));
        assert!(text.trim_end().ends_with("</svg>"));
    }
    for f in [trace, stats, svg, hist, pt] {
        let _ = std::fs::remove_file(f);
    }
}

/// The boot phases come in order, each after the one before; only the
/// kernel's entry takes a VM exit to report itself (the later milestones
/// are TSC stamps the host reads at the end).
#[test]
fn boot_phases_are_in_order_and_one_of_them_is_a_vm_exit() {
    if !require_kvm() {
        return;
    }
    let stats = temp("phases.json");
    let output = vmrun([
        "-i".as_ref(),
        "--stats-json".as_ref(),
        stats.as_os_str(),
        image("hello_static").as_os_str(),
    ]);
    assert_clean_exit(&output, b"hello, world\n");
    let json: serde_json::Value = serde_json::from_str(&read(&stats)).unwrap();
    let _ = std::fs::remove_file(&stats);
    let phases: Vec<(String, u64)> = json["boot_phases"]
        .as_array()
        .expect("boot_phases")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["ns"].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "vm created",
            "loaded",
            "kernel entry",
            "kernel ready",
            "program loaded",
            "exit"
        ],
        "{json}"
    );
    assert!(phases.windows(2).all(|w| w[0].1 <= w[1].1), "{phases:?}");
    // Every milestone is stamped in guest memory: none costs a VM exit.
    assert!(json["vm_exits"]["phase"].is_null(), "{json}");
}

#[test]
fn pagetables_and_stats_print_their_sections() {
    if !require_kvm() {
        return;
    }
    let output = vmrun([
        "-i".as_ref(),
        "--pagetables".as_ref(),
        "--stats".as_ref(),
        "--trace".as_ref(),
        "vma".as_ref(),
        image("hello_raw").as_os_str(),
    ]);
    assert_status(&output, 0);
    let err = stderr_of(&output);
    for section in [
        "page tables at exit",
        "user mappings at exit",
        "vmrun: trace",
        "page faults",
    ] {
        assert!(err.contains(section), "missing {section:?} in:\n{err}");
    }
}

#[test]
fn mem_6g_with_each_observation_option_runs_hello_as_natively() {
    if !require_kvm() {
        return;
    }
    // The guest touches pages near the top of its 6 GiB: a host with less
    // memory (the SVM lane's VM has 2 GiB) would thrash.
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    if total_kib < 8 << 20 {
        eprintln!("SKIPPED: --mem 6G needs a host with 8 GiB of memory ({total_kib} KiB here)");
        return;
    }
    // The trace ring and the VMA export area sit at the top of RAM, above
    // 4 GiB here; the kernel touches them before it leaves the boot tables.
    let program = image("hello_static");
    let native = native(&program, NO_ARGS);
    let file = temp("mem6g.out");
    let file = file.to_str().expect("a UTF-8 temp path");
    let options: [&[&str]; 13] = [
        &[],
        &["--check"],
        &["--check=1"],
        &["--maps"],
        &["--strace"],
        &["--stats"],
        &["--trace", "all"],
        &["--pagetables"],
        &["--trace-json", file],
        &["--stats-json", file],
        &["--pagetables-json", file],
        &["--svg", file],
        &["--histogram", file],
    ];
    for option in options {
        let mut args = vec!["-i", "--mem", "6G"];
        args.extend_from_slice(option);
        let program = program.to_str().expect("a UTF-8 image path");
        args.push(program);
        let guest = vmrun(&args);
        assert_eq!(
            (shell_status(&guest.status), &guest.stdout),
            (shell_status(&native.status), &native.stdout),
            "vmrun {args:?} differs from the native run:\n{}",
            describe(&guest)
        );
    }
    let _ = std::fs::remove_file(file);
}

/// `vmrun OPTIONS read_stdin` with a stdin that stays open: the program
/// (a cat) waits in its read until the test writes and closes its input.
/// Returns the child and a channel of its stderr lines.
fn cat_waiting_for_input(
    options: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let cat = image("read_stdin");
    spawn_watched(options, &[cat.to_str().unwrap()])
}

/// `vmrun OPTIONS PROGRAM...` with a stdin that stays open; the child and
/// a channel of its stderr lines.
fn spawn_watched(
    options: &[&str],
    program: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = vmrun_command(options)
        .args(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting vmrun");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The next stderr line containing `needle` (None if vmrun closed stderr,
/// or said nothing of it for the test timeout, a guard against a hang).
fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Option<String> {
    let limit = std::time::Duration::from_secs(120);
    loop {
        match rx.recv_timeout(limit) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn trace_lines_come_while_the_program_runs_not_only_at_its_exit() {
    if !require_kvm() {
        return;
    }
    // The cat waits for input that comes only once a trace line was seen:
    // a trace printed at exit only would never come.
    let (mut child, rx) = cat_waiting_for_input(&["--trace", "exec"]);
    let line = wait_for_line(&rx, "vmrun: trace");
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(b"go\n");
    let status = child.wait().unwrap();
    assert!(
        line.is_some(),
        "no trace line before the program's input came"
    );
    assert_eq!(shell_status(&status), 0);
}

#[test]
fn sigint_stops_the_run_and_the_trace_and_stats_files_are_written() {
    if !require_kvm() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vmrun-sigint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (trace, stats) = (dir.join("trace.jsonl"), dir.join("stats.json"));
    let (trace_s, stats_s) = (trace.to_str().unwrap(), stats.to_str().unwrap());
    let options = [
        "--trace",
        "exec",
        "--trace-json",
        trace_s,
        "--stats-json",
        stats_s,
    ];
    let (mut child, rx) = cat_waiting_for_input(&options);
    assert!(
        wait_for_line(&rx, "vmrun: trace").is_some(),
        "no trace line"
    );
    // SAFETY: kill sends SIGINT to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    // The SIGINT reaches the program (a cat), which dies of it.
    let said = wait_for_line(&rx, "vmrun: Interrupt");
    assert_eq!(shell_status(&status), 130, "{status:?}");
    assert!(said.is_some(), "no line saying the program was interrupted");
    let records = std::fs::read_to_string(&trace).unwrap();
    assert!(records.lines().count() > 0, "empty trace file");
    for line in records.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON line");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).expect("stats JSON");
    assert!(stats.get("boot_phases").is_some(), "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn boot_page_table_records_show_only_under_trace_boot() {
    if !require_kvm() {
        return;
    }
    let hello = image("hello_static");
    let all = vmrun(["--trace", "all", hello.to_str().unwrap()]);
    assert_status(&all, 0);
    let first = stderr_of(&all).lines().next().unwrap_or("").to_string();
    assert!(first.contains("exec-phase start"), "first line: {first}");
    let boot = vmrun(["--trace", "boot", hello.to_str().unwrap()]);
    assert_status(&boot, 0);
    let lines = stderr_of(&boot);
    assert!(lines.lines().count() > 0, "--trace boot printed nothing");
    for line in lines.lines() {
        assert!(
            line.contains("pt-alloc") || line.contains("pte-set"),
            "{line}"
        );
    }
}

#[test]
fn sigint_ends_a_long_sleep_of_the_program_at_once() {
    if !require_kvm() {
        return;
    }
    if !require_programs(&["/bin/sleep"]) {
        return;
    }
    // A sleep of a day: only an interrupted sleep lets vmrun end before
    // the wait below gives up.
    let (mut child, rx) = spawn_watched(&["--trace", "exec"], &["/bin/sleep", "86400"]);
    assert!(
        wait_for_line(&rx, "vmrun: trace").is_some(),
        "no trace line"
    );
    // SAFETY: kill sends SIGINT to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let said = wait_for_line(&rx, "vmrun: Interrupt");
    if said.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(said.is_some(), "vmrun did not stop: {status:?}");
    assert_eq!(shell_status(&status), 130, "{status:?}");
}

/// Ctrl-C reaches the program: a SIGINT to vmrun runs the program's
/// handler (here while it spins without a system call), and the program
/// goes on to its own exit status.
#[test]
fn sigint_to_vmrun_runs_the_programs_handler() {
    if !require_kvm() {
        return;
    }
    let edge = image("proc_edge");
    let (mut child, rx) = spawn_watched(&[], &[edge.to_str().unwrap(), "sigint_catch"]);
    assert!(
        wait_for_line(&rx, "ready").is_some(),
        "the program did not start"
    );
    // SAFETY: kill sends SIGINT to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let caught = wait_for_line(&rx, "caught SIGINT");
    if caught.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(caught.is_some(), "the handler did not run: {status:?}");
    assert_eq!(shell_status(&status), 3, "{status:?}");
}

/// A program that ignores SIGINT gets the first two; the third stops
/// vmrun itself (and it says so), so that such a program can be stopped.
#[test]
fn a_third_sigint_stops_vmrun_when_the_program_ignores_them() {
    if !require_kvm() {
        return;
    }
    let edge = image("proc_edge");
    let (mut child, rx) = spawn_watched(&[], &[edge.to_str().unwrap(), "sigint_ignore"]);
    assert!(
        wait_for_line(&rx, "ready").is_some(),
        "the program did not start"
    );
    // Two signals sent close together may arrive as one: send until vmrun
    // says it stopped (three at least, more should any have merged).
    let mut said = None;
    let mut sent = 0;
    while said.is_none() && sent < 10 {
        // SAFETY: kill sends SIGINT to the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        sent += 1;
        let wait = std::time::Duration::from_millis(700);
        while let Ok(line) = rx.recv_timeout(wait) {
            if line.contains("stopped by SIGINT") {
                said = Some(line);
                break;
            }
        }
    }
    assert!(sent >= 3, "vmrun stopped after {sent} SIGINT(s)");
    if said.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(said.is_some(), "vmrun did not stop: {status:?}");
    assert_eq!(shell_status(&status), 130, "{status:?}");
}

/// The TASK_STATE lines of a `--trace task` run: "pid N (process M) state".
fn task_lines(err: &str) -> Vec<String> {
    err.lines()
        .filter_map(|l| l.split(" us task ").nth(1))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Whether `want` occur in `lines` in this order (others may come between).
fn in_order(lines: &[String], want: &[&str]) -> bool {
    let mut it = lines.iter();
    want.iter().all(|w| it.any(|l| l.starts_with(w)))
}

#[test]
fn trace_shows_each_tasks_life_cycle() {
    if !require_kvm() {
        return;
    }
    for (program, mode, child_states) in [
        (
            "proc_test",
            "exec_wait",
            &["new, parent 1", "running", "zombie status 0x300", "reaped"][..],
        ),
        (
            "proc_edge",
            "stop_cont",
            &["new, parent 1", "running", "stopped", "running", "reaped"][..],
        ),
    ] {
        let native = native(&image(program), [mode]);
        let guest = vmrun([
            "--trace".as_ref(),
            "task".as_ref(),
            image(program).as_os_str(),
            mode.as_ref(),
        ]);
        assert_eq!(guest.stdout, native.stdout, "{program} {mode}");
        assert_eq!(shell_status(&guest.status), shell_status(&native.status));
        let lines = task_lines(&stderr_of(&guest));
        assert_eq!(
            lines.first().map(String::as_str),
            Some("pid 1 (process 1) running")
        );
        let child: Vec<String> = child_states
            .iter()
            .map(|s| format!("pid 2 (process 2) {s}"))
            .collect();
        let child: Vec<&str> = child.iter().map(String::as_str).collect();
        assert!(in_order(&lines, &child), "{program} {mode}: {lines:#?}");
        assert!(
            in_order(
                &lines,
                &["pid 1 (process 1) blocked", "pid 1 (process 1) running"]
            ),
            "{lines:#?}"
        );
    }
    // Nothing of the kind without the category.
    let quiet = vmrun([
        "--trace".as_ref(),
        "syscall".as_ref(),
        image("proc_test").as_os_str(),
        "exec_wait".as_ref(),
    ]);
    assert!(task_lines(&stderr_of(&quiet)).is_empty());
}

/// The last exit frees nothing unless the run asks for the leak check: with
/// it every user frame and table page is freed and the report checks the
/// counters; without it they stay held (the host discards the VM) and the
/// report checks nothing.
#[test]
fn the_last_exit_tears_everything_down_only_for_the_leak_check() {
    if !require_kvm() {
        return;
    }
    for leak_check in [false, true] {
        let observe = Observe {
            leak_check,
            ..Default::default()
        };
        let mut vm = Vm::new(&config("hello_static", observe)).unwrap();
        let report = vm.run(&mut Discard::default()).unwrap();
        assert_eq!(
            report.outcome,
            RunEnd::Guest(vmm::hypercall::Outcome::Exited(0))
        );
        assert_eq!(report.leak_checked, leak_check);
        assert_eq!(report.leaks(), None);
        let s = report.stats.expect("the guest wrote its counters");
        if leak_check {
            assert_eq!((s.user_frames, s.user_table_pages), (0, 0));
            assert_eq!(s.frames_in_use, s.frames_kernel);
        } else {
            assert!(s.user_frames > 0 && s.user_table_pages > 0, "{s:?}");
            assert!(s.frames_in_use > s.frames_kernel, "{s:?}");
        }
    }
}

/// `read_stdin` (a cat of read(2) and write(2)) on 100 KiB: run plainly,
/// its reads of stdin and writes to stdout are fast calls the VMM serves
/// from the syscall trampoline (all but the first of each, which the
/// kernel's short path serves and opens); with system calls traced, none
/// is, and every call is in the trace. The bytes are the same either way.
#[test]
fn stdio_reads_and_writes_are_fast_calls_unless_calls_are_traced() {
    if !require_kvm() {
        return;
    }
    let input: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let run = |observe: Observe| {
        let mut vm = Vm::new(&config("read_stdin", observe)).unwrap();
        let mut io = Captured {
            input: input.clone(),
            ..Default::default()
        };
        let mut records = Vec::new();
        let report = run_to_clean_exit(
            &mut vm,
            &mut io,
            &mut |r| records.extend_from_slice(r),
            |io| String::from_utf8_lossy(&io.err).into_owned(),
        );
        assert_eq!(io.out, input, "stdout is stdin");
        assert_eq!(String::from_utf8_lossy(&io.err), "read 102400 bytes\n");
        (report.timings.fast_calls, records)
    };
    let (fast, _) = run(Observe::default());
    // 104 reads (102 of 1000 bytes, one of 400, the end of file) and 103
    // writes: all but the first of each are fast calls.
    assert_eq!(fast, 103 + 102, "fast calls");
    let traced = Observe {
        trace_mask: category::SYSCALLS,
        trace_records: 256,
        ..Default::default()
    };
    let (fast, records) = run(traced);
    assert_eq!(fast, 0, "traced calls all enter the kernel");
    let reads = records
        .iter()
        .filter(|r| r.kind == kind::SYSCALL_ENTER && vmrun_contract::trace::syscall_nr(r.aux) == 0)
        .count();
    assert_eq!(reads, 104, "every read is in the trace");
}

/// `read_stdin 131072` (a cat with a page-aligned 128 KiB buffer, as
/// coreutils' cat reads and writes) on 1 MiB: the kernel's short path
/// looks at buffers of one or two pages only, so it leaves the first read
/// and the first write to the full path; served there, they open their
/// fast calls all the same, and the full path of the one does not close
/// the other's. So the other seven reads, the end of file and the other
/// seven writes are fast calls, as with small buffers.
#[test]
fn stdio_reads_and_writes_of_many_pages_are_fast_calls_too() {
    if !require_kvm() {
        return;
    }
    let input: Vec<u8> = (0..1u32 << 20).map(|i| (i * 13 % 253) as u8).collect();
    let mut config = config("read_stdin", Observe::default());
    config.argv.push("131072".into());
    let mut vm = Vm::new(&config).unwrap();
    let mut io = Captured {
        input: input.clone(),
        ..Default::default()
    };
    let report = run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    assert!(io.out == input, "stdout is stdin");
    assert_eq!(String::from_utf8_lossy(&io.err), "read 1048576 bytes\n");
    assert_eq!(report.timings.fast_calls, 8 + 7, "fast calls");
}

/// `printf_lines_musl 20000`: musl's stdio flushes its 1 KiB buffer into
/// a pipe with writev(2). The first writev of stdout goes to the kernel,
/// which serves it in full and opens writev's fast call; the rest are
/// fast calls (the build before answered none: every flush entered the
/// kernel). The output is the program's.
#[test]
fn a_writev_to_stdout_is_a_fast_call() {
    if !require_kvm() || !image("printf_lines_musl").exists() {
        return;
    }
    let mut config = config("printf_lines_musl", Observe::default());
    config.argv.push("20000".into());
    let mut vm = Vm::new(&config).unwrap();
    let mut io = Captured::default();
    let report = run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    let expected: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    assert!(io.out == expected.as_bytes(), "stdout");
    let flushes = (expected.len() as u64).div_ceil(1024);
    assert!(
        report.timings.fast_calls + 2 >= flushes,
        "{} fast calls for about {flushes} flushes",
        report.timings.fast_calls
    );
}

/// `stat_paths -n COUNT PATH` run to a clean exit: its stdout (checked to
/// say that every one of the COUNT stats was the first's), the VM (for
/// its exit counts) and the report.
fn stat_in_a_row(count: u32, path: &str) -> (Vm, vmm::vm::RunReport) {
    let mut config = config("stat_paths", Observe::default());
    config
        .argv
        .extend(["-n".into(), count.to_string().into(), path.into()]);
    let mut vm = Vm::new(&config).unwrap();
    let mut io = Captured::default();
    let report = run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    let out = String::from_utf8_lossy(&io.out);
    let each = format!("{count} more stats of {path}: each the first");
    assert!(out.contains(&each) && !out.contains("DIFFERENT"), "{out}");
    (vm, report)
}

/// A program that stats absolute paths in a row (as Python's imports do):
/// the first stat goes to the kernel, which opens a path's stat to the
/// VMM's fast call; the rest are fast calls, with the same answers (the
/// program checks each against the first). The build before answered
/// none: every stat entered the kernel and made a hypercall.
#[test]
fn a_stat_of_an_absolute_path_is_a_fast_call() {
    if !require_kvm() {
        return;
    }
    let (_, report) = stat_in_a_row(500, "/usr/lib");
    assert!(
        report.timings.fast_calls >= 500,
        "{} fast calls for 500 stats in a row",
        report.timings.fast_calls
    );
}

/// A tree of `dirs` directories of `files` files each (and a symlink in
/// each), under a fresh directory with a file `top.txt` and a directory
/// `top.d` in it.
fn make_tree(name: &str, dirs: usize, files: usize) -> std::path::PathBuf {
    let root = temp(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("top.d")).unwrap();
    std::fs::write(root.join("top.txt"), b"top\n").unwrap();
    for d in 0..dirs {
        let dir = root.join(format!("d{d}")).join(format!("inner{}", d % 3));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f}.dat")), vec![b'x'; d * 7 + f]).unwrap();
        }
        std::os::unix::fs::symlink("f0.dat", dir.join("link")).unwrap();
    }
    root
}

/// A walk of a directory tree as GNU du walks it: each directory opened by
/// its parent's fd, asked fcntl, dupped, read, and its entries statted by
/// the dup between fcntls. Every stat is a fast call: the open, the dup,
/// the reads and the fcntls leave the calls of a path open (and publish
/// the directory they open or dup), where before each closed them and the
/// next stat entered the kernel (about 2 of every 3 stats of this walk).
/// The answers are the native run's, and so are those by an fd number
/// that a closed directory's fd had and a file, then another directory,
/// takes next, and a directory read again after an lseek to 0. The read
/// that ends each listing asks the host nothing: it said, with the last
/// entries, that none followed (before, every directory took two reads
/// from the host).
#[test]
fn a_tree_walked_as_du_walks_it_stats_its_entries_by_fast_calls() {
    if !require_kvm() {
        return;
    }
    let root = make_tree("walk", 30, 6);
    let args = [root.to_str().unwrap(), "top.txt", "top.d"];
    let native = native(&image("walk_tree"), args);
    assert_status(&native, 0);
    let mut config = config("walk_tree", Observe::default());
    config.argv.extend(args.iter().map(Into::into));
    let mut vm = Vm::new(&config).unwrap();
    let mut io = Captured::default();
    let report = run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    std::fs::remove_dir_all(&root).unwrap();
    let out = String::from_utf8_lossy(&io.out);
    assert_eq!(out, String::from_utf8_lossy(&native.stdout));
    assert!(
        out.contains("stat of top.txt by it: Not a directory"),
        "{out}"
    );
    let stats: u64 = out
        .split(", ")
        .find_map(|w| w.strip_suffix(" stats\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stat count in {out}"));
    assert!(stats > 250, "{out}");
    assert!(
        report.timings.fast_calls >= stats,
        "{} fast calls for {stats} stats",
        report.timings.fast_calls
    );
    // Each directory's listing ends with a read that gives nothing, which
    // the kernel answers itself: the host said where the entries end.
    let dirs: u64 = out
        .split("walk: ")
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no directory count in {out}"));
    let reads = vm.fs_stats().calls.get("getdents").copied().unwrap_or(0);
    assert!(
        reads <= dirs + 8,
        "{reads} directory reads from the host for {dirs} directories"
    );
}

/// busybox md5sum reads a cached file 4 KiB at a time into a buffer that
/// is not page aligned: each read's bytes go to two user pages, which the
/// host copies with one request (COPY_LIST) where it took two (COPY each).
/// The sum is the native run's.
#[test]
fn a_cached_read_across_two_user_pages_takes_one_vm_exit() {
    if !require_kvm() || !require_programs(&["/bin/busybox"]) {
        return;
    }
    let path = temp("read-pages");
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let native = native(
        Path::new("/bin/busybox"),
        ["md5sum", path.to_str().unwrap()],
    );
    assert_status(&native, 0);
    let mut config = VmConfig::for_program(std::path::PathBuf::from("/bin/busybox"));
    config
        .argv
        .extend(["md5sum".into(), path.clone().into_os_string()]);
    let mut vm = Vm::new(&config).unwrap();
    let mut io = Captured::default();
    run_to_clean_exit(&mut vm, &mut io, &mut |_| {}, |io| {
        String::from_utf8_lossy(&io.err).into_owned()
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(io.out, native.stdout);
    let reads = data.len() as u64 / 4096;
    let hypercalls = vm.exits().get("hypercall").copied().unwrap_or(0);
    assert!(
        hypercalls < reads + reads / 2,
        "{hypercalls} hypercall exits for {reads} reads of a page"
    );
}

/// Stats of a path the kernel serves itself (in /proc) in a row: the VMM
/// would decline each, so the kernel does not open the calls of a path
/// after serving one, and none costs a declined fast call's VM exit. The
/// build before reopened after each and had all 300 declined.
#[test]
fn a_path_the_kernel_serves_itself_does_not_reopen_the_fast_call() {
    if !require_kvm() {
        return;
    }
    let (vm, _) = stat_in_a_row(300, "/proc/self/status");
    let declined = vm.exits().get("fast call declined").copied().unwrap_or(0);
    assert!(
        declined < 30,
        "{declined} declined fast calls for 300 stats of /proc"
    );
}
