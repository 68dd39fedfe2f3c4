//! Memory management seen from a program: the brk heap, anonymous
//! mmap/munmap/mprotect (the non-fatal checks; fatal ones are in
//! exit_status.rs) and demand paging of hundreds of MiB.

mod common;

use common::*;
use std::ffi::OsStr;
use std::time::Instant;

#[test]
fn brk_test_grows_shrinks_and_regrows_the_heap_and_prints_brk_ok() {
    if !require_kvm() {
        return;
    }
    assert_clean_exit(&vmrun([image("brk_test")]), b"brk ok\n");
}

#[test]
fn mmap_test_default_mode_passes_all_checks_and_prints_mmap_ok() {
    if !require_kvm() {
        return;
    }
    assert_clean_exit(&vmrun([image("mmap_test")]), b"mmap ok\n");
}

/// Runs `vmrun OPTIONS touch_mem MIB`, reporting the time it took.
fn check_touch_mem(options: &[&str], mib: u32) {
    if !require_kvm() {
        return;
    }
    let program = image("touch_mem");
    let mib_arg = mib.to_string();
    let mut args: Vec<&OsStr> = options.iter().map(OsStr::new).collect();
    args.extend([program.as_os_str(), OsStr::new(&mib_arg)]);
    let start = Instant::now();
    let output = vmrun(args);
    eprintln!(
        "touch_mem {mib} MiB under vmrun {options:?} took {:?}",
        start.elapsed()
    );
    assert_clean_exit(&output, format!("touched {mib} MiB\n").as_bytes());
}

/// 200 MiB fits in the default 256 MiB of guest RAM, with room for the
/// kernel, the program and the page tables (about 400 KiB for 200 MiB).
#[test]
fn touch_mem_200_mib_in_default_memory_prints_touched_200_mib() {
    check_touch_mem(&[], 200);
}

/// More than the default RAM holds: needs `--mem` to be honoured.
#[test]
fn touch_mem_400_mib_with_mem_512m_prints_touched_400_mib() {
    check_touch_mem(&["--mem", "512M"], 400);
}

/// 10 MiB passes the overcommit check at 16 MiB of RAM (one mapping no
/// larger than the RAM the kernel manages: 16 MiB less low memory, the
/// kernel image's 4 MiB and the program file), but the kernel's own
/// share (its heap) leaves less than that.
#[test]
fn touching_more_than_guest_ram_is_killed_with_a_message_naming_out_of_memory_and_mem() {
    if !require_kvm() {
        return;
    }
    let output = vmrun(["--mem", "16M", image("touch_mem").to_str().unwrap(), "10"]);
    assert_status(&output, 137);
    assert_stderr_contains(&output, "out of guest memory");
    assert_stderr_contains(&output, "--mem");
}

/// `--fault-size 4k` maps one page per fault as Linux without transparent
/// huge pages does: the program counts exactly as many faults (getrusage
/// `ru_minflt`) as pages written, as it does natively.
#[test]
fn fault_size_4k_takes_one_fault_per_page_touched_as_natively() {
    if !require_kvm() {
        return;
    }
    let program = image("fault_size");
    let native = native(&program, ["count", "48"]);
    assert_clean_exit(&native, b"faults 48\n");
    let guest = vmrun([
        OsStr::new("--fault-size"),
        OsStr::new("4k"),
        program.as_os_str(),
        OsStr::new("count"),
        OsStr::new("48"),
    ]);
    assert_same("fault_size count 48", &native, &guest);
}

/// The default policy (and `--fault-size 64k`) maps each 64 KiB block of
/// a small anonymous mapping on its first fault: 48 pages, 3 faults.
#[test]
fn default_fault_size_maps_a_64k_block_per_fault() {
    if !require_kvm() {
        return;
    }
    let program = image("fault_size");
    for options in [&[][..], &["--fault-size", "64k"], &["--fault-size", "2M"]] {
        let mut args: Vec<&OsStr> = options.iter().map(OsStr::new).collect();
        args.extend([program.as_os_str(), OsStr::new("count"), OsStr::new("48")]);
        assert_clean_exit(&vmrun(args), b"faults 3\n");
    }
}

