//! `herald-loadtest`: everything lives in the library; see `herald-loadtest --help`.

fn main() -> std::process::ExitCode {
    herald_loadtest::main_with_args(std::env::args().collect())
}
