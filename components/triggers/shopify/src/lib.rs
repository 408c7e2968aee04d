//! The `shopify` trigger: turns one Shopify webhook into one canonical event.
//!
//! | `X-Shopify-Topic`  | event              |
//! |--------------------|--------------------|
//! | `checkouts/create` | `checkout.created` |
//! | `checkouts/update` | `checkout.updated` |
//! | `orders/create`    | `order.created`    |
//! | `orders/paid`      | `order.paid`       |
//! | `customers/create` | `customer.created` |
//! | `customers/update` | `customer.updated` |
//! | `carts/update`     | `cart.updated`     |
//!
//! Any other topic is `unsupported-topic`. The gateway has already checked the
//! HMAC; this crate only reads the request.
//!
//! - **Id**: stable from `X-Shopify-Shop-Domain` and `X-Shopify-Event-Id` (the
//!   same event delivered twice, or to two subscriptions, has one id), else
//!   `X-Shopify-Webhook-Id`, else the topic and body.
//! - **When**: `X-Shopify-Triggered-At`, else the payload's `updated_at`, then
//!   `created_at`, else the receipt time.
//! - **Who**: the email (payload, `contact_email`, `customer.email`); the phone
//!   in E.164 (payload, `customer.phone`, then the billing, shipping and default
//!   address phones, a national number taking its address's `country_code`);
//!   `("shopify", customer id)`; and `("shopify_cart", cart token)` so that
//!   the runtime can join a cart (which names nobody else) to the checkout
//!   that later carries the same token. A checkout without an email or phone
//!   (the shopper has not typed one yet) is `missing-identity`: nobody can be
//!   reached, and the gateway acknowledges it as skipped.
//! - **Properties**: `shop`, `topic`, `consent` (`{"email": .., "sms": ..}`,
//!   each `granted`, `denied` or `unknown`), the customer's `customer_id`,
//!   `first_name`, `last_name`, `locale`, `line_items` (`title`,
//!   `variant_title`, `quantity`, `price`, `line_price`, `sku`, `product_id`,
//!   `variant_id`, `vendor`, `product_type`, `image` where Shopify sends
//!   them; the first 500, with `line_items_count` and `line_items_truncated`
//!   when there were more), money as Shopify's decimal strings, and per topic:
//!   checkouts `checkout_id`, `token`, `checkout_token` (= `token`),
//!   `cart_token`, `abandoned_checkout_url`, `completed_at`; orders
//!   `order_id`, `order_name`, `order_number`, `checkout_token`,
//!   `checkout_id`, `cart_token`, `financial_status`, `fulfillment_status`;
//!   customers `orders_count`, `total_spent`, `tags`, `state`; carts
//!   `cart_token`, `note`. A goal such as "ordered" matches the checkout by
//!   `checkout_token`, which checkouts and orders both carry.

mod payload;

use canonical::{
    Event, Identities, Request, TriggerError, calling_code, header, id_text, normalize_email,
    normalize_phone, parse_timestamp, require_media_type, stable_id, str_of,
};
use payload::{Address, Consent, LineItems, Record};
use serde_json::{Map, Value, json};

canonical::export_trigger!(handle);

/// Line items kept per event. A cart with more (a wholesale order, a bot) is
/// still an authentic delivery and is accepted: its first items are kept, and
/// `line_items_count` says how many there were, rather than copying them all
/// into every event and enrollment or refusing it (Shopify retries a refused
/// webhook and in time drops the subscription).
pub const MAX_LINE_ITEMS: usize = 500;

/// What kind of record a topic's payload is; it decides where the customer is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Checkout,
    Order,
    Customer,
    Cart,
    /// A mandatory compliance webhook about one customer (`customers/redact`,
    /// `customers/data_request`): the customer is nested, and nothing of the
    /// payload is kept beyond who it is and the request itself.
    Compliance,
    /// `shop/redact`: about the whole shop, no customer.
    Shop,
}

