//! Cal.com's free time for bookable event types, read through the tenant's Cal.com client
//! (so every read waits in the tenant's rate limiter) and cached per (event type, UTC day)
//! for at most [`FREE_TIME_TTL`]. phasebook's own bookings, holds and cancels, and Cal.com
//! webhooks, drop a tenant's cached days. A failed read is never papered over: the caller
//! gets [`FreeTimeError`] and must not guess.
//!
//! Free time is the union of the `format=range` slots Cal.com offers (FACTS.md 6); see
//! `phasebook_domain::availability` for why slot starts themselves are not used.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use calcom_client::{CalcomError, SlotsQuery};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use phasebook_domain::availability::{Span, union};
use uuid::Uuid;

use crate::store::sync::TenantConnection;
use crate::sync::ClientCache;

/// How long a read of Cal.com's slots is trusted.
pub const FREE_TIME_TTL: Duration = Duration::from_secs(30);

/// Cal.com could not tell us its free time.
#[derive(Debug, thiserror::Error)]
#[error("Cal.com free time unavailable: {reason}")]
pub struct FreeTimeError {
    pub reason: String,
    /// When asking again makes sense.
    pub retry_after: Duration,
}

struct Entry {
    fetched: Instant,
    spans: Vec<Span>,
}

type Key = (Uuid, i64, NaiveDate);

/// The shared reader and cache.
pub struct FreeTime {
    clients: std::sync::Arc<ClientCache>,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Bumped on invalidation; a read that began before a bump does not fill the cache.
    generations: Mutex<HashMap<Uuid, u64>>,
    requests: AtomicU64,
}

impl FreeTime {
    pub fn new(clients: std::sync::Arc<ClientCache>) -> Self {
        Self {
            clients,
            ttl: FREE_TIME_TTL,
            entries: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// The per-tenant Cal.com clients these reads share (and their rate limiters).
    pub fn clients(&self) -> &std::sync::Arc<ClientCache> {
        &self.clients
    }

    /// Slot reads sent to Cal.com so far (for benchmarks and metrics).
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Forgets the tenant's cached free time: something changed it.
    pub fn invalidate(&self, tenant_id: Uuid) {
        *self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant_id)
            .or_default() += 1;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(tenant, _, _), _| *tenant != tenant_id);
    }

    fn generation(&self, tenant_id: Uuid) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// Free time of each event type over `span`, reading what is not cached from Cal.com
    /// in parallel (one request per event type for its missing days).
    pub async fn read(
        &self,
        tenant: &TenantConnection,
        event_types: &[i64],
        span: Span,
    ) -> Result<HashMap<i64, Vec<Span>>, FreeTimeError> {
        let days = utc_days(span);
        let generation = self.generation(tenant.tenant_id);
        let mut missing: Vec<(i64, Vec<NaiveDate>)> = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let unique: BTreeSet<i64> = event_types.iter().copied().collect();
            for event_type in unique {
                let gaps: Vec<NaiveDate> = days
                    .iter()
                    .copied()
                    .filter(|day| {
                        entries
                            .get(&(tenant.tenant_id, event_type, *day))
                            .is_none_or(|e| e.fetched.elapsed() > self.ttl)
                    })
                    .collect();
                if !gaps.is_empty() {
                    missing.push((event_type, gaps));
                }
            }
        }
        if !missing.is_empty() {
            let client = self.clients.get(tenant).map_err(|e| unavailable(&e))?;
            let reads = missing.iter().map(|(event_type, gaps)| {
                let client = client.clone();
                let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
                async move {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let query = SlotsQuery {
                        event_type_id: *event_type,
                        start: first.and_time(NaiveTime::MIN).and_utc(),
                        end: last.and_time(NaiveTime::MIN).and_utc() + TimeDelta::seconds(86_399),
                        time_zone: None,
                        duration: None,
                        booking_uid_to_reschedule: None,
                    };
                    let slots = client
                        .get_slots(&query)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    let mut by_day: HashMap<NaiveDate, Vec<Span>> = first
                        .iter_days()
                        .take_while(|d| *d <= last)
                        .map(|d| (d, Vec::new()))
                        .collect();
                    for slot in slots.into_values().flatten() {
                        let start = slot.start.with_timezone(&Utc);
                        let Some(end) = slot.end.map(|e| e.with_timezone(&Utc)) else {
                            continue;
                        };
                        by_day
                            .entry(start.date_naive())
                            .or_default()
                            .push(Span::new(start, end));
                    }
                    Ok::<_, FreeTimeError>((*event_type, by_day))
                }
            });
            let results = futures::future::join_all(reads).await;
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = self.generation(tenant.tenant_id) == generation;
            let mut read_now: HashMap<Key, Vec<Span>> = HashMap::new();
            for result in results {
                let (event_type, by_day) = result?;
                for (day, spans) in by_day {
                    read_now.insert((tenant.tenant_id, event_type, day), union(spans));
                }
            }
            if fresh {
                let now = Instant::now();
                entries.retain(|_, e| e.fetched.elapsed() <= self.ttl);
                for (key, spans) in &read_now {
                    entries.insert(
                        *key,
                        Entry {
                            fetched: now,
                            spans: spans.clone(),
                        },
                    );
                }
            }
            return Ok(self.assemble(&entries, &read_now, tenant.tenant_id, event_types, &days));
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.assemble(
            &entries,
            &HashMap::new(),
            tenant.tenant_id,
            event_types,
            &days,
        ))
    }

    fn assemble(
        &self,
        entries: &HashMap<Key, Entry>,
        read_now: &HashMap<Key, Vec<Span>>,
        tenant_id: Uuid,
        event_types: &[i64],
        days: &[NaiveDate],
    ) -> HashMap<i64, Vec<Span>> {
        event_types
            .iter()
            .map(|event_type| {
                let spans = days
                    .iter()
                    .flat_map(|day| {
                        let key = (tenant_id, *event_type, *day);
                        read_now
                            .get(&key)
                            .cloned()
                            .or_else(|| entries.get(&key).map(|e| e.spans.clone()))
                            .unwrap_or_default()
                    })
                    .collect();
                (*event_type, union(spans))
            })
            .collect()
    }
}

fn unavailable(err: &CalcomError) -> FreeTimeError {
    let retry_after = match err {
        CalcomError::RateLimited { reset_after, .. } => {
            (*reset_after).clamp(Duration::from_secs(1), Duration::from_secs(60))
        }
        _ => Duration::from_secs(5),
    };
    FreeTimeError {
        reason: format!("{} ({})", err.kind(), err),
        retry_after,
    }
}

/// The UTC days a span touches.
fn utc_days(span: Span) -> Vec<NaiveDate> {
    let first = span.start.date_naive();
    let last = (span.end - TimeDelta::milliseconds(1)).date_naive();
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// The instant a cached day starts (for tests of the day split).
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_span_touches_each_utc_day_once() {
        let at = |d, h| {
            Utc.with_ymd_and_hms(2026, 5, d, h, 0, 0)
                .single()
                .expect("instant")
        };
        assert_eq!(utc_days(Span::new(at(4, 22), at(5, 0))).len(), 1);
        assert_eq!(utc_days(Span::new(at(4, 22), at(5, 1))).len(), 2);
        assert_eq!(day_start(at(4, 3).date_naive()), at(4, 0));
    }
}
