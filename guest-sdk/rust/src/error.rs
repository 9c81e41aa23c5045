//! The error type of the SDK.

use std::fmt;

use crate::bindings::tina4::wasm::storage::StorageError;
use crate::bindings::tina4::wasm::types::Error as HostError;

/// Why a call failed.
#[derive(Debug)]
pub enum Error {
    /// The connection is closed (or never existed); nothing was sent.
    UnknownConnection(String),
    /// The host refused: the path or connection is not this app's own.
    NotPermitted(String),
    /// The message is larger than the host allows (limit in bytes).
    TooLarge(u32),
    /// An argument the host rejected, such as an invalid close code.
    Invalid(String),
    /// A value could not be turned into JSON, or JSON into a value.
    Json(serde_json::Error),
    /// The HTTP request is malformed (answered with 400).
    BadRequest(String),
    /// A storage quota would be passed: which, and its limit.
    Quota(String),
    /// The store failed; the call may be tried again.
    Unavailable(String),
    /// An outbound HTTP request got no answer, and why.
    Fetch(crate::fetch::FetchError),
}

impl Error {
    /// A 400 answer with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The HTTP status an unhandled error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            _ => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownConnection(id) => write!(f, "no open connection {id}"),
            Self::NotPermitted(why) => write!(f, "not permitted: {why}"),
            Self::TooLarge(limit) => write!(f, "message larger than the {limit}-byte limit"),
            Self::Invalid(why) => write!(f, "invalid argument: {why}"),
            Self::Json(err) => write!(f, "JSON: {err}"),
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::Quota(why) => write!(f, "over quota: {why}"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
            Self::Fetch(why) => write!(f, "request {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(err) => Some(err),
            _ => None,
        }
    }
}

impl From<HostError> for Error {
    fn from(err: HostError) -> Self {
        match err {
            HostError::UnknownConnection(id) => Self::UnknownConnection(id),
            HostError::NotPermitted(why) => Self::NotPermitted(why),
            HostError::TooLarge(limit) => Self::TooLarge(limit),
            HostError::Invalid(why) => Self::Invalid(why),
        }
    }
}

impl From<StorageError> for Error {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotPermitted => {
                Self::NotPermitted("this app has no storage grant".to_string())
            }
            StorageError::Quota(why) => Self::Quota(why),
            StorageError::Invalid(why) => Self::Invalid(why),
            StorageError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(err)
    }
}
