//! Just enough URL handling for the update centre's links: `http` and
//! `https` with a host, an optional port and a path.

use std::fmt;

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// True for `https`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 or 443).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses a URL, refusing anything but http and https, user info,
    /// fragments, empty hosts and control characters.
    pub fn parse(s: &str) -> Result<Url, String> {
        if s.len() > 4096 || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("invalid URL {s:?}"));
        }
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "unsupported URL {s:?}: only http:// and https:// are used"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || path.contains('#') {
            return Err(format!("unsupported URL {s:?}: user info or fragment"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid URL {s:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("invalid port in {s:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("invalid URL {s:?}")),
            };
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("invalid IPv6 address in {s:?}"));
            }
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("invalid port in {s:?}"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("URL {s:?} has no host"));
        }
        // A name or an IPv4 address outside brackets: a ':' or ']' there
        // would print back as another URL.
        if !authority.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!("invalid host in {s:?}"));
        }
        Ok(Url {
            tls,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// `host:port` as used in Host headers and CONNECT (brackets for IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority(),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_in_use() {
        let u = Url::parse("http://cdn.example:8080/packages/dv-1.pkg").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "cdn.example", 8080, "/packages/dv-1.pkg")
        );
        let u = Url::parse("https://tmc.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/"));
        let u = Url::parse("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.to_string(), "http://[::1]:81/x");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "(https?://)?[a-z0-9.:\\[\\]@/%#?-]{0,40}") {
            if let Ok(u) = Url::parse(&s) {
                proptest::prop_assert_eq!(Url::parse(&u.to_string()).unwrap(), u);
            }
        }
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "ftp://x/",
            "http://",
            "http://u:p@h/",
            "http://h:99999/",
            "http://h/a b",
            "http://a:]:0/",
            "http://[a:]]:0/",
            "http://h/\r\nX: y",
            "file:///etc/passwd",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
