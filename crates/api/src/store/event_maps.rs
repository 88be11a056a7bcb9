//! Event maps in storage: the row, and the `EventMapStore` trait both backends implement
//! (`pg_event_maps.rs`, `sqlite_event_maps.rs`). Services and staff are read through the
//! foundation's [`Store`], which `EventMapStore` extends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Database, Store, StoreResult};

/// One stored event map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMap {
    pub service_id: ServiceId,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub event_type_id: EventTypeId,
    pub bookable_event_type_id: EventTypeId,
    /// A `ResolutionKind` word; kept as text so a word written by a newer version still
    /// reads.
    pub resolution: String,
    pub checked_at: DateTime<Utc>,
    /// Why the map must be checked again before anything is booked on it: its segment's
    /// length or its staff member's Cal.com user changed after `checked_at`.
    pub unverified_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a map is written with; `now` becomes `updated_at` (and `created_at` of a new map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEventMap {
    pub service_id: ServiceId,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub event_type_id: EventTypeId,
    pub bookable_event_type_id: EventTypeId,
    pub resolution: String,
    pub checked_at: DateTime<Utc>,
}

/// The tenant's Cal.com connection.
#[derive(Debug, Clone)]
pub struct TenantCalcom {
    pub api_key: SecretString,
    pub base_url: String,
    pub team_id: Option<i64>,
}

/// Storage for event maps. Every call is scoped to one tenant.
#[async_trait]
pub trait EventMapStore: Store {
    /// Inserts or replaces the map for (service, segment, staff).
    async fn put_event_map(&self, tenant_id: Uuid, map: &NewEventMap) -> StoreResult<EventMap>;

    async fn get_event_map(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
        segment_key: &SegmentKey,
        staff_id: &StaffId,
    ) -> StoreResult<Option<EventMap>>;

    /// All of the tenant's maps, ordered by service, segment position, staff.
    async fn list_event_maps(&self, tenant_id: Uuid) -> StoreResult<Vec<EventMap>>;

    /// The tenant's Cal.com key, base URL and team id (`None`: no such tenant).
    async fn tenant_calcom(&self, tenant_id: Uuid) -> StoreResult<Option<TenantCalcom>>;

    /// Every (service, staff) pair where the staff member performs the service.
    async fn list_performers(&self, tenant_id: Uuid) -> StoreResult<Vec<(ServiceId, StaffId)>>;

    /// Every tenant's id and name, oldest first: what `phasebook doctor` walks when no
    /// tenant is named.
    async fn list_tenants(&self) -> StoreResult<Vec<(Uuid, String)>>;
}

impl Database {
    /// The event-map view of the configured backend.
    pub fn event_maps(&self) -> &dyn EventMapStore {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }
}
