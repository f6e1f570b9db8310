//! Any YAML text and `OZ_PROXY__…` overrides through `Config::from_yaml`: it never panics, and an
//! error never quotes a secret. A known secret is planted as the value of `oz.auth.token`,
//! `oz.auth.password` or `oz.auth.email` (or of `oz.auth` or `oz` itself, where it is most
//! likely a misplaced token), in the YAML or in an override, in several shapes; whatever the
//! rest of the input, the error message must not contain it.
//!
//! Input: a 12-byte header, then text (UTF-8, lossily), so that a seed is a config file behind
//! a header (`fuzz/seeds/config_loader/`):
//! - byte 0: where the secret goes, modulo 6: nowhere, `oz.auth.token`, `oz.auth.password`,
//!   `oz.auth.email`, `oz.auth`, `oz`;
//! - byte 1: how it is written, modulo 6: see [`Shape`];
//! - byte 2: bit 0, in an override instead of the YAML; bit 1, after a valid `backend` section;
//! - byte 3: how many of bytes 4..8 go before the marker (low nibble, modulo 5) and of bytes
//!   8..12 after it (high nibble, modulo 5); each byte is an ASCII character, or one of a few
//!   others above 127;
//! - the text: lines `OZ_PROXY__NAME=value` are overrides, the rest is YAML, after the planted
//!   part.
//!
//! Inputs that name a device or a pseudo-file system are skipped: a `token_file` of
//! `/dev/zero` would be read to the end (the loader reads what the operator points it at).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::config::Config;

/// Stands for the secret; it occurs nowhere in the proxy's own messages.
const MARKER: &str = "hunter2SECRETz";
const HEADER: usize = 12;

#[derive(Debug)]
enum Key {
    Token,
    Password,
    Email,
    /// `oz.auth: <secret>`.
    Auth,
    /// `oz: <secret>`.
    Oz,
}

#[derive(Debug)]
enum Shape {
    /// A double-quoted scalar (escapes and all).
    Quoted,
    /// A plain scalar, when the value allows one (else quoted: a plain `a: b` would be YAML
    /// structure, and the marker the value of some other key).
    Plain,
    /// A single-quoted scalar.
    SingleQuoted,
    /// A literal block scalar with an explicit indentation, so no line can end it early.
    Block,
    /// A list of the secret.
    List,
    /// A map whose value is the secret.
    Map,
}

fn decoration(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0..=127 => char::from(b),
            _ => ['\u{e9}', '\u{85}', '\u{2028}', '\u{feff}'][usize::from(b % 4)],
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((header, text)) = data.split_first_chunk::<HEADER>() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    if ["/dev", "/proc", "/sys", MARKER]
        .iter()
        .any(|t| text.contains(t))
    {
        return;
    }
    let key = match header[0] % 6 {
        0 => None,
        1 => Some(Key::Token),
        2 => Some(Key::Password),
        3 => Some(Key::Email),
        4 => Some(Key::Auth),
        _ => Some(Key::Oz),
    };
    let shape = match header[1] % 6 {
        0 => Shape::Quoted,
        1 => Shape::Plain,
        2 => Shape::SingleQuoted,
        3 => Shape::Block,
        4 => Shape::List,
        _ => Shape::Map,
    };
    let in_env = header[2] & 1 == 1;
    let minimal = header[2] & 2 == 2;
    let before = decoration(&header[4..4 + usize::from(header[3] & 0xf) % 5]);
    let after = decoration(&header[8..8 + usize::from(header[3] >> 4) % 5]);
    let secret = format!("{before}{MARKER}{after}");

    let mut env = BTreeMap::new();
    let mut tail = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.trim_end_matches(['\r', '\n']).split_once('=') {
            Some((name, value)) if name.starts_with("OZ_PROXY__") => {
                env.insert(name.to_owned(), value.to_owned());
            }
            _ => tail.push_str(line),
        }
    }
    let mut yaml = String::new();
    if minimal {
        yaml.push_str("backend:\n  url: \"http://127.0.0.1:3000\"\n");
    }
    if let Some(key) = &key {
        if in_env {
            let name = match key {
                Key::Token => "OZ_PROXY__OZ__AUTH__TOKEN",
                Key::Password => "OZ_PROXY__OZ__AUTH__PASSWORD",
                Key::Email => "OZ_PROXY__OZ__AUTH__EMAIL",
                Key::Auth => "OZ_PROXY__OZ__AUTH",
                Key::Oz => "OZ_PROXY__OZ",
            };
            env.insert(name.to_owned(), secret.clone());
        } else {
            let (head, indent) = match key {
                Key::Token => ("oz:\n  auth:\n    token:", "      "),
                Key::Password => ("oz:\n  auth:\n    password:", "      "),
                Key::Email => ("oz:\n  auth:\n    email:", "      "),
                Key::Auth => ("oz:\n  auth:", "    "),
                Key::Oz => ("oz:", "  "),
            };
            yaml.push_str(head);
            yaml.push_str(&scalar(&secret, &shape, indent));
            yaml.push('\n');
        }
    }
    yaml.push_str(&tail);

    let Err(e) = Config::from_yaml(&yaml, &env) else {
        return;
    };
    let message = e.to_string();
    assert!(
        key.is_none() || !message.contains(MARKER),
        "the secret is in the error: {message}"
    );
});

/// ` <secret>` written in `shape`, after a key, as a YAML value; `indent` is the indentation of
/// the key's value (two more than the key's).
fn scalar(secret: &str, shape: &Shape, indent: &str) -> String {
    let quoted = serde_json::to_string(secret).expect("a str serializes");
    match shape {
        Shape::Quoted => format!(" {quoted}"),
        Shape::Plain
            if secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.+@".contains(&b))
                && secret.starts_with(|c: char| c.is_ascii_alphanumeric()) =>
        {
            format!(" {secret}")
        }
        Shape::Plain => format!(" {quoted}"),
        Shape::SingleQuoted => format!(" '{}'", secret.replace('\'', "''")),
        Shape::Block => {
            let mut out = String::from(" |2\n");
            for line in secret.split(['\n', '\r']) {
                out.push_str(indent);
                out.push_str(line);
                out.push('\n');
            }
            out.pop();
            out
        }
        Shape::List => format!(" [{quoted}]"),
        Shape::Map => format!(" {{k: {quoted}}}"),
    }
}
