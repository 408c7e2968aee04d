//! What makes a tag acceptable. `untag` compiles this same file (a crate
//! dependency would link `tag`'s component exports into `untag` as well).

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
