//! Message framing through the proxy, checked on the wire: bodies that must not exist, lengths
//! that must be kept, re-framing, `Expect: 100-continue`, and requests that must never reach the
//! backend (smuggling attempts, oversized heads).

mod support;

use http::StatusCode;
use support::backend::{backend, Reply};
use support::proxy::proxy;
use support::raw::{Framing, RawAction, RawBackend, RawConn};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Sends a harmless request on a fresh connection and waits for the backend to receive it.
/// Whatever the backend received before it (in order) came from earlier requests, so a test can
/// prove that a refused request never arrived without waiting on a timer.
async fn canary_is_first_at_backend(proxy_addr: std::net::SocketAddr, backend: &mut RawBackend) {
    let mut conn = RawConn::connect(proxy_addr).await;
    conn.send(b"GET /canary HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);
    let first = backend.next().await;
    assert_eq!(
        first.request_line(),
        "GET /canary HTTP/1.1",
        "the backend received something before the canary:\n{}",
        first.head_str()
    );
}

// === Expect: 100-continue ===

#[tokio::test]
async fn expect_100_continue_post_gets_100_then_completes() {
    let mut backend = backend()
        .reply(|r| Reply::text(&format!("got {} bytes", r.body_len)))
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
          Content-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    // The client holds the body until the interim response arrives (bounded by `within`).
    let interim = conn.read_head().await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    conn.send(b"hello world").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.body, b"got 11 bytes");

    assert_eq!(&backend.next().await.body[..], b"hello world");
}

// === responses without a body ===

#[tokio::test]
async fn head_response_has_no_body_and_keeps_content_length() {
    let backend = backend().reply(|_| Reply::text("0123456789")).start().await;
    let proxy = proxy(backend.addr).start().await;

    // Pipelined HEAD then GET: any body byte after the HEAD response would corrupt the second.
    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"HEAD /doc HTTP/1.1\r\nHost: h\r\n\r\nGET /doc HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let head = conn.read_response(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header_values("content-length"), ["10"]);
    assert!(!head.has_header("transfer-encoding"), "{}", head.head);
    let get = conn.read_response(false).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"0123456789");
}

