//! The embedded default channel: the message stays in the outbox, where the
//! admin API lists it and `dripline up` prints it, and is marked delivered.
//! Nothing leaves the machine, so a laptop demo or a test never mails anyone.

use dripline_store::{Contact, OutboxMessage};

use super::{Channel, DeliveryError, Receipt};
use crate::outbox_record::OutboxRecord;

/// See the module documentation.
pub struct Outbox;

impl Channel for Outbox {
    fn deliver(
        &self,
        message: &OutboxMessage,
        _: &OutboxRecord,
        _: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        Ok(Receipt {
            provider_id: Some(format!("outbox-{}", message.id)),
        })
    }
}
