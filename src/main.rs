//! The `oz-capture-proxy` command: parses the command line and calls into the library.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oz_capture_proxy::config::{self, Config, LogFormat};
use oz_capture_proxy::reload::{self, ConfigSource};
use oz_capture_proxy::runtime::deferred::Deferred;
use oz_capture_proxy::{demo, oz_sim, server, telemetry};
use tokio_util::sync::CancellationToken;

/// Exit code for a bad command line or config (sysexits EX_USAGE), as linkerd2-proxy does.
const EX_USAGE: u8 = 64;

/// Transparent HTTP reverse proxy that does the Oz Liveness work of a legacy backend.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Config file (YAML). Every key can be overridden by OZ_PROXY__SECTION__KEY.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format; overrides `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit (0 = valid).
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the simulated Oz API alone, for tests and integrators without an Oz account.
    SimulateOz {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Service token the simulator accepts (besides tokens from login).
        #[arg(long, env = "OZ_SIM_TOKEN")]
        token: Option<String>,
        /// Login e-mail the simulator accepts.
        #[arg(long, default_value = oz_sim::DEFAULT_EMAIL)]
        email: String,
        /// Login password the simulator accepts.
        #[arg(long, env = "OZ_SIM_PASSWORD", default_value = oz_sim::DEFAULT_PASSWORD, hide_default_value = true)]
        password: String,
        /// Verdict of every analysis: SUCCESS, DECLINED, OPERATOR_REQUIRED or FAILED.
        #[arg(long, default_value = "SUCCESS")]
        verdict: oz_sim::Verdict,
        /// Polls that answer PROCESSING before an analysis is final.
        #[arg(long, default_value_t = 1)]
        polls_until_final: u32,
    },
    /// Run the proxy, a simulated Oz API and a stand-in backend on loopback, push a capture
    /// through both modes, print what happened, and keep serving for curl.
    Demo {
        /// The proxy's traffic address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The proxy's admin address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    oz_capture_proxy::runtime::allocator::one_arena();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => check(&config),
        Some(Command::SimulateOz {
            listen,
            token,
            email,
            password,
            verdict,
            polls_until_final,
        }) => {
            let cfg = oz_sim::SimConfig {
                token,
                email,
                password,
                verdict,
                polls_until_final,
                ..oz_sim::SimConfig::default()
            };
            simulate_oz(listen, cfg, cli.log_format.unwrap_or(LogFormat::Text))
        }
        Some(Command::Demo {
            listen,
            admin_listen,
        }) => demo(
            demo::DemoOptions {
                listen,
                admin_listen,
            },
            cli.log_format.unwrap_or(LogFormat::Text),
        ),
        None => match cli.config {
            Some(path) => run(path, cli.log_format),
            None => {
                eprintln!("error: --config FILE is required to run the proxy (see --help)");
                ExitCode::from(EX_USAGE)
            }
        },
    }
}

/// The process environment, reduced to our overrides and the standard OpenTelemetry variables.
/// Read once here and passed down.
fn overrides() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("OZ_PROXY__") || k.starts_with("OTEL_"))
        .collect()
}

/// Loads the config at `path` and compiles its capture routes, as the proxy's start does: what
/// passes here, the proxy starts with.
fn load(path: &std::path::Path, env: &BTreeMap<String, String>) -> Result<Config, config::Error> {
    let config = Config::load(path, env)?;
    reload::compile(&config)?;
    Ok(config)
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path, &overrides()) {
        Ok(cfg) => {
            println!(
                "config ok: listen {}, admin_listen {}, backend {}, {} capture route(s)",
                cfg.listen,
                cfg.admin_listen,
                cfg.backend.url,
                cfg.capture.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config error in {}: {e}", path.display());
            ExitCode::from(EX_USAGE)
        }
    }
}

fn run(path: PathBuf, log_format: Option<LogFormat>) -> ExitCode {
    let env = overrides();
    let config = match load(&path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error in {}: {e}", path.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    // Log lines leave when a worker goes idle, not on the request path (runtime::deferred).
    let logs = Deferred::default();
    let access = telemetry::init_deferred(
        log_format.unwrap_or(config.log.format),
        &config.log.level,
        &logs,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park({
            let logs = logs.clone();
            move || logs.park()
        })
        .on_thread_stop({
            let logs = logs.clone();
            move || logs.flush()
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit_logs = logs.clone();
    let result = runtime.block_on(async move {
        let listeners = server::Listeners::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone(), Some(exit_logs)));
        server::run(
            config,
            Some(ConfigSource { path, env }),
            listeners,
            shutdown,
            access,
        )
        .await
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "proxy failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    logs.flush();
    code
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn simulate_oz(listen: SocketAddr, cfg: oz_sim::SimConfig, log_format: LogFormat) -> ExitCode {
    telemetry::init(log_format, "info");
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "simulated Oz API on http://{} (login {} / <password>; GET /_sim/uploads, POST /_sim/faults)",
            listener.local_addr()?,
            cfg.email
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone(), None));
        oz_sim::serve(listener, oz_sim::OzSim::new(cfg), async move { shutdown.cancelled().await }).await?;
        Ok(())
    });
    finish(result)
}

fn demo(opts: demo::DemoOptions, log_format: LogFormat) -> ExitCode {
    // Only warnings: the demo prints its own readable account.
    telemetry::init(log_format, "warn");
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(on_signal(stop.clone(), None));
        demo::run(opts, stop).await
    });
    finish(result)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM is how Kubernetes stops a container; SIGINT is Ctrl-C in a terminal. As PID 1 in a
/// scratch image the process gets no default handler, so both are handled explicitly. A second
/// signal skips the drain (writing out the log lines still held in `logs` first).
async fn on_signal(shutdown: CancellationToken, logs: Option<Deferred>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for n in 0..2 {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if n == 0 {
            tracing::info!(signal = name, "shutting down");
            shutdown.cancel();
        } else {
            tracing::warn!(signal = name, "second signal, exiting now");
            if let Some(logs) = &logs {
                logs.flush();
            }
            std::process::exit(130);
        }
    }
}
