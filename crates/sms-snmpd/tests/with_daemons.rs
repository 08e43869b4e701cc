#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! sms-snmpd with the real daemons behind a private dbus-daemon (the update
//! and distribution daemons in this process, on the same bus), the
//! simulated update centre and fleet (each device with its own SNMP agent
//! on its own loopback address), and net-snmp's snmptrapd as the network
//! operations centre's manager receiving the appliance's traps (v2c and v3).

mod common;

use common::*;
use sms_core::package::Channel;
use sms_distd::config::DistdConfig;
use sms_distd::inventory::Device;
use sms_sim::fleet::{Fleet, FleetConfig, FleetFaults};
use sms_sim::{TmcSim, TmcSimConfig};
use sms_testkit::DbusDaemon;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Trapd(Child);
impl Drop for Trapd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// net-snmp's snmptrapd logging to `log`, accepting community "public" and
/// the test user with keys localized to the appliance's engine ID.
fn snmptrapd(dir: &std::path::Path, port: u16, log: &std::path::Path) -> Trapd {
    let conf = dir.join("snmptrapd.conf");
    std::fs::write(
        &conf,
        format!(
            "authCommunity log public\ncreateUser -e 0x{ENGINE_ID} {USER} SHA-256 {AUTH_PW} AES {PRIV_PW}\nauthUser log {USER} priv\n"
        ),
    )
    .unwrap();
    let persist = dir.join("trapd-persist");
    std::fs::create_dir_all(&persist).unwrap();
    let child = Command::new("snmptrapd")
        .args(["-f", "-C", "-c"])
        .arg(&conf)
        .args(["-On", "-Lf"])
        .arg(log)
        .arg(format!("udp:127.0.0.1:{port}"))
        .env("SNMP_PERSISTENT_DIR", &persist)
        .env("MIBS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("snmptrapd (make deps installs it)");
    Trapd(child)
}

/// The manager: snmptrapd on a free port, logging to `dir`/snmptrapd.log,
/// given time to bind; (its process, port, log).
fn manager(dir: &std::path::Path) -> (Trapd, u16, std::path::PathBuf) {
    let port = free_udp_port();
    let log = dir.join("snmptrapd.log");
    let trapd = snmptrapd(dir, port, &log);
    std::thread::sleep(Duration::from_millis(500));
    (trapd, port, log)
}

/// The manager at `trap_port` as a v2c and a v3 trap destination.
fn trap_destinations(trap_port: u16) -> String {
    format!(
        r#"[[trap_destination]]
address = "127.0.0.1:{trap_port}"
version = "v2c"
community = "public"
[[trap_destination]]
address = "127.0.0.1:{trap_port}"
version = "v3"
user = "{USER}"
level = "authPriv"
"#
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mib_poller_and_traps_with_the_real_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let sim = TmcSim::start(TmcSimConfig::new(dir.path().join("sim")))
        .await
        .unwrap();
    let bus = DbusDaemon::start().unwrap();

    // The update daemon with an active DV.
    let i = &sim.info;
    let c = sms_testkit::world::updater_config(i, dir.path());
    let (updater, _ub) = sms_testkit::world::updater_on_bus(c, &bus).await.unwrap();
    let dv1 = sim.publish_dv(64 * 1024);
    updater.refresh(Channel::Dv).await.unwrap();
    updater.download(Channel::Dv, &dv1.version).await.unwrap();
    updater.activate(Channel::Dv, &dv1.version).await.unwrap();

    // Ten devices, two of them unreachable (no agent, no HTTPS).
    let snmp_port = free_udp_port();
    let fleet = Fleet::start(FleetConfig {
        dir: dir.path().join("fleet"),
        devices: 10,
        first_address: Ipv4Addr::new(127, 61, 0, 1),
        port: 18443,
        install_delay: Duration::ZERO,
        trust_root: sms_core::metadata::TrustRoot::load(&i.trust_root_file).unwrap(),
        faults: FleetFaults {
            unreachable: 0.2,
            ..FleetFaults::default()
        },
        seed: 3,
        initial_dv: None,
        snmp_port: Some(snmp_port),
        trap_to: None,
        ntp_server: None,
        lan: None,
        world: None,
    })
    .await
    .unwrap();
    let unreachable: Vec<String> = fleet
        .devices()
        .into_iter()
        .filter(|d| d.fault.is_some())
        .map(|d| d.name)
        .collect();
    assert_eq!(unreachable.len(), 2);

    // The distribution daemon with the fleet in its inventory.
    let mut dc = DistdConfig::default();
    dc.paths.state_dir = dir.path().join("distd/state");
    dc.paths.blob_dir = dir.path().join("blobs");
    dc.paths.cache_dir = dir.path().join("distd/cache");
    dc.tls.trust_root = i.trust_root_file.clone();
    dc.tls.ca_file = fleet.ca_file.clone();
    dc.tls.cert_file = fleet.appliance_cert.clone();
    dc.tls.key_file = fleet.appliance_key.clone();
    dc.push.auto_distribute_dv = false;
    dc.push.attempts = 2;
    dc.push.backoff_initial_ms = Duration::from_millis(50);
    dc.push.backoff_max_ms = Duration::from_millis(100);
    dc.push.connect_timeout = Duration::from_secs(1);
    dc.pull.http_listen = vec![];
    dc.pull.https_listen = vec![];
    let (dist, _db) = sms_testkit::world::distributor_on_bus(dc, &bus)
        .await
        .unwrap();
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let devices: Vec<Device> = fleet
        .devices()
        .into_iter()
        .map(|d| Device::new(d.name, d.address, d.port, d.family, "lab".into()))
        .collect();
    sms_core::bus::Distributor1Proxy::new(&conn)
        .await
        .unwrap()
        .add_devices(sms_core::bus::Json(devices))
        .await
        .unwrap();

    // The manager.
    let (_trapd, trap_port, trap_log) = manager(dir.path());

    let extra = format!(
        r#"[poller]
community = "public"
interval_secs = 1
port = {snmp_port}
timeout_ms = 300
failures = 2
concurrency = 4
{}"#,
        trap_destinations(trap_port)
    );
    let d = Snmpd::start(dir.path(), &extra, Some(&bus));
    let dirs = mib_dirs();
    let walk = || {
        let mut pre = vec!["-M", dirs.as_str(), "-m", "SMS-MIB", "-v2c", "-c", "public"];
        pre.push("-Oq");
        d.run("snmpwalk", &pre, &["SMS-MIB::smsMIB"]).stdout
    };
    // The daemon values and the poll results reach the MIB.
    wait_for("ten devices, eight reachable and two unreachable", || {
        let w = walk();
        lines_with(&w, "smsDevicePollState")
            .iter()
            .filter(|l| l.ends_with("reachable") && !l.ends_with("unreachable"))
            .count()
            == 8
            && lines_with(&w, "smsDevicePollState")
                .iter()
                .filter(|l| l.ends_with("unreachable"))
                .count()
                == 2
    });
    let w = walk();
    assert!(
        w.contains(&format!("SMS-MIB::smsDvVersion.0 {}", dv1.version)),
        "{w}"
    );
    assert!(w.contains("SMS-MIB::smsDeviceCount.0 10"), "{w}");
    for name in &unreachable {
        assert!(
            w.contains(&format!("SMS-MIB::smsDevicePollState.'{name}' unreachable")),
            "{name}: {w}"
        );
    }
    let some = fleet
        .devices()
        .into_iter()
        .find(|d| d.fault.is_none())
        .unwrap();
    assert!(
        w.contains(&format!(
            "SMS-MIB::smsDeviceAddress.'{}' {}",
            some.name, some.address
        )),
        "{w}"
    );
    assert!(
        w.contains(&format!(
            "SMS-MIB::smsDeviceDescr.'{}' Simulated IPS",
            some.name
        )),
        "{w}"
    );
    assert!(
        w.contains("SMS-MIB::smsNtpSyncState.0 unknown"),
        "no NTP daemon on this bus: {w}"
    );

    // snmptrapd got smsDeviceUnreachable for each, over v2c and over v3.
    wait_for("unreachable traps at snmptrapd", || {
        let t = std::fs::read_to_string(&trap_log).unwrap_or_default();
        unreachable
            .iter()
            .all(|n| t.matches(&format!("\"{n}\"")).count() >= 2)
    });
    let t = std::fs::read_to_string(&trap_log).unwrap();
    assert!(t.contains(".1.3.6.1.4.1.32473.1.0.3"), "{t}");

    // A DV activated in the update daemon becomes smsDvActivated.
    let dv2 = sim.publish_dv(64 * 1024);
    updater.refresh(Channel::Dv).await.unwrap();
    updater.download(Channel::Dv, &dv2.version).await.unwrap();
    updater.activate(Channel::Dv, &dv2.version).await.unwrap();
    wait_for("smsDvActivated at snmptrapd", || {
        let t = std::fs::read_to_string(&trap_log).unwrap_or_default();
        t.matches(&format!("DV {} activated", dv2.version)).count() >= 2
    });
    let t = std::fs::read_to_string(&trap_log).unwrap();
    assert!(t.contains(".1.3.6.1.4.1.32473.1.0.1"), "{t}");
    wait_for("the new DV in the MIB", || {
        walk().contains(&format!("SMS-MIB::smsDvVersion.0 {}", dv2.version))
    });

    // A device sends a trap from its own address; the receiver stores it.
    let dev = fleet
        .devices()
        .into_iter()
        .find(|d| d.fault.is_none())
        .unwrap();
    sms_sim::snmp::send_trap(
        dev.address,
        d.trap_addr(1).parse().unwrap(),
        sms_sim::snmp::COMMUNITY,
        "1.3.6.1.6.3.1.1.5.3".parse().unwrap(),
        4200,
        vec![sms_snmp::VarBind::new(
            "1.3.6.1.2.1.2.2.1.1.1".parse().unwrap(),
            sms_snmp::Value::Integer(1),
        )],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ev = loop {
        let ev: Vec<sms_snmpd::events::TrapEvent> =
            serde_json::from_str(&snmp_latest(&conn, 10).await).unwrap();
        if !ev.is_empty() || Instant::now() > deadline {
            break ev;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].source.starts_with(&format!("{}:", dev.address)),
        "{ev:?}"
    );
    assert_eq!(
        (ev[0].trap_oid.as_str(), ev[0].uptime),
        ("1.3.6.1.6.3.1.1.5.3", Some(4200))
    );

    // A distribution job that fails on the two unreachable devices
    // becomes smsDistributionFailed.
    let job = dist
        .distribute(
            Channel::Dv,
            &dv2.version,
            &sms_distd::inventory::Target::All,
        )
        .await
        .unwrap();
    wait_for("smsDistributionFailed at snmptrapd", || {
        let t = std::fs::read_to_string(&trap_log).unwrap_or_default();
        t.matches(".1.3.6.1.4.1.32473.1.0.2").count() >= 2
    });
    let t = std::fs::read_to_string(&trap_log).unwrap();
    assert!(t.contains(&format!("distribution job {}", job.id)), "{t}");

    // Poll results over D-Bus.
    let p: serde_json::Value = serde_json::from_str(&snmp_polls(&conn).await).unwrap();
    assert_eq!(p.as_object().unwrap().len(), 10);
    assert_eq!(p[&unreachable[0]]["state"], "unreachable");
    let why = p[&unreachable[0]]["last_error"].as_str().unwrap();
    assert!(why.contains("no answer"), "{why}");
    drop(fleet);
}

/// Managers expect to hear when an agent (re)starts: the first start since
/// the appliance booted sends coldStart, a restart of the daemon within the
/// same boot warmStart, to every configured destination.
#[test]
fn cold_start_then_warm_start_reach_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let (_trapd, trap_port, trap_log) = manager(dir.path());
    let extra = format!(
        "[poller]\nenabled = false\n{}",
        trap_destinations(trap_port)
    );
    let mut d = Snmpd::start(dir.path(), &extra, None);
    let log = || std::fs::read_to_string(&trap_log).unwrap_or_default();
    let cold = ".1.3.6.1.6.3.1.1.5.1";
    let warm = ".1.3.6.1.6.3.1.1.5.2";
    wait_for("coldStart at snmptrapd", || {
        log().matches(cold).count() >= 2
    });
    assert!(!log().contains(warm), "{}", log());
    d.stop();
    d.spawn();
    wait_for("warmStart at snmptrapd", || {
        log().matches(warm).count() >= 2
    });
    assert_eq!(log().matches(cold).count(), 2, "{}", log());
}

/// The HA rows of the SMS-MIB come from sms-had's roles (served on the
/// bus by sms-had's own D-Bus code, in this process): a paired primary
/// waiting for its peer is secondary with the peer disconnected; the
/// admin's failover makes it primary and smsHaFailover reaches the
/// manager; its peer heard, the peer is connected; replication falling
/// behind and catching up send smsHaDegraded and smsHaInSync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_rows_and_traps_follow_the_ha_daemon() {
    use sms_had::{dbus::HaIface, epoch::Epoch, roles::Roles};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let bus = DbusDaemon::start().unwrap();
    let epoch = Arc::new(Epoch::load(dir.path()).unwrap());
    let roles = Arc::new(Roles::new(epoch, false, Duration::from_secs(3), true));
    let base = sms_core::bus::HaStatus {
        configured_role: "primary".into(),
        peer: Some("192.0.2.11:3306".into()),
        ..Default::default()
    };
    let _ha = sms_had::dbus::serve_with(
        HaIface {
            roles: Some(roles.clone()),
            base,
        },
        zbus::connection::Builder::address(bus.address()).unwrap(),
    )
    .await
    .unwrap();
    let (_trapd, trap_port, trap_log) = manager(dir.path());
    let extra = format!(
        "[poller]\nenabled = false\n{}",
        trap_destinations(trap_port)
    );
    let d = Snmpd::start(dir.path(), &extra, Some(&bus));
    let dirs = mib_dirs();
    let ha = || {
        let pre = [
            "-M",
            dirs.as_str(),
            "-m",
            "SMS-MIB",
            "-v2c",
            "-c",
            "public",
            "-Oq",
        ];
        d.run(
            "snmpget",
            &pre,
            &["SMS-MIB::smsHaRole.0", "SMS-MIB::smsHaPeerState.0"],
        )
        .stdout
    };
    let traps = || std::fs::read_to_string(&trap_log).unwrap_or_default();
    wait_for("secondary, peer disconnected", || {
        let v = ha();
        v.contains("smsHaRole.0 secondary") && v.contains("smsHaPeerState.0 disconnected")
    });
    assert!(!traps().contains("HA role changed"), "{}", traps());

    roles.failover().unwrap();
    wait_for("primary", || ha().contains("smsHaRole.0 primary"));
    // v2c and v3 destinations: the trap twice.
    wait_for("smsHaFailover at snmptrapd", || {
        traps()
            .matches("HA role changed: waiting for the peer -> active at epoch 2")
            .count()
            >= 2
    });
    let failover_oid = ".1.3.6.1.4.1.32473.1.0.4";
    assert!(traps().contains(failover_oid), "{}", traps());

    roles.heard_peer(2, false, false);
    wait_for("peer connected", || {
        ha().contains("smsHaPeerState.0 connected")
    });

    roles.set_degraded(true);
    wait_for("smsHaDegraded at snmptrapd", || {
        traps()
            .matches("HA replication DEGRADED at epoch 2")
            .count()
            >= 2
    });
    roles.set_degraded(false);
    wait_for("smsHaInSync at snmptrapd", || {
        traps()
            .matches("HA replication in SYNC again at epoch 2")
            .count()
            >= 2
    });
    assert!(traps().contains(".1.3.6.1.4.1.32473.1.0.6"), "{}", traps());
    assert!(traps().contains(".1.3.6.1.4.1.32473.1.0.7"), "{}", traps());
}
