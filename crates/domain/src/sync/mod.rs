//! The sync state machine and error policy: the statuses a segment booking and an
//! appointment move through, how an appointment's status follows from its segments, when
//! and how a failed Cal.com call is tried again, which Cal.com booking is ours, and the
//! review reasons a person reads when a human must act.
//!
//! Everything here is pure: the caller passes the current instant and a jitter fraction,
//! and maps the Cal.com client's error into a [`CalcomFailure`] first.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CalcomUserId, EventTypeId, SegmentKey, StaffId};

mod booking;
pub mod breaker;
mod converge;
mod drift;
pub mod reschedule;
mod sweep;
pub use booking::{
    Applied, AttemptResult, CANCEL_DONE_OUTCOMES, Outcome, RunAsk, SegmentBooking, Step,
    cannot_sync_reason, create_may_have_reached_calcom,
};
pub use converge::{
    Convergence, MAX_RESCHEDULE_HOPS, carries_identity, converge, reconcile_owed, successor,
};
pub use drift::{EVENT_TYPE_CHECK_TTL_SECS, drift_refusal, event_map_refused_reason};
pub use sweep::{StoredBooking, sweep_findings};

/// Metadata key carrying the tenant id on every booking phasebook creates.
pub const METADATA_TENANT: &str = "phasebook_tenant";
/// Metadata key carrying the appointment id.
pub const METADATA_APPOINTMENT: &str = "phasebook_appointment";
/// Metadata key carrying the segment key.
pub const METADATA_SEGMENT: &str = "phasebook_segment";

/// Defines a snake_case status enum with `as_str`, `parse` and `Display`.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialised name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Reads a stored name back; `None` for anything unknown.
            pub fn parse(value: &str) -> Option<Self> {
                match value {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// Where one staffed segment's Cal.com booking stands.
    SegmentSyncStatus {
        /// Not attempted yet.
        Pending => "pending",
        /// A worker is talking to Cal.com about it right now.
        Syncing => "syncing",
        /// A Cal.com booking exists and its uid and id are stored.
        Synced => "synced",
        /// The last attempt failed in a way that may pass; a retry is scheduled.
        Failed => "failed",
        /// It cannot succeed without a person fixing something; the reason says what.
        NeedsReview => "needs_review",
        /// The appointment was cancelled; the Cal.com booking is being cancelled.
        Cancelling => "cancelling",
        /// No Cal.com booking is held any more (cancelled, or there never was one).
        Cancelled => "cancelled",
    }
}

status_enum! {
    /// An appointment's sync status, derived from its segments by [`derive_appointment_sync`].
    AppointmentSyncStatus {
        Pending => "pending",
        Syncing => "syncing",
        Synced => "synced",
        /// Some segments are booked, the others failed and are being retried.
        PartiallySynced => "partially_synced",
        /// Nothing is booked yet and the last attempts failed; retries are scheduled.
        Failed => "failed",
        NeedsReview => "needs_review",
        Cancelling => "cancelling",
        Cancelled => "cancelled",
    }
}

impl AppointmentSyncStatus {
    /// True when no worker will change the status by itself any more: a caller waiting
    /// for the sync outcome may stop waiting.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Synced | Self::NeedsReview | Self::Cancelled)
    }
}

/// What the appointment itself asks for (`appointments.status`): the sync drives its
/// segments towards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// Every staffed segment booked in Cal.com.
    Booked,
    /// No Cal.com booking left.
    Cancelled,
}

/// One segment as the status derivation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentState {
    pub key: SegmentKey,
    pub status: SegmentSyncStatus,
    /// A `pending` segment whose last attempt failed: it waits for its retry.
    pub retrying: bool,
    /// Set exactly when `status` is `needs_review`.
    pub review_reason: Option<String>,
}

/// An appointment's derived sync status and review flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentSync {
    pub status: AppointmentSyncStatus,
    pub requires_manual_review: bool,
    pub review_reason: Option<String>,
}

