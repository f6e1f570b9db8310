//! The `telemetry` section: where traces go (`telemetry.otlp`), and the standard OpenTelemetry
//! environment variables that override it, resolved into one [`OtlpSettings`].
//!
//! The variables are read from the environment map `main` hands the loader, like the
//! `OZ_PROXY__…` overrides, and win over the YAML as they do in every OpenTelemetry SDK
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>,
//! <https://opentelemetry.io/docs/specs/otel/protocol/exporter/>). Export headers often carry an
//! API key: YAML may hold only headers whose names do not look like credentials, values never
//! show in `check` output or an error, and the variables' values are kept out of `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Error;

/// Telemetry beyond logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Traces over OTLP/HTTP protobuf.
    pub otlp: OtlpConfig,
    /// The `OTEL_*` variables of the environment the config was loaded with.
    #[serde(skip)]
    pub otel_env: OtelEnv,
}

/// `telemetry.otlp`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: traces go to
    /// `{endpoint}/v1/traces`. Empty: tracing is off (unless the environment sets one).
    pub endpoint: String,
    /// The share of passthrough requests traced when the client sent no sampled parent.
    /// Capture requests are always traced.
    pub sample_ratio: f64,
    /// Extra headers on every export request; never credentials (those come from
    /// `OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(serialize_with = "serialize_header_names")]
    pub headers: BTreeMap<String, String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: String::new(),
            sample_ratio: 0.01,
            headers: BTreeMap::new(),
        }
    }
}

/// The `OTEL_*` variables, their values kept out of `Debug` (a header variable carries keys).
#[derive(Clone, Default, PartialEq)]
pub struct OtelEnv(pub BTreeMap<String, String>);

