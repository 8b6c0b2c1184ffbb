//! Certificates made at test time with the `openssl` command.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

/// A fresh self-signed P-256 certificate for localhost and 127.0.0.1.
fn make_pair(dir: &Path, name: &str) -> CertificateFiles {
    let files = CertificateFiles::new(
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
        .arg("-keyout")
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/setup.sh)");
    assert!(status.success());
    files
}

fn file_fingerprint(path: &Path) -> String {
    let chain = files::read_certificates(path, "test").expect("certificate");
    fingerprint(&chain[0])
}

#[test]
fn loads_a_pair_and_names_the_file_of_each_mistake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = make_pair(dir.path(), "a");
    let b = make_pair(dir.path(), "b");
    let loaded = a.load().expect("a pair loads");
    assert_eq!(
        fingerprint(loaded.end_entity_cert().expect("cert")),
        file_fingerprint(&a.cert)
    );

    let missing = CertificateFiles::new(dir.path().join("nope.crt"), &a.key);
    let e = missing.load().unwrap_err().to_string();
    assert!(e.contains("nope.crt") && e.contains("cannot read"), "{e}");

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let e = CertificateFiles::new(&garbage, &a.key)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("garbage.crt") && e.contains("no PEM certificate"),
        "{e}"
    );

    // The certificate where the key should be.
    let e = CertificateFiles::new(&a.cert, &a.cert)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a.crt") && e.contains("no PEM private key"),
        "{e}"
    );

    let e = CertificateFiles::new(&a.cert, &b.key)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.key") && e.contains("a.crt") && e.contains("does not belong"),
        "{e}"
    );
}

#[test]
fn reload_swaps_the_pair_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = make_pair(dir.path(), "live");
    let next = make_pair(dir.path(), "next");
    let cert = ReloadingCert::load(live.clone()).expect("load");
    let first = cert.fingerprint();
    assert_eq!(first, file_fingerprint(&live.cert));

    std::fs::copy(&next.cert, &live.cert).expect("copy");
    std::fs::copy(&next.key, &live.key).expect("copy");
    cert.reload().expect("the new pair loads");
    assert_eq!(cert.fingerprint(), file_fingerprint(&next.cert));

    std::fs::write(
        &live.cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = cert.reload().unwrap_err().to_string();
    assert!(
        e.contains("live.crt") && e.contains("certificate in") && !e.contains("does not belong"),
        "{e}"
    );
    assert_eq!(
        cert.fingerprint(),
        file_fingerprint(&next.cert),
        "a bad file leaves the pair in use"
    );
}

#[tokio::test]
async fn watch_reloads_when_the_files_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = make_pair(dir.path(), "live");
    let next = make_pair(dir.path(), "next");
    let cert = ReloadingCert::load(live.clone()).expect("load");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(watch(cert.clone(), Duration::from_millis(20), async {
        let _ = stop_rx.await;
    }));
    // The watcher's first look sees the old files.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Replaced by renaming over the old files, as certificate tools do.
    std::fs::copy(&next.key, dir.path().join("tmp.key")).expect("copy");
    std::fs::copy(&next.cert, dir.path().join("tmp.crt")).expect("copy");
    std::fs::rename(dir.path().join("tmp.key"), &live.key).expect("rename");
    std::fs::rename(dir.path().join("tmp.crt"), &live.cert).expect("rename");
    let want = file_fingerprint(&next.cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cert.fingerprint() != want {
        assert!(Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    watcher.await.expect("watch ends when told");
}

#[test]
fn client_trust_loads_a_ca_file_and_names_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_pair(dir.path(), "ca");
    client_config(&ClientTrust::CaFile(ca.cert.clone())).expect("a CA file");
    client_config(&ClientTrust::WebRoots).expect("web roots");
    client_config(&ClientTrust::Insecure).expect("insecure");
    let e = client_config(&ClientTrust::CaFile(dir.path().join("none.pem")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.pem"), "{e}");
}
