#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Backups from the CLI: the backup server set in configuration mode, the
//! appliance's key shown and authorised on a real OpenSSH SFTP server, a
//! backup taken with a pass phrase asked twice, listed, and restored after
//! the settings changed (checked and shown first, then confirmed); a wrong
//! pass phrase changes nothing. The backup service runs as on the
//! appliance, one connection at a time on its socket.

mod common;
use common::command_file as cli;
use sms_backup::capture::StoreAccess;
use sms_backup::layout::Layout;
use sms_backup::service::Service;
use sms_testkit::sftp_server::SftpServer;
use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// The backup service of a data partition that is the CLI's state
/// directory (its settings are `<state>/config`), with the stores a running
/// appliance has.
fn service(state: &Path) -> Service {
    for d in ["updated", "distd/state", "snmpd/store"] {
        let s = sms_core::store::Store::open(&state.join(d)).unwrap();
        let mut b = sms_core::store::Batch::new();
        b.put("records", "k", d.as_bytes().to_vec());
        s.apply(&b).unwrap();
    }
    Service {
        layout: Layout {
            root: state.to_path_buf(),
        },
        settings: state.join("config/settings.toml"),
        access: StoreAccess::Direct,
        services: false,
        transfer: sms_backup::transfer::Transfer::Direct,
        rounds: 1_000,
        hostname: "sms-lab".into(),
    }
}

/// `service` on `<state>/backup.sock`, one connection at a time.
fn serve(service: Service, state: &Path) {
    let listener = UnixListener::bind(state.join("backup.sock")).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for conn in listener.incoming() {
            let conn = conn.unwrap();
            let reader = BufReader::new(conn.try_clone().unwrap());
            rt.block_on(service.handle(reader, conn));
        }
    });
}

#[test]
fn a_backup_taken_in_the_cli_restores_the_settings_it_had() {
    let sftp = SftpServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    serve(service(state), state);

    let out = cli(
        state,
        &format!(
            "system backup\n\
             configure\n\
             set system hostname sms-before\n\
             set system backup server 127.0.0.1 port {port} user {user}\n\
             commit\n\
             set system backup host-key ssh-ed25519 AAAAnotakey\n\
             set system backup host-key {key}\n\
             set system backup directory {store}\n\
             set system backup keep 0\n\
             set system backup keep 5\n\
             commit\n\
             exit\n\
             show configuration\n\
             show backup\n",
            port = sftp.port,
            user = sftp.user,
            key = sftp.host_key,
            store = sftp.store.display(),
        ),
    );
    assert!(out.contains("no backup server is configured"), "{out}");
    assert!(out.contains("needs the server's host key"), "{out}");
    assert!(out.contains("backup host-key"), "{out}");
    assert!(out.contains("backup keep: 1 to 365"), "{out}");
    assert!(
        out.contains(&format!("set system backup host-key {}", sftp.host_key)),
        "{out}"
    );
    assert!(out.contains("last backup none taken yet"), "{out}");
    let public = out
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 ") && l.contains("sms-backup@"))
        .unwrap_or_else(|| panic!("no appliance key shown: {out}"))
        .to_string();
    sftp.authorize(&public).unwrap();

    let out = cli(
        state,
        "system backup\nthe first pass phrase\nanother pass phrase\n\
         system backup\nshort\nshort\n\
         system backup\nthe first pass phrase\nthe first pass phrase\n\
         system backup list\n",
    );
    assert!(out.contains("the two pass phrases differ"), "{out}");
    assert!(out.contains("at least 12 characters"), "{out}");
    let noted = std::fs::read_to_string(state.join("backup/status.json")).unwrap();
    assert!(
        noted.contains("\"name\":\""),
        "the good backup is not noted: {noted}"
    );
    assert!(out.contains("store snmpd: 1 records"), "{out}");
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("backup ").and_then(|r| r.split(' ').next()))
        .unwrap_or_else(|| panic!("no backup sent: {out}; sshd: {}", sftp.log()))
        .to_string();
    assert!(out.lines().any(|l| l == name), "not listed: {out}");
    let out = cli(state, "show backup\n");
    assert!(out.contains(&format!("last backup {name} (")), "{out}");
    assert_eq!(std::fs::read_dir(&sftp.store).unwrap().count(), 1);

    // The settings change after the backup.
    let out = cli(
        state,
        "configure\nset system hostname sms-after\ncommit\nexit\nshow configuration\n",
    );
    assert!(out.contains("set system hostname sms-after"), "{out}");

    let out = cli(
        state,
        &format!(
            "system restore {name}\nnot the pass phrase\n\
             system restore {name}\nthe first pass phrase\n\
             system restore {name} confirm\n\
             show configuration\n"
        ),
    );
    assert!(out.contains("wrong pass phrase for this backup"), "{out}");
    assert!(out.contains("replace  config/settings.toml"), "{out}");
    assert!(
        out.contains("the backup is good; nothing was changed"),
        "{out}"
    );
    assert!(out.contains("restored the backup of sms-lab"), "{out}");
    assert!(out.contains("set system hostname sms-before"), "{out}");
    assert!(!out.contains("sms-after"), "{out}");

    let audit = std::fs::read_to_string(state.join("audit.log")).unwrap();
    assert!(
        audit.contains(&format!("system restore {name} confirm")),
        "{audit}"
    );
    assert!(audit.contains("system backup"), "{audit}");
}

