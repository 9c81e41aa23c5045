//! The hosts an app may send requests to: `allowed_outbound_hosts` in its
//! `<app>.toml`, each entry within the operator's `--outbound-hosts`.
//!
//! An entry is `scheme://host[:port]`: the scheme `http`, `https` or `*`;
//! the host a name, `*.name` (any name below it), `*` (any host), or an
//! address (`10.0.0.7`, `[fd00::7]`); the port a number or `*`, the
//! scheme's own when left out. Nothing else (no path, no user): an entry
//! that says more than it can mean is refused rather than half-read.
//!
//! An address of this machine or a private network is reached only
//! through an entry that names that address: a name, or `*`, never
//! reaches one (see [`super::address`]), so a tenant cannot point a name
//! it controls at the operator's internal services.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::address::is_internal;

/// Which schemes an entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemeRule {
    /// `http` only.
    Http,
    /// `https` only.
    Https,
    /// Either.
    Any,
}

/// Which hosts an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// Every host name, and every public address.
    Any,
    /// Names strictly below this one (`*.example.com`: `a.example.com`).
    Below(String),
    /// This name (lower case, no trailing dot).
    Name(String),
    /// This address, whatever kind it is.
    Address(IpAddr),
}

/// Which ports an entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// The scheme's own (80 for http, 443 for https).
    Default,
    /// This one.
    Exactly(u16),
    /// Any.
    Any,
}

/// One allowed destination pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// The schemes it allows.
    scheme: SchemeRule,
    /// The hosts it allows.
    host: HostRule,
    /// The ports it allows.
    port: PortRule,
    /// As written, for messages.
    text: String,
}

/// Where a request goes, as the guest addressed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    /// True for `https`.
    pub(crate) tls: bool,
    /// The host, lower case, without brackets or a trailing dot.
    pub(crate) host: String,
    /// The port, the scheme's own if the request named none.
    pub(crate) port: u16,
}

impl Destination {
    /// The host as an address, if it is one.
    pub(crate) fn address(&self) -> Option<IpAddr> {
        self.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "allowed outbound host {entry:?}: {why} (expected scheme://host[:port], as https://api.example.com)"
)]
pub(crate) struct BadPattern {
    /// The entry as written.
    entry: String,
    /// What is wrong with it.
    why: &'static str,
}

impl FromStr for HostPattern {
    type Err = BadPattern;

    fn from_str(text: &str) -> Result<Self, BadPattern> {
        let bad = |why| BadPattern {
            entry: text.to_string(),
            why,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => SchemeRule::Http,
            "https" => SchemeRule::Https,
            "*" => SchemeRule::Any,
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(bad("only a scheme, a host and a port may be given"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| bad("the port is not a number or *"))?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| bad("an unclosed [address]"))?;
            let ip = inner
                .parse::<IpAddr>()
                .map_err(|_| bad("not an address inside [ ]"))?;
            HostRule::Address(ip.to_canonical())
        } else if host == "*" {
            HostRule::Any
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostRule::Address(ip.to_canonical())
        } else {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let (below, name) = match host.strip_prefix("*.") {
                Some(name) => (true, name.to_string()),
                None => (false, host),
            };
            if !is_host_name(&name) {
                return Err(bad("not a host name"));
            }
            if below {
                HostRule::Below(name)
            } else {
                HostRule::Name(name)
            }
        };
        Ok(Self {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }
}

/// `host[:port]` split, with `[v6]` kept whole; `None` for a bad port or
/// an unbracketed IPv6 address.
fn split_port(rest: &str) -> Option<(&str, PortRule)> {
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((_, "")) => (rest, None),
            Some((address, port)) => (&rest[..address.len() + 2], Some(port.strip_prefix(':')?)),
            None => (rest, None),
        },
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let port = match port {
        None => PortRule::Default,
        Some("*") => PortRule::Any,
        Some(digits) => PortRule::Exactly(digits.parse().ok().filter(|p| *p > 0)?),
    };
    Some((host, port))
}

/// Letters, digits, hyphens and dots, in labels of at most 63.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl HostPattern {
    /// Whether a request to `to` is allowed by this entry.
    pub(crate) fn allows(&self, to: &Destination) -> bool {
        let scheme = match self.scheme {
            SchemeRule::Http => !to.tls,
            SchemeRule::Https => to.tls,
            SchemeRule::Any => true,
        };
        let port = match self.port {
            PortRule::Default => to.port == if to.tls { 443 } else { 80 },
            PortRule::Exactly(port) => to.port == port,
            PortRule::Any => true,
        };
        scheme && port && self.allows_host(to)
    }

