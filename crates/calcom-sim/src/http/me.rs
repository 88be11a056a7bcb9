//! Who an API key is: `GET /v2/me` and the team memberships of `/v2/teams/{teamId}/memberships`.
//! Apart from event types because phasebook reads these to check a staff member's Cal.com
//! user and role, not to book.

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiResult, parse_id, required_user, success};
use crate::Sim;
use crate::error::{CalError, INVALID_KEY};

pub(super) fn router() -> Router<Sim> {
    Router::new().route("/v2/me", get(get_me)).route(
        "/v2/teams/{team_id}/memberships",
        get(list_team_memberships),
    )
}

/// `GET /v2/me`: the user the API key acts as.
async fn get_me(AxState(sim): AxState<Sim>, headers: HeaderMap) -> ApiResult {
    let user = required_user(&sim, &headers)?;
    sim.with_data(|d| {
        d.users.get(&user).map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "name": u.name,
                "email": u.email,
                "timeZone": u.time_zone,
            })
        })
    })
    .map(|data| success(StatusCode::OK, data))
    .ok_or_else(|| CalError::unauthorized(INVALID_KEY))
}

/// `GET /v2/teams/{teamId}/memberships` (`TeamMembershipOutput` items): readable by the
/// team's members only. A membership id is not stored by the emulator; it is derived from
/// the team and user ids, stable across calls.
async fn list_team_memberships(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(team_id): Path<String>,
) -> ApiResult {
    let user = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    sim.with_data(|d| {
        let team = d
            .teams
            .get(&team_id)
            .ok_or_else(|| CalError::not_found(format!("Team with id {team_id} not found")))?;
        if !team.members.contains_key(&user) {
            return Err(CalError::forbidden(
                "TeamRolesGuard - User is not a member of the team",
            ));
        }
        let items: Vec<Value> = team
            .members
            .iter()
            .map(|(member, role)| {
                let u = d.users.get(member);
                json!({
                    "id": team_id * 1_000_000 + member,
                    "userId": member,
                    "teamId": team_id,
                    "accepted": true,
                    "role": role,
                    "disableImpersonation": false,
                    "user": {
                        "username": u.map(|u| u.username.clone()),
                        "email": u.map(|u| u.email.clone()),
                        "name": u.map(|u| u.name.clone()),
                    },
                })
            })
            .collect();
        Ok(success(StatusCode::OK, json!(items)))
    })
}
