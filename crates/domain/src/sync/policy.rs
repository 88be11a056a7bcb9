//! The failure policy: how a failed Cal.com call is classified and what to do next
//! ([`decide`]); kept apart from the review texts it hands out and from the backoff timing,
//! so the decisions read on their own.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::review::{
    booking_window_reason, cancel_refused_reason, event_type_not_found_reason, exhausted_reason,
    own_booking_in_the_way_reason, rejected_reason, start_passed_reason, unauthorized_reason,
};
use super::{
    ObservedBooking, RetryPolicy, ReviewSubject, SegmentSyncStatus,
    managed_parent_without_child_reason, slot_unavailable_reason,
};
use crate::EventTypeId;

/// What kind of failure a Cal.com call ended in, classified once by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum FailureClass {
    /// The request certainly never reached Cal.com.
    NotSent,
    /// Sent, but no answer came back (timeout, connection lost): a booking may exist.
    OutcomeUnknown,
    /// HTTP 5xx: may be transient, and a create may still have gone through.
    Server,
    /// A 2xx answer we could not read: the call may well have succeeded.
    Decode,
    /// HTTP 429: nothing was processed; wait until the limit resets.
    RateLimited {
        reset_after_ms: u64,
    },
    /// The event type is a managed parent, which Cal.com refuses to book.
    ManagedParent {
        event_type_id: EventTypeId,
    },
    /// The host is busy or unavailable at that time.
    SlotUnavailable,
    /// The start is too soon (the event type's minimum booking notice) or too far ahead
    /// (its booking window): Cal.com's settings, not the host's calendar, refuse it.
    OutsideBookingWindow,
    /// Cal.com's own duplicate protection: a booking for this organizer and time exists.
    DuplicateBooking,
    NotFound,
    Unauthorized,
    /// Cal.com refused the request as it stands (another 4xx).
    Validation,
    /// Our own client refused to send the request (it would not be valid).
    InvalidRequest,
}

impl FailureClass {
    /// True when a create that ended like this may have left a booking in Cal.com, so the
    /// next attempt must look for it before creating another.
    pub fn may_have_created(self) -> bool {
        matches!(
            self,
            Self::OutcomeUnknown | Self::Server | Self::Decode | Self::DuplicateBooking
        )
    }

    /// Rate-limited calls were refused before any processing; they do not use up the
    /// attempt budget (the client's own limiter keeps them rare).
    pub fn consumes_attempt(self) -> bool {
        !matches!(self, Self::RateLimited { .. })
    }
}

/// A failed Cal.com call as the policy sees it: the class, the HTTP status if an answer
/// arrived, Cal.com's message (or ours), and the client's stable error kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalcomFailure {
    pub class: FailureClass,
    pub kind: String,
    pub http_status: Option<u16>,
    pub message: String,
}

/// Which call to Cal.com failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Creating the segment's booking.
    Create,
    /// Cancelling it (the appointment was cancelled).
    Cancel,
}

/// Everything the policy needs to know about one failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct FailureInput<'a> {
    pub operation: Operation,
    pub failure: &'a CalcomFailure,
    /// Attempts that counted so far, including this one.
    pub attempts: u32,
    /// An earlier create for this segment may have reached Cal.com (unknown outcome, 5xx,
    /// crash after the write-ahead record).
    pub earlier_outcome_unknown: bool,
    /// The managed parent was already re-resolved once for this segment.
    pub event_type_re_resolved: bool,
    pub subject: &'a ReviewSubject,
    /// After a "busy" answer: a booking of ours found standing in the segment's time for
    /// the same host (see [`own_booking_in_the_way`]).
    pub in_the_way: Option<&'a OwnBookingInTheWay>,
}

/// A booking phasebook made that stands in the time a create was refused for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnBookingInTheWay {
    pub appointment_id: Uuid,
    pub segment_key: String,
    pub calcom_booking_uid: String,
}

