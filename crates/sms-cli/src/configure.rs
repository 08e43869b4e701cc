//! Configuration mode: staged changes, compare, commit, discard, rollback.
//!
//! `configure` copies the committed settings into a candidate; `set` and
//! `delete` change only the candidate; `compare` shows what `commit` would
//! change as `+`/`-` lines of `set` commands (secrets masked); `commit`
//! validates the whole candidate, stores it through
//! [`SettingsStore::commit`] (the previous one becomes rollback 1) and waits
//! for the privileged applier's report; `discard` drops the candidate's
//! changes; `rollback N` loads an earlier commit into the candidate, to be
//! compared and committed like any change. A commit made by another session
//! since `configure` is never overwritten unseen.

use crate::action::{Cfg, Op};
use crate::files;
use crate::grammar::{ArgKind, Node, Parsed};
use sms_core::settings::{
    self, LogProtocol, LogServer, Management, Proxy, Settings, SettingsStore, SnmpCommunity,
    SnmpUser, TrapDestination,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The configuration-mode command tree.
pub fn tree(operational: Vec<Node>) -> Vec<Node> {
    use ArgKind::*;
    let mode = |action: Cfg| {
        vec![
            Node::kw("read-only", "Get, GetNext, GetBulk only").run(action),
            Node::kw("read-write", "also Set on the writable objects").run(action),
        ]
    };
    let trap_to = || {
        vec![
            Node::kw("community", "SNMPv2c with a community").then(vec![Node::arg(
                Community,
                "community",
            )
            .run(Cfg::SetTrap)]),
            Node::kw("user", "SNMPv3 authPriv as a configured user").then(vec![Node::arg(
                Community,
                "user name",
            )
            .run(Cfg::SetTrap)]),
        ]
    };
    let log_protocol = || {
        vec![Node::kw("protocol", "how the messages travel").then(vec![
            Node::kw(
                "udp",
                "RFC 5426 datagrams; nothing kept while the server is away",
            )
            .run(Cfg::SetLogServer),
            Node::kw(
                "tcp",
                "RFC 6587; queued on the data partition while the server is down",
            )
            .run(Cfg::SetLogServer),
            Node::kw(
                "tls",
                "RFC 5425: TLS, the server's certificate checked; queued while down",
            )
            .then(vec![Node::kw(
                "ca-certificate",
                "the CA that signed the server's certificate: its PEM body on one line",
            )
            .then(vec![
                Node::arg(CertBlob, "base64 of the CA certificate").run(Cfg::SetLogServer)
            ])]),
        ])]
    };
    let mail_security = || {
        vec![
            Node::kw("security", "how the connection is protected").then(vec![
                Node::kw(
                    "starttls",
                    "STARTTLS, which the server must offer (port 587)",
                )
                .run(Cfg::SetMail),
                Node::kw("tls", "TLS from the first octet (port 465)").run(Cfg::SetMail),
                Node::kw(
                    "none",
                    "no encryption: a trusted relay on port 25, no password",
                )
                .run(Cfg::SetMail),
            ]),
        ]
    };
    let mail_classes = |action: Cfg| {
        settings::MAIL_CLASSES
            .iter()
            .map(|c| {
                let help = match *c {
                    "update" => "DV checks, downloads, activations (sms-updated)",
                    "distribution" => "distribution to the devices (sms-distd)",
                    "device" => "unreachable devices, traps (sms-snmpd)",
                    "ha" => "the HA pair",
                    "firmware" => "the appliance's firmware updates",
                    "system" => "anything else that warns or fails",
                    _ => "every CLI audit record",
                };
                Node::kw(c, help).run(action)
            })
            .collect::<Vec<_>>()
    };
    let auths = settings::AUTH_PROTOCOLS
        .iter()
        .map(|a| {
            let kw: &'static str = match *a {
                "SHA-1" => "sha-1",
                "SHA-224" => "sha-224",
                "SHA-256" => "sha-256",
                "SHA-384" => "sha-384",
                _ => "sha-512",
            };
            Node::kw(kw, "HMAC authentication (privacy is AES-128)")
                .run(Cfg::SetUser)
                .then(mode(Cfg::SetUser))
        })
        .collect();
    let set =
        Node::kw("set", "change a value in the candidate").then(vec![
            Node::kw("system", "host name and time zone").then(vec![
                Node::kw("hostname", "the appliance's host name").then(vec![Node::arg(
                    Host,
                    "host name",
                )
                .run(Cfg::SetHostname)]),
                Node::kw("time-zone", "local time zone, e.g. Europe/Berlin or UTC").then(vec![
                    Node::arg(TimeZone, "tz database name").run(Cfg::SetTimeZone),
                ]),
                Node::kw("login", "accounts").then(vec![Node::kw("user", "an account").then(
                    vec![Node::arg(Account, "account name").then(vec![Node::kw(
                        "authorized-key",
                        "an SSH public key that may log in (written with restrict)",
                    )
                    .then(key_types(Cfg::SetLoginKey, true))])],
                )]),
                Node::kw("backup", "the SFTP server `system backup` sends backups to").then(vec![
                Node::kw("server", "the server and the account there").then(vec![Node::arg(
                    Host,
                    "server address or name",
                )
                .then(vec![
                    backup_user(),
                    Node::kw("port", "its SSH port (22 when not given)")
                        .then(vec![Node::arg(Number, "port").then(vec![backup_user()])]),
                ])]),
                Node::kw(
                    "host-key",
                    "the server's SSH host key, pinned (ssh-keyscan on a trusted host shows it)",
                )
                .then(key_types(Cfg::SetBackup, false)),
                Node::kw("directory", "the directory there (the account's home when not set)")
                    .then(vec![Node::arg(Text, "path").run(Cfg::SetBackup)]),
                Node::kw(
                    "keep",
                    "backups kept there, older ones removed (10 when not set)",
                )
                .then(vec![Node::arg(Number, "count").run(Cfg::SetBackup)]),
                Node::kw(
                    "schedule",
                    "also take backups by themselves (system backup pass-phrase enrols their pass phrase)",
                )
                .then(vec![
                    Node::kw("daily", "every day").then(vec![backup_at()]),
                    Node::kw("weekly", "one day a week").then(
                        settings::WEEKDAYS
                            .iter()
                            .map(|d| Node::kw(d, "that day").then(vec![backup_at()]))
                            .collect(),
                    ),
                ]),
            ]),
            ]),
            Node::kw("interface", "the management interface").then(vec![Node::kw(
                "management",
                "the management interface",
            )
            .then(vec![Node::kw("address", "static address instead of DHCP")
                .then(vec![Node::arg(Prefix, "address/prefix-length")
                    .run(Cfg::SetAddress)
                    .then(vec![Node::kw("gateway", "default gateway")
                        .then(vec![
                            Node::arg(Address, "gateway").run(Cfg::SetAddress)
                        ])])])])]),
            Node::kw("dns", "name servers of the update daemon").then(vec![Node::kw(
                "server",
                "add a DNS server (at most 3)",
            )
            .then(vec![Node::arg(Address, "server address").run(Cfg::SetDns)])]),
            Node::kw("proxy", "HTTP proxy towards the update centre").then(vec![
                Node::kw("url", "http://host:port")
                    .then(vec![Node::arg(Url, "proxy URL").run(Cfg::SetProxyUrl)]),
                Node::kw("username", "basic authentication user").then(vec![Node::arg(
                    Community,
                    "user name",
                )
                .run(Cfg::SetProxyUser)]),
                Node::kw(
                    "password",
                    "basic authentication password (asked, never shown)",
                )
                .run(Cfg::SetProxyPassword),
            ]),
            Node::kw("ntp", "upstream time servers").then(vec![Node::kw(
                "server",
                "add an upstream server (at most 8)",
            )
            .then(vec![Node::arg(Endpoint, "server address").run(Cfg::SetNtp)])]),
            Node::kw("snmp", "SNMP agent and traps").then(vec![
                Node::kw("community", "a v1/v2c community").then(vec![Node::arg(
                    Community,
                    "community",
                )
                .then(vec![Node::kw(
                    "network",
                    "a source network allowed to use it",
                )
                .then(vec![Node::arg(Prefix, "network")
                    .run(Cfg::SetCommunity)
                    .then(mode(Cfg::SetCommunity))])])]),
                Node::kw("user", "an SNMPv3 user (authPriv; pass phrases asked)").then(vec![
                    Node::arg(Community, "user name").then(vec![Node::kw(
                        "auth",
                        "authentication protocol",
                    )
                    .then(auths)]),
                ]),
                Node::kw("trap-destination", "a manager that receives traps").then(vec![
                    Node::arg(Address, "manager address").then({
                        let mut v = trap_to();
                        v.push(
                            Node::kw("port", "UDP port (162 when not given)")
                                .then(vec![Node::arg(Number, "port").then(trap_to())]),
                        );
                        v
                    }),
                ]),
            ]),
            Node::kw("ha", "high availability").then(vec![
                Node::kw("peer", "the peer appliance").then(vec![Node::arg(
                    Address,
                    "peer address",
                )
                .run(Cfg::SetHaPeer)
                .then(vec![Node::kw(
                    "fingerprint",
                    "the peer's identity, as its `show ha identity` prints it",
                )
                .then(vec![Node::arg(Fingerprint, "the peer's fingerprint").then(
                    vec![Node::kw("role", "this node's role in the pair").then(vec![
                        Node::kw("primary", "this node starts active").run(Cfg::SetHaPeer),
                        Node::kw("secondary", "this node starts as the standby")
                            .run(Cfg::SetHaPeer),
                    ])],
                )])])]),
                Node::kw("witness", "the witness host (sms-had witness): automatic failover")
                    .then(vec![Node::arg(Address, "witness address").then(vec![Node::kw(
                        "fingerprint",
                        "the witness's identity (sms-had witness --identity)",
                    )
                    .then(vec![
                        Node::arg(Fingerprint, "the witness's fingerprint").run(Cfg::SetHaWitness)
                    ])])]),
                Node::kw(
                    "virtual-address",
                    "the pair's address for devices and managers: on the node that takes writes",
                )
                .then(vec![
                    Node::arg(Prefix, "address/prefix-length").run(Cfg::SetHaVirtualAddress)
                ]),
            ]),
            Node::kw("logging", "remote syslog servers (audit trail and events)").then(vec![
                Node::kw("server", "a server that receives them (up to 4)").then(vec![Node::arg(
                    Host,
                    "server address or name",
                )
                .then({
                    let mut v = log_protocol();
                    v.push(
                        Node::kw(
                            "port",
                            "its port (514 for UDP and TCP, 6514 for TLS when not given)",
                        )
                        .then(vec![Node::arg(Number, "port").then(log_protocol())]),
                    );
                    v
                })]),
            ]),
            Node::kw(
                "notification",
                "e-mail notifications of warnings and failures",
            )
            .then(vec![Node::kw("mail", "digests mailed by the appliance")
                .then(vec![
            Node::kw("server", "the mail server").then(vec![Node::arg(
                Host,
                "server address or name",
            )
            .then({
                let mut v = mail_security();
                v.push(
                    Node::kw(
                        "port",
                        "its port (587 starttls, 465 tls, 25 none when not given)",
                    )
                    .then(vec![Node::arg(Number, "port").then(mail_security())]),
                );
                v
            })]),
            Node::kw(
                "ca-certificate",
                "the CA of the server's certificate, PEM body on one line (default: the system's)",
            )
            .then(vec![
                Node::arg(CertBlob, "base64 of the CA certificate").run(Cfg::SetMail)
            ]),
            Node::kw("from", "the sender address")
                .then(vec![Node::arg(MailAddress, "address").run(Cfg::SetMail)]),
            Node::kw("recipient", "add a recipient (up to 8)")
                .then(vec![Node::arg(MailAddress, "address").run(Cfg::SetMail)]),
            Node::kw("user", "the AUTH user (its password is asked, never shown)")
                .then(vec![Node::arg(Text, "user name").run(Cfg::SetMailUser)]),
            Node::kw(
                "class",
                "add a class mailed (none set: every class but audit)",
            )
            .then(mail_classes(Cfg::SetMail)),
            Node::kw(
                "min-interval",
                "least seconds between two mails (60 to 86400; 900 when not set)",
            )
            .then(vec![Node::arg(Number, "seconds").run(Cfg::SetMail)]),
        ])]),
            Node::kw(
                "update",
                "the update policy (DV automation, update centre port)",
            )
            .then(vec![
                Node::kw("dv", "Digital Vaccine automation").then(vec![
                    Node::kw("auto-check", "check the update centre by itself")
                        .then(on_off(Cfg::SetUpdate)),
                    Node::kw("check-interval", "seconds between checks (300 to 604800)")
                        .then(vec![Node::arg(Number, "seconds").run(Cfg::SetUpdate)]),
                    Node::kw("auto-activate", "activate a downloaded DV by itself")
                        .then(on_off(Cfg::SetUpdate)),
                    Node::kw("auto-distribute", "distribute an activated DV by itself")
                        .then(on_off(Cfg::SetUpdate)),
                    Node::kw(
                        "distribute-group",
                        "add a device group automatic distribution goes to (none: every device)",
                    )
                    .then(vec![Node::arg(Name, "group").run(Cfg::SetUpdate)]),
                ]),
                Node::kw(
                    "centre-port",
                    "the update centre's HTTPS port: 443, or 4043 (legacy)",
                )
                .then(vec![Node::arg(Number, "port").run(Cfg::SetUpdate)]),
            ]),
        ]);
    let delete = Node::kw("delete", "remove a value from the candidate").then(vec![
        Node::kw("system", "host name and time zone").then(vec![
            Node::kw("hostname", "back to the shipped name").run(Cfg::DeleteHostname),
            Node::kw("time-zone", "back to UTC").run(Cfg::DeleteTimeZone),
            Node::kw("backup", "no backup server")
                .run(Cfg::DeleteBackup)
                .then(vec![
                    Node::kw("directory", "the account's home").run(Cfg::DeleteBackup),
                    Node::kw("keep", "10 backups").run(Cfg::DeleteBackup),
                    Node::kw("schedule", "on demand only").run(Cfg::DeleteBackup),
                ]),
            Node::kw("login", "accounts").then(vec![Node::kw("user", "an account").then(vec![
                Node::arg(Account, "account name (every key of it)")
                    .run(Cfg::DeleteLoginKey)
                    .then(vec![Node::kw("authorized-key", "one key")
                        .then(key_types(Cfg::DeleteLoginKey, false))]),
            ])]),
        ]),
        Node::kw("interface", "the management interface").then(vec![Node::kw(
            "management",
            "back to DHCP",
        )
        .run(Cfg::DeleteAddress)]),
        Node::kw("dns", "name servers").then(vec![Node::kw("server", "one server").then(vec![
            Node::arg(Address, "server address").run(Cfg::DeleteDns),
        ])]),
        Node::kw("proxy", "no proxy").run(Cfg::DeleteProxy),
        Node::kw("ntp", "upstream time servers").then(vec![Node::kw("server", "one server").then(
            vec![Node::arg(Endpoint, "server address").run(Cfg::DeleteNtp)],
        )]),
        Node::kw("snmp", "SNMP settings").then(vec![
            Node::kw("community", "a community").then(vec![
                Node::arg(Community, "community").run(Cfg::DeleteCommunity)
            ]),
            Node::kw("user", "an SNMPv3 user")
                .then(vec![Node::arg(Community, "user name").run(Cfg::DeleteUser)]),
            Node::kw("trap-destination", "a trap destination").then(vec![Node::arg(
                Address,
                "manager address",
            )
            .run(Cfg::DeleteTrap)]),
        ]),
        Node::kw("ha", "high availability").then(vec![
            Node::kw("peer", "no peer (unpaired)").run(Cfg::DeleteHaPeer),
            Node::kw("witness", "no witness (manual failover)").run(Cfg::DeleteHaWitness),
            Node::kw("virtual-address", "no virtual address").run(Cfg::DeleteHaVirtualAddress),
        ]),
        Node::kw("logging", "every remote log server")
            .run(Cfg::DeleteLogServer)
            .then(vec![Node::kw("server", "one server").then(vec![
                Node::arg(Host, "server address or name").run(Cfg::DeleteLogServer),
            ])]),
        Node::kw("notification", "e-mail notifications").then(vec![Node::kw(
            "mail",
            "no mails at all",
        )
        .run(Cfg::DeleteMail)
        .then(vec![
            Node::kw("recipient", "one recipient")
                .then(vec![Node::arg(MailAddress, "address").run(Cfg::DeleteMail)]),
            Node::kw("class", "one class").then(mail_classes(Cfg::DeleteMail)),
            Node::kw("user", "no AUTH").run(Cfg::DeleteMail),
            Node::kw("ca-certificate", "the system's CAs").run(Cfg::DeleteMail),
            Node::kw("min-interval", "900 s").run(Cfg::DeleteMail),
        ])]),
        Node::kw("update", "the whole update policy: back to the shipped one")
            .run(Cfg::DeleteUpdate)
            .then(vec![
                Node::kw("dv", "one DV setting back to the shipped value").then(vec![
                    Node::kw("auto-check", "on (shipped)").run(Cfg::DeleteUpdate),
                    Node::kw("check-interval", "1800 s (shipped)").run(Cfg::DeleteUpdate),
                    Node::kw("auto-activate", "on (shipped)").run(Cfg::DeleteUpdate),
                    Node::kw("auto-distribute", "on (shipped)").run(Cfg::DeleteUpdate),
                    Node::kw("distribute-group", "one group")
                        .then(vec![Node::arg(Name, "group").run(Cfg::DeleteUpdate)]),
                ]),
                Node::kw("centre-port", "443 (shipped)").run(Cfg::DeleteUpdate),
            ]),
    ]);
    vec![
        set,
        delete,
        Node::kw("show", "the candidate configuration")
            .run(Cfg::Show)
            .then(vec![
                Node::kw("committed", "the committed configuration").run(Cfg::ShowCommitted)
            ]),
        Node::kw("compare", "what commit would change").run(Cfg::Compare),
        Node::kw("commit", "store and apply the candidate").run(Cfg::Commit),
        Node::kw(
            "discard",
            "drop the changes since configure or the last commit",
        )
        .run(Cfg::Discard),
        Node::kw(
            "rollback",
            "load an earlier commit into the candidate (1 = the previous)",
        )
        .run(Cfg::Rollback)
        .then(vec![
            Node::arg(Number, "commits back (1-5)").run(Cfg::Rollback)
        ]),
        Node::kw(
            "save",
            "write the candidate to a file of the CLI's file directory",
        )
        .then(vec![Node::arg(File, "file name").run(Cfg::Save)]),
        Node::kw("load", "replace the candidate by a saved file").then(vec![Node::arg(
            File,
            "file name",
        )
        .run(Cfg::Load)]),
        Node::kw("run", "an operational command").then(operational),
        Node::kw("help", "the commands").run(Op::Help),
        Node::kw("exit", "leave configuration mode")
            .run(Cfg::Exit)
            .then(vec![
                Node::kw("discard", "dropping uncommitted changes").run(Cfg::ExitDiscard)
            ]),
        Node::kw("end", "leave configuration mode").run(Cfg::Exit),
    ]
}

