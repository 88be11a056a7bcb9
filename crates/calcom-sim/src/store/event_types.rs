//! Event types as Cal.com keeps them: seeding, personal and team create/update, and the
//! managed parent's children kept in step with its assignees. Separate from bookings
//! because these rules decide what may be booked, not whether a time is free.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::Data;
use crate::error::{CalError, SimError};
use crate::model::{
    BookingWindow, EventTypeRecord, HostRecord, HostView, SchedulingType, TeamRecord,
};
use crate::seed::SeedEventType;

/// A validated team event type create/update body.
#[derive(Debug, Clone, Default)]
pub(crate) struct TeamEventTypeInput {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub length_in_minutes: Option<i64>,
    pub scheduling_type: Option<SchedulingType>,
    pub hosts: Option<Vec<HostRecord>>,
    pub assign_all_team_members: Option<bool>,
    pub description: Option<String>,
    pub hidden: Option<bool>,
    pub minimum_booking_notice: Option<i64>,
    pub before_event_buffer: Option<i64>,
    pub after_event_buffer: Option<i64>,
    pub slot_interval: Option<i64>,
    /// `Some(None)`: `{"disabled": true}`, back to unlimited.
    pub booking_window: Option<Option<BookingWindow>>,
}

fn default_managed_metadata() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("managedEventConfig".into(), json!({}));
    m
}

impl Data {
    fn next_event_type_id(&self) -> i64 {
        self.event_types.keys().next_back().copied().unwrap_or(0) + 1
    }

    pub(super) fn add_event_type(&mut self, et: SeedEventType) -> Result<(), SimError> {
        if self.event_types.contains_key(&et.id) {
            return Err(SimError::Duplicate {
                what: "event type",
                id: et.id,
            });
        }
        let scheduling =
            match &et.scheduling_type {
                Some(raw) => Some(SchedulingType::parse(raw).ok_or_else(|| {
                    SimError::InvalidSeed(format!("unknown scheduling type {raw}"))
                })?),
                None => None,
            };
        match (et.owner_id, et.team_id) {
            (Some(owner), None) if self.users.contains_key(&owner) => {}
            (None, Some(team)) if self.teams.contains_key(&team) && scheduling.is_some() => {}
            _ => {
                return Err(SimError::InvalidSeed(format!(
                    "event type {}: needs an existing ownerId, or a teamId with a schedulingType",
                    et.id
                )));
            }
        }
        let managed = scheduling == Some(SchedulingType::Managed);
        let metadata = et.metadata.clone().unwrap_or_else(|| {
            if managed {
                default_managed_metadata()
            } else {
                Map::new()
            }
        });
        let record = EventTypeRecord {
            id: et.id,
            slug: et.slug.clone(),
            title: et.title.clone(),
            description: et.description.clone().unwrap_or_default(),
            length_in_minutes: et.length_in_minutes,
            owner_id: et.owner_id,
            team_id: et.team_id,
            parent_event_type_id: None,
            scheduling_type: scheduling,
            hosts: if managed {
                Vec::new()
            } else {
                et.hosts
                    .iter()
                    .map(|h| HostRecord {
                        user_id: h.user_id,
                        mandatory: h.mandatory,
                        priority: h.priority.clone(),
                    })
                    .collect()
            },
            assign_all_team_members: et.assign_all_team_members,
            hidden: et.hidden,
            metadata,
            slot_interval: et.slot_interval,
            minimum_booking_notice: et.minimum_booking_notice.unwrap_or(0),
            before_event_buffer: 0,
            after_event_buffer: 0,
            booking_window: et.booking_window.clone(),
        };
        for child in &et.children {
            if self.event_types.contains_key(&child.id) || child.id == et.id {
                return Err(SimError::Duplicate {
                    what: "event type",
                    id: child.id,
                });
            }
            if !self.users.contains_key(&child.owner_id) {
                return Err(SimError::Unknown {
                    what: "user",
                    id: child.owner_id,
                });
            }
        }
        for child in et.children {
            let c = child_of(&record, child.id, child.owner_id);
            self.event_types.insert(child.id, c);
        }
        self.event_types.insert(et.id, record);
        Ok(())
    }

    pub(crate) fn children_of(&self, parent_id: i64) -> Vec<&EventTypeRecord> {
        self.event_types
            .values()
            .filter(|e| e.parent_event_type_id == Some(parent_id))
            .collect()
    }

