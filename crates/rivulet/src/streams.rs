//! `rivulet streams …`: the metadata API from a terminal.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use meta::remote::{AdminClient, ListFilter, StreamChanges, text};
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
                print!("{}", text::table(&streams));
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

/// How answers are printed: text ([`meta::remote::text`]), or the API's JSON.
struct Output<'a> {
    server: &'a str,
    json: bool,
}

impl Output<'_> {
    fn print_keyed(&self, what: &str, keyed: &StreamWithKey) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(keyed)?);
        } else {
            print!("{}", text::keyed(self.server, what, keyed));
        }
        Ok(())
    }

    fn print_stream(&self, stream: &Stream) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(stream)?);
        } else {
            print!("{}", text::stream(stream));
        }
        Ok(())
    }
}
