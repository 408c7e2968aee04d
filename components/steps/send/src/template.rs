//! Message templates: which file a step uses for its channel, how a file
//! splits into subject, text and HTML, and rendering them with Liquid.
//!
//! The convention (documented for authors in `templates/README.md`):
//!
//! - A step with `template = "checkout-items"` and `channel = "email"` uses
//!   `checkout-items.email.liquid`, else the channel-neutral
//!   `checkout-items.liquid`.
//! - A file may open with front matter between two `---` lines, holding
//!   `subject: <Liquid>`. Email requires a subject.
//! - What follows is the plain-text body. A line `--- html` ends it and starts
//!   the HTML body, which is optional.

use crate::variables;
use liquid::model::Value as LiquidValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The names a template may read; anything else is refused by `validate`.
pub const ROOTS: &[&str] = &["contact", "trigger", "data", "config", "step"];

/// The most segments an SMS may take unless the step's config says
/// otherwise (`max_segments`): 459 characters of GSM-7, or 201 of UCS-2
/// (Chinese text), enough for a reminder with its recovery link. Carriers
/// bill each segment.
pub const DEFAULT_SMS_SEGMENTS: usize = 3;

/// The line that separates the plain-text body from the HTML body.
const HTML_SEPARATOR: &str = "--- html";

/// Separates the parts while they are rendered as one template. Liquid keeps
/// it as literal text; a value that contains it makes the parts miscount and
/// is refused.
const SECTION: &str = "\u{1}dripline-section\u{1}";

/// One template file split into its parts, each still Liquid source.
#[derive(Debug, PartialEq)]
pub struct Parts<'a> {
    /// The file's name, for messages.
    pub file: &'a str,
    /// The subject line, from the front matter.
    pub subject: Option<&'a str>,
    /// The plain-text body.
    pub text: &'a str,
    /// The HTML body, after the `--- html` line.
    pub html: Option<&'a str>,
    /// The most segments an SMS may take ([`DEFAULT_SMS_SEGMENTS`] unless
    /// [`Parts::with_sms_segments`] says otherwise).
    pub sms_segments: usize,
}

/// One rendered message, before it becomes a WIT `message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: Option<String>,
    /// The plain-text body, trimmed.
    pub text: String,
    /// The HTML body, trimmed.
    pub html: Option<String>,
}

/// Picks the file for a channel from the files the runtime passed: the
/// channel's own variant, else the channel-neutral one.
pub fn select<'a>(
    files: &'a BTreeMap<String, String>,
    template: &str,
    channel: &str,
) -> Result<(&'a str, &'a str), String> {
    let for_channel = format!("{template}.{channel}.liquid");
    let neutral = format!("{template}.liquid");
    [for_channel.as_str(), neutral.as_str()]
        .into_iter()
        .find_map(|name| files.get_key_value(name))
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .ok_or_else(|| {
            format!("template {template}: no file for channel {channel} (looked for {for_channel} and {neutral} in templates/)")
        })
}

/// Splits a file into front matter, text and HTML (see the module docs).
pub fn split<'a>(file: &'a str, source: &'a str) -> Result<Parts<'a>, String> {
    let mut subject = None;
    let mut body = source;
    if let Some(after) = strip_line(source, "---") {
        let (front, rest) =
            split_at_line(after, |line| line.trim_end() == "---").ok_or_else(|| {
                format!("template {file}: front matter opened with `---` is never closed")
            })?;
        body = rest;
        for line in front.lines().filter(|l| !l.trim().is_empty()) {
            match line.split_once(':') {
                Some(("subject", value)) => subject = Some(value.trim()),
                Some((key, _)) => {
                    return Err(format!(
                        "template {file}: unknown front matter key `{}` (only `subject`)",
                        key.trim()
                    ));
                }
                None => {
                    return Err(format!(
                        "template {file}: front matter line {line:?} is not `key: value`"
                    ));
                }
            }
        }
    }
    let (text, html) = match split_at_line(body, |line| line.trim_end() == HTML_SEPARATOR) {
        Some((text, html)) => (text, Some(html)),
        None => (body, None),
    };
    Ok(Parts {
        file,
        subject,
        text,
        html,
        sms_segments: DEFAULT_SMS_SEGMENTS,
    })
}

