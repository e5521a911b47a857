//! Segments: which subscribers of a campaign's lists it goes to, as a short list of terms
//! that must all hold (issue 21).
//!
//! The language is deliberately small, so a segment is cheap to check on each of a
//! hundred thousand subscribers and says the same thing in every face. One term is one of:
//!
//! | term | holds for a subscriber who |
//! |---|---|
//! | `KEY=VALUE` | has the attribute `KEY` equal to `VALUE` |
//! | `KEY!=VALUE` | has no attribute `KEY`, or one with another value |
//! | `KEY=*` / `KEY!=*` | has the attribute `KEY` (non-empty) / has not |
//! | `joined-after:YYYY-MM-DD` / `joined-before:YYYY-MM-DD` | was added on or after / before that day (UTC) |
//! | `confirmed-after:YYYY-MM-DD` / `confirmed-before:YYYY-MM-DD` | was first active on or after / before that day (never confirmed: neither) |
//! | `received:ID`, `opened:ID`, `clicked:ID` | is in campaign ID's sent, open or click set |
//! | `not-received:ID`, `not-opened:ID`, `not-clicked:ID` | is not |
//!
//! Values compare exactly (after trimming the term); keys are attribute names as imported.
//! A segment is kept as its terms, one per line, in the form [`Term`]'s `Display` writes,
//! which [`Segment::parse_lines`] reads back. Status is not a term: a campaign only ever
//! goes to active subscribers, so a term on another status would select nobody.

use std::collections::BTreeMap;
use std::fmt;

use crate::{CampaignId, Outcome, Subscriber};

/// The most terms a segment may have, and the longest term: a segment is a filter, not a
/// list of addresses.
pub const MAX_TERMS: usize = 32;
pub const MAX_TERM: usize = 200;

