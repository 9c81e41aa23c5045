//! Where components are compiled to native code, and with which settings.
//!
//! The server compiles in a child process: this same binary, run as the
//! hidden `tina4-wasm compile-component`, reads a component on stdin and
//! writes wasmtime's serialized form to stdout. A cold compile of a
//! JavaScript or Python app peaks at hundreds of MiB; in the child, all of
//! it goes back to the system when the child exits, where in the server
//! the allocator's arenas kept ~100 MiB of it for good. A component that
//! makes the compiler run out of memory or crash takes the child down, not
//! the server. One-shot commands (`build`, `check`, `routes`) compile in
//! their own process.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use wasmtime::Engine;

/// The engine settings that change generated code: the server and its
/// compiling child must agree on them (wasmtime refuses code compiled
/// under others when it is loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Parser)]
pub(crate) struct CodeSettings {
    /// Guest code counts fuel (some apps have a fuel budget).
    #[arg(long)]
    pub(crate) fuel: bool,
    /// Quicker, less optimized compiles, for development.
    #[arg(long)]
    pub(crate) fast_compile: bool,
}

impl CodeSettings {
    /// The wasmtime configuration every engine of this host uses.
    pub(crate) fn config(self) -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Component-model concurrency would roughly double the cost of a call.
        config.concurrency_support(false);
        config.consume_fuel(self.fuel);
        if self.fast_compile {
            // Roughly 40% less compile time for slower guest code: for the
            // edit-build-swap loop of development.
            config.cranelift_opt_level(wasmtime::OptLevel::None);
            config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        }
        config
    }

    /// An engine with these settings.
    pub(crate) fn engine(self) -> anyhow::Result<Engine> {
        Engine::new(&self.config())
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")
    }

    /// The child's command-line flags for these settings.
    fn flags(self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.fuel {
            flags.push("--fuel");
        }
        if self.fast_compile {
            flags.push("--fast-compile");
        }
        flags
    }
}

/// Where compiles run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompileIn {
    /// Here: for one-shot commands, and the compiling child itself.
    ThisProcess,
    /// In a child process: for the server.
    ChildProcess,
}

/// Compiles components to native code.
#[derive(Debug, Clone)]
pub(crate) struct Compiler {
    /// The settings of the engine the code is for.
    settings: CodeSettings,
    /// The binary to run as the compiling child; `None` compiles here.
    child: Option<PathBuf>,
}

/// The most of a failed child's stderr worth quoting.
const ERROR_QUOTE_BYTES: usize = 4096;

impl Compiler {
    /// A compiler of code for engines with `settings`. A child process runs
    /// this very binary (even if the file it was started from has since
    /// been replaced).
    pub(crate) fn new(settings: CodeSettings, place: CompileIn) -> Self {
        let child = (place == CompileIn::ChildProcess).then(|| {
            if cfg!(target_os = "linux") {
                PathBuf::from("/proc/self/exe")
            } else {
                std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tina4-wasm"))
            }
        });
        Self { settings, child }
    }

    /// Compiles `component` for `engine` (whose settings are this
    /// compiler's): wasmtime's serialized form. Blocking.
    pub(crate) fn compile(&self, engine: &Engine, component: &[u8]) -> anyhow::Result<Vec<u8>> {
        match &self.child {
            None => engine
                .precompile_component(component)
                .map_err(anyhow::Error::from)
                .context("not a valid WebAssembly component"),
            Some(program) => compile_in_child(program, self.settings, component),
        }
    }
}

/// Runs the compiling child and collects what it wrote.
fn compile_in_child(
    program: &Path,
    settings: CodeSettings,
    component: &[u8],
) -> anyhow::Result<Vec<u8>> {
    // The child reads a tenant's component: it gets nothing it does not
    // need, no environment (the server's secrets live there) and no
    // working folder with a `.env` in it.
    let mut child = Command::new(program)
        .arg("compile-component")
        .args(settings.flags())
        .env_clear()
        .env("RUST_LOG", "error")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start the compiler process {}", program.display()))?;
    // The child reads all of its input before it writes anything, so this
    // cannot deadlock; a child that died early shows in its status below.
    let mut stdin = child.stdin.take().context("the compiler's stdin")?;
    let _ = stdin.write_all(component);
    drop(stdin);
    let output = child
        .wait_with_output()
        .context("waiting for the compiler process")?;
    if !output.status.success() {
        let start = output.stderr.len().saturating_sub(ERROR_QUOTE_BYTES);
        let said = String::from_utf8_lossy(&output.stderr[start..]);
        let said = said.trim().trim_start_matches("tina4-wasm: ");
        if said.is_empty() {
            bail!("the compiler process failed ({})", output.status);
        }
        bail!("{said}");
    }
    Ok(output.stdout)
}

/// The child's side (`tina4-wasm compile-component`): compiles the
/// component on stdin with `settings` and writes the result to stdout.
pub(crate) fn compile_component_command(settings: CodeSettings) -> anyhow::Result<()> {
    let mut component = Vec::new();
    std::io::stdin()
        .read_to_end(&mut component)
        .context("reading the component")?;
    let compiler = Compiler::new(settings, CompileIn::ThisProcess);
    let compiled = compiler.compile(&settings.engine()?, &component)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&compiled)
        .and_then(|()| stdout.flush())
        .context("writing the compiled component")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_reads_back_every_setting_it_is_given() {
        use clap::Parser;
        for fuel in [false, true] {
            for fast_compile in [false, true] {
                let settings = CodeSettings { fuel, fast_compile };
                let flags = std::iter::once("compile-component").chain(settings.flags());
                assert_eq!(CodeSettings::try_parse_from(flags).unwrap(), settings);
            }
        }
    }

    #[test]
    fn in_process_compiles_refuse_what_is_not_a_component() {
        let engine = CodeSettings::default().engine().unwrap();
        let err = Compiler::new(CodeSettings::default(), CompileIn::ThisProcess)
            .compile(&engine, b"\0asm\x0d\0\x01\0junk")
            .unwrap_err();
        assert!(format!("{err:#}").contains("not a valid WebAssembly component"));
    }
}
