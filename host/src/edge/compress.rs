//! Compressed responses: brotli or gzip, as the client's `Accept-Encoding`
//! prefers, for text-like bodies of [`MIN_BYTES`] to [`MAX_BYTES`] held in
//! memory (an app's answer, a small public file). Public files are compressed
//! once per content and encoding and kept, within [`CACHE_BYTES`]; an
//! app's answer is compressed as it is sent. A body that would not shrink
//! goes as it is. Large public files, sent as they are read, are not
//! compressed.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

/// Bodies smaller than this go as they are: compression would save less
/// than it costs.
pub(crate) const MIN_BYTES: usize = 1024;

/// Bodies larger than this go as they are: an app's answer is compressed
/// on the worker that sends it, at about 1 ms for this many bytes.
pub(crate) const MAX_BYTES: usize = 256 * 1024;

/// What one kept file costs beyond its bytes (its key and bookkeeping),
/// so that files that do not shrink also count.
const ENTRY_BYTES: usize = 256;

/// Whether a body of `len` bytes is worth compressing, and cheap enough.
pub(crate) fn worth_it(len: usize) -> bool {
    (MIN_BYTES..=MAX_BYTES).contains(&len)
}

/// Compressed public files kept, in bytes; past it the oldest go.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Brotli's quality: close to gzip's speed, a better ratio.
const BROTLI_QUALITY: u32 = 5;

/// Brotli's window, as a power of two.
const BROTLI_WINDOW: u32 = 22;

/// An encoding the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// Its name in `Content-Encoding`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The suffix that tells its ETag from the plain body's.
    pub(crate) fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => "-br",
            Encoding::Gzip => "-gz",
        }
    }
}

/// The encoding the client's `Accept-Encoding` prefers among ours: the
/// highest q-value, brotli on a tie; `None` if it takes neither.
pub(crate) fn negotiate(request: &HeaderMap) -> Option<Encoding> {
    let lines: Vec<&str> = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accepted = lines.join(",");
    let mut best: Option<(Encoding, f32)> = None;
    let mut wildcard: Option<f32> = None;
    let mut named = |encoding: Encoding, q: f32| {
        let better = best.is_none_or(|(kind, top)| {
            q > top || (q == top && encoding == Encoding::Brotli && kind != Encoding::Brotli)
        });
        if q > 0.0 && better {
            best = Some((encoding, q));
        }
    };
    let mut seen = Vec::new();
    for item in accepted.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let p = p.trim().to_ascii_lowercase();
                p.strip_prefix("q=").map(str::to_string)
            })
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        match name.as_str() {
            "br" => named(Encoding::Brotli, q),
            "gzip" | "x-gzip" => named(Encoding::Gzip, q),
            "*" => wildcard = Some(q),
            _ => continue,
        }
        seen.push(name);
    }
    // `*` stands for every encoding not named.
    if let Some(q) = wildcard {
        if !seen.iter().any(|n| n == "br") {
            named(Encoding::Brotli, q);
        }
        if !seen.iter().any(|n| n == "gzip" || n == "x-gzip") {
            named(Encoding::Gzip, q);
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// Whether a body of this content type is worth compressing: text, and
/// the structured text formats of the web.
pub(crate) fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
        )
}

/// `body` compressed with `encoding`, if that makes it smaller.
pub(crate) fn compress(body: &[u8], encoding: Encoding) -> Option<Bytes> {
    let mut out = Vec::with_capacity(body.len() / 3);
    match encoding {
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
            encoder.write_all(body).ok()?;
            encoder.finish().ok()?;
        }
        Encoding::Brotli => {
            let mut encoder =
                brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
            encoder.write_all(body).ok()?;
            encoder.flush().ok()?;
            drop(encoder);
        }
    }
    (out.len() < body.len()).then(|| Bytes::from(out))
}

/// A public file's body compressed with `encoding`, made once per content
/// (`etag`) and kept.
pub(crate) fn compress_file(etag: &str, body: &[u8], encoding: Encoding) -> Option<Bytes> {
    static CACHE: OnceLock<Mutex<Kept>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (etag.to_string(), encoding);
    if let Some(kept) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return kept;
    }
    let made = compress(body, encoding);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keep(key, made.clone());
    made
}

/// Compressed public files (or the fact that one does not shrink), oldest
/// first out once they pass [`CACHE_BYTES`].
#[derive(Default)]
struct Kept {
    /// Each file's compressed body, by ETag and encoding.
    bodies: HashMap<(String, Encoding), Option<Bytes>>,
    /// The keys in the order they came.
    order: VecDeque<(String, Encoding)>,
    /// Bytes of the bodies kept.
    bytes: usize,
}

impl Kept {
    fn get(&self, key: &(String, Encoding)) -> Option<Option<Bytes>> {
        self.bodies.get(key).cloned()
    }

