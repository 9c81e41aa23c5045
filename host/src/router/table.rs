//! The route table: every route of every app, generic over what serves
//! it, with the conflicts it refuses, indexed by host name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use super::host::{HostBinding, HostPattern, bindings_overlap};
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
    /// Where they are by host name.
    index: HostIndex,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: HostIndex::default(),
        }
    }
}

/// The positions of a table's entries by the host names they answer on, so
/// that routing a request, or checking a newcomer, looks only at the
/// entries that share its names: a table of thousands of tenants, each on
/// names of its own, costs a request no more than a table of one.
#[derive(Debug, Clone, Default)]
struct HostIndex {
    /// Entries that claim this exact name.
    exact: HashMap<String, Vec<usize>>,
    /// Entries that claim a `*.` name (few, so scanned).
    below: Vec<usize>,
    /// Entries on the server's own names.
    unbound: Vec<usize>,
}

impl HostIndex {
    /// Files the entry at `at`, which answers on `hosts`.
    fn add(&mut self, at: usize, hosts: &HostBinding) {
        let Some(names) = hosts else {
            self.unbound.push(at);
            return;
        };
        let mut below = false;
        for name in names.iter() {
            match name {
                HostPattern::Exact(name) => {
                    let positions = self.exact.entry(name.clone()).or_default();
                    if positions.last() != Some(&at) {
                        positions.push(at);
                    }
                }
                HostPattern::Below(_) => below = true,
            }
        }
        if below {
            self.below.push(at);
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
    /// can never be displaced by one that comes later. All the routes of
    /// one app answer on the same names.
    pub(crate) fn add_all(
        &mut self,
        routes: Vec<RouteEntry<T>>,
        same_app: impl Fn(&T) -> bool,
    ) -> Result<(), RouteConflict> {
        if let Some(conflict) = self.conflict(&routes, same_app) {
            return Err(conflict);
        }
        self.insert_unchecked(routes);
        Ok(())
    }

    /// The first conflict `routes` (one app's) would have with the table
    /// or among themselves, as [`add_all`](Self::add_all) decides it.
    pub(crate) fn conflict(
        &self,
        routes: &[RouteEntry<T>],
        same_app: impl Fn(&T) -> bool,
    ) -> Option<RouteConflict> {
        self.conflict_where(routes, same_app, true)
    }

    /// The first conflict `routes` (one app's, already in the table) have
    /// with another app's.
    pub(crate) fn conflict_with_others(
        &self,
        routes: &[RouteEntry<T>],
        same_app: impl Fn(&T) -> bool,
    ) -> Option<RouteConflict> {
        self.conflict_where(routes, same_app, false)
    }

    /// A conflict with other apps' routes, and with the app's own if
    /// `with_own`.
    fn conflict_where(
        &self,
        routes: &[RouteEntry<T>],
        same_app: impl Fn(&T) -> bool,
        with_own: bool,
    ) -> Option<RouteConflict> {
        for (i, route) in routes.iter().enumerate() {
            let shape = route.pattern.shape();
            let near = self.sharing(&route.hosts);
            let sharing = || near.iter().map(|&at| &self.entries[at]);
            let own = routes[..i]
                .iter()
                .chain(sharing().filter(|e| same_app(&e.target)))
                .filter(|_| with_own)
                .find(|e| e.kind == route.kind && e.pattern.shape() == shape);
            let theirs = || {
                sharing().find(|e| {
                    !same_app(&e.target)
                        && e.kind.class() == route.kind.class()
                        && bindings_overlap(&e.hosts, &route.hosts)
                        && e.pattern.overlaps(&route.pattern)
                })
            };
            if let Some(existing) = own.or_else(theirs) {
                return Some(RouteConflict {
                    kind: route.kind,
                    pattern: route.pattern.to_string(),
                    existing: format!(
                        "{} {} of {}",
                        existing.kind, existing.pattern, existing.target
                    ),
                });
            }
        }
        None
    }
}

impl<T> RouteTable<T> {
    /// All routes, in the order they were added.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[RouteEntry<T>] {
        &self.entries
    }

    /// Adds routes without checking them for conflicts: for a table of
    /// claims that are checked against each other afterwards.
    pub(crate) fn insert_unchecked(&mut self, routes: Vec<RouteEntry<T>>) {
        for route in routes {
            self.index.add(self.entries.len(), &route.hosts);
            self.entries.push(route);
        }
    }

    /// Removes every route whose target satisfies `owned`.
    pub(crate) fn remove_where(&mut self, owned: impl Fn(&T) -> bool) {
        let entries = std::mem::take(&mut self.entries);
        self.index = HostIndex::default();
        self.insert_unchecked(entries.into_iter().filter(|e| !owned(&e.target)).collect());
    }

    /// Whether some app claims `host` (a normalized [`host_name`]).
    pub(crate) fn claims(&self, host: &str) -> bool {
        self.index.exact.contains_key(host)
            || self
                .index
                .below
                .iter()
                .any(|&at| self.entries[at].on_host(host, true))
    }

    /// The positions of the entries that may answer a request for `host`,
    /// each once: those that claim it, or, if none does, those on the
    /// server's names.
    fn on_host(&self, host: &str) -> Cow<'_, [usize]> {
        let exact = self.index.exact.get(host).map_or(&[][..], Vec::as_slice);
        let mut below = self
            .index
            .below
            .iter()
            .copied()
            .filter(|&at| self.entries[at].on_host(host, true))
            .peekable();
        if below.peek().is_none() {
            return Cow::Borrowed(if exact.is_empty() {
                &self.index.unbound
            } else {
                exact
            });
        }
        let mut positions: Vec<usize> = exact.iter().copied().chain(below).collect();
        positions.sort_unstable();
        positions.dedup();
        Cow::Owned(positions)
    }

