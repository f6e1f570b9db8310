//! How the values serde has no derive for are read from YAML and the environment (durations,
//! URLs, lists given as comma-separated strings), and written back the same way.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A URL, written as a string.
pub mod uri {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<http::Uri, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid URL: {e}")))
    }

    pub fn serialize<S: Serializer>(uri: &http::Uri, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(uri)
    }
}

/// Either a YAML sequence or a comma-separated string (how a list arrives from the environment).
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Seq(Vec<String>),
        Csv(String),
    }
    Ok(match List::deserialize(d)? {
        List::Seq(v) => v,
        List::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// [`string_list`] for a key that may be left out.
pub fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    string_list(d).map(Some)
}

/// A duration as people write it: `"30s"`, `"500ms"`.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write e.g. \"30s\" or \"500ms\""
            ))
        })
    }

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*duration))
    }
}

/// [`duration`] for a key that may be left out.
pub mod opt_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// A file path that may be left out or written empty (`url_file: ""`): both mean none.
pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::path::PathBuf>, D::Error> {
    let path = Option::<std::path::PathBuf>::deserialize(d)?;
    Ok(path.filter(|p| !p.as_os_str().is_empty()))
}
