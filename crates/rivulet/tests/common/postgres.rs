//! A throwaway PostgreSQL cluster for end-to-end tests (the way `crates/meta`'s
//! tests make theirs): Debian's `postgresql` package, `initdb` in a temporary
//! directory, `pg_ctl start` on a given address, optionally inside a network
//! namespace; stopped and removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A running cluster; `url` reaches its `postgres` database as the `postgres` user.
pub struct PgCluster {
    pub url: String,
    dir: PathBuf,
    bin: PathBuf,
    prefix: Vec<String>,
}

impl PgCluster {
    /// Starts a cluster listening on `host:port`, its commands behind `prefix` (e.g.
    /// `ip netns exec NS`), or says why it cannot.
    pub fn start(prefix: &[String], host: &str, port: u16) -> Result<PgCluster, String> {
        let bin = find_bin().ok_or(
            "no /usr/lib/postgresql/*/bin/initdb (install Debian's `postgresql` package: scripts/setup.sh)",
        )?;
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        // PostgreSQL refuses to run as root: run it as the `postgres` user the package
        // made, in a directory under /tmp, which that user can reach.
        let parent = if as_root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("rivulet-pg-")
            .tempdir_in(parent)
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        let mut prefix = prefix.to_vec();
        if as_root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            if !chown.is_ok_and(|s| s.success()) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "running as root and cannot give {} to the postgres user",
                    dir.display()
                ));
            }
            prefix.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        let cluster = PgCluster {
            url: format!("postgres://postgres@{host}:{port}/postgres"),
            dir,
            bin,
            prefix,
        };
        let data = cluster.dir.join("data");
        let out = cluster
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
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // Clients come from other hosts (namespaces, 127.0.0.x): trust them all, this
        // cluster lives for one test.
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"host all all 0.0.0.0/0 trust\n"))
            .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
        // Durability is not what these tests measure.
        let options = format!(
            "-k {} -p {port} -h {host} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.dir.display()
        );
        let out = cluster
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .args(["-o", &options])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
            return Err(format!(
                "postgres did not start: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.trim()
            ));
        }
        Ok(cluster)
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
