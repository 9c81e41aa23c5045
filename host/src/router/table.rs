//! The route table: every route of every app, generic over what serves
//! it, with the conflicts it refuses.

use std::fmt;

use super::host::{HostBinding, bindings_overlap};
use super::path::RequestPath;
use super::pattern::RoutePattern;
use super::{Method, RouteKind};

/// A route in the table, pointing at whatever serves it.
#[derive(Debug, Clone)]
pub(crate) struct RouteEntry<T> {
    /// HTTP method or WebSocket.
    pub(crate) kind: RouteKind,
    /// The parsed path pattern.
    pub(crate) pattern: RoutePattern,
    /// The host names it answers on.
    pub(crate) hosts: HostBinding,
    /// What serves it (the app and the route's index within the app).
    pub(crate) target: T,
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
pub(crate) struct RouteMatch<'a, T> {
    /// The route that matched.
    pub(crate) entry: &'a RouteEntry<T>,
    /// Its `{name}` parameters, bound from the path, in pattern order.
    pub(crate) params: Vec<(String, String)>,
}

/// Result of routing an HTTP request.
#[derive(Debug)]
pub(crate) enum HttpMatch<'a, T> {
    Found(RouteMatch<'a, T>),
    /// The path matches routes, but none for this method (answer 405).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Two routes that would answer the same requests.
#[derive(Debug, thiserror::Error)]
#[error("route {kind} {pattern} conflicts with {existing}, which already serves those requests")]
pub(crate) struct RouteConflict {
    /// The kind (method or WebSocket) of the refused route.
    pub(crate) kind: RouteKind,
    /// The refused route's pattern.
    pub(crate) pattern: String,
    /// Who already holds the route (as the caller's `Display` of the target).
    pub(crate) existing: String,
}

/// Every route of every loaded app.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable<T> {
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
    pub(crate) fn add_all(
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
    pub(crate) fn entries(&self) -> &[RouteEntry<T>] {
        &self.entries
    }

    /// Removes every route whose target satisfies `owned`.
    pub(crate) fn remove_where(&mut self, owned: impl Fn(&T) -> bool) {
        self.entries.retain(|e| !owned(&e.target));
    }

    /// Whether some app claims `host` (a normalized [`host_name`]).
    pub(crate) fn claims(&self, host: &str) -> bool {
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
    pub(crate) fn match_http(
        &self,
        method: Method,
        host: &str,
        path: &RequestPath,
    ) -> HttpMatch<'_, T> {
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
    pub(crate) fn match_websocket(
        &self,
        host: &str,
        path: &RequestPath,
    ) -> Option<RouteMatch<'_, T>> {
        self.best(host, path, |k| k == RouteKind::WebSocket)
    }

    /// The app file listed at `path` for `host`, if any.
    pub(crate) fn match_static(&self, host: &str, path: &RequestPath) -> Option<&RouteEntry<T>> {
        self.best(host, path, |k| k == RouteKind::Static)
            .map(|found| found.entry)
    }

    /// The targets serving `host`, in the order they were added (once each
    /// per entry; callers dedupe).
    pub(crate) fn targets_on(&self, host: &str) -> impl Iterator<Item = &T> {
        let claimed = self.claims(host);
        self.entries
            .iter()
            .filter(move |e| e.on_host(host, claimed))
            .map(|e| &e.target)
    }

    /// Whether WebSocket upgrades for `path` reach a target that `owned`
    /// accepts, on that target's hosts: the test of whether an app may
    /// address a path. Conflicts keep any other app from answering there.
    pub(crate) fn sends_websocket(&self, path: &RequestPath, owned: impl Fn(&T) -> bool) -> bool {
        self.entries.iter().any(|e| {
            e.kind == RouteKind::WebSocket && owned(&e.target) && e.pattern.matches_path(path)
        })
    }
}
