//! Turning answers into text for people: tables, fields, settings, help.
//!
//! Everything that came from outside (a daemon's answer, a device's name)
//! has its control characters neutralised here, whatever the output form.

use crate::action::Op;
use crate::configure;
use crate::grammar::{clean, Node};
use serde::Serialize;
use serde_json::Value;
use sms_core::settings;

/// A column of a table: its heading and what each row shows in it.
pub(crate) type Column<'a, T> = (&'static str, &'a dyn Fn(&T) -> String);

/// A table of `rows`, one line each, with the given columns; cells are
/// neutralised and padded; "(none)" when there are no rows.
pub fn table<T>(rows: &[T], cols: &[Column<'_, T>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, f)| clean(&f(r))).collect())
        .collect();
    if rows.is_empty() {
        return "(none)".into();
    }
    let heads: Vec<String> = cols.iter().map(|(h, _)| h.to_string()).collect();
    grid(&heads, &rows)
}

/// Headings and rows as padded columns, two spaces apart.
fn grid(heads: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(heads)];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

/// An optional text as a cell: "-" when absent or empty.
pub(super) fn opt(v: &Option<String>) -> String {
    match v.as_deref() {
        None | Some("") => "-".into(),
        Some(s) => s.to_string(),
    }
}

/// A yes/no cell.
pub(super) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The name a record's enumeration value has in JSON (`completed`, `ok`).
pub(super) fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}

/// A record as `| json` shows it, or as `f` renders it for people.
pub(super) fn record<T: Serialize>(v: &T, json: bool, f: impl Fn(&T) -> String) -> String {
    if json {
        clean_json(&serde_json::to_value(v).unwrap_or(Value::Null))
    } else {
        f(v)
    }
}

/// A record's fields, one per line.
pub fn fields<T: Serialize>(v: &T) -> String {
    fields_at(v, sms_core::daemon::unix_now())
}

/// Fields of records that hold a time (Unix seconds), shown as dates.
const TIME_FIELDS: &[&str] = &[
    "last_check",
    "next_check",
    "last_contact",
    "created",
    "finished",
    "updated",
    "downloaded",
    "built",
];

/// [`fields`] with the clock at `now`: names in words (`last check`),
/// times as dates with how long ago or ahead, lists of values joined, and
/// lists of records (NTP sources, downloads) as tables after the fields:
/// never raw JSON (`| json` is there for scripts).
pub(crate) fn fields_at<T: Serialize>(v: &T, now: i64) -> String {
    let v = serde_json::to_value(v).unwrap_or(Value::Null);
    let Some(o) = v.as_object() else {
        return cell(Some(&v));
    };
    let mut lines = Vec::new();
    let mut tables = Vec::new();
    for (k, v) in o {
        let name = clean(&k.replace('_', " "));
        let shown = match v {
            Value::Number(n) if TIME_FIELDS.contains(&k.as_str()) => match n.as_i64() {
                Some(t) => when(t, now),
                None => cell(Some(v)),
            },
            Value::Array(items) if items.iter().any(Value::is_object) => {
                tables.push(format!("{}:\n{}", name, record_table(items, now)));
                format!("{} (below)", items.len())
            }
            Value::Array(items) if items.is_empty() => "-".into(),
            Value::Array(items) => items
                .iter()
                .map(|i| cell(Some(i)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => cell(Some(v)),
        };
        lines.push(format!("{name:<22} {shown}"));
    }
    let mut out = lines.join("\n");
    for t in tables {
        out.push_str("\n\n");
        out.push_str(&t);
    }
    out
}

/// Records as a table: one column per field of the first (names in
/// capitals), nested values flattened to text.
fn record_table(items: &[Value], now: i64) -> String {
    let Some(first) = items.iter().find_map(Value::as_object) else {
        return "(none)".into();
    };
    let keys: Vec<&String> = first.keys().collect();
    let heads: Vec<String> = keys
        .iter()
        .map(|k| k.replace('_', " ").to_uppercase())
        .collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            keys.iter()
                .map(|k| match i.get(k.as_str()) {
                    Some(Value::Number(n)) if TIME_FIELDS.contains(&k.as_str()) => n
                        .as_i64()
                        .map(|t| when(t, now))
                        .unwrap_or_else(|| n.to_string()),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| cell(Some(x)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => cell(other),
                })
                .collect()
        })
        .collect();
    grid(&heads, &rows)
}

/// A Unix time as a UTC date with how far it is from `now`
/// (`2026-12-03 18:53 UTC (2 min ago)`, `... (in 28 min)`).
pub(crate) fn when(t: i64, now: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(t) else {
        return t.to_string();
    };
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    );
    let d = (t - now).unsigned_abs();
    let span = if d < 60 {
        return format!("{date} (just now)");
    } else if d < 3600 {
        format!("{} min", d / 60)
    } else if d < 2 * 86400 {
        format!("{} h {} min", d / 3600, d / 60 % 60)
    } else {
        format!("{} days", d / 86400)
    };
    if t > now {
        format!("{date} (in {span})")
    } else {
        format!("{date} ({span} ago)")
    }
}

