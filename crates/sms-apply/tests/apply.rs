//! `sms-apply-settings` as a process, in boot mode (nothing restarted, no
//! host name set on the test machine): the time-zone link, the status the
//! CLI waits for, and a clear refusal of a damaged or unreadable file.

use std::process::Command;

fn apply(settings: &std::path::Path, state: &std::path::Path) -> (bool, sms_apply::Status) {
    let o = Command::new(env!("CARGO_BIN_EXE_sms-apply-settings"))
        .arg("--boot")
        .arg("--settings")
        .arg(settings)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    let status = sms_apply::read_status(&state.join("status.json"))
        .unwrap_or_else(|| panic!("no status: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.success(), status)
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
