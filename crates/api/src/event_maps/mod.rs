//! Event maps: storing a (service, segment, staff) → Cal.com event type map only after
//! Cal.com confirms it is bookable for that host, re-resolving a map when Cal.com refuses a
//! managed parent, auditing every map (and every missing one), and provisioning single-host
//! team event types. The rules live in `phasebook_domain::resolution`; this module reads
//! Cal.com and the store, and writes the outcome.

pub mod calcom;
pub mod cli;
pub mod report;

use calcom_client::{CalcomClient, CalcomError, CreateTeamEventType, EventType, HostAssignment};
use calcom_client::{SchedulingType, UpdateTeamEventType};
use std::sync::Arc;

use chrono::Utc;
use phasebook_domain::audit::{
    self, AuditCell, Coverage, Recheck, ServiceSegments, Severity, StoredMap, Verdict,
};
use phasebook_domain::resolution::{self, HostIdentity, Refusal, Resolution, ResolutionKind};
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use serde::Serialize;
use uuid::Uuid;

use crate::store::event_maps::{EventMap, EventMapStore, NewEventMap, TenantCalcom};
use crate::store::{StaffMember, StoreError};
use phasebook_domain::{SegmentSpec, Service};

/// Everything that can stop an event-map operation.
#[derive(Debug, thiserror::Error)]
pub enum EventMapError {
    /// The service, segment, staff member, map or tenant does not exist for this tenant.
    #[error("{detail}")]
    UnknownSubject { what: &'static str, detail: String },
    /// Cal.com's answer makes the event type unusable for this host and segment.
    #[error("{0}")]
    Refused(Refusal),
    /// Provisioning needs the tenant's Cal.com team.
    #[error(
        "the tenant has no Cal.com team id; set it (tenant create --calcom-team-id) so phasebook \
         can use Cal.com's team event-type endpoints"
    )]
    NoTeam,
    /// Cal.com could not be asked, or refused the tenant's key.
    #[error("Cal.com: {0}")]
    Calcom(#[from] CalcomError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The report could not be written (CLI only).
    #[error("writing the report: {0}")]
    Output(String),
}

/// The (service, segment, staff) a map is for, with what resolving it needs.
#[derive(Debug, Clone)]
pub struct MapSubject {
    pub service_id: ServiceId,
    pub service: Service,
    pub segment: SegmentSpec,
    pub staff: StaffMember,
}

impl MapSubject {
    pub fn host(&self) -> HostIdentity {
        host_of(&self.staff)
    }
}

fn host_of(staff: &StaffMember) -> HostIdentity {
    HostIdentity {
        user_id: staff.calcom_user_id,
        username: staff.calcom_username.clone(),
    }
}

/// Loads the service, segment and staff member, or says which one is missing.
pub async fn load_subject(
    store: &dyn EventMapStore,
    tenant_id: Uuid,
    service_id: &ServiceId,
    segment_key: &SegmentKey,
    staff_id: &StaffId,
) -> Result<MapSubject, EventMapError> {
    let service = load_service(store, tenant_id, service_id).await?;
    let segment =
        service
            .segment(segment_key)
            .cloned()
            .ok_or_else(|| EventMapError::UnknownSubject {
                what: "segment",
                detail: format!("service {service_id} has no segment {segment_key}"),
            })?;
    let staff = load_staff(store, tenant_id, staff_id).await?;
    Ok(MapSubject {
        service_id: service_id.clone(),
        service,
        segment,
        staff,
    })
}

async fn load_service(
    store: &dyn EventMapStore,
    tenant_id: Uuid,
    service_id: &ServiceId,
) -> Result<Service, EventMapError> {
    Ok(store
        .get_service(tenant_id, service_id)
        .await?
        .ok_or_else(|| EventMapError::UnknownSubject {
            what: "service",
            detail: format!("no service {service_id}"),
        })?
        .service)
}

