use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use tina4_wasm::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // A missing .env is normal; a malformed one is worth saying so.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("tina4-wasm: ignoring .env: {err}");
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tina4-wasm: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(config) => runtime.block_on(tina4_wasm::server::serve(config)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tina4-wasm: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
