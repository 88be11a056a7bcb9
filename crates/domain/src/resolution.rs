//! Event-type resolution: given what Cal.com says about an event type (and, for a managed
//! parent, what it lists for the host), decide whether a segment can be booked on it for
//! one staff member, and which id must actually be booked. The event-map audit that judges
//! stored maps with these answers is in [`crate::audit`].
//!
//! The callers do the reading; nothing here talks to Cal.com, so every branch is a plain
//! function of its inputs and unit-tested below.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CalcomUserId, EventTypeId, SegmentKey, ServiceId, StaffId};

/// How Cal.com schedules a team event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduling {
    Managed,
    RoundRobin,
    Collective,
}

/// One host listed on a team event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub user_id: CalcomUserId,
    pub username: Option<String>,
}

/// What Cal.com answered about one event type, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeFacts {
    pub id: EventTypeId,
    pub slug: String,
    pub title: String,
    pub length_minutes: i64,
    /// The owning user: set on personal types and on managed children.
    pub owner: Option<CalcomUserId>,
    pub team_id: Option<i64>,
    /// Set on a managed child when the answer carries it (team output does, the public
    /// listing does not — then `managed_config` is the tell).
    pub parent: Option<EventTypeId>,
    pub scheduling: Option<Scheduling>,
    pub hosts: Vec<HostFacts>,
    /// `metadata.managedEventConfig` is present: managed parents and their children.
    pub managed_config: bool,
}

impl EventTypeFacts {
    fn has_host(&self, user: CalcomUserId) -> bool {
        self.hosts.iter().any(|h| h.user_id == user)
    }
}

/// The staff member's Cal.com identity: the user id decides, the username is how the
/// child of a managed parent is looked up (FACTS 5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub user_id: CalcomUserId,
    pub username: String,
}

impl fmt::Display for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (user {})", self.username, self.user_id)
    }
}

/// How the bookable id was derived from the configured one; stored with the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionKind {
    /// A personal event type owned by the staff member: booked as configured.
    Individual,
    /// A managed parent was configured; the staff member's child is booked.
    ManagedParentChild,
    /// The staff member's managed child was configured directly.
    ManagedChild,
    /// A round-robin team type that lists the staff member as a host.
    RoundRobinHost,
    /// A collective team type that lists the staff member as a host.
    CollectiveHost,
    /// A team type without a scheduling type that lists the staff member as a host.
    TeamHost,
}

impl ResolutionKind {
    pub const ALL: [Self; 6] = [
        Self::Individual,
        Self::ManagedParentChild,
        Self::ManagedChild,
        Self::RoundRobinHost,
        Self::CollectiveHost,
        Self::TeamHost,
    ];

    /// The word stored in `event_maps.resolution` and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Individual => "individual",
            Self::ManagedParentChild => "managed_parent_child",
            Self::ManagedChild => "managed_child",
            Self::RoundRobinHost => "round_robin_host",
            Self::CollectiveHost => "collective_host",
            Self::TeamHost => "team_host",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl fmt::Display for ResolutionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positive decision: book `bookable_event_type_id` for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub event_type_id: EventTypeId,
    pub bookable_event_type_id: EventTypeId,
    pub kind: ResolutionKind,
    /// Other users are hosts too: for round robin Cal.com may give the booking to one of
    /// them, which the audit reports as a warning.
    pub other_hosts: usize,
}

/// Why an event type cannot be used for this host and segment. Each variant has a stable
/// code (the API's problem `type`), a sentence naming what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Cal.com answered 404 (or the tenant's key may not read it).
    NotFound { event_type_id: EventTypeId },
    /// The event type lasts a different time than the segment.
    LengthMismatch {
        event_type_id: EventTypeId,
        length_minutes: i64,
        segment_minutes: u32,
    },
    /// A managed parent without a child for this host: the incident this project began with.
    ManagedParentWithoutChild {
        parent_id: EventTypeId,
        parent_slug: String,
        host: HostIdentity,
        /// Cal.com lists the host on the parent, yet the host's event types hold no child
        /// under the parent's slug: the stored username is the likely culprit.
        host_listed: bool,
    },
    /// A team type (round robin, collective) that does not list this host.
    NotAHost {
        event_type_id: EventTypeId,
        scheduling: Option<Scheduling>,
        host: HostIdentity,
    },
    /// A personal type or managed child that belongs to somebody else.
    OwnedByAnotherUser {
        event_type_id: EventTypeId,
        owner: Option<CalcomUserId>,
        host: HostIdentity,
    },
}

