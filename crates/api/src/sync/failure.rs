//! Maps the Cal.com client's error into the domain's failure classification, the one
//! input the retry policy decides on. The client says what happened; this says which kind
//! of happening it is; the domain says what to do.

use calcom_client::CalcomError;
use phasebook_domain::EventTypeId;
use phasebook_domain::sync::{CalcomFailure, FailureClass};

/// Cal.com's messages are kept in the attempt log and shown to ops; this bounds them.
const MESSAGE_LIMIT: usize = 500;

/// Classifies a client error once, by type.
pub fn classify(err: &CalcomError) -> CalcomFailure {
    let class = match err {
        CalcomError::InvalidRequest { .. } => FailureClass::InvalidRequest,
        CalcomError::Transport { .. } => FailureClass::NotSent,
        CalcomError::OutcomeUnknown { .. } => FailureClass::OutcomeUnknown,
        CalcomError::RateLimited { reset_after, .. } => FailureClass::RateLimited {
            reset_after_ms: u64::try_from(reset_after.as_millis()).unwrap_or(u64::MAX),
        },
        CalcomError::ManagedParent { event_type_id, .. } => FailureClass::ManagedParent {
            event_type_id: EventTypeId(*event_type_id),
        },
        err @ CalcomError::SlotUnavailable { .. } if err.is_outside_booking_window() => {
            FailureClass::OutsideBookingWindow
        }
        CalcomError::SlotUnavailable { .. } => FailureClass::SlotUnavailable,
        CalcomError::DuplicateBooking { .. } => FailureClass::DuplicateBooking,
        CalcomError::NotFound { .. } => FailureClass::NotFound,
        CalcomError::Unauthorized { .. } => FailureClass::Unauthorized,
        CalcomError::Validation { .. } => FailureClass::Validation,
        CalcomError::Server { .. } => FailureClass::Server,
        CalcomError::Decode { .. } => FailureClass::Decode,
    };
    CalcomFailure {
        class,
        kind: err.kind().to_string(),
        http_status: err.status(),
        message: bounded(&err.message()),
    }
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= MESSAGE_LIMIT {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MESSAGE_LIMIT).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limits_carry_the_reset_time() {
        let err = CalcomError::RateLimited {
            reset_after: Duration::from_secs(12),
            message: "Too many requests".into(),
            body: String::new(),
        };
        let f = classify(&err);
        assert_eq!(
            f.class,
            FailureClass::RateLimited {
                reset_after_ms: 12_000
            }
        );
        assert_eq!(f.http_status, Some(429));
        assert_eq!(f.kind, "rate_limited");
    }

    #[test]
    fn lost_answers_may_have_created_a_booking() {
        let f = classify(&CalcomError::OutcomeUnknown {
            reason: "timed out".into(),
        });
        assert!(f.class.may_have_created());
        let f = classify(&CalcomError::Server {
            status: 503,
            message: "down".into(),
            body: String::new(),
        });
        assert!(f.class.may_have_created());
        assert_eq!(f.http_status, Some(503));
    }
}