/// JSON with every string's control characters neutralised.
pub fn clean_json(v: &Value) -> String {
    fn walk(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(clean(s)),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (clean(k), walk(v))).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&walk(v)).unwrap_or_default()
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => clean(s),
        Some(Value::Bool(b)) => yes_no(*b),
        Some(other) => clean(&other.to_string()),
    }
}

/// Several lines, each neutralised.
pub(super) fn clean_multiline(s: &str) -> String {
    s.lines().map(clean).collect::<Vec<_>>().join("\n")
}

/// `show dns`, `show proxy`, `show ha`, `show configuration` from the
/// committed settings.
pub(super) fn settings_text(action: Op, c: &settings::Settings) -> String {
    let shipped = "(not set: the shipped configuration applies)";
    match action {
        Op::ShowDns if c.dns_servers.is_empty() => format!("DNS servers: {shipped}"),
        Op::ShowDns => format!(
            "DNS servers: {}",
            c.dns_servers
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Op::ShowProxy => match &c.proxy {
            None => format!("proxy: none {shipped}"),
            Some(p) => format!(
                "proxy url: {}\nuser: {}\npassword: {}",
                clean(&p.url),
                if p.username.is_empty() {
                    "-"
                } else {
                    &p.username
                },
                if p.password.is_empty() {
                    "not set"
                } else {
                    "set (never shown)"
                }
            ),
        },
        Op::ShowHa => format!(
            "configured role: {}\npeer: {}",
            c.ha_role.map(|r| r.word()).unwrap_or("standalone"),
            c.ha_peer
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into())
        ),
        _ => configure::show(c),
    }
}

