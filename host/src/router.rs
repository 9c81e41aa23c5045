//! Route patterns (`/ws/chat/{room}`, `/api/orders/{id:int}`) and the route
//! table that maps a request's method and path to the app that serves it.
//!
//! Matching works on percent-decoded segments. A segment that decodes to a
//! separator (`%2F`, `%5C`) or a control character is refused, so every
//! request path has exactly one spelling once decoded: the one apps see,
//! and the one rooms are keyed by. When several patterns of one app match
//! a path, the most specific wins, segment by segment: a literal beats
//! `{name:int}`, which beats `{name}`.

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;

/// HTTP methods an app can route on (the WIT `method` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    /// The method of an incoming request, if apps can route on it.
    pub fn from_http(method: &hyper::Method) -> Option<Self> {
        Some(match *method {
            hyper::Method::GET => Self::Get,
            hyper::Method::POST => Self::Post,
            hyper::Method::PUT => Self::Put,
            hyper::Method::PATCH => Self::Patch,
            hyper::Method::DELETE => Self::Delete,
            hyper::Method::HEAD => Self::Head,
            hyper::Method::OPTIONS => Self::Options,
            _ => return None,
        })
    }

    /// The upper-case name, as in an `Allow` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
        }
    }
}

/// What a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Http(Method),
    WebSocket,
    /// A file of the app's public folder, answering GET and HEAD.
    Static,
}

impl RouteKind {
    /// Routes of two apps compete for the same requests only within one
    /// class: plain HTTP (any method, and files), or WebSocket upgrades.
    fn class(self) -> u8 {
        match self {
            Self::Http(_) | Self::Static => 0,
            Self::WebSocket => 1,
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(method) => f.write_str(method.as_str()),
            Self::WebSocket => f.write_str("WS"),
            Self::Static => f.write_str("FILE"),
        }
    }
}

/// A `Host` name an app is bound to: `chat.example.com`, or
/// `*.example.org` for every name below `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this name (lower case).
    Exact(String),
    /// Any name ending in this suffix, which starts with a dot.
    Below(String),
}

/// Why a host name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a host name (letters, digits, '-' and '.', optionally starting with '*.')")]
pub struct HostPatternError(pub String);

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(raw: &str) -> Result<Self, HostPatternError> {
        let lower = raw.trim_end_matches('.').to_ascii_lowercase();
        let (below, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(HostPatternError(raw.to_string()));
        }
        Ok(if below {
            Self::Below(format!(".{name}"))
        } else {
            Self::Exact(name.to_string())
        })
    }
}

impl HostPattern {
    /// Whether `host` (a normalized [`host_name`]) is one of its names.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// Whether some name is both one of its and one of `other`'s.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(a), below @ Self::Below(_)) | (below @ Self::Below(_), Self::Exact(a)) => {
                below.matches(a)
            }
            (Self::Below(a), Self::Below(b)) => a.ends_with(b.as_str()) || b.ends_with(a.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Below(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The name of a `Host` header value, normalized for matching: lower case,
/// without its port or a trailing dot; `None` if it is not a plausible
/// host (empty, or holding characters no host name or address has).
pub fn host_name(header: &str) -> Option<String> {
    let header = header.trim();
    let name = if let Some(rest) = header.strip_prefix('[') {
        // An IPv6 literal: `[::1]:7146`.
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Some(format!("[{}]", inside.to_ascii_lowercase()));
    } else {
        match header.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => header,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    (!name.is_empty() && name.bytes().all(plain)).then_some(name)
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The host names an app answers on: the ones it claims, or (`None`) the
/// server's own names.
pub type HostBinding = Option<std::sync::Arc<[HostPattern]>>;

/// Whether two bindings share a name: server names never meet claimed
/// ones (see [`RouteTable::match_http`]).
fn bindings_overlap(a: &HostBinding, b: &HostBinding) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.iter().any(|x| b.iter().any(|y| x.overlaps(y))),
        _ => false,
    }
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the (decoded) path segment.
    Literal(String),
    /// `{name}`: any non-empty segment.
    Param(String),
    /// `{name:int}`: an optional `-` followed by ASCII digits.
    IntParam(String),
}

impl Segment {
    /// Whether some path segment matches both.
    fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            (Self::Literal(l), Self::IntParam(_)) | (Self::IntParam(_), Self::Literal(l)) => {
                is_integer(l)
            }
            (Self::Literal(l), Self::Param(_)) | (Self::Param(_), Self::Literal(l)) => {
                !l.is_empty()
            }
            _ => true,
        }
    }

    /// Rank for "most specific wins": higher is more specific.
    fn specificity(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::IntParam(_) => 1,
            Self::Param(_) => 0,
        }
    }
}

