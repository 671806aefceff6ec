//! Query templates: PromQL with `{{ variable }}` placeholders.
//!
//! A template is parsed once into literal text and placeholders, each placeholder with
//! the PromQL context it sits in (bare, inside a string literal, inside a regex matcher's
//! string). Rendering escapes every value for its context (see `escape.rs`), so a value
//! can never end a string, add a matcher or append an operator.

use std::fmt::Write as _;

use super::escape::{self, Context, EscapeError};
use super::variables::{VariableError, Variables};

/// What is wrong with a template, naming the metric it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("metric `{metric}`: query template at {line}:{column}: {problem}")]
    Syntax {
        metric: String,
        line: usize,
        column: usize,
        problem: String,
    },
    #[error("metric `{metric}`: {source}")]
    Variable {
        metric: String,
        #[source]
        source: VariableError,
    },
    #[error("metric `{metric}`: variable `{variable}`: {source}")]
    Escape {
        metric: String,
        variable: String,
        #[source]
        source: EscapeError,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable { name: String, context: Context },
}

/// A parsed query template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    metric: String,
    parts: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LexState {
    Outside,
    InString { quote: char, regex: bool },
    InComment,
}

impl Template {
    /// Parses `text`, the query of metric `metric` (named in every error).
    pub fn parse(metric: &str, text: &str) -> Result<Template, TemplateError> {
        let syntax = |offset: usize, problem: String| {
            let (line, column) = line_column(text, offset);
            TemplateError::Syntax {
                metric: metric.to_owned(),
                line,
                column,
                problem,
            }
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut state = LexState::Outside;
        // The last two significant characters outside strings, to tell `=~ "…"` apart.
        let mut recent = Recent::default();
        let mut string_start = 0;
        let mut rest = text.char_indices().peekable();
        while let Some((offset, c)) = rest.next() {
            if c == '{' && text[offset..].starts_with("{{") {
                let Some(end) = text[offset + 2..].find("}}") else {
                    return Err(syntax(offset, "`{{` is never closed by `}}`".to_owned()));
                };
                let name = text[offset + 2..offset + 2 + end].trim();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
                {
                    return Err(syntax(
                        offset,
                        format!("`{{{{{name}}}}}` is not a variable; write e.g. `{{{{ canary.host }}}}`"),
                    ));
                }
                let context = match state {
                    LexState::Outside => Context::Bare,
                    LexState::InString { quote, regex } => Context::String { quote, regex },
                    LexState::InComment => {
                        return Err(syntax(
                            offset,
                            format!("variable `{name}` is inside a `#` comment"),
                        ))
                    }
                };
                if state == LexState::Outside {
                    recent.clear();
                }
                parts.push(Part::Literal(std::mem::take(&mut literal)));
                parts.push(Part::Variable {
                    name: name.to_owned(),
                    context,
                });
                // Skip the placeholder: `{{` + name + `}}`.
                let skip_to = offset + 2 + end + 2;
                while rest.peek().is_some_and(|(o, _)| *o < skip_to) {
                    rest.next();
                }
                continue;
            }
            literal.push(c);
            match state {
                LexState::Outside => match c {
                    '"' | '\'' | '`' => {
                        let regex = recent.is_regex_match();
                        state = LexState::InString { quote: c, regex };
                        string_start = offset;
                    }
                    '#' => state = LexState::InComment,
                    c if c.is_whitespace() => {}
                    c => recent.push(c),
                },
                LexState::InString { quote, .. } => {
                    if c == '\\' && quote != '`' {
                        // An escaped character never ends the string.
                        if let Some((_, escaped)) = rest.next() {
                            literal.push(escaped);
                        }
                    } else if c == quote {
                        state = LexState::Outside;
                        recent.push(c);
                    }
                }
                LexState::InComment => {
                    if c == '\n' {
                        state = LexState::Outside;
                    }
                }
            }
        }
        if let LexState::InString { quote, .. } = state {
            return Err(syntax(
                string_start,
                format!("string literal opened with {quote} is never closed"),
            ));
        }
        parts.push(Part::Literal(literal));
        parts.retain(|p| !matches!(p, Part::Literal(l) if l.is_empty()));
        Ok(Template {
            metric: metric.to_owned(),
            parts,
        })
    }

    /// The variable names the template uses, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template refers to the queried side (`target.*`), i.e. gives a
    /// different query for canary and stable.
    pub fn uses_target(&self) -> bool {
        self.variables().any(|v| v.starts_with("target."))
    }

    /// The PromQL query with every variable substituted and escaped.
    pub fn render(&self, variables: &Variables) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable { name, context } => {
                    let value =
                        variables
                            .lookup(name)
                            .map_err(|source| TemplateError::Variable {
                                metric: self.metric.clone(),
                                source,
                            })?;
                    let escaped = escape::escape(&value, *context).map_err(|source| {
                        TemplateError::Escape {
                            metric: self.metric.clone(),
                            variable: name.clone(),
                            source,
                        }
                    })?;
                    let _ = write!(out, "{escaped}");
                }
            }
        }
        Ok(out)
    }
}

