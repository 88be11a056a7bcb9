//! What a booking reads before the domain decides, in one statement: the service with its
//! segments, the tenant's booking settings, who performs the service, its event maps and
//! the staff members the request names. Each kind of row is one branch of a `union all`
//! whose columns are the ones the row mappers of `shared.rs` and `event_maps.rs` read, so a
//! create, a hold or a search waits for one round trip instead of five.
//!
//! The text is written once for both backends; [`booking_context_store!`] is invoked by
//! `pg.rs` and `sqlite.rs` with their codec, as `shared::dialect_store!` is.

use phasebook_domain::StaffId;

use super::event_maps::EventMap;
use super::holds::BookingSettings;
use super::{StaffMember, StoredService};

/// What [`Store::booking_context`](super::Store::booking_context) answers.
#[derive(Debug, Clone, Default)]
pub struct BookingContext {
    /// None: the tenant has no such service.
    pub service: Option<StoredService>,
    /// None: no such tenant (the caller falls back to the defaults).
    pub settings: Option<BookingSettings>,
    /// Who performs the service, by staff id: of the staff members asked for, when any were
    /// (a booking names its staff and decides about them alone), else all of them.
    pub performers: Vec<StaffId>,
    /// The service's event maps, by segment position, then staff id: those of the staff
    /// members asked for, when any were.
    pub maps: Vec<EventMap>,
    /// Those of the asked staff members who exist, by staff id.
    pub staff: Vec<StaffMember>,
}

