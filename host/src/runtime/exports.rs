//! An app's exports as the host calls them, in whichever version of the
//! contract the component was built against.
//!
//! Versions of `tina4:wasm` that share a minor version (0.1.0 to 0.1.4)
//! differ only by additions: the linker hands a component that imports
//! `@0.1.0` the host's newest 0.1 interfaces (wasmtime matches them by
//! semver), `handle-http` and `on-websocket` have the same types in all,
//! `routes` is read in the shape the component declares it in, and
//! `on-presence` (0.1.3) and `on-timer` (0.1.4) are called only where a
//! component has them. So the
//! exports are found and type-checked here, by hand, rather than by the
//! generated world, which only knows the newest shape.

use wasmtime::Store;
use wasmtime::component::{
    ComponentExportIndex, ComponentType, Func, InstancePre, Lift, TypedFunc,
};
use wasmtime::error::Context as _;

use super::bindings::tina4::wasm::types::History;
use super::bindings::{
    Connection, HttpRequest, HttpResponse, Method, PresenceChange, Route,
    WitRouteKind as RouteKind, WsEvent,
};

/// `routes`, as contract 0.1.2 declared them: no `presence`.
#[derive(ComponentType, Lift)]
#[component(record)]
struct RouteV0_1_2 {
    kind: RouteKind,
    path: String,
    secured: bool,
    history: Option<History>,
}

impl From<RouteV0_1_2> for Route {
    fn from(route: RouteV0_1_2) -> Self {
        Route {
            kind: route.kind,
            path: route.path,
            secured: route.secured,
            history: route.history,
            presence: None,
        }
    }
}

/// `routes`, as contract 0.1.1 declared them: no `history`.
#[derive(ComponentType, Lift)]
#[component(record)]
struct RouteV0_1_1 {
    kind: RouteKind,
    path: String,
    secured: bool,
}

impl From<RouteV0_1_1> for Route {
    fn from(route: RouteV0_1_1) -> Self {
        Route {
            kind: route.kind,
            path: route.path,
            secured: route.secured,
            history: None,
            presence: None,
        }
    }
}
use super::host::HostState;

/// `routes`, as contract 0.1.0 declared them: no `sse` route kind.
#[derive(ComponentType, Lift)]
#[component(record)]
struct RouteV0_1_0 {
    kind: RouteKindV0_1_0,
    path: String,
    secured: bool,
}

/// The route kinds of contract 0.1.0.
#[derive(ComponentType, Lift)]
#[component(variant)]
enum RouteKindV0_1_0 {
    #[component(name = "http")]
    Http(Method),
    #[component(name = "websocket")]
    Websocket,
}

impl From<RouteV0_1_0> for Route {
    fn from(route: RouteV0_1_0) -> Self {
        Route {
            kind: match route.kind {
                RouteKindV0_1_0::Http(method) => RouteKind::Http(method),
                RouteKindV0_1_0::Websocket => RouteKind::Websocket,
            },
            path: route.path,
            secured: route.secured,
            history: None,
            presence: None,
        }
    }
}

/// Where a version's exports are, found once when it is loaded.
pub(crate) struct ExportsPre {
    /// The component, linked and ready to instantiate.
    pre: InstancePre<HostState>,
    /// `routes`.
    routes: ComponentExportIndex,
    /// `handle-http`.
    handle_http: ComponentExportIndex,
    /// `on-websocket`.
    on_websocket: ComponentExportIndex,
    /// `on-presence`, in components built against 0.1.3 or later.
    on_presence: Option<ComponentExportIndex>,
    /// `on-timer`, in components built against 0.1.4 or later.
    on_timer: Option<ComponentExportIndex>,
}

impl ExportsPre {
    /// Finds the exports the handler world has; refuses a component that
    /// lacks one.
    pub(crate) fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let index = |name: &str| {
            component
                .get_export_index(None, name)
                .with_context(|| format!("it has no `{name}` export"))
        };
        Ok(Self {
            routes: index("routes")?,
            handle_http: index("handle-http")?,
            on_websocket: index("on-websocket")?,
            on_presence: component.get_export_index(None, "on-presence"),
            on_timer: component.get_export_index(None, "on-timer"),
            pre,
        })
    }

    /// The engine the component was compiled for.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }

    /// Instantiates the component in `store` and type-checks the exports
    /// every call needs.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Exports> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let handle_http = *instance
            .get_typed_func::<(u32, &HttpRequest), (HttpResponse,)>(&mut *store, &self.handle_http)
            .context("type-checking export `handle-http`")?
            .func();
        let on_websocket = *instance
            .get_typed_func::<(u32, &Connection, &WsEvent), ()>(&mut *store, &self.on_websocket)
            .context("type-checking export `on-websocket`")?
            .func();
        let routes = instance
            .get_func(&mut *store, self.routes)
            .context("export `routes` is not a function")?;
        let on_presence = match &self.on_presence {
            Some(index) => Some(
                *instance
                    .get_typed_func::<(u32, &PresenceChange), ()>(&mut *store, index)
                    .context("type-checking export `on-presence`")?
                    .func(),
            ),
            None => None,
        };
        let on_timer = match &self.on_timer {
            Some(index) => Some(
                *instance
                    .get_typed_func::<(&str, u64), ()>(&mut *store, index)
                    .context("type-checking export `on-timer`")?
                    .func(),
            ),
            None => None,
        };
        Ok(Exports {
            routes,
            handle_http,
            on_websocket,
            on_presence,
            on_timer,
        })
    }
}

