//! The interception log: event search with filters, and one event's detail.

use axum::extract::{Path, State};
use portcullis_store::{ActionKind, EventFilter, StoredEvent, id_ts_ms};
use serde::{Deserialize, Serialize};

use super::{Q, Reply, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The filters; every one given must match exactly.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    route: Option<String>,
    ip: Option<String>,
    device: Option<String>,
    account: Option<String>,
    cid: Option<String>,
    rule: Option<String>,
    action: Option<String>,
    kind: Option<ActionKind>,
    class: Option<String>,
    exclude_class: Option<String>,
    /// Only what log-only policies would have stopped.
    trial: bool,
    request_id: Option<String>,
    limit: u32,
    before_id: Option<i64>,
}

/// Empty text boxes of the UI mean "any".
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Search {
    fn filter(self) -> EventFilter {
        EventFilter {
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            route: given(self.route),
            client_ip: given(self.ip),
            device: given(self.device),
            account: given(self.account),
            cid: given(self.cid),
            rule: given(self.rule),
            action: given(self.action),
            kind: self.kind,
            class: given(self.class),
            exclude_class: given(self.exclude_class),
            limit: self.limit,
            before_id: self.before_id,
            trial: self.trial,
        }
    }
}

/// An event with its id as a string: ids are 64-bit and JavaScript
/// numbers are not.
#[derive(Serialize)]
pub struct EventOut {
    id: String,
    #[serde(flatten)]
    event: StoredEvent,
}

impl From<StoredEvent> for EventOut {
    fn from(mut event: StoredEvent) -> Self {
        EventOut {
            id: event.id.take().map(|id| id.to_string()).unwrap_or_default(),
            event,
        }
    }
}

fn out(events: Vec<StoredEvent>) -> Vec<EventOut> {
    events.into_iter().map(EventOut::from).collect()
}

#[derive(Serialize)]
pub struct Page {
    events: Vec<EventOut>,
    /// Pass as `before_id` for the next page; absent on the last one.
    next_before_id: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<Search>,
) -> Reply<Page> {
    if let Some(request_id) = given(q.request_id.clone()) {
        let found = state.events(move |store| store.get(&request_id)).await?;
        return ok(Page {
            events: out(found.into_iter().collect()),
            next_before_id: None,
        });
    }
    let filter = q.filter();
    let limit = filter.limit() as usize;
    let events = state.events(move |store| store.search(&filter)).await?;
    let next_before_id = if events.len() == limit {
        events.last().and_then(|e| e.id).map(|id| id.to_string())
    } else {
        None
    };
    ok(Page {
        events: out(events),
        next_before_id,
    })
}

pub async fn by_id(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<i64>,
) -> Reply<EventOut> {
    let filter = EventFilter {
        from_ms: Some(id_ts_ms(id)),
        before_id: id.checked_add(1),
        limit: 1,
        ..EventFilter::default()
    };
    let found = state.events(move |store| store.search(&filter)).await?;
    match found.into_iter().next() {
        Some(event) if event.id == Some(id) => ok(event.into()),
        _ => Err(ApiError::not_found("event")),
    }
}

pub async fn by_request(
    State(state): State<AppState>,
    _caller: Caller,
    Path(request_id): Path<String>,
) -> Reply<EventOut> {
    let found = state.events(move |store| store.get(&request_id)).await?;
    found.map_or_else(|| Err(ApiError::not_found("event")), |e| ok(e.into()))
}
