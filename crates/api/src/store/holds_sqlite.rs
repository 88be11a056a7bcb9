//! [`BookingStore`] for SQLite: one writer at a time, so the guard is an overlap check over
//! active appointment segments and live hold segments inside a `begin immediate`
//! transaction. A hold past `expires_at` is simply not counted. What both backends share is
//! written once in `holds.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{PlannedSegment, ServiceId, StaffId};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use super::holds::{
    BookingSettings, BookingStore, Hold, HoldConversion, HoldSegment, HoldStatus, HoldToClear,
};
use super::sqlite::{db_at, db_id, get_at, get_id, get_opt_id};
use super::{
    IdempotentResponse, NewAppointment, SqliteStore, StoreError, StoreResult, parse_segment_key,
    parse_service_id, parse_staff_id,
};

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
        .bind(db_id(tenant_id))
        .bind(s.staff_id.as_str())
        .bind(db_at(s.starts_at))
        .bind(db_at(s.ends_at))
        .bind(db_at(now))
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
        .bind(db_id(tenant_id))
        .bind(s.staff_id.as_str())
        .bind(db_at(s.starts_at))
        .bind(db_at(s.ends_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(found) = found {
            return Ok(Some(super::sqlite::parse_uuid(&found)?));
        }
    }
    Ok(None)
}

super::holds::booking_store!(
    store = SqliteStore,
    db = Sqlite,
    dialect = {
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
                .bind(db_id(tenant_id))
                .bind(member.as_str())
                .bind(db_at(span.start))
                .bind(db_at(span.end))
                .bind(db_at(now))
                .fetch_all(&self.pool)
                .await?;
                for r in rows {
                    out.push((
                        member.clone(),
                        Span::new(get_at(&r, "starts_at")?, get_at(&r, "ends_at")?),
                    ));
                }
            }
            Ok(out)
        }

        async fn create_hold(&self, hold: &Hold, now: DateTime<Utc>) -> StoreResult<()> {
            let plan: Vec<PlannedSegment> =
                hold.segments.iter().map(|s| s.segment.clone()).collect();
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
            Self::insert_hold_rows(&mut tx, hold).await?;
            tx.commit().await?;
            Ok(())
        }

        async fn release_hold(
            &self,
            tenant_id: Uuid,
            hold_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<Option<Hold>> {
            sqlx::query(super::holds::RELEASE_HOLD)
                .bind(db_id(tenant_id))
                .bind(db_id(hold_id))
                .bind(db_at(now))
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
            let row = sqlx::query(super::holds::HOLD_STATE)
                .bind(db_id(a.tenant_id))
                .bind(db_id(hold_id))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(HoldConversion::Missing);
            };
            let status: String = row.try_get("status")?;
            let expires_at = get_at(&row, "expires_at")?;
            match HoldStatus::parse(&status) {
                Some(HoldStatus::Held) if expires_at > a.created_at => {}
                Some(HoldStatus::Held) => return Ok(HoldConversion::Expired),
                Some(other) => return Ok(HoldConversion::Ended(other)),
                None => return Err(StoreError::Corrupt(format!("hold status {status:?}"))),
            }
            sqlx::query(super::holds::TAKE_HOLD_FOR)
                .bind(db_id(hold_id))
                .bind(db_id(a.appointment_id))
                .bind(db_at(a.created_at))
                .execute(&mut *tx)
                .await?;
            super::sqlite::insert_appointment_rows(&mut tx, a, starts_at, ends_at, idempotency)
                .await?;
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
            .bind(db_at(now))
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
                    tenant_id: get_id(&r, "tenant_id")?,
                    hold_id: super::sqlite::parse_uuid(&hold_id)?,
                    reservation_uids: uids,
                });
            }
            Ok(out)
        }
    }
);
