//! The event-type drift check before a create, and what it keeps between runs: the
//! answers of the last minute (one read per type, host and length, shared by every segment
//! that asks at once), each host's listing of the last minute, the Cal.com read that last
//! showed each type, the user each tenant's key acts as, and the fits other processes on the
//! database found. Whether a type still fits is the domain's [`drift_refusal`]; this file
//! only reads and remembers.
//!
//! A host's types are read together: the host's public listing (`GET /v2/event-types?username=`)
//! shows every personal type of theirs (managed children included) in one request, and every
//! fit it shows is shared at once. A salon whose segments each have their own type then spends
//! one request a minute per stylist on checks instead of one per type, out of the 120 a
//! minute its key has for bookings too. Team types are not in a listing; they are read by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calcom_client::CalcomClient;
use chrono::Utc;
use phasebook_domain::EventTypeId;
use phasebook_domain::resolution::{EventTypeFacts, HostIdentity, Refusal};
use phasebook_domain::sync::{EVENT_TYPE_CHECK_TTL_SECS, drift_refusal};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::clients::key_fingerprint;
use super::shared_checks::{CheckKey as SharedCheckKey, SharedChecks};
use crate::event_maps::calcom::{ReadRoute, facts, host_listing, read_event_type_via};
use crate::store::sync::TenantConnection;

/// The drift checks of one process (see the module documentation).
#[derive(Default)]
pub struct EventTypeChecks {
    checked: Mutex<HashMap<CheckKey, Arc<CheckSlot>>>,
    /// Each (tenant, host)'s listing of the last minute; `None` inside when Cal.com did not
    /// answer (not asked again within the minute).
    listings: Mutex<HashMap<(Uuid, i64), Arc<ListingSlot>>>,
    /// Which Cal.com read last showed each (tenant, event type), asked first next time.
    read_routes: Mutex<HashMap<(Uuid, i64), ReadRoute>>,
    /// The Cal.com user each tenant's key acts as (`GET /v2/me`, once per process): a type
    /// of that user is read by id, another user's in their listing — one round trip.
    key_owners: Mutex<HashMap<Uuid, Arc<OnceCell<Option<i64>>>>>,
    /// Fits found by any process on this database (see [`super::shared_checks`]).
    pub shared: Option<SharedChecks>,
}

/// One drift check, shared by every segment that asks while it is fresh.
struct CheckSlot {
    at: Instant,
    answer: OnceCell<Option<Refusal>>,
}

/// One host's listing, shared by the checks of every type of theirs while it is fresh.
struct ListingSlot {
    at: Instant,
    listed: OnceCell<Option<Vec<EventTypeFacts>>>,
}

/// (tenant, bookable event type, Cal.com user, segment minutes).
type CheckKey = (Uuid, i64, i64, u32);

