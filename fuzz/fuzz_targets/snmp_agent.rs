//! The whole agent path on arbitrary datagrams: decoding, community and
//! USM checks (with a v3 user), views, GetBulk sizing and Set validation
//! must never panic, and an answer is always a decodable message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_snmpd::access::Access;
use sms_snmpd::agent::Agent;
use sms_snmpd::config::SnmpConfig;
use sms_snmpd::mib::{self, DaemonValues, Identity, SystemText};
use std::sync::{Arc, OnceLock};

fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let cfg: SnmpConfig = toml::from_str(
            r#"
[[community]]
name = "public"
sources = ["0.0.0.0/0"]
view = "all"
access = "rw"
[[user]]
name = "noc"
auth = "SHA"
auth_password = "authpass123"
privacy = "AES"
privacy_password = "privpass123"
min_level = "noAuthNoPriv"
read_view = "all"
write_view = "all"
"#,
        )
        .expect("config");
        let id = b"\x80\x00\x7e\xd9\x05fuzz".to_vec();
        let engine = Arc::new(sms_snmp::usm::Engine::new(id.clone(), 1));
        let access = Arc::new(Access::build(&cfg, &id).expect("access"));
        let identity = Identity { firmware: "fuzz".into(), engine_id: id, engine_boots: 1 };
        let m = mib::build(&identity, &SystemText::default(), &DaemonValues::default(), &[]);
        Agent::new(engine, access, m, SystemText::default(), None, 65000)
    })
}

fuzz_target!(|data: &[u8]| {
    let src = "127.0.0.1:5000".parse().expect("address");
    if let Some(out) = agent().handle(data, src) {
        sms_snmp::decode(&out).expect("the agent's answer decodes");
    }
});
