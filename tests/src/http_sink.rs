//! An HTTP receiver on loopback that keeps every request it gets and answers
//! as it is told: an SMS provider, a CRM, an alert webhook, as the tests need.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One request received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The path and query.
    pub path: String,
    /// The headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body, as text.
    pub body: String,
}

/// What the receiver does, shared with its handler.
#[derive(Clone, Default)]
pub struct Script {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses to answer with, in order; 200 when empty.
    statuses: Arc<Mutex<VecDeque<u16>>>,
    /// The body of a 200 answer.
    ok_body: Arc<Mutex<String>>,
}

/// A receiver serving on a loopback port until dropped.
pub struct Receiver {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    script: Script,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts one that answers 200 with `{"id":"provider-1"}`.
    pub fn start() -> Self {
        let (runtime, listener) = crate::loopback(1);
        let script = Script::default();
        *lock(&script.ok_body) = "{\"id\":\"provider-1\"}".into();
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .unwrap_or_else(|e| panic!("the receiver's address: {e}"))
        );
        let app = axum::Router::new()
            .fallback(record)
            .with_state(script.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            script,
            _runtime: runtime,
        }
    }

    /// Answers the next requests with `statuses`, in order, then 200 again.
    pub fn answer_with(&self, statuses: &[u16]) {
        lock(&self.script.statuses).extend(statuses);
    }

    /// Answers 200 with `body` from now on.
    pub fn ok_body(&self, body: &str) {
        *lock(&self.script.ok_body) = body.to_string();
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.script.hits).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn record(
    State(script): State<Script>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    lock(&script.hits).push(Hit {
        path: uri.to_string(),
        headers,
        body,
    });
    let status = lock(&script.statuses).pop_front().unwrap_or(200);
    let body = if status == 200 {
        lock(&script.ok_body).clone()
    } else {
        format!("{{\"error\":\"status {status}\"}}")
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}
