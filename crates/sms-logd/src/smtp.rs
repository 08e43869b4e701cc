//! A small SMTP client (RFC 5321) for the notification mails: submission
//! with STARTTLS (RFC 3207) or implicit TLS (RFC 8314), AUTH PLAIN
//! (RFC 4616), one message to a few recipients.
//!
//! Written here rather than taken from a mail crate so that it uses the
//! appliance's one TLS stack (rustls, the configured CA) and refuses the
//! usual downgrades: with STARTTLS configured, a server that does not offer
//! it gets nothing, and a password is never sent over plain TCP.

use rustls::pki_types::ServerName;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one exchange (connecting, or one command and its reply) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest reply line read (RFC 5321 4.5.3.1.5 says 512; some servers
/// send longer texts).
const MAX_REPLY_LINE: usize = 4096;

/// The most lines one reply may have.
const MAX_REPLY_LINES: usize = 64;

/// How the connection to the mail server is protected (the settings'
/// `security`).
pub use sms_core::settings::MailSecurity as Security;

/// Why a mail was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// No TCP connection.
    #[error("cannot connect to the mail server: {0}")]
    Connect(io::Error),
    /// A step took too long.
    #[error("the mail server did not answer within {secs} s ({0})", secs = STEP_TIMEOUT.as_secs())]
    Timeout(&'static str),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The TLS handshake failed (a certificate the CA did not sign, or one
    /// for another name).
    #[error("TLS handshake with the mail server failed: {0}")]
    Tls(io::Error),
    /// STARTTLS is configured and the server does not offer it.
    #[error("the mail server does not offer STARTTLS; nothing was sent in clear")]
    NoStarttls,
    /// A user name is configured and the server offers no AUTH PLAIN.
    #[error("the mail server offers no AUTH PLAIN (it offers: {0})")]
    NoAuth(String),
    /// The server sent octets after its STARTTLS go-ahead, before the
    /// handshake (a response injection attempt).
    #[error("the mail server sent data before the TLS handshake")]
    Injection,
    /// The server refused a step.
    #[error("the mail server refused {step}: {code} {text}")]
    Refused {
        /// What was refused (greeting, EHLO, AUTH, MAIL FROM, RCPT TO, DATA).
        step: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// The reply is not SMTP.
    #[error("the mail server's reply is not SMTP: {0}")]
    Protocol(String),
    /// Reading or writing failed.
    #[error("mail server connection: {0}")]
    Io(io::Error),
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Server name or address (a TLS certificate must name it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The protection.
    pub security: Security,
    /// The CA the server's certificate must chain to (STARTTLS and TLS).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name this appliance gives in EHLO.
    pub helo: String,
    /// User name and password for AUTH PLAIN, if the server wants them.
    pub auth: Option<(String, String)>,
}

/// One reply: code and the text of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Each line's text after the code.
    pub lines: Vec<String>,
}

impl Reply {
    /// Parses one reply line: `250-text` (more follow) or `250 text` (last).
    pub fn parse_line(line: &str) -> Result<(u16, bool, String), SmtpError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = || SmtpError::Protocol(printable(line, 80));
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
            return Err(bad());
        }
        let code: u16 = line[..3].parse().map_err(|_| bad())?;
        match b.get(3) {
            None => Ok((code, true, String::new())),
            Some(b' ') => Ok((code, true, line[4..].to_string())),
            Some(b'-') => Ok((code, false, line[4..].to_string())),
            Some(_) => Err(bad()),
        }
    }

    fn text(&self) -> String {
        printable(&self.lines.join(" "), 200)
    }
}

