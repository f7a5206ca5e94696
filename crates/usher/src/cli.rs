//! The command line, as clap sees it.

use crate::config::Overrides;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "usher",
    version,
    about = "Sign people in to any web app, track every session, and show them out."
)]
pub struct Cli {
    /// Configuration file (default: ./usher.toml when present).
    #[arg(long, global = true, env = "USHER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines (and access log lines) as text or JSON; overrides log.format.
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<String>,
    /// Act through a running server's API (with USHER_TOKEN) instead of on the store.
    #[arg(long, global = true, env = "USHER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List and end sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Read the history of logins, logouts, ends and user changes.
    History(HistoryArgs),
    /// Reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// API tokens (for the REST API and --server).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Clients seen without a cookie or credential (pings, scripts), per IP and agent.
    Clients {
        #[arg(long, value_enum, default_value = "table")]
        format: crate::output::Format,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List live sessions (the same filters as the console and the API).
    List(SessionFilter),
    /// End sessions: by id, all of a user's, or all anonymous ones.
    Kill {
        /// Public session ids.
        ids: Vec<String>,
        #[arg(long, value_name = "USER", conflicts_with_all = ["ids", "anonymous"])]
        user: Option<String>,
        #[arg(long, conflicts_with = "ids")]
        anonymous: bool,
    },
}

#[derive(Debug, Args)]
pub struct SessionFilter {
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only anonymous sessions.
    #[arg(long, conflicts_with = "authenticated")]
    pub anonymous: bool,
    /// Only signed-in sessions.
    #[arg(long)]
    pub authenticated: bool,
    /// web or api.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// An address or CIDR range.
    #[arg(long, value_name = "IP|CIDR")]
    pub ip: Option<String>,
    /// Text in the user, IP, client or session id.
    #[arg(short = 'q', long = "search", value_name = "TEXT")]
    pub q: Option<String>,
    /// Only sessions used within this long, e.g. 15m.
    #[arg(long, value_name = "DURATION")]
    pub active_within: Option<String>,
    /// id, user, type, ip, requests, last_access, created.
    #[arg(long, default_value = "last_access")]
    pub sort: String,
    #[arg(long, default_value = "desc", value_name = "asc|desc")]
    pub order: String,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// A number up to 10000, or all.
    #[arg(long, default_value = "all")]
    pub limit: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::output::Format,
}

impl SessionFilter {
    /// The filter as the query parameters every surface shares.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                p.push((k.to_owned(), v));
            }
        };
        put("user", self.user.clone());
        put("anonymous", self.anonymous.then(|| "true".into()));
        put("anonymous", self.authenticated.then(|| "false".into()));
        put("type", self.kind.clone());
        put("ip", self.ip.clone());
        put("q", self.q.clone());
        put("active_within", self.active_within.clone());
        put("sort", Some(self.sort.clone()));
        put("order", Some(self.order.clone()));
        put("offset", Some(self.offset.to_string()));
        put("limit", Some(self.limit.clone()));
        p
    }
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// login, login_failed, logout, expired, killed, evicted, user_created, …
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// From this date (2026-01-01) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Before this date or time.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Instead of events: the sessions (of --user, or everyone's) live at this instant.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["event", "ip", "since", "until"])]
    pub at: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::output::Format,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Users whose last login is before DATE (default: 1 January this year), or never.
    Inactive {
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: crate::output::Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// The administrator the token acts as (default: the first admin).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: crate::output::Format,
    },
    /// Revoke a token.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The app to protect, e.g. http://127.0.0.1:3000.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Store URL, e.g. sqlite://usher-data/usher.db.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            store: self.store.clone(),
            log_format: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Put the user in the admins group.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Name shown in the console and sent upstream as Remote-Name.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Sent upstream as Remote-Email.
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
    },
    /// List users.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user and end all of their sessions.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Remove a user and end all of their sessions (their history is kept).
    Remove { name: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings.
    Check,
}
