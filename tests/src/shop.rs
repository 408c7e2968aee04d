//! A shop's traffic as the admin and console tests send it to `dripline up`:
//! admin tokens made with `dripline token new`, and signed Shopify checkouts
//! and orders for numbered shoppers.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::gateway::SHOPIFY_SECRET;
use crate::process::http;
use crate::{dripline_binary, repo_root};

/// `dripline token new` in `dir` (data in `dir/data`): the token it prints.
pub fn make_token(dir: &Path, name: &str, role: &str) -> String {
    let out = Command::new(dripline_binary())
        .args([
            "token", "--data", "data", "new", "--name", name, "--role", role,
        ])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("dripline token new: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A signed Shopify webhook of topic `topic` with `body`: (status, body).
pub fn shopify(gateway: &str, topic: &str, event_id: &str, body: &Value) -> (u16, String) {
    let body = body.to_string().into_bytes();
    let signature = webhook_auth::sign(SHOPIFY_SECRET.as_bytes(), &body);
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-Shopify-Topic: {topic}\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
         X-Shopify-Event-Id: {event_id}\r\nX-Shopify-Hmac-Sha256: {signature}"
    );
    http(gateway, &head, &body)
}

/// The stored Shopify delivery `name` (`tests/cases/webhooks/shopify`).
pub fn case(name: &str) -> Value {
    let path = repo_root().join(format!("tests/cases/webhooks/shopify/{name}.json"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `ms` as RFC 3339, as Shopify writes times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Shopper `n`'s checkout at `at`, with consent on both channels.
pub fn checkout(n: usize, at: i64) -> Value {
    let mut body = case("checkouts-create");
    body["id"] = json!(10_000 + n);
    body["token"] = json!(format!("tok-{n}"));
    body["cart_token"] = json!(format!("cart-{n}"));
    body["email"] = json!(format!("shopper{n}@example.com"));
    body["phone"] = json!(format!("+1415555{n:04}"));
    body["buyer_accepts_marketing"] = json!(true);
    body["created_at"] = json!(rfc3339(at));
    body["updated_at"] = json!(rfc3339(at));
    body["customer"]["email"] = json!(format!("shopper{n}@example.com"));
    body["customer"]["phone"] = json!(format!("+1415555{n:04}"));
    body["customer"]["id"] = json!(20_000 + n);
    body["customer"]["sms_marketing_consent"] = json!({ "state": "subscribed" });
    body
}

/// Shopper `n`'s paid order `order_id` for their checkout at `at`, of
/// `total`.
pub fn order(n: usize, order_id: usize, at: i64, total: &str) -> Value {
    let mut body = case("orders-paid");
    body["id"] = json!(order_id);
    body["token"] = json!(format!("order-{order_id}"));
    body["checkout_token"] = json!(format!("tok-{n}"));
    body["checkout_id"] = json!(10_000 + n);
    body["cart_token"] = json!(format!("cart-{n}"));
    body["email"] = json!(format!("shopper{n}@example.com"));
    body["contact_email"] = json!(format!("shopper{n}@example.com"));
    body["total_price"] = json!(total);
    body["created_at"] = json!(rfc3339(at));
    body["processed_at"] = json!(rfc3339(at));
    body["updated_at"] = json!(rfc3339(at));
    body["customer"]["email"] = json!(format!("shopper{n}@example.com"));
    body["customer"]["id"] = json!(20_000 + n);
    body
}
