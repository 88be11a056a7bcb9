//! [`BookingStore`] for PostgreSQL. Hold segments are rows of `staff_busy`, so the same
//! exclusion constraint that guards appointments refuses a hold on taken time; an expired
//! hold's rows are deleted inside the transaction that needs its time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{PlannedSegment, ServiceId, StaffId};
use sqlx::Row;
use uuid::Uuid;

use super::holds::{
    BookingSettings, BookingStore, Hold, HoldConversion, HoldSegment, HoldStatus, HoldToClear,
};
use super::{
    IdempotentResponse, NewAppointment, PgStore, StoreError, StoreResult, parse_segment_key,
    parse_service_id, parse_staff_id,
};

const EXCLUSION_VIOLATION: &str = "23P01";

fn is_exclusion(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == EXCLUSION_VIOLATION)
}

/// Deletes the blocking rows of expired holds of these staff members.
async fn drop_expired_holds(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    staff: &[&str],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "delete from staff_busy b using holds h
         where b.hold_id = h.hold_id and b.tenant_id = $1 and b.staff_id = any($2)
           and h.expires_at <= $3",
    )
    .bind(tenant_id)
    .bind(staff)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl PgStore {
    async fn load_hold(&self, tenant_id: Uuid, hold_id: Uuid) -> StoreResult<Option<Hold>> {
        let Some(row) = sqlx::query(
            "select hold_id, tenant_id, service_id, staff_id, time_zone, status, expires_at,
                    appointment_id, created_at
             from holds where tenant_id = $1 and hold_id = $2",
        )
        .bind(tenant_id)
        .bind(hold_id)
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
        .bind(hold_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(HoldSegment {
                segment: PlannedSegment {
                    key: parse_segment_key(r.try_get("segment_key")?)?,
                    staff_id: parse_staff_id(r.try_get("staff_id")?)?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                },
                event_type_id: r.try_get("event_type_id")?,
                calcom_reservation_uid: r.try_get("calcom_reservation_uid")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let status: String = row.try_get("status")?;
        Ok(Some(Hold {
            hold_id: row.try_get("hold_id")?,
            tenant_id: row.try_get("tenant_id")?,
            service_id: parse_service_id(row.try_get("service_id")?)?,
            staff_id: parse_staff_id(row.try_get("staff_id")?)?,
            time_zone: row.try_get("time_zone")?,
            status: HoldStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("hold status {status:?}")))?,
            expires_at: row.try_get("expires_at")?,
            appointment_id: row.try_get("appointment_id")?,
            created_at: row.try_get("created_at")?,
            segments,
        }))
    }

    async fn insert_hold(&self, hold: &Hold, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let staff: Vec<&str> = hold
            .segments
            .iter()
            .map(|s| s.segment.staff_id.as_str())
            .collect();
        drop_expired_holds(&mut tx, hold.tenant_id, &staff, now).await?;
        sqlx::query(
            "insert into holds (hold_id, tenant_id, service_id, staff_id, time_zone, status,
                 expires_at, created_at, updated_at)
             values ($1, $2, $3, $4, $5, 'held', $6, $7, $7)",
        )
        .bind(hold.hold_id)
        .bind(hold.tenant_id)
        .bind(hold.service_id.as_str())
        .bind(hold.staff_id.as_str())
        .bind(&hold.time_zone)
        .bind(hold.expires_at)
        .bind(hold.created_at)
        .execute(&mut *tx)
        .await?;
        for (position, s) in hold.segments.iter().enumerate() {
            sqlx::query(
                "insert into hold_segments (hold_id, segment_key, tenant_id, position, staff_id,
                     starts_at, ends_at, event_type_id)
                 values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(hold.hold_id)
            .bind(s.segment.key.as_str())
            .bind(hold.tenant_id)
            .bind(position as i32)
            .bind(s.segment.staff_id.as_str())
            .bind(s.segment.starts_at)
            .bind(s.segment.ends_at)
            .bind(s.event_type_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "insert into staff_busy (tenant_id, staff_id, starts_at, ends_at, segment_key,
                     hold_id)
                 values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(hold.tenant_id)
            .bind(s.segment.staff_id.as_str())
            .bind(s.segment.starts_at)
            .bind(s.segment.ends_at)
            .bind(s.segment.key.as_str())
            .bind(hold.hold_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn convert_hold(
        &self,
        hold_id: Uuid,
        a: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> Result<HoldConversion, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "select status, expires_at from holds
             where tenant_id = $1 and hold_id = $2 for update",
        )
        .bind(a.tenant_id)
        .bind(hold_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(HoldConversion::Missing);
        };
        let status: String = row.try_get("status")?;
        let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
        match HoldStatus::parse(&status) {
            Some(HoldStatus::Held) if expires_at > a.created_at => {}
            Some(HoldStatus::Held) => return Ok(HoldConversion::Expired),
            Some(other) => return Ok(HoldConversion::Ended(other)),
            None => return Err(sqlx::Error::Protocol(format!("hold status {status:?}"))),
        }
        sqlx::query("delete from staff_busy where hold_id = $1")
            .bind(hold_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "update holds set status = 'booked', appointment_id = $2, updated_at = $3
             where hold_id = $1",
        )
        .bind(hold_id)
        .bind(a.appointment_id)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await?;
        super::pg::insert_appointment_rows(&mut tx, a, idempotency).await?;
        tx.commit().await?;
        Ok(HoldConversion::Booked)
    }
}

#[async_trait]
impl BookingStore for PgStore {
    async fn set_staff_services(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
        services: &[ServiceId],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from staff_services where tenant_id = $1 and staff_id = $2")
            .bind(tenant_id)
            .bind(staff_id.as_str())
            .execute(&mut *tx)
            .await?;
        let ids: Vec<&str> = services.iter().map(ServiceId::as_str).collect();
        sqlx::query(
            "insert into staff_services (tenant_id, staff_id, service_id)
             select $1, $2, s from unnest($3::text[]) as t(s) on conflict do nothing",
        )
        .bind(tenant_id)
        .bind(staff_id.as_str())
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
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
        .bind(tenant_id)
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
        .bind(tenant_id)
        .bind(service_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse_staff_id(s)).collect()
    }

    async fn booking_settings(&self, tenant_id: Uuid) -> StoreResult<Option<BookingSettings>> {
        let row =
            sqlx::query("select country, booking_horizon_days from tenants where tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(BookingSettings {
                country: r.try_get("country")?,
                horizon_days: u32::try_from(r.try_get::<i32, _>("booking_horizon_days")?)
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
        .bind(tenant_id)
        .bind(settings.country.as_deref())
        .bind(i32::try_from(settings.horizon_days).unwrap_or(i32::MAX))
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
        let ids: Vec<&str> = staff.iter().map(StaffId::as_str).collect();
        let rows = sqlx::query(
            "select b.staff_id, b.starts_at, b.ends_at from staff_busy b
             left join holds h on h.hold_id = b.hold_id
             where b.tenant_id = $1 and b.staff_id = any($2)
               and b.starts_at < $4 and b.ends_at > $3
               and (b.hold_id is null or (h.status = 'held' and h.expires_at > $5))",
        )
        .bind(tenant_id)
        .bind(&ids)
        .bind(span.start)
        .bind(span.end)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_staff_id(r.try_get("staff_id")?)?,
                    Span::new(r.try_get("starts_at")?, r.try_get("ends_at")?),
                ))
            })
            .collect()
    }

    async fn create_hold(&self, hold: &Hold, now: DateTime<Utc>) -> StoreResult<()> {
        match self.insert_hold(hold, now).await {
            Ok(()) => Ok(()),
            Err(err) if is_exclusion(&err) => Err(StoreError::DoubleBooking {
                conflicting_appointment_id: None,
            }),
            Err(err) => Err(err.into()),
        }
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
        .bind(hold_id)
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
        Ok(sqlx::query_scalar(
            "select distinct h.hold_id from holds h
             join hold_segments s on s.hold_id = h.hold_id
             where h.tenant_id = $1 and h.status = 'held' and h.expires_at > $4
               and s.starts_at < $3 and s.ends_at > $2",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_hold(&self, tenant_id: Uuid, hold_id: Uuid) -> StoreResult<Option<Hold>> {
        self.load_hold(tenant_id, hold_id).await
    }

    async fn release_hold(
        &self,
        tenant_id: Uuid,
        hold_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Hold>> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "update holds set status = 'released', updated_at = $3
             where tenant_id = $1 and hold_id = $2 and status = 'held'",
        )
        .bind(tenant_id)
        .bind(hold_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() > 0 {
            sqlx::query("delete from staff_busy where hold_id = $1")
                .bind(hold_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.load_hold(tenant_id, hold_id).await
    }

    async fn create_appointment_from_hold(
        &self,
        hold_id: Uuid,
        appointment: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> StoreResult<HoldConversion> {
        match self.convert_hold(hold_id, appointment, idempotency).await {
            Ok(outcome) => Ok(outcome),
            Err(err) if is_exclusion(&err) => Err(StoreError::DoubleBooking {
                conflicting_appointment_id: self.find_conflict(appointment).await?,
            }),
            Err(err) => Err(err.into()),
        }
    }

    async fn holds_to_clear(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<HoldToClear>> {
        let rows = sqlx::query(
            "select h.tenant_id, h.hold_id,
                    coalesce(array_agg(s.calcom_reservation_uid)
                        filter (where s.calcom_reservation_uid is not null), '{}') as uids
             from holds h left join hold_segments s on s.hold_id = h.hold_id
             where h.reservations_cleared_at is null
               and (h.status <> 'held' or h.expires_at <= $1)
             group by h.tenant_id, h.hold_id
             order by min(h.expires_at) limit $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HoldToClear {
                    tenant_id: r.try_get("tenant_id")?,
                    hold_id: r.try_get("hold_id")?,
                    reservation_uids: r.try_get("uids")?,
                })
            })
            .collect()
    }

    async fn mark_reservations_cleared(
        &self,
        hold_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("update holds set reservations_cleared_at = $2 where hold_id = $1")
            .bind(hold_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
