//! The `build` subcommand: build, then load the component the way `serve`
//! does, so its routes are checked and its compiled code is in the cache
//! before the first start.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::build::toolchain::Toolchains;
use crate::build::{AppSource, Language, build};
use crate::config::JsEngine;

/// What `tina4-wasm build` is told.
#[derive(Debug, Clone, Args)]
pub(crate) struct BuildArgs {
    /// The app's source folder: a Cargo package (Rust), a folder with
    /// `app.js` or a package.json (JavaScript), or one with `app.py` (Python).
    #[arg(default_value = ".")]
    pub(crate) source: PathBuf,

    /// The apps folder the component goes into, as `<name>.wasm`.
    #[arg(long, default_value = "apps", env = "TINA4_APPS_DIR")]
    pub(crate) apps: PathBuf,

    /// The app's name [default: the source folder's name, `-` as `_`].
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// The source's language [default: from the files in the folder].
    #[arg(long, value_enum)]
    pub(crate) language: Option<Language>,

    /// The engine JavaScript apps are compiled with: SpiderMonkey runs
    /// `async` handlers to the end; QuickJS makes ~7x smaller components
    /// whose `async` handlers stop at their first `await`.
    #[arg(long, value_enum, default_value_t, env = "TINA4_JS_ENGINE")]
    pub(crate) js_engine: JsEngine,

    /// Where language toolchains are installed on first use
    /// [default: ~/.cache/tina4-wasm/toolchains].
    #[arg(long, env = "TINA4_TOOLCHAINS_DIR")]
    pub(crate) toolchains: Option<PathBuf>,

    /// The compile cache to precompile into: use the one `serve` uses
    /// [default: ~/.cache/tina4-wasm/components].
    #[arg(long, env = "TINA4_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Check the component without storing its compiled code.
    #[arg(long, conflicts_with = "cache_dir")]
    pub(crate) no_cache: bool,
}

/// Runs `build`; `Ok(false)` if the component built but cannot be served.
pub(crate) async fn run(args: BuildArgs) -> anyhow::Result<bool> {
    let app = AppSource::new(&args.source, args.language, args.name.clone())?;
    let toolchains = match args.toolchains {
        Some(dir) => Toolchains::new(dir),
        None => Toolchains::default_location()?,
    }
    .with_js_engine(args.js_engine);
    let started = Instant::now();
    let file = build(&app, &args.apps, &toolchains)?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {} ({}) into {}: {:.1} MB in {:.1?}",
        app.name,
        app.language,
        file.display(),
        size as f64 / 1e6,
        started.elapsed()
    );
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.or_else(crate::config::default_cache_dir)
    };
    let runtime = crate::inspect::runtime_with_cache(cache_dir)?;
    let prepared = runtime.prepare(&file).await;
    match prepared {
        Ok(prepared) => {
            crate::inspect::print_load(&prepared);
            Ok(true)
        }
        Err(err) => {
            println!("{}: cannot be served: {err:#}", file.display());
            Ok(false)
        }
    }
}
