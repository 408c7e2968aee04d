//! The counters: `/api/metrics` as JSON, `/metrics` in the Prometheus
//! (OpenMetrics) text format for a scraper, which sends its token as any
//! caller does (`authorization` in Prometheus's scrape config).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dripline_delivery::analytics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{AdminState, blocking, need};
use crate::auth::{Caller, Scope};
use crate::problem::Problem;

/// Every running total but the analytics counters (those are per day; see
/// `/api/journeys/{id}/analytics`).
#[utoipa::path(get, path = "/api/metrics", tag = "metrics",
    responses((status = 200, description = "Counter name to value", body = Object), (status = 403, body = Problem)))]
pub async fn json(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<BTreeMap<String, i64>>, Problem> {
    need(&caller, Scope::MetricsRead)?;
    blocking(move || {
        let mut all = state.store.metrics_all().map_err(Problem::store)?;
        all.retain(|name, _| !name.starts_with(analytics::PREFIX));
        Ok(Json(all))
    })
    .await
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByName {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByJourney {
    journey: String,
    version: String,
    step: String,
    channel: String,
    what: String,
}

/// The counters for Prometheus: `dripline_total{name}` for each running
/// total, `dripline_journey_total{journey,version,step,channel,what}` for
/// the analytics counters added over all days.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"), (status = 403, body = Problem)))]
pub async fn prometheus(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    need(&caller, Scope::MetricsRead)?;
    let all = blocking(move || state.store.metrics_all().map_err(Problem::store)).await?;
    let text = encode(&all).map_err(|e| {
        tracing::error!("encoding the metrics: {e}");
        Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn encode(all: &BTreeMap<String, i64>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("dripline");
    // A running total may be moved down (a claim given back), so it is a
    // gauge; the analytics only ever count up.
    let totals = Family::<ByName, Gauge>::default();
    let journeys = Family::<ByJourney, Counter>::default();
    registry.register(
        "value",
        "Dripline's running totals, by name",
        totals.clone(),
    );
    registry.register(
        "journey",
        "Journey analytics: what happened at each step and channel",
        journeys.clone(),
    );
    for (name, value) in all {
        match analytics::parse(name) {
            Some(counter) => {
                let labels = ByJourney {
                    journey: counter.journey.to_owned(),
                    version: counter.version.to_string(),
                    step: counter.step.unwrap_or("-").to_owned(),
                    channel: counter.channel.unwrap_or("-").to_owned(),
                    what: counter.what.to_owned(),
                };
                journeys
                    .get_or_create(&labels)
                    .inc_by(u64::try_from(*value).unwrap_or(0));
            }
            None => {
                totals
                    .get_or_create(&ByName { name: name.clone() })
                    .set(*value);
            }
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn totals_and_journey_counters_come_out_as_openmetrics() {
        let mut all = BTreeMap::new();
        all.insert("events.order.paid".to_owned(), 3);
        let key = analytics::Key {
            journey: "j",
            version: 1,
            step: Some("mail"),
            channel: Some("email"),
        };
        all.insert(analytics::counter(&key, 0, "sent"), 2);
        all.insert(analytics::counter(&key, 86_400_000, "sent"), 5);
        let text = encode(&all).unwrap();
        assert!(
            text.contains(r#"dripline_value{name="events.order.paid"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dripline_journey_total{journey="j",version="1",step="mail",channel="email",what="sent"} 7"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
