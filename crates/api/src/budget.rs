//! One Cal.com request budget per API key for every process on the database: each request
//! takes its token from the key's row in `calcom_budgets` with one atomic statement (a
//! fixed window of the configured size, as Cal.com counts), Cal.com's rate-limit headers
//! tighten the row, and a 429 pauses it until Cal.com's reset, for every process at once.
//!
//! Why a window row per request rather than tokens leased in batches: a request to Cal.com
//! costs ~100 ms and a key allows two a second, so one short statement per request is
//! noise, while a leased batch strands tokens in idle processes (three replicas holding
//! five each is an eighth of the minute) and lets a process spend them after a 429 paused
//! everyone else.
//!
//! Priorities: an interactive request may use the whole window, a background one only what
//! is left after [`calcom_client::interactive_reserve`], and none at all while an
//! interactive request is waiting for a token. Background requests of one key
//! queue behind each other in this process, interactive ones never queue behind them.
//!
//! Background work is also paced over the window: by a tenth of the window it may have
//! taken a tenth of its share, and so on. A window is a fixed minute, so without pacing a
//! `doctor` loop starting on a quiet minute takes most of it in its first seconds, and the
//! callers who arrive later in that minute find it spent and wait for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calcom_client::{Budget, BudgetFuture, LocalBudget, Priority, RateLimit, WindowReport};
use sqlx::Row;

use crate::store::Database;

/// Added to each window: a request is counted when Cal.com receives it, a little after it
/// took its token, so a window that ended here may still be open there.
const EDGE_MARGIN: Duration = Duration::from_secs(1);
/// The longest a waiting request sleeps before it looks at the row again (a 429 elsewhere
/// or a header correction may have moved the end of the wait).
const LONGEST_NAP: Duration = Duration::from_secs(1);
/// How long background work stays off the budget after an interactive request was refused
/// a token: longer than a waiting request's nap, so a caller still waiting keeps it off.
const INTERACTIVE_WAIT_HOLDS_BACKGROUND: Duration = Duration::from_secs(2);
/// After a database error, requests fall back to a budget in this process for this long.
const FALLBACK_FOR: Duration = Duration::from_secs(5);

/// Identifies an API key in the budget table: SHA-256 of the base URL and the key.
pub type KeyFingerprint = [u8; 32];

/// This process's budget handles, one per key and configured limit.
type KeyBudgets = HashMap<(KeyFingerprint, RateLimit), Arc<SharedBudget>>;

/// The budgets of this process, one per key, all backed by the database.
#[derive(Clone)]
pub struct Budgets {
    db: Database,
    keys: Arc<Mutex<KeyBudgets>>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets").finish_non_exhaustive()
    }
}

impl Budgets {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            keys: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The database the budgets live in (other per-key state shares it).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The key's budget; every client of the key in this process gets the same one.
    pub fn for_key(&self, fingerprint: KeyFingerprint, limit: RateLimit) -> Arc<SharedBudget> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry((fingerprint, limit))
            .or_insert_with(|| {
                Arc::new(SharedBudget {
                    db: self.db.clone(),
                    fingerprint,
                    limit,
                    background_turn: tokio::sync::Mutex::new(()),
                    fallback: LocalBudget::new(limit.requests, limit.per),
                    fallback_until: Mutex::new(None),
                })
            })
            .clone()
    }
}