/// What one drift check is about.
pub struct DriftAsk<'a> {
    pub tenant: &'a TenantConnection,
    pub host: &'a HostIdentity,
    pub bookable: EventTypeId,
    pub minutes: u32,
    /// Ask Cal.com now rather than trust a recent answer (a resync: ops may just have fixed
    /// the type).
    pub fresh: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl EventTypeChecks {
    /// Whether the bookable event type still fits the segment's length and host, read at
    /// most once a minute per type, host and length. Cal.com not answering is not drift:
    /// the create then decides.
    pub async fn drifted(&self, client: &CalcomClient, ask: &DriftAsk<'_>) -> Option<Refusal> {
        let tenant_id = ask.tenant.tenant_id;
        let key = (tenant_id, ask.bookable.0, ask.host.user_id.0, ask.minutes);
        let ttl = Duration::from_secs(EVENT_TYPE_CHECK_TTL_SECS);
        let slot = {
            let mut checked = lock(&self.checked);
            checked.retain(|_, slot| slot.at.elapsed() < ttl);
            if ask.fresh {
                checked.remove(&key);
            }
            checked
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(CheckSlot {
                        at: Instant::now(),
                        answer: OnceCell::new(),
                    })
                })
                .clone()
        };
        slot.answer
            .get_or_init(|| self.read(client, ask, ttl))
            .await
            .clone()
    }

    async fn read(
        &self,
        client: &CalcomClient,
        ask: &DriftAsk<'_>,
        ttl: Duration,
    ) -> Option<Refusal> {
        let shared_key = SharedCheckKey {
            key_fingerprint: key_fingerprint(&ask.tenant.base_url, &ask.tenant.api_key),
            event_type_id: ask.bookable.0,
            host_user_id: ask.host.user_id.0,
            length_minutes: ask.minutes,
        };
        let shared = self.shared.as_ref();
        if let Some(shared) = shared
            && !ask.fresh
            && shared.fitted_recently(&shared_key, Utc::now(), ttl).await
        {
            return None;
        }
        let route_key = (ask.tenant.tenant_id, ask.bookable.0);
        let remembered = lock(&self.read_routes).get(&route_key).copied();
        // A type last seen on the team endpoint is in no host's listing.
        if remembered != Some(ReadRoute::Team)
            && let Some(listed) = self.listing(client, ask, ttl).await
            && let Some(found) = listed.iter().find(|f| f.id == ask.bookable)
        {
            lock(&self.read_routes).insert(route_key, ReadRoute::Listing);
            let refusal = drift_refusal(ask.bookable, Some(found), ask.host, ask.minutes);
            // The listing shared the fit at the type's own length; a segment of another
            // length that still fits (none today) is shared on its own.
            if let Some(shared) = shared
                && refusal.is_none()
                && i64::from(ask.minutes) != found.length_minutes
            {
                shared.record_fit(&shared_key, Utc::now()).await;
            }
            return refusal;
        }
        let first = match remembered {
            Some(route) => Some(route),
            None => self
                .key_owner(client, ask.tenant.tenant_id)
                .await
                .map(|owner| {
                    if owner == ask.host.user_id.0 {
                        ReadRoute::Own
                    } else {
                        ReadRoute::Listing
                    }
                }),
        };
        let read =
            read_event_type_via(client, ask.tenant.team_id, ask.bookable, ask.host, first).await;
        // A read that failed is remembered too: at most one extra read a minute, whatever
        // Cal.com's state.
        let read = read.ok()?;
        if let Some((_, route)) = &read {
            lock(&self.read_routes).insert(route_key, *route);
        }
        let facts = read.as_ref().map(|(et, _)| facts(et));
        let refusal = drift_refusal(ask.bookable, facts.as_ref(), ask.host, ask.minutes);
        if let Some(shared) = shared
            && refusal.is_none()
            && facts.is_some()
        {
            shared.record_fit(&shared_key, Utc::now()).await;
        }
        refusal
    }

    /// The host's listing, read at most once a minute per host (a resync reads it again).
    /// Every type in it that fits the host at its own length is shared with the other
    /// processes as soon as it is read. `None`: Cal.com did not answer.
    async fn listing(
        &self,
        client: &CalcomClient,
        ask: &DriftAsk<'_>,
        ttl: Duration,
    ) -> Option<Vec<EventTypeFacts>> {
        let key = (ask.tenant.tenant_id, ask.host.user_id.0);
        let slot = {
            let mut listings = lock(&self.listings);
            listings.retain(|_, slot| slot.at.elapsed() < ttl);
            if ask.fresh {
                listings.remove(&key);
            }
            listings
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(ListingSlot {
                        at: Instant::now(),
                        listed: OnceCell::new(),
                    })
                })
                .clone()
        };
        slot.listed
            .get_or_init(|| async {
                let listed = host_listing(client, ask.host).await.ok()?;
                if let Some(shared) = &self.shared {
                    let fingerprint = key_fingerprint(&ask.tenant.base_url, &ask.tenant.api_key);
                    let now = Utc::now();
                    for found in &listed {
                        let Ok(minutes) = u32::try_from(found.length_minutes) else {
                            continue;
                        };
                        if drift_refusal(found.id, Some(found), ask.host, minutes).is_none() {
                            let key = SharedCheckKey {
                                key_fingerprint: fingerprint,
                                event_type_id: found.id.0,
                                host_user_id: ask.host.user_id.0,
                                length_minutes: minutes,
                            };
                            shared.record_fit(&key, now).await;
                        }
                    }
                }
                Some(listed)
            })
            .await
            .clone()
    }

    /// The Cal.com user the tenant's key acts as, asked once per process; `None` when
    /// Cal.com did not say (the reads then go in their usual order).
    async fn key_owner(&self, client: &CalcomClient, tenant_id: Uuid) -> Option<i64> {
        let cell = lock(&self.key_owners).entry(tenant_id).or_default().clone();
        let owner = cell
            .get_or_init(|| async { client.me().await.ok().map(|me| me.id) })
            .await;
        if owner.is_none() {
            // Not remembered: the next check asks again.
            lock(&self.key_owners).remove(&tenant_id);
        }
        *owner
    }

    /// Drops the remembered checks of `event_type`: the next create reads it again.
    pub async fn forget(&self, tenant: &TenantConnection, event_type: EventTypeId) {
        lock(&self.checked)
            .retain(|(t, id, _, _), _| !(*t == tenant.tenant_id && *id == event_type.0));
        // Which host lists the type is not known here: the tenant's listings are read again.
        lock(&self.listings).retain(|(t, _), _| *t != tenant.tenant_id);
        if let Some(shared) = &self.shared {
            shared
                .forget(
                    &key_fingerprint(&tenant.base_url, &tenant.api_key),
                    event_type.0,
                )
                .await;
        }
    }
}
