//! The mail server's replies are network input: the reply-line parser must
//! never panic, and what it accepts has a code from 200 to 599.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_logd::smtp::Reply;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok((code, _, _)) = Reply::parse_line(&line) {
        assert!((200..600).contains(&code), "{code}");
    }
});
