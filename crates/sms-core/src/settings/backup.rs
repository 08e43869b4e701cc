//! The backup server in the settings: where `system backup` sends the
//! appliance's backups (`set system backup ...`), by SFTP with the
//! appliance's own key and the server's host key pinned.

use super::{check_hostname, check_login_key, invalid, SettingsError};
use serde::{Deserialize, Serialize};

/// Backups kept on the server when no count is set.
pub const DEFAULT_BACKUP_KEEP: u32 = 10;

/// Most backups that may be kept.
pub const MAX_BACKUP_KEEP: u32 = 365;

/// The SFTP server backups go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupServer {
    /// Host name or address.
    pub server: String,
    /// SSH port (22 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The account on the server.
    #[serde(default)]
    pub user: String,
    /// The server's host key, `TYPE BASE64`: pinned, never learnt.
    #[serde(default)]
    pub host_key: String,
    /// Directory on the server (the account's home when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Backups kept there; older ones are removed after each backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// When backups are also taken without anybody asking (none: on demand
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<BackupSchedule>,
}

/// The days of the week a weekly schedule may name, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// When scheduled backups run: every day, or one day a week, at a time of
/// day in UTC (the appliance's clock is UTC; the time zone setting only
/// changes how times are shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSchedule {
    /// Day of the week (`monday` to `sunday`); every day when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Time of day, `HH:MM`, UTC.
    pub at: String,
    /// Also the package files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub packages: bool,
}

const DAY: i64 = 86_400;

impl BackupSchedule {
    /// Seconds after midnight of `at`, when it is a valid `HH:MM`.
    pub fn seconds_of_day(&self) -> Option<i64> {
        let (h, m) = self.at.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
    }

    /// The day's index (Monday 0), or `None` for every day; `Err` when the
    /// day is not one.
    fn weekday(&self) -> Result<Option<i64>, ()> {
        match &self.day {
            None => Ok(None),
            Some(d) => WEEKDAYS
                .iter()
                .position(|w| w == d)
                .map(|i| Some(i as i64))
                .ok_or(()),
        }
    }

    /// The latest time a backup was due at or before `now` (Unix seconds),
    /// `None` for an invalid schedule.
    pub fn last_due(&self, now: i64) -> Option<i64> {
        let t = self.seconds_of_day()?;
        let today = now.div_euclid(DAY);
        let due = match self.weekday().ok()? {
            None => today * DAY + t,
            Some(d) => {
                // 1970-01-01 was a Thursday (index 3).
                let weekday = (today + 3).rem_euclid(7);
                (today - (weekday - d).rem_euclid(7)) * DAY + t
            }
        };
        let period = if self.day.is_some() { 7 * DAY } else { DAY };
        Some(if due > now { due - period } else { due })
    }

    /// The next time a backup is due after `now` (Unix seconds).
    pub fn next_due(&self, now: i64) -> Option<i64> {
        let period = if self.day.is_some() { 7 * DAY } else { DAY };
        self.last_due(now).map(|t| t + period)
    }

    /// The schedule in words: `daily at 02:30 UTC`.
    pub fn describe(&self) -> String {
        let pk = if self.packages {
            ", with package files"
        } else {
            ""
        };
        match &self.day {
            None => format!("daily at {} UTC{pk}", self.at),
            Some(d) => format!("weekly on {d} at {} UTC{pk}", self.at),
        }
    }
}

impl BackupServer {
    /// The port used.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(22)
    }

    /// The retention used.
    pub fn keep_or_default(&self) -> u32 {
        self.keep.unwrap_or(DEFAULT_BACKUP_KEEP)
    }
}

