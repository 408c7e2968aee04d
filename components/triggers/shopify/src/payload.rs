//! The parts of a Shopify payload the trigger reads, parsed straight from the
//! body; everything else in it is skipped without being built.
//!
//! Why not a `serde_json::Value` tree: building one (a map per object, a
//! string per key) and dropping it again was over half of this trigger's time
//! in the webhook path, for a payload of which the trigger keeps a fraction.
//!
//! The view is as lenient as reading a tree was: a field may hold any JSON
//! (its value is kept as a `Value` and judged where it is read), an object
//! where one is expected may be anything else (it then counts as absent), and
//! only `line_items` that is not a list, or an item that is not an object, is
//! an error, which the caller names.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A checkout, order, cart or customer (a checkout's or order's `customer`
/// is one too): the fields any topic reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    shop_id: Option<Value>,
    orders_to_redact: Option<Value>,
    orders_requested: Option<Value>,
    data_request: Option<Value>,
    id: Option<Value>,
    token: Option<Value>,
    cart_token: Option<Value>,
    email: Option<Value>,
    contact_email: Option<Value>,
    phone: Option<Value>,
    first_name: Option<Value>,
    last_name: Option<Value>,
    locale: Option<Value>,
    customer_locale: Option<Value>,
    buyer_accepts_marketing: Option<Value>,
    buyer_accepts_sms_marketing: Option<Value>,
    accepts_marketing: Option<Value>,
    currency: Option<Value>,
    total_price: Option<Value>,
    subtotal_price: Option<Value>,
    total_tax: Option<Value>,
    total_discounts: Option<Value>,
    abandoned_checkout_url: Option<Value>,
    completed_at: Option<Value>,
    created_at: Option<Value>,
    updated_at: Option<Value>,
    processed_at: Option<Value>,
    name: Option<Value>,
    order_number: Option<Value>,
    checkout_token: Option<Value>,
    checkout_id: Option<Value>,
    financial_status: Option<Value>,
    fulfillment_status: Option<Value>,
    orders_count: Option<Value>,
    total_spent: Option<Value>,
    tags: Option<Value>,
    state: Option<Value>,
    verified_email: Option<Value>,
    note: Option<Value>,
    /// The customer a checkout, order or cart names.
    pub customer: Lenient<Box<Record>>,
    /// Addresses, each with its own phone and country.
    pub billing_address: Lenient<Address>,
    /// See `billing_address`.
    pub shipping_address: Lenient<Address>,
    /// A customer's default address.
    pub default_address: Lenient<Address>,
    /// `{"state": "subscribed", ...}`.
    pub email_marketing_consent: Lenient<Consent>,
    /// See `email_marketing_consent`.
    pub sms_marketing_consent: Lenient<Consent>,
    /// The items of a checkout, order or cart.
    pub line_items: LineItems,
}

impl Record {
    /// A scalar field by its name in the payload; `None` when absent or
    /// null. Every name the trigger reads is here: `fields_are_found_by_name`
    /// checks the list against the struct.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "id" => self.id.as_ref(),
            "token" => self.token.as_ref(),
            "cart_token" => self.cart_token.as_ref(),
            "email" => self.email.as_ref(),
            "contact_email" => self.contact_email.as_ref(),
            "phone" => self.phone.as_ref(),
            "first_name" => self.first_name.as_ref(),
            "last_name" => self.last_name.as_ref(),
            "locale" => self.locale.as_ref(),
            "customer_locale" => self.customer_locale.as_ref(),
            "buyer_accepts_marketing" => self.buyer_accepts_marketing.as_ref(),
            "buyer_accepts_sms_marketing" => self.buyer_accepts_sms_marketing.as_ref(),
            "accepts_marketing" => self.accepts_marketing.as_ref(),
            "currency" => self.currency.as_ref(),
            "total_price" => self.total_price.as_ref(),
            "subtotal_price" => self.subtotal_price.as_ref(),
            "total_tax" => self.total_tax.as_ref(),
            "total_discounts" => self.total_discounts.as_ref(),
            "abandoned_checkout_url" => self.abandoned_checkout_url.as_ref(),
            "completed_at" => self.completed_at.as_ref(),
            "created_at" => self.created_at.as_ref(),
            "updated_at" => self.updated_at.as_ref(),
            "processed_at" => self.processed_at.as_ref(),
            "name" => self.name.as_ref(),
            "order_number" => self.order_number.as_ref(),
            "checkout_token" => self.checkout_token.as_ref(),
            "checkout_id" => self.checkout_id.as_ref(),
            "financial_status" => self.financial_status.as_ref(),
            "fulfillment_status" => self.fulfillment_status.as_ref(),
            "orders_count" => self.orders_count.as_ref(),
            "total_spent" => self.total_spent.as_ref(),
            "tags" => self.tags.as_ref(),
            "state" => self.state.as_ref(),
            "verified_email" => self.verified_email.as_ref(),
            "note" => self.note.as_ref(),
            "shop_id" => self.shop_id.as_ref(),
            "orders_to_redact" => self.orders_to_redact.as_ref(),
            "orders_requested" => self.orders_requested.as_ref(),
            "data_request" => self.data_request.as_ref(),
            _ => None,
        }
    }
}

/// An address: where a national phone number takes its country from.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Address {
    /// The address's phone, often national.
    pub phone: Option<Value>,
    /// ISO 3166 alpha-2.
    pub country_code: Option<Value>,
    /// The name on the address.
    pub first_name: Option<Value>,
    /// See `first_name`.
    pub last_name: Option<Value>,
}

/// A marketing consent record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Consent {
    /// `subscribed`, `not_subscribed`, `pending`, ...
    pub state: Option<Value>,
}

