#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! `sms-apply-settings` as a process, in boot mode (nothing restarted, no
//! host name set on the test machine): the time-zone link, the status the
//! CLI waits for, and a clear refusal of a damaged or unreadable file.

use std::process::Command;

fn apply(settings: &std::path::Path, state: &std::path::Path) -> (bool, sms_apply::Status) {
    let o = applier(settings, state).output().unwrap();
    let status = sms_apply::read_status(&state.join("status.json"))
        .unwrap_or_else(|| panic!("no status: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.success(), status)
}

/// The applier in boot mode with every file it touches under `state`'s
/// parent (passwords beside the settings, as on the appliance).
fn applier(settings: &std::path::Path, state: &std::path::Path) -> Command {
    let top = state.parent().unwrap();
    let config = settings.parent().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sms-apply-settings"));
    c.arg("--boot")
        .arg("--settings")
        .arg(settings)
        .arg("--state-dir")
        .arg(state)
        .arg("--passwords")
        .arg(sms_apply::accounts::passwords_path(config))
        .arg("--factory-shadow")
        .arg(top.join("factory-shadow"))
        .arg("--shadow")
        .arg(top.join("accounts/shadow"))
        .arg("--sshd-passwords")
        .arg(state.join("sshd-passwords.conf"))
        .arg("--keys-dir")
        .arg(top.join("accounts/keys"));
    c
}

#[test]
fn login_keys_become_restricted_authorized_keys_files() {
    use sms_core::settings::{LoginKey, Settings, SettingsStore, EXAMPLE_LOGIN_KEY};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("system");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(dir.path().join("factory-shadow"), FACTORY).unwrap();
    let store = SettingsStore::new(dir.path().join("config"));
    let keys = dir.path().join("accounts/keys");
    let mut s = Settings {
        login_keys: vec![LoginKey {
            user: "admin".into(),
            key: EXAMPLE_LOGIN_KEY.into(),
        }],
        ..Default::default()
    };
    store.commit(&s).unwrap();
    let (ok, st) = apply(&store.path(), &state);
    assert!(ok && st.ok, "{st:?}");
    assert!(
        st.messages.iter().any(|m| m == "SSH keys of admin set (1)"),
        "{st:?}"
    );
    let text = std::fs::read_to_string(keys.join("admin")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines, vec![format!("restrict {EXAMPLE_LOGIN_KEY}")]);
    // Unchanged: not written again, nothing said.
    let (_, st) = apply(&store.path(), &state);
    assert!(
        !st.messages.iter().any(|m| m.contains("SSH keys")),
        "{st:?}"
    );
    // No key any more: the file goes.
    s.login_keys.clear();
    store.commit(&s).unwrap();
    let (ok, st) = apply(&store.path(), &state);
    assert!(
        ok && st.messages.iter().any(|m| m == "SSH keys of admin removed"),
        "{st:?}"
    );
    assert!(!keys.join("admin").exists());
}

const FACTORY: &str = "root:!*:20000:0:99999:7:::\nadmin:$y$j9T$factory$hash:20000:0:99999:7:::\nsms-ntpd:!*:20000::::::\n";

#[test]
fn passwords_reach_the_shadow_file_and_ssh_only_once_set() {
    use sms_apply::accounts::{hash, passwords_path, Passwords};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("system");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(config.join("accounts")).unwrap();
    std::fs::write(dir.path().join("factory-shadow"), FACTORY).unwrap();
    let settings = config.join("settings.toml");
    let shadow = dir.path().join("accounts/shadow");
    let sshd = state.join("sshd-passwords.conf");
    let run = || {
        let o = applier(&settings, &state).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        sms_apply::read_status(&state.join("accounts.json")).unwrap()
    };
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };

    // First boot: the factory file, SSH without passwords.
    let st = run();
    assert!(st.ok, "{st:?}");
    assert!(
        st.messages
            .iter()
            .any(|m| m.contains("made from the factory file")),
        "{st:?}"
    );
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), FACTORY);
    assert_eq!(mode(&shadow), 0o600);
    assert!(!sshd.exists());

    // The administrator's password: in the shadow file, SSH takes passwords.
    let h = hash("Tr0ub4dor&3x-9").unwrap();
    let path = passwords_path(&config);
    let mut p = Passwords::default();
    p.0.insert("admin".into(), h.clone());
    p.write(&path).unwrap();
    let st = run();
    assert!(st.ok, "{st:?}");
    assert_eq!(st.digest, sms_apply::digest(&std::fs::read(&path).unwrap()));
    let text = std::fs::read_to_string(&shadow).unwrap();
    assert!(text.contains(&format!("admin:{h}:")), "{text}");
    assert!(
        text.starts_with("root:!*:") && text.contains("sms-ntpd:!*:"),
        "{text}"
    );
    assert!(std::fs::read_to_string(&sshd)
        .unwrap()
        .contains("PasswordAuthentication yes"));

    // A damaged file, an unknown account, a link: refused with the reason,
    // the shadow file and SSH as they were.
    let good = text.clone();
    for (damage, says) in [
        ("admin:not-a-hash\n".to_string(), "not a SHA-512 crypt hash"),
        (
            format!("admin:{h}\nghost:{h}\n"),
            "no such account in this firmware: ghost",
        ),
    ] {
        std::fs::write(&path, damage).unwrap();
        let st = run();
        assert!(!st.ok, "{st:?}");
        assert!(
            st.messages.iter().any(|m| m.contains(says)),
            "{says}: {st:?}"
        );
        assert_eq!(std::fs::read_to_string(&shadow).unwrap(), good);
        assert!(sshd.exists());
    }
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&shadow, &path).unwrap();
    let st = run();
    assert!(
        !st.ok && st.messages.iter().any(|m| m.contains("symbolic link")),
        "{st:?}"
    );
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), good);

    // No password of its own any more (the file removed): back to the
    // factory credential, which SSH refuses.
    std::fs::remove_file(&path).unwrap();
    let st = run();
    assert!(st.ok, "{st:?}");
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), FACTORY);
    assert!(!sshd.exists());
}

