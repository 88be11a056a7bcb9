//! What the client really puts on the wire and how it reads real HTTP answers, checked
//! against a tiny recording server on loopback (no Cal.com, no sim): version headers per
//! family, auth, bodies, error shapes, 429 handling, retries only for reads, and the
//! Transport / OutcomeUnknown split.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use calcom_client::{
    Attendee, BookingMetadata, CalcomClient, CalcomError, ClientConfig, CreateBooking,
    CreateTeamEventType, HostAssignment, ListBookings, RateLimit, RescheduleBooking, ReserveSlot,
    SchedulingType, SecretString, SlotsQuery, UpdateTeamEventType, api_version,
};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const KEY: &str = "cal_test_wire_key_0123456789";

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Value,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<Recorded>>>,
    respond: Responder,
}

async fn record(
    State(rec): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = (rec.respond)(&recorded);
    rec.seen.lock().expect("lock").push(recorded);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).expect("status"),
        reply.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header"));
    }
    response
}

struct Server {
    base_url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn serve(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Recorder {
        seen: seen.clone(),
        respond: Arc::new(respond),
    };
    let app = axum::Router::new().fallback(record).with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base_url: format!("http://{addr}"),
        seen,
    }
}

fn config(base_url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(base_url, SecretString::from(KEY));
    config.timeout = Duration::from_secs(5);
    config
}

fn client(base_url: &str) -> CalcomClient {
    CalcomClient::new(config(base_url)).expect("client")
}

fn booking_json(uid: &str) -> Value {
    json!({
        "id": 1, "uid": uid, "title": "Wash", "description": "", "status": "accepted",
        "hosts": [], "start": "2030-05-01T08:00:00.000Z", "end": "2030-05-01T08:15:00.000Z",
        "duration": 15, "eventTypeId": 55, "eventType": {"id": 55, "slug": "wash"},
        "location": "", "absentHost": false, "createdAt": "2030-04-01T00:00:00.000Z",
        "updatedAt": "2030-04-01T00:00:00.000Z", "metadata": {"segment": "B"},
        "attendees": [], "bookingFieldsResponses": {}
    })
}

fn event_type_json(id: i64, parent: Option<i64>) -> Value {
    json!({"id": id, "slug": "wash", "title": "Wash", "lengthInMinutes": 15,
           "teamId": if parent.is_none() { json!(3) } else { Value::Null },
           "ownerId": if parent.is_some() { json!(7) } else { Value::Null },
           "parentEventTypeId": parent, "schedulingType": "managed",
           "hosts": [{"userId": 7, "name": "Ann", "username": "ann"}], "metadata": {}})
}

/// Answers every known route with a plausible success.
fn happy(r: &Recorded) -> Reply {
    let ok = |data: Value| Reply::json(200, json!({"status": "success", "data": data}));
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v2/bookings") => Reply::json(
            201,
            json!({"status": "success", "data": booking_json("new")}),
        ),
        ("GET", "/v2/bookings") => Reply::json(
            200,
            json!({"status": "success", "data": [booking_json("a"), booking_json("b")],
            "pagination": {"totalItems": 7, "hasNextPage": true, "returnedItems": 2}}),
        ),
        ("POST", p) if p.ends_with("/reschedule") => Reply::json(
            201,
            json!({"status": "success", "data": booking_json("moved")}),
        ),
        (_, p) if p.starts_with("/v2/bookings/") => ok(booking_json("x")),
        ("GET", "/v2/event-types") => ok(json!([event_type_json(11, Some(10))])),
        (_, p) if p.starts_with("/v2/event-types/") => ok(event_type_json(10, None)),
        ("GET", "/v2/teams/3/event-types") => ok(json!([event_type_json(10, None)])),
        ("POST", "/v2/teams/3/event-types") | ("PATCH", "/v2/teams/3/event-types/10") => {
            // Children before the parent on purpose: the client must reorder.
            ok(json!([
                event_type_json(11, Some(10)),
                event_type_json(10, None)
            ]))
        }
        (_, p) if p.starts_with("/v2/teams/") => ok(event_type_json(10, None)),
        ("GET", "/v2/slots") => ok(
            json!({"2030-05-01": [{"start": "2030-05-01T10:00:00.000+02:00", "end": "2030-05-01T10:15:00.000+02:00"}]}),
        ),
        ("POST", "/v2/slots/reservations") => Reply::json(
            201,
            json!({"status": "success", "data": {
            "eventTypeId": 55, "slotStart": "2030-05-01T08:00:00.000Z", "slotEnd": "2030-05-01T08:15:00.000Z",
            "slotDuration": 15, "reservationUid": "res_1", "reservationDuration": 5,
            "reservationUntil": "2030-04-01T00:05:00.000Z"}}),
        ),
        ("DELETE", _) => Reply::json(200, json!({"status": "success"})),
        _ => Reply::json(404, json!({"message": "no route"})),
    }
}

