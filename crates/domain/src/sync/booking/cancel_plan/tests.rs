use proptest::prelude::*;

use super::*;
use crate::sync::booking::CANCEL_DONE_OUTCOMES;
use crate::sync::{FailureClass, SegmentSyncStatus};

fn failure() -> CalcomFailure {
    CalcomFailure {
        class: FailureClass::Server,
        kind: "server".into(),
        http_status: None,
        message: "said".into(),
    }
}

fn booking(uid: Option<&str>, unknown: bool, event_type: Option<i64>) -> SegmentBooking {
    SegmentBooking {
        status: SegmentSyncStatus::Cancelling,
        event_type_id: event_type,
        calcom_booking_uid: uid.map(str::to_owned),
        calcom_booking_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        review_reason: None,
        earlier_outcome_unknown: unknown,
    }
}

fn any_result() -> impl Strategy<Value = CancelResult> {
    let uid = prop_oneof![Just(None), "[a-c]".prop_map(Some)];
    let reconciled = prop_oneof![
        Just(Reconciled::Adopted),
        Just(Reconciled::Missing),
        Just(Reconciled::Failed(failure())),
    ];
    prop_oneof![
        prop_oneof![Just(None), Just(Some(failure()))].prop_map(CancelResult::LeftBehind),
        (reconciled, uid.clone())
            .prop_map(|(reconciled, uid)| CancelResult::Reconciled { reconciled, uid }),
        prop_oneof![
            Just(CancelAnswer::Cancelled),
            Just(CancelAnswer::AlreadyCancelled),
            Just(CancelAnswer::NotFound),
            Just(CancelAnswer::Failed(failure())),
        ]
        .prop_map(CancelResult::Cancel),
        prop_oneof![uid.prop_map(Ok), Just(Err(failure()))].prop_map(CancelResult::Successor),
        Just(CancelResult::Followed),
    ]
}

/// What a run of the plan came to, given the answers in turn (an answer is given to
/// whatever the plan asks, whether it fits or not).
struct Run {
    actions: Vec<CancelAction>,
    end: Option<CancelEnd>,
}

fn drive(booking: &SegmentBooking, moving: bool, answers: &[CancelResult]) -> Run {
    let (mut plan, mut action) = CancelPlan::new(booking, moving, Some(EventTypeId(7)));
    let mut actions = vec![action.clone()];
    for answer in answers {
        if let CancelAction::Done(end) = action {
            return Run {
                actions,
                end: Some(end),
            };
        }
        action = plan.next(answer.clone());
        actions.push(action.clone());
    }
    let end = match action {
        CancelAction::Done(end) => Some(end),
        _ => None,
    };
    Run { actions, end }
}

#[test]
fn a_kept_uid_is_cancelled_at_once() {
    let (mut plan, first) = CancelPlan::new(&booking(Some("a"), true, Some(3)), false, None);
    assert_eq!(first, CancelAction::Cancel { uid: "a".into() });
    assert_eq!(
        plan.next(CancelResult::Cancel(CancelAnswer::NotFound)),
        CancelAction::Done(CancelEnd::Gone(GoneAs::NotFound))
    );
}

#[test]
fn an_unknown_create_is_reconciled_on_its_own_event_type_first() {
    let (mut plan, first) =
        CancelPlan::new(&booking(None, true, Some(3)), true, Some(EventTypeId(9)));
    assert_eq!(first, CancelAction::CancelLeftBehind);
    assert_eq!(
        plan.next(CancelResult::LeftBehind(None)),
        CancelAction::Reconcile {
            event_type: EventTypeId(3)
        }
    );
    assert_eq!(
        plan.next(CancelResult::Reconciled {
            reconciled: Reconciled::Adopted,
            uid: Some("b".into())
        }),
        CancelAction::Cancel { uid: "b".into() }
    );
}

#[test]
fn a_moved_booking_is_followed_to_its_successor() {
    let (mut plan, _) = CancelPlan::new(&booking(Some("a"), false, None), false, None);
    assert_eq!(
        plan.next(CancelResult::Cancel(CancelAnswer::AlreadyCancelled)),
        CancelAction::FindSuccessor { uid: "a".into() }
    );
    assert_eq!(
        plan.next(CancelResult::Successor(Ok(Some("b".into())))),
        CancelAction::Follow {
            from: "a".into(),
            to: "b".into()
        }
    );
    assert_eq!(
        plan.next(CancelResult::Followed),
        CancelAction::Cancel { uid: "b".into() }
    );
    assert_eq!(
        plan.next(CancelResult::Cancel(CancelAnswer::AlreadyCancelled)),
        CancelAction::FindSuccessor { uid: "b".into() }
    );
    assert_eq!(
        plan.next(CancelResult::Successor(Ok(None))),
        CancelAction::Done(CancelEnd::Gone(GoneAs::AlreadyCancelled))
    );
}