impl Refusal {
    pub const CODES: [&'static str; 5] = [
        "event-type-not-found",
        "event-type-length-mismatch",
        "managed-parent-without-child",
        "host-not-assigned",
        "event-type-owned-by-another-user",
    ];

    /// Stable machine code; the API turns it into the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => Self::CODES[0],
            Self::LengthMismatch { .. } => Self::CODES[1],
            Self::ManagedParentWithoutChild { .. } => Self::CODES[2],
            Self::NotAHost { .. } => Self::CODES[3],
            Self::OwnedByAnotherUser { .. } => Self::CODES[4],
        }
    }

    /// Short, constant title (the problem `title`).
    pub fn title(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "Event type not found in Cal.com",
            Self::LengthMismatch { .. } => "Event type length differs from the segment",
            Self::ManagedParentWithoutChild { .. } => {
                "Managed parent event type has no child for this host"
            }
            Self::NotAHost { .. } => "Staff member is not a host of this event type",
            Self::OwnedByAnotherUser { .. } => "Event type belongs to another Cal.com user",
        }
    }

    /// What is wrong, naming the event type and the host.
    pub fn detail(&self) -> String {
        match self {
            Self::NotFound { event_type_id } => format!(
                "Cal.com has no event type {event_type_id} that the tenant's API key can read."
            ),
            Self::LengthMismatch {
                event_type_id,
                length_minutes,
                segment_minutes,
            } => format!(
                "Event type {event_type_id} lasts {length_minutes} minutes but the segment lasts \
                 {segment_minutes} minutes; the booking would block the wrong time."
            ),
            Self::ManagedParentWithoutChild {
                parent_id,
                parent_slug,
                host,
                host_listed: false,
            } => format!(
                "Event type {parent_id} ({parent_slug}) is a managed parent, which Cal.com refuses \
                 to book, and it has no child event type for {host}: hosts added outside the team \
                 event-type endpoints never get a child."
            ),
            Self::ManagedParentWithoutChild {
                parent_id,
                parent_slug,
                host,
                host_listed: true,
            } => format!(
                "Event type {parent_id} ({parent_slug}) is a managed parent, which Cal.com refuses \
                 to book; Cal.com lists user {} as its host, but the event types of username \
                 {} hold no child with slug {parent_slug}.",
                host.user_id, host.username
            ),
            Self::NotAHost {
                event_type_id,
                scheduling,
                host,
            } => format!(
                "Event type {event_type_id} is a {} team event type and {host} is not one of its \
                 hosts.",
                scheduling_word(*scheduling)
            ),
            Self::OwnedByAnotherUser {
                event_type_id,
                owner,
                host,
            } => match owner {
                Some(owner) => format!(
                    "Event type {event_type_id} belongs to Cal.com user {owner}, not to {host}."
                ),
                None => format!(
                    "Event type {event_type_id} has no owner in Cal.com's answer, so it cannot be \
                     booked for {host}."
                ),
            },
        }
    }

    /// The fix, in one sentence (two alternatives for the managed parent).
    pub fn fix(&self) -> String {
        match self {
            Self::NotFound { .. } => "Check the id in Cal.com and that the tenant's API key \
                 belongs to the owner or a team admin (a hidden personal event type is visible \
                 only to its owner's key), then map an event type it can read."
                .to_string(),
            Self::LengthMismatch {
                segment_minutes, ..
            } => format!(
                "Set the event type's length to {segment_minutes} minutes in Cal.com, or map an \
                 event type of that length."
            ),
            Self::ManagedParentWithoutChild {
                host_listed: true, ..
            } => "Set the staff member's calcom_username to their exact Cal.com username with \
                  PUT /staff/{staff_id}, then map the event type again."
                .to_string(),
            Self::ManagedParentWithoutChild { host, .. } => format!(
                "Assign {} as a host through Cal.com's team event-type endpoints so Cal.com \
                 creates the child (or run `phasebook provision`), or map an individual event \
                 type owned by that user.",
                host.username
            ),
            Self::NotAHost { host, .. } => format!(
                "Add {} as a host of the event type through Cal.com's team event-type endpoints, \
                 or map an event type that user owns.",
                host.username
            ),
            Self::OwnedByAnotherUser { host, .. } => format!(
                "Map an event type owned by {} (or a team event type listing them as host).",
                host.username
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.detail(), self.fix())
    }
}

