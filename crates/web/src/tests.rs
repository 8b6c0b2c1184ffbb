#![allow(clippy::unwrap_used)]

use std::io::Read as _;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;

async fn get(
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let app = router(WebConfig {
        rtmp_port: Some(1935),
        analytics: AnalyticsLink::Local,
        dvr_record_default: Some(false),
    });
    let mut request = Request::get(path);
    for (k, v) in headers {
        request = request.header(k, *v);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn watch_page_is_html_with_a_video_and_its_config() {
    let (status, h, body) = get("/watch/studio", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("<video"), "{html}");
    assert!(html.contains("\"rtmpPort\":1935"), "{html}");
    assert!(html.contains(&format!("/assets/{}/watch.js", asset_version())));
    assert!(!html.contains("__VERSION__") && !html.contains("__CONFIG__"));
}

#[tokio::test]
async fn pages_carry_a_policy_that_runs_only_their_own_scripts() {
    let (_, h, body) = get("/watch/studio", &[]).await;
    let policy = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    let html = String::from_utf8(body).unwrap();
    // The watch page's one inline script (it starts the playlist's preload) is allowed
    // by its hash, and nothing else inline is.
    let inline = html
        .split("<script>")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    assert!(inline.contains("preload"), "{inline}");
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(inline));
    assert!(
        policy.contains(&format!("script-src 'self' 'sha256-{hash}';")),
        "{policy}"
    );
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{policy}"
    );
    assert!(
        policy.contains("frame-ancestors *"),
        "the player can be embedded: {policy}"
    );
    let (_, h, _) = get("/dashboard", &[]).await;
    let policy = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    // A 304 says the same (a cache may refresh its stored headers from it).
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    let (status, h, _) = get("/dashboard", &[(header::IF_NONE_MATCH, etag.as_str())]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(h.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[test]
fn a_remote_analytics_server_may_be_called() {
    let router_policy = |analytics| {
        let c = WebConfig {
            rtmp_port: None,
            analytics,
            dvr_record_default: None,
        };
        let origin = match &c.analytics {
            AnalyticsLink::Remote(url) => csp::origin_of(url),
            _ => None,
        };
        Page::render(
            assets::WATCH_HTML,
            &PageConfig::new(&c),
            origin.as_deref(),
            Framing::Anywhere,
        )
        .csp
    };
    let p = router_policy(AnalyticsLink::Remote("http://stats.example:8090/".into()));
    assert!(
        p.to_str()
            .unwrap()
            .contains("connect-src 'self' http://stats.example:8090;"),
        "{p:?}"
    );
    let p = router_policy(AnalyticsLink::Local);
    assert!(p.to_str().unwrap().contains("connect-src 'self';"), "{p:?}");
}

#[tokio::test]
async fn pages_for_impossible_names_are_not_found() {
    for path in [
        "/watch/Not%20A%20Name",
        "/watch/-x",
        "/dashboard/streams/a%2Fb",
    ] {
        let (status, h, _) = get(path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
    let (status, _, body) = get("/dashboard/streams/studio", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().contains("dashboard.js"));
}

#[tokio::test]
async fn assets_are_gzipped_when_accepted_and_revalidate_with_304() {
    let path = format!("/assets/{}/vendor/hls.min.mjs", asset_version());
    let (status, h, gz) = get(&path, &[(header::ACCEPT_ENCODING, "gzip, br")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(
        h[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(h[header::VARY], "Accept-Encoding");
    let etag = h[header::ETAG].to_str().unwrap().to_owned();

    let (status, plain_h, plain) = get(&path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(plain_h.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(gunzip(&gz), plain);
    assert!(String::from_utf8_lossy(&plain).contains("lowLatencyMode"));
    assert_ne!(plain_h[header::ETAG], etag);

    let (status, h, body) = get(
        &path,
        &[
            (header::ACCEPT_ENCODING, "gzip"),
            (header::IF_NONE_MATCH, &etag),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(h[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn every_asset_the_pages_name_exists_with_its_type() {
    for (name, ty) in [
        ("watch.js", "text/javascript; charset=utf-8"),
        ("player.js", "text/javascript; charset=utf-8"),
        ("timestrip.js", "text/javascript; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("watch.css", "text/css; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
        ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    ] {
        let (status, h, _) = get(&format!("/assets/{}/{name}", asset_version()), &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(h[header::CONTENT_TYPE], ty, "{name}");
    }
    // Another version still gets the file, but not for keeps.
    let (status, h, _) = get("/assets/old/watch.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let (status, _, _) = get(&format!("/assets/{}/nope.js", asset_version()), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn config_cannot_break_out_of_its_script_element() {
    #[derive(Serialize)]
    struct Evil {
        x: &'static str,
    }
    let page = Page::render(
        "<script type=\"application/json\">__CONFIG__</script>",
        &Evil {
            x: "</script><script>alert(1)</script>",
        },
        None,
        Framing::Nowhere,
    );
    let html = String::from_utf8(page.raw.to_vec()).unwrap();
    assert_eq!(html.matches("</script>").count(), 1, "{html}");
    assert_eq!(gunzip(&page.gzip), page.raw.to_vec());
}

#[test]
fn analytics_link_in_the_page_config() {
    let json = |analytics| {
        serde_json::to_value(PageConfig::new(&WebConfig {
            rtmp_port: None,
            analytics,
            dvr_record_default: None,
        }))
        .unwrap()
    };
    assert_eq!(json(AnalyticsLink::Local)["analytics"], "");
    assert_eq!(
        json(AnalyticsLink::Remote("http://a:8090/".into()))["analytics"],
        "http://a:8090"
    );
    assert!(json(AnalyticsLink::Off)["analytics"].is_null());
}