/// One instance's exports.
pub(crate) struct Exports {
    /// `routes`, checked when called (its shape depends on the version).
    routes: Func,
    /// `handle-http`, type-checked at instantiation.
    handle_http: Func,
    /// `on-websocket`, type-checked at instantiation.
    on_websocket: Func,
    /// `on-presence`, type-checked at instantiation, if the component has it.
    on_presence: Option<Func>,
    /// `on-timer`, type-checked at instantiation, if the component has it.
    on_timer: Option<Func>,
}

impl Exports {
    /// The app's routes, in the newest shape whatever version declared them.
    pub(crate) async fn call_routes(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Vec<Route>> {
        if let Some(routes) = self.routes_as::<Route>(store).await {
            return routes;
        }
        if let Some(routes) = self.routes_as::<RouteV0_1_2>(store).await {
            return routes;
        }
        if let Some(routes) = self.routes_as::<RouteV0_1_1>(store).await {
            return routes;
        }
        match self.routes_as::<RouteV0_1_0>(store).await {
            Some(routes) => routes,
            None => Err(wasmtime::format_err!(
                "`routes` has the types of no tina4:wasm version this host knows"
            )),
        }
    }

    /// `routes`, if the component declares them in the shape `R`.
    async fn routes_as<R>(
        &self,
        store: &mut Store<HostState>,
    ) -> Option<wasmtime::Result<Vec<Route>>>
    where
        R: ComponentType + Lift + Into<Route> + Send + Sync + 'static,
    {
        let routes = self.routes.typed::<(), (Vec<R>,)>(&*store).ok()?;
        Some(match routes.call_async(&mut *store, ()).await {
            Ok((routes,)) => Ok(routes.into_iter().map(Into::into).collect()),
            Err(err) => Err(err),
        })
    }

    /// Answers an HTTP request on route `route`.
    pub(crate) async fn call_handle_http(
        &self,
        store: &mut Store<HostState>,
        route: u32,
        request: &HttpRequest,
    ) -> wasmtime::Result<HttpResponse> {
        // SAFETY: the type was checked against the component when the
        // instance was made.
        let func = unsafe {
            TypedFunc::<(u32, &HttpRequest), (HttpResponse,)>::new_unchecked(self.handle_http)
        };
        let (response,) = func.call_async(store, (route, request)).await?;
        Ok(response)
    }

    /// Gives the app one event of one connection on route `route`.
    pub(crate) async fn call_on_websocket(
        &self,
        store: &mut Store<HostState>,
        route: u32,
        conn: &Connection,
        event: &WsEvent,
    ) -> wasmtime::Result<()> {
        // SAFETY: the type was checked against the component when the
        // instance was made.
        let func = unsafe {
            TypedFunc::<(u32, &Connection, &WsEvent), ()>::new_unchecked(self.on_websocket)
        };
        func.call_async(store, (route, conn, event)).await
    }

    /// Tells the app a key joined or left a path of route `route`; nothing
    /// for a component without `on-presence`.
    pub(crate) async fn call_on_presence(
        &self,
        store: &mut Store<HostState>,
        route: u32,
        change: &PresenceChange,
    ) -> wasmtime::Result<()> {
        let Some(on_presence) = self.on_presence else {
            return Ok(());
        };
        // SAFETY: the type was checked against the component when the
        // instance was made.
        let func = unsafe { TypedFunc::<(u32, &PresenceChange), ()>::new_unchecked(on_presence) };
        func.call_async(store, (route, change)).await
    }

    /// Tells the app its timer `name` fired; nothing for a component
    /// without `on-timer`.
    pub(crate) async fn call_on_timer(
        &self,
        store: &mut Store<HostState>,
        name: &str,
        tick: u64,
    ) -> wasmtime::Result<()> {
        let Some(on_timer) = self.on_timer else {
            return Ok(());
        };
        // SAFETY: the type was checked against the component when the
        // instance was made.
        let func = unsafe { TypedFunc::<(&str, u64), ()>::new_unchecked(on_timer) };
        func.call_async(store, (name, tick)).await
    }
}