/// The port after a `port` keyword (the second argument), if given.
/// `at HH:MM [packages]` of a backup schedule.
fn backup_at() -> Node {
    Node::kw("at", "the time of day").then(vec![Node::arg(ArgKind::Text, "HH:MM, UTC")
        .run(Cfg::SetBackup)
        .then(vec![
            Node::kw("packages", "with the package files too").run(Cfg::SetBackup)
        ])])
}

/// `user NAME` after the backup server.
fn backup_user() -> Node {
    Node::kw(
        "user",
        "the account on the server (the appliance logs in with its own key)",
    )
    .then(vec![
        Node::arg(ArgKind::Text, "user name").run(Cfg::SetBackup)
    ])
}

fn optional_port(given: bool, word: &str) -> Result<Option<u16>, &'static str> {
    given
        .then(|| word.parse::<u16>().map_err(|_| "the port is 1 to 65535"))
        .transpose()
}

/// `on` and `off`, each running `action`.
fn on_off(action: Cfg) -> Vec<Node> {
    vec![
        Node::kw("on", "enabled").run(action),
        Node::kw("off", "disabled").run(action),
    ]
}

/// How many pass phrases an action needs (asked without echo).
pub fn secrets_needed(action: Cfg) -> &'static [&'static str] {
    match action {
        Cfg::SetProxyPassword => &["Proxy password: "],
        Cfg::SetMailUser => &["Mail server password: "],
        Cfg::SetUser => &["Authentication pass phrase: ", "Privacy pass phrase: "],
        _ => &[],
    }
}

