//! The commands of the CLI and what runs them.
//!
//! [`tree`] is the whole language (see [`crate::grammar`]); [`Cli::execute`]
//! runs one line: it matches the line, calls the daemons over D-Bus (the
//! update, distribution, NTP and SNMP daemons; systemd for units), writes
//! every command that changes anything to the audit log, and returns text
//! in which everything that came from outside has its control characters
//! neutralised. A line may end in `| json` for the daemons' JSON.

use crate::audit::Audit;
use crate::configure::{self, Session, SettingsPaths};
use crate::grammar::{self, clean, ArgKind, Node, Parsed};
use serde_json::Value;
use sms_core::bus;
use sms_core::settings::{self, SettingsStore};
use std::time::Duration;

/// Firmware version (all SMS OS components share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Units `services restart` may touch.
pub const SERVICES: &[&str] = &["sms-updated", "sms-distd", "sms-ntpd", "sms-snmpd"];

/// The command tree.
pub fn tree() -> Vec<Node> {
    use ArgKind::*;
    let channel_version = |verb: &'static str, help: &'static str| {
        Node::kw(verb, help).then(vec![Node::arg(Version, "package version").run(verb)])
    };
    vec![
        Node::kw("show", "show the appliance's state").then(vec![
            Node::kw("version", "firmware version and host name").run("show-version"),
            Node::kw("system", "uptime, load, memory, disk").run("show-system"),
            Node::kw("services", "the appliance's daemons").run("show-services"),
            Node::kw("dv", "DV packages on the appliance").run("show-dv"),
            Node::kw("tos", "TOS images on the appliance").run("show-tos"),
            Node::kw("devices", "managed devices").run("show-devices"),
            Node::kw("device", "one managed device")
                .then(vec![Node::arg(Name, "device name").run("show-device")]),
            Node::kw("distribution", "distribution jobs")
                .then(vec![Node::kw("jobs", "every job").run("show-jobs")]),
            Node::kw("events", "traps received from devices").run("show-events"),
            Node::kw("ntp", "time service").run("show-ntp"),
            Node::kw("snmp", "SNMP agent, receiver and poller").run("show-snmp"),
            Node::kw("update", "update daemon status").run("show-update"),
            Node::kw("dns", "DNS servers of the update daemon").run("show-dns"),
            Node::kw("proxy", "proxy towards the update centre").run("show-proxy"),
            Node::kw("ha", "high availability role and peer").run("show-ha"),
            Node::kw("configuration", "the committed settings as set commands")
                .run("show-configuration"),
            Node::kw("files", "the CLI's saved files (save, load)").run("show-files"),
            Node::kw("audit", "the audit log (who changed what)").run("show-audit"),
            Node::kw("log", "the last lines of a daemon's journal").then(vec![Node::arg(
                Name,
                "sms-updated, sms-distd, sms-ntpd, sms-snmpd",
            )
            .run("show-log")]),
        ]),
        Node::kw("system", "the appliance itself").then(vec![
            Node::kw("reboot", "restart the appliance (asks first)")
                .run("system-reboot")
                .then(vec![
                    Node::kw("confirm", "without asking").run("system-reboot")
                ]),
            Node::kw("shutdown", "power the appliance off (asks first)")
                .run("system-shutdown")
                .then(vec![
                    Node::kw("confirm", "without asking").run("system-shutdown")
                ]),
        ]),
        Node::kw("update", "fetch packages from the update centre").then(vec![
            Node::kw("dv", "signature packages").then(vec![
                Node::kw("refresh", "ask the update centre what is available")
                    .run("update-dv-refresh"),
                Node::kw("check", "check and install the newest DV now").run("update-dv-check"),
                channel_version("download", "download a version"),
                channel_version("activate", "make a downloaded version active"),
            ]),
            Node::kw("tos", "device operating system images").then(vec![
                Node::kw("refresh", "ask the update centre what is available")
                    .run("update-tos-refresh"),
                channel_version("download", "download a version (all platforms)"),
            ]),
        ]),
        Node::kw("distribute", "push a package to managed devices").then(vec![
            Node::kw("dv", "a DV package")
                .then(vec![Node::arg(Version, "version")
                    .then(vec![Node::kw("to", "target").then(targets())])]),
            Node::kw("tos", "a TOS image")
                .then(vec![Node::arg(Version, "version")
                    .then(vec![Node::kw("to", "target").then(targets())])]),
        ]),
        Node::kw("devices", "the managed devices' inventory").then(vec![
            Node::kw("add", "add a device").then(vec![Node::arg(Name, "device name").then(vec![
                Node::kw("address", "its management address").then(vec![Node::arg(
                    Address, "address",
                )
                .then(vec![
                    Node::kw("platform", "its platform family").then(platforms())
                ])]),
            ])]),
            Node::kw("remove", "remove a device from the inventory").then(vec![Node::arg(
                Name,
                "device name",
            )
            .run("devices-remove")]),
            Node::kw("edit", "change a device").then(vec![Node::arg(Name, "device name").then(
                vec![
                    Node::kw("group", "move it to a group").then(vec![Node::arg(
                        Name,
                        "group name",
                    )
                    .run("devices-edit")]),
                    Node::kw("address", "its new address")
                        .then(vec![Node::arg(Address, "address").run("devices-edit")]),
                    Node::kw("port", "its new HTTPS port")
                        .then(vec![Node::arg(Number, "port").run("devices-edit")]),
                ],
            )]),
            Node::kw("groups", "groups and how many devices each has").run("devices-groups"),
        ]),
        Node::kw("job", "distribution jobs").then(vec![
            Node::kw("status", "one job's report")
                .then(vec![Node::arg(Number, "job number").run("job-status")]),
            Node::kw("cancel", "stop a running job")
                .then(vec![Node::arg(Number, "job number").run("job-cancel")]),
        ]),
        Node::kw("services", "the appliance's daemons").then(vec![
            Node::kw("status", "state of every daemon").run("show-services"),
            Node::kw("restart", "restart a daemon and wait for it").then(vec![Node::arg(
                Name,
                "sms-updated, sms-distd, sms-ntpd, sms-snmpd",
            )
            .run("services-restart")]),
        ]),
        Node::kw(
            "configure",
            "enter configuration mode (staged changes, commit)",
        )
        .run("configure"),
        Node::kw("who", "who is logged in").run("who"),
        Node::kw("whoami", "who you are logged in as").run("whoami"),
        Node::kw("help", "the commands").run("help"),
        Node::kw("exit", "log out").run("exit"),
        Node::kw("logout", "log out").run("exit"),
    ]
}

