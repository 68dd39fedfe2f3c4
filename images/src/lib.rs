//! Guest test programs for vmrun, compiled from source by this crate's build
//! script (no binaries are committed).
//!
//! The table in [`IMAGES`] says how each program is built: C sources in
//! `images/c/` built with `gcc` (static glibc, static PIE, or no libc at all),
//! with `musl-gcc` when Debian's `musl-tools` is installed, and Rust std
//! programs built with the toolchain's own `rustc`. Tests ask for a program by
//! name:
//!
//! ```no_run
//! let hello = vmrun_images::path("hello_static");
//! let status = std::process::Command::new(&hello).status().unwrap();
//! assert!(status.success());
//! ```
//!
//! Optional images (today only `hello_musl`) may be missing; [`is_built`]
//! tells, and [`path`] panics with the reason.

#![deny(missing_docs)]

mod catalog;

pub use catalog::{Compiler, Image, IMAGES};

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/built.rs"));

/// The directory that holds the built programs.
pub fn dir() -> &'static Path {
    Path::new(env!("OUT_DIR"))
}

/// The catalogue entry for `name`; panics if there is no such image.
pub fn image(name: &str) -> &'static Image {
    IMAGES
        .iter()
        .find(|image| image.name == name)
        .unwrap_or_else(|| {
            let known: Vec<&str> = names().collect();
            panic!("vmrun-images: no image called {name:?}; known images: {known:?}")
        })
}

/// The names of all images in the catalogue, built or not.
pub fn names() -> impl Iterator<Item = &'static str> {
    IMAGES.iter().map(|image| image.name)
}

/// The names of the images this build produced.
pub fn built() -> &'static [&'static str] {
    BUILT
}

/// Whether the image `name` was built; panics if there is no such image.
pub fn is_built(name: &str) -> bool {
    let image = image(name);
    BUILT.contains(&image.name)
}

/// The path of the built program `name`.
///
/// Panics if there is no such image, or if it is an optional image that this
/// build skipped because its compiler was missing.
pub fn path(name: &str) -> PathBuf {
    if !is_built(name) {
        panic!(
            "vmrun-images: image {name:?} was not built: its compiler ({}) was missing at build time",
            image(name).compiler.command()
        );
    }
    dir().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_image_is_built_as_an_elf_file() {
        for image in IMAGES.iter().filter(|image| !image.compiler.is_optional()) {
            let bytes = std::fs::read(path(image.name)).expect("reading a built image");
            assert_eq!(&bytes[..4], b"\x7fELF", "{} is not an ELF file", image.name);
        }
    }

    #[test]
    fn image_names_are_unique() {
        let mut names: Vec<&str> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), IMAGES.len());
    }

    #[test]
    #[should_panic(expected = "no image called \"nonesuch\"")]
    fn path_of_an_unknown_image_panics_with_its_name() {
        path("nonesuch");
    }
}
