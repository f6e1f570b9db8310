//! Imports run one way (docs/ARCHITECTURE.md, "Invariants"): every module of `src/` stands on a
//! floor, and its code may name only modules on lower floors. A `use crate::…` that points up or
//! sideways fails here, with the file and line, before it becomes a cycle.

use std::path::{Path, PathBuf};

/// The floors, from the ground up. A module may use the modules on lower floors only.
const FLOORS: &[&[&str]] = &[
    &[
        "config",
        "metrics",
        "body",
        "error_chain",
        "backoff",
        "client_tls",
    ],
    &["runtime", "oz_sim", "state", "trace"],
    &["telemetry", "oz", "verdict_token"],
    &["capture", "admin"],
    &["error"],
    &["problem"],
    &["proxy", "lookup"],
    &["reload"],
    &["server"],
    &["demo"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a line of code names: `crate::a::…` and each item of `crate::{a, b::c}`.
fn named_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let head = item.trim().split("::").next().unwrap_or("");
                if !head.is_empty() {
                    names.push(head.to_owned());
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push(head);
        }
    }
    names
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen_modules = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name")
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let floor = floor_of(&top).unwrap_or_else(|| {
            panic!(
                "src/{} belongs to `{top}`, which has no floor in FLOORS",
                rel.display()
            )
        });
        seen_modules += 1;
        let text = std::fs::read_to_string(file).expect("a readable source file");
        // Unit tests may reach anywhere (the simulator's tests build real captures).
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            for used in named_modules(line) {
                if used == top || used == "Error" {
                    continue;
                }
                match floor_of(&used) {
                    Some(f) if f < floor => {}
                    _ => wrong.push(format!(
                        "src/{}:{}: `{top}` uses `crate::{used}`",
                        rel.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(seen_modules > 50, "only {seen_modules} files read");
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn named_modules_reads_paths_and_groups() {
    assert_eq!(named_modules("use crate::config::Config;"), ["config"]);
    assert_eq!(
        named_modules("use crate::{capture, oz::Error};"),
        ["capture", "oz"]
    );
    assert_eq!(
        named_modules("x = crate::error_chain::chain(&e) + crate::metrics::X;"),
        ["error_chain", "metrics"]
    );
}
