//! A store written by a newer firmware (an older slot booted after an
//! update fell back): the real daemon refuses to start on it with a clear
//! reason and leaves it as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sms_core::store::{Batch, Store, FORMAT_TREE};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut snmpd = common::Snmpd::start(dir.path(), "", None);
    snmpd.stop();
    let store_dir = dir.path().join("state/store");
    let newer = sms_snmpd::daemon::STORE_SCHEMA.version + 1;
    let seq = {
        let s = Store::open(&store_dir).unwrap();
        assert_eq!(
            s.format_of("sms-snmpd").unwrap(),
            Some(sms_snmpd::daemon::STORE_SCHEMA.version),
            "the daemon did not stamp its store"
        );
        let mut b = Batch::new();
        b.put(FORMAT_TREE, "sms-snmpd", newer.to_be_bytes().to_vec());
        s.commit(&b).unwrap().seq
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sms-snmpd"))
        .arg("--config")
        .arg(&snmpd.config)
        .arg("--settings")
        .arg(dir.path().join("settings.toml"))
        .arg("--no-dbus")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "sms-snmpd ran on a newer store");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "data of format {newer}, newer than the {} this firmware reads",
            newer - 1
        )) && err.contains("nothing changed"),
        "{err}"
    );
    let s = Store::open(&store_dir).unwrap();
    assert_eq!(
        s.last_seq().unwrap(),
        seq,
        "the refused store was written to"
    );
    assert_eq!(s.format_of("sms-snmpd").unwrap(), Some(newer));
}
