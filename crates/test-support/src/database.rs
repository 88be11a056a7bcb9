//! Throw-away databases (a temporary SQLite file, or a fresh PostgreSQL database next to the one
//! `DATABASE_URL` names, dropped afterwards) and a few outbox look-ups.

use std::path::PathBuf;

use sqlx::Connection;
use uuid::Uuid;

use phasebook_api::store::{Database, StoreResult};

/// The master key of this test process, for a `phasebook` child process that must open
/// what this process stored: pass it as `PHASEBOOK_SECRET_KEY`.
pub fn secret_key() -> String {
    use secrecy::ExposeSecret;
    phasebook_api::secrets::process_default_key()
        .expose_secret()
        .to_string()
}

/// A database that exists for one test and is removed when dropped.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh SQLite file in the temporary directory.
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("phasebook-test-{}.db", Uuid::new_v4()));
        Self {
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::SqliteFile(path),
        }
    }

    /// A fresh PostgreSQL database on the server `DATABASE_URL` points at, or None when
    /// it is unset (the PostgreSQL variants of a test are then skipped).
    pub async fn postgres_from_env() -> Option<Self> {
        let admin_url = std::env::var("DATABASE_URL").ok()?;
        if !admin_url.starts_with("postgres") {
            return None;
        }
        Some(
            Self::postgres(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("creating a test database failed: {e}")),
        )
    }

    pub async fn postgres(admin_url: &str) -> Result<Self, sqlx::Error> {
        let name = format!("phasebook_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(Self {
            url: with_database(admin_url, &name),
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_string(),
                name,
            },
        })
    }

    /// `"postgres"` or `"sqlite"`: what a test names its backend in labels and ids.
    pub fn backend(&self) -> &'static str {
        match self.cleanup {
            Cleanup::SqliteFile(_) => "sqlite",
            Cleanup::Postgres { .. } => "postgres",
        }
    }

    /// Connects to the database and applies the migrations.
    pub async fn connect(&self) -> StoreResult<Database> {
        let db = Database::connect(&self.url).await?;
        db.store().migrate().await?;
        Ok(db)
    }
}

/// `admin_url` with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime, which cannot be blocked on; a
                // short-lived thread with its own runtime does the clean-up.
                let admin_url = admin_url.clone();
                let name = name.clone();
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async {
                        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "drop database if exists {name} with (force)"
                            )))
                            .execute(&mut admin)
                            .await;
                            let _ = admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A fresh SQLite database, and a fresh PostgreSQL one when `DATABASE_URL` names a server:
/// for tests that loop over the backends themselves.
pub async fn databases() -> Vec<TestDatabase> {
    let mut out = vec![TestDatabase::sqlite()];
    if let Some(pg) = TestDatabase::postgres_from_env().await {
        out.push(pg);
    }
    out
}

// Each statement below is written once for both backends: SQLite accepts `$1` too. Only
// the binding differs, since SQLite stores ids as hyphenated text.

fn sqlite_id(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// The state of an appointment's outbox row, or None when there is none.
pub async fn sync_job(db: &Database, appointment_id: Uuid) -> StoreResult<Option<String>> {
    const SQL: &str = "select state from sync_jobs where appointment_id = $1";
    Ok(match db {
        Database::Postgres(s) => {
            let query = sqlx::query_scalar(SQL).bind(appointment_id);
            query.fetch_optional(s.pool()).await?
        }
        Database::Sqlite(s) => {
            let query = sqlx::query_scalar(SQL).bind(sqlite_id(appointment_id));
            query.fetch_optional(s.pool()).await?
        }
    })
}

/// How many rows of `table` belong to the tenant.
pub async fn count_rows(db: &Database, table: &str, tenant_id: Uuid) -> StoreResult<i64> {
    let table = match table {
        "appointments" | "appointment_segments" | "sync_jobs" | "idempotency_keys" => table,
        other => panic!("count_rows does not know table {other}"),
    };
    let sql = sqlx::AssertSqlSafe(format!("select count(*) from {table} where tenant_id = $1"));
    Ok(match db {
        Database::Postgres(s) => {
            let query = sqlx::query_scalar(sql).bind(tenant_id);
            query.fetch_one(s.pool()).await?
        }
        Database::Sqlite(s) => {
            let query = sqlx::query_scalar(sql).bind(sqlite_id(tenant_id));
            query.fetch_one(s.pool()).await?
        }
    })
}

/// Runs each listed test body on a fresh SQLite database, and on a fresh PostgreSQL one
/// when `DATABASE_URL` is set. With `with setup;` each body gets what the test file's
/// `async fn setup(TestDatabase)` builds from the database; without it, the database.
#[macro_export]
macro_rules! on_both_backends {
    (with $setup:ident; $($name:ident),+ $(,)?) => {
        $crate::on_both_backends!(@run super::$setup; $($name),+);
    };
    ($($name:ident),+ $(,)?) => {
        $crate::on_both_backends!(@run $crate::database::as_is; $($name),+);
    };
    (@run $setup:path; $($name:ident),+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = $crate::TestDatabase::sqlite();
                    super::$name($setup(database).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = $crate::TestDatabase::postgres_from_env().await
                    else {
                        eprintln!("DATABASE_URL not set: PostgreSQL variant skipped");
                        return;
                    };
                    super::$name($setup(database).await).await;
                }
            )+
        }
    };
}

/// The setup of [`on_both_backends!`] without one: the body gets the database itself.
pub async fn as_is(database: TestDatabase) -> TestDatabase {
    database
}

/// `impl Deref<Target = $target> for $wrapper` through its field `$field`: a test's own
/// world (extra keys, its own helper methods) that reads like the harness it wraps.
#[macro_export]
macro_rules! deref_to {
    ($wrapper:ty => $field:ident: $target:ty) => {
        impl ::std::ops::Deref for $wrapper {
            type Target = $target;

            fn deref(&self) -> &$target {
                &self.$field
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_or_added() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
