//! The command grammar: a tree of keywords and typed arguments.
//!
//! Every command line is matched against this tree and nothing else: a
//! keyword may be abbreviated to any unique prefix (`sh ver`), an argument
//! is checked by its type before it leaves the CLI, and the same tree
//! answers `?` (what may come next, with help) and tab completion. Nothing
//! of the line is ever handed to a shell; the grammar is the whole
//! language.

use crate::action::Action;
use std::fmt;

/// What an argument must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A device or group name: letters, digits, `.`, `_`, `-`; 1 to 64.
    Name,
    /// A package version: digits and dots, e.g. `4.0.0.9001`.
    Version,
    /// An IPv4 or IPv6 address.
    Address,
    /// A host name (RFC 1123 labels) or an address.
    Host,
    /// An SNMP community or user name: letters, digits, `.`, `_`, `-`.
    Community,
    /// A whole number.
    Number,
    /// Free text for descriptions: printable, no control characters.
    Text,
    /// An address with a prefix length, `192.0.2.0/24`.
    Prefix,
    /// A proxy URL, `http://host:port`.
    Url,
    /// A time zone of the tz database, `Europe/Berlin`.
    TimeZone,
    /// An address with an optional port, `192.0.2.1` or `192.0.2.1:123`.
    Endpoint,
    /// A file in the CLI's own file directory: a plain name, no path.
    File,
    /// An account name: lower case, digits, `-`, `_`.
    Account,
    /// The base64 blob of an SSH public key.
    KeyBlob,
    /// A certificate as base64 of DER (a PEM body on one line).
    CertBlob,
    /// A mail address, `local@domain`.
    MailAddress,
    /// A SHA-256 fingerprint as `show ha identity` prints it.
    Fingerprint,
}

impl ArgKind {
    /// The placeholder shown in help.
    pub fn placeholder(self) -> &'static str {
        match self {
            ArgKind::Name => "<name>",
            ArgKind::Version => "<version>",
            ArgKind::Address => "<address>",
            ArgKind::Host => "<host>",
            ArgKind::Community => "<community>",
            ArgKind::Number => "<number>",
            ArgKind::Text => "<text>",
            ArgKind::Prefix => "<address/length>",
            ArgKind::Url => "<url>",
            ArgKind::TimeZone => "<time-zone>",
            ArgKind::Endpoint => "<address[:port]>",
            ArgKind::File => "<file>",
            ArgKind::Account => "<account>",
            ArgKind::KeyBlob => "<base64-key>",
            ArgKind::CertBlob => "<base64-certificate>",
            ArgKind::MailAddress => "<mail-address>",
            ArgKind::Fingerprint => "<fingerprint>",
        }
    }

    /// The argument's name without the angle brackets (`address`).
    pub fn name(self) -> &'static str {
        let p = self.placeholder();
        &p[1..p.len() - 1]
    }

    /// Checks a word; the error says what was expected.
    pub fn check(self, w: &str) -> Result<(), ArgError> {
        let printable = !w.is_empty() && w.chars().all(shown_as_is);
        if !printable {
            return Err(ArgError::Unprintable);
        }
        let simple = |max: usize| {
            w.len() <= max
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        let ok = match self {
            ArgKind::Name => simple(64) && !w.starts_with('-'),
            ArgKind::Community => simple(32) && !w.starts_with('-'),
            ArgKind::Version => {
                w.len() <= 32
                    && w.split('.').count() >= 2
                    && w.split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            }
            ArgKind::Address => w.parse::<std::net::IpAddr>().is_ok(),
            ArgKind::Host => {
                w.parse::<std::net::IpAddr>().is_ok()
                    || (w.len() <= 253
                        && w.split('.').all(|l| {
                            !l.is_empty()
                                && l.len() <= 63
                                && !l.starts_with('-')
                                && !l.ends_with('-')
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        }))
            }
            ArgKind::Number => w.len() <= 10 && w.chars().all(|c| c.is_ascii_digit()),
            ArgKind::Text => w.len() <= 255,
            ArgKind::Prefix => {
                w.contains('/') && w.len() <= 43 && sms_core::net::Network::parse(w).is_ok()
            }
            ArgKind::Url => sms_core::settings::check_proxy_url(w).is_ok(),
            ArgKind::TimeZone => sms_core::settings::check_time_zone(w).is_ok(),
            ArgKind::Endpoint => sms_core::settings::check_ntp_server(w).is_ok(),
            ArgKind::File => simple(64) && !w.starts_with(['.', '-']),
            ArgKind::Account => sms_core::settings::check_account(w).is_ok(),
            ArgKind::CertBlob => {
                w.len() <= 3800
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            }
            ArgKind::MailAddress => sms_core::settings::valid_mail_address(w),
            ArgKind::Fingerprint => sms_core::identity::parse_fingerprint(w).is_ok(),
            ArgKind::KeyBlob => {
                w.len() <= 2048
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ArgError::NotA(self))
        }
    }
}