    pub(crate) fn host_views(&self, et: &EventTypeRecord) -> Vec<HostView> {
        let view = |user_id: i64, mandatory: Option<bool>, priority: Option<String>| {
            let user = self.users.get(&user_id);
            HostView {
                user_id,
                name: user.map(|u| u.name.clone()).unwrap_or_default(),
                username: user.map(|u| u.username.clone()).unwrap_or_default(),
                mandatory,
                priority,
            }
        };
        if et.is_managed_parent() {
            self.children_of(et.id)
                .iter()
                .filter_map(|c| c.owner_id)
                .map(|uid| view(uid, None, None))
                .collect()
        } else {
            et.hosts
                .iter()
                .map(|h| view(h.user_id, h.mandatory, h.priority.clone()))
                .collect()
        }
    }

    pub(crate) fn team_output(&self, et: &EventTypeRecord) -> Value {
        let team = et.team_id.and_then(|t| self.teams.get(&t));
        crate::model::team_event_type_output(et, &self.host_views(et), team)
    }

    pub(crate) fn personal_output(&self, et: &EventTypeRecord) -> Value {
        let username = et
            .owner_id
            .and_then(|o| self.users.get(&o))
            .map(|u| u.username.as_str())
            .unwrap_or("");
        crate::model::personal_event_type_output(et, username)
    }

    fn team_admin_check(&self, team_id: i64, caller: i64) -> Result<&TeamRecord, CalError> {
        let team = self
            .teams
            .get(&team_id)
            .ok_or_else(|| CalError::not_found(format!("Team with id={team_id} not found")))?;
        if !team.is_admin(caller) {
            return Err(CalError::forbidden(format!(
                "RolesGuard - user with id={caller} does not have the required role TEAM_ADMIN in team with id={team_id}."
            )));
        }
        Ok(team)
    }

    fn validate_hosts(&self, team: &TeamRecord, hosts: &[HostRecord]) -> Result<(), CalError> {
        let invalid: Vec<String> = hosts
            .iter()
            .filter(|h| !team.members.contains_key(&h.user_id))
            .map(|h| h.user_id.to_string())
            .collect();
        if invalid.is_empty() {
            Ok(())
        } else {
            Err(CalError::not_found(format!(
                "Invalid hosts: {} are not members of team with id {}.",
                invalid.join(", "),
                team.id
            )))
        }
    }

    /// `POST /v2/teams/{teamId}/event-types`: the parent plus, for a managed type with
    /// hosts or `assignAllTeamMembers`, one child per host.
    pub(crate) fn create_team_event_type(
        &mut self,
        team_id: i64,
        caller: i64,
        input: TeamEventTypeInput,
    ) -> Result<Vec<i64>, CalError> {
        let team = self.team_admin_check(team_id, caller)?.clone();
        let (Some(title), Some(slug), Some(length), Some(scheduling)) = (
            input.title.clone(),
            input.slug.clone(),
            input.length_in_minutes,
            input.scheduling_type,
        ) else {
            return Err(CalError::bad_request(
                "title, slug, lengthInMinutes and schedulingType are required",
            ));
        };
        if let Some(hosts) = &input.hosts {
            self.validate_hosts(&team, hosts)?;
        }
        if self
            .event_types
            .values()
            .any(|e| e.team_id == Some(team_id) && e.slug == slug)
        {
            return Err(CalError::bad_request(format!(
                "Team with id={team_id} already has event type with slug={slug}"
            )));
        }
        let id = self.next_event_type_id();
        let managed = scheduling == SchedulingType::Managed;
        let assign_all = input.assign_all_team_members.unwrap_or(false);
        let record = EventTypeRecord {
            id,
            slug,
            title,
            description: input.description.clone().unwrap_or_default(),
            length_in_minutes: length,
            owner_id: None,
            team_id: Some(team_id),
            parent_event_type_id: None,
            scheduling_type: Some(scheduling),
            hosts: if managed {
                Vec::new()
            } else if assign_all {
                all_members(&team)
            } else {
                input.hosts.clone().unwrap_or_default()
            },
            assign_all_team_members: assign_all,
            hidden: input.hidden.unwrap_or(false),
            // The v2 create path injects `managedEventConfig: {}` (FACTS 5.2).
            metadata: if managed {
                default_managed_metadata()
            } else {
                Map::new()
            },
            slot_interval: input.slot_interval,
            minimum_booking_notice: input.minimum_booking_notice.unwrap_or(0),
            before_event_buffer: input.before_event_buffer.unwrap_or(0),
            after_event_buffer: input.after_event_buffer.unwrap_or(0),
            booking_window: input.booking_window.clone().flatten(),
        };
        self.event_types.insert(id, record);
        let mut ids = vec![id];
        if managed {
            let wanted = if assign_all {
                Some(team.members.keys().copied().collect())
            } else {
                input
                    .hosts
                    .as_ref()
                    .map(|h| h.iter().map(|h| h.user_id).collect())
            };
            ids.extend(self.sync_children(id, wanted));
        }
        Ok(ids)
    }