fn scheduling_word(s: Option<Scheduling>) -> &'static str {
    match s {
        Some(Scheduling::Managed) => "managed",
        Some(Scheduling::RoundRobin) => "round-robin",
        Some(Scheduling::Collective) => "collective",
        None => "plain",
    }
}

/// The first step's answer: decided, or "look up the host's child of this parent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    Bookable(Resolution),
    /// A managed parent: list the host's event types with `slug` (FACTS 5.4) and call
    /// [`pick_child`].
    FindChild {
        parent_id: EventTypeId,
        slug: String,
    },
    Refused(Refusal),
}

/// Decides what `configured` (None: Cal.com said not found / not visible) means for `host`
/// booking a segment of `segment_minutes`.
pub fn assess(
    configured_id: EventTypeId,
    configured: Option<&EventTypeFacts>,
    host: &HostIdentity,
    segment_minutes: u32,
) -> Assessment {
    let Some(et) = configured else {
        return Assessment::Refused(Refusal::NotFound {
            event_type_id: configured_id,
        });
    };
    if let Some(refusal) = length_refusal(et, segment_minutes) {
        return Assessment::Refused(refusal);
    }
    let bookable = |kind| {
        Assessment::Bookable(Resolution {
            event_type_id: et.id,
            bookable_event_type_id: et.id,
            kind,
            other_hosts: et
                .hosts
                .iter()
                .filter(|h| h.user_id != host.user_id)
                .count(),
        })
    };
    // A child first: it carries the parent's scheduling type in some answers, yet it is
    // the bookable one. The public listing omits `parentEventTypeId`; a personal type
    // carrying `managedEventConfig` is a child all the same.
    let listed_child = et.managed_config && et.team_id.is_none() && et.owner.is_some();
    if et.parent.is_some() || listed_child {
        return if et.owner == Some(host.user_id) {
            bookable(ResolutionKind::ManagedChild)
        } else {
            owned_by_another(et, host)
        };
    }
    match et.scheduling {
        // A parent's hosts are its children's owners (FACTS 5.2): when it lists hosts and
        // this one is not among them there is no child to look for. An answer without any
        // hosts decides nothing; the lookup does.
        Some(Scheduling::Managed) if !et.hosts.is_empty() && !et.has_host(host.user_id) => {
            Assessment::Refused(Refusal::ManagedParentWithoutChild {
                parent_id: et.id,
                parent_slug: et.slug.clone(),
                host: host.clone(),
                host_listed: false,
            })
        }
        Some(Scheduling::Managed) => Assessment::FindChild {
            parent_id: et.id,
            slug: et.slug.clone(),
        },
        Some(s @ (Scheduling::RoundRobin | Scheduling::Collective)) => {
            if et.has_host(host.user_id) {
                bookable(if s == Scheduling::RoundRobin {
                    ResolutionKind::RoundRobinHost
                } else {
                    ResolutionKind::CollectiveHost
                })
            } else {
                Assessment::Refused(Refusal::NotAHost {
                    event_type_id: et.id,
                    scheduling: Some(s),
                    host: host.clone(),
                })
            }
        }
        None if et.team_id.is_some() => {
            if et.has_host(host.user_id) {
                bookable(ResolutionKind::TeamHost)
            } else {
                Assessment::Refused(Refusal::NotAHost {
                    event_type_id: et.id,
                    scheduling: None,
                    host: host.clone(),
                })
            }
        }
        None => {
            if et.owner == Some(host.user_id) {
                bookable(ResolutionKind::Individual)
            } else {
                owned_by_another(et, host)
            }
        }
    }
}