impl Parts<'_> {
    /// The parts with an SMS limit of `max` segments (the step's
    /// `max_segments`), or the default.
    pub fn with_sms_segments(mut self, max: Option<usize>) -> Self {
        self.sms_segments = max.unwrap_or(DEFAULT_SMS_SEGMENTS);
        self
    }

    /// Checks what can be checked without a contact: Liquid syntax, variables
    /// outside [`ROOTS`], `config` paths that the step's config lacks, and
    /// what the channel needs.
    pub fn check(&self, channel: &str, config: &Map<String, Value>) -> Result<(), String> {
        let file = self.file;
        if channel == "email" && self.subject.is_none_or(|s| s.trim().is_empty()) {
            return Err(format!(
                "template {file}: an email needs `subject:` in front matter (see templates/README.md)"
            ));
        }
        if self.text.trim().is_empty() {
            return Err(format!("template {file}: the text body is empty"));
        }
        let source = self.combined();
        parse(file, &source)?;
        let scan = variables::scan(&source).map_err(|e| format!("template {file}: {e}"))?;
        if let Some(name) = scan.unknown(ROOTS).first() {
            return Err(format!(
                "template {file}: unknown variable {name} (a template may read {})",
                ROOTS.join(", ")
            ));
        }
        // The config is known now, so a required `config` path it lacks is
        // a mistake we can report before any contact meets it.
        for reference in scan
            .references
            .iter()
            .filter(|r| r.required && !r.guarded && r.path[0] == "config")
        {
            if let Some(missing) = missing_path(config, &reference.path[1..]) {
                return Err(format!(
                    "template {file}: unknown variable config.{missing} (the step's config has no such key)"
                ));
            }
        }
        if channel == "sms" && !self.text.contains("{{") && !self.text.contains("{%") {
            check_sms_length(file, self.text.trim(), self.sms_segments)?;
        }
        Ok(())
    }

    /// The parts as one Liquid source, separated by [`SECTION`], so that what
    /// the subject or the text assigns is seen by the parts after it.
    fn combined(&self) -> String {
        [
            self.subject.unwrap_or(""),
            self.text,
            self.html.unwrap_or(""),
        ]
        .join(SECTION)
    }

    /// Renders the parts against the globals: the subject and text as they
    /// are, the HTML body with every string of the globals HTML-escaped, so
    /// that nothing a shopper or a form typed becomes markup (or a link).
    pub fn render(&self, channel: &str, globals: &liquid::Object) -> Result<Rendered, String> {
        let file = self.file;
        let template = parse(file, &self.combined())?;
        let output = render_with(file, &template, globals)?;
        let [subject, text, _] = sections(file, &output)?;
        let html = match self.html {
            Some(_) => {
                let escaped = escaped_globals(globals)?;
                let output = render_with(file, &template, &escaped)?;
                Some(sections(file, &output)?[2].trim().to_string())
            }
            None => None,
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("template {file}: the text body rendered empty"));
        }
        if channel == "sms" {
            check_sms_length(file, &text, self.sms_segments)?;
        }
        Ok(Rendered {
            subject: self.subject.map(|_| one_line(subject)),
            text,
            html,
        })
    }
}

/// How many segments `text` takes as an SMS, and in which encoding: GSM-7
/// (160 characters alone, 153 a part; the extension table's characters count
/// twice) when every character has one, else UCS-2 (70 alone, 67 a part).
pub fn sms_segments(text: &str) -> (usize, String) {
    let split = sms_splitter::SplitSms::default().split(text.to_owned());
    (split.parts.len(), split.character_set)
}

fn check_sms_length(file: &str, text: &str, max: usize) -> Result<(), String> {
    let (segments, encoding) = sms_segments(text);
    if segments > max {
        return Err(format!(
            "template {file}: the SMS takes {segments} segments of {encoding}, over the step's limit of {max} (`max_segments`): {text:?}"
        ));
    }
    Ok(())
}

