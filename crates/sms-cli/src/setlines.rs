//! Settings shown the way they are typed (`set dns server 192.0.2.53`):
//! `show configuration`, `compare` and the audit line of a commit. Secrets
//! are masked; a changed secret still shows as a `-`/`+` pair because the
//! lines are compared by a digest of the secret, never the secret.

use sha2::{Digest, Sha256};
use sms_core::settings::Settings;

/// One line of [`set_lines`]: what is shown and, for comparing, the value
/// behind the mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLine {
    /// As shown (secrets as `********`).
    pub shown: String,
    /// Identity for comparison (secrets as a digest, never the secret).
    pub key: String,
}

fn masked(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    hex::encode(&d[..8])
}

/// The settings as the commands that would set them.
pub fn set_lines(s: &Settings) -> Vec<SetLine> {
    let mut out = Vec::new();
    let mut plain = |l: String| {
        out.push(SetLine {
            key: l.clone(),
            shown: l,
        })
    };
    if let Some(h) = &s.hostname {
        plain(format!("set system hostname {h}"));
    }
    if let Some(z) = &s.time_zone {
        plain(format!("set system time-zone {z}"));
    }
    for k in &s.login_keys {
        plain(format!(
            "set system login user {} authorized-key {}",
            k.user, k.key
        ));
    }
    if let Some(m) = &s.management {
        match m.gateway {
            Some(g) => plain(format!(
                "set interface management address {} gateway {g}",
                m.address
            )),
            None => plain(format!("set interface management address {}", m.address)),
        }
    }
    for d in &s.dns_servers {
        plain(format!("set dns server {d}"));
    }
    if let Some(p) = &s.proxy {
        plain(format!("set proxy url {}", p.url));
        if !p.username.is_empty() {
            plain(format!("set proxy username {}", p.username));
        }
    }
    for n in &s.ntp_servers {
        plain(format!("set ntp server {n}"));
    }
    for c in &s.snmp_communities {
        let mode = if c.write { "read-write" } else { "read-only" };
        for n in &c.networks {
            plain(format!("set snmp community {} network {n} {mode}", c.name));
        }
    }
    for t in &s.trap_destinations {
        let who = match (&t.community, &t.user) {
            (Some(c), _) => format!("community {c}"),
            (_, Some(u)) => format!("user {u}"),
            _ => String::new(),
        };
        plain(format!(
            "set snmp trap-destination {} port {} {who}",
            t.address, t.port
        ));
    }
    if let Some(p) = s.ha_peer {
        match (&s.ha_peer_fingerprint, s.ha_role) {
            (Some(fp), Some(role)) => plain(format!(
                "set ha peer {p} fingerprint {fp} role {}",
                role.word()
            )),
            _ => plain(format!("set ha peer {p}")),
        }
    }
    if let (Some(w), Some(fp)) = (s.ha_witness, &s.ha_witness_fingerprint) {
        plain(format!("set ha witness {w} fingerprint {fp}"));
    }
    if let Some(v) = &s.ha_virtual_address {
        plain(format!("set ha virtual-address {v}"));
    }
    for l in &s.log_servers {
        let port = l.port.map(|p| format!(" port {p}")).unwrap_or_default();
        let ca = l
            .ca_certificate
            .as_ref()
            .map(|c| format!(" ca-certificate {c}"))
            .unwrap_or_default();
        plain(format!(
            "set logging server {}{port} protocol {}{ca}",
            l.host,
            l.protocol.word()
        ));
    }
    if let Some(b) = &s.backup {
        let port = b.port.map(|p| format!(" port {p}")).unwrap_or_default();
        plain(format!(
            "set system backup server {}{port} user {}",
            b.server, b.user
        ));
        if !b.host_key.is_empty() {
            plain(format!("set system backup host-key {}", b.host_key));
        }
        if let Some(d) = &b.directory {
            plain(format!("set system backup directory {d}"));
        }
        if let Some(k) = b.keep {
            plain(format!("set system backup keep {k}"));
        }
        if let Some(sc) = &b.schedule {
            let when = match &sc.day {
                None => "daily".to_string(),
                Some(d) => format!("weekly {d}"),
            };
            let pk = if sc.packages { " packages" } else { "" };
            plain(format!(
                "set system backup schedule {when} at {}{pk}",
                sc.at
            ));
        }
    }
    if let Some(m) = &s.mail {
        let port = m.port.map(|p| format!(" port {p}")).unwrap_or_default();
        plain(format!(
            "set notification mail server {}{port} security {}",
            m.server,
            m.security.word()
        ));
        if let Some(ca) = &m.ca_certificate {
            plain(format!("set notification mail ca-certificate {ca}"));
        }
        if !m.from.is_empty() {
            plain(format!("set notification mail from {}", m.from));
        }
        for r in &m.recipients {
            plain(format!("set notification mail recipient {r}"));
        }
        for c in &m.classes {
            plain(format!("set notification mail class {c}"));
        }
        if let Some(i) = m.min_interval {
            plain(format!("set notification mail min-interval {i}"));
        }
    }
    let u = &s.update;
    let on_off = |b: bool| if b { "on" } else { "off" };
    if let Some(b) = u.auto_check {
        plain(format!("set update dv auto-check {}", on_off(b)));
    }
    if let Some(i) = u.check_interval {
        plain(format!("set update dv check-interval {i}"));
    }
    if let Some(b) = u.auto_activate {
        plain(format!("set update dv auto-activate {}", on_off(b)));
    }
    if let Some(b) = u.auto_distribute {
        plain(format!("set update dv auto-distribute {}", on_off(b)));
    }
    for g in &u.distribute_groups {
        plain(format!("set update dv distribute-group {g}"));
    }
    if let Some(p) = u.centre_port {
        plain(format!("set update centre-port {p}"));
    }
    if let Some(p) = &s.proxy {
        if !p.password.is_empty() {
            out.push(SetLine {
                shown: "set proxy password ********".into(),
                key: format!("set proxy password {}", masked(&p.password)),
            });
        }
    }
    if let Some(m) = s.mail.as_ref().filter(|m| !m.username.is_empty()) {
        out.push(SetLine {
            shown: format!(
                "set notification mail user {} (password ********)",
                m.username
            ),
            key: format!(
                "set notification mail user {} {}",
                m.username,
                masked(&m.password)
            ),
        });
    }
    for u in &s.snmp_users {
        let mode = if u.write { "read-write" } else { "read-only" };
        out.push(SetLine {
            shown: format!(
                "set snmp user {} auth {} privacy AES {mode} (pass phrases ********)",
                u.name, u.auth
            ),
            key: format!(
                "set snmp user {} auth {} {} {} {mode}",
                u.name,
                u.auth,
                masked(&u.auth_password),
                masked(&u.privacy_password)
            ),
        });
    }
    out
}

