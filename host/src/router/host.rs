//! Host names: the one spelling of a `Host` header, and the patterns
//! apps bind to.

use std::fmt;
use std::str::FromStr;

/// A `Host` name an app is bound to: `chat.example.com`, or
/// `*.example.org` for every name below `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    /// Exactly this name (lower case).
    Exact(String),
    /// Any name ending in this suffix, which starts with a dot.
    Below(String),
}

/// Why a host name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a host name (letters, digits, '-' and '.', optionally starting with '*.')")]
pub(crate) struct HostPatternError(pub String);

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(raw: &str) -> Result<Self, HostPatternError> {
        let lower = raw.trim_end_matches('.').to_ascii_lowercase();
        let (below, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(HostPatternError(raw.to_string()));
        }
        Ok(if below {
            Self::Below(format!(".{name}"))
        } else {
            Self::Exact(name.to_string())
        })
    }
}

impl HostPattern {
    /// Whether `host` (a normalized [`host_name`]) is one of its names.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// Whether some name is both one of its and one of `other`'s.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(a), below @ Self::Below(_)) | (below @ Self::Below(_), Self::Exact(a)) => {
                below.matches(a)
            }
            (Self::Below(a), Self::Below(b)) => a.ends_with(b.as_str()) || b.ends_with(a.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Below(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The name of a `Host` header value, normalized for matching: lower case,
/// without its port or a trailing dot; `None` if it is not a plausible
/// host (empty, or holding characters no host name or address has).
pub(crate) fn host_name(header: &str) -> Option<String> {
    let header = header.trim();
    let name = if let Some(rest) = header.strip_prefix('[') {
        // An IPv6 literal: `[::1]:7146`.
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        // Only an address: anything else in brackets could make a URL
        // built from the name point somewhere else.
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(format!("[{}]", inside.to_ascii_lowercase()));
    } else {
        match header.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => header,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    (!name.is_empty() && name.bytes().all(plain)).then_some(name)
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The host names an app answers on: the ones it claims, or (`None`) the
/// server's own names.
pub(crate) type HostBinding = Option<std::sync::Arc<[HostPattern]>>;

/// Whether two bindings share a name: server names never meet claimed
/// ones (see [`RouteTable::match_http`]).
pub(super) fn bindings_overlap(a: &HostBinding, b: &HostBinding) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.iter().any(|x| b.iter().any(|y| x.overlaps(y))),
        _ => false,
    }
}
