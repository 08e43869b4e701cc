//! `sms-cli`: the administrator's login shell.
//!
//! Interactive on a terminal (line editing, history, Tab completion, `?`
//! help, idle timeout), line by line otherwise (`sms-cli < file`), or one
//! command (`sms-cli -c "show version"`, which is also how sshd runs the
//! login shell). It ignores job-control and quit signals itself, so that a
//! dumb terminal's Ctrl-Z or Ctrl-\ cannot stop or kill it, and treats the
//! text of `-c` as a CLI command, never as a shell command line.

use nix::sys::signal::{signal, SigHandler, Signal};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{FileHistory, History};
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler, Helper,
    KeyEvent, RepeatCount,
};
use sms_cli::audit::Audit;
use sms_cli::commands::{Cli, Outcome, VERSION};
use sms_cli::configure::SettingsPaths;
use sms_cli::grammar;
use sms_cli::grammar::Node;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Longest line accepted.
const MAX_LINE: usize = 4096;
/// Lines of history kept per user.
const HISTORY: usize = 500;
/// Idle time before logging out, seconds.
const IDLE_SECS: u64 = 15 * 60;

struct CliHelper {
    cli: Arc<Mutex<Cli>>,
}

impl Completer for CliHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let line = &line[..pos];
        let start = line.rfind(char::is_whitespace).map(|i| i + 1).unwrap_or(0);
        let cli = sms_core::daemon::lock(&self.cli);
        let live = |k| cli.live(k);
        let c = grammar::complete(&cli.tree(), line, &live)
            .into_iter()
            .map(|w| Pair {
                display: w.clone(),
                replacement: format!("{w} "),
            })
            .collect();
        Ok((start, c))
    }
}
impl Hinter for CliHelper {
    type Hint = String;
}
impl Highlighter for CliHelper {}
impl Validator for CliHelper {}
impl Helper for CliHelper {}

/// `?` accepts the line with a mark: the loop shows help and gives the line
/// back for editing.
struct QuestionMark(Arc<AtomicBool>);
impl ConditionalEventHandler for QuestionMark {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.store(true, Ordering::SeqCst);
        Some(Cmd::AcceptLine)
    }
}

fn now() -> u64 {
    sms_core::daemon::unix_now().max(0) as u64
}

fn show(out: &mut impl Write, o: &Outcome) -> bool {
    match o {
        Outcome::Confirm { .. } => {
            let _ = writeln!(
                out,
                "% this needs confirmation: add `confirm` to the command"
            );
        }
        Outcome::Secret { .. } => {
            let _ = writeln!(
                out,
                "% pass phrases are asked at the prompt, or read from the lines after the command in a command file"
            );
        }
        Outcome::Ok(t) if t.is_empty() => {}
        Outcome::Ok(t) | Outcome::Failed(t) => {
            let _ = writeln!(out, "{t}");
        }
        Outcome::Exit => return false,
    }
    let _ = out.flush();
    true
}

/// Reads a pass phrase from the terminal with echo off (and restored,
/// whatever happens); `None` on Ctrl-C, Ctrl-D or an error.
fn read_secret(prompt: &str) -> Option<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet
        .local_flags
        .insert(LocalFlags::ICANON | LocalFlags::ISIG);
    let _ = nix::sys::termios::tcflush(&stdin, nix::sys::termios::FlushArg::TCIFLUSH);
    print!("{prompt}");
    let _ = io::stdout().flush();
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).ok()?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    println!();
    match r {
        Ok(n) if n > 0 && line.len() <= MAX_LINE => {
            Some(line.trim_end_matches(['\r', '\n']).to_string())
        }
        _ => None,
    }
}

nix::ioctl_read_bad!(window_size, libc::TIOCGWINSZ, libc::winsize);

/// Rows of the terminal on standard output (24 when it does not say).
fn rows() -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    match unsafe { window_size(libc::STDOUT_FILENO, &mut ws) } {
        Ok(_) if ws.ws_row >= 4 => ws.ws_row as usize,
        _ => 24,
    }
}

