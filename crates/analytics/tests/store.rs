//! The analytics tables on a real SQLite file and a real PostgreSQL: rollups written
//! and read back, the two migration sets sharing one database, raw events (and the
//! addresses in them) pruned after the retention while rollups stay.
//!
//! The databases come from the metadata server's test harness (the same file, shared
//! with `#[path]`): a fresh SQLite file, or a database on a throwaway PostgreSQL
//! cluster the tests start themselves.

#![allow(clippy::unwrap_used)]

#[path = "../../meta/tests/common/mod.rs"]
mod common;

use analytics::{
    Analytics, AnalyticsConfig, AnalyticsStore, DeliveryEvent, Dim, GeoIp, ObjectKind, now_ms,
};
use common::Harness;
use futures::future::BoxFuture;
use std::sync::Arc;

/// The metadata server's streams as analytics' directory, as the binary wires it.
#[derive(Debug)]
struct MetaStreams(meta::MetaStore);

impl analytics::StreamDirectory for MetaStreams {
    fn stream_names(
        &self,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, analytics::DirectoryError>> {
        Box::pin(async move { Ok(self.0.stream_names(limit).await?) })
    }
}

on_both_databases!(
    rollups_survive_and_raw_events_are_pruned,
    unknown_streams_are_refused_and_raw_rows_capped
);

fn event(ts: i64, session: &str, client: &str, status: u16) -> DeliveryEvent {
    DeliveryEvent {
        ts,
        stream: "cam".into(),
        rendition: Some("source".into()),
        kind: ObjectKind::Part,
        status,
        bytes: 10_000,
        ttfb_us: 2_000,
        client: client.parse().unwrap(),
        session: session.into(),
        edge: "node-a".into(),
        upstream: None,
        cmcd: None,
    }
}

async fn rollups_survive_and_raw_events_are_pruned(h: Harness) {
    let store = AnalyticsStore::open(h.store.database()).await.unwrap();
    // Opening again (the migrations are applied already) is fine on both sides.
    AnalyticsStore::open(h.store.database()).await.unwrap();
    let geo = analytics::default_paths()
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| GeoIp::open(&p).unwrap())
        .expect("the GeoIP database (scripts/setup.sh)");
    let an = Analytics::new(store.clone(), geo, AnalyticsConfig::default());

    // Two minutes ago and one minute ago: two sessions, one in the US.
    let t0 = analytics::minute_of(now_ms()) - 2 * analytics::MINUTE_MS;
    an.ingest_deliveries([
        event(t0, "a", "8.8.8.8", 200),
        event(t0 + 1_000, "a", "8.8.8.8", 200),
        event(t0 + 2_000, "b", "127.0.0.1", 503),
        event(t0 + analytics::MINUTE_MS + 500, "a", "8.8.8.8", 200),
    ]);
    let beacons = analytics::beacon::parse_batch(
        br#"{"beacons":[{"stream":"cam","session_id":"a","startup_ms":640,"play_ms":1000}]}"#,
    )
    .unwrap();
    an.ingest_beacons(beacons, "8.8.8.8".parse().unwrap(), None)
        .unwrap();

    let before = an.stream_summary("cam", t0, now_ms()).await.unwrap();
    an.flush(now_ms(), true).await;
    let after = an.stream_summary("cam", t0, now_ms()).await.unwrap();
    // The same figures whether the rows are open in memory or stored.
    assert_eq!(before.figures, after.figures);
    assert_eq!(after.figures.unique_viewers, 2);
    assert_eq!(after.figures.requests, 4);
    assert_eq!(after.figures.errors, 1);
    assert_eq!(after.figures.bytes_served, 40_000);
    assert_eq!(after.figures.watch_time_ms, 1_000);
    assert_eq!(after.figures.startup_p50_ms, Some(640));
    let us = after.by_country.iter().find(|b| b.value == "US").unwrap();
    assert_eq!(us.figures.unique_viewers, 1);
    assert_eq!(after.by_edge[0].value, "node-a");
    assert!(after.edges.is_empty(), "no event named an upstream");
    let platform = an.platform_summary(t0, now_ms()).await.unwrap();
    assert_eq!(platform.figures.unique_viewers, 2);
    assert_eq!(platform.streams.len(), 1);
    let series = an
        .timeseries(
            "cam",
            "requests",
            Dim::Country,
            t0,
            t0 + 2 * analytics::MINUTE_MS,
            60_000,
        )
        .await
        .unwrap();
    let us = series.series.iter().find(|s| s.key == "US").unwrap();
    assert_eq!(us.points, vec![(t0, Some(2.0)), (t0 + 60_000, Some(1.0))]);

    assert_eq!(store.raw_counts().await.unwrap(), (4, 1));
    let mut addresses = store.stored_addresses().await.unwrap();
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.1", "8.8.8.8"]);

    // Past the retention the raw events, and every address with them, are gone; the
    // rollups (no addresses) stay.
    assert_eq!(store.prune(now_ms() + 1).await.unwrap(), 5);
    assert_eq!(store.raw_counts().await.unwrap(), (0, 0));
    assert!(store.stored_addresses().await.unwrap().is_empty());
    let kept = an.stream_summary("cam", t0, now_ms()).await.unwrap();
    assert_eq!(kept.figures, after.figures);

