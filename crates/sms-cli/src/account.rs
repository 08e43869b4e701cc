//! The administrator's password and the first-boot setup.
//!
//! The CLI has no privilege: a new password becomes a crypt hash in the
//! passwords file beside the settings ([`sms_apply::accounts`]), and the
//! root applier writes the shadow file from it and, the first time, lets
//! SSH accept passwords. Until `admin` has a password of its own the
//! factory credential is in force, and a console login goes through
//! [`first_boot`] before anything else (see ADR 13).

use crate::commands::{Cli, Outcome};
use crate::configure::{wait_for_applier, SettingsPaths};
use sms_apply::accounts::{self, Passwords, ADMIN, FACTORY_PASSWORD};

/// Whether `user` still has the factory credential: the administrator
/// without a password of its own.
pub fn needs_setup(paths: &SettingsPaths, user: &str) -> bool {
    user == ADMIN
        && Passwords::read(&accounts::passwords_path(&paths.dir))
            .map(|p| !p.0.contains_key(ADMIN))
            // A file the CLI cannot read is not "no password": the applier
            // reports it, and setup would overwrite it.
            .unwrap_or(false)
}

/// Whether `password` is `user`'s current one.
pub fn is_current(paths: &SettingsPaths, user: &str, password: &str) -> Result<bool, String> {
    let p = Passwords::read(&accounts::passwords_path(&paths.dir))?;
    Ok(match p.0.get(user) {
        Some(h) => accounts::verify(password, h),
        None if user == ADMIN => password == FACTORY_PASSWORD,
        None => false,
    })
}

/// Checks the new password (typed twice, the strength rule) and hands its
/// hash to the applier; returns what the applier did.
pub fn set_password(
    paths: &SettingsPaths,
    user: &str,
    new: &str,
    again: &str,
) -> Result<String, String> {
    if new != again {
        return Err("the two new passwords differ; nothing changed".into());
    }
    accounts::check_strength(user, new).map_err(|e| format!("password refused: {e}"))?;
    let path = accounts::passwords_path(&paths.dir);
    let mut p = Passwords::read(&path)?;
    p.0.insert(user.to_string(), accounts::hash(new)?);
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    p.write(&path)?;
    let mut out = vec![format!("password of {user} changed")];
    if let Some(status) = &paths.applier_status {
        let digest = sms_apply::digest(p.to_text().as_bytes());
        match wait_for_applier(
            &status.with_file_name("accounts.json"),
            &digest,
            paths.apply_wait,
        ) {
            Ok(lines) => out.extend(lines),
            Err(lines) => {
                out.extend(lines);
                return Err(out.join("\n"));
            }
        }
    }
    Ok(out.join("\n"))
}

/// The `password` command: the current password, then the new one twice.
pub fn change_password(
    paths: &SettingsPaths,
    user: &str,
    secrets: &[String],
) -> Result<String, String> {
    let [current, new, again] = secrets else {
        return Err("the current password and the new one twice are needed".into());
    };
    if !is_current(paths, user, current)? {
        // Slows down guessing through an open session.
        std::thread::sleep(std::time::Duration::from_secs(2));
        return Err("the current password is wrong; nothing changed".into());
    }
    if new == current {
        return Err("the new password is the current one; nothing changed".into());
    }
    set_password(paths, user, new, again)
}

/// The role accounts an administrator gives a password.
pub const ROLE_ACCOUNTS: &[&str] = &["sms-operator", "sms-auditor"];

/// `password ACCOUNT`: the administrator sets a role account's password
/// (the new one twice). Others are refused here, and could not write the
/// passwords file anyway (it is the administrator's).
pub fn set_role_password(
    paths: &SettingsPaths,
    user: &str,
    account: &str,
    secrets: &[String],
) -> Result<String, String> {
    if user != ADMIN {
        return Err("only the administrator sets another account's password".into());
    }
    if !ROLE_ACCOUNTS.contains(&account) {
        return Err(format!(
            "{account} is not a role account (one of {})",
            ROLE_ACCOUNTS.join(", ")
        ));
    }
    let [new, again] = secrets else {
        return Err("the new password is needed twice".into());
    };
    set_password(paths, account, new, again)
}

/// How the setup dialog talks to the person (a terminal, or lines of a
/// file in tests).
pub trait Ask {
    /// Shows `prompt` and reads a line; `None` at the end of input.
    fn line(&mut self, prompt: &str) -> Option<String>;
    /// Shows `prompt` and reads a line without echo.
    fn secret(&mut self, prompt: &str) -> Option<String>;
    /// Shows text.
    fn say(&mut self, text: &str);
}

/// Turns an answer into the `set` lines that stage it.
type SetLines = dyn Fn(&str) -> Vec<String>;

