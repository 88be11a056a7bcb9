//! [`BookingStore`] for SQLite: one writer at a time, so the guard is an overlap check over
//! active appointment segments and live hold segments inside a `begin immediate`
//! transaction. A hold past `expires_at` is simply not counted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{PlannedSegment, ServiceId, StaffId};
use sqlx::Row;
use uuid::Uuid;

use super::holds::{
    BookingSettings, BookingStore, Hold, HoldConversion, HoldSegment, HoldStatus, HoldToClear,
};
use super::sqlite::{from_ms, to_ms};
use super::{
    IdempotentResponse, NewAppointment, SqliteStore, StoreError, StoreResult, parse_segment_key,
    parse_service_id, parse_staff_id,
};

fn text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| StoreError::Corrupt(format!("id {value:?}")))
}

/// Whether a live hold of the same staff member shares a moment with any segment.
pub(crate) async fn live_hold_overlaps(
    tx: &mut sqlx::SqliteConnection,
    tenant_id: Uuid,
    segments: &[PlannedSegment],
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    for s in segments {
        let found: Option<String> = sqlx::query_scalar(
            "select h.hold_id from hold_segments s join holds h on h.hold_id = s.hold_id
             where s.tenant_id = $1 and s.staff_id = $2 and s.starts_at < $4 and s.ends_at > $3
               and h.status = 'held' and h.expires_at > $5
             limit 1",
        )
        .bind(text(tenant_id))
        .bind(s.staff_id.as_str())
        .bind(to_ms(s.starts_at))
        .bind(to_ms(s.ends_at))
        .bind(to_ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether an active appointment segment of the same staff member overlaps any segment.
async fn appointment_overlaps(
    tx: &mut sqlx::SqliteConnection,
    tenant_id: Uuid,
    segments: &[PlannedSegment],
) -> StoreResult<Option<Uuid>> {
    for s in segments {
        let found: Option<String> = sqlx::query_scalar(
            "select appointment_id from appointment_segments
             where tenant_id = $1 and staff_id = $2 and active = 1
               and starts_at < $4 and ends_at > $3
             order by starts_at limit 1",
        )
        .bind(text(tenant_id))
        .bind(s.staff_id.as_str())
        .bind(to_ms(s.starts_at))
        .bind(to_ms(s.ends_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(found) = found {
            return Ok(Some(uuid(&found)?));
        }
    }
    Ok(None)
}

#[async_trait]
impl BookingStore for SqliteStore {
    async fn set_staff_services(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
        services: &[ServiceId],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("begin immediate").await?;
        sqlx::query("delete from staff_services where tenant_id = $1 and staff_id = $2")
            .bind(text(tenant_id))
            .bind(staff_id.as_str())
            .execute(&mut *tx)
            .await?;
        for service in services {
            sqlx::query(
                "insert into staff_services (tenant_id, staff_id, service_id) values ($1, $2, $3)
                 on conflict do nothing",
            )
            .bind(text(tenant_id))
            .bind(staff_id.as_str())
            .bind(service.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn staff_services(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
    ) -> StoreResult<Vec<ServiceId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "select service_id from staff_services where tenant_id = $1 and staff_id = $2
             order by service_id",
        )
        .bind(text(tenant_id))
        .bind(staff_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse_service_id(s)).collect()
    }

    async fn performers(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
    ) -> StoreResult<Vec<StaffId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "select staff_id from staff_services where tenant_id = $1 and service_id = $2
             order by staff_id",
        )
        .bind(text(tenant_id))
        .bind(service_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse_staff_id(s)).collect()
    }

    async fn booking_settings(&self, tenant_id: Uuid) -> StoreResult<Option<BookingSettings>> {
        let row =
            sqlx::query("select country, booking_horizon_days from tenants where tenant_id = $1")
                .bind(text(tenant_id))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(BookingSettings {
                country: r.try_get("country")?,
                horizon_days: u32::try_from(r.try_get::<i64, _>("booking_horizon_days")?)
                    .map_err(|_| StoreError::Corrupt("booking horizon".into()))?,
            })
        })
        .transpose()
    }

    async fn set_booking_settings(
        &self,
        tenant_id: Uuid,
        settings: &BookingSettings,
    ) -> StoreResult<()> {
        sqlx::query(
            "update tenants set country = $2, booking_horizon_days = $3 where tenant_id = $1",
        )
        .bind(text(tenant_id))
        .bind(settings.country.as_deref())
        .bind(i64::from(settings.horizon_days))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn busy_time(
        &self,
        tenant_id: Uuid,
        staff: &[StaffId],
        span: Span,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(StaffId, Span)>> {
        let mut out = Vec::new();
        for member in staff {
            let rows = sqlx::query(
                "select starts_at, ends_at from appointment_segments
                 where tenant_id = $1 and staff_id = $2 and active = 1
                   and starts_at < $4 and ends_at > $3
                 union all
                 select s.starts_at, s.ends_at from hold_segments s
                 join holds h on h.hold_id = s.hold_id
                 where s.tenant_id = $1 and s.staff_id = $2 and s.starts_at < $4
                   and s.ends_at > $3 and h.status = 'held' and h.expires_at > $5",
            )
            .bind(text(tenant_id))
            .bind(member.as_str())
            .bind(to_ms(span.start))
            .bind(to_ms(span.end))
            .bind(to_ms(now))
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push((
                    member.clone(),
                    Span::new(
                        from_ms(r.try_get("starts_at")?)?,
                        from_ms(r.try_get("ends_at")?)?,
                    ),
                ));
            }
        }
        Ok(out)
    }

    async fn create_hold(&self, hold: &Hold, now: DateTime<Utc>) -> StoreResult<()> {
        let plan: Vec<PlannedSegment> = hold.segments.iter().map(|s| s.segment.clone()).collect();
        let mut tx = self.pool.begin_with("begin immediate").await?;
        if let Some(conflict) = appointment_overlaps(&mut tx, hold.tenant_id, &plan).await? {
            return Err(StoreError::DoubleBooking {
                conflicting_appointment_id: Some(conflict),
            });
        }
        if live_hold_overlaps(&mut tx, hold.tenant_id, &plan, now).await? {
            return Err(StoreError::DoubleBooking {
                conflicting_appointment_id: None,
            });
        }
        sqlx::query(
            "insert into holds (hold_id, tenant_id, service_id, staff_id, time_zone, status,
                 expires_at, created_at, updated_at)
             values ($1, $2, $3, $4, $5, 'held', $6, $7, $7)",
        )
        .bind(text(hold.hold_id))
        .bind(text(hold.tenant_id))
        .bind(hold.service_id.as_str())
        .bind(hold.staff_id.as_str())
        .bind(&hold.time_zone)
        .bind(to_ms(hold.expires_at))
        .bind(to_ms(hold.created_at))
        .execute(&mut *tx)
        .await?;
        for (position, s) in hold.segments.iter().enumerate() {
            sqlx::query(
                "insert into hold_segments (hold_id, segment_key, tenant_id, position, staff_id,
                     starts_at, ends_at, event_type_id)
                 values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(text(hold.hold_id))
            .bind(s.segment.key.as_str())
            .bind(text(hold.tenant_id))
            .bind(position as i64)
            .bind(s.segment.staff_id.as_str())
            .bind(to_ms(s.segment.starts_at))
            .bind(to_ms(s.segment.ends_at))
            .bind(s.event_type_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_reservation_uid(
        &self,
        hold_id: Uuid,
        segment_key: &str,
        uid: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "update hold_segments set calcom_reservation_uid = $3
             where hold_id = $1 and segment_key = $2",
        )
        .bind(text(hold_id))
        .bind(segment_key)
        .bind(uid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn live_hold_ids(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "select distinct h.hold_id from holds h
             join hold_segments s on s.hold_id = h.hold_id
             where h.tenant_id = ?1 and h.status = 'held' and h.expires_at > ?4
               and s.starts_at < ?3 and s.ends_at > ?2",
        )
        .bind(text(tenant_id))
        .bind(to_ms(from))
        .bind(to_ms(to))
        .bind(to_ms(now))
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| uuid(id)).collect()
    }

    async fn get_hold(&self, tenant_id: Uuid, hold_id: Uuid) -> StoreResult<Option<Hold>> {
        let Some(row) = sqlx::query(
            "select hold_id, tenant_id, service_id, staff_id, time_zone, status, expires_at,
                    appointment_id, created_at
             from holds where tenant_id = $1 and hold_id = $2",
        )
        .bind(text(tenant_id))
        .bind(text(hold_id))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let segments = sqlx::query(
            "select segment_key, staff_id, starts_at, ends_at, event_type_id,
                    calcom_reservation_uid
             from hold_segments where hold_id = $1 order by position",
        )
        .bind(text(hold_id))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(HoldSegment {
                segment: PlannedSegment {
                    key: parse_segment_key(r.try_get("segment_key")?)?,
                    staff_id: parse_staff_id(r.try_get("staff_id")?)?,
                    starts_at: from_ms(r.try_get("starts_at")?)?,
                    ends_at: from_ms(r.try_get("ends_at")?)?,
                },
                event_type_id: r.try_get("event_type_id")?,
                calcom_reservation_uid: r.try_get("calcom_reservation_uid")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let status: String = row.try_get("status")?;
        let appointment_id: Option<String> = row.try_get("appointment_id")?;
        Ok(Some(Hold {
            hold_id,
            tenant_id,
            service_id: parse_service_id(row.try_get("service_id")?)?,
            staff_id: parse_staff_id(row.try_get("staff_id")?)?,
            time_zone: row.try_get("time_zone")?,
            status: HoldStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("hold status {status:?}")))?,
            expires_at: from_ms(row.try_get("expires_at")?)?,
            appointment_id: appointment_id.as_deref().map(uuid).transpose()?,
            created_at: from_ms(row.try_get("created_at")?)?,
            segments,
        }))
    }

    async fn release_hold(
        &self,
        tenant_id: Uuid,
        hold_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Hold>> {
        sqlx::query(
            "update holds set status = 'released', updated_at = $3
             where tenant_id = $1 and hold_id = $2 and status = 'held'",
        )
        .bind(text(tenant_id))
        .bind(text(hold_id))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        self.get_hold(tenant_id, hold_id).await
    }

    async fn create_appointment_from_hold(
        &self,
        hold_id: Uuid,
        a: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> StoreResult<HoldConversion> {
        let (Some(starts_at), Some(ends_at)) = (a.starts_at(), a.ends_at()) else {
            return Err(StoreError::Corrupt("an appointment needs segments".into()));
        };
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let row = sqlx::query(
            "select status, expires_at from holds where tenant_id = $1 and hold_id = $2",
        )
        .bind(text(a.tenant_id))
        .bind(text(hold_id))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(HoldConversion::Missing);
        };
        let status: String = row.try_get("status")?;
        let expires_at = from_ms(row.try_get("expires_at")?)?;
        match HoldStatus::parse(&status) {
            Some(HoldStatus::Held) if expires_at > a.created_at => {}
            Some(HoldStatus::Held) => return Ok(HoldConversion::Expired),
            Some(other) => return Ok(HoldConversion::Ended(other)),
            None => return Err(StoreError::Corrupt(format!("hold status {status:?}"))),
        }
        sqlx::query(
            "update holds set status = 'booked', appointment_id = $2, updated_at = $3
             where hold_id = $1",
        )
        .bind(text(hold_id))
        .bind(text(a.appointment_id))
        .bind(to_ms(a.created_at))
        .execute(&mut *tx)
        .await?;
        super::sqlite::insert_appointment_rows(&mut tx, a, starts_at, ends_at, idempotency).await?;
        tx.commit().await?;
        Ok(HoldConversion::Booked)
    }

    async fn holds_to_clear(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<HoldToClear>> {
        let rows = sqlx::query(
            "select tenant_id, hold_id from holds
             where reservations_cleared_at is null and (status <> 'held' or expires_at <= $1)
             order by expires_at limit $2",
        )
        .bind(to_ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let hold_id: String = r.try_get("hold_id")?;
            let uids: Vec<String> = sqlx::query_scalar(
                "select calcom_reservation_uid from hold_segments
                 where hold_id = $1 and calcom_reservation_uid is not null order by position",
            )
            .bind(&hold_id)
            .fetch_all(&self.pool)
            .await?;
            out.push(HoldToClear {
                tenant_id: uuid(r.try_get("tenant_id")?)?,
                hold_id: uuid(&hold_id)?,
                reservation_uids: uids,
            });
        }
        Ok(out)
    }

    async fn mark_reservations_cleared(
        &self,
        hold_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("update holds set reservations_cleared_at = $2 where hold_id = $1")
            .bind(text(hold_id))
            .bind(to_ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