/// Derives the appointment's status from its segments. A segment needing review makes the
/// whole appointment need review (a person must act, whatever else is booked); otherwise a
/// retrying failure shows as `partially_synced` when something is booked, `failed` when
/// nothing is. The review flag is set exactly when the status is `needs_review`.
pub fn derive_appointment_sync(
    desired: DesiredState,
    segments: &[SegmentState],
) -> AppointmentSync {
    use SegmentSyncStatus as S;
    let count = |status: S| segments.iter().filter(|s| s.status == status).count();
    let total = segments.len();
    let review: Vec<&SegmentState> = segments
        .iter()
        .filter(|s| s.status == S::NeedsReview)
        .collect();

    let status = if !review.is_empty() {
        AppointmentSyncStatus::NeedsReview
    } else {
        match desired {
            DesiredState::Cancelled => {
                if count(S::Cancelled) == total {
                    AppointmentSyncStatus::Cancelled
                } else {
                    AppointmentSyncStatus::Cancelling
                }
            }
            DesiredState::Booked => {
                let synced = count(S::Synced);
                let retrying = segments
                    .iter()
                    .filter(|s| s.status == S::Failed || (s.status == S::Pending && s.retrying))
                    .count();
                if synced == total {
                    AppointmentSyncStatus::Synced
                } else if retrying > 0 {
                    if synced > 0 {
                        AppointmentSyncStatus::PartiallySynced
                    } else {
                        AppointmentSyncStatus::Failed
                    }
                } else if synced > 0 || count(S::Syncing) > 0 {
                    AppointmentSyncStatus::Syncing
                } else {
                    AppointmentSyncStatus::Pending
                }
            }
        }
    };

    let review_reason = match review.as_slice() {
        [] => None,
        [only] => Some(reason_or_default(only)),
        // One summary, about one reason long whatever the number of segments: the first
        // reason in full (often the others share its cause), every key named, and the rest
        // left to the sync view, which shows each segment's own reason.
        [first, rest @ ..] => {
            let keys: Vec<&str> = review.iter().map(|s| s.key.as_str()).collect();
            let others: Vec<&str> = rest.iter().map(|s| s.key.as_str()).collect();
            let others = match others.as_slice() {
                [one] => format!("The reason of segment {one} is"),
                many => format!("The reasons of segments {} are", many.join(", ")),
            };
            Some(format!(
                "{} segments need review ({}). Segment {}: {} {others} in the appointment's sync view (GET /appointments/{{appointment_id}}/sync).",
                review.len(),
                keys.join(", "),
                first.key,
                reason_or_default(first),
            ))
        }
    };
    AppointmentSync {
        status,
        requires_manual_review: status == AppointmentSyncStatus::NeedsReview,
        review_reason,
    }
}

fn reason_or_default(segment: &SegmentState) -> String {
    segment.review_reason.clone().unwrap_or_else(|| {
        format!(
            "Segment {} needs review but no reason was recorded; check its attempt log with GET /appointments/{{id}}/sync, then POST /resync/{{id}}.",
            segment.key
        )
    })
}

/// How often and how far apart failed Cal.com calls are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts (that count, see [`FailureClass::consumes_attempt`]) before a segment is
    /// flagged for review.
    pub max_attempts: u32,
    /// The backoff ceiling after the first failure; it doubles with each attempt.
    pub base_delay: Duration,
    /// The backoff ceiling never grows beyond this.
    pub max_delay: Duration,
    /// Full jitter may pick zero; this floor keeps a failing segment from spinning.
    pub min_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts; the jitter ceilings between them are 45 s, 90 s, 3 min, 6 min, 12 min,
    /// 15 min, 15 min: at most ~53 minutes from the first failure to the review flag.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(45),
            max_delay: Duration::from_secs(15 * 60),
            min_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling after `attempts` failed attempts (1 = after the first).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let grown = self
            .base_delay
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max_delay);
        grown.min(self.max_delay)
    }

    /// The delay before the next attempt with full jitter: uniform in `[0, ceiling]` for a
    /// `jitter` fraction in `[0, 1]`, raised to `min_delay` but never above `max_delay`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let picked = self.ceiling(attempts).mul_f64(jitter);
        picked.max(self.min_delay).min(self.max_delay)
    }
}

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

/// The segment a review reason is about, with the names a person needs to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSubject {
    pub appointment_id: Uuid,
    pub service_id: String,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub calcom_username: String,
    pub calcom_user_id: CalcomUserId,
    pub event_type_id: Option<EventTypeId>,
    pub starts_at: DateTime<Utc>,
    /// The salon's zone, to show the time as the salon reads it.
    pub time_zone: Option<Tz>,
}

