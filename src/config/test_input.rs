//! What the config tests load: the smallest valid YAML, and an environment map from pairs.

use std::collections::BTreeMap;

/// The one key without a default.
pub const MINIMAL: &str = "backend:\n  url: \"http://127.0.0.1:3000\"\n";

/// An environment map holding `pairs`.
pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
