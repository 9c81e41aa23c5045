//! [`Request`], [`Response`] and [`IntoResponse`]: what an HTTP handler works with.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::tina4::wasm::types::{HttpRequest, HttpResponse, Method as WitMethod};
use crate::connection::Params;
use crate::error::Error;

/// HTTP request methods.
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

impl From<Method> for WitMethod {
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

impl From<WitMethod> for Method {
    fn from(m: WitMethod) -> Self {
        match m {
            WitMethod::Get => Self::Get,
            WitMethod::Post => Self::Post,
            WitMethod::Put => Self::Put,
            WitMethod::Patch => Self::Patch,
            WitMethod::Delete => Self::Delete,
            WitMethod::Head => Self::Head,
            WitMethod::Options => Self::Options,
        }
    }
}

/// An HTTP request routed to this app.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request method.
    method: Method,
    /// The decoded path.
    path: String,
    /// Path parameters bound by the route.
    params: Params,
    /// Query string pairs.
    query: Params,
    /// Headers, names lower-case.
    headers: Params,
    /// The raw body.
    body: Vec<u8>,
    /// On a secured route: the verified token's claims.
    claims: Option<String>,
}

impl From<HttpRequest> for Request {
    fn from(req: HttpRequest) -> Self {
        Self {
            method: req.method.into(),
            path: req.path,
            params: req.params.into(),
            query: req.query.into(),
            headers: req.headers.into(),
            body: req.body,
            claims: req.claims,
        }
    }
}

impl Request {
    /// The request method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The decoded path, e.g. `/api/orders/7/ship`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Path parameters: `req.params()["id"]`.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// One path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// One query string value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name)
    }

    /// One header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// On a secured route: the claims of the client's verified token.
    pub fn claims(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.claims.as_deref()?).ok()
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text, or a 400 error.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|_| Error::bad_request("body is not UTF-8 text"))
    }

    /// The body parsed as JSON into `T`, or a 400 error saying why not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::bad_request(format!("body is not the expected JSON: {err}")))
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn with_body(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200)
            .header("content-type", content_type)
            .body(body)
    }

    /// 200 with `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_body("application/json", body),
            Err(err) => Error::from(err).into_response(),
        }
    }

    /// 200 with an HTML page.
    pub fn html(page: impl Into<String>) -> Self {
        Self::with_body("text/html; charset=utf-8", page.into())
    }

    /// 200 with the HTML page the host renders from template `name` in
    /// this app's templates folder, with `context` (any value that
    /// serializes to a JSON object) as its variables. See [`render`].
    pub fn render<T: Serialize + ?Sized>(name: &str, context: &T) -> Result<Self, Error> {
        Ok(Self::html(render(name, context)?))
    }

    /// 200 with plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::with_body("text/plain; charset=utf-8", text.into())
    }

    /// 404 with a JSON error.
    pub fn not_found() -> Self {
        Self::json(&serde_json::json!({ "error": "not found" })).status(404)
    }

    /// The same response with another status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same response with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same response with another body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// What an HTTP handler may return.
pub trait IntoResponse {
    /// The response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

/// A JSON error body with the error's status: 400 for bad requests, else 500.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Response::json(&serde_json::json!({ "error": self.to_string() })).status(self.status())
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl From<Response> for HttpResponse {
    fn from(r: Response) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// Renders template `name` from this app's templates folder
/// (`<apps>/<app>/templates/`) on the host, with `context` as its variables:
/// Jinja syntax (`extends`, `block`, `include`, filters), HTML-escaped in
/// `.html` templates. A missing template or a syntax error is
/// [`Error::Invalid`], naming the template and line.
pub fn render<T: Serialize + ?Sized>(name: &str, context: &T) -> Result<String, Error> {
    let context = serde_json::to_string(context)?;
    crate::bindings::tina4::wasm::templates::render(name, &context).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_set_status_and_content_type() {
        let r = Response::json(&serde_json::json!({"a": 1}));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(r.body, br#"{"a":1}"#);
        assert_eq!(Response::html("<p>").status(201).status, 201);
        assert_eq!(Response::not_found().status, 404);
    }

    #[test]
    fn errors_answer_with_their_status() {
        let bad: Result<Response, Error> = Err(Error::bad_request("no"));
        assert_eq!(bad.into_response().status, 400);
        assert_eq!(Error::Invalid("x".into()).into_response().status, 500);
    }

    #[test]
    fn json_bodies_parse_or_are_bad_requests() {
        let req = |body: &[u8]| Request {
            method: Method::Post,
            path: "/".into(),
            params: Params::default(),
            query: Params::default(),
            headers: Params::default(),
            body: body.to_vec(),
            claims: None,
        };
        let v: serde_json::Value = req(br#"{"user_id": 7}"#).json().unwrap();
        assert_eq!(v["user_id"], 7);
        let err = req(b"nope").json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
