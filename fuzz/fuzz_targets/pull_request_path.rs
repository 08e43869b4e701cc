//! Request paths reach the pull server from any device or endpoint.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if sms_distd::pull::parse_path(s).is_ok() {
            // Whatever parses is plain ASCII without escapes or dot segments.
            assert!(s.is_ascii() && !s.contains('%') && !s.contains("..") && !s.contains('\\'));
        }
        let _ = sms_distd::pull::parse_range(Some(s), 1 << 20);
    }
});