/// 64 KiB blocks and 2 MiB pages (of an mmap and of the brk heap) keep
/// every page's contents through munmap, mprotect and mremap of single
/// pages inside them and through fork's copy-on-write, under every
/// --fault-size, with the checker on (as every test runs): the output is
/// the native run's.
#[test]
fn large_faults_stay_correct_after_munmap_mprotect_mremap_and_fork() {
    if !require_kvm() {
        return;
    }
    let program = image("fault_size");
    let native = native(&program, ["check"]);
    assert_status(&native, 0);
    for size in ["4k", "64k", "2m"] {
        let guest = vmrun([
            OsStr::new("--fault-size"),
            OsStr::new(size),
            program.as_os_str(),
            OsStr::new("check"),
        ]);
        assert_same(
            &format!("fault_size check, --fault-size {size}"),
            &native,
            &guest,
        );
    }
}

/// Far more anonymous memory than the guest has goes through munmap (and
/// a child's exit) and back out: every mapping reads zero at first and
/// keeps its pages until unmapped, as natively; and a 64 KiB block fault
/// still maps a whole block once the never-used frames are gone, from the
/// blocks unmapped before (one fault per block in the last round, where
/// without them each page takes its own fault).
#[test]
fn unmapped_blocks_come_back_zeroed_and_whole_when_guest_ram_runs_out() {
    if !require_kvm() {
        return;
    }
    let program = image("fault_size");
    let native = native(&program, ["churn", "40", "4"]);
    assert_status(&native, 0);
    let guest = vmrun([
        OsStr::new("--mem"),
        OsStr::new("48M"),
        program.as_os_str(),
        OsStr::new("churn"),
        OsStr::new("40"),
        OsStr::new("4"),
    ]);
    assert_same("fault_size churn 40 4, --mem 48M", &native, &guest);
    let blocks = vmrun([
        OsStr::new("--mem"),
        OsStr::new("48M"),
        OsStr::new("--fault-size"),
        OsStr::new("64k"),
        program.as_os_str(),
        OsStr::new("churn"),
        OsStr::new("40"),
        OsStr::new("4"),
        OsStr::new("faults"),
    ]);
    let mut want = native.stdout.clone();
    want.extend_from_slice(b"last round: 64 faults for 1024 pages\n");
    assert_clean_exit(&blocks, &want);
}

#[test]
fn fault_size_rejects_other_sizes() {
    // A usage error is vmrun's own failure (125), as for any bad option.
    let output = vmrun(["--fault-size", "8k", "/bin/true"]);
    assert_status(&output, 125);
    assert_stderr_contains(&output, "4k, 64k or 2m");
}

/// Linux's heuristic overcommit (`vm.overcommit_memory` 0) refuses one
/// private writable mapping larger than RAM and swap: 64 MiB at 16 MiB.
#[test]
fn mapping_more_than_guest_ram_fails_with_enomem_as_linux_overcommit_heuristic() {
    if !require_kvm() {
        return;
    }
    let output = vmrun(["--mem", "16M", image("touch_mem").to_str().unwrap(), "64"]);
    assert_status(&output, 1);
    assert_stderr_contains(&output, "mmap of 64 MiB: Cannot allocate memory");
}

/// The same refusal natively: a mapping larger than the host's RAM and
/// swap (1 TiB here) fails on both, with the same message.
#[test]
fn mapping_more_than_ram_and_swap_fails_natively_and_under_vmrun_alike() {
    if !require_kvm() {
        return;
    }
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() != "0" {
        eprintln!("SKIPPED: vm.overcommit_memory is {mode:?}, not the heuristic mode 0");
        return;
    }
    let program = image("touch_mem");
    let native = native(&program, ["1048576"]);
    let guest = vmrun([program.to_str().unwrap(), "1048576"]);
    assert_same("touch_mem 1 TiB", &native, &guest);
    assert_status(&guest, 1);
}
