//! The `forms` trigger: a form submission from Typeform, Tally or a plain HTML
//! form becomes one `form.submitted` event.
//!
//! The route decides the provider, by the path segment after `forms`:
//!
//! | path                          | provider  | body                                   | event `source` |
//! |-------------------------------|-----------|----------------------------------------|----------------|
//! | `/forms/typeform[/<name>]`    | Typeform  | `application/json` webhook             | `typeform`     |
//! | `/forms/tally[/<name>]`       | Tally     | `application/json` webhook             | `tally`        |
//! | `/forms/<name>` or `/forms`   | HTML form | urlencoded or `multipart/form-data`    | `form`         |
//!
//! So `typeform` and `tally` are not names an HTML form can take. The form's
//! name (`properties.form`) is the last path segment when there is one, else
//! what the provider calls the form (Typeform's `form_id`, Tally's `formName`)
//! or an HTML form's `form` field.
//!
//! Every event's properties hold `form` and `fields` (answers by field name),
//! plus what each provider adds (see [`typeform`], [`tally`], [`html`]). The
//! email and phone answers become the contact's identities (lower-cased, E.164)
//! and are not repeated in `fields`. A submission with neither is
//! `missing-identity`.

pub mod html;
pub mod tally;
pub mod typeform;

use canonical::{Event, Request, TriggerError};

canonical::export_trigger!(handle);

/// A submission with more fields than this is a bot or a mistake, not a
/// person filling in a form.
pub const MAX_FIELDS: usize = 500;

/// Routes a request to its provider's parser by path (see the module docs).
pub fn handle(request: &Request<'_>) -> Result<Vec<Event>, TriggerError> {
    let route = Route::of(request.path);
    let event = match route.provider {
        Provider::Typeform => typeform::parse(request, route.name)?,
        Provider::Tally => tally::parse(request, route.name)?,
        Provider::Html => html::parse(request, route.name)?,
    };
    Ok(vec![event])
}

/// Who sent a submission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Provider {
    /// A Typeform webhook.
    Typeform,
    /// A Tally webhook.
    Tally,
    /// A browser posting an HTML form.
    Html,
}

/// What a path says: the provider and, if given, the form's name.
#[derive(Debug, PartialEq)]
pub struct Route<'a> {
    /// Who sent the submission.
    pub provider: Provider,
    /// The last path segment after the provider, if any.
    pub name: Option<&'a str>,
}

impl<'a> Route<'a> {
    /// Reads a path such as `/forms/tally/webinar`. Segments before `forms`
    /// (a mount prefix) are ignored; without a `forms` segment the whole path
    /// is read as if it followed one.
    pub fn of(path: &'a str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let after = match segments.iter().position(|s| *s == "forms") {
            Some(index) => segments.get(index + 1..).unwrap_or_default(),
            None => segments.as_slice(),
        };
        let (provider, rest) = match after.split_first() {
            Some((&"typeform", rest)) => (Provider::Typeform, rest),
            Some((&"tally", rest)) => (Provider::Tally, rest),
            _ => (Provider::Html, after),
        };
        Route {
            provider,
            name: rest.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_after_forms_names_the_provider_and_the_last_one_the_form() {
        let route = |p| Route::of(p);
        assert_eq!(
            route("/forms/typeform/lead-magnet"),
            Route {
                provider: Provider::Typeform,
                name: Some("lead-magnet")
            }
        );
        assert_eq!(
            route("/forms/tally"),
            Route {
                provider: Provider::Tally,
                name: None
            }
        );
        assert_eq!(
            route("/forms/whitepaper"),
            Route {
                provider: Provider::Html,
                name: Some("whitepaper")
            }
        );
        assert_eq!(
            route("/forms/"),
            Route {
                provider: Provider::Html,
                name: None
            }
        );
        assert_eq!(
            route("/hooks/forms/tally/x/"),
            Route {
                provider: Provider::Tally,
                name: Some("x")
            }
        );
    }
}
