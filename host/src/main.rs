//! The `tina4-wasm` binary: everything it does is in the library.

fn main() -> std::process::ExitCode {
    tina4_wasm::run()
}
