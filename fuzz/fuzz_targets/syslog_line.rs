//! Lines on the syslog socket come from journald, which passes on what any
//! program logged: the parser must never panic, and what it accepts must
//! make an RFC 5424 message with a valid header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_logd::line::LogLine;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = LogLine::parse(data) {
        let m = l.to_rfc5424("sms", time::OffsetDateTime::UNIX_EPOCH);
        let mut fields = m.splitn(7, ' ');
        let pri = fields.next().unwrap_or_default();
        assert!(pri.starts_with('<') && pri.ends_with(">1"));
        for _ in 0..5 {
            let f = fields.next().unwrap_or_default();
            assert!(!f.is_empty() && f.bytes().all(|b| b.is_ascii_graphic()), "{m}");
        }
    }
});