/// Why a word is not a valid argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Empty, or holds control characters.
    #[error("empty or contains control characters or invisible formatting")]
    Unprintable,
    /// Not of the argument's form.
    #[error("not a valid {}", .0.name())]
    NotA(ArgKind),
}

/// A node of the tree: a keyword or an argument.
#[derive(Debug, Clone)]
pub struct Node {
    /// The keyword (or the argument's name, for help).
    pub word: &'static str,
    /// What it does, for `?` and `help`.
    pub help: &'static str,
    /// `None` for a keyword, the type for an argument.
    pub arg: Option<ArgKind>,
    /// What may follow.
    pub children: Vec<Node>,
    /// The command run when the line ends here.
    pub action: Option<Action>,
}

impl Node {
    /// A keyword.
    pub fn kw(word: &'static str, help: &'static str) -> Node {
        Node {
            word,
            help,
            arg: None,
            children: Vec::new(),
            action: None,
        }
    }

    /// A typed argument.
    pub fn arg(kind: ArgKind, help: &'static str) -> Node {
        Node {
            word: kind.placeholder(),
            help,
            arg: Some(kind),
            children: Vec::new(),
            action: None,
        }
    }

    /// Runs `action` when the line ends here.
    pub fn run(mut self, action: impl Into<Action>) -> Node {
        self.action = Some(action.into());
        self
    }

    /// Adds what may follow.
    pub fn then(mut self, children: Vec<Node>) -> Node {
        self.children.extend(children);
        self
    }
}

/// A matched command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The command.
    pub action: Action,
    /// The full keywords matched (abbreviations expanded).
    pub keywords: Vec<&'static str>,
    /// Typed arguments in order.
    pub args: Vec<(ArgKind, String)>,
    /// The whole line in order, keywords expanded (for the audit log).
    pub words: Vec<String>,
}

/// Why a line does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing matches `word` at position `at`; `expected` lists what could.
    Unknown {
        /// Word position (0 based).
        at: usize,
        /// The word.
        word: String,
        /// What could come there.
        expected: Vec<String>,
    },
    /// `word` is a prefix of several keywords.
    Ambiguous {
        /// The word.
        word: String,
        /// The keywords it could be.
        candidates: Vec<String>,
    },
    /// The line stops before a command is complete.
    Incomplete {
        /// What may follow.
        expected: Vec<String>,
    },
    /// An argument of the wrong form.
    BadArgument {
        /// The word.
        word: String,
        /// What the word should have looked like.
        why: ArgError,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown { at: 0, word, .. } => {
                write!(f, "unknown command: {} (type help or ?)", clean(word))
            }
            ParseError::Unknown { word, expected, .. } => write!(
                f,
                "unknown word {:?}; expected one of: {}",
                clean(word),
                expected.join(", ")
            ),
            ParseError::Ambiguous { word, candidates } => write!(
                f,
                "ambiguous {:?}: could be {}",
                clean(word),
                candidates.join(", ")
            ),
            ParseError::Incomplete { expected } => {
                write!(
                    f,
                    "incomplete command; continue with: {}",
                    expected.join(", ")
                )
            }
            ParseError::BadArgument { word, why } => write!(f, "{:?}: {why}", clean(word)),
        }
    }
}

/// Text safe to print: control characters (escape sequences included)
/// become `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if shown_as_is(c) { c } else { '?' })
        .collect()
}

/// Whether a character may reach the terminal as it is: not a control
/// character (C0, DEL, C1) and not an invisible format character that
/// reorders or hides text (bidi embeddings, overrides and isolates,
/// marks, zero-width characters, the soft hyphen, tag characters), which
/// would make a device name or an error read as something else.
pub fn shown_as_is(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        ))
}

fn expected(children: &[Node]) -> Vec<String> {
    children.iter().map(|c| c.word.to_string()).collect()
}

