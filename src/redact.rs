//! Hides the credentials a URL may carry (`http://user:password@host`) before the URL is
//! shown anywhere: status, state files, logs, errors, Events, `check` and preflight
//! messages. Every place that displays a Prometheus, Envoy, check or webhook URL goes
//! through here, so a password written into a URL never leaves the process.
//!
//! Pure and total: any text is accepted, text without userinfo comes back unchanged.

use std::borrow::Cow;

/// What replaces the userinfo of a URL.
pub const HIDDEN: &str = "***";

/// Every URL in `text` (one URL, or an error chain that quotes some) with its userinfo
/// replaced by `***`: `http://u:p@h:9090/x` → `http://***@h:9090/x`.
pub fn urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let tail = &rest[authority_start..];
        // The authority ends where the path, query or fragment begins, or where the URL
        // itself ends inside free text.
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>')
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(HIDDEN);
                out.push_str(&authority[userinfo_end..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `url` carries userinfo (a user name, and maybe a password).
pub fn has_userinfo(url: &str) -> bool {
    urls(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_hidden_and_the_rest_kept() {
        let cases = [
            ("http://u:p@prom:9090", "http://***@prom:9090"),
            ("https://u:p%40ss@prom:9090/api?x=1", "https://***@prom:9090/api?x=1"),
            ("http://user@prom", "http://***@prom"),
            ("http://a:b@c@prom/x@y", "http://***@prom/x@y"),
            (
                "error sending request for url (http://u:p@h:1/api/v1/query): refused; retry http://v:q@g",
                "error sending request for url (http://***@h:1/api/v1/query): refused; retry http://***@g",
            ),
            ("`http://u:hunter2@h` is not a URL", "`http://***@h` is not a URL"),
        ];
        for (input, expected) in cases {
            assert_eq!(urls(input), expected, "{input}");
            assert!(has_userinfo(input));
        }
    }

    #[test]
    fn text_without_userinfo_is_unchanged() {
        for text in [
            "",
            "http://prom:9090",
            "mail me at a@b.c",
            "http://prom:9090/ then a@b",
            "http://prom:9090/path@x",
            "not a url: prom@9090",
        ] {
            assert!(matches!(urls(text), Cow::Borrowed(_)), "{text}");
            assert!(!has_userinfo(text), "{text}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "://",
            "http://",
            "http://@",
            "a://b://c@d",
            "é://ü:ö@ß/",
            "x://\u{0}@",
        ] {
            let _ = urls(text);
        }
    }
}
