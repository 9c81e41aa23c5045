//! HTTP requests to other services, through the standard
//! `wasi:http/outgoing-handler`.
//!
//! ```ignore
//! let order: Order = fetch::get("https://shop.example.com/orders/7")?.json()?;
//! let reply = fetch::Request::post("https://hooks.example.com/notify")
//!     .header("content-type", "application/json")
//!     .body(r#"{"order":7}"#)
//!     .send()?;
//! ```
//!
//! The host sends a request only where the app's `<app>.toml` lists its
//! destination in `allowed_outbound_hosts`; everything else is refused
//! with a [`FetchError`] saying why. A request waits at most until the
//! app's own timeout, and never past the deadline of the event that sent
//! it. Any crate that speaks `wasi:http/outgoing-handler` reaches the
//! same host function, under the same rules.

use std::fmt;

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::error::Error;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The destination is not in the app's `allowed_outbound_hosts` (or
    /// the app has no outbound grant).
    Denied,
    /// The destination is an internal address (this machine, a private
    /// network) that no entry names.
    Prohibited,
    /// No complete answer within the request's time.
    Timeout,
    /// The response body is larger than the app may receive (the limit,
    /// in bytes, when the host said).
    TooLarge(Option<u64>),
    /// The app has as many requests in flight as it may.
    Busy,
    /// The URL cannot be sent (it needs `http://` or `https://` and a host).
    InvalidUrl(String),
    /// The destination could not be reached, or did not answer in HTTP.
    Failed(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied => write!(f, "denied: not in allowed_outbound_hosts"),
            Self::Prohibited => write!(f, "prohibited: an internal address no entry names"),
            Self::Timeout => write!(f, "timed out"),
            Self::TooLarge(Some(limit)) => write!(f, "response larger than {limit} bytes"),
            Self::TooLarge(None) => write!(f, "response too large"),
            Self::Busy => write!(f, "too many requests in flight"),
            Self::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl From<ErrorCode> for FetchError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => Self::Denied,
            ErrorCode::DestinationIpProhibited => Self::Prohibited,
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => Self::Timeout,
            ErrorCode::HttpResponseBodySize(limit) => Self::TooLarge(limit),
            ErrorCode::ConnectionLimitReached => Self::Busy,
            ErrorCode::HttpRequestUriInvalid => Self::InvalidUrl("refused by the host".into()),
            other => Self::Failed(format!("{other:?}")),
        }
    }
}

/// An answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body read as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// GET, POST, ... (upper case).
    method: String,
    /// The absolute URL.
    url: String,
    /// Headers to send.
    headers: Vec<(String, String)>,
    /// The body (empty: none).
    body: Vec<u8>,
}

/// `GET url`, sent.
pub fn get(url: &str) -> Result<Reply, Error> {
    Request::get(url).send()
}

impl Request {
    /// A request with `method` (any case) to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sends it and reads the whole answer.
    pub fn send(self) -> Result<Reply, Error> {
        self.start()
            .and_then(InFlight::finish)
            .map_err(Error::Fetch)
    }

    /// Sends it, the answer to be read later: requests started together
    /// wait on the network together.
    fn start(self) -> Result<InFlight, FetchError> {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| FetchError::InvalidUrl(format!("{:?} has no scheme", self.url)))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(FetchError::InvalidUrl(format!("scheme {other:?}"))),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        // The length is known: said, so servers need not take chunks.
        if !self.body.is_empty() && !headers.iter().any(|(n, _)| n == "content-length") {
            headers.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let fields = Fields::from_list(&headers)
            .map_err(|err| FetchError::InvalidUrl(format!("headers: {err:?}")))?;
        let request = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => WasiMethod::Get,
            "HEAD" => WasiMethod::Head,
            "POST" => WasiMethod::Post,
            "PUT" => WasiMethod::Put,
            "DELETE" => WasiMethod::Delete,
            "PATCH" => WasiMethod::Patch,
            "OPTIONS" => WasiMethod::Options,
            other => WasiMethod::Other(other.to_string()),
        };
        let invalid = |what: &str| FetchError::InvalidUrl(format!("bad {what}"));
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| invalid("host"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| invalid("path"))?;
        let outgoing = request.body().map_err(|()| invalid("body"))?;
        // Sent first, so the body streams to the host as it is written.
        let pending = outgoing_handler::handle(request, None)?;
        if let Ok(stream) = outgoing.write() {
            for chunk in self.body.chunks(4096) {
                // A refused request stops reading: its error comes below.
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
        }
        let _ = OutgoingBody::finish(outgoing, None);
        Ok(InFlight(pending))
    }
}

/// Sends every request at once (up to the app's `max_concurrent` in
/// flight; the rest get [`FetchError::Busy`]) and reads each answer, in
/// the order given.
pub fn send_all(requests: Vec<Request>) -> Vec<Result<Reply, Error>> {
    let started: Vec<_> = requests.into_iter().map(Request::start).collect();
    started
        .into_iter()
        .map(|flight| flight.and_then(InFlight::finish).map_err(Error::Fetch))
        .collect()
}

/// A request sent, its answer not yet read.
struct InFlight(FutureIncomingResponse);

impl InFlight {
    /// Waits for the answer and reads it whole.
    fn finish(self) -> Result<Reply, FetchError> {
        let pending = self.0;
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or_else(|| FetchError::Failed("no answer".into()))?
            .map_err(|()| FetchError::Failed("answer taken twice".into()))??;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| FetchError::Failed("body taken twice".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| FetchError::Failed("body taken twice".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(err)) => {
                        return Err(crate::bindings::wasi::http::types::http_error_code(&err)
                            .map(FetchError::from)
                            .unwrap_or_else(|| FetchError::Failed(err.to_debug_string())));
                    }
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