    // Which upstream each edge serves a stream from: its latest event's, whatever
    // order the batches arrive in; events without one (older edges) change nothing.
    let via = |ts: i64, edge: &str, upstream: Option<&str>| DeliveryEvent {
        stream: "cam2".into(),
        edge: edge.into(),
        upstream: upstream.map(str::to_owned),
        ..event(ts, "c", "8.8.8.8", 200)
    };
    let now = now_ms();
    an.ingest_deliveries([
        via(now - 1_000, "e1", Some("http://b:8080")),
        via(now - 2_000, "e1", Some("http://a:8080")),
        via(now - 500, "e1", None),
        via(now - 3_000, "e2", Some("http://a:8080")),
    ]);
    let edges: Vec<_> = an
        .edge_upstreams("cam2")
        .into_iter()
        .map(|e| (e.edge, e.upstream, e.last_seen_ms))
        .collect();
    assert_eq!(
        edges,
        [
            ("e1".to_owned(), "http://b:8080".to_owned(), now - 1_000),
            ("e2".to_owned(), "http://a:8080".to_owned(), now - 3_000),
        ]
    );
    assert!(an.edge_upstreams("cam").is_empty());
    let summary = an
        .stream_summary("cam2", now - 60_000, now_ms())
        .await
        .unwrap();
    assert_eq!(summary.edges.len(), 2);

    // The metadata store still opens over a database holding our migrations.
    meta::MetaStore::open(&h.url).await.unwrap();
}

/// Beacons are taken only for streams that exist (in the metadata tables) or were
/// served; errors about made-up streams are not counted; raw rows stay under the cap
/// with the newest kept.
async fn unknown_streams_are_refused_and_raw_rows_capped(h: Harness) {
    let store = AnalyticsStore::open(h.store.database()).await.unwrap();
    let an = Analytics::new(
        store.clone(),
        GeoIp::none(),
        AnalyticsConfig {
            directory: Some(Arc::new(MetaStreams(h.store.clone()))),
            ..AnalyticsConfig::default()
        },
    );
    let client = "192.0.2.1".parse().unwrap();
    let batch = |stream: &str| {
        analytics::beacon::parse_batch(
            format!(r#"{{"beacons":[{{"stream":"cam"}},{{"stream":"{stream}","play_ms":500}}]}}"#)
                .as_bytes(),
        )
        .unwrap()
    };
    // Nothing is known yet: not even "cam".
    let refused = an.ingest_beacons(batch("ghost"), client, None).unwrap_err();
    assert_eq!(refused.field, "beacons[0].stream");
    // Declared in the metadata tables: known after the refresh.
    h.store
        .upsert_with_key(
            &meta::StreamName::parse("cam").unwrap(),
            "a-key-for-cam-0001",
        )
        .await
        .unwrap();
    an.refresh_known().await;
    let refused = an.ingest_beacons(batch("ghost"), client, None).unwrap_err();
    assert_eq!(
        (refused.field.as_str(), refused.stream.as_str()),
        ("beacons[1].stream", "ghost")
    );
    assert!(refused.to_string().contains("'ghost'"), "{refused}");
    // Served by an origin (a success): known, though not declared here.
    let now = now_ms();
    an.ingest_deliveries([DeliveryEvent {
        stream: "served".into(),
        ..event(now, "s", "192.0.2.1", 200)
    }]);
    an.ingest_beacons(batch("served"), client, None).unwrap();
    // Errors about made-up names are not counted; about known streams they are.
    an.ingest_deliveries((0..100).map(|i| DeliveryEvent {
        stream: format!("made-up-{i}"),
        ..event(now, "x", "192.0.2.1", 404)
    }));
    an.ingest_deliveries([event(now, "y", "192.0.2.1", 404)]);
    let platform = an
        .platform_summary(now - 60_000, now_ms() + 1)
        .await
        .unwrap();
    let names: Vec<&str> = platform.streams.iter().map(|b| b.value.as_str()).collect();
    assert_eq!(names, ["cam", "served"]);
    assert_eq!(platform.figures.errors, 1);

    // The cap on raw rows: the oldest go, the newest stay.
    an.flush(now_ms(), false).await;
    let (deliveries, beacons) = store.raw_counts().await.unwrap();
    assert_eq!((deliveries, beacons), (2, 2));
    for i in 0..5 {
        an.ingest_deliveries([event(now + i, "z", "192.0.2.1", 200)]);
    }
    an.flush(now_ms(), false).await;
    assert_eq!(store.cap_raw(3).await.unwrap(), 4);
    assert_eq!(store.raw_counts().await.unwrap(), (3, 2));
    assert_eq!(store.cap_raw(3).await.unwrap(), 0);

    // However many values a window holds, a summary lists and a time series draws at
    // most `max_values` per breakdown, the rest summed as "other".
    let an = Analytics::new(
        store.clone(),
        GeoIp::none(),
        AnalyticsConfig {
            aggregator: analytics::AggregatorConfig {
                max_values: 3,
                ..Default::default()
            },
            ..AnalyticsConfig::default()
        },
    );
    let t0 = analytics::minute_of(now_ms()) - 3 * analytics::MINUTE_MS;
    // Three minutes, three new renditions each: nine values in the window.
    for minute in 0..3 {
        an.ingest_deliveries((0..3).map(|i| DeliveryEvent {
            stream: "wide".into(),
            rendition: Some(format!("r{minute}-{i}")),
            ..event(
                t0 + minute * analytics::MINUTE_MS,
                &format!("v{minute}-{i}"),
                "192.0.2.1",
                200,
            )
        }));
    }
    let summary = an.stream_summary("wide", t0, now_ms()).await.unwrap();
    assert_eq!(summary.by_rendition.len(), 3, "{:?}", summary.by_rendition);
    assert!(
        summary
            .by_rendition
            .iter()
            .any(|b| b.value == analytics::OTHER)
    );
    let requests: u64 = summary
        .by_rendition
        .iter()
        .map(|b| b.figures.requests)
        .sum();
    assert_eq!(requests, 9);
    let series = an
        .timeseries("wide", "requests", Dim::Rendition, t0, now_ms(), 60_000)
        .await
        .unwrap();
    assert_eq!(series.series.len(), 3);
}