/// Tries per question before the dialog gives up (and the session ends).
const TRIES: usize = 5;

/// The first-boot setup: a new administrator password (twice, the strength
/// rule), then host name, management address and gateway, DNS and NTP
/// servers and time zone, each checked by the configuration grammar as it
/// is typed; an empty answer keeps what is set. The password goes to the
/// applier first, then the settings are committed. `Err`: the dialog was
/// left (end of input, too many refusals); the session must end.
pub fn first_boot(cli: &mut Cli, ask: &mut dyn Ask) -> Result<(), String> {
    ask.say(
        "First-boot setup: the factory password must be replaced before the appliance is used.\n\
         SSH accepts password logins once this is done. Empty answers keep what is shown in [ ].",
    );
    let user = cli.user().to_string();
    let paths = cli.paths().clone();
    let mut password = None;
    for _ in 0..TRIES {
        let new = ask.secret("New password for admin: ").ok_or("setup left")?;
        if let Err(e) = accounts::check_strength(&user, &new) {
            ask.say(&format!("% {e}"));
            continue;
        }
        let again = ask.secret("Again: ").ok_or("setup left")?;
        if again != new {
            ask.say("% the two passwords differ");
            continue;
        }
        password = Some(new);
        break;
    }
    let password = password.ok_or("setup left: no acceptable password")?;
    match cli.execute("configure") {
        Outcome::Ok(_) => {}
        other => return Err(format!("configuration mode: {other:?}")),
    }
    let host = sms_core::daemon::host_name();
    let questions: [(&str, String, &SetLines); 5] = [
        ("Host name", host, &|a| {
            vec![format!("set system hostname {a}")]
        }),
        ("Management address/prefix, or dhcp", "dhcp".into(), &|a| {
            vec![format!("set interface management address {a}")]
        }),
        ("DNS servers (separated by spaces)", "none".into(), &|a| {
            a.split_whitespace()
                .map(|s| format!("set dns server {s}"))
                .collect()
        }),
        ("NTP servers (separated by spaces)", "none".into(), &|a| {
            a.split_whitespace()
                .map(|s| format!("set ntp server {s}"))
                .collect()
        }),
        ("Time zone (e.g. Europe/Berlin)", "UTC".into(), &|a| {
            vec![format!("set system time-zone {a}")]
        }),
    ];
    for (question, default, lines) in questions {
        let mut done = false;
        for _ in 0..TRIES {
            let a = ask
                .line(&format!("{question} [{default}]: "))
                .ok_or("setup left")?;
            let a = a.trim();
            if a.is_empty() || a == default {
                done = true;
                break;
            }
            let mut a = a.to_string();
            if question.starts_with("Management") {
                if a == "dhcp" {
                    done = true;
                    break;
                }
                let gw = ask.line("Gateway [none]: ").ok_or("setup left")?;
                if !gw.trim().is_empty() && gw.trim() != "none" {
                    a = format!("{a} gateway {}", gw.trim());
                }
            }
            let mut failed = None;
            if question.starts_with("Time zone") {
                if let Err(e) = sms_apply::zone_file(std::path::Path::new(sms_apply::ZONEINFO), &a)
                {
                    failed = Some(format!("% {e}"));
                }
            }
            let mut staged = Vec::new();
            for l in lines(&a) {
                if failed.is_some() {
                    break;
                }
                match cli.execute(&l) {
                    Outcome::Failed(e) => failed = Some(e),
                    _ => staged.push(l),
                }
            }
            if failed.is_some() {
                // An answer is taken whole or not at all.
                for l in staged {
                    let _ = cli.execute(&l.replacen("set ", "delete ", 1));
                }
            }
            match failed {
                None => {
                    done = true;
                    break;
                }
                Some(e) => ask.say(&e),
            }
        }
        if !done {
            return Err("setup left: too many refused answers".into());
        }
    }
    let set = set_password(&paths, &user, &password, &password);
    let result = match &set {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed: {e}"),
    };
    cli.audit_note("password (first-boot setup)", &result)?;
    match set {
        Ok(t) => ask.say(&t),
        Err(e) => {
            let _ = cli.execute("exit discard");
            return Err(format!("the password was not changed: {e}"));
        }
    }
    let r = cli.execute("commit");
    let _ = cli.execute("exit discard");
    match r {
        Outcome::Ok(t) => {
            ask.say(&t);
            ask.say("Setup done. Type help for the commands.");
            Ok(())
        }
        Outcome::Failed(t) => {
            ask.say(&t);
            ask.say("The password is changed; the settings were not committed: use configure.");
            Ok(())
        }
        other => Err(format!("commit: {other:?}")),
    }
}
