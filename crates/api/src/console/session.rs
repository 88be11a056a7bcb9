//! Console login and sessions. The ops person pastes an `ops` or `viewer` key once, in the
//! body of a POST (never a URL); the server looks it up with the API's own key lookup and
//! answers with a random session token in an HttpOnly, SameSite=Strict cookie (Secure
//! behind TLS) that expires. Only hashes are stored; the key is looked up again on every
//! request, so a revoked key ends its sessions. Each session has a CSRF token that every
//! state-changing form carries; the login form carries one too (double-submit cookie).

use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, extract::OptionalFromRequestParts};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ConsoleError;
use super::layout::{bare_page, html_response};
use crate::auth::{Caller, Permission, hash_api_key};
use crate::state::AppState;
use crate::store::Role;
use crate::store::console::NewConsoleSession;

/// The session cookie.
pub const SESSION_COOKIE: &str = "phasebook_console";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "phasebook_console_login";
/// A session ends this long after login, whatever happens in between.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(8);
/// How long a login form stays usable.
const LOGIN_FORM_LIFETIME: TimeDelta = TimeDelta::minutes(30);

/// Who may open the console: ops, and viewers (read only). Agents book appointments
/// through the API and have no console.
pub fn may_open_console(role: Role) -> bool {
    matches!(role, Role::Ops | Role::Viewer)
}

/// The logged-in user of a console request.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The same caller the HTTP API would see for this key.
    pub caller: Caller,
    pub csrf_token: String,
    token_hash: String,
}

impl ConsoleUser {
    /// Whether this user gets the buttons (resync, cancel, provisioning plan).
    pub fn can_operate(&self) -> bool {
        Permission::Operate.allowed_for(self.caller.role)
    }

    /// Refuses a state-changing form that does not carry this session's token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), ConsoleError> {
        if same_token(presented, &self.csrf_token) {
            Ok(())
        } else {
            tracing::warn!(tenant_id = %self.caller.tenant_id, "console form without a valid CSRF token refused");
            Err(ConsoleError::Csrf)
        }
    }
}

/// Compares two tokens in time that does not depend on where they differ.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token: 32 bytes, URL-safe base64.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The request reached us through TLS (a proxy in front of the binary says so).
pub fn behind_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// A console cookie: HttpOnly, SameSite=Strict, only sent to `/ops`, Secure behind TLS.
fn set_cookie(name: &str, value: &str, max_age: TimeDelta, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ops; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.num_seconds()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn current_user(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<ConsoleUser>, ConsoleError> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(token);
    let Some(session) = state
        .db
        .console()
        .find_console_session(&hash, Utc::now())
        .await?
    else {
        return Ok(None);
    };
    // The API's own key lookup: a revoked key ends its sessions at once.
    let Some(owner) = state.store.find_api_key(&session.key_hash).await? else {
        return Ok(None);
    };
    if owner.tenant_id != session.tenant_id || !may_open_console(owner.role) {
        return Ok(None);
    }
    tracing::Span::current().record("tenant_id", tracing::field::display(owner.tenant_id));
    Ok(Some(ConsoleUser {
        caller: Caller {
            tenant_id: owner.tenant_id,
            role: owner.role,
            api_key_id: owner.api_key_id,
        },
        csrf_token: session.csrf_token,
        token_hash: hash,
    }))
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        current_user(parts, state)
            .await?
            .ok_or(ConsoleError::LoginRequired)
    }
}

impl OptionalFromRequestParts<AppState> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ConsoleError> {
        current_user(parts, state).await
    }
}

/// The login page, with a fresh login-form token.
fn login_form(status: StatusCode, message: Option<&str>, secure: bool) -> Response {
    let token = random_token();
    let body = bare_page(
        "Log in",
        html! {
            @if let Some(message) = message {
                p.problem role="alert" { (message) }
            }
            p {
                "Paste an " strong { "ops" } " or " strong { "viewer" }
                " API key. It is sent once; this browser then keeps only a session cookie that ends after "
                (SESSION_LIFETIME.num_hours()) " hours or when you log out."
            }
            form.login method="post" action="/ops/login" autocomplete="off" {
                input type="hidden" name="csrf_token" value=(token);
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" required
                    autocomplete="off" spellcheck="false" placeholder="pb_live_…";
                button type="submit" { "Log in" }
            }
        },
    );
    let mut response = html_response(status, body);
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, LOGIN_FORM_LIFETIME, secure),
    );
    response
}

pub async fn login_page(user: Option<ConsoleUser>, headers: HeaderMap) -> Response {
    if user.is_some() {
        return Redirect::to("/ops").into_response();
    }
    login_form(StatusCode::OK, None, behind_tls(&headers))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    csrf_token: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm { <redacted> }")
    }
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let secure = behind_tls(&headers);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(&form.csrf_token, expected) {
        return Ok(login_form(
            StatusCode::FORBIDDEN,
            Some("This login form expired or was not sent from this console; try again."),
            secure,
        ));
    }
    let key_hash = hash_api_key(form.api_key.trim());
    let owner = state.store.find_api_key(&key_hash).await?;
    let owner = match owner {
        Some(owner) if may_open_console(owner.role) => owner,
        Some(owner) => {
            tracing::info!(tenant_id = %owner.tenant_id, role = owner.role.as_str(), "console login with a key of another role refused");
            return Ok(login_form(
                StatusCode::FORBIDDEN,
                Some("This key's role may not open the console; use an ops or viewer key."),
                secure,
            ));
        }
        None => {
            return Ok(login_form(
                StatusCode::UNAUTHORIZED,
                Some("This key is not valid (or it was revoked)."),
                secure,
            ));
        }
    };
    let now = Utc::now();
    let console = state.db.console();
    if let Err(err) = console.purge_expired_console_sessions(now).await {
        tracing::warn!(error = %err, "could not purge expired console sessions");
    }
    let token = random_token();
    console
        .create_console_session(&NewConsoleSession {
            token_hash: token_hash(&token),
            tenant_id: owner.tenant_id,
            key_hash,
            csrf_token: random_token(),
            created_at: now,
            expires_at: now + SESSION_LIFETIME,
        })
        .await?;
    tracing::info!(tenant_id = %owner.tenant_id, role = owner.role.as_str(), api_key_id = %owner.api_key_id, "console session opened");
    let mut response = Redirect::to("/ops").into_response();
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, SESSION_LIFETIME, secure),
    );
    headers.append(
        SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", TimeDelta::zero(), secure),
    );
    Ok(response)
}

/// A form that only carries the session's CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf_token: String,
}

pub async fn logout(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    user.check_csrf(&form.csrf_token)?;
    state
        .db
        .console()
        .delete_console_session(&user.token_hash)
        .await?;
    tracing::info!(tenant_id = %user.caller.tenant_id, "console session closed");
    let mut response = Redirect::to("/ops/login").into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", TimeDelta::zero(), behind_tls(&headers)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical_and_present() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", ""));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let plain = set_cookie(SESSION_COOKIE, "t", SESSION_LIFETIME, false);
        assert_eq!(
            plain.to_str().expect("ascii"),
            "phasebook_console=t; Path=/ops; Max-Age=28800; HttpOnly; SameSite=Strict"
        );
        let tls = set_cookie(SESSION_COOKIE, "t", SESSION_LIFETIME, true);
        assert!(tls.to_str().expect("ascii").ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_tls(&headers));
        assert!(!behind_tls(&HeaderMap::new()));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; phasebook_console=tok; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), None);
    }
}
