//! The admin port (`/live`, `/ready`, `/metrics`) and graceful shutdown: readiness flips at once,
//! traffic keeps flowing through the drain delay, in-flight work completes, the proxy finishes as
//! soon as it is idle, and whatever is still open at the drain deadline is cut.

mod support;

use http::{Request, StatusCode};
use support::backend::{backend, hold_first, Gate, Reply};
use support::client;
use support::proxy::proxy;
use support::raw::RawConn;
use support::{within, ws};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUESTS_2XX: &str =
    r#"oz_proxy_requests_total{route_kind="passthrough",status_class="2xx"}"#;

async fn admin_get(proxy: &support::proxy::Proxy, path: &str) -> (StatusCode, String) {
    let rsp = client::get(&client::http1_unpooled(), &proxy.admin_url(path)).await;
    let status = rsp.status();
    (status, client::text(rsp).await)
}

// === admin endpoints ===

#[tokio::test]
async fn live_answers_200() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    assert_eq!(admin_get(&proxy, "/live").await.0, StatusCode::OK);
}

#[tokio::test]
async fn ready_answers_200_once_started() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    assert_eq!(
        admin_get(&proxy, "/ready").await,
        (StatusCode::OK, "ready\n".to_owned())
    );
}

#[tokio::test]
async fn metrics_count_a_passthrough_request_by_route_kind_and_status_class() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    let before = proxy.metric(REQUESTS_2XX).await;

    let rsp = client::get(&client::http1(), &proxy.url("/counted")).await;
    assert_eq!(client::text(rsp).await, "ok");

    let text = proxy.metrics().await;
    assert!(text.contains(REQUESTS_2XX), "{text}");
    assert_eq!(
        support::proxy::metric_value(&text, REQUESTS_2XX),
        before + 1.0
    );
}

#[tokio::test]
async fn metrics_path_on_the_traffic_port_goes_to_the_backend() {
    let mut backend = backend()
        .reply(|_| Reply::text("backend_own_metric 7\n"))
        .start()
        .await;
    let proxy = proxy(backend.addr).start().await;

    let rsp = client::get(&client::http1(), &proxy.url("/metrics")).await;
    assert_eq!(client::text(rsp).await, "backend_own_metric 7\n");
    assert_eq!(backend.next().await.target, "/metrics");
}

#[tokio::test]
async fn admin_port_answers_404_to_other_paths() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    assert_eq!(
        admin_get(&proxy, "/api/orders").await.0,
        StatusCode::NOT_FOUND
    );
}

// === shutdown ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_at_once_after_shutdown_while_traffic_still_flows() {
    let mut backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_delay", "30s")
        .start()
        .await;

    proxy.shutdown();
    assert_eq!(
        admin_get(&proxy, "/ready").await,
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
    );
    assert_eq!(admin_get(&proxy, "/live").await.0, StatusCode::OK);

    // Endpoints are still being updated: new connections must still be served.
    let rsp = client::get(&client::http1_unpooled(), &proxy.url("/during-drain")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(backend.next().await.target, "/during-drain");
}

#[tokio::test]
async fn request_in_flight_at_shutdown_completes() {
    let gate = Gate::new();
    let mut backend = backend().reply(hold_first(&gate)).start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_deadline", "60s")
        .start()
        .await;

    let http = client::http1();
    let in_flight = tokio::spawn({
        let url = proxy.url("/slow");
        async move { client::text(client::get(&http, &url).await).await }
    });
    assert_eq!(backend.next().await.target, "/slow");

    proxy.shutdown();
    gate.open();
    assert_eq!(
        within("the in-flight response", in_flight).await.unwrap(),
        "finished"
    );
}

#[tokio::test]
async fn proxy_finishes_once_idle_before_the_drain_deadline() {
    // The deadline is far away; finishing within the test's wait means the proxy noticed that
    // nothing was left (an idle keep-alive connection included) instead of waiting it out.
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_deadline", "600s")
        .start()
        .await;
    let http = client::http1();
    assert_eq!(
        client::get(&http, &proxy.url("/")).await.status(),
        StatusCode::OK
    );

    proxy.shutdown();
    proxy
        .wait_for(support::WAIT)
        .await
        .expect("the proxy stops cleanly");
    drop(http);
}

#[tokio::test]
async fn request_still_in_flight_at_the_drain_deadline_is_cut() {
    let gate = Gate::new();
    let mut backend = backend().reply(hold_first(&gate)).start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_deadline", "200ms")
        .start()
        .await;

    let http = client::http1();
    let req = Request::get(proxy.url("/stuck"))
        .body(client::empty())
        .unwrap();
    let in_flight = tokio::spawn(async move { http.request(req).await });
    backend.next().await;

    proxy.shutdown();
    proxy
        .wait_for(support::WAIT)
        .await
        .expect("the proxy stops at the deadline");
    // The proxy has stopped: nothing it held may still answer.
    gate.open();
    let outcome = within("the cut request to fail", in_flight).await.unwrap();
    assert!(
        outcome.is_err(),
        "a request still open at the deadline was answered after the proxy stopped: {:?}",
        outcome.map(|r| r.status())
    );
}

