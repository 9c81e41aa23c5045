//! Rust bindings of the `tina4:wasm/handler` world, generated from `wit/`,
//! and conversions between them and the host's own types. The world's
//! imports are linked from here; its exports are called through
//! [`exports`](super::exports), which also reads older versions.

use crate::router::{Method as RouteMethod, RouteKind};

// Exports are called as futures on the async runtime. Imports stay plain
// functions (they only queue onto outboxes), except `render`, which runs
// the template engine's own guest.
wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: {
        "tina4:wasm/templates.render": async,
        "tina4:wasm/storage.get": async,
        "tina4:wasm/storage.set": async,
        "tina4:wasm/storage.delete": async,
        "tina4:wasm/storage.keys": async,
        "tina4:wasm/storage.increment": async,
    },
    exports: { default: async },
});

pub(crate) use self::tina4::wasm::logging::Level;
pub(crate) use self::tina4::wasm::types::{
    CloseInfo, Error as GuestApiError, Method, RouteKind as WitRouteKind,
};

impl From<Method> for RouteMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Get => Self::Get,
            Method::Post => Self::Post,
            Method::Put => Self::Put,
            Method::Patch => Self::Patch,
            Method::Delete => Self::Delete,
            Method::Head => Self::Head,
            Method::Options => Self::Options,
        }
    }
}

impl From<RouteMethod> for Method {
    fn from(m: RouteMethod) -> Self {
        match m {
            RouteMethod::Get => Self::Get,
            RouteMethod::Post => Self::Post,
            RouteMethod::Put => Self::Put,
            RouteMethod::Patch => Self::Patch,
            RouteMethod::Delete => Self::Delete,
            RouteMethod::Head => Self::Head,
            RouteMethod::Options => Self::Options,
        }
    }
}

impl From<WitRouteKind> for RouteKind {
    fn from(kind: WitRouteKind) -> Self {
        match kind {
            WitRouteKind::Http(m) => Self::Http(m.into()),
            WitRouteKind::Websocket => Self::WebSocket,
            WitRouteKind::Sse => Self::Sse,
        }
    }
}
