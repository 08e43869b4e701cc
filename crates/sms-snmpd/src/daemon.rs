//! The daemon put together: engine identity and boots kept in the store,
//! the agent and receiver serving threads, the MIB refresh, the poller and
//! the trap sender following the other daemons' signals.

use crate::access::Access;
use crate::agent::Agent;
use crate::config::SnmpConfig;
use crate::events::EventLog;
use crate::mib::{self, DaemonValues, Identity, SystemText};
use crate::poller::{self, PollTable};
use crate::receiver::Receiver;
use crate::receiver::SavedClock;
use crate::sender::{Notification, TrapSender};
use anyhow::{Context, Result};
use sms_core::store::{Batch, Store};
use sms_snmp::usm::Engine;
use sms_snmp::value::VarBind;
use sms_snmp::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const TREE: &str = "snmp";

/// Everything the daemon runs.
pub struct Daemon {
    /// The daemon's own store (engine identity, system objects, remote
    /// engines' clocks).
    store: Store,
    /// Configuration.
    pub cfg: SnmpConfig,
    /// Identity shown in the MIB.
    pub identity: Identity,
    /// The agent.
    pub agent: Arc<Agent>,
    /// The trap receiver.
    pub receiver: Arc<Receiver>,
    /// The trap sender.
    pub sender: Arc<TrapSender>,
    /// Poll results by device name.
    pub polls: PollTable,
    /// Cached values of the other daemons.
    pub values: Mutex<DaemonValues>,
    /// Bound agent addresses.
    pub agent_addrs: Vec<SocketAddr>,
    /// Bound receiver addresses.
    pub receiver_addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("agent", &self.agent_addrs)
            .field("receiver", &self.receiver_addrs)
            .finish()
    }
}

use sms_core::daemon::host_name as hostname;

/// The format of this daemon's store: raised with a migration when its
/// data layout changes, so an older firmware refuses a newer store
/// instead of misreading it.
pub const STORE_SCHEMA: sms_core::store::Schema = sms_core::store::Schema {
    owner: "sms-snmpd",
    version: 1,
    migrations: &[],
};

impl Daemon {
    /// The daemon's store, served on the bus for backups
    /// (`sms_core::bus::StoreIface`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the state, builds every part and starts the serving threads.
    pub fn start(cfg: SnmpConfig) -> Result<Arc<Daemon>> {
        std::fs::create_dir_all(&cfg.state_dir)
            .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
        let store = Store::open_with_schema(&cfg.state_dir.join("store"), &STORE_SCHEMA)
            .with_context(|| format!("opening the store in {}", cfg.state_dir.display()))?;
        let engine_id = if !cfg.agent.engine_id.is_empty() {
            let id = hex::decode(cfg.agent.engine_id.trim_start_matches("0x"))
                .context("agent.engine_id is not hex")?;
            if !(5..=32).contains(&id.len()) {
                anyhow::bail!("agent.engine_id must be 5 to 32 octets");
            }
            id
        } else if let Some(id) = store.get(TREE, "engine_id")? {
            id
        } else {
            Engine::generate_id(32473)
        };
        let boots: u32 = store
            .get_json::<u32>(TREE, "boots")?
            .unwrap_or(0)
            .saturating_add(1);
        let system = store
            .get_json::<SystemText>(TREE, "system")?
            .unwrap_or_else(|| SystemText {
                contact: cfg.agent.contact.clone(),
                name: if cfg.agent.name.is_empty() {
                    hostname()
                } else {
                    cfg.agent.name.clone()
                },
                location: cfg.agent.location.clone(),
            });
        // Cold start: the first start since the appliance booted; warm: a
        // restart of the daemon within the same boot.
        let boot_id = current_boot_id();
        let warm = boot_id.is_some() && store.get(TREE, "boot_id")? == boot_id;
        let mut b = Batch::new();
        b.put(TREE, "engine_id", engine_id.clone())
            .put_json(TREE, "boots", &boots);
        if let Some(id) = &boot_id {
            b.put(TREE, "boot_id", id.clone());
        }
        store.apply(&b).context("keeping the engine boots")?;
        let engine = Arc::new(Engine::new(engine_id.clone(), boots));
        let access = Arc::new(
            Access::build(&cfg, &engine_id)
                .map_err(anyhow::Error::msg)
                .context("access rules")?,
        );
        let identity = Identity {
            firmware: env!("CARGO_PKG_VERSION").to_string(),
            engine_id,
            engine_boots: boots,
        };
        let values = DaemonValues {
            ha_role: 1,
            ha_peer: 1,
            ntp_sync: 3,
            ntp_stratum: 16,
            ..DaemonValues::default()
        };
        let snapshot = mib::build(&identity, &system, &values, &mib::interfaces());
        let persist_store = store.clone();
        let agent = Arc::new(
            Agent::new(
                engine.clone(),
                access.clone(),
                snapshot,
                system,
                Some(Box::new(move |s: &SystemText| {
                    let mut b = Batch::new();
                    b.put_json(TREE, "system", s);
                    persist_store
                        .apply(&b)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })),
                cfg.agent.max_response,
            )
            .with_limits(
                cfg.agent.community_max_response,
                cfg.agent.rate_limit.clone(),
            ),
        );
        let forward = match cfg.receiver.syslog {
            Some(addr) => Some(crate::events::syslog_forwarder(addr).context("receiver.syslog")?),
            None => None,
        };
        let log = EventLog::open(&cfg.state_dir, cfg.receiver.retention, forward)
            .context("opening the event log")?;
        let receiver = Arc::new(
            Receiver::new(
                engine.clone(),
                access.clone(),
                &cfg.receiver.communities,
                &cfg.receiver.users,
                log,
            )
            .map_err(anyhow::Error::msg)?,
        );
        let sender = Arc::new(
            TrapSender::new(engine.clone(), &access, &cfg.trap_destination)
                .map_err(anyhow::Error::msg)?,
        );
        if let Some(saved) = store.get_json::<Vec<SavedClock>>(TREE, "remote_clocks")? {
            receiver.restore_clocks(&saved);
            tracing::info!("restored the clocks of {} remote engine(s)", saved.len());
        }
        let log = receiver.log().clone();
        agent.set_traps_stored(Box::new(move || log.stored()));
        let (start, text) = if warm {
            (Notification::WarmStart, "sms-snmpd restarted")
        } else {
            (Notification::ColdStart, "sms-snmpd started")
        };
        sender.send(start, agent.uptime(), text, Vec::new());
        let a = agent.clone();
        let agent_addrs = crate::server::start(
            "snmp-agent",
            &cfg.agent.listen,
            cfg.agent.threads,
            4 << 20,
            Arc::new(move |p, src, _| a.handle(p, src)),
        )
        .context("starting the agent")?;
        let r = receiver.clone();
        let receiver_addrs = crate::server::start(
            "snmp-traps",
            &cfg.receiver.listen,
            1,
            cfg.receiver.receive_buffer,
            Arc::new(move |p, src, port| r.handle(p, src, port)),
        )
        .context("starting the trap receiver")?;
        Ok(Arc::new(Daemon {
            store,
            cfg,
            identity,
            agent,
            receiver,
            sender,
            polls: Arc::new(Mutex::new(Default::default())),
            values: Mutex::new(values),
            agent_addrs,
            receiver_addrs,
        }))
    }

