//! Typed async client for the Cal.com v2 REST API, as phasebook uses it: bookings (one per
//! staffed segment), event types (individual, team, managed parent and children), slots and
//! slot reservations.
//!
//! The client sends what Cal.com accepts (validated before sending), sets the right
//! `cal-api-version` per endpoint family, keeps under the key's rate limit, retries only
//! reads, and reports every failure as one typed [`CalcomError`] that says what happened —
//! in particular whether a write certainly did not happen ([`CalcomError::Transport`]) or
//! may have happened ([`CalcomError::OutcomeUnknown`]).

pub mod api_version;
mod budget;
mod client;
mod config;
mod error;
mod limiter;
mod metadata;
mod model;
mod request;

pub use budget::{Budget, BudgetFuture, LocalBudget, Priority, WindowReport, interactive_reserve};
pub use client::{BudgetUsage, CalcomClient};
pub use config::{ClientConfig, RateLimit};
pub use error::{CalcomError, SlotRefusal};
pub use metadata::{
    BookingMetadata, MAX_METADATA_KEY_CHARS, MAX_METADATA_KEYS, MAX_METADATA_STRING_CHARS,
};
pub use model::{
    Booking, BookingAttendee, BookingEventType, BookingHost, BookingPage, BookingStatus, EventType,
    Host, Me, SchedulingType, Slot, SlotReservation, TeamMembership,
};
pub use request::{
    ATTENDEE_LANGUAGES, Attendee, BookingListStatus, CancelBooking, CreateBooking,
    CreateTeamEventType, HostAssignment, HostPriority, ListBookings, MAX_BOOKINGS_PAGE,
    RescheduleBooking, ReserveSlot, SlotsQuery, SortOrder, UpdateTeamEventType,
};
pub use secrecy::SecretString;