/// Why a route pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("route path {0:?} must start with '/'")]
    NoLeadingSlash(String),
    #[error(
        "route path {path:?}: segment {segment:?} is not a valid parameter (use {{name}} or {{name:int}})"
    )]
    BadParam { path: String, segment: String },
    #[error("route path {path:?}: parameter {name:?} appears twice")]
    DuplicateParam { path: String, name: String },
}

/// A parsed route path such as `/api/orders/{id:int}/ship`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// The pattern as the app wrote it, for banners and errors.
    raw: String,
    /// The parsed segments, without the leading empty one.
    segments: Vec<Segment>,
}

impl FromStr for RoutePattern {
    type Err = PatternError;

    fn from_str(raw: &str) -> Result<Self, PatternError> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(PatternError::NoLeadingSlash(raw.to_string()));
        };
        let mut segments = Vec::new();
        for part in split_segments(rest) {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                None if part.contains(['{', '}']) => {
                    return Err(PatternError::BadParam {
                        path: raw.to_string(),
                        segment: part.to_string(),
                    });
                }
                None => Segment::Literal(part.to_string()),
                Some(inner) => parse_param(inner).ok_or_else(|| PatternError::BadParam {
                    path: raw.to_string(),
                    segment: part.to_string(),
                })?,
            };
            if let Segment::Param(name) | Segment::IntParam(name) = &segment {
                let seen = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::IntParam(n) if n == name));
                if seen {
                    return Err(PatternError::DuplicateParam {
                        path: raw.to_string(),
                        name: name.clone(),
                    });
                }
            }
            segments.push(segment);
        }
        Ok(Self {
            raw: raw.to_string(),
            segments,
        })
    }
}

/// Parses the inside of `{...}`: `name` or `name:int`.
fn parse_param(inner: &str) -> Option<Segment> {
    let (name, kind) = match inner.split_once(':') {
        Some((name, kind)) => (name, Some(kind)),
        None => (inner, None),
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return None;
    }
    match kind {
        None => Some(Segment::Param(name.to_string())),
        Some("int") => Some(Segment::IntParam(name.to_string())),
        Some(_) => None,
    }
}

/// Splits the part of a path after its leading `/` into segments; a trailing
/// `/` is not significant (`/a/b/` is `/a/b`), and `/` has no segments.
fn split_segments(rest: &str) -> impl Iterator<Item = &str> {
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    trimmed.split('/').filter(move |_| !trimmed.is_empty())
}

