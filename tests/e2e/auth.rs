//! Secured routes: a valid HS256 token (query, Authorization header, or the
//! `bearer` subprotocol browsers use) for the route's own app gets through
//! with its claims; a missing, forged, expired, not-yet-valid one, or one
//! for another app, gets 401 before the upgrade. A secured WebSocket closes
//! (1008) when its token expires, and a short secret stops the server from
//! starting.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Client, Server, ServerOptions, http};

pub(crate) const SECRET: &str = "correct horse battery staple, and then some";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token for app `app`'s secured routes, expiring in `expires_in` seconds.
pub(crate) fn token(app: &str, secret: &str, expires_in: i64) -> String {
    signed(
        secret,
        json!({"sub": "alice", "role": "admin", "aud": app, "exp": now() + expires_in}),
    )
}

fn signed(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn server(secret: Option<&str>) -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["probe"],
        env: secret
            .map(|s| vec![("TINA4_SECRET".to_string(), s.to_string())])
            .unwrap_or_default(),
        ..Default::default()
    })
    .await
}

/// Upgrades with extra headers; the HTTP status if refused.
async fn upgrade(
    server: &Server,
    path: &str,
    headers: &[(&'static str, String)],
) -> Result<(Client, Option<String>), u16> {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            Ok((Client::from_stream(ws), protocol))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(other) => panic!("{other}"),
    }
}

async fn claims_of(mut client: Client) -> Value {
    client.send("claims").await;
    client.recv_json().await
}

#[tokio::test]
async fn a_valid_token_gets_through_each_way_with_its_claims() {
    let server = server(Some(SECRET)).await;
    let good = token("probe", SECRET, 60);

    let (client, _) = upgrade(&server, &format!("/ws/secure/a?token={good}"), &[])
        .await
        .unwrap();
    assert_eq!(claims_of(client).await["sub"], "alice");

    let bearer = [("authorization", format!("Bearer {good}"))];
    let (client, _) = upgrade(&server, "/ws/secure/a", &bearer).await.unwrap();
    assert_eq!(claims_of(client).await["role"], "admin");

    let offered = [("sec-websocket-protocol", format!("bearer, {good}"))];
    let (client, protocol) = upgrade(&server, "/ws/secure/a", &offered).await.unwrap();
    assert_eq!(protocol.as_deref(), Some("bearer"));
    assert_eq!(claims_of(client).await["sub"], "alice");

    // Unsecured routes carry no claims, even with a token.
    let (client, _) = upgrade(&server, &format!("/ws/probe/a?token={good}"), &[])
        .await
        .unwrap();
    assert_eq!(claims_of(client).await, Value::Null);
}

#[tokio::test]
async fn missing_forged_or_expired_tokens_get_401_before_the_upgrade() {
    let server = server(Some(SECRET)).await;
    let refusals = [
        String::new(),
        format!(
            "?token={}",
            token("probe", "not the secret, though just as long", 60)
        ),
        format!("?token={}", token("probe", SECRET, -60)),
        "?token=garbage".to_string(),
        // For another app, for none, or not valid yet.
        format!("?token={}", token("chat", SECRET, 60)),
        format!(
            "?token={}",
            signed(SECRET, json!({"sub": "x", "exp": now() + 60}))
        ),
        format!(
            "?token={}",
            signed(
                SECRET,
                json!({"aud": "probe", "nbf": now() + 60, "exp": now() + 120})
            )
        ),
    ];
    for query in refusals {
        let path = format!("/ws/secure/a{query}");
        assert_eq!(
            upgrade(&server, &path, &[]).await.err(),
            Some(401),
            "{query}"
        );
    }
}

#[tokio::test]
async fn secured_http_routes_check_the_bearer_token_too() {
    let server = server(Some(SECRET)).await;
    let url = server.url("/probe/secure");
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = http()
        .get(&url)
        .bearer_auth(token("probe", SECRET, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], "alice");
}

#[tokio::test]
async fn without_a_secret_secured_routes_refuse_everyone() {
    let server = server(None).await;
    let path = format!("/ws/secure/a?token={}", token("probe", SECRET, 60));
    assert_eq!(upgrade(&server, &path, &[]).await.err(), Some(401));
    server.wait_for_log(&["TINA4_SECRET"]).await;
}

#[tokio::test]
async fn a_secured_websocket_closes_when_its_token_expires() {
    let server = server(Some(SECRET)).await;
    let path = format!("/ws/secure/a?token={}", token("probe", SECRET, 4));
    let (mut client, _) = upgrade(&server, &path, &[]).await.unwrap();
    assert_eq!(claims_of_ref(&mut client).await["sub"], "alice");
    let (code, reason) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
}

async fn claims_of_ref(client: &mut Client) -> Value {
    client.send("claims").await;
    client.recv_json().await
}

#[tokio::test]
async fn an_empty_or_short_secret_is_a_configuration_error() {
    for secret in ["", "short"] {
        let output = std::process::Command::new(crate::support::host_binary())
            .args(["serve", "--port", "0", "--admin-listen", "off"])
            .arg(tempfile::tempdir().unwrap().path())
            .env("TINA4_SECRET", secret)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{secret:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("TINA4_SECRET"), "{stderr}");
    }
}
