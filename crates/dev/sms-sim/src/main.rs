//! `sms-sim`: runs the simulated world around the appliance.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sms_sim::{content, TmcSim, TmcSimConfig};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sms-sim",
    about = "Simulators of the world around the SMS appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the update centre (HTTPS TMC on a main and a legacy port), its
    /// CDN, a DNS server for their names and, optionally, an HTTP proxy.
    Tmc {
        /// Directory for ca.pem, trust-root.json and sim.json.
        #[arg(long)]
        dir: PathBuf,
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// TMC port (443 semantics); 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        tmc_port: u16,
        /// TMC legacy port (4043 semantics); 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        legacy_port: u16,
        /// CDN HTTP port; 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        cdn_port: u16,
        /// DNS UDP port; 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        dns_port: u16,
        /// Admin API port (publish, faults, stats).
        #[arg(long, default_value_t = 0)]
        admin_port: u16,
        /// Run an HTTP proxy on this port.
        #[arg(long)]
        proxy_port: Option<u16>,
        /// Credentials the proxy demands, as user:password.
        #[arg(long)]
        proxy_auth: Option<String>,
        /// Publish a DV of this size at start.
        #[arg(long, default_value = "8M")]
        dv_size: String,
        /// Publish a TOS version of this size per family at start.
        #[arg(long, default_value = "16M")]
        tos_size: String,
        /// Publish a new DV every this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        publish_every: u64,
        /// Limit the CDN to this many bytes per second per download.
        #[arg(long)]
        cdn_rate: Option<String>,
        /// Address the DNS server gives for the TMC and CDN names (default:
        /// --bind); 10.0.2.2 for an appliance in QEMU user networking.
        #[arg(long)]
        advertise: Option<IpAddr>,
    },
    /// Creates (or shows) the world's keys in DIR: the CA that signs the
    /// update centre's certificate and the catalog signing key, and writes
    /// the ca.pem and trust-root.json an appliance needs to trust them.
    Keys {
        /// Directory of the simulated world.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Runs upstream NTP servers, one per offset (e.g. `--offsets 3.25,3.25,3.25,-40`).
    Ntp {
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Offsets from the system clock, seconds, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            allow_hyphen_values = true,
            default_value = "0"
        )]
        offsets: Vec<f64>,
        /// Random jitter, ± seconds.
        #[arg(long, default_value_t = 0.0)]
        jitter: f64,
        /// Stratum announced.
        #[arg(long, default_value_t = 1)]
        stratum: u8,
        /// First port (0: any free ports).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Runs a fleet of simulated IPS devices, each on its own loopback
    /// address with its own HTTPS endpoint; writes ca.pem, appliance.pem,
    /// appliance-key.pem and devices.json to DIR.
    Fleet {
        /// Directory for the fleet's certificates and device list.
        #[arg(long)]
        dir: PathBuf,
        /// Trust root (JSON) of the vendor keys devices accept.
        #[arg(long)]
        trust_root: PathBuf,
        /// Number of devices.
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Address of the first device.
        #[arg(long, default_value = "127.20.0.1")]
        first_address: std::net::Ipv4Addr,
        /// HTTPS port of every device.
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// UDP port of every device's SNMP agent (community "public"); none when absent.
        #[arg(long)]
        snmp_port: Option<u16>,
        /// Milliseconds an install takes.
        #[arg(long, default_value_t = 2000)]
        install_delay_ms: u64,
        /// Admin API port on 127.0.0.1 (GET /devices); 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        admin_port: u16,
        /// Fault fractions as JSON, e.g. '{"unreachable":0.05,"slow_link":0.05,"slow_link_bps":1000000}'.
        #[arg(long, default_value = "{}")]
        faults: String,
        /// Seed choosing which devices misbehave.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Runs the appliance's LAN: a virtual Ethernet segment QEMU joins with
    /// `-netdev dgram,id=lan,local.type=unix,local.path=VM.sock,remote.type=unix,remote.path=SOCKET`,
    /// with a gateway (DHCP; the world's services beyond it at
    /// --world-host), simulated devices from 192.0.2.10 and host ports
    /// BASE+port forwarded to the appliance at 192.0.2.2.
    Lan {
        /// The segment's unix datagram socket.
        #[arg(long)]
        socket: PathBuf,
        /// Directory for the fleet's certificates and devices.json.
        #[arg(long)]
        dir: PathBuf,
        /// The simulated world's directory: devices' certificates from its
        /// stored fleet CA (which development images trust).
        #[arg(long)]
        world: Option<PathBuf>,
        /// Trust root (JSON) of the vendor keys devices accept.
        #[arg(long)]
        trust_root: PathBuf,
        /// Number of devices (at most 240).
        #[arg(long, default_value_t = 50)]
        devices: usize,
        /// Host ports BASE+22, +80, +443, +1098, +1099, +3306, +4444 (TCP) and
        /// +123, +161, +8162 (UDP) reach the appliance's ports.
        #[arg(long)]
        port_base: Option<u16>,
        /// Address of the world's services as the appliance knows them.
        #[arg(long, default_value = "10.0.2.2")]
        world_host: std::net::Ipv4Addr,
        /// TCP ports of the world, on 127.0.0.1 (default: the QEMU world's).
        #[arg(long, value_delimiter = ',')]
        world_tcp: Option<Vec<u16>>,
        /// UDP ports of the world, on 127.0.0.1.
        #[arg(long, value_delimiter = ',')]
        world_udp: Option<Vec<u16>>,
        /// Share of frames the segment drops (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Extra latency of every frame, milliseconds.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Milliseconds an install takes on a device.
        #[arg(long, default_value_t = 2000)]
        install_delay_ms: u64,
        /// The fleet's admin API on 127.0.0.1 (GET /devices, POST /enrol,
        /// POST /devices/NAME/unplug|plug); 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        admin_port: u16,
    },
    /// Publishes a new version on a running simulator.
    Publish {
        /// Admin address of the simulator (from sim.json).
        #[arg(long)]
        admin: String,
        /// dv or tos.
        channel: String,
        /// Size of the package (per family for TOS).
        #[arg(long)]
        size: Option<String>,
    },
}

