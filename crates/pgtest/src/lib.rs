//! A throwaway PostgreSQL cluster for tests and benchmarks.
//!
//! Debian's `postgresql` package provides the programs; [`PgCluster::start`] runs
//! `initdb` in a temporary directory and `pg_ctl start` on the address asked for,
//! optionally behind a command prefix (e.g. `ip netns exec NS`). The cluster is
//! stopped and its directory removed when the [`PgCluster`] drops, or, after
//! [`PgCluster::stop_at_exit`], when this process exits however it exits (for a server
//! shared by every test of a binary through a `OnceLock`).
//!
//! One harness for the metadata tests, the end-to-end tests and `rivulet-bench api`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a cluster could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The programs are not installed.
    #[error(
        "no /usr/lib/postgresql/*/bin/initdb (install Debian's `postgresql` package: scripts/setup.sh)"
    )]
    NotInstalled,
    /// A file-system step or a program could not be run.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{what} failed: {detail}")]
    Failed { what: &'static str, detail: String },
}

/// Where and how to start the cluster.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Commands run behind this prefix (e.g. `["ip", "netns", "exec", "db"]`).
    pub prefix: Vec<String>,
    /// The address to listen on.
    pub host: String,
    /// The port; `None` picks a free one on `host`.
    pub port: Option<u16>,
    /// `max_connections`.
    pub max_connections: u32,
    /// Accept clients from any address (namespaces, 127.0.0.x), not only local ones.
    pub trust_all_hosts: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            prefix: Vec::new(),
            host: "127.0.0.1".into(),
            port: None,
            max_connections: 300,
            trust_all_hosts: false,
        }
    }
}

/// A running cluster; [`PgCluster::url`] reaches its `postgres` database as the
/// `postgres` user.
#[derive(Debug)]
pub struct PgCluster {
    url: String,
    dir: PathBuf,
    bin: PathBuf,
    /// The prefix commands run behind, `runuser -u postgres --` included when root.
    prefix: Vec<String>,
    /// Set once a watchdog owns the clean-up.
    detached: bool,
}

impl PgCluster {
    /// Starts a cluster, or says why it cannot.
    pub fn start(options: &PgOptions) -> Result<PgCluster, PgError> {
        let bin = find_bin().ok_or(PgError::NotInstalled)?;
        // PostgreSQL refuses to run as root: run it as the `postgres` user the package
        // made, in a directory under /tmp, which that user can reach (root's TMPDIR
        // may not be).
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let parent = if as_root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("rivulet-pg-")
            .tempdir_in(parent)
            .map_err(|source| PgError::Io {
                what: "cannot create a temporary directory".into(),
                source,
            })?
            .keep();
        let mut prefix = options.prefix.clone();
        if as_root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            if !chown.is_ok_and(|s| s.success()) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(PgError::Failed {
                    what: "chown",
                    detail: format!(
                        "running as root and cannot give {} to the postgres user",
                        dir.display()
                    ),
                });
            }
            prefix.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        let port = match options.port {
            Some(port) => port,
            None => free_port(&options.host)?,
        };
        let host = &options.host;
        let mut cluster = PgCluster {
            url: format!("postgres://postgres@{host}:{port}/postgres"),
            dir,
            bin,
            prefix,
            detached: false,
        };
        cluster.init_and_start(options, port)?;
        Ok(cluster)
    }

    fn init_and_start(&mut self, options: &PgOptions, port: u16) -> Result<(), PgError> {
        let data = self.dir.join("data");
        let out = self
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|source| PgError::Io {
                what: "cannot run initdb".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(PgError::Failed {
                what: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        if options.trust_all_hosts {
            // This cluster lives for one test: trust clients from any host.
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))
                .and_then(|mut f| f.write_all(b"host all all 0.0.0.0/0 trust\n"))
                .map_err(|source| PgError::Io {
                    what: "cannot write pg_hba.conf".into(),
                    source,
                })?;
        }
        // Durability is not what tests and benchmarks measure.
        let server_options = format!(
            "-k {} -p {port} -h {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections={}",
            self.dir.display(),
            options.host,
            options.max_connections,
        );
        let out = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &server_options])
            .stdout(Stdio::null())
            .output()
            .map_err(|source| PgError::Io {
                what: "cannot run pg_ctl".into(),
                source,
            })?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(PgError::Failed {
                what: "pg_ctl start",
                detail: format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log.trim()
                ),
            });
        }
        Ok(())
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory the cluster lives in (data and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves the cluster running until this process exits: a watchdog shell waits
    /// for it, then stops PostgreSQL and removes its directory. It ignores
    /// SIGINT/SIGTERM/SIGHUP so that a Ctrl-C still gets the clean-up done. Returns
    /// the URL.
    pub fn stop_at_exit(mut self) -> Result<String, PgError> {
        let script = format!(
            "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {prefix} {pg_ctl} stop -m immediate -D '{data}' >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            prefix = self.prefix.join(" "),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PgError::Io {
                what: "cannot start the clean-up watchdog".into(),
                source,
            })?;
        self.detached = true;
        Ok(std::mem::take(&mut self.url))
    }

    fn command(&self, program: &str) -> Command {
        let mut c = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(self.bin.join(program));
                c
            }
            None => Command::new(self.bin.join(program)),
        };
        c.stdin(Stdio::null());
        c
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's `bin` directory.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port(host: &str) -> Result<u16, PgError> {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| PgError::Io {
            what: format!("no free port on {host}"),
            source,
        })
}
