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
