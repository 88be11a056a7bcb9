use std::collections::BTreeSet;

use chrono::TimeZone;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::SegmentKey;
use crate::sync::FailureClass;
use crate::sync::booking::tests::{any_class, failure};
use crate::sync::fixtures::now;

const FROM: EventTypeId = EventTypeId(11);
const TO: EventTypeId = EventTypeId(22);

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 5, 9, 0, 0)
        .single()
        .expect("time")
        + TimeDelta::minutes(minutes)
}

fn identity() -> BookingIdentity {
    BookingIdentity {
        tenant_id: Uuid::from_u128(1),
        appointment_id: Uuid::from_u128(2),
        segment_key: SegmentKey::parse("C").expect("key"),
    }
}

fn anna() -> StaffId {
    StaffId::parse("anna").expect("staff")
}

fn booking(uid: Option<&str>, unknown: bool) -> SegmentBooking {
    SegmentBooking {
        status: SegmentSyncStatus::Synced,
        event_type_id: Some(FROM.0),
        calcom_booking_uid: uid.map(str::to_owned),
        calcom_booking_id: uid.map(|_| 1),
        earlier_outcome_unknown: unknown,
        ..SegmentBooking::new()
    }
}

/// A segment moved from 09:00 to 10:00 (30 minutes), from event type `from` to `to`.
fn plan(
    start: &SegmentBooking,
    from: Option<EventTypeId>,
    to: EventTypeId,
) -> (MovePlan, MoveAction) {
    plan_beside(start, from, to, &[])
}

/// [`plan`] beside `neighbours` still standing at their old times.
fn plan_beside(
    start: &SegmentBooking,
    from: Option<EventTypeId>,
    to: EventTypeId,
    neighbours: &[StillMoving<'_>],
) -> (MovePlan, MoveAction) {
    let identity = identity();
    let staff = anna();
    let ask = MoveAsk {
        identity: &identity,
        staff_id: &staff,
        starts_at: at(60),
        ends_at: at(90),
        from: at(0),
        from_event_type: from,
        to,
        neighbours,
    };
    MovePlan::new(start, &ask, now())
}

/// A booking carrying the segment's identity (`ours`) or another appointment's.
fn observed(
    uid: &str,
    event_type: EventTypeId,
    start: DateTime<Utc>,
    cancelled: bool,
    ours: bool,
) -> ObservedBooking {
    let identity = identity();
    ObservedBooking {
        id: uid.bytes().map(i64::from).sum(),
        uid: uid.into(),
        event_type_id: Some(event_type),
        start,
        end: start + TimeDelta::minutes(30),
        cancelled,
        tenant: Some(identity.tenant_id.to_string()),
        appointment: Some(
            if ours {
                identity.appointment_id
            } else {
                Uuid::from_u128(3)
            }
            .to_string(),
        ),
        segment: Some(identity.segment_key.to_string()),
        rescheduled_to_uid: None,
    }
}

/// The outcome `action` records, when it is a record.
fn recorded(action: &MoveAction) -> Option<&'static str> {
    match action {
        MoveAction::Record(record) => Some(record.outcome),
        _ => None,
    }
}

#[test]
fn a_known_booking_on_the_same_event_type_is_moved_by_one_calcom_reschedule() {
    let (mut plan, first) = plan(&booking(Some("old"), false), Some(TO), TO);
    assert_eq!(
        first,
        MoveAction::Reschedule {
            uid: "old".into(),
            event_type: TO
        }
    );
    let moved = observed("new", TO, at(60), false, true);
    let MoveAction::Done(end) = plan.next(MoveResult::Rescheduled(Ok(moved.clone()))) else {
        panic!("the reschedule ends the move");
    };
    assert_eq!(
        end,
        MoveEnd::Moved {
            moved_from: "old".into(),
            record: AttemptResult {
                outcome: "rescheduled",
                error: None,
                calcom_booking_uid: Some("new".into()),
            },
        }
    );
    assert!(end.done_moving());
    assert_eq!(plan.booking().status, SegmentSyncStatus::Synced);
    assert_eq!(plan.booking().calcom_booking_uid.as_deref(), Some("new"));
    assert_eq!(plan.booking().calcom_booking_id, Some(moved.id));
    assert_eq!(plan.booking().event_type_id, Some(TO.0));
}

#[test]
fn a_segment_landing_on_its_neighbours_old_booking_waits_a_moment() {
    let staff = anna();
    let neighbour = [StillMoving {
        staff_id: &staff,
        old_start: at(75),
        old_end: at(105),
    }];
    let (plan, first) = plan_beside(&booking(Some("old"), false), Some(TO), TO, &neighbour);
    assert_eq!(first, MoveAction::Done(MoveEnd::WaitForNeighbour));
    assert!(!MoveEnd::WaitForNeighbour.done_moving());
    assert_eq!(plan.booking().next_attempt_at, Some(now() + NEIGHBOUR_WAIT));
}

