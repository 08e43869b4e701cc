//! `sms-cli`: the administrator's login shell.
//!
//! Interactive on a terminal (line editing, history, Tab completion, `?`
//! help, idle timeout), line by line otherwise (`sms-cli < file`), or one
//! command (`sms-cli -c "show version"`, which is also how sshd runs the
//! login shell). It ignores job-control and quit signals itself, so that a
//! dumb terminal's Ctrl-Z or Ctrl-\ cannot stop or kill it, and treats the
//! text of `-c` as a CLI command, never as a shell command line.

use nix::sys::signal::{signal, SigHandler, Signal};
use rustyline::error::ReadlineError;
use rustyline::history::{FileHistory, History};
use rustyline::{Config, Editor, EventHandler, KeyEvent};
use sms_cli::audit::Audit;
use sms_cli::commands::{Cli, Outcome, VERSION};
use sms_cli::configure::SettingsPaths;
use sms_cli::grammar;
use sms_cli::terminal::{help_for, page, read_secret, show, CliHelper, QuestionMark, MAX_LINE};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Lines of history kept per user.
const HISTORY: usize = 500;
/// Idle time before logging out, seconds.
const IDLE_SECS: u64 = 15 * 60;

/// Logs the session out after `limit` seconds without input, whatever the
/// session is doing (at the prompt, in the pager, reading a command file
/// from a connection without a terminal).
fn idle_timer(limit: u64) -> Arc<AtomicU64> {
    let last = Arc::new(AtomicU64::new(now()));
    let seen = last.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        if now().saturating_sub(seen.load(Ordering::Relaxed)) >= limit {
            let minutes = limit / 60;
            let said = if minutes > 0 {
                format!("\r\n% idle for {minutes} minutes: logged out\r\n")
            } else {
                format!("\r\n% idle for {limit} s: logged out\r\n")
            };
            // Straight to the descriptor: the pager may hold stdout's lock
            // while it waits for a key.
            let _ = nix::unistd::write(io::stdout(), said.as_bytes());
            std::process::exit(0);
        }
    });
    last
}

type Shared = Arc<Mutex<Cli>>;

fn now() -> u64 {
    sms_core::daemon::unix_now().max(0) as u64
}

fn too_long(out: &mut impl Write, line: &str) -> bool {
    if line.len() > MAX_LINE {
        let _ = writeln!(
            out,
            "% line too long ({} bytes, at most {MAX_LINE})",
            line.len()
        );
        return true;
    }
    false
}

fn run(cli: &Shared, line: &str) -> Outcome {
    sms_core::daemon::lock(cli).execute(line)
}

/// What the command line says (not reachable by the user: sshd passes
/// only `-c TEXT`, login nothing).
struct Options {
    /// History, audit log (development) and, in tests, settings.
    state: PathBuf,
    settings: SettingsPaths,
    audit_socket: Option<PathBuf>,
    /// `-c TEXT`; `Err` when TEXT is not valid UTF-8.
    command: Option<Result<String, ()>>,
    /// Seconds without input before the session ends.
    idle_secs: u64,
    /// The bus to use instead of the system bus (tests).
    bus: Option<String>,
    /// The account name to act as instead of the caller's (tests).
    user: Option<String>,
}

