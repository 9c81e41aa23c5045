//! `tina4-wasm new NAME`: a project that `build` and `serve` take at once,
//! in any of the languages: a WebSocket route that counts its room, an
//! HTTP route rendering a template, a public file, and the commands to
//! build, serve and check it in its README. Python, JavaScript and
//! TypeScript projects use the Tina4 layout (`src/routes/`,
//! `src/templates/`, `src/public/`); a Rust one is a Cargo package with
//! `templates/` and `public/` beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The languages a project can be started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Starter {
    Rust,
    #[value(alias = "js")]
    Javascript,
    #[value(alias = "ts")]
    Typescript,
    #[value(alias = "py")]
    Python,
}

/// What `tina4-wasm new` is told.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NewArgs {
    /// The project's folder (created; its name is the app's, `-` as `_`).
    pub(crate) name: PathBuf,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "python")]
    pub(crate) language: Starter,
}

/// The page every starter renders, with its app's name.
const PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>{{ app }}</title>
  <link rel="stylesheet" href="/style.css">
  <script src="/js/frond.js"></script>
</head>
<body>
  <h1>{{ app }}</h1>
  <p id="online">connecting…</p>
  <form id="form"><input id="text" autocomplete="off"> <button>Send</button></form>
  <ul id="log"></ul>
  <script>
    const ws = frond.ws("/ws/{{ app }}", { reconnect: true });
    const log = (text) => {
      const item = document.createElement("li");
      item.textContent = text;
      document.getElementById("log").prepend(item);
    };
    ws.on("message", (data) => {
      const message = JSON.parse(data);
      if (message.online !== undefined) {
        document.getElementById("online").textContent = `online: ${message.online}`;
      }
      if (message.text !== undefined) log(message.text);
    });
    document.getElementById("form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("text");
      ws.send(input.value);
      input.value = "";
    });
  </script>
</body>
</html>
"#;

const STYLE: &str =
    "body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }\n";

const PYTHON_ROUTES: &str = r#"import json

from tina4_python.core.router import get, template, websocket


@websocket("/ws/@APP@")
async def room(connection, event, data):
    if event in ("open", "close"):
        await connection.broadcast(json.dumps({"online": connection.connection_count()}))
    if event == "message":
        await connection.broadcast(json.dumps({"text": data}))


@get("/")
async def home(request, response):
    return response(template("index.html", app="@APP@"))
"#;

const NODE_ROUTES: &str = r#"import { Router } from "tina4-nodejs";

Router.websocket("/ws/@APP@", (connection, event, data) => {
  if (event === "open" || event === "close") {
    connection.broadcast(JSON.stringify({ online: connection.connectionCount() }));
  }
  if (event === "message") {
    connection.broadcast(JSON.stringify({ text: data }));
  }
});

Router.get("/", async (req, res) => {
  return res.html("index.html", { app: "@APP@" });
});
"#;

const RUST_LIB: &str = r#"use tina4_guest::prelude::*;

fn routes(app: &mut Router) {
    app.websocket("/ws/@APP@", |conn: &Connection, event: Event| match event {
        Event::Open | Event::Close { .. } => {
            conn.broadcast_json(&json!({ "online": conn.connection_count() }))
        }
        Event::Message(text) => conn.broadcast_json(&json!({ "text": text })),
        Event::Binary(_) => Ok(()),
    });
    app.get("/", |_: &Request| {
        Response::render("index.html", &json!({ "app": "@APP@" }))
            .unwrap_or_else(|err| Response::text(err.to_string()).status(500))
    });
}

tina4_guest::app!(routes);
"#;

const RUST_MANIFEST: &str = r#"[package]
name = "@APP@"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# `tina4-wasm build` supplies the SDK that matches the host.
tina4-guest = "0.1"

[workspace]
"#;

const README: &str = r#"# @APP@

A tina4-wasm app: a WebSocket room at `/ws/@APP@` that tells everyone
how many are online, and a page at `/` that joins it.