/// A server's text, safe to log: no control characters, at most `max`.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Session<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn reply(&mut self, step: &'static str) -> Result<Reply, SmtpError> {
        let read = async {
            let mut lines = Vec::new();
            loop {
                let mut raw = Vec::new();
                let n = (&mut self.io)
                    .take(MAX_REPLY_LINE as u64)
                    .read_until(b'\n', &mut raw)
                    .await
                    .map_err(SmtpError::Io)?;
                if n == 0 {
                    return Err(SmtpError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                if raw.last() != Some(&b'\n') {
                    return Err(SmtpError::Protocol(format!(
                        "reply line longer than {MAX_REPLY_LINE} octets"
                    )));
                }
                let (code, last, text) = Reply::parse_line(&String::from_utf8_lossy(&raw))?;
                lines.push(text);
                if last {
                    return Ok(Reply { code, lines });
                }
                if lines.len() >= MAX_REPLY_LINES {
                    return Err(SmtpError::Protocol(format!(
                        "reply of more than {MAX_REPLY_LINES} lines"
                    )));
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, read)
            .await
            .map_err(|_| SmtpError::Timeout(step))?
    }

    async fn send(&mut self, data: &[u8], step: &'static str) -> Result<(), SmtpError> {
        let io = self.io.get_mut();
        tokio::time::timeout(STEP_TIMEOUT, async {
            io.write_all(data).await?;
            io.flush().await
        })
        .await
        .map_err(|_| SmtpError::Timeout(step))?
        .map_err(SmtpError::Io)
    }

    /// Sends a command and expects a reply of class `want` (2 or 3).
    async fn command(
        &mut self,
        line: &str,
        step: &'static str,
        want: u16,
    ) -> Result<Reply, SmtpError> {
        self.send(format!("{line}\r\n").as_bytes(), step).await?;
        expect(self.reply(step).await?, step, want)
    }
}

fn expect(r: Reply, step: &'static str, want: u16) -> Result<Reply, SmtpError> {
    if r.code / 100 == want {
        Ok(r)
    } else {
        Err(SmtpError::Refused {
            step,
            code: r.code,
            text: r.text(),
        })
    }
}

/// What EHLO said the server offers, upper case.
fn extensions(r: &Reply) -> Vec<String> {
    r.lines
        .iter()
        .skip(1)
        .map(|l| l.to_ascii_uppercase())
        .collect()
}

async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    sub: &Submission,
    io: S,
) -> Result<tokio_rustls::client::TlsStream<S>, SmtpError> {
    let cfg = sub
        .tls
        .clone()
        .ok_or_else(|| SmtpError::Protocol("no CA configured for TLS".into()))?;
    let name = ServerName::try_from(sub.host.clone())
        .map_err(|_| SmtpError::ServerName(sub.host.clone()))?;
    tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, io),
    )
    .await
    .map_err(|_| SmtpError::Timeout("TLS handshake"))?
    .map_err(SmtpError::Tls)
}

