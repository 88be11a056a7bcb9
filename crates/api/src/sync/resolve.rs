//! Re-resolving a segment's event map while syncing (a managed parent refused, or a
//! resync re-validating): read what Cal.com says now and let the domain's resolution rules
//! decide. The event-map module owns the same reading for `PUT /event-maps`; this is the
//! sync engine's narrow use of those rules.

use calcom_client::{CalcomClient, CalcomError, EventType, SchedulingType};
use phasebook_domain::resolution::{
    Assessment, EventTypeFacts, HostFacts, HostIdentity, Refusal, Resolution, Scheduling, assess,
    pick_child,
};
use phasebook_domain::{CalcomUserId, EventTypeId};

fn facts(et: &EventType) -> EventTypeFacts {
    EventTypeFacts {
        id: EventTypeId(et.id),
        slug: et.slug.clone(),
        title: et.title.clone(),
        length_minutes: et.length_in_minutes,
        owner: et.owner_id.map(CalcomUserId),
        team_id: et.team_id,
        parent: et.parent_event_type_id.map(EventTypeId),
        scheduling: et.scheduling_type.map(|s| match s {
            SchedulingType::Managed => Scheduling::Managed,
            SchedulingType::RoundRobin => Scheduling::RoundRobin,
            SchedulingType::Collective => Scheduling::Collective,
        }),
        hosts: et
            .hosts
            .iter()
            .map(|h| HostFacts {
                user_id: CalcomUserId(h.user_id),
                username: h.username.clone(),
            })
            .collect(),
        managed_config: et.metadata.contains_key("managedEventConfig"),
    }
}

/// Not there, or not readable with this key: either way not bookable by it.
fn invisible(err: &CalcomError) -> bool {
    matches!(
        err,
        CalcomError::NotFound { .. } | CalcomError::Unauthorized { status: 403, .. }
    )
}

/// What is bookable for `host` when `configured` is mapped. The outer error: Cal.com could
/// not be asked (try again later); the inner one: it answered and the map is not bookable.
pub async fn resolve(
    client: &CalcomClient,
    team_id: Option<i64>,
    configured: EventTypeId,
    host: &HostIdentity,
    segment_minutes: u32,
) -> Result<Result<Resolution, Refusal>, CalcomError> {
    // The personal endpoint shows only the key owner's types; team types need the team one.
    let read = match client.get_event_type(configured.0).await {
        Ok(et) => Some(et),
        Err(e) if invisible(&e) => match team_id {
            Some(team) => match client.get_team_event_type(team, configured.0).await {
                Ok(et) => Some(et),
                Err(e) if invisible(&e) => None,
                Err(e) => return Err(e),
            },
            None => None,
        },
        Err(e) => return Err(e),
    };
    let read = read.as_ref().map(facts);
    match assess(configured, read.as_ref(), host, segment_minutes) {
        Assessment::Bookable(resolution) => Ok(Ok(resolution)),
        Assessment::Refused(refusal) => Ok(Err(refusal)),
        Assessment::FindChild { parent_id, slug } => {
            let listed = match client.list_event_types(&host.username, Some(&slug)).await {
                Ok(listed) => listed,
                Err(e) if invisible(&e) => Vec::new(),
                Err(e) => return Err(e),
            };
            let listed: Vec<EventTypeFacts> = listed.iter().map(facts).collect();
            Ok(pick_child(parent_id, &slug, &listed, host, segment_minutes))
        }
    }
}