/// The event name and payload kind of a supported topic.
fn topic(topic: &str) -> Option<(&'static str, Kind)> {
    Some(match topic {
        "checkouts/create" => ("checkout.created", Kind::Checkout),
        "checkouts/update" => ("checkout.updated", Kind::Checkout),
        "orders/create" => ("order.created", Kind::Order),
        "orders/paid" => ("order.paid", Kind::Order),
        "customers/create" => ("customer.created", Kind::Customer),
        "customers/update" => ("customer.updated", Kind::Customer),
        "carts/update" => ("cart.updated", Kind::Cart),
        // The names the runner carries out as an erasure and a data request
        // (dripline_store::control), from this source only.
        "customers/redact" => ("contact.erase_requested", Kind::Compliance),
        "customers/data_request" => ("contact.data_requested", Kind::Compliance),
        "shop/redact" => ("shop.erase_requested", Kind::Shop),
        _ => return None,
    })
}

/// Turns one Shopify webhook into its event.
pub fn handle(request: &Request<'_>) -> Result<Vec<Event>, TriggerError> {
    parse(request).map(|event| vec![event])
}

/// Parses one Shopify webhook.
pub fn parse(request: &Request<'_>) -> Result<Event, TriggerError> {
    require_media_type(request.headers, "application/json")?;
    let topic_name = header(request.headers, "x-shopify-topic")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TriggerError::Malformed("header X-Shopify-Topic: missing".into()))?;
    let (name, kind) = topic(topic_name)
        .ok_or_else(|| TriggerError::UnsupportedTopic(format!("topic {topic_name:?}")))?;
    let payload = payload::parse(request.body).map_err(TriggerError::Malformed)?;
    let shop = header(request.headers, "x-shopify-shop-domain")
        .map(str::trim)
        .unwrap_or_default();

    // A customers/* payload is the customer; the others nest one.
    let customer = match kind {
        Kind::Customer => Some(&payload),
        _ => payload.customer.0.as_deref(),
    };
    let identities = identities(&payload, customer, kind);
    if matches!(kind, Kind::Compliance | Kind::Shop) {
        return compliance_event(request, &payload, shop, topic_name, name, identities, kind);
    }
    match kind {
        Kind::Checkout if identities.email.is_none() && identities.phone.is_none() => {
            return Err(TriggerError::MissingIdentity(
                "checkout has no email or phone yet".into(),
            ));
        }
        _ if identities.is_empty() => {
            return Err(TriggerError::MissingIdentity(format!(
                "{topic_name} payload has no email, phone, customer id or cart token"
            )));
        }
        _ => {}
    }

    let mut properties = Map::new();
    properties.insert("shop".into(), json!(shop));
    properties.insert("topic".into(), json!(topic_name));
    properties.insert("consent".into(), consent(&payload, customer));
    customer_properties(customer, &payload, &mut properties);
    kind_properties(kind, &payload, &mut properties)?;

    Ok(Event {
        id: event_id(request, shop, topic_name),
        source: "shopify".into(),
        name: name.into(),
        identities,
        properties: Value::Object(properties),
        occurred_at: occurred_at(request, &payload),
        received_at: request.received_at,
    })
}

/// A compliance webhook's event: who it is about (`customers/*`) or which
/// shop (`shop/redact`), and the request's own ids, nothing else.
fn compliance_event(
    request: &Request<'_>,
    payload: &Record,
    shop: &str,
    topic_name: &str,
    name: &str,
    identities: Identities,
    kind: Kind,
) -> Result<Event, TriggerError> {
    if kind == Kind::Compliance && identities.is_empty() {
        return Err(TriggerError::MissingIdentity(format!(
            "{topic_name} payload has no customer email, phone or id"
        )));
    }
    let mut properties = Map::new();
    properties.insert("shop".into(), json!(shop));
    properties.insert("topic".into(), json!(topic_name));
    for field in [
        "shop_id",
        "orders_to_redact",
        "orders_requested",
        "data_request",
    ] {
        if let Some(value) = payload.get(field) {
            properties.insert(field.into(), value.clone());
        }
    }
    Ok(Event {
        id: event_id(request, shop, topic_name),
        source: "shopify".into(),
        name: name.into(),
        identities,
        properties: Value::Object(properties),
        occurred_at: request.received_at,
        received_at: request.received_at,
    })
}

