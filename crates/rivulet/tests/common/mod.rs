//! Shared harness for the end-to-end tests: the real `rivulet` binary on ephemeral
//! loopback ports, real `ffmpeg` publishers, real HTTP.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod netns;
#[path = "../../../bench/src/viewer.rs"]
pub mod viewer;

/// A running `rivulet serve`, killed on drop. Its stderr (the log) is collected.
pub struct Server {
    child: Child,
    pub rtmp: String,
    pub http: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `rivulet serve` on free loopback ports with the given extra arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts `rivulet serve` on the given listen addresses.
    pub fn start_on(rtmp_listen: &str, http_listen: &str, extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap().keep();
        Self::start_cmd(&[], "rivulet", &data, rtmp_listen, http_listen, extra)
    }

    /// Starts `rivulet serve` behind a command `prefix` (e.g. `ip netns exec NS`),
    /// with its data in `data`; its log lines are echoed as `[label] …`.
    pub fn start_cmd(
        prefix: &[String],
        label: &str,
        data: &std::path::Path,
        rtmp_listen: &str,
        http_listen: &str,
        extra: &[&str],
    ) -> Server {
        let mut child = command(prefix)
            .args([
                "serve",
                "--rtmp-listen",
                rtmp_listen,
                "--http-listen",
                http_listen,
                "--data-dir",
            ])
            .arg(data)
            // The passthrough rendition only, unless a test asks for transcoding: the
            // ladder's encoders would crowd the 2-core CI machines.
            .args(
                if extra.contains(&"--renditions") || extra.contains(&"--config") {
                    &[][..]
                } else {
                    &["--renditions", "source"][..]
                },
            )
            .args(extra)
            .env("RIVULET_LOG", "info,ingest=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rivulet");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut rtmp, mut http) = (None, None);
        let mut lines = stdout.lines();
        while rtmp.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("rivulet exited before printing its addresses")
                .unwrap();
            if let Some(rest) = line.split("rtmp://").nth(1) {
                rtmp.get_or_insert_with(|| format!("rtmp://{}", rest.split('/').next().unwrap()));
            }
            if let Some(rest) = line.trim().strip_prefix("HTTP origin: http://") {
                http = Some(format!("http://{}", rest.trim_end_matches('/')));
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            rtmp: rtmp.unwrap(),
            http: http.unwrap(),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts ffmpeg publishing a 320x240 30 fps test pattern with B-frames and a 2 s GOP,
/// plus a 48 kHz sine tone, in real time, for `seconds`.
pub fn publish(url: &str, seconds: u32) -> Child {
    publish_at(url, seconds, 30)
}

/// [`publish`] at `fps` frames a second (the GOP stays 2 s).
pub fn publish_at(url: &str, seconds: u32, fps: u32) -> Child {
    let gop = (2 * fps).to_string();
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=320x240:rate={fps}:duration={seconds}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-bf",
            "2",
            "-g",
            &gop,
        ])
        .args([
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, even when it fails.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `rivulet` binary, behind a command `prefix` if one is given.
pub fn command(prefix: &[String]) -> Command {
    match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(env!("CARGO_BIN_EXE_rivulet"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_rivulet")),
    }
}

/// Starts `rivulet publish` with `args`; stderr is echoed and collected.
pub fn rivulet_publish(args: &[&str]) -> (KillOnDrop, Arc<Mutex<String>>) {
    rivulet_publish_in(&[], args)
}

/// The frames `rivulet publish` dropped as late, from its last status line
/// (`… dropped N | …`).
pub fn frames_dropped_by_publisher(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("dropped ")? + "dropped ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .next_back()
        .unwrap_or(0)
}

/// [`rivulet_publish`] behind a command `prefix` (e.g. `ip netns exec NS`).
pub fn rivulet_publish_in(prefix: &[String], args: &[&str]) -> (KillOnDrop, Arc<Mutex<String>>) {
    let mut child = command(prefix)
        .arg("publish")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rivulet publish");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[publish] {line}");
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (KillOnDrop(child), log)
}

/// Waits for `child` to exit, at most `within`; kills it if it does not.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GETs `url` until it answers 200 or `within` passes; returns the body.
pub async fn get_when_ready(url: &str, within: Duration) -> String {
    let client = client();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return r.text().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not become available within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn get_text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of `NAME=` in an attribute list (quotes stripped).
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    if let Some(stripped) = rest.strip_prefix('"') {
        stripped.split('"').next()
    } else {
        rest.split(',').next()
    }
}

/// The (msn, part) of the playlist's EXT-X-PRELOAD-HINT.
pub fn preload_hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .expect("a preload hint");
    parse_part_uri(attr(line, "URI").unwrap())
}

/// `part-M-P.m4s` → (M, P).
pub fn parse_part_uri(uri: &str) -> (u64, u32) {
    let name = uri.rsplit('/').next().unwrap();
    let inner = name
        .strip_prefix("part-")
        .and_then(|s| s.strip_suffix(".m4s"))
        .expect("a part URI");
    let (m, p) = inner.split_once('-').unwrap();
    (m.parse().unwrap(), p.parse().unwrap())
}

/// Runs a command to completion and returns (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the media playlist at `url` ends (`#EXT-X-ENDLIST`: the publisher left
/// and the grace period passed); `what` names it in the failure.
pub async fn wait_for_endlist(url: &str, within: Duration, what: &str) {
    playlist_containing(url, "#EXT-X-ENDLIST", within, what).await;
}

/// The playlist at `url` once it contains `marker`, asked every 200 ms for at most
/// `within`; `what` names it in the failure.
pub async fn playlist_containing(url: &str, marker: &str, within: Duration, what: &str) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = get_text(url).await;
        if body.contains(marker) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no {marker} in {url}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ffprobe's `entries` (`-show_entries`, e.g. `stream=width,height`) of a media
/// file, as its one-line CSV, trimmed; ffprobe failing fails the test.
pub fn ffprobe_entries(file: &std::path::Path, entries: &str) -> String {
    let (ok, out, stderr) = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(file));
    assert!(ok, "ffprobe {}: {stderr}", file.display());
    out.trim().to_owned()
}

/// A running `rivulet edge`, killed on drop.
pub struct EdgeNode {
    child: Child,
    pub url: String,
}

impl EdgeNode {
    /// Starts `rivulet edge` behind a command `prefix`, listening on `listen`, in
    /// front of `upstreams` (in order of preference).
    pub fn start(prefix: &[String], listen: &str, upstreams: &[&str], extra: &[&str]) -> Self {
        let mut cmd = command(prefix);
        cmd.args(["edge", "--http-listen", listen]);
        for u in upstreams {
            cmd.args(["--origin", u]);
        }
        cmd.args(extra).env("RIVULET_LOG", "info");
        let (child, url) = spawn_announcing(&mut cmd, "HTTP edge: ");
        Self { child, url }
    }

