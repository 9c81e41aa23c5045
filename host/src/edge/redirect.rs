//! The plain-HTTP port of a server that serves HTTPS: every request is
//! sent to the same host and path over HTTPS (308, which keeps the method
//! and body), and nothing else is served there.

use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::response::{Body, full, plain};
use crate::router::host_name;

/// The answer to `request` on the plain port: 308 to the same host name
/// and path on `https_port`; 400 without a usable Host.
pub(crate) fn to_https<B>(request: &Request<B>, https_port: u16) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .and_then(host_name);
    let Some(host) = host else {
        return plain(StatusCode::BAD_REQUEST, "missing or malformed Host header");
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{port}{path}")) else {
        return plain(StatusCode::BAD_REQUEST, "bad request target");
    };
    let mut response = Response::new(full("redirecting to https\n"));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, target: &str, port: u16) -> (u16, Option<String>) {
        let mut request = Request::get(target);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let response = to_https(&request.body(()).unwrap(), port);
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), location)
    }

    #[test]
    fn the_same_host_and_path_over_https() {
        assert_eq!(
            location(Some("Example.COM:80"), "/room/a?b=1", 443),
            (308, Some("https://example.com/room/a?b=1".into()))
        );
        assert_eq!(
            location(Some("localhost:8080"), "/", 8443),
            (308, Some("https://localhost:8443/".into()))
        );
        assert_eq!(
            location(Some("[::1]:8080"), "/x", 8443),
            (308, Some("https://[::1]:8443/x".into()))
        );
    }

    #[test]
    fn no_usable_host_is_a_400() {
        assert_eq!(location(None, "/", 443).0, 400);
        assert_eq!(location(Some("evil.test/path"), "/", 443).0, 400);
        assert_eq!(location(Some("a b"), "/", 443).0, 400);
        assert_eq!(location(Some("[@evil.test#]"), "/", 443).0, 400);
    }
}
