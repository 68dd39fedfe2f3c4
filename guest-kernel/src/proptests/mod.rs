//! Property tests (proptest) of the kernel's pure logic against simple
//! models: the ELF load plan on arbitrary and mutated images, the page-table
//! code against a map of pages, and the address-space operations (mmap,
//! munmap, mprotect, mremap and the VMA set's split and merge) against a
//! page-by-page model, and the page cache's index of a file's pages
//! against a map of pages.
//!
//! Every test is named `prop_…`. `cargo test` runs a few dozen to a few
//! hundred cases of each (seconds); a longer run is
//! `PROPTEST_CASES=100000 cargo test --release -p guest-kernel prop_`
//! (docs/hardening.md). A failure prints the minimal case proptest shrank
//! it to: turn it into a unit test next to the code it breaks.

mod cache;
mod elf;
mod paging;
mod space;
mod vma;

use proptest::test_runner::Config;

/// `cases` cases per property, or `PROPTEST_CASES` when set; no failure
/// files written into the source tree.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
