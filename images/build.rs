//! Compiles every guest test program in `src/catalog.rs` from the sources in
//! `c/` into `OUT_DIR`, and writes `OUT_DIR/built.rs`: the names of the
//! images that were built (optional ones are skipped, with a warning, when
//! their compiler is missing). `gcc` itself is required.

#[allow(dead_code)]
#[path = "src/catalog.rs"]
mod catalog;

use catalog::{Compiler, Image, IMAGES};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=src/catalog.rs");
    println!("cargo:rerun-if-env-changed=PATH");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
    require_gcc();
    let jobs: Vec<(&Image, Child)> = IMAGES
        .iter()
        .filter_map(|image| Some((image, start_build(image, &src_dir, &out_dir)?)))
        .collect();
    let built: Vec<&str> = jobs
        .into_iter()
        .map(|(image, child)| finish_build(image, child))
        .collect();
    write_built_list(&out_dir, &built);
}

/// Fails the build with a clear message when there is no usable `gcc`.
fn require_gcc() {
    if find_in_path("gcc").is_none() {
        panic!(
            "vmrun-images needs gcc to build its guest test programs, and none is on PATH: \
             install it (Debian: apt-get install gcc libc6-dev)"
        );
    }
}

/// The program to run for a compiler, or `None` when an optional one is missing.
fn compiler_program(compiler: Compiler) -> Option<PathBuf> {
    match compiler {
        Compiler::Rustc => Some(PathBuf::from(
            env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()),
        )),
        other => find_in_path(other.command()),
    }
}

/// Asks cargo to run this script again when a directory on PATH changes,
/// once per build. PATH itself may stay the same while a missing compiler
/// is installed into one of its directories (apt-get install musl-tools
/// adds /usr/bin/musl-gcc): the directory's own mtime changes then, and
/// the skipped images get built. Only builds that skipped an image watch
/// the directories, so a complete build never reruns for them.
fn watch_path_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(path) = env::var_os("PATH") else {
            return;
        };
        for dir in env::split_paths(&path).filter(|d| d.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    });
}

/// Starts compiling one image; `None` (with a cargo warning) if its optional compiler is missing.
fn start_build(image: &Image, src_dir: &Path, out_dir: &Path) -> Option<Child> {
    let Some(program) = compiler_program(image.compiler) else {
        watch_path_dirs();
        println!(
            "cargo:warning=skipping image {}: {} not found on PATH (Debian: apt-get install musl-tools)",
            image.name,
            image.compiler.command()
        );
        return None;
    };
    let mut command = Command::new(&program);
    command
        .args(image.flags)
        .arg(src_dir.join(image.source))
        .arg("-o")
        .arg(out_dir.join(image.name));
    if image.compiler != Compiler::Rustc {
        command.arg("-I").arg(src_dir);
    }
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} to build image {}: {e}",
                program.display(),
                image.name
            )
        });
    Some(child)
}

/// Waits for one compiler run and fails the build if it failed.
fn finish_build(image: &Image, child: Child) -> &'static str {
    let output = child.wait_with_output().expect("waiting for a compiler");
    if !output.status.success() {
        panic!(
            "building image {} from c/{} failed ({}):\n{}{}",
            image.name,
            image.source,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    image.name
}

/// Writes `built.rs`: `const BUILT: &[&str]`, the names of the images that exist.
fn write_built_list(out_dir: &Path, built: &[&str]) {
    let list = format!("/// The images this build produced.\nconst BUILT: &[&str] = &{built:?};\n");
    fs::write(out_dir.join("built.rs"), list).expect("writing built.rs");
}

/// The first executable file called `name` in a directory on PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