/// Where settings are kept and where the applier reports.
#[derive(Debug, Clone)]
pub struct SettingsPaths {
    /// The settings store directory.
    pub dir: PathBuf,
    /// The applier's status file; `None` where no applier runs.
    pub applier_status: Option<PathBuf>,
    /// How long `commit` waits for the applier.
    pub apply_wait: Duration,
    /// The one directory `save` and `load` use.
    pub files: PathBuf,
    /// What the log forwarder reports per server (`show logging`).
    pub log_status: PathBuf,
    /// The backup service's socket.
    pub backup_socket: PathBuf,
    /// The backup service's note of the last backup.
    pub backup_status: PathBuf,
}

impl Default for SettingsPaths {
    fn default() -> Self {
        SettingsPaths {
            dir: settings::DEFAULT_DIR.into(),
            applier_status: Some(PathBuf::from("/var/lib/sms/system/status.json")),
            apply_wait: Duration::from_secs(90),
            files: PathBuf::from("/var/lib/sms/cli/files"),
            log_status: PathBuf::from("/var/lib/sms/logd/status.json"),
            backup_socket: PathBuf::from(sms_core::backup::BACKUP_SOCKET),
            backup_status: PathBuf::from("/var/lib/sms").join(sms_core::backup::BACKUP_STATUS),
        }
    }
}