fn is_integer(segment: &str) -> bool {
    let digits = segment.strip_prefix('-').unwrap_or(segment);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl RoutePattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The pattern with parameter names erased: two patterns with the same
    /// shape match exactly the same paths, so they conflict.
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Literal(lit) => shape.push_str(lit),
                Segment::Param(_) => shape.push_str("{}"),
                Segment::IntParam(_) => shape.push_str("{int}"),
            }
        }
        if shape.is_empty() {
            shape.push('/');
        }
        shape
    }

    /// Matches decoded path segments; on success returns the bound parameters.
    fn matches(&self, path: &[String]) -> Option<Vec<(String, String)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, value) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(lit) if lit == value => {}
                Segment::Param(name) if !value.is_empty() => {
                    params.push((name.clone(), value.clone()));
                }
                Segment::IntParam(name) if is_integer(value) => {
                    params.push((name.clone(), value.clone()));
                }
                _ => return None,
            }
        }
        Some(params)
    }

    /// Whether a concrete path is one this pattern serves.
    pub fn matches_path(&self, path: &RequestPath) -> bool {
        self.matches(&path.segments).is_some()
    }

    /// Whether some concrete path matches both patterns.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.overlaps(b))
    }

    /// The pattern of exactly one concrete path (a static file's).
    pub fn literal(path: &RequestPath) -> Self {
        Self {
            raw: path.decoded.clone(),
            segments: path
                .segments
                .iter()
                .cloned()
                .map(Segment::Literal)
                .collect(),
        }
    }

    fn specificity(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments.iter().map(Segment::specificity)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A request path the router could not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("a path segment may not encode '/', '\\' or a control character")]
    EncodedSeparator,
}

/// A request path split into percent-decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The whole path, percent-decoded and without a trailing `/`: its one
    /// spelling, as handed to apps and as rooms are keyed.
    pub decoded: String,
    /// Its decoded segments, for matching.
    segments: Vec<String>,
}