/// Hands one message to the server for `recipients`. `message` is the
/// whole mail (headers, blank line, body) with CRLF line ends; it is
/// dot-stuffed here.
pub async fn send_mail(
    sub: &Submission,
    from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<(), SmtpError> {
    let tcp = tokio::time::timeout(
        STEP_TIMEOUT,
        TcpStream::connect((sub.host.as_str(), sub.port)),
    )
    .await
    .map_err(|_| SmtpError::Timeout("connect"))?
    .map_err(SmtpError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match sub.security {
        Security::Tls => Box::new(tls_connect(sub, tcp).await?),
        Security::None => Box::new(tcp),
        Security::Starttls => {
            let mut s = Session {
                io: BufReader::new(tcp),
            };
            expect(s.reply("greeting").await?, "greeting", 2)?;
            let ehlo = s.command(&format!("EHLO {}", sub.helo), "EHLO", 2).await?;
            if !extensions(&ehlo).iter().any(|e| e == "STARTTLS") {
                let _ = s.send(b"QUIT\r\n", "QUIT").await;
                return Err(SmtpError::NoStarttls);
            }
            s.command("STARTTLS", "STARTTLS", 2).await?;
            if !s.io.buffer().is_empty() {
                return Err(SmtpError::Injection);
            }
            let tls = tls_connect(sub, s.io.into_inner()).await?;
            let mut s = Session {
                io: BufReader::new(Box::new(tls) as Box<dyn Stream>),
            };
            let ehlo = s.command(&format!("EHLO {}", sub.helo), "EHLO", 2).await?;
            return transaction(s, ehlo, sub, from, recipients, message).await;
        }
    };
    let mut s = Session {
        io: BufReader::new(stream),
    };
    expect(s.reply("greeting").await?, "greeting", 2)?;
    let ehlo = s.command(&format!("EHLO {}", sub.helo), "EHLO", 2).await?;
    transaction(s, ehlo, sub, from, recipients, message).await
}

async fn transaction(
    mut s: Session<Box<dyn Stream>>,
    ehlo: Reply,
    sub: &Submission,
    from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<(), SmtpError> {
    if let Some((user, password)) = &sub.auth {
        if sub.security == Security::None {
            return Err(SmtpError::Protocol(
                "a password is never sent without TLS".into(),
            ));
        }
        let ext = extensions(&ehlo);
        let offers_plain = ext
            .iter()
            .any(|e| e.starts_with("AUTH") && e.split([' ', '=']).any(|m| m == "PLAIN"));
        if !offers_plain {
            let offered: Vec<&String> = ext.iter().filter(|e| e.starts_with("AUTH")).collect();
            return Err(SmtpError::NoAuth(format!("{offered:?}")));
        }
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        s.command(&format!("AUTH PLAIN {token}"), "AUTH", 2).await?;
    }
    // The digest carries UTF-8 text (host names, messages): say so where
    // the server understands it (RFC 6152).
    let body = if extensions(&ehlo).iter().any(|e| e == "8BITMIME") {
        " BODY=8BITMIME"
    } else {
        ""
    };
    s.command(&format!("MAIL FROM:<{from}>{body}"), "MAIL FROM", 2)
        .await?;
    for r in recipients {
        s.command(&format!("RCPT TO:<{r}>"), "RCPT TO", 2).await?;
    }
    s.command("DATA", "DATA", 3).await?;
    s.send(&dot_stuff(message), "DATA").await?;
    expect(s.reply("DATA").await?, "the message", 2)?;
    let _ = s.command("QUIT", "QUIT", 2).await;
    Ok(())
}

/// The message as sent after DATA: lines starting with a dot get one more
/// (RFC 5321 4.5.2), bare LF become CRLF, and the end marker follows.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let text = String::from_utf8_lossy(message);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // split leaves an empty last piece after a final newline.
    if text.ends_with('\n') {
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reply_lines_are_parsed() {
        assert_eq!(
            Reply::parse_line("250-smtp.example\r\n").unwrap(),
            (250, false, "smtp.example".into())
        );
        assert_eq!(
            Reply::parse_line("354 go ahead\r\n").unwrap(),
            (354, true, "go ahead".into())
        );
        assert_eq!(
            Reply::parse_line("221").unwrap(),
            (221, true, String::new())
        );
        for bad in ["", "25", "hello", "250x", "650 no", "2a0 x"] {
            assert!(Reply::parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dots_are_stuffed_and_the_end_marked() {
        assert_eq!(
            dot_stuff(b"Subject: x\r\n\r\n.hidden\n..two\r\nend\r\n"),
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\n".to_vec()
        );
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n".to_vec());
    }

    proptest! {
        #[test]
        fn stuffed_message_never_ends_early(body in "[a-z.\r\n]{0,200}") {
            let out = dot_stuff(body.as_bytes());
            let text = String::from_utf8(out).unwrap();
            // The only line that is a lone dot is the last.
            let lines: Vec<&str> = text.split("\r\n").collect();
            let dots = lines.iter().filter(|l| **l == ".").count();
            prop_assert_eq!(dots, 1);
            prop_assert!(text.ends_with("\r\n.\r\n") || text == ".\r\n");
        }

        #[test]
        fn reply_parser_never_panics(line in "\\PC{0,40}") {
            let _ = Reply::parse_line(&line);
        }
    }
}