/// The child a word selects: an exact keyword, else a unique keyword
/// prefix, else the argument child (if the word fits its type).
fn select<'a>(children: &'a [Node], word: &str, at: usize) -> Result<&'a Node, ParseError> {
    if let Some(n) = children
        .iter()
        .find(|c| c.arg.is_none() && c.word.eq_ignore_ascii_case(word))
    {
        return Ok(n);
    }
    let lower = word.to_ascii_lowercase();
    let prefixed: Vec<&Node> = children
        .iter()
        .filter(|c| c.arg.is_none() && c.word.starts_with(&lower))
        .collect();
    match prefixed.len() {
        1 => return Ok(prefixed[0]),
        n if n > 1 => {
            return Err(ParseError::Ambiguous {
                word: word.to_string(),
                candidates: prefixed.iter().map(|c| c.word.to_string()).collect(),
            })
        }
        _ => {}
    }
    if let Some(n) = children.iter().find(|c| c.arg.is_some()) {
        let kind = n.arg.unwrap_or(ArgKind::Text);
        return kind
            .check(word)
            .map(|_| n)
            .map_err(|why| ParseError::BadArgument {
                word: word.to_string(),
                why,
            });
    }
    Err(ParseError::Unknown {
        at,
        word: word.to_string(),
        expected: expected(children),
    })
}

/// Matches `words` against the tree under `root`.
pub fn parse(root: &[Node], words: &[&str]) -> Result<Parsed, ParseError> {
    let mut children = root;
    let mut node: Option<&Node> = None;
    let mut keywords = Vec::new();
    let mut args = Vec::new();
    let mut line = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let n = select(children, w, i)?;
        match n.arg {
            Some(kind) => {
                args.push((kind, w.to_string()));
                line.push(w.to_string());
            }
            None => {
                keywords.push(n.word);
                line.push(n.word.to_string());
            }
        }
        node = Some(n);
        children = &n.children;
    }
    match node.and_then(|n| n.action) {
        Some(action) => Ok(Parsed {
            action,
            keywords,
            args,
            words: line,
        }),
        None => Err(ParseError::Incomplete {
            expected: expected(children),
        }),
    }
}

/// What may come after the complete words of `line` (for `?`): each with
/// its help, and `<cr>` when the line may end there. A partial last word
/// (no trailing space) narrows the keywords to those it begins.
pub fn help(root: &[Node], line: &str) -> Result<Vec<(String, String)>, ParseError> {
    let (done, partial) = split_partial(line);
    let mut children = root;
    let mut here: Option<&Node> = None;
    for (i, w) in done.iter().enumerate() {
        let n = select(children, w, i)?;
        here = Some(n);
        children = &n.children;
    }
    let mut out: Vec<(String, String)> = children
        .iter()
        .filter(|c| c.arg.is_some() || c.word.starts_with(&partial.to_ascii_lowercase()))
        .map(|c| (c.word.to_string(), c.help.to_string()))
        .collect();
    if partial.is_empty() && here.is_some_and(|n| n.action.is_some()) {
        out.push(("<cr>".into(), "run the command".into()));
    }
    Ok(out)
}

