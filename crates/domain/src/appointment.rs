//! What an appointment request must satisfy beyond its plan: who the customer is, how long
//! notes may be, and the status vocabulary an appointment moves through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::error::refuse_control_characters;
use crate::sync::{DesiredState, SegmentSyncStatus};

pub const MAX_CUSTOMER_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_NOTES_CHARS: usize = 2000;
/// A cancellation reason is read out to the stylist and shown in Cal.com's cancel e-mail:
/// a sentence, not a document.
pub const MAX_CANCELLATION_REASON_CHARS: usize = 500;

/// The person the appointment is for. Contact details are personal data: `Debug` hides
/// them so a stray `{:?}` in a log line cannot leak an e-mail address or phone number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    name: String,
    email: Option<String>,
    phone: Option<String>,
}

impl fmt::Debug for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Customer")
            .field("name", &"<redacted>")
            .field("email", &self.email.as_ref().map(|_| "<redacted>"))
            .field("phone", &self.phone.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Customer {
    /// Validates a customer; errors name `name`, `email` or `phone` (callers prefix
    /// `customer`). Empty strings for the optional fields count as absent.
    pub fn new(name: &str, email: Option<&str>, phone: Option<&str>) -> Result<Self, FieldError> {
        let name = name.trim();
        refuse_control_characters("name", name, false)?;
        if name.is_empty() || name.chars().count() > MAX_CUSTOMER_NAME_CHARS {
            return Err(FieldError::new(
                "name",
                "invalid_customer_name",
                format!("the customer name must be 1 to {MAX_CUSTOMER_NAME_CHARS} characters"),
            ));
        }
        let email = email
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(parse_email)
            .transpose()?;
        let phone = phone
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_phone)
            .transpose()?;
        Ok(Self {
            name: name.to_string(),
            email,
            phone,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The customer with some details replaced (`None`: unchanged; an empty e-mail or
    /// phone removes it), validated as a whole as a new customer would be.
    pub fn amended(
        &self,
        name: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Self, FieldError> {
        Self::new(
            name.unwrap_or(&self.name),
            email.or(self.email.as_deref()),
            phone.or(self.phone.as_deref()),
        )
    }

    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    pub fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }

    /// The e-mail address as a caller lookup compares it (see [`email_lookup_form`]).
    pub fn email_lookup_form(&self) -> Option<String> {
        self.email.as_deref().map(email_lookup_form)
    }
}

/// How a caller's e-mail address is compared when finding their appointments: trimmed and
/// lower-cased, so `Ada@Example.COM` finds `ada@example.com`. Stored beside the address as
/// given, and computed here rather than in SQL so both backends fold letters alike.
pub fn email_lookup_form(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain, no spaces.
/// Deliverability is the mail server's business, not ours.
fn parse_email(value: &str) -> Result<String, FieldError> {
    refuse_control_characters("email", value, false)?;
    let invalid = || {
        FieldError::new(
            "email",
            "invalid_email",
            "the e-mail address must look like name@example.com",
        )
    };
    if value.chars().count() > MAX_EMAIL_CHARS || value.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(invalid());
    }
    Ok(value.to_string())
}

/// E.164: a `+`, a non-zero country digit, 8 to 15 digits in all.
fn parse_phone(value: &str) -> Result<String, FieldError> {
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(value.to_string())
    } else {
        Err(FieldError::new(
            "phone",
            "invalid_phone",
            "the phone number must be in E.164 form, e.g. +4915123456789",
        ))
    }
}

/// Free-text notes: trimmed, empty means none, at most [`MAX_NOTES_CHARS`] characters.
pub fn parse_notes(value: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(notes) = value.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    refuse_control_characters("notes", notes, true)?;
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(FieldError::new(
            "notes",
            "notes_too_long",
            format!("notes are at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    Ok(Some(notes.to_string()))
}

/// Why the caller cancelled: trimmed, empty means none, one line of at most
/// [`MAX_CANCELLATION_REASON_CHARS`] characters (it becomes Cal.com's `cancellationReason`).
pub fn parse_cancellation_reason(value: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(reason) = value.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    refuse_control_characters("reason", reason, false)?;
    if reason.chars().count() > MAX_CANCELLATION_REASON_CHARS {
        return Err(FieldError::new(
            "reason",
            "reason_too_long",
            format!("reason is at most {MAX_CANCELLATION_REASON_CHARS} characters"),
        ));
    }
    Ok(Some(reason.to_string()))
}

/// What the salon intends: the appointment happens, or it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    Booked,
    Cancelled,
}

/// The salon's intent as the sync engine reads it.
impl AppointmentStatus {
    pub fn desired_state(self) -> DesiredState {
        match self {
            Self::Booked => DesiredState::Booked,
            Self::Cancelled => DesiredState::Cancelled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "booked" => Some(Self::Booked),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sync status a segment takes when its appointment is cancelled locally: a segment
/// that may have reached Cal.com (it has a booking, or a booking attempt whose outcome
/// might be unknown) must still be cancelled there; one that never left phasebook is done.
pub fn segment_status_on_cancel(
    current: SegmentSyncStatus,
    has_booking: bool,
    attempts: u32,
) -> SegmentSyncStatus {
    if current == SegmentSyncStatus::Cancelled {
        SegmentSyncStatus::Cancelled
    } else if has_booking || attempts > 0 || current == SegmentSyncStatus::Syncing {
        SegmentSyncStatus::Cancelling
    } else {
        SegmentSyncStatus::Cancelled
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_email_lookup_ignores_case_and_surrounding_space() {
        assert_eq!(
            super::email_lookup_form(" Ada@Example.COM "),
            "ada@example.com"
        );
        let customer = super::Customer::new("Ada", Some("ÄDA@example.com"), None).expect("ok");
        assert_eq!(
            customer.email_lookup_form().as_deref(),
            Some("äda@example.com")
        );
    }

    #[test]
    fn a_cancellation_reason_is_one_short_printable_line() {
        use super::parse_cancellation_reason as reason;
        assert_eq!(reason(None).expect("none"), None);
        assert_eq!(reason(Some("  ")).expect("blank"), None);
        assert_eq!(
            reason(Some(" moved abroad ")).expect("ok").as_deref(),
            Some("moved abroad")
        );
        assert_eq!(reason(Some("a\nb")).expect_err("newline").field, "reason");
        let long = "x".repeat(super::MAX_CANCELLATION_REASON_CHARS + 1);
        assert_eq!(
            reason(Some(&long)).expect_err("long").code,
            "reason_too_long"
        );
    }

    use super::*;

    #[test]
    fn customer_needs_a_name_and_valid_contacts() {
        assert_eq!(
            Customer::new("  ", None, None).expect_err("name").field,
            "name"
        );
        let c =
            Customer::new(" Ada ", Some("ada@example.com"), Some("+4915123456789")).expect("valid");
        assert_eq!(c.name(), "Ada");
        assert_eq!(
            Customer::new("Ada", Some("ada@"), None)
                .expect_err("email")
                .field,
            "email"
        );
        assert_eq!(
            Customer::new("Ada", None, Some("015123456789"))
                .expect_err("phone")
                .code,
            "invalid_phone"
        );
        assert!(
            Customer::new("Ada", Some(""), Some(""))
                .expect("empty is absent")
                .email()
                .is_none()
        );
    }

    #[test]
    fn customer_debug_hides_contact_details() {
        let c =
            Customer::new("Ada", Some("ada@example.com"), Some("+4915123456789")).expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("ada@example.com"));
        assert!(!shown.contains("+4915123456789"));
    }

    #[test]
    fn long_notes_are_refused() {
        assert_eq!(parse_notes(Some("  ")).expect("empty"), None);
        let long = "x".repeat(MAX_NOTES_CHARS + 1);
        assert_eq!(
            parse_notes(Some(&long)).expect_err("long").code,
            "notes_too_long"
        );
    }

    #[test]
    fn cancel_keeps_cancelling_while_cal_com_may_hold_a_booking() {
        use SegmentSyncStatus as S;
        assert_eq!(segment_status_on_cancel(S::Pending, false, 0), S::Cancelled);
        assert_eq!(segment_status_on_cancel(S::Failed, false, 1), S::Cancelling);
        assert_eq!(segment_status_on_cancel(S::Synced, true, 1), S::Cancelling);
        assert_eq!(
            segment_status_on_cancel(S::Syncing, false, 0),
            S::Cancelling
        );
    }
}
