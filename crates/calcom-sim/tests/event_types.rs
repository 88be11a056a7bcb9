//! Event types over real HTTP: the managed model (children only through the team
//! endpoints), the incident (patching a personal type's hosts makes no child), lookups.

mod common;

use calcom_sim::salon;
use common::*;
use serde_json::{Value, json};

async fn children_for(api: &Api, username: &str, slug: &str) -> Vec<Value> {
    let r = api
        .get(
            &format!("/v2/event-types?username={username}&eventSlug={slug}"),
            EVENT_TYPES,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_schema("GetEventTypesOutput_2024_06_14", &r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_seeded_parent_has_a_child_only_for_anna() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let anna = children_for(&api, "anna", salon::MANAGED_SLUG).await;
    assert_eq!(anna.len(), 1);
    assert_eq!(anna[0]["id"], salon::ANNA_CHILD);
    assert_eq!(anna[0]["ownerId"], salon::ANNA);
    assert_eq!(anna[0]["metadata"], json!({"managedEventConfig": {}}));
    // Personal output has no parent id or scheduling type (FACTS 5.2).
    assert!(anna[0].get("parentEventTypeId").is_none());
    assert!(
        children_for(&api, "ben", salon::MANAGED_SLUG)
            .await
            .is_empty()
    );

    let parent = api
        .get(
            &format!(
                "/v2/teams/{}/event-types/{}",
                salon::TEAM_ID,
                salon::MANAGED_PARENT
            ),
            EVENT_TYPES,
        )
        .await;
    assert_eq!(parent.status, 200);
    assert_eq!(parent.body["data"]["schedulingType"], "managed");
    assert_eq!(
        parent.body["data"]["hosts"],
        json!([{"userId": salon::ANNA, "name": "Anna Berger", "username": "anna", "avatarUrl": null}])
    );
    // The child is bookable; the parent is not.
    assert_eq!(
        api.book(salon::ANNA_CHILD, berlin(0, 10, 0)).await.status,
        201
    );
    assert_eq!(
        api.book(salon::MANAGED_PARENT, berlin(0, 11, 0))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn incident_patching_a_personal_types_hosts_succeeds_but_makes_no_child() {
    let sim = salon_sim().await;
    let ben = Api::new(&sim).with_key(Some(salon::BEN_API_KEY));
    let id = salon::BEN_SEGMENTS[0];
    let r = ben
        .patch(
            &format!("/v2/event-types/{id}"),
            EVENT_TYPES,
            json!({"hosts": [{"userId": salon::BEN}], "title": "Colour A (Ben)"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["title"], "Colour A (Ben)");
    assert_schema("UpdateEventTypeOutput_2024_06_14", &r.body);
    assert!(r.body["data"].get("hosts").is_none());

    let state = Api::new(&sim).state().await;
    let before = sim.sim.state().event_types.len();
    assert_eq!(state.event_types.len(), before);
    assert!(
        state
            .event_types
            .iter()
            .all(|e| e.parent_event_type_id != Some(id))
    );
    assert!(
        children_for(&ben, "ben", salon::MANAGED_SLUG)
            .await
            .is_empty()
    );
    // Still nothing bookable for Ben under the managed parent.
    let r = ben.book(salon::MANAGED_PARENT, berlin(0, 10, 0)).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn patching_the_team_parent_with_hosts_creates_and_removes_children() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let path = format!(
        "/v2/teams/{}/event-types/{}",
        salon::TEAM_ID,
        salon::MANAGED_PARENT
    );
    let r = api
        .patch(
            &path,
            EVENT_TYPES,
            json!({"hosts": [{"userId": salon::ANNA}, {"userId": salon::BEN}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.body["data"].as_array().expect("array answer for managed");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], salon::MANAGED_PARENT);
    let ben_child = items
        .iter()
        .find(|e| e["ownerId"] == salon::BEN)
        .expect("ben's child");
    assert_eq!(ben_child["parentEventTypeId"], salon::MANAGED_PARENT);
    assert_eq!(ben_child["teamId"], Value::Null);
    assert_eq!(
        items
            .iter()
            .find(|e| e["ownerId"] == salon::ANNA)
            .expect("anna")["id"],
        salon::ANNA_CHILD
    );
    let ben_listed = children_for(&api, "ben", salon::MANAGED_SLUG).await;
    assert_eq!(ben_listed[0]["id"], ben_child["id"]);
    assert_eq!(
        api.book(ben_child["id"].as_i64().expect("id"), berlin(0, 10, 0))
            .await
            .status,
        201
    );

    // Replacing the hosts with Ben alone deletes Anna's child.
    let r = api
        .patch(
            &path,
            EVENT_TYPES,
            json!({"hosts": [{"userId": salon::BEN}]}),
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    assert!(
        children_for(&api, "anna", salon::MANAGED_SLUG)
            .await
            .is_empty()
    );
    assert!(api.state().await.event_type(salon::ANNA_CHILD).is_none());
}

#[tokio::test]
async fn creating_a_managed_type_with_hosts_makes_one_child_per_host() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let r = api
        .post(&format!("/v2/teams/{}/event-types", salon::TEAM_ID), EVENT_TYPES,
              json!({"title": "Toner", "slug": "colour-a-apply", "lengthInMinutes": 20,
                     "schedulingType": "MANAGED", "hosts": [{"userId": salon::ANNA}, {"userId": salon::BEN}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let items = r.body["data"].as_array().expect("array");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["metadata"], json!({"managedEventConfig": {}}));
    // The members' personal types with the same slug were deleted to make room.
    let state = api.state().await;
    assert!(state.event_type(salon::ANNA_SEGMENTS[0]).is_none());
    assert!(state.event_type(salon::BEN_SEGMENTS[0]).is_none());
    let anna = children_for(&api, "anna", "colour-a-apply").await;
    assert_eq!(anna.len(), 1);
    assert_eq!(anna[0]["lengthInMinutes"], 20);

    // assignAllTeamMembers works the same way.
    let r = api
        .post(
            &format!("/v2/teams/{}/event-types", salon::TEAM_ID),
            EVENT_TYPES,
            json!({"title": "Gloss", "slug": "gloss", "lengthInMinutes": 10,
                     "schedulingType": "managed", "assignAllTeamMembers": true}),
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_parent_without_an_object_managed_event_config_silently_gets_no_children() {
    let sim = salon_sim().await;
    let mut parent = calcom_sim::SeedEventType::managed(5001, salon::TEAM_ID, "perm", 60, &[]);
    parent.metadata = Some(serde_json::from_value(json!({"managedEventConfig": []})).expect("map"));
    sim.sim
        .seed(calcom_sim::Seed {
            event_types: vec![parent],
            ..Default::default()
        })
        .expect("seed");
    let api = Api::new(&sim);
    let r = api
        .patch(
            &format!("/v2/teams/{}/event-types/5001", salon::TEAM_ID),
            EVENT_TYPES,
            json!({"hosts": [{"userId": salon::BEN}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert!(children_for(&api, "ben", "perm").await.is_empty());
}

#[tokio::test]
async fn team_writes_check_membership_and_roles() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let path = format!(
        "/v2/teams/{}/event-types/{}",
        salon::TEAM_ID,
        salon::MANAGED_PARENT
    );
    let r = api
        .patch(&path, EVENT_TYPES, json!({"hosts": [{"userId": 999}]}))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        message(&r.body),
        "Invalid hosts: 999 are not members of team with id 1."
    );
    let ben = Api::new(&sim).with_key(Some(salon::BEN_API_KEY));
    let r = ben.patch(&path, EVENT_TYPES, json!({"title": "x"})).await;
    assert_eq!(r.status, 403);
    let anon = Api::new(&sim).with_key(None);
    assert_eq!(
        anon.patch(&path, EVENT_TYPES, json!({"title": "x"}))
            .await
            .status,
        401
    );
    // Reading team types needs no auth.
    assert_eq!(
        anon.get(
            &format!("/v2/teams/{}/event-types", salon::TEAM_ID),
            EVENT_TYPES
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn personal_event_types_are_visible_only_to_their_owner_by_id() {
    let sim = salon_sim().await;
    let anna = Api::new(&sim);
    let own = anna
        .get(
            &format!("/v2/event-types/{}", salon::ANNA_SEGMENTS[0]),
            EVENT_TYPES,
        )
        .await;
    assert_eq!(own.status, 200);
    assert_schema("GetEventTypeOutput_2024_06_14", &own.body);
    assert_eq!(own.body["data"]["ownerId"], salon::ANNA);
    let others = anna
        .get(
            &format!("/v2/event-types/{}", salon::BEN_SEGMENTS[0]),
            EVENT_TYPES,
        )
        .await;
    assert_eq!(others.status, 404);
    let team = anna
        .get(
            &format!("/v2/event-types/{}", salon::MANAGED_PARENT),
            EVENT_TYPES,
        )
        .await;
    assert_eq!(team.status, 404);
    // Wrong version on event types is a 404.
    assert_eq!(
        anna.get("/v2/event-types?username=anna", BOOKINGS)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn team_outputs_follow_cal_com_where_the_spec_differs() {
    // FACTS 5.2: hosts are objects (spec: strings), children carry numeric ownerId /
    // parentEventTypeId and teamId null (spec: objects / a number). Everything else must
    // validate against TeamEventTypeOutput_2024_06_14.
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let r = api
        .patch(
            &format!(
                "/v2/teams/{}/event-types/{}",
                salon::TEAM_ID,
                salon::MANAGED_PARENT
            ),
            EVENT_TYPES,
            json!({"hosts": [{"userId": salon::ANNA}]}),
        )
        .await;
    let items = r.body["data"].as_array().expect("array").clone();
    let known = [
        "/hosts/0",
        "/ownerId",
        "/parentEventTypeId",
        "/teamId",
        "/team",
    ];
    for item in &items {
        let errs = schema_errors("TeamEventTypeOutput_2024_06_14", item);
        let unexpected: Vec<&String> = errs
            .iter()
            .filter(|e| !known.iter().any(|k| e.ends_with(k)))
            .collect();
        assert!(unexpected.is_empty(), "{unexpected:#?}");
    }
    let list = api
        .get(
            &format!("/v2/teams/{}/event-types", salon::TEAM_ID),
            EVENT_TYPES,
        )
        .await;
    assert!(
        list.body["data"]
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["parentEventTypeId"].is_null()),
        "children are not listed"
    );
}