#[test]
fn boot_mode_links_the_time_zone_and_reports_with_the_files_digest() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("system");
    std::fs::create_dir_all(&state).unwrap();
    let store = sms_core::settings::SettingsStore::new(dir.path().join("config"));
    store
        .commit(&sms_core::settings::Settings {
            time_zone: Some("Europe/Berlin".into()),
            ntp_servers: vec!["192.0.2.1".into()],
            ..Default::default()
        })
        .unwrap();
    let (ok, st) = apply(&store.path(), &state);
    assert!(ok && st.ok, "{st:?}");
    assert_eq!(
        st.digest,
        sms_apply::digest(&std::fs::read(store.path()).unwrap())
    );
    assert!(
        st.messages
            .iter()
            .any(|m| m == "time zone set to Europe/Berlin"),
        "{st:?}"
    );
    assert_eq!(
        std::fs::read_link(state.join("localtime")).unwrap(),
        std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    // What was applied is kept, to compare the next commit with.
    assert_eq!(
        std::fs::read(state.join("applied.toml")).unwrap(),
        std::fs::read(store.path()).unwrap()
    );

    // No file: nothing set, UTC.
    let (ok, st) = apply(&dir.path().join("none.toml"), &state);
    assert!(ok && st.ok, "{st:?}");
    assert_eq!(
        std::fs::read_link(state.join("localtime")).unwrap(),
        std::path::Path::new("/usr/share/zoneinfo/UTC")
    );
}

#[test]
fn damaged_or_unreadable_settings_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("system");
    std::fs::create_dir_all(&state).unwrap();
    let bad = dir.path().join("settings.toml");
    std::fs::write(&bad, "hostname = \"a\\nb\"\n").unwrap();
    let (ok, st) = apply(&bad, &state);
    assert!(!ok && !st.ok, "{st:?}");
    assert!(st.messages[0].contains("hostname"), "{st:?}");
    assert!(!state.join("applied.toml").exists());
    // A directory where the file should be: the read error is reported.
    let (ok, st) = apply(dir.path(), &state);
    assert!(!ok && !st.ok && st.digest.is_empty(), "{st:?}");
    assert!(st.messages[0].contains("not applied"), "{st:?}");
}

/// The applier runs as root and reads a file another account writes: a
/// link placed where the file should be, a file of another owner, one
/// anybody may write and a FIFO are all refused with the reason, and
/// nothing of theirs is applied.
#[test]
fn links_strangers_files_and_fifos_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("system");
    std::fs::create_dir_all(&state).unwrap();
    let good = dir.path().join("real.toml");
    std::fs::write(&good, "time_zone = \"Europe/Berlin\"\n").unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o640)).unwrap();

    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let (ok, st) = apply(&link, &state);
    assert!(!ok && !st.ok, "{st:?}");
    assert!(st.messages[0].contains("symbolic link"), "{st:?}");
    assert!(
        !state.join("localtime").exists(),
        "a linked file was applied"
    );

    let hard = dir.path().join("hard.toml");
    std::fs::hard_link(&good, &hard).unwrap();
    let (ok, st) = apply(&hard, &state);
    assert!(!ok && st.messages[0].contains("2 links"), "{st:?}");
    std::fs::remove_file(&hard).unwrap();

    let wide = dir.path().join("wide.toml");
    std::fs::write(&wide, "time_zone = \"Europe/Berlin\"\n").unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, st) = apply(&wide, &state);
    assert!(
        !ok && st.messages[0].contains("writable by others"),
        "{st:?}"
    );

    // Owned by an account that is neither root nor the administrator
    // (the Debian base system's "daemon").
    let stranger = dir.path().join("stranger.toml");
    std::fs::write(&stranger, "time_zone = \"Europe/Berlin\"\n").unwrap();
    std::fs::set_permissions(&stranger, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&stranger, Some(1), Some(1)).unwrap();
    let (ok, st) = apply(&stranger, &state);
    assert!(!ok && st.messages[0].contains("owned by uid 1"), "{st:?}");

    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (ok, st) = apply(&fifo, &state);
    assert!(
        !ok && st.messages[0].contains("not a regular file"),
        "{st:?}"
    );
    assert!(!state.join("localtime").exists());

    // The real file itself is applied.
    let (ok, st) = apply(&good, &state);
    assert!(ok && st.ok, "{st:?}");
    assert!(state.join("localtime").exists());
}
