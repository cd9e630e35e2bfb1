//! `herald-loadtest`: everything lives in the library; see `herald-loadtest --help`.

// Cargo links the binary with every dependency of the package, and it only wires the
// library: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

/// jemalloc, as the router's: the generator shares the cores with the servers it
/// measures, so what it spends in malloc is taken from them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    herald_loadtest::main_with_args(std::env::args().collect())
}
