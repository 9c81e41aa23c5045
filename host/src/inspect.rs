//! `tina4-wasm routes` and `tina4-wasm check`: load components the way
//! `serve` does, report, and serve nothing.

use std::path::Path;
use std::sync::Arc;

use crate::app_files::component_files;
use crate::config::Limits;
use crate::delivery::{ConnectionRegistry, Delivery};
use crate::router::{RouteEntry, RouteTable};
use crate::runtime::compiler::CompileIn;
use crate::runtime::{PreparedApp, Runtime};

/// A runtime with the default limits and the default compile cache.
fn runtime() -> anyhow::Result<Arc<Runtime>> {
    runtime_with_cache(crate::config::default_cache_dir())
}

/// A runtime with the default limits (the engine `serve` makes by default)
/// and the compile cache in `cache_dir`.
pub(crate) fn runtime_with_cache(
    cache_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<Arc<Runtime>> {
    // Nothing is delivered: no app serves a connection here.
    Runtime::new(
        Arc::new(Delivery::local(Arc::new(ConnectionRegistry::new()))),
        Limits::default(),
        cache_dir,
        false,
        CompileIn::ThisProcess,
    )
    .map(Arc::new)
}

/// Lists each app in `dir` with its routes; reports files that do not load
/// and routes that conflict. `Ok(false)` if anything is wrong.
pub(crate) async fn routes(dir: &Path) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    let mut table: RouteTable<String> = RouteTable::default();
    let mut clean = true;
    for file in component_files(dir)? {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        match runtime.prepare(&file).await {
            Ok(app) => {
                println!("{} ({name})", app.name);
                for route in &app.routes {
                    println!("  {route}");
                }
                let entries = app
                    .routes
                    .iter()
                    .map(|r| RouteEntry {
                        kind: r.kind,
                        pattern: r.pattern.clone(),
                        hosts: app.policy().hosts.clone(),
                        target: format!("app {:?}", &*app.name),
                    })
                    .collect();
                let own = format!("app {:?}", &*app.name);
                if let Err(conflict) = table.add_all(entries, |t| *t == own) {
                    println!("  CONFLICT: {conflict}; serve would refuse this app");
                    clean = false;
                }
            }
            Err(err) => {
                println!("{name}: cannot load: {err:#}");
                clean = false;
            }
        }
    }
    Ok(clean)
}

/// Prints what loading an app took (compile or cache load, and
/// instantiate) and its routes.
pub(crate) fn print_load(app: &PreparedApp) {
    let timings = &app.timings;
    println!(
        "loads: compile {:.1?} ({}), instantiate {:.1?}",
        timings.compile, timings.origin, timings.instantiate
    );
    for route in &app.routes {
        println!("  {route}");
    }
}

/// Checks one component file; prints what it serves and what loading it
/// took, or why it cannot be served.
pub(crate) async fn check(
    file: &Path,
    cache_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<bool> {
    let runtime = runtime_with_cache(cache_dir.or_else(crate::config::default_cache_dir))?;
    let prepared = runtime.prepare(file).await;
    match prepared {
        Ok(app) => {
            println!(
                "ok: {} implements tina4:wasm/handler with {} routes",
                file.display(),
                app.routes.len()
            );
            print_load(&app);
            Ok(true)
        }
        Err(err) => {
            println!("{}: {err:#}", file.display());
            Ok(false)
        }
    }
}
