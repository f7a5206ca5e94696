//! `usher sessions`, `usher history`, `usher report`, `usher token`: the same queries as
//! the console and the API, printed for people (tables) or scripts (JSON, CSV).
//!
//! Exit codes: 0 done; 1 an error (message on stderr); 2 bad usage; 3 nothing matched
//! (`sessions kill` ended nothing, `token revoke` found no such token).

use crate::backend::{Backend, KillTarget};
use crate::cli::{HistoryArgs, ReportCommand, SessionsCommand, TokenCommand};
use crate::output::{self, Format, ago};
use anyhow::Context;
use std::process::ExitCode;
use usher_core::{Clock, EventKind, SessionId, SystemClock, Timestamp, Username};
use usher_store::EventQuery;

/// Exit code when a command matched nothing.
const NOTHING: u8 = 3;

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A date (2026-01-01, midnight UTC) or an RFC 3339 time.
pub fn parse_time(flag: &str, v: &str) -> anyhow::Result<Timestamp> {
    v.parse::<Timestamp>()
        .or_else(|_| {
            v.parse::<jiff::civil::Date>().and_then(|d| {
                d.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .map(|z| z.timestamp())
            })
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag}: `{v}` is not a date (2026-01-01) or a time (2026-01-01T09:00:00Z)"
            )
        })
}

fn start_of_year(now: Timestamp) -> anyhow::Result<Timestamp> {
    let z = now.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    Ok(jiff::civil::date(z.year(), 1, 1)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)?
        .timestamp())
}

fn opt(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map(|t| ago(t, now)).unwrap_or_else(|| "never".into())
}

