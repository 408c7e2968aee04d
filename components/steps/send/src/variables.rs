//! Finds the variables a Liquid template reads, without rendering it, so that
//! `validate` can refuse a template that names something the step will never
//! provide (`{{ customer.name }}` instead of `{{ contact.attributes.name }}`).
//!
//! The `liquid` crate parses a template into renderers that cannot be
//! inspected, so this is a small lexical pass over the tags: it finds the
//! first name of every variable path in an expression, and the names the
//! template binds itself (`assign`, `capture`, `for`, `increment`). It errs on
//! the side of accepting; the render itself is strict and remains the last
//! line of defence.

use std::collections::BTreeSet;

/// One variable path a template reads, such as `config.coupon.percent_off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The path's names in order; `["config", "coupon", "percent_off"]`.
    /// Bracketed parts (`items[0]`, `a["b"]`) end the path.
    pub path: Vec<String>,
    /// Whether the value is required: read by `{{ }}` output or compared,
    /// where a missing value is an error, rather than only tested for truth
    /// (`{% if data.code %}`), where a missing value is simply false.
    pub required: bool,
    /// Whether an enclosing `if` or `unless` tests this path (or a prefix of
    /// it) for truth, as in `{% if data.code %}{{ data.code }}{% endif %}`.
    pub guarded: bool,
}

/// What [`scan`] found in a template.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every variable path read, in order of appearance.
    pub references: Vec<Reference>,
    /// Names the template binds itself.
    pub bound: BTreeSet<String>,
}

impl Scan {
    /// The references whose first name is neither bound by the template nor
    /// one of `roots`, as dotted paths, first appearance only.
    pub fn unknown(&self, roots: &[&str]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.references
            .iter()
            .filter(|r| {
                let root = r.path[0].as_str();
                !roots.contains(&root) && !self.bound.contains(root) && !BUILT_INS.contains(&root)
            })
            .map(|r| r.path.join("."))
            .filter(|p| seen.insert(p.clone()))
            .collect()
    }
}

/// Names the Liquid language itself provides inside expressions.
const BUILT_INS: &[&str] = &["forloop", "tablerowloop"];

/// Words with a meaning of their own inside an expression.
const KEYWORDS: &[&str] = &[
    "and", "or", "contains", "in", "true", "false", "nil", "null", "empty", "blank", "reversed",
    "with", "as", "by",
];

/// Scans a template's tags. Errors only on what Dripline refuses on purpose
/// (`include` and `render`: a step has no files to include) or on a tag left
/// open; real syntax errors are the Liquid parser's to report.
pub fn scan(source: &str) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let mut rest = source;
    // Inside `{% raw %}` or `{% comment %}`, everything up to the end tag is text.
    let mut skipping: Option<&str> = None;
    // The paths each open `if`/`unless` tests for truth.
    let mut guards: Vec<Vec<Vec<String>>> = Vec::new();
    while let Some(start) = find_open(rest) {
        let (is_output, body_start) = (rest[start..].starts_with("{{"), start + 2);
        let close = if is_output { "}}" } else { "%}" };
        let len = find_close(&rest[body_start..], close).ok_or_else(|| {
            format!(
                "a tag opened with `{}` is never closed",
                &rest[start..body_start]
            )
        })?;
        let inner = trim_whitespace_control(&rest[body_start..body_start + len]);
        rest = &rest[body_start + len + 2..];

        let word = inner.split_whitespace().next().unwrap_or("");
        if let Some(end) = skipping {
            if !is_output && word == end {
                skipping = None;
            }
            continue;
        }
        if is_output {
            scan.expression(inner, false, &guards);
            continue;
        }
        let args = inner[word.len()..].trim();
        match word {
            "raw" => skipping = Some("endraw"),
            "comment" => skipping = Some("endcomment"),
            "include" | "render" => {
                return Err(format!("`{word}` is not supported: a template is one file"));
            }
            "assign" => {
                if let Some((name, value)) = args.split_once('=') {
                    scan.bound.insert(name.trim().to_string());
                    scan.expression(value, false, &guards);
                }
            }
            "capture" | "increment" | "decrement" => {
                scan.bound.insert(args.trim().to_string());
            }
            "for" | "tablerow" => {
                if let Some((name, value)) = args.split_once(" in ") {
                    scan.bound.insert(name.trim().to_string());
                    scan.expression(value, false, &guards);
                }
            }
            "if" | "unless" => {
                let tested = scan.expression(args, true, &guards);
                guards.push(tested);
            }
            "elsif" => {
                let tested = scan.expression(args, true, &guards);
                if let Some(top) = guards.last_mut() {
                    top.extend(tested);
                }
            }
            "endif" | "endunless" => {
                guards.pop();
            }
            "case" | "when" => {
                scan.expression(args, true, &guards);
            }
            "cycle" | "echo" => {
                scan.expression(args, false, &guards);
            }
            _ => {}
        }
    }
    match skipping {
        Some(end) => Err(format!("`{{% {end} %}}` is missing")),
        None => Ok(scan),
    }
}