#[test]
fn a_lost_reschedule_is_looked_for_before_it_is_tried_again() {
    let (mut plan, _) = plan(&booking(Some("old"), false), Some(TO), TO);
    let lost = failure(FailureClass::OutcomeUnknown);
    let MoveAction::Record(record) = plan.next(MoveResult::Rescheduled(Err(lost.clone()))) else {
        panic!("the failed call is recorded first");
    };
    assert_eq!(record.outcome, "unknown");
    assert_eq!(
        plan.next(MoveResult::Recorded),
        MoveAction::Done(MoveEnd::Failed {
            failure: lost,
            operation: Operation::Create
        })
    );
    assert!(plan.booking().earlier_outcome_unknown);
    assert!(plan.booking().last_error.is_some());
    // The next run looks first.
    let (_, again) = self::plan(plan.booking(), Some(TO), TO);
    assert!(
        matches!(again, MoveAction::Find { logged: true, .. }),
        "{again:?}"
    );
}

#[test]
fn a_refused_reschedule_cancels_the_old_booking_and_books_anew() {
    let (mut plan, _) = plan(&booking(Some("old"), false), Some(TO), TO);
    let refused = failure(FailureClass::SlotUnavailable);
    let record = plan.next(MoveResult::Rescheduled(Err(refused)));
    assert_eq!(recorded(&record), Some("failed"));
    assert_eq!(
        plan.next(MoveResult::Recorded),
        MoveAction::Find {
            uid: Some("old".into()),
            event_type: TO,
            at: at(0),
            logged: true
        }
    );
    let old = observed("old", TO, at(0), false, true);
    let other = observed("theirs", TO, at(0), false, false);
    let missing = plan.next(MoveResult::Found(Ok(vec![old, other])));
    assert_eq!(recorded(&missing), Some("missing"));
    assert_eq!(
        plan.next(MoveResult::Recorded),
        MoveAction::CancelStray {
            uid: "old".into(),
            event_type: Some(TO)
        }
    );
    let cancelled = plan.next(MoveResult::Cancelled(CancelAnswer::Cancelled));
    assert_eq!(recorded(&cancelled), Some("cancelled"));
    assert_eq!(
        plan.next(MoveResult::Recorded),
        MoveAction::Done(MoveEnd::Rebook)
    );
    assert_eq!(plan.booking().calcom_booking_uid, None);
    assert_eq!(plan.booking().status, SegmentSyncStatus::Pending);
    assert!(
        plan.booking().last_error.is_some(),
        "the refusal stays the last error"
    );
}

#[test]
fn another_stylist_adopts_a_booking_already_at_the_new_time() {
    let (mut plan, first) = plan(&booking(Some("old"), true), Some(FROM), TO);
    assert!(
        matches!(
            first,
            MoveAction::Find {
                event_type: FROM,
                ..
            }
        ),
        "{first:?}"
    );
    let landed = observed("landed", TO, at(60), false, true);
    let old = observed("old", FROM, at(0), true, true);
    let MoveAction::Record(record) = plan.next(MoveResult::Found(Ok(vec![old, landed.clone()])))
    else {
        panic!("the look is recorded");
    };
    assert_eq!(record.outcome, "adopted");
    assert_eq!(record.calcom_booking_uid.as_deref(), Some("landed"));
    assert_eq!(
        plan.next(MoveResult::Recorded),
        MoveAction::Done(MoveEnd::Adopted)
    );
    assert_eq!(plan.booking().calcom_booking_uid.as_deref(), Some("landed"));
    assert_eq!(plan.booking().status, SegmentSyncStatus::Synced);
}