fn at(h: u32, m: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 5, 1, h, m, 0)
        .single()
        .expect("date")
}

fn create_booking() -> CreateBooking {
    CreateBooking {
        start: at(8, 0),
        event_type_id: 55,
        attendee: Attendee {
            name: "Bea".into(),
            email: Some("bea@example.com".into()),
            time_zone: "Europe/Berlin".into(),
            phone_number: Some("+4915112345678".into()),
            language: None,
        },
        metadata: BookingMetadata::new([("appointment_id", "a1"), ("segment", "B")]).expect("meta"),
        notes: Some("fringe".into()),
    }
}

fn slots_query() -> SlotsQuery {
    SlotsQuery {
        event_type_id: 55,
        start: at(0, 0),
        end: at(23, 0),
        time_zone: None,
        duration: None,
        booking_uid_to_reschedule: None,
    }
}

/// Runs every client operation once against the happy responder.
async fn call_everything(c: &CalcomClient) {
    c.create_booking(&create_booking()).await.expect("create");
    c.get_booking("abc").await.expect("get");
    c.list_bookings(&ListBookings::default())
        .await
        .expect("list");
    c.cancel_booking("abc", "customer").await.expect("cancel");
    c.reschedule_booking(
        "abc",
        &RescheduleBooking {
            start: at(9, 0),
            rescheduled_by: None,
            rescheduling_reason: None,
        },
    )
    .await
    .expect("reschedule");
    c.get_event_type(10).await.expect("get et");
    c.list_event_types("ann", Some("wash"))
        .await
        .expect("list et");
    c.list_team_event_types(3, None)
        .await
        .expect("list team et");
    c.get_team_event_type(3, 10).await.expect("get team et");
    let mut managed = CreateTeamEventType::new("Wash", "wash", 15, SchedulingType::Managed);
    managed.hosts = vec![HostAssignment::user(7)];
    c.create_team_event_type(3, &managed)
        .await
        .expect("create team et");
    c.update_team_event_type(3, 10, &UpdateTeamEventType::default())
        .await
        .expect("update team et");
    c.get_slots(&slots_query()).await.expect("slots");
    c.reserve_slot(&ReserveSlot {
        event_type_id: 55,
        slot_start: at(8, 0),
        slot_duration: None,
        reservation_duration: None,
    })
    .await
    .expect("reserve");
    c.delete_reservation("res_1")
        .await
        .expect("delete reservation");
}

