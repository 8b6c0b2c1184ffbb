//! The crate graph keeps the architecture's rules (docs/architecture.md, "Allowed
//! dependencies between crates"): dependencies point down the pipeline, the data path
//! never depends on the control plane, and the control plane uses only shared
//! foundations of the data path. A crate that gains a forbidden dependency fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace crate and the workspace crates it may depend on (normal
/// dependencies; dev-dependencies are free). Keep in step with docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    // foundations: sans-IO types, the key-check trait both sides see, the HTTP
    // serving loop every role uses
    ("media", &[]),
    ("access", &[]),
    ("httpd", &[]),
    // TLS: certificate files, reloading, rustls configs for HTTPS, RTMPS and clients
    ("tls", &[]),
    // the control plane's foundation: the database, the migration loader, secret files
    ("db", &[]),
    // the data path, in pipeline order
    ("hub", &["media"]),
    ("rtmp", &["media"]),
    // sans-IO MPEG-TS demuxing (what SRT carries)
    ("ts", &["media"]),
    ("source", &["media"]),
    ("encoder", &["media", "rtmp", "source", "tls"]),
    ("ingest", &["access", "hub", "media", "rtmp", "ts"]),
    ("transcode", &["encoder", "hub", "media", "source"]),
    ("restream", &["encoder", "hub", "media", "rtmp"]),
    ("package", &["media"]),
    // sans-IO WebRTC sessions on str0m (WHEP): H.264/Opus out
    ("webrtc", &["media"]),
    (
        "origin",
        &["access", "hub", "httpd", "media", "package", "record"],
    ),
    // the WebRTC server: the UDP driver, the WHEP/WHIP resources, the AAC/Opus taps;
    // WHIP is an ingest (its limits are ingest's)
    (
        "webrtc-server",
        &[
            "access",
            "hub",
            "ingest",
            "media",
            "origin",
            "transcode",
            "webrtc",
        ],
    ),
    ("edge", &["access", "httpd", "media", "package"]),
    // the recorder: the packager's complete segments to an object store, VOD after live
    ("record", &["access", "media", "package"]),
    // the control plane: foundations only, never the data path
    ("meta", &["access", "db", "media"]),
    ("analytics", &["db", "media"]),
    ("web", &["media", "meta"]),
    // test support
    ("pgtest", &[]),
];

/// Crates that wire everything together and may depend on any of ours.
const WIRING: &[&str] = &["rivulet", "rivulet-bench"];

/// The data path must not pull these in, even indirectly.
const CONTROL_PLANE_ONLY: &[&str] = &[
    "meta",
    "analytics",
    "web",
    "db",
    "sqlx",
    "utoipa",
    "maxminddb",
];
const DATA_PATH: &[&str] = &[
    "hub",
    "rtmp",
    "ts",
    "source",
    "encoder",
    "ingest",
    "transcode",
    "restream",
    "package",
    "origin",
    "edge",
    "record",
    "webrtc",
    "webrtc-server",
];
/// Sans-IO crates: no async runtime.
const SANS_IO: &[&str] = &["media", "rtmp", "ts", "package", "access", "webrtc"];

struct Graph {
    workspace: BTreeSet<String>,
    /// Normal (non-dev, non-build) dependencies by package name.
    deps: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let name_of: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    let workspace = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|id| name_of[id.as_str().expect("member id")].clone())
        .collect();
    let mut deps = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let name = name_of[node["id"].as_str().expect("node id")].clone();
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().expect("pkg")].clone())
            .collect();
        deps.entry(name)
            .or_insert_with(BTreeSet::new)
            .extend(normal);
    }
    Graph { workspace, deps }
}

impl Graph {
    fn closure(&self, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_owned()];
        while let Some(name) = todo.pop() {
            for dep in self.deps.get(&name).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }
}

#[test]
fn every_crate_depends_only_on_the_crates_the_architecture_allows() {
    let graph = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for krate in &graph.workspace {
        if WIRING.contains(&krate.as_str()) {
            continue;
        }
        let Some(allowed) = allowed.get(krate.as_str()) else {
            violations.push(format!(
                "{krate} is not in the table: add it to ALLOWED here and to docs/architecture.md"
            ));
            continue;
        };
        for dep in &graph.deps[krate] {
            if graph.workspace.contains(dep) && !allowed.contains(&dep.as_str()) {
                violations.push(format!("{krate} -> {dep} is not allowed"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_data_path_compiles_no_control_plane() {
    let graph = graph();
    let mut violations = Vec::new();
    for krate in DATA_PATH {
        let closure = graph.closure(krate);
        for forbidden in CONTROL_PLANE_ONLY {
            if closure.contains(*forbidden) {
                violations.push(format!("{krate} pulls in {forbidden}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn sans_io_crates_have_no_async_runtime() {
    let graph = graph();
    let mut violations = Vec::new();
    for krate in SANS_IO {
        for runtime in ["tokio", "async-std", "smol"] {
            if graph.closure(krate).contains(runtime) {
                violations.push(format!("{krate} pulls in {runtime}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