async fn load_staff(
    store: &dyn EventMapStore,
    tenant_id: Uuid,
    staff_id: &StaffId,
) -> Result<StaffMember, EventMapError> {
    store
        .get_staff(tenant_id, staff_id)
        .await?
        .ok_or_else(|| EventMapError::UnknownSubject {
            what: "staff member",
            detail: format!("no staff member {staff_id}"),
        })
}

/// A Cal.com client for the tenant, with the default timeout, rate limit and retries, and a
/// budget of its own (for callers without a database).
pub fn client_for(tenant: &TenantCalcom) -> Result<CalcomClient, EventMapError> {
    shared_client_for(tenant, None, false)
}

/// A Cal.com client for the tenant whose requests take their tokens from the key's shared
/// budget; `wait_when_rate_limited` for tools that should wait out a 429 rather than fail.
pub fn shared_client_for(
    tenant: &TenantCalcom,
    budgets: Option<&crate::budget::Budgets>,
    wait_when_rate_limited: bool,
) -> Result<CalcomClient, EventMapError> {
    let mut config =
        calcom_client::ClientConfig::new(tenant.base_url.clone(), tenant.api_key.clone());
    config.budget = budgets.map(|budgets| {
        let fingerprint = crate::sync::clients::key_fingerprint(&tenant.base_url, &tenant.api_key);
        Arc::new(crate::budget::KeyBudget(
            budgets.for_key(fingerprint, config.rate_limit),
        )) as Arc<dyn calcom_client::Budget>
    });
    config.wait_when_rate_limited = wait_when_rate_limited;
    Ok(CalcomClient::new(config)?)
}

/// The tenant's Cal.com settings, or `UnknownSubject` when the tenant is gone.
pub async fn tenant_calcom(
    store: &dyn EventMapStore,
    tenant_id: Uuid,
) -> Result<TenantCalcom, EventMapError> {
    store
        .tenant_calcom(tenant_id)
        .await?
        .ok_or_else(|| EventMapError::UnknownSubject {
            what: "tenant",
            detail: format!("no tenant {tenant_id}"),
        })
}

async fn store_resolution(
    store: &dyn EventMapStore,
    tenant_id: Uuid,
    subject: &MapSubject,
    resolution: &Resolution,
) -> Result<EventMap, EventMapError> {
    let map = NewEventMap {
        service_id: subject.service_id.clone(),
        segment_key: subject.segment.key.clone(),
        staff_id: subject.staff.staff_id.clone(),
        event_type_id: resolution.event_type_id,
        bookable_event_type_id: resolution.bookable_event_type_id,
        resolution: resolution.kind.as_str().to_string(),
        checked_at: Utc::now(),
    };
    Ok(store.put_event_map(tenant_id, &map).await?)
}

