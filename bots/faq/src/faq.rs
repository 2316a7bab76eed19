//! The FAQ and what the bot does with one visitor message — pure, so the
//! Rust and the Python bot can be checked to decide alike.
//!
//! The file is TOML: `[[faq]]` entries of `keywords = [...]` and
//! `answer = "..."`, and optionally `fallback` and `handoff` texts. A
//! message matches an entry when it contains one of its keywords as whole
//! words, case-insensitively; the first entry that matches wins.

use serde::Deserialize;

/// Words that make the bot hand the conversation to a person.
pub const HANDOFF_WORDS: [&str; 3] = ["human", "agent", "person"];
/// Messages the bot could not answer before it hands off.
pub const MISSES_BEFORE_HANDOFF: usize = 2;

const DEFAULT_FALLBACK: &str =
    "Sorry, I did not understand. Write \"person\" to talk to someone from our team.";
const DEFAULT_HANDOFF: &str = "I'm getting you a person from our team.";

/// The FAQ file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FaqError {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse the FAQ file")]
    Parse(#[source] toml::de::Error),
    #[error("the FAQ has an entry without keywords or answer (entry {0})")]
    EmptyEntry(usize),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    handoff: Option<String>,
    #[serde(default)]
    faq: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    keywords: Vec<String>,
    answer: String,
}

/// The questions the bot answers.
#[derive(Debug, Clone)]
pub struct Faq {
    /// Each entry's keywords as normalized word sequences, and its answer.
    entries: Vec<(Vec<String>, String)>,
    pub fallback: String,
    pub handoff: String,
}

/// What to do with a visitor's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Post this answer.
    Answer(String),
    /// The visitor asked for a person.
    HandOff,
    /// Nothing matched.
    Miss,
}

impl Faq {
    /// Reads a FAQ file.
    ///
    /// # Errors
    /// An unreadable or invalid file.
    pub fn load(path: &str) -> Result<Self, FaqError> {
        let text = std::fs::read_to_string(path).map_err(|source| FaqError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the text of a FAQ file.
    ///
    /// # Errors
    /// Invalid TOML, unknown keys, or an entry without keywords or answer.
    pub fn parse(text: &str) -> Result<Self, FaqError> {
        let file: File = toml::from_str(text).map_err(FaqError::Parse)?;
        let mut entries = Vec::with_capacity(file.faq.len());
        for (i, entry) in file.faq.into_iter().enumerate() {
            let keywords: Vec<String> = entry
                .keywords
                .iter()
                .map(|k| words(k).join(" "))
                .filter(|k| !k.is_empty())
                .collect();
            if keywords.is_empty() || entry.answer.trim().is_empty() {
                return Err(FaqError::EmptyEntry(i + 1));
            }
            entries.push((keywords, entry.answer));
        }
        Ok(Self {
            entries,
            fallback: file.fallback.unwrap_or_else(|| DEFAULT_FALLBACK.to_owned()),
            handoff: file.handoff.unwrap_or_else(|| DEFAULT_HANDOFF.to_owned()),
        })
    }

    /// What to do with `text`: hand off when it names a person, otherwise
    /// the first entry whose keyword it contains, otherwise a miss.
    pub fn decide(&self, text: &str) -> Decision {
        let words = words(text);
        if words.iter().any(|w| HANDOFF_WORDS.contains(&w.as_str())) {
            return Decision::HandOff;
        }
        let padded = format!(" {} ", words.join(" "));
        self.entries
            .iter()
            .find(|(keywords, _)| keywords.iter().any(|k| padded.contains(&format!(" {k} "))))
            .map_or(Decision::Miss, |(_, answer)| {
                Decision::Answer(answer.clone())
            })
    }
}

/// The lowercase words of a text: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/bots/faq.toml");

    #[test]
    fn the_example_file_answers_hands_off_and_misses() {
        let faq = Faq::parse(EXAMPLE).unwrap();
        let Decision::Answer(answer) = faq.decide("How long does SHIPPING take?") else {
            panic!("no answer");
        };
        assert!(answer.contains("2 working days"), "{answer}");
        // Multi-word keywords match as whole words.
        assert!(
            matches!(faq.decide("what are your opening hours"), Decision::Answer(a) if a.contains("Monday"))
        );
        assert_eq!(faq.decide("Can I talk to a human?"), Decision::HandOff);
        assert_eq!(faq.decide("agent please"), Decision::HandOff);
        assert_eq!(faq.decide("A PERSON, now"), Decision::HandOff);
        // Whole words only: "shipper", "humane" and "agents" match nothing.
        assert_eq!(faq.decide("the shipper was humane"), Decision::Miss);
        assert_eq!(faq.decide("hello there"), Decision::Miss);
        assert!(faq.fallback.contains("person"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        assert!(matches!(
            Faq::parse("[[faq]]\nanswer = \"x\""),
            Err(FaqError::Parse(_))
        ));
        assert!(matches!(
            Faq::parse("[[faq]]\nkeywords = [\" \"]\nanswer = \"x\""),
            Err(FaqError::EmptyEntry(1))
        ));
        assert!(matches!(
            Faq::parse("surprise = 1"),
            Err(FaqError::Parse(_))
        ));
        let defaults = Faq::parse("").unwrap();
        assert_eq!(defaults.decide("anything"), Decision::Miss);
    }
}
