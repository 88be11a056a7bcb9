//! The guard in front of every handler: who is calling (API keys looked up through a cache
//! that forgets within [`AUTH_CACHE_TTL`], so a revoked or expired key is refused within
//! seconds), how fast (a token bucket per key: 429 problem+json with `Retry-After` and the
//! IETF `RateLimit`/`RateLimit-Policy` fields), and what ops did (the audit log).
//! `/healthz`, `/readyz` and `/metrics` pass untouched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use uuid::Uuid;

use crate::auth::{Caller, hash_api_key};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::keys::{ApiRateLimit, AuditEntry};
use crate::store::{ApiKeyOwner, Role};

/// How long a looked-up key is trusted before the database is asked again: the bound on
/// how long a revoked key keeps working on another replica.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);
/// `last_used_at` is written at most this often per key.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The limit of a tenant that set none: 20 requests a second, 40 at once.
pub const DEFAULT_RATE_LIMIT: ApiRateLimit = ApiRateLimit {
    per_second: 20,
    burst: 40,
};
/// Past this many entries a map is cleared rather than grown (keys are few; this only
/// bounds memory under a flood of distinct keys).
const MAX_ENTRIES: usize = 10_000;

struct Cached {
    owner: ApiKeyOwner,
    fetched: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// `refilled_in`: whole seconds until the bucket is full again.
    Allowed {
        remaining: u32,
        refilled_in: u64,
    },
    Limited {
        retry_after: Duration,
    },
}

/// Per-process guard state, shared by every request.
pub struct Guard {
    default_limit: ApiRateLimit,
    cache: Mutex<HashMap<String, Cached>>,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
    touched: Mutex<HashMap<Uuid, Instant>>,
}

