//! The terminal side of the CLI: completion and `?` for the line editor,
//! pass phrases read without echo, the pager, and the printing of a
//! command's outcome. Nothing here runs a command.

use crate::commands::{Cli, Outcome};
use crate::grammar::{self, Node};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Cmd, ConditionalEventHandler, Event, EventContext, Helper, RepeatCount};
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Longest line accepted, at the prompt, in a command file or with `-c`.
pub const MAX_LINE: usize = 4096;

/// Completion from the command tree and live values (device names, versions).
pub struct CliHelper {
    /// The session whose tree completes the line.
    pub cli: Arc<Mutex<Cli>>,
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
pub struct QuestionMark(pub Arc<AtomicBool>);
impl ConditionalEventHandler for QuestionMark {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.store(true, Ordering::SeqCst);
        Some(Cmd::AcceptLine)
    }
}

/// Prints an outcome; `false` when the session ends.
pub fn show(out: &mut impl Write, o: &Outcome) -> bool {
    match o {
        Outcome::Confirm { question, .. } => {
            // What the question is about (a restore's plan), without the
            // question itself.
            let lines: Vec<&str> = question.lines().collect();
            for l in &lines[..lines.len().saturating_sub(1)] {
                let _ = writeln!(out, "{l}");
            }
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
pub fn read_secret(prompt: &str) -> Option<String> {
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

nix::ioctl_read_bad!(
    /// TIOCGWINSZ: the terminal's size.
    window_size,
    libc::TIOCGWINSZ,
    libc::winsize
);

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
/// `key_pressed` is called for every key (a person paging is not idle).
pub fn page(text: &str, key_pressed: &dyn Fn()) {
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
        key_pressed();
        let _ = write!(out, "\r{:70}\r", "");
        match key {
            Some(b' ') => step = screen,
            Some(b'\r') | Some(b'\n') => step = 1,
            _ => break,
        }
    }
    let _ = out.flush();
}

/// What may follow `line`, one word per line with its help.
pub fn help_for(tree: &[Node], line: &str) -> String {
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
