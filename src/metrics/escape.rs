//! Escaping of values substituted into PromQL, by the context they land in. This is what
//! keeps a policy from injecting PromQL through a host, a subset or a variable: a value
//! inside a string literal can only ever be that string's content, and a value outside a
//! string literal can only be a single harmless token (a duration, a number or a name).

/// Where in a PromQL expression a substituted value lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// Between tokens, e.g. `[{{ interval }}]` or a metric name.
    Bare,
    /// Inside a string literal opened by `quote` (`"`, `'` or `` ` ``). `regex` when the
    /// literal is the right-hand side of `=~` or `!~`.
    String { quote: char, regex: bool },
    /// Inside a `#` comment: nothing may be substituted there (a newline would end it).
    Comment,
}

/// Why a value cannot be substituted in its context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    #[error("value `{value}` is used outside a string literal, where only a duration (`30s`), a number (`0.99`) or a name (`job`) is allowed; put the variable inside double quotes")]
    NotABareToken { value: String },
    #[error("value `{value}` is the PromQL keyword `{value}`, which cannot stand for a name outside a string literal; put the variable inside double quotes")]
    Keyword { value: String },
    #[error("value `{value}` contains a backtick, which a raw `` ` `` string cannot hold; use a double-quoted string instead")]
    BacktickInRawString { value: String },
    #[error("variables cannot be used inside a `#` comment")]
    InComment,
}

/// PromQL words that change an expression's structure when they stand alone. A bare value
/// equal to one of them (in any case) is refused.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "start",
    "end",
    "step",
];

/// Returns `value` ready to be pasted into `context`.
pub fn escape(value: &str, context: Context) -> Result<String, EscapeError> {
    match context {
        Context::Bare => bare_token(value).map(str::to_owned),
        Context::Comment => Err(EscapeError::InComment),
        Context::String { quote, regex } => {
            let content = if regex {
                regex_literal(value)
            } else {
                value.to_owned()
            };
            string_content(&content, quote)
        }
    }
}

/// The content of a string literal delimited by `quote` whose value is exactly `value`.
/// PromQL strings follow Go's rules: backslash, the quote and control characters are
/// escaped; everything else (any Unicode) stands for itself.
pub fn string_content(value: &str, quote: char) -> Result<String, EscapeError> {
    if quote == '`' {
        // Raw strings have no escapes at all: the value is safe unless it closes the string.
        if value.contains('`') {
            return Err(EscapeError::BacktickInRawString {
                value: value.to_owned(),
            });
        }
        return Ok(value.to_owned());
    }
    Ok(escaped_content(value, quote))
}

/// The content of a string literal delimited by `quote` (`"` or `'`, which have escapes)
/// whose value is exactly `value`.
fn escaped_content(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            // U+FFFD is what Prometheus' lexer reads for broken UTF-8, so it is refused
            // when written plainly; the escape is accepted.
            c if c.is_control() || c == '\u{fffd}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out
}

/// The content of a double-quoted regex matcher (`label=~"…"`) that matches exactly
/// `values`, each once (the first time it comes), and nothing else.
pub fn regex_alternatives<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.iter()
        .map(|v| escaped_content(&regex_literal(v), '"'))
        .collect::<Vec<_>>()
        .join("|")
}

/// A regular expression (RE2, as Prometheus uses it, fully anchored) that matches exactly
/// `value`. Same set as Go's `regexp.QuoteMeta`, so the result means the same in RE2.
pub fn regex_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value allowed outside a string literal: a duration (`30s`, `1m30s`, `500ms`), an
/// unsigned number (`0.99`, `5`) or a name (`job`, `http_requests_total`) that is not a
/// PromQL keyword. Nothing else, so a bare value is always exactly one token.
pub fn bare_token(value: &str) -> Result<&str, EscapeError> {
    if is_duration(value) || is_number(value) {
        return Ok(value);
    }
    if is_identifier(value) {
        if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(value)) {
            return Err(EscapeError::Keyword {
                value: value.to_owned(),
            });
        }
        return Ok(value);
    }
    Err(EscapeError::NotABareToken {
        value: value.to_owned(),
    })
}

fn is_identifier(value: &str) -> bool {
    let mut chars = value.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_number(value: &str) -> bool {
    let (int, frac) = match value.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (value, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// PromQL durations: one or more `<digits><unit>` with units ms, s, m, h, d, w, y.
fn is_duration(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut parts = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        let unit_len = if bytes[i..].starts_with(b"ms") {
            2
        } else if matches!(bytes.get(i), Some(b's' | b'm' | b'h' | b'd' | b'w' | b'y')) {
            1
        } else {
            return false;
        };
        i += unit_len;
        parts += 1;
    }
    parts > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dq(value: &str) -> String {
        escape(
            value,
            Context::String {
                quote: '"',
                regex: false,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn double_quoted_escapes_backslash_quote_and_newline() {
        assert_eq!(dq(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(dq("line\nbreak"), r"line\nbreak");
        assert_eq!(dq("it's"), "it's");
        assert_eq!(dq("\u{7}"), r"\u0007");
        assert_eq!(dq("ünï"), "ünï");
    }

    #[test]
    fn single_quoted_escapes_its_own_quote() {
        let out = escape(
            r#"it's "x""#,
            Context::String {
                quote: '\'',
                regex: false,
            },
        );
        assert_eq!(out, Ok(r#"it\'s "x""#.to_owned()));
    }

    #[test]
    fn regex_context_escapes_metacharacters_then_the_string() {
        let out = escape(
            r"a.b*(c)\d",
            Context::String {
                quote: '"',
                regex: true,
            },
        );
        // regex: a\.b\*\(c\)\\d ; then every backslash doubled for the string literal.
        assert_eq!(out, Ok(r"a\\.b\\*\\(c\\)\\\\d".to_owned()));
    }

    #[test]
    fn raw_strings_refuse_backticks() {
        let ctx = Context::String {
            quote: '`',
            regex: false,
        };
        assert_eq!(escape(r"a\b", ctx), Ok(r"a\b".to_owned()));
        assert!(matches!(
            escape("a`b", ctx),
            Err(EscapeError::BacktickInRawString { .. })
        ));
    }

    #[test]
    fn bare_values_are_single_tokens() {
        for ok in [
            "30s",
            "1m30s",
            "500ms",
            "1h",
            "0.99",
            "5",
            "job",
            "http_requests_total",
        ] {
            assert_eq!(bare_token(ok), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "30s or vector(1)",
            "a b",
            "1e3",
            "-1",
            "x{y}",
            "\"q\"",
            "5m]",
        ] {
            assert!(bare_token(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(bare_token("OR"), Err(EscapeError::Keyword { .. })));
        assert!(matches!(
            bare_token("offset"),
            Err(EscapeError::Keyword { .. })
        ));
    }

    #[test]
    fn comments_take_no_values() {
        assert_eq!(escape("x", Context::Comment), Err(EscapeError::InComment));
    }
}