/// Checks a backup server; `complete` also asks for what a commit needs
/// (a user and a host key), which may be set by later commands.
pub fn check_backup(b: &BackupServer, complete: bool) -> Result<(), SettingsError> {
    if b.server.parse::<std::net::IpAddr>().is_err() {
        check_hostname(&b.server)
            .map_err(|_| invalid("backup server", "a host name or an address"))?;
    }
    if b.port == Some(0) {
        return Err(invalid("backup port", "must not be 0"));
    }
    if !b.user.is_empty()
        && (b.user.len() > 64
            || b.user.starts_with('-')
            || !b
                .user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            "backup user",
            "at most 64 letters, digits, '.', '_', '-'",
        ));
    }
    if !b.host_key.is_empty() {
        check_login_key(&b.host_key).map_err(|e| match e {
            SettingsError::Invalid { why, .. } => invalid("backup host-key", why),
            other => other,
        })?;
    }
    if let Some(d) = &b.directory {
        if d.is_empty()
            || d.len() > 255
            || d.chars().any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(invalid(
                "backup directory",
                "a path of at most 255 printable characters, no quotes",
            ));
        }
    }
    if let Some(s) = &b.schedule {
        if s.seconds_of_day().is_none() {
            return Err(invalid(
                "backup schedule",
                "the time is HH:MM, 00:00 to 23:59 (UTC)",
            ));
        }
        if s.weekday().is_err() {
            return Err(invalid("backup schedule", "the day is monday to sunday"));
        }
    }
    if let Some(k) = b.keep {
        if !(1..=MAX_BACKUP_KEEP).contains(&k) {
            return Err(invalid("backup keep", format!("1 to {MAX_BACKUP_KEEP}")));
        }
    }
    if complete {
        if b.user.is_empty() {
            return Err(invalid(
                "backup",
                "needs a user: set system backup server HOST user NAME",
            ));
        }
        if b.host_key.is_empty() {
            return Err(invalid(
                "backup",
                "needs the server's host key: set system backup host-key TYPE BASE64",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: Option<&str>, at: &str) -> BackupSchedule {
        BackupSchedule {
            day: day.map(str::to_string),
            at: at.into(),
            packages: false,
        }
    }

    // 2026-12-04 (a Friday) 20:00:00 UTC.
    const NOW: i64 = 1_796_414_400;

    #[test]
    fn a_daily_schedule_was_last_due_today_or_yesterday() {
        assert_eq!(
            at(None, "02:30").last_due(NOW),
            Some(NOW - 17 * 3600 - 1800)
        );
        assert_eq!(at(None, "20:00").last_due(NOW), Some(NOW));
        assert_eq!(at(None, "20:01").last_due(NOW), Some(NOW + 60 - 86_400));
        assert_eq!(at(None, "20:01").next_due(NOW), Some(NOW + 60));
    }

    #[test]
    fn a_weekly_schedule_counts_back_to_its_day() {
        // Friday itself, earlier today.
        assert_eq!(
            at(Some("friday"), "00:00").last_due(NOW),
            Some(NOW - 20 * 3600)
        );
        // Friday later today: a week ago.
        assert_eq!(
            at(Some("friday"), "21:00").last_due(NOW),
            Some(NOW + 3600 - 7 * 86_400)
        );
        // Sunday 02:30: five days ago.
        assert_eq!(
            at(Some("sunday"), "02:30").last_due(NOW),
            Some(NOW - 20 * 3600 - 5 * 86_400 + 9000)
        );
        assert_eq!(
            at(Some("thursday"), "12:00").next_due(NOW),
            Some(NOW - 8 * 3600 + 6 * 86_400)
        );
    }

    #[test]
    fn schedules_are_checked() {
        let mut b = BackupServer {
            server: "backup.example.com".into(),
            port: None,
            user: "u".into(),
            host_key: crate::settings::EXAMPLE_HOST_KEY.into(),
            directory: None,
            keep: None,
            schedule: Some(at(None, "24:00")),
        };
        assert!(check_backup(&b, true).is_err());
        b.schedule = Some(at(Some("someday"), "02:30"));
        assert!(check_backup(&b, true).is_err());
        b.schedule = Some(at(None, "2:30"));
        assert!(check_backup(&b, true).is_err());
        b.schedule = Some(at(Some("sunday"), "23:59"));
        assert!(check_backup(&b, true).is_ok());
        assert_eq!(at(None, "x").last_due(NOW), None);
    }
}