/// What changes from `old` to `new`, as `- ` and `+ ` lines (empty: none).
pub fn diff(old: &Settings, new: &Settings) -> Vec<String> {
    let a = set_lines(old);
    let b = set_lines(new);
    let mut out = Vec::new();
    for l in &a {
        if !b.iter().any(|x| x.key == l.key) {
            out.push(format!("- {}", l.shown));
        }
    }
    for l in &b {
        if !a.iter().any(|x| x.key == l.key) {
            out.push(format!("+ {}", l.shown));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_shown_but_changes_are() {
        let s = Settings::example();
        let lines: Vec<String> = set_lines(&s).into_iter().map(|l| l.shown).collect();
        let all = lines.join("\n");
        for secret in ["s3cret!", "auth-pass-1", "priv-pass-1"] {
            assert!(!all.contains(secret), "{all}");
        }
        assert!(all.contains("set proxy password ********"), "{all}");
        let mut t = s.clone();
        t.proxy.as_mut().unwrap().password = "other".into();
        let d = diff(&s, &t);
        assert_eq!(
            d,
            vec![
                "- set proxy password ********".to_string(),
                "+ set proxy password ********".to_string()
            ]
        );
        assert!(diff(&s, &s).is_empty());
        let mut u = s.clone();
        u.dns_servers.push("192.0.2.54".parse().unwrap());
        assert_eq!(
            diff(&s, &u),
            vec!["+ set dns server 192.0.2.54".to_string()]
        );
    }
}
