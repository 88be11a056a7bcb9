//! The pure rules of phasebook: services and their segments, appointment plans, the
//! sync state machine and error policy, event-type resolution and composite
//! availability. Nothing here does I/O, awaits, or reads a clock: callers pass time in.

pub mod appointment;
pub mod audit;
pub mod availability;
pub mod error;
pub mod ids;
pub mod phone;
pub mod plan;
pub mod preflight;
pub mod resolution;
pub mod service;
pub mod service_change;
pub mod staff;
pub mod sync;
#[cfg(test)]
mod test_ids;

pub use appointment::{AppointmentStatus, Customer};
pub use error::FieldError;
pub use ids::{CalcomUserId, EventTypeId, SegmentKey, ServiceId, StaffId};
pub use plan::{PlannedSegment, StartTime, plan_appointment};
pub use service::{SegmentSpec, Service};