/// One line item: the fields a message template or a condition reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LineItem {
    title: Option<Value>,
    variant_title: Option<Value>,
    quantity: Option<Value>,
    price: Option<Value>,
    line_price: Option<Value>,
    sku: Option<Value>,
    product_id: Option<Value>,
    variant_id: Option<Value>,
    vendor: Option<Value>,
    product_type: Option<Value>,
    image: Option<Value>,
    image_url: Option<Value>,
}

impl LineItem {
    /// The kept fields in order, each with its value when present and not null.
    pub fn fields(&self) -> [(&'static str, Option<&Value>); 12] {
        [
            ("title", self.title.as_ref()),
            ("variant_title", self.variant_title.as_ref()),
            ("quantity", self.quantity.as_ref()),
            ("price", self.price.as_ref()),
            ("line_price", self.line_price.as_ref()),
            ("sku", self.sku.as_ref()),
            ("product_id", self.product_id.as_ref()),
            ("variant_id", self.variant_id.as_ref()),
            ("vendor", self.vendor.as_ref()),
            ("product_type", self.product_type.as_ref()),
            ("image", self.image.as_ref()),
            ("image_url", self.image_url.as_ref()),
        ]
    }
}

/// `line_items` as sent.
#[derive(Debug, Default)]
pub enum LineItems {
    /// Absent or null.
    #[default]
    Absent,
    /// Something other than a list.
    NotAList,
    /// A list; each entry an item or something else.
    Items(Vec<Lenient<LineItem>>),
}

impl<'de> Deserialize<'de> for LineItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> Visitor<'de> for Items {
            type Value = LineItems;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of line items")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LineItems, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(LineItems::Items(items))
            }

            fn visit_unit<E>(self) -> Result<LineItems, E> {
                Ok(LineItems::Absent)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LineItems, A::Error> {
                skip_map(map)?;
                Ok(LineItems::NotAList)
            }

            fn visit_bool<E>(self, _: bool) -> Result<LineItems, E> {
                Ok(LineItems::NotAList)
            }

            fn visit_i64<E>(self, _: i64) -> Result<LineItems, E> {
                Ok(LineItems::NotAList)
            }

            fn visit_u64<E>(self, _: u64) -> Result<LineItems, E> {
                Ok(LineItems::NotAList)
            }

            fn visit_f64<E>(self, _: f64) -> Result<LineItems, E> {
                Ok(LineItems::NotAList)
            }

            fn visit_str<E>(self, _: &str) -> Result<LineItems, E> {
                Ok(LineItems::NotAList)
            }
        }
        deserializer.deserialize_any(Items)
    }
}

/// A `T` where the payload has an object; `None` where it has anything else.
#[derive(Debug)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = Lenient<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }

            fn visit_unit<E>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(Object(PhantomData))
    }
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Parses the body as a payload: a JSON object, else `Err` naming why.
pub fn parse(body: &[u8]) -> Result<Record, String> {
    match serde_json::from_slice::<Lenient<Record>>(body) {
        Ok(Lenient(Some(record))) => Ok(record),
        Ok(Lenient(None)) => Err("body: not a JSON object".into()),
        Err(e) if e.is_data() => Err(format!("body: {e}")),
        Err(e) => Err(format!("body: not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_are_found_by_name() {
        // Every field of the struct, set, is found by its own name.
        let names = [
            "id",
            "token",
            "cart_token",
            "email",
            "contact_email",
            "phone",
            "first_name",
            "last_name",
            "locale",
            "customer_locale",
            "buyer_accepts_marketing",
            "buyer_accepts_sms_marketing",
            "accepts_marketing",
            "currency",
            "total_price",
            "subtotal_price",
            "total_tax",
            "total_discounts",
            "abandoned_checkout_url",
            "completed_at",
            "created_at",
            "updated_at",
            "processed_at",
            "name",
            "order_number",
            "checkout_token",
            "checkout_id",
            "financial_status",
            "fulfillment_status",
            "orders_count",
            "total_spent",
            "tags",
            "state",
            "verified_email",
            "note",
            "shop_id",
            "orders_to_redact",
            "orders_requested",
            "data_request",
        ];
        let body: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| (n.to_string(), Value::from(*n)))
            .collect();
        let record = parse(Value::Object(body).to_string().as_bytes()).unwrap();
        for name in names {
            assert_eq!(record.get(name), Some(&Value::from(name)), "{name}");
        }
        assert_eq!(record.get("gateway"), None);
    }

    #[test]
    fn anything_but_an_object_where_one_is_expected_counts_as_absent() {
        let record = parse(
            br#"{"customer": "bob", "billing_address": [1, {"a": 2}], "email_marketing_consent": 3,
                 "line_items": [{"title": "Mug", "tax_lines": [{"rate": 0.2}]}, 7, null]}"#,
        )
        .unwrap();
        assert!(record.customer.0.is_none());
        assert!(record.billing_address.0.is_none());
        assert!(record.email_marketing_consent.0.is_none());
        let LineItems::Items(items) = &record.line_items else {
            panic!("{:?}", record.line_items)
        };
        assert_eq!(
            items[0].0.as_ref().unwrap().fields()[0].1,
            Some(&Value::from("Mug"))
        );
        assert!(items[1].0.is_none() && items[2].0.is_none());
        assert!(matches!(
            parse(br#"{"line_items": {"title": "x"}}"#)
                .unwrap()
                .line_items,
            LineItems::NotAList
        ));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_naming_why() {
        assert_eq!(parse(b"[1]").err().unwrap(), "body: not a JSON object");
        assert!(
            parse(b"{\"id\":")
                .err()
                .unwrap()
                .starts_with("body: not JSON")
        );
        assert!(
            parse(br#"{"email": "a", "email": "b"}"#)
                .err()
                .unwrap()
                .contains("duplicate field")
        );
    }
}
