//! A throwaway PostgreSQL server for tests and benchmarks: `initdb` in a
//! temporary directory, `postgres` on a free loopback port with its socket
//! in that directory, stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root. Run as root (CI, containers), the
//! server runs as the unprivileged `nobody` user, which owns the directory.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TempPostgresError {
    /// `initdb` / `postgres` are not installed: tests skip.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin"
    )]
    NotInstalled,
    #[error("temporary PostgreSQL: {0}")]
    Io(#[from] std::io::Error),
    #[error("temporary PostgreSQL: {0}")]
    Failed(String),
}

/// A running temporary server.
pub struct TempPostgres {
    dir: PathBuf,
    port: u16,
    child: Child,
    bin: PathBuf,
    owner: Owner,
    durability: Durability,
    /// Serves TLS (`ssl = on`) with the certificate given at start.
    ssl: bool,
}

/// Server settings of a temporary server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync off: for tests.
    Fast,
    /// PostgreSQL's defaults (fsync and synchronous commit on): for
    /// benchmarks whose figures should hold on a real server.
    Default,
}

impl TempPostgres {
    /// Starts a server with fsync off.
    pub fn start() -> Result<TempPostgres, TempPostgresError> {
        Self::start_with(Durability::Fast)
    }

    pub fn start_with(durability: Durability) -> Result<TempPostgres, TempPostgresError> {
        Self::start_inner(durability, None)
    }

    /// Starts a server (fsync off) that also accepts TLS, with this
    /// certificate chain and private key (PEM). Plain connections stay
    /// allowed, so a test can compare both.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<TempPostgres, TempPostgresError> {
        Self::start_inner(Durability::Fast, Some((cert_pem, key_pem)))
    }

    fn start_inner(
        durability: Durability,
        tls: Option<(&str, &str)>,
    ) -> Result<TempPostgres, TempPostgresError> {
        let bin = bin_dir().ok_or(TempPostgresError::NotInstalled)?;
        let dir = temp_dir()?;
        let owner = Owner::for_dir(&dir)?;
        let data = dir.join("data");
        let initdb = owner
            .command(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .arg("-D")
            .arg(&data)
            .output()?;
        if !initdb.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(TempPostgresError::Failed(format!(
                "initdb: {}",
                String::from_utf8_lossy(&initdb.stderr)
            )));
        }
        if let Some((cert, key)) = tls {
            // PostgreSQL's defaults: server.crt and server.key in the data
            // directory, the key readable by the server's user only.
            let key_path = data.join("server.key");
            std::fs::write(data.join("server.crt"), cert)?;
            std::fs::write(&key_path, key)?;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
            owner.give(&data.join("server.crt"))?;
            owner.give(&key_path)?;
        }
        let ssl = tls.is_some();
        let port = free_port()?;
        let child = spawn_server(&bin, &owner, &dir, port, durability, ssl)?;
        let temp = TempPostgres {
            dir,
            port,
            child,
            bin,
            owner,
            durability,
            ssl,
        };
        temp.wait_ready()?;
        Ok(temp)
    }

    /// Starts the server again after [`TempPostgres::stop`], on the same
    /// port and data.
    pub fn restart(&mut self) -> Result<(), TempPostgresError> {
        self.stop();
        self.child = spawn_server(
            &self.bin,
            &self.owner,
            &self.dir,
            self.port,
            self.durability,
            self.ssl,
        )?;
        self.wait_ready()
    }

    /// The URL of the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and returns its URL, so that tests sharing one
    /// server do not see each other's tables.
    pub fn create_database(&self, name: &str) -> Result<String, TempPostgresError> {
        self.execute(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// Stops the server the fast way (connections are closed and new ones
    /// refused: an outage, for tests) and waits for it.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGINT is the "fast shutdown" request.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `sql` on the `postgres` database.
    fn execute(&self, sql: &str) -> Result<(), TempPostgresError> {
        let url = self.url();
        super::block_on(|| async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(sql).await
        })
        .map_err(|e| TempPostgresError::Failed(e.to_string()))
    }

    fn wait_ready(&self) -> Result<(), TempPostgresError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if self.execute("SELECT 1").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        Err(TempPostgresError::Failed(format!(
            "the server did not start: {log}"
        )))
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_server(
    bin: &Path,
    owner: &Owner,
    dir: &Path,
    port: u16,
    durability: Durability,
    ssl: bool,
) -> Result<Child, TempPostgresError> {
    let mut server = owner.command(&bin.join("postgres"));
    server
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ])
        .stdout(Stdio::null())
        .stderr(log_file(dir)?);
    if ssl {
        server.args(["-c", "ssl=on"]);
    }
    if durability == Durability::Fast {
        server.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        server.args(["-c", "full_page_writes=off"]);
    }
    Ok(server.spawn()?)
}

/// The server's log, appended to across restarts.
fn log_file(dir: &Path) -> Result<std::fs::File, TempPostgresError> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?)
}

/// Who runs the server: ourselves, or `nobody` when we are root.
enum Owner {
    Me,
    User { uid: u32, gid: u32 },
}

impl Owner {
    /// When we are root, hands `dir` to `nobody`.
    fn for_dir(dir: &Path) -> Result<Owner, TempPostgresError> {
        if std::fs::metadata(dir)?.uid() != 0 {
            return Ok(Owner::Me);
        }
        let (uid, gid) = nobody()?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Owner::User { uid, gid })
    }

    /// Makes a file in the server's directory the server user's.
    fn give(&self, path: &Path) -> Result<(), TempPostgresError> {
        if let Owner::User { uid, gid } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))?;
        }
        Ok(())
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Owner::User { uid, gid } = self {
            command.uid(*uid).gid(*gid);
            // `nobody`'s home does not exist: run from a directory it can read.
            command.current_dir("/");
        }
        command
    }
}

/// The uid and gid of `nobody`, from /etc/passwd.
fn nobody() -> Result<(u32, u32), TempPostgresError> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"nobody") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| TempPostgresError::Failed("running as root and no `nobody` user".into()))
}

/// Where `initdb` and `postgres` are: on PATH, else Debian's versioned
/// directory (the newest).
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        versions.sort_by_key(|d| {
            d.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
        });
        versions.pop()
    })
}

fn temp_dir() -> Result<PathBuf, TempPostgresError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("portcullis-pg-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> Result<u16, TempPostgresError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
