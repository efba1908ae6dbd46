//! The JSON API. Every route is added through [`Routes::add`], which also
//! records it, so a test can hold the OpenAPI document to the router.

mod admin;
mod dashboard;
mod events;
mod lists;
mod meta;
mod policies;
mod session;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::Caller;
use crate::db::NewAudit;
use crate::error::ApiError;

/// The methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// The OpenAPI name.
    #[cfg(test)]
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// The router, and every route it serves.
pub struct Routes {
    pub router: Router<AppState>,
    pub table: Vec<(Verb, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.table.push((verb, path));
        self
    }
}

pub fn routes() -> Routes {
    use Verb::{Delete, Get, Post, Put};
    let routes = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    routes
        .add(Get, "/healthz", meta::healthz)
        .add(Get, "/metrics", meta::metrics)
        .add(Get, "/api/openapi.json", meta::openapi)
        .add(Post, "/api/login", session::login)
        .add(Post, "/api/logout", session::logout)
        .add(Get, "/api/session", session::current)
        .add(Get, "/api/dashboard/summary", dashboard::summary)
        .add(Get, "/api/dashboard/series", dashboard::series)
        .add(Get, "/api/dashboard/top", dashboard::top)
        .add(Get, "/api/dashboard/challenges", dashboard::challenges)
        .add(Get, "/api/events", events::search)
        .add(Get, "/api/events/{id}", events::by_id)
        .add(Get, "/api/events/request/{request_id}", events::by_request)
        .add(Get, "/api/policies", policies::current)
        .add(Post, "/api/policies/validate", policies::validate)
        .add(Post, "/api/policies/apply", policies::apply)
        .add(Get, "/api/policies/history", policies::history)
        .add(Get, "/api/policies/history/{version}", policies::version)
        .add(Post, "/api/policies/rollback", policies::rollback)
        .add(Get, "/api/policies/trial", policies::trial)
        .add(Get, "/api/lists", lists::get)
        .add(Put, "/api/lists", lists::put)
        .add(Get, "/api/bans", lists::bans)
        .add(Post, "/api/bans", lists::ban)
        .add(Delete, "/api/bans/{ip}", lists::lift)
        .add(
            Post,
            "/api/clearances/{cid}/revoke",
            lists::revoke_clearance,
        )
        .add(Get, "/api/tokens", admin::tokens)
        .add(Post, "/api/tokens", admin::create_token)
        .add(Delete, "/api/tokens/{id}", admin::revoke_token)
        .add(Get, "/api/audit", admin::audit_log)
}

/// `Query<T>` whose rejection is a JSON error.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// `Json<T>` whose rejection is a JSON error.
pub struct J<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for J<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|j| J(j.0))
            .map_err(|e: JsonRejection| ApiError::bad_request(e.body_text()))
    }
}

pub type Reply<T> = Result<Json<T>, ApiError>;

pub fn ok<T: Serialize>(value: T) -> Reply<T> {
    Ok(Json(value))
}

/// One change, for the audit log.
#[derive(Debug, Default)]
pub struct Change<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub summary: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Records a change by `caller` in the audit log.
pub async fn audit(state: &AppState, caller: &Caller, change: Change<'_>) -> Result<(), ApiError> {
    audit_as(state, &caller.actor, caller.ip, change).await
}

/// Records a change by `actor`, from `ip`, in the audit log.
pub async fn audit_as(
    state: &AppState,
    actor: &str,
    ip: std::net::IpAddr,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let (actor, ip) = (actor.to_owned(), ip.to_string());
    let action = change.action.to_owned();
    let target = change.target.to_owned();
    let summary = change.summary.to_owned();
    let (before, after) = (change.before, change.after);
    state
        .db(move |db| {
            db.audit(&NewAudit {
                actor: &actor,
                ip: &ip,
                action: &action,
                target: &target,
                summary: &summary,
                before: before.as_deref(),
                after: after.as_deref(),
            })
        })
        .await?;
    Ok(())
}

/// The time window of the dashboard's queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    #[default]
    Hour,
    Day,
}

impl Window {
    pub fn minutes(self) -> i64 {
        match self {
            Window::Hour => 60,
            Window::Day => 24 * 60,
        }
    }

    /// `[from, to)` in milliseconds, ending now.
    pub fn range_ms(self, now_ms: i64) -> (i64, i64) {
        (now_ms - self.minutes() * 60_000, now_ms + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn openapi() -> Value {
        serde_json::from_str(meta::OPENAPI).expect("openapi.json is JSON")
    }

    #[test]
    fn the_openapi_document_covers_every_route_and_no_other() {
        let doc = openapi();
        let served: BTreeSet<(String, String)> = routes()
            .table
            .iter()
            .map(|(verb, path)| (path.to_string(), verb.name().to_string()))
            .collect();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(
                    op["summary"].is_string() && op["responses"].is_object(),
                    "{method} {path} needs a summary and responses"
                );
                documented.insert((path.clone(), method.clone()));
            }
        }
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let not_served: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "undocumented routes: {undocumented:?}"
        );
        assert!(
            not_served.is_empty(),
            "documented but not served: {not_served:?}"
        );
        assert_eq!(served.len(), routes().table.len(), "a route added twice");
    }

    #[test]
    fn every_schema_reference_resolves() {
        fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    for (key, v) in map {
                        match (key.as_str(), v) {
                            ("$ref", Value::String(r)) => out.push(r),
                            _ => refs(v, out),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = openapi();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50);
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not defined"
            );
        }
    }
}
