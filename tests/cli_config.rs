//! The binary: `check --config FILE` (exit status, messages that name the key, secrets never
//! printed, environment overrides) and a real run that logs one JSON access line per request and
//! exits 0 on SIGTERM.

mod support;

use http::Request;
use support::backend::backend;
use support::bin::{check, ProxyProcess, TempDir};
use support::client;

const VALID: &str = r#"listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
backend:
  url: "http://127.0.0.1:3000"
"#;

/// Runs `check` on `yaml` (with `env`) and returns its output.
fn check_yaml(yaml: &str, env: &[(&str, &str)]) -> support::bin::Output {
    let dir = TempDir::new("check");
    let file = dir.write("config.yaml", yaml);
    check(&file, env)
}

fn assert_refused(out: &support::bin::Output, needles: &[&str]) {
    assert!(!out.status.success(), "check accepted it:\n{}", out.all());
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "stderr does not name `{n}`:\n{}",
            out.stderr
        );
    }
}

#[test]
fn check_accepts_a_valid_config_with_exit_0() {
    let out = check_yaml(VALID, &[]);
    assert!(out.status.success(), "{}", out.all());
    assert!(out.stdout.contains("config ok"), "{}", out.stdout);
}

#[test]
fn check_refuses_an_unknown_key_and_names_it() {
    let out = check_yaml(&format!("{VALID}  timeuot: 5s\n"), &[]);
    assert_refused(&out, &["backend", "timeuot"]);
}

#[test]
fn check_refuses_a_bad_duration_and_names_the_key_path() {
    let out = check_yaml(&format!("{VALID}shutdown:\n  drain_delay: soon\n"), &[]);
    assert_refused(&out, &["shutdown.drain_delay"]);
}

#[test]
fn check_refuses_a_backend_url_with_another_scheme_and_names_the_key() {
    let yaml = VALID.replace("http://127.0.0.1:3000", "ftp://127.0.0.1:3000");
    assert_refused(&check_yaml(&yaml, &[]), &["backend.url"]);
}

#[test]
fn check_refuses_an_unparsable_backend_url_and_names_the_key() {
    let yaml = VALID.replace("http://127.0.0.1:3000", "http://exa mple:3000");
    assert_refused(&check_yaml(&yaml, &[]), &["backend.url"]);
}

#[test]
fn check_never_prints_a_password_given_as_a_list() {
    let out = check_yaml(
        &format!("{VALID}oz:\n  auth:\n    password: [\"hunter2-in-a-list\"]\n"),
        &[],
    );
    assert_refused(&out, &["oz.auth.password"]);
    assert!(!out.all().contains("hunter2"), "{}", out.all());
}

#[test]
fn check_never_prints_a_token_of_the_wrong_type() {
    let out = check_yaml(
        &format!("{VALID}oz:\n  auth:\n    token:\n      value: \"s3cr3t-token-value\"\n"),
        &[],
    );
    assert_refused(&out, &["oz.auth.token"]);
    assert!(!out.all().contains("s3cr3t"), "{}", out.all());
}

#[test]
fn check_never_prints_a_secret_from_the_environment() {
    // A valid secret next to an invalid setting: the message is about the setting only.
    let out = check_yaml(
        &format!("{VALID}shutdown:\n  drain_deadline: later\n"),
        &[("OZ_PROXY__OZ__AUTH__PASSWORD", "env-secret-pw")],
    );
    assert_refused(&out, &["shutdown.drain_deadline"]);
    assert!(!out.all().contains("env-secret-pw"), "{}", out.all());
}

#[test]
fn environment_override_of_backend_url_applies() {
    let out = check_yaml(
        VALID,
        &[("OZ_PROXY__BACKEND__URL", "http://127.0.0.1:4567")],
    );
    assert!(out.status.success(), "{}", out.all());
    assert!(
        out.stdout.contains("backend http://127.0.0.1:4567"),
        "{}",
        out.stdout
    );
}

