//! Deltas and archives come over the network to devices that apply them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (base, delta) = data.split_at(data.len() / 2);
    let _ = sms_distd::delta::apply(base, delta, 1 << 20);
    let _ = sms_distd::delta::unarchive(data, 1 << 20);
});
