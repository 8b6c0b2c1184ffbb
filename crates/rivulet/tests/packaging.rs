//! What the Debian package and the container ship (`deploy/`, `[package.metadata.deb]`
//! in crates/rivulet/Cargo.toml): the systemd units verify with `systemd-analyze`, the
//! example configuration is accepted by the real binary, every packaged file exists,
//! and, where `cargo-deb` is installed and a release binary was built, the `.deb` holds
//! what it should.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::run;

const UNITS: &[&str] = &[
    "rivulet-serve.service",
    "rivulet-edge@.service",
    "rivulet-meta.service",
    "rivulet-analytics.service",
    "rivulet-route.service",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rivulet() -> &'static str {
    env!("CARGO_BIN_EXE_rivulet")
}

/// The unit files with `/usr/bin/rivulet` replaced by the binary under test (the
/// verifier checks that every command exists), in a temporary directory.
fn units_for_verify() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/rivulet "),
            "{unit} runs the packaged binary"
        );
        let text = text.replace("/usr/bin/rivulet", rivulet());
        // A template is verified through an instance of it.
        let name = unit.replace("@.", "@test.");
        std::fs::write(dir.path().join(unit), &text).unwrap();
        paths.push(dir.path().join(name));
    }
    (dir, paths)
}

#[test]
fn units_are_hardened_notify_services() {
    for unit in UNITS {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        for line in [
            "Type=notify",
            "WatchdogSec=",
            "User=rivulet",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/rivulet",
            "CapabilityBoundingSet=",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "{unit} has no {line}"
            );
        }
    }
}

/// Whether `systemd-analyze` is there; says SKIPPED if not.
fn have_systemd_analyze() -> bool {
    let there = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !there {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian's systemd package has it)");
    }
    there
}

#[test]
fn systemd_analyze_verifies_the_units() {
    if !have_systemd_analyze() {
        return;
    }
    let (_dir, paths) = units_for_verify();
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        // No unit of the running system is needed.
        .env("SYSTEMD_LOG_LEVEL", "notice"));
    assert!(ok, "systemd-analyze verify failed:\n{out}{err}");
    // Unknown keys and the like are warnings with exit status 0: none allowed.
    let warnings: Vec<&str> = err
        .lines()
        .chain(out.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        warnings.is_empty(),
        "systemd-analyze verify warned:\n{}",
        warnings.join("\n")
    );
}

#[test]
fn the_verifier_catches_a_broken_unit() {
    if !have_systemd_analyze() {
        return;
    }
    // The check above must be able to fail: a misspelt hardening key is reported.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("deploy/systemd/rivulet-serve.service"))
        .unwrap()
        .replace("/usr/bin/rivulet", rivulet())
        .replace("ProtectSystem=", "ProtectSystm=");
    let path = dir.path().join("rivulet-serve.service");
    std::fs::write(&path, text).unwrap();
    let (_, out, err) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(format!("{out}{err}").contains("ProtectSystm"), "{out}{err}");
}

#[test]
fn the_example_config_is_accepted_by_every_role_that_reads_it() {
    let config = repo().join("deploy/rivulet.toml");
    for role in ["serve", "meta", "analytics"] {
        let (ok, out, err) = run(Command::new(rivulet())
            .args([role, "--config"])
            .arg(&config)
            .arg("--check")
            .env_remove("RIVULET_CONFIG"));
        assert!(
            ok,
            "rivulet {role} --check refused deploy/rivulet.toml:\n{out}{err}"
        );
        assert!(out.contains("configuration OK"), "{role}: {out}");
    }
}

#[test]
fn check_names_what_is_wrong_in_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "http_listen = \"0.0.0.0:8080\"\nhttp_lisen = \"x\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(Command::new(rivulet())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--check"));
    assert!(!ok, "a misspelt key must be refused: {out}");
    assert!(err.contains("http_lisen"), "the error names the key: {err}");
}

/// `[package.metadata.deb]` of crates/rivulet/Cargo.toml.
fn deb_metadata() -> toml::Value {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    manifest["package"]["metadata"]["deb"].clone()
}