/// A configuration session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The committed settings when the session began (or last committed).
    pub base: Settings,
    /// The staged settings.
    pub candidate: Settings,
}

/// The account and `TYPE KEY [COMMENT]` of a `login user` line.
fn login_key(p: &Parsed) -> (String, String) {
    let arg = |i: usize| p.args.get(i).map(|a| a.1.clone()).unwrap_or_default();
    let kind = p
        .keywords
        .iter()
        .find(|k| settings::LOGIN_KEY_TYPES.contains(k))
        .copied()
        .unwrap_or_default();
    let mut key = format!("{kind} {}", arg(1));
    if p.args.len() > 2 {
        key.push(' ');
        key.push_str(&arg(2));
    }
    (arg(0), key)
}

/// The same key whatever its comment.
fn same_key(a: &str, b: &str) -> bool {
    a.split(' ').take(2).eq(b.split(' ').take(2))
}

/// `TYPE KEY [COMMENT]` of an SSH public key, each type a keyword.
fn key_types(action: Cfg, comment: bool) -> Vec<Node> {
    settings::LOGIN_KEY_TYPES
        .iter()
        .map(|t| {
            let blob = Node::arg(ArgKind::KeyBlob, "the key's base64 text").run(action);
            let blob = if comment {
                blob.then(vec![
                    Node::arg(ArgKind::Text, "comment (user@host)").run(action)
                ])
            } else {
                blob
            };
            Node::kw(t, "key type").then(vec![blob])
        })
        .collect()
}

