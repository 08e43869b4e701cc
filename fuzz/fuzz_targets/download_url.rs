//! Download URLs come from the update centre's answers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = sms_updated::url::Url::parse(s) {
            // What we print must parse back to the same URL.
            assert_eq!(sms_updated::url::Url::parse(&u.to_string()).ok(), Some(u));
        }
    }
});
