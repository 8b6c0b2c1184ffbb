//! `rivulet demo`: `serve` in-process with a demo stream, and the test-pattern
//! publisher feeding it — a live stream to watch a minute after building, no OBS needed.

use clap::Args;
use httpd::shutdown::Stop;

use crate::config::{ServeArgs, StreamDecl};
use crate::publish::PublishArgs;
use crate::serve::{self, Listeners};
use encoder::session::PublishPlan;
use httpd::display_addr;

/// The options of `rivulet demo`: those of `serve`, plus the picture to publish.
#[derive(Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,

    /// Name of the demo stream (in the play URL).
    #[arg(long, default_value = "demo", value_name = "NAME")]
    pub(crate) demo_stream: String,

    /// Test pattern size WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_name = "WxH")]
    pub(crate) demo_size: String,

    /// Test pattern bitrate.
    #[arg(long, default_value = "3M")]
    pub(crate) demo_bitrate: String,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut key_bytes = [0u8; 16];
    rand::fill(&mut key_bytes[..]);
    let key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let demo: StreamDecl = format!("{}={key}", args.demo_stream).parse()?;
    let mut config = args.serve.resolve()?;
    config.streams.push(demo.clone());

    let listeners = Listeners::bind(&config).await?;
    let (rtmp, http) = (listeners.rtmp_addr()?, listeners.http_addr()?);
    let segment_target_ms = config.packager.segment_target_ms;

    let stop = Stop::on(httpd::shutdown::signal());
    let server = tokio::spawn(serve::serve(config, listeners, stop.stopped()));

    let url = format!("rtmp://{}/live/{key}", display_addr(rtmp));
    let publish = PublishArgs {
        test_pattern: true,
        inputs: vec![url],
        size: Some(
            args.demo_size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| {
                    anyhow::anyhow!("--demo-size '{}' is not WIDTHxHEIGHT", args.demo_size)
                })?,
        ),
        fps: source::FrameRate::new(30, 1),
        bitrate: encoder::session::parse_bitrate(&args.demo_bitrate)?,
        audio_bitrate: 128_000,
        video_codec: media::VideoCodec::Avc,
        preset: "veryfast".into(),
        profile: "high".into(),
        keyframe_interval_ms: segment_target_ms,
        looped: false,
        no_audio: false,
        name: format!("Rivulet demo: {}", demo.name),
        duration: None,
        tls_ca: None,
        tls_insecure: false,
    };
    let plan: PublishPlan = publish.plan()?;
    // Our banner goes after the server's: wait until it answers HTTP.
    for _ in 0..200 {
        if healthy(http).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!();
    println!("Rivulet demo is live.");
    println!(
        "  Watch:   http://{}/watch/{}  (open in a browser)",
        display_addr(http),
        demo.name
    );
    println!(
        "  HLS:     http://{}/live/{}/master.m3u8  (Safari, VLC, ffplay or any HLS player)",
        display_addr(http),
        demo.name
    );
    println!("  Dashboard: http://{}/dashboard", display_addr(http));
    println!(
        "  Publish from OBS instead: Server rtmp://{}/live, Stream Key {key}",
        display_addr(rtmp)
    );
    println!("  Ctrl-C stops everything.");

    let publishing = crate::publish::run(plan, stop.stopped());
    let outcome = publishing.await;
    if let Err(e) = &outcome {
        tracing::error!("demo publisher stopped: {e:#}");
    }
    // Ctrl-C stopped both; a publisher that failed on its own stops the server too.
    stop.trigger();
    server.await??;
    outcome
}

/// Whether `/healthz` answers 200 (the server has started serving).
async fn healthy(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(display_addr(addr)).await else {
        return false;
    };
    if s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.is_ok() && head.ends_with(b" 200")
}
