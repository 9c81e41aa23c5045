//! How the edge reaches an app: route identity across versions, where a
//! route sends its events, and the snapshot of what is serving, which the
//! app manager publishes whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::actor::{self, AppHandle};
use super::bindings::{Connection, PresenceChange, WsEvent};
use crate::delivery::{
    HistoryPolicy, HistoryRule, Membership, PresenceApp, PresenceChange as DeliveryChange,
    PresencePolicy,
};
use crate::router::{RequestPath, RouteKind, RoutePattern, RouteTable};

/// What is serving: every route of every app, and whether the server is
/// ready. Replaced whole for each change, never edited in place; a reader
/// loads it once, so one request sees one consistent view.
#[derive(Debug, Clone, Default)]
pub(crate) struct Serving {
    /// Every route and public file of every serving app.
    pub(crate) routes: RouteTable<RouteTarget>,
    /// True once the initial load is done while at least one app serves.
    pub(crate) ready: bool,
}

/// The published [`Serving`]: written by the app manager, read by the edge
/// to route requests and by apps' imports to decide which paths an app may
/// address.
pub(crate) type SharedServing = Arc<ArcSwap<Serving>>;

/// Names a route across versions of an app: what it answers, and the shape
/// of its path (parameter names erased). A hot swap keeps serving the open
/// connections of every route whose key the new version still has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RouteKey {
    /// HTTP method or WebSocket.
    pub(crate) kind: RouteKind,
    /// [`RoutePattern::shape`] of the path.
    pub(crate) shape: String,
}

impl RouteKey {
    /// The key of a declared route.
    pub(crate) fn of(kind: RouteKind, pattern: &RoutePattern) -> Self {
        Self {
            kind,
            shape: pattern.shape(),
        }
    }
}

/// A route as an app declared it.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredRoute {
    /// HTTP method or WebSocket.
    pub(crate) kind: RouteKind,
    /// Its path pattern.
    pub(crate) pattern: RoutePattern,
    /// Whether a valid token is required.
    pub(crate) secured: bool,
    /// On a WebSocket or SSE route: how much of each path's recent
    /// messages to keep.
    pub(crate) history: Option<HistoryPolicy>,
    /// On a WebSocket or SSE route: how to keep who is on each path.
    pub(crate) presence: Option<PresencePolicy>,
}

/// Which of a version's paths keep presence (those of its first WebSocket
/// or SSE route that asks for it and serves the path), and how a change
/// reaches `app`'s `on-presence` for that route. `None` when no route asks.
pub(crate) fn presence_app(routes: &[DeclaredRoute], app: &Arc<AppHandle>) -> Option<PresenceApp> {
    let kept: Arc<[(RoutePattern, PresencePolicy, actor::RouteRef)]> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind.has_connections())
        .filter_map(|(index, r)| {
            let route = actor::RouteRef {
                index: u32::try_from(index).ok()?,
                key: Arc::new(RouteKey::of(r.kind, &r.pattern)),
            };
            Some((r.pattern.clone(), r.presence.clone()?, route))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    let find = |kept: &[(RoutePattern, PresencePolicy, actor::RouteRef)], path: &str| {
        let path = RequestPath::from_decoded(path)?;
        kept.iter()
            .position(|(pattern, _, _)| pattern.matches_path(&path))
    };
    let rule = {
        let kept = kept.clone();
        move |path: &str| Some(kept[find(&kept, path)?].1.clone())
    };
    // The delivery holds this; the app's handle must not be kept alive by it.
    let app = Arc::downgrade(app);
    let notify = move |change: DeliveryChange| {
        let (Some(app), Some(at)) = (app.upgrade(), find(&kept, change.room.path())) else {
            return;
        };
        let change = PresenceChange {
            path: change.room.path().to_string(),
            key: change.key.to_string(),
            value: change.value.to_string(),
            joined: change.joined,
        };
        app.presence(kept[at].2.clone(), change);
    };
    Some(PresenceApp {
        rule: Arc::new(rule),
        notify: Arc::new(notify),
    })
}

/// Which of a version's paths keep history: those of its first
/// WebSocket or SSE route that asks for it and serves the path. `None`
/// when no route asks.
pub(crate) fn history_rule(routes: &[DeclaredRoute]) -> Option<HistoryRule> {
    let kept: Vec<(RoutePattern, HistoryPolicy)> = routes
        .iter()
        .filter(|r| r.kind.has_connections())
        .filter_map(|r| Some((r.pattern.clone(), r.history?)))
        .collect();
    if kept.is_empty() {
        return None;
    }
    Some(Arc::new(move |path: &str| {
        let path = RequestPath::from_decoded(path)?;
        kept.iter()
            .find(|(pattern, _)| pattern.matches_path(&path))
            .map(|(_, policy)| *policy)
    }))
}

impl std::fmt::Display for DeclaredRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<7} {}", self.kind.to_string(), self.pattern)?;
        if self.secured {
            f.write_str("  (secured)")?;
        }
        if let Some(history) = self.history {
            write!(f, "  (history: {} messages", history.max_messages)?;
            if let Some(age) = history.max_age {
                write!(f, ", {} s", age.as_secs())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Where a route sends its requests: an app and the route's index in it.
#[derive(Debug, Clone)]
pub(crate) struct RouteTarget {
    /// The app serving the route.
    pub(crate) app: Arc<AppHandle>,
    /// The route's index in the `routes()` of the version that declared it.
    pub(crate) index: u32,
    /// The route's identity, to find it again in a later version.
    pub(crate) key: Arc<RouteKey>,
    /// Whether a valid token is required.
    pub(crate) secured: bool,
}

impl RouteTarget {
    /// Delivers a WebSocket event of `conn` to the app; false if the app
    /// is gone and the event went nowhere.
    pub(crate) async fn dispatch(
        &self,
        member: &Arc<Membership>,
        conn: &Arc<Connection>,
        event: WsEvent,
        quota: &actor::MailboxQuota,
    ) -> bool {
        self.app
            .websocket_event(self.route(), member, conn, event, quota)
            .await
    }

    /// The route as the app's actor resolves it.
    pub(crate) fn route(&self) -> actor::RouteRef {
        actor::RouteRef {
            index: self.index,
            key: self.key.clone(),
        }
    }
}

impl std::fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.app.fmt(f)
    }
}