#[tokio::test]
async fn every_family_sends_its_pinned_api_version_and_the_bearer_key() {
    let server = serve(happy).await;
    call_everything(&client(&server.base_url)).await;
    let seen = server.requests();
    assert_eq!(seen.len(), 14);
    for r in &seen {
        let want = if r.path.starts_with("/v2/bookings") {
            "2024-08-13"
        } else if r.path.starts_with("/v2/slots") {
            "2024-09-04"
        } else if r.path.starts_with("/v2/event-types") {
            "2024-06-14"
        } else {
            assert!(r.path.starts_with("/v2/teams/"), "{}", r.path);
            "2024-06-14"
        };
        assert_eq!(
            r.headers.get("cal-api-version").map(String::as_str),
            Some(want),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    // The constants themselves are pinned too, so a change is a deliberate one.
    assert_eq!(api_version::BOOKINGS, "2024-08-13");
    assert_eq!(api_version::SLOTS, "2024-09-04");
    assert_eq!(api_version::EVENT_TYPES, "2024-06-14");
    assert_eq!(api_version::TEAM_EVENT_TYPES, "2024-06-14");
}

#[tokio::test]
async fn requests_carry_the_exact_bodies_and_queries() {
    let server = serve(happy).await;
    let c = client(&server.base_url);
    let booking = c.create_booking(&create_booking()).await.expect("create");
    assert_eq!(booking.uid, "new");
    c.list_bookings(&ListBookings {
        event_type_id: Some(55),
        attendee_email: Some("bea+1@example.com".into()),
        take: Some(250),
        ..ListBookings::default()
    })
    .await
    .expect("list");
    c.get_slots(&slots_query()).await.expect("slots");
    c.cancel_booking("uid/with?odd", "customer cancelled")
        .await
        .expect("cancel");

    let seen = server.requests();
    assert_eq!(
        seen[0].body,
        json!({"start": "2030-05-01T08:00:00.000Z", "eventTypeId": 55,
               "attendee": {"name": "Bea", "email": "bea@example.com", "timeZone": "Europe/Berlin", "phoneNumber": "+4915112345678"},
               "metadata": {"appointment_id": "a1", "segment": "B"},
               "bookingFieldsResponses": {"notes": "fringe"}})
    );
    assert_eq!(
        seen[1].query.as_deref(),
        Some("eventTypeId=55&attendeeEmail=bea%2B1%40example.com&take=250")
    );
    let slots_query = seen[2].query.clone().unwrap_or_default();
    assert!(slots_query.contains("format=range"), "{slots_query}");
    assert!(slots_query.contains("eventTypeId=55"), "{slots_query}");
    assert!(
        slots_query.contains("start=2030-05-01T00%3A00%3A00.000Z"),
        "{slots_query}"
    );
    assert_eq!(seen[3].path, "/v2/bookings/uid%2Fwith%3Fodd/cancel");
    assert_eq!(
        seen[3].body,
        json!({"cancellationReason": "customer cancelled"})
    );
}

#[tokio::test]
async fn responses_are_decoded_and_normalised() {
    let server = serve(happy).await;
    let c = client(&server.base_url);
    let page = c
        .list_bookings(&ListBookings::default())
        .await
        .expect("list");
    assert_eq!(page.bookings.len(), 2);
    assert_eq!(page.total, Some(7));
    assert!(page.has_next_page);
    let created = c
        .create_team_event_type(
            3,
            &CreateTeamEventType::new("Wash", "wash", 15, SchedulingType::Managed),
        )
        .await
        .expect("create");
    assert_eq!(
        created.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![10, 11]
    );
    let slots = c.get_slots(&slots_query()).await.expect("slots");
    assert_eq!(slots["2030-05-01"].len(), 1);
    let res = c
        .reserve_slot(&ReserveSlot {
            event_type_id: 55,
            slot_start: at(8, 0),
            slot_duration: None,
            reservation_duration: None,
        })
        .await
        .expect("reserve");
    assert_eq!(res.reservation_uid, "res_1");
}

#[tokio::test]
async fn invalid_input_is_refused_without_a_request() {
    let server = serve(happy).await;
    let c = client(&server.base_url);
    let mut bad = create_booking();
    bad.attendee.phone_number = Some("0151 123".into());
    let err = c.create_booking(&bad).await.expect_err("refused");
    assert_eq!(err.kind(), "invalid_request");
    let err = c.cancel_booking("abc", " ").await.expect_err("refused");
    assert_eq!(err.kind(), "invalid_request");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_2xx_with_an_unexpected_body_is_a_decode_error() {
    let server =
        serve(|_| Reply::json(201, json!({"status": "success", "data": {"weird": true}}))).await;
    let err = client(&server.base_url)
        .create_booking(&create_booking())
        .await
        .expect_err("decode");
    assert_eq!(err.kind(), "decode");
    assert_eq!(err.status(), Some(201));
    assert!(err.raw_body().is_some_and(|b| b.contains("weird")));
}

#[tokio::test]
async fn recorded_error_shapes_map_to_variants() {
    let server = serve(|r| match r.path.as_str() {
        "/v2/bookings" => Reply::json(400, json!({"status": "error", "timestamp": "2025-11-03T10:00:00.000Z", "path": "/v2/bookings",
            "error": {"code": "BadRequestException",
                      "message": "Event type with id=1234 is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.",
                      "details": {"message": "Event type with id=1234 is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.", "error": "Bad Request", "statusCode": 400}}})),
        p if p.ends_with("/cancel") => Reply::json(400, json!({"statusCode": 400, "message": "This booking has already been cancelled."})),
        _ => Reply::json(404, json!({"status": "error", "error": {"code": "NotFoundException", "message": "Booking with uid=zzz was not found in the database"}})),
    })
    .await;
    let c = client(&server.base_url);
    match c.create_booking(&create_booking()).await {
        Err(CalcomError::ManagedParent { event_type_id, .. }) => assert_eq!(event_type_id, 1234),
        other => panic!("unexpected {other:?}"),
    }
    let err = c.cancel_booking("abc", "again").await.expect_err("400");
    assert!(err.is_already_cancelled(), "{err:?}");
    let err = c.get_booking("zzz").await.expect_err("404");
    assert_eq!(err.kind(), "not_found");
    assert!(err.message().contains("uid=zzz"));
}

#[tokio::test]
async fn the_key_never_appears_in_errors_even_if_echoed() {
    let server = serve(|r| {
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        Reply::json(401, json!({"status": "error", "error": {"message": format!("ApiAuthStrategy - bad key {auth}")}}))
    })
    .await;
    let err = client(&server.base_url)
        .get_booking("abc")
        .await
        .expect_err("401");
    assert_eq!(err.kind(), "unauthorized");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        err.message(),
        err.raw_body().unwrap_or_default().to_owned(),
    ] {
        assert!(!text.contains(KEY), "{text}");
    }
}

#[tokio::test]
async fn a_429_reports_the_reset_and_holds_the_next_call() {
    let server = serve(|r| {
        if r.path == "/v2/bookings/first" {
            Reply {
                status: 429,
                headers: vec![
                    ("x-ratelimit-limit-default", "120".into()),
                    ("x-ratelimit-remaining-default", "0".into()),
                    ("x-ratelimit-reset-default", "1".into()),
                ],
                body: json!({"status": "error", "error": {"code": "ThrottlerException", "message": "CustomThrottlerGuard - Too many requests. Please try again later."}}).to_string(),
                delay: Duration::ZERO,
            }
        } else {
            happy(r)
        }
    })
    .await;
    let c = client(&server.base_url);
    match c.get_booking("first").await {
        Err(CalcomError::RateLimited {
            reset_after,
            message,
            ..
        }) => {
            assert_eq!(reset_after, Duration::from_secs(1));
            assert!(message.starts_with("CustomThrottlerGuard"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // A clone shares the pause: the next call waits out the reset before it is sent.
    let clone = c.clone();
    let started = Instant::now();
    clone.get_booking("second").await.expect("after reset");
    let waited = started.elapsed();
    eprintln!("measured: call after a 429 with reset 1 s waited {waited:?}");
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    // The 429 itself was not retried.
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn reads_are_retried_on_5xx_but_writes_never() {
    let server = serve(|r| {
        if r.method == "GET" {
            Reply::json(
                503,
                json!({"statusCode": 503, "message": "Service Unavailable"}),
            )
        } else {
            Reply::json(
                500,
                json!({"statusCode": 500, "message": "Internal server error"}),
            )
        }
    })
    .await;
    let c = client(&server.base_url);
    let err = c.get_booking("abc").await.expect_err("503");
    assert_eq!(err.kind(), "server");
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.requests().len(), 3, "1 try + 2 read retries");

    let err = c.create_booking(&create_booking()).await.expect_err("500");
    assert_eq!(err.kind(), "server");
    assert_eq!(err.message(), "Internal server error");
    let err = c.cancel_booking("abc", "x").await.expect_err("500");
    assert_eq!(err.kind(), "server");
    assert_eq!(server.requests().len(), 5, "each write sent exactly once");
}

#[tokio::test]
async fn a_read_that_recovers_within_the_retries_succeeds() {
    let hits = Arc::new(Mutex::new(0u32));
    let counter = hits.clone();
    let server = serve(move |r| {
        let mut n = counter.lock().expect("lock");
        *n += 1;
        if *n == 1 {
            Reply::json(502, json!({"message": "bad gateway"}))
        } else {
            happy(r)
        }
    })
    .await;
    let booking = client(&server.base_url)
        .get_booking("abc")
        .await
        .expect("recovered");
    assert_eq!(booking.uid, "x");
    assert_eq!(*hits.lock().expect("lock"), 2);
}

#[tokio::test]
async fn a_hanging_server_is_outcome_unknown_after_the_timeout() {
    let server = serve(|r| Reply {
        delay: Duration::from_secs(5),
        ..happy(r)
    })
    .await;
    let mut cfg = config(&server.base_url);
    cfg.timeout = Duration::from_millis(300);
    let c = CalcomClient::new(cfg).expect("client");
    let started = Instant::now();
    let err = c
        .create_booking(&create_booking())
        .await
        .expect_err("timeout");
    let elapsed = started.elapsed();
    eprintln!(
        "measured: hanging server, timeout 300 ms -> {} after {elapsed:?}",
        err.kind()
    );
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(err.kind(), "outcome_unknown");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "a timed-out write is not re-sent"
    );
}

/// Accepts connections, reads the request, and hangs up without answering.
async fn hang_up_server() -> (String, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(0u32));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            // Read until the end of the headers plus whatever body arrived with them.
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    break;
                }
            }
            *counter.lock().expect("lock") += 1;
            drop(socket);
        }
    });
    (format!("http://{addr}"), received)
}