```sh
tina4-wasm build . --apps apps          # build (and precompile) apps/@APP@.wasm
tina4-wasm serve apps --watch .         # serve on http://localhost:7146, rebuilding on change
tina4-wasm check apps/@APP@.wasm        # check it loads, with its routes
```
"#;

/// Writes the project; returns its folder.
pub(crate) fn create(args: &NewArgs) -> anyhow::Result<PathBuf> {
    let dir = &args.name;
    let folder = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project needs a folder name")?;
    let app = folder.replace('-', "_");
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if app.is_empty() || !app.chars().all(plain) || app.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("{folder:?}: name the project with letters, digits, `-` and `_`");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let fill = |text: &str| text.replace("@APP@", &app);
    let mut files: Vec<(&str, String)> = vec![("README.md", fill(README))];
    match args.language {
        Starter::Python => files.extend([
            ("src/routes/app.py", fill(PYTHON_ROUTES)),
            ("src/templates/index.html", page_for(PAGE, &app)),
            ("src/public/style.css", STYLE.to_string()),
        ]),
        Starter::Javascript | Starter::Typescript => {
            let routes = if args.language == Starter::Typescript {
                "src/routes/app.ts"
            } else {
                "src/routes/app.js"
            };
            files.extend([
                (routes, fill(NODE_ROUTES)),
                ("src/templates/index.html", page_for(PAGE, &app)),
                ("src/public/style.css", STYLE.to_string()),
                ("package.json", package_json(&app)),
            ]);
        }
        Starter::Rust => files.extend([
            ("Cargo.toml", fill(RUST_MANIFEST)),
            ("src/lib.rs", fill(RUST_LIB)),
            ("templates/index.html", page_for(PAGE, &app)),
            ("public/style.css", STYLE.to_string()),
            (".gitignore", "/target\n/apps\n".to_string()),
        ]),
    }
    for (path, content) in files {
        write(&dir.join(path), &content)?;
    }
    Ok(dir.clone())
}

/// The page, with the room's path filled in (the title stays a template
/// variable, rendered by the app).
fn page_for(page: &str, app: &str) -> String {
    page.replace("/ws/{{ app }}", &format!("/ws/{app}"))
}

/// A package.json whose scripts build, serve and check the app.
fn package_json(app: &str) -> String {
    let package = serde_json::json!({
        "name": app.replace('_', "-"),
        "private": true,
        "type": "module",
        "scripts": {
            "build": "tina4-wasm build . --apps apps",
            "start": "tina4-wasm serve apps --watch .",
            "test": format!("tina4-wasm build . --apps apps && tina4-wasm check apps/{app}.wasm"),
        },
    });
    format!("{:#}\n", package)
}

fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_laid_out_for_its_language_and_never_over_another() {
        let root = tempfile::tempdir().unwrap();
        let args = |name: &str, language| NewArgs {
            name: root.path().join(name),
            language,
        };
        let python = create(&args("my-chat", Starter::Python)).unwrap();
        let routes = std::fs::read_to_string(python.join("src/routes/app.py")).unwrap();
        assert!(routes.contains("@websocket(\"/ws/my_chat\")"), "{routes}");
        let page = std::fs::read_to_string(python.join("src/templates/index.html")).unwrap();
        assert!(page.contains("frond.ws(\"/ws/my_chat\""), "{page}");
        assert!(page.contains("<title>{{ app }}</title>"), "{page}");
        assert_eq!(
            crate::build::Language::detect(&python),
            Some(crate::build::Language::Python)
        );
        let ts = create(&args("ts", Starter::Typescript)).unwrap();
        assert_eq!(
            crate::build::Language::detect(&ts),
            Some(crate::build::Language::Javascript)
        );
        let rust = create(&args("rs", Starter::Rust)).unwrap();
        assert_eq!(
            crate::build::Language::detect(&rust),
            Some(crate::build::Language::Rust)
        );
        let again = create(&args("my-chat", Starter::Rust)).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        let bad = create(&args("9lives", Starter::Rust)).unwrap_err();
        assert!(bad.to_string().contains("name the project"), "{bad}");
    }
}