#[test]
fn a_cancelled_appointment_cancels_every_booking_of_ours_it_finds() {
    let start = booking(Some("old"), false);
    let (mut plan, first) = MovePlan::leave(&start, &identity(), at(0), None, now());
    assert_eq!(
        first,
        MoveAction::Find {
            uid: Some("old".into()),
            event_type: FROM,
            at: at(0),
            logged: false
        }
    );
    let found = vec![
        observed("old", FROM, at(0), false, true),
        observed("new", FROM, at(60), false, true),
    ];
    let mut cancelled = Vec::new();
    let mut action = plan.next(MoveResult::Found(Ok(found)));
    while let MoveAction::CancelStray { uid, .. } = &action {
        cancelled.push(uid.clone());
        assert!(matches!(
            plan.next(MoveResult::Cancelled(CancelAnswer::NotFound)),
            MoveAction::Record(_)
        ));
        action = plan.next(MoveResult::Recorded);
    }
    assert_eq!(cancelled, ["old", "new"]);
    assert_eq!(action, MoveAction::Done(MoveEnd::Left));
    assert_eq!(
        plan.booking(),
        &start,
        "the cancel that follows settles the segment"
    );

    // A look that fails is not recorded: the cancel decides.
    let (mut plan, _) = MovePlan::leave(&start, &identity(), at(0), None, now());
    let failed = failure(FailureClass::Server);
    assert_eq!(
        plan.next(MoveResult::Found(Err(failed.clone()))),
        MoveAction::Done(MoveEnd::Failed {
            failure: failed,
            operation: Operation::Cancel
        })
    );
    let unknown = SegmentBooking {
        event_type_id: None,
        ..start
    };
    let (_, nothing) = MovePlan::leave(&unknown, &identity(), at(0), None, now());
    assert_eq!(nothing, MoveAction::Done(MoveEnd::NowhereToLook));
}

/// A booking found at the old or new position, ours or not, maybe cancelled.
fn any_found() -> impl Strategy<Value = Vec<ObservedBooking>> {
    proptest::collection::vec(
        (
            prop_oneof![Just(FROM), Just(TO)],
            prop_oneof![Just(0i64), Just(60), Just(30)],
            any::<bool>(),
            prop_oneof![3 => Just(true), 1 => Just(false)],
        ),
        0..5,
    )
    .prop_map(|bookings| {
        bookings
            .into_iter()
            .enumerate()
            .map(|(i, (event_type, start, cancelled, ours))| {
                observed(&format!("u{i}"), event_type, at(start), cancelled, ours)
            })
            .collect()
    })
}

/// One answer of Cal.com to whatever the plan asks, picked by `pick`; a look finds `found`.
fn answer(
    action: &MoveAction,
    pick: u8,
    class: FailureClass,
    found: &[ObservedBooking],
) -> MoveResult {
    match action {
        MoveAction::Reschedule { .. } => MoveResult::Rescheduled(if pick.is_multiple_of(2) {
            Ok(observed("moved", TO, at(60), false, true))
        } else {
            Err(failure(class))
        }),
        MoveAction::Find { .. } => MoveResult::Found(if pick.is_multiple_of(3) {
            Err(failure(class))
        } else {
            Ok(found.to_vec())
        }),
        MoveAction::CancelStray { .. } => MoveResult::Cancelled(match pick % 4 {
            0 => CancelAnswer::Cancelled,
            1 => CancelAnswer::AlreadyCancelled,
            2 => CancelAnswer::NotFound,
            _ => CancelAnswer::Failed(failure(class)),
        }),
        MoveAction::Record(_) | MoveAction::Done(_) => MoveResult::Recorded,
    }
}

/// What a run came to: every action named, the end, and the bookings of ours that may
/// still stand in Cal.com by then as far as the answers told (`None`: not known, nothing
/// was looked at yet).
struct Run {
    actions: Vec<MoveAction>,
    end: Option<MoveEnd>,
    standing: Option<BTreeSet<String>>,
    booking: SegmentBooking,
}

fn drive(
    (mut plan, mut action): (MovePlan, MoveAction),
    answers: &[(u8, FailureClass)],
    found: &[ObservedBooking],
) -> Run {
    let mut actions = vec![action.clone()];
    let mut standing: Option<BTreeSet<String>> = None;
    for &(pick, class) in answers {
        if matches!(action, MoveAction::Done(_)) {
            break;
        }
        let result = answer(&action, pick, class, found);
        match (&action, &result) {
            (_, MoveResult::Rescheduled(Ok(moved))) => {
                // Cal.com cancels the old booking of a reschedule.
                standing = Some(BTreeSet::from([moved.uid.clone()]));
            }
            (_, MoveResult::Found(Ok(found))) => {
                standing = Some(
                    found
                        .iter()
                        .filter(|b| {
                            !b.cancelled
                                && b.appointment == Some(identity().appointment_id.to_string())
                        })
                        .map(|b| b.uid.clone())
                        .collect(),
                );
            }
            (MoveAction::CancelStray { uid, .. }, MoveResult::Cancelled(answer))
                if !matches!(answer, CancelAnswer::Failed(_)) =>
            {
                if let Some(standing) = standing.as_mut() {
                    standing.remove(uid);
                }
            }
            _ => {}
        }
        action = plan.next(result);
        actions.push(action.clone());
    }
    let end = match &action {
        MoveAction::Done(end) => Some(end.clone()),
        _ => None,
    };
    Run {
        actions,
        end,
        standing,
        booking: plan.booking().clone(),
    }
}