    fn keep(&mut self, key: (String, Encoding), body: Option<Bytes>) {
        let size = ENTRY_BYTES + body.as_ref().map_or(0, Bytes::len);
        if size > CACHE_BYTES || self.bodies.contains_key(&key) {
            return;
        }
        while self.bytes + size > CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.bodies.remove(&oldest) {
                self.bytes -= ENTRY_BYTES + gone.map_or(0, |gone| gone.len());
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.bodies.insert(key, body);
    }
}

/// An app's answer body, compressed with `encoding` (the client's choice)
/// if it may and should be, its `headers` saying so: `Vary`, and for a
/// compressed body `Content-Encoding` and an ETag of its own. An answer
/// the app encoded itself, a partial one (206), or one marked
/// `no-transform` goes as it is.
pub(crate) fn answer(
    headers: &mut HeaderMap,
    status: StatusCode,
    body: Vec<u8>,
    encoding: Option<Encoding>,
) -> Bytes {
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    let varies = worth_it(body.len())
        && status != StatusCode::PARTIAL_CONTENT
        && !no_transform
        && !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(compressible);
    if !varies {
        return Bytes::from(body);
    }
    vary(headers);
    let Some((encoding, smaller)) =
        encoding.and_then(|encoding| Some((encoding, compress(&body, encoding)?)))
    else {
        return Bytes::from(body);
    };
    mark(headers, encoding);
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
        && let Ok(own) = HeaderValue::from_str(&encoded_etag(etag, encoding))
    {
        headers.insert(header::ETAG, own);
    }
    smaller
}

/// The ETag of a body's compressed form: the plain body's, with the
/// encoding's suffix inside its quotes (`"abc"` → `"abc-br"`).
pub(crate) fn encoded_etag(etag: &str, encoding: Encoding) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}{}\"", encoding.etag_suffix()),
        None => format!("{etag}{}", encoding.etag_suffix()),
    }
}

/// Marks a response as compressed with `encoding`.
pub(crate) fn mark(headers: &mut HeaderMap, encoding: Encoding) {
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.name()),
    );
}

/// Tells caches that the body depends on `Accept-Encoding`.
pub(crate) fn vary(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &str) -> Option<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        negotiate(&headers)
    }

    #[test]
    fn the_clients_preference_wins_and_brotli_breaks_ties() {
        assert_eq!(accepting("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(accepting("gzip"), Some(Encoding::Gzip));
        assert_eq!(accepting("br;q=0.5, gzip;q=0.8"), Some(Encoding::Gzip));
        assert_eq!(accepting("br;q=0, gzip;q=0"), None);
        assert_eq!(accepting("identity"), None);
        assert_eq!(accepting("*"), Some(Encoding::Brotli));
        assert_eq!(accepting("br;q=0, *;q=0.1"), Some(Encoding::Gzip));
        assert_eq!(accepting("gzip;q=nonsense"), None);
        assert_eq!(accepting("gzip;Q=0, br;q=0.1"), Some(Encoding::Brotli));
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn text_like_types_are_compressible() {
        for yes in [
            "text/html; charset=utf-8",
            "application/json",
            "application/ld+json",
            "image/svg+xml",
            "text/javascript",
        ] {
            assert!(compressible(yes), "{yes}");
        }
        for no in ["image/png", "application/octet-stream", "video/mp4", ""] {
            assert!(!compressible(no), "{no}");
        }
    }

    #[test]
    fn a_body_that_would_not_shrink_stays_as_it_is() {
        let text = "hello, compression ".repeat(200);
        for encoding in [Encoding::Brotli, Encoding::Gzip] {
            let made = compress(text.as_bytes(), encoding).expect("text shrinks");
            assert!(made.len() < text.len() / 4);
        }
        // xorshift: bytes no compressor can shrink.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(compress(&noise, Encoding::Gzip).is_none());
    }

    /// Headers of a plain-text answer, and `extra`.
    fn text_answer(extra: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        for (name, value) in extra {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_compressed_answer_has_its_own_etag_and_a_partial_one_is_left_alone() {
        let text = "an answer worth compressing ".repeat(100).into_bytes();
        let mut headers = text_answer(&[(header::ETAG, "\"v1\"")]);
        let gzip = Some(Encoding::Gzip);
        let body = answer(&mut headers, StatusCode::OK, text.clone(), gzip);
        assert!(body.len() < text.len());
        assert_eq!(headers[header::ETAG], "\"v1-gz\"");
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(headers[header::VARY], "accept-encoding");

        let mut partial = text_answer(&[]);
        let body = answer(
            &mut partial,
            StatusCode::PARTIAL_CONTENT,
            text.clone(),
            gzip,
        );
        assert_eq!(body.len(), text.len());
        assert!(partial.get(header::CONTENT_ENCODING).is_none());

        let mut kept = text_answer(&[(header::CACHE_CONTROL, "No-Transform")]);
        let body = answer(&mut kept, StatusCode::OK, text.clone(), gzip);
        assert_eq!(body.len(), text.len());
    }

    #[test]
    fn only_bodies_between_the_bounds_are_compressed() {
        assert!(!worth_it(MIN_BYTES - 1));
        assert!(worth_it(MIN_BYTES));
        assert!(worth_it(MAX_BYTES));
        assert!(!worth_it(MAX_BYTES + 1));
    }

    #[test]
    fn kept_files_stay_within_their_bytes() {
        let mut kept = Kept::default();
        let big = Bytes::from(vec![0u8; CACHE_BYTES / 2 + 1]);
        kept.keep(("a".into(), Encoding::Gzip), Some(big.clone()));
        kept.keep(("b".into(), Encoding::Gzip), Some(big));
        assert!(kept.bytes <= CACHE_BYTES);
        assert!(kept.get(&("a".into(), Encoding::Gzip)).is_none());
        assert!(kept.get(&("b".into(), Encoding::Gzip)).is_some());
    }
}