impl fmt::Debug for OtelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl OtelEnv {
    /// The `OTEL_*` entries of `env`.
    pub fn from_env(env: &BTreeMap<String, String>) -> OtelEnv {
        OtelEnv(
            env.iter()
                .filter(|(k, _)| k.starts_with("OTEL_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// A variable that is set and not blank (the spec treats empty as unset).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Tracing as it runs: the YAML with the environment applied.
#[derive(Clone, PartialEq)]
pub struct OtlpSettings {
    /// Where spans are POSTed: `…/v1/traces`.
    pub traces_url: http::Uri,
    /// Export headers: YAML, then `OTEL_EXPORTER_OTLP_HEADERS`, then
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, later ones replacing earlier ones of the same name.
    pub headers: Vec<(String, String)>,
    /// One export's time limit (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, default 10 s).
    pub export_timeout: Duration,
    /// A CA (PEM) the collector's certificate is checked against, besides the Mozilla roots
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`).
    pub ca_file: Option<std::path::PathBuf>,
    /// `service.name`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES` (without `service.name`, which is above).
    pub resource: Vec<(String, String)>,
    /// How passthrough requests are sampled.
    pub sampling: Sampling,
    /// What was ignored, for the start-up log.
    pub warnings: Vec<String>,
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("traces_url", &redacted_url(&self.traces_url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("export_timeout", &self.export_timeout)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("sampling", &self.sampling)
            .finish()
    }
}

/// The sampler of passthrough requests (captures are always sampled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of requests traced (1.0 for `always_on`, 0.0 for `always_off`).
    pub ratio: f64,
    /// Whether a client's `traceparent` decides, when it sent one (the `parentbased_*`
    /// samplers): sampled in, traced; sampled out, not.
    pub follow_parent: bool,
}

/// What traces are for when nobody names the service.
pub const DEFAULT_SERVICE_NAME: &str = "oz-capture-proxy";
/// The OTLP/HTTP path of traces.
const TRACES_PATH: &str = "/v1/traces";
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl TelemetryConfig {
    /// Tracing with the environment applied, or `None` when it is off: no endpoint anywhere,
    /// or `OTEL_SDK_DISABLED=true`. The error names the key or variable at fault.
    pub fn otlp_settings(&self) -> Result<Option<OtlpSettings>, Error> {
        let env = &self.otel_env;
        let yaml = &self.otlp;
        if env
            .get("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(None);
        }
        let mut warnings = Vec::new();
        match env.get("OTEL_TRACES_EXPORTER") {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => warnings.push(format!(
                "OTEL_TRACES_EXPORTER `{other}` is not supported and is ignored: traces go over OTLP"
            )),
        }
        let (traces_url, key) = if let Some(url) = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (url.to_owned(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        } else if let Some(base) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (traces_url(base), "OTEL_EXPORTER_OTLP_ENDPOINT")
        } else if !yaml.endpoint.trim().is_empty() {
            (traces_url(yaml.endpoint.trim()), "telemetry.otlp.endpoint")
        } else {
            return Ok(None);
        };
        let traces_url = check_url(&traces_url).map_err(|reason| Error::invalid(key, reason))?;
        // Only now that tracing is on: a variable meant for another signal or SDK in the same
        // environment must not stop a proxy that does not trace.
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = env.get(var) {
                if p != "http/protobuf" {
                    return Err(Error::invalid(
                        var,
                        format!("`{p}` is not supported: traces go as OTLP/HTTP protobuf (`http/protobuf`)"),
                    ));
                }
                break;
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ] {
            if env.get(var).is_some() {
                return Err(Error::invalid(
                    var,
                    "client certificates are not supported for the trace export: send a key in \
                     OTEL_EXPORTER_OTLP_HEADERS, or put a collector on the node that holds it",
                ));
            }
        }
        let ca_file = [
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ]
        .into_iter()
        .find_map(|var| env.get(var))
        .map(std::path::PathBuf::from);

        let mut headers: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (name, value) in &yaml.headers {
            headers.insert(name.to_ascii_lowercase(), (name.clone(), value.clone()));
        }
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = env.get(var) {
                for (name, value) in parse_pairs(list).map_err(|r| Error::invalid(var, r))? {
                    check_header(&name, &value).map_err(|r| Error::invalid(var, r))?;
                    headers.insert(name.to_ascii_lowercase(), (name, value));
                }
            }
        }
        let export_timeout = match [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|var| env.get(var).map(|v| (var, v)))
        {
            Some((var, ms)) => match ms.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(Error::invalid(
                        var,
                        "must be a whole number of milliseconds above 0",
                    ))
                }
            },
            None => DEFAULT_EXPORT_TIMEOUT,
        };

        let mut resource = match env.get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => {
                parse_pairs(list).map_err(|r| Error::invalid("OTEL_RESOURCE_ATTRIBUTES", r))?
            }
            None => Vec::new(),
        };
        let from_attributes = resource
            .iter()
            .position(|(k, _)| k == "service.name")
            .map(|i| resource.remove(i).1);
        let service_name = env
            .get("OTEL_SERVICE_NAME")
            .map(str::to_owned)
            .or(from_attributes)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());

        let sampling = self.sampling(&mut warnings)?;
        Ok(Some(OtlpSettings {
            traces_url,
            headers: headers.into_values().collect(),
            export_timeout,
            ca_file,
            service_name,
            resource,
            sampling,
            warnings,
        }))
    }

