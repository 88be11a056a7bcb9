//! Segment and appointment sync statuses, and how an appointment's status follows from its
//! segments: one topic, so the stored names and the derivation rules are read together.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SegmentKey;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    fn any_status() -> impl Strategy<Value = SegmentSyncStatus> {
        proptest::sample::select(SegmentSyncStatus::ALL.to_vec())
    }

    proptest! {
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
