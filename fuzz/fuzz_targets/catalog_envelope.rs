//! Signed catalog envelopes come from the network: verification must refuse
//! garbage with an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_core::metadata::{verify_catalog, CatalogSigner, TrustRoot};
use sms_core::package::Channel;
use std::sync::OnceLock;

fn trust() -> &'static TrustRoot {
    static T: OnceLock<TrustRoot> = OnceLock::new();
    T.get_or_init(|| {
        let signer = CatalogSigner::generate(1);
        TrustRoot::new(&signer.verifying_keys(), 1).expect("trust root")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_catalog(data, trust(), Channel::Dv, 0, None);
});