fn owned_by_another(et: &EventTypeFacts, host: &HostIdentity) -> Assessment {
    Assessment::Refused(Refusal::OwnedByAnotherUser {
        event_type_id: et.id,
        owner: et.owner,
        host: host.clone(),
    })
}

fn length_refusal(et: &EventTypeFacts, segment_minutes: u32) -> Option<Refusal> {
    (et.length_minutes != i64::from(segment_minutes)).then_some(Refusal::LengthMismatch {
        event_type_id: et.id,
        length_minutes: et.length_minutes,
        segment_minutes,
    })
}

/// Second step for a managed parent: among the host's event types listed under the
/// parent's slug, the child is the one the host owns that is not the parent and is marked
/// as managed (a personal type with the same slug is not a child).
pub fn pick_child(
    parent_id: EventTypeId,
    parent_slug: &str,
    listed: &[EventTypeFacts],
    host: &HostIdentity,
    segment_minutes: u32,
) -> Result<Resolution, Refusal> {
    let child = listed.iter().find(|et| {
        et.id != parent_id
            && et.owner == Some(host.user_id)
            && match et.parent {
                Some(p) => p == parent_id,
                None => et.managed_config,
            }
    });
    let Some(child) = child else {
        return Err(Refusal::ManagedParentWithoutChild {
            parent_id,
            parent_slug: parent_slug.to_string(),
            host: host.clone(),
            host_listed: false,
        });
    };
    if let Some(refusal) = length_refusal(child, segment_minutes) {
        return Err(refusal);
    }
    Ok(Resolution {
        event_type_id: parent_id,
        bookable_event_type_id: child.id,
        kind: ResolutionKind::ManagedParentChild,
        other_hosts: 0,
    })
}

