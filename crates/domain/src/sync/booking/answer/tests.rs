use proptest::prelude::*;

use super::*;
use crate::sync::booking::tests::{any_class, failure};
use crate::sync::fixtures::{now, subject};
use crate::sync::{DesiredState, FailureClass, RunAsk, Step};

fn any_booking() -> impl Strategy<Value = SegmentBooking> {
    (
        proptest::sample::select(SegmentSyncStatus::ALL.to_vec()),
        proptest::option::of(1i64..5),
        proptest::option::of("[a-c]{1,3}"),
        0i32..6,
        any::<bool>(),
    )
        .prop_map(
            |(status, event_type, uid, attempts, unknown)| SegmentBooking {
                status,
                event_type_id: event_type,
                calcom_booking_id: uid.as_ref().map(|_| 9),
                calcom_booking_uid: uid,
                attempts,
                earlier_outcome_unknown: unknown,
                ..SegmentBooking::new()
            },
        )
}

fn seen(uid: &str) -> BookingSeen {
    BookingSeen {
        uid: uid.into(),
        id: 77,
        event_type: EventTypeId(3),
    }
}

fn any_reply() -> impl Strategy<Value = CancelReply> {
    prop_oneof![
        Just(CancelReply::Cancelled),
        Just(CancelReply::AlreadyCancelled),
        any_class().prop_map(|c| CancelReply::NotFound(failure(c))),
        any_class().prop_map(|c| CancelReply::Failed(failure(c))),
    ]
}

fn any_answer() -> impl Strategy<Value = Answer> {
    let gone = prop_oneof![
        Just(GoneAs::Cancelled),
        Just(GoneAs::NotFound),
        Just(GoneAs::AlreadyCancelled)
    ];
    prop_oneof![
        any::<bool>().prop_map(|verify| Answer::Found {
            booking: seen("found"),
            verify
        }),
        Just(Answer::Missing),
        any_class().prop_map(|c| Answer::LookupFailed(failure(c))),
        Just(Answer::Created(seen("new"))),
        Just(Answer::CreatedOtherLength(seen("long"))),
        any_class().prop_map(|c| Answer::CreateFailed {
            failure: failure(c),
            event_type: EventTypeId(3)
        }),
        any_reply().prop_map(|reply| Answer::StrayCancelled {
            uid: "stray".into(),
            reply
        }),
        Just(Answer::CancelMoved {
            from: "old".into(),
            to: "moved".into()
        }),
        gone.prop_map(|gone| Answer::CancelGone {
            uid: "held".into(),
            gone
        }),
        any_class().prop_map(|c| Answer::CancelFailed {
            uid: "held".into(),
            failure: failure(c)
        }),
    ]
}

fn judge() -> (&'static RetryPolicy, DateTime<Utc>, f64) {
    static POLICY: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
    (POLICY.get_or_init(RetryPolicy::default), now(), 0.5)
}

