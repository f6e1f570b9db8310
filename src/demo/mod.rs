//! `oz-capture-proxy demo`: the whole product on loopback, with nothing else installed.
//!
//! Starts the simulated Oz API, a stand-in legacy backend and the proxy in front of it. The
//! backend serves a page at `/` (through the proxy, as a host app serves its own page) that
//! captures from the camera, or a test pattern, and shows each step of the capture becoming a
//! verdict; `demo` prints its URL first. Then it pushes generated captures through the routes
//! and prints what happened ([`walkthrough`]), and keeps serving until Ctrl-C.
//!
//! - [`backend`]: the stand-in backend, the page's files and its introspection endpoints.
//! - [`page`]: the page's HTML, CSS and JavaScript, built into the binary.
//! - `walkthrough`: the printed account.

pub mod backend;
pub mod page;
mod walkthrough;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::oz_sim::{self, OzSim, SimConfig};
use crate::server;
use backend::StandIn;

/// Where the demo listens.
pub struct DemoOptions {
    /// The proxy's traffic port.
    pub listen: SocketAddr,
    /// The proxy's admin port.
    pub admin_listen: SocketAddr,
}

const DEMO_TOKEN: &str = "demo-service-token";
/// The forward route: the backend gets the capture with the verdict in `X-Oz-*` headers.
pub const FORWARD_PATH: &str = "/api/liveness/capture";
/// The respond route: the proxy answers the verdict itself.
pub const RESPOND_PATH: &str = "/api/liveness/check";
/// A forward route that waits only 500 ms, so a slow verdict arrives late.
const LATE_ROUTE: &str = "/api/liveness/capture-quick";
/// Where the stand-in backend gets late verdicts.
const LATE_PATH: &str = "/oz/late-verdict";

/// A running demo: its addresses, and what it needs to stop.
pub struct Demo {
    /// The page a person opens: `http://{traffic_addr}/`.
    pub page_url: String,
    /// The proxy's traffic listener.
    pub traffic_addr: SocketAddr,
    /// The proxy's admin listener.
    pub admin_addr: SocketAddr,
    /// The proxy's verdict listener.
    pub verdict_addr: Option<SocketAddr>,
    /// The simulated Oz API.
    pub oz_addr: SocketAddr,
    /// The stand-in backend (reached directly, not through the proxy).
    pub backend_addr: SocketAddr,
    sim: OzSim,
    backend: StandIn,
    proxy: server::Running,
    key_file: PathBuf,
    stop: CancellationToken,
}

/// Starts the simulator, the stand-in backend and the proxy; they run until `stop` is cancelled
/// or [`Demo::stop`] is called.
pub async fn start(opts: DemoOptions, stop: CancellationToken) -> anyhow::Result<Demo> {
    // 1. Simulated Oz API.
    let sim = OzSim::new(SimConfig {
        token: Some(DEMO_TOKEN.to_owned()),
        polls_until_final: 1,
        ..SimConfig::default()
    });
    let oz_listener = TcpListener::bind("127.0.0.1:0").await?;
    let oz_addr = oz_listener.local_addr()?;
    let sim_stop = stop.clone();
    tokio::spawn(oz_sim::serve(oz_listener, sim.clone(), async move {
        sim_stop.cancelled().await
    }));

    // 2. Stand-in legacy backend.
    let backend = StandIn::new(format!("http://{oz_addr}"), LATE_PATH);
    let backend_listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend_listener.local_addr()?;
    tokio::spawn(backend.clone().serve(backend_listener, stop.clone()));

    // 3. The proxy, signing verdict tokens with a key made for this run.
    let key_file = write_demo_key()?;
    let yaml = format!(
        r#"
listen: "{listen}"
admin_listen: "{admin}"
verdict_listen: "127.0.0.1:0"
backend:
  url: "http://{backend_addr}"
shutdown:
  drain_delay: "0s"
  drain_deadline: "5s"
reload:
  interval: "0s"
oz:
  url: "http://{oz_addr}"
  auth:
    token: "{DEMO_TOKEN}"
capture:
  wait_for_result: "10s"
  # A person trying the proxy wants to see where a capture's time goes.
  server_timing: true
  routes:
    - path: "{FORWARD_PATH}"
      on_result: forward
      # The sample carries both best frames, as the Web SDK's captures do, and Oz checks
      # neither here: the backend gets them as null rather than the capture being refused.
      unchecked_images: strip
    - path: "{RESPOND_PATH}"
      on_result: respond
      result_mode: folder
    - path: "{LATE_ROUTE}"
      on_result: forward
      unchecked_images: strip
      wait_for_result: "500ms"
      late_verdict_path: "{LATE_PATH}"
verdict:
  keys:
    - kid: "demo"
      alg: EdDSA
      private_key_file: "{key_file}"
"#,
        listen = opts.listen,
        admin = opts.admin_listen,
        key_file = key_file.display(),
    );
    let config = Config::from_yaml(&yaml, &Default::default()).context("demo config")?;
    let proxy = match server::start(config, None).await {
        Ok(proxy) => proxy,
        Err(e) => {
            // The simulator and the backend stop with the demo, not with this error.
            stop.cancel();
            let _ = std::fs::remove_file(&key_file);
            return Err(e.context(format!(
                "cannot start the proxy on {} / {} (use --listen/--admin-listen to pick free ports)",
                opts.listen, opts.admin_listen
            )));
        }
    };
    Ok(Demo {
        page_url: format!("http://{}/", proxy.traffic_addr),
        traffic_addr: proxy.traffic_addr,
        admin_addr: proxy.admin_addr,
        verdict_addr: proxy.verdict_addr,
        oz_addr,
        backend_addr,
        sim,
        backend,
        proxy,
        key_file,
        stop,
    })
}

impl Demo {
    /// Stops the proxy, the simulator and the backend, and removes the run's key.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.proxy.shutdown();
        let stopped = self.proxy.wait().await;
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.key_file);
        stopped
    }
}

/// Runs the demo until `stop` is cancelled: the page's URL first, then the walkthrough.
pub async fn run(opts: DemoOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let demo = start(opts, stop.clone()).await?;
    println!(
        "oz-capture-proxy demo: open {} in a browser to capture from your camera\n",
        demo.page_url
    );
    println!(
        "  simulated Oz API   http://{}   (uploads: GET /_sim/uploads)",
        demo.oz_addr
    );
    println!("  stand-in backend   http://{}", demo.backend_addr);
    println!(
        "  proxy              http://{}   (admin: http://{})\n",
        demo.traffic_addr, demo.admin_addr
    );
    let told = walkthrough::tell(&demo).await;
    println!("\nThe page: {}", demo.page_url);
    let sample = match told {
        Ok(sample) => Some(sample),
        Err(e) => {
            let _ = demo.stop().await;
            return Err(e);
        }
    };
    stop.cancelled().await;
    let stopped = demo.stop().await;
    if let Some(sample) = sample {
        let _ = std::fs::remove_file(sample);
    }
    stopped
}

/// ed25519` writes) in a file only this user can read.
fn write_demo_key() -> anyhow::Result<PathBuf> {
    use base64::Engine as _;
    let pkcs8 =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate the demo's Ed25519 key"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    // A random part as well as the pid: demos started in one process (the tests start several
    // at once) must not share a file that the first to stop removes.
    let mut tag = [0u8; 8];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut tag)
        .map_err(|_| anyhow::anyhow!("no randomness for the demo's key file name"))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!(
        "oz-capture-proxy-demo-{}-{tag}-verdict.pem",
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