/// `show ha`: the pair as the HA daemon sees it.
pub(super) fn ha_text(s: &sms_core::bus::HaStatus) -> String {
    let mut out = vec![
        format!("role: {} (configured {})", s.state, s.configured_role),
        format!(
            "writes: {}",
            if s.accepting_writes {
                "taken here"
            } else {
                "refused here"
            }
        ),
        format!("epoch: {}", s.epoch),
        format!("identity: {}", s.fingerprint),
    ];
    if let Some(p) = &s.peer {
        out.push(format!(
            "peer: {p} ({})",
            s.peer_fingerprint.as_deref().unwrap_or("no fingerprint")
        ));
        out.push(format!(
            "peer heard: {}",
            match s.peer_heard_ms_ago {
                Some(ms) => format!(
                    "{:.1} s ago ({})",
                    ms as f64 / 1000.0,
                    if s.peer_active { "active" } else { "standby" }
                ),
                None => "never since sms-had started".into(),
            }
        ));
        out.push(format!(
            "replication: {}",
            match (s.degraded, s.degraded_since) {
                (false, _) => "in SYNC (or idle)".to_string(),
                (true, Some(t)) =>
                    format!("DEGRADED since {}", when(t, sms_core::daemon::unix_now())),
                (true, None) => "DEGRADED".to_string(),
            }
        ));
    }
    out.push(format!(
        "witness: {}",
        match (&s.witness, s.lease_ms) {
            (None, _) => "none (failover is manual)".to_string(),
            (Some(w), Some(ms)) => format!("{w}, lease held for {ms} ms more"),
            (Some(w), None) => format!("{w}, no lease held"),
        }
    ));
    if let Some(v) = &s.virtual_address {
        out.push(format!(
            "virtual address: {v} ({})",
            if s.accepting_writes {
                "held here"
            } else {
                "not here: on the node that takes writes"
            }
        ));
    }
    out.iter()
        .map(|l| crate::grammar::clean(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `help`: every command with its words.
pub fn help_text(nodes: &[Node]) -> String {
    fn walk(n: &Node, prefix: &str, out: &mut Vec<(String, String)>) {
        let here = if prefix.is_empty() {
            n.word.to_string()
        } else {
            format!("{prefix} {}", n.word)
        };
        if n.word == "run" && prefix.is_empty() {
            out.push(("run <command>".into(), n.help.to_string()));
            return;
        }
        if n.action.is_some() {
            out.push((here.clone(), n.help.to_string()));
        }
        for c in &n.children {
            walk(c, &here, out);
        }
    }
    let mut out = Vec::new();
    for n in nodes {
        walk(n, "", &mut out);
    }
    let w = out.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Commands (any unique prefix of a word works: `sh ver`; `?` shows what may come next;\nTab completes; end a line with `| json` for JSON):\n",
    );
    for (c, h) in out {
        text.push_str(&format!("  {c:<w$}  {h}\n"));
    }
    text.trim_end().to_string()
}

/// `show logging`: the configured log servers with what sms-logd reports
/// for each (or why it reports nothing).
pub(super) fn logging_text(
    c: &settings::Settings,
    status: Result<Vec<settings::LogServerStatus>, String>,
    mail: Option<settings::MailStatus>,
    json: bool,
) -> String {
    let servers = servers_text(c, status, json);
    if json {
        return servers;
    }
    format!("{servers}\n{}", mail_text(c, mail))
}

/// The mail notification's line of `show logging`.
fn mail_text(c: &settings::Settings, mail: Option<settings::MailStatus>) -> String {
    let Some(m) = &c.mail else {
        return "mail notification: none (set notification mail server ...)".into();
    };
    match mail {
        Some(st) => format!(
            "mail notification: {} to {}; {} sent, {} event(s) pending, last sent {}, last error {}",
            st.server,
            m.recipients.join(", "),
            st.sent,
            st.pending,
            st.last_sent.as_deref().unwrap_or("-"),
            st.last_error.as_deref().map(clean).unwrap_or_else(|| "-".into())
        ),
        None => format!(
            "mail notification: {} to {}; sms-logd reports nothing yet",
            m.server,
            m.recipients.join(", ")
        ),
    }
}

fn servers_text(
    c: &settings::Settings,
    status: Result<Vec<settings::LogServerStatus>, String>,
    json: bool,
) -> String {
    if c.log_servers.is_empty() {
        return "remote log servers: none (set logging server HOST protocol udp|tcp|tls ...)"
            .into();
    }
    let rows: Vec<settings::LogServerStatus> = c
        .log_servers
        .iter()
        .map(|s| {
            let label = s.label();
            status
                .as_ref()
                .ok()
                .and_then(|st| st.iter().find(|x| x.server == label).cloned())
                .unwrap_or(settings::LogServerStatus {
                    server: label,
                    ..Default::default()
                })
        })
        .collect();
    record(&rows, json, |rows| {
        let t = table(
            rows,
            &[
                ("SERVER", &|r: &settings::LogServerStatus| r.server.clone()),
                ("CONNECTED", &|r| yes_no(r.connected)),
                ("SENT", &|r| r.sent.to_string()),
                ("QUEUED", &|r| r.queued.to_string()),
                ("DROPPED", &|r| r.dropped.to_string()),
                ("LAST ERROR", &|r| opt(&r.last_error)),
            ],
        );
        match &status {
            Ok(_) => t,
            Err(e) => format!("{t}\n(the log forwarder reports nothing yet: {})", clean(e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_with_how_long_ago_or_ahead() {
        let now = 1_764_788_000; // 2025-12-03 18:53:20 UTC
        assert_eq!(when(now - 125, now), "2025-12-03 18:51 UTC (2 min ago)");
        assert_eq!(when(now + 1800, now), "2025-12-03 19:23 UTC (in 30 min)");
        assert_eq!(when(now + 10, now), "2025-12-03 18:53 UTC (just now)");
        assert_eq!(
            when(now - 3 * 86400, now),
            "2025-11-30 18:53 UTC (3 days ago)"
        );
        let status = sms_core::bus::UpdaterStatus {
            last_check: Some(now - 600),
            next_check: Some(now + 1200),
            ..Default::default()
        };
        let text = fields_at(&status, now);
        assert!(
            text.contains("last check             2025-12-03 18:43 UTC (10 min ago)"),
            "{text}"
        );
        assert!(
            text.contains("next check             2025-12-03 19:13 UTC (in 20 min)"),
            "{text}"
        );
        assert!(!text.contains("1764787400"), "{text}");
    }

    #[test]
    fn lists_of_records_are_tables_never_json() {
        let status = sms_core::bus::NtpStatus {
            synchronised: true,
            listening: vec!["0.0.0.0:123".into(), "[::]:123".into()],
            sources: vec![
                sms_core::bus::NtpSourceStatus {
                    address: "192.0.2.1:123".into(),
                    reach: 255,
                    state: "selected".into(),
                    offset: Some(0.000_25),
                    ..Default::default()
                },
                sms_core::bus::NtpSourceStatus {
                    address: "192.0.2.2:123".into(),
                    state: "falseticker".into(),
                    last_error: Some("evil\u{202E}txt".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = fields_at(&status, 0);
        assert!(!text.contains('{') && !text.contains('"'), "{text}");
        assert!(
            text.contains("listening              0.0.0.0:123, [::]:123"),
            "{text}"
        );
        assert!(text.contains("sources                2 (below)"), "{text}");
        let table_head = text
            .lines()
            .find(|l| l.starts_with("ADDRESS"))
            .unwrap_or_else(|| panic!("no sources table: {text}"));
        assert!(
            table_head.contains("REACH") && table_head.contains("LAST ERROR"),
            "{text}"
        );
        assert!(text
            .lines()
            .any(|l| l.starts_with("192.0.2.2:123") && l.contains("falseticker")));
        assert!(text.contains("evil?txt"), "{text}");
    }
}