impl Scan {
    /// Records the variable paths of one expression and returns those it only
    /// tests for truth (in a `condition`: alone or joined by `and`/`or`).
    fn expression(
        &mut self,
        expression: &str,
        condition: bool,
        guards: &[Vec<Vec<String>>],
    ) -> Vec<Vec<String>> {
        let tokens = tokenize(expression);
        let is_connective = |t: Option<&Token>| match t {
            None => true,
            Some(Token::Name(n)) => n == "and" || n == "or",
            Some(_) => false,
        };
        let mut tested = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let before = i.checked_sub(1).map(|p| &tokens[p]);
            let is_root = matches!(&tokens[i], Token::Name(n) if !KEYWORDS.contains(&n.as_str()))
                && !matches!(before, Some(Token::Punct('.' | '|')))
                && !matches!(tokens.get(i + 1), Some(Token::Punct(':')));
            if !is_root {
                i += 1;
                continue;
            }
            let mut path = vec![tokens[i].name().to_string()];
            i += 1;
            while let (Some(Token::Punct('.')), Some(Token::Name(n))) =
                (tokens.get(i), tokens.get(i + 1))
            {
                path.push(n.clone());
                i += 2;
            }
            let truth_test = condition && is_connective(before) && is_connective(tokens.get(i));
            let guarded = guards.iter().flatten().any(|guard| path.starts_with(guard));
            if truth_test {
                tested.push(path.clone());
            }
            self.references.push(Reference {
                path,
                required: !truth_test,
                guarded,
            });
        }
        tested
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Name(String),
    Punct(char),
    Literal,
}

impl Token {
    fn name(&self) -> &str {
        match self {
            Token::Name(n) => n,
            _ => "",
        }
    }
}

/// Splits an expression into names, literals and punctuation.
fn tokenize(expression: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = expression.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\'' || c == '"' {
            for (_, d) in chars.by_ref() {
                if d == c {
                    break;
                }
            }
            tokens.push(Token::Literal);
        } else if c.is_ascii_digit()
            || (c == '-' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()))
        {
            // A number; `1..5` is a range of two numbers, not a decimal.
            while let Some(&(i, d)) = chars.peek() {
                let decimal_point =
                    d == '.' && expression[i + 1..].starts_with(|e: char| e.is_ascii_digit());
                if !(d.is_ascii_digit() || decimal_point) {
                    break;
                }
                chars.next();
            }
            tokens.push(Token::Literal);
        } else if c.is_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_' || d == '-' || d == '?') {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            tokens.push(Token::Name(expression[start..end].to_string()));
        } else if !c.is_whitespace() {
            tokens.push(Token::Punct(c));
        }
    }
    tokens
}

/// The next `{{` or `{%`.
pub(crate) fn find_open(text: &str) -> Option<usize> {
    let output = text.find("{{");
    let tag = text.find("{%");
    match (output, tag) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The closing `}}` or `%}`, skipping quoted strings.
pub(crate) fn find_close(text: &str, close: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if text[i..].starts_with(close) => return Some(i),
            None => {}
        }
    }
    None
}

