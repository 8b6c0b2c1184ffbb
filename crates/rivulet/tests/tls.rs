//! TLS: ffmpeg publishes over `rtmps://` to `rivulet serve` with a self-signed
//! certificate made at test time, the LL-HLS output is read over HTTPS (curl trusting
//! that certificate), a plain RTMP client on the RTMPS port is refused without
//! disturbing the stream, replaced certificate files are presented after SIGHUP (and
//! a bad replacement is not), `rivulet publish rtmps://` checks the server's
//! certificate, and a bad certificate stops the start with the file's name.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "k3y-for-tls";
const KEY2: &str = "k3y-for-tls-2";

/// A self-signed P-256 certificate for localhost and 127.0.0.1: (cert, key).
fn make_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let (ok, _, err) = run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "openssl req: {err}");
    (cert, key)
}

/// The SHA-256 fingerprint of a certificate file, as openssl prints it.
fn file_fingerprint(cert: &Path) -> String {
    let (ok, out, err) = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert));
    assert!(ok, "openssl x509: {err}");
    fingerprint_of(&out)
}

/// The SHA-256 fingerprint of the certificate a TLS server at `addr` presents now
/// (a new handshake with openssl s_client).
fn served_fingerprint(addr: &str) -> String {
    let (ok, out, err) = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    )));
    assert!(ok, "openssl s_client to {addr}: {err}");
    fingerprint_of(&out)
}

fn fingerprint_of(openssl_out: &str) -> String {
    openssl_out
        .trim()
        .rsplit_once('=')
        .map(|(_, f)| f.to_owned())
        .unwrap_or_else(|| panic!("no fingerprint in '{openssl_out}'"))
}

