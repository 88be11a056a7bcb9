//! Re-resolving a segment's event map while syncing (a managed parent refused, or a resync
//! re-validating). The reading of Cal.com and the domain's rules live in one place, the
//! event-map module's resolution (`PUT /event-maps`, the audit and provisioning use it
//! too), so the engine decides exactly as a fresh map would be checked — including a
//! stylist's own event type that the salon's key can read only through their listing.

pub use crate::event_maps::calcom::resolve;
