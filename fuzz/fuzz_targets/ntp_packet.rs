//! NTP packets come from anyone on the network: the parser must never
//! panic, and what it accepts must serialize back to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_ntpd::packet::Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        assert_eq!(&p.to_bytes()[..], &data[..48]);
    }
});