#[test]
fn scheduled_backups_are_sealed_to_the_enrolled_pass_phrase_and_restore_with_it() {
    let sftp = SftpServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let service = service(state);
    serve(service.clone(), state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 2026-12-04 (a Friday) 20:00 UTC.
    let now = 1_796_414_400;
    use sms_backup::service::Tick;
    assert_eq!(rt.block_on(service.tick(now)).unwrap(), Tick::Unscheduled);

    let out = cli(
        state,
        &format!(
            "configure\n\
             set system hostname sms-before\n\
             set system backup server 127.0.0.1 port {port} user {user}\n\
             set system backup host-key {key}\n\
             set system backup directory {store}\n\
             set system backup schedule daily at 25:00\n\
             set system backup schedule weekly friday at 19:45\n\
             commit\n\
             set system backup schedule daily at 7:00\n\
             commit\n\
             exit\n\
             show configuration\n\
             show backup\n",
            port = sftp.port,
            user = sftp.user,
            key = sftp.host_key,
            store = sftp.store.display(),
        ),
    );
    assert!(out.contains("the time is HH:MM"), "{out}");
    assert!(
        out.contains("set system backup schedule weekly friday at 19:45"),
        "{out}"
    );
    assert!(
        out.contains("weekly on friday at 19:45 UTC: NOT TAKEN until a pass phrase is enrolled"),
        "{out}"
    );
    let public = out
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 ") && l.contains("sms-backup@"))
        .unwrap_or_else(|| panic!("no appliance key shown: {out}"))
        .to_string();
    sftp.authorize(&public).unwrap();

    // Due (Friday 19:45 has passed) but nothing to seal to: it fails and
    // says why, and is tried again at the next tick.
    let e = rt.block_on(service.tick(now)).unwrap_err();
    assert!(
        format!("{e:#}").contains("no pass phrase is enrolled"),
        "{e:#}"
    );
    let out = cli(state, "show backup\n");
    assert!(
        out.contains("FAILED") && out.contains("(scheduled): scheduled backup (attempt 1 of 3"),
        "{out}"
    );

    let out = cli(
        state,
        "system backup pass-phrase\nthe scheduled pass phrase\nanother one entirely\n\
         system backup pass-phrase\nthe scheduled pass phrase\nthe scheduled pass phrase\n\
         show backup\n",
    );
    assert!(out.contains("the two pass phrases differ"), "{out}");
    assert!(
        out.contains("scheduled backups are sealed to this pass phrase from now on"),
        "{out}"
    );
    assert!(out.contains("sealed to  the pass phrase enrolled"), "{out}");
    // Nothing of the pass phrase on the appliance.
    for f in ["backup/schedule/enrolment.json", "config/settings.toml"] {
        let text = std::fs::read_to_string(state.join(f)).unwrap();
        assert!(!text.contains("scheduled pass"), "{f}: {text}");
    }

    let Tick::Sent(text) = rt.block_on(service.tick(now)).unwrap() else {
        panic!("no scheduled backup taken")
    };
    let name = text
        .strip_prefix("backup ")
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    // Taken for this due time: the next ticks do nothing until next Friday.
    assert_eq!(rt.block_on(service.tick(now + 900)).unwrap(), Tick::NotDue);
    assert!(matches!(
        rt.block_on(service.tick(now + 7 * 86_400)),
        Ok(Tick::Sent(_))
    ));
    let out = cli(state, "show backup\n");
    assert!(
        out.contains("(scheduled)") && out.contains("last backup sms-backup-sms-lab-"),
        "{out}"
    );

    let out = cli(
        state,
        "configure\nset system hostname sms-after\ncommit\nexit\n",
    );
    assert!(!out.contains('%'), "{out}");
    let out = cli(
        state,
        &format!(
            "system restore {name}\nthe first pass phrase\n\
             system restore {name}\nthe scheduled pass phrase\n\
             system restore {name} confirm\n\
             show configuration\n"
        ),
    );
    assert!(out.contains("wrong pass phrase for this backup"), "{out}");
    assert!(out.contains("restored the backup of sms-lab"), "{out}");
    assert!(out.contains("set system hostname sms-before"), "{out}");

    // Unscheduled again: the ticks do nothing.
    let out = cli(
        state,
        "configure\ndelete system backup schedule\ncommit\nexit\nshow backup\n",
    );
    assert!(out.contains("schedule   on demand only"), "{out}");
    assert_eq!(
        rt.block_on(service.tick(now + 14 * 86_400)).unwrap(),
        Tick::Unscheduled
    );
}
