//! The command line, and the program that runs it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::ServeConfig;

/// Serve HTTP and WebSocket routes from sandboxed WebAssembly components.
///
/// Each `.wasm` file in the apps folder is one app: a component built
/// against the `tina4:wasm/handler` world that declares its own routes.
/// Settings also come from `TINA4_*` environment variables and from a
/// `.env` file in the working directory; flags win over both. Exit codes:
/// 0 success, 1 a `check` or `routes` that found problems, 2 bad
/// configuration or a failure to start.
#[derive(Debug, Parser)]
#[command(name = "tina4-wasm", version, about, long_about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TINA4_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,

    /// Log level or filter (e.g. `debug`, `info,tina4_wasm=debug`); default:
    /// RUST_LOG, else `info`.
    #[arg(long, global = true)]
    pub(crate) log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load every app in a folder and serve its routes on one port.
    Serve(Box<ServeConfig>),
    /// List the apps in a folder and their routes, and any conflicts,
    /// without serving.
    Routes {
        /// The apps folder.
        #[arg(default_value = "apps")]
        dir: PathBuf,
    },
    /// Build an app's source folder (Rust, JavaScript or Python) into a
    /// component in the apps folder, installing the language's toolchain
    /// on first use, and precompile it for `serve`.
    Build(Box<crate::build::command::BuildArgs>),
    /// Start a project: a WebSocket route, an HTTP route, a template and a
    /// public file that `build` and `serve` take at once.
    New(crate::build::scaffold::NewArgs),
    /// Compile the component on stdin to native code on stdout: what the
    /// server runs to compile off to the side.
    #[command(hide = true)]
    CompileComponent(crate::runtime::compiler::CodeSettings),
    /// Check that a file is a component the host can serve, and say why
    /// not if it is not; with what loading it costs.
    Check {
        /// The component file.
        file: PathBuf,
        /// The compile cache to load from and store into
        /// [default: ~/.cache/tina4-wasm/components].
        #[arg(long, env = "TINA4_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

/// The program: parses the command line, sets up logging, and runs the
/// command; its exit code says how it went.
pub fn run() -> ExitCode {
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
            // One line: what is wrong (clap's first paragraph, which may
            // list the missing flags on lines of their own), and where to
            // look.
            let rendered = err.render().to_string();
            let what: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty())
                .collect();
            let what = what.join(" ");
            let what = what.strip_prefix("error: ").unwrap_or(&what);
            eprintln!("tina4-wasm: {what} (see --help)");
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

    if let Command::CompileComponent(settings) = cli.command {
        return match crate::runtime::compiler::compile_component_command(settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("tina4-wasm: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tina4-wasm: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(config) => runtime.block_on(crate::server::serve(*config)),
        Command::Routes { dir } => runtime.block_on(crate::inspect::routes(&dir)),
        Command::Check { file, cache_dir } => {
            runtime.block_on(crate::inspect::check(&file, cache_dir))
        }
        Command::Build(args) => runtime.block_on(crate::build::command::run(*args)),
        Command::CompileComponent(_) => unreachable!("run before the async runtime"),
        Command::New(args) => crate::build::scaffold::create(&args).map(|dir| {
            println!(
                "created {} ({}); next:\n  cd {}\n  tina4-wasm build . --apps apps\n  tina4-wasm serve apps --watch .",
                dir.display(),
                args.language.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
                dir.display()
            );
            true
        }),
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
