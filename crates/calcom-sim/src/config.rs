//! How a simulator instance behaves beyond its data: rate limiting, fault injection and the
//! webhook subscriber. Everything here can be set at start-up and replaced at run time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Start-up settings of a [`crate::Sim`].
///
/// `Default` is what tests want: no rate limit, no faults, no webhook. The `calcom-sim`
/// binary starts with [`RateLimitConfig::calcom_default`] instead, like Cal.com.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// `None` switches rate limiting off.
    pub rate_limit: Option<RateLimitConfig>,
    pub faults: Faults,
    pub webhook: Option<WebhookConfig>,
}

/// Cal.com's throttler: `limit` requests per `window` per API key; going over blocks the key
/// for `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    pub limit: u32,
    #[serde(rename = "windowMs", with = "millis")]
    pub window: Duration,
    #[serde(rename = "blockMs", with = "millis")]
    pub block: Duration,
}

impl RateLimitConfig {
    /// API keys on Cal.com: 120 per 60 s, blocked for 60 s after going over (FACTS 7).
    pub fn calcom_default() -> Self {
        Self {
            limit: 120,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::calcom_default()
    }
}

/// Where booking webhooks go and the secret that signs them (`None`: the header carries
/// `no-secret-provided`, as Cal.com does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
}

/// Fault injection. `routes` maps a route name (see [`crate::ROUTE_NAMES`]), a family
/// (`"bookings"`) or `"*"` to its faults; the most specific entry wins. Draws come from one
/// `StdRng` seeded with `seed`, so a run with the same requests in the same order injects the
/// same faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    pub seed: u64,
    pub routes: BTreeMap<String, RouteFaults>,
}

impl Faults {
    /// One rule for every route.
    pub fn everywhere(seed: u64, faults: RouteFaults) -> Self {
        Self::default().with_seed(seed).route("*", faults)
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds (or replaces) the rule for `route`.
    pub fn route(mut self, route: impl Into<String>, faults: RouteFaults) -> Self {
        self.routes.insert(route.into(), faults);
        self
    }

    /// The rule for `route`: exact name, then its family (`bookings` for `bookings.create`),
    /// then `*`.
    pub(crate) fn for_route(&self, route: &str) -> Option<&RouteFaults> {
        self.routes
            .get(route)
            .or_else(|| {
                route
                    .split_once('.')
                    .and_then(|(family, _)| self.routes.get(family))
            })
            .or_else(|| self.routes.get("*"))
    }
}

/// Faults for one route. Rates are probabilities in `0.0..=1.0`, checked in this order:
/// `rate_limited_rate`, `hang_rate`, `error_rate`, `lost_response_rate`. `latency_ms` is
/// added before every answer (also before injected errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteFaults {
    /// Answer 500 with Cal.com's plain `Internal server error` body, doing nothing.
    pub error_rate: f64,
    /// Sleep exactly this long before answering.
    pub latency_ms: u64,
    /// Never answer (the connection stays open until the sim shuts down).
    pub hang_rate: f64,
    /// Do the work (the booking or cancel is committed), then drop the connection without
    /// a complete answer.
    pub lost_response_rate: f64,
    /// Answer 429 exactly as Cal.com's throttler does, doing nothing.
    pub rate_limited_rate: f64,
    /// Booking creates only: time between the availability check and the insert. Two
    /// identical creates inside this window both pass the check and the second hits the
    /// unique (start, end, organizer) key: Cal.com's 409 `booking_conflict_error`.
    pub race_window_ms: u64,
}

impl RouteFaults {
    pub fn error_rate(rate: f64) -> Self {
        Self {
            error_rate: rate,
            ..Self::default()
        }
    }
    pub fn latency(ms: u64) -> Self {
        Self {
            latency_ms: ms,
            ..Self::default()
        }
    }
    pub fn hang_rate(rate: f64) -> Self {
        Self {
            hang_rate: rate,
            ..Self::default()
        }
    }
    pub fn lost_response_rate(rate: f64) -> Self {
        Self {
            lost_response_rate: rate,
            ..Self::default()
        }
    }
    pub fn rate_limited_rate(rate: f64) -> Self {
        Self {
            rate_limited_rate: rate,
            ..Self::default()
        }
    }
    pub fn race_window(ms: u64) -> Self {
        Self {
            race_window_ms: ms,
            ..Self::default()
        }
    }
}

/// Durations as whole milliseconds in JSON (`windowMs`-style values stay readable).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
