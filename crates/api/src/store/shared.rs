//! The [`Store`](super::Store) implementation written once for both backends.
//!
//! The two schemas differ only in how an id and an instant are stored (PostgreSQL `uuid`
//! and `timestamptz`; SQLite hyphenated text and unix milliseconds), so every statement
//! that does not touch the double-booking guard or a dialect's own syntax is one text here,
//! bound through the backend's codec. The codec and the few statements that really differ
//! stay in `pg.rs` and `sqlite.rs`, which invoke [`dialect_store!`] with:
//!
//! - `db_id(Uuid)`, `db_at(DateTime<Utc>)`: a value as the schema stores it;
//! - `get_id`, `get_at`, `get_opt_at`, `get_json`: a column back as the Rust type;
//! - `MIGRATOR`, `QueryBuilder`, `APPOINTMENT_COLUMNS`, `SEGMENT_COLUMNS`;
//! - on the store type: `begin_write()` (a transaction that may write) and
//!   `create_appointment_rows(appointment, idempotency)`, the double-booking guard, which
//!   claims the key with the rows and returns false, writing nothing, when it is taken.

/// Selected by every read of an appointment row.
pub(crate) const APPOINTMENT_COLUMNS: &str =
    "appointment_id, tenant_id, service_id, staff_id, starts_at, ends_at, time_zone, status,
     customer_name, customer_email, customer_phone, notes, sync_status,
     requires_manual_review, review_reason, created_at, updated_at, cancelled_at,
     cancellation_reason, revision";

/// Selected by every read of a segment row (with `appointment_id` where several
/// appointments are read at once).
pub(crate) const SEGMENT_COLUMNS: &str =
    "segment_key, position, staff_id, starts_at, ends_at, active, sync_status, event_type_id,
     calcom_booking_uid, calcom_booking_id, attempts, last_error, next_attempt_at";

pub(crate) const GET_APPOINTMENT: &str = "select appointment_id, tenant_id, service_id, \
     staff_id, starts_at, ends_at, time_zone, status, customer_name, customer_email, \
     customer_phone, notes, sync_status, requires_manual_review, review_reason, created_at, \
     updated_at, cancelled_at, cancellation_reason, revision \
     from appointments where tenant_id = $1 and appointment_id = $2";

pub(crate) const TENANT_EXISTS: &str = "select 1 from tenants where tenant_id = $1";

/// `$1` tenant, `$2` service or null for all.
pub(crate) const SERVICES: &str = "select service_id, name, created_at, updated_at \
     from services where tenant_id = $1 and (cast($2 as text) is null or service_id = $2) \
     order by service_id";

/// `$1` tenant, `$2` service or null for all.
pub(crate) const SERVICE_SEGMENTS: &str = "select service_id, segment_key, name, \
     duration_minutes, gap_after_minutes, gap_after_max_minutes from service_segments \
     where tenant_id = $1 and (cast($2 as text) is null or service_id = $2) \
     order by service_id, position";

/// `$1` tenant, `$2` staff member or null for all.
pub(crate) const STAFF: &str = "select staff_id, name, calcom_user_id, calcom_username, \
     time_zone, created_at, updated_at from staff \
     where tenant_id = $1 and (cast($2 as text) is null or staff_id = $2) order by staff_id";

pub(crate) const UPSERT_SERVICE: &str = "insert into services (tenant_id, service_id, name, \
     created_at, updated_at) values ($1, $2, $3, $4, $4) \
     on conflict (tenant_id, service_id) do update set name = excluded.name, \
     updated_at = excluded.updated_at";

/// Positions are unique per service: they move out of the way before the upserts.
pub(crate) const PARK_SEGMENT_POSITIONS: &str = "update service_segments \
     set position = -1 - position where tenant_id = $1 and service_id = $2";

pub(crate) const SEGMENT_KEYS: &str =
    "select segment_key from service_segments where tenant_id = $1 and service_id = $2";