#[test]
fn environment_override_with_a_bad_value_is_refused_and_named() {
    let out = check_yaml(VALID, &[("OZ_PROXY__BACKEND__TIMEOUT", "eventually")]);
    assert_refused(&out, &["backend.timeout"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_one_json_access_line_without_the_query_and_exits_0_on_sigterm() {
    let mut backend = backend().start().await;
    let dir = TempDir::new("run");
    let file = dir.write(
        "config.yaml",
        format!(
            "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\nbackend:\n  url: \"http://{}\"\n\
             shutdown:\n  drain_delay: \"0s\"\n  drain_deadline: \"5s\"\nreload:\n  interval: \"0s\"\n\
             log:\n  format: json\n  level: info\n",
            backend.addr
        ),
    );
    let proxy = tokio::task::spawn_blocking(move || ProxyProcess::start(&file))
        .await
        .unwrap();

    let req = Request::get(format!(
        "http://{}/reports/42?token=query-secret-value&page=2",
        proxy.traffic
    ))
    .header("x-request-id", "log-line-request-id")
    .body(client::empty())
    .unwrap();
    let rsp = client::send(&client::http1_unpooled(), req).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(client::text(rsp).await, "ok");
    assert_eq!(
        backend.next().await.target,
        "/reports/42?token=query-secret-value&page=2"
    );

    let (status, lines) = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        lines.join("\n")
    );

    let access: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(
        access.len(),
        1,
        "one access line per request:\n{}",
        lines.join("\n")
    );
    let line = &access[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/reports/42");
    assert_eq!(line["route"], "passthrough");
    assert_eq!(line["status"], 200);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );
    assert_eq!(line["bytes"], 2);
    assert_eq!(line["request_id"], "log-line-request-id");
    for l in &lines {
        assert!(
            !l.contains("query-secret-value"),
            "the query leaked into a log line: {l}"
        );
    }
}

#[test]
fn check_never_prints_a_secret_given_in_place_of_the_auth_section() {
    let out = check_yaml(
        &format!("{VALID}oz:\n  auth: \"tok-in-place-of-auth\"\n"),
        &[],
    );
    assert_refused(&out, &["oz.auth"]);
    assert!(!out.all().contains("tok-in-place"), "{}", out.all());
}

#[test]
fn check_never_prints_a_secret_set_on_the_auth_section_from_the_environment() {
    let out = check_yaml(VALID, &[("OZ_PROXY__OZ__AUTH", "env-tok-on-section")]);
    assert_refused(&out, &["oz.auth"]);
    assert!(!out.all().contains("env-tok"), "{}", out.all());
}

#[test]
fn check_refuses_credentials_in_the_backend_url_without_printing_them() {
    let yaml = VALID.replace(
        "http://127.0.0.1:3000",
        "http://svc:pa55word@127.0.0.1:3000",
    );
    let out = check_yaml(&yaml, &[]);
    assert_refused(&out, &["backend.url"]);
    assert!(!out.all().contains("pa55word"), "{}", out.all());
}

#[test]
fn check_refuses_a_header_limit_the_server_cannot_enforce() {
    // hyper's HTTP/1 read buffer (which bounds the request head) cannot be below 8 KiB; a
    // smaller limit would be silently raised, so it is refused instead.
    let out = check_yaml(&format!("{VALID}server:\n  max_header_bytes: 4096\n"), &[]);
    assert_refused(&out, &["server.max_header_bytes"]);
}

#[test]
fn check_refuses_routes_that_normalize_to_one_path_with_exit_64() {
    // Duplicates are found where routes are compiled for dispatch, not by the loader; `check`
    // compiles them too, so what it accepts the proxy starts with.
    let yaml = format!(
        "{VALID}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a/b\n    - path: //a/b/\n"
    );
    let out = check_yaml(&yaml, &[]);
    assert_refused(
        &out,
        &[
            "capture.routes[1].path",
            "duplicates another route (both normalize to `/a/b`)",
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", out.all());
}
