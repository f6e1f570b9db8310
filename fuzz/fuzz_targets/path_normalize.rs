//! The capture-route matcher's normal form: never panics, always absolute, no empty, `.` or `..`
//! segment left, no upper-case ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::proxy::path::normalize;

fuzz_target!(|data: &[u8]| {
    let n = normalize(data);
    assert!(n.starts_with('/'));
    if n != "/" {
        for seg in n[1..].split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{n:?}");
        }
    }
    assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{n:?}");
});