#[test]
fn the_package_metadata_names_files_that_exist() {
    let deb = deb_metadata();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets = deb["assets"].as_array().unwrap();
    let mut targets = Vec::new();
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        targets.push(asset[1].as_str().unwrap().to_owned());
        if source.starts_with("target/") {
            continue; // built by `cargo deb`
        }
        assert!(
            crate_dir.join(source).is_file(),
            "packaged file {source} is missing (run scripts/setup.sh for node packages)"
        );
    }
    for wanted in ["usr/bin/", "etc/rivulet/rivulet.toml"] {
        assert!(targets.iter().any(|t| t == wanted), "{wanted} not packaged");
    }
    // One systemd-units entry per unit, each naming its file in deploy/systemd/.
    let mut named: Vec<String> = Vec::new();
    for entry in deb["systemd-units"].as_array().unwrap() {
        let dir = crate_dir.join(entry["unit-scripts"].as_str().unwrap());
        let unit = format!("{}.service", entry["unit-name"].as_str().unwrap());
        assert!(dir.join(&unit).is_file(), "{unit} not in {}", dir.display());
        assert_eq!(
            entry["enable"].as_bool(),
            Some(false),
            "{unit}: not enabled on install"
        );
        named.push(unit);
    }
    named.sort();
    let mut all: Vec<String> = UNITS.iter().map(|u| (*u).to_owned()).collect();
    all.sort();
    assert_eq!(named, all, "every unit is packaged");
    let scripts = crate_dir.join(deb["maintainer-scripts"].as_str().unwrap());
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("#DEBHELPER#"));
}

/// Builds the `.deb` from the release binary already built (`cargo build --release -p
/// rivulet`), if `cargo-deb` is installed and that binary exists; a release build is
/// too slow for the suite. `RIVULET_TEST_DEB=1` packages the debug build instead
/// (stripped; cargo-deb warns about the profile) when there is no release binary.
#[test]
fn the_deb_holds_the_binary_config_and_units() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    if !run(Command::new("cargo").args(["deb", "--version"])).0 {
        eprintln!("SKIPPED: cargo-deb is not installed (cargo install cargo-deb)");
        return;
    }
    let profile = if target.join("release/rivulet").is_file() {
        "release"
    } else if std::env::var_os("RIVULET_TEST_DEB").is_some_and(|v| v == "1") {
        "dev"
    } else {
        eprintln!(
            "SKIPPED: no release binary at {} (cargo build --release -p rivulet; or \
             RIVULET_TEST_DEB=1 to package the debug build)",
            target.join("release/rivulet").display()
        );
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(Command::new("cargo")
        .current_dir(repo())
        .args([
            "deb",
            "-p",
            "rivulet",
            "--no-build",
            "--strip",
            "--profile",
            profile,
            "--output",
        ])
        .arg(out_dir.path()));
    assert!(ok, "cargo deb failed:\n{out}{err}");
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let (ok, contents, err) = run(Command::new("dpkg").arg("-c").arg(&deb));
    assert!(ok, "{err}");
    for path in [
        "./usr/bin/rivulet",
        "./etc/rivulet/rivulet.toml",
        "/systemd/system/rivulet-serve.service",
        "/systemd/system/rivulet-edge@.service",
        "/systemd/system/rivulet-meta.service",
        "/systemd/system/rivulet-analytics.service",
        "/systemd/system/rivulet-route.service",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the .deb:\n{contents}"
        );
    }
    let (_, control, _) = run(Command::new("dpkg").args(["-I"]).arg(&deb));
    assert!(control.contains("postinst"), "{control}");
    assert!(
        control.contains("libavcodec"),
        "FFmpeg libraries in Depends: {control}"
    );
}

/// `Type=notify`: the service manager's socket (`NOTIFY_SOCKET`, here our own) gets
/// `READY=1` once the listeners answer, then watchdog pings (`WATCHDOG_USEC`).
#[test]
fn serve_tells_the_service_manager_it_is_ready_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let http_port = common::free_port();
    let child = Command::new(rivulet())
        .args([
            "serve",
            "--renditions",
            "source",
            "--rtmp-listen",
            "127.0.0.1:0",
        ])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        // 400 ms: pings every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = common::KillOnDrop(child);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a message on NOTIFY_SOCKET");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // Ready means listening.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok(),
        "READY=1 came before the HTTP listener"
    );
    let n = socket.recv(&mut buf).expect("a watchdog ping");
    let second = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(second.lines().any(|l| l == "WATCHDOG=1"), "{second:?}");
}
