//! Passwords on an appliance whose root file system is read-only.
//!
//! The image ships its account database as built (`/etc/passwd`, and the
//! shadow file as [`FACTORY_SHADOW`]: root and the daemons locked, `admin`
//! with the factory password). `/etc/shadow` is a link to [`SHADOW`] on the
//! data partition, which the applier (root) writes from two inputs: the
//! factory file of the booted image and the passwords the administrator set
//! ([`Passwords`], written by the CLI, one crypt hash per account). So a
//! password survives every firmware update, and an update that adds a
//! system account brings that account's locked entry with it.
//!
//! Until `admin` has a password of its own, the factory credential is the
//! only one: it works on the console, where the CLI runs the first-boot
//! setup before anything else, and SSH refuses passwords
//! ([`SSHD_PASSWORDS`] is written once a password is set). See ADR 13.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The factory password of `admin`: works on the console only, until the
/// first-boot setup replaces it.
pub const FACTORY_PASSWORD: &str = "admin";
/// The administrator's account.
pub const ADMIN: &str = "admin";
/// The shadow file the image was built with (read-only root).
pub const FACTORY_SHADOW: &str = "/usr/share/sms/factory/shadow";
/// The shadow file in use, on the data partition (`/etc/shadow` links here).
pub const SHADOW: &str = "/var/lib/sms/accounts/shadow";
/// The authorized_keys files of the accounts, one per account (sshd's
/// `AuthorizedKeysFile` names `/var/lib/sms/accounts/keys/%u`).
pub const KEYS_DIR: &str = "/var/lib/sms/accounts/keys";
/// The sshd configuration fragment that turns password logins on; it
/// exists once `admin` has replaced the factory password.
pub const SSHD_PASSWORDS: &str = "/var/lib/sms/system/sshd-passwords.conf";
/// What that fragment says.
pub const SSHD_PASSWORDS_TEXT: &str =
    "# Written by sms-apply-settings: the factory password was replaced.\nPasswordAuthentication yes\n";
/// SHA-512 crypt rounds of a new hash (glibc's default is 5,000).
pub const ROUNDS: usize = 100_000;
/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted.
pub const MAX_LENGTH: usize = 128;

/// The passwords file beside the settings (`<settings dir>/accounts/passwords`):
/// readable by the administrator and root only.
pub fn passwords_path(settings_dir: &Path) -> PathBuf {
    settings_dir.join("accounts").join("passwords")
}

/// A crypt hash of `password` (SHA-512, [`ROUNDS`], random salt), as the
/// shadow file holds it.
pub fn hash(password: &str) -> Result<String, String> {
    let params = sha_crypt::Sha512Params::new(ROUNDS).map_err(|e| format!("{e:?}"))?;
    sha_crypt::sha512_simple(password, &params).map_err(|e| format!("hashing: {e:?}"))
}

/// Whether `password` is the one `hash` was made from.
pub fn verify(password: &str, hash: &str) -> bool {
    valid_hash(hash) && sha_crypt::sha512_check(password, hash).is_ok()
}

/// Whether `h` is a SHA-512 crypt hash and nothing else: `$6$`, optional
/// `rounds=N$`, a salt of up to 16 crypt characters, 86 characters of hash.
/// Nothing that could end a shadow field or line gets through.
pub fn valid_hash(h: &str) -> bool {
    let crypt64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let Some(rest) = h.strip_prefix("$6$") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('$').collect();
    let (salt, sum) = match parts.as_slice() {
        [rounds, salt, sum] => {
            let Some(n) = rounds.strip_prefix("rounds=") else {
                return false;
            };
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            (*salt, *sum)
        }
        [salt, sum] => (*salt, *sum),
        _ => return false,
    };
    (1..=16).contains(&salt.len()) && crypt64(salt) && sum.len() == 86 && crypt64(sum)
}

/// Whether `name` can be an account name here: lower-case letters, digits,
/// `-` and `_`, starting with a letter, at most 32 characters.
pub fn valid_user(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// The strength rule: [`MIN_LENGTH`] to [`MAX_LENGTH`] characters, at
/// least three of lower case, upper case, digits and others, no control
/// characters, not the account name, not the factory password.
pub fn check_strength(user: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(format!("too short ({n} characters): at least {MIN_LENGTH}"));
    }
    if n > MAX_LENGTH {
        return Err(format!("too long: at most {MAX_LENGTH} characters"));
    }
    if password.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|x| **x).count() < 3 {
        return Err(
            "use at least three of: lower case, upper case, digits, other characters".into(),
        );
    }
    let lower = password.to_lowercase();
    if !user.is_empty() && lower.contains(&user.to_lowercase()) {
        return Err("the password may not contain the account name".into());
    }
    if lower.contains(FACTORY_PASSWORD) && user == ADMIN {
        return Err("the password may not contain the factory password".into());
    }
    Ok(())
}

/// The passwords the administrator set: account name to crypt hash. The
/// file has one `name:hash` line per account; anything else is refused
/// whole, so a damaged file never becomes half a password database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passwords(pub BTreeMap<String, String>);

