//! `usher serve`: open the store, make sure someone can log in, serve until a signal.

use crate::config::Settings;
use anyhow::Context;
use base64::Engine as _;
use std::io::Write;
use std::sync::Arc;
use usher_core::{Clock, SystemClock, Username};
use usher_engine::{Accounts, PasswordHasher};
use usher_gateway::Server;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let store = usher_store::open(&settings.store)
        .await
        .with_context(|| format!("cannot open the store {}", settings.store))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    bootstrap_admin(&settings, &store, &clock).await?;
    let shutdown = shutdown_signal()?;
    let server = Server::build(
        settings.listen,
        settings.gateway.clone(),
        settings.engine.clone(),
        store,
        clock,
    )
    .await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, store = %settings.store, upstream = ?settings.gateway.upstream.as_ref().map(|u| u.to_string()), "Usher is listening");
    eprintln!(
        "Usher is listening on http://{addr}/ (sign in at http://{addr}{}/login)",
        settings.gateway.prefix
    );
    server.run_until(shutdown).await?;
    Ok(())
}

/// With no user at all, nobody could sign in: create `admin` once, with the password
/// from `USHER_ADMIN_PASSWORD` or a random one shown once and saved 0600.
async fn bootstrap_admin(
    settings: &Settings,
    store: &Arc<dyn usher_store::Store>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<()> {
    if store.user_count().await? > 0 {
        return Ok(());
    }
    let accounts = Accounts::new(store.clone(), clock.clone(), PasswordHasher::new(1)?);
    let (password, generated) = match std::env::var("USHER_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => {
            let bytes = usher_core::ids::os_random::<18>()?;
            (
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                true,
            )
        }
    };
    let name = Username::parse("admin")?;
    accounts
        .create(name, Some(&password), true, "bootstrap")
        .await
        .context("cannot create the first administrator (USHER_ADMIN_PASSWORD must have at least 8 characters)")?;
    if generated {
        let path = settings.data_dir.join("initial-admin-password");
        write_secret(&path, &password)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "\n==================== Usher: first start ====================\n\
             Created the administrator `admin` with the password:\n\n    {password}\n\n\
             It is shown only this once, and saved in {} (mode 0600).\n\
             Change it with `usher user passwd admin`.\n\
             ============================================================\n",
            path.display()
        );
    } else {
        eprintln!("Created the administrator `admin` with the password from USHER_ADMIN_PASSWORD.");
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{secret}")
}

/// Installs the SIGTERM and SIGINT handlers now — before the server says it listens, so
/// a signal that arrives right after is never the default "die at once" — and returns
/// the future that completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("signal received");
    })
}