    /// `OTEL_TRACES_SAMPLER` and its argument over `telemetry.otlp.sample_ratio`; the default is
    /// the spec's for a ratio, `parentbased_traceidratio`. A sampler this proxy does not have
    /// (`jaeger_remote`, `xray`) is ignored with a warning, as the spec asks of unknown values.
    fn sampling(&self, warnings: &mut Vec<String>) -> Result<Sampling, Error> {
        let env = &self.otel_env;
        let arg = || -> Result<f64, Error> {
            match env.get("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(1.0),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        Error::invalid("OTEL_TRACES_SAMPLER_ARG", "must be a number from 0 to 1")
                    }),
            }
        };
        let ratio = self.otlp.sample_ratio;
        Ok(match env.get("OTEL_TRACES_SAMPLER") {
            None => Sampling {
                ratio,
                follow_parent: true,
            },
            Some(name) => match name {
                "always_on" => Sampling {
                    ratio: 1.0,
                    follow_parent: false,
                },
                "always_off" => Sampling {
                    ratio: 0.0,
                    follow_parent: false,
                },
                "traceidratio" => Sampling {
                    ratio: arg()?,
                    follow_parent: false,
                },
                "parentbased_always_on" => Sampling {
                    ratio: 1.0,
                    follow_parent: true,
                },
                "parentbased_always_off" => Sampling {
                    ratio: 0.0,
                    follow_parent: true,
                },
                "parentbased_traceidratio" => Sampling {
                    ratio: arg()?,
                    follow_parent: true,
                },
                other => {
                    warnings.push(format!(
                        "OTEL_TRACES_SAMPLER `{other}` is not one of always_on, always_off, \
                         traceidratio, parentbased_always_on, parentbased_always_off, \
                         parentbased_traceidratio; telemetry.otlp.sample_ratio applies"
                    ));
                    Sampling {
                        ratio,
                        follow_parent: true,
                    }
                }
            },
        })
    }

    /// The checks of `telemetry.otlp` that do not need the environment.
    pub(super) fn validate(&self) -> Result<(), Error> {
        let o = &self.otlp;
        if !(0.0..=1.0).contains(&o.sample_ratio) {
            return Err(Error::invalid(
                "telemetry.otlp.sample_ratio",
                "must be from 0 to 1",
            ));
        }
        for (name, value) in &o.headers {
            let key = format!("telemetry.otlp.headers.{name}");
            check_header(name, value).map_err(|r| Error::invalid(&key, r))?;
            if looks_like_a_credential(name) {
                return Err(Error::invalid(
                    key,
                    "looks like a credential, which does not belong in a YAML file: set it in \
                     OTEL_EXPORTER_OTLP_HEADERS (from a Secret), e.g. `api-key=…`",
                ));
            }
        }
        self.otlp_settings().map(|_| ())
    }
}

/// A URL without its query, for logs and `Debug`: a vendor may take a key there.
pub fn redacted_url(url: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str()),
        url.path()
    )
}

/// `{base}/v1/traces`, as the spec builds a signal's URL from `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(base: &str) -> String {
    format!("{}{TRACES_PATH}", base.trim_end_matches('/'))
}

/// An `http` or `https` URL with a host; never echoes the URL (it may carry a key in a query).
fn check_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "is not a URL (e.g. http://otel-collector:4318)".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("needs an http:// or https:// URL".to_owned()),
    }
    match uri.authority() {
        None => Err("needs a host".to_owned()),
        Some(a) if a.as_str().contains('@') => {
            Err("must not carry credentials; send them as a header".to_owned())
        }
        Some(_) => Ok(uri),
    }
}

/// A header name and value that `http` accepts, and not one the exporter sets itself.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if http::HeaderValue::from_str(value).is_err() {
        // The value is not shown: it may be a key.
        return Err(format!("the value of `{name}` is not a valid header value"));
    }
    if [
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
    {
        return Err(format!("`{name}` is set by the exporter itself"));
    }
    Ok(())
}