impl ReviewSubject {
    pub(crate) fn when(&self) -> String {
        let utc = self.starts_at.format("%Y-%m-%d %H:%M UTC").to_string();
        match self.time_zone {
            Some(zone) => format!(
                "{} {} ({utc})",
                self.starts_at.with_timezone(&zone).format("%Y-%m-%d %H:%M"),
                zone.name()
            ),
            None => utc,
        }
    }

    fn segment(&self) -> String {
        format!(
            "segment {} of appointment {} at {}",
            self.segment_key,
            self.appointment_id,
            self.when()
        )
    }

    fn user(&self) -> String {
        format!(
            "Cal.com user {} (id {}, staff {})",
            self.calcom_username, self.calcom_user_id, self.staff_id
        )
    }

    fn event_type(&self) -> String {
        match self.event_type_id {
            Some(id) => format!("event type {id}"),
            None => "its event type".to_string(),
        }
    }

    pub(crate) fn resync(&self) -> String {
        format!("POST /resync/{}", self.appointment_id)
    }

    fn map_path(&self) -> String {
        format!(
            "PUT /event-maps/{}/{}/{}",
            self.service_id, self.segment_key, self.staff_id
        )
    }
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
        .filter(|b| !b.cancelled && b.start < end && b.end > start)
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

fn said(failure: &CalcomFailure) -> String {
    match failure.http_status {
        Some(status) => format!("Cal.com answered HTTP {status}: \"{}\"", failure.message),
        None => format!("{} ({})", failure.message, failure.kind),
    }
}

/// The managed parent cannot be booked and the host has no child of it.
pub fn managed_parent_without_child_reason(subject: &ReviewSubject, parent: EventTypeId) -> String {
    format!(
        "Event type {parent} is a managed parent that Cal.com will not book, and {} has no child event type of it, so {} is not booked; fix: assign the host to event type {parent} through Cal.com's team event-type endpoints so Cal.com creates the child (or map an individual event type with {}), then {}.",
        subject.user(),
        subject.segment(),
        subject.map_path(),
        subject.resync()
    )
}

/// Cal.com refused a segment whose start has already passed: no resync can book the past.
fn start_passed_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "The start of {} has passed, so Cal.com will not book it for {} ({}); fix: cancel the appointment (POST /appointments/{}/cancel) and book a new time.",
        subject.segment(),
        subject.user(),
        said(failure),
        subject.appointment_id
    )
}

/// The event type's minimum notice or booking window refuses the start.
fn booking_window_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refuses {} for {} because the start is too soon or too far ahead for {}'s minimum booking notice or booking window ({}); fix: widen those settings of the event type in Cal.com, then {}; or cancel the appointment and book a time inside them.",
        subject.segment(),
        subject.user(),
        subject.event_type(),
        said(failure),
        subject.resync()
    )
}

/// The time is taken by a booking phasebook itself made.
fn own_booking_in_the_way_reason(
    subject: &ReviewSubject,
    other: &OwnBookingInTheWay,
    failure: &CalcomFailure,
) -> String {
    if other.appointment_id == subject.appointment_id {
        return format!(
            "{} collides with this appointment's own booking {} of segment {} in Cal.com, which could not be moved out of the way ({}); fix: {} converges every segment on its planned time.",
            subject.segment(),
            other.calcom_booking_uid,
            other.segment_key,
            said(failure),
            subject.resync()
        );
    }
    format!(
        "{} collides with phasebook's own booking {} for segment {} of appointment {}, which stands at that time in Cal.com for {} (it was moved there in Cal.com) ({}); fix: POST /resync/{} puts that booking back at its planned time, then {}; or move one of the two appointments.",
        subject.segment(),
        other.calcom_booking_uid,
        other.segment_key,
        other.appointment_id,
        subject.user(),
        said(failure),
        other.appointment_id,
        subject.resync()
    )
}