    /// `PATCH /v2/teams/{teamId}/event-types/{id}`: `hosts` replaces the set of children
    /// (new hosts get one, dropped hosts lose theirs); without it existing children are
    /// updated.
    pub(crate) fn update_team_event_type(
        &mut self,
        team_id: i64,
        id: i64,
        caller: i64,
        input: TeamEventTypeInput,
    ) -> Result<Vec<i64>, CalError> {
        let team = self.team_admin_check(team_id, caller)?.clone();
        let not_found = || CalError::not_found(format!("Event type with id={id} not found"));
        let et = self.event_types.get(&id).ok_or_else(not_found)?;
        if et.team_id != Some(team_id) {
            return Err(not_found());
        }
        if let Some(hosts) = &input.hosts {
            self.validate_hosts(&team, hosts)?;
        }
        let managed = et.is_managed_parent();
        let assign_all = input.assign_all_team_members;
        if let Some(et) = self.event_types.get_mut(&id) {
            if let Some(v) = &input.title {
                et.title = v.clone();
            }
            if let Some(v) = &input.slug {
                et.slug = v.clone();
            }
            if let Some(v) = input.length_in_minutes {
                et.length_in_minutes = v;
            }
            if let Some(v) = &input.description {
                et.description = v.clone();
            }
            if let Some(v) = input.hidden {
                et.hidden = v;
            }
            if let Some(v) = input.minimum_booking_notice {
                et.minimum_booking_notice = v;
            }
            if let Some(v) = input.before_event_buffer {
                et.before_event_buffer = v;
            }
            if let Some(v) = input.after_event_buffer {
                et.after_event_buffer = v;
            }
            if input.slot_interval.is_some() {
                et.slot_interval = input.slot_interval;
            }
            if let Some(w) = &input.booking_window {
                et.booking_window = w.clone();
            }
            if let Some(v) = assign_all {
                et.assign_all_team_members = v;
            }
            if !managed {
                if assign_all == Some(true) {
                    et.hosts = all_members(&team);
                } else if let Some(hosts) = &input.hosts {
                    et.hosts = hosts.clone();
                }
            }
        }
        let mut ids = vec![id];
        if managed {
            let wanted = if assign_all == Some(true) {
                Some(team.members.keys().copied().collect())
            } else {
                input
                    .hosts
                    .as_ref()
                    .map(|h| h.iter().map(|h| h.user_id).collect())
            };
            ids.extend(self.sync_children(id, wanted));
        }
        Ok(ids)
    }

    /// Cal.com's core updater for managed children. Returns the children's ids afterwards.
    fn sync_children(&mut self, parent_id: i64, wanted: Option<Vec<i64>>) -> Vec<i64> {
        let Some(parent) = self.event_types.get(&parent_id).cloned() else {
            return Vec::new();
        };
        // Without an object `managedEventConfig` the updater silently does nothing
        // (FACTS 5.3), e.g. the `[]` a PHP client writes for an empty object.
        if !parent
            .metadata
            .get("managedEventConfig")
            .is_some_and(Value::is_object)
        {
            return self.children_of(parent_id).iter().map(|c| c.id).collect();
        }
        let existing: BTreeMap<i64, i64> = self
            .children_of(parent_id)
            .iter()
            .filter_map(|c| c.owner_id.map(|o| (o, c.id)))
            .collect();
        let wanted: Vec<i64> = match wanted {
            Some(list) => {
                let mut seen = HashSet::new();
                list.into_iter().filter(|u| seen.insert(*u)).collect()
            }
            None => existing.keys().copied().collect(),
        };
        for (owner, child_id) in &existing {
            if !wanted.contains(owner) {
                self.delete_event_type(*child_id);
            }
        }
        let mut ids = Vec::new();
        for owner in wanted {
            if let Some(child_id) = existing.get(&owner) {
                let refreshed = child_of(&parent, *child_id, owner);
                self.event_types.insert(*child_id, refreshed);
                ids.push(*child_id);
                continue;
            }
            // A member's personal type with the same slug is deleted to make room.
            let clash: Vec<i64> = self
                .event_types
                .values()
                .filter(|e| {
                    e.owner_id == Some(owner) && e.slug == parent.slug && e.team_id.is_none()
                })
                .map(|e| e.id)
                .collect();
            for id in clash {
                self.delete_event_type(id);
            }
            let child_id = self.next_event_type_id();
            self.event_types
                .insert(child_id, child_of(&parent, child_id, owner));
            ids.push(child_id);
        }
        ids
    }

