//! What phasebook asks Cal.com to resolve an event map: read the configured event type with
//! the tenant's key (own types first, then the tenant's team, then the host's public
//! listing), and for a managed parent list the host's event types under the parent's slug.
//! The decision itself is `phasebook_domain::resolution`; this module only turns Cal.com's
//! answers into its facts.

use calcom_client::{CalcomClient, CalcomError, EventType, SchedulingType};
use phasebook_domain::resolution::{
    Assessment, EventTypeFacts, HostFacts, HostIdentity, Refusal, Resolution, Scheduling, assess,
    pick_child_of,
};
use phasebook_domain::{CalcomUserId, EventTypeId};

/// Converts the client's event type into the domain's facts.
pub fn facts(et: &EventType) -> EventTypeFacts {
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

/// A 404, or a 403 from a team endpoint the key may not read: "not visible" for the map.
fn not_visible(err: &CalcomError) -> bool {
    matches!(
        err,
        CalcomError::NotFound { .. } | CalcomError::Unauthorized { status: 403, .. }
    )
}

/// Reads one event type as the tenant's key sees it. `Ok(None)` means Cal.com has none it
/// will show this key; an `Err` means Cal.com could not be asked (or refused the key).
///
/// Three reads, stopping at the first that finds it: `GET /v2/event-types/{id}` (only the
/// key owner's own types, FACTS 5.1), the tenant's team endpoint (team types), and the
/// host's public listing by username (another member's personal types and managed
/// children, which a team admin's key cannot read by id).
pub async fn read_event_type(
    client: &CalcomClient,
    team_id: Option<i64>,
    id: EventTypeId,
    host: &HostIdentity,
) -> Result<Option<EventType>, CalcomError> {
    Ok(read_event_type_via(client, team_id, id, host, None)
        .await?
        .map(|(et, _)| et))
}

/// Which of the three reads showed an event type. Which one works for a type does not change
/// while its owner and team stay the same, so a caller reading it again asks that read first
/// and pays one round trip instead of up to three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRoute {
    /// `GET /v2/event-types/{id}`: the key owner's own types.
    Own,
    /// The tenant's team endpoint.
    Team,
    /// The host's public listing by username.
    Listing,
}

/// [`read_event_type`], trying `first` before the usual order and naming the read that
/// found the type.
pub async fn read_event_type_via(
    client: &CalcomClient,
    team_id: Option<i64>,
    id: EventTypeId,
    host: &HostIdentity,
    first: Option<ReadRoute>,
) -> Result<Option<(EventType, ReadRoute)>, CalcomError> {
    let order = [ReadRoute::Own, ReadRoute::Team, ReadRoute::Listing];
    let routes = first
        .into_iter()
        .chain(order.into_iter().filter(|route| Some(*route) != first));
    for route in routes {
        let read = match route {
            ReadRoute::Own => client.get_event_type(id.0).await.map(Some),
            ReadRoute::Team => match team_id {
                Some(team_id) => client.get_team_event_type(team_id, id.0).await.map(Some),
                None => continue,
            },
            ReadRoute::Listing => client
                .list_event_types(&host.username, None)
                .await
                .map(|listed| listed.into_iter().find(|et| et.id == id.0)),
        };
        match read {
            Ok(Some(et)) => return Ok(Some((et, route))),
            Ok(None) => {}
            Err(e) if not_visible(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Every personal event type of `host` the key may see (hidden ones only when the key is the
/// host's own, FACTS 5): one request that answers the checks of all of the host's types at
/// once. A host Cal.com does not know lists nothing.
pub async fn host_listing(
    client: &CalcomClient,
    host: &HostIdentity,
) -> Result<Vec<EventTypeFacts>, CalcomError> {
    match client.list_event_types(&host.username, None).await {
        Ok(listed) => Ok(listed.iter().map(facts).collect()),
        Err(e) if not_visible(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Looks for `id` in the public listings of `others` (the tenant's other staff). A personal
/// type the key cannot read by id is still listed under its owner, so mapping another
/// stylist's type gets the same answer whichever of the two the key belongs to.
pub async fn listed_owner(
    client: &CalcomClient,
    id: EventTypeId,
    others: &[HostIdentity],
) -> Result<Option<CalcomUserId>, CalcomError> {
    for other in others {
        match client.list_event_types(&other.username, None).await {
            Ok(listed) if listed.iter().any(|et| et.id == id.0) => {
                return Ok(Some(other.user_id));
            }
            Ok(_) => {}
            Err(e) if not_visible(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Resolves `configured` for `host` and a segment of `segment_minutes`: the inner result is
/// the domain's decision, the outer error says Cal.com could not be asked. Nothing is
/// stored. This is the one resolution path: `PUT /event-maps`, the audit, provisioning and
/// the sync engine's re-resolution after Cal.com refuses a managed parent all call it.
pub async fn resolve(
    client: &CalcomClient,
    team_id: Option<i64>,
    configured: EventTypeId,
    host: &HostIdentity,
    segment_minutes: u32,
) -> Result<Result<Resolution, Refusal>, CalcomError> {
    let read = read_event_type(client, team_id, configured, host).await?;
    let read_facts = read.as_ref().map(facts);
    match assess(configured, read_facts.as_ref(), host, segment_minutes) {
        Assessment::Bookable(resolution) => Ok(Ok(resolution)),
        Assessment::Refused(refusal) => Ok(Err(refusal)),
        Assessment::FindChild { slug, .. } => {
            // The public listing by the host's username and the parent's slug is the one
            // read that names the child's id (FACTS 5.4).
            let listed = match client.list_event_types(&host.username, Some(&slug)).await {
                Ok(listed) => listed,
                // An unknown username lists nothing rather than failing the whole map.
                Err(e) if not_visible(&e) => Vec::new(),
                Err(e) => return Err(e),
            };
            let listed: Vec<EventTypeFacts> = listed.iter().map(facts).collect();
            let Some(parent) = read_facts.as_ref() else {
                // `assess` only asks for the lookup after reading the parent.
                return Ok(Err(Refusal::NotFound {
                    event_type_id: configured,
                }));
            };
            Ok(pick_child_of(parent, &listed, host, segment_minutes))
        }
    }
}
