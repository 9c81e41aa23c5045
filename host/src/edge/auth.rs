//! Authentication of secured routes: an HS256 JWT signed with the server's
//! secret (`TINA4_SECRET`), checked before the app is involved.
//!
//! The token may come as `?token=…` (what Tina4's chapter suggests for
//! browsers), `Authorization: Bearer …`, or, on a WebSocket upgrade, as the
//! subprotocol pair `Sec-WebSocket-Protocol: bearer, …` (which browsers can
//! set); the last form is answered with the `bearer` subprotocol, as the
//! WebSocket handshake requires.
//!
//! A token opens the secured routes of one app only: its `aud` claim must
//! name that app (or the audience its `<app>.toml` sets), so a token minted
//! for one tenant is worthless at another. `exp` is required, `nbf` is
//! honoured, and a secured WebSocket is closed when its token expires. The
//! secret must be at least [`MIN_SECRET_BYTES`] long: HS256 keys shorter
//! than the hash are guessable offline from any one token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{self, AUTHORIZATION, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{HeaderMap, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

use super::response::{Body, plain};
use crate::config::MIN_SECRET_BYTES;
use crate::runtime::RouteTarget;
use crate::telemetry;

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Query,
    AuthorizationHeader,
    /// `Sec-WebSocket-Protocol: bearer, <jwt>`; the answer must select `bearer`.
    Subprotocol,
}

/// A configuration the server refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SecretError {
    #[error("TINA4_SECRET is empty; unset it, or set at least {MIN_SECRET_BYTES} bytes")]
    Empty,
    #[error("TINA4_SECRET is {0} bytes; it must be at least {MIN_SECRET_BYTES}")]
    TooShort(usize),
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Its claims, as JSON, for the app.
    pub(crate) claims: String,
    /// Where it was found.
    pub(crate) source: TokenSource,
    /// When it stops being valid (its `exp`), as time left from now.
    pub(crate) expires_in: Duration,
}

/// Why a request was refused (answered with 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AuthError {
    #[error("no token")]
    Missing,
    #[error("secured routes need TINA4_SECRET to be set")]
    NoSecret,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies tokens for secured routes.
pub(crate) struct Authenticator {
    /// The HS256 key, if a secret is configured.
    key: Option<DecodingKey>,
}

impl Authenticator {
    /// An authenticator for `secret` (none: every secured request is
    /// refused); a secret too short to be safe is a configuration error.
    pub(crate) fn new(secret: Option<&str>) -> Result<Self, SecretError> {
        match secret.map(str::len) {
            Some(0) => return Err(SecretError::Empty),
            Some(n) if n < MIN_SECRET_BYTES => return Err(SecretError::TooShort(n)),
            _ => {}
        }
        Ok(Self {
            key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
        })
    }

    /// Finds and verifies the token of a request to a secured route of an
    /// app whose tokens name `audience`.
    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
        audience: &str,
    ) -> Result<Verified, AuthError> {
        let (token, source) = find_token(headers, query).ok_or(AuthError::Missing)?;
        let key = self.key.as_ref().ok_or(AuthError::NoSecret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        let data = decode::<serde_json::Value>(&token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let exp = data.claims.get("exp").and_then(serde_json::Value::as_u64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let expires_in = exp.map_or(Duration::ZERO, |exp| {
            Duration::from_secs(exp).saturating_sub(now)
        });
        Ok(Verified {
            claims: data.claims.to_string(),
            source,
            expires_in,
        })
    }
}

fn find_token(headers: &HeaderMap, query: &[(String, String)]) -> Option<(String, TokenSource)> {
    if let Some((_, token)) = query.iter().find(|(name, _)| name == "token") {
        return Some((token.clone(), TokenSource::Query));
    }
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    {
        return Some((token.trim().to_string(), TokenSource::AuthorizationHeader));
    }
    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let bearer = offered
        .iter()
        .position(|p| p.eq_ignore_ascii_case("bearer"))?;
    let token = offered.get(bearer + 1)?;
    Some((token.to_string(), TokenSource::Subprotocol))
}

/// For a secured route: the verified token, which must be for its app.
pub(crate) fn authenticate(
    auth: &Authenticator,
    target: &RouteTarget,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Option<Verified>, AuthError> {
    if !target.secured {
        return Ok(None);
    }
    auth.verify(headers, query, &target.app.audience())
        .map(Some)
        .inspect_err(|err| {
            if *err == AuthError::NoSecret {
                tracing::warn!("refused a request to a secured route: {err}");
            }
        })
}

/// The 401 answer to a request that failed authentication.
pub(crate) fn unauthorized(err: &AuthError) -> Response<Body> {
    telemetry::refused("unauthorized");
    let mut response = plain(StatusCode::UNAUTHORIZED, &format!("unauthorized: {err}"));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "a test secret of at least 32 bytes!";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn signed(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn token(secret: &str, exp_from_now: i64) -> String {
        signed(
            secret,
            serde_json::json!({"sub": "alice", "aud": "chat", "exp": now() + exp_from_now}),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some(SECRET)).unwrap()
    }

    #[test]
    fn tokens_are_found_in_each_place_and_verified() {
        let auth = auth();
        let good = token(SECRET, 60);
        let query = vec![("token".to_string(), good.clone())];
        let verified = auth.verify(&HeaderMap::new(), &query, "chat").unwrap();
        assert_eq!(verified.source, TokenSource::Query);
        assert!(verified.claims.contains("\"sub\":\"alice\""));
        assert!((50..=60).contains(&verified.expires_in.as_secs()));
        let bearer = format!("Bearer {good}");
        let h = headers(&[("authorization", &bearer)]);
        assert_eq!(
            auth.verify(&h, &[], "chat").unwrap().source,
            TokenSource::AuthorizationHeader
        );
        let offered = format!("bearer, {good}");
        let h = headers(&[("sec-websocket-protocol", &offered)]);
        assert_eq!(
            auth.verify(&h, &[], "chat").unwrap().source,
            TokenSource::Subprotocol
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let auth = auth();
        let q = |t: String| vec![("token".to_string(), t)];
        let verify = |t: String| auth.verify(&HeaderMap::new(), &q(t), "chat");
        assert_eq!(
            auth.verify(&HeaderMap::new(), &[], "chat"),
            Err(AuthError::Missing)
        );
        let other_key = "another secret of at least 32 bytes";
        for refused in [
            token(other_key, 60),
            token(SECRET, -10),
            "garbage".into(),
            // For another app, or for none.
            signed(
                SECRET,
                serde_json::json!({"aud": "bank", "exp": now() + 60}),
            ),
            signed(SECRET, serde_json::json!({"exp": now() + 60})),
            // Not valid yet.
            signed(
                SECRET,
                serde_json::json!({"aud": "chat", "nbf": now() + 60, "exp": now() + 120}),
            ),
            // No expiry.
            signed(SECRET, serde_json::json!({"aud": "chat"})),
        ] {
            assert!(matches!(verify(refused), Err(AuthError::Invalid(_))));
        }
        let none = Authenticator::new(None).unwrap();
        assert_eq!(
            none.verify(&HeaderMap::new(), &q(token(SECRET, 60)), "chat"),
            Err(AuthError::NoSecret)
        );
    }

    #[test]
    fn short_secrets_are_a_configuration_error() {
        assert_eq!(Authenticator::new(Some("")).err(), Some(SecretError::Empty));
        assert_eq!(
            Authenticator::new(Some("s3cret")).err(),
            Some(SecretError::TooShort(6))
        );
        assert!(Authenticator::new(Some(&"x".repeat(MIN_SECRET_BYTES))).is_ok());
    }
}