impl Default for Guard {
    fn default() -> Self {
        Self::new(DEFAULT_RATE_LIMIT)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Guard {
    pub fn new(default_limit: ApiRateLimit) -> Self {
        Self {
            default_limit,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The caller a bearer key stands for, or 401 for an unknown, revoked or expired key.
    pub async fn authenticate(
        &self,
        state: &AppState,
        key: &str,
    ) -> Result<(Caller, ApiRateLimit), ApiError> {
        let hash = hash_api_key(key);
        let now = Instant::now();
        let cached = lock(&self.cache)
            .get(&hash)
            .filter(|c| now.duration_since(c.fetched) < AUTH_CACHE_TTL)
            .map(|c| c.owner);
        let owner = match cached {
            Some(owner) => owner,
            None => {
                let owner = state
                    .store
                    .find_api_key(&hash)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                let mut cache = lock(&self.cache);
                if cache.len() >= MAX_ENTRIES {
                    cache.clear();
                }
                cache.insert(
                    hash,
                    Cached {
                        owner,
                        fetched: now,
                    },
                );
                owner
            }
        };
        if owner.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(ApiError::Unauthorized);
        }
        self.note_use(state, owner.api_key_id, now).await;
        tracing::Span::current().record("tenant_id", tracing::field::display(owner.tenant_id));
        Ok((
            Caller {
                tenant_id: owner.tenant_id,
                role: owner.role,
                api_key_id: owner.api_key_id,
            },
            owner.rate_limit.unwrap_or(self.default_limit),
        ))
    }

    /// Writes `last_used_at` when this process has not done so for the key within
    /// [`LAST_USED_EVERY`]; a failed write is logged, never fails the request.
    async fn note_use(&self, state: &AppState, api_key_id: Uuid, now: Instant) {
        {
            let mut touched = lock(&self.touched);
            if touched
                .get(&api_key_id)
                .is_some_and(|at| now.duration_since(*at) < LAST_USED_EVERY)
            {
                return;
            }
            if touched.len() >= MAX_ENTRIES {
                touched.clear();
            }
            touched.insert(api_key_id, now);
        }
        if let Err(err) = state.db.keys().touch_api_key(api_key_id, Utc::now()).await {
            tracing::warn!(error = %err, %api_key_id, "could not record the key's last use");
        }
    }

    /// Forgets a revoked key at once in this process (other replicas within the TTL).
    pub fn forget(&self, api_key_id: Uuid) {
        lock(&self.cache).retain(|_, c| c.owner.api_key_id != api_key_id);
    }

    /// Takes one token from the key's bucket.
    pub fn admit(&self, api_key_id: Uuid, limit: ApiRateLimit, now: Instant) -> Admission {
        let rate = f64::from(limit.per_second.max(1));
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_ENTRIES && !buckets.contains_key(&api_key_id) {
            buckets.clear();
        }
        let bucket = buckets.entry(api_key_id).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admission::Allowed {
                remaining: bucket.tokens.floor() as u32,
                refilled_in: ((burst - bucket.tokens) / rate).ceil() as u64,
            }
        } else {
            Admission::Limited {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
}

/// Routes that are never limited: probes and scrapes must answer under any load.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): the policy is the
/// bucket (quota = burst, window = the time to refill it), the state is what is left now
/// and in how many seconds the bucket is full again (on a 429: when one request will be
/// allowed).
fn rate_limit_headers(headers: &mut HeaderMap, limit: ApiRateLimit, remaining: u32, reset: u64) {
    let window = u64::from(limit.burst)
        .div_ceil(u64::from(limit.per_second.max(1)))
        .max(1);
    if let Ok(v) = HeaderValue::from_str(&format!("\"per-key\";q={};w={window}", limit.burst)) {
        headers.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"per-key\";r={remaining};t={reset}")) {
        headers.insert("ratelimit", v);
    }
}

/// A short name for an ops action, from the route it went to.
fn action_name(method: &Method, route: &str) -> String {
    match (method.as_str(), route) {
        ("PUT", "/services/{service_id}") => "put service".to_string(),
        ("PUT", "/staff/{staff_id}") => "put staff".to_string(),
        ("PUT", r) if r.starts_with("/event-maps/") => "put event map".to_string(),
        ("POST", "/resync/{appointment_id}") => "resync".to_string(),
        ("POST", "/appointments/{appointment_id}/cancel") => "cancel appointment".to_string(),
        (m, r) => format!("{} {r}", m.to_ascii_lowercase()),
    }
}

/// The middleware: authenticate, limit, run the handler, audit what ops changed.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(token) = bearer(request.headers()) else {
        return next.run(request).await;
    };
    // A key that does not authenticate is left to the handler, which answers 401 where a
    // key is needed and serves public routes anyway.
    let Ok((caller, limit)) = state.guard.authenticate(&state, token).await else {
        return next.run(request).await;
    };
    let (remaining, refilled_in) = match state.guard.admit(caller.api_key_id, limit, Instant::now())
    {
        Admission::Allowed {
            remaining,
            refilled_in,
        } => (remaining, refilled_in),
        Admission::Limited { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(api_key_id = %caller.api_key_id, "request limit reached");
            let mut response = ApiError::RateLimited {
                retry_after_seconds: seconds,
            }
            .into_response();
            let headers = response.headers_mut();
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
            rate_limit_headers(headers, limit, 0, seconds);
            return response;
        }
    };
    request.extensions_mut().insert(caller);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    rate_limit_headers(response.headers_mut(), limit, remaining, refilled_in);

    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(route) = route
        && caller.role == Role::Ops
        && changes
        && response.status().is_success()
        && !route.starts_with("/keys")
    {
        record(
            &state,
            &AuditEntry {
                audit_id: Uuid::now_v7(),
                tenant_id: caller.tenant_id,
                api_key_id: Some(caller.api_key_id),
                action: action_name(&method, &route),
                target: path,
                created_at: Utc::now(),
            },
        )
        .await;
    }
    response
}

/// Writes an audit entry; a failure is logged (the action itself already happened).
pub async fn record(state: &AppState, entry: &AuditEntry) {
    if let Err(err) = state.db.keys().record_audit(entry).await {
        tracing::error!(error = %err, action = %entry.action, "could not write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let guard = Guard::default();
        let key = Uuid::now_v7();
        let limit = ApiRateLimit {
            per_second: 10,
            burst: 3,
        };
        let t0 = Instant::now();
        for expected in [2, 1, 0] {
            assert_eq!(
                guard.admit(key, limit, t0),
                Admission::Allowed {
                    remaining: expected,
                    refilled_in: 1,
                }
            );
        }
        let Admission::Limited { retry_after } = guard.admit(key, limit, t0) else {
            panic!("the fourth request at once is over the burst");
        };
        assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
        assert!(matches!(
            guard.admit(key, limit, t0 + Duration::from_millis(100)),
            Admission::Allowed { .. }
        ));
        assert!(matches!(
            guard.admit(Uuid::now_v7(), limit, t0),
            Admission::Allowed { .. }
        ));
    }

    #[test]
    fn ops_actions_get_short_names() {
        assert_eq!(
            action_name(&Method::PUT, "/services/{service_id}"),
            "put service"
        );
        assert_eq!(
            action_name(&Method::POST, "/resync/{appointment_id}"),
            "resync"
        );
        assert_eq!(
            action_name(&Method::POST, "/appointments"),
            "post /appointments"
        );
    }
}