pub(crate) const DELETE_SEGMENT: &str = "delete from service_segments \
     where tenant_id = $1 and service_id = $2 and segment_key = $3";

pub(crate) const UPSERT_SEGMENT: &str = "insert into service_segments (tenant_id, service_id, \
     position, segment_key, name, duration_minutes, gap_after_minutes, gap_after_max_minutes) \
     values ($1, $2, $3, $4, $5, $6, $7, $8) \
     on conflict (tenant_id, service_id, segment_key) do update set \
     position = excluded.position, name = excluded.name, \
     duration_minutes = excluded.duration_minutes, \
     gap_after_minutes = excluded.gap_after_minutes, \
     gap_after_max_minutes = excluded.gap_after_max_minutes";

pub(crate) const UPSERT_STAFF: &str = "insert into staff (tenant_id, staff_id, name, \
     calcom_user_id, calcom_username, time_zone, created_at, updated_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8) \
     on conflict (tenant_id, staff_id) do update set name = excluded.name, \
     calcom_user_id = excluded.calcom_user_id, calcom_username = excluded.calcom_username, \
     time_zone = excluded.time_zone, updated_at = excluded.updated_at";

pub(crate) const UPDATE_DETAILS: &str = "update appointments set customer_name = $3, \
     customer_email = $4, customer_phone = $5, notes = $6, updated_at = $7, \
     customer_email_normalised = $8 where tenant_id = $1 and appointment_id = $2";

/// What a claim does to a key that is already there: it takes over one that expired by
/// `$now` or that is in flight since before `$stale` (its request died), and returns no row
/// for any other, which the claimant then reads.
macro_rules! idempotency_takeover {
    ($now:literal, $stale:literal) => {
        concat!(
            " on conflict (tenant_id, idempotency_key) do update set \
             request_hash = excluded.request_hash, state = excluded.state, \
             response_status = excluded.response_status, \
             response_body = excluded.response_body, \
             appointment_id = excluded.appointment_id, created_at = excluded.created_at, \
             expires_at = excluded.expires_at \
             where idempotency_keys.expires_at <= ",
            $now,
            " or (idempotency_keys.state = 'in_flight' and idempotency_keys.created_at <= ",
            $stale,
            ")"
        )
    };
}
pub(crate) use idempotency_takeover;

/// Claims a key (`$4` now, `$6` stale) in `$7` state: `in_flight`, or `completed` with the
/// answer `$8`, `$9`.
pub(crate) const CLAIM_IDEMPOTENCY_KEY: &str = concat!(
    "insert into idempotency_keys (tenant_id, idempotency_key, request_hash, state, \
     created_at, expires_at, response_status, response_body) \
     values ($1, $2, $3, $7, $4, $5, $8, $9)",
    idempotency_takeover!("$4", "$6"),
    " returning 1"
);

pub(crate) const READ_IDEMPOTENCY_KEY: &str = "select request_hash, state, response_status, \
     response_body from idempotency_keys where tenant_id = $1 and idempotency_key = $2";

pub(crate) const COMPLETE_IDEMPOTENCY_KEY: &str = "update idempotency_keys \
     set state = 'completed', response_status = $3, response_body = $4 \
     where tenant_id = $1 and idempotency_key = $2";

pub(crate) const RELEASE_IDEMPOTENCY_KEY: &str = "delete from idempotency_keys \
     where tenant_id = $1 and idempotency_key = $2 and state = 'in_flight'";

pub(crate) const PURGE_IDEMPOTENCY_KEYS: &str =
    "delete from idempotency_keys where expires_at <= $1";

