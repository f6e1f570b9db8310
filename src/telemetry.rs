//! Log output: JSON lines by default, plain text on request, filtered by `log.level`.
//!
//! Logs carry method, path, status, durations, sizes and request ids; never bodies, frames,
//! `additional_info`, tokens or query strings.

use crate::config::LogFormat;

/// Installs the global subscriber (the one piece of process state, owned by `main`).
pub fn init(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests, demo) keeps the first subscriber; that is fine.
    let _ = result;
}