/// `devices add NAME address A platform P [group G] [port N]`.
fn platforms() -> Vec<Node> {
    let options = || {
        vec![
            Node::kw("group", "put it in a group (default: default)").then(vec![Node::arg(
                ArgKind::Name,
                "group name",
            )
            .run("devices-add")
            .then(vec![Node::kw("port", "HTTPS port (443)").then(vec![
                Node::arg(ArgKind::Number, "port").run("devices-add"),
            ])])]),
            Node::kw("port", "HTTPS port (443)")
                .then(vec![Node::arg(ArgKind::Number, "port").run("devices-add")]),
        ]
    };
    [
        ("200-2400", "IPS 200, 400, 1200, 2400"),
        ("50-100e", "IPS 50, 100E"),
        ("5000e", "IPS 5000E"),
    ]
    .into_iter()
    .map(|(w, h)| Node::kw(w, h).run("devices-add").then(options()))
    .collect()
}

fn targets() -> Vec<Node> {
    vec![
        Node::kw("all", "every device").run("distribute"),
        Node::kw("group", "the devices of a group").then(vec![Node::arg(
            ArgKind::Name,
            "group name",
        )
        .run("distribute")]),
        Node::kw("device", "one device").then(vec![
            Node::arg(ArgKind::Name, "device name").run("distribute")
        ]),
    ]
}

/// What a command line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Text to show; the command succeeded.
    Ok(String),
    /// Text to show; the command failed (exit status 1).
    Failed(String),
    /// Log out.
    Exit,
    /// Ask for these pass phrases without echo, then run the line again
    /// with them ([`Cli::set_secrets`]).
    Secret {
        /// One prompt per pass phrase.
        prompts: Vec<String>,
        /// The line to run with them.
        line: String,
    },
    /// Ask this question; run the line again with ` confirm` on "yes".
    Confirm {
        /// The question.
        question: String,
        /// The line to run when confirmed.
        line: String,
    },
}

/// The CLI's state: who runs it, the bus, the audit log.
pub struct Cli {
    user: String,
    bus: Option<zbus::Connection>,
    audit: Audit,
    rt: tokio::runtime::Runtime,
    paths: SettingsPaths,
    session: Option<Session>,
    secrets: Vec<String>,
}