fn any_start() -> impl Strategy<Value = (SegmentBooking, Option<EventTypeId>)> {
    (
        proptest::option::of(Just("u0")),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(FROM), Just(TO)]),
    )
        .prop_map(|(uid, unknown, from)| (booking(uid, unknown), from))
}

fn any_answers(len: usize) -> impl Strategy<Value = Vec<(u8, FailureClass)>> {
    proptest::collection::vec((any::<u8>(), any_class()), 0..len)
}

proptest! {
    #[test]
    fn never_books_the_new_time_while_a_booking_of_ours_may_stand(
        (start, from) in any_start(),
        answers in any_answers(30),
        found in any_found(),
    ) {
        let run = drive(plan(&start, from, TO), &answers, &found);
        match &run.end {
            Some(MoveEnd::Rebook) => {
                // Only after a look succeeded, and each booking of ours it found is gone.
                prop_assert_eq!(run.standing.clone(), Some(BTreeSet::new()), "{:?}", run.actions);
                prop_assert_eq!(run.booking.calcom_booking_uid.clone(), None);
            }
            Some(MoveEnd::Adopted) => {
                let kept = run.booking.calcom_booking_uid.clone().expect("kept");
                prop_assert_eq!(run.standing.clone(), Some(BTreeSet::from([kept])));
            }
            Some(MoveEnd::Moved { .. }) => {
                prop_assert_eq!(run.standing.clone().map(|s| s.len()), Some(1));
            }
            Some(end) => prop_assert!(!end.done_moving(), "{:?}", end),
            None => {}
        }
    }

    #[test]
    fn an_unknown_outcome_is_looked_for_before_anything_else(
        (start, from) in any_start(),
        answers in any_answers(30),
        found in any_found(),
    ) {
        let unknown = SegmentBooking { earlier_outcome_unknown: true, ..start };
        let run = drive(plan(&unknown, from, TO), &answers, &found);
        prop_assert!(
            matches!(run.actions[0], MoveAction::Find { logged: true, .. }),
            "{:?}",
            run.actions
        );
        prop_assert!(
            !run.actions.iter().any(|a| matches!(a, MoveAction::Reschedule { .. })),
            "{:?}",
            run.actions
        );
    }

    #[test]
    fn every_move_ends_within_a_bounded_number_of_actions(
        (start, from) in any_start(),
        answers in any_answers(200),
        found in any_found(),
    ) {
        let run = drive(plan(&start, from, TO), &answers, &found);
        // Reschedule and its record, the look and its record, two per booking found, the end.
        let bound = 5 + 2 * found.len();
        prop_assert!(run.actions.len() <= bound, "{:?}", run.actions);
        if answers.len() >= bound {
            prop_assert!(run.end.is_some(), "{:?}", run.actions);
        }
    }

    #[test]
    fn a_cancelled_appointment_leaves_nothing_of_ours_standing(
        (start, from) in any_start(),
        answers in any_answers(30),
        found in any_found(),
    ) {
        let run = drive(MovePlan::leave(&start, &identity(), at(0), from, now()), &answers, &found);
        prop_assert!(
            !run.actions.iter().any(|a| matches!(a, MoveAction::Reschedule { .. })),
            "{:?}",
            run.actions
        );
        if run.end == Some(MoveEnd::Left) {
            prop_assert_eq!(run.standing, Some(BTreeSet::new()));
        }
        prop_assert_eq!(run.booking, start, "the cancel that follows decides the segment");
    }

    #[test]
    fn ignores_answers_to_questions_it_did_not_ask(
        (start, from) in any_start(),
        answers in any_answers(30),
        found in any_found(),
        stray in (any::<u8>(), any_class()),
    ) {
        let (mut plan, mut action) = plan(&start, from, TO);
        let kinds = [
            MoveAction::Reschedule { uid: "x".into(), event_type: TO },
            MoveAction::Find { uid: None, event_type: TO, at: at(0), logged: true },
            MoveAction::CancelStray { uid: "x".into(), event_type: None },
            MoveAction::Record(AttemptResult { outcome: "x", error: None, calcom_booking_uid: None }),
        ];
        for (pick, class) in answers {
            if matches!(action, MoveAction::Done(_)) {
                break;
            }
            for kind in &kinds {
                if std::mem::discriminant(kind) != std::mem::discriminant(&action) {
                    let before = format!("{plan:?}");
                    let unasked = answer(kind, stray.0, stray.1, &found);
                    prop_assert_eq!(plan.next(unasked), action.clone());
                    prop_assert_eq!(before, format!("{plan:?}"));
                }
            }
            action = plan.next(answer(&action, pick, class, &found));
        }
    }
}