/// Drops the `-` of `{{-`, `-}}`, `{%-` and `-%}`.
pub(crate) fn trim_whitespace_control(inner: &str) -> &str {
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    inner.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOTS: &[&str] = &["contact", "trigger", "data", "config", "step"];

    fn unknown(source: &str) -> Vec<String> {
        scan(source).unwrap().unknown(ROOTS)
    }

    #[test]
    fn the_step_roots_are_known() {
        assert!(unknown("{{ contact.attributes.first_name }} {{ trigger.properties.line_items.size }} {{ data.x }} {{ config.coupon.percent_off }} {{ step.id }}").is_empty());
    }

    #[test]
    fn a_root_the_step_does_not_provide_is_unknown() {
        assert_eq!(
            unknown("Hi {{ customer.first_name | capitalize }}"),
            ["customer.first_name"]
        );
    }

    #[test]
    fn an_unknown_root_inside_a_condition_is_found() {
        assert_eq!(unknown("{% if cart.items %}x{% endif %}"), ["cart.items"]);
    }

    #[test]
    fn loop_and_assigned_names_are_bound_by_the_template() {
        let source = "{% assign items = trigger.properties.line_items %}{% for item in items limit: 3 %}{{ item.title }}{{ forloop.index }}{% endfor %}{% capture c %}x{% endcapture %}{{ c }}";
        assert!(unknown(source).is_empty());
    }

    #[test]
    fn filter_names_arguments_and_strings_are_not_variables() {
        let source = r#"{{ "hello world" | replace: 'world', data.name | append: "{{ x }}" | truncate: 10 }}"#;
        assert!(unknown(source).is_empty());
        assert_eq!(scan(source).unwrap().references[0].path, ["data", "name"]);
    }

    #[test]
    fn filter_arguments_that_are_variables_are_checked() {
        assert_eq!(unknown("{{ 'x' | append: shop.name }}"), ["shop.name"]);
    }

    #[test]
    fn keywords_numbers_and_ranges_are_not_variables() {
        assert!(unknown("{% if data.n > 1.5 and data.s contains 'a' or data.t == empty %}{% for i in (1..3) %}{{ i }}{% endfor %}{% endif %}").is_empty());
    }

    #[test]
    fn raw_and_comment_blocks_are_skipped() {
        assert!(
            unknown("{% raw %}{{ anything }}{% endraw %}{% comment %}{{ old }}{% endcomment %}")
                .is_empty()
        );
    }

    #[test]
    fn whitespace_control_is_understood() {
        assert_eq!(
            unknown("{{- nobody -}}{%- if x -%}{%- endif -%}"),
            ["nobody", "x"]
        );
    }

    #[test]
    fn output_paths_are_required_and_conditions_are_not() {
        let scan = scan("{% if config.coupon.code %}{{ config.coupon.code }}{% endif %}").unwrap();
        assert!(!scan.references[0].required);
        assert!(scan.references[1].required);
    }

    #[test]
    fn a_compared_value_is_required_even_in_a_condition() {
        let scan = scan("{% if config.recommend == 'x' and data.a %}{% endif %}").unwrap();
        assert!(scan.references[0].required);
        assert!(!scan.references[1].required);
    }

    #[test]
    fn a_value_inside_an_if_that_tests_it_is_guarded() {
        let scan = scan(
            "{% if config.coupon %}{{ config.coupon.code }}{% endif %}{{ config.coupon.code }}",
        )
        .unwrap();
        assert!(scan.references[1].guarded);
        assert!(!scan.references[2].guarded);
    }

    #[test]
    fn include_is_refused() {
        assert!(
            scan("{% include 'footer' %}")
                .unwrap_err()
                .contains("include")
        );
    }

    #[test]
    fn an_unclosed_tag_is_refused() {
        assert!(scan("{{ contact.id ").is_err());
    }
}
