//! Failures on the backend side: what the client gets (status and `application/problem+json`
//! code), what the backend sees, which metric moves, and which requests are retried.

mod support;

use http::{Request, StatusCode};
use support::backend::{backend, hold_first, Gate, Reply};
use support::client::{self, full};
use support::proxy::proxy;
use support::raw::{RawAction, RawBackend, RawConn};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The problem document of a proxy-made error response.
async fn problem(rsp: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    assert_eq!(rsp.headers()["content-type"], "application/problem+json");
    serde_json::from_slice(&client::body(rsp).await).expect("a JSON problem document")
}

#[tokio::test]
async fn unreachable_backend_gets_502_backend_unreachable() {
    // Bound but not listening: connecting is refused, and no other test can take the port.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = proxy(reserved.local_addr().unwrap()).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/anything")).await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    let p = problem(rsp).await;
    assert_eq!(p["code"], "backend_unreachable");
    assert_eq!(p["status"], 502);
    assert_eq!(p["request_id"].as_str().map(str::len), Some(36));
    assert_eq!(
        proxy
            .metric(r#"oz_proxy_backend_errors_total{kind="connect"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn backend_slower_than_timeout_gets_504_backend_timeout() {
    let gate = Gate::new();
    let mut backend = backend().reply(hold_first(&gate)).start().await;
    let proxy = proxy(backend.addr)
        .set("backend.timeout", "200ms")
        .start()
        .await;

    let rsp = client::get(&client::http1(), &proxy.url("/slow")).await;
    assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem(rsp).await["code"], "backend_timeout");
    assert_eq!(backend.next().await.target, "/slow");
    assert_eq!(
        proxy
            .metric(r#"oz_proxy_backend_errors_total{kind="timeout"}"#)
            .await,
        1.0
    );
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_slower_than_backend_timeout_is_not_cut_off() {
    // `backend.timeout` is the time the backend may take to answer, so it runs from the end of
    // the request body, not from its start: a client that uploads slowly is not the backend
    // being slow. The upload here stays open across a whole timeout (measured by another
    // request timing out), then completes.
    let gate = Gate::new();
    let mut backend = backend()
        .reply({
            let held = hold_first(&gate);
            move |r| match r.target.as_str() {
                "/held" => held(r),
                _ => Reply::text(&format!("stored {} bytes", r.body_len)),
            }
        })
        .start()
        .await;
    let proxy = proxy(backend.addr)
        .set("backend.timeout", "300ms")
        .start()
        .await;

    let (tx, body) = client::channel(1);
    let http = client::http1();
    let upload = {
        let http = http.clone();
        let req = Request::post(proxy.url("/upload")).body(body).unwrap();
        tokio::spawn(async move { http.request(req).await })
    };
    tx.send(bytes::Bytes::from_static(b"first part, "))
        .await
        .unwrap();
    backend.wait_body_bytes(1).await;

    let timed_out = client::get(&http, &proxy.url("/held")).await;
    assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);
    gate.open();

    tx.send(bytes::Bytes::from_static(b"second part"))
        .await
        .expect("the upload is still open after a whole backend.timeout");
    drop(tx);
    let rsp = support::within("the upload response", upload)
        .await
        .unwrap()
        .expect("the upload gets a response");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(client::text(rsp).await, "stored 23 bytes");
}

#[tokio::test]
async fn idempotent_get_is_retried_once_when_the_pooled_connection_dies() {
    // Request 0 warms the pool; request 1 (the first try of /flaky) is read and then the
    // connection is closed without an answer, as a backend closing an idle keep-alive
    // connection does; anything later is answered.
    let mut backend = RawBackend::start(|n, _| match n {
        1 => RawAction::Close,
        _ => RawAction::Reply(OK.to_vec()),
    })
    .await;
    let proxy = proxy(backend.addr).start().await;
    let http = client::http1();

    assert_eq!(client::get(&http, &proxy.url("/warm")).await.status(), 200);
    let rsp = client::get(&http, &proxy.url("/flaky")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(client::text(rsp).await, "ok");

    let warm = backend.next().await;
    let first = backend.next().await;
    let retry = backend.next().await;
    assert_eq!(first.request_line(), "GET /flaky HTTP/1.1");
    assert_eq!(
        first.conn, warm.conn,
        "the first try reused the pooled connection"
    );
    assert_eq!(retry.request_line(), "GET /flaky HTTP/1.1");
    assert_ne!(retry.conn, first.conn, "the retry went on a new connection");
    assert!(backend.try_next().is_none());
}

#[tokio::test]
async fn post_is_not_retried_when_the_pooled_connection_dies() {
    let mut backend = RawBackend::start(|n, _| match n {
        1 => RawAction::Close,
        _ => RawAction::Reply(OK.to_vec()),
    })
    .await;
    let proxy = proxy(backend.addr).start().await;
    let http = client::http1();

    assert_eq!(client::get(&http, &proxy.url("/warm")).await.status(), 200);
    let req = Request::post(proxy.url("/order"))
        .body(full("buy"))
        .unwrap();
    let rsp = client::send(&http, req).await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem(rsp).await["code"], "backend_failed");

    let warm = backend.next().await;
    let post = backend.next().await;
    assert_eq!(post.request_line(), "POST /order HTTP/1.1");
    assert_eq!(post.conn, warm.conn);
    // Anything after the POST would have arrived before this canary.
    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /canary HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);
    assert_eq!(
        backend.next().await.request_line(),
        "GET /canary HTTP/1.1",
        "the POST was sent once"
    );
    assert_eq!(
        proxy
            .metric(r#"oz_proxy_backend_errors_total{kind="failed"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn malformed_backend_response_gets_502_backend_failed() {
    let _backend = RawBackend::start(|_, _| {
        RawAction::ReplyAndClose(b"HTTP/1.1 2OO NOT A STATUS\r\n\r\n".to_vec())
    })
    .await;
    let proxy = proxy(_backend.addr).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/bad")).await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem(rsp).await["code"], "backend_failed");
}

#[tokio::test]
async fn upload_that_stalls_is_cut_after_body_idle_timeout() {
    // A client that stops sending mid-body must not hold a backend connection forever: after
    // `server.body_idle_timeout` without a byte the forwarded request fails. It is the client's
    // fault: a 400 `body_read_failed`, not a backend failure on the dashboard.
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("server.body_idle_timeout", "200ms")
        .start()
        .await;

    let (tx, body) = client::channel(1);
    let req = Request::post(proxy.url("/upload")).body(body).unwrap();
    tx.send(bytes::Bytes::from_static(b"first part and then nothing"))
        .await
        .unwrap();
    let rsp = client::send(&client::http1(), req).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rsp.headers()["connection"], "close");
    let p = problem(rsp).await;
    assert_eq!(p["code"], "body_read_failed");
    assert!(p["detail"].as_str().unwrap().contains("stalled"), "{p}");
    drop(tx);
    assert_eq!(
        proxy
            .metric(r#"oz_proxy_backend_errors_total{kind="failed"}"#)
            .await,
        0.0,
        "a stalled client is not a backend error"
    );
}

/// A passthrough refused before its body has arrived cannot carry another request on the same
/// connection, and says so: the client's next request goes on a new connection instead of
/// dying with EOF on this one.
#[tokio::test]
async fn a_fast_error_before_the_body_arrived_says_connection_close() {
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = proxy(reserved.local_addr().unwrap()).start().await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    // Head and body in two writes: the 502 is answered before the body has been read.
    conn.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n")
        .await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 502);
    assert_eq!(rsp.header_values("connection"), ["close"], "{}", rsp.head);

    // A body-less request keeps its connection.
    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 502);
    assert!(rsp.header_values("connection").is_empty(), "{}", rsp.head);
}

#[tokio::test]
async fn download_that_stalls_is_cut_after_body_idle_timeout() {
    // A backend that stops sending mid-body: the client gets what was sent, then the body ends
    // with an error instead of hanging.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let rx = support::backend::slot(rx);
    let backend = backend()
        .reply(move |_| Reply::text("").channel(rx.lock().unwrap().take().expect("one request")))
        .start()
        .await;
    let proxy = proxy(backend.addr)
        .set("server.body_idle_timeout", "200ms")
        .start()
        .await;

    tx.send(bytes::Bytes::from_static(b"first chunk"))
        .await
        .unwrap();
    let rsp = client::get(&client::http1(), &proxy.url("/download")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let mut body = rsp.into_body();
    assert_eq!(
        client::next_chunk(&mut body).await.as_deref(),
        Some(&b"first chunk"[..])
    );
    use http_body_util::BodyExt;
    let end = support::within("the stalled body to be cut", body.frame()).await;
    assert!(
        matches!(end, Some(Err(_)) | None),
        "a stalled body must end, not hang: {end:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn backend_connection_is_reused_after_responses_of_every_framing() {
    // Each response, once read to its end, gives its connection back to the pool, whatever
    // framed it: a length, chunks with trailers, no body at all (204, HEAD).
    let backend = RawBackend::start(|_, req| {
        let path = req.request_line().split(' ').nth(1).unwrap_or("");
        RawAction::Reply(match path {
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
                2\r\nok\r\n0\r\nx-sum: 1\r\n\r\n"
                    .to_vec()
            }
            "/none" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        })
    })
    .await;
    let mut backend = backend;
    let proxy = proxy(backend.addr).start().await;
    let http = client::http1();

    for path in ["/length", "/chunked", "/none", "/length"] {
        let rsp = client::get(&http, &proxy.url(path)).await;
        assert!(rsp.status().is_success(), "{path}");
        client::body(rsp).await;
    }
    let req = Request::head(proxy.url("/head"))
        .body(client::empty())
        .unwrap();
    assert_eq!(client::send(&http, req).await.status(), 200);
    assert_eq!(
        client::text(client::get(&http, &proxy.url("/last")).await).await,
        "ok"
    );

    for expected in ["/length", "/chunked", "/none", "/length", "/head", "/last"] {
        let req = backend.next().await;
        assert!(
            req.request_line().contains(expected),
            "{}",
            req.request_line()
        );
        assert_eq!(req.conn, 0, "{expected} went on the pooled connection");
    }
}

/// A backend that accepts one connection at a time, answers its one request with `response` and
/// then reports whether the proxy closed the connection (`true`) or sent something else.
async fn one_shot_backend(
    response: &'static [u8],
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if conn.write_all(response).await.is_err() {
                    return;
                }
                let closed = matches!(conn.read(&mut buf).await, Ok(0) | Err(_));
                let _ = tx.send(closed);
            });
        }
    });
    (addr, rx)
}

