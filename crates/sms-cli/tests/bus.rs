#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The CLI and the bus: it never takes the bus from the environment (a
//! login could point it at daemons of its own), and Ctrl-C gives the
//! prompt back while a daemon does not answer.

use expectrl::{ControlCode, Eof, Expect};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A stand-in update daemon on a private bus: `Status()` answers with a
/// version no real daemon has, or never answers.
struct FakeUpdater {
    hang: bool,
}

#[zbus::interface(name = "org.smsos.Updater1")]
impl FakeUpdater {
    async fn status(&self) -> String {
        if self.hang {
            std::future::pending::<()>().await;
        }
        r#"{"state":"idle","active_dv":"6.6.6.6","active_tos":null,"last_check":null,"last_result":null,"last_error":false,"next_check":null,"downloads":[],"pending_confirmations":0,"completed_operations":0}"#.into()
    }
}

async fn fake(bus: &sms_testkit::DbusDaemon, hang: bool) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address())
        .unwrap()
        .name(sms_core::bus::UPDATER_NAME)
        .unwrap()
        .serve_at(sms_core::bus::UPDATER_PATH, FakeUpdater { hang })
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn show_update(dir: &std::path::Path, bus: &str, env_bus: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir)
        .args(["--bus", bus, "-c", "show update"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", env_bus)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_never_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let bus = sms_testkit::DbusDaemon::start().unwrap();
    let _fake = fake(&bus, false).await;
    let addr = bus.address().to_string();
    let d = dir.path().to_path_buf();
    let (real, hijacked) = tokio::task::spawn_blocking(move || {
        (
            show_update(&d, &addr, "unix:path=/nonexistent/bus"),
            show_update(&d, "unix:path=/nonexistent/bus", &addr),
        )
    })
    .await
    .unwrap();
    assert!(real.contains("6.6.6.6"), "the stand-in answers: {real}");
    assert!(
        !hijacked.contains("6.6.6.6"),
        "DBUS_SYSTEM_BUS_ADDRESS was used: {hijacked}"
    );
    assert!(hijacked.contains("bus is not reachable"), "{hijacked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_gives_the_prompt_back_while_a_daemon_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let bus = sms_testkit::DbusDaemon::start().unwrap();
    let _fake = fake(&bus, true).await;
    let addr = Arc::new(bus.address().to_string());
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-cli"));
        cmd.arg("--state-dir")
            .arg(&d)
            .args(["--bus", addr.as_str()]);
        cmd.env("TERM", "xterm");
        let mut s = expectrl::Session::spawn(cmd).unwrap();
        s.set_expect_timeout(Some(Duration::from_secs(15)));
        s.expect("@sms> ").unwrap();
        s.send("show update\r").unwrap();
        std::thread::sleep(Duration::from_secs(1));
        s.send(ControlCode::EndOfText).unwrap();
        // Well before the 30 s a daemon is given.
        s.set_expect_timeout(Some(Duration::from_secs(10)));
        s.expect("interrupted (Ctrl-C) while waiting for Updater1")
            .unwrap();
        s.expect("@sms> ").unwrap();
        s.send("whoami\r").unwrap();
        s.expect("root").unwrap();
        s.send("exit\r").unwrap();
        s.expect(Eof).unwrap();
    })
    .await
    .unwrap();
}
