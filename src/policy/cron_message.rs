//! Plain-language versions of the cron crate's range errors. The crate reports an hour of
//! 25 as "Hours must be less than 23", which reads as if 23 itself were refused; a person
//! fixing a deployment window needs the field, the value written and the allowed range.

/// `(crate's unit name, the name a person uses)`: the five fields of a standard schedule.
const UNITS: [(&str, &str); 5] = [
    ("Minutes", "minute"),
    ("Hours", "hour"),
    ("Days of Month", "day of month"),
    ("Months", "month"),
    ("Days of Week", "day of week"),
];

/// The allowed range of a standard cron field, by the crate's unit name.
fn range_of(unit: &str) -> Option<(u32, u32)> {
    match unit {
        "Minutes" => Some((0, 59)),
        "Hours" => Some((0, 23)),
        "Days of Month" => Some((1, 31)),
        "Months" => Some((1, 12)),
        // Day-of-week values reach the crate after shiftgate's own translation
        // (0-7, names); the range shown is the one users write.
        "Days of Week" => Some((0, 7)),
        _ => None,
    }
}

/// Rewrites an out-of-range message of the cron crate as "hour 25 is out of range (0 to
/// 23)"; any other message is returned unchanged.
pub(super) fn explain(message: &str) -> String {
    for (unit, human) in UNITS {
        let Some(rest) = message.strip_prefix(unit) else {
            continue;
        };
        let out_of_range =
            rest.starts_with(" must be less than ") || rest.starts_with(" must be greater than");
        let (Some((min, max)), true) = (range_of(unit), out_of_range) else {
            continue;
        };
        return match specified(rest) {
            Some(value) => format!("{human} {value} is out of range ({min} to {max})"),
            None => format!("a {human} value is out of range ({min} to {max})"),
        };
    }
    message.to_owned()
}

/// The value in the crate's "('25' specified.)" suffix.
fn specified(rest: &str) -> Option<&str> {
    let start = rest.find("('")? + 2;
    let len = rest.get(start..)?.find('\'')?;
    rest.get(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn hour_above_23_names_the_value_and_the_range() {
        assert_eq!(
            explain("Hours must be less than 23. ('25' specified.)"),
            "hour 25 is out of range (0 to 23)"
        );
    }

    #[test]
    fn day_of_month_zero_names_the_lower_bound() {
        assert_eq!(
            explain("Days of Month must be greater than or equal to 1. ('0' specified.)"),
            "day of month 0 is out of range (1 to 31)"
        );
    }

    #[test]
    fn other_messages_are_unchanged() {
        assert_eq!(
            explain("Invalid range for Hours: 5-2"),
            "Invalid range for Hours: 5-2"
        );
    }
}
