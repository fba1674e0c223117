//! A private PostgreSQL server for tests (DESIGN §11): Debian's binaries
//! (`/usr/lib/postgresql/<version>/bin`, or `$SHIPWATCH_PG_BIN`), a cluster made by
//! `initdb` in a temp dir, started by `pg_ctl` on a free loopback port with its Unix
//! socket in that dir (never the system's), and stopped when the [`Postgres`] is dropped.
//!
//! CI runs as root and `initdb` refuses root, so as root the cluster belongs to the
//! `postgres` user and its commands run through `runuser`. Authentication is `trust`: the
//! server listens on 127.0.0.1 and a socket only its owner reaches. A missing server is a
//! panic that says what to install, never a skipped test (`tests/run.sh` installs
//! `postgresql`).
//!
//! Each test takes a fresh database ([`Postgres::database`]) so tests sharing one server
//! never see each other's rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// One running cluster; dropping it stops the server and deletes its files.
pub struct Postgres {
    bin: PathBuf,
    /// Owns the cluster directory; removed after the server stopped.
    dir: tempfile::TempDir,
    /// `Some(user)`: the cluster's commands run as this user (we are root).
    run_as: Option<String>,
    /// The loopback port it listens on.
    pub port: u16,
    databases: AtomicU32,
}

/// Server settings for tests: no fsync (the OS's cache outlives a killed server, and the
/// data dies with the test anyway), room for ten gateways' pools. Commits stay
/// synchronous: a commit the client saw survives [`Postgres::kill`].
const SETTINGS: &[&str] = &[
    "fsync=off",
    "full_page_writes=off",
    "max_connections=300",
    "listen_addresses=127.0.0.1",
];

impl Postgres {
    /// Starts a new cluster; panics with the reason (and what to install) when it cannot.
    pub fn start() -> Postgres {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb, \
                 no $SHIPWATCH_PG_BIN): apt-get install -y postgresql"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir_in("/tmp")
            .expect("a temp dir for the cluster");
        let run_as = nix::unistd::geteuid()
            .is_root()
            .then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let owner = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no user {user:?} to own the test cluster"));
            nix::unistd::chown(dir.path(), Some(owner.uid), Some(owner.gid))
                .expect("give the cluster directory to postgres");
        }
        let mut pg = Postgres {
            bin,
            dir,
            run_as,
            port: 0,
            databases: AtomicU32::new(0),
        };
        let data = pg.data_dir();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        assert_ok("initdb", &out);
        // Another test may take the port between our probe and the server's bind: retry.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start().status.success() {
                return pg;
            }
        }
        panic!(
            "PostgreSQL did not start; its log:\n{}",
            std::fs::read_to_string(pg.log_file()).unwrap_or_default()
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME` for a database made just now, empty.
    pub fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `db` with psql; its output, unaligned, without headers.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert_ok(&format!("psql {sql:?}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server at once, as a crash would (`-m immediate`): what a client sees
    /// when the database box dies. [`Postgres::resume`] starts it again on the same port.
    pub fn kill(&self) {
        let out = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        assert_ok("pg_ctl stop", &out);
    }

    /// Starts the server again after [`Postgres::kill`] (it recovers from its WAL).
    pub fn resume(&self) {
        let out = self.pg_ctl_start();
        assert_ok("pg_ctl start", &out);
    }

    fn pg_ctl_start(&self) -> Output {
        let mut options = format!("-p {} -k {}", self.port, path_str(self.dir.path()));
        for setting in SETTINGS {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let log = self.log_file();
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            path_str(&log),
            "-o",
            &options,
        ])
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data_dir();
        let mut all = vec!["-D", path_str(&data)];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs one of the server's programs as the cluster's owner.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command
            .args(args)
            // pg_ctl's server inherits these: it must not hold the test's pipes open.
            .stdin(std::process::Stdio::null())
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: the data goes with the temp dir, nothing needs a clean shutdown.
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

/// `$SHIPWATCH_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin` with initdb.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SHIPWATCH_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
