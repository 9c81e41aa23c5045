//! Compressed responses: an app's text answer and a public file, in the
//! encoding the client prefers, only when asked for, only when worth it,
//! and a compressed file with an ETag of its own.

use std::io::Read;

use crate::support::{Server, http};

/// The body of `response`, decoded as its `Content-Encoding` says.
async fn decoded(response: reqwest::Response) -> (Option<String>, String) {
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.bytes().await.expect("a body");
    let mut text = String::new();
    match encoding.as_deref() {
        Some("br") => {
            brotli::Decompressor::new(&bytes[..], 4096)
                .read_to_string(&mut text)
                .expect("brotli");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("gzip");
        }
        None => text = String::from_utf8(bytes.to_vec()).expect("UTF-8"),
        Some(other) => panic!("unexpected encoding {other}"),
    }
    (encoding, text)
}

#[tokio::test]
async fn an_apps_text_answer_comes_in_the_encoding_the_client_prefers() {
    let server = Server::start(&["probe"]).await;
    // The probe answers with JSON holding the body it was sent: 4 KiB.
    let body = "compress me ".repeat(400);
    let post = |accept: Option<&'static str>| {
        let mut request = http()
            .post(server.url("/probe/echo/big/1"))
            .header("content-type", "text/plain")
            .body(body.clone());
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };
    let plain = post(None).await.unwrap();
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let (encoding, identity) = decoded(plain).await;
    assert_eq!(encoding, None);
    assert!(identity.contains(&body));
    for (accept, expected) in [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0.5, gzip;q=0.9", "gzip"),
    ] {
        let response = post(Some(accept)).await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length < identity.len() / 4, "{accept}: {length} bytes");
        let (encoding, text) = decoded(response).await;
        assert_eq!(encoding.as_deref(), Some(expected), "{accept}");
        assert_eq!(text, identity, "{accept}");
    }
    // A small answer is not worth it.
    let small = http()
        .get(server.url("/probe/count"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert!(small.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn a_public_file_is_compressed_with_an_etag_of_its_own() {
    let server = Server::start(&["echo"]).await;
    let get = |accept: Option<&'static str>, etag: Option<String>| {
        let mut request = http().get(server.url("/js/frond.js"));
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let plain = get(None, None).await.unwrap();
    let plain_etag = plain.headers()["etag"].to_str().unwrap().to_string();
    let (_, script) = decoded(plain).await;

    let gzipped = get(Some("gzip"), None).await.unwrap();
    let gz_etag = gzipped.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(gz_etag, plain_etag);
    assert!(gz_etag.ends_with("-gz\""), "{gz_etag}");
    let (encoding, text) = decoded(gzipped).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert_eq!(text, script);

    // Each representation is revalidated by its own ETag.
    let again = get(Some("gzip"), Some(gz_etag.clone())).await.unwrap();
    assert_eq!(again.status().as_u16(), 304);
    let other = get(Some("br"), Some(gz_etag)).await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    let (encoding, text) = decoded(other).await;
    assert_eq!(encoding.as_deref(), Some("br"));
    assert_eq!(text, script);
}
