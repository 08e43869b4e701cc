//! HA frames come from the peer, the witness and the daemons: after the
//! TLS handshake they are still bytes from the network. Reading them must
//! never panic, and what is accepted must encode back to the same frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_core::replication::wire;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok((epoch, msg)) = wire::read_frame(&mut r) {
        let again = wire::encode(epoch, &msg);
        assert_eq!(wire::read_frame(&mut &again[..]).ok(), Some((epoch, msg)));
    }
});
