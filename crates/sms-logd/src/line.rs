//! The lines journald forwards, and the RFC 5424 messages made of them.
//!
//! journald writes `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE` to the syslog
//! socket. The time stamp has neither year nor zone, so the forwarder
//! stamps the message with its own UTC time on receipt.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The largest line accepted from the socket, octets; longer input is cut.
pub const MAX_LINE: usize = 64 * 1024;

/// One log line as journald forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Facility (0-23).
    pub facility: u8,
    /// Severity (0 emergency .. 7 debug).
    pub severity: u8,
    /// The program that logged (syslog identifier), if given.
    pub app: Option<String>,
    /// Its process id, if given.
    pub pid: Option<u32>,
    /// The text.
    pub message: String,
}

/// Why a datagram is not a forwarded log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// It does not start with `<PRI>`.
    #[error("no <PRI> at the start")]
    NoPriority,
    /// The priority is not a number from 0 to 191.
    #[error("priority out of range (0-191)")]
    BadPriority,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl LogLine {
    /// Parses one datagram of the syslog socket.
    pub fn parse(data: &[u8]) -> Result<LogLine, LineError> {
        let data = &data[..data.len().min(MAX_LINE)];
        let text = String::from_utf8_lossy(data);
        let rest = text.strip_prefix('<').ok_or(LineError::NoPriority)?;
        let close = rest.find('>').ok_or(LineError::NoPriority)?;
        let digits = &rest[..close];
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineError::BadPriority);
        }
        let pri: u16 = digits.parse().map_err(|_| LineError::BadPriority)?;
        if pri > 191 {
            return Err(LineError::BadPriority);
        }
        let mut rest = &rest[close + 1..];
        if has_bsd_time(rest) {
            rest = &rest[16..];
        }
        let (app, pid, message) = split_tag(rest);
        Ok(LogLine {
            facility: (pri / 8) as u8,
            severity: (pri % 8) as u8,
            app,
            pid,
            message: message.trim_end_matches(['\n', '\r', '\0']).to_string(),
        })
    }

    /// The RFC 5424 message for this line, from host `hostname`, stamped
    /// `at` (UTC).
    pub fn to_rfc5424(&self, hostname: &str, at: OffsetDateTime) -> String {
        let pri = u16::from(self.facility) * 8 + u16::from(self.severity);
        let stamp = at
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_else(|_| "-".into());
        let app = self
            .app
            .as_deref()
            .map_or("-".to_string(), |a| header_field(a, 48));
        let pid = self.pid.map_or("-".to_string(), |p| p.to_string());
        format!(
            "<{pri}>1 {stamp} {} {app} {pid} - - {}",
            header_field(hostname, 255),
            self.message
        )
    }
}

/// `s` as an RFC 5424 header field: printable US-ASCII without spaces,
/// at most `max` characters, `-` when nothing is left.
pub fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

fn has_bsd_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 16
        && s.is_char_boundary(16)
        && MONTHS.contains(&&s[..3])
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && b[7..15].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
        && b[15] == b' '
}

/// Splits `IDENT[PID]: MESSAGE`; without a well-formed tag the whole text
/// is the message.
fn split_tag(s: &str) -> (Option<String>, Option<u32>, &str) {
    let Some(colon) = s.find(": ") else {
        return (None, None, s);
    };
    let tag = &s[..colon];
    if tag.is_empty() || tag.len() > 64 || tag.contains(' ') {
        return (None, None, s);
    }
    let (ident, pid) = match tag.find('[') {
        Some(open) if tag.ends_with(']') => match tag[open + 1..tag.len() - 1].parse::<u32>() {
            Ok(pid) => (&tag[..open], Some(pid)),
            Err(_) => return (None, None, s),
        },
        Some(_) => return (None, None, s),
        None => (tag, None),
    };
    if ident.is_empty() {
        return (None, None, s);
    }
    (Some(ident.to_string()), pid, &s[colon + 2..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn journald_lines_are_read() {
        let l = LogLine::parse(b"<30>Dec  4 08:40:00 sms-updated[123]: DV 4.0.0.1 activated\n")
            .unwrap();
        assert_eq!(l.facility, 3);
        assert_eq!(l.severity, 6);
        assert_eq!(l.app.as_deref(), Some("sms-updated"));
        assert_eq!(l.pid, Some(123));
        assert_eq!(l.message, "DV 4.0.0.1 activated");

        let l = LogLine::parse(b"<13>Nov 14 23:01:59 sms-cli: user=admin command=commit").unwrap();
        assert_eq!((l.app.as_deref(), l.pid), (Some("sms-cli"), None));
        assert_eq!(l.message, "user=admin command=commit");

        let l = LogLine::parse(b"<6>kernel text: with colon").unwrap();
        assert_eq!(l.app.as_deref(), None);
        assert_eq!(l.message, "kernel text: with colon");

        assert_eq!(LogLine::parse(b"no priority"), Err(LineError::NoPriority));
        assert_eq!(LogLine::parse(b"<192>x"), Err(LineError::BadPriority));
        assert_eq!(LogLine::parse(b"<1a>x"), Err(LineError::BadPriority));
        assert_eq!(LogLine::parse(b"<>x"), Err(LineError::BadPriority));
    }

    #[test]
    fn messages_are_rfc5424() {
        let l = LogLine::parse(b"<86>Dec  4 08:40:00 sms-cli[7]: user=admin login").unwrap();
        let at = time::macros::datetime!(2026-12-04 08:40:01.5 UTC);
        assert_eq!(
            l.to_rfc5424("sms lab", at),
            "<86>1 2026-12-04T08:40:01.5Z smslab sms-cli 7 - - user=admin login"
        );
    }

    proptest! {
        #[test]
        fn any_datagram_parses_or_is_refused_without_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(l) = LogLine::parse(&data) {
                prop_assert!(l.facility < 24 && l.severity < 8);
                let m = l.to_rfc5424("h", OffsetDateTime::UNIX_EPOCH);
                prop_assert!(m.starts_with('<'));
                // The header is five space-separated fields before SD and MSG.
                prop_assert!(m.splitn(8, ' ').count() >= 7);
            }
        }

        #[test]
        fn tags_round_trip(ident in "[a-z][a-z0-9_.-]{0,20}", pid in 1u32..4_000_000, msg in "[ -~]{0,80}", pri in 0u16..192) {
            let text = format!("<{pri}>Jan  1 00:00:00 {ident}[{pid}]: {msg}");
            let l = LogLine::parse(text.as_bytes()).unwrap();
            prop_assert_eq!(l.app.as_deref(), Some(ident.as_str()));
            prop_assert_eq!(l.pid, Some(pid));
            prop_assert_eq!(l.message, msg.trim_end_matches(['\n', '\r', '\0']));
        }
    }
}
