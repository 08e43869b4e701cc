//! SNMP messages come from anyone who can reach 161 or 8162: the decoder
//! must never panic, and every v1/v2c message it accepts must encode and
//! decode back to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_snmp::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(Message::Community(m)) = sms_snmp::decode(data) {
        let again = sms_snmp::decode(&m.encode()).expect("re-encoded message decodes");
        assert_eq!(again, Message::Community(m));
    }
});