/// Completions of the last (partial) word of `line`: keywords it begins,
/// and for an argument the `live` values of its type it begins.
pub fn complete(root: &[Node], line: &str, live: &dyn Fn(ArgKind) -> Vec<String>) -> Vec<String> {
    let (done, partial) = split_partial(line);
    let mut children = root;
    for (i, w) in done.iter().enumerate() {
        match select(children, w, i) {
            Ok(n) => children = &n.children,
            Err(_) => return Vec::new(),
        }
    }
    let lower = partial.to_ascii_lowercase();
    let mut out = Vec::new();
    for c in children {
        match c.arg {
            None if c.word.starts_with(&lower) => out.push(c.word.to_string()),
            Some(kind) => out.extend(
                live(kind)
                    .into_iter()
                    .filter(|v| v.starts_with(partial) && kind.check(v).is_ok()),
            ),
            None => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

fn split_partial(line: &str) -> (Vec<&str>, &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    if line.is_empty() || line.ends_with(char::is_whitespace) {
        (words, "")
    } else {
        let (last, rest) = words
            .split_last()
            .map(|(l, r)| (*l, r.to_vec()))
            .unwrap_or(("", vec![]));
        (rest, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Op;
    use proptest::prelude::*;

    fn tree() -> Vec<Node> {
        vec![
            Node::kw("show", "show state").then(vec![
                Node::kw("version", "firmware version").run(Op::ShowVersion),
                Node::kw("services", "daemons").run(Op::ShowServices),
                Node::kw("snmp", "SNMP agent and receiver").run(Op::ShowSnmp),
                Node::kw("device", "one device").then(vec![Node::arg(
                    ArgKind::Name,
                    "device name",
                )
                .run(Op::ShowDevice)]),
            ]),
            Node::kw("exit", "log out").run(Op::Exit),
            Node::kw("configure", "enter configuration mode").run(Op::Configure),
        ]
    }

    #[test]
    fn unique_prefixes_are_abbreviations() {
        let p = parse(&tree(), &["sh", "ver"]).unwrap();
        assert_eq!(p.action, Action::Op(Op::ShowVersion));
        assert_eq!(p.keywords, vec!["show", "version"]);
        assert_eq!(
            parse(&tree(), &["SHOW", "VERSION"]).unwrap().action,
            Action::Op(Op::ShowVersion)
        );
        match parse(&tree(), &["show", "s"]) {
            Err(ParseError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, vec!["services", "snmp"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&tree(), &["show", "sn"]).unwrap().action,
            Action::Op(Op::ShowSnmp)
        );
    }

    #[test]
    fn arguments_are_checked_by_type() {
        let p = parse(&tree(), &["show", "device", "ips-00001"]).unwrap();
        assert_eq!(p.args, vec![(ArgKind::Name, "ips-00001".to_string())]);
        for bad in [
            "a;id",
            "$(id)",
            "`id`",
            "a|b",
            "a&&b",
            "../etc",
            "-rf",
            "x\u{1b}[31m",
        ] {
            match parse(&tree(), &["show", "device", bad]) {
                Err(ParseError::BadArgument { .. }) => {}
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = parse(&tree(), &["/bin/sh", "-c", "id"]).unwrap_err();
        assert!(e.to_string().starts_with("unknown command: /bin/sh"), "{e}");
        let e = parse(&tree(), &["show"]).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = parse(&tree(), &["show", "nothing"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("expected one of: version, services, snmp, device"),
            "{e}"
        );
        let e = parse(&tree(), &["x\u{1b}]0;pwned\u{7}"]).unwrap_err();
        assert!(!e.to_string().chars().any(|c| c.is_control()), "{e:?}");
    }

    #[test]
    fn help_and_completion_follow_the_tree() {
        let h = help(&tree(), "show ").unwrap();
        let words: Vec<&str> = h.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, vec!["version", "services", "snmp", "device"]);
        let h = help(&tree(), "show s").unwrap();
        assert_eq!(h.len(), 2);
        let h = help(&tree(), "show version ").unwrap();
        assert_eq!(h, vec![("<cr>".to_string(), "run the command".to_string())]);
        let live = |k: ArgKind| match k {
            ArgKind::Name => vec!["ips-1".into(), "ips-2".into(), "lab\u{1b}[2J".into()],
            _ => vec![],
        };
        assert_eq!(complete(&tree(), "sh", &live), vec!["show"]);
        assert_eq!(complete(&tree(), "show s", &live), vec!["services", "snmp"]);
        assert_eq!(
            complete(&tree(), "show device ips-", &live),
            vec!["ips-1", "ips-2"]
        );
        assert!(
            complete(&tree(), "show device l", &live).is_empty(),
            "unsafe live values are never offered"
        );
    }

    proptest! {
        #[test]
        fn no_line_is_ever_accepted_with_metacharacters_in_arguments(
            word in "[a-z]{0,3}[;|&`$()<>\\\\'\" \\n\\x00\\x1b][a-z]{0,3}"
        ) {
            let r = parse(&tree(), &["show", "device", &word]);
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn bidi_and_invisible_format_characters_are_neutralised_and_refused() {
        let hostile = "ips\u{202E}1-ved\u{2066}x\u{200B}y\u{FEFF}z\u{E0041}";
        let shown = clean(hostile);
        assert_eq!(shown, "ips?1-ved?x?y?z?");
        assert!(
            clean("caf\u{e9} \u{4e2d}").contains('\u{e9}'),
            "plain letters stay"
        );
        for kind in [ArgKind::Text, ArgKind::Name] {
            assert_eq!(kind.check("a\u{202E}b"), Err(ArgError::Unprintable));
        }
        let e = parse(&tree(), &["show", "dev\u{2067}ice"]).unwrap_err();
        assert!(e.to_string().chars().all(shown_as_is), "{e}");
    }
}
