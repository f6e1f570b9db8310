//! The `demo` command's services (simulated Oz, stand-in backend serving the page, proxy)
//! started in process on free loopback ports, as `demo` starts them before its walkthrough.

use oz_capture_proxy::demo::{self, Demo, DemoOptions};
use tokio_util::sync::CancellationToken;

use super::within;

/// Starts the demo's services; stop them with [`Demo::stop`].
pub async fn start() -> Demo {
    let opts = DemoOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
    };
    within(
        "the demo to start",
        demo::start(opts, CancellationToken::new()),
    )
    .await
    .expect("the demo starts on free ports")
}