fn parser() -> Result<liquid::Parser, String> {
    liquid::ParserBuilder::with_stdlib()
        .build()
        .map_err(|e| format!("liquid: {e}"))
}

fn parse(file: &str, source: &str) -> Result<liquid::Template, String> {
    let source = without_comment_text(source).map_err(|e| format!("template {file}: {e}"))?;
    parser()?
        .parse(&source)
        .map_err(|e| format!("template {file}: {}", describe(&e.to_string())))
}

/// The subject, text and HTML of a rendered [`Parts::combined`].
fn sections<'o>(file: &str, output: &'o str) -> Result<[&'o str; 3], String> {
    output
        .split(SECTION)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| {
            format!("template {file}: a value holds control characters that split the message")
        })
}

/// The globals with every string HTML-escaped (`&`, `<`, `>`, `"`, `'`), for
/// the HTML body: escaped once here, a template need not remember to.
fn escaped_globals(globals: &liquid::Object) -> Result<liquid::Object, String> {
    fn escape(value: Value) -> Value {
        match value {
            Value::String(text) => {
                Value::String(html_escape::encode_quoted_attribute(&text).into_owned())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(escape).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, escape(v))).collect())
            }
            other => other,
        }
    }
    let json = serde_json::to_value(globals).map_err(|e| format!("liquid value: {e}"))?;
    match liquid::model::to_value(&escape(json)).map_err(|e| format!("liquid value: {e}"))? {
        LiquidValue::Object(object) => Ok(object),
        _ => Err("liquid value: the globals are not an object".into()),
    }
}

fn render_with(
    file: &str,
    template: &liquid::Template,
    globals: &liquid::Object,
) -> Result<String, String> {
    template
        .render(globals)
        .map_err(|e| format!("template {file}: {}", describe(&e.to_string())))
}

