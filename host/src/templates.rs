//! Templates: pages an app renders from its templates folder
//! (`<apps>/<app>/templates/`) with minijinja, on the host side.
//!
//! Each app has its own environment, so one app's templates are invisible to
//! another, and template names cannot leave the folder (minijinja's path
//! loader refuses `..`). Autoescape follows the file name (`.html`, `.htm`,
//! `.xml` escape HTML). A render runs on a fuel budget and its output is
//! capped, so a template cannot loop forever or fill memory. Before each
//! render the folder's files are compared (names, sizes, modification
//! times) with what the environment was built from; any change builds a new
//! one, so an edited template is used from the next render on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use minijinja::Environment;

/// Template instructions one render may run.
const RENDER_FUEL: u64 = 5_000_000;

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
    /// The folder they live in.
    dir: PathBuf,
    /// Largest page a render may produce, in bytes.
    max_output: usize,
    /// The environment and the folder listing it was built from.
    current: Mutex<Option<(Listing, Arc<Environment<'static>>)>>,
}

/// Each file's path, size and modification time: what a change alters.
type Listing = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl AppTemplates {
    /// The templates of the app whose component is `component_file`:
    /// `<folder>/<app>/templates/`.
    pub fn for_component(component_file: &Path, max_output: usize) -> Self {
        let dir = component_file.with_extension("").join("templates");
        Self {
            dir,
            max_output,
            current: Mutex::new(None),
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
        let env = self.environment();
        let template = env
            .get_template(name)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let page = template
            .render(minijinja::value::Serde(&context))
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        if page.len() > self.max_output {
            return Err(TemplateError::TooLarge(self.max_output));
        }
        Ok(page)
    }

    /// The environment for the folder as it is now.
    fn environment(&self) -> Arc<Environment<'static>> {
        let listing = list(&self.dir);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some((built_from, env)) if *built_from == listing => env.clone(),
            _ => {
                let mut env = Environment::new();
                env.set_loader(minijinja::path_loader(&self.dir));
                env.set_fuel(Some(RENDER_FUEL));
                let env = Arc::new(env);
                *current = Some((listing, env.clone()));
                env
            }
        }
    }
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

/// Every file under `dir`, sorted; empty if there is no such folder.
fn list(dir: &Path) -> Listing {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files
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
    fn an_edited_template_is_used_from_the_next_render_on() {
        let (root, templates) = app_with(&[("t.txt", "one")]);
        assert_eq!(templates.render("t.txt", "").unwrap(), "one");
        std::fs::write(root.path().join("site/templates/t.txt"), "two!").unwrap();
        assert_eq!(templates.render("t.txt", "").unwrap(), "two!");
    }
}
