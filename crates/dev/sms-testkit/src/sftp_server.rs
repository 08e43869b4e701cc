//! A real OpenSSH server (`/usr/sbin/sshd`, Debian's openssh-server) on a
//! loopback port, serving SFTP to the test's own account with a key the
//! test made: the server backups go to.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running server; stopped when dropped.
pub struct SftpServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its host key, `TYPE BASE64`.
    pub host_key: String,
    /// A private key it accepts.
    pub client_key: PathBuf,
    /// A directory to put backups in.
    pub store: PathBuf,
    /// The account to log in as (the test's own).
    pub user: String,
    dir: tempfile::TempDir,
}

/// Makes an Ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) -> Result<()> {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .context("running ssh-keygen")?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    Ok(())
}

impl SftpServer {
    /// Starts sshd and waits until it listens.
    pub fn start() -> Result<SftpServer> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        keygen(&d.join("host"))?;
        keygen(&d.join("client"))?;
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys"))?;
        let store = d.join("backups");
        std::fs::create_dir(&store)?;
        if nix::unistd::geteuid().is_root() {
            // Privilege separation directory of a root sshd.
            std::fs::create_dir_all("/run/sshd")?;
        }
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())?
            .context("the test's account has no name")?
            .name;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
                 PidFile {pid}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\nSubsystem sftp internal-sftp\n",
                host = d.join("host").display(),
                auth = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log"))?)
            .spawn()
            .context("starting /usr/sbin/sshd (Debian package openssh-server)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "sshd did not listen: {}",
                    std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key = std::fs::read_to_string(d.join("host.pub"))?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(SftpServer {
            child,
            port,
            host_key,
            client_key: d.join("client"),
            store,
            user,
            dir,
        })
    }

    /// Lets `public_key` (one `authorized_keys` line) log in too.
    pub fn authorize(&self, public_key: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))?;
        writeln!(f, "{}", public_key.trim())?;
        Ok(())
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