/// Replaces the live pair by renaming copies over it, as certificate tools do.
fn install(pair: &(PathBuf, PathBuf), live: &(PathBuf, PathBuf)) {
    for (from, to) in [(&pair.1, &live.1), (&pair.0, &live.0)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

fn hangup(pid: u32) {
    let (ok, _, err) = run(Command::new("kill").args(["-HUP", &pid.to_string()]));
    assert!(ok, "kill -HUP: {err}");
}

/// GET over HTTPS with curl trusting `ca`: (status, HTTP version, body).
fn curl(url: &str, ca: &Path) -> (u16, String, String) {
    let (_, out, _) = run(Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code} %{http_version}", url]));
    let (body, tail) = out.rsplit_once('\n').unwrap_or(("", &out));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", ""));
    (
        code.parse().unwrap_or(0),
        version.to_owned(),
        body.to_owned(),
    )
}

/// GETs over HTTPS until 200, at most `within`.
fn curl_when_ready(url: &str, ca: &Path, within: Duration) -> (String, String) {
    let deadline = Instant::now() + within;
    loop {
        let (code, version, body) = curl(url, ca);
        if code == 200 {
            return (version, body);
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 over HTTPS within {within:?} (last: {code})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rtmps_ingest_https_playback_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_pair(dir.path(), "first");
    let second = make_pair(dir.path(), "second");
    let live = (dir.path().join("live.crt"), dir.path().join("live.key"));
    install(&first, &live);
    let rtmps = format!("127.0.0.1:{}", free_port());
    let https = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&[
        "--stream",
        &format!("tls={KEY}"),
        "--stream",
        &format!("tls2={KEY2}"),
        "--rtmps-listen",
        &rtmps,
        "--https-listen",
        &https,
        "--tls-cert",
        live.0.to_str().unwrap(),
        "--tls-key",
        live.1.to_str().unwrap(),
    ]);
    let mut ffmpeg = KillOnDrop(publish(&format!("rtmps://{rtmps}/live/{KEY}"), 60));

    // The LL-HLS output over HTTPS, HTTP/2 by ALPN, trusting the self-signed cert.
    let base = format!("https://{https}/live/tls");
    let (version, master) = curl_when_ready(
        &format!("{base}/master.m3u8"),
        &first.0,
        Duration::from_secs(30),
    );
    assert_eq!(version, "2", "HTTPS offers HTTP/2");
    let uri = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no variant in {master}"))
        .to_owned();
    let media = format!("{base}/{uri}");
    let (_, playlist) = curl_when_ready(&media, &first.0, Duration::from_secs(15));
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    assert!(
        server.log().contains("publishing") && !server.log().contains("publish refused"),
        "{}",
        server.log()
    );

    // A plain RTMP client on the RTMPS port fails cleanly; the stream goes on.
    let before = preload_hint(&playlist);
    let mut plain = publish(&format!("rtmp://{rtmps}/live/{KEY2}"), 5);
    let status = wait_exit(&mut plain, Duration::from_secs(30)).expect("plain RTMP gives up");
    assert!(!status.success(), "plain RTMP on the RTMPS port must fail");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("the client does not speak TLS") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (_, playlist) = curl_when_ready(&media, &first.0, Duration::from_secs(5));
    assert!(
        preload_hint(&playlist) > before,
        "the stream went on: {before:?} then {playlist}"
    );
    assert!(
        ffmpeg.try_wait().unwrap().is_none(),
        "the RTMPS publisher is still live"
    );

    // The certificate in use, then a new one after the files are replaced + SIGHUP.
    assert_eq!(served_fingerprint(&rtmps), file_fingerprint(&first.0));
    assert_eq!(served_fingerprint(&https), file_fingerprint(&first.0));
    install(&second, &live);
    hangup(server.pid());
    let want = file_fingerprint(&second.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_fingerprint(&rtmps) != want {
        assert!(
            Instant::now() < deadline,
            "new RTMPS handshakes still get the old certificate"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(served_fingerprint(&https), want);
    let (code, _, _) = curl(&format!("{base}/master.m3u8"), &second.0);
    assert_eq!(code, 200, "HTTPS with the new certificate");

    // A bad replacement is refused and logged; the certificate in use stays.
    std::fs::write(
        &live.0,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    hangup(server.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("TLS certificate not reloaded") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log().contains("live.crt"), "the log names the file");
    assert_eq!(served_fingerprint(&rtmps), want);
    assert!(
        ffmpeg.try_wait().unwrap().is_none(),
        "the RTMPS publisher is still live"
    );

    // Our publisher over rtmps://: refused when it does not trust the certificate,
    // publishing when it does.
    let (mut untrusting, log) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "320x180",
        "--tls-ca",
        first.0.to_str().unwrap(),
        &format!("rtmps://{rtmps}/live/{KEY2}"),
    ]);
    let status = wait_exit(&mut untrusting, Duration::from_secs(30)).expect("it gives up");
    assert!(!status.success());
    let said = log.lock().unwrap().clone();
    assert!(said.contains("TLS: handshake failed"), "{said}");
    let (_publisher, log) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "320x180",
        "--tls-ca",
        second.0.to_str().unwrap(),
        &format!("rtmps://{rtmps}/live/{KEY2}"),
    ]);
    let (_, master2) = curl_when_ready(
        &format!("https://{https}/live/tls2/master.m3u8"),
        &second.0,
        Duration::from_secs(30),
    );
    assert!(
        master2.contains("#EXT-X-STREAM-INF"),
        "{master2} / {}",
        log.lock().unwrap()
    );
}

#[test]
fn a_bad_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_pair(dir.path(), "good");
    let (_, other_key) = make_pair(dir.path(), "other");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.key");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    for (cert, key, says) in [
        (
            path(&garbage),
            path(&key),
            vec!["garbage.crt", "no PEM certificate"],
        ),
        (
            path(&cert),
            path(&missing),
            vec!["missing.key", "cannot read"],
        ),
        (
            path(&cert),
            path(&other_key),
            vec!["other.key", "good.crt", "does not belong"],
        ),
    ] {
        let out = common::command(&[])
            .args([
                "serve",
                "--rtmp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--rtmps-listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "serve must not start with {cert} / {key}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for word in says {
            assert!(stderr.contains(word), "'{word}' not in: {stderr}");
        }
    }
    // A TLS listener without the files.
    let out = common::command(&[])
        .args([
            "serve",
            "--rtmp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--https-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--https-listen needs --tls-cert"),
        "{stderr}"
    );
}

#[test]
fn tls_handshakes_hold_a_connection_slot_and_time_out() {
    use std::io::Read;
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_pair(dir.path(), "caps");
    let rtmps = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&[
        "--rtmps-listen",
        &rtmps,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--rtmp-max-connections",
        "2",
        "--rtmp-handshake-timeout-ms",
        "1500",
    ]);
    // Two clients that never start their TLS handshake fill the caps RTMP and RTMPS
    // share: a plain RTMP connection is refused.
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&rtmps).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let addr = server.rtmp.trim_start_matches("rtmp://");
    let _refused = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("--rtmp-max-connections)") {
        assert!(Instant::now() < deadline, "no refusal: {}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The unfinished handshakes are closed at the handshake timeout.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the server closes an unfinished TLS handshake");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("TLS handshake not complete in time") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Their slots are free again: a real handshake completes.
    assert_eq!(served_fingerprint(&rtmps), file_fingerprint(&cert));
}

/// The HTTPS listener's TLS handshake has the HTTP header timeout as its deadline: a
/// client that connects and never says hello is closed (and counted), and HTTPS keeps
/// serving a real client meanwhile.
#[test]
fn an_https_handshake_never_started_is_closed_at_the_header_timeout() {
    use std::io::Read;
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_pair(dir.path(), "https");
    let https = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&[
        "--https-listen",
        &https,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--http-header-timeout-ms",
        "1500",
    ]);
    curl_when_ready(
        &format!("https://{https}/healthz"),
        &cert,
        Duration::from_secs(20),
    );
    let mut silent = TcpStream::connect(&https).unwrap();
    // A real client is served while the silent one holds its connection.
    let (code, _, _) = curl(&format!("https://{https}/healthz"), &cert);
    assert_eq!(code, 200);
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        silent.read(&mut buf).unwrap_or(usize::MAX),
        0,
        "the server closes a TLS handshake that never started"
    );
    let (_, metrics, _) = run(Command::new("curl").args(["-s", &server.url("/metrics")]));
    assert!(
        metrics.contains("http_connections_closed_total{reason=\"tls_handshake_timeout\"} 1"),
        "{metrics}"
    );
}
