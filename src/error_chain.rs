//! An error and its sources on one line: a leaf every layer may use (the Oz client, the
//! backend client, logs), so that none of them reaches up into `crate::error` for it.

/// An error and its sources on one line, for logs and problem details: hyper and hyper-util say
/// little in their own `Display` ("client error (Connect)") and the cause is in the sources.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(source) = cur {
        out.push_str(": ");
        out.push_str(&source.to_string());
        cur = source.source();
    }
    out
}
