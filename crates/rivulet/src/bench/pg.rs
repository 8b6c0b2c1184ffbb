//! A throwaway PostgreSQL for `rivulet bench api`, started the way the metadata
//! tests start theirs: Debian's `initdb` in a temporary directory, on loopback on a
//! free port, stopped and removed by a watchdog when this process exits (however it
//! exits).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Starts a cluster; returns a URL of its `postgres` database.
pub(super) fn start() -> anyhow::Result<String> {
    let bin = find_bin().context(
        "no /usr/lib/postgresql/*/bin/initdb (install Debian's `postgresql` package: scripts/setup.sh), or pass --postgres-url",
    )?;
    // PostgreSQL refuses to run as root: run it as the `postgres` user the package made,
    // in a directory under /tmp, which that user can reach.
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let dir = std::env::temp_dir().join(format!("rivulet-bench-pg-{}", std::process::id()));
    let dir = if as_root {
        PathBuf::from("/tmp").join(dir.file_name().unwrap_or_default())
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let run_as: Vec<String> = if as_root {
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        if !chown.is_ok_and(|s| s.success()) {
            bail!(
                "running as root and cannot give {} to the postgres user",
                dir.display()
            );
        }
        ["runuser", "-u", "postgres", "--"]
            .map(String::from)
            .to_vec()
    } else {
        Vec::new()
    };
    let command = |program: &str| {
        let mut c = match run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin.join(program));
                c
            }
            None => Command::new(bin.join(program)),
        };
        c.stdin(Stdio::null());
        c
    };
    let data = dir.join("data");
    spawn_watchdog(&dir, &data, &bin, &run_as)?;
    let out = command("initdb")
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
        .context("cannot run initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let port = super::free_port()?;
    // Default durability settings: these are the figures a deployment would see.
    let options = format!(
        "-k {} -p {port} -h 127.0.0.1 -c max_connections=200",
        dir.display()
    );
    let out = command("pg_ctl")
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-o", &options])
        .stdout(Stdio::null())
        .output()
        .context("cannot run pg_ctl")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        bail!(
            "postgres did not start: {} {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            log.trim()
        );
    }
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// A shell that waits for this process to exit, then stops PostgreSQL and removes its
/// directory. It ignores SIGINT/SIGTERM/SIGHUP, so that a Ctrl-C still cleans up.
fn spawn_watchdog(dir: &Path, data: &Path, bin: &Path, run_as: &[String]) -> anyhow::Result<()> {
    let script = format!(
        "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {prefix} {pg_ctl} stop -m immediate -D '{data}' >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        prefix = run_as.join(" "),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .context("cannot start the PostgreSQL clean-up watchdog")
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
