//! The PostgreSQL store (DESIGN §11), chosen by `[store] url = "postgres://…"`. It has
//! the SQLite store's shape so [`Store`](super::Store) stays one handle over either: the
//! one writer thread (`store/writer`) commits over [`write::PgWrites`], and reads run on
//! blocking threads over a small pool of connections.
//!
//! Several gateways may share the database, so nothing a commit depends on is cached
//! across groups: each group locks the rows of the jobs it writes (`SELECT … FOR
//! UPDATE`) and reads their `last_seq` there, which keeps `seq` gapless whichever gateway
//! writes (the runner's gateway, or another one cancelling or losing the job). Events go
//! in with one multi-row `INSERT … SELECT FROM unnest(…)` per group.
//!
//! The connections are tokio-postgres's blocking facade (`postgres`), which runs its own
//! small runtime: they are used and dropped only on the writer thread and blocking
//! threads, never on the gateway's async threads.

pub(super) mod listen;
pub(super) mod read;
mod schema;
pub(super) mod write;

use std::sync::Mutex;

use postgres::{Client, NoTls};
use shipwatch_config::PostgresUrl;

use super::StoreError;

/// Idle read connections kept between requests.
const READ_POOL: usize = 8;

/// How to reach the database, and the idle read connections.
pub(super) struct Postgres {
    pub(super) config: postgres::Config,
    /// What logs may say about where the store is (no password).
    pub(super) shown: String,
    /// Idle read connections, with when each was last used.
    readers: Mutex<Vec<(Client, std::time::Instant)>>,
}

/// A pooled connection idle this long is checked before use: the server may have
/// restarted meanwhile, and a read should not fail for a connection it dropped.
const CHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Postgres {
    /// Connects, brings the schema to this binary's version, and returns the writer's
    /// connection beside the handle. Blocking: call it off the async threads.
    pub(super) fn open(url: &PostgresUrl) -> Result<(Postgres, Client), StoreError> {
        let mut config = postgres::Config::new();
        config
            .user(&url.user)
            .port(url.port)
            .dbname(&url.dbname)
            .connect_timeout(url.connect_timeout)
            .application_name("shipwatch");
        if url.host.starts_with('/') {
            config.host_path(&url.host);
        } else {
            config.host(&url.host);
        }
        if let Some(password) = &url.password {
            config.password(password.expose());
        }
        let pg = Postgres {
            config,
            shown: url.to_string(),
            readers: Mutex::new(Vec::new()),
        };
        let mut writer = pg.connect()?;
        schema::migrate(&mut writer)?;
        Ok((pg, writer))
    }

    pub(super) fn connect(&self) -> Result<Client, StoreError> {
        Ok(self.config.connect(NoTls)?)
    }

    /// Runs `f` on a pooled connection on a blocking thread. When a pooled connection
    /// turns out dead (the server restarted), the pool is emptied and `f` runs again on
    /// a new one.
    pub(super) async fn read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl Fn(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pg = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = pg.readers.lock().ok().and_then(|mut p| p.pop());
            let (mut client, was_pooled) = match pooled {
                Some((c, used)) if !c.is_closed() && used.elapsed() < CHECK_AFTER => (c, true),
                Some((mut c, _)) if !c.is_closed() => match c.is_valid(CHECK_AFTER) {
                    Ok(()) => (c, true),
                    Err(_) => (pg.connect()?, false),
                },
                _ => (pg.connect()?, false),
            };
            let mut out = f(&mut client);
            if was_pooled
                && let Err(StoreError::Postgres(e)) = &out
                && write::is_lost_connection(e)
            {
                // Its siblings date from before the restart too.
                let stale = pg.readers.lock().map(|mut p| std::mem::take(&mut *p));
                drop(stale);
                client = pg.connect()?;
                out = f(&mut client);
            }
            // A connection that failed a read is not kept (the server may have dropped it
            // without the client knowing yet): the next read connects again.
            if out.is_ok()
                && !client.is_closed()
                && let Ok(mut pool) = pg.readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push((client, std::time::Instant::now()));
            }
            out
        })
        .await?
    }
}

impl Drop for Postgres {
    /// A connection's drop blocks on its own runtime, which may not happen on an async
    /// thread (where the last `Store` handle often goes): close them on a thread of
    /// their own.
    fn drop(&mut self) {
        let idle = self
            .readers
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("store-pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}