    /// Bookings keep existing with `eventTypeId` nulled (FACTS 5.3).
    fn delete_event_type(&mut self, id: i64) {
        self.event_types.remove(&id);
        if let Some(booking_ids) = self.by_event_type.remove(&id) {
            for bid in booking_ids {
                if let Some(b) = self.bookings.get_mut(&bid) {
                    b.event_type_id = None;
                }
            }
        }
    }

    /// `PATCH /v2/event-types/{id}`: personal types of the caller only. Unknown fields
    /// (such as `hosts`) are stripped by Cal.com's global pipe, so they change nothing.
    pub(crate) fn update_personal_event_type(
        &mut self,
        id: i64,
        caller: i64,
        body: &Map<String, Value>,
    ) -> Result<(), CalError> {
        let et = self
            .event_types
            .get_mut(&id)
            .filter(|e| e.owner_id == Some(caller) && e.team_id.is_none())
            .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
        if let Some(v) = body.get("title").and_then(Value::as_str) {
            et.title = v.to_owned();
        }
        if let Some(v) = body.get("slug").and_then(Value::as_str) {
            et.slug = v.to_owned();
        }
        if let Some(v) = body.get("description").and_then(Value::as_str) {
            et.description = v.to_owned();
        }
        if let Some(v) = body.get("lengthInMinutes").and_then(Value::as_i64) {
            if v < 1 {
                return Err(CalError::bad_request(
                    "lengthInMinutes must not be less than 1",
                ));
            }
            et.length_in_minutes = v;
        }
        if let Some(v) = body.get("hidden").and_then(Value::as_bool) {
            et.hidden = v;
        }
        if let Some(v) = body.get("minimumBookingNotice").and_then(Value::as_i64) {
            et.minimum_booking_notice = v;
        }
        if let Some(v) = body.get("slotInterval").and_then(Value::as_i64) {
            et.slot_interval = Some(v);
        }
        if let Some(w) = parse_booking_window(body.get("bookingWindow"))? {
            et.booking_window = w;
        }
        Ok(())
    }
}

fn all_members(team: &TeamRecord) -> Vec<HostRecord> {
    team.members
        .keys()
        .map(|&user_id| HostRecord {
            user_id,
            mandatory: None,
            priority: None,
        })
        .collect()
}

fn child_of(parent: &EventTypeRecord, id: i64, owner: i64) -> EventTypeRecord {
    EventTypeRecord {
        id,
        slug: parent.slug.clone(),
        title: parent.title.clone(),
        description: parent.description.clone(),
        length_in_minutes: parent.length_in_minutes,
        owner_id: Some(owner),
        team_id: None,
        parent_event_type_id: Some(parent.id),
        scheduling_type: Some(SchedulingType::Managed),
        hosts: Vec::new(),
        assign_all_team_members: false,
        hidden: false,
        metadata: parent.metadata.clone(),
        slot_interval: parent.slot_interval,
        minimum_booking_notice: parent.minimum_booking_notice,
        before_event_buffer: parent.before_event_buffer,
        after_event_buffer: parent.after_event_buffer,
        booking_window: parent.booking_window.clone(),
    }
}

/// Reads `bookingWindow` of an event type create/update body: absent → `None`,
/// `{"disabled": true}` → `Some(None)`, a window → `Some(Some(w))`.
pub(crate) fn parse_booking_window(
    raw: Option<&Value>,
) -> Result<Option<Option<BookingWindow>>, CalError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(v) if v.get("disabled").and_then(Value::as_bool) == Some(true) => Ok(Some(None)),
        Some(v) => serde_json::from_value(v.clone())
            .map(|w| Some(Some(w)))
            .map_err(|e| {
                CalError::bad_request(format!(
                    "bookingWindow must be a businessDays, calendarDays or range window or {{disabled: true}}: {e}"
                ))
            }),
    }
}
