//! What makes a tag acceptable, for every step that names tags (`tag` adds and
//! removes them, `untag` removes them), so that a tag one step refuses the
//! other refuses too. A crate of its own rather than a dependency on `tag`:
//! that would link `tag`'s component exports into `untag` as well.

/// Tags are short labels a marketer filters on; control characters or a
/// kilobyte of text are a journey-file mistake worth reporting early.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.trim().is_empty() {
        return Err("config: a tag is empty".into());
    }
    if tag.len() > 64 || tag.chars().any(char::is_control) {
        return Err(format!(
            "config: tag {tag:?} must be at most 64 printable characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_tag;

    #[test]
    fn a_short_printable_tag_is_accepted() {
        assert_eq!(validate_tag("high-intent"), Ok(()));
        assert_eq!(validate_tag("VIP 2024 / 黄金"), Ok(()));
    }

    #[test]
    fn an_empty_or_blank_tag_is_refused() {
        assert_eq!(validate_tag(""), Err("config: a tag is empty".into()));
        assert_eq!(validate_tag(" \t"), Err("config: a tag is empty".into()));
    }

    #[test]
    fn a_tag_with_a_control_character_is_refused_naming_it() {
        assert_eq!(
            validate_tag("a\nb"),
            Err("config: tag \"a\\nb\" must be at most 64 printable characters".into())
        );
    }

    #[test]
    fn sixty_four_bytes_is_the_longest_tag() {
        assert_eq!(validate_tag(&"t".repeat(64)), Ok(()));
        assert!(validate_tag(&"t".repeat(65)).is_err());
    }
}