fn options() -> Options {
    // Arguments that are not UTF-8 (only `-c TEXT` can carry what a client
    // sent) are kept as an error to refuse, never dropped.
    let mut args: Vec<Result<String, ()>> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().map_err(|_| ()))
        .collect();
    let mut state = PathBuf::from("/var/lib/sms/cli");
    let mut settings = SettingsPaths::default();
    let mut audit_socket = None;
    let mut idle_secs = IDLE_SECS;
    let mut bus = None;
    let mut user = None;
    // Development and tests only, before `-c`: settings beside the history
    // and no applier (`--state-dir`), the root audit writer on another
    // socket, a short idle timeout, a private bus (the CLI never takes the
    // bus from DBUS_SYSTEM_BUS_ADDRESS, which a login could set), another
    // account's name (`--user`, with `--state-dir` only).
    while args.len() >= 2 {
        let (Ok(option), Ok(value)) = (&args[0], &args[1]) else {
            break;
        };
        match option.as_str() {
            "--state-dir" => {
                state = PathBuf::from(value);
                settings = SettingsPaths {
                    dir: state.join("config"),
                    applier_status: None,
                    files: state.join("files"),
                    log_status: state.join("logd/status.json"),
                    backup_socket: state.join("backup.sock"),
                    backup_status: state.join(sms_core::backup::BACKUP_STATUS),
                    ..settings
                };
            }
            "--audit-socket" => audit_socket = Some(PathBuf::from(value)),
            "--idle-secs" => idle_secs = value.parse().unwrap_or(IDLE_SECS).max(1),
            "--bus" => bus = Some(value.clone()),
            "--user" => user = Some(value.clone()),
            _ => break,
        }
        args.drain(..2);
    }
    if state == std::path::Path::new("/var/lib/sms/cli") {
        audit_socket = Some(PathBuf::from(sms_cli::audit::WRITER_SOCKET));
        // Acting as another account only with a state of one's own.
        user = None;
    }
    let command = match args.as_slice() {
        [Ok(flag), command] if flag == "-c" => Some(command.clone()),
        _ => None,
    };
    Options {
        state,
        settings,
        audit_socket,
        command,
        idle_secs,
        bus,
        user,
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
    let opts = options();
    let user = opts.user.clone().unwrap_or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()))
    });
    let _ = std::fs::create_dir_all(opts.state.join("history"));
    let audit = match &opts.audit_socket {
        Some(socket) => Audit::through_writer(opts.state.join("audit.log"), socket.clone()),
        None => Audit::new(opts.state.join("audit.log")),
    };
    let cli = match Cli::new(user.clone(), audit, opts.bus.as_deref()) {
        Ok(c) => Arc::new(Mutex::new(c.with_settings(opts.settings.clone()))),
        Err(e) => {
            eprintln!("% cannot start: {e}");
            std::process::exit(1);
        }
    };
    let last = idle_timer(opts.idle_secs);
    // The factory credential: on the console the setup comes first; over
    // SSH (only a key can log in before setup) a reminder.
    if sms_cli::account::needs_setup(&opts.settings, &user) {
        let console = std::env::var_os("SSH_CONNECTION").is_none();
        if console && opts.command.is_none() {
            let mut ask = StdinAsk {
                terminal: io::stdin().is_terminal(),
                last: &last,
            };
            let done = sms_cli::account::first_boot(&mut sms_core::daemon::lock(&cli), &mut ask);
            if let Err(e) = done {
                println!("% {e}: logged out; log in again to complete the setup");
                std::process::exit(1);
            }
        } else {
            eprintln!(
                "% the factory password is still set: complete the first-boot setup on the console"
            );
        }
    }
    if let Some(command) = &opts.command {
        one_command(&cli, command);
    }
    let host = sms_core::daemon::host_name();
    println!(
        "SMS OS {VERSION} - Security Management System\nhost {}, HA role standalone\nType help for the commands, ? for what may come next.",
        grammar::clean(&host)
    );
    if !io::stdin().is_terminal() {
        command_file(&cli, &last);
    }
    interactive(&cli, &user, &opts.state, &last);
}

/// The setup dialog on standard input: a terminal (pass phrases without
/// echo) or lines (tests, a pasted answer file).
struct StdinAsk<'a> {
    terminal: bool,
    last: &'a AtomicU64,
}

impl sms_cli::account::Ask for StdinAsk<'_> {
    fn line(&mut self, prompt: &str) -> Option<String> {
        print!("{prompt}");
        let _ = io::stdout().flush();
        let mut s = String::new();
        match io::stdin().lock().read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                self.last.store(now(), Ordering::Relaxed);
                Some(s.trim_end_matches(['\r', '\n']).to_string())
            }
        }
    }

    fn secret(&mut self, prompt: &str) -> Option<String> {
        if !self.terminal {
            return self.line(prompt);
        }
        let s = read_secret(prompt);
        self.last.store(now(), Ordering::Relaxed);
        s
    }

    fn say(&mut self, text: &str) {
        println!("{text}");
    }
}

/// `-c TEXT`: one CLI command, then exit (status 1 when it failed).
///
/// sshd runs the login shell as `sms-cli -c "<what the client asked>"`;
/// with ForceCommand the "command" is this program and what the client
/// asked for is in SSH_ORIGINAL_COMMAND. Either way it is a CLI command.
/// Without a command (ForceCommand, no SSH_ORIGINAL_COMMAND) the session
/// goes on as an interactive one.
fn one_command(cli: &Shared, command: &Result<String, ()>) {
    let refuse = || -> ! {
        println!("% the command is not valid text (UTF-8); nothing was run");
        std::process::exit(1);
    };
    let Ok(command) = command else { refuse() };
    let own = command.trim() == "/usr/bin/sms-cli" || command.trim() == "sms-cli";
    let asked = if own {
        match std::env::var_os("SSH_ORIGINAL_COMMAND").map(|c| c.into_string()) {
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => refuse(),
            None => None,
        }
    } else {
        Some(command.to_string())
    };
    let Some(asked) = asked else {
        return;
    };
    let mut out = io::stdout().lock();
    if too_long(&mut out, &asked) {
        std::process::exit(1);
    }
    let o = run(cli, &asked);
    show(&mut out, &o);
    let failed = !matches!(o, Outcome::Ok(_) | Outcome::Exit);
    std::process::exit(i32::from(failed));
}

