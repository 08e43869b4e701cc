//! Pure parsing of the pull server's requests: paths into routes, `Range`
//! headers into byte ranges. Nothing here touches a file or the network,
//! so all of it is tested directly.

use serde::{Deserialize, Serialize};
use sms_core::package::{Channel, Family, Version};

/// A payload stream: DV, or TOS of one platform family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stream {
    /// Which feed it comes from (`dv` or `tos`).
    pub channel: Channel,
    /// Family (TOS).
    pub family: Option<Family>,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.family {
            Some(fam) => write!(f, "{}/{}", self.channel, fam.id()),
            None => write!(f, "{}", self.channel),
        }
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/<channel>/index.json`.
    Index(Channel),
    /// `/<channel>/catalog.json`.
    Catalog(Channel),
    /// `/<stream>/<version>`.
    Full(Stream, Version),
    /// `/<stream>/delta/<from>` (to the newest) or `/<stream>/delta/<from>/<to>`.
    Delta(Stream, Version, Option<Version>),
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Characters or forms that are never valid (400).
    Bad(&'static str),
    /// Well-formed but names nothing (404).
    NotFound,
}

/// Parses a request path (without query). Pure, so it is property-tested
/// and fuzzed.
pub fn parse_path(path: &str) -> Result<Route, PathError> {
    if path.len() > 256 {
        return Err(PathError::Bad("path too long"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    {
        return Err(PathError::Bad(
            "only letters, digits, '.', '-', '_' and '/' are allowed in paths",
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::Bad("path must start with '/'"));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(PathError::Bad("empty, '.' or '..' path segment"));
    }
    let channel: Channel = segs[0].parse().map_err(|_| PathError::NotFound)?;
    let (stream, tail) = match channel {
        Channel::Dv => (
            Stream {
                channel,
                family: None,
            },
            &segs[1..],
        ),
        Channel::Tos => {
            if segs.len() == 2 && matches!(segs[1], "index.json" | "catalog.json") {
                (
                    Stream {
                        channel,
                        family: None,
                    },
                    &segs[1..],
                )
            } else {
                let fam: Family = segs
                    .get(1)
                    .ok_or(PathError::NotFound)?
                    .parse()
                    .map_err(|_| PathError::NotFound)?;
                (
                    Stream {
                        channel,
                        family: Some(fam),
                    },
                    &segs[2..],
                )
            }
        }
    };
    let v = |s: &str| s.parse::<Version>().map_err(|_| PathError::NotFound);
    match tail {
        ["index.json"] if stream.family.is_none() => Ok(Route::Index(channel)),
        ["catalog.json"] if stream.family.is_none() => Ok(Route::Catalog(channel)),
        [ver] => Ok(Route::Full(stream, v(ver)?)),
        ["delta", from] => Ok(Route::Delta(stream, v(from)?, None)),
        ["delta", from, to] => Ok(Route::Delta(stream, v(from)?, Some(v(to)?))),
        _ => Err(PathError::NotFound),
    }
}

/// A parsed single byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) Range header: the whole body.
    Whole,
    /// `start..=end`.
    Part(u64, u64),
    /// Cannot be satisfied (416).
    Unsatisfiable,
}

/// Parses a `Range` header against a body of `len` bytes. Multiple ranges
/// and malformed headers are ignored (the whole body is sent), as RFC 9110
/// allows.
pub fn parse_range(h: Option<&str>, len: u64) -> RangeReq {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Whole;
        };
        if n == 0 || len == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Whole;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeReq::Whole,
        }
    };
    if start >= len {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_parse() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let dv = Stream {
            channel: Channel::Dv,
            family: None,
        };
        assert_eq!(parse_path("/dv/index.json"), Ok(Route::Index(Channel::Dv)));
        assert_eq!(
            parse_path("/tos/index.json"),
            Ok(Route::Index(Channel::Tos))
        );
        assert_eq!(parse_path("/dv/1.2.3"), Ok(Route::Full(dv, v("1.2.3"))));
        assert_eq!(
            parse_path("/dv/delta/1.2"),
            Ok(Route::Delta(dv, v("1.2"), None))
        );
        assert_eq!(
            parse_path("/dv/delta/1.2/1.3"),
            Ok(Route::Delta(dv, v("1.2"), Some(v("1.3"))))
        );
        let fam = Family::ALL[0];
        assert_eq!(
            parse_path(&format!("/tos/{}/5.0", fam.id())),
            Ok(Route::Full(
                Stream {
                    channel: Channel::Tos,
                    family: Some(fam)
                },
                v("5.0")
            ))
        );
    }

    #[test]
    fn traversal_forms_are_refused() {
        for p in [
            "/dv/../../etc/passwd",
            "/dv/%2e%2e/%2e%2e/etc/passwd",
            "/dv/%252e%252e/etc",
            "/dv/..%5c..%5cetc",
            "/dv\\..\\etc",
            "/dv/%c0%ae%c0%ae/etc",
            "/dv/1.0%00",
            "/dv/1.0\0",
            "/dv//1.0",
            "/dv/./1.0",
            "//etc/passwd",
            "dv/1.0",
            "/dv/\u{2215}etc",
        ] {
            assert!(
                matches!(parse_path(p), Err(PathError::Bad(_))),
                "{p:?} -> {:?}",
                parse_path(p)
            );
        }
        for p in [
            "/etc/passwd",
            "/dv/passwd",
            "/dv/1.0/extra",
            "/tos/9999/1.0",
            "/",
        ] {
            assert!(parse_path(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range(None, 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeReq::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeReq::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeReq::Part(90, 99));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100),
            RangeReq::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeReq::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), RangeReq::Whole);
    }

    proptest! {
        #[test]
        fn any_path_either_parses_to_a_route_or_is_refused(p in "\\PC{0,80}") {
            if parse_path(&p).is_ok() {
                prop_assert!(!p.contains(".."));
                prop_assert!(p.is_ascii());
                prop_assert!(!p.contains('%'));
            }
        }

        #[test]
        fn ranges_stay_inside_the_body(h in "bytes=[0-9]{0,4}-[0-9]{0,4}", len in 0u64..5000) {
            if let RangeReq::Part(a, b) = parse_range(Some(&h), len) {
                prop_assert!(a <= b && b < len);
            }
        }
    }
}
