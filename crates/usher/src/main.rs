//! The `usher` binary: parses the command line, loads configuration, wires the parts
//! and runs one subcommand. The only crate that knows clap.

mod admin_cli;
mod backend;
mod cli;
mod config;
mod output;
mod serve;
mod users;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        cli::Command::Serve(args) => {
            let mut overrides = args.overrides();
            overrides.log_format = cli.log_format.clone();
            let settings = config::load(config, &overrides)?;
            init_logging(settings.raw.log.format == "json");
            serve::run(settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::User(cmd) => {
            let settings = config::load(config, &config::Overrides::default())?;
            init_logging(settings.raw.log.format == "json");
            users::run(&settings, cmd).await
        }
        cli::Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut cli::Cli::command(),
                "usher",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Sessions(cmd) => {
            let (_, backend) = admin_backend(config, cli.server.as_deref()).await?;
            admin_cli::sessions(&backend, cmd).await
        }
        cli::Command::History(args) => {
            let (_, backend) = admin_backend(config, cli.server.as_deref()).await?;
            admin_cli::history(&backend, args).await
        }
        cli::Command::Report(cmd) => {
            let (_, backend) = admin_backend(config, cli.server.as_deref()).await?;
            admin_cli::report(&backend, cmd).await
        }
        cli::Command::Clients { format } => {
            let (_, backend) = admin_backend(config, cli.server.as_deref()).await?;
            admin_cli::clients(&backend, format).await
        }
        cli::Command::Token(cmd) => {
            let (_, backend) = admin_backend(config, cli.server.as_deref()).await?;
            admin_cli::token(&backend, cmd).await
        }
        cli::Command::Config(cli::ConfigCommand::Check) => {
            let settings = config::load(config, &config::Overrides::default())?;
            let mut effective = settings.raw.clone();
            effective.store.url = settings.store.to_string();
            println!("{}", toml_like(&effective)?);
            eprintln!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn admin_backend(
    config: Option<&std::path::Path>,
    server: Option<&str>,
) -> anyhow::Result<(config::Settings, backend::Backend)> {
    let settings = config::load(config, &config::Overrides::default())?;
    init_logging(settings.raw.log.format == "json");
    let backend = backend::Backend::open(&settings, server).await?;
    Ok((settings, backend))
}

/// Effective settings as pretty JSON (secrets already redacted by their types).
fn toml_like(raw: &config::RawConfig) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(raw)?)
}

/// Logs go to stderr (stdout carries the access log); `RUST_LOG` filters them.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
