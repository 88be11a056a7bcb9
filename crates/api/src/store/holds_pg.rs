//! [`BookingStore`] for PostgreSQL. Hold segments are rows of `staff_busy`, so the same
//! exclusion constraint that guards appointments refuses a hold on taken time; an expired
//! hold's rows are deleted inside the transaction that needs its time. What both backends
//! share is written once in `holds.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{PlannedSegment, ServiceId, StaffId};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::holds::{
    BookingSettings, BookingStore, Hold, HoldConversion, HoldSegment, HoldStatus, HoldToClear,
};
use super::pg::{db_at, db_id, get_at, get_id, get_opt_id};
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

/// Deletes the blocking rows of expired holds of these staff members, by the rule the
/// `staff_busy` mirror triggers use too (migration 0013).
async fn drop_expired_holds(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    staff: &[&str],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("select staff_busy_drop_expired_holds($1, $2, $3)")
        .bind(tenant_id)
        .bind(staff)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl PgStore {
    async fn insert_hold(&self, hold: &Hold, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let staff: Vec<&str> = hold
            .segments
            .iter()
            .map(|s| s.segment.staff_id.as_str())
            .collect();
        drop_expired_holds(&mut tx, hold.tenant_id, &staff, now).await?;
        Self::insert_hold_rows(&mut tx, hold).await?;
        // The guard: the exclusion constraint refuses a row on taken time.
        for s in &hold.segments {
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} for update",
            super::holds::HOLD_STATE
        )))
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
        sqlx::query(super::holds::TAKE_HOLD_FOR)
            .bind(hold_id)
            .bind(a.appointment_id)
            .bind(a.created_at)
            .execute(&mut *tx)
            .await?;
        super::pg::insert_appointment_rows(
            &mut tx,
            a,
            idempotency.map(|(key, response)| super::KeyPin::Claimed(key, response)),
        )
        .await?;
        tx.commit().await?;
        Ok(HoldConversion::Booked)
    }
}

super::holds::booking_store!(
    store = PgStore,
    db = Postgres,
    dialect = {
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

        async fn release_hold(
            &self,
            tenant_id: Uuid,
            hold_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<Option<Hold>> {
            let mut tx = self.pool.begin().await?;
            let updated = sqlx::query(super::holds::RELEASE_HOLD)
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
            self.get_hold(tenant_id, hold_id).await
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
    }
);
