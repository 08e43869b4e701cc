//! What a command line does, as a closed set.
//!
//! Every node of the command tree that ends a command names one of these;
//! [`crate::commands`] and [`crate::configure`] match them exhaustively, so
//! a command added to the tree without an implementation, or a typo, does
//! not compile. Whether a command changes the appliance (and so goes to the
//! audit log) is said here, next to the command, not in a list elsewhere.

/// A command of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An operational command.
    Op(Op),
    /// A command of configuration mode.
    Cfg(Cfg),
}

impl From<Op> for Action {
    fn from(o: Op) -> Action {
        Action::Op(o)
    }
}

impl From<Cfg> for Action {
    fn from(c: Cfg) -> Action {
        Action::Cfg(c)
    }
}

/// Operational commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `activate`: make a downloaded package active.
    Activate,
    /// `configure`: enter configuration mode.
    Configure,
    /// `devices add`: add a device to the inventory.
    DevicesAdd,
    /// `devices edit`: change a device.
    DevicesEdit,
    /// `devices groups`: groups and their device counts.
    DevicesGroups,
    /// `devices remove`: remove a device.
    DevicesRemove,
    /// `distribute`: push a package to devices.
    Distribute,
    /// `download`: download a package version.
    Download,
    /// `exit`: leave the CLI.
    Exit,
    /// `help`: list the commands.
    Help,
    /// `job cancel`: cancel a distribution job.
    JobCancel,
    /// `job status`: one job's progress.
    JobStatus,
    /// `password`: change one's own password.
    Password,
    /// `services restart`: restart one of the daemons.
    ServicesRestart,
    /// `show audit`: the audit log.
    ShowAudit,
    /// `show configuration`: the committed settings.
    ShowConfiguration,
    /// `show device`: one device.
    ShowDevice,
    /// `show devices`: the inventory.
    ShowDevices,
    /// `show dns`: DNS servers.
    ShowDns,
    /// `show dv`: DV packages on the appliance.
    ShowDv,
    /// `show events`: received traps.
    ShowEvents,
    /// `show files`: the saved files.
    ShowFiles,
    /// `show ha`: HA role and peer.
    ShowHa,
    /// `show ha identity`: this node's fingerprint, for the peer's admin.
    ShowHaIdentity,
    /// `ha failover [confirm]`: this standby takes the active role.
    HaFailover,
    /// `ha swap [confirm]`: the active node hands its role to the peer.
    HaSwap,
    /// `show logging`: the remote log servers and what each got.
    ShowLogging,
    /// `show jobs`: distribution jobs.
    ShowJobs,
    /// `show log`: a daemon's journal.
    ShowLog,
    /// `show ntp`: the time service.
    ShowNtp,
    /// `show proxy`: the proxy.
    ShowProxy,
    /// `show services`: the daemons' states.
    ShowServices,
    /// `show snmp`: the SNMP daemon.
    ShowSnmp,
    /// `show system`: uptime, load, memory, disk.
    ShowSystem,
    /// `show tos`: TOS images on the appliance.
    ShowTos,
    /// `show update`: the update daemon.
    ShowUpdate,
    /// `show version`: firmware and host name.
    ShowVersion,
    /// `system backup [packages]`: take a backup and send it to the backup
    /// server (the pass phrase is asked twice).
    SystemBackup,
    /// `system backup list`: the backups on the backup server.
    SystemBackupList,
    /// `system backup pass-phrase`: enrol the pass phrase scheduled backups
    /// are sealed to (asked twice; only its public key is kept).
    SystemBackupPassPhrase,
    /// `system restore NAME [confirm]`: fetch, check, show and restore a
    /// backup (the pass phrase is asked).
    SystemRestore,
    /// `show backup`: the backup server and the appliance's key for it.
    ShowBackup,
    /// `system reboot`: reboot the appliance.
    SystemReboot,
    /// `system shutdown`: power the appliance off.
    SystemShutdown,
    /// `update dv check`: check for a new DV now.
    UpdateDvCheck,
    /// `update dv refresh`: refresh the DV list.
    UpdateDvRefresh,
    /// `update tos refresh`: refresh the TOS list.
    UpdateTosRefresh,
    /// `who`: who is logged in.
    Who,
    /// `whoami`: the session's user.
    Whoami,
}

impl Op {
    /// Whether the command changes the appliance or its fleet: such
    /// commands are written to the audit log, with their result.
    pub fn changes_state(self) -> bool {
        match self {
            Op::Activate
            | Op::DevicesAdd
            | Op::DevicesEdit
            | Op::DevicesRemove
            | Op::Distribute
            | Op::Download
            | Op::JobCancel
            | Op::HaFailover
            | Op::HaSwap
            | Op::Password
            | Op::ServicesRestart
            | Op::SystemBackup
            | Op::SystemBackupPassPhrase
            | Op::SystemRestore
            | Op::SystemReboot
            | Op::SystemShutdown
            | Op::UpdateDvCheck
            | Op::UpdateDvRefresh
            | Op::UpdateTosRefresh => true,
            Op::Configure
            | Op::DevicesGroups
            | Op::Exit
            | Op::Help
            | Op::JobStatus
            | Op::ShowAudit
            | Op::ShowBackup
            | Op::SystemBackupList
            | Op::ShowConfiguration
            | Op::ShowDevice
            | Op::ShowDevices
            | Op::ShowDns
            | Op::ShowDv
            | Op::ShowEvents
            | Op::ShowFiles
            | Op::ShowHa
            | Op::ShowHaIdentity
            | Op::ShowLogging
            | Op::ShowJobs
            | Op::ShowLog
            | Op::ShowNtp
            | Op::ShowProxy
            | Op::ShowServices
            | Op::ShowSnmp
            | Op::ShowSystem
            | Op::ShowTos
            | Op::ShowUpdate
            | Op::ShowVersion
            | Op::Who
            | Op::Whoami => false,
        }
    }
}