    /// `rivulet edge` on a free loopback port.
    pub fn local(upstreams: &[&str], extra: &[&str]) -> Self {
        Self::start(&[], "127.0.0.1:0", upstreams, extra)
    }

    /// `path` on this edge.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Spawns `cmd` and waits for the line of its banner that starts with `label`
/// (e.g. `HTTP edge: `): the child and the base URL after the label. The rest of its
/// output is read and dropped, so that it never blocks on a full pipe.
pub fn spawn_announcing(cmd: &mut Command, label: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix(label)
                .map(|u| u.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| panic!("no '{label}' line in the banner"));
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real nginx with the RTMP module on a free loopback port, recording every stream
/// published to `rtmp://127.0.0.1:PORT/live/NAME` into `rec/NAME.flv`.
pub struct NginxRtmp {
    nginx: KillOnDrop,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NginxRtmp {
    pub fn start() -> NginxRtmp {
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        assert!(
            std::path::Path::new(module).exists(),
            "nginx-rtmp missing: run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path();
        let rec = prefix.join("rec");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::create_dir_all(&rec).unwrap();
        // nginx's workers may run as another user: let them write the recording.
        run(Command::new("chmod").arg("0777").arg(&rec).arg(prefix));
        let port = free_port();
        let conf = format!(
            "load_module {module};\ndaemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port};\n\
               application live {{ live on; record all; record_path {r}; record_unique off; }} }} }}\n",
            p = prefix.display(),
            r = rec.display()
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let nginx = KillOnDrop(
            Command::new("nginx")
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        NginxRtmp { nginx, port, dir }
    }

    /// Stops nginx with SIGTERM, which lets it finish its recordings.
    pub fn stop(&mut self) {
        run(Command::new("kill")
            .arg("-TERM")
            .arg(self.nginx.0.id().to_string()));
        let _ = wait_exit(&mut self.nginx.0, Duration::from_secs(10));
    }

    /// The recording of stream `name`.
    pub fn recording(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("rec").join(format!("{name}.flv"))
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    /// `codec_name,width,height,nb_read_frames` of each stream of a recording, and the
    /// video frame count of `WIDTHxHEIGHT` H.264 in it.
    pub fn probe(&self, name: &str, width: u32, height: u32) -> (String, u32) {
        let flv = self.recording(name);
        let (ok, out, err) = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&flv));
        assert!(
            ok,
            "ffprobe {}: {err}\nnginx log:\n{}",
            flv.display(),
            self.log()
        );
        let frames = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("h264,{width},{height},")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        (out, frames)
    }
}

/// `init` + `segment` written to `path`, and ffprobe's `key_frame,pict_type` of its
/// first video frame (`1,I` for an IDR), so a test can check where a segment starts.
pub fn first_video_frame(path: &std::path::Path, init: &[u8], segment: &[u8]) -> String {
    std::fs::write(path, [init, segment].concat()).unwrap();
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pict_type",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#1",
        ])
        .arg(path));
    assert!(ok, "{err}");
    out.lines().next().unwrap_or_default().to_owned()
}

/// Counts the video frames ffmpeg decodes from `url`; panics on any decode error.
pub fn decoded_frames(url: &str) -> u64 {
    let (ok, stdout, stderr) = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "csv=p=0",
        url,
    ]));
    assert!(ok, "ffprobe failed on {url}: {stderr}");
    assert!(stderr.trim().is_empty(), "decode errors in {url}: {stderr}");
    // An HLS source lists its streams once per program (variant): the first will do.
    let first = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    first
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("frame count of {url}: {stdout:?}"))
}

/// Runs `node ARGS` in `web/` (the browser tests, `web/tests/*.mjs`), failing with its
/// output on a non-zero exit.
pub fn node(args: &[&str]) {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let out = Command::new("node")
        .args(args)
        .current_dir(web)
        .output()
        .expect("node must be installed (scripts/setup.sh)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "node {args:?} failed:\n{text}");
}
