//! Soak and chaos driver: `cargo bench --bench soak -- --duration 120` (or `benches/soak.sh 120`).
//!
//! Runs the real `oz-capture-proxy` binary as a child process, with a config file written here,
//! in front of a backend and the simulated Oz API that both run in this process; drives mixed
//! traffic at a steady rate for `--duration` seconds while a schedule injects faults, then sends
//! SIGTERM while the traffic still runs, and accounts for every request (RELIABILITY.md).
//!
//! The duration is cut into eight equal phases: a baseline, then one fault each. A fault is active
//! for the first 60 % of its phase; the rest is a calm stretch, at whose end the proxy's RSS and
//! open fds must be back near the baseline's.
//!
//! | phase | fault |
//! |---|---|
//! | baseline | none |
//! | backend killed, restarted | the backend turns slow (so answers are in flight), and dies once two 1 MiB GETs the driver sent itself are mid-body: every backend connection dropped, the listener closed; it comes back on the same port |
//! | backend slow | every answer 300 ms late, 1 MiB bodies with 20 ms between 64 KiB chunks |
//! | Oz 5xx | uploads answered 503, then analysis starts answered 500 |
//! | Oz hangs past oz.timeout | uploads answered after `oz.timeout` + 1 s |
//! | Oz tokens expire | every Oz token expired once a second (the proxy logs in with a password) |
//! | reload: valid change | `max_frames` lowered and a forward route added; a probe capture, then half the forward captures use it |
//! | reload: invalid, weakening | a file that is not YAML, then a valid one without the respond route (refused by design; a probe capture on the respond route meanwhile), then the valid one back |
//!
//! Then SIGTERM: the backend turns slow (so requests are in flight when the listener closes),
//! `/ready` is polled every 50 ms on the admin port until the process exits, the traffic keeps
//! going (refused connections once the listener has closed), and the exit status and drain time
//! are recorded.
//!
//! Options: `--duration SECS` (120) of traffic before SIGTERM, `--rate N` (100) requests per second
//! in total, `--bin PATH` (the binary Cargo built for this profile: `target/release` under
//! `cargo bench`, `target/debug` under `cargo bench --profile dev`), `--out DIR` (default
//! `target/soak/<unix time>`: the config, the proxy's output, the report, the RSS samples, and
//! every request that did not end ok). Exit status: 0 when every invariant held, 1 when one
//! failed, 2 when the run could not be made.

#[path = "soak/backend.rs"]
mod backend;
#[path = "soak/hash.rs"]
mod hash;
#[path = "soak/proxy.rs"]
mod proxy;
#[path = "soak/report.rs"]
mod report;
#[path = "soak/traffic.rs"]
mod traffic;
#[allow(dead_code)]
#[path = "../tests/support/ws.rs"]
mod ws;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oz_capture_proxy::oz_sim::{self, Endpoint, OzSim, SimConfig, DEFAULT_PASSWORD};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use backend::Backend;
use proxy::{config_yaml, write_atomically, ProxyProcess, Variant, DRAIN_DEADLINE, DRAIN_DELAY};
use report::{Facts, Phase, PhaseKind};
use traffic::{Class, Ctx, HttpClient, Outcome};

struct Args {
    duration: Duration,
    rate: f64,
    bin: PathBuf,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: soak [--duration SECS] [--rate REQ_PER_SEC] [--bin PATH] [--out DIR]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(120),
        rate: 100.0,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_oz-capture-proxy")),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "--duration" => {
                let v = value("--duration")?;
                let secs: f64 = v
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|_| format!("--duration {v}: not a number of seconds"))?;
                if secs < 16.0 {
                    return Err("--duration: at least 16 s (eight phases of 2 s)".into());
                }
                args.duration = Duration::from_secs_f64(secs);
            }
            "--rate" => {
                let v = value("--rate")?;
                args.rate = v.parse().ok().filter(|r: &f64| *r >= 5.0).ok_or(format!(
                    "--rate {v}: a number of requests per second, at least 5"
                ))?;
            }
            "--bin" => args.bin = PathBuf::from(value("--bin")?),
            "--out" => args.out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(run(args));
    // Tasks still running (the simulator, WebSocket echoes) are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `target/soak/<unix time>`, next to the directory this binary was built into.
fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    target.join("soak").join(now.to_string())
}

fn log(t0: Instant, msg: impl std::fmt::Display) {
    eprintln!("[soak {:6.1} s] {msg}", t0.elapsed().as_secs_f64());
}

/// GETs `path` on the admin port over a fresh connection; the status and body, or the error.
async fn admin_get(
    client: &HttpClient,
    admin: SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    let req = http::Request::get(format!("http://{admin}{path}"))
        .body(Empty::new().boxed())
        .expect("a valid request");
    let exchange = async {
        let rsp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = rsp.status().as_u16();
        let body = rsp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// A sample of `/metrics`, e.g. `oz_proxy_config_reloads_total{result="applied"}`.
async fn metric(client: &HttpClient, admin: SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = admin_get(client, admin, "/metrics").await.ok()?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const APPLIED: &str = "oz_proxy_config_reloads_total{result=\"applied\"}";
const REJECTED: &str = "oz_proxy_config_reloads_total{result=\"rejected\"}";

/// Polls `series` until it reaches `want` (at most 5 s); the value reached.
async fn wait_metric(client: &HttpClient, admin: SocketAddr, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = metric(client, admin, series).await.unwrap_or(f64::NAN);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Oz calls to the login and refresh endpoints, and calls answered 401, so far.
fn auth_calls(sim: &OzSim) -> (usize, usize) {
    let calls = sim.calls();
    let renewals = calls
        .iter()
        .filter(|c| matches!(c.endpoint.as_deref(), Some("auth" | "refresh")))
        .count();
    let refused = calls.iter().filter(|c| c.status == 401).count();
    (renewals, refused)
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let out = args.out.clone().unwrap_or_else(default_out);
    std::fs::create_dir_all(&out)?;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };

    // The random block every body is cut from.
    let mut data = vec![0u8; 2 * 1024 * 1024];
    fastrand::Rng::with_seed(0x5eed).fill(&mut data);
    let data = Bytes::from(data);

    // The Oz simulator: password login (so the proxy has a token to renew), one PROCESSING poll.
    let sim = OzSim::new(SimConfig {
        polls_until_final: 1,
        keep_uploads: 256,
        keep_calls: 1_000_000,
        ..SimConfig::default()
    });
    let sim_listener = TcpListener::bind("127.0.0.1:0").await?;
    let oz_addr = sim_listener.local_addr()?;
    let sim_stop = CancellationToken::new();
    let sim_task = tokio::spawn(oz_sim::serve(sim_listener, sim.clone(), {
        let stop = sim_stop.clone();
        async move { stop.cancelled().await }
    }));

    let mut backend = Backend::start(data.clone()).await?;
    let password_file = out.join("oz-password");
    std::fs::write(&password_file, DEFAULT_PASSWORD)?;
    let config = out.join("config.yaml");
    let backend_addr = backend.addr;
    let yaml = |v| config_yaml(backend_addr, oz_addr, &password_file, v);
    write_atomically(&config, &yaml(Variant::Initial))?;

    let proxy = ProxyProcess::start(&args.bin, &config, &out)?;
    let t0 = Instant::now();
    log(
        t0,
        format_args!(
            "proxy {} (pid {}) on {}, admin {}; backend {}; Oz {}; output in {}",
            args.bin.display(),
            proxy.pid,
            proxy.traffic,
            proxy.admin,
            backend.addr,
            oz_addr,
            out.display()
        ),
    );
    let admin_client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut driver_checks: Vec<(String, bool, String)> = Vec::new();
    // The ready line is logged just before /ready turns 200, so /ready is polled (at most 5 s).
    let ready = loop {
        let r = admin_get(&admin_client, proxy.admin, "/ready").await;
        if matches!(r, Ok((200, _))) || t0.elapsed() > Duration::from_secs(5) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    driver_checks.push((
        "/ready 200 after start".into(),
        matches!(ready, Ok((200, _))),
        format!(
            "{ready:?} {:.0} ms after the ready line",
            t0.elapsed().as_secs_f64() * 1000.0
        ),
    ));

    // RSS and fds, once a second, until the process is gone.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let samples = samples.clone();
        let pid = proxy.pid;
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match proxy::sample(pid) {
                    Some(s) => samples.lock().unwrap().push(s),
                    None => return,
                }
            }
        }
    });

    // The traffic.
    let ctx = Arc::new(Ctx {
        proxy: proxy.traffic,
        data: data.clone(),
        captures_sent: AtomicU64::new(0),
        extra_route: AtomicBool::new(false),
        records: Mutex::new(Vec::new()),
    });
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let stop = CancellationToken::new();
    let mut workers = JoinSet::new();
    let mut n = 0;
    for (kind, count, share) in traffic::plan(args.rate) {
        let period = Duration::from_secs_f64(count as f64 / share);
        for _ in 0..count {
            n += 1;
            workers.spawn(traffic::worker(
                kind,
                n,
                period,
                ctx.clone(),
                h2.clone(),
                stop.clone(),
            ));
        }
    }
    log(
        t0,
        format_args!("{n} workers, {} req/s in total", args.rate),
    );

    // The schedule.
    let kinds = [
        PhaseKind::Baseline,
        PhaseKind::BackendKill,
        PhaseKind::BackendSlow,
        PhaseKind::Oz5xx,
        PhaseKind::OzHang,
        PhaseKind::OzToken,
        PhaseKind::ReloadValid,
        PhaseKind::ReloadInvalid,
    ];
    let slice = args.duration / kinds.len() as u32;
    let mut phases = Vec::new();
    let mut kills = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let start = tokio::time::Instant::from_std(t0 + slice * i as u32);
        let fault_end = start + slice.mul_f64(0.6);
        let end = start + slice;
        sleep_until(start).await;
        log(t0, format_args!("phase: {}", kind.name()));
        let at = |t: tokio::time::Instant| t.into_std().saturating_duration_since(t0).as_secs_f64();
        let note = match kind {
            PhaseKind::Baseline => "no fault".to_owned(),
            PhaseKind::BackendKill => {
                // Slow first, so that answers are in flight when it dies, and two 1 MiB answers of
                // our own (Content-Length and chunked) mid-body: the kill waits for them (at most
                // 2 s). Their clients must see the bodies cut, never complete.
                backend.shared.slow.store(true, Ordering::Relaxed);
                let ids = ["g1m-kill-length", "g1m-kill-chunked"];
                let probes = [false, true].map(|chunked| {
                    tokio::spawn(traffic::probe(
                        ctx.clone(),
                        Class::H1Get1m,
                        ids[usize::from(chunked)].to_owned(),
                        Some(chunked),
                    ))
                });
                let give_up = tokio::time::Instant::now() + Duration::from_secs(2);
                let probes_streaming = || {
                    let set = backend.shared.streaming.lock().unwrap();
                    ids.iter().all(|id| set.contains(*id))
                };
                while !probes_streaming() && tokio::time::Instant::now() < give_up {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let probes_mid_body = probes_streaming();
                let mid_body = backend.shared.streaming.lock().unwrap().len();
                let killed = tokio::time::Instant::now();
                kills.push(killed.into_std());
                backend.kill().await;
                backend.shared.slow.store(false, Ordering::Relaxed);
                for p in probes {
                    let _ = p.await;
                }
                let cut = ctx
                    .records
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|r| r.id.starts_with("g1m-kill-"))
                    .map(|r| format!("{}: {:?}", r.id, r.outcome))
                    .collect::<Vec<_>>();
                driver_checks.push((
                    "the backend died with 1 MiB answers mid-body (probes cut, not complete)"
                        .into(),
                    probes_mid_body && cut.len() == 2 && cut.iter().all(|c| c.contains("Reset(")),
                    format!("{mid_body} mid-body at the kill; {}", cut.join("; ")),
                ));
                sleep_until(fault_end).await;
                backend.restart().await?;
                format!(
                    "backend slow from {:.1} s, killed at {:.1} s with {mid_body} 1 MiB answers mid-body, listening again at {:.1} s",
                    at(start),
                    at(killed),
                    t0.elapsed().as_secs_f64()
                )
            }
            PhaseKind::BackendSlow => {
                let before = backend.shared.slowed.load(Ordering::Relaxed);
                backend.shared.slow.store(true, Ordering::Relaxed);
                sleep_until(fault_end).await;
                backend.shared.slow.store(false, Ordering::Relaxed);
                let slowed = backend.shared.slowed.load(Ordering::Relaxed) - before;
                driver_checks.push((
                    "the slow backend delayed answers".into(),
                    slowed > 0,
                    format!("{slowed} answers delayed"),
                ));
                format!(
                    "{slowed} answers {} ms late until {:.1} s",
                    backend::SLOW_HEAD.as_millis(),
                    at(fault_end)
                )
            }
            PhaseKind::Oz5xx => {
                let mid = start + (fault_end - start) / 2;
                sim.fail_next(Endpoint::Folders, 503, u32::MAX);
                sleep_until(mid).await;
                sim.fail_next(Endpoint::Folders, 503, 0);
                sim.fail_next(Endpoint::StartAnalyses, 500, u32::MAX);
                sleep_until(fault_end).await;
                sim.clear_faults();
                format!(
                    "uploads 503 until {:.1} s, analysis starts 500 until {:.1} s",
                    at(mid),
                    at(fault_end)
                )
            }
            PhaseKind::OzHang => {
                sim.set_latency(
                    Endpoint::Folders,
                    proxy::OZ_TIMEOUT + Duration::from_secs(1),
                );
                sleep_until(fault_end).await;
                sim.clear_faults();
                format!(
                    "uploads answered after {} s until {:.1} s",
                    (proxy::OZ_TIMEOUT + Duration::from_secs(1)).as_secs(),
                    at(fault_end)
                )
            }
            PhaseKind::OzToken => {
                let (renewals0, refused0) = auth_calls(&sim);
                let mut expiries = 0;
                loop {
                    sim.expire_all_tokens();
                    expiries += 1;
                    let next = tokio::time::Instant::now() + Duration::from_secs(1);
                    if next >= fault_end {
                        break;
                    }
                    sleep_until(next).await;
                }
                sleep_until(fault_end).await;
                let (renewals, refused) = auth_calls(&sim);
                driver_checks.push((
                    "the proxy renewed its Oz token after expiries".into(),
                    renewals > renewals0,
                    format!(
                        "{} logins/refreshes, {} calls refused 401",
                        renewals - renewals0,
                        refused - refused0
                    ),
                ));
                format!(
                    "{expiries} expiries; {} token renewals, {} Oz calls refused 401",
                    renewals - renewals0,
                    refused - refused0
                )
            }
            PhaseKind::ReloadValid => {
                let applied0 = metric(&admin_client, proxy.admin, APPLIED)
                    .await
                    .unwrap_or(0.0);
                write_atomically(&config, &yaml(Variant::Changed))?;
                let applied =
                    wait_metric(&admin_client, proxy.admin, APPLIED, applied0 + 1.0).await;
                let ok = applied >= applied0 + 1.0;
                driver_checks.push((
                    "the valid reload was applied".into(),
                    ok,
                    format!("applied {applied0} → {applied}"),
                ));
                if ok {
                    ctx.extra_route.store(true, Ordering::Relaxed);
                    // One capture on the new route now, whatever the workers' dice say.
                    traffic::probe(
                        ctx.clone(),
                        Class::CaptureForward,
                        format!("{}reload-probe", traffic::EXTRA_PREFIX),
                        None,
                    )
                    .await;
                }
                format!("max_frames 300 → 200, route /api/liveness/extra added; applied {applied0} → {applied}")
            }
            PhaseKind::ReloadInvalid => {
                let rejected0 = metric(&admin_client, proxy.admin, REJECTED)
                    .await
                    .unwrap_or(0.0);
                write_atomically(&config, "capture: [this is not yaml\n")?;
                let r1 = wait_metric(&admin_client, proxy.admin, REJECTED, rejected0 + 1.0).await;
                sleep_until(start + (fault_end - start) / 2).await;
                write_atomically(&config, &yaml(Variant::Weakened))?;
                let r2 = wait_metric(&admin_client, proxy.admin, REJECTED, rejected0 + 2.0).await;
                // The file on disk has no respond route now; the proxy must still answer one.
                traffic::probe(
                    ctx.clone(),
                    Class::CaptureRespond,
                    "crs-weakened-probe".into(),
                    None,
                )
                .await;
                sleep_until(fault_end).await;
                let applied0 = metric(&admin_client, proxy.admin, APPLIED)
                    .await
                    .unwrap_or(0.0);
                write_atomically(&config, &yaml(Variant::Changed))?;
                let applied =
                    wait_metric(&admin_client, proxy.admin, APPLIED, applied0 + 1.0).await;
                driver_checks.push((
                    "the invalid and the weakening files were refused, the valid one taken back"
                        .into(),
                    r1 >= rejected0 + 1.0 && r2 >= rejected0 + 2.0 && applied >= applied0 + 1.0,
                    format!(
                        "rejected {rejected0} → {r1} → {r2}, then applied {applied0} → {applied}"
                    ),
                ));
                format!(
                    "not YAML: rejected {rejected0} → {r1}; respond route removed: rejected → {r2}; valid file back at {:.1} s: applied {applied0} → {applied}",
                    at(fault_end)
                )
            }
            PhaseKind::Drain => unreachable!("the drain is not in the schedule"),
        };
        sleep_until(end).await;
        phases.push(Phase {
            kind,
            start: start.into_std(),
            fault_end: fault_end.into_std(),
            end: end.into_std(),
            note,
        });
    }

    // SIGTERM while the traffic runs. The backend answers slowly from now on, so that requests are
    // in flight when the listener closes and the drain has to wait for them.
    backend.shared.slow.store(true, Ordering::Relaxed);
    let sigterm = Instant::now();
    proxy.terminate();
    log(t0, "SIGTERM");
    // `/ready` every 50 ms until the process exits (or the driver gives up waiting for that).
    let stop_polling = CancellationToken::new();
    let poller = tokio::spawn({
        let client = admin_client.clone();
        let admin = proxy.admin;
        let mut exit = proxy.exit_watch();
        let stop_polling = stop_polling.clone();
        async move {
            let mut polls = Vec::new();
            while exit.borrow_and_update().is_none() && !stop_polling.is_cancelled() {
                let r = admin_get(&client, admin, "/ready").await.map(|(s, _)| s);
                polls.push((Instant::now(), r));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = exit.changed() => {}
                    _ = stop_polling.cancelled() => {}
                }
            }
            polls
        }
    });
    let limit = DRAIN_DELAY + DRAIN_DEADLINE + Duration::from_secs(10);
    let exit = tokio::time::timeout(limit, proxy.exited()).await.ok();
    log(t0, format_args!("proxy exited: {:?}", exit.map(|e| e.0)));
    stop_polling.cancel();
    let ready_polls = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // Kill it if it is still there (a failed invariant), so the workers see refusals and stop;
    // then read the rest of its output.
    let panics = tokio::task::spawn_blocking(move || proxy.finish()).await?;
    stop.cancel();
    let drained = tokio::time::timeout(traffic::HANG + Duration::from_secs(5), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        anyhow::bail!("workers did not stop");
    }
    let _ = sampler.await;
    let end = Instant::now();
    phases.push(Phase {
        kind: PhaseKind::Drain,
        start: sigterm,
        fault_end: end,
        end,
        note: format!(
            "SIGTERM at {:.1} s, backend slow from then on",
            sigterm.duration_since(t0).as_secs_f64()
        ),
    });

    let mut records = std::mem::take(&mut *ctx.records.lock().unwrap());
    records.sort_by_key(|r| r.start);
    let oz_request_ids: HashSet<String> = sim
        .uploads()
        .iter()
        .filter_map(|u| {
            u.payload.as_ref()?["folder:meta_data"]["request_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    driver_checks.extend(fault_checks(&phases, &records));
    backend.kill().await;
    let seen = backend.seen();
    let backend_violations = backend.violations();
    sim_stop.cancel();
    let _ = sim_task.await;
    let samples = std::mem::take(&mut *samples.lock().unwrap());

    let facts = Facts {
        title: format!(
            "Soak: {:.0} s of traffic at {} req/s, then SIGTERM; proxy {} ({} driver build), {} CPUs",
            args.duration.as_secs_f64(),
            args.rate,
            std::env::current_dir()
                .ok()
                .and_then(|d| args.bin.strip_prefix(d).ok())
                .unwrap_or(&args.bin)
                .display(),
            profile,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        ),
        t0,
        records,
        phases,
        kills,
        sigterm,
        exit,
        ready_polls,
        samples,
        panics,
        seen,
        backend_violations,
        oz_request_ids,
        driver_checks,
    };
    let (table, passed) = report::report(&facts);
    println!("{table}");
    write_files(&out, &facts, &table)?;
    log(
        t0,
        format_args!(
            "report, samples and every request not ok are in {}",
            out.display()
        ),
    );
    Ok(passed)
}

/// Each fault had an effect the clients could see (else the soak proved nothing about it).
fn fault_checks(phases: &[Phase], records: &[traffic::Record]) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    for p in phases {
        let during: Vec<_> = records
            .iter()
            .filter(|r| p.start <= r.start && r.start < p.fault_end)
            .collect();
        let count = |f: &dyn Fn(&traffic::Record) -> bool| during.iter().filter(|r| f(r)).count();
        let (what, n) = match p.kind {
            PhaseKind::BackendKill => (
                "the backend kill was felt (passthrough answered 502 or cut)",
                count(&|r| r.class.passthrough() && !matches!(r.outcome, Outcome::Ok)),
            ),
            PhaseKind::Oz5xx => (
                "Oz 5xx reached the clients as capture problems",
                count(&|r| matches!(r.outcome, Outcome::Problem { status: 502, .. })),
            ),
            PhaseKind::OzHang => (
                "a hanging Oz reached the clients as 504",
                count(&|r| matches!(r.outcome, Outcome::Problem { status: 504, .. })),
            ),
            PhaseKind::ReloadValid | PhaseKind::ReloadInvalid => (
                "captures on the route the reload added got verdicts",
                records
                    .iter()
                    .filter(|r| {
                        p.start <= r.start
                            && r.start < p.end
                            && r.id.starts_with(traffic::EXTRA_PREFIX)
                            && matches!(r.outcome, Outcome::Ok)
                    })
                    .count(),
            ),
            _ => continue,
        };
        out.push((
            format!("{} ({})", what, p.kind.name()),
            n > 0,
            format!("{n} requests"),
        ));
    }
    out
}

/// The report, the RSS/fd samples and every request that did not end ok, next to the proxy's
/// output.
fn write_files(out: &Path, f: &Facts, table: &str) -> std::io::Result<()> {
    std::fs::write(out.join("report.md"), table)?;
    let mut csv = String::from("seconds,rss_kib,fds\n");
    for s in &f.samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{}",
            s.at.saturating_duration_since(f.t0).as_secs_f64(),
            s.rss_kib,
            s.fds
        );
    }
    std::fs::write(out.join("samples.csv"), csv)?;
    let mut not_ok = String::new();
    for r in f
        .records
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Ok))
    {
        let _ = writeln!(
            not_ok,
            "{:8.3} {:8.1} ms {:<32} {:<14} {:?}",
            r.start.saturating_duration_since(f.t0).as_secs_f64(),
            (r.end - r.start).as_secs_f64() * 1000.0,
            r.class.name(),
            r.id,
            r.outcome
        );
    }
    std::fs::write(out.join("not-ok.txt"), not_ok)?;
    Ok(())
}