/// Every term must hold; no terms means everyone (the whole list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `KEY=VALUE` (`value: None` is `KEY=*`), or its negation `KEY!=...`.
    Attribute {
        key: String,
        value: Option<String>,
        negated: bool,
    },
    /// Added (`created`) on or after / before a day, kept as the day and its first second.
    Joined(DayBound),
    /// First active (`confirmed`) on or after / before a day.
    Confirmed(DayBound),
    /// In (or, negated, not in) campaign `campaign`'s set of `outcome` (sent, open, click).
    History {
        campaign: CampaignId,
        outcome: Outcome,
        negated: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayBound {
    /// `true`: on or after the day; `false`: before it.
    pub after: bool,
    /// "YYYY-MM-DD", as given.
    pub day: String,
    /// Unix seconds of the day's first second, UTC.
    pub at: i64,
}

impl DayBound {
    fn holds(&self, time: i64) -> bool {
        if self.after {
            time >= self.at
        } else {
            time < self.at
        }
    }
}

/// The history words of the language and the set each reads.
const HISTORY: [(&str, Outcome); 3] = [
    ("received", Outcome::Sent),
    ("opened", Outcome::Open),
    ("clicked", Outcome::Click),
];

impl Term {
    /// One term, or why it is not one (the message names the term).
    pub fn parse(text: &str) -> Result<Term, String> {
        let text = text.trim();
        let bad = |why: &str| Err(format!("segment term '{text}': {why}"));
        if text.is_empty() {
            return bad("it is empty");
        }
        if text.len() > MAX_TERM {
            return bad("longer than 200 bytes");
        }
        if text.contains(['\n', '\r']) {
            return bad("a term is one line");
        }
        // A word with a colon first: the words are known, so an attribute whose value has
        // a colon (`note=a:b`) is still an attribute.
        if let Some((word, arg)) = text.split_once(':') {
            let (negated, base) = match word.strip_prefix("not-") {
                Some(base) => (true, base),
                None => (false, word),
            };
            if let Some((_, outcome)) = HISTORY.iter().find(|(w, _)| *w == base) {
                let Ok(id) = arg.trim().parse::<i64>() else {
                    return bad("expected a campaign id after the colon (opened:3)");
                };
                if id <= 0 {
                    return bad("a campaign id is a positive number");
                }
                return Ok(Term::History {
                    campaign: CampaignId(id),
                    outcome: *outcome,
                    negated,
                });
            }
            let dated = match word {
                "joined-after" => Some((true, true)),
                "joined-before" => Some((true, false)),
                "confirmed-after" => Some((false, true)),
                "confirmed-before" => Some((false, false)),
                _ => None,
            };
            if let Some((joined, after)) = dated {
                let day = arg.trim();
                let Ok(date) = day.parse::<jiff::civil::Date>() else {
                    return bad("expected a day as YYYY-MM-DD after the colon");
                };
                let at = date
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .map_err(|e| format!("segment term '{text}': {e}"))?
                    .timestamp()
                    .as_second();
                let bound = DayBound {
                    after,
                    day: date.to_string(),
                    at,
                };
                return Ok(if joined {
                    Term::Joined(bound)
                } else {
                    Term::Confirmed(bound)
                });
            }
            if !text.contains('=') {
                return bad(
                    "unknown word before the colon (joined-after, joined-before, \
                     confirmed-after, confirmed-before, received, opened, clicked, or \
                     not- before the last three)",
                );
            }
        }
        let Some((key, value)) = text.split_once('=') else {
            return bad("expected KEY=VALUE, KEY!=VALUE, KEY=*, or a word such as opened:3");
        };
        let (key, negated) = match key.strip_suffix('!') {
            Some(key) => (key.trim(), true),
            None => (key.trim(), false),
        };
        if key.is_empty() {
            return bad("no attribute name before =");
        }
        let value = value.trim();
        Ok(Term::Attribute {
            key: key.to_string(),
            value: (value != "*").then(|| value.to_string()),
            negated,
        })
    }

    /// Whether the term holds for `s`; `in_set(campaign, outcome)` says whether `s` is in
    /// that history set.
    pub fn holds(&self, s: &Subscriber, in_set: &dyn Fn(CampaignId, Outcome) -> bool) -> bool {
        match self {
            Term::Attribute {
                key,
                value,
                negated,
            } => {
                let found = match (s.attributes.get(key), value) {
                    (Some(have), Some(want)) => have == want,
                    (Some(have), None) => !have.is_empty(),
                    (None, _) => false,
                };
                found != *negated
            }
            Term::Joined(bound) => bound.holds(s.created),
            Term::Confirmed(bound) => s.confirmed.is_some_and(|t| bound.holds(t)),
            Term::History {
                campaign,
                outcome,
                negated,
            } => in_set(*campaign, *outcome) != *negated,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Attribute {
                key,
                value,
                negated,
            } => {
                let op = if *negated { "!=" } else { "=" };
                write!(f, "{key}{op}{}", value.as_deref().unwrap_or("*"))
            }
            Term::Joined(b) | Term::Confirmed(b) => {
                let what = if matches!(self, Term::Joined(_)) {
                    "joined"
                } else {
                    "confirmed"
                };
                let when = if b.after { "after" } else { "before" };
                write!(f, "{what}-{when}:{}", b.day)
            }
            Term::History {
                campaign,
                outcome,
                negated,
            } => {
                let word = HISTORY
                    .iter()
                    .find(|(_, o)| o == outcome)
                    .map_or("received", |(w, _)| w);
                let not = if *negated { "not-" } else { "" };
                write!(f, "{not}{word}:{}", campaign.0)
            }
        }
    }
}

impl Segment {
    /// The terms given one by one (the CLI's repeated `--where`, the API's array).
    pub fn parse<S: AsRef<str>>(terms: &[S]) -> Result<Segment, String> {
        if terms.len() > MAX_TERMS {
            return Err(format!(
                "a segment has at most {MAX_TERMS} terms, not {}",
                terms.len()
            ));
        }
        let terms = terms
            .iter()
            .map(|t| Term::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Segment { terms })
    }

    /// The stored form: one term per line; empty lines are ignored.
    pub fn parse_lines(text: &str) -> Result<Segment, String> {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        Segment::parse(&lines)
    }

    /// The stored form, which [`Segment::parse_lines`] reads back.
    pub fn to_lines(&self) -> String {
        self.texts().join("\n")
    }

    /// Each term as text, in order.
    pub fn texts(&self) -> Vec<String> {
        self.terms.iter().map(Term::to_string).collect()
    }

    pub fn is_everyone(&self) -> bool {
        self.terms.is_empty()
    }

    /// The history sets the terms read, so a caller loads each once for a whole list.
    pub fn sets(&self) -> Vec<(CampaignId, Outcome)> {
        let mut sets: Vec<(CampaignId, Outcome)> = self
            .terms
            .iter()
            .filter_map(|t| match t {
                Term::History {
                    campaign, outcome, ..
                } => Some((*campaign, *outcome)),
                _ => None,
            })
            .collect();
        sets.sort();
        sets.dedup();
        sets
    }

    /// Whether every term holds for `s`, reading history from `sets` (see
    /// [`Segment::sets`]; a set not there counts as empty).
    pub fn matches(
        &self,
        s: &Subscriber,
        sets: &BTreeMap<(CampaignId, Outcome), roaring::RoaringBitmap>,
    ) -> bool {
        let id = u32::try_from(s.id.0).ok();
        let in_set = |campaign: CampaignId, outcome: Outcome| {
            id.zip(sets.get(&(campaign, outcome)))
                .is_some_and(|(id, set)| set.contains(id))
        };
        self.terms.iter().all(|t| t.holds(s, &in_set))
    }
}

impl fmt::Display for Segment {
    /// The terms joined by " and ", or "everyone" for no terms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("everyone");
        }
        f.write_str(&self.texts().join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ListId, SubscriberId, SubscriberStatus};

    /// Parses `input` and checks its canonical text, or the start of its error.
    fn check(input: &str, expect: Result<&str, &str>) {
        match (Term::parse(input), expect) {
            (Ok(term), Ok(text)) => {
                assert_eq!(term.to_string(), text, "{input}");
                assert_eq!(Term::parse(text).unwrap(), term, "round trip of {input}");
            }
            (Err(e), Err(why)) => assert!(e.contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn terms_parse_to_one_canonical_text() {
        check("city=Kyoto", Ok("city=Kyoto"));
        check("  city = Kyoto ", Ok("city=Kyoto"));
        check("city!=Kyoto", Ok("city!=Kyoto"));
        check("city=*", Ok("city=*"));
        check("city!=*", Ok("city!=*"));
        check("note=a:b", Ok("note=a:b"));
        check("plan=", Ok("plan="));
        check("joined-after:2026-01-01", Ok("joined-after:2026-01-01"));
        check("joined-before: 2026-02-03", Ok("joined-before:2026-02-03"));
        check(
            "confirmed-after:2026-01-01",
            Ok("confirmed-after:2026-01-01"),
        );
        check(
            "confirmed-before:2026-01-01",
            Ok("confirmed-before:2026-01-01"),
        );
        check("received:5", Ok("received:5"));
        check("opened:3", Ok("opened:3"));
        check("not-clicked:4", Ok("not-clicked:4"));
        check("not-received:12", Ok("not-received:12"));
    }

    #[test]
    fn broken_terms_say_what_is_wrong() {
        check("", Err("empty"));
        check("city", Err("expected KEY=VALUE"));
        check("=Kyoto", Err("no attribute name"));
        check("opened:x", Err("campaign id"));
        check("opened:0", Err("positive"));
        check("joined-after:2026-13-01", Err("YYYY-MM-DD"));
        check("joined-after:yesterday", Err("YYYY-MM-DD"));
        check("bought:3", Err("unknown word"));
        check(&"k=".repeat(101), Err("longer than 200"));
        let many = vec!["a=b"; MAX_TERMS + 1];
        assert!(Segment::parse(&many).unwrap_err().contains("at most 32"));
    }

    #[test]
    fn the_stored_lines_read_back_as_the_same_segment() {
        let segment =
            Segment::parse(&["city=Kyoto", "opened:3", "joined-after:2026-01-01"]).unwrap();
        assert_eq!(Segment::parse_lines(&segment.to_lines()).unwrap(), segment);
        assert_eq!(
            segment.to_string(),
            "city=Kyoto and opened:3 and joined-after:2026-01-01"
        );
        assert_eq!(Segment::parse_lines("").unwrap(), Segment::default());
        assert_eq!(Segment::default().to_string(), "everyone");
        assert_eq!(segment.sets(), vec![(CampaignId(3), Outcome::Open)]);
    }

    fn reader(
        id: i64,
        attributes: &[(&str, &str)],
        created: i64,
        confirmed: Option<i64>,
    ) -> Subscriber {
        Subscriber {
            id: SubscriberId(id),
            list: ListId(1),
            email: format!("r{id}@example.com"),
            name: String::new(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: SubscriberStatus::Active,
            created,
            confirmed,
            hard_bounces: 0,
            soft_bounces: 0,
        }
    }

    #[test]
    fn a_segment_holds_when_every_term_does() {
        // 2026-01-01T00:00:00Z.
        let new_year = 1_767_225_600;
        let kyoto_new = reader(1, &[("city", "Kyoto")], new_year, Some(new_year + 10));
        let kyoto_old = reader(2, &[("city", "Kyoto")], new_year - 1, None);
        let osaka = reader(3, &[("city", "Osaka"), ("plan", "")], new_year, None);
        let nobody = reader(4, &[], new_year + 5, None);
        let mut sets = BTreeMap::new();
        sets.insert(
            (CampaignId(3), Outcome::Open),
            roaring::RoaringBitmap::from_iter([1u32, 3]),
        );
        let who = |terms: &[&str]| -> Vec<i64> {
            let segment = Segment::parse(terms).unwrap();
            [&kyoto_new, &kyoto_old, &osaka, &nobody]
                .into_iter()
                .filter(|s| segment.matches(s, &sets))
                .map(|s| s.id.0)
                .collect()
        };
        assert_eq!(who(&[]), vec![1, 2, 3, 4]);
        assert_eq!(who(&["city=Kyoto"]), vec![1, 2]);
        assert_eq!(who(&["city=kyoto"]), Vec::<i64>::new());
        assert_eq!(who(&["city!=Kyoto"]), vec![3, 4]);
        assert_eq!(who(&["city=*"]), vec![1, 2, 3]);
        assert_eq!(who(&["city!=*"]), vec![4]);
        // An empty value is no value for `*`.
        assert_eq!(who(&["plan=*"]), Vec::<i64>::new());
        assert_eq!(who(&["joined-after:2026-01-01"]), vec![1, 3, 4]);
        assert_eq!(who(&["joined-before:2026-01-01"]), vec![2]);
        assert_eq!(who(&["confirmed-after:2026-01-01"]), vec![1]);
        assert_eq!(who(&["confirmed-before:2026-01-01"]), Vec::<i64>::new());
        assert_eq!(who(&["opened:3"]), vec![1, 3]);
        assert_eq!(who(&["not-opened:3"]), vec![2, 4]);
        // A set nobody loaded (or nobody is in) is empty.
        assert_eq!(who(&["clicked:3"]), Vec::<i64>::new());
        assert_eq!(who(&["not-clicked:3"]), vec![1, 2, 3, 4]);
        assert_eq!(
            who(&["city=Kyoto", "opened:3", "joined-after:2026-01-01"]),
            vec![1]
        );
    }
}