#[tokio::test]
async fn websocket_tunnel_open_at_the_drain_deadline_is_closed() {
    const KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";
    let backend = backend()
        .reply(|r| Reply::websocket(r.headers["sec-websocket-key"].to_str().unwrap()))
        .start()
        .await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_deadline", "200ms")
        .start()
        .await;

    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(
        format!(
            "GET /live-updates HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(conn.read_head().await.starts_with("HTTP/1.1 101 "));
    let mut io = conn.into_stream();
    io.write_all(&ws::encode(ws::TEXT, b"ping", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    assert_eq!(
        within("the echo", ws::read_frame(&mut io))
            .await
            .unwrap()
            .payload,
        b"ping"
    );

    proxy.shutdown();
    proxy
        .wait_for(support::WAIT)
        .await
        .expect("the proxy stops at the deadline");
    let mut rest = Vec::new();
    let n = within("the tunnel to close", io.read_to_end(&mut rest))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing more arrives on a closed tunnel");
}

#[tokio::test]
async fn proxy_finishes_once_idle_with_an_http2_connection_open() {
    // An idle HTTP/2 connection gets GOAWAY and closes; it must not hold the drain open.
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_deadline", "600s")
        .start()
        .await;
    let h2 = client::h2c();
    let rsp = client::get(&h2, &proxy.url("/")).await;
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    assert_eq!(client::text(rsp).await, "ok");

    proxy.shutdown();
    proxy
        .wait_for(support::WAIT)
        .await
        .expect("the proxy stops cleanly");
    drop(h2);
}

/// During the drain, HTTP/1.1 answers carry `Connection: close`: a keep-alive client stops
/// reusing its connection before the listener closes, instead of finding it closed under its
/// next request.
#[tokio::test]
async fn answers_during_the_drain_close_keep_alive_connections() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("shutdown.drain_delay", "5s")
        .start()
        .await;
    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 200);
    assert!(rsp.header_values("connection").is_empty(), "{}", rsp.head);

    proxy.shutdown();
    conn.send(b"GET /during HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rsp = conn.read_response(false).await;
    assert_eq!(
        rsp.status, 200,
        "traffic still flows during the drain delay"
    );
    assert_eq!(rsp.header_values("connection"), ["close"], "{}", rsp.head);
    assert!(
        conn.read_to_end().await.is_empty(),
        "the proxy closes the connection after that answer"
    );
}

/// A connection that never sends a byte is closed after `server.header_read_timeout`, like one
/// that sends half a head: otherwise each holds a file descriptor until shutdown.
#[tokio::test]
async fn connections_that_send_nothing_are_closed_after_the_header_read_timeout() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("server.header_read_timeout", "300ms")
        .start()
        .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(proxy.traffic).await.unwrap());
    }
    for (i, mut s) in silent.into_iter().enumerate() {
        let mut rest = Vec::new();
        let n = within("a silent connection to be closed", s.read_to_end(&mut rest))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "connection {i} got {rest:?}");
    }
    // A keep-alive connection that goes silent after a request is closed as well.
    let mut conn = RawConn::connect(proxy.traffic).await;
    conn.send(b"GET /once HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(conn.read_response(false).await.status, 200);
    assert!(conn.read_to_end().await.is_empty());
}

/// At `server.max_connections` the listener stops accepting: a further connection waits in the
/// backlog and is served as soon as an open one closes; the pause is counted.
#[tokio::test]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("server.max_connections", 2)
        .start()
        .await;
    let mut open = Vec::new();
    for i in 0..2 {
        let mut conn = RawConn::connect(proxy.traffic).await;
        conn.send(format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        assert_eq!(conn.read_response(false).await.status, 200);
        open.push(conn);
    }
    within("the listener to pause at the limit", async {
        while proxy
            .metric("oz_proxy_connection_limit_reached_total")
            .await
            < 1.0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(proxy.metric("oz_proxy_connections_open").await, 2.0);

    let mut waiting = RawConn::connect(proxy.traffic).await;
    waiting
        .send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    // Not served while both slots are taken (a bounded look, not a synchronization).
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(300), waiting.read_head()).await;
    assert!(early.is_err(), "served beyond max_connections");
    drop(open.pop());
    let rsp = waiting.read_response(false).await;
    assert_eq!(rsp.status, 200, "served once a slot is free");
}

/// An HTTP/2 connection has no header timeout between requests: one that moves no byte either
/// way for `server.http2_idle_timeout` is closed.
#[tokio::test]
async fn idle_http2_connections_are_closed_after_the_http2_idle_timeout() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr)
        .set("backend.timeout", "100ms")
        .set("server.http2_idle_timeout", "300ms")
        .start()
        .await;
    let tcp = tokio::net::TcpStream::connect(proxy.traffic).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = Request::get(proxy.url("/once")).body(()).unwrap();
    let (rsp, _) = client.send_request(req, true).unwrap();
    assert_eq!(within("the h2 answer", rsp).await.unwrap().status(), 200);
    // Then silence: the proxy ends the connection.
    within("the idle h2 connection to be closed", conn)
        .await
        .expect("the connection task")
        .ok();
}

/// A client that connected just before the listener closed, and sends its request just after,
/// gets an answer (with `Connection: close`), not an EOF: the drain waits briefly for the first
/// bytes of connections it has accepted, and accepts what the kernel had already completed.
#[tokio::test]
async fn a_client_that_connected_just_before_the_listener_closed_gets_its_answer() {
    let backend = backend().start().await;
    let proxy = proxy(backend.addr).start().await;
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(RawConn::connect(proxy.traffic).await);
    }
    proxy.shutdown();
    // Once a new connection is refused, the listener is closed.
    within("the listener to close", async {
        while tokio::net::TcpStream::connect(proxy.traffic).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for conn in &mut conns {
        conn.send(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n").await;
    }
    for conn in &mut conns {
        let rsp = conn.read_response(false).await;
        assert_eq!(rsp.status, 200);
        assert_eq!(rsp.header_values("connection"), ["close"], "{}", rsp.head);
    }
}