/// How long a daemon may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Cli {
    /// A CLI for `user` writing its audit log with `audit`; connects to the
    /// system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured) when it can.
    pub fn new(user: String, audit: Audit) -> std::io::Result<Cli> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let bus = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), zbus::Connection::system())
                .await
                .ok()
                .and_then(|r| r.ok())
        });
        Ok(Cli {
            user,
            bus,
            audit,
            rt,
            paths: SettingsPaths::default(),
            session: None,
            secrets: Vec::new(),
        })
    }

    /// Keeps settings in `paths` instead of the appliance's places.
    pub fn with_settings(mut self, paths: SettingsPaths) -> Cli {
        self.paths = paths;
        self
    }

    fn store(&self) -> SettingsStore {
        SettingsStore::new(&self.paths.dir)
    }

    /// The commands of the current mode.
    pub fn tree(&self) -> Vec<Node> {
        if self.session.is_some() {
            let operational = tree()
                .into_iter()
                .filter(|n| !matches!(n.word, "configure" | "exit" | "logout" | "help"))
                .collect();
            configure::tree(operational)
        } else {
            tree()
        }
    }

    /// Whether configuration mode is on (the prompt ends in `#`).
    pub fn configuring(&self) -> bool {
        self.session.is_some()
    }

    /// Pass phrases for the next line run (asked by the shell after
    /// [`Outcome::Secret`]).
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = secrets;
    }

    /// The logged-in user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Live values for completion of an argument type.
    pub fn live(&self, kind: ArgKind) -> Vec<String> {
        let r = match kind {
            ArgKind::Name => {
                self.call(bus::DISTRIBUTOR_NAME, bus::DISTRIBUTOR_PATH, "Devices", &())
            }
            ArgKind::Version => self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, "List", &("dv",)),
            _ => return Vec::new(),
        };
        let Ok(v) = r else { return Vec::new() };
        let mut out: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|d| {
                        ["name", "group", "version"]
                            .iter()
                            .filter_map(|k| d.get(*k).and_then(|x| x.as_str()).map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    fn call<B>(&self, dest: &str, path: &str, method: &str, body: &B) -> Result<Value, String>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let Some(conn) = &self.bus else {
            return Err("the system bus is not reachable".into());
        };
        let daemon = dest.trim_start_matches("org.smsos.");
        self.rt.block_on(async {
            let fut = conn.call_method(Some(dest), path, Some(dest), method, body);
            let reply = tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .map_err(|_| {
                    format!(
                        "{daemon} did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| match e {
                    zbus::Error::MethodError(_, Some(msg), _) => msg,
                    other => format!("{daemon}: {other}"),
                })?;
            let body = reply.body();
            if let Ok(s) = body.deserialize::<String>() {
                return Ok(serde_json::from_str(&s).unwrap_or(Value::String(s)));
            }
            if let Ok(n) = body.deserialize::<u32>() {
                return Ok(Value::from(n));
            }
            Ok(Value::Null)
        })
    }

    /// Runs one command line.
    pub fn execute(&mut self, line: &str) -> Outcome {
        let (line, json) = match line.trim().strip_suffix("| json") {
            Some(l) => (l.trim_end(), true),
            None => (line.trim(), false),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return Outcome::Ok(String::new());
        }
        let parsed = match grammar::parse(&self.tree(), &words) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("% {e}")),
        };
        if parsed.action.starts_with("cfg-") || parsed.action == "configure" {
            let secrets = std::mem::take(&mut self.secrets);
            return self.configure(&parsed, line, secrets);
        }
        if parsed.action.starts_with("system-") && parsed.keywords.last() != Some(&"confirm") {
            let what = if parsed.action == "system-reboot" {
                "reboot"
            } else {
                "power off"
            };
            return Outcome::Confirm {
                question: format!("Really {what} the appliance? Every service stops. [yes/NO] "),
                line: format!("{} confirm", parsed.keywords.join(" ")),
            };
        }
        let changes = matches!(
            parsed.action,
            "update-dv-check"
                | "download"
                | "activate"
                | "distribute"
                | "job-cancel"
                | "devices-add"
                | "devices-remove"
                | "devices-edit"
                | "services-restart"
                | "system-reboot"
                | "system-shutdown"
        ) || parsed.action.ends_with("-refresh");
        let result = self.run(&parsed, json);
        if changes {
            let what = parsed.words.join(" ");
            let res = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("failed: {e}"),
            };
            if let Err(e) = self.audit.record(&self.user, &what, &res) {
                return Outcome::Failed(format!("% the audit log cannot be written ({e}); nothing else was done after the command"));
            }
        }
        match result {
            Ok(text) if parsed.action == "exit" && text.is_empty() => Outcome::Exit,
            Ok(text) => Outcome::Ok(text),
            Err(e) => Outcome::Failed(format!("% {}", clean(&e))),
        }
    }

    fn configure(&mut self, p: &Parsed, line: &str, secrets: Vec<String>) -> Outcome {
        let needed = configure::secrets_needed(p.action);
        if secrets.len() < needed.len() {
            return Outcome::Secret {
                prompts: needed.iter().map(|s| s.to_string()).collect(),
                line: line.to_string(),
            };
        }
        let store = self.store();
        if p.action == "configure" {
            return match store.committed() {
                Ok(c) => {
                    self.session = Some(Session {
                        base: c.clone(),
                        candidate: c,
                    });
                    Outcome::Ok(
                        "configuration mode: set/delete stage changes; compare, commit, discard, rollback; exit to leave".into(),
                    )
                }
                Err(e) => Outcome::Failed(format!("% the committed settings cannot be read: {e}")),
            };
        }
        let Some(session) = self.session.as_mut() else {
            return Outcome::Failed("% not in configuration mode (type configure)".into());
        };
        match p.action {
            "cfg-exit" if !settings::diff(&session.base, &session.candidate).is_empty() => {
                return Outcome::Failed(
                    "% uncommitted changes: commit them, `discard`, or `exit discard`".into(),
                )
            }
            "cfg-exit" | "cfg-exit-discard" => {
                self.session = None;
                return Outcome::Ok(String::new());
            }
            _ => {}
        }
        let changes = settings::diff(&session.base, &session.candidate);
        let result = configure::apply(session, &store, &self.paths, p, &secrets);
        if p.action == "cfg-commit" && !changes.is_empty() {
            let res = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("failed: {}", e.lines().last().unwrap_or_default()),
            };
            let what = format!("commit: {}", changes.join("; "));
            if let Err(e) = self.audit.record(&self.user, &what, &res) {
                return Outcome::Failed(format!("% the audit log cannot be written ({e})"));
            }
        }
        match result {
            Ok(t) => Outcome::Ok(t),
            Err(e) => Outcome::Failed(format!("% {}", clean_multiline(&e))),
        }
    }

    fn run(&mut self, p: &Parsed, json: bool) -> Result<String, String> {
        let arg = |i: usize| p.args.get(i).map(|a| a.1.clone()).unwrap_or_default();
        let show = |v: Value, f: &dyn Fn(&Value) -> String| {
            if json {
                Ok(clean_json(&v))
            } else {
                Ok(f(&v))
            }
        };
        match p.action {
            "exit" => Ok(String::new()),
            "help" => Ok(help_text(&self.tree())),
            "whoami" => Ok(clean(&self.user)),
            "show-version" => {
                let host = sms_core::daemon::host_name();
                Ok(format!(
                    "SMS OS {VERSION}\nhost name: {}",
                    clean(host.trim())
                ))
            }
            "show-system" => Ok(system_text()),
            "show-dns" | "show-proxy" | "show-ha" | "show-configuration" => {
                let c = self.store().committed().map_err(|e| e.to_string())?;
                Ok(settings_text(p.action, &c))
            }
            "who" => self.who(),
            "show-files" => {
                let files = crate::files::list(&self.paths.files)?;
                let rows: Value = files
                    .into_iter()
                    .map(|(n, len, t)| {
                        let when = time::OffsetDateTime::from_unix_timestamp(t)
                            .ok()
                            .and_then(|d| {
                                d.format(&time::format_description::well_known::Rfc3339)
                                    .ok()
                            })
                            .unwrap_or_default();
                        serde_json::json!({"name": n, "bytes": len, "modified": when})
                    })
                    .collect();
                show(rows, &|v| {
                    table(
                        v,
                        &[
                            ("name", "NAME"),
                            ("bytes", "BYTES"),
                            ("modified", "MODIFIED"),
                        ],
                    )
                })
            }
            "show-services" => Ok(self.services_text()),
            "show-dv" | "show-tos" => {
                let ch = if p.action == "show-dv" { "dv" } else { "tos" };
                let v = self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, "List", &(ch,))?;
                show(v, &|v| {
                    table(
                        v,
                        &[
                            ("version", "VERSION"),
                            ("family", "PLATFORM"),
                            ("active", "ACTIVE"),
                            ("length", "BYTES"),
                        ],
                    )
                })
            }
            "show-update" => {
                let v = self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, "Status", &())?;
                show(v, &fields)
            }
            "show-devices" => {
                let v = self.call(bus::DISTRIBUTOR_NAME, bus::DISTRIBUTOR_PATH, "Devices", &())?;
                show(v, &|v| {
                    table(
                        v,
                        &[
                            ("name", "NAME"),
                            ("address", "ADDRESS"),
                            ("group", "GROUP"),
                            ("family", "PLATFORM"),
                            ("dv", "DV"),
                            ("tos", "TOS"),
                            ("state", "STATE"),
                        ],
                    )
                })
            }
            "show-device" => {
                let v = self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "Device",
                    &(arg(0),),
                )?;
                show(v, &fields)
            }
            "show-jobs" => {
                let v = self.call(bus::DISTRIBUTOR_NAME, bus::DISTRIBUTOR_PATH, "Jobs", &())?;
                show(v, &|v| {
                    table(
                        v,
                        &[
                            ("id", "JOB"),
                            ("channel", "CHANNEL"),
                            ("version", "VERSION"),
                            ("target", "TARGET"),
                            ("state", "STATE"),
                        ],
                    )
                })
            }
            "show-events" => {
                let v = self.call(bus::SNMP_NAME, bus::SNMP_PATH, "LatestEvents", &(20u32,))?;
                show(v, &|v| {
                    table(
                        v,
                        &[
                            ("seq", "#"),
                            ("time", "TIME"),
                            ("source", "SOURCE"),
                            ("version", "VER"),
                            ("trap_oid", "TRAP"),
                        ],
                    )
                })
            }
            "show-ntp" => {
                let v = self.call(bus::NTP_NAME, bus::NTP_PATH, "Status", &())?;
                show(v, &fields)
            }
            "show-snmp" => {
                let v = self.call(bus::SNMP_NAME, bus::SNMP_PATH, "Status", &())?;
                show(v, &fields)
            }
            "show-audit" => Ok(self.audit.tail(50).map_err(|e| e.to_string())?),
            "update-dv-refresh" | "update-tos-refresh" => {
                let ch = if p.action.contains("dv") { "dv" } else { "tos" };
                let v = self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, "Refresh", &(ch,))?;
                show(v, &|v| {
                    table(
                        v,
                        &[
                            ("version", "VERSION"),
                            ("length", "BYTES"),
                            ("downloaded", "DOWNLOADED"),
                        ],
                    )
                })
            }
            "update-dv-check" => {
                let v = self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, "CheckNow", &())?;
                Ok(plain(&v))
            }
            "download" | "activate" => {
                let ch = if p.keywords.contains(&"tos") {
                    "tos"
                } else {
                    "dv"
                };
                let method = if p.action == "download" {
                    "Download"
                } else {
                    "Activate"
                };
                let v = self.call(bus::UPDATER_NAME, bus::UPDATER_PATH, method, &(ch, arg(0)))?;
                Ok(plain(&v))
            }
            "distribute" => {
                let ch = if p.keywords.get(1) == Some(&"tos") {
                    "tos"
                } else {
                    "dv"
                };
                let target = match (p.keywords.last(), p.args.get(1)) {
                    (Some(&"all"), _) => "all".to_string(),
                    (Some(&"group"), Some((_, g))) => format!("group:{g}"),
                    (Some(&"device"), Some((_, d))) => format!("device:{d}"),
                    _ => return Err("a target is needed: all, group NAME or device NAME".into()),
                };
                let v = self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "Distribute",
                    &(ch, arg(0), target),
                )?;
                show(v, &fields)
            }
            "job-status" => {
                let id: u64 = arg(0).parse().map_err(|_| "not a job number".to_string())?;
                let v = self.call(bus::DISTRIBUTOR_NAME, bus::DISTRIBUTOR_PATH, "Job", &(id,))?;
                show(v, &fields)
            }
            "job-cancel" => {
                let id: u64 = arg(0).parse().map_err(|_| "not a job number".to_string())?;
                self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "CancelJob",
                    &(id,),
                )?;
                Ok(format!("job {id} cancelled"))
            }
            "devices-add" => {
                let family = match p.keywords.iter().find(|k| k.contains("00")) {
                    Some(&"50-100e") => "50-100E",
                    Some(&"5000e") => "5000E",
                    _ => "200-2400",
                };
                let mut rest = p.args.iter().skip(2);
                let mut group = "default".to_string();
                let mut port = 443u16;
                if p.keywords.contains(&"group") {
                    group = rest.next().map(|a| a.1.clone()).unwrap_or(group);
                }
                if p.keywords.contains(&"port") {
                    port = rest
                        .next()
                        .and_then(|a| a.1.parse().ok())
                        .filter(|p| *p > 0)
                        .ok_or("the port is 1 to 65535")?;
                }
                let device = serde_json::json!([{
                    "name": arg(0), "address": arg(1), "port": port,
                    "family": family, "group": group,
                }]);
                self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "AddDevices",
                    &(device.to_string(),),
                )?;
                Ok(format!(
                    "device {} added to group {}",
                    arg(0),
                    clean(&group)
                ))
            }
            "devices-remove" => {
                self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "RemoveDevice",
                    &(arg(0),),
                )?;
                Ok(format!("device {} removed", arg(0)))
            }
            "devices-edit" => {
                let mut d = self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "Device",
                    &(arg(0),),
                )?;
                let field = p.keywords.last().copied().unwrap_or_default();
                let value = match field {
                    "port" => Value::from(
                        arg(1)
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or("the port is 1 to 65535")?,
                    ),
                    _ => Value::from(arg(1)),
                };
                match d.as_object_mut() {
                    Some(o) => o.insert(field.to_string(), value),
                    None => return Err(format!("device {}: unexpected answer", arg(0))),
                };
                self.call(
                    bus::DISTRIBUTOR_NAME,
                    bus::DISTRIBUTOR_PATH,
                    "EditDevice",
                    &(d.to_string(),),
                )?;
                Ok(format!("device {}: {field} is now {}", arg(0), arg(1)))
            }
            "devices-groups" => {
                let v = self.call(bus::DISTRIBUTOR_NAME, bus::DISTRIBUTOR_PATH, "Devices", &())?;
                let mut groups: std::collections::BTreeMap<String, usize> = Default::default();
                for d in v.as_array().into_iter().flatten() {
                    let g = d.get("group").and_then(|g| g.as_str()).unwrap_or("-");
                    *groups.entry(g.to_string()).or_default() += 1;
                }
                let rows: Value = groups
                    .into_iter()
                    .map(|(g, n)| serde_json::json!({"group": g, "devices": n}))
                    .collect();
                show(rows, &|v| {
                    table(v, &[("group", "GROUP"), ("devices", "DEVICES")])
                })
            }
            "services-restart" => self.restart(&arg(0)),
            "show-log" => journal(&arg(0)),
            "system-reboot" | "system-shutdown" => {
                let method = if p.action == "system-reboot" {
                    "Reboot"
                } else {
                    "PowerOff"
                };
                let Some(conn) = &self.bus else {
                    return Err("the system bus is not reachable".into());
                };
                // logind stops every service in order (systemd-zbus's
                // reboot() does not); `false`: no interactive authorization.
                self.rt
                    .block_on(conn.call_method(
                        Some("org.freedesktop.login1"),
                        "/org/freedesktop/login1",
                        Some("org.freedesktop.login1.Manager"),
                        method,
                        &(false,),
                    ))
                    .map_err(|e| format!("{}: {e}", method.to_lowercase()))?;
                Ok(format!(
                    "{} requested; the session will close",
                    if method == "Reboot" {
                        "reboot"
                    } else {
                        "power off"
                    }
                ))
            }
            other => Err(format!("{other}: not available yet")),
        }
    }

    /// `who`: the login sessions logind knows (user, terminal, from where).
    fn who(&self) -> Result<String, String> {
        let Some(conn) = &self.bus else {
            return Err("the system bus is not reachable".into());
        };
        self.rt.block_on(async {
            let m = conn
                .call_method(
                    Some("org.freedesktop.login1"),
                    "/org/freedesktop/login1",
                    Some("org.freedesktop.login1.Manager"),
                    "ListSessions",
                    &(),
                )
                .await
                .map_err(|e| format!("logind: {e}"))?;
            type Row = (String, u32, String, String, zbus::zvariant::OwnedObjectPath);
            let rows: Vec<Row> = m.body().deserialize().map_err(|e| format!("logind: {e}"))?;
            let mut out = vec![format!(
                "{:<12} {:<8} {:<10} {}",
                "USER", "SESSION", "TTY", "FROM"
            )];
            for (id, _uid, user, _seat, path) in rows {
                let prop = |name: &'static str| {
                    let path = path.clone();
                    async move {
                        let r = conn
                            .call_method(
                                Some("org.freedesktop.login1"),
                                path.as_str(),
                                Some("org.freedesktop.DBus.Properties"),
                                "Get",
                                &("org.freedesktop.login1.Session", name),
                            )
                            .await
                            .ok()?;
                        let v: zbus::zvariant::OwnedValue = r.body().deserialize().ok()?;
                        String::try_from(v).ok()
                    }
                };
                let tty = prop("TTY").await.unwrap_or_default();
                let from = prop("RemoteHost").await.unwrap_or_default();
                out.push(format!(
                    "{:<12} {:<8} {:<10} {}",
                    clean(&user),
                    clean(&id),
                    if tty.is_empty() {
                        "-".into()
                    } else {
                        clean(&tty)
                    },
                    if from.is_empty() {
                        "local".into()
                    } else {
                        clean(&from)
                    }
                ));
            }
            Ok(out.join("\n"))
        })
    }

    fn services_text(&self) -> String {
        let mut out = format!("{:<14} {}\n", "SERVICE", "STATE");
        for s in SERVICES {
            let state = self
                .unit_state(s)
                .unwrap_or_else(|e| format!("unknown ({e})"));
            out.push_str(&format!("{:<14} {}\n", s, clean(&state)));
        }
        out.trim_end().to_string()
    }

    fn unit_state(&self, name: &str) -> Result<String, String> {
        let Some(conn) = &self.bus else {
            return Err("no system bus".into());
        };
        self.rt.block_on(async {
            let unit = format!("{name}.service");
            let r = conn
                .call_method(
                    Some("org.freedesktop.systemd1"),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    "LoadUnit",
                    &(unit.as_str(),),
                )
                .await
                .map_err(|e| e.to_string())?;
            let path: zbus::zvariant::OwnedObjectPath =
                r.body().deserialize().map_err(|e| e.to_string())?;
            let p = zbus::fdo::PropertiesProxy::builder(conn)
                .destination("org.freedesktop.systemd1")
                .map_err(|e| e.to_string())?
                .path(path)
                .map_err(|e| e.to_string())?
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let iface =
                zbus::names::InterfaceName::from_static_str("org.freedesktop.systemd1.Unit")
                    .map_err(|e| e.to_string())?;
            let v = p
                .get(iface, "ActiveState")
                .await
                .map_err(|e| e.to_string())?;
            String::try_from(v).map_err(|e| e.to_string())
        })
    }

    /// Restarts a unit through systemd and waits for its job to end
    /// (subscribed to `JobRemoved` before asking, so the end is never missed).
    fn restart(&self, name: &str) -> Result<String, String> {
        if !SERVICES.contains(&name) {
            return Err(format!(
                "{name}: not a service of the appliance ({})",
                SERVICES.join(", ")
            ));
        }
        let Some(conn) = &self.bus else {
            return Err("the system bus is not reachable".into());
        };
        self.rt.block_on(async {
            use futures_util::StreamExt as _;
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .interface("org.freedesktop.systemd1.Manager")
                .and_then(|b| b.member("JobRemoved"))
                .map_err(|e| e.to_string())?
                .build();
            let mut stream = zbus::MessageStream::for_match_rule(rule, conn, None)
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn
                .call_method(
                    Some("org.freedesktop.systemd1"),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    "Subscribe",
                    &(),
                )
                .await;
            let unit = format!("{name}.service");
            let r = conn
                .call_method(
                    Some("org.freedesktop.systemd1"),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    "RestartUnit",
                    &(unit.as_str(), "replace"),
                )
                .await
                .map_err(|e| format!("restarting {name}: {e}"))?;
            let job: zbus::zvariant::OwnedObjectPath =
                r.body().deserialize().map_err(|e| e.to_string())?;
            let wait = async {
                while let Some(Ok(m)) = stream.next().await {
                    if let Ok((_, path, _, result)) =
                        m.body()
                            .deserialize::<(u32, zbus::zvariant::OwnedObjectPath, String, String)>()
                    {
                        if path == job {
                            return Ok(result);
                        }
                    }
                }
                Err("systemd stopped sending job events".to_string())
            };
            match tokio::time::timeout(Duration::from_secs(120), wait).await {
                Ok(Ok(result)) if result == "done" => Ok(format!("{name} restarted")),
                Ok(Ok(result)) => Err(format!("restarting {name}: {result} (see show services)")),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("restarting {name}: no result within 120 s")),
            }
        })
    }
}

