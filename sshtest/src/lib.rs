//! A fleet of real `sshd` instances on loopback ports, shared by the tests of one binary:
//! the runner's tests, the end-to-end and fault suites, and the ssh bench.
//!
//! The daemons are started from a thread that lives as long as the test process and carry
//! PDEATHSIG=SIGKILL, so they die with the test binary however it ends (a shared static is
//! never dropped, and a panic must not leave daemons behind).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the fleet lives and how to reach it.
pub struct Fleet {
    /// Keys, daemon configs and logs (kept after the tests, for a failing one).
    pub dir: PathBuf,
    /// The user every daemon lets in: ours (root under CI).
    pub user: String,
    /// The private key the daemons accept.
    pub identity: PathBuf,
    /// A known_hosts file naming every daemon's `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// One loopback port per daemon, [`SIZE`] of them.
    pub ports: Vec<u16>,
}

/// How many daemons [`fleet`] starts.
pub const SIZE: usize = 20;
const SSHD: &str = "/usr/sbin/sshd";

static FLEET: OnceLock<Option<Fleet>> = OnceLock::new();

/// The shared fleet, or `None` (after a loud message) when sshd is missing outside CI.
pub fn fleet() -> Option<&'static Fleet> {
    FLEET
        .get_or_init(|| {
            if !Path::new(SSHD).exists() || which("ssh").is_none() || which("ssh-keygen").is_none() {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but {SSHD}, ssh or ssh-keygen is missing: install openssh-server");
                }
                eprintln!("\n!!!!! SKIPPING ssh fleet tests: {SSHD} / ssh / ssh-keygen not installed !!!!!\n");
                return None;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let fleet = start(SIZE);
                let failed = fleet.is_err();
                let _ = tx.send(fleet);
                if !failed {
                    // This thread is the daemons' parent for PDEATHSIG: it must outlive the tests.
                    loop {
                        std::thread::park();
                    }
                }
            });
            match rx.recv() {
                Ok(Ok(fleet)) => Some(fleet),
                Ok(Err(e)) => panic!("could not start the sshd fleet: {e}"),
                Err(e) => panic!("fleet thread died: {e}"),
            }
        })
        .as_ref()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.exists())
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback port where nothing listens.
pub fn dead_port() -> u16 {
    free_port().expect("bind a loopback port")
}

fn keygen(path: &Path) -> Result<(), String> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ssh-keygen failed: {status}"))
    }
}

impl Fleet {
    /// One more sshd with this fleet's keys and user, on `listen:port`, its config and log
    /// named `name` in the fleet's dir. `wrap` goes before sshd (`ip netns exec NS` runs it
    /// in a network namespace). The caller owns the daemon; it also dies with the thread
    /// that started it.
    pub fn extra_sshd(
        &self,
        name: &str,
        listen: &str,
        port: u16,
        wrap: &[&str],
    ) -> Result<std::process::Child, String> {
        spawn_sshd(&self.dir, &self.user, name, listen, port, wrap)
    }

    /// The `[ssh]` section of a shipwatch config that reaches this fleet's daemons, its
    /// hosts checked against `known_hosts` (the fleet's own file, or one with more lines);
    /// further keys of the section may follow it.
    pub fn ssh_section(&self, known_hosts: &Path) -> String {
        format!(
            "[ssh]\nuser = \"{user}\"\nidentity_file = \"{identity}\"\nknown_hosts = \"{known}\"\n",
            user = self.user,
            identity = self.identity.display(),
            known = known_hosts.display(),
        )
    }

    /// The known_hosts line of this fleet's host key for `[address]:port`.
    pub fn known_host(&self, address: &str, port: u16) -> String {
        let key = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap_or_default();
        let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        format!("[{address}]:{port} {key}\n")
    }
}

/// Writes `name.conf` for an sshd of the fleet's keys on `listen:port` and starts it in
/// the foreground, with PDEATHSIG=SIGKILL from the calling thread.
fn spawn_sshd(
    dir: &Path,
    user: &str,
    name: &str,
    listen: &str,
    port: u16,
    wrap: &[&str],
) -> Result<std::process::Child, String> {
    let cfg = dir.join(format!("{name}.conf"));
    // Sessions get a home of their own, empty: bash over ssh sources ~/.bashrc, and the
    // box's (root's pyenv) takes a lock on every login that a session killed mid-login
    // leaves behind, after which each login waits 60 s for it (every ssh test stalled).
    let home = dir.join("home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress {listen}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile none\n\
             AllowUsers {user}\nLogLevel ERROR\nMaxSessions 200\nMaxStartups 200\n\
             SetEnv HOME={home}\n",
            hk = dir.join("host_key").display(),
            ak = dir.join("authorized_keys").display(),
            home = home.display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(SSHD);
            cmd
        }
        None => Command::new(SSHD),
    };
    cmd.args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map_err(|e| format!("{SSHD}: {e}"))
}

fn start(n: usize) -> Result<Fleet, String> {
    let dir = tempfile::Builder::new()
        .prefix("swf")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?
        .keep();
    let user = if nix::unistd::geteuid().is_root() {
        "root".to_owned()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .ok_or("no user name for our uid")?
    };
    if nix::unistd::geteuid().is_root() {
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let host_key = dir.join("host_key");
    let identity = dir.join("user_key");
    keygen(&host_key)?;
    keygen(&identity)?;
    let pubkey = std::fs::read_to_string(dir.join("user_key.pub")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("authorized_keys"), &pubkey).map_err(|e| e.to_string())?;
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).map_err(|e| e.to_string())?;
    let host_pub = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");

    let mut ports = Vec::with_capacity(n);
    let mut known = String::new();
    for i in 0..n {
        let port = free_port().map_err(|e| e.to_string())?;
        spawn_sshd(&dir, &user, &format!("sshd_{i}"), "127.0.0.1", port, &[])?;
        known.push_str(&format!("[127.0.0.1]:{port} {host_pub}\n"));
        ports.push(port);
    }
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, known).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in &ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "sshd on port {port} did not come up; see {}",
                    dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(Fleet {
        dir,
        user,
        identity,
        known_hosts,
        ports,
    })
}
