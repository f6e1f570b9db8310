//! Capture transform benchmark (`cargo bench --bench capture`).
//!
//! Times `capture::prepare_frames_upload` (parse the `on_capture_complete` JSON, decode every
//! frame's base64, build the stored ZIP and the multipart upload) on generated captures of 1, 5
//! and 20 MiB whose frames are real 30–60 KB JPEGs (`benches/support/captures.rs`), plus a 20 MiB
//! body with every `/` escaped, whose every frame must be unescaped before it is decoded.
//!
//! Two parts, one run:
//! 1. divan's statistics for each size, with throughput (bytes of JSON input per second);
//! 2. a summary table: median time and MB/s on one core, the peak extra heap a capture takes
//!    (a counting global allocator: highest live bytes during the call minus live bytes before
//!    it, the body being already in memory), and the same bodies through the straightforward
//!    Python handler (`benches/capture_baseline.py`: `json` + `base64` + `zipfile`), written to
//!    temporary files and timed by Python in this same run, so the ratio comes from one machine
//!    and one moment.
//!
//! The transform is single-threaded, so MB/s is per core. `BENCH_SUMMARY=0` skips part 2;
//! `BENCH_PYTHON=path` picks the interpreter (default `python3`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oz_capture_proxy::capture::{prepare_frames_upload, TransformOptions};
use oz_capture_proxy::config::BestFrame;

#[path = "support/captures.rs"]
mod captures;

// === Counting allocator =========================================================================

/// The system allocator, counting live bytes and their high-water mark.
struct PeakAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

// === Inputs =====================================================================================

const MIB: usize = 1024 * 1024;

/// A generated body, built once per process.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    frames: usize,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        [
            ("1 MiB", MIB, false),
            ("5 MiB", 5 * MIB, false),
            ("20 MiB", 20 * MIB, false),
            ("20 MiB, `\\/`-escaped", 20 * MIB, true),
        ]
        .into_iter()
        .map(|(name, size, escaped)| {
            let (body, frames) = captures::capture_body(size, escaped);
            Case { name, body, frames }
        })
        .collect()
    })
}

fn case(name: &str) -> &'static Case {
    cases().iter().find(|c| c.name == name).expect("known case")
}

/// The options of a default route (`capture.*` defaults), with room for 20 MiB of frames.
fn options(meta: &BTreeMap<String, String>) -> TransformOptions<'_> {
    TransformOptions {
        file_key: "video1",
        max_frames: 10_000,
        max_frame_bytes: 4 * MIB,
        best_frame: BestFrame::None,
        refuse_unchecked_images: false,
        request_id: "3f2b8c1e-6d3a-4f0e-9a7b-5c2d1e0f9a8b",
        folder_meta_data: meta,
        boundary: None,
    }
}

// === divan ======================================================================================

fn main() {
    divan::main();
    if std::env::var("BENCH_SUMMARY").as_deref() != Ok("0") {
        summary();
    }
}

#[divan::bench(args = ["1 MiB", "5 MiB", "20 MiB", "20 MiB, `\\/`-escaped"], sample_count = 20, sample_size = 1)]
fn transform(bencher: divan::Bencher, name: &str) {
    let case = case(name);
    let meta = BTreeMap::new();
    bencher
        .counter(divan::counter::BytesCount::new(case.body.len()))
        .bench(|| {
            prepare_frames_upload(divan::black_box(&case.body), &options(&meta))
                .expect("valid capture")
        });
}

// === Summary with the Python baseline ===========================================================

struct Measured {
    median: Duration,
    runs: usize,
    peak_extra: usize,
    upload_len: usize,
}

fn measure(case: &Case) -> Measured {
    let meta = BTreeMap::new();
    let opts = options(&meta);
    // Peak extra heap: the body is already allocated (it is the request buffer in the proxy).
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let upload = prepare_frames_upload(&case.body, &opts).expect("valid capture");
    let peak_extra = PEAK.load(Ordering::Relaxed) - before;
    let upload_len = upload.upload.content_length() as usize;
    drop(upload);

    // At least 7 runs and about 2 s per case.
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 7 || (start.elapsed() < Duration::from_secs(2) && times.len() < 200) {
        let t = Instant::now();
        let upload = prepare_frames_upload(std::hint::black_box(&case.body), &opts);
        times.push(t.elapsed());
        drop(std::hint::black_box(upload));
    }
    times.sort();
    Measured {
        median: times[times.len() / 2],
        runs: times.len(),
        peak_extra,
        upload_len,
    }
}

/// Runs the Python baseline on the same bodies; `None` (with a note) when it cannot run.
fn python_baseline(cases: &[Case]) -> Option<Vec<(f64, usize)>> {
    let dir = std::env::temp_dir().join(format!("oz-capture-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut files = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let path = dir.join(format!("capture-{i}.json"));
        std::fs::write(&path, &c.body).ok()?;
        files.push(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/capture_baseline.py");
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(&files)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "python baseline failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("python baseline not run ({python}: {e})");
            return None;
        }
    };
    // One line per file: "<median seconds> <upload bytes>".
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(f64, usize)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    (rows.len() == cases.len()).then_some(rows)
}

fn summary() {
    let cases = cases();
    let measured: Vec<Measured> = cases.iter().map(measure).collect();
    let python = python_baseline(cases);
    let mbs = |bytes: usize, secs: f64| bytes as f64 / 1e6 / secs;

    println!();
    println!("### Capture transform (parse + decode + ZIP + multipart), one core");
    println!();
    println!(
        "| capture | frames | body | Rust median | Rust MB/s | peak extra heap | extra / body | body + extra within the limiter's 2 × body | Python median | Python MB/s | Rust / Python |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for (i, (c, m)) in cases.iter().zip(&measured).enumerate() {
        let secs = m.median.as_secs_f64();
        let (py_med, py_mbs, ratio) = match &python {
            Some(rows) => {
                let s = rows[i].0;
                (
                    format!("{:.1} ms", s * 1e3),
                    format!("{:.0}", mbs(c.body.len(), s)),
                    format!("**{:.1}×**", s / secs),
                )
            }
            None => ("—".into(), "—".into(), "—".into()),
        };
        let within = if m.peak_extra <= c.body.len() {
            "yes"
        } else {
            "**no**"
        };
        println!(
            "| {} | {} | {:.2} MiB | {:.2} ms ({} runs) | {:.0} | {:.2} MiB | {:.2} | {} | {} | {} | {} |",
            c.name,
            c.frames,
            c.body.len() as f64 / MIB as f64,
            secs * 1e3,
            m.runs,
            mbs(c.body.len(), secs),
            m.peak_extra as f64 / MIB as f64,
            m.peak_extra as f64 / c.body.len() as f64,
            within,
            py_med,
            py_mbs,
            ratio,
        );
        if let Some(rows) = &python {
            // Both build the same parts; sizes differ only by boundary and JSON spacing.
            let diff = rows[i].1.abs_diff(m.upload_len);
            if diff > 1024 {
                eprintln!(
                    "warning: {}: Python upload is {} bytes, Rust {}",
                    c.name, rows[i].1, m.upload_len
                );
            }
        }
    }
    println!();
    println!("MB = 10^6 bytes of JSON input. Peak extra heap = highest live heap bytes during the call minus those before it (the body itself is not counted). `capture::limit` reserves 2 × the body per capture, body included, so the extra must stay within 1 × body. Python: {}.",
        python_version());
}

fn python_version() -> String {
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    std::process::Command::new(python)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "not available".into())
}