/// Waits for `one_shot_backend` to report its connection's end: closed by the proxy, with no
/// other request sent on it.
async fn expect_closed_by_the_proxy(closed: &mut tokio::sync::mpsc::UnboundedReceiver<bool>) {
    let was_closed = support::within("the backend connection to be closed", closed.recv())
        .await
        .expect("the backend is running");
    assert!(
        was_closed,
        "the proxy closed the connection, sending nothing more"
    );
}

#[tokio::test]
async fn idle_backend_connection_is_closed_by_the_proxy_after_pool_idle_timeout() {
    let (addr, mut closed) = one_shot_backend(OK).await;
    let proxy = proxy(addr)
        .set("backend.pool_idle_timeout", "100ms")
        .start()
        .await;

    let rsp = client::get(&client::http1(), &proxy.url("/once")).await;
    assert_eq!(client::text(rsp).await, "ok");
    expect_closed_by_the_proxy(&mut closed).await;

    // The next request needs a new connection, and gets one.
    let rsp = client::get(&client::http1(), &proxy.url("/again")).await;
    assert_eq!(client::text(rsp).await, "ok");
}

#[tokio::test]
async fn backend_connection_of_an_abandoned_response_is_closed_not_reused() {
    // The client goes away half-way through a download: the rest of the response is still on
    // the backend connection, which therefore cannot carry another request.
    static PARTIAL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nonly the start";
    let (addr, mut closed) = one_shot_backend(PARTIAL).await;
    // Longer than the wait below: only closing it for being unusable passes.
    let proxy = proxy(addr)
        .set("backend.pool_idle_timeout", "1h")
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let head = conn.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(conn);

    expect_closed_by_the_proxy(&mut closed).await;
}
