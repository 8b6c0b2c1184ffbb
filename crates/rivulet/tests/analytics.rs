//! Analytics end to end: a real `rivulet serve` with a stream published by ffmpeg,
//! watched by simulated viewers (real HTTP clients fetching the playlist and parts,
//! with CMCD in the query or in headers, some behind a trusted proxy with
//! `X-Forwarded-For`), and read back through the analytics API; player beacons;
//! analytics down; `rivulet analytics` running alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

/// Time between a viewer's polls (playlist, then its newest complete part).
const POLL: Duration = Duration::from_millis(400);
/// The activity window the tests set: short, so that leaving is seen quickly.
const WINDOW_MS: u64 = 2_000;

/// Addresses whose country was checked in the installed database
/// (`cargo run -p analytics --example geoip -- ADDRESS`).
const US_1: &str = "8.8.8.8";
const US_2: &str = "8.8.4.4";
const DE: &str = "85.214.0.1";
const JP: &str = "133.242.0.1";

/// How a viewer sends its session id.
#[derive(Clone, Copy)]
enum CmcdForm {
    Query,
    Header,
}

/// A simulated player: fetches the media playlist and its newest complete part every
/// [`POLL`] until told to stop.
struct Viewer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// When its first request went out.
    started: Instant,
}

impl Viewer {
    fn start(
        base: &str,
        stream: &str,
        sid: &str,
        form: CmcdForm,
        forwarded: Option<&str>,
    ) -> Viewer {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (base, stream, sid, forwarded) = (
            base.to_owned(),
            stream.to_owned(),
            sid.to_owned(),
            forwarded.map(str::to_owned),
        );
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = client();
            let cmcd = format!("br=800,sid=\"{sid}\"");
            let query = format!("CMCD={}", urlencode(&cmcd));
            let get = |path: String| {
                let mut url = format!("{base}{path}");
                let mut request;
                match form {
                    CmcdForm::Query => {
                        url += if url.contains('?') { "&" } else { "?" };
                        url += &query;
                        request = client.get(url);
                    }
                    CmcdForm::Header => {
                        request = client
                            .get(url)
                            .header("CMCD-Session", format!("sid=\"{sid}\""))
                            .header("CMCD-Object", "br=800");
                    }
                }
                if let Some(f) = &forwarded {
                    request = request.header("X-Forwarded-For", f);
                }
                request
            };
            while !flag.load(Ordering::Relaxed) {
                let playlist = get(format!("/live/{stream}/source/index.m3u8"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(playlist.status(), 200);
                let text = playlist.text().await.unwrap();
                let part = text
                    .lines()
                    .filter(|l| l.starts_with("#EXT-X-PART:"))
                    .filter_map(|l| attr(l, "URI"))
                    .next_back()
                    .map(str::to_owned);
                if let Some(uri) = part {
                    let r = get(format!("/live/{stream}/source/{uri}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{uri}");
                    r.bytes().await.unwrap();
                }
                tokio::time::sleep(POLL).await;
            }
        });
        Viewer {
            stop,
            task,
            started,
        }
    }

    async fn leave(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_countries_watch_time_and_beacons() {
    let server = Server::start(&[
        "--stream",
        "an=an-key-0001",
        "--trusted-proxy",
        "127.0.0.1",
        "--analytics-window-ms",
        &WINDOW_MS.to_string(),
    ]);
    let mut ffmpeg = publish(&format!("{}/live/an-key-0001", server.rtmp), 60);
    get_when_ready(&server.url("/live/an/master.m3u8"), Duration::from_secs(20)).await;
    let before_viewers = analytics::now_ms();

    // K = 6 viewers: 3 with CMCD in the query, 3 in headers; 4 behind the (trusted)
    // loopback proxy with addresses in the US, DE and JP, 2 direct (loopback: unknown).
    let viewers = vec![
        Viewer::start(&server.http, "an", "v0", CmcdForm::Query, Some(US_1)),
        Viewer::start(&server.http, "an", "v1", CmcdForm::Query, Some(US_2)),
        Viewer::start(&server.http, "an", "v2", CmcdForm::Query, None),
        Viewer::start(
            &server.http,
            "an",
            "v3",
            CmcdForm::Header,
            Some(&format!("203.0.113.7, {DE}")),
        ),
        Viewer::start(&server.http, "an", "v4", CmcdForm::Header, Some(JP)),
        Viewer::start(&server.http, "an", "v5", CmcdForm::Header, None),
    ];
    tokio::time::sleep(Duration::from_secs(6)).await;

    let summary = stream_summary(&server, "an").await;
    let watched_de = viewers[3].started.elapsed();
    assert_eq!(summary["concurrent_viewers"], 6, "{summary:#}");
    // The six, and the harness's wait for the playlist (no CMCD, no player id: one
    // session hashed from its address and user agent, gone quiet before the viewers).
    assert_eq!(summary["unique_viewers"], 7, "{summary:#}");
    assert_eq!(
        concurrent_by(&summary, "by_country"),
        BTreeMap::from([
            ("DE".into(), 1),
            ("JP".into(), 1),
            ("US".into(), 2),
            ("unknown".into(), 2),
        ])
    );
    assert_eq!(
        concurrent_by(&summary, "by_rendition"),
        BTreeMap::from([("source".into(), 6)])
    );
    assert_eq!(summary["by_edge"].as_array().unwrap().len(), 1);
    // Watch time of the one viewer in DE: from its first request to now, give or take
    // one polling interval (its last request may be up to one poll old).
    let de = breakdown(&summary, "by_country", "DE");
    let watch = Duration::from_millis(de["watch_time_ms"].as_u64().unwrap());
    let slack = POLL + Duration::from_millis(600);
    assert!(
        watch + slack >= watched_de && watch <= watched_de,
        "DE watched {watch:?}, expected {watched_de:?} within {slack:?}"
    );
    // The average bitrate is the CMCD `br` the viewers sent with their parts.
    assert_eq!(summary["avg_bitrate_kbps"], 800.0);
    assert!(summary["bytes_served"].as_u64().unwrap() > 10_000);
    // The viewers got no errors; the readiness probe above did (404, 503 while the
    // stream started), and those count in the stream's total.
    assert_eq!(
        breakdown(&summary, "by_rendition", "source")["error_rate"],
        0.0
    );
    assert!(summary["errors"].as_u64().unwrap() > 0);

    // Three viewers leave: after the window they are no longer concurrent, but still
    // among the unique viewers.
    let mut viewers = viewers.into_iter();
    let stay: Vec<Viewer> = viewers.by_ref().take(3).collect();
    for v in viewers {
        v.leave().await;
    }
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 800)).await;
    let summary = stream_summary(&server, "an").await;
    assert_eq!(summary["concurrent_viewers"], 3, "{summary:#}");
    assert_eq!(summary["unique_viewers"], 7);
    assert_eq!(
        concurrent_by(&summary, "by_country"),
        BTreeMap::from([
            ("DE".into(), 0),
            ("JP".into(), 0),
            ("US".into(), 2),
            ("unknown".into(), 1)
        ])
    );

    // Beacons: one good batch, three refused (bad JSON, too large: 413, a negative
    // duration).
    let client = client();
    let beacons = server.url("/api/analytics/beacons");
    let r = client
        .post(&beacons)
        .header("Origin", "https://player.example")
        .json(&json!({"beacons": [{
            "stream": "an", "session_id": "v0", "startup_ms": 750, "play_ms": 9000,
            "rebuffer_count": 1, "rebuffer_ms": 1000, "live_latency_ms": 1800,
            "cmcd": {"br": 800, "sid": "v0", "st": "l", "ot": "av"}
        }]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let refused = [
        (
            client
                .post(&beacons)
                .body("{not json")
                .header("content-type", "application/json"),
            400,
            None,
        ),
        (
            client.post(&beacons).body(format!(
                "{{\"beacons\":[{{\"stream\":\"{}\"}}]}}",
                "x".repeat(100_000)
            )),
            413,
            None,
        ),
        (
            client.post(&beacons).json(
                &json!({"beacons": [{"stream": "an", "session_id": "v1", "rebuffer_ms": -20}]}),
            ),
            400,
            Some("beacons[0].rebuffer_ms"),
        ),
    ];
    for (request, status, field) in refused {
        // The server answers 413 from the Content-Length, without reading the body, and
        // closes: the close can reset the connection before the client reads the answer
        // (nginx lingers for this; hyper does not), or leave the client's pool holding
        // a closed connection for the next case, so a transport error is retried.
        let mut attempts = 0;
        let r = loop {
            let attempt = request.try_clone().expect("a body in memory").send().await;
            attempts += 1;
            match attempt {
                Ok(r) => break r,
                Err(e) if attempts < 5 => eprintln!("{status} case, retried: {e}"),
                Err(e) => panic!("the {status} case: {e}"),
            }
        };
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["field"].as_str(), field, "{body}");
    }
    // Preflight from a player on another origin.
    let r = client
        .request(reqwest::Method::OPTIONS, &beacons)
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let summary = stream_summary(&server, "an").await;
    // Only the accepted beacon counts.
    assert_eq!(summary["startups"], 1, "{summary:#}");
    assert_eq!(summary["startup_p50_ms"], 750);
    assert_eq!(summary["startup_p95_ms"], 750);
    assert_eq!(summary["rebuffer_ratio"], 0.1);
    assert_eq!(summary["avg_live_latency_ms"], 1800.0);
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert_eq!(
        metric_sum(&metrics, "analytics_beacons_rejected_total"),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "analytics_beacons_accepted_total"),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "analytics_concurrent_viewers{stream=\"an\"}"),
        3.0
    );

    // Time series and the platform summary.
    let r = client
        .get(server.url(&format!(
            "/api/analytics/streams/an/timeseries?metric=viewers&by=country&from={before_viewers}&step=60000"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let series: Value = r.json().await.unwrap();
    let keys: Vec<&str> = series["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["DE", "JP", "US", "unknown"], "{series:#}");
    let us_total: f64 = series["series"][2]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[1].as_f64())
        .sum();
    assert!(us_total >= 2.0, "{series:#}");
    let r = client
        .get(server.url("/api/analytics/streams/an/timeseries?metric=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let platform: Value = client
        .get(server.url("/api/analytics/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(platform["concurrent_viewers"], 3, "{platform:#}");
    assert_eq!(platform["streams"][0]["value"], "an");
    assert_eq!(platform["streams"][0]["unique_viewers"], 7);

    // One OpenAPI document for both APIs.
    let doc: Value = client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/streams",
        "/api/analytics/beacons",
        "/api/analytics/summary",
        "/api/analytics/streams/{name}/summary",
        "/api/analytics/streams/{name}/timeseries",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
    // The stream summary's edges (which pipeline each edge uses) are documented.
    assert!(
        doc["components"]["schemas"]["EdgeUpstream"]["properties"]["upstream"].is_object(),
        "EdgeUpstream not in the OpenAPI document"
    );
    // (The summary flattens its figures in, so its own fields sit in an `allOf`.)
    let summary_schema = doc["components"]["schemas"]["StreamSummary"].to_string();
    assert!(
        summary_schema.contains("\"edges\"") && summary_schema.contains("EdgeUpstream"),
        "StreamSummary.edges not in the OpenAPI document: {summary_schema}"
    );

    for v in stay {
        v.leave().await;
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_goes_on_when_analytics_is_down() {
    // A remote analytics server that is not there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let server = Server::start(&["--stream", "down=down-key-01", "--analytics-url", &dead]);
    let mut ffmpeg = publish(&format!("{}/live/down-key-01", server.rtmp), 30);
    get_when_ready(
        &server.url("/live/down/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let viewer = Viewer::start(&server.http, "down", "d0", CmcdForm::Query, None);
    // The viewer asserts every answer is 200 while the events cannot be delivered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metric_sum(
            &metrics,
            "analytics_events_dropped_total{reason=\"send_failed\"}"
        ) > 0.0,
        "{metrics}"
    );
    assert!(metric_sum(&metrics, "analytics_events_emitted_total") > 0.0);
    // Analytics is remote: this server has no analytics API.
    assert_eq!(get_text(&server.url("/api/analytics/summary")).await.0, 404);
    // Every answer the viewer got was a 200 (it asserts so) while events were lost.
    viewer.leave().await;
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rivulet_analytics_alone_receives_events_from_serve() {
    let analytics = AnalyticsServer::start(&["--analytics-token", "an-token-123456"]);
    let server = Server::start(&[
        "--stream",
        "rem=rem-key-001",
        "--analytics-url",
        &analytics.http,
        "--analytics-token",
        "an-token-123456",
        "--analytics-window-ms",
        "3000",
    ]);
    let mut ffmpeg = publish(&format!("{}/live/rem-key-001", server.rtmp), 30);
    get_when_ready(
        &server.url("/live/rem/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let a = Viewer::start(&server.http, "rem", "r0", CmcdForm::Header, None);
    let b = Viewer::start(&server.http, "rem", "r1", CmcdForm::Query, None);
    // Batches go once a second; the analytics server counts both viewers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get_text(&format!(
            "{}/api/analytics/streams/rem/summary",
            analytics.http
        ))
        .await;
        assert_eq!(status, 200, "{text}");
        let summary: Value = serde_json::from_str(&text).unwrap();
        if summary["concurrent_viewers"] == 2 {
            assert_eq!(summary["by_edge"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(Instant::now() < deadline, "{summary:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Without the token, events are refused.
    let r = client()
        .post(format!("{}/api/analytics/events", analytics.http))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    a.leave().await;
    b.leave().await;
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

/// A running `rivulet analytics`, killed on drop.
struct AnalyticsServer {
    child: Child,
    http: String,
}

impl AnalyticsServer {
    fn start(extra: &[&str]) -> AnalyticsServer {
        let data = tempfile::tempdir().unwrap().keep();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["analytics", "--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rivulet analytics");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let http = loop {
            let line = lines
                .next()
                .expect("rivulet analytics exited before printing its address")
                .unwrap();
            if let Some(rest) = line.trim().strip_prefix("HTTP: ") {
                break rest.trim_end_matches('/').to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        AnalyticsServer { child, http }
    }
}

impl Drop for AnalyticsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn stream_summary(server: &Server, stream: &str) -> Value {
    let (status, text) =
        get_text(&server.url(&format!("/api/analytics/streams/{stream}/summary"))).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `value → concurrent_viewers` of one breakdown.
fn concurrent_by(summary: &Value, by: &str) -> BTreeMap<String, u64> {
    summary[by]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["value"].as_str().unwrap().to_owned(),
                b["concurrent_viewers"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn breakdown<'a>(summary: &'a Value, by: &str, value: &str) -> &'a Value {
    summary[by]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["value"] == value)
        .unwrap_or_else(|| panic!("no {value} in {by}: {summary:#}"))
}

/// The sum of the samples of a Prometheus series whose name (with labels, if given)
/// starts a line.
fn metric_sum(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(series)
                && (series.contains('{') || l[series.len()..].starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_through_an_edge_are_counted_by_the_edge() {
    // The edge POSTs its events to the server's analytics, with the token that lets
    // it (without one, the server takes none over HTTP).
    let server = Server::start(&[
        "--stream",
        "ed=ed-key-0001",
        "--analytics-window-ms",
        "3000",
        "--analytics-token",
        "edge-events-token-1",
    ]);
    let edge = EdgeNode::local(
        &[&server.http],
        &[
            "--analytics-url",
            &server.http,
            "--analytics-token",
            "edge-events-token-1",
        ],
    );
    let edge_port = edge.url.rsplit(':').next().unwrap().to_owned();
    let mut ffmpeg = publish(&format!("{}/live/ed-key-0001", server.rtmp), 40);
    get_when_ready(&edge.url("/live/ed/master.m3u8"), Duration::from_secs(20)).await;
    let viewers = [
        Viewer::start(&edge.url, "ed", "e0", CmcdForm::Query, None),
        Viewer::start(&edge.url, "ed", "e1", CmcdForm::Header, None),
        Viewer::start(&server.http, "ed", "o0", CmcdForm::Header, None),
    ];
    // The edge's batches arrive once a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let summary = loop {
        let summary = stream_summary(&server, "ed").await;
        if summary["concurrent_viewers"] == 3 && summary["by_edge"].as_array().unwrap().len() == 2 {
            break summary;
        }
        assert!(Instant::now() < deadline, "{summary:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Two viewers on the edge, one on the origin; the edge's own requests to the
    // origin (cache fills) are not viewers.
    let by_edge = concurrent_by(&summary, "by_edge");
    let (edge_name, on_edge) = by_edge
        .iter()
        .find(|(name, _)| name.ends_with(&format!(":{edge_port}")))
        .unwrap_or_else(|| panic!("no edge on port {edge_port}: {summary:#}"));
    assert_eq!(*on_edge, 2, "{edge_name}: {summary:#}");
    assert_eq!(by_edge.values().sum::<u64>(), 3);
    // The three, and the readiness probe (through the edge).
    assert_eq!(summary["unique_viewers"], 4, "{summary:#}");
    // Which pipeline the edge serves from: its one upstream, the origin. The origin's
    // own events name no upstream, so it is not listed.
    let edges = summary["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{summary:#}");
    assert_eq!(edges[0]["edge"], edge_name.as_str(), "{summary:#}");
    assert_eq!(edges[0]["upstream"], server.http.as_str(), "{summary:#}");
    let seen = edges[0]["last_seen_ms"].as_i64().unwrap();
    assert!(
        seen >= summary["from"].as_i64().unwrap()
            && seen <= summary["to"].as_i64().unwrap() + 60_000,
        "{summary:#}"
    );
    for v in viewers {
        v.leave().await;
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}
