//! hello_rust: a Rust std program, statically linked against glibc
//! (`-C target-feature=+crt-static`, which rustc links as a static PIE).
fn main() {
    println!("hello, world");
}
