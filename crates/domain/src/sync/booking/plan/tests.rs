use chrono::{TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::sync::booking::tests::{any_class, failure};
use crate::sync::fixtures::subject;

const MAPPED: EventTypeId = EventTypeId(1001);
const CHILD: EventTypeId = EventTypeId(2002);

fn booking(earlier_outcome_unknown: bool, uid_held: bool) -> SegmentBooking {
    SegmentBooking {
        earlier_outcome_unknown,
        calcom_booking_uid: uid_held.then(|| "uid-1".to_string()),
        ..SegmentBooking::new()
    }
}

fn plan(booking: &SegmentBooking, revalidate: bool) -> (BookPlan, BookAction) {
    let ask = super::super::RunAsk {
        desired: crate::sync::DesiredState::Booked,
        verify_bookings: revalidate,
        moving: false,
    };
    BookPlan::new(booking, booking.book_step(ask), MAPPED, subject(), 60)
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0)
        .single()
        .expect("time")
}

/// One answer of Cal.com (or the policy) to whatever the plan asks, picked by `pick`.
fn answer(action: &BookAction, pick: u8, class: FailureClass) -> BookResult {
    match action {
        BookAction::Resolve => BookResult::Resolved(match pick % 4 {
            0 => Resolved::Bookable(MAPPED),
            1 => Resolved::Bookable(CHILD),
            2 => Resolved::Refused("refused".into()),
            _ => Resolved::Unknown,
        }),
        BookAction::Reconcile { .. } => BookResult::Reconciled(match pick % 3 {
            0 => Reconciled::Adopted,
            1 => Reconciled::Missing,
            _ => Reconciled::Failed(failure(class)),
        }),
        BookAction::CheckDrift { event_type, .. } => {
            BookResult::Drift(pick.is_multiple_of(2).then_some(Refusal::NotFound {
                event_type_id: *event_type,
            }))
        }
        BookAction::Create { .. } => BookResult::Created(match pick % 3 {
            0 => Created::Booked,
            1 => Created::OtherLength(90),
            _ => Created::Failed(failure(class)),
        }),
        BookAction::FindOwnInTheWay => BookResult::InTheWay(match pick % 3 {
            0 => BusyCause::Ours(OwnBookingInTheWay {
                appointment_id: uuid::Uuid::from_u128(9),
                segment_key: "A".into(),
                calcom_booking_uid: "uid-9".into(),
            }),
            1 => BusyCause::Gone,
            _ => BusyCause::Unknown,
        }),
        BookAction::Decide { .. } => BookResult::Decided(match pick % 4 {
            0 => Decision::Retry { at: at() },
            1 => Decision::ReconcileFirst {
                at: at() + TimeDelta::minutes(1),
            },
            2 => Decision::NeedsReview {
                reason: "review".into(),
            },
            _ => Decision::ReResolveEventType,
        }),
        BookAction::Done(_) => BookResult::Drift(None),
    }
}

/// The longest run: resolve, reconcile, drift, busy create, drift, in the way (gone), the
/// create again, drift, in the way, decide, resolve again, and the same once more on the
/// child (the busy create tried again once per run), then the end.
const MAX_ACTIONS: usize = 18;

proptest! {
    #[test]
    fn a_plan_ends_within_its_bound_creating_only_after_any_owed_reconcile(
        unknown in any::<bool>(),
        uid_held in any::<bool>(),
        revalidate in any::<bool>(),
        picks in proptest::collection::vec((any::<u8>(), any_class()), MAX_ACTIONS),
    ) {
        let booking = booking(unknown, uid_held);
        let (mut plan, mut action) = plan(&booking, revalidate);
        // May a create have reached Cal.com with no reconcile since?
        let mut unreconciled = unknown || uid_held;
        let mut resolves = 0;
        let mut actions = 1;
        let mut picks = picks.into_iter();
        while !matches!(action, BookAction::Done(_)) {
            prop_assert!(actions < MAX_ACTIONS, "no end after {actions} actions");
            let (pick, class) = picks.next().unwrap_or((0, FailureClass::NotSent));
            match &action {
                BookAction::Create { .. } => prop_assert!(!unreconciled, "created before reconciling"),
                BookAction::Resolve => resolves += 1,
                _ => {}
            }
            let result = answer(&action, pick, class);
            match &result {
                BookResult::Reconciled(Reconciled::Missing) => unreconciled = false,
                BookResult::Created(Created::Failed(f)) if f.class.may_have_created() => {
                    unreconciled = true;
                }
                _ => {}
            }
            action = plan.next(result);
            actions += 1;
        }
        prop_assert!(resolves <= 1 + usize::from(revalidate), "{resolves} resolves");
        prop_assert!(actions <= MAX_ACTIONS);
    }

    #[test]
    fn an_answer_to_another_question_changes_nothing(
        unknown in any::<bool>(),
        revalidate in any::<bool>(),
        pick in any::<u8>(),
    ) {
        let (mut plan, action) = plan(&booking(unknown, false), revalidate);
        let stray = match action {
            BookAction::Create { .. } => BookResult::InTheWay(BusyCause::Unknown),
            _ => BookResult::Created(Created::Booked),
        };
        prop_assert_eq!(plan.next(stray), action.clone());
        // The awaited answer still moves it on.
        let next = plan.next(answer(&action, pick, FailureClass::Server));
        prop_assert_ne!(next, action);
    }
}