async fn admin_request(admin: &str, method: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("connecting to simulator admin API at {admin}"))?;
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "simulator answered: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    sms_core::logging::init("sms-sim");
    match Cli::parse().command {
        Command::Tmc {
            dir,
            bind,
            tmc_port,
            legacy_port,
            cdn_port,
            dns_port,
            admin_port,
            proxy_port,
            proxy_auth,
            dv_size,
            tos_size,
            publish_every,
            cdn_rate,
            advertise,
        } => {
            let mut cfg = TmcSimConfig::new(dir);
            cfg.bind = bind;
            cfg.advertise = advertise;
            cfg.tmc_port = tmc_port;
            cfg.legacy_port = legacy_port;
            cfg.cdn_port = cdn_port;
            cfg.dns_port = dns_port;
            cfg.admin_port = Some(admin_port);
            cfg.proxy_port = proxy_port;
            cfg.proxy_credentials = match proxy_auth {
                Some(a) => match a.split_once(':') {
                    Some((u, p)) => Some((u.to_string(), p.to_string())),
                    None => bail!("--proxy-auth takes user:password"),
                },
                None => None,
            };
            let dv_size = content::parse_size(&dv_size).map_err(anyhow::Error::msg)?;
            let tos_size = content::parse_size(&tos_size).map_err(anyhow::Error::msg)?;
            let sim = TmcSim::start(cfg).await?;
            if let Some(rate) = cdn_rate {
                let rate = content::parse_size(&rate).map_err(anyhow::Error::msg)? as u64;
                sim.set_faults(sms_sim::Faults {
                    rate_bps: Some(rate),
                    ..Default::default()
                });
            }
            sim.publish_dv(dv_size);
            sim.publish_tos(tos_size);
            let i = &sim.info;
            tracing::info!(
                tmc = %format!("{}:{} (legacy {})", i.tmc_host, i.tmc_port, i.tmc_legacy_port),
                cdn = %format!("{}:{}", i.cdn_host, i.cdn_port),
                dns = %i.dns,
                admin = ?i.admin,
                proxy = ?i.proxy,
                "simulated update centre ready"
            );
            let mut tick = tokio::time::interval(Duration::from_secs(publish_every.max(1)));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tick.tick(), if publish_every > 0 => { sim.publish_dv(dv_size); }
                }
            }
            Ok(())
        }
        Command::Keys { dir } => {
            sms_sim::tmc::load_or_create_keys(&dir)?;
            sms_sim::tmc::load_or_create_fleet_ca(&dir)?;
            println!(
                "{}\n{}\n{}",
                dir.join("ca.pem").display(),
                dir.join("trust-root.json").display(),
                dir.join("fleet-ca.pem").display()
            );
            Ok(())
        }
        Command::Ntp {
            bind,
            offsets,
            jitter,
            stratum,
            port,
        } => {
            let mut servers = Vec::new();
            for (i, offset) in offsets.iter().enumerate() {
                let p = if port == 0 { 0 } else { port + i as u16 };
                let cfg = sms_sim::ntp::NtpSimConfig {
                    offset: *offset,
                    jitter,
                    stratum,
                    kiss: None,
                };
                let s = sms_sim::ntp::NtpSimServer::start(std::net::SocketAddr::new(bind, p), cfg)
                    .await?;
                println!("{} offset {offset:+}", s.addr);
                servers.push(s);
            }
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Fleet {
            dir,
            trust_root,
            devices,
            first_address,
            port,
            snmp_port,
            install_delay_ms,
            admin_port,
            faults,
            seed,
        } => {
            let faults: sms_sim::fleet::FleetFaults =
                serde_json::from_str(&faults).context("--faults")?;
            let trust_root = sms_core::metadata::TrustRoot::load(&trust_root)
                .with_context(|| format!("--trust-root {}", trust_root.display()))?;
            let mut fleet = sms_sim::fleet::Fleet::start(sms_sim::fleet::FleetConfig {
                dir,
                devices,
                first_address,
                port,
                install_delay: Duration::from_millis(install_delay_ms),
                trust_root,
                faults,
                seed,
                initial_dv: None,
                snmp_port,
                trap_to: None,
                ntp_server: None,
                lan: None,
                world: None,
            })
            .await?;
            let admin = tokio::net::TcpListener::bind(("127.0.0.1", admin_port)).await?;
            let admin_addr = admin.local_addr()?;
            fleet.serve_admin(admin);
            tracing::info!(
                devices,
                first = %first_address,
                port,
                admin = %admin_addr,
                list = %fleet.devices_file.display(),
                "simulated fleet ready"
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Lan {
            socket,
            dir,
            world,
            trust_root,
            devices,
            port_base,
            world_host,
            world_tcp,
            world_udp,
            loss,
            delay_ms,
            install_delay_ms,
            admin_port,
        } => {
            if !(0.0..=1.0).contains(&loss) {
                bail!("--loss is a share between 0 and 1, not {loss}");
            }
            let trust_root = sms_core::metadata::TrustRoot::load(&trust_root)
                .with_context(|| format!("--trust-root {}", trust_root.display()))?;
            let mut w = sms_sim::lanworld::LanWorld::start(sms_sim::lanworld::LanWorldConfig {
                socket: socket.clone(),
                dir,
                world,
                trust_root,
                devices,
                port_base,
                world_host,
                world_tcp: world_tcp.unwrap_or(sms_sim::lanworld::WORLD_TCP.to_vec()),
                world_udp: world_udp.unwrap_or(sms_sim::lanworld::WORLD_UDP.to_vec()),
                loss,
                delay: Duration::from_millis(delay_ms),
                install_delay: Duration::from_millis(install_delay_ms),
            })
            .await?;
            let admin = tokio::net::TcpListener::bind(("127.0.0.1", admin_port)).await?;
            let admin_addr = admin.local_addr()?;
            w.fleet.serve_admin(admin);
            tracing::info!(
                socket = %socket.display(),
                devices,
                admin = %admin_addr,
                list = %w.fleet.devices_file.display(),
                "LAN ready: gateway 192.0.2.1 (DHCP), appliance 192.0.2.2, devices from 192.0.2.10"
            );
            println!("admin {admin_addr}");
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Publish {
            admin,
            channel,
            size,
        } => {
            let channel: sms_core::package::Channel =
                channel.parse().map_err(anyhow::Error::msg)?;
            let query = size.map(|s| format!("?size={s}")).unwrap_or_default();
            let body =
                admin_request(&admin, "POST", &format!("/admin/publish/{channel}{query}")).await?;
            println!("{body}");
            Ok(())
        }
    }
}
