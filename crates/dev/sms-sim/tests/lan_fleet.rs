//! The simulated fleet on a virtual Ethernet segment, seen from the
//! appliance's side by real peers: the kernel (a namespace whose only link
//! is a tap on the segment) runs net-snmp's snmpget against the devices'
//! agents and snmptrapd for their traps, curl with the appliance's client
//! certificate against their HTTPS API, and an NTP server the devices
//! synchronise with. A device whose cable is pulled stops answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sms_core::metadata::{CatalogSigner, TrustRoot};
use sms_lan::netns::KernelHost;
use sms_lan::{Buffers, Lan};
use sms_sim::fleet::{Fleet, FleetConfig, FleetFaults, LanPlacement};
use sms_sim::ntp::{NtpSimConfig, NtpSimServer};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

const DEVICES: usize = 5;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within {secs} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_on_a_segment_answers_real_peers() {
    let dir = tempfile::tempdir().unwrap();
    let lan = Arc::new(Lan::start(23, Buffers::default()));
    let appliance = KernelHost::join(&lan, "192.0.2.1/24")
        .expect("a namespace with a tap on the segment (the tests run as root)");

    // The appliance side: snmptrapd and an NTP server on 192.0.2.1.
    let trap_log = dir.path().join("traps.log");
    let conf = dir.path().join("snmptrapd.conf");
    std::fs::write(&conf, "authCommunity log public\n").unwrap();
    let _trapd = Killed(
        appliance
            .command("snmptrapd")
            .args(["-f", "-C", "-c"])
            .arg(&conf)
            .args(["-On", "-Lf"])
            .arg(&trap_log)
            .arg("udp:192.0.2.1:8162")
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmptrapd (make deps installs it)"),
    );
    let ntp_sock = appliance
        .run(|| std::net::UdpSocket::bind("192.0.2.1:123").unwrap())
        .await
        .unwrap();
    let ntp = NtpSimServer::from_std(
        ntp_sock,
        NtpSimConfig {
            offset: 0.25,
            stratum: 2,
            ..NtpSimConfig::default()
        },
    )
    .unwrap();
    // Give snmptrapd a moment to bind before the devices' coldStart.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let fleet = Fleet::start(FleetConfig {
        dir: dir.path().join("fleet"),
        devices: DEVICES,
        first_address: Ipv4Addr::new(192, 0, 2, 10),
        port: 443,
        install_delay: Duration::from_millis(100),
        trust_root: TrustRoot::new(&CatalogSigner::generate(1).verifying_keys(), 1).unwrap(),
        faults: FleetFaults::default(),
        seed: 1,
        initial_dv: Some("1.0.0".into()),
        snmp_port: Some(161),
        trap_to: Some("192.0.2.1:8162".parse().unwrap()),
        ntp_server: Some("192.0.2.1:123".parse().unwrap()),
        lan: Some(LanPlacement {
            lan: lan.clone(),
            prefix: 24,
            gateway: None,
        }),
        world: None,
    })
    .await
    .unwrap();

    // Every device's coldStart reaches snmptrapd, from its own address.
    wait_for("a coldStart trap from every device", 20, || {
        let log = std::fs::read_to_string(&trap_log).unwrap_or_default();
        (0..DEVICES).all(|i| log.contains(&format!("192.0.2.{}", 10 + i)))
            && log.contains(".1.3.6.1.6.3.1.1.5.1")
    })
    .await;

    // net-snmp reads a device's agent.
    let snmpget = |addr: &str| {
        appliance
            .command("snmpget")
            .args([
                "-v2c",
                "-c",
                "public",
                "-On",
                "-t",
                "1",
                "-r",
                "1",
                addr,
                ".1.3.6.1.2.1.1.5.0",
            ])
            .env("MIBS", "")
            .output()
            .unwrap()
    };
    let out = snmpget("192.0.2.12");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ips-00002"), "{text}");

    // curl with the appliance's client certificate reads a device's status.
    let curl = |cert: bool| {
        let mut c = appliance.command("curl");
        c.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&fleet.ca_file);
        if cert {
            c.arg("--cert")
                .arg(&fleet.appliance_cert)
                .arg("--key")
                .arg(&fleet.appliance_key);
        }
        c.arg("https://192.0.2.13/status").output().unwrap()
    };
    let out = curl(true);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("\"name\":\"ips-00003\""),
        "{body}"
    );
    assert!(
        !curl(false).status.success(),
        "a client without the appliance's certificate is refused"
    );

    // An appliance's own self-signed certificate: refused until enrolled.
    let key = rcgen::KeyPair::generate().unwrap();
    let own = rcgen::CertificateParams::new(vec!["sms".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (own_cert, own_key) = (dir.path().join("own.pem"), dir.path().join("own-key.pem"));
    std::fs::write(&own_cert, own.pem()).unwrap();
    std::fs::write(&own_key, key.serialize_pem()).unwrap();
    let curl_own = || {
        appliance
            .command("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&fleet.ca_file)
            .arg("--cert")
            .arg(&own_cert)
            .arg("--key")
            .arg(&own_key)
            .arg("https://192.0.2.13/status")
            .output()
            .unwrap()
    };
    assert!(
        !curl_own().status.success(),
        "a certificate nobody enrolled is refused"
    );
    fleet.enrol(own.pem().as_bytes()).unwrap();
    let out = curl_own();
    assert!(
        out.status.success(),
        "the enrolled certificate is accepted: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every device synchronised with the appliance's NTP server.
    wait_for("every device synchronised", 20, || {
        fleet.statuses().iter().all(|s| s.time.is_some())
    })
    .await;
    for s in fleet.statuses() {
        let t = s.time.unwrap();
        assert_eq!(t.server, "192.0.2.1:123");
        assert_eq!(t.stratum, 2);
        assert!(
            (t.offset_ms - 250.0).abs() < 100.0,
            "{} is {} ms off",
            s.name,
            t.offset_ms
        );
    }
    assert!(ntp.answered.load(std::sync::atomic::Ordering::Relaxed) >= DEVICES as u64);

    // Pulled cable: the agent stops answering; plugged back, it answers.
    fleet.set_link("ips-00002", false).unwrap();
    assert!(
        !snmpget("192.0.2.12").status.success(),
        "an unplugged device answered"
    );
    fleet.set_link("ips-00002", true).unwrap();
    appliance.flush_neighbours().unwrap();
    assert!(snmpget("192.0.2.12").status.success(), "the device is back");
    let _: SocketAddr = ntp.addr;
}