/// The last 50 lines of a daemon's journal (journalctl with fixed
/// arguments; the unit name was checked against the appliance's list).
fn journal(name: &str) -> Result<String, String> {
    if !SERVICES.contains(&name) {
        return Err(format!(
            "{name}: not a service of the appliance ({})",
            SERVICES.join(", ")
        ));
    }
    let o = std::process::Command::new("/usr/bin/journalctl")
        .args(["--no-pager", "-o", "short-iso", "-n", "50", "-u"])
        .arg(format!("{name}.service"))
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("reading the journal: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    Ok(text.lines().map(clean).collect::<Vec<_>>().join("\n"))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => clean(s),
        other => clean(&other.to_string()),
    }
}

/// JSON with every string's control characters neutralised.
pub fn clean_json(v: &Value) -> String {
    fn walk(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(clean(s)),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (clean(k), walk(v))).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&walk(v)).unwrap_or_default()
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => clean(s),
        Some(Value::Bool(b)) => {
            if *b {
                "yes".into()
            } else {
                "no".into()
            }
        }
        Some(other) => clean(&other.to_string()),
    }
}

/// A table of the listed keys of an array of objects.
pub fn table(v: &Value, cols: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| cols.iter().map(|(k, _)| cell(r.get(*k))).collect())
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut widths: Vec<usize> = cols.iter().map(|(_, h)| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(cols.iter().map(|(_, h)| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// An object's fields, one per line.
pub fn fields(v: &Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, v)| format!("{:<22} {}", clean(k), cell(Some(v))))
            .collect::<Vec<_>>()
            .join("\n"),
        None => plain(v),
    }
}