/// Header names that carry credentials in the collectors' and vendors' docs (`Authorization`,
/// `api-key`, `x-honeycomb-team`, `DD-API-KEY`, `signoz-access-token`…).
fn looks_like_a_credential(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth", "key", "token", "secret", "password", "team", "cookie",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `key1=value1,key2=value2` with percent-encoded values, the format of
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage without
/// properties). The error never shows a value.
fn parse_pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, item) in list.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("entry {} is not `key=value`", i + 1));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("entry {} has no key", i + 1));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{key}` is not UTF-8 once decoded"))?;
        out.push((key.to_owned(), value.into_owned()));
    }
    Ok(out)
}

/// YAML headers are written out by name only: `check` prints the config.
fn serialize_header_names<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(headers.len()))?;
    for name in headers.keys() {
        map.serialize_entry(name, "(set)")?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: OtlpConfig, env: &[(&str, &str)]) -> Result<Option<OtlpSettings>, Error> {
        TelemetryConfig {
            otlp: yaml,
            otel_env: OtelEnv(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
        .otlp_settings()
    }

    fn yaml(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.to_owned(),
            ..OtlpConfig::default()
        }
    }

    #[test]
    fn off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert_eq!(settings(yaml(""), &[]).unwrap(), None);
        let disabled = [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ];
        assert_eq!(settings(yaml("http://y:4318"), &disabled).unwrap(), None);
    }

    #[test]
    fn variables_for_other_signals_do_not_matter_while_tracing_is_off() {
        let env = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "xray"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
        ];
        assert_eq!(settings(yaml(""), &env).unwrap(), None);
        let none = [("OTEL_TRACES_EXPORTER", "none")];
        assert_eq!(settings(yaml("http://c:1"), &none).unwrap(), None);
    }

    #[test]
    fn the_environment_overrides_the_yaml_endpoint_as_the_spec_builds_it() {
        let s = |env: &[(&str, &str)]| {
            settings(yaml("http://yaml:4318/"), env)
                .unwrap()
                .unwrap()
                .traces_url
                .to_string()
        };
        assert_eq!(s(&[]), "http://yaml:4318/v1/traces");
        assert_eq!(
            s(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318/otlp")]),
            "https://env:4318/otlp/v1/traces"
        );
        // The per-signal variable is used as it is.
        assert_eq!(
            s(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x"),
            ]),
            "http://t:9/x"
        );
        let on_from_env = settings(yaml(""), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:1")]);
        assert!(on_from_env.unwrap().is_some());
    }

    #[test]
    fn headers_merge_with_the_environment_winning_and_never_show() {
        let mut y = yaml("http://c:4318");
        y.headers.insert("X-Scope-OrgID".into(), "tenant-a".into());
        let s = settings(
            y,
            &[
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "api-key=s%3Dcret, x-scope-orgid=tenant-b",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "dd-api-key=k2"),
            ],
        )
        .unwrap()
        .unwrap();
        let mut h = s.headers.clone();
        h.sort();
        assert_eq!(
            h,
            [
                ("api-key".to_owned(), "s=cret".to_owned()),
                ("dd-api-key".to_owned(), "k2".to_owned()),
                ("x-scope-orgid".to_owned(), "tenant-b".to_owned()),
            ]
        );
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s=cret") && !shown.contains("k2"),
            "{shown}"
        );
        let env = OtelEnv::from_env(&BTreeMap::from([(
            "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
            "api-key=s3cret".to_owned(),
        )]));
        assert!(!format!("{env:?}").contains("s3cret"));
    }

    #[test]
    fn credentials_in_yaml_headers_are_refused_naming_the_key() {
        for name in ["Authorization", "api-key", "x-honeycomb-team", "DD-API-KEY"] {
            let mut c = TelemetryConfig::default();
            c.otlp.endpoint = "http://c:4318".into();
            c.otlp.headers.insert(name.into(), "v".into());
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("telemetry.otlp.headers.{name}")), "{e}");
            assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        }
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let s = |env: &[(&str, &str)]| settings(yaml("http://c:1"), env).unwrap().unwrap();
        assert_eq!(s(&[]).service_name, DEFAULT_SERVICE_NAME);
        let from_attrs = s(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=kyc-edge,deployment.environment=prod%20eu",
        )]);
        assert_eq!(from_attrs.service_name, "kyc-edge");
        assert_eq!(
            from_attrs.resource,
            [("deployment.environment".to_owned(), "prod eu".to_owned())]
        );
        let named = s(&[
            ("OTEL_SERVICE_NAME", "proxy-a"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=kyc-edge"),
        ]);
        assert_eq!(named.service_name, "proxy-a");
    }

    #[test]
    fn samplers_from_the_environment() {
        let s = |env: &[(&str, &str)]| settings(yaml("http://c:1"), env).unwrap().unwrap().sampling;
        assert_eq!(
            s(&[]),
            Sampling {
                ratio: 0.01,
                follow_parent: true
            }
        );
        assert_eq!(
            s(&[("OTEL_TRACES_SAMPLER", "always_on")]),
            Sampling {
                ratio: 1.0,
                follow_parent: false
            }
        );
        assert_eq!(
            s(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            Sampling {
                ratio: 0.25,
                follow_parent: false
            }
        );
        assert_eq!(
            s(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]),
            Sampling {
                ratio: 0.0,
                follow_parent: true
            }
        );
        let ignored = settings(
            yaml("http://c:1"),
            &[("OTEL_TRACES_SAMPLER", "jaeger_remote")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ignored.sampling.ratio, 0.01);
        assert!(ignored.warnings[0].contains("jaeger_remote"));
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ] {
            let e = settings(yaml("http://c:1"), &[(var, value)]).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
