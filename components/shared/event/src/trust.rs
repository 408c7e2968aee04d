//! What each source may do to the contacts its events name: attach
//! identities to a contact that exists, change consent, and which event names
//! it may emit. One table for the whole deployment, read by the track trigger
//! (which answers a refused name with a 422) and by the runtime (which holds
//! every event in the inbox to it, whatever trigger made it).
//!
//! The source of an event is the route it came in on, stamped by the gateway
//! (`shopify`, `typeform`, `tally`, `form`, `api`), or the runtime's own
//! (`dripline` for tracking links and replies, `admin` for the API and the
//! command line). A source not in the table is trusted with nothing: it may
//! create contacts and emit names nobody owns, no more.

/// What Dripline believes of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// Whether an identity the event names may be attached to a contact its
    /// other identities already name. An unsigned HTML form is only what
    /// someone typed: naming a stranger's email and the poster's phone would
    /// send the stranger's reminders and coupons to the poster.
    pub links_identities: bool,
    /// What the event's consent fields do.
    pub consent: Consent,
}

/// What a source's word on consent counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// A person acting now (a signed form provider, the site's own identify
    /// call): a grant is taken, and undoes an unsubscribe made through
    /// Dripline.
    FirstParty,
    /// A system repeating a state it recorded (a store's webhook), possibly
    /// from before an unsubscribe: a grant is taken unless the contact
    /// unsubscribed through Dripline.
    Recorded,
    /// Unverified (an unsigned HTML form): a withdrawal is taken, a grant
    /// waits for the address to confirm it (double opt-in, see
    /// `contact.confirmed`).
    Unconfirmed,
    /// Nothing the source says about consent is taken.
    Ignored,
}

/// The trust of `source`; nothing for a source not in the table.
pub fn of(source: &str) -> Trust {
    let (links_identities, consent) = match source {
        "typeform" | "tally" | "api" => (true, Consent::FirstParty),
        "shopify" => (true, Consent::Recorded),
        "form" => (false, Consent::Unconfirmed),
        DRIPLINE | ADMIN => (true, Consent::Ignored),
        _ => (false, Consent::Ignored),
    };
    Trust {
        links_identities,
        consent,
    }
}

/// The runtime's own source: tracking links, replies, segments and dates.
pub const DRIPLINE: &str = "dripline";

/// The source of what an operator asks through the admin API or the
/// command line (erase, merge, mark as test).
pub const ADMIN: &str = "admin";

/// The event of an address confirming, on the page its confirmation link
/// opens, that it wants a deployment's emails (double opt-in): it grants the
/// message's channel, whatever the form said.
pub const CONFIRMED: &str = "contact.confirmed";

/// Where a template puts the confirmation link (the send step's
/// `step.confirm_url`): a placeholder the runtime's tracking replaces with
/// the message's own signed link as the email goes into the outbox.
pub const CONFIRM_LINK: &str = "https://confirm.dripline.invalid/";

/// Event names and name prefixes (ending in `.`) that only some sources may
/// emit, with who they are, for the error. The first entry that matches a
/// name decides, so exact names come before the prefix they fall under.
/// Names no entry covers (`order.paid`, `trial.started`) any source may
/// emit: a journey that must hear one from a given source says so with
/// `sources` on its trigger or goal.
const OWNED: &[(&str, &[&str], &str)] = &[
    ("contact.identified", &["api"], "the track API's identify"),
    (
        "contact.merge_requested",
        &[ADMIN],
        "the admin API and the command line",
    ),
    (
        "contact.test_marked",
        &[ADMIN],
        "the admin API and the command line",
    ),
    (
        "contact.erase_requested",
        &[ADMIN, "shopify"],
        "the admin API and Shopify",
    ),
    (
        "contact.data_requested",
        &[ADMIN, "shopify"],
        "the admin API and Shopify",
    ),
    ("contact.", &[DRIPLINE, ADMIN], "Dripline"),
    ("checkout.", &["shopify"], "the store (Shopify)"),
    ("cart.", &["shopify"], "the store (Shopify)"),
    ("customer.", &["shopify"], "the store (Shopify)"),
    ("shop.", &["shopify"], "the store (Shopify)"),
    ("form.", &["form", "typeform", "tally"], "a form"),
    ("email.", &[DRIPLINE], "Dripline's tracking"),
    ("sms.", &[DRIPLINE], "Dripline's channels"),
    ("wecom.", &[DRIPLINE], "Dripline's channels"),
    ("push.", &[DRIPLINE], "Dripline's channels"),
    ("segment.", &[DRIPLINE], "Dripline's segments"),
    ("date.", &[DRIPLINE], "Dripline's date triggers"),
];

/// The entry of [`OWNED`] that decides for `name`.
fn owner_of(name: &str) -> Option<&'static (&'static str, &'static [&'static str], &'static str)> {
    OWNED
        .iter()
        .find(|(owned, ..)| match owned.strip_suffix('.') {
            Some(_) => name.starts_with(owned),
            None => name == *owned,
        })
}

/// `Err(owner)` when `source` may not emit an event named `name`: who does.
pub fn may_emit(source: &str, name: &str) -> Result<(), &'static str> {
    match owner_of(name) {
        Some((_, sources, owner)) if !sources.contains(&source) => Err(owner),
        _ => Ok(()),
    }
}

/// The source an event of this name usually comes from: the first of the
/// sources that own it (`shopify` for `checkout.created`, `dripline` for
/// `email.clicked`), or `None` for a name nobody owns. For tools that make
/// events up (a simulation, a test) and must give each a plausible source.
pub fn usual_source(name: &str) -> Option<&'static str> {
    owner_of(name).map(|(_, sources, _)| sources[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_track_api_may_identify_but_not_unsubscribe_or_start_a_checkout() {
        assert_eq!(may_emit("api", "contact.identified"), Ok(()));
        assert_eq!(may_emit("api", "contact.unsubscribed"), Err("Dripline"));
        assert!(may_emit("api", "checkout.created").is_err());
        assert!(may_emit("api", "email.clicked").is_err());
        assert_eq!(may_emit("api", "order.completed"), Ok(()));
    }

    #[test]
    fn shopify_may_ask_for_an_erasure_and_a_form_may_not() {
        assert_eq!(may_emit("shopify", "contact.erase_requested"), Ok(()));
        assert!(may_emit("form", "contact.erase_requested").is_err());
        assert!(may_emit("shopify", "contact.unsubscribed").is_err());
        assert_eq!(may_emit(DRIPLINE, "contact.unsubscribed"), Ok(()));
    }

    #[test]
    fn a_source_nobody_named_is_trusted_with_nothing() {
        let trust = of("someone");
        assert!(!trust.links_identities);
        assert_eq!(trust.consent, Consent::Ignored);
        assert!(may_emit("someone", "form.submitted").is_err());
        assert_eq!(may_emit("someone", "trial.started"), Ok(()));
    }

    #[test]
    fn an_unsigned_form_links_nothing_and_its_grants_wait_for_a_confirmation() {
        let trust = of("form");
        assert!(!trust.links_identities);
        assert_eq!(trust.consent, Consent::Unconfirmed);
        assert_eq!(of("typeform").consent, Consent::FirstParty);
        assert_eq!(of("shopify").consent, Consent::Recorded);
    }
}
