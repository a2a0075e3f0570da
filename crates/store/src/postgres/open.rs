//! Opening a shared ledger: connecting (libpq conventions: `sslmode`, `PGPASSWORD`,
//! `~/.pgpass`, a unix-socket host), refusing a database this binary must not touch, migrating
//! under the migrator's advisory lock, and registering this machine.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{MIGRATOR, Postgres, db_error, migrate_error};
use crate::liveness::this_host;
use crate::{Error, Location, OpenOptions, PostgresUrl, Result};

/// Connections per ledger handle: a run's writer, its lookups and the coordinator's
/// transitions at once.
const CONNECTIONS: u32 = 8;
/// How long a statement waits for a connection before the database counts as unreachable.
const ACQUIRE: Duration = Duration::from_secs(10);

/// The tables of the ledger: a database holding one of them but no migration history is
/// something else, left untouched.
const TABLES: [&str; 4] = ["images", "inputs", "runs", "machines"];

impl Postgres {
    pub(crate) async fn open(url: &PostgresUrl, opts: &OpenOptions) -> Result<Self> {
        let name = url.to_string();
        let connect = PgConnectOptions::from_str(url.expose()).map_err(|e| Error::CannotOpen {
            ledger: name.clone(),
            // sqlx's message names the part of the URL it could not read, never the password.
            detail: e.to_string(),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE.max(opts.busy_timeout))
            .connect_with(connect)
            .await
            .map_err(|e| db_error(&name, e))?;
        let ledger = Postgres {
            location: Arc::new(Location::Postgres(url.clone())),
            name: Arc::from(name.as_str()),
            pool,
            machine: 0,
            lease: opts.lease,
        };
        ledger.migrate(opts.create).await?;
        let machine = ledger.register_machine().await?;
        Ok(Postgres { machine, ..ledger })
    }

    /// Applies missing migrations (sqlx holds an advisory lock meanwhile, so two machines
    /// opening a fresh database do not both apply them); refuses a ledger of a newer eraser, a
    /// database that is something else, and an upgrade under a live run of an older eraser.
    async fn migrate(&self, create: bool) -> Result<()> {
        let history = sqlx::query_scalar!(
            r#"select to_regclass('_sqlx_migrations') is not null as "history!""#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        let applied: Vec<i64> = if history {
            sqlx::query_scalar!(
                r#"select version as "version!" from _sqlx_migrations where success order by 1"#
            )
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
        } else {
            let names: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
            let foreign = sqlx::query_scalar!(
                r#"select exists (select 1 from unnest($1::text[]) as t (name)
                                  where to_regclass(t.name) is not null) as "foreign!""#,
                &names
            )
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
            if foreign {
                return Err(Error::NotALedger {
                    ledger: self.name.to_string(),
                });
            }
            Vec::new()
        };
        if !applied.iter().all(|v| MIGRATOR.version_exists(*v)) {
            return Err(Error::NewerSchema {
                ledger: self.name.to_string(),
                found: applied.iter().copied().max().unwrap_or_default(),
                known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default(),
            });
        }
        let up_to_date = MIGRATOR.iter().all(|m| applied.contains(&m.version));
        if up_to_date {
            return Ok(());
        }
        if applied.is_empty() && !create {
            return Err(Error::NotFound {
                ledger: self.name.to_string(),
            });
        }
        if !applied.is_empty() {
            self.refuse_live_runs().await?;
            tracing::warn!(
                "upgrading the ledger {} to its current format (once)",
                self.name
            );
        }
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| migrate_error(&self.name, e))
    }

    /// A format change under a live run of an older eraser would make it misread the ledger.
    async fn refuse_live_runs(&self) -> Result<()> {
        let live = sqlx::query!(
            r#"select m.name as host, r.pid from runs as r join machines as m on m.id = r.machine
               where r.finished_at is null and r.heartbeat_at > now() - $1 * interval '1 second'
               limit 1"#,
            self.lease.as_secs_f64()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        match live {
            Some(run) => Err(Error::InUseByOlder {
                ledger: self.name.to_string(),
                pid: run.pid,
                host: run.host,
            }),
            None => Ok(()),
        }
    }

    /// This machine's row, by host name (created the first time the machine opens the ledger).
    async fn register_machine(&self) -> Result<i64> {
        let host = this_host();
        sqlx::query_scalar!(
            "insert into machines (name) values ($1)
             on conflict (name) do update set name = excluded.name
             returning id",
            host
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))
    }
}
