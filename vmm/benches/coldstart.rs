//! Cold start of `vmrun` on small static programs against running the same
//! binaries natively, and where the time goes (VM creation, load, kernel
//! entry, kernel ready, program loaded, exit).
//!
//! Run with `cargo bench --bench coldstart [-- RUNS]`. Everything is
//! measured in this one run on this machine; the figures are printed, never
//! asserted (the machine is shared and noisy).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmm::stdio::Discard;
use vmm::vm::{Timings, Vm, VmConfig};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn time_command(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    let elapsed = t.elapsed().as_secs_f64() * 1e3;
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "benchmark run failed: {cmd:?}"
    );
    elapsed
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn phases(program: &Path) -> Timings {
    let config = VmConfig {
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..VmConfig::for_program(program)
    };
    let mut vm = Vm::new(&config).expect("create the VM");
    vm.run(&mut Discard::default())
        .expect("run the program")
        .timings
}

fn bench(name: &str, runs: usize, vmrun: &Path) {
    let program = vmrun_images::path(name);
    let native: Vec<f64> = (0..runs)
        .map(|_| time_command(&mut Command::new(&program)))
        .collect();
    let guest: Vec<f64> = (0..runs)
        .map(|_| time_command(Command::new(vmrun).arg(&program)))
        .collect();
    let (n50, n99) = summary(native);
    let (g50, g99) = summary(guest);
    println!(
        "{name:<14} native median {n50:8.3} ms p99 {n99:8.3} | vmrun median {g50:8.3} ms \
         p99 {g99:8.3} | ratio {:6.1}x",
        g50 / n50
    );
    let all: Vec<Timings> = (0..runs).map(|_| phases(&program)).collect();
    let col = |f: &dyn Fn(&Timings) -> f64| summary(all.iter().map(f).collect()).0;
    println!(
        "{:<14} phases (median ms since start): vm created {:.3}, loaded {:.3}, kernel entry \
         {:.3}, kernel ready {:.3}, program loaded {:.3}, exit {:.3}",
        "",
        col(&|t| t.vm_create.as_secs_f64() * 1e3),
        col(&|t| t.load.as_secs_f64() * 1e3),
        col(&|t| ms(t.kernel_entry)),
        col(&|t| ms(t.kernel_ready)),
        col(&|t| ms(t.exec_loaded)),
        col(&|t| t.total.as_secs_f64() * 1e3),
    );
}

fn main() {
    let runs = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(30);
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        println!("SKIPPED: /dev/kvm is not available");
        return;
    }
    let vmrun = Path::new(env!("CARGO_BIN_EXE_vmrun"));
    println!("cold start, {runs} runs each (wall time of the whole process)");
    for name in ["hello_raw", "hello_static", "hello_pie"] {
        bench(name, runs, vmrun);
    }
}
