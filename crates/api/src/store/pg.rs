//! The PostgreSQL store: the production backend. The double-booking guard is the
//! exclusion constraint `appointment_segments_no_double_booking`; this module turns its
//! violation (SQLSTATE 23P01) into a conflict naming the appointment that holds the time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::service_change::{repointed_map_reason, resized_map_reason};
use phasebook_domain::sync::{DesiredState, SegmentState, derive_appointment_sync};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, SegmentSpec, Service, ServiceId, StaffId,
};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::secrets::SecretField;

use super::{
    ACQUIRE_TIMEOUT, ApiKeyOwner, Appointment, AppointmentQuery, AppointmentSegment,
    CREATE_OUTCOME_UNKNOWN, IDEMPOTENCY_STALE_IN_FLIGHT, IDEMPOTENCY_TTL, IdempotencyClaim,
    IdempotentResponse, NewApiKey, NewAppointment, NewTenant, RETRIES_ON_CONFLICT, StaffMember,
    Store, StoreError, StoreResult, StoredService, is_retryable, parse_appointment_status,
    parse_appointment_sync_status, parse_role, parse_segment_key, parse_segment_sync_status,
    parse_service_id, parse_staff_id, rebuild_customer, rebuild_service,
    segment_status_after_cancel,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

const EXCLUSION_VIOLATION: &str = "23P01";

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn load_segments(
        &self,
        tenant_id: Uuid,
        appointment_ids: &[Uuid],
    ) -> StoreResult<Vec<(Uuid, AppointmentSegment)>> {
        let rows = sqlx::query(
            "select appointment_id, segment_key, position, staff_id, starts_at, ends_at, active,
                    sync_status, event_type_id, calcom_booking_uid, calcom_booking_id, attempts,
                    last_error, next_attempt_at
             from appointment_segments
             where tenant_id = $1 and appointment_id = any($2)
             order by appointment_id, position",
        )
        .bind(tenant_id)
        .bind(appointment_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("appointment_id")?, segment_from_row(row)?)))
            .collect()
    }

    async fn with_segments(
        &self,
        tenant_id: Uuid,
        rows: Vec<PgRow>,
    ) -> StoreResult<Vec<Appointment>> {
        let mut appointments = rows
            .iter()
            .map(appointment_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<Uuid> = appointments.iter().map(|a| a.appointment_id).collect();
        for (appointment_id, segment) in self.load_segments(tenant_id, &ids).await? {
            if let Some(a) = appointments
                .iter_mut()
                .find(|a| a.appointment_id == appointment_id)
            {
                a.segments.push(segment);
            }
        }
        Ok(appointments)
    }

    /// After an exclusion violation: which active appointment holds the time now.
    pub(crate) async fn find_conflict(
        &self,
        appointment: &NewAppointment,
    ) -> StoreResult<Option<Uuid>> {
        for segment in &appointment.segments {
            let found: Option<Uuid> = sqlx::query_scalar(
                "select appointment_id from appointment_segments
                 where tenant_id = $1 and staff_id = $2 and active
                   and starts_at < $4 and ends_at > $3
                 order by starts_at limit 1",
            )
            .bind(appointment.tenant_id)
            .bind(segment.staff_id.as_str())
            .bind(segment.starts_at)
            .bind(segment.ends_at)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn insert_appointment(
        &self,
        a: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> Result<(), sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        insert_appointment_rows(&mut connection, a, idempotency).await
    }

    async fn service_rows(
        &self,
        tenant_id: Uuid,
        service_id: Option<&ServiceId>,
    ) -> StoreResult<Vec<StoredService>> {
        let services = sqlx::query(
            "select service_id, name, created_at, updated_at from services
             where tenant_id = $1 and ($2::text is null or service_id = $2)
             order by service_id",
        )
        .bind(tenant_id)
        .bind(service_id.map(ServiceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        let segments = sqlx::query(
            "select service_id, segment_key, name, duration_minutes, gap_after_minutes,
                    gap_after_max_minutes
             from service_segments
             where tenant_id = $1 and ($2::text is null or service_id = $2)
             order by service_id, position",
        )
        .bind(tenant_id)
        .bind(service_id.map(ServiceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        services
            .iter()
            .map(|row| {
                let id: String = row.try_get("service_id")?;
                let specs = segments
                    .iter()
                    .filter(|s| s.try_get::<String, _>("service_id").ok().as_deref() == Some(&id))
                    .map(segment_spec_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                let name: String = row.try_get("name")?;
                Ok(StoredService {
                    service_id: parse_service_id(&id)?,
                    service: rebuild_service(&name, specs)?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn staff_rows(
        &self,
        tenant_id: Uuid,
        staff_id: Option<&StaffId>,
    ) -> StoreResult<Vec<StaffMember>> {
        let rows = sqlx::query(
            "select staff_id, name, calcom_user_id, calcom_username, time_zone, created_at,
                    updated_at
             from staff where tenant_id = $1 and ($2::text is null or staff_id = $2)
             order by staff_id",
        )
        .bind(tenant_id)
        .bind(staff_id.map(StaffId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StaffMember {
                    staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                    name: row.try_get("name")?,
                    calcom_user_id: CalcomUserId(row.try_get("calcom_user_id")?),
                    calcom_username: row.try_get("calcom_username")?,
                    time_zone: row.try_get("time_zone")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }
}

const APPOINTMENT_COLUMNS: &str =
    "appointment_id, tenant_id, service_id, staff_id, starts_at, ends_at, time_zone, status,
     customer_name, customer_email, customer_phone, notes, sync_status,
     requires_manual_review, review_reason, created_at, updated_at, cancelled_at,
     cancellation_reason, revision";

fn appointment_from_row(row: &PgRow) -> StoreResult<Appointment> {
    let name: String = row.try_get("customer_name")?;
    let email: Option<String> = row.try_get("customer_email")?;
    let phone: Option<String> = row.try_get("customer_phone")?;
    Ok(Appointment {
        appointment_id: row.try_get("appointment_id")?,
        tenant_id: row.try_get("tenant_id")?,
        service_id: parse_service_id(&row.try_get::<String, _>("service_id")?)?,
        staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        time_zone: row.try_get("time_zone")?,
        status: parse_appointment_status(&row.try_get::<String, _>("status")?)?,
        customer: rebuild_customer(&name, email.as_deref(), phone.as_deref())?,
        notes: row.try_get("notes")?,
        sync_status: parse_appointment_sync_status(&row.try_get::<String, _>("sync_status")?)?,
        requires_manual_review: row.try_get("requires_manual_review")?,
        review_reason: row.try_get("review_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        revision: row.try_get("revision")?,
        segments: Vec::new(),
    })
}

fn segment_from_row(row: &PgRow) -> StoreResult<AppointmentSegment> {
    Ok(AppointmentSegment {
        key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
        position: row.try_get("position")?,
        staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        active: row.try_get("active")?,
        sync_status: parse_segment_sync_status(&row.try_get::<String, _>("sync_status")?)?,
        event_type_id: row.try_get("event_type_id")?,
        calcom_booking_uid: row.try_get("calcom_booking_uid")?,
        calcom_booking_id: row.try_get("calcom_booking_id")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}

fn segment_spec_from_row(row: &PgRow) -> StoreResult<SegmentSpec> {
    let minutes = |column: &str| -> StoreResult<u32> {
        let value: i32 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
    };
    let max: Option<i32> = row.try_get("gap_after_max_minutes")?;
    Ok(SegmentSpec {
        key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
        name: row.try_get("name")?,
        duration_minutes: minutes("duration_minutes")?,
        gap_after_minutes: minutes("gap_after_minutes")?,
        gap_after_max_minutes: max
            .map(|m| u32::try_from(m).map_err(|_| StoreError::Corrupt(format!("gap max {m}"))))
            .transpose()?,
    })
}

fn to_i32(value: u32) -> i32 {
    // Domain validation bounds every minute count far below i32::MAX.
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        crate::secrets::rotation::seal_plaintext_on_migrate(self).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, t: &NewTenant) -> StoreResult<()> {
        let keys = crate::secrets::current();
        let api_key = keys.seal(
            t.tenant_id,
            SecretField::CalcomApiKey,
            t.calcom_api_key.expose_secret(),
        )?;
        let webhook = keys.seal(
            t.tenant_id,
            SecretField::WebhookSecret,
            t.webhook_secret.expose_secret(),
        )?;
        sqlx::query(super::keys::CREATE_TENANT)
            .bind(t.tenant_id)
            .bind(&t.name)
            .bind(api_key)
            .bind(&t.calcom_base_url)
            .bind(t.calcom_team_id)
            .bind(webhook)
            .bind(t.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tenant_exists(&self, tenant_id: Uuid) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar("select 1 from tenants where tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn create_api_key(&self, k: &NewApiKey) -> StoreResult<()> {
        sqlx::query(super::keys::CREATE_API_KEY)
            .bind(k.api_key_id)
            .bind(k.tenant_id)
            .bind(k.role.as_str())
            .bind(&k.key_hash)
            .bind(&k.key_prefix)
            .bind(k.created_at)
            .bind(k.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKeyOwner>> {
        let row = sqlx::query(super::keys::FIND_API_KEY)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ApiKeyOwner {
                api_key_id: row.try_get("api_key_id")?,
                tenant_id: row.try_get("tenant_id")?,
                role: parse_role(&row.try_get::<String, _>("role")?)?,
                expires_at: row.try_get("expires_at")?,
                rate_limit: super::keys::rate_limit(
                    row.try_get::<Option<i32>, _>("api_rate_per_second")?
                        .map(i64::from),
                    row.try_get::<Option<i32>, _>("api_rate_burst")?
                        .map(i64::from),
                ),
            })
        })
        .transpose()
    }

    async fn put_service(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
        service: &Service,
        now: DateTime<Utc>,
    ) -> StoreResult<StoredService> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into services (tenant_id, service_id, name, created_at, updated_at)
             values ($1, $2, $3, $4, $4)
             on conflict (tenant_id, service_id) do update set name = excluded.name,
                 updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(service_id.as_str())
        .bind(service.name())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Segments are upserted by key, not replaced, so the event maps of a kept key
        // survive. Positions move out of the way first: they are unique per service.
        sqlx::query(
            "update service_segments set position = -1 - position
             where tenant_id = $1 and service_id = $2",
        )
        .bind(tenant_id)
        .bind(service_id.as_str())
        .execute(&mut *tx)
        .await?;
        let keys: Vec<&str> = service.segments().iter().map(|s| s.key.as_str()).collect();
        sqlx::query(
            "delete from service_segments
             where tenant_id = $1 and service_id = $2 and segment_key <> all($3)",
        )
        .bind(tenant_id)
        .bind(service_id.as_str())
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
        for (position, s) in service.segments().iter().enumerate() {
            sqlx::query(super::MARK_RESIZED_MAPS)
                .bind(tenant_id)
                .bind(service_id.as_str())
                .bind(s.key.as_str())
                .bind(to_i32(s.duration_minutes))
                .bind(resized_map_reason(service_id, &s.key, s.duration_minutes))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into service_segments (tenant_id, service_id, position, segment_key, name,
                     duration_minutes, gap_after_minutes, gap_after_max_minutes)
                 values ($1, $2, $3, $4, $5, $6, $7, $8)
                 on conflict (tenant_id, service_id, segment_key) do update set
                     position = excluded.position, name = excluded.name,
                     duration_minutes = excluded.duration_minutes,
                     gap_after_minutes = excluded.gap_after_minutes,
                     gap_after_max_minutes = excluded.gap_after_max_minutes",
            )
            .bind(tenant_id)
            .bind(service_id.as_str())
            .bind(position as i32)
            .bind(s.key.as_str())
            .bind(s.name.trim())
            .bind(to_i32(s.duration_minutes))
            .bind(to_i32(s.gap_after_minutes))
            .bind(s.gap_after_max_minutes.map(to_i32))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_service(tenant_id, service_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("service vanished after upsert".into()))
    }

    async fn get_service(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
    ) -> StoreResult<Option<StoredService>> {
        Ok(self
            .service_rows(tenant_id, Some(service_id))
            .await?
            .into_iter()
            .next())
    }

    async fn list_services(&self, tenant_id: Uuid) -> StoreResult<Vec<StoredService>> {
        self.service_rows(tenant_id, None).await
    }

    async fn put_staff(&self, tenant_id: Uuid, s: &StaffMember) -> StoreResult<StaffMember> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(super::MARK_REPOINTED_MAPS)
            .bind(tenant_id)
            .bind(s.staff_id.as_str())
            .bind(s.calcom_user_id.0)
            .bind(repointed_map_reason(&s.staff_id, s.calcom_user_id))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into staff (tenant_id, staff_id, name, calcom_user_id, calcom_username,
                 time_zone, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (tenant_id, staff_id) do update set name = excluded.name,
                 calcom_user_id = excluded.calcom_user_id,
                 calcom_username = excluded.calcom_username, time_zone = excluded.time_zone,
                 updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(s.staff_id.as_str())
        .bind(&s.name)
        .bind(s.calcom_user_id.0)
        .bind(&s.calcom_username)
        .bind(&s.time_zone)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_staff(tenant_id, &s.staff_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("staff vanished after upsert".into()))
    }

    async fn get_staff(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
    ) -> StoreResult<Option<StaffMember>> {
        Ok(self
            .staff_rows(tenant_id, Some(staff_id))
            .await?
            .into_iter()
            .next())
    }

    async fn list_staff(&self, tenant_id: Uuid) -> StoreResult<Vec<StaffMember>> {
        self.staff_rows(tenant_id, None).await
    }

    async fn create_appointment(
        &self,
        appointment: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> StoreResult<()> {
        let mut tries = 0;
        loop {
            match self.insert_appointment(appointment, idempotency).await {
                Ok(()) => return Ok(()),
                Err(err)
                    if err
                        .as_database_error()
                        .and_then(|e| e.code())
                        .is_some_and(|code| code == EXCLUSION_VIOLATION) =>
                {
                    return Err(StoreError::DoubleBooking {
                        conflicting_appointment_id: self.find_conflict(appointment).await?,
                    });
                }
                // Concurrent overlapping inserts can deadlock on the guard's index instead
                // of meeting the constraint; run again, the winner is committed by then.
                Err(err) if tries < RETRIES_ON_CONFLICT && is_retryable(&err) => tries += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn get_appointment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<Appointment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {APPOINTMENT_COLUMNS} from appointments
             where tenant_id = $1 and appointment_id = $2"
        )))
        .bind(tenant_id)
        .bind(appointment_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(self
            .with_segments(tenant_id, rows)
            .await?
            .into_iter()
            .next())
    }

    async fn list_appointments(
        &self,
        tenant_id: Uuid,
        q: &AppointmentQuery,
    ) -> StoreResult<Vec<Appointment>> {
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "select {APPOINTMENT_COLUMNS} from appointments where tenant_id = "
        ));
        sql.push_bind(tenant_id);
        if let Some(status) = q.sync_status {
            sql.push(" and sync_status = ").push_bind(status.as_str());
        }
        if let Some(review) = q.requires_manual_review {
            sql.push(" and requires_manual_review = ").push_bind(review);
        }
        // Each served by its own partial index (migration 0009).
        if let Some(phone) = &q.customer_phone {
            sql.push(" and customer_phone = ").push_bind(phone.clone());
        }
        if let Some(email) = &q.customer_email {
            sql.push(" and customer_email_normalised = ")
                .push_bind(email.clone());
        }
        if let Some(staff) = &q.staff_id {
            // The appointment's staff member, or anyone performing one of its segments.
            sql.push(" and (staff_id = ")
                .push_bind(staff.as_str().to_string())
                .push(
                    " or exists (select 1 from appointment_segments s
                      where s.appointment_id = appointments.appointment_id and s.staff_id = ",
                )
                .push_bind(staff.as_str().to_string())
                .push("))");
        }
        if let Some(from) = q.from {
            sql.push(" and ends_at > ").push_bind(from);
        }
        if let Some(to) = q.to {
            sql.push(" and starts_at < ").push_bind(to);
        }
        if let Some((starts_at, id)) = q.after {
            sql.push(" and (starts_at, appointment_id) > (")
                .push_bind(starts_at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        sql.push(" order by starts_at, appointment_id limit ")
            .push_bind(i64::from(q.limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        self.with_segments(tenant_id, rows).await
    }

    async fn update_appointment_details(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        customer: &Customer,
        notes: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>> {
        let updated = sqlx::query(
            "update appointments set customer_name = $3, customer_email = $4,
                 customer_phone = $5, notes = $6, updated_at = $7,
                 customer_email_normalised = $8
             where tenant_id = $1 and appointment_id = $2",
        )
        .bind(tenant_id)
        .bind(appointment_id)
        .bind(customer.name())
        .bind(customer.email())
        .bind(customer.phone())
        .bind(notes)
        .bind(now)
        .bind(customer.email_lookup_form())
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_appointment(tenant_id, appointment_id).await
    }

    async fn cancel_appointment_with_reason(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>> {
        let mut tries = 0;
        loop {
            match self
                .cancel_appointment_once(tenant_id, appointment_id, reason, now)
                .await
            {
                Err(StoreError::Database(err))
                    if tries < RETRIES_ON_CONFLICT && is_retryable(&err) =>
                {
                    tries += 1;
                    tracing::warn!(appointment_id = %appointment_id, error = %err, "cancel collided with another transaction; trying again");
                }
                other => return other,
            }
        }
    }

    async fn claim_idempotency_key(
        &self,
        tenant_id: Uuid,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim> {
        // A race with a concurrent release can make the row vanish between the upsert and
        // the read; trying again settles it.
        for _ in 0..3 {
            let claimed: Option<i32> = sqlx::query_scalar(
                "insert into idempotency_keys (tenant_id, idempotency_key, request_hash, state,
                     created_at, expires_at)
                 values ($1, $2, $3, 'in_flight', $4, $5)
                 on conflict (tenant_id, idempotency_key) do update set
                     request_hash = excluded.request_hash, state = 'in_flight',
                     response_status = null, response_body = null, appointment_id = null,
                     created_at = excluded.created_at, expires_at = excluded.expires_at
                 where idempotency_keys.expires_at <= $4
                    or (idempotency_keys.state = 'in_flight' and idempotency_keys.created_at <= $6)
                 returning 1",
            )
            .bind(tenant_id)
            .bind(key)
            .bind(request_hash)
            .bind(now)
            .bind(now + IDEMPOTENCY_TTL)
            .bind(now - IDEMPOTENCY_STALE_IN_FLIGHT)
            .fetch_optional(&self.pool)
            .await?;
            if claimed.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let row = sqlx::query(
                "select request_hash, state, response_status, response_body from idempotency_keys
                 where tenant_id = $1 and idempotency_key = $2",
            )
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { continue };
            let hash: String = row.try_get("request_hash")?;
            let state: String = row.try_get("state")?;
            if hash != request_hash {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if state != "completed" {
                return Ok(IdempotencyClaim::InFlight);
            }
            let status: Option<i32> = row.try_get("response_status")?;
            let body: Option<Vec<u8>> = row.try_get("response_body")?;
            return Ok(IdempotencyClaim::Completed(IdempotentResponse {
                status: status
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| StoreError::Corrupt("idempotent response status".into()))?,
                body: body.unwrap_or_default(),
            }));
        }
        Ok(IdempotencyClaim::InFlight)
    }

    async fn complete_idempotency_key(
        &self,
        tenant_id: Uuid,
        key: &str,
        response: &IdempotentResponse,
    ) -> StoreResult<()> {
        sqlx::query(
            "update idempotency_keys
             set state = 'completed', response_status = $3, response_body = $4
             where tenant_id = $1 and idempotency_key = $2",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant_id: Uuid, key: &str) -> StoreResult<()> {
        sqlx::query(
            "delete from idempotency_keys
             where tenant_id = $1 and idempotency_key = $2 and state = 'in_flight'",
        )
        .bind(tenant_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_expired_idempotency_keys(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("delete from idempotency_keys where expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl PgStore {
    /// One try of [`Store::cancel_appointment`].
    async fn cancel_appointment_once(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {APPOINTMENT_COLUMNS} from appointments
             where tenant_id = $1 and appointment_id = $2 for update"
        )))
        .bind(tenant_id)
        .bind(appointment_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if appointment_from_row(&row)?.status == AppointmentStatus::Cancelled {
            tx.commit().await?;
            return self.get_appointment(tenant_id, appointment_id).await;
        }
        let segment_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select appointment_id, segment_key, position, staff_id, starts_at, ends_at, active,
                    sync_status, event_type_id, calcom_booking_uid, calcom_booking_id, attempts,
                    last_error, next_attempt_at, {CREATE_OUTCOME_UNKNOWN}
             from appointment_segments s
             where tenant_id = $1 and appointment_id = $2 for update"
        )))
        .bind(tenant_id)
        .bind(appointment_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut states = Vec::new();
        for row in &segment_rows {
            let segment = segment_from_row(row)?;
            let status =
                segment_status_after_cancel(&segment, row.try_get("create_outcome_unknown")?);
            sqlx::query(
                "update appointment_segments
                 set active = false, sync_status = $3, next_attempt_at = null, updated_at = $4
                 where appointment_id = $1 and segment_key = $2",
            )
            .bind(appointment_id)
            .bind(segment.key.as_str())
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            states.push(SegmentState {
                key: segment.key,
                status,
                retrying: false,
                review_reason: None,
            });
        }
        let sync = derive_appointment_sync(DesiredState::Cancelled, &states);
        sqlx::query(
            "update appointments
             set status = 'cancelled', sync_status = $3, requires_manual_review = $4,
                 review_reason = $5, cancelled_at = $6, updated_at = $6,
                 cancellation_reason = $7
             where tenant_id = $1 and appointment_id = $2",
        )
        .bind(tenant_id)
        .bind(appointment_id)
        .bind(sync.status.as_str())
        .bind(sync.requires_manual_review)
        .bind(sync.review_reason.as_deref())
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        // A leased job belongs to a worker right now; the sync engine decides how that
        // worker learns of the change. Otherwise the job becomes due at once.
        sqlx::query(
            "update sync_jobs set state = 'pending', run_at = $3, updated_at = $3
             where tenant_id = $1 and appointment_id = $2 and state <> 'leased'",
        )
        .bind(tenant_id)
        .bind(appointment_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_appointment(tenant_id, appointment_id).await
    }
}

/// The inserts of one appointment inside the caller's transaction; the exclusion constraint
/// (through `staff_busy`) refuses overlaps with active appointments and live holds.
pub(crate) async fn insert_appointment_rows(
    tx: &mut sqlx::PgConnection,
    a: &NewAppointment,
    idempotency: Option<(&str, &IdempotentResponse)>,
) -> Result<(), sqlx::Error> {
    let (Some(starts_at), Some(ends_at)) = (a.starts_at(), a.ends_at()) else {
        return Err(sqlx::Error::Protocol(
            "an appointment needs segments".into(),
        ));
    };
    let keys: Vec<&str> = a.segments.iter().map(|s| s.key.as_str()).collect();
    let positions: Vec<i32> = (0..a.segments.len() as i32).collect();
    let staff: Vec<&str> = a.segments.iter().map(|s| s.staff_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = a.segments.iter().map(|s| s.starts_at).collect();
    let ends: Vec<DateTime<Utc>> = a.segments.iter().map(|s| s.ends_at).collect();
    // One statement for the appointment, its segments, its sync job and the pinned
    // answer: one round trip, atomic on its own (no BEGIN/COMMIT needed outside a hold's
    // transaction). The exclusion constraint still checks each segment row, and the
    // foreign keys are checked at the end of the statement, when every row is there.
    sqlx::query(
        "with appointment as (
             insert into appointments (appointment_id, tenant_id, service_id, staff_id,
                 starts_at, ends_at, time_zone, status, customer_name, customer_email,
                 customer_phone, notes, sync_status, requires_manual_review, created_at,
                 updated_at, customer_email_normalised)
             values ($1, $2, $3, $4, $5, $6, $7, 'booked', $8, $9, $10, $11, 'pending', false,
                 $12, $12, $23)),
         segments as (
             insert into appointment_segments (appointment_id, segment_key, tenant_id,
                 position, staff_id, starts_at, ends_at, active, sync_status, updated_at)
             select $1, k, $2, p, s, st, en, true, 'pending', $12
             from unnest($13::text[], $14::int[], $15::text[], $16::timestamptz[],
                         $17::timestamptz[]) as t(k, p, s, st, en)),
         job as (
             insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at,
                 awaited, created_at, updated_at)
             values ($18, $2, $1, 'pending', $12, $22, $12, $12)),
         pinned as (
             update idempotency_keys
             set state = 'completed', response_status = $20, response_body = $21,
                 appointment_id = $1
             where $19::text is not null and tenant_id = $2 and idempotency_key = $19)
         select 1",
    )
    .bind(a.appointment_id)
    .bind(a.tenant_id)
    .bind(a.service_id.as_str())
    .bind(a.staff_id.as_str())
    .bind(starts_at)
    .bind(ends_at)
    .bind(&a.time_zone)
    .bind(a.customer.name())
    .bind(a.customer.email())
    .bind(a.customer.phone())
    .bind(a.notes.as_deref())
    .bind(a.created_at)
    .bind(&keys)
    .bind(&positions)
    .bind(&staff)
    .bind(&starts)
    .bind(&ends)
    .bind(Uuid::now_v7())
    .bind(idempotency.map(|(key, _)| key))
    .bind(idempotency.map(|(_, response)| i32::from(response.status)))
    .bind(idempotency.map(|(_, response)| response.body.as_slice()))
    .bind(a.awaited)
    .bind(a.customer.email_lookup_form())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
