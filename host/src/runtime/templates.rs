//! Templates: pages an app renders from its templates folder
//! (`<apps>/<app>/templates/`) with minijinja.
//!
//! The template language runs in a sandbox of its own: minijinja is built
//! into a WebAssembly component (`host/template-guest`, embedded in the
//! binary) and every render is a fresh instance of it in its own store, with
//! a memory cap that bounds the page and every string built on the way,
//! and an epoch deadline (the app event's own, or [`RENDER_TIME`]). A
//! template that builds huge strings or loops runs into those limits and
//! fails like a guest does; host memory and time are never at stake.
//!
//! The engine asks the host for each template file by name. Files are read
//! through the app's confined folder ([`AppFiles::open`]): a name with
//! `..`, or a link that leads out of the folder, finds nothing, and the
//! bytes one render may read are bounded. Each app has its own files, so
//! one app's templates are invisible to another. Autoescape follows the
//! file name (`.html`, `.htm`, `.xml` escape HTML). Files are read afresh
//! for every render, so an edited template shows on the next one.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use super::engine::yield_until_deadline;
use crate::app_files::AppFiles;
use crate::bundle::Bundle;

mod bindings {
    wasmtime::component::bindgen!({
        world: "renderer",
        path: "template-guest/wit",
        exports: { default: async },
    });
}

use bindings::{RenderError, Renderer, RendererImports, RendererPre};

/// The template engine, compiled: `host/template-guest` built by the build
/// script.
pub(crate) const ENGINE_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/template_guest.wasm"));

/// Longest a render may take when no event deadline applies.
pub(crate) const RENDER_TIME: Duration = Duration::from_secs(1);

/// Largest template file read, in bytes.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// Most template bytes one render may read (its includes and parents).
const MAX_READ_BYTES: usize = 8 * 1024 * 1024;

/// Memory a render may use besides room for its page.
const RENDER_MEMORY: usize = 16 << 20;

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("the context must be a JSON object: {0}")]
    BadContext(String),
    #[error("{0}")]
    Render(String),
    #[error("the rendered page is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the render ran past its deadline")]
    TooSlow,
    #[error("the render ran out of memory ({0} MiB)")]
    OutOfMemory(usize),
    #[error("the template engine is not available: {0}")]
    Unavailable(String),
}

/// The template engine of one host: compiled on first need, then shared by
/// every app's renders.
pub(crate) struct TemplateEngine {
    /// The engine apps run on (so renders share its epoch ticker).
    engine: Engine,
    /// The pre-linked engine component, once compiled.
    renderer: OnceLock<Result<RendererPre<RenderState>, String>>,
}

impl TemplateEngine {
    /// An engine for `engine`, whose epoch must advance regularly; nothing
    /// is compiled yet.
    pub(crate) fn new(engine: Engine) -> Self {
        Self {
            engine,
            renderer: OnceLock::new(),
        }
    }

    /// Compiles the engine component with `compile` unless that was done:
    /// call it off the async runtime, before an app with templates serves.
    pub(crate) fn prepare(&self, compile: impl FnOnce(&[u8]) -> anyhow::Result<Component>) {
        self.renderer.get_or_init(|| {
            let link = || -> anyhow::Result<RendererPre<RenderState>> {
                let component = compile(ENGINE_COMPONENT)?;
                let mut linker = Linker::new(&self.engine);
                // Rust's std links WASI; it gets nothing through it.
                wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
                Renderer::add_to_linker::<_, HasSelf<RenderState>>(&mut linker, |state| state)?;
                Ok(RendererPre::new(linker.instantiate_pre(&component)?)?)
            };
            link().map_err(|err| {
                tracing::error!("the template engine cannot be loaded: {err:#}");
                format!("{err:#}")
            })
        });
    }

    fn renderer(&self) -> Result<&RendererPre<RenderState>, TemplateError> {
        match self.renderer.get() {
            Some(Ok(renderer)) => Ok(renderer),
            Some(Err(err)) => Err(TemplateError::Unavailable(err.clone())),
            None => Err(TemplateError::Unavailable("not compiled".into())),
        }
    }
}

/// One app's templates.
pub(crate) struct AppTemplates {
    /// Where the app's files are.
    layout: AppFiles,
    /// The version's packed files, if it packs them: its templates are
    /// those, not the folder's.
    bundle: Option<Arc<Bundle>>,
    /// Largest page a render may produce, in bytes.
    max_output: usize,
    /// The engine that renders them.
    engine: Arc<TemplateEngine>,
}

impl AppTemplates {
    /// The templates of the app whose component is `component_file`:
    /// those packed in it (`bundle`), else `<folder>/<app>/templates/`.
    pub(crate) fn for_component(
        component_file: &Path,
        bundle: Option<Arc<Bundle>>,
        max_output: usize,
        engine: Arc<TemplateEngine>,
    ) -> Self {
        Self {
            layout: AppFiles::of(component_file),
            bundle,
            max_output,
            engine,
        }
    }