/// Domain validation bounds every minute count far below `i32::MAX`.
pub(crate) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The row mappers and the [`Store`](super::Store) implementation of one backend; see the
/// module documentation for what the invoking module provides.
macro_rules! dialect_store {
    (store = $store:ty, row = $row:ty, backend = $backend:literal, db = $db:ty, for_update = $for_update:literal) => {
        fn appointment_from_row(row: &$row) -> StoreResult<Appointment> {
            let name: String = row.try_get("customer_name")?;
            let email: Option<String> = row.try_get("customer_email")?;
            let phone: Option<String> = row.try_get("customer_phone")?;
            Ok(Appointment {
                appointment_id: get_id(row, "appointment_id")?,
                tenant_id: get_id(row, "tenant_id")?,
                service_id: parse_service_id(&row.try_get::<String, _>("service_id")?)?,
                staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                starts_at: get_at(row, "starts_at")?,
                ends_at: get_at(row, "ends_at")?,
                time_zone: row.try_get("time_zone")?,
                status: parse_appointment_status(&row.try_get::<String, _>("status")?)?,
                customer: rebuild_customer(&name, email.as_deref(), phone.as_deref())?,
                notes: row.try_get("notes")?,
                sync_status: parse_appointment_sync_status(
                    &row.try_get::<String, _>("sync_status")?,
                )?,
                requires_manual_review: row.try_get("requires_manual_review")?,
                review_reason: row.try_get("review_reason")?,
                created_at: get_at(row, "created_at")?,
                updated_at: get_at(row, "updated_at")?,
                cancelled_at: get_opt_at(row, "cancelled_at")?,
                cancellation_reason: row.try_get("cancellation_reason")?,
                revision: row.try_get("revision")?,
                segments: Vec::new(),
            })
        }

        fn segment_from_row(row: &$row) -> StoreResult<AppointmentSegment> {
            Ok(AppointmentSegment {
                key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
                position: row.try_get("position")?,
                staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                starts_at: get_at(row, "starts_at")?,
                ends_at: get_at(row, "ends_at")?,
                active: row.try_get("active")?,
                sync_status: parse_segment_sync_status(&row.try_get::<String, _>("sync_status")?)?,
                event_type_id: row
                    .try_get::<Option<i64>, _>("event_type_id")?
                    .map(phasebook_domain::EventTypeId),
                calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                calcom_booking_id: row.try_get("calcom_booking_id")?,
                attempts: row.try_get("attempts")?,
                last_error: get_json(row, "last_error")?,
                next_attempt_at: get_opt_at(row, "next_attempt_at")?,
            })
        }

        fn segment_spec_from_row(row: &$row) -> StoreResult<SegmentSpec> {
            let minutes = |value: i32, column: &str| -> StoreResult<u32> {
                u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
            };
            let max: Option<i32> = row.try_get("gap_after_max_minutes")?;
            Ok(SegmentSpec {
                key: parse_segment_key(&row.try_get::<String, _>("segment_key")?)?,
                name: row.try_get("name")?,
                duration_minutes: minutes(row.try_get("duration_minutes")?, "duration_minutes")?,
                gap_after_minutes: minutes(
                    row.try_get("gap_after_minutes")?,
                    "gap_after_minutes",
                )?,
                gap_after_max_minutes: max
                    .map(|m| minutes(m, "gap_after_max_minutes"))
                    .transpose()?,
            })
        }

        fn staff_from_row(row: &$row) -> StoreResult<StaffMember> {
            Ok(StaffMember {
                staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                name: row.try_get("name")?,
                calcom_user_id: CalcomUserId(row.try_get("calcom_user_id")?),
                calcom_username: row.try_get("calcom_username")?,
                time_zone: row.try_get("time_zone")?,
                created_at: get_at(row, "created_at")?,
                updated_at: get_at(row, "updated_at")?,
            })
        }

        impl $store {
            async fn with_segments(
                &self,
                tenant_id: Uuid,
                rows: Vec<$row>,
            ) -> StoreResult<Vec<Appointment>> {
                let mut appointments = rows
                    .iter()
                    .map(appointment_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                if appointments.is_empty() {
                    return Ok(appointments);
                }
                let mut sql: QueryBuilder<$db> = QueryBuilder::new(format!(
                    "select appointment_id, {SEGMENT_COLUMNS} from appointment_segments where tenant_id = "
                ));
                sql.push_bind(db_id(tenant_id))
                    .push(" and appointment_id in (");
                let mut ids = sql.separated(", ");
                for a in &appointments {
                    ids.push_bind(db_id(a.appointment_id));
                }
                sql.push(") order by appointment_id, position");
                let rows = sql.build().fetch_all(&self.pool).await?;
                for row in &rows {
                    let appointment_id = get_id(row, "appointment_id")?;
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

            async fn list_appointment_rows(
                &self,
                tenant_id: Uuid,
                q: &AppointmentQuery,
            ) -> StoreResult<Vec<Appointment>> {
                let mut sql: QueryBuilder<$db> = QueryBuilder::new(format!(
                    "select {APPOINTMENT_COLUMNS} from appointments where tenant_id = "
                ));
                sql.push_bind(db_id(tenant_id));
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
                    sql.push(" and ends_at > ").push_bind(db_at(from));
                }
                if let Some(to) = q.to {
                    sql.push(" and starts_at < ").push_bind(db_at(to));
                }
                if let Some((starts_at, id)) = q.after {
                    // A row-value comparison; SQLite's hyphenated lowercase UUID text sorts like
                    // the UUID itself.
                    sql.push(" and (starts_at, appointment_id) > (")
                        .push_bind(db_at(starts_at))
                        .push(", ")
                        .push_bind(db_id(id))
                        .push(")");
                }
                sql.push(" order by starts_at, appointment_id limit ")
                    .push_bind(i64::from(q.limit));
                let rows = sql.build().fetch_all(&self.pool).await?;
                self.with_segments(tenant_id, rows).await
            }

            async fn service_rows(
                &self,
                tenant_id: Uuid,
                service_id: Option<&ServiceId>,
            ) -> StoreResult<Vec<StoredService>> {
                let services = sqlx::query(shared::SERVICES)
                    .bind(db_id(tenant_id))
                    .bind(service_id.map(ServiceId::as_str))
                    .fetch_all(&self.pool)
                    .await?;
                let segments = sqlx::query(shared::SERVICE_SEGMENTS)
                    .bind(db_id(tenant_id))
                    .bind(service_id.map(ServiceId::as_str))
                    .fetch_all(&self.pool)
                    .await?;
                services
                    .iter()
                    .map(|row| {
                        let id: String = row.try_get("service_id")?;
                        let specs = segments
                            .iter()
                            .filter(|s| {
                                s.try_get::<String, _>("service_id").ok().as_deref() == Some(&id)
                            })
                            .map(segment_spec_from_row)
                            .collect::<StoreResult<Vec<_>>>()?;
                        let name: String = row.try_get("name")?;
                        Ok(StoredService {
                            service_id: parse_service_id(&id)?,
                            service: rebuild_service(&name, specs)?,
                            created_at: get_at(row, "created_at")?,
                            updated_at: get_at(row, "updated_at")?,
                        })
                    })
                    .collect()
            }

            async fn staff_rows(
                &self,
                tenant_id: Uuid,
                staff_id: Option<&StaffId>,
            ) -> StoreResult<Vec<StaffMember>> {
                let rows = sqlx::query(shared::STAFF)
                    .bind(db_id(tenant_id))
                    .bind(staff_id.map(StaffId::as_str))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(staff_from_row).collect()
            }

            /// One try of [`Store::cancel_appointment`]: the appointment, its segments and
            /// its sync job change in one transaction, so a failure leaves nothing half done.
            async fn cancel_appointment_once(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                reason: Option<&str>,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Appointment>> {
                let mut tx = self.begin_write().await?;
                let status: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "{}{}",
                    super::APPOINTMENT_STATUS,
                    $for_update
                )))
                .bind(db_id(tenant_id))
                .bind(db_id(appointment_id))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(status) = status else {
                    return Ok(None);
                };
                let already_cancelled =
                    parse_appointment_status(&status)? == AppointmentStatus::Cancelled;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{}{}",
                    super::CANCEL_SEGMENTS,
                    $for_update
                )))
                .bind(db_id(tenant_id))
                .bind(db_id(appointment_id))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| {
                    Ok(super::CancelSegment {
                        segment: segment_from_row(row)?,
                        create_outcome_unknown: row.try_get("create_outcome_unknown")?,
                        review_reason: row.try_get("review_reason")?,
                        has_error: row.try_get("has_error")?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
                let plan = super::plan_cancel(already_cancelled, rows);
                for (key, status) in &plan.segments {
                    sqlx::query(super::CANCEL_SEGMENT)
                        .bind(db_id(appointment_id))
                        .bind(key.as_str())
                        .bind(status.as_str())
                        .bind(db_at(now))
                        .execute(&mut *tx)
                        .await?;
                }
                if !already_cancelled {
                    sqlx::query(super::MARK_CANCELLED)
                        .bind(db_id(tenant_id))
                        .bind(db_id(appointment_id))
                        .bind(db_at(now))
                        .bind(reason)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(super::QUEUE_SYNC_JOB)
                    .bind(db_id(Uuid::now_v7()))
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(super::WRITE_APPOINTMENT_SYNC)
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
                    .bind(plan.sync.status.as_str())
                    .bind(plan.sync.requires_manual_review)
                    .bind(plan.sync.review_reason.as_deref())
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.get_appointment(tenant_id, appointment_id).await
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
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
                    .bind(db_id(t.tenant_id))
                    .bind(&t.name)
                    .bind(api_key)
                    .bind(&t.calcom_base_url)
                    .bind(t.calcom_team_id)
                    .bind(webhook)
                    .bind(db_at(t.created_at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn tenant_exists(&self, tenant_id: Uuid) -> StoreResult<bool> {
                let found: Option<i32> = sqlx::query_scalar(shared::TENANT_EXISTS)
                    .bind(db_id(tenant_id))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(found.is_some())
            }

            async fn create_api_key(&self, k: &NewApiKey) -> StoreResult<()> {
                sqlx::query(super::keys::CREATE_API_KEY)
                    .bind(db_id(k.api_key_id))
                    .bind(db_id(k.tenant_id))
                    .bind(k.role.as_str())
                    .bind(&k.key_hash)
                    .bind(&k.key_prefix)
                    .bind(db_at(k.created_at))
                    .bind(k.expires_at.map(db_at))
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
                        api_key_id: get_id(&row, "api_key_id")?,
                        tenant_id: get_id(&row, "tenant_id")?,
                        role: parse_role(&row.try_get::<String, _>("role")?)?,
                        expires_at: get_opt_at(&row, "expires_at")?,
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
                let mut tx = self.begin_write().await?;
                sqlx::query(shared::UPSERT_SERVICE)
                    .bind(db_id(tenant_id))
                    .bind(service_id.as_str())
                    .bind(service.name())
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                // Segments are upserted by key, not replaced, so the event maps of a kept
                // key survive.
                sqlx::query(shared::PARK_SEGMENT_POSITIONS)
                    .bind(db_id(tenant_id))
                    .bind(service_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let existing: Vec<String> = sqlx::query_scalar(shared::SEGMENT_KEYS)
                    .bind(db_id(tenant_id))
                    .bind(service_id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                for key in existing {
                    if service.segments().iter().all(|s| s.key.as_str() != key) {
                        sqlx::query(shared::DELETE_SEGMENT)
                            .bind(db_id(tenant_id))
                            .bind(service_id.as_str())
                            .bind(&key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                for (position, s) in service.segments().iter().enumerate() {
                    sqlx::query(super::MARK_RESIZED_MAPS)
                        .bind(db_id(tenant_id))
                        .bind(service_id.as_str())
                        .bind(s.key.as_str())
                        .bind(shared::to_i32(s.duration_minutes))
                        .bind(resized_map_reason(service_id, &s.key, s.duration_minutes))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(shared::UPSERT_SEGMENT)
                        .bind(db_id(tenant_id))
                        .bind(service_id.as_str())
                        .bind(i32::try_from(position).unwrap_or(i32::MAX))
                        .bind(s.key.as_str())
                        .bind(s.name.trim())
                        .bind(shared::to_i32(s.duration_minutes))
                        .bind(shared::to_i32(s.gap_after_minutes))
                        .bind(s.gap_after_max_minutes.map(shared::to_i32))
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

            async fn put_staff(
                &self,
                tenant_id: Uuid,
                s: &StaffMember,
            ) -> StoreResult<StaffMember> {
                let mut tx = self.begin_write().await?;
                sqlx::query(super::MARK_REPOINTED_MAPS)
                    .bind(db_id(tenant_id))
                    .bind(s.staff_id.as_str())
                    .bind(s.calcom_user_id.0)
                    .bind(repointed_map_reason(&s.staff_id, s.calcom_user_id))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(shared::UPSERT_STAFF)
                    .bind(db_id(tenant_id))
                    .bind(s.staff_id.as_str())
                    .bind(&s.name)
                    .bind(s.calcom_user_id.0)
                    .bind(&s.calcom_username)
                    .bind(&s.time_zone)
                    .bind(db_at(s.created_at))
                    .bind(db_at(s.updated_at))
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

            async fn booking_context(
                &self,
                tenant_id: Uuid,
                service_id: &ServiceId,
                staff: &[StaffId],
            ) -> StoreResult<super::booking_context::BookingContext> {
                self.booking_context_rows(tenant_id, service_id, staff)
                    .await
            }

            async fn create_appointment(
                &self,
                appointment: &NewAppointment,
                idempotency: Option<KeyedAnswer<'_>>,
            ) -> StoreResult<IdempotencyClaim> {
                let Some(answer) = idempotency else {
                    self.create_appointment_rows(appointment, None).await?;
                    return Ok(IdempotencyClaim::Claimed);
                };
                self.claim_or_read(appointment.tenant_id, answer.key, answer.request_hash, || {
                    self.create_appointment_rows(appointment, idempotency)
                })
                .await
            }

            async fn get_appointment(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
            ) -> StoreResult<Option<Appointment>> {
                let rows = sqlx::query(shared::GET_APPOINTMENT)
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
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
                query: &AppointmentQuery,
            ) -> StoreResult<Vec<Appointment>> {
                self.list_appointment_rows(tenant_id, query).await
            }

            async fn update_appointment_details(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                customer: &Customer,
                notes: Option<&str>,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Appointment>> {
                let updated = sqlx::query(shared::UPDATE_DETAILS)
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
                    .bind(customer.name())
                    .bind(customer.email())
                    .bind(customer.phone())
                    .bind(notes)
                    .bind(db_at(now))
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
                            if tries < super::RETRIES_ON_CONFLICT
                                && super::is_retryable(&err) =>
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
                self.claim_key_in_state(tenant_id, key, request_hash, None, now)
                    .await
            }

            async fn pin_first_answer(
                &self,
                tenant_id: Uuid,
                answer: KeyedAnswer<'_>,
                now: DateTime<Utc>,
            ) -> StoreResult<IdempotencyClaim> {
                self.claim_key_in_state(
                    tenant_id,
                    answer.key,
                    answer.request_hash,
                    Some(answer.response),
                    now,
                )
                .await
            }

            async fn complete_idempotency_key(
                &self,
                tenant_id: Uuid,
                key: &str,
                response: &IdempotentResponse,
            ) -> StoreResult<()> {
                sqlx::query(shared::COMPLETE_IDEMPOTENCY_KEY)
                    .bind(db_id(tenant_id))
                    .bind(key)
                    .bind(i32::from(response.status))
                    .bind(&response.body)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn release_idempotency_key(&self, tenant_id: Uuid, key: &str) -> StoreResult<()> {
                sqlx::query(shared::RELEASE_IDEMPOTENCY_KEY)
                    .bind(db_id(tenant_id))
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_expired_idempotency_keys(&self, now: DateTime<Utc>) -> StoreResult<u64> {
                let done = sqlx::query(shared::PURGE_IDEMPOTENCY_KEYS)
                    .bind(db_at(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }

        impl $store {
            /// Claims `key` in flight (`answer` None) or completed with `answer`.
            async fn claim_key_in_state(
                &self,
                tenant_id: Uuid,
                key: &str,
                request_hash: &str,
                answer: Option<&IdempotentResponse>,
                now: DateTime<Utc>,
            ) -> StoreResult<IdempotencyClaim> {
                self.claim_or_read(tenant_id, key, request_hash, || async {
                    let mut connection = self.pool.acquire().await?;
                    Self::claim_key_on(&mut connection, tenant_id, key, request_hash, answer, now)
                        .await
                })
                .await
            }

            /// Runs `claim` (true: the key is now the request's) and, when the key is taken,
            /// reads what it holds. A race with a concurrent release can make the row
            /// vanish between the two; trying again settles it.
            async fn claim_or_read<F, Fut>(
                &self,
                tenant_id: Uuid,
                key: &str,
                request_hash: &str,
                mut claim: F,
            ) -> StoreResult<IdempotencyClaim>
            where
                F: FnMut() -> Fut,
                Fut: std::future::Future<Output = StoreResult<bool>>,
            {
                for _ in 0..3 {
                    if claim().await? {
                        return Ok(IdempotencyClaim::Claimed);
                    }
                    if let Some(taken) = self.taken_key(tenant_id, key, request_hash).await? {
                        return Ok(taken);
                    }
                }
                Ok(IdempotencyClaim::InFlight)
            }

            /// The claim itself, on the caller's connection (inside its transaction when
            /// the claim is part of a write): false when the key is taken.
            async fn claim_key_on(
                connection: &mut <$db as sqlx::Database>::Connection,
                tenant_id: Uuid,
                key: &str,
                request_hash: &str,
                answer: Option<&IdempotentResponse>,
                now: DateTime<Utc>,
            ) -> StoreResult<bool> {
                let claimed: Option<i32> = sqlx::query_scalar(shared::CLAIM_IDEMPOTENCY_KEY)
                    .bind(db_id(tenant_id))
                    .bind(key)
                    .bind(request_hash)
                    .bind(db_at(now))
                    .bind(db_at(now + IDEMPOTENCY_TTL))
                    .bind(db_at(now - IDEMPOTENCY_STALE_IN_FLIGHT))
                    .bind(if answer.is_some() { "completed" } else { "in_flight" })
                    .bind(answer.map(|a| i32::from(a.status)))
                    .bind(answer.map(|a| a.body.as_slice()))
                    .fetch_optional(&mut *connection)
                    .await?;
                Ok(claimed.is_some())
            }

            /// What a key that could not be claimed holds for a request with this body
            /// hash; None when it is gone (released since), so the claim can be tried again.
            async fn taken_key(
                &self,
                tenant_id: Uuid,
                key: &str,
                request_hash: &str,
            ) -> StoreResult<Option<IdempotencyClaim>> {
                let row = sqlx::query(shared::READ_IDEMPOTENCY_KEY)
                    .bind(db_id(tenant_id))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let hash: String = row.try_get("request_hash")?;
                let state: String = row.try_get("state")?;
                if hash != request_hash {
                    return Ok(Some(IdempotencyClaim::Mismatch));
                }
                if state != "completed" {
                    return Ok(Some(IdempotencyClaim::InFlight));
                }
                let status: Option<i32> = row.try_get("response_status")?;
                let body: Option<Vec<u8>> = row.try_get("response_body")?;
                Ok(Some(IdempotencyClaim::Completed(IdempotentResponse {
                    status: status.and_then(|s| u16::try_from(s).ok()).ok_or_else(|| {
                        StoreError::Corrupt("idempotent response status".into())
                    })?,
                    body: body.unwrap_or_default(),
                })))
            }
        }
    };
}

pub(crate) use dialect_store;