    /// Keeps the remote engines' clocks in the store when they changed
    /// since `last`; returns what is now kept.
    pub fn save_clocks(&self, last: &[SavedClock]) -> Vec<SavedClock> {
        let now = self.receiver.clocks_snapshot();
        if now.as_slice() == last {
            return now;
        }
        let mut b = Batch::new();
        b.put_json(TREE, "remote_clocks", &now);
        if let Err(e) = self.store.apply(&b) {
            tracing::warn!("keeping the remote engines' clocks: {e}");
            return last.to_vec();
        }
        now
    }

    /// Keeps the remote engines' clocks every two seconds, so that a
    /// restart does not reopen the replay window of the v3 traps seen.
    pub async fn save_clocks_loop(self: Arc<Self>) {
        let mut last = Vec::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            let d = self.clone();
            let l = last.clone();
            last = tokio::task::spawn_blocking(move || d.save_clocks(&l))
                .await
                .unwrap_or(last);
        }
    }

    /// Rebuilds the MIB snapshot from the cached values and poll results.
    pub fn rebuild(&self) {
        let mut vals = sms_core::daemon::lock(&self.values).clone();
        {
            let polls = sms_core::daemon::lock(&self.polls);
            for d in &mut vals.devices {
                if let Some(p) = polls.get(&d.name) {
                    d.poll = p.state;
                    d.uptime = p.uptime;
                    d.descr = p.descr.clone();
                }
            }
        }
        let m = mib::build(
            &self.identity,
            &self.agent.system(),
            &vals,
            &mib::interfaces(),
        );
        self.agent.replace_mib(m);
    }

    /// Refreshes the daemon values and the snapshot forever.
    pub async fn refresh_loop(self: Arc<Self>, conn: Option<zbus::Connection>) {
        let mut tick = tokio::time::interval(
            self.cfg
                .agent
                .refresh_secs
                .max(std::time::Duration::from_millis(200)),
        );
        let mut last_errors = Vec::new();
        loop {
            tick.tick().await;
            if let Some(c) = &conn {
                let mut v = sms_core::daemon::lock(&self.values).clone();
                let before = (v.ha_role, v.ha_state.clone(), v.ha_degraded);
                let errors = crate::sources::refresh(c, &mut v).await;
                self.ha_traps(&before, &v);
                if errors != last_errors {
                    for e in &errors {
                        tracing::info!("daemon values: {e}");
                    }
                    last_errors = errors;
                }
                *sms_core::daemon::lock(&self.values) = v;
            }
            self.rebuild();
        }
    }

    /// smsHaFailover when this node's HA role changed, smsHaDegraded and
    /// smsHaInSync when its replication fell behind or caught up (not at
    /// the first answer of sms-had: that is no change).
    fn ha_traps(&self, before: &(i32, String, bool), now: &DaemonValues) {
        let (role, state, degraded) = before;
        if state.is_empty() {
            return;
        }
        let role_oid = mib::sms(&[4, 1, 0]);
        if *role != now.ha_role {
            let text = format!(
                "HA role changed: {state} -> {} at epoch {}",
                now.ha_state, now.ha_epoch
            );
            tracing::warn!("{text}");
            self.sender.send(
                Notification::HaFailover,
                self.agent.uptime(),
                &text,
                vec![VarBind::new(role_oid, Value::Integer(now.ha_role))],
            );
        }
        if *degraded != now.ha_degraded {
            let (n, text) = if now.ha_degraded {
                (
                    Notification::HaDegraded,
                    format!(
                        "HA replication DEGRADED at epoch {}: commits are not all on the peer",
                        now.ha_epoch
                    ),
                )
            } else {
                (
                    Notification::HaInSync,
                    format!("HA replication in SYNC again at epoch {}", now.ha_epoch),
                )
            };
            let peer_oid = mib::sms(&[4, 2, 0]);
            self.sender.send(
                n,
                self.agent.uptime(),
                &text,
                vec![VarBind::new(peer_oid, Value::Integer(now.ha_peer))],
            );
        }
    }

    /// Polls the managed devices forever; reachability changes become traps.
    pub async fn poll_loop(self: Arc<Self>) {
        if !self.cfg.poller.enabled {
            return;
        }
        if self.cfg.poller.community.is_empty() {
            tracing::warn!(
                "device poller idle: no community to poll the devices with (set snmp community ... in configuration mode, or [poller] community)"
            );
            return;
        }
        let mut tick = tokio::time::interval(
            self.cfg
                .poller
                .interval_secs
                .max(std::time::Duration::from_secs(1)),
        );
        loop {
            tick.tick().await;
            let devices: Vec<(String, std::net::IpAddr)> = sms_core::daemon::lock(&self.values)
                .devices
                .iter()
                .filter_map(|d| d.address.parse().ok().map(|a| (d.name.clone(), a)))
                .collect();
            if devices.is_empty() {
                continue;
            }
            let changes = poller::poll_round(&self.cfg.poller, &devices, &self.polls).await;
            for c in changes {
                let (n, text) = match c.state {
                    mib::PollState::Unreachable => (
                        Notification::DeviceUnreachable,
                        format!(
                            "device {} ({}) unreachable: {}",
                            c.name, c.address, c.reason
                        ),
                    ),
                    _ => (
                        Notification::DeviceReachable,
                        format!("device {} ({}) reachable again", c.name, c.address),
                    ),
                };
                let name_oid = mib::sms(&[6, 3, 0]);
                self.sender.send(
                    n,
                    self.agent.uptime(),
                    &text,
                    vec![VarBind::new(name_oid, Value::text(&c.name))],
                );
            }
            self.rebuild();
        }
    }

    /// Turns the other daemons' signals into traps: a DV activated, a
    /// distribution job that failed.
    pub async fn follow_signals(self: Arc<Self>, conn: zbus::Connection) {
        use futures_util::StreamExt;
        // Through proxies of the daemons' well-known names: zbus delivers
        // only signals from each name's current owner and object path, so a
        // forged signal from another local process makes no trap.
        let subscribed = async {
            let updater = sms_core::bus::Updater1Proxy::new(&conn).await?;
            let distributor = sms_core::bus::Distributor1Proxy::new(&conn).await?;
            zbus::Result::Ok((
                updater.receive_package_activated().await?,
                distributor.receive_job_finished().await?,
            ))
        };
        let (mut activated, mut finished) = match subscribed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("subscribing to the other daemons' signals: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                Some(signal) = activated.next() => {
                    let Ok(a) = signal.args() else { continue };
                    if a.channel == "dv" {
                        self.sender.send(
                            Notification::DvActivated,
                            self.agent.uptime(),
                            &format!("DV {} activated", a.version),
                            Vec::new(),
                        );
                    }
                }
                Some(signal) = finished.next() => {
                    let Ok(a) = signal.args() else { continue };
                    if a.state != "completed" || !a.summary.contains("failed 0") {
                        self.sender.send(
                            Notification::DistributionFailed,
                            self.agent.uptime(),
                            &format!("distribution job {} {}: {}", a.id, a.state, a.summary),
                            Vec::new(),
                        );
                    }
                }
                else => break,
            }
        }
    }
}

/// This boot's identity (a random UUID the kernel makes at boot).
fn current_boot_id() -> Option<Vec<u8>> {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim_ascii().to_vec())
}