/// One key from the terminal without echo (line discipline off for it).
fn read_key() -> Option<u8> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, SpecialCharacterIndices};
    use std::io::Read;
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).ok()?;
    let mut raw = saved.clone();
    raw.local_flags
        .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
    raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
    let mut b = [0u8; 1];
    let r = stdin.lock().read(&mut b);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    match r {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// Shows a command's text on the interactive terminal, a screen at a time
/// when it is longer than the screen: Space for the next screen, Enter for
/// one more line, q (or Ctrl-C, Ctrl-D) to stop. Built in: no external
/// pager (which could open a shell) is ever started.
fn page(text: &str) {
    let mut out = io::stdout().lock();
    let lines: Vec<&str> = text.lines().collect();
    let screen = rows().saturating_sub(1).max(1);
    if lines.len() <= screen {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        return;
    }
    let mut shown = 0;
    let mut step = screen;
    while shown < lines.len() {
        let end = (shown + step).min(lines.len());
        for l in &lines[shown..end] {
            let _ = writeln!(out, "{l}");
        }
        shown = end;
        if shown >= lines.len() {
            break;
        }
        let _ = write!(
            out,
            "-- More ({shown}/{}) -- Space: next page, Enter: next line, q: stop",
            lines.len()
        );
        let _ = out.flush();
        let key = read_key();
        let _ = write!(out, "\r{:70}\r", "");
        match key {
            Some(b' ') => step = screen,
            Some(b'\r') | Some(b'\n') => step = 1,
            _ => break,
        }
    }
    let _ = out.flush();
}

fn help_for(tree: &[Node], line: &str) -> String {
    match grammar::help(tree, line) {
        Ok(h) if h.is_empty() => "% nothing can follow here".into(),
        Ok(h) => {
            let w = h.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            h.iter()
                .map(|(k, v)| format!("  {k:<w$}  {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("% {e}"),
    }
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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // Not reachable by the user (sshd passes only `-c TEXT`, login nothing).
    let mut state = PathBuf::from("/var/lib/sms/cli");
    let mut paths = SettingsPaths::default();
    if args.len() >= 2 && args[0] == "--state-dir" {
        // Development and tests: settings beside the history, no applier.
        state = PathBuf::from(&args[1]);
        paths = SettingsPaths {
            dir: state.join("config"),
            applier_status: None,
            files: state.join("files"),
            ..paths
        };
        args.drain(..2);
    }
    // Tests: the root audit writer on another socket.
    let mut audit_socket = None;
    if args.len() >= 2 && args[0] == "--audit-socket" {
        audit_socket = Some(PathBuf::from(&args[1]));
        args.drain(..2);
    }
    if state == std::path::Path::new("/var/lib/sms/cli") {
        audit_socket = Some(PathBuf::from(sms_cli::audit::WRITER_SOCKET));
    }
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()));
    let _ = std::fs::create_dir_all(state.join("history"));
    let audit = match audit_socket {
        Some(socket) => Audit::through_writer(state.join("audit.log"), socket),
        None => Audit::new(state.join("audit.log")),
    };
    let cli = match Cli::new(user.clone(), audit) {
        Ok(c) => Arc::new(Mutex::new(c.with_settings(paths))),
        Err(e) => {
            eprintln!("% cannot start: {e}");
            std::process::exit(1);
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let run = |line: &str| sms_core::daemon::lock(&cli).execute(line);

    // sshd runs the login shell as `sms-cli -c "<what the client asked>"`;
    // with ForceCommand the "command" is this program and what the client
    // asked for is in SSH_ORIGINAL_COMMAND. Either way it is a CLI command.
    if let [flag, command] = args.as_slice() {
        if flag == "-c" {
            let own = command.trim() == "/usr/bin/sms-cli" || command.trim() == "sms-cli";
            let asked = if own {
                std::env::var("SSH_ORIGINAL_COMMAND").ok()
            } else {
                Some(command.clone())
            };
            if let Some(asked) = asked {
                if asked.len() > MAX_LINE {
                    let _ = writeln!(
                        out,
                        "% line too long ({} bytes, at most {MAX_LINE})",
                        asked.len()
                    );
                    std::process::exit(1);
                }
                let o = run(&asked);
                show(&mut out, &o);
                let failed = !matches!(o, Outcome::Ok(_) | Outcome::Exit);
                std::process::exit(i32::from(failed));
            }
        }
    }

    let host = sms_core::daemon::host_name();
    let _ = writeln!(
        out,
        "SMS OS {VERSION} - Security Management System\nhost {}, HA role standalone\nType help for the commands, ? for what may come next.",
        grammar::clean(host.trim())
    );
    if !io::stdin().is_terminal() {
        // Commands from a file or a pipe: one per line, status 1 if any failed.
        let mut failed = false;
        let mut line = String::new();
        let mut input = io::stdin().lock();
        loop {
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
                failed = true;
                continue;
            }
            if line.trim_end().ends_with('?') {
                let t = sms_core::daemon::lock(&cli).tree();
                let _ = writeln!(
                    out,
                    "{}",
                    help_for(&t, line.trim_end().trim_end_matches('?'))
                );
                continue;
            }
            let mut o = run(&line);
            if let Outcome::Secret { prompts, line } = &o {
                // In a command file the pass phrases are the next lines.
                let mut secrets = Vec::new();
                for _ in prompts {
                    let mut s = String::new();
                    let _ = input.read_line(&mut s);
                    secrets.push(s.trim_end_matches(['\r', '\n']).to_string());
                }
                sms_core::daemon::lock(&cli).set_secrets(secrets);
                o = run(line);
            }
            failed |= matches!(
                o,
                Outcome::Failed(_) | Outcome::Confirm { .. } | Outcome::Secret { .. }
            );
            if !show(&mut out, &o) {
                break;
            }
        }
        std::process::exit(i32::from(failed));
    }
    drop(out);

    let config = Config::builder()
        .max_history_size(HISTORY)
        .and_then(|c| c.history_ignore_dups(true))
        .map(|c| c.auto_add_history(false).build())
        .unwrap_or_default();
    let mut rl: Editor<CliHelper, FileHistory> = match Editor::with_config(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("% terminal: {e}");
            std::process::exit(1);
        }
    };
    rl.set_helper(Some(CliHelper { cli: cli.clone() }));
    let asked_help = Arc::new(AtomicBool::new(false));
    rl.bind_sequence(
        KeyEvent::from('?'),
        EventHandler::Conditional(Box::new(QuestionMark(asked_help.clone()))),
    );
    let history = state
        .join("history")
        .join(grammar::clean(&user).replace(['/', '.'], "_"));
    let _ = rl.load_history(&history);

    let last = Arc::new(AtomicU64::new(now()));
    {
        let last = last.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            if now().saturating_sub(last.load(Ordering::Relaxed)) > IDLE_SECS {
                println!("\r\n% idle for {} minutes: logged out", IDLE_SECS / 60);
                std::process::exit(0);
            }
        });
    }
    let mut initial = String::new();
    loop {
        let mode = if sms_core::daemon::lock(&cli).configuring() {
            '#'
        } else {
            '>'
        };
        let prompt = format!("{}@sms{mode} ", grammar::clean(&user));
        let read = if initial.is_empty() {
            rl.readline(&prompt)
        } else {
            rl.readline_with_initial(&prompt, (&std::mem::take(&mut initial), ""))
        };
        last.store(now(), Ordering::Relaxed);
        let line = match read {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C: the line is dropped, the session goes on.
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("% terminal: {e}");
                break;
            }
        };
        let mut out = io::stdout().lock();
        if line.len() > MAX_LINE {
            let _ = writeln!(
                out,
                "% line too long ({} bytes, at most {MAX_LINE})",
                line.len()
            );
            continue;
        }
        if asked_help.swap(false, Ordering::SeqCst) {
            let t = sms_core::daemon::lock(&cli).tree();
            let _ = writeln!(out, "?\n{}", help_for(&t, &line));
            initial = line;
            continue;
        }
        if !line.trim().is_empty() {
            let _ = rl.history_mut().add(line.trim());
        }
        let mut o = run(&line);
        if let Outcome::Secret { prompts, line } = &o {
            drop(out);
            let mut secrets = Vec::new();
            for p in prompts {
                match read_secret(p) {
                    Some(s) => secrets.push(s),
                    None => break,
                }
            }
            last.store(now(), Ordering::Relaxed);
            o = if secrets.len() == prompts.len() {
                sms_core::daemon::lock(&cli).set_secrets(secrets);
                run(line)
            } else {
                Outcome::Ok("cancelled".into())
            };
            out = io::stdout().lock();
        }
        if let Outcome::Confirm { question, line } = &o {
            // Nothing typed ahead may answer the question.
            let _ = nix::sys::termios::tcflush(io::stdin(), nix::sys::termios::FlushArg::TCIFLUSH);
            drop(out);
            let answer = rl.readline(question).unwrap_or_default();
            last.store(now(), Ordering::Relaxed);
            o = if answer.trim().eq_ignore_ascii_case("yes") {
                run(line)
            } else {
                Outcome::Ok("cancelled".into())
            };
            out = io::stdout().lock();
        }
        match &o {
            Outcome::Ok(t) | Outcome::Failed(t) if !t.is_empty() => {
                drop(out);
                page(t);
            }
            _ => {
                if !show(&mut out, &o) {
                    break;
                }
            }
        }
    }
    let _ = rl.save_history(&history);
}
