//! `usher user …`: account management straight on the store. A running server learns
//! of every change through the store's change feed within a second.

use crate::cli::{ListFormat, UserCommand};
use crate::config::Settings;
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use usher_core::{Clock, SystemClock, Username};
use usher_engine::{Accounts, EngineError, PasswordHasher};
use usher_store::StoreError;

const ACTOR: &str = "cli";

/// Opens (and migrates) the store, with a spinner on a terminal: a first migration of
/// a large store can take a while, and a silent terminal looks hung.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn usher_store::Store>> {
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("opening {}", settings.store));
        s.enable_steady_tick(std::time::Duration::from_millis(100));
        s
    });
    let store = usher_store::open(&settings.store)
        .await
        .with_context(|| format!("cannot open the store {}", settings.store));
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    store
}

pub async fn run(settings: &Settings, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let accounts = Accounts::new(store.clone(), clock, PasswordHasher::new(1)?);
    let name = |s: &str| Username::parse(s).map_err(anyhow::Error::from);
    match cmd {
        UserCommand::Add {
            name: n,
            admin,
            password_stdin,
            display_name,
            email,
        } => {
            let n = name(&n)?;
            let password = read_password(password_stdin, &format!("Password for {n}: "))?;
            let mut user = accounts
                .create(n.clone(), Some(&password), admin, ACTOR)
                .await
                .map_err(|e| explain(e, &n))?;
            if display_name.is_some() || email.is_some() {
                user.display_name = display_name.unwrap_or(user.display_name);
                user.email = email.unwrap_or(user.email);
                store
                    .user_update(&user, ACTOR, user.created_at)
                    .await
                    .map_err(|e| explain(e.into(), &n))?;
            }
            println!("created user {n}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::List { format } => {
            let users = store.user_list().await?;
            match format {
                ListFormat::Json => {
                    let rows: Vec<_> = users
                        .iter()
                        .map(|u| {
                            serde_json::json!({
                                "name": u.name.as_str(),
                                "display_name": u.display_name,
                                "email": u.email,
                                "groups": u.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                                "disabled": u.disabled,
                                "created_at": u.created_at.to_string(),
                                "last_login_at": u.last_login_at.map(|t| t.to_string()),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                ListFormat::Table => {
                    let width = users
                        .iter()
                        .map(|u| u.name.as_str().len())
                        .max()
                        .unwrap_or(4)
                        .max(4);
                    println!(
                        "{:width$}  {:8}  {:20}  LAST LOGIN",
                        "NAME", "STATUS", "GROUPS"
                    );
                    for u in &users {
                        println!(
                            "{:width$}  {:8}  {:20}  {}",
                            u.name.as_str(),
                            if u.disabled { "disabled" } else { "active" },
                            u.groups_joined(),
                            u.last_login_at
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "never".into()),
                        );
                    }
                }
            }
        }
        UserCommand::Passwd {
            name: n,
            password_stdin,
        } => {
            let n = name(&n)?;
            accounts.get(&n).await.map_err(|e| explain(e, &n))?;
            let password = read_password(password_stdin, &format!("New password for {n}: "))?;
            accounts
                .set_password(&n, &password, ACTOR)
                .await
                .map_err(|e| explain(e, &n))?;
            println!("password of {n} changed");
        }
        UserCommand::Disable { name: n } => {
            let n = name(&n)?;
            let ended = accounts
                .set_disabled(&n, true, ACTOR)
                .await
                .map_err(|e| explain(e, &n))?;
            println!("disabled {n}; ended {} session(s)", ended.len());
        }
        UserCommand::Enable { name: n } => {
            let n = name(&n)?;
            accounts
                .set_disabled(&n, false, ACTOR)
                .await
                .map_err(|e| explain(e, &n))?;
            println!("enabled {n}");
        }
        UserCommand::Remove { name: n } => {
            let n = name(&n)?;
            let ended = accounts
                .remove(&n, ACTOR)
                .await
                .map_err(|e| explain(e, &n))?;
            println!("removed {n}; ended {} session(s)", ended.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(e: EngineError, name: &Username) -> anyhow::Error {
    match e {
        EngineError::Store(StoreError::NotFound(_)) => {
            anyhow::anyhow!("there is no user {name} (see `usher user list`)")
        }
        EngineError::Store(StoreError::Conflict(_)) => {
            anyhow::anyhow!(
                "a user {name} already exists (change it with `usher user passwd {name}`)"
            )
        }
        other => other.into(),
    }
}

fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Repeat it: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        bail!("standard input is not a terminal: pass the password with --password-stdin");
    };
    PasswordHasher::check_policy(&password)?;
    Ok(password)
}