/// `PUT /event-maps/…`: asks Cal.com, decides, and stores the map only when it is
/// bookable; a refusal is returned as `EventMapError::Refused` and nothing is written.
pub async fn put_event_map(
    store: &dyn EventMapStore,
    client: &CalcomClient,
    tenant_id: Uuid,
    team_id: Option<i64>,
    subject: &MapSubject,
    event_type_id: EventTypeId,
) -> Result<EventMap, EventMapError> {
    let decision = calcom::resolve(
        client,
        team_id,
        event_type_id,
        &subject.host(),
        subject.segment.duration_minutes,
    )
    .await?;
    let decision = match decision {
        Err(Refusal::NotFound { event_type_id }) => {
            let others: Vec<HostIdentity> = store
                .list_staff(tenant_id)
                .await?
                .iter()
                .filter(|s| s.staff_id != subject.staff.staff_id)
                .map(host_of)
                .collect();
            match calcom::listed_owner(client, event_type_id, &others).await? {
                Some(owner) => Err(Refusal::OwnedByAnotherUser {
                    event_type_id,
                    owner: Some(owner),
                    host: subject.host(),
                }),
                None => Err(Refusal::NotFound { event_type_id }),
            }
        }
        decision => decision,
    };
    let resolution = match decision {
        Ok(resolution) => resolution,
        Err(refusal) => {
            tracing::info!(
                service_id = %subject.service_id,
                segment_key = %subject.segment.key,
                staff_id = %subject.staff.staff_id,
                event_type_id = event_type_id.0,
                refusal = refusal.code(),
                "event map refused"
            );
            return Err(EventMapError::Refused(refusal));
        }
    };
    let map = store_resolution(store, tenant_id, subject, &resolution).await?;
    tracing::info!(
        service_id = %subject.service_id,
        segment_key = %subject.segment.key,
        staff_id = %subject.staff.staff_id,
        event_type_id = event_type_id.0,
        bookable_event_type_id = resolution.bookable_event_type_id.0,
        resolution = resolution.kind.as_str(),
        "event map stored"
    );
    Ok(map)
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

/// One line of the audit: a (service, segment, staff) cell, its map if any, and the verdict.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub service_id: String,
    pub segment_key: String,
    pub staff_id: String,
    pub event_type_id: Option<i64>,
    pub bookable_event_type_id: Option<i64>,
    pub resolution: Option<String>,
    /// `ok`, `warning` or `error`.
    pub severity: String,
    /// Stable code of the finding: `ok`; `round-robin-shared` or `unverified` (warnings);
    /// `service-unmapped`, `segment-unmapped`, `bookable-changed`, `map-missing`,
    /// `segment-map-unverified` (a segment's length or the staff member's Cal.com user
    /// changed since the map was checked), or one of
    /// the refusals of `PUT /event-maps/…` (`event-type-not-found`,
    /// `event-type-length-mismatch`, `managed-parent-without-child`, `host-not-assigned`,
    /// `event-type-owned-by-another-user`) (errors).
    pub code: String,
    pub message: String,
    /// The fix in one sentence; empty when nothing needs doing.
    pub fix: String,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Audit {
    /// True when no finding is a warning or an error.
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

impl Audit {
    fn from_findings(findings: Vec<(Severity, Finding)>) -> Self {
        let errors = findings
            .iter()
            .filter(|(s, _)| *s == Severity::Error)
            .count();
        let warnings = findings
            .iter()
            .filter(|(s, _)| *s == Severity::Warning)
            .count();
        Self {
            ok: errors == 0 && warnings == 0,
            errors,
            warnings,
            findings: findings.into_iter().map(|(_, f)| f).collect(),
        }
    }
}

/// Judges every cell `audit::audit_cells` lists: each stored map is re-checked
/// against Cal.com (nothing is written), each missing map is reported.
pub async fn audit(
    store: &dyn EventMapStore,
    client: &CalcomClient,
    tenant_id: Uuid,
) -> Result<Audit, EventMapError> {
    let tenant = tenant_calcom(store, tenant_id).await?;
    let services = store.list_services(tenant_id).await?;
    let staff = store.list_staff(tenant_id).await?;
    let maps = store.list_event_maps(tenant_id).await?;
    let performers = store.list_performers(tenant_id).await?;

    let outlines: Vec<ServiceSegments> = services
        .iter()
        .map(|s| ServiceSegments {
            service_id: s.service_id.clone(),
            segments: s.service.segments().iter().map(|g| g.key.clone()).collect(),
        })
        .collect();
    let staff_ids: Vec<StaffId> = staff.iter().map(|s| s.staff_id.clone()).collect();
    let keys: Vec<_> = maps
        .iter()
        .map(|m| {
            (
                m.service_id.clone(),
                m.segment_key.clone(),
                m.staff_id.clone(),
            )
        })
        .collect();

    let mut findings = Vec::new();
    for cell in audit::audit_cells_with_performers(&outlines, &staff_ids, &keys, &performers) {
        let map = maps.iter().find(|m| {
            m.service_id == cell.service_id
                && m.segment_key == cell.segment_key
                && m.staff_id == cell.staff_id
        });
        let segment = services
            .iter()
            .find(|s| s.service_id == cell.service_id)
            .and_then(|s| s.service.segment(&cell.segment_key));
        let member = staff.iter().find(|s| s.staff_id == cell.staff_id);
        let verdict = match (&cell.coverage, map, segment, member) {
            (Coverage::Mapped, Some(map), Some(segment), Some(member)) => {
                let recheck = match calcom::resolve(
                    client,
                    tenant.team_id,
                    map.event_type_id,
                    &host_of(member),
                    segment.duration_minutes,
                )
                .await
                {
                    Ok(Ok(resolution)) => Recheck::Resolved(resolution),
                    Ok(Err(refusal)) => Recheck::Refused(refusal),
                    Err(e) => Recheck::Unverified(e.message()),
                };
                let stored = StoredMap {
                    event_type_id: map.event_type_id,
                    bookable_event_type_id: map.bookable_event_type_id,
                    kind: ResolutionKind::parse(&map.resolution),
                };
                audit::unverified_map_verdict(
                    audit::mapped_verdict(&stored, &recheck),
                    map.unverified_reason.as_deref(),
                    &format!(
                        "/event-maps/{}/{}/{}",
                        cell.service_id, cell.segment_key, cell.staff_id
                    ),
                )
            }
            _ => audit::unmapped_verdict(&cell),
        };
        findings.push(finding(&cell, map, verdict));
    }
    Ok(Audit::from_findings(findings))
}

fn finding(cell: &AuditCell, map: Option<&EventMap>, verdict: Verdict) -> (Severity, Finding) {
    (
        verdict.severity,
        Finding {
            service_id: cell.service_id.to_string(),
            segment_key: cell.segment_key.to_string(),
            staff_id: cell.staff_id.to_string(),
            event_type_id: map.map(|m| m.event_type_id.0),
            bookable_event_type_id: map.map(|m| m.bookable_event_type_id.0),
            resolution: map.map(|m| m.resolution.clone()),
            severity: verdict.severity.as_str().to_string(),
            code: verdict.code.to_string(),
            message: verdict.message,
            fix: verdict.fix,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------------------

/// What provisioning does (or, on a dry run, would do) for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionAction {
    /// No event type with the slug exists: one is created.
    Create,
    /// One exists with the right length and host: it is reused.
    Reuse,
    /// One exists but its length, title, host or visibility drifted: it is patched.
    Update,
}

/// One segment's line of the provisioning plan or report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProvisionStep {
    pub segment_key: String,
    pub title: String,
    pub slug: String,
    pub length_in_minutes: u32,
    pub action: ProvisionAction,
    /// Known for reused and updated types, and for created ones after the run.
    pub event_type_id: Option<i64>,
    /// Set after a real run: the bookable id stored in the map.
    pub bookable_event_type_id: Option<i64>,
    /// The event type the segment's existing map points at, when provisioning replaces it
    /// with another one.
    pub replaces_event_type_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProvisionReport {
    pub service_id: String,
    pub staff_id: String,
    pub team_id: i64,
    pub dry_run: bool,
    pub steps: Vec<ProvisionStep>,
}

/// True when an existing provisioned type already matches what provisioning would create.
fn matches_plan(et: &EventType, host: &HostIdentity, length: u32, title: &str) -> bool {
    et.length_in_minutes == i64::from(length)
        && et.title == title
        && et.hidden
        && et.hosts.len() == 1
        && et.hosts.iter().all(|h| h.user_id == host.user_id.0)
}

/// Creates (or finds, by its deterministic slug) one hidden single-host team event type
/// per segment of `service_id` for `staff_id`, verifies each is bookable, and stores the
/// maps. A second run creates nothing. With `dry_run`, only reads Cal.com and returns the
/// plan.
pub async fn provision(
    store: &dyn EventMapStore,
    client: &CalcomClient,
    tenant_id: Uuid,
    service_id: &ServiceId,
    staff_id: &StaffId,
    dry_run: bool,
) -> Result<ProvisionReport, EventMapError> {
    let tenant = tenant_calcom(store, tenant_id).await?;
    let team_id = tenant.team_id.ok_or(EventMapError::NoTeam)?;
    let service = load_service(store, tenant_id, service_id).await?;
    let staff = load_staff(store, tenant_id, staff_id).await?;
    let host = host_of(&staff);
    let total = service.segments().len();

    let mut steps = Vec::with_capacity(total);
    for (index, segment) in service.segments().iter().enumerate() {
        let title = resolution::provisioned_title(
            service.name(),
            &segment.name,
            index + 1,
            total,
            &staff.name,
        );
        let slug = resolution::provisioned_slug(service_id, &segment.key, staff_id);
        let existing = client
            .list_team_event_types(team_id, Some(&slug))
            .await?
            .into_iter()
            .find(|et| et.slug == slug);
        let action = match &existing {
            None => ProvisionAction::Create,
            Some(et) if matches_plan(et, &host, segment.duration_minutes, &title) => {
                ProvisionAction::Reuse
            }
            Some(_) => ProvisionAction::Update,
        };
        let current = store
            .get_event_map(tenant_id, service_id, &segment.key, staff_id)
            .await?
            .map(|m| m.event_type_id.0);
        let planned = existing.as_ref().map(|et| et.id);
        let mut step = ProvisionStep {
            segment_key: segment.key.to_string(),
            title,
            slug,
            length_in_minutes: segment.duration_minutes,
            action,
            event_type_id: planned,
            bookable_event_type_id: None,
            replaces_event_type_id: current.filter(|id| planned != Some(*id)),
        };
        if !dry_run {
            let id = apply_step(client, team_id, &host, &step, existing.as_ref()).await?;
            step.event_type_id = Some(id);
            let subject = MapSubject {
                service_id: service_id.clone(),
                service: service.clone(),
                segment: segment.clone(),
                staff: staff.clone(),
            };
            // Verified like any other map: provisioning gets no shortcut past the rules.
            let map = put_event_map(
                store,
                client,
                tenant_id,
                Some(team_id),
                &subject,
                EventTypeId(id),
            )
            .await?;
            step.bookable_event_type_id = Some(map.bookable_event_type_id.0);
        }
        steps.push(step);
    }
    Ok(ProvisionReport {
        service_id: service_id.to_string(),
        staff_id: staff_id.to_string(),
        team_id,
        dry_run,
        steps,
    })
}

/// Carries out one step in Cal.com and returns the event type id.
async fn apply_step(
    client: &CalcomClient,
    team_id: i64,
    host: &HostIdentity,
    step: &ProvisionStep,
    existing: Option<&EventType>,
) -> Result<i64, EventMapError> {
    let hosts = vec![HostAssignment::user(host.user_id.0)];
    match (step.action, existing) {
        (ProvisionAction::Reuse, Some(et)) => Ok(et.id),
        (ProvisionAction::Update, Some(et)) => {
            let patch = UpdateTeamEventType {
                title: Some(step.title.clone()),
                length_in_minutes: Some(step.length_in_minutes),
                hosts: Some(hosts),
                hidden: Some(true),
                ..UpdateTeamEventType::default()
            };
            client
                .update_team_event_type(team_id, et.id, &patch)
                .await?;
            Ok(et.id)
        }
        _ => {
            // Collective with one host: the team's form of "this stylist only"; it books
            // the host's calendar directly, with no parent/child indirection to go wrong.
            let mut create = CreateTeamEventType::new(
                step.title.clone(),
                step.slug.clone(),
                step.length_in_minutes,
                SchedulingType::Collective,
            );
            create.hosts = hosts;
            create.hidden = Some(true);
            let created = client.create_team_event_type(team_id, &create).await?;
            created
                .into_iter()
                .find(|et| et.slug == step.slug && et.parent_event_type_id.is_none())
                .map(|et| et.id)
                .ok_or_else(|| {
                    EventMapError::Calcom(CalcomError::Decode {
                        status: 201,
                        reason: format!(
                            "Cal.com created event type {} but returned no item with that slug",
                            step.slug
                        ),
                        body: String::new(),
                    })
                })
        }
    }
}
