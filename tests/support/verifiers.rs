//! The README's verdict verifiers, run exactly as written: Python (PyJWT), Node (jose) and Go
//! (golang-jwt), each an implementation that shares no code with the proxy's signer.
//!
//! A case is a JSON object: `name`, `token`, and what to verify against (`jwks_url`, or
//! `secret_b64` for HS256 in Python), with `body_b64`, `binding_b64`, `audience` and `at` (a
//! Unix time to verify as of, Python only) where a case needs them. Each runner answers a list of
//! `{name, ok, claims | error}` in the same order. `scripts/test.sh` installs what they need;
//! a missing part fails the test with a message saying so, it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use super::bin::TempDir;

/// Where Debian's `golang-github-golang-jwt-jwt-dev` puts golang-jwt v4.
const DEBIAN_GOLANG_JWT: &str = "/usr/share/gocode/src/github.com/golang-jwt/jwt";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Standard base64, as the cases carry bodies and bindings.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fresh Ed25519 private key as PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes.
pub fn ed25519_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("an Ed25519 key")
        .serialize_pem()
}

/// The header and the claims of a compact JWS, decoded without any verification.
pub fn header_and_claims(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS: {token}");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .expect("base64url"),
        )
        .expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

/// Runs `cmd`, feeding it `cases` on stdin, and reads its answers.
async fn run(mut cmd: Command, what: &'static str, cases: Vec<Value>) -> Vec<Value> {
    let input = serde_json::to_vec(&cases).expect("cases serialize");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the {what} verifier ({e}); scripts/test.sh installs it")
            });
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&input)
            .expect("cases written");
        child.wait_with_output().expect("the verifier ran")
    })
    .await
    .expect("the verifier task");
    assert!(
        output.status.success(),
        "the {what} verifier failed to run (scripts/test.sh installs what it needs): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON answers");
    assert_eq!(results.len(), cases.len(), "one answer per case");
    results
}

/// The README's Python verifier (`tests/verdict/check_tokens.py`).
pub async fn python(cases: Vec<Value>) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/verdict/check_tokens.py"));
    run(cmd, "Python (PyJWT)", cases).await
}

/// The README's Python verifier on one case that must pass; its claims.
pub async fn verified(case: Value) -> Value {
    let result = python(vec![case]).await.remove(0);
    assert_eq!(result["ok"], true, "{result}");
    result["claims"].clone()
}

/// The README's Node verifier (`tests/verdict/check_tokens.mjs`), with `jose` from
/// `target/verdict-node`.
pub async fn node(cases: Vec<Value>) -> Vec<Value> {
    let modules = root().join("target/verdict-node");
    assert!(
        modules.join("node_modules/jose/package.json").is_file(),
        "jose is not installed in {}: run the tests with scripts/test.sh, which installs it",
        modules.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/verdict/check_tokens.mjs"))
        .arg(modules);
    run(cmd, "Node (jose)", cases).await
}

/// The README's Go verifier, built with `tests/verdict/go/main.go` and Debian's golang-jwt (no
/// module download: GOPROXY is off).
pub async fn go(cases: Vec<Value>) -> Vec<Value> {
    assert!(
        Path::new(DEBIAN_GOLANG_JWT).join("go.mod").is_file(),
        "golang-jwt is not in {DEBIAN_GOLANG_JWT}: run the tests with scripts/test.sh, which installs golang-go and golang-github-golang-jwt-jwt-dev"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let marker = "<!-- verifier:go -->\n```go\n";
    let start = readme
        .find(marker)
        .expect("README.md has a `<!-- verifier:go -->` block");
    let block = &readme[start + marker.len()..];
    let block = &block[..block.find("```").expect("the block ends")];
    let dir = TempDir::new("verdict-go");
    std::fs::create_dir(dir.path.join("verdict")).expect("a package directory");
    dir.write("verdict/verdict.go", block);
    dir.write(
        "main.go",
        std::fs::read(root().join("tests/verdict/go/main.go")).expect("the Go runner"),
    );
    dir.write(
        "go.mod",
        format!(
            "module ozverdict\n\ngo 1.19\n\nrequire github.com/golang-jwt/jwt/v4 v4.4.3\n\nreplace github.com/golang-jwt/jwt/v4 => {DEBIAN_GOLANG_JWT}\n"
        ),
    );
    let cache: PathBuf = root().join("target/verdict-go-cache");
    let mut cmd = Command::new("go");
    cmd.args(["run", "."])
        .current_dir(&dir.path)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", &cache)
        .env("GOPATH", cache.join("gopath"));
    let results = run(cmd, "Go (golang-jwt)", cases).await;
    drop(dir);
    results
}
