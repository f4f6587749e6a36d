//! The `reelgen` binary: everything lives in the library; see `reelgen::cli`.
#![allow(unsafe_code)]

fn main() -> std::process::ExitCode {
    for (name, value) in reelgen::render::gpu::HEADLESS_ENV {
        if std::env::var_os(name).is_none() {
            // SAFETY: the first thing `main` does, before any other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
    reelgen::cli::main()
}
