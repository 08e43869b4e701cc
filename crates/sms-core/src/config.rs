//! Loading of per-daemon TOML configuration files.
//!
//! Each daemon has one file (e.g. `/etc/sms/updated.toml`). Errors name the
//! file, the line and the key, because an administrator reading a journal
//! entry must be able to fix the file without guessing.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a key has a wrong name, type or value.
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        /// The file with the error.
        path: PathBuf,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// Dotted path of the offending key (`.` for the top level).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses `text` (the content of `path`) as the configuration type `T`.
///
/// Unknown keys are errors when `T` says `#[serde(deny_unknown_fields)]`,
/// which all daemon configurations do: a typo must not be silently ignored.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let line = inner
            .span()
            .map(|span| line_of(text, span.start))
            .unwrap_or(0);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key,
            message: inner.message().trim().to_string(),
        }
    })
}

/// Reads and parses the configuration file at `path`.
///
/// A missing file is an error: daemons are always started with the file
/// their unit names, and the image ships one with every default spelled out.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A duration in configuration files, written as whole seconds.
///
/// Seconds are what admins of the original product know (`1800` for the DV
/// check interval); a plain integer keeps the files easy to edit.
pub mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Deserializes whole seconds into a [`Duration`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = u64::deserialize(d)?;
        Ok(Duration::from_secs(secs))
    }

    /// Serializes a [`Duration`] as whole seconds.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.as_secs())
    }
}

/// A duration in configuration files, written as milliseconds.
pub mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Deserializes milliseconds into a [`Duration`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }

    /// Serializes a [`Duration`] as milliseconds.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Top {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        tmc: Inner,
    }

    #[test]
    fn error_names_file_line_and_key() {
        let text = "name = \"a\"\n[tmc]\nport = 70000\n";
        let err = parse::<Top>(Path::new("/etc/sms/x.toml"), text).unwrap_err();
        match &err {
            ConfigError::Invalid { line, key, .. } => {
                assert_eq!(*line, 3);
                assert_eq!(key, "tmc.port");
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = err.to_string();
        assert!(
            shown.starts_with("/etc/sms/x.toml:3: key `tmc.port`"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = "name = \"a\"\n[tmc]\nport = 1\nprot = 2\n";
        let err = parse::<Top>(Path::new("x.toml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("prot"), "{shown}");
        assert!(shown.contains(":4:"), "{shown}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load::<Top>(Path::new("/nonexistent/sms.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sms.toml"));
    }
}
