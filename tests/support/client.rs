//! Clients for talking to the proxy: hyper's legacy client over HTTP/1.1, h2c prior knowledge,
//! or TLS with ALPN h2; plus the request bodies tests send (full, empty, channel-fed).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::within;

/// The body type every test client sends.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A plain-HTTP client.
pub type HttpClient = Client<HttpConnector, TestBody>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// No body.
pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body fed chunk by chunk through the returned sender; it ends when the sender is dropped.
/// The channel holds at most `capacity` chunks, so the sender feels the proxy's backpressure.
pub fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ChannelBody { rx }.boxed())
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An HTTP/1.1 client with a connection pool.
pub fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/1.1 client that opens a new connection for every request.
pub fn http1_unpooled() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// An HTTP/2 client with prior knowledge (h2c) over plain TCP.
pub fn h2c() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// An HTTPS client that trusts only `root` and offers only `h2` by ALPN.
pub fn tls_h2(root: &[u8]) -> Client<HttpsConnector<HttpConnector>, TestBody> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .expect("the test certificate is a valid root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(https)
}

/// Sends `req` and waits for the response head.
pub async fn send<C>(client: &Client<C, TestBody>, req: Request<TestBody>) -> Response<Incoming>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    within("the response head", client.request(req))
        .await
        .expect("the request should get a response")
}

/// `GET url` with no extra headers.
pub async fn get(client: &HttpClient, url: &str) -> Response<Incoming> {
    send(client, Request::get(url).body(empty()).unwrap()).await
}

/// Reads a whole (small) response body.
pub async fn body(rsp: Response<Incoming>) -> Bytes {
    within("the response body", rsp.into_body().collect())
        .await
        .expect("the response body should arrive whole")
        .to_bytes()
}

/// Reads a whole (small) response body as text.
pub async fn text(rsp: Response<Incoming>) -> String {
    String::from_utf8(body(rsp).await.to_vec()).expect("the body is UTF-8")
}

/// Reads the next data chunk of `body`, skipping trailers; `None` at the end.
pub async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = within("the next body chunk", body.frame()).await?;
        let frame = frame.expect("the body should stream without error");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}