    /// The positions of the entries whose names may meet `hosts` (a
    /// superset: callers check the overlap).
    fn sharing(&self, hosts: &HostBinding) -> Cow<'_, [usize]> {
        let Some(names) = hosts else {
            return Cow::Borrowed(&self.index.unbound);
        };
        let mut positions = self.index.below.clone();
        for name in names.iter() {
            match name {
                HostPattern::Exact(name) => {
                    positions.extend(self.index.exact.get(name).into_iter().flatten());
                }
                below @ HostPattern::Below(_) => positions.extend(
                    self.index
                        .exact
                        .iter()
                        .filter(|(name, _)| below.matches(name))
                        .flat_map(|(_, at)| at),
                ),
            }
        }
        Cow::Owned(positions)
    }

    /// The most specific route on `host` of a wanted kind matching `path`.
    fn best<'a>(
        &'a self,
        host: &str,
        path: &RequestPath,
        wanted: impl Fn(RouteKind) -> bool,
    ) -> Option<RouteMatch<'a, T>> {
        let mut best: Option<RouteMatch<'a, T>> = None;
        for entry in self
            .on_host(host)
            .iter()
            .map(|&at| &self.entries[at])
            .filter(|e| wanted(e.kind))
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
        let mut allowed: Vec<Method> = self
            .on_host(host)
            .iter()
            .map(|&at| &self.entries[at])
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

    /// Routes a request for a Server-Sent Events stream for `host`.
    pub(crate) fn match_sse(&self, host: &str, path: &RequestPath) -> Option<RouteMatch<'_, T>> {
        self.best(host, path, |k| k == RouteKind::Sse)
    }

    /// The app file listed at `path` for `host`, if any.
    pub(crate) fn match_static(&self, host: &str, path: &RequestPath) -> Option<&RouteEntry<T>> {
        self.best(host, path, |k| k == RouteKind::Static)
            .map(|found| found.entry)
    }

    /// The targets serving `host`, in the order they were added (once each
    /// per entry; callers dedupe).
    pub(crate) fn targets_on(&self, host: &str) -> impl Iterator<Item = &T> {
        self.routes_on(host).map(|entry| &entry.target)
    }

    /// The routes (files included) a request for `host` may reach, in the
    /// order they were added.
    pub(crate) fn routes_on(&self, host: &str) -> impl Iterator<Item = &RouteEntry<T>> {
        let positions = self.on_host(host).into_owned();
        positions.into_iter().map(|at| &self.entries[at])
    }
}