    fn allows_host(&self, to: &Destination) -> bool {
        match (&self.host, to.address()) {
            (HostRule::Any, Some(ip)) => !is_internal(ip),
            (HostRule::Any, None) => true,
            (HostRule::Address(allowed), Some(ip)) => *allowed == ip,
            (HostRule::Name(name), None) => *name == to.host,
            (HostRule::Below(name), None) => to
                .host
                .strip_suffix(name.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            _ => false,
        }
    }

    /// Whether this entry names `ip` itself: the only way an internal
    /// address is reached.
    pub(crate) fn names_address(&self, ip: IpAddr) -> bool {
        self.host == HostRule::Address(ip.to_canonical())
    }

    /// Whether every request this entry allows, `ceiling` allows too.
    pub(crate) fn within(&self, ceiling: &HostPattern) -> bool {
        let scheme = match (ceiling.scheme, self.scheme) {
            (SchemeRule::Any, _) => true,
            (c, s) => c == s,
        };
        let port = match (ceiling.port, self.port) {
            (PortRule::Any, _) => true,
            (PortRule::Default, PortRule::Default) => true,
            (PortRule::Exactly(c), PortRule::Exactly(s)) => c == s,
            // `https://x` with its own port is within `*://x:443` only for
            // https; keep the rule simple: spell the port alike.
            _ => false,
        };
        let host = match (&ceiling.host, &self.host) {
            (HostRule::Any, HostRule::Address(ip)) => !is_internal(*ip),
            (HostRule::Any, _) => true,
            (HostRule::Below(c), HostRule::Below(s) | HostRule::Name(s)) => {
                s == c && matches!(self.host, HostRule::Below(_))
                    || s.strip_suffix(c.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
            (c, s) => c == s,
        };
        scheme && port && host
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A list of entries, read from flags or an app's file.
pub(crate) fn parse_all<S: AsRef<str>>(entries: &[S]) -> Result<Vec<HostPattern>, BadPattern> {
    entries.iter().map(|e| e.as_ref().trim().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(url: &str) -> Destination {
        let (scheme, rest) = url.split_once("://").unwrap();
        let tls = scheme == "https";
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap()),
            _ => (rest, if tls { 443 } else { 80 }),
        };
        Destination {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        }
    }

    fn p(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn an_entry_allows_its_scheme_host_and_port_only() {
        let api = p("https://api.example.com");
        assert!(api.allows(&to("https://api.example.com")));
        assert!(!api.allows(&to("http://api.example.com")));
        assert!(!api.allows(&to("https://api.example.com:8443")));
        assert!(!api.allows(&to("https://evil.com")));
        assert!(!api.allows(&to("https://api.example.com.evil.com")));
        let any_port = p("http://127.0.0.1:*");
        assert!(any_port.allows(&to("http://127.0.0.1:9000")));
        assert!(!any_port.allows(&to("http://127.0.0.2:9000")));
        assert!(!any_port.allows(&to("http://localhost:9000")));
    }

    #[test]
    fn a_wildcard_reaches_names_below_and_public_addresses_never_internal_ones() {
        let below = p("https://*.example.com");
        assert!(below.allows(&to("https://a.example.com")));
        assert!(below.allows(&to("https://a.b.example.com")));
        assert!(!below.allows(&to("https://example.com")));
        assert!(!below.allows(&to("https://badexample.com")));
        let any = p("*://*:*");
        assert!(any.allows(&to("http://example.org:81")));
        assert!(any.allows(&to("https://93.184.216.34")));
        for internal in [
            "http://127.0.0.1",
            "http://10.1.2.3",
            "http://[::1]",
            "http://169.254.169.254",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(!any.allows(&to(internal)), "{internal}");
        }
        let v6 = p("http://[fd00::7]:8080");
        assert!(v6.allows(&to("http://[fd00::7]:8080")));
        assert!(v6.names_address("fd00::7".parse().unwrap()));
    }

    #[test]
    fn entries_that_say_more_or_less_than_they_can_mean_are_refused() {
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:x",
            "https://exa mple.com",
            "https://[::1",
            "https://",
        ] {
            let err = bad.parse::<HostPattern>().unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(p("HTTPS://Api.Example.COM./").allows(&to("https://api.example.com")));
    }

    #[test]
    fn an_app_entry_is_within_a_ceiling_only_if_the_ceiling_allows_all_it_does() {
        let any = p("*://*:*");
        assert!(p("https://api.example.com").within(&any));
        assert!(p("http://*.example.com:*").within(&any));
        assert!(p("http://93.184.216.34").within(&any));
        assert!(!p("http://127.0.0.1:6379").within(&any));
        assert!(!p("http://[::1]").within(&any));
        let local = p("http://127.0.0.1:*");
        assert!(p("http://127.0.0.1:6379").within(&local));
        assert!(!p("https://127.0.0.1:6379").within(&local));
        let corp = p("https://*.corp.example");
        assert!(p("https://api.corp.example").within(&corp));
        assert!(p("https://*.eu.corp.example").within(&corp));
        assert!(p("https://*.corp.example").within(&corp));
        assert!(!p("https://corp.example").within(&corp));
        assert!(!p("https://*").within(&corp));
        assert!(!p("https://api.corp.example:*").within(&corp));
    }
}
