//! Passthrough transparency: what the backend and the client see when a request goes through the
//! proxy. One behaviour per test; each asserts on what actually arrived at the other end.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use support::backend::{backend, slot, Reply};
use support::client::{self, full};
use support::pattern::{Pattern, PatternCheck, BLOCK};
use support::proxy::proxy;
use support::raw::{RawBackend, RawConn};
use support::{within, within_for, ws};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Size of the large transfers: big enough that any buffering would show, streamed chunk-wise.
const LARGE: u64 = 100 * 1024 * 1024;

/// How long a 100 MiB transfer may take before the test fails (an unoptimized build is slow).
const LARGE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

// === round trips ===

#[tokio::test]
async fn get_reaches_backend_and_its_answer_reaches_client() {
    let mut backend = backend()
        .reply(|_| Reply::text("hello from backend").header("x-backend", "1"))
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/hello?name=oz")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["x-backend"], "1");
    assert_eq!(client::text(rsp).await, "hello from backend");

    let seen = backend.next().await;
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.target, "/hello?name=oz");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.body_len, 0);
}

#[tokio::test]
async fn post_body_reaches_backend_and_response_body_reaches_client() {
    let mut backend = backend()
        .reply(|r| {
            Reply::status(StatusCode::CREATED)
                .header("content-type", "application/json")
                .body(Bytes::from(format!("{{\"got\":{}}}", r.body_len)))
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::post(proxy.url("/items"))
        .header("content-type", "application/json")
        .body(full(r#"{"name":"widget"}"#))
        .unwrap();
    let rsp = client::send(&client::http1(), req).await;
    assert_eq!(rsp.status(), StatusCode::CREATED);
    assert_eq!(client::text(rsp).await, r#"{"got":17}"#);

    let seen = backend.next().await;
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("content-length"), "17");
    assert_eq!(&seen.body[..], br#"{"name":"widget"}"#);
}

// === large bodies, streamed ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_100_mib_streams_to_backend_byte_identical() {
    let data = Pattern::new(LARGE);
    let mut backend = backend().expect_body(data.clone()).start().await;
    let proxy = proxy(backend.addr).start().await;

    let (tx, body) = client::channel(2);
    let req = Request::post(proxy.url("/upload")).body(body).unwrap();
    let http = client::http1();
    let response = tokio::spawn(async move { http.request(req).await });

    // Send a few chunks only, then wait for the backend to see bytes: a proxy that buffered the
    // request would deliver nothing until the client had sent everything, and this would time out.
    let mut chunks = data.chunks();
    let head_start = 4;
    for chunk in chunks.by_ref().take(head_start) {
        within("the proxy to accept a chunk", tx.send(chunk))
            .await
            .unwrap();
    }
    let first = backend.wait_body_bytes(1).await;
    assert!(
        first <= (head_start * BLOCK) as u64,
        "the backend cannot have more than was sent"
    );
    assert!(data.chunk_count() as usize > 100 * head_start);

    // Now the rest, as fast as backpressure allows.
    within_for(LARGE_WAIT, "the upload", async {
        for chunk in chunks {
            tx.send(chunk).await.unwrap();
        }
    })
    .await;
    drop(tx);

    let rsp = within_for(LARGE_WAIT, "the upload response", response)
        .await
        .unwrap()
        .expect("the upload gets a response");
    assert_eq!(rsp.status(), StatusCode::OK);
    let seen = backend.next().await;
    assert_eq!(seen.body_len, LARGE);
    assert_eq!(seen.body_matches, Some(Ok(())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_100_mib_streams_to_client_byte_identical() {
    let data = Pattern::new(LARGE);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let rx = slot(rx);
    let backend = backend()
        .reply(move |_| {
            let rx = rx.lock().unwrap().take().expect("one download");
            Reply::status(StatusCode::OK).channel(rx)
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/download")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let mut body = rsp.into_body();

    // The backend has produced only a few chunks: the client must already get the first one.
    let mut chunks = data.chunks();
    for chunk in chunks.by_ref().take(4) {
        within("the proxy to accept a chunk", tx.send(chunk))
            .await
            .unwrap();
    }
    let mut check = PatternCheck::new(data.clone());
    let first = client::next_chunk(&mut body).await.expect("a first chunk");
    check.feed(&first);
    assert!(check.len() <= 4 * BLOCK as u64);

    let producer = tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    within_for(LARGE_WAIT, "the download", async {
        while let Some(chunk) = client::next_chunk(&mut body).await {
            check.feed(&chunk);
        }
    })
    .await;
    producer.await.unwrap();
    assert_eq!(check.complete_and_equal(), Ok(()));
}

#[test]
fn pattern_check_catches_a_swapped_block_and_a_flipped_byte() {
    // The checker the large-body tests rely on must itself catch corruption.
    let p = Pattern::new(3 * BLOCK as u64 + 10);
    let mut ok = PatternCheck::new(p.clone());
    for c in p.chunks() {
        for piece in c.chunks(5) {
            ok.feed(piece);
        }
    }
    assert_eq!(ok.complete_and_equal(), Ok(()));

    let mut swapped = PatternCheck::new(p.clone());
    swapped.feed(&p.chunk(1));
    assert!(swapped.complete_and_equal().is_err());

    let mut flipped = PatternCheck::new(p.clone());
    let mut c = p.chunk(0).to_vec();
    c[1000] ^= 1;
    flipped.feed(&c);
    assert_eq!(
        flipped.complete_and_equal(),
        Err("data differs from the pattern at byte 1000".into())
    );
}

// === request target, Host, header case and order ===

#[tokio::test]
async fn path_and_query_reach_backend_byte_for_byte() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /a%2Fb//c/./d/../e?x=%20&y HTTP/1.1\r\nHost: legacy.example\r\n\r\n")
        .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert_eq!(
        seen.request_line(),
        "GET /a%2Fb//c/./d/../e?x=%20&y HTTP/1.1"
    );
}

#[tokio::test]
async fn absolute_form_target_is_sent_in_origin_form_with_host_from_the_target() {
    // RFC 9112 §3.2.2: a recipient of absolute-form ignores Host and uses the target's authority.
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET http://legacy.example:8080/abs/path?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert_eq!(seen.request_line(), "GET /abs/path?q=1 HTTP/1.1");
    assert_eq!(seen.header_values("host"), ["legacy.example:8080"]);
    assert_eq!(
        seen.header_values("x-forwarded-host"),
        ["legacy.example:8080"]
    );
}

#[tokio::test]
async fn host_header_reaches_backend_unchanged() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::get(proxy.url("/"))
        .header("host", "app.example.com:8443")
        .body(client::empty())
        .unwrap();
    assert_eq!(client::send(&client::http1(), req).await.status(), 200);

    assert_eq!(backend.next().await.header("host"), "app.example.com:8443");
}

#[tokio::test]
async fn http1_header_case_is_preserved_both_ways_when_asked() {
    let mut backend =
        RawBackend::always(b"HTTP/1.1 200 OK\r\nX-ReSpOnSe-Case: 1\r\nContent-Length: 2\r\n\r\nok")
            .await;
    let proxy = proxy(backend.addr)
        .set("forwarding.preserve_header_case", true)
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-CuStOm-Header: v\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert!(
        rsp.header_lines().contains(&"X-ReSpOnSe-Case: 1"),
        "client saw:\n{}",
        rsp.head
    );

    let seen = backend.next().await;
    assert!(
        seen.header_lines().contains(&"X-CuStOm-Header: v"),
        "backend saw:\n{}",
        seen.head_str()
    );
}

#[tokio::test]
async fn http1_header_names_are_lowercased_both_ways_by_default() {
    let mut backend =
        RawBackend::always(b"HTTP/1.1 200 OK\r\nX-ReSpOnSe-Case: 1\r\nContent-Length: 2\r\n\r\nok")
            .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-CuStOm-Header: v\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert!(
        rsp.header_lines().contains(&"x-response-case: 1"),
        "client saw:\n{}",
        rsp.head
    );

    let seen = backend.next().await;
    assert!(
        seen.header_lines().contains(&"x-custom-header: v"),
        "backend saw:\n{}",
        seen.head_str()
    );
}

#[tokio::test]
async fn two_set_cookie_headers_both_reach_client() {
    let backend = backend()
        .reply(|_| {
            Reply::text("ok")
                .header("set-cookie", "a=1; Path=/")
                .header("set-cookie", "b=2; HttpOnly")
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/")).await;
    let cookies: Vec<_> = rsp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
}

#[tokio::test]
async fn order_of_distinct_request_headers_is_kept_when_a_hop_by_hop_field_is_removed() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-First: 1\r\nConnection: keep-alive\r\nX-Second: 2\r\nAccept: */*\r\nX-Third: 3\r\n\r\n",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    let sent = ["host", "x-first", "x-second", "accept", "x-third"];
    let order: Vec<String> = seen
        .header_lines()
        .iter()
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .filter(|n| sent.contains(&n.as_str()))
        .collect();
    assert_eq!(order, sent, "backend saw:\n{}", seen.head_str());
}

#[tokio::test]
async fn order_of_distinct_response_headers_is_kept_when_a_hop_by_hop_field_is_removed() {
    let _backend = RawBackend::always(
        b"HTTP/1.1 200 OK\r\nX-First: 1\r\nKeep-Alive: timeout=5\r\nX-Second: 2\r\nContent-Type: text/plain\r\nX-Third: 3\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    let sent = [
        "x-first",
        "x-second",
        "content-type",
        "x-third",
        "content-length",
    ];
    let order: Vec<String> = rsp
        .header_lines()
        .iter()
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .filter(|n| sent.contains(&n.as_str()))
        .collect();
    assert_eq!(order, sent, "client saw:\n{}", rsp.head);
}

// === hop-by-hop ===

#[tokio::test]
async fn hop_by_hop_request_fields_do_not_reach_backend() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET /hop HTTP/1.1\r\n\
          Host: h\r\n\
          Connection: x-foo, close\r\n\
          X-Foo: named-by-connection\r\n\
          Keep-Alive: timeout=5\r\n\
          TE: trailers\r\n\
          Trailer: X-Checksum\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          Proxy-Connection: keep-alive\r\n\
          Upgrade: h2c\r\n\
          X-Keep: yes\r\n\r\n",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    for name in [
        "connection",
        "x-foo",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            seen.header_values(name).is_empty(),
            "backend saw `{name}`:\n{}",
            seen.head_str()
        );
    }
    assert_eq!(seen.header_values("x-keep"), ["yes"]);
    // `Trailer` is end-to-end (RFC 9110 §6.6.2), not hop-by-hop: it stays.
    assert_eq!(seen.header_values("trailer"), ["X-Checksum"]);
}

#[tokio::test]
async fn hop_by_hop_response_fields_do_not_reach_client() {
    let _backend = RawBackend::always(
        b"HTTP/1.1 200 OK\r\n\
          Connection: x-bar\r\n\
          X-Bar: named-by-connection\r\n\
          Keep-Alive: timeout=5, max=100\r\n\
          Proxy-Authenticate: Basic realm=\"x\"\r\n\
          Proxy-Connection: keep-alive\r\n\
          Upgrade: h2c\r\n\
          X-Keep: yes\r\n\
          Content-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    for name in [
        "connection",
        "x-bar",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(!rsp.has_header(name), "client saw `{name}`:\n{}", rsp.head);
    }
    assert_eq!(rsp.header_values("x-keep"), ["yes"]);
    assert_eq!(rsp.body, b"ok");
}

#[tokio::test]
async fn trailers_of_a_chunked_response_reach_an_http11_client() {
    // `Trailer` is end-to-end (RFC 9110 §6.6.2; it is not in §7.6.1's hop-by-hop list), and
    // hyper only sends trailer fields the message declares in it.
    let _backend = RawBackend::always(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n",
    )
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.body, b"hello");
    assert_eq!(
        rsp.trailers
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        ["x-checksum: abc123"]
    );
}

#[tokio::test]
async fn trailers_of_a_chunked_request_reach_the_backend() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    let (body, trailers) = support::raw::dechunk_with_trailers(&seen.body);
    assert_eq!(body, b"hello");
    assert_eq!(
        trailers
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        ["x-checksum: abc123"]
    );
}

#[tokio::test]
async fn connection_header_cannot_remove_the_forwarding_headers_the_proxy_adds() {
    // A client that names X-Forwarded-For in Connection must not be able to hide its address
    // from the backend (the proxy's own headers are added after hop-by-hop removal).
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET / HTTP/1.1\r\nHost: h\r\n\
          Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id\r\n\r\n",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert_eq!(seen.header_values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_values("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.header_values("x-forwarded-host"), ["h"]);
    assert_eq!(seen.header_values("x-request-id").len(), 1);
}

// === forwarding headers and request id ===

#[tokio::test]
async fn x_forwarded_for_keeps_existing_value_and_appends_peer() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::get(proxy.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    assert_eq!(
        backend.next().await.header("x-forwarded-for"),
        "203.0.113.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn x_forwarded_for_policy_replace_drops_what_the_client_sent() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("forwarding.x_forwarded_for", "replace")
        .start()
        .await;

    let req = Request::get(proxy.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    assert_eq!(backend.next().await.header("x-forwarded-for"), "127.0.0.1");
}

#[tokio::test]
async fn x_forwarded_for_policy_off_leaves_the_header_alone() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("forwarding.x_forwarded_for", "off")
        .start()
        .await;

    let req = Request::get(proxy.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    assert_eq!(
        backend.next().await.header("x-forwarded-for"),
        "203.0.113.7"
    );
}

#[tokio::test]
async fn configured_via_is_added_after_the_clients_own() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("forwarding.via", "1.1 oz-sidecar")
        .start()
        .await;

    let req = Request::get(proxy.url("/"))
        .header("via", "1.1 edge")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    let seen = backend.next().await;
    let via: Vec<_> = seen.headers.get_all("via").iter().collect();
    assert_eq!(via, ["1.1 edge", "1.1 oz-sidecar"]);
}

#[tokio::test]
async fn x_forwarded_proto_and_host_are_set_from_the_connection_and_host() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::get(proxy.url("/"))
        .header("host", "shop.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "spoofed.example")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    let seen = backend.next().await;
    assert_eq!(seen.header("x-forwarded-proto"), "http");
    assert_eq!(seen.header("x-forwarded-host"), "shop.example");
}

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    client::get(&client::http1(), &proxy.url("/")).await;

    let id = backend.next().await.header("x-request-id").to_owned();
    assert_eq!(id.len(), 36, "{id}");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

#[tokio::test]
async fn request_id_sent_by_the_client_reaches_backend_unchanged() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::get(proxy.url("/"))
        .header("x-request-id", "client-chosen-id-42")
        .body(client::empty())
        .unwrap();
    client::send(&client::http1(), req).await;

    assert_eq!(
        backend.next().await.header("x-request-id"),
        "client-chosen-id-42"
    );
}

#[tokio::test]
async fn forged_x_oz_headers_are_dropped_on_a_passthrough_route() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::post(proxy.url("/api/orders"))
        .header("x-oz-resolution", "SUCCESS")
        .header("X-Oz-Folder-Id", "forged-folder")
        .header("X-OZ-ACTION", "video_selfie_blank")
        .header("x-oz-virtual-camera", "false")
        .header("x-ozone", "not-a-verdict")
        .body(full("{}"))
        .unwrap();
    client::send(&client::http1(), req).await;

    let seen = backend.next().await;
    let oz: Vec<_> = seen
        .header_names()
        .into_iter()
        .filter(|n| n.starts_with("x-oz-"))
        .collect();
    assert!(oz.is_empty(), "backend saw {oz:?}");
    assert_eq!(seen.header("x-ozone"), "not-a-verdict");
}

// === upgrades ===

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    // RFC 6455 §1.3's sample key, so the accept value is known independently of our SHA-1.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_eq!(ws::accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut backend = backend()
        .reply(|r| match r.headers.get("sec-websocket-key") {
            Some(k) => Reply::websocket(k.to_str().unwrap()),
            None => Reply::status(StatusCode::BAD_REQUEST),
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        format!(
            "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let head = conn.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the accept key reaches the client: {head}"
    );

    let seen = backend.next().await;
    assert_eq!(seen.header("upgrade"), "websocket");
    assert!(seen.header("connection").eq_ignore_ascii_case("upgrade"));
    assert_eq!(seen.header("sec-websocket-key"), KEY);

    let mut io = conn.into_stream();
    use tokio::io::AsyncWriteExt;
    for (text, mask) in [
        ("hello", [1, 2, 3, 4]),
        ("über-proxy", [0xA5, 0x5A, 0xFF, 0x00]),
    ] {
        within(
            "sending a frame",
            io.write_all(&ws::encode(ws::TEXT, text.as_bytes(), Some(mask))),
        )
        .await
        .unwrap();
        let echo = within("the echoed frame", ws::read_frame(&mut io))
            .await
            .unwrap();
        assert_eq!(
            echo,
            ws::Frame {
                opcode: ws::TEXT,
                masked: false,
                payload: text.as_bytes().to_vec()
            }
        );
    }
    within(
        "sending close",
        io.write_all(&ws::encode(
            ws::CLOSE,
            &1000u16.to_be_bytes(),
            Some([9, 9, 9, 9]),
        )),
    )
    .await
    .unwrap();
    let close = within("the close echo", ws::read_frame(&mut io))
        .await
        .unwrap();
    assert_eq!(close.opcode, ws::CLOSE);
    assert_eq!(close.payload, 1000u16.to_be_bytes());
}

/// Sends a WebSocket handshake for `path` and returns the connection after the 101.
async fn open_websocket(proxy: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut conn = RawConn::connect(proxy).await;
    conn.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let head = conn.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    conn.into_stream()
}

fn websocket_backend() -> support::backend::BackendBuilder {
    backend().reply(|r| match r.headers.get("sec-websocket-key") {
        Some(k) => Reply::websocket(k.to_str().unwrap()),
        None => Reply::text("plain"),
    })
}

#[tokio::test]
async fn upgrade_refused_by_backend_is_answered_and_the_connection_stays_usable() {
    let backend = backend()
        .reply(|r| match r.headers.get("upgrade") {
            Some(_) => Reply::status(StatusCode::UPGRADE_REQUIRED)
                .header("content-type", "text/plain")
                .body(Bytes::from_static(b"no websockets here")),
            None => Reply::text("plain"),
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 426);
    assert_eq!(rsp.body, b"no websockets here");
    conn.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.body, b"plain");
}

#[tokio::test]
async fn websocket_tunnel_idle_for_the_idle_timeout_is_closed() {
    let backend = websocket_backend().start().await;
    let proxy = proxy(backend.addr)
        .set("server.tunnel_idle_timeout", "200ms")
        .start()
        .await;

    let mut io = open_websocket(proxy.traffic, "/idle").await;
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let n = within("the idle tunnel to close", io.read_to_end(&mut rest))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// A busy tunnel is still closed at `server.tunnel_max_lifetime`: nothing inside a tunnel is
/// inspected, so its life is bounded whatever it carries.
#[tokio::test]
async fn websocket_tunnel_is_closed_at_its_maximum_lifetime_however_busy() {
    let backend = websocket_backend().start().await;
    let proxy = proxy(backend.addr)
        .set("server.tunnel_idle_timeout", "60s")
        .set("server.tunnel_max_lifetime", "300ms")
        .start()
        .await;

    let mut io = open_websocket(proxy.traffic, "/busy").await;
    use tokio::io::AsyncWriteExt;
    let echoes = within("the busy tunnel to be closed", async {
        let mut echoes = 0u32;
        loop {
            if io
                .write_all(&ws::encode(ws::TEXT, b"ping", Some([1, 2, 3, 4])))
                .await
                .is_err()
            {
                return echoes;
            }
            match ws::read_frame(&mut io).await {
                Ok(frame) if frame.payload == b"ping" => echoes += 1,
                _ => return echoes,
            }
        }
    })
    .await;
    assert!(
        echoes > 0,
        "the tunnel carried traffic before it was closed"
    );
}

#[tokio::test]
async fn websocket_session_counts_as_one_upgrade_request() {
    let backend = websocket_backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    const UPGRADES: &str = r#"oz_proxy_requests_total{route_kind="upgrade",status_class="1xx"}"#;

    let mut io = open_websocket(proxy.traffic, "/once").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(&ws::encode(ws::CLOSE, &[], Some([1, 1, 1, 1])))
        .await
        .unwrap();
    let close = within("the close echo", ws::read_frame(&mut io))
        .await
        .unwrap();
    assert_eq!(close.opcode, ws::CLOSE);
    io.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("the tunnel to end", io.read_to_end(&mut rest))
        .await
        .unwrap();

    // The tunnel has ended on both sides; its gauge falls back to zero when the proxy has
    // recorded it. Bounded polling: the proxy notices the end on its own task.
    const OPEN: &str = r#"oz_proxy_requests_in_flight{route_kind="upgrade"}"#;
    within("the tunnel gauge to reach 0", async {
        while proxy.metric(OPEN).await != 0.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(proxy.metric(UPGRADES).await, 1.0);
}

// === HTTP/2 and TLS on the client side ===

#[tokio::test]
async fn h2c_request_reaches_backend_as_http11_with_host_from_authority() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;

    let req = Request::get(proxy.url("/h2?x=1"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(client::empty())
        .unwrap();
    let rsp = client::send(&client::h2c(), req).await;
    assert_eq!(rsp.version(), Version::HTTP_2);
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(client::text(rsp).await, "ok");

    let seen = backend.next().await;
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.target, "/h2?x=1");
    assert_eq!(seen.header("host"), proxy.traffic.to_string());
    // RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1.
    assert_eq!(seen.header("cookie"), "a=1; b=2");
}

#[tokio::test]
async fn tls_with_alpn_h2_reaches_backend_as_http11_marked_https() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = support::bin::TempDir::new("tls");
    let cert_file = dir.write("cert.pem", cert.cert.pem());
    let key_file = dir.write("key.pem", cert.signing_key.serialize_pem());

    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("tls.cert_file", cert_file.display())
        .set("tls.key_file", key_file.display())
        .start()
        .await;

    let client = client::tls_h2(cert.cert.der());
    let url = format!("https://{}/secure", proxy.traffic);
    let rsp = client::send(&client, Request::get(url).body(client::empty()).unwrap()).await;
    assert_eq!(rsp.version(), Version::HTTP_2, "ALPN chose h2");
    assert_eq!(rsp.status(), StatusCode::OK);

    let seen = backend.next().await;
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.target, "/secure");
    assert_eq!(seen.header("host"), proxy.traffic.to_string());
    assert_eq!(seen.header("x-forwarded-proto"), "https");
}
