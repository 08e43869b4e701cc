#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The update policy in configuration mode, end to end: the administrator
//! sets it in the CLI (out-of-range values refused), commits, and the
//! settings file the commit wrote changes what the updater does against the
//! simulated update centre: with automatic activation off a new DV is
//! downloaded but not activated; with the policy deleted the next one is.
//! The distributor takes the groups an automatic distribution goes to.

mod common;
use sms_core::bus::Target;
use sms_core::daemon::WithSettings;
use sms_core::package::Channel;
use sms_core::settings::Settings;
use sms_sim::{TmcSim, TmcSimConfig};
use sms_updated::updater::Updater;
use std::path::Path;

const MB: usize = 1 << 20;

use common::command_file as cli;

fn committed(dir: &Path) -> Settings {
    Settings::load(&dir.join("config/settings.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_set_in_the_cli_changes_what_the_updater_does() {
    let dir = tempfile::tempdir().unwrap();
    let sim = TmcSim::start(TmcSimConfig::new(dir.path().join("sim")))
        .await
        .unwrap();
    let cli_dir = dir.path().join("cli");
    std::fs::create_dir_all(&cli_dir).unwrap();

    let out = cli(
        &cli_dir,
        "configure\n\
         set update dv auto-activate off\n\
         set update dv auto-check off\n\
         set update dv check-interval 5\n\
         set update dv check-interval 3600\n\
         set update centre-port 8443\n\
         set update centre-port 4043\n\
         set update dv auto-distribute on\n\
         set update dv distribute-group lab\n\
         set update dv distribute-group core\n\
         set update dv distribute-group lab\n\
         compare\n\
         commit\n\
         show\n\
         exit\n",
    );
    assert!(out.contains("300"), "interval range not given: {out}");
    assert!(out.contains("4043"), "{out}");
    assert_eq!(out.matches("% ").count(), 2, "refusals: {out}");
    assert!(out.contains("+ set update dv auto-activate off"), "{out}");
    assert!(out.contains("set update dv distribute-group core"), "{out}");

    let settings = committed(&cli_dir);
    assert_eq!(settings.update.auto_activate, Some(false));
    assert_eq!(settings.update.check_interval, Some(3600));
    assert_eq!(settings.update.centre_port, Some(4043));
    assert_eq!(settings.update.distribute_groups, ["lab", "core"]);

    // The updater with the committed settings over its file.
    let mut cfg = sms_testkit::world::updater_config(&sim.info, dir.path());
    cfg.dv.auto_check = true;
    cfg.apply_settings(&settings);
    assert!(!cfg.dv.auto_check);
    assert!(!cfg.dv.auto_activate);
    assert_eq!(cfg.dv.check_interval.as_secs(), 3600);
    assert_eq!(cfg.tmc.port, 4043);
    // The simulator's legacy port stands in for 4043 on loopback.
    cfg.tmc.port = sim.info.tmc_legacy_port;
    let updater = Updater::open(cfg.clone()).unwrap();
    let first = sim.publish_dv(MB);
    let msg = updater.check_dv().await.unwrap();
    let listed = updater.list(Channel::Dv).unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p.version == first.version.to_string() && !p.active),
        "{msg}: {listed:?}"
    );
    assert_eq!(updater.active(Channel::Dv).unwrap(), None, "{msg}");
    drop(updater);

    let mut dist = sms_distd::config::DistdConfig::default();
    dist.push.auto_distribute_dv = false;
    dist.apply_settings(&settings);
    assert!(dist.push.auto_distribute_dv);
    assert_eq!(
        dist.push.auto_targets(),
        [Target::Group("lab".into()), Target::Group("core".into())]
    );

    // The policy deleted: the shipped behaviour again, the next DV is
    // activated by itself and distribution goes to every device.
    let out = cli(&cli_dir, "configure\ndelete update\ncommit\nexit\n");
    assert!(out.contains("- set update dv auto-activate off"), "{out}");
    assert!(!out.contains("% "), "{out}");
    let settings = committed(&cli_dir);
    assert!(settings.update.is_shipped(), "{:?}", settings.update);
    let mut cfg = sms_testkit::world::updater_config(&sim.info, dir.path());
    cfg.apply_settings(&settings);
    assert!(cfg.dv.auto_activate);
    assert_eq!(cfg.tmc.port, sim.info.tmc_port);
    let updater = Updater::open(cfg).unwrap();
    let second = sim.publish_dv(MB);
    let msg = updater.check_dv().await.unwrap();
    assert_eq!(
        updater.active(Channel::Dv).unwrap(),
        Some(second.version.clone()),
        "{msg}"
    );
    let mut dist = sms_distd::config::DistdConfig::default();
    dist.apply_settings(&settings);
    assert_eq!(dist.push.auto_targets(), [Target::All]);
}
