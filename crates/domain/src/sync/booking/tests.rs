use chrono::{TimeDelta, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::sync::FailureClass;
use crate::sync::fixtures::subject;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0)
        .single()
        .expect("time")
}

pub(super) fn failure(class: FailureClass) -> CalcomFailure {
    CalcomFailure {
        class,
        kind: "kind".into(),
        http_status: None,
        message: "said".into(),
    }
}

fn ask(desired: DesiredState) -> RunAsk {
    RunAsk {
        desired,
        verify_bookings: false,
        moving: false,
    }
}

/// What Cal.com answers one call with.
#[derive(Debug, Clone)]
enum Answer {
    Ok,
    Fail(FailureClass),
}

pub(super) fn any_class() -> impl Strategy<Value = FailureClass> {
    prop_oneof![
        Just(FailureClass::NotSent),
        Just(FailureClass::OutcomeUnknown),
        Just(FailureClass::Server),
        Just(FailureClass::Decode),
        Just(FailureClass::DuplicateBooking),
        Just(FailureClass::SlotUnavailable),
        Just(FailureClass::NotFound),
        Just(FailureClass::Unauthorized),
        Just(FailureClass::Validation),
        Just(FailureClass::OutsideBookingWindow),
        Just(FailureClass::ManagedParent {
            event_type_id: EventTypeId(1001)
        }),
        (0u64..5_000).prop_map(|reset_after_ms| FailureClass::RateLimited { reset_after_ms }),
    ]
}

fn any_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        1 => Just(Answer::Ok),
        4 => any_class().prop_map(Answer::Fail),
    ]
}

fn failed(
    booking: &SegmentBooking,
    class: FailureClass,
    operation: Operation,
    at: DateTime<Utc>,
) -> Outcome {
    let failure = failure(class);
    let decision = booking.decide(
        &failure,
        operation,
        true,
        false,
        &subject(),
        None,
        &RetryPolicy::default(),
        at,
        0.5,
    );
    Outcome::Failed {
        failure,
        operation,
        decision,
    }
}

/// Drives one segment through runs, Cal.com answering each call from `answers` (then
/// always `Ok`), as the engine does: ask the step, call, apply. Returns the final booking,
/// how many creates were sent, and whether a create was ever sent while an earlier one may
/// have reached Cal.com without a reconcile in between.
fn drive(
    desired: DesiredState,
    answers: &[Answer],
    reconcile_finds: bool,
) -> (SegmentBooking, usize, bool) {
    let mut booking = SegmentBooking::new();
    let mut answers = answers.iter().cloned();
    let mut clock = now();
    let mut calls = 0;
    let mut creates = 0;
    let mut unreconciled_create = false;
    let mut twice = false;
    // Far more runs than any path needs: a path that does not settle fails the test.
    for _ in 0..200 {
        if booking.is_settled(desired) {
            break;
        }
        let step = booking.next_step(ask(desired), clock);
        let answer = answers.next().unwrap_or(Answer::Ok);
        calls += 1;
        let outcome = match step {
            Step::Skip => {
                clock = booking.next_attempt_at.unwrap_or(clock) + TimeDelta::seconds(1);
                continue;
            }
            Step::Book { reconcile, .. } => {
                if reconcile {
                    unreconciled_create = false;
                    if reconcile_finds && booking.earlier_outcome_unknown {
                        let applied = booking.apply(
                            Outcome::Booked {
                                uid: "found".into(),
                                id: 1,
                                event_type: EventTypeId(1001),
                            },
                            clock,
                        );
                        booking = applied.booking;
                        continue;
                    }
                }
                if unreconciled_create {
                    twice = true;
                }
                creates += 1;
                match answer {
                    Answer::Ok => Outcome::Booked {
                        uid: format!("uid-{creates}"),
                        id: creates as i64,
                        event_type: EventTypeId(1001),
                    },
                    Answer::Fail(class) => {
                        if class.may_have_created() {
                            unreconciled_create = true;
                        }
                        failed(&booking, class, Operation::Create, clock)
                    }
                }
            }
            Step::Cancel => match answer {
                Answer::Ok => Outcome::Cancelled,
                Answer::Fail(class) => failed(&booking, class, Operation::Cancel, clock),
            },
            Step::Verify | Step::Move => unreachable!("not asked for"),
        };
        booking = booking.apply(outcome, clock).booking;
    }
    let _ = calls;
    (booking, creates, twice)
}

fn rate_limits(answers: &[Answer]) -> usize {
    answers
        .iter()
        .filter(|a| matches!(a, Answer::Fail(FailureClass::RateLimited { .. })))
        .count()
}

