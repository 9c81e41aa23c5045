//! The welcome page of development mode (`--dev`, implied by `--watch`):
//! a request for `/` that no app serves gets a page listing the apps that
//! serve the request's host, each with its routes and its number of public
//! files. Without `--dev`, `/` unserved is a plain 404 as any other path.
//!
//! Route patterns and app names come from tenants: everything shown is
//! HTML-escaped.

use std::fmt::Write as _;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::response::{Body, full};
use crate::router::RouteKind;
use crate::runtime::Serving;

/// The page for a request to `host`.
pub(crate) fn page(serving: &Serving, host: &str) -> Response<Body> {
    // Each app with its routes and its file count, in load order.
    let mut apps: Vec<(&str, Vec<String>, usize)> = Vec::new();
    for entry in serving.routes.routes_on(host) {
        let name = &*entry.target.app.name;
        let at = match apps.iter().position(|(app, ..)| *app == name) {
            Some(at) => at,
            None => {
                apps.push((name, Vec::new(), 0));
                apps.len() - 1
            }
        };
        match entry.kind {
            RouteKind::Static => apps[at].2 += 1,
            kind => {
                let secured = if entry.target.secured {
                    " (secured)"
                } else {
                    ""
                };
                apps[at].1.push(format!(
                    "{:<7} {}{secured}",
                    kind.to_string(),
                    entry.pattern
                ));
            }
        }
    }
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tina4-wasm</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}\
         pre{background:#f4f4f4;padding:.75rem;border-radius:6px}</style></head><body>\n\
         <h1>tina4-wasm</h1>\n<p>Development mode: no app serves <code>/</code>, so here is what serves this host.</p>\n",
    );
    if apps.is_empty() {
        html.push_str("<p>No app serves this host yet: build one into the apps folder.</p>\n");
    }
    for (name, routes, files) in &apps {
        let _ = writeln!(html, "<h2>{}</h2>", escape(name));
        let _ = writeln!(html, "<pre>{}</pre>", escape(&routes.join("\n")));
        if *files > 0 {
            let _ = writeln!(html, "<p>{files} public file(s)</p>");
        }
    }
    html.push_str("</body></html>\n");
    let mut response = Response::new(full(html));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `text` safe inside HTML elements and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_tenants_name_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