#[tokio::test]
async fn no_content_response_has_no_body_and_no_framing_headers() {
    let backend = backend()
        .reply(|r| match r.target.as_str() {
            "/next" => Reply::text("next"),
            _ => Reply::status(StatusCode::NO_CONTENT),
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"DELETE /item HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 204);
    assert!(!rsp.has_header("content-length"), "{}", rsp.head);
    assert!(!rsp.has_header("transfer-encoding"), "{}", rsp.head);
    assert_eq!(conn.read_response(false).await.body, b"next");
}

#[tokio::test]
async fn not_modified_response_has_no_body() {
    let backend = backend()
        .reply(|r| match r.target.as_str() {
            "/next" => Reply::text("next"),
            _ => Reply::status(StatusCode::NOT_MODIFIED).header("etag", "\"v1\""),
        })
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"GET /doc HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"v1\"\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 304);
    assert_eq!(rsp.header_values("etag"), ["\"v1\""]);
    assert!(!rsp.has_header("transfer-encoding"), "{}", rsp.head);
    assert_eq!(conn.read_response(false).await.body, b"next");
}

#[tokio::test]
async fn content_length_zero_response_is_preserved() {
    let _backend = RawBackend::always(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /empty HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.header_values("content-length"), ["0"]);
    assert!(!rsp.has_header("transfer-encoding"), "{}", rsp.head);
    assert!(rsp.body.is_empty());
}

#[tokio::test]
async fn content_length_zero_request_is_preserved() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"POST /empty HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert_eq!(seen.header_values("content-length"), ["0"]);
    assert!(
        seen.header_values("transfer-encoding").is_empty(),
        "{}",
        seen.head_str()
    );
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn bodyless_get_gets_no_framing_headers_added() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert!(
        seen.header_values("content-length").is_empty(),
        "{}",
        seen.head_str()
    );
    assert!(
        seen.header_values("transfer-encoding").is_empty(),
        "{}",
        seen.head_str()
    );
}

#[tokio::test]
async fn close_delimited_response_is_rechunked_for_an_http11_client() {
    let _backend = RawBackend::start(|_, _| {
        RawAction::ReplyAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody that ends when the backend closes"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /eof HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.framing, Framing::Chunked, "{}", rsp.head);
    assert_eq!(rsp.body, b"body that ends when the backend closes");
    // The client connection survives the backend's close.
    conn.send(b"GET /eof HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);
}

#[tokio::test]
async fn asterisk_form_options_is_passed_through() {
    // RFC 9112 §3.2.4.
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);

    assert_eq!(backend.next().await.request_line(), "OPTIONS * HTTP/1.1");
}

// === refused before the backend ===

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    // CL.TE: a front end that used Content-Length would forward "0\r\n\r\n" plus the start of a
    // second request hidden in the body. hyper frames the request by Transfer-Encoding alone,
    // drops Content-Length and closes the connection after answering (RFC 9112 §6.1), so the
    // backend sees one request without Content-Length and the hidden one is never read.
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"POST /cl-te HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 200);
    assert!(
        conn.read_to_end().await.is_empty(),
        "the connection closes after the one response"
    );

    let seen = backend.next().await;
    assert_eq!(seen.request_line(), "POST /cl-te HTTP/1.1");
    assert!(
        seen.header_values("content-length").is_empty(),
        "{}",
        seen.head_str()
    );
    assert_eq!(seen.body, b"0\r\n\r\n");
    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn differing_duplicate_content_length_is_refused_with_400() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        b"POST /dup HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    .await;
    assert_eq!(conn.read_response(false).await.status, 400);

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn oversized_request_head_is_refused_with_431() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr)
        .set("server.max_header_bytes", 8192)
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    let big = "a".repeat(20 * 1024);
    conn.send(format!("GET /big HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(conn.read_response(false).await.status, 431);

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn too_many_request_headers_are_refused_with_431() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr)
        .set("server.max_headers", 20)
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    let mut req = String::from("GET /many HTTP/1.1\r\nHost: h\r\n");
    for i in 0..30 {
        req.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    req.push_str("\r\n");
    conn.send(req.as_bytes()).await;
    assert_eq!(conn.read_response(false).await.status, 431);

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn connect_is_refused_with_405_problem() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 405);
    assert_eq!(
        rsp.header_values("content-type"),
        ["application/problem+json"]
    );

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

// === Host and HTTP/1.0 ===

#[tokio::test]
async fn http11_request_without_host_is_refused_with_400() {
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /no-host HTTP/1.1\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 400);

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn http11_request_with_two_hosts_is_refused_with_400() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
        .await;
    assert_eq!(conn.read_response(false).await.status, 400);

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}

#[tokio::test]
async fn http10_request_without_host_reaches_backend_with_a_host() {
    // The proxy speaks HTTP/1.1 to the backend, where Host is mandatory: it names the backend.
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);

    let seen = backend.next().await;
    assert_eq!(seen.request_line(), "GET /old HTTP/1.1");
    assert_eq!(seen.header_values("host"), [backend.addr.to_string()]);
}

#[tokio::test]
async fn http10_client_gets_a_streamed_body_without_chunked_framing() {
    let _backend = RawBackend::always(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /stream HTTP/1.0\r\nHost: h\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_ne!(rsp.framing, Framing::Chunked, "{}", rsp.head);
    assert_eq!(rsp.body, b"hello world");
}

// === truncation and slow clients ===

#[tokio::test]
async fn truncated_backend_body_with_length_is_not_passed_off_as_complete() {
    let _backend = RawBackend::start(|_, _| {
        RawAction::ReplyAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it".to_vec(),
        )
    })
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /cut HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let head = conn.read_head().await;
    assert!(
        head.contains("content-length: 100") || head.contains("Content-Length: 100"),
        "{head}"
    );
    let rest = conn.read_to_end().await;
    assert!(
        rest.len() < 100,
        "the client must see the connection close short of Content-Length"
    );
}

#[tokio::test]
async fn truncated_chunked_backend_body_gets_no_final_chunk() {
    let _backend = RawBackend::start(|_, _| {
        RawAction::ReplyAndClose(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        )
    })
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /cut HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let head = conn.read_head().await;
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let rest = conn.read_to_end().await;
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "a cut body must not end with the last-chunk marker: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn request_head_slower_than_header_read_timeout_is_cut() {
    let mut backend = RawBackend::always(OK).await;
    let proxy = proxy(backend.addr)
        .set("server.header_read_timeout", "200ms")
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /slowloris HTTP/1.1\r\nHost: h\r\nX-Never-Ends: ")
        .await;
    let rest = conn.read_to_end().await;
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "the proxy closes (or answers 408): {text}"
    );

    canary_is_first_at_backend(proxy.traffic, &mut backend).await;
}