proptest! {
    /// A create that may have reached Cal.com is never followed by a blind create: the next
    /// booking step of the segment reconciles first.
    #[test]
    fn a_create_that_may_have_booked_is_looked_for_before_the_next(
        booking in any_booking(),
        answer in any_answer(),
    ) {
        let may_have_booked = match &answer {
            Answer::CreateFailed { failure, .. } => failure.class.may_have_created(),
            Answer::CreatedOtherLength(_) => true,
            _ => false,
        };
        let taken = booking.take(answer, now());
        if may_have_booked {
            let ask = RunAsk { desired: DesiredState::Booked, verify_bookings: false, moving: false };
            let reconciles = matches!(taken.booking.book_step(ask), Step::Book { reconcile: true, .. });
            prop_assert!(reconciles, "{taken:?}");
        }
    }

    /// An answer that leaves a failure never saves a state the policy has not decided: the
    /// saved booking is neither synced nor cancelled, keeps its uid, and the failure is
    /// recorded on the attempt.
    #[test]
    fn a_failure_is_recorded_and_decided_later(booking in any_booking(), answer in any_answer()) {
        let before = booking.clone();
        let taken = booking.take(answer, now());
        if let Some(failure) = &taken.failure {
            prop_assert_eq!(taken.attempt.error.as_ref(), Some(&SegmentError::from(failure)));
            prop_assert!(taken.saved.status == before.status
                || matches!(taken.saved.status, SegmentSyncStatus::Syncing | SegmentSyncStatus::Cancelling));
            prop_assert_eq!(taken.saved.calcom_booking_uid, before.calcom_booking_uid);
            prop_assert_eq!(taken.booking.attempts, before.attempts);
        } else {
            prop_assert!(taken.attempt.error.is_none());
        }
    }

    /// A booking Cal.com showed us standing is kept and named on the attempt; a look that
    /// found nothing or could not read Cal.com changes neither the uid nor the status.
    #[test]
    fn what_stands_is_kept_and_what_is_unknown_changes_nothing(
        booking in any_booking(),
        answer in any_answer(),
    ) {
        let before = booking.clone();
        let taken = booking.take(answer.clone(), now());
        match answer {
            Answer::Found { booking: seen, .. } | Answer::Created(seen) => {
                prop_assert_eq!(taken.booking.status, SegmentSyncStatus::Synced);
                prop_assert_eq!(taken.booking.calcom_booking_uid.as_ref(), Some(&seen.uid));
                prop_assert_eq!(taken.attempt.calcom_booking_uid, Some(seen.uid));
            }
            Answer::Missing | Answer::LookupFailed(_) => {
                prop_assert_eq!(taken.booking.status, before.status);
                prop_assert_eq!(taken.booking.calcom_booking_uid, before.calcom_booking_uid);
                prop_assert_eq!(taken.booking.earlier_outcome_unknown, before.earlier_outcome_unknown);
            }
            Answer::CancelGone { .. } => {
                prop_assert_eq!(taken.booking.status, SegmentSyncStatus::Cancelled);
            }
            _ => {}
        }
    }

    /// A failure that ends a run never asks for a re-resolution nobody performs, and the
    /// attempt it consumed is counted.
    #[test]
    fn a_failure_that_ends_a_run_is_decided(
        booking in any_booking(),
        class in any_class(),
        cancel in any::<bool>(),
        re_resolved in any::<bool>(),
    ) {
        let operation = if cancel { Operation::Cancel } else { Operation::Create };
        let outcome = booking.fail(&failure(class), operation, re_resolved, &subject(), judge());
        let Outcome::Failed { decision, .. } = &outcome else {
            return Err(TestCaseError::fail(format!("{outcome:?}")));
        };
        prop_assert!(!matches!(decision, Decision::ReResolveEventType));
        let applied = booking.clone().apply(outcome, now()).booking;
        prop_assert_eq!(
            applied.attempts,
            booking.attempts + i32::from(class.consumes_attempt())
        );
    }

    /// Without a way to reach Cal.com the segment waits for a person, with a reason.
    #[test]
    fn without_calcom_a_person_looks(booking in any_booking(), class in any_class()) {
        let outcome = booking.without_calcom(&failure(class), &subject(), judge());
        let Outcome::Review { reason, failure: shown } = outcome else {
            return Err(TestCaseError::fail("not a review"));
        };
        prop_assert!(!reason.is_empty());
        prop_assert_eq!(shown, Some(failure(class)));
    }
}

#[test]
fn a_refused_map_names_the_fix_and_records_the_refusal() {
    let refusal = Refusal::LengthMismatch {
        event_type_id: EventTypeId(3),
        length_minutes: 45,
        segment_minutes: 30,
    };
    let (resolved, attempt) = Resolved::from_reply(Ok(Err(refusal.clone())), &subject());
    assert!(matches!(resolved, Resolved::Refused(reason) if !reason.is_empty()));
    assert_eq!(attempt.outcome, "failed");
    assert_eq!(
        attempt.error.map(|e| e.kind),
        Some(refusal.code().to_string())
    );
    let (resolved, attempt) = Resolved::from_reply(Ok(Ok(EventTypeId(4))), &subject());
    assert_eq!(resolved, Resolved::Bookable(EventTypeId(4)));
    assert_eq!(attempt.outcome, "resolved");
    let lost = failure(FailureClass::NotSent);
    let (resolved, attempt) = Resolved::from_reply(Err(lost.clone()), &subject());
    assert_eq!(resolved, Resolved::Unknown);
    assert_eq!(attempt.error, Some(SegmentError::from(&lost)));
}

#[test]
fn only_a_look_that_found_nothing_books_a_verified_segment_again() {
    assert_eq!(Reconciled::Missing.verified(), Some(Outcome::Gone));
    assert_eq!(Reconciled::Adopted.verified(), None);
    let lost = Reconciled::Failed(failure(FailureClass::NotSent));
    assert_eq!(lost.verified(), None);
}
