//! Who a message goes to: the store's contact in the shape of the canonical
//! event's identities, which tracking events and the runner's contacts carry.

use dripline_engine::Identities;
use dripline_store::{Contact, Identity};

/// The contact's identities as the canonical event names them.
pub fn identities_of(contact: &Contact) -> Identities {
    let mut identities = Identities::default();
    for identity in &contact.identities {
        match identity {
            Identity::Email(email) => identities.email = Some(email.clone()),
            Identity::Phone(phone) => identities.phone = Some(phone.clone()),
            Identity::External { system, id } => {
                identities.external_ids.insert(system.clone(), id.clone());
            }
        }
    }
    identities
}
