//! `vmrun bench` until the CLI wires it: `cargo run --release -p vmm
//! --example bench -- [OPTIONS]` (build `vmrun` first for the cold-start
//! workload: `cargo build --release`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vmm::bench::run(&args));
}