/// The host is busy or the time cannot be booked.
pub fn slot_unavailable_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "{} is busy or unavailable for {} on {} ({}); fix: free that time in the host's Cal.com calendar (another booking, a blocked calendar or working hours), then {}; or cancel the appointment and book a time the host has free.",
        subject.user(),
        subject.segment(),
        subject.event_type(),
        said(failure),
        subject.resync()
    )
}

fn event_type_not_found_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "{} no longer exists or is not visible with this salon's Cal.com API key, so {} for {} is not booked ({}); fix: map an existing event type with {}, then {}.",
        capitalise(&subject.event_type()),
        subject.segment(),
        subject.user(),
        said(failure),
        subject.map_path(),
        subject.resync()
    )
}

fn unauthorized_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refused this salon's API key when booking {} on {} for {} ({}); fix: give the tenant a valid Cal.com API key with access to that event type, then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.resync()
    )
}

fn rejected_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com rejected the booking of {} on {} for {} ({}); fix what the message names: the event type's settings in Cal.com, or the customer's details with PATCH /appointments/{}; then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.appointment_id,
        subject.resync()
    )
}

fn cancel_refused_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refused to cancel the booking of {} for {} ({}); fix: cancel it by hand in Cal.com or repair the tenant's API key, then {}.",
        subject.segment(),
        subject.user(),
        said(failure),
        subject.resync()
    )
}

fn exhausted_reason(
    subject: &ReviewSubject,
    operation: Operation,
    attempts: u32,
    failure: &CalcomFailure,
) -> String {
    let what = match operation {
        Operation::Create => "booking",
        Operation::Cancel => "cancelling the booking of",
    };
    format!(
        "Gave up {what} {} on {} for {} after {attempts} attempts; last error: {}; fix: check Cal.com's status and the event type, then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.resync()
    )
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

/// The segment's (service, segment, staff) has no event map.
pub fn missing_event_map_reason(subject: &ReviewSubject) -> String {
    format!(
        "There is no event map for {} with staff {}, so it cannot be booked in Cal.com; fix: map an event type of {} with {}, then {}.",
        subject.segment(),
        subject.staff_id,
        subject.user(),
        subject.map_path(),
        subject.resync()
    )
}

/// The segment's Cal.com booking was cancelled on Cal.com's side.
pub fn cancelled_in_calcom_reason(
    subject: &ReviewSubject,
    booking_uid: &str,
    cancellation_reason: Option<&str>,
) -> String {
    let why = cancellation_reason
        .filter(|r| !r.trim().is_empty())
        .map(|r| format!(" (reason given: \"{r}\")"))
        .unwrap_or_default();
    format!(
        "The Cal.com booking {booking_uid} of {} for {} was cancelled in Cal.com{why}, so that time is no longer blocked; fix: {} to book it again, or cancel the appointment.",
        subject.segment(),
        subject.user(),
        subject.resync()
    )
}

/// The segment's Cal.com booking was moved on Cal.com's side.
pub fn rescheduled_in_calcom_reason(
    subject: &ReviewSubject,
    new_uid: &str,
    new_start: DateTime<Utc>,
) -> String {
    format!(
        "The Cal.com booking of {} for {} was moved in Cal.com to {} (new booking {new_uid}), so the calendar no longer matches the appointment; fix: {} puts the planned time back (it books the planned time and cancels booking {new_uid}), or cancel the appointment.",
        subject.segment(),
        subject.user(),
        new_start.format("%Y-%m-%d %H:%M UTC"),
        subject.resync()
    )
}

/// What Cal.com says happened to one of our bookings (its webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalcomChange<'a> {
    Cancelled {
        booking_uid: &'a str,
        cancellation_reason: Option<&'a str>,
    },
    Rescheduled {
        new_uid: &'a str,
        new_start: DateTime<Utc>,
    },
}

/// What a change made in Cal.com means for the segment whose booking it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeVerdict {
    /// The appointment asked for the cancel: the segment is cancelled. `record` is false
    /// when the segment already says so (a late or repeated webhook).
    CancelConfirmed { record: bool },
    /// The calendar no longer matches the appointment: a human must decide, for this reason.
    Review(String),
}

