//! The SQLite store: the embedded default (one file, one process). Instants are unix
//! milliseconds; the double-booking guard is an overlap query and the insert inside one
//! `begin immediate` transaction, which takes the write lock before reading.

use phasebook_domain::service_change::{repointed_map_reason, resized_map_reason};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::sync::{DesiredState, SegmentState, derive_appointment_sync};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, SegmentSpec, Service, ServiceId, StaffId,
};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::secrets::SecretField;

use super::{
    ACQUIRE_TIMEOUT, ApiKeyOwner, Appointment, AppointmentQuery, AppointmentSegment,
    CREATE_OUTCOME_UNKNOWN, IDEMPOTENCY_STALE_IN_FLIGHT, IDEMPOTENCY_TTL, IdempotencyClaim,
    IdempotentResponse, NewApiKey, NewAppointment, NewTenant, StaffMember, Store, StoreError,
    StoreResult, StoredService, parse_appointment_status, parse_appointment_sync_status,
    parse_role, parse_segment_key, parse_segment_sync_status, parse_service_id, parse_staff_id,
    rebuild_customer, rebuild_service, segment_status_after_cancel,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

/// Unix milliseconds, the schema's instant representation.
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {ms} is out of range")))
}

pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| StoreError::Corrupt(format!("id {value:?}")))
}

fn get_ms(row: &SqliteRow, column: &str) -> StoreResult<DateTime<Utc>> {
    from_ms(row.try_get(column)?)
}

fn get_opt_ms(row: &SqliteRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_ms)
        .transpose()
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn with_segments(
        &self,
        tenant_id: Uuid,
        rows: Vec<SqliteRow>,
    ) -> StoreResult<Vec<Appointment>> {
        let mut appointments = rows
            .iter()
            .map(appointment_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if appointments.is_empty() {
            return Ok(appointments);
        }
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "select appointment_id, {SEGMENT_COLUMNS} from appointment_segments where tenant_id = "
        ));
        sql.push_bind(uuid_text(tenant_id))
            .push(" and appointment_id in (");
        let mut ids = sql.separated(", ");
        for a in &appointments {
            ids.push_bind(uuid_text(a.appointment_id));
        }
        sql.push(") order by appointment_id, position");
        let rows = sql.build().fetch_all(&self.pool).await?;
        for row in &rows {
            let appointment_id = parse_uuid(&row.try_get::<String, _>("appointment_id")?)?;
            let segment = segment_from_row(row)?;
            if let Some(a) = appointments
                .iter_mut()
                .find(|a| a.appointment_id == appointment_id)
            {
                a.segments.push(segment);
            }
        }
        Ok(appointments)
    }

    async fn service_rows(
        &self,
        tenant_id: Uuid,
        service_id: Option<&ServiceId>,
    ) -> StoreResult<Vec<StoredService>> {
        let tenant = uuid_text(tenant_id);
        let services = sqlx::query(
            "select service_id, name, created_at, updated_at from services
             where tenant_id = ?1 and (?2 is null or service_id = ?2)
             order by service_id",
        )
        .bind(&tenant)
        .bind(service_id.map(ServiceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        let segments = sqlx::query(
            "select service_id, segment_key, name, duration_minutes, gap_after_minutes,
                    gap_after_max_minutes
             from service_segments
             where tenant_id = ?1 and (?2 is null or service_id = ?2)
             order by service_id, position",
        )
        .bind(&tenant)
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
                    created_at: get_ms(row, "created_at")?,
                    updated_at: get_ms(row, "updated_at")?,
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
             from staff where tenant_id = ?1 and (?2 is null or staff_id = ?2)
             order by staff_id",
        )
        .bind(uuid_text(tenant_id))
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
                    created_at: get_ms(row, "created_at")?,
                    updated_at: get_ms(row, "updated_at")?,
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

const SEGMENT_COLUMNS: &str =
    "segment_key, position, staff_id, starts_at, ends_at, active, sync_status, event_type_id,
     calcom_booking_uid, calcom_booking_id, attempts, last_error, next_attempt_at";

fn appointment_from_row(row: &SqliteRow) -> StoreResult<Appointment> {
    let name: String = row.try_get("customer_name")?;
    let email: Option<String> = row.try_get("customer_email")?;
    let phone: Option<String> = row.try_get("customer_phone")?;
    Ok(Appointment {
        appointment_id: parse_uuid(&row.try_get::<String, _>("appointment_id")?)?,
        tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
        service_id: parse_service_id(&row.try_get::<String, _>("service_id")?)?,
        staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
        starts_at: get_ms(row, "starts_at")?,
        ends_at: get_ms(row, "ends_at")?,
        time_zone: row.try_get("time_zone")?,
        status: parse_appointment_status(&row.try_get::<String, _>("status")?)?,
        customer: rebuild_customer(&name, email.as_deref(), phone.as_deref())?,
        notes: row.try_get("notes")?,
        sync_status: parse_appointment_sync_status(&row.try_get::<String, _>("sync_status")?)?,
        requires_manual_review: row.try_get("requires_manual_review")?,
        review_reason: row.try_get("review_reason")?,
        created_at: get_ms(row, "created_at")?,
        updated_at: get_ms(row, "updated_at")?,
        cancelled_at: get_opt_ms(row, "cancelled_at")?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        revision: row.try_get("revision")?,
        segments: Vec::new(),
    })
}

fn segment_from_row(row: &SqliteRow) -> StoreResult<AppointmentSegment> {
    let last_error: Option<String> = row.try_get("last_error")?;
    Ok(AppointmentSegment {
        key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
        position: row.try_get("position")?,
        staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
        starts_at: get_ms(row, "starts_at")?,
        ends_at: get_ms(row, "ends_at")?,
        active: row.try_get("active")?,
        sync_status: parse_segment_sync_status(&row.try_get::<String, _>("sync_status")?)?,
        event_type_id: row.try_get("event_type_id")?,
        calcom_booking_uid: row.try_get("calcom_booking_uid")?,
        calcom_booking_id: row.try_get("calcom_booking_id")?,
        attempts: row.try_get("attempts")?,
        last_error: last_error
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("last_error is not JSON".into()))
            })
            .transpose()?,
        next_attempt_at: get_opt_ms(row, "next_attempt_at")?,
    })
}