/// Commands of configuration mode (staging, committing, saving settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cfg {
    /// `commit` in configuration mode.
    Commit,
    /// `compare` in configuration mode.
    Compare,
    /// `delete address` in configuration mode.
    DeleteAddress,
    /// `delete system backup [directory | keep]`: no backup server (or a
    /// value back to its default).
    DeleteBackup,
    /// `delete community` in configuration mode.
    DeleteCommunity,
    /// `delete dns` in configuration mode.
    DeleteDns,
    /// `delete system login user NAME [authorized-key TYPE KEY]`.
    DeleteLoginKey,
    /// `delete ha peer` in configuration mode.
    DeleteHaPeer,
    /// `delete ha witness` in configuration mode.
    DeleteHaWitness,
    /// `delete ha virtual-address` in configuration mode.
    DeleteHaVirtualAddress,
    /// `delete update [dv WHAT | centre-port]`: back to the shipped policy.
    DeleteUpdate,
    /// `delete hostname` in configuration mode.
    DeleteHostname,
    /// `delete logging [server HOST]`: no remote log server (or one less).
    DeleteLogServer,
    /// `delete notification mail [recipient A | class C | user | ...]`.
    DeleteMail,
    /// `delete ntp` in configuration mode.
    DeleteNtp,
    /// `delete proxy` in configuration mode.
    DeleteProxy,
    /// `delete time zone` in configuration mode.
    DeleteTimeZone,
    /// `delete trap` in configuration mode.
    DeleteTrap,
    /// `delete user` in configuration mode.
    DeleteUser,
    /// `discard` in configuration mode.
    Discard,
    /// `exit` in configuration mode.
    Exit,
    /// `exit discard` in configuration mode.
    ExitDiscard,
    /// `load` in configuration mode.
    Load,
    /// `rollback` in configuration mode.
    Rollback,
    /// `save` in configuration mode.
    Save,
    /// `set address` in configuration mode.
    SetAddress,
    /// `set system backup server|host-key|directory|keep ...`.
    SetBackup,
    /// `set community` in configuration mode.
    SetCommunity,
    /// `set dns` in configuration mode.
    SetDns,
    /// `set system login user NAME authorized-key TYPE KEY [COMMENT]`.
    SetLoginKey,
    /// `set ha peer ADDRESS [fingerprint FP role primary|secondary]`.
    SetHaPeer,
    /// `set ha witness ADDRESS fingerprint FP`.
    SetHaWitness,
    /// `set ha virtual-address ADDRESS/LEN`.
    SetHaVirtualAddress,
    /// `set update dv ...` and `set update centre-port`: the update policy.
    SetUpdate,
    /// `set hostname` in configuration mode.
    SetHostname,
    /// `set logging server HOST [port N] protocol udp|tcp|tls ...`.
    SetLogServer,
    /// `set notification mail server|from|recipient|class|...`.
    SetMail,
    /// `set notification mail user NAME` (the password is asked).
    SetMailUser,
    /// `set ntp` in configuration mode.
    SetNtp,
    /// `set proxy password` in configuration mode.
    SetProxyPassword,
    /// `set proxy url` in configuration mode.
    SetProxyUrl,
    /// `set proxy user` in configuration mode.
    SetProxyUser,
    /// `set time zone` in configuration mode.
    SetTimeZone,
    /// `set trap` in configuration mode.
    SetTrap,
    /// `set user` in configuration mode.
    SetUser,
    /// `show` in configuration mode.
    Show,
    /// `show committed` in configuration mode.
    ShowCommitted,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::Node;

    fn actions(nodes: &[Node], out: &mut Vec<Action>) {
        for n in nodes {
            out.extend(n.action);
            actions(&n.children, out);
        }
    }

    #[test]
    fn every_state_changing_command_is_in_the_tree() {
        let mut found = Vec::new();
        actions(&crate::commands::tree(), &mut found);
        actions(&crate::configure::tree(Vec::new()), &mut found);
        for op in [
            Op::Activate,
            Op::DevicesAdd,
            Op::DevicesEdit,
            Op::DevicesRemove,
            Op::Distribute,
            Op::Download,
            Op::JobCancel,
            Op::ServicesRestart,
            Op::SystemReboot,
            Op::SystemShutdown,
            Op::UpdateDvCheck,
            Op::UpdateDvRefresh,
            Op::UpdateTosRefresh,
        ] {
            assert!(op.changes_state(), "{op:?}");
            assert!(found.contains(&Action::Op(op)), "{op:?} is not reachable");
        }
        assert!(!Op::ShowVersion.changes_state());
    }
}
