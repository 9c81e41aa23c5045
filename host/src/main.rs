use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use tina4_wasm::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying so.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("tina4-wasm: ignoring .env: {err}");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // One line: what is wrong, and where to look.
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("tina4-wasm: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let filter = match cli.log_level.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => filter,
        Some(Err(err)) => {
            eprintln!("tina4-wasm: --log-level: {err}");
            return ExitCode::from(2);
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tina4-wasm: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(config) => runtime.block_on(tina4_wasm::server::serve(*config)),
        Command::Routes { dir } => tina4_wasm::inspect::routes(&dir),
        Command::Check { file, cache_dir } => tina4_wasm::inspect::check(&file, cache_dir),
        Command::Build(args) => tina4_wasm::build::command::run(*args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("tina4-wasm: {err:#}");
            ExitCode::from(2)
        }
    }
}
