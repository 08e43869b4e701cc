//! Requests per second of the sms-snmpd agent against net-snmp's snmpd on
//! the same machine in the same run: the same load generator, the same
//! number of requests in flight, alternating rounds, one serving thread
//! each. Get of sysDescr.0 (v2c), GetBulk with max-repetitions 10 over the
//! interface table (v2c; both serve it from the live system), and Get in
//! v3 authPriv (SHA-256, AES-128). Every load run is bounded in time.

use anyhow::{Context, Result};
use sms_bench::snmp::{self, AUTH_PW, PRIV_PW, USER};
use sms_bench::{median, rounds, Child};
use sms_snmp::PduType;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_ours(dir: &std::path::Path, port: u16) -> Result<Child> {
    let cfg = dir.join("snmpd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"state_dir = "{}"
[agent]
listen = ["127.0.0.1:{port}"]
threads = 1
# net-snmp's snmpd has neither a per-source rate limit nor a v2c response
# cap: both off, so that the two serve the same load the same answers.
community_max_response = 65000
[agent.rate_limit]
enabled = false
[[community]]
name = "public"
sources = ["127.0.0.1"]
view = "all"
[[user]]
name = "{USER}"
auth = "SHA-256"
auth_password = "{AUTH_PW}"
privacy = "AES"
privacy_password = "{PRIV_PW}"
read_view = "all"
[receiver]
listen = []
[poller]
enabled = false
"#,
            dir.join("state").display()
        ),
    )?;
    snmp::spawn_snmpd(&cfg)
}

fn start_netsnmp(dir: &std::path::Path, port: u16) -> Result<Child> {
    let cfg = dir.join("net-snmpd.conf");
    std::fs::write(
        &cfg,
        format!(
            "agentAddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\ncreateUser {USER} SHA-256 {AUTH_PW} AES {PRIV_PW}\nrouser {USER} priv\n"
        ),
    )?;
    let persist = dir.join("net-snmp-persist");
    std::fs::create_dir_all(&persist)?;
    Ok(Child(
        sms_bench::own_group(&mut Command::new("snmpd"))
            .args(["-f", "-C", "-Ln", "-c"])
            .arg(&cfg)
            .env("SNMP_PERSISTENT_DIR", &persist)
            .env("MIBS", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("snmpd (apt-get install snmpd)")?,
    ))
}

/// Builds the request pool for one agent.
type PoolFor<'a> = Box<dyn Fn(SocketAddr) -> Result<snmp::Pool> + 'a>;

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (p_ours, p_net) = (free_port()?, free_port()?);
    let ours: SocketAddr = format!("127.0.0.1:{p_ours}").parse()?;
    let net: SocketAddr = format!("127.0.0.1:{p_net}").parse()?;
    let _a = start_ours(dir.path(), p_ours)?;
    let _b = start_netsnmp(dir.path(), p_net)?;
    let get = snmp::v2c_pool(PduType::Get, "1.3.6.1.2.1.1.1.0", 0, 1024);
    let bulk = snmp::v2c_pool(PduType::GetBulk, "1.3.6.1.2.1.2.2.1", 10, 1024);
    for (name, a) in [("sms-snmpd", ours), ("net-snmp snmpd", net)] {
        anyhow::ensure!(snmp::answers(a, &get), "{name} does not answer on {a}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let window: usize = std::env::var("SMS_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let secs = 2.0;
    let n = rounds(3);
    println!("SNMP agent: sms-snmpd vs net-snmp snmpd, one serving thread each, {window} requests in flight, {n} rounds of {secs} s");
    println!(
        "{:<34} {:>14} {:>14} {:>7}",
        "request", "sms-snmpd/s", "snmpd/s", "ratio"
    );
    let mut kinds: Vec<(&str, PoolFor)> = vec![
        ("Get sysDescr.0 (v2c)", Box::new(|_| Ok(get.clone()))),
        ("GetBulk ifTable x10 (v2c)", Box::new(|_| Ok(bulk.clone()))),
        (
            "Get sysDescr.0 (v3 authPriv)",
            Box::new(|a| snmp::v3_pool(a, PduType::Get, "1.3.6.1.2.1.1.1.0", 0, 1024)),
        ),
    ];
    for (name, pool) in kinds.drain(..) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..n {
            // Pools are built per round so v3 times stay inside the window.
            a.push(snmp::load(ours, &pool(ours)?, window, secs)?);
            b.push(snmp::load(net, &pool(net)?, window, secs)?);
        }
        let (a, b) = (median(a), median(b));
        println!("{name:<34} {a:>14.0} {b:>14.0} {:>7.2}", a / b.max(1.0));
    }
    Ok(())
}