/// Among the host's active bookings around a segment's time (`found`), the first one of
/// this tenant's that overlaps `start..end`: Cal.com's "busy" is then our own booking — a
/// copy this appointment is converging away, or another appointment's booking moved there
/// in Cal.com — not the host's calendar.
pub fn own_booking_in_the_way(
    tenant_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    found: &[ObservedBooking],
) -> Option<OwnBookingInTheWay> {
    let tenant = tenant_id.to_string();
    found
        .iter()
        .filter(|b| stands_in(b, start, end))
        .find_map(|b| {
            let ours = b
                .tenant
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(&tenant));
            let appointment_id = Uuid::parse_str(b.appointment.as_deref()?).ok()?;
            ours.then(|| OwnBookingInTheWay {
                appointment_id,
                segment_key: b.segment.clone().unwrap_or_default(),
                calcom_booking_uid: b.uid.clone(),
            })
        })
}

/// True when `booking` is active and overlaps `start..end` (touching an edge is not).
fn stands_in(booking: &ObservedBooking, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    !booking.cancelled && booking.start < end && booking.end > start
}

/// What the host's calendar shows in a segment's time after Cal.com answered "busy".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusyCause {
    /// A booking of ours stands there (see [`own_booking_in_the_way`]).
    Ours(OwnBookingInTheWay),
    /// The host's bookings were read and none stands there any more. What made Cal.com
    /// answer "busy" left in between (a copy of ours that a sibling segment's run cancelled
    /// meanwhile), or is no booking at all (working hours, a connected calendar).
    Gone,
    /// Another booking stands there, or the host's bookings could not be read.
    Unknown,
}

impl BusyCause {
    /// Reads the host's active bookings around the segment's time; `found` is `None` when
    /// Cal.com could not be read.
    pub fn of(
        tenant_id: Uuid,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        found: Option<&[ObservedBooking]>,
    ) -> Self {
        let Some(found) = found else {
            return Self::Unknown;
        };
        if let Some(ours) = own_booking_in_the_way(tenant_id, start, end, found) {
            return Self::Ours(ours);
        }
        if found.iter().any(|b| stands_in(b, start, end)) {
            Self::Unknown
        } else {
            Self::Gone
        }
    }

