//! `sms-cli`: the administrator's login shell.
//!
//! This first version is deliberately small: it greets, answers `show
//! version` and `help`, and logs out on `exit` or end of input. It never
//! runs a program or passes user text anywhere, ignores job-control and quit
//! signals, and treats every argument (including `-c COMMAND` from sshd) as
//! a CLI command, never as a shell command line.

use nix::sys::signal::{signal, SigHandler, Signal};
use std::io::{self, BufRead, IsTerminal, Write};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAX_LINE: usize = 4096;

/// Outcome of one command line.
enum Outcome {
    Continue,
    Exit,
    Error,
}

fn neutralise(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn run(line: &str, out: &mut impl Write) -> Outcome {
    let words: Vec<&str> = line.split_whitespace().collect();
    let r = match words.as_slice() {
        [] => return Outcome::Continue,
        ["exit"] | ["logout"] | ["quit"] => return Outcome::Exit,
        ["help"] | ["?"] => writeln!(out, "commands: show version, help, exit"),
        [s, v]
            if "show".starts_with(s)
                && !s.is_empty()
                && "version".starts_with(v)
                && !v.is_empty() =>
        {
            writeln!(out, "SMS OS {VERSION}")
        }
        _ => {
            let _ = writeln!(
                out,
                "% unknown command: {} (type help)",
                neutralise(line.trim())
            );
            return Outcome::Error;
        }
    };
    if r.is_err() {
        return Outcome::Exit;
    }
    Outcome::Continue
}

fn main() {
    for sig in [
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGQUIT,
        Signal::SIGINT,
    ] {
        // SAFETY: SigIgn installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    // sshd runs the login shell as `sms-cli -c "<what the client asked for>"`:
    // that text is a CLI command, never a shell command.
    // With sshd's ForceCommand the "command" is this program itself and
    // what the client asked for is in SSH_ORIGINAL_COMMAND.
    if let [flag, command] = args.as_slice() {
        if flag == "-c" {
            let own = command.trim() == "/usr/bin/sms-cli" || command.trim() == "sms-cli";
            let asked = if own {
                std::env::var("SSH_ORIGINAL_COMMAND").ok()
            } else {
                Some(command.clone())
            };
            if let Some(asked) = asked {
                let code = match run(&asked, &mut out) {
                    Outcome::Error => 1,
                    _ => 0,
                };
                std::process::exit(code);
            }
        }
    }
    let interactive = io::stdin().is_terminal();
    let _ = writeln!(
        out,
        "SMS OS {VERSION} - Security Management System\nType help for the commands."
    );
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        if interactive {
            let _ = write!(out, "sms> ");
        }
        let _ = out.flush();
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            let _ = writeln!(
                out,
                "% line too long ({} bytes, at most {MAX_LINE})",
                line.len()
            );
            continue;
        }
        if let Outcome::Exit = run(&line, &mut out) {
            break;
        }
    }
}