    /// Whether the app has a templates folder (so the engine is needed).
    pub(crate) fn exist(&self) -> bool {
        match &self.bundle {
            Some(bundle) => bundle.has(AppFiles::TEMPLATES),
            None => matches!(self.layout.open(AppFiles::TEMPLATES), Ok(Some(_))),
        }
    }

    /// Renders template `name` with `context` (a JSON object), by
    /// `deadline` at the latest (else within [`RENDER_TIME`]).
    pub(crate) async fn render(
        &self,
        name: &str,
        context: &str,
        deadline: Option<Instant>,
    ) -> Result<String, TemplateError> {
        let renderer = self.engine.renderer()?;
        let files = match &self.bundle {
            Some(bundle) => TemplateFiles::Packed(bundle.clone()),
            None => TemplateFiles::Folder(
                self.layout
                    .open(AppFiles::TEMPLATES)
                    .map_err(|err| TemplateError::Render(format!("the templates folder: {err}")))?,
            ),
        };
        let memory = self
            .max_output
            .saturating_mul(2)
            .saturating_add(RENDER_MEMORY);
        let mut store = Store::new(
            &self.engine.engine,
            RenderState {
                files,
                read: 0,
                memory,
                out_of_memory: false,
                deadline: Instant::now(),
                wasi: wasmtime_wasi::WasiCtxBuilder::new()
                    .allow_tcp(false)
                    .allow_udp(false)
                    .allow_ip_name_lookup(false)
                    .build(),
                table: Default::default(),
            },
        );
        store.limiter(|state| state);
        let left = deadline
            .map_or(RENDER_TIME, |at| {
                at.saturating_duration_since(Instant::now())
            })
            .min(RENDER_TIME);
        store.data_mut().deadline = Instant::now() + left;
        yield_until_deadline(&mut store, |state| Some(state.deadline));
        // Fuel is metered when the server meters it for apps; time bounds a
        // render here, so give it all the fuel there is.
        let _ = store.set_fuel(u64::MAX);
        let max_output = u32::try_from(self.max_output).unwrap_or(u32::MAX);
        let result = match renderer.instantiate_async(&mut store).await {
            Ok(engine) => {
                engine
                    .call_render(&mut store, name, context, max_output)
                    .await
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(RenderError::BadContext(why))) => Err(TemplateError::BadContext(why)),
            Ok(Err(RenderError::Failed(why))) => Err(TemplateError::Render(why)),
            Ok(Err(RenderError::TooLarge(_))) => Err(TemplateError::TooLarge(self.max_output)),
            Err(_) if store.data().out_of_memory => Err(TemplateError::OutOfMemory(memory >> 20)),
            Err(err) => match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Err(TemplateError::TooSlow),
                _ => Err(TemplateError::Render(format!(
                    "the engine failed: {}",
                    err.root_cause()
                ))),
            },
        }
    }
}

/// Where a render's templates come from.
enum TemplateFiles {
    /// The app's templates folder, confined; `None` if it has none.
    Folder(Option<cap_std::fs::Dir>),
    /// The version's packed files.
    Packed(Arc<Bundle>),
}

/// The store data of one render.
pub(crate) struct RenderState {
    /// The templates it may load.
    files: TemplateFiles,
    /// Template bytes read so far.
    read: usize,
    /// The memory the render may use, in bytes.
    memory: usize,
    /// Set when the render asked for more memory than it may use.
    out_of_memory: bool,
    /// When the render must have ended.
    deadline: Instant,
    /// WASI with nothing in it: no files, no clock worth reading, no output.
    wasi: wasmtime_wasi::WasiCtx,
    /// WASI's resources.
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for RenderState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl RendererImports for RenderState {
    fn load(&mut self, name: String) -> Result<Option<String>, String> {
        let folder = match &self.files {
            TemplateFiles::Folder(Some(folder)) => folder,
            TemplateFiles::Folder(None) => return Ok(None),
            TemplateFiles::Packed(bundle) => {
                let Some(bytes) = bundle.file(AppFiles::TEMPLATES, &name) else {
                    return Ok(None);
                };
                if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
                    return Err(format!("template larger than {MAX_TEMPLATE_BYTES} bytes"));
                }
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| format!("template {name} is not UTF-8"))?;
                return self.count_read(text.to_string()).map(Some);
            }
        };
        let meta = match folder.metadata(&name) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // A link out of the folder, `..`: as if it were not there.
            Err(_) => return Ok(None),
        };
        if !meta.is_file() {
            return Ok(None);
        }
        if meta.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("template larger than {MAX_TEMPLATE_BYTES} bytes"));
        }
        let text = folder
            .read_to_string(&name)
            .map_err(|err| err.to_string())?;
        self.count_read(text).map(Some)
    }
}

impl RenderState {
    /// Counts a template's bytes against the render's budget.
    fn count_read(&mut self, text: String) -> Result<String, String> {
        self.read += text.len();
        if self.read > MAX_READ_BYTES {
            return Err(format!(
                "a render may read at most {MAX_READ_BYTES} bytes of templates"
            ));
        }
        Ok(text)
    }
}

