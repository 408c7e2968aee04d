//! The links an email may carry. A template's HTML escapes every value it
//! shows (the `send` step), so data cannot add an element; but an attribute
//! the template fills from data (`href="{{ trigger.properties.url }}"`) could
//! still hold `javascript:` or `data:`. Before an email goes into the outbox
//! (and before tracking rewrites its links), every link whose scheme is not
//! `http`, `https` or `mailto` loses its target and stays as text.

use lol_html::{RewriteStrSettings, element, rewrite_str};

/// The schemes a link in an email may have; a link without one (`#top`, a
/// relative path) is left as written.
pub const SCHEMES: &[&str] = &["http", "https", "mailto"];

/// `html` with the target of every link of another scheme removed, and how
/// many there were.
pub fn refuse_unsafe_links(html: &str) -> Result<(String, usize), String> {
    let mut refused = 0;
    let rewritten = rewrite_str(
        html,
        RewriteStrSettings::new().append_element_content_handler(element!(
            "a[href], area[href], img[src], form[action]",
            |el| {
                for attribute in ["href", "src", "action"] {
                    if let Some(value) = el.get_attribute(attribute)
                        && !allowed(&value)
                    {
                        el.remove_attribute(attribute);
                        refused += 1;
                    }
                }
                Ok(())
            }
        )),
    )
    .map_err(|e| e.to_string())?;
    Ok((rewritten, refused))
}

/// Whether a link target may stay: a scheme in [`SCHEMES`], or none at all.
fn allowed(target: &str) -> bool {
    // Attribute values come as written: entities decoded first, then the
    // whitespace and control characters browsers drop inside a scheme
    // (`java&#x09;script:`).
    let cleaned: String = html_escape::decode_html_entities(target)
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    match cleaned.split_once(':') {
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_of_schemes_other_than_http_https_and_mailto_lose_their_target() {
        let html = r##"<a href="https://shop.example/cart">cart</a>
<a href="mailto:help@shop.example">help</a>
<a href="/relative">rel</a><a href="#top">top</a>
<a href="javascript:alert(1)">x</a><a href=" JaVa&#x09;Script:alert(1)">y</a>
<a href="data:text/html,hi">z</a><img src="vbscript:x">"##;
        let (out, refused) = refuse_unsafe_links(html).unwrap();
        assert_eq!(refused, 4, "{out}");
        for kept in [
            "https://shop.example/cart",
            "mailto:help@shop.example",
            "/relative",
            "#top",
        ] {
            assert!(out.contains(kept), "{kept}: {out}");
        }
        for gone in ["javascript", "data:", "vbscript", "Script:"] {
            assert!(!out.contains(gone), "{gone}: {out}");
        }
    }
}