/// Commands from a file or a pipe: one per line, pass phrases on the lines
/// after the command that asks for them; exit status 1 if any failed.
fn command_file(cli: &Shared, last: &AtomicU64) -> ! {
    let mut out = io::stdout().lock();
    let mut failed = false;
    let mut line = String::new();
    let mut input = io::stdin().lock();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => last.store(now(), Ordering::Relaxed),
        }
        if too_long(&mut out, &line) {
            failed = true;
            continue;
        }
        if line.trim_end().ends_with('?') {
            let t = sms_core::daemon::lock(cli).tree();
            let _ = writeln!(
                out,
                "{}",
                help_for(&t, line.trim_end().trim_end_matches('?'))
            );
            continue;
        }
        let mut o = run(cli, &line);
        if let Outcome::Secret { prompts, line } = &o {
            let mut secrets = Vec::new();
            for _ in prompts {
                let mut s = String::new();
                let _ = input.read_line(&mut s);
                secrets.push(s.trim_end_matches(['\r', '\n']).to_string());
            }
            sms_core::daemon::lock(cli).set_secrets(secrets);
            o = run(cli, line);
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

/// The interactive session: line editor, history, `?`, pass phrases
/// without echo, confirmations, the pager and the idle timeout.
fn interactive(cli: &Shared, user: &str, state: &std::path::Path, last: &AtomicU64) {
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
        .join(grammar::clean(user).replace(['/', '.'], "_"));
    for line in sms_cli::files::read_history(&history) {
        let _ = rl.history_mut().add(&line);
    }

    let mut initial = String::new();
    loop {
        let mode = if sms_core::daemon::lock(cli).configuring() {
            '#'
        } else {
            '>'
        };
        let prompt = format!("{}@sms{mode} ", grammar::clean(user));
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
            Err(ReadlineError::Eof) if sms_core::daemon::lock(cli).configuring() => {
                // Ctrl-D leaves configuration mode as `exit` does: not
                // while changes are staged.
                let o = run(cli, "exit");
                show(&mut io::stdout().lock(), &o);
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                println!("% the line is not valid text (UTF-8); nothing was run");
                continue;
            }
            Err(ReadlineError::WindowResized) => continue,
            Err(e) => {
                eprintln!("% terminal: {e}");
                break;
            }
        };
        let mut out = io::stdout().lock();
        if too_long(&mut out, &line) {
            continue;
        }
        if asked_help.swap(false, Ordering::SeqCst) {
            let t = sms_core::daemon::lock(cli).tree();
            let _ = writeln!(out, "?\n{}", help_for(&t, &line));
            initial = line;
            continue;
        }
        // A line that carries a secret (an SNMP community) is run but not
        // kept in the history.
        if !line.trim().is_empty() && !sms_core::daemon::lock(cli).holds_secret(&line) {
            let _ = rl.history_mut().add(line.trim());
        }
        drop(out);
        let o = answer(cli, &mut rl, last, run(cli, &line));
        match &o {
            Outcome::Ok(t) | Outcome::Failed(t) if !t.is_empty() => {
                page(t, &|| last.store(now(), Ordering::Relaxed))
            }
            _ => {
                if !show(&mut io::stdout().lock(), &o) {
                    break;
                }
            }
        }
    }
    let kept: Vec<String> = rl.history().iter().cloned().collect();
    if let Err(e) = sms_cli::files::write_history(&history, &kept) {
        eprintln!("% the history was not saved: {e}");
    }
}

/// Asks what a command needs before it runs (pass phrases without echo,
/// a confirmation that nothing typed ahead can give) and runs it again.
fn answer(
    cli: &Shared,
    rl: &mut Editor<CliHelper, FileHistory>,
    last: &AtomicU64,
    o: Outcome,
) -> Outcome {
    match &o {
        Outcome::Secret { prompts, line } => {
            let mut secrets = Vec::new();
            for p in prompts {
                match read_secret(p) {
                    Some(s) => secrets.push(s),
                    None => break,
                }
            }
            last.store(now(), Ordering::Relaxed);
            if secrets.len() == prompts.len() {
                sms_core::daemon::lock(cli).set_secrets(secrets);
                let again = run(cli, line);
                answer(cli, rl, last, again)
            } else {
                Outcome::Ok("cancelled".into())
            }
        }
        Outcome::Confirm { question, line } => {
            // Nothing typed ahead may answer the question.
            let _ = nix::sys::termios::tcflush(io::stdin(), nix::sys::termios::FlushArg::TCIFLUSH);
            let reply = rl.readline(question).unwrap_or_default();
            last.store(now(), Ordering::Relaxed);
            if reply.trim().eq_ignore_ascii_case("yes") {
                run(cli, line)
            } else {
                Outcome::Ok("cancelled".into())
            }
        }
        _ => o,
    }
}