/// The last two significant characters seen outside strings.
#[derive(Default)]
struct Recent([char; 2]);

impl Recent {
    fn push(&mut self, c: char) {
        self.0 = [self.0[1], c];
    }

    fn clear(&mut self) {
        self.0 = ['\0', '\0'];
    }

    fn is_regex_match(&self) -> bool {
        matches!(self.0, ['=' | '!', '~'])
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use promql_parser::label::MatchOp;
    use promql_parser::parser::{self, Expr};
    use proptest::prelude::*;

    use super::*;
    use crate::metrics::variables::{Side, Target};

    fn variables_with(value: &str) -> Variables {
        Variables {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
            interval: "30s".to_owned(),
            canary: Target {
                host: Some("checkout.stage.svc.cluster.local".to_owned()),
                subset: Some("v2".to_owned()),
                port: Some(8080),
                cluster: None,
                labels: BTreeMap::new(),
            },
            stable: Target {
                host: Some("checkout.prod.svc.cluster.local".to_owned()),
                subset: Some("v1".to_owned()),
                port: None,
                cluster: None,
                labels: BTreeMap::new(),
            },
            side: Side::Canary,
            vars: BTreeMap::from([("v".to_owned(), value.to_owned())]),
            router: "istio",
            selector_key: None,
        }
    }

    fn render(text: &str, vars: &Variables) -> Result<String, TemplateError> {
        Template::parse("m", text)?.render(vars)
    }

    #[test]
    fn substitutes_every_kind_of_variable() {
        let vars = variables_with("x");
        let out = render(
            r#"sum(rate(r{ns="{{ namespace }}",svc="{{canary.host}}",v="{{ canary.subset }}",p="{{ canary.port }}",s="{{ stable.subset }}",t="{{ target.subset }}",x="{{ vars.v }}"}[{{ interval }}]))"#,
            &vars,
        );
        assert_eq!(
            out.as_deref(),
            Ok(
                r#"sum(rate(r{ns="shop",svc="checkout.stage.svc.cluster.local",v="v2",p="8080",s="v1",t="v2",x="x"}[30s]))"#
            )
        );
        let stable = render(r#"r{t="{{ target.host }}"}"#, &vars.with_side(Side::Stable));
        assert_eq!(
            stable.as_deref(),
            Ok(r#"r{t="checkout.prod.svc.cluster.local"}"#)
        );
    }

    #[test]
    fn unknown_and_undefined_variables_name_the_metric_and_the_variable() {
        let vars = variables_with("x");
        let unknown = render(r#"r{a="{{ canary.hots }}"}"#, &vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(unknown.contains("metric `m`"), "{unknown}");
        assert!(unknown.contains("`canary.hots`"), "{unknown}");
        let undefined = render(r#"r{a="{{ canary.cluster }}"}"#, &vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(undefined.contains("canary.cluster"), "{undefined}");
        assert!(undefined.contains("istio router"), "{undefined}");
        let missing_var = render(r#"r{a="{{ vars.nope }}"}"#, &vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing_var.contains("spec.analysis.vars"), "{missing_var}");
    }

    #[test]
    fn bare_values_must_be_single_tokens() {
        let err = render("rate(r[{{ vars.v }}])", &variables_with("5m]) or vector(1"));
        assert!(matches!(err, Err(TemplateError::Escape { .. })), "{err:?}");
        let ok = render("rate(r[{{ vars.v }}])", &variables_with("5m"));
        assert_eq!(ok.as_deref(), Ok("rate(r[5m])"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = Template::parse("m", "r{a=\"x\"}\n# {{ vars.v }}");
        assert!(
            matches!(
                err,
                Err(TemplateError::Syntax {
                    line: 2,
                    column: 3,
                    ..
                })
            ),
            "{err:?}"
        );
        let err = Template::parse("m", r#"r{a="{{ vars.v }}}"#);
        assert!(matches!(err, Err(TemplateError::Syntax { .. })), "{err:?}");
        let err = Template::parse("m", r#"r{a="{{ vars.v "}"#);
        assert!(matches!(err, Err(TemplateError::Syntax { .. })), "{err:?}");
        let err = Template::parse("m", r#"r{a="{{ vars v }}"}"#);
        assert!(matches!(err, Err(TemplateError::Syntax { .. })), "{err:?}");
    }

    #[test]
    fn regex_matchers_are_detected() {
        let vars = variables_with("a.b");
        assert_eq!(
            render(
                r#"r{a=~"{{ vars.v }}-.*", b!~ '{{ vars.v }}', c="{{ vars.v }}"}"#,
                &vars
            )
            .as_deref(),
            Ok(r#"r{a=~"a\\.b-.*", b!~ 'a\\.b', c="a.b"}"#)
        );
        // An escaped quote inside a literal does not end it.
        assert_eq!(
            render(r#"r{a="q\"{{ vars.v }}"}"#, &vars).as_deref(),
            Ok(r#"r{a="q\"a.b"}"#)
        );
    }

    #[test]
    fn uses_target_tells_reusable_templates() {
        let t = Template::parse("m", r#"r{a="{{ target.host }}"}"#);
        assert_eq!(t.map(|t| t.uses_target()), Ok(true));
        let t = Template::parse("m", r#"r{a="{{ canary.host }}"}"#);
        assert_eq!(t.map(|t| t.uses_target()), Ok(false));
    }

    /// The one non-`__name__` matcher of the parsed selector: (label, op, value).
    fn only_matcher(query: &str) -> (String, MatchOp, String) {
        let expr = parser::parse(query).unwrap_or_else(|e| panic!("{query:?} does not parse: {e}"));
        let Expr::VectorSelector(selector) = expr else {
            panic!("{query:?} is not a single vector selector: {expr:?}");
        };
        assert!(
            selector.matchers.or_matchers.is_empty(),
            "{query:?} has `or` matchers"
        );
        assert_eq!(selector.name.as_deref(), Some("up"), "{query:?}");
        let mut matchers: Vec<_> = selector
            .matchers
            .matchers
            .into_iter()
            .filter(|m| m.name != "__name__")
            .collect();
        assert_eq!(matchers.len(), 1, "{query:?} has several matchers");
        let m = matchers.remove(0);
        (m.name, m.op, m.value)
    }

    fn hostile() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("`".to_owned()),
            Just("\\".to_owned()),
            Just("}".to_owned()),
            Just("{".to_owned()),
            Just("\n".to_owned()),
            Just("{{".to_owned()),
            Just("}}".to_owned()),
            Just(" or vector(1)".to_owned()),
            Just("\"} or vector(1) or up{a=\"".to_owned()),
            Just(".*".to_owned()),
            Just("|".to_owned()),
            Just("# c".to_owned()),
            Just("\u{7}".to_owned()),
            "[a-z0-9]{0,4}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(fragment, 0..8).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn equality_matcher_round_trips_any_value(value in hostile(), single in any::<bool>()) {
            let template = if single { "up{pod='{{ vars.v }}'}" } else { r#"up{pod="{{ vars.v }}"}"# };
            let query = render(template, &variables_with(&value))
                .unwrap_or_else(|e| panic!("{e}"));
            let (label, op, parsed) = only_matcher(&query);
            prop_assert_eq!(label, "pod");
            prop_assert!(matches!(op, MatchOp::Equal));
            prop_assert_eq!(parsed, value);
        }

        #[test]
        fn regex_matcher_matches_exactly_the_value(value in hostile()) {
            let query = render(r#"up{pod=~"{{ vars.v }}"}"#, &variables_with(&value))
                .unwrap_or_else(|e| panic!("{e}"));
            let (label, op, pattern) = only_matcher(&query);
            prop_assert_eq!(label, "pod");
            prop_assert!(matches!(op, MatchOp::Re(_)));
            let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))
                .unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            prop_assert!(anchored.is_match(&value), "{:?} does not match {:?}", pattern, value);
            let other = format!("{value}x");
            prop_assert!(!anchored.is_match(&other));
        }

        #[test]
        fn bare_values_never_add_tokens(value in hostile()) {
            if let Ok(query) = render("rate(up[{{ vars.v }}])", &variables_with(&value)) {
                prop_assert!(escape::bare_token(&value).is_ok());
                prop_assert_eq!(query, format!("rate(up[{value}])"));
            }
        }
    }
}