fn system_text() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let up: f64 = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mem = read("/proc/meminfo");
    let kb = |k: &str| {
        mem.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let disk = nix::sys::statvfs::statvfs("/var/lib/sms")
        .or_else(|_| nix::sys::statvfs::statvfs("/"))
        .map(|s| {
            let total = s.blocks() * s.fragment_size();
            let free = s.blocks_available() * s.fragment_size();
            format!("{} MiB free of {} MiB", free >> 20, total >> 20)
        })
        .unwrap_or_else(|_| "-".into());
    let u = up as u64;
    format!(
        "uptime   {}d {:02}:{:02}:{:02}\nload     {load}\nmemory   {} MiB available of {} MiB\ndata     {disk}",
        u / 86400,
        u / 3600 % 24,
        u / 60 % 60,
        u % 60,
        kb("MemAvailable:") >> 10,
        kb("MemTotal:") >> 10
    )
}

/// Several lines, each neutralised.
fn clean_multiline(s: &str) -> String {
    s.lines().map(clean).collect::<Vec<_>>().join("\n")
}

/// `show dns`, `show proxy`, `show ha`, `show configuration` from the
/// committed settings.
fn settings_text(action: &str, c: &settings::Settings) -> String {
    let shipped = "(not set: the shipped configuration applies)";
    match action {
        "show-dns" if c.dns_servers.is_empty() => format!("DNS servers: {shipped}"),
        "show-dns" => format!(
            "DNS servers: {}",
            c.dns_servers
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "show-proxy" => match &c.proxy {
            None => format!("proxy: none {shipped}"),
            Some(p) => format!(
                "proxy url: {}\nuser: {}\npassword: {}",
                clean(&p.url),
                if p.username.is_empty() {
                    "-"
                } else {
                    &p.username
                },
                if p.password.is_empty() {
                    "not set"
                } else {
                    "set (never shown)"
                }
            ),
        },
        "show-ha" => format!(
            "role: standalone\npeer: {}",
            c.ha_peer
                .map(|p| format!("{p} (configured; replication starts with the HA daemon)"))
                .unwrap_or_else(|| "none".into())
        ),
        _ => configure::show(c),
    }
}

/// `help`: every command with its words.
pub fn help_text(nodes: &[Node]) -> String {
    fn walk(n: &Node, prefix: &str, out: &mut Vec<(String, String)>) {
        let here = if prefix.is_empty() {
            n.word.to_string()
        } else {
            format!("{prefix} {}", n.word)
        };
        if n.word == "run" && prefix.is_empty() {
            out.push(("run <command>".into(), n.help.to_string()));
            return;
        }
        if n.action.is_some() {
            out.push((here.clone(), n.help.to_string()));
        }
        for c in &n.children {
            walk(c, &here, out);
        }
    }
    let mut out = Vec::new();
    for n in nodes {
        walk(n, "", &mut out);
    }
    let w = out.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Commands (any unique prefix of a word works: `sh ver`; `?` shows what may come next;\nTab completes; end a line with `| json` for JSON):\n",
    );
    for (c, h) in out {
        text.push_str(&format!("  {c:<w$}  {h}\n"));
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_help_line_and_parses() {
        let h = help_text(&tree());
        for c in [
            "show version",
            "show device <name>",
            "distribute dv <version> to group <name>",
            "services restart <name>",
            "exit",
        ] {
            assert!(h.contains(c), "{c} missing from help:\n{h}");
        }
        for line in [
            "sh ver",
            "distr dv 4.0.0.1 to gr lab",
            "serv rest sms-snmpd",
            "sh dist jobs",
            "upd dv downl 4.0.0.2",
        ] {
            let words: Vec<&str> = line.split_whitespace().collect();
            grammar::parse(&tree(), &words).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn tables_neutralise_what_came_from_outside() {
        let v: Value = serde_json::json!([{ "name": "evil\u{1b}]0;owned\u{7}", "state": "ok" }]);
        let t = table(&v, &[("name", "NAME"), ("state", "STATE")]);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        let j = clean_json(&v);
        assert!(!j.contains('\u{1b}'), "{j}");
    }
}