/// Judges a change made in Cal.com against what the appointment wants: a cancel we asked
/// for only confirms it; anything else means the calendar and the appointment disagree.
pub fn judge_calcom_change(
    desired: DesiredState,
    status: SegmentSyncStatus,
    subject: &ReviewSubject,
    change: CalcomChange<'_>,
) -> ChangeVerdict {
    match change {
        CalcomChange::Cancelled { .. } if desired == DesiredState::Cancelled => {
            ChangeVerdict::CancelConfirmed {
                record: status != SegmentSyncStatus::Cancelled,
            }
        }
        CalcomChange::Cancelled {
            booking_uid,
            cancellation_reason,
        } => ChangeVerdict::Review(cancelled_in_calcom_reason(
            subject,
            booking_uid,
            cancellation_reason,
        )),
        CalcomChange::Rescheduled { new_uid, new_start } => {
            ChangeVerdict::Review(rescheduled_in_calcom_reason(subject, new_uid, new_start))
        }
    }
}

/// What Cal.com answers, asked about the booking a webhook names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalcomAnswer {
    /// The booking as Cal.com holds it now.
    Booking(ObservedBooking),
    /// Cal.com has no such booking.
    Gone,
    /// Cal.com could not be asked (unreachable, throttled).
    Unknown,
}