impl RequestPath {
    /// Its decoded segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// Splits and decodes a raw request path (without its query string).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
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
    pub fn from_decoded(path: &str) -> Option<Self> {
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

/// A route in the table, pointing at whatever serves it.
#[derive(Debug, Clone)]
pub struct RouteEntry<T> {
    /// HTTP method or WebSocket.
    pub kind: RouteKind,
    /// The parsed path pattern.
    pub pattern: RoutePattern,
    /// The host names it answers on.
    pub hosts: HostBinding,
    /// What serves it (the app and the route's index within the app).
    pub target: T,
}

impl<T> RouteEntry<T> {
    /// Whether a request for `host` may reach it: a claimed name reaches
    /// only the apps that claim it; any other name, only the apps bound to
    /// the server's names.
    fn on_host(&self, host: &str, claimed: bool) -> bool {
        match &self.hosts {
            Some(names) => names.iter().any(|n| n.matches(host)),
            None => !claimed,
        }
    }
}

/// A matched route with the parameters bound from the path.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The route that matched.
    pub entry: &'a RouteEntry<T>,
    /// Its `{name}` parameters, bound from the path, in pattern order.
    pub params: Vec<(String, String)>,
}

/// Result of routing an HTTP request.
#[derive(Debug)]
pub enum HttpMatch<'a, T> {
    Found(RouteMatch<'a, T>),
    /// The path matches routes, but none for this method (answer 405).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Two routes that would answer the same requests.
#[derive(Debug, thiserror::Error)]
#[error("route {kind} {pattern} conflicts with {existing}, which already serves those requests")]
pub struct RouteConflict {
    /// The kind (method or WebSocket) of the refused route.
    pub kind: RouteKind,
    /// The refused route's pattern.
    pub pattern: String,
    /// Who already holds the route (as the caller's `Display` of the target).
    pub existing: String,
}

/// Every route of every loaded app.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Routes in insertion order; matching ranks them by specificity.
    entries: Vec<RouteEntry<T>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: fmt::Display> RouteTable<T> {
    /// Adds a group of routes (one app's) all or nothing: if any of them
    /// conflicts with a route already in the table or within the group, none
    /// is added. `same_app` tells whether an entry already in the table
    /// belongs to the group's app.
    ///
    /// Within one app, two routes conflict only if they have the same kind
    /// and shape (the most specific of overlapping routes wins). Between
    /// apps, routes conflict if some request could reach both: the same
    /// class, overlapping patterns, a shared host name. So every request
    /// has at most one app that can answer it, and an app that is serving
    /// can never be displaced by one that comes later.
    pub fn add_all(
        &mut self,
        routes: Vec<RouteEntry<T>>,
        same_app: impl Fn(&T) -> bool,
    ) -> Result<(), RouteConflict> {
        for (i, route) in routes.iter().enumerate() {
            let shape = route.pattern.shape();
            let own = routes[..i]
                .iter()
                .chain(self.entries.iter().filter(|e| same_app(&e.target)))
                .find(|e| e.kind == route.kind && e.pattern.shape() == shape);
            let theirs = || {
                self.entries.iter().find(|e| {
                    !same_app(&e.target)
                        && e.kind.class() == route.kind.class()
                        && bindings_overlap(&e.hosts, &route.hosts)
                        && e.pattern.overlaps(&route.pattern)
                })
            };
            if let Some(existing) = own.or_else(theirs) {
                return Err(RouteConflict {
                    kind: route.kind,
                    pattern: route.pattern.to_string(),
                    existing: format!(
                        "{} {} of {}",
                        existing.kind, existing.pattern, existing.target
                    ),
                });
            }
        }
        self.entries.extend(routes);
        Ok(())
    }
}

impl<T> RouteTable<T> {
    /// All routes, in the order they were added.
    pub fn entries(&self) -> &[RouteEntry<T>] {
        &self.entries
    }

    /// Removes every route whose target satisfies `owned`.
    pub fn remove_where(&mut self, owned: impl Fn(&T) -> bool) {
        self.entries.retain(|e| !owned(&e.target));
    }

    /// Whether some app claims `host` (a normalized [`host_name`]).
    pub fn claims(&self, host: &str) -> bool {
        self.entries.iter().any(|e| {
            e.hosts
                .as_ref()
                .is_some_and(|h| h.iter().any(|n| n.matches(host)))
        })
    }

    /// The most specific route on `host` of a wanted kind matching `path`.
    fn best<'a>(
        &'a self,
        host: &str,
        path: &RequestPath,
        wanted: impl Fn(RouteKind) -> bool,
    ) -> Option<RouteMatch<'a, T>> {
        let claimed = self.claims(host);
        let mut best: Option<RouteMatch<'a, T>> = None;
        for entry in self
            .entries
            .iter()
            .filter(|e| wanted(e.kind) && e.on_host(host, claimed))
        {
            let Some(params) = entry.pattern.matches(&path.segments) else {
                continue;
            };
            let better = best.as_ref().is_none_or(|b| {
                entry
                    .pattern
                    .specificity()
                    .gt(b.entry.pattern.specificity())
            });
            if better {
                best = Some(RouteMatch { entry, params });
            }
        }
        best
    }

