//! Static files: each app's public folder (`<apps>/<app>/public/`), served
//! for GET and HEAD requests that no route matched, and the built-in
//! `/js/frond.js` client.
//!
//! A request path is looked up segment by segment, each decoded once: a
//! segment that is `..`, `.`, hidden (starts with a dot) or holds a
//! separator is refused, and the file is opened through the app's confined
//! folder ([`AppFiles::open`]), so neither an encoding of `..` nor a
//! symbolic link (the public folder itself included) reaches anything
//! outside it. Files belong to apps like routes do: per host, and an app's
//! listed files cannot be shadowed by another's. Responses carry a content type from the file
//! extension and a strong ETag (a content hash of a small file, the size
//! and modification time of a large one); `If-None-Match` gets 304. A
//! large file is sent as it is read, never held whole; a small text file
//! is compressed as the client prefers ([`compress`]).

use std::path::Path;
use std::sync::Arc;

use std::io::Read;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::app_files::AppFiles;
use crate::apps::FROND_PATH;
use crate::bundle::Bundle;
use crate::edge::compress;
use crate::edge::response::{Body, full};
use crate::router::RequestPath;
use crate::runtime::{AppHandle, Serving};

/// The WebSocket client every page can load from [`FROND_PATH`].
pub(crate) const FROND_JS: &str = include_str!("../../assets/frond.js");

/// Largest file served, in bytes: public folders are for pages' assets.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Largest file read whole into memory; a larger one is sent as it is
/// read, so a client that reads slowly (or not at all) holds a chunk of
/// it, not all of it.
const IN_MEMORY_BYTES: u64 = 256 * 1024;

/// How much of a large file is read at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// A file found for a request.
pub(crate) struct StaticFile {
    /// Its content.
    content: Content,
    /// Its content type.
    content_type: String,
}

/// A file's content, in memory or still on disk.
enum Content {
    /// A small file, read whole; its ETag is a hash of its content.
    Bytes(Bytes),
    /// A large file, opened; its ETag is its size and modification time.
    File {
        /// The open file, read as the response is sent.
        file: std::fs::File,
        /// Its size when opened: what the response promises.
        len: u64,
        /// When it was last changed, in ns since the epoch.
        modified: u128,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::File { len, .. } => *len,
        }
    }

    fn etag(&self) -> String {
        match self {
            Content::Bytes(bytes) => {
                format!("\"{}\"", &crate::hex::hex(&Sha256::digest(bytes))[..20])
            }
            Content::File { len, modified, .. } => format!("\"{len:x}-{modified:x}\""),
        }
    }

    fn into_body(self) -> Body {
        match self {
            Content::Bytes(bytes) => full(bytes),
            Content::File { file, len, .. } => {
                let file = tokio::fs::File::from_std(file).take(len);
                let chunks = ReaderStream::with_capacity(file, CHUNK_BYTES).map_ok(Frame::data);
                StreamBody::new(chunks).boxed_unsync()
            }
        }
    }
}

impl StaticFile {
    /// The built-in frond.js.
    fn frond() -> Self {
        Self {
            content: Content::Bytes(Bytes::from_static(FROND_JS.as_bytes())),
            content_type: "text/javascript; charset=utf-8".to_string(),
        }
    }