/// True when Cal.com's current state agrees with the change a signed webhook reports, so it
/// may be acted on. A delivery Cal.com contradicts (a "cancelled" booking that is still
/// active, a "moved to" booking that does not exist) is not believed: acting on it would
/// flag or release a booking that still stands. When Cal.com cannot be asked, the change is
/// believed, since flagging only asks a person to look.
pub fn change_confirmed(change: &CalcomChange<'_>, answer: &CalcomAnswer) -> bool {
    match (change, answer) {
        (_, CalcomAnswer::Unknown) => true,
        (CalcomChange::Cancelled { .. }, CalcomAnswer::Gone) => true,
        (CalcomChange::Cancelled { .. }, CalcomAnswer::Booking(booking)) => booking.cancelled,
        (CalcomChange::Rescheduled { .. }, CalcomAnswer::Gone) => false,
        (CalcomChange::Rescheduled { new_uid, .. }, CalcomAnswer::Booking(booking)) => {
            booking.uid == *new_uid
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The identity phasebook writes into a booking's metadata, and looks for when adopting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingIdentity {
    pub tenant_id: Uuid,
    pub appointment_id: Uuid,
    pub segment_key: SegmentKey,
}

impl BookingIdentity {
    /// The metadata entries to send with the create (three short strings: well inside
    /// Cal.com's 50 keys / 40-char keys / 500-char values).
    pub fn metadata(&self) -> [(&'static str, String); 3] {
        [
            (METADATA_TENANT, self.tenant_id.to_string()),
            (METADATA_APPOINTMENT, self.appointment_id.to_string()),
            (METADATA_SEGMENT, self.segment_key.to_string()),
        ]
    }
}

/// A booking as listed by Cal.com, reduced to what adoption looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedBooking {
    pub id: i64,
    pub uid: String,
    pub event_type_id: Option<EventTypeId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub cancelled: bool,
    /// The values of our three metadata keys, as strings, when present.
    pub tenant: Option<String>,
    pub appointment: Option<String>,
    pub segment: Option<String>,
    /// Set on a booking that was moved in Cal.com: the uid of the booking it became.
    pub rescheduled_to_uid: Option<String>,
}

/// True when `booking` is the one phasebook created for `identity`: our metadata (tenant,
/// appointment, segment), the same event type, start and end, and not cancelled. The
/// metadata is what makes it ours; event type and span guard against a booking that was
/// moved or re-pointed since, or made while the event type had another length.
pub fn is_ours(
    identity: &BookingIdentity,
    event_type_id: EventTypeId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    booking: &ObservedBooking,
) -> bool {
    let same = |value: &Option<String>, expected: &str| {
        value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    !booking.cancelled
        && booking.event_type_id == Some(event_type_id)
        && booking.start == start
        && booking.end == end
        && same(&booking.tenant, &identity.tenant_id.to_string())
        && same(&booking.appointment, &identity.appointment_id.to_string())
        && booking.segment.as_deref() == Some(identity.segment_key.as_str())
}

/// The outcome of looking through listed bookings for ours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Adoption {
    /// Index of the booking to adopt: the oldest one of ours (lowest Cal.com id).
    pub adopt: Option<usize>,
    /// Indexes of further bookings of ours, which should not exist: they are duplicates to
    /// cancel.
    pub duplicates: Vec<usize>,
}

/// Picks ours among `bookings` (see [`is_ours`]).
pub fn choose_adoption(
    identity: &BookingIdentity,
    event_type_id: EventTypeId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    bookings: &[ObservedBooking],
) -> Adoption {
    let mut ours: Vec<usize> = bookings
        .iter()
        .enumerate()
        .filter(|(_, b)| is_ours(identity, event_type_id, start, end, b))
        .map(|(i, _)| i)
        .collect();
    ours.sort_by_key(|&i| bookings[i].id);
    let mut iter = ours.into_iter();
    Adoption {
        adopt: iter.next(),
        duplicates: iter.collect(),
    }
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
    use chrono::TimeZone;
    use proptest::prelude::*;

    pub(super) fn subject() -> ReviewSubject {
        ReviewSubject {
            appointment_id: Uuid::from_u128(7),
            service_id: "colour".into(),
            segment_key: SegmentKey::parse("B").expect("key"),
            staff_id: StaffId::parse("anna").expect("staff"),
            calcom_username: "anna-salon".into(),
            calcom_user_id: CalcomUserId(42),
            event_type_id: Some(EventTypeId(1001)),
            starts_at: Utc
                .with_ymd_and_hms(2026, 5, 4, 7, 30, 0)
                .single()
                .expect("time"),
            time_zone: Some(chrono_tz::Europe::Berlin),
        }
    }

    #[test]
    fn a_cancel_we_asked_for_is_confirmed_once_and_never_flagged() {
        let change = CalcomChange::Cancelled {
            booking_uid: "uid-1",
            cancellation_reason: None,
        };
        let pending = judge_calcom_change(
            DesiredState::Cancelled,
            SegmentSyncStatus::Cancelling,
            &subject(),
            change,
        );
        assert_eq!(pending, ChangeVerdict::CancelConfirmed { record: true });
        let repeated = judge_calcom_change(
            DesiredState::Cancelled,
            SegmentSyncStatus::Cancelled,
            &subject(),
            change,
        );
        assert_eq!(repeated, ChangeVerdict::CancelConfirmed { record: false });
    }

    #[test]
    fn a_cancel_made_in_calcom_alone_flags_the_segment_with_the_reason_given() {
        let verdict = judge_calcom_change(
            DesiredState::Booked,
            SegmentSyncStatus::Synced,
            &subject(),
            CalcomChange::Cancelled {
                booking_uid: "uid-1",
                cancellation_reason: Some("stylist ill"),
            },
        );
        let ChangeVerdict::Review(reason) = verdict else {
            panic!("flagged: {verdict:?}");
        };
        assert!(
            reason.contains("uid-1") && reason.contains("stylist ill"),
            "{reason}"
        );
        assert!(reason.contains("POST /resync/"), "{reason}");
    }

    #[test]
    fn a_booking_moved_in_calcom_flags_the_segment_naming_the_new_booking() {
        let moved_to = Utc
            .with_ymd_and_hms(2026, 5, 5, 9, 0, 0)
            .single()
            .expect("time");
        let verdict = judge_calcom_change(
            DesiredState::Booked,
            SegmentSyncStatus::Synced,
            &subject(),
            CalcomChange::Rescheduled {
                new_uid: "uid-2",
                new_start: moved_to,
            },
        );
        let ChangeVerdict::Review(reason) = verdict else {
            panic!("flagged: {verdict:?}");
        };
        assert!(
            reason.contains("uid-2") && reason.contains("2026-05-05 09:00"),
            "{reason}"
        );
    }

    fn failure(class: FailureClass) -> CalcomFailure {
        CalcomFailure {
            class,
            kind: "x".into(),
            http_status: Some(500),
            message: "boom".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("time")
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

    fn seg(key: &str, status: SegmentSyncStatus) -> SegmentState {
        SegmentState {
            key: SegmentKey::parse(key).expect("key"),
            status,
            retrying: false,
            review_reason: (status == SegmentSyncStatus::NeedsReview)
                .then(|| format!("reason {key}")),
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in SegmentSyncStatus::ALL {
            assert_eq!(SegmentSyncStatus::parse(s.as_str()), Some(*s));
        }
        for s in AppointmentSyncStatus::ALL {
            assert_eq!(AppointmentSyncStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            AppointmentSyncStatus::PartiallySynced.as_str(),
            "partially_synced"
        );
        assert_eq!(SegmentSyncStatus::parse("bogus"), None);
    }

    #[test]
    fn all_synced_is_synced_and_needs_no_review() {
        use SegmentSyncStatus::*;
        let d =
            derive_appointment_sync(DesiredState::Booked, &[seg("A", Synced), seg("B", Synced)]);
        assert_eq!(d.status, AppointmentSyncStatus::Synced);
        assert!(!d.requires_manual_review);
        assert_eq!(d.review_reason, None);
    }

    #[test]
    fn half_booked_with_retries_is_partially_synced() {
        use SegmentSyncStatus::*;
        let d = derive_appointment_sync(
            DesiredState::Booked,
            &[
                seg("A", Synced),
                seg("B", Failed),
                seg("C", Synced),
                seg("D", Pending),
            ],
        );
        assert_eq!(d.status, AppointmentSyncStatus::PartiallySynced);
        let d =
            derive_appointment_sync(DesiredState::Booked, &[seg("A", Failed), seg("B", Pending)]);
        assert_eq!(d.status, AppointmentSyncStatus::Failed);
        let d =
            derive_appointment_sync(DesiredState::Booked, &[seg("A", Synced), seg("B", Pending)]);
        assert_eq!(d.status, AppointmentSyncStatus::Syncing);
        let d = derive_appointment_sync(
            DesiredState::Booked,
            &[seg("A", Pending), seg("B", Pending)],
        );
        assert_eq!(d.status, AppointmentSyncStatus::Pending);
    }

    #[test]
    fn one_segment_needing_review_flags_the_appointment_with_every_reason() {
        use SegmentSyncStatus::*;
        let d = derive_appointment_sync(
            DesiredState::Booked,
            &[seg("A", Synced), seg("B", NeedsReview)],
        );
        assert_eq!(d.status, AppointmentSyncStatus::NeedsReview);
        assert!(d.requires_manual_review);
        assert_eq!(d.review_reason.as_deref(), Some("reason B"));
        let d = derive_appointment_sync(
            DesiredState::Booked,
            &[seg("A", NeedsReview), seg("B", NeedsReview)],
        );
        let reason = d.review_reason.expect("reason");
        assert!(
            reason.starts_with("2 segments need review (A, B)."),
            "{reason}"
        );
        assert!(
            reason.contains("reason A") && !reason.contains("reason B"),
            "{reason}"
        );
        assert!(
            reason.contains("The reason of segment B is in the appointment's sync view"),
            "{reason}"
        );
        let long = "x".repeat(400);
        let four: Vec<SegmentState> = ["A", "B", "C", "D"]
            .into_iter()
            .map(|key| SegmentState {
                review_reason: Some(format!("{key}: {long}")),
                ..seg(key, NeedsReview)
            })
            .collect();
        let reason = derive_appointment_sync(DesiredState::Booked, &four)
            .review_reason
            .expect("reason");
        assert!(
            reason.len() < 600,
            "one summary, not four reasons: {}",
            reason.len()
        );
        assert!(reason.contains("segments B, C, D are"), "{reason}");
    }

    #[test]
    fn cancelled_appointment_is_cancelling_until_every_booking_is_gone() {
        use SegmentSyncStatus::*;
        let d = derive_appointment_sync(
            DesiredState::Cancelled,
            &[seg("A", Cancelled), seg("B", Cancelling)],
        );
        assert_eq!(d.status, AppointmentSyncStatus::Cancelling);
        let d = derive_appointment_sync(
            DesiredState::Cancelled,
            &[seg("A", Cancelled), seg("B", Cancelled)],
        );
        assert_eq!(d.status, AppointmentSyncStatus::Cancelled);
        assert!(d.status.is_final());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(45));
        assert_eq!(p.ceiling(2), Duration::from_secs(90));
        assert_eq!(p.ceiling(6), Duration::from_secs(900));
        assert_eq!(p.ceiling(60), Duration::from_secs(900));
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5), Duration::from_secs(90));
        let total: Duration = (1..p.max_attempts).map(|n| p.ceiling(n)).sum();
        assert!(total <= Duration::from_secs(3600), "{total:?}");
        assert!(total >= Duration::from_secs(40 * 60), "{total:?}");
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

    fn identity() -> BookingIdentity {
        BookingIdentity {
            tenant_id: Uuid::from_u128(1),
            appointment_id: Uuid::from_u128(2),
            segment_key: SegmentKey::parse("A").expect("key"),
        }
    }

    fn observed(id: i64) -> ObservedBooking {
        let ident = identity();
        ObservedBooking {
            id,
            uid: format!("uid-{id}"),
            event_type_id: Some(EventTypeId(5)),
            start: now(),
            end: now() + TimeDelta::minutes(30),
            cancelled: false,
            tenant: Some(ident.tenant_id.to_string()),
            appointment: Some(ident.appointment_id.to_string()),
            segment: Some("A".into()),
            rescheduled_to_uid: None,
        }
    }

    #[test]
    fn adoption_takes_the_oldest_of_ours_and_names_duplicates() {
        let mut other_segment = observed(1);
        other_segment.segment = Some("B".into());
        let mut cancelled = observed(2);
        cancelled.cancelled = true;
        let mut moved = observed(3);
        moved.start = now() + TimeDelta::minutes(30);
        moved.end = now() + TimeDelta::minutes(60);
        let mut foreign = observed(4);
        foreign.tenant = Some(Uuid::from_u128(99).to_string());
        let list = vec![
            other_segment,
            cancelled,
            moved,
            foreign,
            observed(9),
            observed(6),
        ];
        let end = now() + TimeDelta::minutes(30);
        let a = choose_adoption(&identity(), EventTypeId(5), now(), end, &list);
        assert_eq!(a.adopt, Some(5));
        assert_eq!(a.duplicates, vec![4]);
        let none = choose_adoption(&identity(), EventTypeId(6), now(), end, &list);
        assert_eq!(none, Adoption::default());
    }

    #[test]
    fn metadata_fits_calcom_limits() {
        for (key, value) in identity().metadata() {
            assert!(key.len() <= 40);
            assert!(value.len() <= 500);
        }
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

    fn any_status() -> impl Strategy<Value = SegmentSyncStatus> {
        proptest::sample::select(SegmentSyncStatus::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(
            attempts in 0u32..200,
            jitter in proptest::num::f64::ANY,
            base_ms in 1u64..120_000,
            cap_ms in 1u64..3_600_000,
        ) {
            let p = RetryPolicy {
                max_attempts: 8,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(cap_ms),
                min_delay: Duration::from_millis(10),
            };
            let d = p.backoff(attempts, jitter);
            prop_assert!(d <= p.max_delay);
            prop_assert!(d <= p.ceiling(attempts).max(p.min_delay));
        }

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

        #[test]
        fn derived_status_invariants(
            statuses in proptest::collection::vec(any_status(), 1..8),
            cancelled in any::<bool>(),
        ) {
            let segments: Vec<SegmentState> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| seg(&format!("S{i}"), *s))
                .collect();
            let desired = if cancelled { DesiredState::Cancelled } else { DesiredState::Booked };
            let d = derive_appointment_sync(desired, &segments);
            let any_review = statuses.contains(&SegmentSyncStatus::NeedsReview);
            prop_assert_eq!(d.requires_manual_review, any_review);
            prop_assert_eq!(d.review_reason.is_some(), any_review);
            prop_assert_eq!(d.status == AppointmentSyncStatus::NeedsReview, any_review);
            let all = |s: SegmentSyncStatus| statuses.iter().all(|x| *x == s);
            prop_assert_eq!(d.status == AppointmentSyncStatus::Synced, !cancelled && all(SegmentSyncStatus::Synced));
            prop_assert_eq!(d.status == AppointmentSyncStatus::Cancelled, cancelled && all(SegmentSyncStatus::Cancelled));
            if cancelled {
                prop_assert!(matches!(
                    d.status,
                    AppointmentSyncStatus::Cancelled | AppointmentSyncStatus::Cancelling | AppointmentSyncStatus::NeedsReview
                ));
            }
        }
    }
}