#[test]
fn a_fresh_segment_checks_drift_then_creates() {
    let (mut plan, first) = plan(&booking(false, false), false);
    assert_eq!(
        first,
        BookAction::CheckDrift {
            event_type: MAPPED,
            forget_first: false
        }
    );
    assert_eq!(
        plan.next(BookResult::Drift(None)),
        BookAction::Create { event_type: MAPPED }
    );
    assert_eq!(
        plan.next(BookResult::Created(Created::Booked)),
        BookAction::Done(BookEnd::Booked)
    );
}

#[test]
fn an_unknown_earlier_create_is_reconciled_first() {
    let (_, first) = plan(&booking(true, false), false);
    assert_eq!(first, BookAction::Reconcile { event_type: MAPPED });
    let (_, first) = plan(&booking(true, false), true);
    assert_eq!(first, BookAction::Resolve);
}

#[test]
fn busy_rechecks_drift_from_cal_com_then_looks_for_our_booking_then_decides() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    let busy = failure(FailureClass::SlotUnavailable);
    assert_eq!(
        plan.next(BookResult::Created(Created::Failed(busy.clone()))),
        BookAction::CheckDrift {
            event_type: MAPPED,
            forget_first: true
        }
    );
    assert_eq!(
        plan.next(BookResult::Drift(None)),
        BookAction::FindOwnInTheWay
    );
    assert_eq!(
        plan.next(BookResult::InTheWay(BusyCause::Unknown)),
        BookAction::Decide {
            failure: busy.clone(),
            event_type: MAPPED,
            re_resolved: false,
            in_the_way: None
        }
    );
    let decision = Decision::Retry { at: at() };
    assert_eq!(
        plan.next(BookResult::Decided(decision.clone())),
        BookAction::Done(BookEnd::Decided {
            decision,
            failure: busy
        })
    );
}

#[test]
fn busy_with_nothing_left_in_the_way_creates_once_more_then_decides() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    let busy = failure(FailureClass::SlotUnavailable);
    let busy_again = |plan: &mut BookPlan| {
        plan.next(BookResult::Created(Created::Failed(busy.clone())));
        plan.next(BookResult::Drift(None))
    };
    assert_eq!(busy_again(&mut plan), BookAction::FindOwnInTheWay);
    // The copy of ours that was in the way was cancelled by then: the create goes again.
    assert_eq!(
        plan.next(BookResult::InTheWay(BusyCause::Gone)),
        BookAction::Create { event_type: MAPPED }
    );
    assert_eq!(busy_again(&mut plan), BookAction::FindOwnInTheWay);
    // Busy again with nothing to see: not a booking (working hours, a calendar); decide.
    assert_eq!(
        plan.next(BookResult::InTheWay(BusyCause::Gone)),
        BookAction::Decide {
            failure: busy.clone(),
            event_type: MAPPED,
            re_resolved: false,
            in_the_way: None
        }
    );
}

#[test]
fn a_create_that_goes_again_after_busy_can_book() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    plan.next(BookResult::Created(Created::Failed(failure(
        FailureClass::SlotUnavailable,
    ))));
    plan.next(BookResult::Drift(None));
    plan.next(BookResult::InTheWay(BusyCause::Gone));
    assert_eq!(
        plan.next(BookResult::Created(Created::Booked)),
        BookAction::Done(BookEnd::Booked)
    );
}

#[test]
fn busy_from_a_grown_event_type_is_reviewed_as_drift_with_the_create_failure() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    let busy = failure(FailureClass::SlotUnavailable);
    plan.next(BookResult::Created(Created::Failed(busy.clone())));
    let refusal = Refusal::LengthMismatch {
        event_type_id: MAPPED,
        length_minutes: 90,
        segment_minutes: 60,
    };
    let reason = event_map_refused_reason(&subject(), &refusal);
    assert_eq!(
        plan.next(BookResult::Drift(Some(refusal))),
        BookAction::Done(BookEnd::Review {
            reason,
            failure: Some(busy)
        })
    );
}

#[test]
fn a_managed_parent_is_resolved_again_once_and_the_child_booked() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    let parent = failure(FailureClass::ManagedParent {
        event_type_id: MAPPED,
    });
    plan.next(BookResult::Created(Created::Failed(parent.clone())));
    assert_eq!(
        plan.next(BookResult::Decided(Decision::ReResolveEventType)),
        BookAction::Resolve
    );
    assert_eq!(
        plan.next(BookResult::Resolved(Resolved::Bookable(CHILD))),
        BookAction::CheckDrift {
            event_type: CHILD,
            forget_first: false
        }
    );
    assert!(plan.re_resolved());
    assert_eq!(plan.event_type(), CHILD);
    plan.next(BookResult::Drift(None));
    plan.next(BookResult::Created(Created::Failed(parent.clone())));
    let reason = managed_parent_without_child_reason(&subject(), MAPPED);
    assert_eq!(
        plan.next(BookResult::Decided(Decision::ReResolveEventType)),
        BookAction::Done(BookEnd::Review {
            reason,
            failure: Some(parent)
        })
    );
}

#[test]
fn a_managed_parent_without_a_child_is_reviewed() {
    let (mut plan, _) = plan(&booking(false, false), false);
    plan.next(BookResult::Drift(None));
    let parent = failure(FailureClass::ManagedParent {
        event_type_id: MAPPED,
    });
    plan.next(BookResult::Created(Created::Failed(parent.clone())));
    plan.next(BookResult::Decided(Decision::ReResolveEventType));
    let reason = managed_parent_without_child_reason(&subject(), MAPPED);
    assert_eq!(
        plan.next(BookResult::Resolved(Resolved::Bookable(MAPPED))),
        BookAction::Done(BookEnd::Review {
            reason,
            failure: Some(parent)
        })
    );
}
