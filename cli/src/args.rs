//! The command line (clap derive). docs/cli.md describes each command at length.

use clap::{Args, Parser, Subcommand};

use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "brokk",
    version,
    about = "Inspect and operate a brokk store: statistics, counts, purges, publishing, following a topic, dead letters",
    after_help = exit::HELP
)]
pub struct Cli {
    /// The backend: memory://, sqlite:///path/file.db, redis://host:port/db?prefix=P (the library's URL syntax)
    #[arg(long, global = true, env = "BROKK_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Machine-readable output: one JSON document, or one JSON object per line (tail, stats --watch)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What the store holds: every topic and consumer group with its depth (see docs/cli.md)
    Stats(StatsArgs),
    /// Messages waiting on the topics (all when none is named): retained plus queued per group;
    /// with --group, the ready deliveries of that one group of one topic
    Count(CountArgs),
    /// Discards what `count` counts on the topics named (or on every topic, with --all); with
    /// --group, only that group's ready deliveries of one topic
    Purge(PurgeArgs),
    /// Shows the next messages of a topic's group without taking them
    Peek(PeekArgs),
    /// Publishes one message, or one JSON payload per line of stdin in batches
    Publish(PublishArgs),
    /// Follows a topic as a subscriber of its own, printing each message, until SIGINT/SIGTERM
    Tail(TailArgs),
    /// Lists a dead-letter topic, or requeues its messages to their original topics
    #[command(name = "dead-letters")]
    DeadLetters(DeadLettersArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Topics to show (none: every topic of the store)
    pub topics: Vec<String>,
    /// The Prometheus text exposition format (0.0.4) instead of the table
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
    /// Prints again every SECONDS (default 2) until SIGINT or SIGTERM
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Topics (none: every topic of the store; exactly one with --group)
    pub topics: Vec<String>,
    /// Count only this consumer group's ready deliveries (of the one topic named)
    #[arg(long, short)]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Topics to purge
    pub topics: Vec<String>,
    /// Purge every topic of the store (required when no topic is named)
    #[arg(long, conflicts_with_all = ["topics", "group"])]
    pub all: bool,
    /// Purge only this consumer group's ready deliveries (of the one topic named); its other
    /// groups, retained messages and deliveries in flight stay
    #[arg(long, short)]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    pub topic: String,
    /// The consumer group whose queue to show (default: the default group)
    #[arg(long, short)]
    pub group: Option<String>,
    /// How many messages at most
    #[arg(short = 'n', long = "count", default_value_t = 10)]
    pub count: usize,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub topic: String,
    /// The payload, a JSON document (none: one JSON payload per line of stdin)
    pub payload: Option<String>,
    /// Priority of the message(s): higher is delivered first
    #[arg(long, short, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// The message id (default: generated); only with a PAYLOAD argument
    #[arg(long)]
    pub id: Option<String>,
    /// A JSON object stored with the message(s)
    #[arg(long)]
    pub metadata: Option<String>,
    /// Lines of stdin published per batch (each batch all or nothing)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub topic: String,
    /// Stop after this many messages
    #[arg(short = 'n', long = "count")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// The dead-letter topic
    pub topic: String,
    /// The consumer group of the dead-letter topic to read and requeue from (default: the default group)
    #[arg(long, short)]
    pub group: Option<String>,
    /// How many to list at most
    #[arg(short = 'n', long = "count", default_value_t = 100)]
    pub count: usize,
    /// Requeue these messages (dead-letter message ids, or original message ids) to their original topics
    #[arg(long, num_args = 1.., value_name = "ID", conflicts_with = "requeue_all")]
    pub requeue: Vec<String>,
    /// Requeue every message of the dead-letter topic
    #[arg(long)]
    pub requeue_all: bool,
}
