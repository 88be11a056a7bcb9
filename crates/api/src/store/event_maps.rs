//! Event maps in storage: the row, the `EventMapStore` trait, and its implementation
//! written once for both backends ([`event_map_store!`], invoked by `pg.rs` and
//! `sqlite.rs` with their codec). Services and staff are read through the foundation's
//! [`Store`], which `EventMapStore` extends. This store is the only writer of `event_maps`
//! besides migrations and the service and staff upserts that mark maps unverified.

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

/// Which map: one per (service, segment, staff member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMapKey {
    pub service_id: ServiceId,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
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

    /// Records what a re-resolution found: the bookable event type and how it was
    /// resolved, verified at `checked_at` (clears `unverified_reason`). The sync engine's
    /// write, so `event_maps` keeps this store as its one writer.
    async fn set_bookable_event_type(
        &self,
        tenant_id: Uuid,
        key: &EventMapKey,
        bookable_event_type_id: EventTypeId,
        resolution: &str,
        checked_at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Forgets one map; false when there was none.
    async fn delete_event_map(&self, tenant_id: Uuid, key: &EventMapKey) -> StoreResult<bool>;

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

/// `$1` tenant, `$2` service, `$3` segment, `$4` staff, `$5` event type, `$6` bookable
/// event type, `$7` resolution, `$8` checked at, `$9` now. Writing a map verifies it.
pub(crate) const PUT_EVENT_MAP: &str = "insert into event_maps (tenant_id, service_id, \
     segment_key, staff_id, event_type_id, bookable_event_type_id, resolution, checked_at, \
     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
     on conflict (tenant_id, service_id, segment_key, staff_id) do update set \
     event_type_id = excluded.event_type_id, \
     bookable_event_type_id = excluded.bookable_event_type_id, \
     resolution = excluded.resolution, checked_at = excluded.checked_at, \
     unverified_reason = null, updated_at = excluded.updated_at \
     returning service_id, segment_key, staff_id, event_type_id, bookable_event_type_id, \
     resolution, checked_at, unverified_reason, created_at, updated_at";

pub(crate) const GET_EVENT_MAP: &str = "select service_id, segment_key, staff_id, \
     event_type_id, bookable_event_type_id, resolution, checked_at, unverified_reason, \
     created_at, updated_at from event_maps \
     where tenant_id = $1 and service_id = $2 and segment_key = $3 and staff_id = $4";

pub(crate) const LIST_EVENT_MAPS: &str = "select m.service_id, m.segment_key, m.staff_id, \
     m.event_type_id, m.bookable_event_type_id, m.resolution, m.checked_at, \
     m.unverified_reason, m.created_at, m.updated_at from event_maps m \
     join service_segments g on g.tenant_id = m.tenant_id and g.service_id = m.service_id \
     and g.segment_key = m.segment_key where m.tenant_id = $1 \
     order by m.service_id, g.position, m.staff_id";

/// `$1` tenant, `$2` service, `$3` segment, `$4` staff, `$5` bookable event type, `$6`
/// resolution, `$7` checked at, `$8` now.
pub(crate) const SET_BOOKABLE_EVENT_TYPE: &str = "update event_maps \
     set bookable_event_type_id = $5, resolution = $6, checked_at = $7, \
     unverified_reason = null, updated_at = $8 \
     where tenant_id = $1 and service_id = $2 and segment_key = $3 and staff_id = $4";

pub(crate) const DELETE_EVENT_MAP: &str = "delete from event_maps \
     where tenant_id = $1 and service_id = $2 and segment_key = $3 and staff_id = $4";

pub(crate) const TENANT_CALCOM: &str =
    "select calcom_api_key, calcom_base_url, calcom_team_id from tenants where tenant_id = $1";

pub(crate) const LIST_PERFORMERS: &str = "select service_id, staff_id from staff_services \
     where tenant_id = $1 order by service_id, staff_id";

pub(crate) const LIST_TENANTS: &str =
    "select tenant_id, name from tenants order by created_at, tenant_id";

/// [`EventMapStore`] for one backend, through the codec (`db_id`, `db_at`, `get_id`,
/// `get_at`) of the invoking module, as `shared::dialect_store!` does.
macro_rules! event_map_store {
    (store = $store:ty, row = $row:ty) => {
        fn event_map_from_row(row: &$row) -> StoreResult<super::event_maps::EventMap> {
            Ok(super::event_maps::EventMap {
                service_id: parse_service_id(&row.try_get::<String, _>("service_id")?)?,
                segment_key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
                staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                event_type_id: phasebook_domain::EventTypeId(row.try_get("event_type_id")?),
                bookable_event_type_id: phasebook_domain::EventTypeId(
                    row.try_get("bookable_event_type_id")?,
                ),
                resolution: row.try_get("resolution")?,
                unverified_reason: row.try_get("unverified_reason")?,
                checked_at: get_at(row, "checked_at")?,
                created_at: get_at(row, "created_at")?,
                updated_at: get_at(row, "updated_at")?,
            })
        }

        #[async_trait]
        impl super::event_maps::EventMapStore for $store {
            async fn put_event_map(
                &self,
                tenant_id: Uuid,
                map: &super::event_maps::NewEventMap,
            ) -> StoreResult<super::event_maps::EventMap> {
                let row = sqlx::query(super::event_maps::PUT_EVENT_MAP)
                    .bind(db_id(tenant_id))
                    .bind(map.service_id.as_str())
                    .bind(map.segment_key.as_str())
                    .bind(map.staff_id.as_str())
                    .bind(map.event_type_id.0)
                    .bind(map.bookable_event_type_id.0)
                    .bind(&map.resolution)
                    .bind(db_at(map.checked_at))
                    .bind(db_at(Utc::now()))
                    .fetch_one(&self.pool)
                    .await?;
                event_map_from_row(&row)
            }

            async fn get_event_map(
                &self,
                tenant_id: Uuid,
                service_id: &ServiceId,
                segment_key: &phasebook_domain::SegmentKey,
                staff_id: &StaffId,
            ) -> StoreResult<Option<super::event_maps::EventMap>> {
                let row = sqlx::query(super::event_maps::GET_EVENT_MAP)
                    .bind(db_id(tenant_id))
                    .bind(service_id.as_str())
                    .bind(segment_key.as_str())
                    .bind(staff_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(event_map_from_row).transpose()
            }

            async fn list_event_maps(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Vec<super::event_maps::EventMap>> {
                let rows = sqlx::query(super::event_maps::LIST_EVENT_MAPS)
                    .bind(db_id(tenant_id))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(event_map_from_row).collect()
            }

            async fn set_bookable_event_type(
                &self,
                tenant_id: Uuid,
                key: &super::event_maps::EventMapKey,
                bookable_event_type_id: phasebook_domain::EventTypeId,
                resolution: &str,
                checked_at: DateTime<Utc>,
            ) -> StoreResult<()> {
                sqlx::query(super::event_maps::SET_BOOKABLE_EVENT_TYPE)
                    .bind(db_id(tenant_id))
                    .bind(key.service_id.as_str())
                    .bind(key.segment_key.as_str())
                    .bind(key.staff_id.as_str())
                    .bind(bookable_event_type_id.0)
                    .bind(resolution)
                    .bind(db_at(checked_at))
                    .bind(db_at(Utc::now()))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_event_map(
                &self,
                tenant_id: Uuid,
                key: &super::event_maps::EventMapKey,
            ) -> StoreResult<bool> {
                let done = sqlx::query(super::event_maps::DELETE_EVENT_MAP)
                    .bind(db_id(tenant_id))
                    .bind(key.service_id.as_str())
                    .bind(key.segment_key.as_str())
                    .bind(key.staff_id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn tenant_calcom(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Option<super::event_maps::TenantCalcom>> {
                let row = sqlx::query(super::event_maps::TENANT_CALCOM)
                    .bind(db_id(tenant_id))
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                Ok(Some(super::event_maps::TenantCalcom {
                    api_key: crate::secrets::current().open(
                        tenant_id,
                        SecretField::CalcomApiKey,
                        row.try_get("calcom_api_key")?,
                    )?,
                    base_url: row.try_get("calcom_base_url")?,
                    team_id: row.try_get("calcom_team_id")?,
                }))
            }

            async fn list_performers(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Vec<(ServiceId, StaffId)>> {
                let rows = sqlx::query(super::event_maps::LIST_PERFORMERS)
                    .bind(db_id(tenant_id))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            parse_service_id(&row.try_get::<String, _>("service_id")?)?,
                            parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                        ))
                    })
                    .collect()
            }

            async fn list_tenants(&self) -> StoreResult<Vec<(Uuid, String)>> {
                let rows = sqlx::query(super::event_maps::LIST_TENANTS)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok((get_id(row, "tenant_id")?, row.try_get("name")?)))
                    .collect()
            }
        }
    };
}

pub(crate) use event_map_store;
