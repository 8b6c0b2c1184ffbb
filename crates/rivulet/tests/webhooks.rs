//! Webhooks and the publish authorisation hook against a real HTTP receiver started
//! here (axum on loopback): a real ffmpeg publishes; the receiver checks every
//! signature with its own HMAC, answers the first delivery 500 and the retry 200, and
//! the delivery log shows both; the authorisation hook refuses one stream (ffmpeg exits
//! with the error) and allows another.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::*;

const TOKEN: &str = "e2e-admin-token-0123";
const API_SECRET: &str = "whsec-api-0123456789abcdef";
const DECLARED_SECRET: &str = "whsec-declared-0123456789";

/// What the receiver got: path, headers, body.
#[derive(Clone, Debug)]
struct Received {
    path: &'static str,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn record(&self, path: &'static str, headers: HeaderMap, body: Bytes) -> usize {
        let mut got = self.got.lock().unwrap();
        got.push(Received {
            path,
            headers,
            body,
        });
        got.iter().filter(|r| r.path == path).count()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|r| r.path == path).cloned().collect()
    }
}

/// Starts the receiver; answers its base URL.
async fn start_receiver(receiver: Receiver) -> String {
    async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        // The first delivery fails, so that the sender must retry.
        if r.record("/hook", headers, body) == 1 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    async fn declared(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        r.record("/declared", headers, body);
        StatusCode::NO_CONTENT
    }
    async fn auth(
        State(r): State<Receiver>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        r.record("/auth", headers, body);
        if request["stream"] == "blocked" {
            (StatusCode::FORBIDDEN, "this channel is suspended")
        } else {
            (StatusCode::OK, "")
        }
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/declared", post(declared))
        .route("/auth", post(auth))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_logged_and_the_hook_decides_publishes() {
    let receiver = Receiver::default();
    let base = start_receiver(receiver.clone()).await;
    let server = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "allowed=allowed-key-0123",
        "--stream",
        "blocked=blocked-key-0123",
        "--grace-period-ms",
        "1000",
        "--on-publish-url",
        &format!("{base}/auth"),
        "--on-publish-secret",
        DECLARED_SECRET,
        "--webhook",
        &format!("{base}/declared"),
        "--webhook-secret",
        DECLARED_SECRET,
        "--record-default",
    ]);
    let client = client();

    // A hook added through the API: its secret is shown once, then redacted.
    let response = client
        .post(server.url("/api/webhooks"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "url": format!("{base}/hook"),
            "events": ["stream.published", "stream.unpublished"],
            "secret": API_SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["signing_secret"], API_SECRET);
    let id = created["id"].as_i64().unwrap();
    let listed: Value = client
        .get(server.url("/api/webhooks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains(API_SECRET), "{listed}");
    assert!(!listed.to_string().contains(DECLARED_SECRET), "{listed}");
    // Bad input gets a reason naming the field.
    let response = client
        .post(server.url("/api/webhooks"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": "ftp://x", "events": ["stream.published"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(response.json::<Value>().await.unwrap()["field"], "url");
    let response = client
        .get(server.url("/api/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The hook refuses "blocked": ffmpeg exits with an error, the log says why.
    let mut refused = publish_plain(&format!("{}/live/blocked-key-0123", server.rtmp), 5);
    let status = wait_exit(&mut refused, Duration::from_secs(15)).expect("ffmpeg kept running");
    assert!(
        !status.success(),
        "ffmpeg should fail when the hook refuses"
    );
    let mut ffmpeg_err = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut ffmpeg_err).unwrap();
    assert!(
        ffmpeg_err.contains("authorisation hook")
            && ffmpeg_err.contains("this channel is suspended"),
        "the encoder is told why: {ffmpeg_err}"
    );
    let log = server.log();
    assert!(
        log.contains("publish refused") && log.contains("this channel is suspended"),
        "the refusal and the hook's reason are logged:\n{log}"
    );
    let auth = receiver.on("/auth");
    assert_eq!(auth.len(), 1);
    let asked: Value = serde_json::from_slice(&auth[0].body).unwrap();
    assert_eq!(asked["stream"], "blocked");
    assert_eq!(asked["client_ip"], "127.0.0.1");
    assert!(!String::from_utf8_lossy(&auth[0].body).contains("blocked-key"));
    assert!(
        verified(&auth[0], DECLARED_SECRET),
        "the hook's request is signed"
    );

    // It allows "allowed": the publish goes ahead and the events go out.
    let mut allowed = publish_plain(&format!("{}/live/allowed-key-0123", server.rtmp), 4);
    get_when_ready(
        &server.url("/live/allowed/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let status = wait_exit(&mut allowed, Duration::from_secs(30)).expect("ffmpeg ended");
    assert!(status.success(), "the allowed publish works");

    // stream.published: 500 first, then 200 after the backoff; both signed, same id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hooks = loop {
        let got = receiver.on("/hook");
        let unpublished = got.iter().any(|r| event_of(r) == "stream.unpublished");
        if got.len() >= 3 && unpublished {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "expected a failed and a retried stream.published and a stream.unpublished, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for r in &hooks {
        assert!(verified(r, API_SECRET), "signature of {r:?}");
        assert!(!verified(r, DECLARED_SECRET));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let (first, retry) = (&hooks[0], &hooks[1]);
    assert_eq!(event_of(first), "stream.published");
    assert_eq!(event_of(retry), "stream.published");
    assert_eq!(
        first.headers["rivulet-delivery"],
        retry.headers["rivulet-delivery"]
    );
    let body: Value = serde_json::from_slice(&retry.body).unwrap();
    assert_eq!(body["stream"], "allowed");
    assert!(body["at"].as_i64().unwrap() > 0);
    assert_eq!(
        body["id"],
        retry.headers["rivulet-delivery"].to_str().unwrap()
    );

    // The declared hook got both events too, signed with its own secret.
    let declared = receiver.on("/declared");
    let events: Vec<String> = declared.iter().map(event_of).collect();
    assert!(
        events.contains(&"stream.published".to_owned()),
        "{events:?}"
    );
    assert!(declared.iter().all(|r| verified(r, DECLARED_SECRET)));

    // The publish was recorded: once its VOD is playable, recording.ready says where.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let got = receiver.on("/declared");
        if let Some(r) = got.iter().find(|r| event_of(r) == "recording.ready") {
            break serde_json::from_slice::<Value>(&r.body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no recording.ready: {:?}",
            got.iter().map(event_of).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready["stream"], "allowed", "{ready}");
    let vod = ready["vod"].as_str().unwrap();
    assert_eq!(
        vod,
        format!("/vod/{}/master.m3u8", ready["recording"].as_str().unwrap())
    );
    let (status, master) = get_text(&server.url(vod)).await;
    assert_eq!(status, 200, "{master}");
    assert!(master.contains("#EXT-X-STREAM-INF"), "{master}");

    // The delivery log: the 500 and the 200 of the same delivery, newest first.
    let log: Value = client
        .get(server.url(&format!("/api/webhooks/{id}/deliveries")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = log["deliveries"].as_array().unwrap();
    let published: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["event"] == "stream.published")
        .collect();
    assert_eq!(published.len(), 2, "{log}");
    assert_eq!(published[1]["attempt"], 1);
    assert_eq!(published[1]["status"], 500);
    assert!(published[1]["error"].as_str().unwrap().contains("500"));
    assert_eq!(published[0]["attempt"], 2);
    assert_eq!(published[0]["status"], 200);
    assert!(published[0]["error"].is_null());
    assert_eq!(published[0]["delivery"], published[1]["delivery"]);

    // Deleting the hook removes it and its log.
    let response = client
        .delete(server.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = client
        .get(server.url(&format!("/api/webhooks/{id}/deliveries")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// A hook nobody answers refuses publishes, unless the server is told to fail open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hook_fails_closed_unless_fail_open() {
    let dead = format!("http://127.0.0.1:{}/auth", free_port());
    let closed = Server::start(&[
        "--stream",
        "s=stream-key-0123",
        "--on-publish-url",
        &dead,
        "--no-analytics",
    ]);
    let open = Server::start(&[
        "--stream",
        "s=stream-key-0123",
        "--on-publish-url",
        &dead,
        "--on-publish-fail-open",
        "--no-analytics",
    ]);
    let mut refused = publish_plain(&format!("{}/live/stream-key-0123", closed.rtmp), 5);
    let status = wait_exit(&mut refused, Duration::from_secs(15)).expect("ffmpeg kept running");
    assert!(!status.success());
    let mut ffmpeg_err = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut ffmpeg_err).unwrap();
    assert!(
        ffmpeg_err.contains("authorisation hook did not answer"),
        "{ffmpeg_err}"
    );
    assert!(closed.log().contains("publish refused (fail closed)"));

    let mut allowed = publish_plain(&format!("{}/live/stream-key-0123", open.rtmp), 3);
    get_when_ready(&open.url("/live/s/master.m3u8"), Duration::from_secs(20)).await;
    assert!(wait_exit(&mut allowed, Duration::from_secs(30)).is_some_and(|s| s.success()));
    assert!(open.log().contains("publish allowed (fail open)"));
}

/// Checks the `Rivulet-Signature` of a request the way a receiver would: HMAC-SHA256
/// over `TIMESTAMP.BODY`, and a timestamp close to now.
fn verified(r: &Received, secret: &str) -> bool {
    let timestamp: i64 = r.headers["rivulet-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp).abs() < 300, "timestamp {timestamp}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    r.headers["rivulet-signature"].to_str().unwrap() == format!("v1={expected}")
}

fn event_of(r: &Received) -> String {
    r.headers["rivulet-event"].to_str().unwrap().to_owned()
}

fn publish_plain(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}
