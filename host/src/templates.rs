//! Templates: pages an app renders from its templates folder
//! (`<apps>/<app>/templates/`) with minijinja, on the host side.
//!
//! Each app has its own environment, so one app's templates are invisible to
//! another. Template files are opened through the app's confined folder
//! ([`AppLayout::open`]): a name with `..`, or a link that leads out of the
//! folder, finds nothing. Autoescape follows the file name (`.html`, `.htm`,
//! `.xml` escape HTML). A render runs on a fuel budget, and its output is
//! capped as it is produced, so a template cannot loop forever or write an
//! unbounded page. An edited template is used from the next render on (each
//! loaded file is checked for changes before use).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use minijinja::{Environment, ErrorKind, TemplateSource};

use crate::layout::AppLayout;

/// Template instructions one render may run.
const RENDER_FUEL: u64 = 5_000_000;

/// Largest template file read, in bytes.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the context must be a JSON object: {0}")]
    BadContext(String),
    #[error("{0}")]
    Render(String),
    #[error("the rendered page is larger than {0} bytes")]
    TooLarge(usize),
}

/// One app's templates.
pub struct AppTemplates {
    /// Where the app's files are.
    layout: AppLayout,
    /// Largest page a render may produce, in bytes.
    max_output: usize,
    /// The environment, built on first use.
    env: OnceLock<Environment<'static>>,
}

impl AppTemplates {
    /// The templates of the app whose component is `component_file`:
    /// `<folder>/<app>/templates/`.
    pub fn for_component(component_file: &Path, max_output: usize) -> Self {
        Self {
            layout: AppLayout::of(component_file),
            max_output,
            env: OnceLock::new(),
        }
    }

    /// Renders template `name` with `context` (a JSON object).
    pub fn render(&self, name: &str, context: &str) -> Result<String, TemplateError> {
        let context: serde_json::Value = if context.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(context).map_err(|e| TemplateError::BadContext(e.to_string()))?
        };
        if !context.is_object() {
            return Err(TemplateError::BadContext(format!("got {context}")));
        }
        let env = self.env.get_or_init(|| self.environment());
        let template = env
            .get_template(name)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let mut page = Capped {
            bytes: Vec::new(),
            max: self.max_output,
        };
        match template.render_captured_to(minijinja::value::Serde(&context), &mut page) {
            Ok(_) => {}
            Err(_) if page.bytes.len() > self.max_output => {
                return Err(TemplateError::TooLarge(self.max_output));
            }
            Err(err) => return Err(TemplateError::Render(describe(&err))),
        }
        String::from_utf8(page.bytes).map_err(|_| TemplateError::Render("not UTF-8".into()))
    }

    fn environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        let layout = self.layout.clone();
        env.set_loader(move |name| load(&layout, name));
        env.set_auto_reload(true);
        env.set_fuel(Some(RENDER_FUEL));
        env
    }
}

/// A page being written, refusing to grow past `max` bytes.
struct Capped {
    /// What has been written.
    bytes: Vec<u8>,
    /// The cap.
    max: usize,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + data.len() > self.max {
            // Marks the overflow for the caller, then stops the render.
            self.bytes.resize(self.max + 1, 0);
            return Err(std::io::Error::other("page too large"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads template `name` from the app's confined templates folder, with a
/// check that tells minijinja when the file changed.
fn load(layout: &AppLayout, name: &str) -> Result<Option<TemplateSource>, minijinja::Error> {
    let unreadable = |err: std::io::Error| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "could not read template")
            .with_source(err)
    };
    let Some(dir) = layout.open(AppLayout::TEMPLATES).map_err(unreadable)? else {
        return Ok(None);
    };
    let stamp = |dir: &cap_std::fs::Dir| -> Option<(u64, Option<SystemTime>)> {
        let meta = dir.metadata(name).ok()?;
        Some((meta.len(), meta.modified().ok().map(|t| t.into_std())))
    };
    let Some(seen) = stamp(&dir) else {
        return Ok(None);
    };
    if seen.0 > MAX_TEMPLATE_BYTES {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("template larger than {MAX_TEMPLATE_BYTES} bytes"),
        ));
    }
    let text = match dir.read_to_string(name) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(unreadable(err)),
    };
    let dir = Arc::new(dir);
    let name = name.to_string();
    Ok(Some(TemplateSource::new(text).with_uptodate_check(
        move || {
            let meta = dir.metadata(&name).ok();
            meta.map(|m| (m.len(), m.modified().ok().map(|t| t.into_std()))) == Some(seen)
        },
    )))
}

/// A minijinja error with its template, line and cause, on one line.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(files: &[(&str, &str)]) -> (tempfile::TempDir, AppTemplates) {
        let root = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = root.path().join("site/templates").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let templates = AppTemplates::for_component(&root.path().join("site.wasm"), 1 << 20);
        (root, templates)
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
        let page = templates
            .render("page.html", r#"{"title": "<x>", "name": "ann"}"#)
            .unwrap();
        assert_eq!(page, "<title>&lt;x&gt;</title><p>Hello ANN</p>");
    }

    #[test]
    fn bad_names_contexts_and_templates_are_errors_not_panics() {
        let (_root, templates) = app_with(&[
            ("broken.html", "{% if %}"),
            (
                "loop.txt",
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            ),
        ]);
        let missing = templates.render("nope.html", "{}").unwrap_err();
        assert!(missing.to_string().contains("nope.html"), "{missing}");
        let escape = templates.render("../secret.html", "{}").unwrap_err();
        assert!(matches!(escape, TemplateError::Render(_)), "{escape}");
        assert!(matches!(
            templates.render("broken.html", "[1]"),
            Err(TemplateError::BadContext(_))
        ));
        let syntax = templates.render("broken.html", "{}").unwrap_err();
        assert!(syntax.to_string().contains("broken.html"), "{syntax}");
        // A runaway template runs out of fuel instead of running forever.
        assert!(templates.render("loop.txt", "{}").is_err());
    }

    #[test]
    fn output_is_capped_while_it_is_written() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("site/templates")).unwrap();
        std::fs::write(
            root.path().join("site/templates/big.txt"),
            "{% for i in range(100000) %}0123456789{% endfor %}",
        )
        .unwrap();
        let templates = AppTemplates::for_component(&root.path().join("site.wasm"), 1000);
        assert!(matches!(
            templates.render("big.txt", "{}"),
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
        assert_eq!(templates.render("ok.txt", "{}").unwrap(), "fine");
        for name in ["leak.txt", "etc/passwd", "../secret.txt"] {
            assert!(templates.render(name, "{}").is_err(), "{name}");
        }
    }

    #[test]
    fn an_edited_template_is_used_from_the_next_render_on() {
        let (root, templates) = app_with(&[("t.txt", "one")]);
        assert_eq!(templates.render("t.txt", "").unwrap(), "one");
        std::fs::write(root.path().join("site/templates/t.txt"), "two!").unwrap();
        assert_eq!(templates.render("t.txt", "").unwrap(), "two!");
    }
}