impl Passwords {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Passwords, String> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not NAME:HASH", i + 1))?;
            if !valid_user(name) {
                return Err(format!("line {}: not an account name", i + 1));
            }
            if !valid_hash(hash) {
                return Err(format!("line {}: not a SHA-512 crypt hash", i + 1));
            }
            if map.insert(name.to_string(), hash.to_string()).is_some() {
                return Err(format!("line {}: {name} is listed twice", i + 1));
            }
        }
        Ok(Passwords(map))
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# Account passwords (crypt hashes), written by the CLI.\n");
        for (name, hash) in &self.0 {
            s.push_str(&format!("{name}:{hash}\n"));
        }
        s
    }

    /// Reads the file as the CLI does (its own file); missing is empty.
    pub fn read(path: &Path) -> Result<Passwords, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Passwords::parse(&t).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Passwords::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file (mode 0600) through a synced temporary file and a
    /// rename, refusing a directory whose name is a link.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        sms_core::files::write_atomic(path, self.to_text().as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The shadow file to use: the factory file with the hash of every account
/// that has a password of its own put in, its last-change day set to
/// `today` (days since 1970). An account in `passwords` that the image does
/// not have is an error naming it; the factory file's other lines are kept
/// as they are.
pub fn shadow(factory: &str, passwords: &Passwords, today: u64) -> Result<String, String> {
    let mut out = String::new();
    let mut used = 0;
    for line in factory.lines() {
        let mut fields: Vec<String> = line.split(':').map(str::to_string).collect();
        if fields.len() == 9 {
            if let Some(h) = passwords.0.get(&fields[0]) {
                fields[1] = h.clone();
                fields[2] = today.to_string();
                used += 1;
            }
        }
        out.push_str(&fields.join(":"));
        out.push('\n');
    }
    if used != passwords.0.len() {
        let unknown: Vec<&str> = passwords
            .0
            .keys()
            .filter(|k| {
                !factory
                    .lines()
                    .any(|l| l.split(':').next() == Some(k.as_str()))
            })
            .map(String::as_str)
            .collect();
        return Err(format!(
            "no such account in this firmware: {}",
            unknown.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_has_the_strict_form() {
        let h = hash("Correct-Horse-9").unwrap();
        assert!(h.starts_with("$6$rounds=100000$"), "{h}");
        assert!(valid_hash(&h));
        assert!(verify("Correct-Horse-9", &h));
        assert!(!verify("Correct-Horse-8", &h));
        for bad in [
            "",
            "!",
            "*",
            "$y$j9T$abc$def",
            &format!("{h}:0"),
            &format!("{h}\nroot::0"),
            &h.replace("$6$", "$5$"),
            "$6$rounds=$salt$aaaa",
        ] {
            assert!(!valid_hash(bad), "{bad:?}");
            assert!(!verify("Correct-Horse-9", bad));
        }
    }

    #[test]
    fn the_strength_rule_names_what_is_missing() {
        assert!(check_strength("admin", "Tr0ub4dor&3x").is_ok());
        for (pw, says) in [
            ("Sh0rt!", "too short"),
            ("alllowercaseletters", "at least three"),
            ("Admin-Password-1", "account name"),
            ("NotAdmin-12", "account name"),
            ("Tab\tinside-Pass1", "control"),
        ] {
            let e = check_strength("admin", pw).unwrap_err();
            assert!(e.contains(says), "{pw}: {e}");
        }
        assert!(check_strength("operator1", "XadminY-1234").is_ok());
    }

    #[test]
    fn the_passwords_file_is_all_or_nothing() {
        let h = hash("Tr0ub4dor&3x").unwrap();
        let p = Passwords::parse(&format!("# c\nadmin:{h}\n")).unwrap();
        assert_eq!(p.0.get("admin"), Some(&h));
        assert_eq!(Passwords::parse(&p.to_text()).unwrap(), p);
        for bad in [
            format!("admin:{h}\nadmin:{h}\n"),
            format!("Admin:{h}\n"),
            "root\n".to_string(),
            format!("admin:{h}\nbob:!\n"),
        ] {
            assert!(Passwords::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shadow_takes_the_factory_file_and_the_set_passwords() {
        let factory = "root:!*:20000:0:99999:7:::\nadmin:$6$old$x:20000:0:99999:7:::\nsms-ntpd:!*:20000::::::\n";
        let h = hash("Tr0ub4dor&3x").unwrap();
        let mut p = Passwords::default();
        let same = shadow(factory, &p, 20400).unwrap();
        assert_eq!(same, factory);
        p.0.insert("admin".into(), h.clone());
        let s = shadow(factory, &p, 20400).unwrap();
        assert!(
            s.contains(&format!("admin:{h}:20400:0:99999:7:::\n")),
            "{s}"
        );
        assert!(s.starts_with("root:!*:20000:"), "{s}");
        assert!(s.ends_with("sms-ntpd:!*:20000::::::\n"), "{s}");
        p.0.insert("ghost".into(), h);
        let e = shadow(factory, &p, 20400).unwrap_err();
        assert!(e.contains("ghost"), "{e}");
    }
}