/// [`pick_child`] with the parent as Cal.com described it: when no child turns up although
/// the parent lists the host, the refusal says so (the username used for the lookup is then
/// the likely mistake, not the host assignment).
pub fn pick_child_of(
    parent: &EventTypeFacts,
    listed: &[EventTypeFacts],
    host: &HostIdentity,
    segment_minutes: u32,
) -> Result<Resolution, Refusal> {
    pick_child(parent.id, &parent.slug, listed, host, segment_minutes).map_err(|refusal| {
        match refusal {
            Refusal::ManagedParentWithoutChild {
                parent_id,
                parent_slug,
                host,
                ..
            } => Refusal::ManagedParentWithoutChild {
                host_listed: parent.has_host(host.user_id),
                parent_id,
                parent_slug,
                host,
            },
            other => other,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Provisioning names
// ---------------------------------------------------------------------------------------

/// The title of a provisioned event type: "Service: Segment (n of N) - Staff".
pub fn provisioned_title(
    service_name: &str,
    segment_name: &str,
    position: usize,
    total: usize,
    staff_name: &str,
) -> String {
    format!("{service_name}: {segment_name} ({position} of {total}) - {staff_name}")
}

/// The deterministic slug of a provisioned event type, so a second run finds what the
/// first created. Cal.com slugs are lower-case letters, digits and dashes; since folding
/// to that alphabet can make two ids meet (`Colour_Cut`, `colour-cut`), a short FNV-1a
/// hash of the exact ids is appended.
pub fn provisioned_slug(service: &ServiceId, segment: &SegmentKey, staff: &StaffId) -> String {
    let raw = format!("pb-{service}-{segment}-{staff}");
    let mut slug = String::with_capacity(raw.len() + 9);
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && slug.ends_with('-')) {
            slug.push(c);
        }
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in format!("{service}\u{0}{segment}\u{0}{staff}").bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    format!("{}-{hash:08x}", slug.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::test_ids::{key, sid, staff};

    const ANNA: CalcomUserId = CalcomUserId(11);
    const BEN: CalcomUserId = CalcomUserId(12);

    fn anna() -> HostIdentity {
        HostIdentity {
            user_id: ANNA,
            username: "anna".into(),
        }
    }

    fn host(id: CalcomUserId) -> HostFacts {
        HostFacts {
            user_id: id,
            username: None,
        }
    }

    fn personal(id: i64, owner: CalcomUserId, length: i64) -> EventTypeFacts {
        EventTypeFacts {
            id: EventTypeId(id),
            slug: format!("type-{id}"),
            title: "Colour".into(),
            length_minutes: length,
            owner: Some(owner),
            team_id: None,
            parent: None,
            scheduling: None,
            hosts: vec![],
            managed_config: false,
        }
    }

    fn team(id: i64, scheduling: Option<Scheduling>, hosts: &[CalcomUserId]) -> EventTypeFacts {
        EventTypeFacts {
            team_id: Some(7),
            owner: None,
            scheduling,
            hosts: hosts.iter().copied().map(host).collect(),
            managed_config: scheduling == Some(Scheduling::Managed),
            ..personal(id, ANNA, 30)
        }
    }

    fn child_listed(id: i64, owner: CalcomUserId, parent: Option<i64>) -> EventTypeFacts {
        EventTypeFacts {
            slug: "type-100".into(),
            parent: parent.map(EventTypeId),
            managed_config: true,
            ..personal(id, owner, 30)
        }
    }

    fn refused(a: Assessment) -> Refusal {
        match a {
            Assessment::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn bookable(a: Assessment) -> Resolution {
        match a {
            Assessment::Bookable(r) => r,
            other => panic!("expected bookable, got {other:?}"),
        }
    }

    #[test]
    fn own_individual_type_is_bookable_as_is() {
        let et = personal(5, ANNA, 30);
        let r = bookable(assess(EventTypeId(5), Some(&et), &anna(), 30));
        assert_eq!(r.bookable_event_type_id, EventTypeId(5));
        assert_eq!(r.kind, ResolutionKind::Individual);
    }

    #[test]
    fn someone_elses_individual_type_is_refused() {
        let et = personal(5, BEN, 30);
        let r = refused(assess(EventTypeId(5), Some(&et), &anna(), 30));
        assert_eq!(r.code(), "event-type-owned-by-another-user");
        assert!(r.detail().contains("user 12"), "{}", r.detail());
        assert!(r.fix().contains("anna"));
    }

    #[test]
    fn individual_type_without_owner_is_refused() {
        let mut et = personal(5, BEN, 30);
        et.owner = None;
        let r = refused(assess(EventTypeId(5), Some(&et), &anna(), 30));
        assert!(r.detail().contains("no owner"));
    }

    #[test]
    fn not_found_is_a_refusal_not_an_error() {
        let r = refused(assess(EventTypeId(99), None, &anna(), 30));
        assert_eq!(
            r,
            Refusal::NotFound {
                event_type_id: EventTypeId(99)
            }
        );
        assert_eq!(r.code(), "event-type-not-found");
        assert!(r.detail().contains("99"));
    }

    #[test]
    fn length_mismatch_names_both_numbers() {
        let et = personal(5, ANNA, 45);
        let r = refused(assess(EventTypeId(5), Some(&et), &anna(), 30));
        assert_eq!(r.code(), "event-type-length-mismatch");
        assert!(r.detail().contains("45 minutes"));
        assert!(r.detail().contains("30 minutes"));
        assert!(r.fix().contains("30 minutes"));
    }

    #[test]
    fn managed_parent_asks_for_the_child_lookup() {
        let et = team(100, Some(Scheduling::Managed), &[ANNA]);
        assert_eq!(
            assess(EventTypeId(100), Some(&et), &anna(), 30),
            Assessment::FindChild {
                parent_id: EventTypeId(100),
                slug: "type-100".into()
            }
        );
    }

    #[test]
    fn managed_parent_not_listing_the_host_is_refused_without_a_lookup() {
        let et = team(100, Some(Scheduling::Managed), &[BEN]);
        let r = refused(assess(EventTypeId(100), Some(&et), &anna(), 30));
        assert_eq!(r.code(), "managed-parent-without-child");
        // No hosts in the answer at all: the lookup decides.
        let bare = team(100, Some(Scheduling::Managed), &[]);
        assert!(matches!(
            assess(EventTypeId(100), Some(&bare), &anna(), 30),
            Assessment::FindChild { .. }
        ));
    }

    #[test]
    fn managed_parent_length_is_checked_before_the_lookup() {
        let mut et = team(100, Some(Scheduling::Managed), &[ANNA]);
        et.length_minutes = 60;
        assert_eq!(
            refused(assess(EventTypeId(100), Some(&et), &anna(), 30)).code(),
            "event-type-length-mismatch"
        );
    }

    #[test]
    fn child_from_the_public_listing_is_picked() {
        // The public listing carries no parent id; managedEventConfig is the tell.
        let listed = [child_listed(101, ANNA, None)];
        let r = pick_child(EventTypeId(100), "type-100", &listed, &anna(), 30).expect("child");
        assert_eq!(r.event_type_id, EventTypeId(100));
        assert_eq!(r.bookable_event_type_id, EventTypeId(101));
        assert_eq!(r.kind, ResolutionKind::ManagedParentChild);
    }

    #[test]
    fn child_with_explicit_parent_is_picked_and_other_parents_are_not() {
        let listed = [
            child_listed(102, ANNA, Some(555)),
            child_listed(101, ANNA, Some(100)),
        ];
        let r = pick_child(EventTypeId(100), "type-100", &listed, &anna(), 30).expect("child");
        assert_eq!(r.bookable_event_type_id, EventTypeId(101));
        let only_other = [child_listed(102, ANNA, Some(555))];
        assert!(pick_child(EventTypeId(100), "type-100", &only_other, &anna(), 30).is_err());
    }

    #[test]
    fn no_child_names_parent_user_and_both_fixes() {
        // What the incident looked like: the listing returns the parent itself, another
        // host's child, and the user's own personal type with the same slug.
        let mut parent = team(100, Some(Scheduling::Managed), &[BEN]);
        parent.owner = Some(BEN);
        let listed = [
            parent,
            child_listed(101, BEN, Some(100)),
            personal(103, ANNA, 30),
        ];
        let r = pick_child(EventTypeId(100), "colour-a", &listed, &anna(), 30).expect_err("none");
        assert_eq!(r.code(), "managed-parent-without-child");
        let detail = r.detail();
        assert!(
            detail.contains("100") && detail.contains("colour-a"),
            "{detail}"
        );
        assert!(detail.contains("anna (user 11)"), "{detail}");
        let fix = r.fix();
        assert!(fix.contains("team event-type endpoints"), "{fix}");
        assert!(fix.contains("individual event type"), "{fix}");
    }

    #[test]
    fn no_child_although_the_parent_lists_the_host_points_at_the_username() {
        let parent = team(100, Some(Scheduling::Managed), &[ANNA]);
        let r = pick_child_of(&parent, &[], &anna(), 30).expect_err("no child");
        assert_eq!(r.code(), "managed-parent-without-child");
        assert!(r.detail().contains("user 11") && r.detail().contains("anna"));
        assert!(r.fix().contains("calcom_username"), "{}", r.fix());
        // Not listed: the incident's explanation and both fixes.
        let incident = pick_child_of(
            &team(100, Some(Scheduling::Managed), &[BEN]),
            &[],
            &anna(),
            30,
        )
        .expect_err("no child");
        assert!(incident.fix().contains("team event-type endpoints"));
    }

    #[test]
    fn child_with_a_different_length_is_refused() {
        let mut c = child_listed(101, ANNA, None);
        c.length_minutes = 40;
        let r = pick_child(EventTypeId(100), "type-100", &[c], &anna(), 30).expect_err("len");
        assert_eq!(r.code(), "event-type-length-mismatch");
        assert!(r.detail().contains("101"));
    }

    #[test]
    fn own_child_configured_directly_is_bookable() {
        let c = child_listed(101, ANNA, Some(100));
        let r = bookable(assess(EventTypeId(101), Some(&c), &anna(), 30));
        assert_eq!(r.kind, ResolutionKind::ManagedChild);
        assert_eq!(r.bookable_event_type_id, EventTypeId(101));
    }

    #[test]
    fn own_child_read_from_the_public_listing_is_a_managed_child() {
        let et = child_listed(101, ANNA, None);
        let r = bookable(assess(EventTypeId(101), Some(&et), &anna(), 30));
        assert_eq!(r.kind, ResolutionKind::ManagedChild);
        assert_eq!(r.bookable_event_type_id, EventTypeId(101));
    }

    #[test]
    fn another_hosts_child_is_refused() {
        let c = child_listed(101, BEN, Some(100));
        assert_eq!(
            refused(assess(EventTypeId(101), Some(&c), &anna(), 30)).code(),
            "event-type-owned-by-another-user"
        );
    }

    #[test]
    fn round_robin_and_collective_need_the_user_as_host() {
        for (s, kind) in [
            (Scheduling::RoundRobin, ResolutionKind::RoundRobinHost),
            (Scheduling::Collective, ResolutionKind::CollectiveHost),
        ] {
            let with = team(200, Some(s), &[ANNA, BEN]);
            let r = bookable(assess(EventTypeId(200), Some(&with), &anna(), 30));
            assert_eq!(r.kind, kind);
            assert_eq!(r.bookable_event_type_id, EventTypeId(200));
            assert_eq!(r.other_hosts, 1);

            let without = team(200, Some(s), &[BEN]);
            let refusal = refused(assess(EventTypeId(200), Some(&without), &anna(), 30));
            assert_eq!(refusal.code(), "host-not-assigned");
            assert!(refusal.fix().contains("anna"));
        }
        let rr = refused(assess(
            EventTypeId(200),
            Some(&team(200, Some(Scheduling::RoundRobin), &[])),
            &anna(),
            30,
        ));
        assert!(rr.detail().contains("round-robin"));
    }

    #[test]
    fn team_type_without_scheduling_needs_the_user_as_host() {
        let with = team(300, None, &[ANNA]);
        assert_eq!(
            bookable(assess(EventTypeId(300), Some(&with), &anna(), 30)).kind,
            ResolutionKind::TeamHost
        );
        let without = team(300, None, &[BEN]);
        assert!(
            refused(assess(EventTypeId(300), Some(&without), &anna(), 30))
                .detail()
                .contains("plain")
        );
    }

    #[test]
    fn refusal_codes_are_distinct_and_stable() {
        let codes: BTreeSet<_> = Refusal::CODES.iter().collect();
        assert_eq!(codes.len(), Refusal::CODES.len());
        let r = Refusal::NotFound {
            event_type_id: EventTypeId(1),
        };
        assert!(!r.title().is_empty());
        assert!(r.to_string().contains(&r.fix()));
    }

    #[test]
    fn resolution_kind_round_trips_through_its_word() {
        for k in ResolutionKind::ALL {
            assert_eq!(ResolutionKind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(ResolutionKind::parse("parent"), None);
    }

    // --- provisioning names ------------------------------------------------------------

    #[test]
    fn provisioned_title_follows_the_pattern() {
        assert_eq!(
            provisioned_title("Colour", "Wash", 2, 4, "Anna"),
            "Colour: Wash (2 of 4) - Anna"
        );
    }

    #[test]
    fn provisioned_slug_is_deterministic_and_cal_safe() {
        let s = provisioned_slug(&sid("Colour_Cut"), &key("A.1"), &staff("anna--b"));
        assert!(s.starts_with("pb-colour-cut-a-1-anna-b-"), "{s}");
        assert_eq!(s.len(), "pb-colour-cut-a-1-anna-b-".len() + 8);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(
            s,
            provisioned_slug(&sid("colour-cut"), &key("A.1"), &staff("anna--b"))
        );
        assert_eq!(
            s,
            provisioned_slug(&sid("Colour_Cut"), &key("A.1"), &staff("anna--b"))
        );
        assert_ne!(
            s,
            provisioned_slug(&sid("Colour_Cut"), &key("B"), &staff("anna--b"))
        );
    }
}
