//! Cron expressions as people write them. Kubernetes CronJobs, policy-reporter and crontab
//! use five fields (minute hour day-of-month month day-of-week, Sunday 0 or 7); the `cron`
//! crate wants seconds first and numbers days of the week 1-7 from Sunday. A five-field
//! expression is translated (seconds 0, days of the week renumbered), so `0 8 * * 1` means
//! Monday as everywhere else; six and seven fields are the crate's own form, as before.

use std::str::FromStr;

const FIELDS_5: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const FIELDS_6: [&str; 7] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];
const EXAMPLE: &str = "e.g. \"0 8 1 * *\" for 08:00 on the 1st of every month (minute hour \
                       day-of-month month day-of-week), or \"0 0 8 1 * *\" with seconds first";

/// Parses a 5-field (standard), 6- or 7-field (seconds first) expression or a macro
/// (`@monthly`). An error names the expression, the field at fault and an example.
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let expr = expr.trim();
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let (names, crate_fields): (&[&str], Vec<String>) = match fields.len() {
        1 if expr.starts_with('@') => {
            return cron::Schedule::from_str(expr)
                .map_err(|e| format!("invalid cron expression {expr:?}: {e}; {EXAMPLE}"));
        }
        5 => {
            let dow = day_of_week(fields[4])
                .map_err(|why| field_error(expr, "day-of-week", fields[4], &why))?;
            let mut f: Vec<String> = vec!["0".into()];
            f.extend(fields[..4].iter().map(|s| s.to_string()));
            f.push(dow);
            (&FIELDS_5, f)
        }
        6 | 7 => (&FIELDS_6, fields.iter().map(|s| s.to_string()).collect()),
        n => {
            return Err(format!(
                "invalid cron expression {expr:?}: {n} fields; expected 5 (minute hour \
                 day-of-month month day-of-week) or 6 with seconds first; {EXAMPLE}"
            ));
        }
    };
    let joined = crate_fields.join(" ");
    match cron::Schedule::from_str(&joined) {
        Ok(s) => Ok(s),
        Err(e) => {
            // The crate points at a column; find the field by trying each in a schedule
            // that is valid otherwise.
            // Five fields gained a leading second; names and originals are one off.
            let offset = usize::from(names.len() == 5);
            for (i, value) in crate_fields.iter().enumerate().skip(offset) {
                let mut probe = vec!["0", "0", "0", "*", "*", "*"];
                match probe.get_mut(i) {
                    Some(slot) => *slot = value,
                    None => probe.push(value),
                }
                if cron::Schedule::from_str(&probe.join(" ")).is_err() {
                    let name = names.get(i - offset).copied().unwrap_or("year");
                    let shown = fields.get(i - offset).copied().unwrap_or(value);
                    return Err(field_error(expr, name, shown, "not a valid value"));
                }
            }
            Err(format!("invalid cron expression {expr:?}: {e}; {EXAMPLE}"))
        }
    }
}

fn field_error(expr: &str, field: &str, value: &str, why: &str) -> String {
    format!("invalid cron expression {expr:?}: {field} field {value:?}: {why}; {EXAMPLE}")
}

/// A standard day-of-week field (0-7, Sunday 0 or 7, names, ranges, lists, steps) in the
/// crate's numbering (1-7 from Sunday), as an explicit list so a range like `5-7`
/// (Friday to Sunday) never wraps.
fn day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {s:?} is not a positive number"))?,
            ),
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => {
                    let d = day(r)?;
                    (d, if step > 1 { 6 } else { d })
                }
            },
        };
        if from > to {
            return Err(format!("range {range:?} runs backwards"));
        }
        for d in (from..=to).step_by(step) {
            days[d % 7] = true;
        }
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

/// 0-7 (Sunday 0 or 7) or a three-letter or full English name.
fn day(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("{n} is not a day of the week (0-7, Sunday 0 or 7)"))
        };
    }
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let lower = s.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| lower.starts_with(n) && lower.len() >= 3)
        .ok_or_else(|| format!("{s:?} is not a day of the week (0-7 or sun..sat)"))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Datelike, Utc, Weekday};

    use super::*;

    fn next(expr: &str, after: &str) -> DateTime<Utc> {
        let after: DateTime<Utc> = after.parse().expect("time");
        parse(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .after(&after)
            .next()
            .expect("next")
    }

    #[test]
    fn five_fields_mean_what_crontab_means() {
        // 2026-12-06 is a Sunday.
        let sunday = "2026-12-06T12:00:00Z";
        assert_eq!(
            next("0 8 1 * *", sunday).to_rfc3339(),
            "2027-01-01T08:00:00+00:00"
        );
        assert_eq!(next("0 8 * * 1", sunday).weekday(), Weekday::Mon);
        assert_eq!(next("0 8 * * 0", sunday).weekday(), Weekday::Sun);
        assert_eq!(next("0 8 * * 7", sunday).weekday(), Weekday::Sun);
        assert_eq!(next("30 6 * * mon-fri", sunday).weekday(), Weekday::Mon);
        // Friday to Sunday: from Saturday noon the next is Sunday.
        let saturday = "2026-12-05T12:00:00Z";
        assert_eq!(next("0 8 * * 5-7", saturday).weekday(), Weekday::Sun);
        assert_eq!(next("0 8 * * 5-7", sunday).weekday(), Weekday::Fri);
        // Every other day from Sunday: Sun, Tue, Thu, Sat.
        assert_eq!(next("0 8 * * */2", sunday).weekday(), Weekday::Tue);
        assert_eq!(day_of_week("*/2").expect("ok"), "1,3,5,7");
        assert_eq!(day_of_week("1-5").expect("ok"), "2,3,4,5,6");
    }

    #[test]
    fn six_fields_and_macros_are_as_before() {
        let sunday = "2026-12-06T12:00:00Z";
        assert_eq!(
            next("0 0 8 1 * *", sunday).to_rfc3339(),
            "2027-01-01T08:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", sunday).to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn errors_name_the_expression_the_field_and_an_example() {
        let e = parse("0 8 32 * *").expect_err("day 32");
        assert!(
            e.contains("\"0 8 32 * *\"") && e.contains("day-of-month field \"32\""),
            "{e}"
        );
        assert!(e.contains("e.g. \"0 8 1 * *\""), "{e}");
        let e = parse("0 25 * * *").expect_err("hour 25");
        assert!(e.contains("hour field \"25\""), "{e}");
        let e = parse("0 8 * * 9").expect_err("day 9");
        assert!(e.contains("day-of-week field \"9\""), "{e}");
        let e = parse("0 0 8 1 13 *").expect_err("month 13");
        assert!(e.contains("month field \"13\""), "{e}");
        let e = parse("every monday").expect_err("words");
        assert!(e.contains("2 fields"), "{e}");
        let e = parse("0 8 * *").expect_err("four");
        assert!(e.contains("4 fields"), "{e}");
    }
}
