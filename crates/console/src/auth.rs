//! Who is calling: a bearer token (`PORTCULLIS_ADMIN_TOKEN` or an API token)
//! or a session cookie. Requests that change something under a session must
//! carry the session's CSRF token in `X-CSRF-Token`; bearer requests carry
//! no ambient credential and need none.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, header};

use crate::AppState;
use crate::error::ApiError;
use crate::secret::{TOKEN_PREFIX, digest, same};

pub const SESSION_COOKIE: &str = "pc_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// For the audit log: the user, `token:NAME` or `admin-token`.
    pub actor: String,
    pub via: Via,
    pub ip: IpAddr,
}

#[derive(Debug, Clone)]
pub enum Via {
    Session {
        id_hash: Vec<u8>,
        csrf: String,
        expires_ms: i64,
    },
    ApiToken,
    AdminToken,
}

impl Via {
    pub fn name(&self) -> &'static str {
        match self {
            Via::Session { .. } => "session",
            Via::ApiToken => "api-token",
            Via::AdminToken => "admin-token",
        }
    }
}

/// The address of the admin client (the peer of the admin connection).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client's address as an extractor (unspecified when unknown).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The value of a cookie, from every `Cookie` header.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(ApiError::unauthorized)?;
            return bearer(state, token.trim(), ip).await;
        }
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(ApiError::unauthorized)?;
        let id_hash = digest(&id);
        let lookup = id_hash.clone();
        let session = state
            .db(move |db| db.session(&lookup))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !is_safe(&parts.method) {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same(given, &session.csrf) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token header",
                ));
            }
        }
        Ok(Caller {
            actor: session.user,
            via: Via::Session {
                id_hash,
                csrf: session.csrf,
                expires_ms: session.expires_ms,
            },
            ip,
        })
    }
}

async fn bearer(state: &AppState, token: &str, ip: IpAddr) -> Result<Caller, ApiError> {
    if let Some(admin) = &state.admin_token
        && same(token, admin)
    {
        return Ok(Caller {
            actor: "admin-token".into(),
            via: Via::AdminToken,
            ip,
        });
    }
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::unauthorized());
    }
    // Looked up by digest: the stored value is never the token itself, and
    // equality of 256-bit digests leaks nothing usable about the token.
    let token_hash = digest(token);
    let found = state.db(move |db| db.use_token(&token_hash)).await?;
    match found {
        Some(info) => Ok(Caller {
            actor: format!("token:{}", info.name),
            via: Via::ApiToken,
            ip,
        }),
        None => Err(ApiError::unauthorized()),
    }
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(id: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; pc_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert_eq!(
            session_cookie("x", 60, true),
            "pc_session=x; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
    }
}
