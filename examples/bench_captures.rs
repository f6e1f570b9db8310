//! Writes realistic capture bodies for `benches/capture_e2e.sh`: JSON whose frames are valid
//! 30–60 KB JPEGs, the same generator `benches/capture.rs` times.
//!
//! ```text
//! cargo run --release --example bench_captures -- [--escaped] OUT_DIR SIZE_MIB...
//! ```
//!
//! Writes `OUT_DIR/capture-<SIZE>mib.json` for each size, each at most that many MiB, and prints
//! one line per file: path, bytes, frames. With `--escaped`, every `/` is written `\/`.

#[path = "../benches/support/captures.rs"]
mod captures;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let escaped = args.next_if(|a| a == "--escaped").is_some();
    let Some(dir) = args.next() else {
        eprintln!("usage: bench_captures [--escaped] OUT_DIR SIZE_MIB...");
        return std::process::ExitCode::from(64);
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    for size in args {
        let Ok(mib) = size.parse::<f64>() else {
            eprintln!("not a size in MiB: {size}");
            return std::process::ExitCode::from(64);
        };
        let (body, frames) = captures::capture_body((mib * 1024.0 * 1024.0) as usize, escaped);
        let path = dir.join(format!("capture-{size}mib.json"));
        if let Err(e) = std::fs::write(&path, &body) {
            eprintln!("cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        println!("{} {} {}", path.display(), body.len(), frames);
    }
    std::process::ExitCode::SUCCESS
}
