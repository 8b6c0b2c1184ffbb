//! `rivulet-bench webrtc`: what a WHEP viewer costs the server. One ffmpeg publisher
//! (720p30 H.264 without B-frames, AAC) into `rivulet serve` with the source rung only;
//! the server's CPU and memory with no viewer, then with N WHEP viewers — str0m
//! clients in this process, each with its own UDP socket, receiving (not decoding)
//! the video and Opus — and the difference divided by N.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::{
    Reaped, clock_ticks_per_second, free_port, process_tree_ticks, rss_kib, tempfile_dir,
    wait_for_port,
};

#[derive(Args, Debug)]
pub(crate) struct WebRtcBenchArgs {
    /// WHEP viewers on the one stream.
    #[arg(long, default_value_t = 50)]
    pub(crate) viewers: usize,
    /// Seconds of measurement, with no viewer and then with the viewers.
    #[arg(long, default_value_t = 15)]
    pub(crate) seconds: u64,
    /// Seconds of publishing before the measurements (the origin's window fills).
    #[arg(long, default_value_t = 40)]
    pub(crate) warm_up: u64,
    /// Video bitrate of the published stream, bits per second.
    #[arg(long, default_value_t = 2_500_000)]
    pub(crate) bitrate: u64,
}

const NAME: &str = "rtc";

pub(crate) fn run(args: WebRtcBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let (rtmp_port, http_port, udp_port) = (free_port()?, free_port()?, free_port()?);
    let server = Reaped(
        std::process::Command::new(crate::rivulet_exe()?)
            .args(["serve", "--renditions", "source"])
            .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(["--webrtc-listen", &format!("127.0.0.1:{udp_port}")])
            .args(["--webrtc-max-sessions", &(args.viewers + 10).to_string()])
            .args(["--stream", &format!("{NAME}=peer-key")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RIVULET_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    wait_for_port(http_port)?;
    let _publisher = crate::ffmpeg_publisher(1280, 720, args.bitrate, rtmp_port)?;
    let pid = server.0.id();
    let runtime = tokio::runtime::Runtime::new()?;
    let figures = runtime.block_on(measure(pid, http_port, &args))?;
    let _ = std::fs::remove_dir_all(&dir);
    let n = args.viewers as f64;
    let (base, loaded) = figures;
    let cpu_each = (loaded.cpu_cores - base.cpu_cores) / n * 100.0;
    let rss_each = loaded.rss_kib.saturating_sub(base.rss_kib) as f64 / n;
    println!(
        "720p30 at {} kbit/s + AAC -> source rung over WHEP (H.264 + Opus), {} s per measurement",
        args.bitrate / 1000,
        args.seconds
    );
    println!(
        "server, no viewer:    {:6.2} % of a core, RSS {} KiB",
        base.cpu_cores * 100.0,
        base.rss_kib
    );
    println!(
        "server, {:4} viewers: {:6.2} % of a core, RSS {} KiB ({} viewers connected, {:.1} Mbit/s received each)",
        args.viewers,
        loaded.cpu_cores * 100.0,
        loaded.rss_kib,
        loaded.connected,
        loaded.mbps_each
    );
    println!(
        "per WHEP viewer:      {cpu_each:.3} % of a core (goal <= 0.2 %), {rss_each:.0} KiB (goal <= 200 KB)"
    );
    Ok(())
}

struct Figures {
    cpu_cores: f64,
    rss_kib: u64,
    connected: usize,
    mbps_each: f64,
}

async fn measure(
    pid: u32,
    http_port: u16,
    args: &WebRtcBenchArgs,
) -> anyhow::Result<(Figures, Figures)> {
    let client = reqwest::Client::new();
    let master = format!("http://127.0.0.1:{http_port}/live/{NAME}/master.m3u8");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(&master)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            bail!("the stream was not live within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The origin's memory grows until its window of segments is full (8 segments of
    // 2 s, and the ones that left it kept as long again: ~10 MB at 2.5 Mbit/s). Measured
    // from the stream's start, that growth was counted as the viewers' (~50 KB each
    // at 200 viewers, heaptrack); the baseline is the steady state.
    eprintln!(
        "warming up {} s (the origin's segment window fills)",
        args.warm_up
    );
    tokio::time::sleep(Duration::from_secs(args.warm_up)).await;
    let base = window(pid, args.seconds, None).await?;

    let received = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let url = format!("http://127.0.0.1:{http_port}/live/{NAME}/whep");
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..args.viewers {
        viewers.spawn(viewer(
            client.clone(),
            url.clone(),
            received.clone(),
            connected.clone(),
        ));
        // Not all at once: the offers are answered one by one anyway.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settle: every viewer connected and at its first keyframe (2 s GOP).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let loaded = window(pid, args.seconds, Some(&received)).await?;
    let connected = connected.load(Ordering::Relaxed) as usize;
    viewers.abort_all();
    if connected < args.viewers {
        eprintln!("only {connected} of {} viewers connected", args.viewers);
    }
    let mbps_each = loaded.mbps_each / connected.max(1) as f64;
    Ok((
        base,
        Figures {
            connected,
            mbps_each,
            ..loaded
        },
    ))
}

/// The server's CPU (cores) and RSS over `seconds`, and Mbit/s received in all.
async fn window(pid: u32, seconds: u64, received: Option<&AtomicU64>) -> anyhow::Result<Figures> {
    let bytes0 = received.map_or(0, |r| r.load(Ordering::Relaxed));
    let ticks0 = process_tree_ticks(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let ticks = process_tree_ticks(pid)? - ticks0;
    let elapsed = t0.elapsed().as_secs_f64();
    let bytes = received.map_or(0, |r| r.load(Ordering::Relaxed)) - bytes0;
    Ok(Figures {
        cpu_cores: ticks as f64 / clock_ticks_per_second() / elapsed,
        rss_kib: rss_kib(pid).unwrap_or(0),
        connected: 0,
        mbps_each: bytes as f64 * 8.0 / elapsed / 1e6,
    })
}

/// One WHEP viewer: a str0m peer on its own UDP socket, counting the media it gets.
async fn viewer(
    client: reqwest::Client,
    url: String,
    received: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local: SocketAddr = socket.local_addr()?;
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let Some((offer, pending)) = api.apply() else {
        bail!("no offer");
    };
    let response = client
        .post(&url)
        .header("Content-Type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await?;
    if response.status().as_u16() != 201 {
        bail!("WHEP answered {}", response.status());
    }
    let answer = SdpAnswer::from_sdp_string(&response.text().await?)?;
    rtc.sdp_api().accept_answer(pending, answer)?;
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = loop {
            match rtc.poll_output()? {
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(Event::MediaData(d)) => {
                    received.fetch_add(d.data.len() as u64, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                let Ok(contents) = buf[..n].try_into() else { continue };
                rtc.handle_input(Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                ))?;
            }
            () = tokio::time::sleep_until(timeout.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
        }
    }
}
