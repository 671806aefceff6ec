//! Where an unclosed flow collection (`[` or `{`) was opened. YAML parsers report a
//! missing `]` where they give up, often lines later (`steps: [0, 30, 60, 100` fails at
//! the next key); the person fixing the file needs the line of the bracket.

use super::yaml::Position;

/// The innermost `[` or `{` that is still open at `stop` (the parser's error position),
/// when it was opened on an earlier line. Brackets inside quoted scalars and comments do
/// not count.
pub(super) fn unclosed_opener_before(text: &str, stop: Position) -> Option<(char, Position)> {
    let mut open: Vec<(char, Position)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if number > stop.line {
            break;
        }
        scan_line(line, number, stop, &mut open);
    }
    open.pop().filter(|(_, at)| at.line < stop.line)
}

/// Pushes and pops the flow brackets of one line, up to `stop` on its line.
fn scan_line(line: &str, number: usize, stop: Position, open: &mut Vec<(char, Position)>) {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    let mut chars = line.chars().enumerate().peekable();
    while let Some((index, c)) = chars.next() {
        let column = index + 1;
        if number == stop.line && column >= stop.column {
            return;
        }
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => {
                // `''` inside a single-quoted scalar is an escaped quote.
                if q == '\'' && chars.peek().is_some_and(|(_, next)| *next == '\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match c {
                '#' if previous.is_whitespace() || column == 1 => return,
                '"' | '\'' if starts_scalar(previous) => quote = Some(c),
                '[' | '{' => open.push((
                    c,
                    Position {
                        line: number,
                        column,
                    },
                )),
                ']' | '}' => {
                    open.pop();
                }
                _ => {}
            },
        }
        previous = c;
    }
}

/// A quote opens a quoted scalar only where a scalar can start (not in `don't`).
fn starts_scalar(previous: char) -> bool {
    previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn finds_the_unclosed_bracket_of_an_earlier_line() {
        let text = "spec:\n  steps: [0, 30, 60, 100\n  analysis:\n";
        assert_eq!(
            unclosed_opener_before(text, at(3, 11)),
            Some(('[', at(2, 10)))
        );
    }

    #[test]
    fn closed_brackets_and_quoted_ones_do_not_count() {
        let text = "a: [1, 2]\nb: \"[x\"\nc: 'it''s [' # [\nd: e: f\n";
        assert_eq!(unclosed_opener_before(text, at(4, 5)), None);
    }

    #[test]
    fn a_bracket_on_the_error_line_is_left_to_the_parser() {
        let text = "a: 1\nb: [1, 2\n";
        assert_eq!(unclosed_opener_before(text, at(2, 9)), None);
    }
}
