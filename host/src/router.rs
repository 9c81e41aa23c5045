//! Route patterns (`/ws/chat/{room}`, `/api/orders/{id:int}`) and the route
//! table that maps a request's method and path to the app that serves it.
//!
//! Matching works on percent-decoded segments, so `%2F` inside a parameter
//! stays inside that parameter. When several patterns match one path, the
//! most specific wins, segment by segment: a literal beats `{name:int}`, which
//! beats `{name}`.

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
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(method) => f.write_str(method.as_str()),
            Self::WebSocket => f.write_str("WS"),
        }
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
}

/// A request path split into percent-decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The whole path, percent-decoded, as handed to apps.
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
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| PathError::NotUtf8)
        };
        let segments = split_segments(rest)
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            decoded: decode(raw)?,
            segments,
        })
    }

    /// Splits a path that is already decoded (as apps hand them back, e.g.
    /// a connection's `path`); `None` unless it starts with `/`.
    pub fn from_decoded(path: &str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        Some(Self {
            decoded: path.to_string(),
            segments: split_segments(rest).map(str::to_string).collect(),
        })
    }
}

/// A route in the table, pointing at whatever serves it.
#[derive(Debug, Clone)]
pub struct RouteEntry<T> {
    /// HTTP method or WebSocket.
    pub kind: RouteKind,
    /// The parsed path pattern.
    pub pattern: RoutePattern,
    /// What serves it (the app and the route's index within the app).
    pub target: T,
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
#[error("route {kind} {pattern} conflicts with {existing}")]
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
    /// is added.
    pub fn add_all(&mut self, routes: Vec<RouteEntry<T>>) -> Result<(), RouteConflict> {
        for (i, route) in routes.iter().enumerate() {
            let shape = route.pattern.shape();
            let clash = self
                .entries
                .iter()
                .chain(&routes[..i])
                .find(|e| e.kind == route.kind && e.pattern.shape() == shape);
            if let Some(existing) = clash {
                return Err(RouteConflict {
                    kind: route.kind,
                    pattern: route.pattern.to_string(),
                    existing: format!("{} of {}", existing.pattern, existing.target),
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

    /// The most specific route of `kind`-class matching `path`.
    fn best<'a>(
        &'a self,
        path: &RequestPath,
        wanted: impl Fn(RouteKind) -> bool,
    ) -> Option<RouteMatch<'a, T>> {
        let mut best: Option<RouteMatch<'a, T>> = None;
        for entry in self.entries.iter().filter(|e| wanted(e.kind)) {
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

    /// Routes an HTTP request. `HEAD` falls back to the `GET` route.
    pub fn match_http(&self, method: Method, path: &RequestPath) -> HttpMatch<'_, T> {
        if let Some(found) = self.best(path, |k| k == RouteKind::Http(method)) {
            return HttpMatch::Found(found);
        }
        if method == Method::Head
            && let Some(found) = self.best(path, |k| k == RouteKind::Http(Method::Get))
        {
            return HttpMatch::Found(found);
        }
        let mut allowed: Vec<Method> = self
            .entries
            .iter()
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

    /// Routes a WebSocket upgrade.
    pub fn match_websocket(&self, path: &RequestPath) -> Option<RouteMatch<'_, T>> {
        self.best(path, |k| k == RouteKind::WebSocket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(RouteKind, &str)]) -> RouteTable<String> {
        let mut table = RouteTable::default();
        let entries = routes
            .iter()
            .map(|(kind, path)| RouteEntry {
                kind: *kind,
                pattern: path.parse().unwrap(),
                target: path.to_string(),
            })
            .collect();
        table.add_all(entries).unwrap();
        table
    }

    fn path(p: &str) -> RequestPath {
        RequestPath::parse(p).unwrap()
    }

    const GET: RouteKind = RouteKind::Http(Method::Get);

    #[test]
    fn binds_string_and_int_params() {
        let t = table(&[(RouteKind::Http(Method::Post), "/api/orders/{id:int}/ship")]);
        let HttpMatch::Found(m) = t.match_http(Method::Post, &path("/api/orders/42/ship")) else {
            panic!("no match");
        };
        assert_eq!(m.params, vec![("id".to_string(), "42".to_string())]);
        assert!(matches!(
            t.match_http(Method::Post, &path("/api/orders/abc/ship")),
            HttpMatch::NotFound
        ));
        assert!(matches!(
            t.match_http(Method::Post, &path("/api/orders/4a/ship")),
            HttpMatch::NotFound
        ));
    }

    #[test]
    fn params_are_percent_decoded_and_keep_encoded_slashes() {
        let t = table(&[(RouteKind::WebSocket, "/ws/chat/{room}")]);
        let m = t.match_websocket(&path("/ws/chat/a%2Fb%20c")).unwrap();
        assert_eq!(m.params, vec![("room".to_string(), "a/b c".to_string())]);
        assert!(t.match_websocket(&path("/ws/chat/a/b")).is_none());
        assert!(t.match_websocket(&path("/ws/chat/")).is_none());
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            (GET, "/items/{slug}"),
            (GET, "/items/{id:int}"),
            (GET, "/items/new"),
        ]);
        let target = |p: &str| match t.match_http(Method::Get, &path(p)) {
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
        match t.match_http(Method::Delete, &path("/a")) {
            HttpMatch::MethodNotAllowed(m) => assert_eq!(m, vec![Method::Get, Method::Put]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.match_http(Method::Head, &path("/a")),
            HttpMatch::Found(_)
        ));
    }

    #[test]
    fn http_and_websocket_routes_are_separate() {
        let t = table(&[(GET, "/ws/echo")]);
        assert!(t.match_websocket(&path("/ws/echo")).is_none());
    }

    #[test]
    fn trailing_slash_and_root() {
        let t = table(&[(GET, "/"), (GET, "/a")]);
        assert!(matches!(
            t.match_http(Method::Get, &path("/a/")),
            HttpMatch::Found(_)
        ));
        match t.match_http(Method::Get, &path("/")) {
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
        let mut t = table(&[(RouteKind::WebSocket, "/ws/chat/{room}")]);
        let group = vec![
            RouteEntry {
                kind: GET,
                pattern: "/fine".parse().unwrap(),
                target: "second".to_string(),
            },
            RouteEntry {
                kind: RouteKind::WebSocket,
                pattern: "/ws/chat/{name}".parse().unwrap(),
                target: "second".to_string(),
            },
        ];
        let err = t.add_all(group).unwrap_err();
        assert!(err.to_string().contains("/ws/chat/{room}"), "{err}");
        assert_eq!(t.entries().len(), 1);
        // Same path, other kind or other param type: no conflict.
        let ok = vec![RouteEntry {
            kind: GET,
            pattern: "/ws/chat/{id:int}".parse().unwrap(),
            target: "third".to_string(),
        }];
        t.add_all(ok).unwrap();
    }

    #[test]
    fn undecodable_paths_are_errors() {
        assert_eq!(RequestPath::parse("/a/%ff"), Err(PathError::NotUtf8));
        assert_eq!(RequestPath::parse("a"), Err(PathError::NotAbsolute));
    }
}