proptest! {
    #[test]
    fn never_creates_again_while_a_create_may_have_reached_calcom(
        answers in proptest::collection::vec(any_answer(), 0..30),
        reconcile_finds in any::<bool>(),
    ) {
        let (_, _, twice) = drive(DesiredState::Booked, &answers, reconcile_finds);
        prop_assert!(!twice);
    }

    #[test]
    fn every_booking_path_settles_within_max_attempts(
        answers in proptest::collection::vec(any_answer(), 0..30),
        reconcile_finds in any::<bool>(),
    ) {
        let (booking, creates, _) = drive(DesiredState::Booked, &answers, reconcile_finds);
        prop_assert!(matches!(
            booking.status,
            SegmentSyncStatus::Synced | SegmentSyncStatus::NeedsReview
        ), "{booking:?}");
        let max = RetryPolicy::default().max_attempts as usize;
        prop_assert!(creates <= max + rate_limits(&answers), "{creates} creates");
        prop_assert!(booking.attempts as usize <= max);
        prop_assert_eq!(booking.review_reason.is_some(), booking.status == SegmentSyncStatus::NeedsReview);
    }

    #[test]
    fn every_cancel_path_settles_within_max_attempts(
        answers in proptest::collection::vec(any_answer(), 0..30),
    ) {
        let (booking, creates, _) = drive(DesiredState::Cancelled, &answers, false);
        prop_assert_eq!(creates, 0);
        prop_assert!(matches!(
            booking.status,
            SegmentSyncStatus::Cancelled | SegmentSyncStatus::NeedsReview
        ), "{booking:?}");
        prop_assert!(booking.attempts as usize <= RetryPolicy::default().max_attempts as usize);
    }
}

#[test]
fn a_segment_waiting_for_its_retry_is_skipped_until_due() {
    let mut booking = SegmentBooking::new();
    booking.status = SegmentSyncStatus::Failed;
    booking.next_attempt_at = Some(now() + TimeDelta::minutes(1));
    assert_eq!(
        booking.next_step(ask(DesiredState::Booked), now()),
        Step::Skip
    );
    assert_eq!(
        booking.next_step(ask(DesiredState::Cancelled), now()),
        Step::Skip
    );
    assert_eq!(
        booking.next_step(ask(DesiredState::Booked), now() + TimeDelta::minutes(2)),
        Step::Book {
            revalidate: false,
            reconcile: false
        }
    );
}

#[test]
fn a_booked_segment_is_verified_only_on_a_resync() {
    let booked = SegmentBooking::new()
        .apply(
            Outcome::Booked {
                uid: "u".into(),
                id: 1,
                event_type: EventTypeId(1001),
            },
            now(),
        )
        .booking;
    assert_eq!(
        booked.next_step(ask(DesiredState::Booked), now()),
        Step::Skip
    );
    let resync = RunAsk {
        verify_bookings: true,
        ..ask(DesiredState::Booked)
    };
    assert_eq!(booked.next_step(resync, now()), Step::Verify);
    let moving = RunAsk {
        moving: true,
        ..ask(DesiredState::Booked)
    };
    assert_eq!(booked.next_step(moving, now()), Step::Move);
}

#[test]
fn a_booking_gone_from_calcom_starts_the_segment_over() {
    let mut booked = SegmentBooking::new();
    booked.status = SegmentSyncStatus::Synced;
    booked.calcom_booking_uid = Some("u".into());
    booked.calcom_booking_id = Some(3);
    booked.attempts = 2;
    let applied = booked.apply(Outcome::Gone, now());
    assert_eq!(applied.booking.status, SegmentSyncStatus::Pending);
    assert_eq!(applied.booking.calcom_booking_uid, None);
    assert_eq!(applied.booking.calcom_booking_id, None);
    assert_eq!(applied.booking.attempts, 0);
}

#[test]
fn a_resync_starts_over_what_failed_or_waits_for_review() {
    let mut review = SegmentBooking::new();
    review.status = SegmentSyncStatus::NeedsReview;
    review.review_reason = Some("why".into());
    review.attempts = 8;
    let reset = review.on_resync(DesiredState::Cancelled).expect("reset");
    assert_eq!(reset.status, SegmentSyncStatus::Cancelling);
    assert_eq!((reset.attempts, reset.review_reason), (0, None));
    let booked = SegmentBooking {
        status: SegmentSyncStatus::Synced,
        ..SegmentBooking::new()
    };
    assert_eq!(booked.on_resync(DesiredState::Booked), None);
}

#[test]
fn a_create_without_an_answer_may_have_reached_calcom() {
    assert!(create_may_have_reached_calcom("create", None));
    assert!(create_may_have_reached_calcom(
        "reschedule",
        Some("unknown")
    ));
    assert!(!create_may_have_reached_calcom("create", Some("failed")));
    assert!(!create_may_have_reached_calcom("cancel", None));
}
