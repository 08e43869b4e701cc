//! `sms-backup`: takes, checks, sends, fetches and restores backups (root).
//! The pass phrase is read from standard input (first line), never from
//! the command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use sms_backup::archive::{Archive, PBKDF2_ROUNDS};
use sms_backup::capture::{capture, CaptureOptions, StoreAccess};
use sms_backup::layout::Layout;
use sms_backup::sftp::{backup_name, Remote};
use sms_backup::{restore, FIRMWARE_VERSION};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sms-backup",
    version,
    about = "SMS appliance backup and restore"
)]
struct Cli {
    /// The data partition.
    #[arg(long, default_value = "/var/lib/sms", global = true)]
    root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct RemoteArgs {
    /// SFTP server.
    #[arg(long)]
    server: String,
    /// Its SSH port.
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// Account on the server.
    #[arg(long)]
    user: String,
    /// Directory on the server.
    #[arg(long, default_value = ".")]
    dir: String,
    /// The appliance's private key for that account.
    #[arg(long)]
    key: PathBuf,
    /// The server's pinned host key (`ssh-ed25519 AAAA...`).
    #[arg(long)]
    host_key: String,
}

impl RemoteArgs {
    fn remote(&self) -> Remote {
        Remote {
            host: self.server.clone(),
            port: self.port,
            user: self.user.clone(),
            dir: self.dir.clone(),
            key: self.key.clone(),
            host_key: self.host_key.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Takes a backup into a file.
    Create {
        /// The archive to write.
        #[arg(long)]
        output: PathBuf,
        /// Also the package files.
        #[arg(long)]
        packages: bool,
        /// Open the stores here instead of asking the daemons (they must be
        /// stopped).
        #[arg(long)]
        offline: bool,
        /// PBKDF2 rounds (lower only to test).
        #[arg(long, default_value_t = PBKDF2_ROUNDS, hide = true)]
        rounds: u32,
    },
    /// Shows an archive's manifest (no pass phrase needed; not yet trusted).
    Show {
        /// The archive.
        file: PathBuf,
    },
    /// Checks an archive completely and shows what a restore would change.
    Verify {
        /// The archive.
        file: PathBuf,
    },
    /// Restores an archive onto this appliance.
    Restore {
        /// The archive.
        file: PathBuf,
        /// Do not stop and start the daemons (the data partition is not
        /// the running appliance's).
        #[arg(long)]
        no_services: bool,
    },
    /// Sends an archive to the SFTP server and removes old ones there.
    Send {
        /// The archive.
        file: PathBuf,
        /// Name on the server (default: a new name from host and time).
        #[arg(long)]
        name: Option<String>,
        /// Backups kept on the server.
        #[arg(long, default_value_t = sms_backup::sftp::DEFAULT_KEEP)]
        keep: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Lists the backups on the SFTP server.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Serves one connection of the CLI on standard input and output
    /// (started by systemd per connection of the backup socket).
    Serve {
        /// The committed settings.
        #[arg(long, default_value = "/var/lib/sms/config/settings.toml")]
        settings: PathBuf,
        /// Open the stores here instead of asking the daemons.
        #[arg(long)]
        offline: bool,
        /// Do not stop and start the daemons on restore.
        #[arg(long)]
        no_services: bool,
        /// PBKDF2 rounds (lower only to test).
        #[arg(long, default_value_t = PBKDF2_ROUNDS, hide = true)]
        rounds: u32,
    },
    /// One tick of the backup schedule (sms-backup-scheduled.timer, every
    /// 15 minutes): takes and sends a backup when one is due.
    Scheduled {
        /// The committed settings.
        #[arg(long, default_value = "/var/lib/sms/config/settings.toml")]
        settings: PathBuf,
        /// Open the stores here instead of asking the daemons.
        #[arg(long)]
        offline: bool,
        /// Send without the transfer unit (tests).
        #[arg(long)]
        direct: bool,
    },
    /// The networked step of the backup service (sms-backup-transfer@OP,
    /// account sms-backup): does the request in the transfer directory.
    Transfer {
        /// `send`, `list` or `fetch`.
        op: String,
    },
    /// Fetches one backup from the SFTP server.
    Fetch {
        /// Its name on the server.
        name: String,
        /// Where to write it.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

fn passphrase() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the pass phrase from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_else(|_| "sms".into())
}

/// The backup service as `serve` and `scheduled` run it: stores through
/// their daemons unless `offline`, archives through the transfer unit
/// unless `direct`; it never stops daemons unless told to.
fn service(
    layout: Layout,
    settings: PathBuf,
    offline: bool,
    direct: bool,
    rounds: u32,
) -> sms_backup::service::Service {
    sms_backup::service::Service {
        layout,
        settings,
        access: if offline {
            StoreAccess::Direct
        } else {
            StoreAccess::Bus
        },
        services: false,
        transfer: if direct {
            sms_backup::transfer::Transfer::Direct
        } else {
            sms_backup::transfer::Transfer::Unit
        },
        rounds,
        hostname: hostname(),
    }
}

fn main() {
    sms_core::logging::init("sms-backup");
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let layout = Layout { root: cli.root };
    match cli.cmd {
        Cmd::Create {
            output,
            packages,
            offline,
            rounds,
        } => {
            let pass = passphrase()?;
            let opts = CaptureOptions {
                packages,
                firmware: FIRMWARE_VERSION.into(),
                hostname: hostname(),
                rounds,
            };
            let access = if offline {
                StoreAccess::Direct
            } else {
                StoreAccess::Bus
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (m, size) =
                rt.block_on(capture(&layout, &pass, &opts, access, &output, &mut |s| {
                    eprintln!("{s}")
                }))?;
            println!(
                "backup written: {} ({} entries, {} bytes)",
                output.display(),
                m.entries.len(),
                size
            );
        }
        Cmd::Show { file } => {
            let a = Archive::open(&file)?;
            let m = a.manifest();
            println!(
                "backup of {} made {} by firmware {} (format {}), not yet verified",
                m.hostname, m.created, m.firmware, m.format
            );
            for e in &m.entries {
                println!(
                    "{:8} {:>10} {}",
                    format!("{:?}", e.kind).to_lowercase(),
                    e.size,
                    e.name
                );
            }
        }
        Cmd::Verify { file } => {
            let v = restore::verify(&file, &passphrase()?, FIRMWARE_VERSION)?;
            println!("verified: signature, pass phrase and every entry are good");
            for l in v.plan(&layout) {
                println!("{l}");
            }
        }
        Cmd::Restore { file, no_services } => {
            let v = restore::verify(&file, &passphrase()?, FIRMWARE_VERSION)?;
            for l in v.plan(&layout) {
                println!("{l}");
            }
            v.apply(&layout, !no_services, &mut |s| eprintln!("{s}"))?;
            println!("restored");
        }
        Cmd::Send {
            file,
            name,
            keep,
            remote,
        } => {
            let r = remote.remote();
            let stamp = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_default();
            let name = name.unwrap_or_else(|| backup_name(&hostname(), &stamp));
            r.send(&file, &name)?;
            println!("sent as {name}");
            for old in r.prune(keep)? {
                println!("removed old backup {old}");
            }
        }
        Cmd::Serve {
            settings,
            offline,
            no_services,
            rounds,
        } => {
            let peer = nix::sys::socket::getsockopt(
                &std::io::stdin(),
                nix::sys::socket::sockopt::PeerCredentials,
            );
            if let Ok(cred) = &peer {
                let admin = nix::unistd::User::from_name("admin")
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw());
                if cred.uid() != 0 && Some(cred.uid()) != admin {
                    let refusal = sms_core::backup::BackupReply::Error(
                        "not allowed for your account's role: backups are the administrator's"
                            .into(),
                    );
                    println!("{}", serde_json::to_string(&refusal)?);
                    anyhow::bail!("uid {} may not take or restore backups", cred.uid());
                }
            }
            let mut service = service(layout, settings, offline, no_services, rounds);
            service.services = !no_services;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(service.handle(std::io::stdin().lock(), std::io::stdout().lock()));
        }
        Cmd::Scheduled {
            settings,
            offline,
            direct,
        } => {
            let service = service(layout, settings, offline, direct, PBKDF2_ROUNDS);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let tick = match rt.block_on(service.tick(now)) {
                Ok(t) => t,
                Err(e) => {
                    // Logged as an error (the journal, remote syslog and the
                    // mail notifier see it), the unit fails.
                    tracing::error!("{e:#}");
                    std::process::exit(1);
                }
            };
            match tick {
                sms_backup::service::Tick::Sent(text) => {
                    tracing::info!("scheduled backup: {}", text.replace('\n', "; "));
                    println!("{text}");
                }
                sms_backup::service::Tick::Busy => {
                    tracing::info!("scheduled backup due, but another backup or restore is running: tried again at the next tick");
                }
                sms_backup::service::Tick::NotDue | sms_backup::service::Tick::Unscheduled => {}
            }
        }
        Cmd::Transfer { op } => {
            sms_backup::transfer::serve_unit(&sms_backup::transfer::dir_of(&layout.root), &op)?;
        }
        Cmd::List { remote } => {
            for n in remote.remote().list()? {
                println!("{n}");
            }
        }
        Cmd::Fetch {
            name,
            output,
            remote,
        } => {
            remote.remote().fetch(&name, &output)?;
            println!("fetched {name} into {}", output.display());
        }
    }
    Ok(())
}