pub async fn sessions(backend: &Backend, cmd: SessionsCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    match cmd {
        SessionsCommand::List(filter) => {
            let (total, items) = backend.sessions(&filter.pairs()).await?;
            match filter.format {
                Format::Json => json(&serde_json::json!({ "total": total, "items": items }))?,
                Format::Table | Format::Csv => {
                    let header = [
                        "SESSION",
                        "USER",
                        "TYPE",
                        "IP",
                        "CLIENT",
                        "REQUESTS",
                        "LAST ACCESS",
                        "CREATED",
                    ];
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|s| {
                            let (last, created) = if filter.format == Format::Csv {
                                (s.last_access_at.to_string(), s.created_at.to_string())
                            } else {
                                (ago(s.last_access_at, now), ago(s.created_at, now))
                            };
                            vec![
                                s.id.to_string(),
                                s.user
                                    .as_ref()
                                    .map_or_else(|| "Anonymous".to_owned(), |u| u.to_string()),
                                s.kind.as_str().to_owned(),
                                s.ip.to_string(),
                                s.client.clone(),
                                s.requests.to_string(),
                                last,
                                created,
                            ]
                        })
                        .collect();
                    if filter.format == Format::Csv {
                        output::csv(&header, &rows);
                    } else {
                        output::table(&header, &rows);
                        eprintln!("{} of {total} session(s)", rows.len());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Kill {
            ids,
            user,
            anonymous,
        } => {
            let target = if let Some(u) = user {
                KillTarget::User(Username::parse(&u)?)
            } else if anonymous {
                KillTarget::Anonymous
            } else if !ids.is_empty() {
                KillTarget::Ids(
                    ids.iter()
                        .map(|i| SessionId::parse(i).with_context(|| format!("`{i}`")))
                        .collect::<anyhow::Result<_>>()?,
                )
            } else {
                anyhow::bail!("name what to end: session ids, --user USER, or --anonymous");
            };
            let n = backend.kill(target).await?;
            println!("ended {n} session(s)");
            Ok(if n == 0 {
                ExitCode::from(NOTHING)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

pub async fn history(backend: &Backend, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    if let Some(at) = &args.at {
        let at = parse_time("--at", at)?;
        let user = args.user.as_deref().map(Username::parse).transpose()?;
        let sessions = backend.sessions_at(user.as_ref(), at).await?;
        match args.format {
            Format::Json => json(&sessions)?,
            Format::Table | Format::Csv => {
                let header = ["SESSION", "USER", "IP", "CLIENT", "CREATED", "LAST ACCESS"];
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.user
                                .as_ref()
                                .map_or_else(|| "Anonymous".to_owned(), |u| u.to_string()),
                            s.ip.to_string(),
                            s.client.clone(),
                            s.created_at.to_string(),
                            s.last_access_at.to_string(),
                        ]
                    })
                    .collect();
                if args.format == Format::Csv {
                    output::csv(&header, &rows);
                } else {
                    output::table(&header, &rows);
                    eprintln!("{} session(s) live at {at}", rows.len());
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let q = EventQuery {
        user: args.user,
        kind: args
            .event
            .as_deref()
            .map(|e| EventKind::parse(e).ok_or_else(|| anyhow::anyhow!("--event: `{e}` is not an event; use login, login_failed, logout, expired, killed, evicted, user_created, user_disabled, user_enabled, user_removed, password_changed")))
            .transpose()?,
        ip: args
            .ip
            .as_deref()
            .map(|i| {
                i.parse::<ipnet::IpNet>()
                    .or_else(|_| i.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("--ip: `{i}` is not an IP address or CIDR range (10.0.0.0/8)"))
            })
            .transpose()?,
        from: args.since.as_deref().map(|v| parse_time("--since", v)).transpose()?,
        to: args.until.as_deref().map(|v| parse_time("--until", v)).transpose()?,
        before: None,
        limit: args.limit.clamp(1, 100_000),
    };
    let events = backend.history(&q).await?;
    match args.format {
        Format::Json => json(&events)?,
        Format::Table | Format::Csv => {
            let header = ["TIME", "EVENT", "USER", "SESSION", "IP", "ACTOR", "DETAIL"];
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        e.at.to_string(),
                        e.kind.as_str().to_owned(),
                        e.user.clone().unwrap_or_default(),
                        e.session.map(|s| s.to_string()).unwrap_or_default(),
                        e.ip.map(|i| i.to_string()).unwrap_or_default(),
                        e.actor.clone().unwrap_or_default(),
                        e.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            if args.format == Format::Csv {
                output::csv(&header, &rows);
            } else {
                output::table(&header, &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn report(backend: &Backend, cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Inactive { since, format } = cmd;
    let now = SystemClock.now();
    let since = match since {
        Some(s) => parse_time("--since", &s)?,
        None => start_of_year(now)?,
    };
    let users = backend.inactive(since).await?;
    match format {
        Format::Json => json(&serde_json::json!({ "since": since, "items": users }))?,
        Format::Table | Format::Csv => {
            let header = [
                "USER",
                "STATUS",
                "LAST LOGIN",
                "LAST LOGIN IP",
                "LAST ACTIVITY",
            ];
            let time = |t: Option<Timestamp>| {
                if format == Format::Csv {
                    t.map(|t| t.to_string()).unwrap_or_default()
                } else {
                    opt(t, now)
                }
            };
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.name.to_string(),
                        if u.disabled { "disabled" } else { "active" }.to_owned(),
                        time(u.last_login_at),
                        u.last_login_ip.map(|i| i.to_string()).unwrap_or_default(),
                        time(u.last_activity_at),
                    ]
                })
                .collect();
            if format == Format::Csv {
                output::csv(&header, &rows);
            } else {
                output::table(&header, &rows);
                eprintln!("{} user(s) without a login since {since}", rows.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn clients(backend: &Backend, format: Format) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let clients = backend.clients().await?;
    match format {
        Format::Json => json(&clients)?,
        Format::Table | Format::Csv => {
            let header = [
                "IP",
                "CLIENT",
                "REQUESTS",
                "FIRST SEEN",
                "LAST SEEN",
                "USER AGENT",
            ];
            let rows: Vec<Vec<String>> = clients
                .iter()
                .map(|c| {
                    let (first, last) = if format == Format::Csv {
                        (c.first_seen.to_string(), c.last_seen.to_string())
                    } else {
                        (ago(c.first_seen, now), ago(c.last_seen, now))
                    };
                    vec![
                        c.ip.to_string(),
                        c.client.clone(),
                        c.requests.to_string(),
                        first,
                        last,
                        c.user_agent.clone(),
                    ]
                })
                .collect();
            if format == Format::Csv {
                output::csv(&header, &rows);
            } else {
                output::table(&header, &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(backend: &Backend, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    match cmd {
        TokenCommand::Create { name, owner } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                anyhow::bail!("the token's name must be 1 to 100 characters");
            }
            let (token, secret) = backend.token_create(name, owner.as_deref()).await?;
            eprintln!(
                "Token {} ({}) acts as {}. Its secret is shown only now:",
                token.id, token.name, token.owner
            );
            println!("{secret}");
        }
        TokenCommand::List { format } => {
            let tokens = backend.token_list().await?;
            match format {
                Format::Json => json(&tokens)?,
                Format::Table | Format::Csv => {
                    let header = ["ID", "NAME", "OWNER", "CREATED", "LAST USED", "STATUS"];
                    let rows: Vec<Vec<String>> = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                t.owner.to_string(),
                                ago(t.created_at, now),
                                opt(t.last_used_at, now),
                                if t.revoked_at.is_some() {
                                    "revoked"
                                } else {
                                    "active"
                                }
                                .into(),
                            ]
                        })
                        .collect();
                    if format == Format::Csv {
                        output::csv(&header, &rows);
                    } else {
                        output::table(&header, &rows);
                    }
                }
            }
        }
        TokenCommand::Revoke { id } => {
            SessionId::parse(&id).map_err(|_| {
                anyhow::anyhow!("`{id}` is not a token id (12 characters of a-z and 2-7; see `usher token list`)")
            })?;
            if !backend.token_revoke(&id).await? {
                eprintln!("there is no live token {id} (see `usher token list`)");
                return Ok(ExitCode::from(NOTHING));
            }
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
