//! The `cal-api-version` header value for each endpoint family, in one place. Cal.com routes
//! by this header: a missing value silently selects the 2024-04-15 controllers (different
//! bodies) and a wrong one is a 404, so every request sets it explicitly.

/// `/v2/bookings…`
pub const BOOKINGS: &str = "2024-08-13";
/// `/v2/slots…`, including reservations.
pub const SLOTS: &str = "2024-09-04";
/// `/v2/event-types…` (personal event types).
pub const EVENT_TYPES: &str = "2024-06-14";
/// `/v2/teams/{teamId}/event-types…` (Cal.com accepts any valid value here).
pub const TEAM_EVENT_TYPES: &str = "2024-06-14";

/// The header name.
pub const HEADER: &str = "cal-api-version";
