//! The router's tests: patterns, paths, hosts and the table together.

use super::path::PathError;
use super::pattern::PatternError;
use super::table::RouteConflict;
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

fn entry(kind: RouteKind, path: &str, hosts: Option<&[&str]>, target: &str) -> RouteEntry<String> {
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
    let HttpMatch::Found(m) = t.match_http(Method::Post, HOST, &path("/api/orders/42/ship")) else {
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
    for bad in [
        "",
        "a b",
        "a:b:c",
        "a/b",
        "[::1]x",
        "a:99999999",
        "[@evil.test#]",
        "[evil.test]:80",
    ] {
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