#[tokio::test]
async fn a_connection_dropped_after_sending_is_outcome_unknown() {
    let (base_url, received) = hang_up_server().await;
    let err = client(&base_url)
        .create_booking(&create_booking())
        .await
        .expect_err("dropped");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(*received.lock().expect("lock"), 1);
}

#[tokio::test]
async fn a_closed_port_is_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut cfg = config(&format!("http://{addr}"));
    cfg.read_retries = 0;
    let c = CalcomClient::new(cfg).expect("client");
    let err = c
        .create_booking(&create_booking())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), "transport", "{err:?}");
    assert!(!err.outcome_unknown());
    assert_eq!(err.status(), None);
}

#[tokio::test]
async fn a_burst_is_spread_by_the_client_limiter() {
    let server = serve(happy).await;
    let mut cfg = config(&server.base_url);
    cfg.rate_limit = RateLimit {
        requests: 5,
        per: Duration::from_millis(500),
    };
    let c = CalcomClient::new(cfg).expect("client");
    let started = Instant::now();
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.get_booking(&format!("b{i}")).await })
        })
        .collect();
    for call in calls {
        call.await.expect("join").expect("call");
    }
    let elapsed = started.elapsed();
    eprintln!("measured: 12 calls at 5 per 500 ms took {elapsed:?}");
    // 12 requests at 5 per 0.5 s need two full windows of waiting.
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    assert_eq!(server.requests().len(), 12);
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_method_path_status_and_time_but_never_key_email_or_phone() {
    let server = serve(|r| {
        if r.path == "/v2/bookings/missing" {
            Reply::json(
                404,
                json!({"message": "Booking with uid=missing was not found in the database"}),
            )
        } else {
            happy(r)
        }
    })
    .await;
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let c = client(&server.base_url);
    c.create_booking(&create_booking()).await.expect("create");
    c.list_bookings(&ListBookings {
        attendee_email: Some("bea@example.com".into()),
        ..ListBookings::default()
    })
    .await
    .expect("list");
    let _ = c.get_booking("missing").await;

    let logs = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
    assert!(logs.contains("cal.com call succeeded"), "{logs}");
    assert!(logs.contains("method=POST"), "{logs}");
    assert!(logs.contains("path=\"/v2/bookings\""), "{logs}");
    assert!(logs.contains("path=\"/v2/bookings/{uid}\""), "{logs}");
    assert!(logs.contains("status=201"), "{logs}");
    assert!(
        logs.contains("status=404") && logs.contains("kind=\"not_found\""),
        "{logs}"
    );
    assert!(logs.contains("elapsed_ms="), "{logs}");
    for secret in [
        KEY,
        "bea@example.com",
        "bea%40example.com",
        "+4915112345678",
        "missing",
    ] {
        assert!(!logs.contains(secret), "logs contain {secret}: {logs}");
    }
}