/// Every column of the union, with the type its empty cells are cast to (both dialects
/// accept these names in a cast; PostgreSQL needs them to match the branches' types).
pub(crate) const COLUMNS: &[(&str, &str)] = &[
    ("service_id", "text"),
    ("segment_key", "text"),
    ("staff_id", "text"),
    ("name", "text"),
    ("position", "integer"),
    ("duration_minutes", "integer"),
    ("gap_after_minutes", "integer"),
    ("gap_after_max_minutes", "integer"),
    ("calcom_user_id", "bigint"),
    ("calcom_username", "text"),
    ("time_zone", "text"),
    ("country", "text"),
    ("booking_horizon_days", "integer"),
    ("event_type_id", "bigint"),
    ("bookable_event_type_id", "bigint"),
    ("resolution", "text"),
    ("checked_at", "timestamptz"),
    ("unverified_reason", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
];

/// Which rows of a branch are kept besides the tenant's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Only the tenant's row.
    Tenant,
    /// This column equals the service asked for.
    Service(&'static str),
    /// This column is one of the staff members asked for.
    Staff(&'static str),
}

/// One branch of the union: its kind, the columns it fills, and its `from … where` up to
/// the tenant's column, which is compared with the bound tenant.
pub(crate) struct Branch {
    pub kind: &'static str,
    pub filled: &'static [&'static str],
    pub from: &'static str,
    pub keep: Keep,
    /// A staff column that narrows the branch to the staff members asked for, when any
    /// were: a salon with forty stylists has a create read its own stylist's maps, not
    /// all 160.
    pub asked_staff: Option<&'static str>,
}

pub(crate) const BRANCHES: &[Branch] = &[
    Branch {
        kind: "service",
        filled: &["service_id", "name", "created_at", "updated_at"],
        from: "services where tenant_id = ",
        keep: Keep::Service("service_id"),
        asked_staff: None,
    },
    Branch {
        kind: "segment",
        filled: &[
            "service_id",
            "segment_key",
            "name",
            "position",
            "duration_minutes",
            "gap_after_minutes",
            "gap_after_max_minutes",
        ],
        from: "service_segments where tenant_id = ",
        keep: Keep::Service("service_id"),
        asked_staff: None,
    },
    Branch {
        kind: "settings",
        filled: &["country", "booking_horizon_days"],
        from: "tenants where tenant_id = ",
        keep: Keep::Tenant,
        asked_staff: None,
    },
    Branch {
        kind: "performer",
        filled: &["service_id", "staff_id"],
        from: "staff_services where tenant_id = ",
        keep: Keep::Service("service_id"),
        asked_staff: Some("staff_id"),
    },
    Branch {
        kind: "map",
        filled: &[
            "m.service_id",
            "m.segment_key",
            "m.staff_id",
            "g.position",
            "m.event_type_id",
            "m.bookable_event_type_id",
            "m.resolution",
            "m.checked_at",
            "m.unverified_reason",
            "m.created_at",
            "m.updated_at",
        ],
        from: "event_maps m join service_segments g on g.tenant_id = m.tenant_id \
               and g.service_id = m.service_id and g.segment_key = m.segment_key \
               where m.tenant_id = ",
        keep: Keep::Service("m.service_id"),
        asked_staff: Some("m.staff_id"),
    },
    Branch {
        kind: "staff",
        filled: &[
            "staff_id",
            "name",
            "calcom_user_id",
            "calcom_username",
            "time_zone",
            "created_at",
            "updated_at",
        ],
        from: "staff where tenant_id = ",
        keep: Keep::Staff("staff_id"),
        asked_staff: None,
    },
];

/// The `select` list of a branch: its own columns where it fills them, typed nulls
/// elsewhere, every one named as the union names it.
pub(crate) fn select_list(branch: &Branch) -> String {
    let mut list = format!("select '{}' as kind", branch.kind);
    for (column, cast) in COLUMNS {
        let own = branch
            .filled
            .iter()
            .find(|f| f.rsplit('.').next() == Some(column));
        match own {
            Some(expression) => list.push_str(&format!(", {expression} as {column}")),
            None => list.push_str(&format!(", cast(null as {cast}) as {column}")),
        }
    }
    list.push_str(" from ");
    list
}

/// The read of one backend, through the codec of the invoking module and the row mappers
/// of `shared::dialect_store!` and `event_maps::event_map_store!` expanded beside it.
macro_rules! booking_context_store {
    (store = $store:ty, row = $row:ty, db = $db:ty) => {
        impl $store {
            async fn booking_context_rows(
                &self,
                tenant_id: Uuid,
                service_id: &ServiceId,
                staff: &[StaffId],
            ) -> StoreResult<super::booking_context::BookingContext> {
                use super::booking_context::{BRANCHES, Keep, select_list};
                let among_staff = |sql: &mut QueryBuilder<$db>, column: &str| {
                    sql.push(format!(" and {column} in ("));
                    let mut ids = sql.separated(", ");
                    for id in staff {
                        ids.push_bind(id.as_str().to_string());
                    }
                    sql.push(")");
                };
                let mut sql: QueryBuilder<$db> = QueryBuilder::new("");
                let mut first = true;
                for branch in BRANCHES {
                    if matches!(branch.keep, Keep::Staff(_)) && staff.is_empty() {
                        continue;
                    }
                    if !first {
                        sql.push(" union all ");
                    }
                    first = false;
                    sql.push(select_list(branch))
                        .push(branch.from)
                        .push_bind(db_id(tenant_id));
                    match branch.keep {
                        Keep::Tenant => {}
                        Keep::Service(column) => {
                            sql.push(format!(" and {column} = "))
                                .push_bind(service_id.as_str().to_string());
                        }
                        Keep::Staff(column) => among_staff(&mut sql, column),
                    }
                    if let (Some(column), false) = (branch.asked_staff, staff.is_empty()) {
                        among_staff(&mut sql, column);
                    }
                }
                sql.push(" order by kind, position, staff_id");
                let rows = sql.build().fetch_all(&self.pool).await?;

                let mut context = super::booking_context::BookingContext::default();
                let mut service = None;
                let mut segments = Vec::new();
                for row in &rows {
                    match row.try_get::<String, _>("kind")?.as_str() {
                        "service" => {
                            service = Some((
                                row.try_get::<String, _>("name")?,
                                get_at(row, "created_at")?,
                                get_at(row, "updated_at")?,
                            ))
                        }
                        "segment" => segments.push(segment_spec_from_row(row)?),
                        "settings" => {
                            let horizon: i32 = row.try_get("booking_horizon_days")?;
                            context.settings = Some(super::holds::BookingSettings {
                                country: row.try_get("country")?,
                                horizon_days: u32::try_from(horizon)
                                    .map_err(|_| StoreError::Corrupt("booking horizon".into()))?,
                            });
                        }
                        "performer" => context
                            .performers
                            .push(parse_staff_id(&row.try_get::<String, _>("staff_id")?)?),
                        "map" => context.maps.push(event_map_from_row(row)?),
                        "staff" => context.staff.push(staff_from_row(row)?),
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "booking context row {other:?}"
                            )));
                        }
                    }
                }
                context.service = service
                    .map(|(name, created_at, updated_at)| {
                        Ok::<_, StoreError>(StoredService {
                            service_id: service_id.clone(),
                            service: rebuild_service(&name, segments)?,
                            created_at,
                            updated_at,
                        })
                    })
                    .transpose()?;
                Ok(context)
            }
        }
    };
}

pub(crate) use booking_context_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_branch_names_every_column_once_and_fills_only_known_ones() {
        for branch in BRANCHES {
            let list = select_list(branch);
            for (column, _) in COLUMNS {
                assert_eq!(
                    list.matches(&format!(" as {column},")).count()
                        + list.matches(&format!(" as {column} ")).count(),
                    1,
                    "{} names {column} once: {list}",
                    branch.kind
                );
            }
            for filled in branch.filled {
                let name = filled.rsplit('.').next().unwrap_or(filled);
                assert!(
                    COLUMNS.iter().any(|(c, _)| *c == name),
                    "{} fills {filled}, which the union does not have",
                    branch.kind
                );
            }
        }
    }
}
