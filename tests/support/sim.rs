//! The real Oz simulator (`oz_sim::serve`) started in process on an ephemeral loopback port.

use std::net::SocketAddr;

use oz_capture_proxy::oz_sim::{self, OzSim, SimConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::within;

/// The simulator serving on `127.0.0.1:0`. Stops when dropped; [`Sim::stop`] also waits for the
/// end and checks that `serve` returned `Ok`.
pub struct Sim {
    pub addr: SocketAddr,
    /// The simulator's state: what it was sent, and knobs a test may turn while it runs.
    pub sim: OzSim,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Sim {
    /// Binds `127.0.0.1:0` and starts serving `cfg`.
    pub async fn start(cfg: SimConfig) -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sim");
        let addr = listener.local_addr().expect("sim addr");
        let sim = OzSim::new(cfg);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(oz_sim::serve(listener, sim.clone(), async move {
            stopped.cancelled().await
        }));
        Sim {
            addr,
            sim,
            stop,
            task: Some(task),
        }
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for `serve` to return `Ok`.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let task = self.task.take().expect("running");
        within("simulator stop", task)
            .await
            .expect("simulator task did not panic")
            .expect("serve returns Ok");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
