//! The `reelgen` binary: everything lives in the library; see `reelgen::cli`.

fn main() -> std::process::ExitCode {
    reelgen::cli::main()
}