    /// The booking of ours in the way, when one is.
    pub fn ours(self) -> Option<OwnBookingInTheWay> {
        match self {
            Self::Ours(ours) => Some(ours),
            Self::Gone | Self::Unknown => None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try the same call again at `at`; nothing can have been created.
    Retry { at: DateTime<Utc> },
    /// At `at`, first list Cal.com's bookings for the segment and adopt ours if it exists;
    /// create only if none does.
    ReconcileFirst { at: DateTime<Utc> },
    /// Resolve the host's child of the managed parent again, then retry with it.
    ReResolveEventType,
    /// Stop: a person must act. The reason says who, what and how to fix it.
    NeedsReview { reason: String },
}

impl Decision {
    /// The segment's status while this decision stands.
    pub fn segment_status(&self, operation: Operation) -> SegmentSyncStatus {
        match (self, operation) {
            (Self::NeedsReview { .. }, _) => SegmentSyncStatus::NeedsReview,
            (_, Operation::Cancel) => SegmentSyncStatus::Cancelling,
            (Self::ReResolveEventType, Operation::Create) => SegmentSyncStatus::Syncing,
            // Waiting out a backoff or a rate limit: nothing is wrong yet, the segment is
            // simply not booked; `next_attempt_at` and `last_error` say when and why.
            (_, Operation::Create) => SegmentSyncStatus::Pending,
        }
    }
}

/// The policy: what to do after a failed Cal.com call. Transient failures retry with
/// capped exponential backoff and full jitter; a failure that may have created a booking
/// reconciles before the next create; rate limits wait for the reset; permanent failures
/// never retry blindly; and after `policy.max_attempts` the segment is flagged.
pub fn decide(
    input: &FailureInput<'_>,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let failure = input.failure;
    let subject = input.subject;
    let later = |attempts: u32| now + to_delta(policy.backoff(attempts, jitter));
    let exhausted = input.attempts >= policy.max_attempts;

    if let FailureClass::RateLimited { reset_after_ms } = failure.class {
        // Spread waiting segments over up to a second so they do not all return at once.
        let wait = Duration::from_millis(reset_after_ms)
            + Duration::from_millis((jitter.clamp(0.0, 1.0) * 1000.0) as u64);
        let at = now + to_delta(wait);
        return match input.operation {
            Operation::Create if input.earlier_outcome_unknown => Decision::ReconcileFirst { at },
            _ => Decision::Retry { at },
        };
    }

    if input.operation == Operation::Cancel {
        return match failure.class {
            FailureClass::NotSent
            | FailureClass::OutcomeUnknown
            | FailureClass::Server
            | FailureClass::Decode
            | FailureClass::DuplicateBooking
                if !exhausted =>
            {
                Decision::Retry {
                    at: later(input.attempts),
                }
            }
            _ if exhausted => Decision::NeedsReview {
                reason: exhausted_reason(subject, Operation::Cancel, input.attempts, failure),
            },
            _ => Decision::NeedsReview {
                reason: cancel_refused_reason(subject, failure),
            },
        };
    }

    // "Busy" because of a booking of ours: our own copy of this appointment (its run is
    // cancelling it) is converged before the next create; another appointment's booking
    // moved into this time in Cal.com is named with a fix.
    if matches!(failure.class, FailureClass::SlotUnavailable)
        && subject.starts_at > now
        && let Some(other) = input.in_the_way
    {
        if other.appointment_id == subject.appointment_id && !exhausted {
            return Decision::ReconcileFirst {
                at: later(input.attempts),
            };
        }
        return Decision::NeedsReview {
            reason: own_booking_in_the_way_reason(subject, other, failure),
        };
    }

    match failure.class {
        FailureClass::NotSent if !exhausted => Decision::Retry {
            at: later(input.attempts),
        },
        FailureClass::OutcomeUnknown
        | FailureClass::Server
        | FailureClass::Decode
        | FailureClass::DuplicateBooking
            if !exhausted =>
        {
            Decision::ReconcileFirst {
                at: later(input.attempts),
            }
        }
        // After an earlier create may have landed, "host busy" is most likely our own
        // booking (Cal.com answers a repeated create that way): look once more, then stop.
        FailureClass::SlotUnavailable if input.earlier_outcome_unknown && input.attempts < 3 => {
            Decision::ReconcileFirst {
                at: later(input.attempts),
            }
        }
        FailureClass::ManagedParent { .. } if !input.event_type_re_resolved => {
            Decision::ReResolveEventType
        }
        FailureClass::ManagedParent { event_type_id } => Decision::NeedsReview {
            reason: managed_parent_without_child_reason(subject, event_type_id),
        },
        FailureClass::SlotUnavailable | FailureClass::OutsideBookingWindow
            if subject.starts_at <= now =>
        {
            Decision::NeedsReview {
                reason: start_passed_reason(subject, failure),
            }
        }
        FailureClass::OutsideBookingWindow => Decision::NeedsReview {
            reason: booking_window_reason(subject, failure),
        },
        FailureClass::SlotUnavailable if subject.starts_at <= now => Decision::NeedsReview {
            reason: start_passed_reason(subject, failure),
        },
        FailureClass::SlotUnavailable => Decision::NeedsReview {
            reason: slot_unavailable_reason(subject, failure),
        },
        FailureClass::NotFound => Decision::NeedsReview {
            reason: event_type_not_found_reason(subject, failure),
        },
        FailureClass::Unauthorized => Decision::NeedsReview {
            reason: unauthorized_reason(subject, failure),
        },
        FailureClass::Validation | FailureClass::InvalidRequest => Decision::NeedsReview {
            reason: rejected_reason(subject, failure),
        },
        FailureClass::NotSent
        | FailureClass::OutcomeUnknown
        | FailureClass::Server
        | FailureClass::Decode
        | FailureClass::DuplicateBooking
        | FailureClass::RateLimited { .. } => Decision::NeedsReview {
            reason: exhausted_reason(subject, Operation::Create, input.attempts, failure),
        },
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The client's error kinds that mean Cal.com could not be reached or did not answer in
/// time (see `calcom_client::CalcomError::kind`).
pub const CALCOM_UNAVAILABLE_KINDS: [&str; 5] = [
    "transport",
    "outcome_unknown",
    "server",
    "decode",
    "rate_limited",
];

/// True when every segment in review got there only because Cal.com was unavailable
/// (each one's last error is one of [`CALCOM_UNAVAILABLE_KINDS`]): nothing needs a person's
/// fix, so once Cal.com answers again the appointment is simply retried. `kinds` holds the
/// last error kind of each segment in review (`None`: no error, e.g. a missing map).
pub fn only_calcom_was_unavailable(kinds: &[Option<&str>]) -> bool {
    !kinds.is_empty()
        && kinds
            .iter()
            .all(|k| k.is_some_and(|k| CALCOM_UNAVAILABLE_KINDS.contains(&k)))
}

/// The error kept on a segment (`last_error`) and shown by `GET /appointments/{id}/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentError {
    /// The client's stable error kind (`server`, `slot_unavailable`, …).
    pub kind: String,
    pub http_status: Option<u16>,
    pub message: String,
}

impl From<&CalcomFailure> for SegmentError {
    fn from(failure: &CalcomFailure) -> Self {
        Self {
            kind: failure.kind.clone(),
            http_status: failure.http_status,
            message: failure.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::{now, subject};
    use proptest::prelude::*;

    fn failure(class: FailureClass) -> CalcomFailure {
        CalcomFailure {
            class,
            kind: "x".into(),
            http_status: Some(500),
            message: "boom".into(),
        }
    }

    fn listed(
        start_minute: i64,
        minutes: i64,
        tenant: Option<Uuid>,
        cancelled: bool,
    ) -> ObservedBooking {
        let start = subject().starts_at + TimeDelta::minutes(start_minute);
        ObservedBooking {
            id: start_minute,
            uid: format!("uid-{start_minute}"),
            event_type_id: Some(EventTypeId(1001)),
            start,
            end: start + TimeDelta::minutes(minutes),
            cancelled,
            tenant: tenant.map(|t| t.to_string()),
            appointment: tenant.map(|_| subject().appointment_id.to_string()),
            segment: tenant.map(|_| "A".to_string()),
            rescheduled_to_uid: None,
        }
    }

    #[test]
    fn a_busy_cause_names_ours_something_else_or_nothing_left_in_the_segments_time() {
        let tenant = Uuid::from_u128(1);
        let start = subject().starts_at;
        let end = start + TimeDelta::minutes(30);
        let cause = |found: &[ObservedBooking]| BusyCause::of(tenant, start, end, Some(found));
        // Our own booking of 45 minutes from 30 minutes before reaches into the segment.
        let ours = listed(-30, 45, Some(tenant), false);
        assert_eq!(
            cause(std::slice::from_ref(&ours))
                .ours()
                .map(|o| o.calcom_booking_uid),
            Some(ours.uid.clone())
        );
        // Someone else's booking there is a real busy host.
        assert_eq!(cause(&[listed(10, 30, None, false)]), BusyCause::Unknown);
        // Cancelled since, or only touching the segment's edges: nothing stands there now.
        let cancelled = listed(-30, 45, Some(tenant), true);
        let before = listed(-30, 30, None, false);
        let after = listed(30, 30, Some(tenant), false);
        assert_eq!(cause(&[cancelled, before, after]), BusyCause::Gone);
        assert_eq!(cause(&[]), BusyCause::Gone);
        // Unread is not "gone".
        assert_eq!(BusyCause::of(tenant, start, end, None), BusyCause::Unknown);
    }

    #[test]
    fn only_reviews_caused_by_an_unreachable_calcom_are_retried_by_themselves() {
        assert!(only_calcom_was_unavailable(&[
            Some("server"),
            Some("transport")
        ]));
        assert!(!only_calcom_was_unavailable(&[Some("server"), None]));
        assert!(!only_calcom_was_unavailable(&[Some("slot_unavailable")]));
        assert!(!only_calcom_was_unavailable(&[]));
    }

    #[test]
    fn a_start_outside_the_booking_window_names_the_event_type_settings_not_a_busy_host() {
        let f = failure(FailureClass::OutsideBookingWindow);
        let s = subject();
        let Decision::NeedsReview { reason } = decide(
            &input(&f, &s, 1, Operation::Create),
            &RetryPolicy::default(),
            now(),
            0.5,
        ) else {
            panic!("review");
        };
        assert!(reason.contains("booking window"), "{reason}");
        assert!(!reason.contains("busy"), "{reason}");
    }

    #[test]
    fn a_refused_start_in_the_past_says_so_and_never_asks_to_free_the_time() {
        let f = failure(FailureClass::SlotUnavailable);
        let s = subject();
        let later = s.starts_at + TimeDelta::minutes(5);
        let Decision::NeedsReview { reason } = decide(
            &input(&f, &s, 1, Operation::Create),
            &RetryPolicy::default(),
            later,
            0.5,
        ) else {
            panic!("review");
        };
        assert!(reason.contains("has passed"), "{reason}");
        assert!(!reason.contains("free that time"), "{reason}");
        let Decision::NeedsReview { reason } = decide(
            &input(&f, &s, 1, Operation::Create),
            &RetryPolicy::default(),
            now(),
            0.5,
        ) else {
            panic!("review");
        };
        assert!(reason.contains("busy or unavailable"), "{reason}");
    }

    fn input<'a>(
        f: &'a CalcomFailure,
        s: &'a ReviewSubject,
        attempts: u32,
        operation: Operation,
    ) -> FailureInput<'a> {
        FailureInput {
            operation,
            failure: f,
            attempts,
            earlier_outcome_unknown: false,
            event_type_re_resolved: false,
            subject: s,
            in_the_way: None,
        }
    }

    #[test]
    fn timeouts_and_server_errors_reconcile_before_the_next_create() {
        let s = subject();
        for class in [
            FailureClass::OutcomeUnknown,
            FailureClass::Server,
            FailureClass::Decode,
            FailureClass::DuplicateBooking,
        ] {
            let f = failure(class);
            let d = decide(
                &input(&f, &s, 1, Operation::Create),
                &RetryPolicy::default(),
                now(),
                0.5,
            );
            assert!(
                matches!(d, Decision::ReconcileFirst { at } if at > now()),
                "{class:?}"
            );
        }
        let f = failure(FailureClass::NotSent);
        let d = decide(
            &input(&f, &s, 1, Operation::Create),
            &RetryPolicy::default(),
            now(),
            0.5,
        );
        assert!(matches!(d, Decision::Retry { .. }));
    }

    #[test]
    fn rate_limits_wait_for_the_reset() {
        let s = subject();
        let f = failure(FailureClass::RateLimited {
            reset_after_ms: 30_000,
        });
        let d = decide(
            &input(&f, &s, 50, Operation::Create),
            &RetryPolicy::default(),
            now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Retry {
                at: now() + TimeDelta::seconds(30)
            }
        );
    }

    #[test]
    fn managed_parent_is_re_resolved_once_then_reviewed_with_the_fix() {
        let s = subject();
        let f = failure(FailureClass::ManagedParent {
            event_type_id: EventTypeId(900),
        });
        let mut i = input(&f, &s, 1, Operation::Create);
        assert_eq!(
            decide(&i, &RetryPolicy::default(), now(), 0.5),
            Decision::ReResolveEventType
        );
        i.event_type_re_resolved = true;
        let Decision::NeedsReview { reason } = decide(&i, &RetryPolicy::default(), now(), 0.5)
        else {
            panic!("expected review");
        };
        assert!(
            reason.contains("Event type 900 is a managed parent"),
            "{reason}"
        );
        assert!(reason.contains("anna-salon"), "{reason}");
        assert!(reason.contains("segment B"), "{reason}");
        assert!(
            reason.contains("2026-05-04 09:30 Europe/Berlin"),
            "{reason}"
        );
        assert!(reason.contains("POST /resync/"), "{reason}");
    }

    #[test]
    fn busy_host_is_reviewed_naming_segment_and_time() {
        let s = subject();
        let mut f = failure(FailureClass::SlotUnavailable);
        f.http_status = Some(400);
        f.message = "User either already has booking at this time or is not available".into();
        let Decision::NeedsReview { reason } = decide(
            &input(&f, &s, 1, Operation::Create),
            &RetryPolicy::default(),
            now(),
            0.5,
        ) else {
            panic!("expected review");
        };
        assert!(reason.contains("segment B"));
        assert!(reason.contains("2026-05-04 09:30"));
        assert!(reason.contains("HTTP 400"));
    }

    #[test]
    fn busy_host_after_an_unknown_outcome_looks_for_our_booking_first() {
        let s = subject();
        let f = failure(FailureClass::SlotUnavailable);
        let mut i = input(&f, &s, 2, Operation::Create);
        i.earlier_outcome_unknown = true;
        assert!(matches!(
            decide(&i, &RetryPolicy::default(), now(), 0.5),
            Decision::ReconcileFirst { .. }
        ));
        i.attempts = 3;
        assert!(matches!(
            decide(&i, &RetryPolicy::default(), now(), 0.5),
            Decision::NeedsReview { .. }
        ));
    }

    #[test]
    fn transient_failures_stop_after_max_attempts() {
        let s = subject();
        let f = failure(FailureClass::Server);
        let p = RetryPolicy::default();
        let Decision::NeedsReview { reason } = decide(
            &input(&f, &s, p.max_attempts, Operation::Create),
            &p,
            now(),
            0.5,
        ) else {
            panic!("expected review");
        };
        assert!(reason.contains("after 8 attempts"), "{reason}");
    }

    #[test]
    fn cancel_retries_transient_failures_and_reviews_refusals() {
        let s = subject();
        let f = failure(FailureClass::Server);
        assert!(matches!(
            decide(
                &input(&f, &s, 1, Operation::Cancel),
                &RetryPolicy::default(),
                now(),
                0.5
            ),
            Decision::Retry { .. }
        ));
        let f = failure(FailureClass::Unauthorized);
        let d = decide(
            &input(&f, &s, 1, Operation::Cancel),
            &RetryPolicy::default(),
            now(),
            0.5,
        );
        assert!(matches!(d, Decision::NeedsReview { .. }));
        assert_eq!(
            d.segment_status(Operation::Cancel),
            SegmentSyncStatus::NeedsReview
        );
    }

    fn any_class() -> impl Strategy<Value = FailureClass> {
        prop_oneof![
            Just(FailureClass::NotSent),
            Just(FailureClass::OutcomeUnknown),
            Just(FailureClass::Server),
            Just(FailureClass::Decode),
            (0u64..120_000).prop_map(|ms| FailureClass::RateLimited { reset_after_ms: ms }),
            (1i64..10_000).prop_map(|id| FailureClass::ManagedParent {
                event_type_id: EventTypeId(id)
            }),
            Just(FailureClass::SlotUnavailable),
            Just(FailureClass::OutsideBookingWindow),
            Just(FailureClass::DuplicateBooking),
            Just(FailureClass::NotFound),
            Just(FailureClass::Unauthorized),
            Just(FailureClass::Validation),
            Just(FailureClass::InvalidRequest),
        ]
    }

    proptest! {
        #[test]
        fn permanent_errors_are_never_retried_blindly(
            class in any_class(),
            attempts in 1u32..20,
            unknown in any::<bool>(),
            re_resolved in any::<bool>(),
            jitter in 0.0f64..=1.0,
        ) {
            let s = subject();
            let f = failure(class);
            let i = FailureInput {
                operation: Operation::Create,
                failure: &f,
                attempts,
                earlier_outcome_unknown: unknown,
                event_type_re_resolved: re_resolved,
                subject: &s,
                in_the_way: None,
            };
            let p = RetryPolicy::default();
            let d = decide(&i, &p, now(), jitter);
            let permanent = matches!(
                class,
                FailureClass::NotFound
                    | FailureClass::Unauthorized
                    | FailureClass::Validation
                    | FailureClass::InvalidRequest
                    | FailureClass::ManagedParent { .. }
            );
            if permanent {
                let retried = matches!(d, Decision::Retry { .. } | Decision::ReconcileFirst { .. });
                prop_assert!(!retried, "{:?}", d);
            }
            if let Decision::Retry { at } | Decision::ReconcileFirst { at } = d {
                prop_assert!(at >= now());
                // A retry that created nothing before never needs a reconcile; one that may
                // have created something always reconciles.
                if class.may_have_created() {
                    let reconciles = matches!(d, Decision::ReconcileFirst { .. });
                    prop_assert!(reconciles, "{:?}", d);
                }
            }
            if let Decision::NeedsReview { reason } = &d {
                prop_assert!(reason.contains("segment B"));
                prop_assert!(reason.contains("fix"));
            }
            if class.consumes_attempt() && attempts >= p.max_attempts {
                let retried = matches!(d, Decision::Retry { .. } | Decision::ReconcileFirst { .. });
                prop_assert!(!retried, "{:?}", d);
            }
        }
    }
}
