//! Request paths, percent-decoded once into the one spelling apps see and
//! rooms are keyed by, and query strings.

use percent_encoding::percent_decode_str;

/// A request path the router could not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("a path segment may not encode '/', '\\' or a control character")]
    EncodedSeparator,
}

/// A request path split into percent-decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// The whole path, percent-decoded and without a trailing `/`: its one
    /// spelling, as handed to apps and as rooms are keyed.
    pub(crate) decoded: String,
    /// Its decoded segments, for matching.
    pub(super) segments: Vec<String>,
}

impl RequestPath {
    /// Its decoded segments.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// Splits and decodes a raw request path (without its query string).
    pub(crate) fn parse(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let decode = |s: &str| {
            let segment = percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| PathError::NotUtf8)?;
            if segment.contains(['/', '\\']) || segment.chars().any(char::is_control) {
                return Err(PathError::EncodedSeparator);
            }
            Ok(segment.into_owned())
        };
        let segments = split_segments(rest)
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_segments(segments))
    }

    /// Splits a path that is already decoded (as apps hand them back, e.g.
    /// to `broadcast`); `None` unless it starts with `/` and is spelled the
    /// one way [`parse`](Self::parse) would spell it.
    pub(crate) fn from_decoded(path: &str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<String> = split_segments(rest).map(str::to_string).collect();
        let plain = |s: &String| !s.chars().any(|c| c == '\\' || c.is_control());
        if !segments.iter().all(plain) {
            return None;
        }
        let parsed = Self::from_segments(segments);
        (parsed.decoded == path).then_some(parsed)
    }

    fn from_segments(segments: Vec<String>) -> Self {
        let mut decoded = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
        for segment in &segments {
            decoded.push('/');
            decoded.push_str(segment);
        }
        if decoded.is_empty() {
            decoded.push('/');
        }
        Self { decoded, segments }
    }
}

/// Decoded `name=value` pairs of a query string, in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Splits the part of a path after its leading `/` into segments; a trailing
/// `/` is not significant (`/a/b/` is `/a/b`), and `/` has no segments.
pub(super) fn split_segments(rest: &str) -> impl Iterator<Item = &str> {
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    trimmed.split('/').filter(move |_| !trimmed.is_empty())
}