    /// Routes an HTTP request for `host`. `HEAD` falls back to the `GET`
    /// route. Only apps that claim `host` are asked, or, if none does, the
    /// apps bound to the server's own names.
    pub fn match_http(&self, method: Method, host: &str, path: &RequestPath) -> HttpMatch<'_, T> {
        if let Some(found) = self.best(host, path, |k| k == RouteKind::Http(method)) {
            return HttpMatch::Found(found);
        }
        if method == Method::Head
            && let Some(found) = self.best(host, path, |k| k == RouteKind::Http(Method::Get))
        {
            return HttpMatch::Found(found);
        }
        let claimed = self.claims(host);
        let mut allowed: Vec<Method> = self
            .entries
            .iter()
            .filter(|e| e.on_host(host, claimed))
            .filter_map(|e| match e.kind {
                RouteKind::Http(m) if e.pattern.matches(&path.segments).is_some() => Some(m),
                _ => None,
            })
            .collect();
        allowed.dedup();
        if allowed.is_empty() {
            HttpMatch::NotFound
        } else {
            HttpMatch::MethodNotAllowed(allowed)
        }
    }

    /// Routes a WebSocket upgrade for `host`.
    pub fn match_websocket(&self, host: &str, path: &RequestPath) -> Option<RouteMatch<'_, T>> {
        self.best(host, path, |k| k == RouteKind::WebSocket)
    }

    /// The app file listed at `path` for `host`, if any.
    pub fn match_static(&self, host: &str, path: &RequestPath) -> Option<&RouteEntry<T>> {
        self.best(host, path, |k| k == RouteKind::Static)
            .map(|found| found.entry)
    }

    /// The targets serving `host`, in the order they were added (once each
    /// per entry; callers dedupe).
    pub fn targets_on(&self, host: &str) -> impl Iterator<Item = &T> {
        let claimed = self.claims(host);
        self.entries
            .iter()
            .filter(move |e| e.on_host(host, claimed))
            .map(|e| &e.target)
    }

    /// Whether WebSocket upgrades for `path` reach a target that `owned`
    /// accepts, on that target's hosts: the test of whether an app may
    /// address a path. Conflicts keep any other app from answering there.
    pub fn sends_websocket(&self, path: &RequestPath, owned: impl Fn(&T) -> bool) -> bool {
        self.entries.iter().any(|e| {
            e.kind == RouteKind::WebSocket && owned(&e.target) && e.pattern.matches_path(path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(RouteKind, &str)]) -> RouteTable<String> {
        let mut table = RouteTable::default();
        let entries = routes
            .iter()
            .map(|(kind, path)| entry(*kind, path, None, path))
            .collect();
        table.add_all(entries, |_| true).unwrap();
        table
    }

    fn entry(
        kind: RouteKind,
        path: &str,
        hosts: Option<&[&str]>,
        target: &str,
    ) -> RouteEntry<String> {
        RouteEntry {
            kind,
            pattern: path.parse().unwrap(),
            hosts: hosts.map(|h| h.iter().map(|h| h.parse().unwrap()).collect()),
            target: target.to_string(),
        }
    }

    /// Adds `entries` as app `app`'s (targets name their app before a `:`).
    fn add(
        table: &mut RouteTable<String>,
        app: &str,
        entries: Vec<RouteEntry<String>>,
    ) -> Result<(), RouteConflict> {
        let prefix = format!("{app}:");
        table.add_all(entries, |t| t.starts_with(&prefix))
    }

    const HOST: &str = "localhost";

    fn path(p: &str) -> RequestPath {
        RequestPath::parse(p).unwrap()
    }

    const GET: RouteKind = RouteKind::Http(Method::Get);

    #[test]
    fn binds_string_and_int_params() {
        let t = table(&[(RouteKind::Http(Method::Post), "/api/orders/{id:int}/ship")]);
        let HttpMatch::Found(m) = t.match_http(Method::Post, HOST, &path("/api/orders/42/ship"))
        else {
            panic!("no match");
        };
        assert_eq!(m.params, vec![("id".to_string(), "42".to_string())]);
        assert!(matches!(
            t.match_http(Method::Post, HOST, &path("/api/orders/abc/ship")),
            HttpMatch::NotFound
        ));
        assert!(matches!(
            t.match_http(Method::Post, HOST, &path("/api/orders/4a/ship")),
            HttpMatch::NotFound
        ));
    }

    #[test]
    fn params_are_percent_decoded_and_encoded_separators_refused() {
        let t = table(&[(RouteKind::WebSocket, "/ws/chat/{room}")]);
        let m = t
            .match_websocket(HOST, &path("/ws/chat/a%20c%C3%A9"))
            .unwrap();
        assert_eq!(m.params, vec![("room".to_string(), "a cé".to_string())]);
        assert!(t.match_websocket(HOST, &path("/ws/chat/a/b")).is_none());
        assert!(t.match_websocket(HOST, &path("/ws/chat/")).is_none());
        for refused in [
            "/ws/chat/a%2Fb",
            "/ws/chat/a%2fb",
            "/ws/a%5Cb",
            "/ws/a%0D%0Ab",
            "/a%00",
        ] {
            assert_eq!(
                RequestPath::parse(refused),
                Err(PathError::EncodedSeparator),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_path_has_one_spelling() {
        assert_eq!(path("/ws/room/lobby/").decoded, "/ws/room/lobby");
        assert_eq!(path("/ws/r%6Fom/lobby").decoded, "/ws/room/lobby");
        assert_eq!(path("/").decoded, "/");
        assert!(RequestPath::from_decoded("/ws/room/lobby").is_some());
        for other in ["/ws/room/lobby/", "ws/room", "/a\\b", "/a\nb"] {
            assert!(RequestPath::from_decoded(other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            (GET, "/items/{slug}"),
            (GET, "/items/{id:int}"),
            (GET, "/items/new"),
        ]);
        let target = |p: &str| match t.match_http(Method::Get, HOST, &path(p)) {
            HttpMatch::Found(m) => m.entry.target.clone(),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(target("/items/new"), "/items/new");
        assert_eq!(target("/items/7"), "/items/{id:int}");
        assert_eq!(target("/items/seven"), "/items/{slug}");
    }

    #[test]
    fn wrong_method_is_405_and_head_uses_get() {
        let t = table(&[(GET, "/a"), (RouteKind::Http(Method::Put), "/a")]);
        match t.match_http(Method::Delete, HOST, &path("/a")) {
            HttpMatch::MethodNotAllowed(m) => assert_eq!(m, vec![Method::Get, Method::Put]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.match_http(Method::Head, HOST, &path("/a")),
            HttpMatch::Found(_)
        ));
    }

    #[test]
    fn http_and_websocket_routes_are_separate() {
        let t = table(&[(GET, "/ws/echo")]);
        assert!(t.match_websocket(HOST, &path("/ws/echo")).is_none());
    }

    #[test]
    fn trailing_slash_and_root() {
        let t = table(&[(GET, "/"), (GET, "/a")]);
        assert!(matches!(
            t.match_http(Method::Get, HOST, &path("/a/")),
            HttpMatch::Found(_)
        ));
        match t.match_http(Method::Get, HOST, &path("/")) {
            HttpMatch::Found(m) => assert_eq!(m.entry.target, "/"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(matches!(
            "ws/x".parse::<RoutePattern>(),
            Err(PatternError::NoLeadingSlash(_))
        ));
        for bad in ["/a/{}", "/a/{x:float}", "/a/{x-y}", "/a/b{x}", "/a/{x"] {
            assert!(
                matches!(
                    bad.parse::<RoutePattern>(),
                    Err(PatternError::BadParam { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "/a/{x}/{x:int}".parse::<RoutePattern>(),
            Err(PatternError::DuplicateParam { .. })
        ));
    }

    #[test]
    fn conflicting_groups_are_refused_whole() {
        let mut t = RouteTable::default();
        add(
            &mut t,
            "chat",
            vec![entry(
                RouteKind::WebSocket,
                "/ws/chat/{room}",
                None,
                "chat:ws",
            )],
        )
        .unwrap();
        let group = vec![
            entry(GET, "/fine", None, "second:fine"),
            entry(RouteKind::WebSocket, "/ws/chat/{name}", None, "second:ws"),
        ];
        let err = add(&mut t, "second", group).unwrap_err();
        assert!(err.to_string().contains("/ws/chat/{room}"), "{err}");
        assert_eq!(t.entries().len(), 1);
        // Another class on the same path: no conflict.
        add(
            &mut t,
            "third",
            vec![entry(GET, "/ws/chat/{id:int}", None, "third:get")],
        )
        .unwrap();
        // Within one app, overlapping routes rank by specificity.
        add(
            &mut t,
            "chat",
            vec![entry(
                RouteKind::WebSocket,
                "/ws/chat/lobby",
                None,
                "chat:lobby",
            )],
        )
        .unwrap();
    }

    #[test]
    fn a_newcomer_can_take_nothing_from_an_app_already_serving() {
        let mut t = RouteTable::default();
        let ws = RouteKind::WebSocket;
        add(
            &mut t,
            "chat",
            vec![entry(ws, "/ws/room/{name}", None, "chat:room")],
        )
        .unwrap();
        add(&mut t, "web", vec![entry(GET, "/about", None, "web:about")]).unwrap();
        let mut squats = |kind, pattern| {
            add(
                &mut t,
                "squatter",
                vec![entry(kind, pattern, None, "squatter:x")],
            )
            .is_ok()
        };
        for (kind, squat) in [
            (ws, "/ws/room/lobby"), // more specific
            (ws, "/{a}/{b}/{c}"),   // broader
            (ws, "/ws/{x}/{y}"),
            (RouteKind::Static, "/about"),
            (GET, "/{page}"),
        ] {
            assert!(!squats(kind, squat), "{squat}");
        }
        assert!(squats(GET, "/about/{x}"));
    }

    #[test]
    fn hosts_keep_tenants_apart() {
        let mut t = RouteTable::default();
        let ws = RouteKind::WebSocket;
        add(
            &mut t,
            "a",
            vec![entry(
                ws,
                "/ws/chat/{room}",
                Some(&["a.example.com"]),
                "a:ws",
            )],
        )
        .unwrap();
        // The same pattern on another host, and on the server's own names.
        add(
            &mut t,
            "b",
            vec![entry(
                ws,
                "/ws/chat/{room}",
                Some(&["*.example.org"]),
                "b:ws",
            )],
        )
        .unwrap();
        add(
            &mut t,
            "c",
            vec![entry(ws, "/ws/chat/{room}", None, "c:ws")],
        )
        .unwrap();
        // Overlapping names conflict.
        assert!(
            add(
                &mut t,
                "d",
                vec![entry(ws, "/ws/chat/{x}", Some(&["x.example.org"]), "d:ws")]
            )
            .is_err()
        );
        assert!(
            add(
                &mut t,
                "d",
                vec![entry(ws, "/ws/chat/{x}", Some(&["A.Example.com"]), "d:ws")]
            )
            .is_err()
        );
        let target = |host: &str| {
            t.match_websocket(host, &path("/ws/chat/1"))
                .map(|m| m.entry.target.clone())
        };
        assert_eq!(target("a.example.com").as_deref(), Some("a:ws"));
        assert_eq!(target("deep.x.example.org").as_deref(), Some("b:ws"));
        assert_eq!(target("example.org").as_deref(), Some("c:ws"));
        assert_eq!(target("localhost").as_deref(), Some("c:ws"));
        // A claimed host reaches only its claimants.
        add(&mut t, "c", vec![entry(GET, "/page", None, "c:page")]).unwrap();
        assert!(matches!(
            t.match_http(Method::Get, "a.example.com", &path("/page")),
            HttpMatch::NotFound
        ));
        assert!(t.claims("a.example.com") && !t.claims("localhost"));
    }

    #[test]
    fn host_headers_and_patterns_are_normalized() {
        assert_eq!(
            host_name("Example.COM:7146").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host_name("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:7146").as_deref(), Some("[::1]"));
        for bad in ["", "a b", "a:b:c", "a/b", "[::1]x", "a:99999999"] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
        assert!(
            "*.example.org"
                .parse::<HostPattern>()
                .unwrap()
                .matches("a.example.org")
        );
        assert!(
            !"*.example.org"
                .parse::<HostPattern>()
                .unwrap()
                .matches("example.org")
        );
        for bad in ["", "*", "a..b", "-a.com", "a_b.com", "*.*.com", "a.com/x"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn undecodable_paths_are_errors() {
        assert_eq!(RequestPath::parse("/a/%ff"), Err(PathError::NotUtf8));
        assert_eq!(RequestPath::parse("a"), Err(PathError::NotAbsolute));
    }
}