impl ResourceLimiter for RenderState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let fits = desired <= self.memory;
        self.out_of_memory |= !fits;
        Ok(fits)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One engine for every test: compiling it takes a moment.
    fn engine() -> Arc<TemplateEngine> {
        static ENGINE: OnceLock<Arc<TemplateEngine>> = OnceLock::new();
        ENGINE
            .get_or_init(|| {
                let mut config = wasmtime::Config::new();
                config.epoch_interruption(true);
                let engine = Engine::new(&config).unwrap();
                let ticker = engine.clone();
                std::thread::spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_millis(10));
                        ticker.increment_epoch();
                    }
                });
                let templates = TemplateEngine::new(engine.clone());
                templates.prepare(|bytes| Ok(Component::new(&engine, bytes)?));
                Arc::new(templates)
            })
            .clone()
    }

    fn app_with(files: &[(&str, &str)]) -> (tempfile::TempDir, AppTemplates) {
        app_with_cap(files, 1 << 20)
    }

    fn app_with_cap(
        files: &[(&str, &str)],
        max_output: usize,
    ) -> (tempfile::TempDir, AppTemplates) {
        let root = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = root.path().join("site/templates").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let templates =
            AppTemplates::for_component(&root.path().join("site.wasm"), None, max_output, engine());
        (root, templates)
    }

    fn render(
        templates: &AppTemplates,
        name: &str,
        context: &str,
    ) -> Result<String, TemplateError> {
        render_by(templates, name, context, None)
    }

    fn render_by(
        templates: &AppTemplates,
        name: &str,
        context: &str,
        deadline: Option<Instant>,
    ) -> Result<String, TemplateError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(templates.render(name, context, deadline))
    }

    #[test]
    fn extends_blocks_includes_filters_and_autoescape() {
        let (_root, templates) = app_with(&[
            (
                "base.html",
                "<title>{% block title %}{% endblock %}</title>{% block body %}{% endblock %}",
            ),
            ("parts/hello.html", "<p>Hello {{ name | upper }}</p>"),
            (
                "page.html",
                "{% extends \"base.html\" %}{% block title %}{{ title }}{% endblock %}\
                 {% block body %}{% include \"parts/hello.html\" %}{% endblock %}",
            ),
        ]);
        let page = render(
            &templates,
            "page.html",
            r#"{"title": "<x>", "name": "ann"}"#,
        )
        .unwrap();
        assert_eq!(page, "<title>&lt;x&gt;</title><p>Hello ANN</p>");
    }

    #[test]
    fn bad_names_contexts_and_templates_are_errors_not_panics() {
        let (_root, templates) = app_with(&[("broken.html", "{% if %}")]);
        let missing = render(&templates, "nope.html", "{}").unwrap_err();
        assert!(missing.to_string().contains("nope.html"), "{missing}");
        let escape = render(&templates, "../secret.html", "{}").unwrap_err();
        assert!(matches!(escape, TemplateError::Render(_)), "{escape}");
        assert!(matches!(
            render(&templates, "broken.html", "[1]"),
            Err(TemplateError::BadContext(_))
        ));
        let syntax = render(&templates, "broken.html", "{}").unwrap_err();
        assert!(syntax.to_string().contains("broken.html"), "{syntax}");
    }

    #[test]
    fn runaway_templates_meet_the_deadline_and_the_memory_cap() {
        let (_root, templates) = app_with(&[
            (
                "loop.txt",
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            ),
            (
                "bomb.txt",
                "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            ),
        ]);
        let started = Instant::now();
        let deadline = Some(Instant::now() + Duration::from_millis(200));
        assert!(matches!(
            render_by(&templates, "loop.txt", "{}", deadline),
            Err(TemplateError::TooSlow)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            render(&templates, "bomb.txt", "{}"),
            Err(TemplateError::OutOfMemory(_))
        ));
    }

    #[test]
    fn output_is_capped_while_it_is_written() {
        let (_root, templates) = app_with_cap(
            &[(
                "big.txt",
                "{% for i in range(100000) %}0123456789{% endfor %}",
            )],
            1000,
        );
        assert!(matches!(
            render(&templates, "big.txt", "{}"),
            Err(TemplateError::TooLarge(1000))
        ));
    }

    #[test]
    fn links_out_of_the_folder_are_not_followed() {
        let (root, templates) = app_with(&[("ok.txt", "fine")]);
        std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(
            root.path().join("secret.txt"),
            root.path().join("site/templates/leak.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("site/templates/etc")).unwrap();
        assert_eq!(render(&templates, "ok.txt", "{}").unwrap(), "fine");
        for name in ["leak.txt", "etc/passwd", "../secret.txt"] {
            assert!(render(&templates, name, "{}").is_err(), "{name}");
        }
    }

    #[test]
    fn an_edited_template_is_used_from_the_next_render_on() {
        let (root, templates) = app_with(&[("t.txt", "one")]);
        assert_eq!(render(&templates, "t.txt", "").unwrap(), "one");
        std::fs::write(root.path().join("site/templates/t.txt"), "two!").unwrap();
        assert_eq!(render(&templates, "t.txt", "").unwrap(), "two!");
    }
}
