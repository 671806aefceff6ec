//! How the Prometheus stand-ins read what they are asked: a query alone, or a batch
//! (`label_replace(<member>, "shiftgate_batch_query", "<i>", "", "") or …`) whose members
//! may be grouped queries selecting several targets with `label=~"a|b|…"`. Each member
//! is answered per target: one series per combination of its alternatives (labelled with
//! them, as `sum by (<those labels>)` would), or one unlabelled series when it selects
//! by equality only. Values are taken as written with their escapes removed (enough for
//! the hosts and versions the tests use, which hold no `|`).

const MARK: &str = "\"shiftgate_batch_query\", \"";

/// One member of what was asked.
pub struct Asked {
    /// Its index in the batch (`None`: the query was not a batch).
    pub index: Option<String>,
    /// Its PromQL.
    pub text: String,
    /// The targets it selects: each a set of (label, value); one empty set when the
    /// member is not grouped.
    pub targets: Vec<Vec<(String, String)>>,
}

impl Asked {
    /// The labels of `target`'s series, with the batch label when in a batch.
    pub fn labels(
        &self,
        target: &[(String, String)],
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut labels: serde_json::Map<String, serde_json::Value> = target
            .iter()
            .map(|(l, v)| (l.clone(), serde_json::Value::String(v.clone())))
            .collect();
        if let Some(i) = &self.index {
            labels.insert(
                "shiftgate_batch_query".to_owned(),
                serde_json::Value::String(i.clone()),
            );
        }
        labels
    }
}

/// The members of `query`.
pub fn members(query: &str) -> Vec<Asked> {
    if !query.contains(MARK) {
        return vec![asked(None, query)];
    }
    query
        .split(" or label_replace(")
        .filter_map(|member| {
            let (text, rest) = member.split_once(MARK)?;
            let index: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some(asked(
                Some(index),
                text.trim_start_matches("label_replace("),
            ))
        })
        .collect()
}

fn asked(index: Option<String>, text: &str) -> Asked {
    let mut targets: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (label, alternatives) in regex_matchers(text) {
        let mut wider = Vec::with_capacity(targets.len() * alternatives.len());
        for target in &targets {
            for value in &alternatives {
                let mut more = target.clone();
                more.push((label.clone(), value.clone()));
                wider.push(more);
            }
        }
        targets = wider;
    }
    Asked {
        index,
        text: text.to_owned(),
        targets,
    }
}

/// Whether `regex` is literals joined by `|` (every other metacharacter escaped).
fn literal_alternatives(regex: &str) -> bool {
    let mut escaped = false;
    for c in regex.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if ".+*?()[]{}^$".contains(c) {
            return false;
        }
    }
    true
}

/// Each distinct `label=~"…"` of `text` that selects targets, with its alternatives
/// (escapes removed).
fn regex_matchers(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("=~\"") {
        let label: String = rest[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after = &rest[at + 3..];
        let end = after.find('"').unwrap_or(after.len());
        // The PromQL string's escapes, then the regex's.
        let regex = after[..end].replace("\\\\", "\\");
        let alternatives = regex.split('|').map(|v| v.replace('\\', "")).collect();
        // A pattern (`response_code=~"5.."`) selects no target.
        if literal_alternatives(&regex) && !out.iter().any(|(l, _)| *l == label) {
            out.push((label, alternatives));
        }
        rest = &after[end..];
    }
    out
}