/// Runs a configuration-mode action on the session. `Ok(text)` for the
/// user; `Err` for a refusal that changes nothing.
pub fn apply(
    action: Cfg,
    s: &mut Session,
    store: &SettingsStore,
    paths: &SettingsPaths,
    p: &Parsed,
    secrets: &[String],
) -> Result<String, String> {
    let arg = |i: usize| p.args.get(i).map(|a| a.1.clone()).unwrap_or_default();
    let has = |k: &str| p.keywords.contains(&k);
    let mut c = s.candidate.clone();
    match action {
        Cfg::Show => return Ok(show(&s.candidate)),
        Cfg::ShowCommitted => {
            return store
                .committed()
                .map(|x| show(&x))
                .map_err(|e| e.to_string())
        }
        Cfg::Compare => return Ok(compare(&s.base, &s.candidate)),
        Cfg::Discard => {
            s.candidate = s.base.clone();
            return Ok("candidate discarded: it is the committed configuration again".into());
        }
        Cfg::Rollback => {
            let n = if p.args.is_empty() {
                1
            } else {
                arg(0).parse::<usize>().map_err(|_| "not a number")?
            };
            let old = store.rollback(n).map_err(|e| e.to_string())?;
            s.candidate = old;
            return Ok(format!(
                "loaded the configuration of {n} commit(s) ago into the candidate; `compare` shows it, `commit` applies it\n{}",
                compare(&s.base, &s.candidate)
            ));
        }
        Cfg::Commit => return commit(s, store, paths),
        Cfg::Save => {
            // Secrets stay on the appliance: the file holds a marker in
            // their place, and `load` takes them from the candidate.
            let (kept, _, _, _) = s.candidate.split_secrets();
            let text = kept.to_toml().map_err(|e| e.to_string())?;
            files::write(&paths.files, &arg(0), text.as_bytes())?;
            let apart = kept.unresolved_secrets();
            let note = if apart.is_empty() {
                String::new()
            } else {
                format!(" (without secrets: {})", apart.join(", "))
            };
            return Ok(format!("candidate saved to {}{note}", arg(0)));
        }
        Cfg::Load => {
            let bytes = files::read(&paths.files, &arg(0))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{}: not text", arg(0)))?;
            let mut loaded = Settings::from_toml(std::path::Path::new(&arg(0)), &text)
                .map_err(|e| format!("not loaded: {e}"))?;
            let (_, updater, snmp, logd) = s.candidate.split_secrets();
            loaded.merge_secrets(&updater, &snmp, &logd);
            let missing = loaded.unresolved_secrets();
            if !missing.is_empty() {
                return Err(format!(
                    "not loaded: {} saved without its secrets, and the candidate has none for: {}; set them first",
                    arg(0),
                    missing.join(", ")
                ));
            }
            s.candidate = loaded;
            return Ok(format!(
                "loaded {} into the candidate; `compare` shows it, `commit` applies it\n{}",
                arg(0),
                compare(&s.base, &s.candidate)
            ));
        }
        Cfg::SetHostname => c.hostname = Some(arg(0)),
        Cfg::SetTimeZone => c.time_zone = Some(arg(0)),
        Cfg::SetAddress => {
            c.management = Some(Management {
                address: arg(0),
                gateway: p.args.get(1).and_then(|g| g.1.parse().ok()),
            })
        }
        Cfg::SetDns => {
            let ip = arg(0).parse().map_err(|_| "not an address")?;
            if !c.dns_servers.contains(&ip) {
                c.dns_servers.push(ip);
            }
        }
        Cfg::SetProxyUrl => c.proxy.get_or_insert_with(Proxy::default).url = arg(0),
        Cfg::SetProxyUser => c.proxy.get_or_insert_with(Proxy::default).username = arg(0),
        Cfg::SetProxyPassword => {
            let pw = secrets.first().cloned().unwrap_or_default();
            settings::check_secret("proxy password", &pw, 1)
                .map_err(|e| format!("{e}; nothing changed"))?;
            c.proxy.get_or_insert_with(Proxy::default).password = pw;
        }
        Cfg::SetLoginKey => {
            let (user, key) = login_key(p);
            settings::check_login_key(&key).map_err(|e| format!("{e}; nothing changed"))?;
            c.login_keys
                .retain(|k| !(k.user == user && same_key(&k.key, &key)));
            c.login_keys.push(settings::LoginKey { user, key });
        }
        Cfg::DeleteLoginKey => {
            let (user, key) = login_key(p);
            let before = c.login_keys.len();
            // With a key: that key; without: every key of the account.
            c.login_keys
                .retain(|k| !(k.user == user && (p.args.len() < 2 || same_key(&k.key, &key))));
            if before == c.login_keys.len() {
                return Err(format!("{user} has no such authorized-key"));
            }
        }
        Cfg::SetNtp => {
            if !c.ntp_servers.contains(&arg(0)) {
                c.ntp_servers.push(arg(0));
            }
        }
        Cfg::SetCommunity => {
            let write = has("read-write");
            match c.snmp_communities.iter_mut().find(|x| x.name == arg(0)) {
                Some(x) => {
                    if !x.networks.contains(&arg(1)) {
                        x.networks.push(arg(1));
                    }
                    if has("read-write") || has("read-only") {
                        x.write = write;
                    }
                }
                None => c.snmp_communities.push(SnmpCommunity {
                    name: arg(0),
                    networks: vec![arg(1)],
                    write,
                }),
            }
        }
        Cfg::SetUser => {
            let auth = p
                .keywords
                .iter()
                .find(|k| k.starts_with("sha-"))
                .map(|k| k.to_ascii_uppercase())
                .unwrap_or_else(|| "SHA-256".into());
            let [a, b] = secrets else {
                return Err("two pass phrases are needed".into());
            };
            for (what, pw) in [
                ("authentication pass phrase", a),
                ("privacy pass phrase", b),
            ] {
                settings::check_secret(what, pw, 8).map_err(|e| format!("{e}; nothing changed"))?;
            }
            if a == b {
                return Err(
                    "the authentication and privacy pass phrases must differ; nothing changed"
                        .into(),
                );
            }
            c.snmp_users.retain(|x| x.name != arg(0));
            c.snmp_users.push(SnmpUser {
                name: arg(0),
                auth,
                auth_password: a.clone(),
                privacy_password: b.clone(),
                write: has("read-write"),
            });
        }
        Cfg::SetTrap => {
            let address = arg(0).parse().map_err(|_| "not an address")?;
            let (port, who) = if has("port") {
                let port = arg(1)
                    .parse::<u16>()
                    .map_err(|_| "the port is 1 to 65535")?;
                (port, arg(2))
            } else {
                (162, arg(1))
            };
            c.trap_destinations.retain(|t| t.address != address);
            c.trap_destinations.push(TrapDestination {
                address,
                port,
                community: has("community").then(|| who.clone()),
                user: has("user").then(|| who.clone()),
            });
        }
        Cfg::SetHaPeer => {
            c.ha_peer = Some(arg(0).parse().map_err(|_| "not an address")?);
            if has("fingerprint") {
                c.ha_peer_fingerprint = Some(arg(1).to_ascii_uppercase());
                c.ha_role = Some(if has("primary") {
                    settings::HaRole::Primary
                } else {
                    settings::HaRole::Secondary
                });
            } else {
                // Another address: the fingerprint pinned for the old one
                // does not carry over.
                c.ha_peer_fingerprint = None;
                c.ha_role = None;
            }
        }
        Cfg::SetHaWitness => {
            c.ha_witness = Some(arg(0).parse().map_err(|_| "not an address")?);
            c.ha_witness_fingerprint = Some(arg(1).to_ascii_uppercase());
        }
        Cfg::SetHaVirtualAddress => c.ha_virtual_address = Some(arg(0)),
        Cfg::SetLogServer => {
            let host = arg(0);
            let port = optional_port(has("port"), &arg(1))?;
            let protocol = if has("udp") {
                LogProtocol::Udp
            } else if has("tcp") {
                LogProtocol::Tcp
            } else {
                LogProtocol::Tls
            };
            let ca_certificate =
                has("tls").then(|| p.args.last().map(|a| a.1.clone()).unwrap_or_default());
            c.log_servers.retain(|l| l.host != host);
            c.log_servers.push(LogServer {
                host,
                port,
                protocol,
                ca_certificate,
            });
        }
        Cfg::SetMail if has("server") => {
            let port = optional_port(has("port"), &arg(1))?;
            let security = if has("starttls") {
                settings::MailSecurity::Starttls
            } else if has("tls") {
                settings::MailSecurity::Tls
            } else {
                settings::MailSecurity::None
            };
            let m = c
                .mail
                .get_or_insert_with(|| settings::MailNotification::new(arg(0), security));
            m.server = arg(0);
            m.port = port;
            m.security = security;
        }
        Cfg::SetMail | Cfg::SetMailUser => {
            let m = c.mail.as_mut().ok_or(
                "no mail server yet: set notification mail server HOST security starttls|tls|none",
            )?;
            if action == Cfg::SetMailUser {
                let pw = secrets.first().cloned().unwrap_or_default();
                settings::check_secret("notification mail password", &pw, 1)
                    .map_err(|e| format!("{e}; nothing changed"))?;
                m.username = arg(0);
                m.password = pw;
            } else if has("ca-certificate") {
                m.ca_certificate = Some(arg(0));
            } else if has("from") {
                m.from = arg(0);
            } else if has("recipient") {
                if !m.recipients.contains(&arg(0)) {
                    m.recipients.push(arg(0));
                }
            } else if has("class") {
                let class = p.keywords.last().copied().unwrap_or_default().to_string();
                if !m.classes.contains(&class) {
                    m.classes.push(class);
                }
            } else if has("min-interval") {
                m.min_interval = Some(
                    arg(0)
                        .parse()
                        .map_err(|_| "the interval is a number of seconds")?,
                );
            }
        }
        Cfg::SetBackup if has("server") => {
            let port = optional_port(has("port"), &arg(1))?;
            let user = p.args.last().map(|a| a.1.clone()).unwrap_or_default();
            let b = c.backup.get_or_insert_with(|| settings::BackupServer {
                server: arg(0),
                port: None,
                user: String::new(),
                host_key: String::new(),
                directory: None,
                keep: None,
                schedule: None,
            });
            b.server = arg(0);
            b.port = port;
            b.user = user;
        }
        Cfg::SetBackup => {
            let b = c
                .backup
                .as_mut()
                .ok_or("no backup server yet: set system backup server HOST user NAME")?;
            if has("host-key") {
                let kind = p
                    .keywords
                    .iter()
                    .find(|k| settings::LOGIN_KEY_TYPES.contains(k))
                    .copied()
                    .unwrap_or_default();
                b.host_key = format!("{kind} {}", arg(0));
            } else if has("directory") {
                b.directory = Some(arg(0));
            } else if has("keep") {
                b.keep = Some(arg(0).parse().map_err(|_| "keep is a number of backups")?);
            } else if has("schedule") {
                b.schedule = Some(settings::BackupSchedule {
                    day: p
                        .keywords
                        .iter()
                        .find(|k| settings::WEEKDAYS.contains(k))
                        .map(|d| d.to_string()),
                    at: arg(0),
                    packages: has("packages"),
                });
            }
        }
        Cfg::DeleteBackup => {
            let Some(b) = c.backup.as_mut() else {
                return Err("no backup server is configured".into());
            };
            if has("directory") {
                b.directory = None;
            } else if has("keep") {
                b.keep = None;
            } else if has("schedule") {
                b.schedule = None;
            } else {
                c.backup = None;
            }
        }
        Cfg::DeleteMail => {
            let Some(m) = c.mail.as_mut() else {
                return Err("no mail notification is configured".into());
            };
            if has("recipient") {
                let before = m.recipients.len();
                m.recipients.retain(|r| *r != arg(0));
                if before == m.recipients.len() {
                    return Err(format!("mail recipient {} is not configured", arg(0)));
                }
            } else if has("class") {
                let class = p.keywords.last().copied().unwrap_or_default();
                let before = m.classes.len();
                m.classes.retain(|r| r != class);
                if before == m.classes.len() {
                    return Err(format!("mail class {class} is not configured"));
                }
            } else if has("user") {
                m.username.clear();
                m.password.clear();
            } else if has("ca-certificate") {
                m.ca_certificate = None;
            } else if has("min-interval") {
                m.min_interval = None;
            } else {
                c.mail = None;
            }
        }
        Cfg::SetUpdate => {
            let u = &mut c.update;
            let on = has("on");
            if has("auto-check") {
                u.auto_check = Some(on);
            } else if has("auto-activate") {
                u.auto_activate = Some(on);
            } else if has("auto-distribute") {
                u.auto_distribute = Some(on);
            } else if has("check-interval") {
                u.check_interval = Some(
                    arg(0)
                        .parse()
                        .map_err(|_| "the interval is a number of seconds")?,
                );
            } else if has("distribute-group") {
                if !u.distribute_groups.contains(&arg(0)) {
                    u.distribute_groups.push(arg(0));
                }
            } else if has("centre-port") {
                u.centre_port = Some(arg(0).parse().map_err(|_| "the port is 443 or 4043")?);
            }
        }
        Cfg::DeleteUpdate => {
            let u = &mut c.update;
            if has("auto-check") {
                u.auto_check = None;
            } else if has("auto-activate") {
                u.auto_activate = None;
            } else if has("auto-distribute") {
                u.auto_distribute = None;
            } else if has("check-interval") {
                u.check_interval = None;
            } else if has("distribute-group") {
                let before = u.distribute_groups.len();
                u.distribute_groups.retain(|g| *g != arg(0));
                if before == u.distribute_groups.len() {
                    return Err(format!("distribute-group {} is not configured", arg(0)));
                }
            } else if has("centre-port") {
                u.centre_port = None;
            } else {
                *u = settings::UpdatePolicy::default();
            }
        }
        Cfg::DeleteHostname => c.hostname = None,
        Cfg::DeleteTimeZone => c.time_zone = None,
        Cfg::DeleteAddress => c.management = None,
        Cfg::DeleteProxy => c.proxy = None,
        Cfg::DeleteHaPeer => {
            c.ha_peer = None;
            c.ha_peer_fingerprint = None;
            c.ha_role = None;
        }
        Cfg::DeleteHaWitness => {
            c.ha_witness = None;
            c.ha_witness_fingerprint = None;
        }
        Cfg::DeleteHaVirtualAddress => c.ha_virtual_address = None,
        Cfg::DeleteLogServer => {
            if has("server") {
                let before = c.log_servers.len();
                c.log_servers.retain(|l| l.host != arg(0));
                if before == c.log_servers.len() {
                    return Err(format!("logging server {} is not configured", arg(0)));
                }
            } else {
                c.log_servers.clear();
            }
        }
        Cfg::DeleteDns => {
            let before = c.dns_servers.len();
            c.dns_servers.retain(|d| d.to_string() != arg(0));
            if before == c.dns_servers.len() {
                return Err(format!("dns server {} is not configured", arg(0)));
            }
        }
        Cfg::DeleteNtp => {
            let before = c.ntp_servers.len();
            c.ntp_servers.retain(|d| *d != arg(0));
            if before == c.ntp_servers.len() {
                return Err(format!("ntp server {} is not configured", arg(0)));
            }
        }
        Cfg::DeleteCommunity => {
            let before = c.snmp_communities.len();
            c.snmp_communities.retain(|d| d.name != arg(0));
            if before == c.snmp_communities.len() {
                return Err(format!("snmp community {} is not configured", arg(0)));
            }
        }
        Cfg::DeleteUser => {
            if c.trap_destinations
                .iter()
                .any(|t| t.user.as_deref() == Some(&arg(0)))
            {
                return Err(format!(
                    "snmp user {} is used by a trap destination; delete that first",
                    arg(0)
                ));
            }
            let before = c.snmp_users.len();
            c.snmp_users.retain(|d| d.name != arg(0));
            if before == c.snmp_users.len() {
                return Err(format!("snmp user {} is not configured", arg(0)));
            }
        }
        Cfg::DeleteTrap => {
            let before = c.trap_destinations.len();
            c.trap_destinations
                .retain(|d| d.address.to_string() != arg(0));
            if before == c.trap_destinations.len() {
                return Err(format!("trap destination {} is not configured", arg(0)));
            }
        }
        // Leaving the mode is the session's business (commands::Cli).
        Cfg::Exit | Cfg::ExitDiscard => return Ok(String::new()),
    }
    // Refuse a change that makes the candidate invalid now, naming the
    // setting, rather than at commit. A proxy's user or password may be
    // staged before its URL.
    let mut check = c.clone();
    let proxy_pending = check.proxy.as_ref().is_some_and(|x| x.url.is_empty());
    if proxy_pending {
        check.proxy = None;
    }
    // A mail server may be staged before its sender and recipients.
    let mail_pending = match check.mail.take() {
        Some(m) if m.from.is_empty() || m.recipients.is_empty() => {
            settings::check_mail(&m, false).map_err(|e| format!("{e}; nothing changed"))?;
            true
        }
        other => {
            check.mail = other;
            false
        }
    };
    // A backup server may be staged before its host key.
    let backup_pending = match check.backup.take() {
        Some(b) if b.host_key.is_empty() => {
            settings::check_backup(&b, false).map_err(|e| format!("{e}; nothing changed"))?;
            true
        }
        other => {
            check.backup = other;
            false
        }
    };
    check
        .validate()
        .map_err(|e| format!("{e}; nothing changed"))?;
    s.candidate = c;
    Ok(if backup_pending {
        "staged; the backup server needs its host key before commit: set system backup host-key TYPE BASE64".into()
    } else if proxy_pending {
        "staged; the proxy needs a url before commit".into()
    } else if mail_pending {
        "staged; the mail notification needs a sender (from) and a recipient before commit".into()
    } else {
        String::new()
    })
}

