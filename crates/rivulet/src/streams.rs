//! `rivulet streams …`: the metadata API from a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use meta::api::ErrorBody;
use meta::{Stream, StreamPage, StreamWithKey};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Options shared by every `streams` command.
#[derive(Args, Debug, Clone)]
pub(crate) struct StreamsArgs {
    /// Base URL of the Rivulet HTTP server (`serve` or `meta`).
    #[arg(
        long,
        env = "RIVULET_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,

    /// The admin token (needed by every command but `list` and `show`). If not given,
    /// it is read from DATA_DIR/admin-token, where a local server keeps a generated one.
    #[arg(
        long,
        env = "RIVULET_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,

    /// Where to look for a generated admin token. [default: ./rivulet-data]
    #[arg(long, env = "RIVULET_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,

    /// Print the API's JSON answers instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: StreamsCommand,
}

#[derive(Subcommand, Debug, Clone)]
enum StreamsCommand {
    /// Create a stream and print its secret key (shown only this once).
    Create {
        /// Public name: lowercase letters, digits, '-' or '_' (it appears in play URLs).
        name: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A tag. Repeatable.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List streams (all pages).
    List {
        /// Only streams with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only live streams.
        #[arg(long, conflicts_with = "offline")]
        live: bool,
        /// Only offline streams.
        #[arg(long)]
        offline: bool,
    },
    /// Show one stream.
    Show { name: String },
    /// Change a stream's title, description or tags.
    Update {
        name: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Add a tag. Repeatable.
        #[arg(long = "add-tag", value_name = "TAG")]
        add_tags: Vec<String>,
        /// Remove a tag. Repeatable.
        #[arg(long = "remove-tag", value_name = "TAG")]
        remove_tags: Vec<String>,
    },
    /// Give a stream a new secret key and print it; the old key stops working.
    RotateKey { name: String },
    /// Delete a stream.
    Delete { name: String },
}

/// Runs one `streams` command.
pub(crate) async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    match &args.command {
        StreamsCommand::Create {
            name,
            title,
            description,
            tags,
        } => {
            let body =
                json!({"name": name, "title": title, "description": description, "tags": tags});
            let created: StreamWithKey = client
                .call(Method::POST, "/api/streams", Some(body), true)
                .await?;
            client.print_keyed("created", &created)
        }
        StreamsCommand::List { tag, live, offline } => {
            let mut streams = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut query = vec![("limit", "500".to_owned())];
                query.extend(tag.clone().map(|t| ("tag", t)));
                if *live || *offline {
                    query.push(("live", live.to_string()));
                }
                query.extend(after.take().map(|a| ("after", a)));
                let query = serde_urlencoded::to_string(&query)?;
                let page: StreamPage = client
                    .call(Method::GET, &format!("/api/streams?{query}"), None, false)
                    .await?;
                streams.extend(page.streams);
                match page.next_cursor {
                    Some(cursor) => after = Some(cursor),
                    None => break,
                }
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&streams)?);
            } else {
                print_table(&streams);
            }
            Ok(())
        }
        StreamsCommand::Show { name } => {
            let stream: Stream = client
                .call(Method::GET, &stream_path(name), None, false)
                .await?;
            client.print_stream(&stream)
        }
        StreamsCommand::Update {
            name,
            title,
            description,
            add_tags,
            remove_tags,
        } => {
            let body = json!({
                "title": title, "description": description,
                "add_tags": add_tags, "remove_tags": remove_tags,
            });
            let stream: Stream = client
                .call(Method::PATCH, &stream_path(name), Some(body), true)
                .await?;
            client.print_stream(&stream)
        }
        StreamsCommand::RotateKey { name } => {
            let rotated: StreamWithKey = client
                .call(
                    Method::POST,
                    &format!("{}/rotate-key", stream_path(name)),
                    None,
                    true,
                )
                .await?;
            client.print_keyed("new key for", &rotated)
        }
        StreamsCommand::Delete { name } => {
            let _: Value = client
                .call(Method::DELETE, &stream_path(name), None, true)
                .await?;
            if !args.json {
                println!("deleted stream '{name}'");
            }
            Ok(())
        }
    }
}

struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    json: bool,
}

impl Client {
    fn new(args: &StreamsArgs) -> anyhow::Result<Self> {
        let server = args.server.trim_end_matches('/').to_owned();
        if !server.starts_with("http://") {
            bail!(
                "--server must be an http:// URL (got '{server}'); put TLS in front of Rivulet with a reverse proxy"
            );
        }
        let token = match &args.admin_token {
            Some(t) => Some(t.clone()),
            None => {
                let file = args
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("rivulet-data"))
                    .join(meta::TOKEN_FILE);
                std::fs::read_to_string(file)
                    .ok()
                    .map(|t| t.trim().to_owned())
            }
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            server,
            token,
            json: args.json,
        })
    }

    /// Sends a request; an error answer becomes an error naming the field at fault.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        admin: bool,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method.clone(), &url);
        if admin {
            let token = self.token.as_deref().context(
                "this command needs the admin token: pass --admin-token or set RIVULET_ADMIN_TOKEN",
            )?;
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&strip_nulls(body));
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the Rivulet server at {} (set --server)",
                self.server
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("the server's answer broke off")?;
        if !status.is_success() {
            let detail = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| match e.field {
                    Some(field) => format!("{field}: {}", e.error),
                    None => e.error,
                })
                .unwrap_or(text);
            if status == StatusCode::UNAUTHORIZED {
                bail!("{detail} (check --admin-token)");
            }
            bail!("{method} {path}: {status}: {detail}");
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).with_context(|| format!("unexpected answer from {url}"))
    }

    fn print_keyed(&self, what: &str, keyed: &StreamWithKey) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(keyed)?);
            return Ok(());
        }
        let rtmp_host = self
            .server
            .trim_start_matches("http://")
            .split(['/', ':'])
            .next()
            .unwrap_or("HOST");
        println!("{what} stream '{}'", keyed.stream.name);
        println!("key: {}", keyed.key);
        println!("  (shown only this once: store it now)");
        println!("  publish: rtmp://{rtmp_host}:1935/live/{}", keyed.key);
        println!(
            "  watch:   {}/live/{}/master.m3u8",
            self.server, keyed.stream.name
        );
        Ok(())
    }

    fn print_stream(&self, stream: &Stream) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(stream)?);
            return Ok(());
        }
        println!("name:        {}", stream.name);
        println!("title:       {}", stream.title);
        println!("tags:        {}", stream.tags.join(", "));
        println!(
            "live:        {}",
            if stream.live.live { "yes" } else { "no" }
        );
        if stream.live.live {
            for line in live_facts(&stream.live) {
                println!("  {line}");
            }
        }
        if !stream.description.is_empty() {
            println!("description:\n{}", stream.description);
        }
        Ok(())
    }
}

/// The facts the ingest reported about a live stream, one per line.
fn live_facts(live: &meta::LiveState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(since) = live.since {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        lines.push(format!(
            "since:       {since} (ms since the Unix epoch; {} s ago)",
            (now - since).max(0) / 1000
        ));
    }
    if let Some(node) = &live.ingest_node {
        lines.push(format!("ingest node: {node}"));
    }
    if let Some(bps) = live.ingest_bitrate {
        lines.push(format!("bitrate:     {:.2} Mbit/s", bps as f64 / 1e6));
    }
    if let Some(renditions) = &live.renditions {
        let names = match renditions.as_array() {
            Some(list) => list
                .iter()
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            None => renditions.to_string(),
        };
        lines.push(format!("renditions:  {names}"));
    }
    lines
}

fn print_table(streams: &[Stream]) {
    let width = streams
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    println!("{:width$}  LIVE  TITLE  [TAGS]", "NAME");
    for s in streams {
        println!(
            "{:width$}  {:4}  {}  [{}]",
            s.name,
            if s.live.live { "yes" } else { "no" },
            s.title,
            s.tags.join(", ")
        );
    }
    if streams.is_empty() {
        println!("(no streams)");
    }
}

fn stream_path(name: &str) -> String {
    meta::remote::stream_path(name, "")
}

/// Drops `null` fields: absent means "leave as it is" in a PATCH.
fn strip_nulls(body: Value) -> Value {
    match body {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}