/// The source with every comment's text taken out, as liquid is to see it:
/// `{% comment %}...{% endcomment %}` becomes an empty comment with the same
/// whitespace control. Liquid 0.26 parses the tags inside a comment as
/// blocks and panics (in the component, a trap) when one of them leaves the
/// comment open at the end of the file; found by `./dev bench fuzz` in many
/// shapes (the cases are in the send step's tests), so liquid is never shown
/// a comment's text at all. A comment ends at its first `{% endcomment %}`;
/// one that never ends is refused. `{% raw %}` text is left as it is.
fn without_comment_text(source: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    /// One `{% ... %}` or `{{ ... }}` at or after the start of `text`:
    /// (where it starts, where it ends, its first word, whether it is a tag,
    /// and its whitespace control on either side).
    fn next_token(text: &str) -> Option<(usize, usize, &str, bool, bool, bool)> {
        let start = variables::find_open(text)?;
        let is_tag = text[start..].starts_with("{%");
        let body = start + 2;
        let close = if is_tag { "%}" } else { "}}" };
        let len = variables::find_close(&text[body..], close)?;
        let raw_inner = &text[body..body + len];
        let inner = variables::trim_whitespace_control(raw_inner);
        let word = inner.split_whitespace().next().unwrap_or("");
        let (left, right) = (raw_inner.starts_with('-'), raw_inner.ends_with('-'));
        Some((start, body + len + 2, word, is_tag, left, right))
    }
    /// Where the first tag named `word` in `text` starts and ends, with its
    /// whitespace control.
    fn find_tag(text: &str, word: &str) -> Option<(usize, usize, bool, bool)> {
        let mut offset = 0;
        while let Some((start, end, found, is_tag, left, right)) = next_token(&text[offset..]) {
            if is_tag && found == word {
                return Some((offset + start, offset + end, left, right));
            }
            offset += end;
        }
        None
    }
    let dash = |on: bool| if on { "-" } else { "" };
    if !source.contains("comment") {
        return Ok(std::borrow::Cow::Borrowed(source));
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some((start, end, word, is_tag, left, right)) = next_token(rest) {
        match (is_tag, word) {
            (true, "raw") => {
                let through = find_tag(&rest[end..], "endraw").map_or(rest.len(), |t| end + t.1);
                out.push_str(&rest[..through]);
                rest = &rest[through..];
            }
            (true, "comment") => {
                let Some((_, close_end, close_left, close_right)) =
                    find_tag(&rest[end..], "endcomment")
                else {
                    return Err("a `{% comment %}` is never closed".to_string());
                };
                out.push_str(&rest[..start]);
                out.push_str(&format!(
                    "{{%{} comment {}%}}{{%{} endcomment {}%}}",
                    dash(left),
                    dash(right),
                    dash(close_left),
                    dash(close_right)
                ));
                rest = &rest[end + close_end..];
            }
            _ => {
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out.push_str(rest);
    Ok(std::borrow::Cow::Owned(out))
}

/// Turns liquid's multi-line error into one line a journey author can act on:
/// `unknown variable trigger.properties.coupon` rather than a trace.
fn describe(error: &str) -> String {
    let error = error.strip_prefix("liquid: ").unwrap_or(error);
    let field = |name: &str| {
        error
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::to_string))
    };
    if error.starts_with("Unknown variable")
        && let Some(name) = field("requested variable=")
    {
        return format!("unknown variable {name}");
    }
    if error.starts_with("Unknown index")
        && let (Some(variable), Some(index)) = (field("variable="), field("requested index="))
    {
        return format!("unknown variable {variable}.{index}");
    }
    error.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first part of `path` the object lacks, or `None` if the path exists as
/// far as objects go (an array or a scalar ends the check: `.size`, `.first`).
fn missing_path(object: &Map<String, Value>, path: &[String]) -> Option<String> {
    let mut current = object;
    for (depth, key) in path.iter().enumerate() {
        match current.get(key) {
            None | Some(Value::Null) => return Some(path[..=depth].join(".")),
            Some(Value::Object(next)) => current = next,
            Some(_) => return None,
        }
    }
    None
}

/// JSON into a Liquid value, dropping nulls from objects so that an absent
/// and a null value behave alike: `{{ }}` refuses them, `{% if %}` is false.
pub fn to_liquid(value: &Value) -> Result<LiquidValue, String> {
    liquid::model::to_value(&without_nulls(value.clone())).map_err(|e| format!("liquid value: {e}"))
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text after a first line equal to `line`, if the text starts with it.
fn strip_line<'a>(text: &'a str, line: &str) -> Option<&'a str> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    (first.trim_end() == line).then_some(rest)
}

/// Splits at the first line matching, dropping that line.
fn split_at_line(text: &str, is_separator: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_separator(line.trim_end_matches(['\n', '\r'])) {
            return Some((&text[..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn files(names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("from {n}")))
            .collect()
    }

    #[test]
    fn the_channel_variant_wins_over_the_neutral_file() {
        let files = files(&["x.liquid", "x.sms.liquid", "x.email.liquid"]);
        assert_eq!(select(&files, "x", "sms").unwrap().0, "x.sms.liquid");
    }

    #[test]
    fn the_neutral_file_serves_a_channel_without_a_variant() {
        let files = files(&["x.liquid", "x.email.liquid"]);
        assert_eq!(select(&files, "x", "wecom").unwrap().0, "x.liquid");
    }

    #[test]
    fn a_missing_file_names_the_files_looked_for() {
        let error = select(&files(&["x.email.liquid"]), "x", "sms").unwrap_err();
        assert!(
            error.contains("x.sms.liquid") && error.contains("x.liquid"),
            "{error}"
        );
    }

    #[test]
    fn front_matter_text_and_html_are_split() {
        let source = "---\nsubject: Hi {{ contact.id }}\n---\nText\n--- html\n<p>Html</p>\n";
        let parts = split("f", source).unwrap();
        assert_eq!(parts.subject, Some("Hi {{ contact.id }}"));
        assert_eq!(parts.text, "Text\n");
        assert_eq!(parts.html, Some("<p>Html</p>\n"));
    }

    #[test]
    fn a_file_without_front_matter_is_all_text() {
        let parts = split("f", "Just text\n").unwrap();
        assert_eq!(
            (parts.subject, parts.text, parts.html),
            (None, "Just text\n", None)
        );
    }

    #[test]
    fn an_unknown_front_matter_key_is_refused() {
        assert!(
            split("f", "---\nsubjet: x\n---\nbody")
                .unwrap_err()
                .contains("subjet")
        );
    }

    #[test]
    fn an_email_without_subject_is_refused() {
        let parts = split("f", "body").unwrap();
        assert!(
            parts
                .check("email", &Map::new())
                .unwrap_err()
                .contains("subject")
        );
    }

    #[test]
    fn a_liquid_syntax_error_is_refused() {
        let parts = split("f", "Hi {% if %}").unwrap();
        assert!(
            parts
                .check("sms", &Map::new())
                .unwrap_err()
                .starts_with("template f:")
        );
    }

    #[test]
    fn a_variable_outside_the_roots_is_refused() {
        let parts = split("f", "Hi {{ customer.name }}").unwrap();
        let error = parts.check("sms", &Map::new()).unwrap_err();
        assert!(error.contains("unknown variable customer.name"), "{error}");
    }

    #[test]
    fn a_config_path_the_config_lacks_is_refused() {
        let config = json!({"coupon": {"percent_off": 10}});
        let config = config.as_object().unwrap();
        let ok = split("f", "{{ config.coupon.percent_off }}% {% if config.coupon.code %}{{ config.coupon.code }}{% endif %}").unwrap();
        assert_eq!(ok.check("sms", config), Ok(()));
        let bad = split("f", "{{ config.coupon.code }}").unwrap();
        assert!(
            bad.check("sms", config)
                .unwrap_err()
                .contains("config.coupon.code")
        );
    }

    #[test]
    fn a_name_with_markup_reaches_the_html_body_escaped_and_makes_no_link() {
        let source = "---\nsubject: Hi {{ data.name }}\n---\nHi {{ data.name }}\n--- html\n<p>Hi {{ data.name }}</p>\n<a href=\"{{ data.url }}\">cart</a>";
        let globals = liquid::object!({"data": {
            "name": "<a href=\"https://evil.example/\">Ana</a> & co",
            "url": "https://shop.example/cart?a=1&b=\"2\"",
        }});
        let rendered = split("f", source)
            .unwrap()
            .render("email", &globals)
            .unwrap();
        let html = rendered.html.unwrap();
        assert!(!html.contains("evil.example/\">"), "{html}");
        assert!(
            html.contains("&lt;a href=&quot;https://evil.example/&quot;&gt;Ana&lt;/a&gt; &amp; co"),
            "{html}"
        );
        assert!(
            html.contains("href=\"https://shop.example/cart?a=1&amp;b=&quot;2&quot;\""),
            "{html}"
        );
        // The text and subject are plain text: the value as it is.
        assert!(
            rendered
                .text
                .contains("<a href=\"https://evil.example/\">Ana</a> & co")
        );
        assert_eq!(
            rendered.subject.unwrap(),
            "Hi <a href=\"https://evil.example/\">Ana</a> & co"
        );
    }

    #[test]
    fn sms_length_is_counted_in_segments_of_gsm_7_or_ucs_2() {
        assert_eq!(sms_segments(&"x".repeat(160)), (1, "GSM".into()));
        assert_eq!(sms_segments(&"x".repeat(161)), (2, "GSM".into()));
        // The extension table's characters take two septets each.
        assert_eq!(sms_segments(&"€".repeat(80)), (1, "GSM".into()));
        assert_eq!(sms_segments(&"€".repeat(81)).0, 2);
        assert_eq!(sms_segments(&"购".repeat(70)), (1, "Unicode".into()));
        assert_eq!(sms_segments(&"购".repeat(71)).0, 2);
        assert_eq!(sms_segments(&"购".repeat(134)).0, 2);
    }

    #[test]
    fn a_cart_reminder_with_its_recovery_link_fits_where_70_characters_did_not() {
        let reminder = "李雷，你的购物车里还有 3 件商品，点此完成下单: \
                        https://acme-mugs.myshopify.com/checkouts/c/0123456789abcdef0123456789abcdef/recover?key=5f2e8a";
        assert!(reminder.chars().count() > 70);
        let parts = split("f", reminder).unwrap();
        assert_eq!(parts.check("sms", &Map::new()), Ok(()));
    }

    #[test]
    fn a_fixed_sms_over_its_segment_limit_is_refused_at_validate() {
        let (chinese, long, fits) = ("购".repeat(202), "x".repeat(161), "x".repeat(160));
        let parts = split("f", &chinese).unwrap();
        let error = parts.check("sms", &Map::new()).unwrap_err();
        assert!(
            error.contains("4 segments of Unicode, over the step's limit of 3"),
            "{error}"
        );
        let parts = split("f", &long).unwrap().with_sms_segments(Some(1));
        assert!(
            parts
                .check("sms", &Map::new())
                .unwrap_err()
                .contains("2 segments of GSM")
        );
        let parts = split("f", &fits).unwrap().with_sms_segments(Some(1));
        assert_eq!(parts.check("sms", &Map::new()), Ok(()));
    }

    #[test]
    fn a_rendered_sms_over_its_segment_limit_is_an_error() {
        let globals = liquid::object!({"data": {"name": "n".repeat(160)}});
        let parts = split("f", "Hi {{ data.name }}")
            .unwrap()
            .with_sms_segments(Some(1));
        assert!(
            parts
                .render("sms", &globals)
                .unwrap_err()
                .contains("2 segments of GSM")
        );
        assert!(parts.render("email", &globals).is_ok());
    }

    #[test]
    fn a_missing_variable_at_render_is_an_error_never_a_blank() {
        let globals = liquid::object!({"trigger": {"properties": {}}});
        let parts = split("f", "Go to {{ trigger.properties.abandoned_checkout_url }}").unwrap();
        assert_eq!(
            parts.render("sms", &globals).unwrap_err(),
            "template f: unknown variable trigger.properties.abandoned_checkout_url"
        );
    }

    #[test]
    fn what_the_text_assigns_the_html_can_read() {
        let parts = split(
            "f",
            "{% assign n = data.n %}{{ n }}\n--- html\n<b>{{ n }}</b>",
        )
        .unwrap();
        assert_eq!(parts.check("email-like", &Map::new()), Ok(()));
        let rendered = parts
            .render("email-like", &liquid::object!({"data": {"n": 3}}))
            .unwrap();
        assert_eq!(
            (rendered.text.as_str(), rendered.html.as_deref()),
            ("3", Some("<b>3</b>"))
        );
    }

    #[test]
    fn a_value_holding_the_section_marker_is_refused() {
        let parts = split("f", "{{ data.x }}").unwrap();
        let globals = liquid::object!({"data": {"x": SECTION}});
        assert!(
            parts
                .render("sms", &globals)
                .unwrap_err()
                .contains("control characters")
        );
    }

    #[test]
    fn nulls_are_absent_values() {
        let value = to_liquid(&json!({"a": null, "b": 1})).unwrap();
        let globals = liquid::object!({"data": value});
        let parts = split("f", "{% if data.a %}a{% endif %}{{ data.b }}").unwrap();
        assert_eq!(parts.render("sms", &globals).unwrap().text, "1");
        assert!(
            split("f", "{{ data.a }}")
                .unwrap()
                .render("sms", &globals)
                .is_err()
        );
    }

    #[test]
    fn the_subject_is_rendered_on_one_line_whatever_a_value_holds() {
        let parts = split("f", "---\nsubject: a {{ data.x }} b\n---\nbody").unwrap();
        let globals = liquid::object!({"data": {"x": "\r\nBcc: x@example.com\n"}});
        let subject = parts.render("email", &globals).unwrap().subject;
        assert_eq!(subject.as_deref(), Some("a Bcc: x@example.com b"));
    }
}