/// Settings as the set commands that make them (secrets masked).
pub fn show(s: &Settings) -> String {
    let lines = crate::setlines::set_lines(s);
    if lines.is_empty() {
        return "(nothing set: the shipped configuration applies)".into();
    }
    lines
        .into_iter()
        .map(|l| l.shown)
        .collect::<Vec<_>>()
        .join("\n")
}

fn compare(base: &Settings, candidate: &Settings) -> String {
    let d = crate::setlines::diff(base, candidate);
    if d.is_empty() {
        "no changes".into()
    } else {
        d.join("\n")
    }
}

fn commit(s: &mut Session, store: &SettingsStore, paths: &SettingsPaths) -> Result<String, String> {
    let changes = crate::setlines::diff(&s.base, &s.candidate);
    if changes.is_empty() {
        return Ok("no changes to commit".into());
    }
    s.candidate
        .validate()
        .map_err(|e| format!("not committed: {e}"))?;
    let now = store.committed().map_err(|e| e.to_string())?;
    if now != s.base {
        return Err(
            "not committed: another session committed since you entered configure; \
             `discard` (or exit and configure again) to start from its configuration"
                .into(),
        );
    }
    let written = store
        .commit(&s.candidate)
        .map_err(|e| format!("not committed: {e}"))?;
    s.base = s.candidate.clone();
    let mut out = vec![format!("committed:\n{}", changes.join("\n"))];
    if let Some(status) = &paths.applier_status {
        let digest = sms_apply::digest(&written);
        match wait_for_applier(status, &digest, paths.apply_wait) {
            Ok(lines) => out.extend(lines),
            Err(lines) => {
                out.extend(lines);
                return Err(out.join("\n"));
            }
        }
    }
    Ok(out.join("\n"))
}

/// Waits for the applier's report on the file with `digest` in the status
/// file `status`: its lines when it applied it, `Err` with them when it
/// failed or did not answer within `wait`.
pub fn wait_for_applier(
    status: &std::path::Path,
    digest: &str,
    wait: Duration,
) -> Result<Vec<String>, Vec<String>> {
    let written_at = std::time::SystemTime::now() - Duration::from_secs(1);
    let started = Instant::now();
    loop {
        // The report for this file, or a failure to read any file written
        // after it.
        let fresh = std::fs::metadata(status)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= written_at);
        if let Some(st) = sms_apply::read_status(status) {
            if st.digest == digest || (fresh && !st.ok && st.digest.is_empty()) {
                let mut out = vec![if st.ok {
                    "applied:".to_string()
                } else {
                    "applying failed:".to_string()
                }];
                out.extend(
                    st.messages
                        .iter()
                        .map(|m| format!("  {}", crate::grammar::clean(m))),
                );
                return if st.ok { Ok(out) } else { Err(out) };
            }
        }
        if started.elapsed() > wait {
            return Err(vec![format!(
                "not applied within {} s: see `show log sms-settings-apply`",
                wait.as_secs()
            )]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
