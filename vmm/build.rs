//! Builds the guest kernel with its own cargo invocation and guest-only
//! flags, so that `vmrun` embeds it and is one self-contained binary.
//!
//! The kernel is an ordinary crate of this workspace (its logic is unit
//! tested on the host), but its binary needs flags no host code may see:
//! kernel code model, no red zone, no SSE in ring 0. They are passed through
//! CARGO_ENCODED_RUSTFLAGS together with an explicit `--target`, which keeps
//! them away from build scripts, into a target directory of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";
const GUEST_RUSTFLAGS: &[&str] = &[
    "-Crelocation-model=static",
    "-Ccode-model=kernel",
    "-Cno-redzone=yes",
    "-Ctarget-feature=-sse,-sse2",
    "-Cforce-frame-pointers=no",
    // Inline more than -O3's default (225): where ring 0 is emulated each
    // instruction of a call's set-up and return costs about a microsecond.
    // Exec of the static hello 2,965 -> 2,792 ring-0 instructions, a
    // shell's spawn of a program -3%, for a kernel image of 1 MB instead
    // of 0.6 MB (past 2000 the counts barely move and the image grows on).
    "-Cllvm-args=-inline-threshold=2000",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("vmm/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for dir in [
        "guest-kernel/src",
        "guest-kernel/linker.ld",
        "guest-kernel/build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // The guest's own manifest, and the workspace's, which holds the
    // `guest` profile it is built with.
    for manifest in ["guest-kernel/Cargo.toml", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(manifest).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("contract/src").display()
    );
    let elf = build_guest(&root, &out_dir.join("guest-target"));
    std::fs::copy(&elf, out_dir.join("guest-kernel.elf")).expect("copy the guest kernel");
    build_vdso(&manifest_dir.join("vdso"), &out_dir.join("vdso.so"));
}

/// Build the vDSO the guest maps into every process (a small shared
/// object, one PT_LOAD, no relocations) with the system's gcc.
fn build_vdso(src: &Path, out: &Path) {
    for f in ["vdso.c", "vdso.lds", "vdso.map"] {
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "gcc".into()))
        .args([
            "-shared",
            "-nostdlib",
            "-fPIC",
            "-O2",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--hash-style=both",
            "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none",
        ])
        .arg(format!(
            "-Wl,--version-script={}",
            src.join("vdso.map").display()
        ))
        .arg(format!("-Wl,-T,{}", src.join("vdso.lds").display()))
        .arg("-o")
        .arg(out)
        .arg(src.join("vdso.c"))
        .status()
        .expect("run gcc for the vDSO (Debian: apt-get install gcc)");
    assert!(status.success(), "building the vDSO failed ({status})");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

fn build_guest(root: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("guest-kernel"))
        .args([
            "build",
            "--quiet",
            "--bin",
            "guest-kernel",
            "--features",
            "kernel",
        ])
        .args(["--profile", "guest", "--target", TARGET])
        .arg("--manifest-path")
        .arg(root.join("guest-kernel/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    scrub_env(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", GUEST_RUSTFLAGS.join("\x1f"));
    let status = cmd.status().expect("run cargo for the guest kernel");
    assert!(
        status.success(),
        "building the guest kernel failed ({status})"
    );
    target_dir.join(TARGET).join("guest").join("guest-kernel")
}

/// Remove everything the outer cargo sets that would leak host settings
/// (or a clippy/coverage wrapper) into the guest build.
fn scrub_env(cmd: &mut Command) {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
}
