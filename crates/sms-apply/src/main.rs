//! `sms-apply-settings`: applies the committed settings (run by systemd as
//! root; see the crate documentation).

#![forbid(unsafe_code)]

use anyhow::Context;
use sms_apply::{
    accounts, digest, plan, zone_file, AccountPaths, Status, NETWORK_FILE, STATE_DIR, ZONEINFO,
};
use sms_core::settings::{Settings, DEFAULT_SETTINGS};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Args {
    settings: PathBuf,
    state_dir: PathBuf,
    boot: bool,
    accounts: AccountPaths,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        settings: DEFAULT_SETTINGS.into(),
        state_dir: STATE_DIR.into(),
        boot: false,
        accounts: AccountPaths {
            passwords: accounts::passwords_path(Path::new(sms_core::settings::DEFAULT_DIR)),
            factory_shadow: accounts::FACTORY_SHADOW.into(),
            shadow: accounts::SHADOW.into(),
            sshd_passwords: accounts::SSHD_PASSWORDS.into(),
            keys_dir: accounts::KEYS_DIR.into(),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--settings" => a.settings = it.next().context("--settings needs a file")?.into(),
            "--state-dir" => a.state_dir = it.next().context("--state-dir needs a dir")?.into(),
            "--boot" => a.boot = true,
            "--passwords" => {
                a.accounts.passwords = it.next().context("--passwords needs a file")?.into()
            }
            "--factory-shadow" => {
                a.accounts.factory_shadow =
                    it.next().context("--factory-shadow needs a file")?.into()
            }
            "--shadow" => a.accounts.shadow = it.next().context("--shadow needs a file")?.into(),
            "--keys-dir" => a.accounts.keys_dir = it.next().context("--keys-dir needs a dir")?.into(),
            "--sshd-passwords" => {
                a.accounts.sshd_passwords =
                    it.next().context("--sshd-passwords needs a file")?.into()
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (--settings FILE, --state-dir DIR, --boot, --passwords FILE, --factory-shadow FILE, --shadow FILE, --sshd-passwords FILE, --keys-dir DIR)"
            ),
        }
    }
    Ok(a)
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn link_atomic(target: &Path, link: &Path) -> std::io::Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

fn main() -> anyhow::Result<()> {
    sms_core::logging::init("sms-apply-settings");
    let a = args()?;
    let status_path = a.state_dir.join("status.json");
    let writer = sms_apply::account_uid("admin");
    // Accounts first and on their own: a settings file that cannot be
    // applied must never keep the console login from working.
    let today = sms_core::daemon::unix_now().max(0) as u64 / 86_400;
    let mut acc = sms_apply::apply_accounts(&a.accounts, writer, today);
    if acc.sshd_changed && !a.boot {
        match run("systemctl", &["try-reload-or-restart", "sshd.service"]) {
            Ok(()) => acc.status.messages.push("sshd reloaded".into()),
            Err(e) => {
                acc.status.ok = false;
                acc.status.messages.push(e);
            }
        }
    }
    for m in &acc.status.messages {
        if acc.status.ok {
            tracing::info!("{m}");
        } else {
            tracing::error!("{m}");
        }
    }
    write_status(&a.state_dir.join("accounts.json"), &acc.status)?;
    let bytes = match sms_apply::read_settings(&a.settings, writer) {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => {
            // Said in the status too, so that a waiting CLI shows it.
            let why = format!("not applied: {e}");
            tracing::error!("{why}");
            write_status(
                &status_path,
                &Status {
                    digest: String::new(),
                    ok: false,
                    messages: vec![why],
                },
            )?;
            std::process::exit(1);
        }
    };
    let applied_path = a.state_dir.join("applied.toml");
    let mut status = Status {
        digest: digest(&bytes),
        ok: true,
        messages: Vec::new(),
    };
    let new = match Settings::from_toml(&a.settings, &String::from_utf8_lossy(&bytes)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("not applied: {e}");
            status.ok = false;
            status.messages.push(format!("not applied: {e}"));
            write_status(&status_path, &status)?;
            std::process::exit(1);
        }
    };
    let old = if a.boot {
        None
    } else {
        // What was applied last; a damaged copy means "apply everything".
        Some(Settings::load(&applied_path).unwrap_or_default())
    };
    let p = plan(old.as_ref(), &new);
    match sms_apply::apply_keys(&a.accounts.keys_dir, &new.login_keys) {
        Ok(said) => {
            for m in said {
                tracing::info!("{m}");
                status.messages.push(m);
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            status.ok = false;
            status.messages.push(e);
        }
    }
    let mut note = |r: Result<String, String>| match r {
        Ok(m) => {
            tracing::info!("{m}");
            status.messages.push(m);
        }
        Err(m) => {
            tracing::error!("{m}");
            status.ok = false;
            status.messages.push(m);
        }
    };
    if let Some(h) = &p.hostname {
        note(
            nix::unistd::sethostname(h)
                .map(|_| format!("host name set to {h}"))
                .map_err(|e| format!("setting the host name to {h}: {e}")),
        );
    }
    if let Some(z) = &p.time_zone {
        let link = a.state_dir.join("localtime");
        note(
            zone_file(Path::new(ZONEINFO), z)
                .and_then(|f| {
                    link_atomic(&f, &link).map_err(|e| format!("{}: {e}", link.display()))
                })
                .map(|_| format!("time zone set to {z}")),
        );
    }
    if let Some(net) = &p.network {
        let path = Path::new(NETWORK_FILE);
        let r = match net {
            Some(text) => path
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                // systemd-networkd reads it as its own user.
                .and_then(|_| sms_core::files::write_atomic(path, text.as_bytes(), 0o644))
                .map(|_| "management address set".to_string()),
            None => match std::fs::remove_file(path) {
                Ok(()) => Ok("management address back to DHCP".to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e),
            },
        }
        .map_err(|e| format!("{NETWORK_FILE}: {e}"));
        match r {
            Ok(m) if m.is_empty() => {}
            Ok(m) => match run("networkctl", &["reload"]) {
                Ok(()) => note(Ok(m)),
                // At boot networkd may not run yet: it reads the file when
                // it starts.
                Err(_) if a.boot => note(Ok(format!("{m} (networkd reads it at start)"))),
                Err(e) => note(Err(e)),
            },
            Err(e) => note(Err(e)),
        }
    }
    for unit in &p.restart {
        note(run("systemctl", &["try-restart", unit]).map(|_| format!("{unit} restarted")));
    }
    if status.ok {
        sms_core::files::write_atomic(&applied_path, &bytes, 0o640)
            .with_context(|| applied_path.display().to_string())?;
    }
    if status.messages.is_empty() {
        status.messages.push("nothing to change".into());
    }
    write_status(&status_path, &status)?;
    if !status.ok {
        std::process::exit(1);
    }
    Ok(())
}

fn write_status(path: &Path, s: &Status) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(s)?;
    sms_core::files::write_atomic(path, &text, 0o644).with_context(|| path.display().to_string())
}
