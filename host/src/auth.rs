//! Authentication of secured routes: an HS256 JWT signed with the server's
//! secret (`TINA4_SECRET`), checked before the app is involved.
//!
//! The token may come as `?token=…` (what Tina4's chapter suggests for
//! browsers), `Authorization: Bearer …`, or, on a WebSocket upgrade, as the
//! subprotocol pair `Sec-WebSocket-Protocol: bearer, …` (which browsers can
//! set); the last form is answered with the `bearer` subprotocol, as the
//! WebSocket handshake requires.

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Query,
    AuthorizationHeader,
    /// `Sec-WebSocket-Protocol: bearer, <jwt>`; the answer must select `bearer`.
    Subprotocol,
}

/// Why a request was refused (answered with 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("secured routes need TINA4_SECRET to be set")]
    NoSecret,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies tokens for secured routes.
pub struct Authenticator {
    /// The HS256 key, if a secret is configured.
    key: Option<DecodingKey>,
    /// HS256 only; `exp` required and checked.
    validation: Validation,
}

impl Authenticator {
    /// An authenticator for `secret` (none: every secured request is refused).
    pub fn new(secret: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        Self {
            key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            validation,
        }
    }

    /// Finds and verifies the token of a request; returns its claims as JSON
    /// and where it was found.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
    ) -> Result<(String, TokenSource), AuthError> {
        let (token, source) = find_token(headers, query).ok_or(AuthError::Missing)?;
        let key = self.key.as_ref().ok_or(AuthError::NoSecret)?;
        let data = decode::<serde_json::Value>(&token, key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok((data.claims.to_string(), source))
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, exp_from_now: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = serde_json::json!({"sub": "alice", "exp": now + exp_from_now});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
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

    #[test]
    fn tokens_are_found_in_each_place_and_verified() {
        let auth = Authenticator::new(Some("s3cret"));
        let good = token("s3cret", 60);
        let query = vec![("token".to_string(), good.clone())];
        let (claims, source) = auth.verify(&HeaderMap::new(), &query).unwrap();
        assert_eq!(source, TokenSource::Query);
        assert!(claims.contains("\"sub\":\"alice\""));
        let bearer = format!("Bearer {good}");
        let h = headers(&[("authorization", &bearer)]);
        assert_eq!(
            auth.verify(&h, &[]).unwrap().1,
            TokenSource::AuthorizationHeader
        );
        let offered = format!("bearer, {good}");
        let h = headers(&[("sec-websocket-protocol", &offered)]);
        assert_eq!(auth.verify(&h, &[]).unwrap().1, TokenSource::Subprotocol);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let auth = Authenticator::new(Some("s3cret"));
        let q = |t: String| vec![("token".to_string(), t)];
        assert_eq!(auth.verify(&HeaderMap::new(), &[]), Err(AuthError::Missing));
        assert!(matches!(
            auth.verify(&HeaderMap::new(), &q(token("other", 60))),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.verify(&HeaderMap::new(), &q(token("s3cret", -10))),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.verify(&HeaderMap::new(), &q("garbage".into())),
            Err(AuthError::Invalid(_))
        ));
        let none = Authenticator::new(None);
        assert_eq!(
            none.verify(&HeaderMap::new(), &q(token("s3cret", 60))),
            Err(AuthError::NoSecret)
        );
    }
}