fn event_id(request: &Request<'_>, shop: &str, topic: &str) -> String {
    let delivery = |name| {
        header(request.headers, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(event) = delivery("x-shopify-event-id") {
        stable_id("shopify", &[shop.as_bytes(), b"event", event.as_bytes()])
    } else if let Some(webhook) = delivery("x-shopify-webhook-id") {
        stable_id(
            "shopify",
            &[shop.as_bytes(), b"webhook", webhook.as_bytes()],
        )
    } else {
        stable_id(
            "shopify",
            &[shop.as_bytes(), topic.as_bytes(), request.body],
        )
    }
}

fn occurred_at(request: &Request<'_>, payload: &Record) -> i64 {
    header(request.headers, "x-shopify-triggered-at")
        .and_then(parse_timestamp)
        .or_else(|| str_of(payload.get("updated_at")).and_then(parse_timestamp))
        .or_else(|| str_of(payload.get("created_at")).and_then(parse_timestamp))
        .unwrap_or(request.received_at)
}

fn identities(payload: &Record, customer: Option<&Record>, kind: Kind) -> Identities {
    let from_customer = |key: &str| customer.and_then(|c| c.get(key));
    let email = [
        payload.get("email"),
        payload.get("contact_email"),
        from_customer("email"),
    ]
    .into_iter()
    .filter_map(|v| str_of(v))
    .find_map(normalize_email);

    // Address phones are often national; each takes its own address's country.
    // The payload's and customer's phones take the first address's country.
    let addresses: Vec<&Address> = [&payload.billing_address, &payload.shipping_address]
        .into_iter()
        .chain(customer.map(|c| &c.default_address))
        .filter_map(|address| address.0.as_ref())
        .collect();
    let country_of =
        |address: &Address| str_of(address.country_code.as_ref()).and_then(calling_code);
    let default_country = addresses.iter().find_map(|a| country_of(a));
    let direct = [payload.get("phone"), from_customer("phone")]
        .into_iter()
        .filter_map(|v| str_of(v))
        .find_map(|p| normalize_phone(p, default_country));
    let phone = direct.or_else(|| {
        addresses.iter().find_map(|address| {
            str_of(address.phone.as_ref()).and_then(|p| normalize_phone(p, country_of(address)))
        })
    });

    let mut identities = Identities {
        email,
        phone,
        ..Identities::default()
    };
    let customer_id = match kind {
        Kind::Customer => id_text(payload.get("id")),
        Kind::Shop => None,
        _ => id_text(from_customer("id")),
    };
    if let Some(id) = customer_id {
        identities.add_external("shopify", id);
    }
    let cart_token = match kind {
        Kind::Cart => id_text(payload.get("token")).or_else(|| id_text(payload.get("id"))),
        Kind::Checkout | Kind::Order => id_text(payload.get("cart_token")),
        Kind::Customer | Kind::Compliance | Kind::Shop => None,
    };
    if let Some(token) = cart_token {
        identities.add_external("shopify_cart", token);
    }
    identities
}

/// Shopify's marketing consent states: `subscribed` is an opt-in; the states
/// that mean "no" (`not_subscribed`, `unsubscribed`, `redacted`, `invalid`)
/// deny; `pending` (a double opt-in not yet confirmed) is unknown.
fn consent_state(consent: &payload::Lenient<Consent>) -> Option<&'static str> {
    let state = consent.0.as_ref()?.state.as_ref()?.as_str()?;
    Some(match state.to_ascii_lowercase().as_str() {
        "subscribed" => "granted",
        "not_subscribed" | "unsubscribed" | "redacted" | "invalid" => "denied",
        _ => "unknown",
    })
}

/// Consent per channel. A ticked box on this checkout or order
/// (`buyer_accepts_marketing`, `buyer_accepts_sms_marketing`) is the freshest
/// opt-in and wins; otherwise the customer's recorded state; an unticked box
/// alone is no opt-out, only the absence of an opt-in, so it is `unknown`.
fn consent(payload: &Record, customer: Option<&Record>) -> Value {
    let ticked = |key: &str| payload.get(key).and_then(Value::as_bool) == Some(true);
    let recorded = |field: fn(&Record) -> &payload::Lenient<Consent>| {
        consent_state(field(payload)).or_else(|| customer.and_then(|c| consent_state(field(c))))
    };
    let legacy = || {
        // customers/* payloads of older API versions carry `accepts_marketing`.
        (customer
            .and_then(|c| c.get("accepts_marketing"))
            .and_then(Value::as_bool)
            == Some(true))
        .then_some("granted")
    };
    let email = if ticked("buyer_accepts_marketing") {
        "granted"
    } else {
        recorded(|r| &r.email_marketing_consent)
            .or_else(legacy)
            .unwrap_or("unknown")
    };
    let sms = if ticked("buyer_accepts_sms_marketing") {
        "granted"
    } else {
        recorded(|r| &r.sms_marketing_consent).unwrap_or("unknown")
    };
    json!({ "email": email, "sms": sms })
}

fn customer_properties(
    customer: Option<&Record>,
    payload: &Record,
    properties: &mut Map<String, Value>,
) {
    let billing = payload.billing_address.0.as_ref();
    if let Some(id) = customer.and_then(|c| id_text(c.get("id"))) {
        properties.insert("customer_id".into(), json!(id));
    }
    let billing_names = [
        ("first_name", billing.and_then(|b| b.first_name.as_ref())),
        ("last_name", billing.and_then(|b| b.last_name.as_ref())),
    ];
    for (key, on_billing) in billing_names {
        let value = customer
            .and_then(|c| str_of(c.get(key)))
            .or_else(|| str_of(on_billing));
        if let Some(value) = value {
            properties.insert(key.into(), json!(value));
        }
    }
    let locale = str_of(payload.get("customer_locale"))
        .or_else(|| customer.and_then(|c| str_of(c.get("locale"))));
    if let Some(locale) = locale {
        properties.insert("locale".into(), json!(locale));
    }
}

fn kind_properties(
    kind: Kind,
    payload: &Record,
    properties: &mut Map<String, Value>,
) -> Result<(), TriggerError> {
    let money = [
        "currency",
        "total_price",
        "subtotal_price",
        "total_tax",
        "total_discounts",
    ];
    match kind {
        Kind::Checkout => {
            rename(payload, properties, "id", "checkout_id");
            if let Some(token) = payload.get("token") {
                properties.insert("checkout_token".into(), token.clone());
            }
            copy(payload, properties, &money);
            copy(
                payload,
                properties,
                &[
                    "token",
                    "cart_token",
                    "abandoned_checkout_url",
                    "completed_at",
                    "created_at",
                    "updated_at",
                ],
            );
        }
        Kind::Order => {
            rename(payload, properties, "id", "order_id");
            rename(payload, properties, "name", "order_name");
            copy(payload, properties, &money);
            copy(
                payload,
                properties,
                &[
                    "order_number",
                    "checkout_token",
                    "checkout_id",
                    "cart_token",
                    "token",
                    "financial_status",
                    "fulfillment_status",
                    "completed_at",
                    "processed_at",
                    "created_at",
                ],
            );
        }
        Kind::Customer => copy(
            payload,
            properties,
            &[
                "orders_count",
                "total_spent",
                "currency",
                "tags",
                "state",
                "verified_email",
                "created_at",
                "updated_at",
            ],
        ),
        // Made by `compliance_event`, never reaching here.
        Kind::Compliance | Kind::Shop => {}
        Kind::Cart => {
            let token = payload.get("token").or_else(|| payload.get("id"));
            if let Some(token) = token {
                properties.insert("cart_token".into(), token.clone());
            }
            copy(payload, properties, &["note", "created_at", "updated_at"]);
        }
    }
    if kind != Kind::Customer {
        if let LineItems::Items(items) = &payload.line_items
            && items.len() > MAX_LINE_ITEMS
        {
            properties.insert("line_items_count".into(), Value::from(items.len()));
            properties.insert("line_items_truncated".into(), Value::Bool(true));
        }
        properties.insert("line_items".into(), line_items(&payload.line_items)?);
    }
    Ok(())
}

/// The kept fields of each line item (`title`, `variant_title`, `quantity`,
/// `price`, `line_price`, `sku`, `product_id`, `variant_id`, `vendor`,
/// `product_type`, `image`, `image_url`; see [`payload::LineItem`]).
fn line_items(items: &LineItems) -> Result<Value, TriggerError> {
    let items = match items {
        LineItems::Absent => return Ok(json!([])),
        LineItems::Items(items) => items,
        LineItems::NotAList => {
            return Err(TriggerError::Malformed("line_items: not a list".into()));
        }
    };
    items
        .iter()
        .take(MAX_LINE_ITEMS)
        .enumerate()
        .map(|(index, item)| {
            let item = item.0.as_ref().ok_or_else(|| {
                TriggerError::Malformed(format!("line_items[{index}]: not an object"))
            })?;
            let mut kept = Map::new();
            for (key, value) in item.fields() {
                if let Some(value) = value {
                    kept.insert(key.to_string(), value.clone());
                }
            }
            // Newer API versions send the image as an object with a `src`.
            if let Some(src) = kept.get("image").and_then(|i| i.get("src")).cloned() {
                kept.insert("image".into(), src);
            }
            Ok(Value::Object(kept))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn copy(from: &Record, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(value) = from.get(key) {
            to.insert((*key).to_string(), value.clone());
        }
    }
}

fn rename(from: &Record, to: &mut Map<String, Value>, key: &str, as_key: &str) {
    if let Some(value) = from.get(key) {
        to.insert(as_key.to_string(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn ids<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
        pairs
            .into_iter()
            .map(|(system, id)| (system.to_string(), id.to_string()))
            .collect()
    }

    fn deliver(topic: &str, body: Value) -> Result<Event, TriggerError> {
        deliver_with(topic, body, &[])
    }

    fn deliver_with(
        topic: &str,
        body: Value,
        extra: &[(&str, &str)],
    ) -> Result<Event, TriggerError> {
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("x-shopify-topic".into(), topic.into()),
            ("x-shopify-shop-domain".into(), "acme.myshopify.com".into()),
            ("x-shopify-webhook-id".into(), "wh-1".into()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let body = body.to_string();
        parse(&Request {
            path: "/webhooks/shopify",
            headers: &headers,
            body: body.as_bytes(),
            received_at: 1_700_000_000_000,
        })
    }

    fn checkout() -> Value {
        json!({
            "id": 123, "token": "tok-1", "cart_token": "cart-1",
            "email": "Li.Wei@Example.com", "buyer_accepts_marketing": false,
            "created_at": "2024-03-01T10:00:00+08:00",
            "currency": "USD", "total_price": "39.98", "subtotal_price": "39.98",
            "abandoned_checkout_url": "https://acme.example/recover/tok-1",
            "line_items": [{"title": "Mug", "quantity": 2, "price": "19.99", "sku": "MUG", "grams": 300}],
            "billing_address": {"phone": "020 7946 0958", "country_code": "GB", "first_name": "Li"},
            "customer": {"id": 7385439482u64, "email": "li.wei@example.com",
                         "email_marketing_consent": {"state": "subscribed"},
                         "sms_marketing_consent": {"state": "not_subscribed"}}
        })
    }

    #[test]
    fn a_checkout_becomes_checkout_created_with_normalized_identities() {
        let event = deliver("checkouts/create", checkout()).unwrap();
        assert_eq!(event.name, "checkout.created");
        assert_eq!(event.source, "shopify");
        assert_eq!(
            event.identities.email.as_deref(),
            Some("li.wei@example.com")
        );
        assert_eq!(event.identities.phone.as_deref(), Some("+442079460958"));
        assert_eq!(
            event.identities.external_ids,
            ids([("shopify", "7385439482"), ("shopify_cart", "cart-1")])
        );
        assert_eq!(event.occurred_at, 1_709_258_400_000);
        assert_eq!(event.received_at, 1_700_000_000_000);
        assert!(event.properties.is_object());
    }

    #[test]
    fn a_checkout_keeps_what_a_recovery_message_needs() {
        let p = deliver("checkouts/update", checkout()).unwrap().properties;
        assert_eq!(p["checkout_token"], "tok-1");
        assert_eq!(
            p["abandoned_checkout_url"],
            "https://acme.example/recover/tok-1"
        );
        assert_eq!(p["total_price"], "39.98");
        assert_eq!(
            p["line_items"][0],
            json!({"title": "Mug", "quantity": 2, "price": "19.99", "sku": "MUG"})
        );
        assert_eq!(p["first_name"], "Li");
        assert_eq!(p["shop"], "acme.myshopify.com");
    }

    #[test]
    fn consent_comes_from_the_customers_recorded_state_unless_the_box_was_ticked() {
        let p = deliver("checkouts/create", checkout()).unwrap().properties;
        assert_eq!(p["consent"], json!({"email": "granted", "sms": "denied"}));
        let mut body = checkout();
        body["customer"]["email_marketing_consent"]["state"] = json!("unsubscribed");
        body["buyer_accepts_marketing"] = json!(true);
        let p = deliver("checkouts/create", body).unwrap().properties;
        assert_eq!(p["consent"]["email"], "granted");
        let mut body = checkout();
        body.as_object_mut().unwrap().remove("customer");
        let p = deliver("checkouts/create", body).unwrap().properties;
        assert_eq!(p["consent"], json!({"email": "unknown", "sms": "unknown"}));
    }

    #[test]
    fn a_checkout_without_email_or_phone_is_missing_identity() {
        let body = json!({"id": 1, "token": "t", "cart_token": "c", "customer": {"id": 5}});
        assert_eq!(
            deliver("checkouts/create", body),
            Err(TriggerError::MissingIdentity(
                "checkout has no email or phone yet".into()
            ))
        );
    }

    #[test]
    fn the_event_id_follows_the_event_id_header_and_ignores_the_webhook_id() {
        let a = deliver_with("orders/paid", checkout(), &[("x-shopify-event-id", "ev-9")]).unwrap();
        let headers_b = [
            ("x-shopify-event-id", "ev-9"),
            ("x-shopify-webhook-id", "other"),
        ];
        let b = deliver_with("orders/paid", checkout(), &headers_b).unwrap();
        assert_eq!(a.id, b.id);
        let c = deliver("orders/paid", checkout()).unwrap();
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn an_order_carries_the_checkout_token_a_goal_matches_on() {
        let body = json!({"id": 820982911946154508u64, "name": "#9999", "email": "jon@example.com",
                          "checkout_token": "tok-1", "financial_status": "paid", "line_items": []});
        let event = deliver("orders/paid", body).unwrap();
        assert_eq!(event.name, "order.paid");
        assert_eq!(event.properties["checkout_token"], "tok-1");
        assert_eq!(event.properties["order_name"], "#9999");
        assert_eq!(event.properties["order_id"], json!(820982911946154508u64));
    }

    #[test]
    fn a_cart_is_known_by_its_token_alone() {
        let body = json!({"id": "cart-1", "token": "cart-1", "line_items": [{"title": "Mug", "quantity": 1}]});
        let event = deliver("carts/update", body).unwrap();
        assert_eq!(event.name, "cart.updated");
        assert_eq!(
            event.identities.external_ids,
            ids([("shopify_cart", "cart-1")])
        );
    }

    #[test]
    fn a_customer_payload_is_the_customer() {
        let body = json!({"id": 706405506930370084u64, "email": "bob@biller.com", "phone": "+16135551111",
                          "sms_marketing_consent": {"state": "subscribed"}});
        let event = deliver("customers/update", body).unwrap();
        assert_eq!(event.name, "customer.updated");
        assert_eq!(event.identities.phone.as_deref(), Some("+16135551111"));
        assert_eq!(event.properties["consent"]["sms"], "granted");
        assert_eq!(event.properties["customer_id"], "706405506930370084");
    }

    #[test]
    fn other_topics_and_content_types_are_refused_by_name() {
        assert_eq!(
            deliver("products/update", json!({})),
            Err(TriggerError::UnsupportedTopic(
                "topic \"products/update\"".into()
            ))
        );
        let headers = [("content-type".to_string(), "text/plain".to_string())];
        let err = parse(&Request {
            path: "/",
            headers: &headers,
            body: b"{}",
            received_at: 0,
        });
        assert!(matches!(err, Err(TriggerError::UnsupportedContentType(_))));
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_naming_why() {
        let headers = [
            ("content-type".to_string(), "application/json".to_string()),
            ("x-shopify-topic".to_string(), "orders/paid".to_string()),
        ];
        let err = parse(&Request {
            path: "/",
            headers: &headers,
            body: b"{\"id\":",
            received_at: 0,
        });
        assert!(
            matches!(err, Err(TriggerError::Malformed(ref m)) if m.starts_with("body: not JSON")),
            "{err:?}"
        );
    }

    #[test]
    fn a_cart_with_more_line_items_than_kept_is_accepted_with_its_first_items_and_their_count() {
        let mut body = checkout();
        body["line_items"] = Value::Array(vec![json!({"title": "x"}); 1_499]);
        let event = deliver("checkouts/create", body).unwrap();
        let properties = &event.properties;
        assert_eq!(
            properties["line_items"].as_array().map(Vec::len),
            Some(MAX_LINE_ITEMS)
        );
        assert_eq!(properties["line_items_count"], 1_499);
        assert_eq!(properties["line_items_truncated"], true);
    }

    #[test]
    fn the_compliance_webhooks_become_erasure_and_data_requests_keeping_only_who_and_what() {
        let customer =
            json!({ "id": 191167, "email": "John@Example.com", "phone": "555-625-1199" });
        let redact = deliver(
            "customers/redact",
            json!({ "shop_id": 954889, "shop_domain": "acme.myshopify.com",
                    "customer": customer, "orders_to_redact": [299938, 280263] }),
        )
        .unwrap();
        assert_eq!(redact.name, "contact.erase_requested");
        assert_eq!(redact.identities.email.as_deref(), Some("john@example.com"));
        assert_eq!(redact.identities.external_ids, ids([("shopify", "191167")]));
        assert_eq!(
            redact.properties["orders_to_redact"],
            json!([299938, 280263])
        );
        assert!(redact.properties.get("consent").is_none());

        let request = deliver(
            "customers/data_request",
            json!({ "shop_id": 954889, "customer": customer, "data_request": { "id": 9999 } }),
        )
        .unwrap();
        assert_eq!(request.name, "contact.data_requested");
        assert_eq!(request.properties["data_request"]["id"], 9999);

        let shop = deliver("shop/redact", json!({ "shop_id": 954889 })).unwrap();
        assert_eq!(shop.name, "shop.erase_requested");
        assert!(shop.identities.is_empty());

        let nobody = deliver("customers/redact", json!({ "shop_id": 954889 }));
        assert!(
            matches!(nobody, Err(TriggerError::MissingIdentity(_))),
            "{nobody:?}"
        );
    }
}