    /// The response: 304 if the client's ETag matches, else the file
    /// (without a body for HEAD), compressed as the client prefers if it
    /// is text held in memory.
    pub(crate) fn respond(self, request_headers: &HeaderMap, head: bool) -> Response<Body> {
        let mut etag = self.content.etag();
        let mut len = self.content.len();
        let mut content = self.content;
        let mut encoded = None;
        let varies = matches!(&content, Content::Bytes(bytes) if compress::worth_it(bytes.len()))
            && compress::compressible(&self.content_type);
        if varies
            && let Content::Bytes(bytes) = &content
            && let Some(encoding) = compress::negotiate(request_headers)
            && let Some(smaller) = compress::compress_file(&etag, bytes, encoding)
        {
            // The compressed body is another representation: its own ETag.
            etag = compress::encoded_etag(&etag, encoding);
            len = smaller.len() as u64;
            content = Content::Bytes(smaller);
            encoded = Some(encoding);
        }
        let matches = request_headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let (status, body) = if matches {
            (StatusCode::NOT_MODIFIED, full(Bytes::new()))
        } else if head {
            (StatusCode::OK, full(Bytes::new()))
        } else {
            (StatusCode::OK, content.into_body())
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if varies {
            compress::vary(headers);
        }
        if let Some(encoding) = encoded {
            compress::mark(headers, encoding);
        }
        if status == StatusCode::OK {
            if let Ok(value) = HeaderValue::from_str(&self.content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// The file for `path` on `host`, or `None` if there is none (or the path
/// is refused). `/js/frond.js` is always the built-in client. A file an
/// app listed when it was loaded is served by that app alone; a file added
/// since comes from the first app serving `host` (in load order) that has
/// it.
pub(crate) async fn find(serving: &Serving, host: &str, path: &RequestPath) -> Option<StaticFile> {
    let segments: Vec<String> = safe_segments(path)?
        .into_iter()
        .map(str::to_string)
        .collect();
    if path.decoded == FROND_PATH {
        return Some(StaticFile::frond());
    }
    let candidates: Vec<(AppFiles, Option<Arc<Bundle>>)> = {
        let table = &serving.routes;
        let files = |app: &AppHandle| (AppFiles::of(&app.file), app.bundle());
        match table.match_static(host, path) {
            Some(listed) => vec![files(&listed.target.app)],
            None => {
                let mut apps: Vec<&Arc<AppHandle>> = Vec::new();
                for target in table.targets_on(host) {
                    if !apps.iter().any(|a| Arc::ptr_eq(a, &target.app)) {
                        apps.push(&target.app);
                    }
                }
                apps.iter().map(|app| files(app)).collect()
            }
        }
    };
    let relative = segments.join("/");
    tokio::task::spawn_blocking(move || {
        candidates.iter().find_map(|(layout, bundle)| match bundle {
            // A version that packs its files serves those alone.
            Some(bundle) => packed(bundle, &relative),
            None => read_inside(layout, &relative),
        })
    })
    .await
    .ok()
    .flatten()
}

/// The path's decoded segments, if every one is a plain name.
fn safe_segments(path: &RequestPath) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.segments().collect();
    // Unix-only host: `/`, `\` and NUL are the characters to fear.
    let plain = |s: &&str| !(s.is_empty() || s.starts_with('.') || s.contains(['/', '\\', '\0']));
    (!segments.is_empty() && segments.iter().all(plain)).then_some(segments)
}

/// `relative` from the version's packed public files.
fn packed(bundle: &Bundle, relative: &str) -> Option<StaticFile> {
    let bytes = bundle.file(AppFiles::PUBLIC, relative)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return None;
    }
    Some(StaticFile {
        content: Content::Bytes(bytes.clone()),
        content_type: content_type_of(Path::new(relative)),
    })
}

/// Reads `relative` from the app's public folder if it is a regular file
/// there; the confined folder refuses anything that resolves outside it.
fn read_inside(layout: &AppFiles, relative: &str) -> Option<StaticFile> {
    let public = layout.open(AppFiles::PUBLIC).ok()??;
    // What is checked is the file opened, not a name that may change.
    let mut file = public.open(relative).ok()?.into_std();
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let content = if meta.len() <= IN_MEMORY_BYTES {
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.by_ref()
            .take(IN_MEMORY_BYTES)
            .read_to_end(&mut body)
            .ok()?;
        Content::Bytes(Bytes::from(body))
    } else {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Content::File {
            file,
            len: meta.len(),
            modified,
        }
    };
    Some(StaticFile {
        content,
        content_type: content_type_of(Path::new(relative)),
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
            let refused_here =
                RequestPath::parse(refused).map_or(true, |p| safe_segments(&p).is_none());
            assert!(refused_here, "{refused}");
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
