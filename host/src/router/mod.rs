//! Route patterns (`/ws/chat/{room}`, `/api/orders/{id:int}`) and the route
//! table that maps a request's method and path to the app that serves it.
//!
//! Matching works on percent-decoded segments. A segment that decodes to a
//! separator (`%2F`, `%5C`) or a control character is refused, so every
//! request path has exactly one spelling once decoded: the one apps see,
//! and the one rooms are keyed by. When several patterns of one app match
//! a path, the most specific wins, segment by segment: a literal beats
//! `{name:int}`, which beats `{name}`.

//!
//! - [`host`]: host names and the host patterns apps bind to.
//! - [`pattern`]: route patterns and their specificity.
//! - [`path`]: request paths, decoded once, and query strings.
//! - [`table`]: the generic route table and its conflicts.

mod host;
mod path;
mod pattern;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use host::{HostBinding, HostPattern, host_name};
pub(crate) use path::{RequestPath, query_pairs};
pub(crate) use pattern::RoutePattern;
pub(crate) use table::{HttpMatch, RouteEntry, RouteMatch, RouteTable};

use std::fmt;

/// HTTP methods an app can route on (the WIT `method` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Method {
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
    pub(crate) fn from_http(method: &hyper::Method) -> Option<Self> {
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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) enum RouteKind {
    Http(Method),
    WebSocket,
    /// A Server-Sent Events stream, opened with GET.
    Sse,
    /// A file of the app's public folder, answering GET and HEAD.
    Static,
}

impl RouteKind {
    /// Routes of two apps compete for the same requests only within one
    /// class: plain HTTP (any method, and files), WebSocket upgrades, or
    /// event streams (asked for with `Accept: text/event-stream`).
    fn class(self) -> u8 {
        match self {
            Self::Http(_) | Self::Static => 0,
            Self::WebSocket => 1,
            Self::Sse => 2,
        }
    }

    /// Whether its clients stay connected, in a path group the app
    /// addresses: WebSocket and SSE routes.
    pub(crate) fn has_connections(self) -> bool {
        matches!(self, Self::WebSocket | Self::Sse)
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(method) => f.write_str(method.as_str()),
            Self::WebSocket => f.write_str("WS"),
            Self::Sse => f.write_str("SSE"),
            Self::Static => f.write_str("FILE"),
        }
    }
}