#[test]
fn every_gone_outcome_is_a_cancel_done_outcome() {
    for gone in [
        GoneAs::Cancelled,
        GoneAs::NotFound,
        GoneAs::AlreadyCancelled,
    ] {
        assert!(CANCEL_DONE_OUTCOMES.contains(&gone.outcome()));
    }
}

proptest! {
    #[test]
    fn never_cancelled_while_a_create_outcome_is_unknown(
        answers in proptest::collection::vec(any_result(), 0..40),
        moving in any::<bool>(),
    ) {
        let run = drive(&booking(None, true, Some(3)), moving, &answers);
        let reconciled = run
            .actions
            .iter()
            .any(|a| matches!(a, CancelAction::Reconcile { .. }));
        prop_assert!(run.end != Some(CancelEnd::NothingToCancel) || reconciled);
    }

    #[test]
    fn follows_at_most_the_hop_limit(
        answers in proptest::collection::vec(any_result(), 0..200),
        unknown in any::<bool>(),
    ) {
        let run = drive(&booking(Some("a"), unknown, None), false, &answers);
        // An answer that did not fit names the same action again: count each follow once.
        let follows = run
            .actions
            .windows(2)
            .filter(|w| w[0] != w[1] && matches!(w[1], CancelAction::Follow { .. }))
            .count();
        prop_assert!(follows <= MAX_RESCHEDULE_HOPS);
    }

    #[test]
    fn ends_within_a_bounded_number_of_actions(
        answers in proptest::collection::vec(any_result(), 0..200),
        moving in any::<bool>(),
        unknown in any::<bool>(),
        uid in any::<bool>(),
    ) {
        let start = booking(uid.then_some("a"), unknown, Some(3));
        let (mut plan, mut action) = CancelPlan::new(&start, moving, None);
        let mut asked = 0;
        // Answer each action with what it asked for, chosen from the arbitrary answers.
        let mut answers = answers.into_iter();
        while !matches!(action, CancelAction::Done(_)) {
            asked += 1;
            prop_assert!(asked <= 3 + 3 * (MAX_RESCHEDULE_HOPS + 1));
            let fitting = answers.find(|r| fits(&action, r));
            let Some(result) = fitting else { break };
            action = plan.next(result);
        }
    }

    #[test]
    fn ignores_answers_to_questions_it_did_not_ask(
        answers in proptest::collection::vec(any_result(), 0..40),
        stray in any_result(),
    ) {
        let start = booking(None, true, Some(3));
        let (mut plan, mut action) = CancelPlan::new(&start, true, None);
        for answer in answers {
            if matches!(action, CancelAction::Done(_)) {
                break;
            }
            if !fits(&action, &stray) {
                let before = plan.clone();
                prop_assert_eq!(plan.next(stray.clone()), action.clone());
                prop_assert_eq!(format!("{before:?}"), format!("{plan:?}"));
            }
            action = plan.next(answer);
        }
    }
}

/// True when `result` answers `action`.
fn fits(action: &CancelAction, result: &CancelResult) -> bool {
    matches!(
        (action, result),
        (CancelAction::CancelLeftBehind, CancelResult::LeftBehind(_))
            | (
                CancelAction::Reconcile { .. },
                CancelResult::Reconciled { .. }
            )
            | (CancelAction::Cancel { .. }, CancelResult::Cancel(_))
            | (
                CancelAction::FindSuccessor { .. },
                CancelResult::Successor(_)
            )
            | (CancelAction::Follow { .. }, CancelResult::Followed)
    )
}

#[test]
fn an_endless_chain_of_moves_stops_at_the_hop_limit() {
    let (mut plan, mut action) = CancelPlan::new(&booking(Some("a"), false, None), false, None);
    let mut follows = 0;
    while !matches!(action, CancelAction::Done(_)) {
        let result = match &action {
            CancelAction::Cancel { .. } => CancelResult::Cancel(CancelAnswer::AlreadyCancelled),
            CancelAction::FindSuccessor { uid } => {
                CancelResult::Successor(Ok(Some(format!("{uid}+"))))
            }
            CancelAction::Follow { .. } => {
                follows += 1;
                CancelResult::Followed
            }
            other => panic!("not asked for: {other:?}"),
        };
        action = plan.next(result);
    }
    assert_eq!(follows, MAX_RESCHEDULE_HOPS);
    assert_eq!(
        action,
        CancelAction::Done(CancelEnd::Gone(GoneAs::AlreadyCancelled))
    );
}
