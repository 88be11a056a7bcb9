//! [`EventMapStore`] for SQLite: the tenant id is hyphenated TEXT and instants are INTEGER
//! unix milliseconds, as in `migrations/sqlite`.

use async_trait::async_trait;
use chrono::Utc;
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::event_maps::{EventMap, EventMapStore, NewEventMap, TenantCalcom};
use super::sqlite::{from_ms, to_ms};
use super::{
    SqliteStore, StoreError, StoreResult, parse_segment_key, parse_service_id, parse_staff_id,
};

fn map_from_row(row: &SqliteRow) -> StoreResult<EventMap> {
    Ok(EventMap {
        service_id: parse_service_id(row.try_get("service_id")?)?,
        segment_key: parse_segment_key(row.try_get("segment_key")?)?,
        staff_id: parse_staff_id(row.try_get("staff_id")?)?,
        event_type_id: EventTypeId(row.try_get("event_type_id")?),
        bookable_event_type_id: EventTypeId(row.try_get("bookable_event_type_id")?),
        resolution: row.try_get("resolution")?,
        unverified_reason: row.try_get("unverified_reason")?,
        checked_at: from_ms(row.try_get("checked_at")?)?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

#[async_trait]
impl EventMapStore for SqliteStore {
    async fn put_event_map(&self, tenant_id: Uuid, map: &NewEventMap) -> StoreResult<EventMap> {
        let row = sqlx::query(
            "insert into event_maps (tenant_id, service_id, segment_key, staff_id, event_type_id,
                 bookable_event_type_id, resolution, checked_at, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             on conflict (tenant_id, service_id, segment_key, staff_id) do update set
                 event_type_id = excluded.event_type_id,
                 bookable_event_type_id = excluded.bookable_event_type_id,
                 resolution = excluded.resolution,
                 checked_at = excluded.checked_at,
                 unverified_reason = null,
                 updated_at = excluded.updated_at
             returning service_id, segment_key, staff_id, event_type_id, bookable_event_type_id,
                 resolution, checked_at, unverified_reason, created_at, updated_at",
        )
        .bind(tenant_id.hyphenated().to_string())
        .bind(map.service_id.as_str())
        .bind(map.segment_key.as_str())
        .bind(map.staff_id.as_str())
        .bind(map.event_type_id.0)
        .bind(map.bookable_event_type_id.0)
        .bind(&map.resolution)
        .bind(to_ms(map.checked_at))
        .bind(to_ms(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        map_from_row(&row)
    }

    async fn get_event_map(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
        segment_key: &SegmentKey,
        staff_id: &StaffId,
    ) -> StoreResult<Option<EventMap>> {
        let row = sqlx::query(
            "select service_id, segment_key, staff_id, event_type_id, bookable_event_type_id,
                 resolution, checked_at, unverified_reason, created_at, updated_at
             from event_maps
             where tenant_id = $1 and service_id = $2 and segment_key = $3 and staff_id = $4",
        )
        .bind(tenant_id.hyphenated().to_string())
        .bind(service_id.as_str())
        .bind(segment_key.as_str())
        .bind(staff_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(map_from_row).transpose()
    }

    async fn list_event_maps(&self, tenant_id: Uuid) -> StoreResult<Vec<EventMap>> {
        let rows = sqlx::query(
            "select m.service_id, m.segment_key, m.staff_id, m.event_type_id,
                 m.bookable_event_type_id, m.resolution, m.checked_at, m.unverified_reason, m.created_at, m.updated_at
             from event_maps m
             join service_segments g on g.tenant_id = m.tenant_id
                 and g.service_id = m.service_id and g.segment_key = m.segment_key
             where m.tenant_id = $1
             order by m.service_id, g.position, m.staff_id",
        )
        .bind(tenant_id.hyphenated().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(map_from_row).collect()
    }

    async fn tenant_calcom(&self, tenant_id: Uuid) -> StoreResult<Option<TenantCalcom>> {
        let row = sqlx::query(
            "select calcom_api_key, calcom_base_url, calcom_team_id from tenants
             where tenant_id = $1",
        )
        .bind(tenant_id.hyphenated().to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(TenantCalcom {
            api_key: crate::secrets::current().open(
                tenant_id,
                crate::secrets::SecretField::CalcomApiKey,
                row.try_get("calcom_api_key")?,
            )?,
            base_url: row.try_get("calcom_base_url")?,
            team_id: row.try_get("calcom_team_id")?,
        }))
    }
    async fn list_performers(&self, tenant_id: Uuid) -> StoreResult<Vec<(ServiceId, StaffId)>> {
        let rows = sqlx::query(
            "select service_id, staff_id from staff_services where tenant_id = $1
             order by service_id, staff_id",
        )
        .bind(tenant_id.hyphenated().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_service_id(row.try_get("service_id")?)?,
                    parse_staff_id(row.try_get("staff_id")?)?,
                ))
            })
            .collect()
    }

    async fn list_tenants(&self) -> StoreResult<Vec<(Uuid, String)>> {
        let rows =
            sqlx::query("select tenant_id, name from tenants order by created_at, tenant_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("tenant_id")?;
                let id = Uuid::parse_str(&id)
                    .map_err(|_| StoreError::Corrupt(format!("tenant id {id:?}")))?;
                Ok((id, row.try_get("name")?))
            })
            .collect()
    }
}