fn segment_spec_from_row(row: &SqliteRow) -> StoreResult<SegmentSpec> {
    let minutes = |column: &str| -> StoreResult<u32> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
    };
    let max: Option<i64> = row.try_get("gap_after_max_minutes")?;
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

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
            .bind(uuid_text(t.tenant_id))
            .bind(&t.name)
            .bind(api_key)
            .bind(&t.calcom_base_url)
            .bind(t.calcom_team_id)
            .bind(webhook)
            .bind(to_ms(t.created_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tenant_exists(&self, tenant_id: Uuid) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("select 1 from tenants where tenant_id = ?1")
            .bind(uuid_text(tenant_id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn create_api_key(&self, k: &NewApiKey) -> StoreResult<()> {
        sqlx::query(super::keys::CREATE_API_KEY)
            .bind(uuid_text(k.api_key_id))
            .bind(uuid_text(k.tenant_id))
            .bind(k.role.as_str())
            .bind(&k.key_hash)
            .bind(&k.key_prefix)
            .bind(to_ms(k.created_at))
            .bind(k.expires_at.map(to_ms))
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
                api_key_id: parse_uuid(&row.try_get::<String, _>("api_key_id")?)?,
                tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
                role: parse_role(&row.try_get::<String, _>("role")?)?,
                expires_at: row
                    .try_get::<Option<i64>, _>("expires_at")?
                    .map(from_ms)
                    .transpose()?,
                rate_limit: super::keys::rate_limit(
                    row.try_get("api_rate_per_second")?,
                    row.try_get("api_rate_burst")?,
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
        let tenant = uuid_text(tenant_id);
        let mut tx = self.pool.begin_with("begin immediate").await?;
        sqlx::query(
            "insert into services (tenant_id, service_id, name, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?4)
             on conflict (tenant_id, service_id) do update set name = excluded.name,
                 updated_at = excluded.updated_at",
        )
        .bind(&tenant)
        .bind(service_id.as_str())
        .bind(service.name())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        // Upsert by key so a kept key keeps its event maps; positions move out of the way
        // first because they are unique per service.
        sqlx::query(
            "update service_segments set position = -1 - position
             where tenant_id = ?1 and service_id = ?2",
        )
        .bind(&tenant)
        .bind(service_id.as_str())
        .execute(&mut *tx)
        .await?;
        let existing: Vec<String> = sqlx::query_scalar(
            "select segment_key from service_segments where tenant_id = ?1 and service_id = ?2",
        )
        .bind(&tenant)
        .bind(service_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
        for key in existing {
            if service.segments().iter().all(|s| s.key.as_str() != key) {
                sqlx::query(
                    "delete from service_segments
                     where tenant_id = ?1 and service_id = ?2 and segment_key = ?3",
                )
                .bind(&tenant)
                .bind(service_id.as_str())
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            }
        }
        for (position, s) in service.segments().iter().enumerate() {
            sqlx::query(super::MARK_RESIZED_MAPS)
                .bind(&tenant)
                .bind(service_id.as_str())
                .bind(s.key.as_str())
                .bind(i64::from(s.duration_minutes))
                .bind(resized_map_reason(service_id, &s.key, s.duration_minutes))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into service_segments (tenant_id, service_id, position, segment_key, name,
                     duration_minutes, gap_after_minutes, gap_after_max_minutes)
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 on conflict (tenant_id, service_id, segment_key) do update set
                     position = excluded.position, name = excluded.name,
                     duration_minutes = excluded.duration_minutes,
                     gap_after_minutes = excluded.gap_after_minutes,
                     gap_after_max_minutes = excluded.gap_after_max_minutes",
            )
            .bind(&tenant)
            .bind(service_id.as_str())
            .bind(position as i64)
            .bind(s.key.as_str())
            .bind(s.name.trim())
            .bind(i64::from(s.duration_minutes))
            .bind(i64::from(s.gap_after_minutes))
            .bind(s.gap_after_max_minutes.map(i64::from))
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
        let mut tx = self.pool.begin_with("begin immediate").await?;
        sqlx::query(super::MARK_REPOINTED_MAPS)
            .bind(uuid_text(tenant_id))
            .bind(s.staff_id.as_str())
            .bind(s.calcom_user_id.0)
            .bind(repointed_map_reason(&s.staff_id, s.calcom_user_id))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into staff (tenant_id, staff_id, name, calcom_user_id, calcom_username,
                 time_zone, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             on conflict (tenant_id, staff_id) do update set name = excluded.name,
                 calcom_user_id = excluded.calcom_user_id,
                 calcom_username = excluded.calcom_username, time_zone = excluded.time_zone,
                 updated_at = excluded.updated_at",
        )
        .bind(uuid_text(tenant_id))
        .bind(s.staff_id.as_str())
        .bind(&s.name)
        .bind(s.calcom_user_id.0)
        .bind(&s.calcom_username)
        .bind(&s.time_zone)
        .bind(to_ms(s.created_at))
        .bind(to_ms(s.updated_at))
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
        a: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> StoreResult<()> {
        let (Some(starts_at), Some(ends_at)) = (a.starts_at(), a.ends_at()) else {
            return Err(StoreError::Corrupt("an appointment needs segments".into()));
        };
        // `begin immediate` takes the write lock before the overlap check, so no other
        // writer can slip a segment in between the check and the insert.
        let mut tx = self.pool.begin_with("begin immediate").await?;
        insert_appointment_rows(&mut tx, a, starts_at, ends_at, idempotency).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_appointment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<Appointment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {APPOINTMENT_COLUMNS} from appointments
             where tenant_id = ?1 and appointment_id = ?2"
        )))
        .bind(uuid_text(tenant_id))
        .bind(uuid_text(appointment_id))
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
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "select {APPOINTMENT_COLUMNS} from appointments where tenant_id = "
        ));
        sql.push_bind(uuid_text(tenant_id));
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
            sql.push(" and ends_at > ").push_bind(to_ms(from));
        }
        if let Some(to) = q.to {
            sql.push(" and starts_at < ").push_bind(to_ms(to));
        }
        if let Some((starts_at, id)) = q.after {
            // Hyphenated lowercase UUID text sorts like the UUID itself.
            sql.push(" and (starts_at > ")
                .push_bind(to_ms(starts_at))
                .push(" or (starts_at = ")
                .push_bind(to_ms(starts_at))
                .push(" and appointment_id > ")
                .push_bind(uuid_text(id))
                .push("))");
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
            "update appointments set customer_name = ?3, customer_email = ?4,
                 customer_phone = ?5, notes = ?6, updated_at = ?7,
                 customer_email_normalised = ?8
             where tenant_id = ?1 and appointment_id = ?2",
        )
        .bind(uuid_text(tenant_id))
        .bind(uuid_text(appointment_id))
        .bind(customer.name())
        .bind(customer.email())
        .bind(customer.phone())
        .bind(notes)
        .bind(to_ms(now))
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
        let tenant = uuid_text(tenant_id);
        let id = uuid_text(appointment_id);
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {APPOINTMENT_COLUMNS} from appointments
             where tenant_id = ?1 and appointment_id = ?2"
        )))
        .bind(&tenant)
        .bind(&id)
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
            "select {SEGMENT_COLUMNS}, {CREATE_OUTCOME_UNKNOWN} from appointment_segments s
             where tenant_id = ?1 and appointment_id = ?2"
        )))
        .bind(&tenant)
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let mut states = Vec::new();
        for row in &segment_rows {
            let segment = segment_from_row(row)?;
            let status =
                segment_status_after_cancel(&segment, row.try_get("create_outcome_unknown")?);
            sqlx::query(
                "update appointment_segments
                 set active = 0, sync_status = ?3, next_attempt_at = null, updated_at = ?4
                 where appointment_id = ?1 and segment_key = ?2",
            )
            .bind(&id)
            .bind(segment.key.as_str())
            .bind(status.as_str())
            .bind(to_ms(now))
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
             set status = 'cancelled', sync_status = ?3, requires_manual_review = ?4,
                 review_reason = ?5, cancelled_at = ?6, updated_at = ?6,
                 cancellation_reason = ?7
             where tenant_id = ?1 and appointment_id = ?2",
        )
        .bind(&tenant)
        .bind(&id)
        .bind(sync.status.as_str())
        .bind(sync.requires_manual_review)
        .bind(sync.review_reason.as_deref())
        .bind(to_ms(now))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        // A leased job belongs to a worker right now; the sync engine decides how that
        // worker learns of the change. Otherwise the job becomes due at once.
        sqlx::query(
            "update sync_jobs set state = 'pending', run_at = ?3, updated_at = ?3
             where tenant_id = ?1 and appointment_id = ?2 and state <> 'leased'",
        )
        .bind(&tenant)
        .bind(&id)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_appointment(tenant_id, appointment_id).await
    }

    async fn claim_idempotency_key(
        &self,
        tenant_id: Uuid,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim> {
        let tenant = uuid_text(tenant_id);
        for _ in 0..3 {
            let claimed: Option<i64> = sqlx::query_scalar(
                "insert into idempotency_keys (tenant_id, idempotency_key, request_hash, state,
                     created_at, expires_at)
                 values (?1, ?2, ?3, 'in_flight', ?4, ?5)
                 on conflict (tenant_id, idempotency_key) do update set
                     request_hash = excluded.request_hash, state = 'in_flight',
                     response_status = null, response_body = null, appointment_id = null,
                     created_at = excluded.created_at, expires_at = excluded.expires_at
                 where idempotency_keys.expires_at <= ?4
                    or (idempotency_keys.state = 'in_flight' and idempotency_keys.created_at <= ?6)
                 returning 1",
            )
            .bind(&tenant)
            .bind(key)
            .bind(request_hash)
            .bind(to_ms(now))
            .bind(to_ms(now + IDEMPOTENCY_TTL))
            .bind(to_ms(now - IDEMPOTENCY_STALE_IN_FLIGHT))
            .fetch_optional(&self.pool)
            .await?;
            if claimed.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let row = sqlx::query(
                "select request_hash, state, response_status, response_body from idempotency_keys
                 where tenant_id = ?1 and idempotency_key = ?2",
            )
            .bind(&tenant)
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
            let status: Option<i64> = row.try_get("response_status")?;
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
             set state = 'completed', response_status = ?3, response_body = ?4
             where tenant_id = ?1 and idempotency_key = ?2",
        )
        .bind(uuid_text(tenant_id))
        .bind(key)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant_id: Uuid, key: &str) -> StoreResult<()> {
        sqlx::query(
            "delete from idempotency_keys
             where tenant_id = ?1 and idempotency_key = ?2 and state = 'in_flight'",
        )
        .bind(uuid_text(tenant_id))
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_expired_idempotency_keys(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("delete from idempotency_keys where expires_at <= ?1")
            .bind(to_ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// The overlap check and the inserts of one appointment, inside the caller's immediate
/// transaction. Live holds block the time as appointments do; expired ones are ignored.
pub(crate) async fn insert_appointment_rows(
    tx: &mut sqlx::SqliteConnection,
    a: &NewAppointment,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    idempotency: Option<(&str, &IdempotentResponse)>,
) -> StoreResult<()> {
    let tenant = uuid_text(a.tenant_id);
    let id = uuid_text(a.appointment_id);
    let now = to_ms(a.created_at);
    for segment in &a.segments {
        let conflict: Option<String> = sqlx::query_scalar(
            "select appointment_id from appointment_segments
                 where tenant_id = ?1 and staff_id = ?2 and active = 1
                   and starts_at < ?4 and ends_at > ?3
                 order by starts_at limit 1",
        )
        .bind(&tenant)
        .bind(segment.staff_id.as_str())
        .bind(to_ms(segment.starts_at))
        .bind(to_ms(segment.ends_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(conflict) = conflict {
            return Err(StoreError::DoubleBooking {
                conflicting_appointment_id: Some(parse_uuid(&conflict)?),
            });
        }
    }
    if super::holds_sqlite::live_hold_overlaps(&mut *tx, a.tenant_id, &a.segments, a.created_at)
        .await?
    {
        return Err(StoreError::DoubleBooking {
            conflicting_appointment_id: None,
        });
    }
    sqlx::query(
        "insert into appointments (appointment_id, tenant_id, service_id, staff_id, starts_at,
                 ends_at, time_zone, status, customer_name, customer_email, customer_phone, notes,
                 sync_status, requires_manual_review, created_at, updated_at,
                 customer_email_normalised)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'booked', ?8, ?9, ?10, ?11, 'pending', 0, ?12, ?12,
                 ?13)",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(a.service_id.as_str())
    .bind(a.staff_id.as_str())
    .bind(to_ms(starts_at))
    .bind(to_ms(ends_at))
    .bind(&a.time_zone)
    .bind(a.customer.name())
    .bind(a.customer.email())
    .bind(a.customer.phone())
    .bind(a.notes.as_deref())
    .bind(now)
    .bind(a.customer.email_lookup_form())
    .execute(&mut *tx)
    .await?;
    for (position, s) in a.segments.iter().enumerate() {
        sqlx::query(
            "insert into appointment_segments (appointment_id, segment_key, tenant_id,
                     position, staff_id, starts_at, ends_at, active, sync_status, updated_at)
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, 'pending', ?8)",
        )
        .bind(&id)
        .bind(s.key.as_str())
        .bind(&tenant)
        .bind(position as i64)
        .bind(s.staff_id.as_str())
        .bind(to_ms(s.starts_at))
        .bind(to_ms(s.ends_at))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at,
                 awaited, created_at, updated_at)
             values (?1, ?2, ?3, 'pending', ?4, ?5, ?4, ?4)",
    )
    .bind(uuid_text(Uuid::now_v7()))
    .bind(&tenant)
    .bind(&id)
    .bind(now)
    .bind(a.awaited)
    .execute(&mut *tx)
    .await?;
    if let Some((key, response)) = idempotency {
        sqlx::query(
            "update idempotency_keys
                 set state = 'completed', response_status = ?3, response_body = ?4,
                     appointment_id = ?5
                 where tenant_id = ?1 and idempotency_key = ?2",
        )
        .bind(&tenant)
        .bind(key)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
