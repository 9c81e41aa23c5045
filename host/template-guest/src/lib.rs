//! The template engine tina4-wasm runs for apps: minijinja, inside a
//! WebAssembly sandbox of its own. The host hands it a template name and a
//! context, and serves every file it asks for from the app's templates
//! folder; the store it runs in bounds its memory and its time.

use std::io::Write;

use minijinja::{Environment, ErrorKind};

wit_bindgen::generate!({
    world: "renderer",
    path: "wit",
});

struct Engine;

impl Guest for Engine {
    fn render(name: String, context: String, max_bytes: u32) -> Result<String, RenderError> {
        let context: serde_json::Value = if context.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&context).map_err(|e| RenderError::BadContext(e.to_string()))?
        };
        if !context.is_object() {
            return Err(RenderError::BadContext(format!("got {context}")));
        }
        let mut env = Environment::new();
        env.set_loader(|name| {
            load(name).map_err(|why| {
                minijinja::Error::new(ErrorKind::InvalidOperation, "could not read template")
                    .with_source(std::io::Error::other(why))
            })
        });
        let template = env
            .get_template(&name)
            .map_err(|e| RenderError::Failed(describe(&e)))?;
        let max = max_bytes as usize;
        let mut page = Capped {
            bytes: Vec::new(),
            max,
        };
        match template.render_captured_to(minijinja::value::Serde(&context), &mut page) {
            Ok(_) => {}
            Err(_) if page.bytes.len() > max => return Err(RenderError::TooLarge(max_bytes)),
            Err(err) => return Err(RenderError::Failed(describe(&err))),
        }
        String::from_utf8(page.bytes).map_err(|_| RenderError::Failed("not UTF-8".into()))
    }
}

export!(Engine);

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