/// One key's budget in the database.
pub struct SharedBudget {
    db: Database,
    fingerprint: KeyFingerprint,
    limit: RateLimit,
    /// Background requests of this key in this process wait in line here (FIFO), so only
    /// one of them at a time asks the database.
    background_turn: tokio::sync::Mutex<()>,
    /// Used while the database does not answer: a stalled budget must not stall bookings.
    fallback: LocalBudget,
    fallback_until: Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn unix_ms_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SharedBudget {
    fn window_ms(&self) -> i64 {
        ms(self.limit.per + EDGE_MARGIN)
    }

    fn reserve(&self) -> i64 {
        i64::from(calcom_client::interactive_reserve(self.limit.requests))
    }

    fn in_fallback(&self) -> bool {
        let mut until = self
            .fallback_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if t > tokio::time::Instant::now() => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn fall_back(&self, err: &sqlx::Error) {
        tracing::warn!(error = %err, "the shared Cal.com budget did not answer; using this process's own for a few seconds");
        *self
            .fallback_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + FALLBACK_FOR);
    }

    /// Takes one token when the window allows it; otherwise says how long to wait.
    ///
    /// An interactive request may use the whole window. A background one leaves room for
    /// the interactive requests still to come in this window (at least the reserve),
    /// expected to be the larger of two guesses: as many as the last window asked for,
    /// served or refused, and this window's demand so far carried on at its pace to the
    /// window's end. And it stays within its share of the time gone by, so a steady stream
    /// of callers is never crowded out by work taken early in a window, even in the first
    /// busy minute after a quiet one.
    pub async fn try_take(&self, priority: Priority) -> Result<Option<Duration>, sqlx::Error> {
        let interactive = priority == Priority::Interactive;
        let limit = i64::from(self.limit.requests);
        let wait_ms: Option<i64> = match &self.db {
            Database::Postgres(store) => {
                let row = sqlx::query(
                    "with taken as ( \
                       insert into calcom_budgets as b (key_fingerprint, window_ends_at, used, \
                         interactive_used, interactive_last) \
                       values ($1, now() + $3 * interval '1 millisecond', 1, $4::int, 0) \
                       on conflict (key_fingerprint) do update set \
                         used = case when b.window_ends_at <= now() then 1 else b.used + 1 end, \
                         interactive_used = case when b.window_ends_at <= now() then $4::int \
                           else b.interactive_used + $4::int end, \
                         interactive_last = case when b.window_ends_at <= now() then \
                           (case when b.window_ends_at > now() - $3 * interval '1 millisecond' \
                             then b.interactive_used + b.interactive_refused else 0 end) \
                           else b.interactive_last end, \
                         interactive_refused = case when b.window_ends_at <= now() then 0 \
                           else b.interactive_refused end, \
                         window_ends_at = case when b.window_ends_at <= now() \
                           then excluded.window_ends_at else b.window_ends_at end \
                       where (b.paused_until is null or b.paused_until <= now()) \
                         and ($4 or b.interactive_waiting_until is null \
                           or b.interactive_waiting_until <= now()) \
                         and case when b.window_ends_at <= now() then \
                           $4 or $2 - greatest($5, case when b.window_ends_at > now() - $3 * interval '1 millisecond' \
                             then b.interactive_used + b.interactive_refused else 0 end) > 0 \
                         else b.used < $2 and ($4 or ( \
                           b.used < $2 - greatest($5, b.interactive_last - b.interactive_used, \
                             (b.interactive_used + b.interactive_refused) / greatest(0.05, least(1.0, 1.0 - extract(epoch from b.window_ends_at - now()) * 1000.0 / $3)) - b.interactive_used) \
                           and b.used - b.interactive_used < greatest(0.05, least(1.0, 1.0 - extract(epoch from b.window_ends_at - now()) * 1000.0 / $3)) * ($2 - $5) + 1)) end \
                       returning 1) \
                     select exists (select 1 from taken) as granted, \
                       (select ceil(greatest( \
                          extract(epoch from coalesce(paused_until, now()) - now()), \
                          case when window_ends_at <= now() then 0.25 \
                            else extract(epoch from window_ends_at - now()) end) * 1000)::bigint \
                        from calcom_budgets where key_fingerprint = $1) as wait_ms",
                )
                .bind(&self.fingerprint[..])
                .bind(limit)
                .bind(self.window_ms())
                .bind(interactive)
                .bind(self.reserve())
                .fetch_one(&store.pool)
                .await?;
                if row.try_get::<bool, _>("granted")? {
                    None
                } else {
                    Some(row.try_get::<Option<i64>, _>("wait_ms")?.unwrap_or(0))
                }
            }
            Database::Sqlite(store) => {
                let now = unix_ms_now();
                let taken = sqlx::query(
                    "insert into calcom_budgets as b (key_fingerprint, window_ends_at, used, \
                       interactive_used, interactive_last) \
                     values ($1, $6 + $3, 1, $4, 0) \
                     on conflict (key_fingerprint) do update set \
                       used = case when b.window_ends_at <= $6 then 1 else b.used + 1 end, \
                       interactive_used = case when b.window_ends_at <= $6 then $4 \
                         else b.interactive_used + $4 end, \
                       interactive_last = case when b.window_ends_at <= $6 then \
                         (case when b.window_ends_at > $6 - $3 \
                           then b.interactive_used + b.interactive_refused else 0 end) \
                         else b.interactive_last end, \
                       interactive_refused = case when b.window_ends_at <= $6 then 0 \
                         else b.interactive_refused end, \
                       window_ends_at = case when b.window_ends_at <= $6 \
                         then excluded.window_ends_at else b.window_ends_at end \
                     where (b.paused_until is null or b.paused_until <= $6) \
                       and ($4 or b.interactive_waiting_until is null \
                         or b.interactive_waiting_until <= $6) \
                       and case when b.window_ends_at <= $6 then \
                         $4 or $2 - max($5, case when b.window_ends_at > $6 - $3 \
                           then b.interactive_used + b.interactive_refused else 0 end) > 0 \
                       else b.used < $2 and ($4 or ( \
                         b.used < $2 - max($5, b.interactive_last - b.interactive_used, \
                           (b.interactive_used + b.interactive_refused) / max(0.05, min(1.0, 1.0 - (b.window_ends_at - $6) * 1.0 / $3)) - b.interactive_used) \
                         and b.used - b.interactive_used < max(0.05, min(1.0, 1.0 - (b.window_ends_at - $6) * 1.0 / $3)) * ($2 - $5) + 1)) end",
                )
                .bind(&self.fingerprint[..])
                .bind(limit)
                .bind(self.window_ms())
                .bind(i64::from(interactive))
                .bind(self.reserve())
                .bind(now)
                .execute(&store.pool)
                .await?;
                if taken.rows_affected() == 1 {
                    None
                } else {
                    let wait: Option<i64> = sqlx::query_scalar(
                        "select max(coalesce(paused_until, $2) - $2, \
                           case when window_ends_at <= $2 then 250 \
                             else window_ends_at - $2 end) \
                         from calcom_budgets where key_fingerprint = $1",
                    )
                    .bind(&self.fingerprint[..])
                    .bind(now)
                    .fetch_optional(&store.pool)
                    .await?;
                    Some(wait.unwrap_or(0))
                }
            }
        };
        Ok(wait_ms.map(|w| Duration::from_millis(u64::try_from(w).unwrap_or(0))))
    }

    /// Marks the key's row: an interactive request is waiting for a token, so background
    /// work takes none until shortly after the last such request was refused. A request's
    /// first refusal also counts it in the window's interactive demand, which the next
    /// window leaves room for (a request served late must not make the demand look small).
    async fn interactive_waits(&self, first_refusal: bool) -> Result<(), sqlx::Error> {
        let hold_ms = ms(INTERACTIVE_WAIT_HOLDS_BACKGROUND);
        match &self.db {
            Database::Postgres(store) => {
                sqlx::query(
                    "update calcom_budgets set interactive_waiting_until = \
                       now() + $2 * interval '1 millisecond', \
                       interactive_refused = interactive_refused + $3 where key_fingerprint = $1",
                )
                .bind(&self.fingerprint[..])
                .bind(hold_ms)
                .bind(i32::from(first_refusal))
                .execute(&store.pool)
                .await?;
            }
            Database::Sqlite(store) => {
                sqlx::query(
                    "update calcom_budgets set interactive_waiting_until = $2, \
                       interactive_refused = interactive_refused + $3 where key_fingerprint = $1",
                )
                .bind(&self.fingerprint[..])
                .bind(unix_ms_now() + hold_ms)
                .bind(i32::from(first_refusal))
                .execute(&store.pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn take(&self, priority: Priority) {
        let _turn = match priority {
            Priority::Background => Some(self.background_turn.lock().await),
            Priority::Interactive => None,
        };
        let mut refused = false;
        loop {
            if self.in_fallback() {
                self.fallback.acquire(priority).await;
                return;
            }
            match self.try_take(priority).await {
                Ok(None) => return,
                Ok(Some(wait)) => {
                    if priority == Priority::Interactive {
                        if let Err(err) = self.interactive_waits(!refused).await {
                            tracing::warn!(error = %err, "could not mark an interactive request waiting in the shared budget");
                        }
                        refused = true;
                    }
                    tokio::time::sleep(wait.clamp(Duration::from_millis(5), LONGEST_NAP)).await;
                }
                Err(err) => self.fall_back(&err),
            }
        }
    }

    /// Applies Cal.com's count: never loosens within a window, and ignores a report about
    /// a window that ended before this one began (an answer that was slow to arrive).
    ///
    /// A report about Cal.com's next window (a request sent in this window's last moments
    /// reached Cal.com after its window turned) starts that window here too, with Cal.com's
    /// count. Stretching this window to Cal.com's reset instead would keep this window's
    /// count for a second minute and leave half the key's requests unused.
    pub async fn correct(&self, report: WindowReport) -> Result<(), sqlx::Error> {
        let used = i64::from(self.limit.requests) - i64::from(report.remaining);
        let reset_ms = ms(report.reset_after);
        let window_ms = self.window_ms();
        match &self.db {
            Database::Postgres(store) => {
                sqlx::query(
                    "update calcom_budgets b set \
                       used = case when r.ends > b.window_ends_at + $4 / 2 * interval '1 millisecond' then $2 else greatest(b.used, $2) end, \
                       interactive_last = case when r.ends > b.window_ends_at + $4 / 2 * interval '1 millisecond' \
                         then b.interactive_used + b.interactive_refused else b.interactive_last end, \
                       interactive_used = case when r.ends > b.window_ends_at + $4 / 2 * interval '1 millisecond' then 0 else b.interactive_used end, \
                       interactive_refused = case when r.ends > b.window_ends_at + $4 / 2 * interval '1 millisecond' then 0 else b.interactive_refused end, \
                       window_ends_at = case when r.ends > b.window_ends_at + $4 / 2 * interval '1 millisecond' then r.ends \
                         else greatest(b.window_ends_at, r.ends) end \
                     from (select now() + $3 * interval '1 millisecond' as ends) r \
                     where b.key_fingerprint = $1 \
                       and r.ends > b.window_ends_at - $4 * interval '1 millisecond' \
                       and (b.used < $2 or b.window_ends_at < r.ends)",
                )
                .bind(&self.fingerprint[..])
                .bind(used)
                .bind(reset_ms)
                .bind(window_ms)
                .execute(&store.pool)
                .await?;
            }
            Database::Sqlite(store) => {
                sqlx::query(
                    "update calcom_budgets set \
                       used = case when $5 + $3 > window_ends_at + $4 / 2 then $2 else max(used, $2) end, \
                       interactive_last = case when $5 + $3 > window_ends_at + $4 / 2 \
                         then interactive_used + interactive_refused else interactive_last end, \
                       interactive_used = case when $5 + $3 > window_ends_at + $4 / 2 then 0 else interactive_used end, \
                       interactive_refused = case when $5 + $3 > window_ends_at + $4 / 2 then 0 else interactive_refused end, \
                       window_ends_at = case when $5 + $3 > window_ends_at + $4 / 2 then $5 + $3 \
                         else max(window_ends_at, $5 + $3) end \
                     where key_fingerprint = $1 and $5 + $3 > window_ends_at - $4 \
                       and (used < $2 or window_ends_at < $5 + $3)",
                )
                .bind(&self.fingerprint[..])
                .bind(used)
                .bind(reset_ms)
                .bind(window_ms)
                .bind(unix_ms_now())
                .execute(&store.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Holds every process's requests of this key until `reset_after` from now.
    pub async fn pause_all(&self, reset_after: Duration) -> Result<(), sqlx::Error> {
        let reset_ms = ms(reset_after);
        match &self.db {
            Database::Postgres(store) => {
                sqlx::query(
                    "insert into calcom_budgets as b (key_fingerprint, window_ends_at, used, paused_until) \
                     values ($1, now(), 0, now() + $2 * interval '1 millisecond') \
                     on conflict (key_fingerprint) do update set paused_until = \
                       greatest(coalesce(b.paused_until, now()), excluded.paused_until)",
                )
                .bind(&self.fingerprint[..])
                .bind(reset_ms)
                .execute(&store.pool)
                .await?;
            }
            Database::Sqlite(store) => {
                let now = unix_ms_now();
                sqlx::query(
                    "insert into calcom_budgets as b (key_fingerprint, window_ends_at, used, paused_until) \
                     values ($1, $3, 0, $3 + $2) \
                     on conflict (key_fingerprint) do update set paused_until = \
                       max(coalesce(b.paused_until, $3), excluded.paused_until)",
                )
                .bind(&self.fingerprint[..])
                .bind(reset_ms)
                .bind(now)
                .execute(&store.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// The budget as the Cal.com client sees it. Corrections and pauses are written in the
/// background so they never delay the answer they came with.
#[derive(Debug, Clone)]
pub struct KeyBudget(pub Arc<SharedBudget>);

impl Budget for KeyBudget {
    fn acquire(&self, priority: Priority) -> BudgetFuture<'_> {
        Box::pin(self.0.take(priority))
    }

    fn observe(&self, report: WindowReport) {
        let budget = self.0.clone();
        tokio::spawn(async move {
            if let Err(err) = budget.correct(report).await {
                tracing::warn!(error = %err, "could not apply Cal.com's rate-limit headers to the shared budget");
            }
        });
    }

    fn pause(&self, reset_after: Duration) {
        // This process stops at once; the others when the row says so.
        self.0.fallback.pause(reset_after);
        let budget = self.0.clone();
        tokio::spawn(async move {
            if let Err(err) = budget.pause_all(reset_after).await {
                tracing::warn!(error = %err, "could not record Cal.com's 429 in the shared budget");
            }
        });
    }
}
