//! Calendar months in the summary's time zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A calendar month, written `2026-10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1..=12
    pub month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year))
            .then_some(Month { year, month })
    }

    /// The month `t` falls in, in `tz`.
    pub fn containing(t: DateTime<Utc>, tz: Tz) -> Month {
        let local = t.with_timezone(&tz);
        Month {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The last complete month at `now` in `tz`.
    pub fn last_complete(now: DateTime<Utc>, tz: Tz) -> Month {
        Month::containing(now, tz).prev()
    }

    pub fn prev(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Midnight of the first day in `tz`. Where midnight does not exist (a DST change at
    /// midnight), the first instant of the day.
    pub fn start(self, tz: Tz) -> DateTime<Utc> {
        let day = NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN);
        let mut t = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        for _ in 0..4 {
            if let Some(dt) = tz.from_local_datetime(&t).earliest() {
                return dt.with_timezone(&Utc);
            }
            t += Duration::minutes(30);
        }
        Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
    }

    /// The first instant after the month: the month is `[start, end)`.
    pub fn end(self, tz: Tz) -> DateTime<Utc> {
        self.next().start(tz)
    }

    /// `October 2026`.
    pub fn long_name(self) -> String {
        const NAMES: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        format!("{} {}", NAMES[(self.month as usize - 1) % 12], self.year)
    }

    /// `Oct`.
    pub fn short_name(self) -> &'static str {
        const NAMES: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        NAMES[(self.month as usize - 1) % 12]
    }

    /// Days in the month.
    pub fn days(self) -> u32 {
        let next = self.next();
        match (
            NaiveDate::from_ymd_opt(self.year, self.month, 1),
            NaiveDate::from_ymd_opt(next.year, next.month, 1),
        ) {
            (Some(a), Some(b)) => (b - a).num_days() as u32,
            _ => 30,
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Month, String> {
        let bad = || format!("month {s:?}: expected YYYY-MM, e.g. 2026-10");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        // Digits only: `parse` would take a sign (`2026-+1`).
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if y.len() != 4 || m.len() != 2 || !digits(y) || !digits(m) {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::summary::utc;

    #[test]
    fn parse_and_navigate() {
        let m: Month = "2026-10".parse().expect("month");
        assert_eq!(m.to_string(), "2026-10");
        assert_eq!(m.prev().to_string(), "2026-09");
        assert_eq!(
            Month::new(2026, 12).expect("m").next().to_string(),
            "2027-01"
        );
        assert_eq!(
            Month::new(2026, 1).expect("m").prev().to_string(),
            "2025-12"
        );
        for bad in [
            "2026-13", "2026-1", "26-10", "2026/10", "x", "2026-+1", "+202-10", "2026-00",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        assert_eq!(m.long_name(), "October 2026");
        assert_eq!(Month::new(2028, 2).expect("m").days(), 29);
    }

    #[test]
    fn boundaries_follow_the_time_zone() {
        let m: Month = "2026-10".parse().expect("month");
        assert_eq!(m.start(chrono_tz::UTC), utc("2026-10-01T00:00:00Z"));
        // Berlin is UTC+2 on 1 October (summer time) and UTC+1 on 1 November.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(m.start(berlin), utc("2026-09-30T22:00:00Z"));
        assert_eq!(m.end(berlin), utc("2026-10-31T23:00:00Z"));
        assert_eq!(
            Month::containing(utc("2026-10-31T23:30:00Z"), berlin).to_string(),
            "2026-11"
        );
        assert_eq!(
            Month::last_complete(utc("2026-11-27T05:00:00Z"), chrono_tz::UTC).to_string(),
            "2026-10"
        );
        // Where midnight does not exist (Santiago went from 00:00 to 01:00 on
        // 2022-09-11; Havana has done so on the 1st of some months), the day starts at the
        // first instant that exists: never a panic, never a month that begins the day after.
        let day = NaiveDate::from_ymd_opt(2022, 9, 11).expect("date");
        let t = day.and_hms_opt(0, 0, 0).expect("time");
        assert!(
            chrono_tz::America::Santiago
                .from_local_datetime(&t)
                .earliest()
                .is_none()
        );
        // Paraguay began summer time at 00:00 on Sunday 2017-10-01: October began at 01:00.
        let asuncion = chrono_tz::America::Asuncion;
        let start = Month::new(2017, 10).expect("m").start(asuncion);
        assert_eq!(start, utc("2017-10-01T04:00:00Z"));
        assert_eq!(Month::new(2017, 9).expect("m").end(asuncion), start);
    }
}
