//! The WIT glue every trigger shares, as a macro so that each trigger crate
//! stays a plain library plus one line: `canonical::export_trigger!(handle);`.
//! The macro expands only on `wasm32`, in the calling crate, which must have
//! `wit-bindgen` as a wasm32-only dependency and sit beside the others in
//! `components/triggers/` (the WIT path is `../../../wit` from its manifest).

/// Exports the `trigger` world from a function
/// `fn(&canonical::Request) -> Result<Vec<canonical::Event>, canonical::TriggerError>`
/// in the calling crate's root. Conversion only; no logic lives here: the
/// properties go as their JSON text, the external ids as `(system, id)` pairs,
/// and `received-at` is the event's own (which the trigger copies from the
/// request).
#[macro_export]
macro_rules! export_trigger {
    ($handle:ident) => {
        #[cfg(target_arch = "wasm32")]
        mod component {
            wit_bindgen::generate!({ world: "trigger", path: "../../../wit" });

            use dripline::journey::types::{Event, Identities};
            use exports::dripline::journey::trigger_handler::{
                Guest, InboundRequest, TriggerError,
            };

            struct Trigger;

            impl Guest for Trigger {
                fn handle(request: InboundRequest) -> Result<Vec<Event>, TriggerError> {
                    let events = super::$handle(&$crate::Request {
                        path: &request.path,
                        headers: &request.headers,
                        body: &request.body,
                        received_at: request.received_at,
                    })
                    .map_err(|error| match error {
                        $crate::TriggerError::Malformed(m) => TriggerError::Malformed(m),
                        $crate::TriggerError::UnsupportedContentType(m) => {
                            TriggerError::UnsupportedContentType(m)
                        }
                        $crate::TriggerError::UnsupportedTopic(m) => {
                            TriggerError::UnsupportedTopic(m)
                        }
                        $crate::TriggerError::MissingIdentity(m) => {
                            TriggerError::MissingIdentity(m)
                        }
                    })?;
                    Ok(events
                        .into_iter()
                        .map(|event| Event {
                            properties: event.properties_json(),
                            id: event.id,
                            source: event.source,
                            name: event.name,
                            identities: Identities {
                                email: event.identities.email,
                                phone: event.identities.phone,
                                // By system, so in the order of the systems'
                                // names; each system appears once either way.
                                external_ids: event.identities.external_ids.into_iter().collect(),
                            },
                            occurred_at: event.occurred_at,
                            received_at: event.received_at,
                        })
                        .collect())
                }
            }

            export!(Trigger);
        }
    };
}
