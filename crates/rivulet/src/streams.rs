//! `rivulet streams …`: the metadata API from a terminal.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use meta::remote::{AdminClient, ListFilter, StreamChanges};
use meta::{Stream, StreamWithKey};

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
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("rivulet-data"));
    let client = AdminClient::new(&args.server, args.admin_token.clone(), &data_dir)?;
    let out = Output {
        server: client.server(),
        json: args.json,
    };
    match &args.command {
        StreamsCommand::Create {
            name,
            title,
            description,
            tags,
        } => {
            let created = client
                .create(name, title.as_deref(), description.as_deref(), tags)
                .await?;
            out.print_keyed("created", &created)
        }
        StreamsCommand::List { tag, live, offline } => {
            let filter = ListFilter {
                tag: tag.clone(),
                live: (*live || *offline).then_some(*live),
            };
            let streams = client.list(&filter).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&streams)?);
            } else {
                print_table(&streams);
            }
            Ok(())
        }
        StreamsCommand::Show { name } => out.print_stream(&client.show(name).await?),
        StreamsCommand::Update {
            name,
            title,
            description,
            add_tags,
            remove_tags,
        } => {
            let changes = StreamChanges {
                title: title.clone(),
                description: description.clone(),
                add_tags: add_tags.clone(),
                remove_tags: remove_tags.clone(),
            };
            out.print_stream(&client.update(name, &changes).await?)
        }
        StreamsCommand::RotateKey { name } => {
            out.print_keyed("new key for", &client.rotate_key(name).await?)
        }
        StreamsCommand::Delete { name } => {
            client.delete(name).await?;
            if !args.json {
                println!("deleted stream '{name}'");
            }
            Ok(())
        }
    }
}

/// How answers are printed: text, or the API's JSON.
struct Output<'a> {
    server: &'a str,
    json: bool,
}

impl Output<'_> {
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
