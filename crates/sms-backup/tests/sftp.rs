#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Backups sent to, listed on, pruned on and fetched from a real OpenSSH
//! SFTP server on loopback, with its host key pinned; then restored by the
//! `sms-backup` binary onto a fresh data partition.

mod common;

use common::{files, populate, records, PASS};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sms_testkit::sftp_server::{keygen, SftpServer as Sshd};

fn tool(root: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sms-backup"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn remote_args(s: &Sshd, host_key: &str) -> Vec<String> {
    vec![
        "--server".into(),
        "127.0.0.1".into(),
        "--port".into(),
        s.port.to_string(),
        "--user".into(),
        s.user.clone(),
        "--dir".into(),
        s.store.display().to_string(),
        "--key".into(),
        s.client_key.display().to_string(),
        "--host-key".into(),
        host_key.to_string(),
    ]
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn backups_travel_through_a_real_sftp_server_with_its_host_key_pinned() {
    let sshd = Sshd::start().unwrap();
    let a = tempfile::tempdir().unwrap();
    populate(a.path());
    let archive = a.path().join("out.smsbak");
    let o = tool(
        a.path(),
        &[
            "create",
            "--offline",
            "--rounds",
            "1000",
            "--output",
            archive.to_str().unwrap(),
        ],
        &format!("{PASS}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));

    let remote = remote_args(&sshd, &sshd.host_key);
    let names = [
        "sms-backup-sms-lab-20261201T010000Z.smsbak",
        "sms-backup-sms-lab-20261202T010000Z.smsbak",
        "sms-backup-sms-lab-20261203T010000Z.smsbak",
    ];
    for n in names {
        let mut args = vec![
            "send",
            archive.to_str().unwrap(),
            "--name",
            n,
            "--keep",
            "2",
        ];
        args.extend(remote.iter().map(String::as_str));
        let o = tool(a.path(), &args, "");
        assert!(o.status.success(), "{}", text(&o));
    }
    // The oldest was removed; nothing half-written is left.
    let mut on_server: Vec<String> = std::fs::read_dir(&sshd.store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    on_server.sort();
    assert_eq!(on_server, names[1..].to_vec());
    let mut args = vec!["list"];
    args.extend(remote.iter().map(String::as_str));
    let o = tool(a.path(), &args, "");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .collect::<Vec<_>>(),
        names[1..].to_vec(),
        "{}",
        text(&o)
    );

    // Another server key than the pinned one: refused, nothing sent.
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("k")).unwrap();
    let wrong = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let wrong_args = remote_args(&sshd, wrong.trim());
    let mut args = vec![
        "send",
        archive.to_str().unwrap(),
        "--name",
        "sms-backup-x-20261204T010000Z.smsbak",
    ];
    args.extend(wrong_args.iter().map(String::as_str));
    let o = tool(a.path(), &args, "");
    assert!(!o.status.success());
    assert!(text(&o).contains("not the pinned one"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&sshd.store).unwrap().count(), 2);

    // Fetched back, it restores onto a fresh appliance's data partition.
    let b = tempfile::tempdir().unwrap();
    let fetched = b.path().join("fetched.smsbak");
    let mut args = vec!["fetch", names[2], "--output", fetched.to_str().unwrap()];
    args.extend(remote.iter().map(String::as_str));
    let o = tool(b.path(), &args, "");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&archive).unwrap()
    );

    let o = tool(
        b.path(),
        &["restore", "--no-services", fetched.to_str().unwrap()],
        "wrong pass phrase!\n",
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong pass phrase"), "{}", text(&o));
    assert!(
        !b.path().join("config").exists(),
        "a refused restore wrote files"
    );

    let o = tool(
        b.path(),
        &["restore", "--no-services", fetched.to_str().unwrap()],
        &format!("{PASS}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("add      config/settings.toml"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(&fetched).unwrap();
    assert_eq!(files(a.path()), files(b.path()));
    assert_eq!(records(a.path()), records(b.path()));
}
