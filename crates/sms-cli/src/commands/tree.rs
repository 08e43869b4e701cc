//! The operational command tree: every command, its words, arguments and
//! help, and the [`Op`] it runs.

use crate::action::Op;
use crate::grammar::{ArgKind, Node};

/// The command tree.
pub fn tree() -> Vec<Node> {
    use ArgKind::*;
    let channel_version = |verb: &'static str, op: Op, help: &'static str| {
        Node::kw(verb, help).then(vec![Node::arg(Version, "package version").run(op)])
    };
    vec![
        Node::kw("show", "show the appliance's state").then(vec![
            Node::kw("version", "firmware version and host name").run(Op::ShowVersion),
            Node::kw("system", "uptime, load, memory, disk").run(Op::ShowSystem),
            Node::kw("services", "the appliance's daemons").run(Op::ShowServices),
            Node::kw("dv", "DV packages on the appliance").run(Op::ShowDv),
            Node::kw("tos", "TOS images on the appliance").run(Op::ShowTos),
            Node::kw("devices", "managed devices").run(Op::ShowDevices),
            Node::kw("device", "one managed device")
                .then(vec![Node::arg(Name, "device name").run(Op::ShowDevice)]),
            Node::kw("distribution", "distribution jobs")
                .then(vec![Node::kw("jobs", "every job").run(Op::ShowJobs)]),
            Node::kw("events", "traps received from devices").run(Op::ShowEvents),
            Node::kw("ntp", "time service").run(Op::ShowNtp),
            Node::kw("snmp", "SNMP agent, receiver and poller").run(Op::ShowSnmp),
            Node::kw("update", "update daemon status").run(Op::ShowUpdate),
            Node::kw("dns", "DNS servers of the update daemon").run(Op::ShowDns),
            Node::kw("proxy", "proxy towards the update centre").run(Op::ShowProxy),
            Node::kw("ha", "high availability: role, state, epoch, peer, witness")
                .run(Op::ShowHa)
                .then(vec![Node::kw(
                    "identity",
                    "this node's fingerprint, for pairing on the peer",
                )
                .run(Op::ShowHaIdentity)]),
            Node::kw("logging", "remote log servers and what each got").run(Op::ShowLogging),
            Node::kw("backup", "the backup server and the appliance's key for it")
                .run(Op::ShowBackup),
            Node::kw("configuration", "the committed settings as set commands")
                .run(Op::ShowConfiguration),
            Node::kw("files", "the CLI's saved files (save, load)").run(Op::ShowFiles),
            Node::kw("audit", "the audit log (who changed what)").run(Op::ShowAudit),
            Node::kw("log", "the last lines of a daemon's journal").then(vec![Node::arg(
                Name,
                "sms-updated, sms-distd, sms-ntpd, sms-snmpd",
            )
            .run(Op::ShowLog)]),
        ]),
        Node::kw("system", "the appliance itself").then(vec![
            Node::kw(
                "backup",
                "take a backup and send it to the backup server (pass phrase asked)",
            )
            .run(Op::SystemBackup)
            .then(vec![
                Node::kw("packages", "with the package files too").run(Op::SystemBackup),
                Node::kw("list", "the backups on the backup server").run(Op::SystemBackupList),
                Node::kw(
                    "pass-phrase",
                    "the pass phrase scheduled backups are sealed to (asked twice, never stored)",
                )
                .run(Op::SystemBackupPassPhrase),
            ]),
            Node::kw(
                "restore",
                "restore a backup from the backup server (checked and shown first)",
            )
            .then(vec![Node::arg(Text, "backup name (system backup list)")
                .run(Op::SystemRestore)
                .then(vec![
                    Node::kw("confirm", "without asking").run(Op::SystemRestore)
                ])]),
            Node::kw("reboot", "restart the appliance (asks first)")
                .run(Op::SystemReboot)
                .then(vec![
                    Node::kw("confirm", "without asking").run(Op::SystemReboot)
                ]),
            Node::kw("shutdown", "power the appliance off (asks first)")
                .run(Op::SystemShutdown)
                .then(vec![
                    Node::kw("confirm", "without asking").run(Op::SystemShutdown)
                ]),
        ]),
        Node::kw("ha", "the HA pair").then(vec![
            Node::kw(
                "failover",
                "make this standby the active node, at epoch + 1 (asks first)",
            )
            .run(Op::HaFailover)
            .then(vec![
                Node::kw("confirm", "without asking").run(Op::HaFailover)
            ]),
            Node::kw(
                "swap",
                "hand the active role to the peer, nothing lost (on the active node; asks first)",
            )
            .run(Op::HaSwap)
            .then(vec![Node::kw("confirm", "without asking").run(Op::HaSwap)]),
        ]),
        Node::kw("update", "fetch packages from the update centre").then(vec![
            Node::kw("dv", "signature packages").then(vec![
                Node::kw("refresh", "ask the update centre what is available")
                    .run(Op::UpdateDvRefresh),
                Node::kw("check", "check and install the newest DV now").run(Op::UpdateDvCheck),
                channel_version("download", Op::Download, "download a version"),
                channel_version("activate", Op::Activate, "make a downloaded version active"),
            ]),
            Node::kw("tos", "device operating system images").then(vec![
                Node::kw("refresh", "ask the update centre what is available")
                    .run(Op::UpdateTosRefresh),
                channel_version(
                    "download",
                    Op::Download,
                    "download a version (all platforms)",
                ),
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
            .run(Op::DevicesRemove)]),
            Node::kw("edit", "change a device").then(vec![Node::arg(Name, "device name").then(
                vec![
                    Node::kw("group", "move it to a group").then(vec![Node::arg(
                        Name,
                        "group name",
                    )
                    .run(Op::DevicesEdit)]),
                    Node::kw("address", "its new address")
                        .then(vec![Node::arg(Address, "address").run(Op::DevicesEdit)]),
                    Node::kw("port", "its new HTTPS port")
                        .then(vec![Node::arg(Number, "port").run(Op::DevicesEdit)]),
                ],
            )]),
            Node::kw("groups", "groups and how many devices each has").run(Op::DevicesGroups),
        ]),
        Node::kw("job", "distribution jobs").then(vec![
            Node::kw("status", "one job's report")
                .then(vec![Node::arg(Number, "job number").run(Op::JobStatus)]),
            Node::kw("cancel", "stop a running job")
                .then(vec![Node::arg(Number, "job number").run(Op::JobCancel)]),
        ]),
        Node::kw("services", "the appliance's daemons").then(vec![
            Node::kw("status", "state of every daemon").run(Op::ShowServices),
            Node::kw("restart", "restart a daemon and wait for it").then(vec![Node::arg(
                Name,
                "sms-updated, sms-distd, sms-ntpd, sms-snmpd",
            )
            .run(Op::ServicesRestart)]),
        ]),
        Node::kw(
            "configure",
            "enter configuration mode (staged changes, commit)",
        )
        .run(Op::Configure),
        Node::kw(
            "password",
            "change your password (asked: the current one, the new one twice)",
        )
        .run(Op::Password)
        .then(vec![Node::arg(
            ArgKind::Account,
            "a role account's password (administrator: sms-operator, sms-auditor)",
        )
        .run(Op::Password)]),
        Node::kw("who", "who is logged in").run(Op::Who),
        Node::kw("whoami", "who you are logged in as").run(Op::Whoami),
        Node::kw("help", "the commands").run(Op::Help),
        Node::kw("exit", "log out").run(Op::Exit),
        Node::kw("logout", "log out").run(Op::Exit),
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
            .run(Op::DevicesAdd)
            .then(vec![Node::kw("port", "HTTPS port (443)").then(vec![
                Node::arg(ArgKind::Number, "port").run(Op::DevicesAdd),
            ])])]),
            Node::kw("port", "HTTPS port (443)")
                .then(vec![Node::arg(ArgKind::Number, "port").run(Op::DevicesAdd)]),
        ]
    };
    [
        ("200-2400", "IPS 200, 400, 1200, 2400"),
        ("50-100e", "IPS 50, 100E"),
        ("5000e", "IPS 5000E"),
    ]
    .into_iter()
    .map(|(w, h)| Node::kw(w, h).run(Op::DevicesAdd).then(options()))
    .collect()
}

fn targets() -> Vec<Node> {
    vec![
        Node::kw("all", "every device").run(Op::Distribute),
        Node::kw("group", "the devices of a group").then(vec![Node::arg(
            ArgKind::Name,
            "group name",
        )
        .run(Op::Distribute)]),
        Node::kw("device", "one device").then(vec![
            Node::arg(ArgKind::Name, "device name").run(Op::Distribute)
        ]),
    ]
}
