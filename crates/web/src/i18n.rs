//! Japanese and English: the message catalogues and the choice between them.
//!
//! Every text a page shows comes from a catalogue in `text/<area>.toml`, one file per
//! screen so screens grow without touching each other's files. An entry is a table with
//! both languages:
//!
//! ```toml
//! [title]
//! en = "Backups"
//! ja = "バックアップ"
//! ```
//!
//! and is looked up as `"<area>.<key>"` ("backup.title"). `{name}` in a text is filled by
//! [`Lang::tf`]. The tests check that every entry has both languages and that every key the
//! source looks up exists, so a missing text fails the suite instead of showing a key.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The catalogues, compiled in. A new screen adds its file here.
const FILES: &[(&str, &str)] = &[
    ("admin", include_str!("../text/admin.toml")),
    ("archive", include_str!("../text/archive.toml")),
    ("backup", include_str!("../text/backup.toml")),
    ("common", include_str!("../text/common.toml")),
    ("ops", include_str!("../text/ops.toml")),
    ("newsletters", include_str!("../text/newsletters.toml")),
    ("mail", include_str!("../text/mail.toml")),
    ("user", include_str!("../text/user.toml")),
    ("directory", include_str!("../text/directory.toml")),
    ("queue", include_str!("../text/queue.toml")),
    ("stats", include_str!("../text/stats.toml")),
    ("planner", include_str!("../text/planner.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Ja, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The name of the language in itself, for the switch.
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ja => "日本語",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The language a browser asks for (RFC 9110 Accept-Language: ranges with q-values),
    /// the first of ours with the highest weight; English when it names neither.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',').take(32) {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = range.split('-').next().unwrap_or("");
            let Some(lang) = Lang::from_code(primary) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The text of `key` ("area.key") in this language; the key itself when the catalogue
    /// lacks it (the tests make sure none is lacking).
    pub fn t(self, key: &'static str) -> &'static str {
        match catalogue().get(key) {
            Some(entry) => match self {
                Lang::En => &entry.en,
                Lang::Ja => &entry.ja,
            },
            None => key,
        }
    }

    /// [`Lang::t`] with each `{name}` replaced by its value.
    pub fn tf(self, key: &'static str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut text = self.t(key).to_string();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), &value.to_string());
        }
        text
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    en: String,
    ja: String,
}

fn catalogue() -> &'static HashMap<String, Entry> {
    static CATALOGUE: OnceLock<HashMap<String, Entry>> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut all = HashMap::new();
        for (area, text) in FILES {
            // A broken catalogue is a build defect the tests catch; at run time the
            // console goes on with the keys of that file shown as they are.
            let entries: HashMap<String, Entry> = toml::from_str(text).unwrap_or_default();
            for (key, entry) in entries {
                all.insert(format!("{area}.{key}"), entry);
            }
        }
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_parses_and_has_both_languages() {
        for (area, text) in FILES {
            let entries: HashMap<String, Entry> =
                toml::from_str(text).unwrap_or_else(|e| panic!("text/{area}.toml: {e}"));
            for (key, entry) in entries {
                assert!(
                    !entry.en.trim().is_empty() && !entry.ja.trim().is_empty(),
                    "text/{area}.toml [{key}] needs both en and ja"
                );
            }
        }
    }

    /// Every `t("area.key")`, `tf("area.key"` and `t!("area.key")` in the source names an
    /// entry of a catalogue.
    #[test]
    fn every_key_the_source_looks_up_exists() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut missing = Vec::new();
        let mut files = vec![src];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for opener in [".t(\"", ".tf(\""] {
                for (at, _) in text.match_indices(opener) {
                    let rest = &text[at + opener.len()..];
                    let key = &rest[..rest.find('"').unwrap()];
                    if key.contains('.') && catalogue().get(key).is_none() {
                        missing.push(format!("{}: {key}", path.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys missing from text/*.toml:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn every_menu_entry_has_its_text() {
        for (path, key) in crate::admin::MENU.iter().chain(crate::user::MENU) {
            assert!(
                catalogue().contains_key(*key),
                "{path}: {key} is not in a catalogue"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_heaviest_of_ours() {
        assert_eq!(
            Lang::from_accept_language("ja,en-US;q=0.9,en;q=0.8"),
            Lang::Ja
        );
        assert_eq!(Lang::from_accept_language("en-GB,ja;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr-FR, ja;q=0.3"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("de"), Lang::En);
        assert_eq!(Lang::from_accept_language("ja;q=0, en;q=0.1"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }

    #[test]
    fn tf_fills_the_named_values() {
        assert_eq!(
            Lang::En.tf("common.signed_in_as", &[("address", &"a@example.com")]),
            "Signed in as a@example.com"
        );
    }
}
