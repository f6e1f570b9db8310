//! Keeping secrets secret: reading secret files, and making sure no secret value reaches an
//! error message, a `Debug` line or a serialized config.

use std::path::Path;

use serde::Serializer;

use super::Error;

/// Keys whose values are secrets: errors about them never quote the value.
const SECRET_KEYS: &[&str] = &[
    "oz.auth.token",
    "oz.auth.password",
    "oz.auth.email",
    "state.redis.url",
];

/// What is shown in place of a secret: whether it is set, never what it is.
pub(super) fn redacted(s: &str) -> &'static str {
    if s.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
    }
}

/// Serializes a secret as [`redacted`] does.
pub(super) fn serialize_redacted<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(redacted(secret))
}

/// Reads a secret from the file at `path` (named by `key`).
pub(super) fn read_secret(path: &Path, key: &str) -> Result<String, Error> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(key, format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    // Mounted Secrets often end with a newline that is not part of the secret.
    Ok(raw.trim_end_matches(['\r', '\n']).to_owned())
}

/// Removes quoted values from a config-crate error message when it may concern a secret.
///
/// That is when the key it names is a secret key, lies inside one, or contains one: `oz.auth`
/// (or `oz`) written as a plain string instead of a mapping is most likely the token itself, and
/// the message would quote it. A message that names no key is scrubbed too, to be safe.
pub(super) fn scrub(message: &str) -> String {
    let key = message
        .rsplit_once("for key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    let sensitive = match key {
        None => true,
        Some(key) => SECRET_KEYS.iter().any(|secret| {
            *secret == key
                || secret
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.'))
                || key
                    .strip_prefix(secret)
                    .is_some_and(|rest| rest.starts_with('.'))
        }),
    };
    if !sensitive {
        return message.to_owned();
    }
    // config's messages quote the offending value (`invalid type: string "…"`) as Rust's `{:?}`
    // writes it, with `\"` and `\\` inside; drop every quoted run, escapes and all (a secret with
    // a `"` in it once ended the run early and printed its rest).
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    let mut escaped = false;
    for ch in message.chars() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' if !in_quote => {
                in_quote = true;
                out.push_str("\"<redacted>");
            }
            '"' => {
                in_quote = false;
                out.push('"');
            }
            _ if in_quote => {}
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::test_input::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn secret_values_never_appear_in_errors() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    password: [\"hunter2\"]\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("oz.auth.password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_secret_given_in_place_of_its_section_is_not_quoted() {
        for (yaml, vars) in [
            (format!("{MINIMAL}oz:\n  auth: \"tok-hunter2\"\n"), vec![]),
            (
                MINIMAL.to_owned(),
                vec![("OZ_PROXY__OZ__AUTH", "tok-hunter2")],
            ),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "tok-hunter2")]),
        ] {
            let e = Config::from_yaml(&yaml, &env(&vars))
                .unwrap_err()
                .to_string();
            assert!(e.contains("oz"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    // Found by fuzz/fuzz_targets/config_loader.rs. Messages quote a value with `{:?}`, which
    // writes a `"` inside it as `\"`; the scrubber took that for the closing quote and printed
    // the rest of the secret.
    #[test]
    fn a_secret_with_a_quote_never_appears_in_errors() {
        let mut leaks = Vec::new();
        for (yaml, vars) in [
            (
                format!("{MINIMAL}oz:\n  auth: \"tok\\\"hunter2\"\n"),
                vec![],
            ),
            (
                format!("{MINIMAL}oz:\n  auth:\n    token: [\"\\\"hunter2\"]\n"),
                vec![],
            ),
            (
                MINIMAL.to_owned(),
                vec![("OZ_PROXY__OZ__AUTH", "tok\"hunter2")],
            ),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "\"hunter2")]),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "a\\\"hunter2")]),
        ] {
            let e = Config::from_yaml(&yaml, &env(&vars))
                .unwrap_err()
                .to_string();
            if e.contains("hunter2") {
                leaks.push(e);
            }
        }
        assert!(leaks.is_empty(), "{leaks:#?}");
    }

    #[test]
    fn quoted_values_stay_in_messages_about_other_keys() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}forwarding:\n  x_forwarded_for: \"sometimes\"\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sometimes"), "{e}");
    }
}
