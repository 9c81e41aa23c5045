//! Static files: each app's public folder (`<apps>/<app>/public/`), served
//! for GET and HEAD requests that no route matched, and the built-in
//! `/js/frond.js` client.
//!
//! A request path is looked up segment by segment, each decoded once: a
//! segment that is `..`, `.`, hidden (starts with a dot) or holds a
//! separator is refused, and the resolved file must lie inside the public
//! folder (symbolic links out of it are refused too), so no encoding of
//! `..` reaches anything else. Responses carry a content type from the file
//! extension and a strong ETag (a content hash); `If-None-Match` gets 304.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::http::Body;
use crate::router::RequestPath;

/// The WebSocket client every page can load from `/js/frond.js`.
pub const FROND_JS: &str = include_str!("../assets/frond.js");

/// Largest file served, in bytes: public folders are for pages' assets.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// A file found for a request.
pub struct StaticFile {
    /// Its content.
    body: Bytes,
    /// Its content type.
    content_type: String,
}

impl StaticFile {
    /// The built-in frond.js.
    fn frond() -> Self {
        Self {
            body: Bytes::from_static(FROND_JS.as_bytes()),
            content_type: "text/javascript; charset=utf-8".to_string(),
        }
    }

    /// The response: 304 if the client's ETag matches, else the file
    /// (without a body for HEAD).
    pub fn respond(self, request_headers: &HeaderMap, head: bool) -> Response<Body> {
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&self.body))[..20]);
        let matches = request_headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let (status, body) = if matches {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else if head {
            (StatusCode::OK, Bytes::new())
        } else {
            (StatusCode::OK, self.body.clone())
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if status == StatusCode::OK {
            if let Ok(value) = HeaderValue::from_str(&self.content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            if head {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
            }
        }
        response
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file for `path` from the first of `public_dirs` that has it, or the
/// built-in frond.js; `None` if there is none (or the path is refused).
pub async fn find(public_dirs: &[PathBuf], path: &RequestPath) -> Option<StaticFile> {
    let segments = safe_segments(path)?;
    for dir in public_dirs {
        if let Some(file) = read_inside(dir, &segments).await {
            return Some(file);
        }
    }
    (segments == ["js", "frond.js"]).then(StaticFile::frond)
}

/// The path's decoded segments, if every one is a plain name.
fn safe_segments(path: &RequestPath) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.segments().collect();
    // Unix-only host: `/`, `\` and NUL are the characters to fear.
    let plain = |s: &&str| !(s.is_empty() || s.starts_with('.') || s.contains(['/', '\\', '\0']));
    (!segments.is_empty() && segments.iter().all(plain)).then_some(segments)
}

/// Reads `dir/segments…` if it is a regular file inside `dir`.
async fn read_inside(dir: &Path, segments: &[&str]) -> Option<StaticFile> {
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let mut candidate = root.clone();
    candidate.extend(segments);
    let resolved = tokio::fs::canonicalize(&candidate).await.ok()?;
    if !resolved.starts_with(&root) {
        tracing::warn!(path = %candidate.display(), "refused a public file that resolves outside its folder");
        return None;
    }
    let meta = tokio::fs::metadata(&resolved).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let body = tokio::fs::read(&resolved).await.ok()?;
    let content_type = content_type_of(&resolved);
    Some(StaticFile {
        body: Bytes::from(body),
        content_type,
    })
}

fn content_type_of(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    if mime.type_() == mime_guess::mime::TEXT || mime.subtype() == mime_guess::mime::JAVASCRIPT {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> RequestPath {
        RequestPath::parse(raw).unwrap()
    }

    #[test]
    fn only_plain_segments_pass() {
        assert_eq!(
            safe_segments(&path("/css/chat.css")),
            Some(vec!["css", "chat.css"])
        );
        for refused in [
            "/",
            "/../etc/passwd",
            "/css/%2e%2e/%2e%2e/etc/passwd",
            "/a/%2E%2E/b",
            "/a/..%2fb",
            "/.env",
            "/a//b",
            "/a/%5c..%5cb",
        ] {
            assert_eq!(safe_segments(&path(refused)), None, "{refused}");
        }
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(
            content_type_of(Path::new("a.css")),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            content_type_of(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type_of(Path::new("a.png")), "image/png");
        assert_eq!(
            content_type_of(Path::new("a.unknownext")),
            "application/octet-stream"
        );
    }
}
