//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Live-chat customer service that scales out: edges, router, archiver.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version)]
pub struct Cli {
    /// Configuration file (default: ./switchboard.toml if it exists).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run edge, router and archiver in one process.
    Up {
        /// Demo mode: allow the built-in secret, create demo agents and
        /// print their logins and the URLs.
        #[arg(long)]
        demo: bool,
    },
    /// Run an edge (HTTP + WebSocket for browsers).
    Edge {
        /// Allow the built-in secret.
        #[arg(long)]
        demo: bool,
    },
    /// Run a router (assigns conversations to agents).
    Router,
    /// Run an archiver (writes conversations into MongoDB).
    Archiver,
    /// Manage agent accounts.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Manage bot accounts: a team with a bot is bot-first.
    Bot {
        #[command(subcommand)]
        command: BotCommand,
    },
    /// See and change the queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Statistics of the conversations started in a window, from the
    /// archive (definitions: docs/analytics.md).
    Report(ReportArgs),
    /// Send a notice to every online agent or visitor.
    Broadcast {
        /// `agents` or `visitors`.
        #[arg(long, value_enum)]
        to: Audience,
        #[arg(long)]
        text: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// The waiting conversations, in the order they will be served.
    List,
    /// Move a waiting conversation ahead (higher priority goes first).
    Prioritize {
        #[arg(long)]
        conversation: String,
        #[arg(long, default_value_t = switchboard_bus::admin::DEFAULT_PRIORITY)]
        priority: i32,
    },
    /// Give a waiting conversation to this agent as soon as they have a
    /// free slot (ahead of everything else).
    Assign {
        #[arg(long)]
        conversation: String,
        /// The agent's login.
        #[arg(long)]
        agent: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Start of the window: RFC 3339, a date (its start in --tz) or a local
    /// date and time; default: 7 days before --until.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window, exclusive: RFC 3339, a date (its end, in --tz) or
    /// a local date and time; default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only conversations of this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only conversations assigned to this agent (a login).
    #[arg(long)]
    pub agent: Option<String>,
    /// IANA time zone of dates and of the hours of the day (default UTC).
    #[arg(long)]
    pub tz: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Audience {
    Agents,
    Visitors,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent account.
    Add {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        /// At least 8 characters.
        #[arg(long, env = "SWITCHBOARD_AGENT_PASSWORD")]
        password: String,
        #[arg(long)]
        team: Option<String>,
        /// Conversations at once.
        #[arg(long, default_value_t = 3)]
        capacity: u32,
        /// `agent`, or `admin` (also manages the queue, broadcasts and
        /// reads the statistics over HTTP).
        #[arg(long, value_enum, default_value_t = AccountRole::Agent)]
        role: AccountRole,
    },
    /// List agent accounts.
    List,
    /// Remove an agent account (their connections close at once).
    Remove {
        #[arg(long)]
        login: String,
    },
    /// Disable an agent: they cannot log in, and their connections close
    /// at once, on every edge.
    Disable {
        #[arg(long)]
        login: String,
    },
    /// Enable a disabled agent again.
    Enable {
        #[arg(long)]
        login: String,
    },
    /// Change an agent's capacity or team; routers apply it at once.
    Set {
        #[arg(long)]
        login: String,
        #[arg(long)]
        capacity: Option<u32>,
        /// A team id, or "none" to leave every team.
        #[arg(long)]
        team: Option<String>,
        /// `agent` or `admin`.
        #[arg(long, value_enum)]
        role: Option<AccountRole>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BotCommand {
    /// Create a bot account: new conversations of its team go to the bot
    /// first while it runs (docs/bots.md).
    Add {
        /// The bot's id (1-64 letters, digits, '-' or '_'), which the bot
        /// process is started with (BOT_ID).
        #[arg(long)]
        id: String,
        /// The name visitors see.
        #[arg(long)]
        name: String,
        /// The team it answers first (one bot per team).
        #[arg(long)]
        team: String,
    },
    /// List bot accounts, with whether each is running now.
    List,
    /// Remove a bot: its conversations go to the humans of its team.
    Remove {
        #[arg(long)]
        id: String,
    },
}

/// The role of an agent account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountRole {
    Agent,
    Admin,
}

impl From<AccountRole> for switchboard_protocol::payloads::AgentRole {
    fn from(role: AccountRole) -> Self {
        match role {
            AccountRole::Agent => Self::Agent,
            AccountRole::Admin => Self::Admin,
        }
    }
}
