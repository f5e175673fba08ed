//! Address-aware text analysis, shared by indexing, querying and ranking.
//!
//! The same chain runs on documents and on queries, so that whatever a user
//! types meets what was indexed: fold case and accents, split on anything that
//! is not a letter or a digit, rewrite abbreviations to one canonical word.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Longest edge n-gram indexed for autocompletion; longer prefixes are
/// matched by their first `MAX_PREFIX` characters.
pub const MAX_PREFIX: usize = 20;
/// Shortest edge n-gram: a one-letter prefix would match most of the index.
pub const MIN_PREFIX: usize = 2;

/// Lowercases and strips diacritics; ligatures become two letters.
/// Anything that is not a letter or a digit becomes a space.
///
/// Text is folded as its canonical decomposition would be: a combining
/// accent (as in "E\u{301}", which macOS and some copy-paste sources send
/// for "É") is dropped with the letter kept, not taken for a separator, and
/// a precomposed letter of any script loses its accents the same way.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii() {
            out.push(' ');
        } else if let Some(f) = fold_char(c) {
            out.push_str(f);
        } else if is_combining_mark(c) {
        } else if c.is_alphanumeric() {
            decompose_canonical(c, |d| {
                if !is_combining_mark(d) {
                    out.extend(d.to_lowercase());
                }
            });
        } else {
            out.push(' ');
        }
    }
    out
}

fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'ā' | 'Ā' | 'ă' | 'Ă' | 'ą' | 'Ą' => {
            "a"
        }
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' | 'ć' | 'Ć' | 'č' | 'Č' => "c",
        'ď' | 'Ď' | 'đ' | 'Đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' | 'ē' | 'Ē' | 'ė' | 'ę' | 'Ę' | 'ě' | 'Ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'ī' | 'Ī' | 'ı' => "i",
        'ñ' | 'Ñ' | 'ń' | 'Ń' | 'ň' | 'Ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'ō' | 'Ō' | 'ő' | 'Ő' => {
            "o"
        }
        'œ' | 'Œ' => "oe",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'ū' | 'Ū' | 'ů' | 'Ů' | 'ű' | 'Ű' => "u",
        'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
        'ž' | 'Ž' | 'ź' | 'Ź' | 'ż' | 'Ż' => "z",
        'š' | 'Š' | 'ś' | 'Ś' | 'ş' | 'Ş' => "s",
        'ř' | 'Ř' => "r",
        'ł' | 'Ł' => "l",
        'ß' | 'ẞ' => "ss",
        'ť' | 'Ť' | 'ţ' | 'Ţ' => "t",
        // Typographic apostrophes and dashes separate words like their ASCII twins.
        _ => return None,
    })
}

/// Where an abbreviation may be read as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Everywhere: "bd" is nothing but "boulevard".
    Always,
    /// A street type that is also a word or a name ("ham" is the town of
    /// Ham, "aven" is in Pont-Aven): in a document, only as the first word
    /// of a street's name; in a query, both readings are kept.
    StreetType,
    /// An abbreviation as often as not ("mal" of "Chemin du Mal Pas", "rd"
    /// of "RD 12"): never in a document; in a query, both readings.
    Ambiguous,
}

struct Synonyms {
    /// variant -> canonical words, and where it may be read so
    map: HashMap<String, (Vec<String>, Class)>,
}

fn synonyms() -> &'static Synonyms {
    static TABLE: OnceLock<Synonyms> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        let mut class = Class::Always;
        for line in include_str!("synonyms.txt").lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line {
                "[always]" => class = Class::Always,
                "[street types that are also words]" => class = Class::StreetType,
                "[ambiguous]" => class = Class::Ambiguous,
                _ => {}
            }
            let Some((canonical, variants)) = line.split_once(':') else {
                continue;
            };
            let canonical: Vec<String> = canonical.split_whitespace().map(str::to_owned).collect();
            debug_assert!(class == Class::Always || canonical.len() == 1, "{line}: one word only");
            for v in variants.split(',') {
                let v = v.trim();
                if !v.is_empty() {
                    map.insert(v.to_owned(), (canonical.clone(), class));
                }
            }
        }
        Synonyms { map }
    })
}

/// Folds, splits and canonicalises `s` into index/query tokens: the
/// abbreviations that are never anything else are written out.
pub fn tokens(s: &str) -> Vec<String> {
    let folded = fold(s);
    let mut out = Vec::new();
    for t in folded.split_whitespace() {
        push_canonical(t, &mut out, false);
    }
    out
}

/// [`tokens`] of the name of a street or a place: its first word is also
/// read as the street type it may abbreviate ("Ham des Vignes" is a hameau).
pub fn name_tokens(s: &str) -> Vec<String> {
    let folded = fold(s);
    let mut out = Vec::new();
    for (i, t) in folded.split_whitespace().enumerate() {
        push_canonical(t, &mut out, i == 0);
    }
    out
}

fn push_canonical(t: &str, out: &mut Vec<String>, street_type: bool) {
    match synonyms().map.get(t) {
        Some((words, Class::Always)) => out.extend(words.iter().cloned()),
        Some((words, Class::StreetType)) if street_type => out.extend(words.iter().cloned()),
        _ => out.push(t.to_owned()),
    }
}

/// The written-out word of a query word that may be an abbreviation or a
/// word of its own ("r": "rue", or an initial).
fn other_reading(t: &str) -> Option<&'static str> {
    match synonyms().map.get(t) {
        Some((words, Class::StreetType | Class::Ambiguous)) => words.first().map(String::as_str),
        _ => None,
    }
}

/// Suffixes of a housenumber ("12 bis") and their one-letter form.
fn ordinal_letter(t: &str) -> Option<&'static str> {
    Some(match t {
        "bis" | "b" => "b",
        "ter" | "t" => "t",
        "quater" | "q" => "q",
        "quinquies" | "c" => "c",
        "sexies" | "s" => "s",
        _ => return None,
    })
}

fn is_number_token(t: &str) -> bool {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    (1..=4).contains(&digits)
        && (digits == t.len()
            || (t.len() > digits && ordinal_letter(&t[digits..]).is_some())
            || (t.len() == digits + 1 && t.as_bytes()[digits].is_ascii_lowercase()))
}

/// The canonical key of a housenumber: digits without leading zeros, then the
/// one-letter suffix. "12 bis", "12bis", "12B" and "012 b" all give "12b".
pub fn housenumber_key(s: &str) -> String {
    if let Some(k) = digits_key(s) {
        return k.to_owned();
    }
    let folded = fold(s);
    let mut parts = folded.split_whitespace();
    let mut key = String::new();
    if let Some(first) = parts.next() {
        let digits: String = first.chars().take_while(char::is_ascii_digit).collect();
        let trimmed = digits.trim_start_matches('0');
        key.push_str(if trimmed.is_empty() && !digits.is_empty() { "0" } else { trimmed });
        let rest = &first[digits.len()..];
        if !rest.is_empty() {
            key.push_str(ordinal_letter(rest).unwrap_or(rest));
        }
    }
    for p in parts {
        key.push_str(ordinal_letter(p).unwrap_or(p));
    }
    key
}

/// [`housenumber_key`] of a housenumber made of digits only ("007" is
/// "7"), without building a string: most are, and a generation hashes the
/// key of each of its million children when it opens.
pub fn digits_key(s: &str) -> Option<&str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = s.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed })
}

/// Street types that may follow a housenumber ("12 rue ...", "12 r ...").
fn is_street_type(t: &str) -> bool {
    is_street_type_word(t)
        || synonyms()
            .map
            .get(t)
            .is_some_and(|(w, class)| *class == Class::StreetType && w.first().is_some_and(|w| is_street_type_word(w)))
}

fn is_street_type_word(t: &str) -> bool {
    matches!(
        t,
        "rue"
            | "avenue"
            | "boulevard"
            | "place"
            | "chemin"
            | "route"
            | "impasse"
            | "allee"
            | "faubourg"
            | "square"
            | "quai"
            | "cours"
            | "passage"
            | "residence"
            | "lotissement"
            | "hameau"
            | "promenade"
            | "esplanade"
            | "sentier"
            | "voie"
            | "ruelle"
            | "lieu"
            | "rond"
            | "carrefour"
            | "traverse"
            | "montee"
            | "clos"
            | "cite"
            | "villa"
            | "sente"
            | "venelle"
            | "parvis"
            | "mail"
            | "rampe"
            | "domaine"
            | "quartier"
            | "chaussee"
            | "galerie"
            | "jardin"
            | "parc"
            | "terrasse"
            | "port"
            | "pont"
            | "rocade"
            | "cheminement"
    )
}

/// Words that name a building or a flat, not a place to search for.
fn is_building_word(t: &str) -> bool {
    matches!(
        t,
        "residence"
            | "bat"
            | "batiment"
            | "immeuble"
            | "imm"
            | "appt"
            | "appartement"
            | "apt"
            | "etage"
            | "escalier"
            | "esc"
            | "porte"
            | "entree"
            | "logement"
            | "log"
    )
}

/// A query split into its housenumber (if any) and its text tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    /// Canonical housenumber key ("12b"), as given by [`housenumber_key`].
    pub housenumber: Option<String>,
    /// Text tokens, canonical, in query order.
    pub tokens: Vec<String>,
    /// All tokens including the housenumber, for comparison with labels.
    pub compare: String,
    /// Words that may be abbreviations or words of their own, with their
    /// other reading: a query means either.
    pub alternatives: Vec<Alternative>,
    /// `compare` with every word of `alternatives` written out.
    pub compare_canonical: Option<String>,
}

/// A query word with two readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub literal: String,
    pub canonical: String,
}

/// Splits a query into housenumber and text tokens. The housenumber is the
/// first number of 1-4 digits (optionally with a bis/ter suffix) that opens
/// the query or stands before a street type; 5-digit numbers are postcodes.
pub fn parse_query(q: &str) -> ParsedQuery {
    let raw = tokens(q);
    // Glue "12 bis" into "12b" when the number is followed by its suffix.
    let mut glued: Vec<String> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let t = &raw[i];
        let all_digits = !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit());
        if all_digits && i + 1 < raw.len() {
            let next = &raw[i + 1];
            // "12 b rue" or "12 bis" at the end: a suffix, not a word.
            let next_is_type_or_end = i + 2 >= raw.len() || is_street_type(&raw[i + 2]);
            let letter = match ordinal_letter(next) {
                Some(l) if next.len() > 1 || next_is_type_or_end => Some(l.to_owned()),
                // "14 a allée ...": any single letter before a street type.
                None if next.len() == 1
                    && next.as_bytes()[0].is_ascii_lowercase()
                    && i + 2 < raw.len()
                    && is_street_type(&raw[i + 2]) =>
                {
                    Some(next.clone())
                }
                _ => None,
            };
            if let Some(letter) = letter {
                glued.push(format!("{t}{letter}"));
                i += 2;
                continue;
            }
        }
        glued.push(t.clone());
        i += 1;
    }
    let mut housenumber = None;
    let mut text = Vec::with_capacity(glued.len());
    let mut moved = Vec::new();
    let mut i = 0;
    while i < glued.len() {
        let t = &glued[i];
        // Postal noise: "CEDEX", "CEDEX 3".
        if t == "cedex" {
            i += 1;
            while glued.get(i).is_some_and(|n| n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit())) {
                i += 1;
            }
            continue;
        }
        let before_type = glued.get(i + 1).is_some_and(|n| is_street_type(n));
        // A number first, then "<number> <street type>": a row id or a flat
        // number put before the address ("3 13 rue du 8 mai 1945"), noise.
        let number_follows =
            glued.get(i + 1).is_some_and(|n| is_number_token(n)) && glued.get(i + 2).is_some_and(|n| is_street_type(n));
        if housenumber.is_none() && i == 0 && is_number_token(t) && number_follows {
            i += 1;
            continue;
        }
        // "152e" before a word that is no street type is an ordinal ("152e
        // régiment"), not number 152 E.
        let ordinal = t.ends_with('e') && t.len() > 1 && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if housenumber.is_none() && is_number_token(t) && (before_type || (i == 0 && !ordinal)) {
            housenumber = Some(housenumber_key(t));
            // Words before "<number> <street type>" are either a building
            // ("Résidence Les Tilleuls Bât B 1, Impasse du Ruisseau"), which
            // is noise, or a city typed first ("Cannes 7 rue Haute"), which
            // goes after the street as in a label.
            if i > 0 {
                let before: Vec<String> = std::mem::take(&mut text);
                if !before.iter().any(|w| is_building_word(w)) {
                    moved = before;
                }
            }
            i += 1;
            continue;
        }
        text.push(t.clone());
        i += 1;
    }
    text.extend(moved);
    let joined = |words: &mut dyn Iterator<Item = &str>| {
        let mut compare = String::new();
        if let Some(h) = &housenumber {
            compare.push_str(h);
        }
        for t in words {
            if !compare.is_empty() {
                compare.push(' ');
            }
            compare.push_str(t);
        }
        compare
    };
    let compare = joined(&mut text.iter().map(String::as_str));
    let mut alternatives = Vec::new();
    for t in &text {
        if let Some(c) = other_reading(t) {
            if !alternatives.iter().any(|a: &Alternative| a.literal == *t) {
                alternatives.push(Alternative { literal: t.clone(), canonical: c.to_owned() });
            }
        }
    }
    let compare_canonical =
        (!alternatives.is_empty()).then(|| joined(&mut text.iter().map(|t| other_reading(t).unwrap_or(t.as_str()))));
    ParsedQuery { housenumber, tokens: text, compare, alternatives, compare_canonical }
}

/// The comparable form of a label part (a city, a postcode): its tokens
/// joined by one space. Housenumbers are added by the caller as keys.
pub fn compare_form(label: &str) -> String {
    compare_form_of(label, false)
}

/// [`compare_form`] of the name of a street or a place (see [`name_tokens`]).
pub fn name_compare_form(label: &str) -> String {
    compare_form_of(label, true)
}

/// What [`tokens`] or [`name_tokens`] give, joined, without a string per
/// token: this runs on every candidate's name.
fn compare_form_of(label: &str, name: bool) -> String {
    let folded = fold(label);
    let mut out = String::with_capacity(folded.len());
    let mut push = |w: &str| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    };
    for (i, t) in folded.split_whitespace().enumerate() {
        match synonyms().map.get(t) {
            Some((words, class)) if *class == Class::Always || (*class == Class::StreetType && name && i == 0) => {
                for w in words {
                    push(w);
                }
            }
            _ => push(t),
        }
    }
    out
}

/// Edge n-grams of each token, for autocompletion of the last query word.
pub fn edge_ngrams(tokens: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        // Byte offsets of the ends of the first 1, 2, ... characters.
        let ends = t.char_indices().skip(1).map(|(i, _)| i).chain(std::iter::once(t.len()));
        for end in ends.skip(MIN_PREFIX - 1).take(MAX_PREFIX + 1 - MIN_PREFIX) {
            out.push(t[..end].to_owned());
        }
    }
    out
}

/// Truncates a prefix to the longest n-gram that was indexed.
pub fn indexed_prefix(t: &str) -> &str {
    match t.char_indices().nth(MAX_PREFIX) {
        Some((i, _)) => &t[..i],
        None => t,
    }
}

/// The sorted character bigrams of a string, as a multiset.
pub fn bigrams_into(s: &str, out: &mut Vec<u64>) {
    out.clear();
    out.extend(bigram_keys(s));
    out.sort_unstable();
}

/// The character bigrams of `s` in order, each packed in a u64 (two chars
/// of 21 bits: always below 2^53).
fn bigram_keys(s: &str) -> impl Iterator<Item = u64> + '_ {
    s.chars()
        .scan(None, |prev: &mut Option<char>, c| {
            let key = prev.map(|p| (u64::from(u32::from(p)) << 32) | u64::from(u32::from(c)));
            *prev = Some(c);
            Some(key)
        })
        .flatten()
}

/// Similarity of two bigram multisets from [`bigrams_into`]: shared bigrams
/// over all bigrams (a Jaccard index on multisets), in [0, 1].
pub fn bigram_overlap(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut same) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                same += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let all = a.len() + b.len() - same;
    if all == 0 {
        0.0
    } else {
        same as f64 / all as f64
    }
}

/// A string's character bigrams in a small hash table, to compare many
/// labels with one query without sorting each label's bigrams: the same
/// measure as [`bigram_overlap`], in one pass over the label.
pub struct BigramCounts {
    /// Open addressing, linear probing; `EMPTY` marks a free slot (bigram
    /// keys are below 2^53: two chars of 21 bits).
    keys: Vec<u64>,
    counts: Vec<u32>,
    total: usize,
}

const EMPTY: u64 = u64::MAX;

impl BigramCounts {
    pub fn new(s: &str) -> BigramCounts {
        let n = s.chars().count().saturating_sub(1);
        let size = (2 * n).next_power_of_two().max(16);
        let mut t = BigramCounts { keys: vec![EMPTY; size], counts: vec![0; size], total: 0 };
        for key in bigram_keys(s) {
            let i = t.slot(key);
            t.keys[i] = key;
            t.counts[i] += 1;
            t.total += 1;
        }
        t
    }

    /// The slot holding `key`, or the free slot where it would go.
    fn slot(&self, key: u64) -> usize {
        let mask = self.keys.len() - 1;
        let mut i = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & mask;
        while self.keys[i] != key && self.keys[i] != EMPTY {
            i = (i + 1) & mask;
        }
        i
    }

    /// Shared bigrams of `label` and this string over all their bigrams,
    /// counted as multisets, as [`bigram_overlap`] does; `scratch` is reused
    /// across calls.
    pub fn overlap(&self, label: &str, scratch: &mut Vec<u32>) -> f64 {
        scratch.clear();
        scratch.extend_from_slice(&self.counts);
        let (mut same, mut n) = (0usize, 0usize);
        for key in bigram_keys(label) {
            n += 1;
            let i = self.slot(key);
            if scratch[i] > 0 {
                scratch[i] -= 1;
                same += 1;
            }
        }
        let all = n + self.total - same;
        if all == 0 {
            0.0
        } else {
            same as f64 / all as f64
        }
    }
}

/// Similarity of two strings by their character bigrams, in [0, 1]. This is
/// the measure Addok uses, so scores keep their meaning for its users.
pub fn bigram_similarity(a: &str, b: &str) -> f64 {
    if a.chars().nth(1).is_none() || b.chars().nth(1).is_none() {
        return if a == b && !a.is_empty() { 1.0 } else { 0.0 };
    }
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    bigrams_into(a, &mut ga);
    bigrams_into(b, &mut gb);
    bigram_overlap(&ga, &gb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigram_counts_measure_what_sorted_bigrams_measure() {
        let mut strings: Vec<String> = [
            "12 rue de la paix 75002 paris",
            "rue de la paix",
            "aaaa aaaa",
            "aa",
            "a",
            "",
            "allee des eglantines eglantines",
            "chemin du moulin a vent 49130 les ponts de ce",
            "ÿœ€ ßß ÿœ",
            "rue rue rue rue rue de de de la la",
            "sss",
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        // Folding makes 400 "s" of 200 "ß": more than 255 of one bigram.
        strings.push("s".repeat(400));
        for q in &strings {
            let q = q.as_str();
            let counts = BigramCounts::new(q);
            let mut qb = Vec::new();
            bigrams_into(q, &mut qb);
            for l in &strings {
                let l = l.as_str();
                let mut lb = Vec::new();
                bigrams_into(l, &mut lb);
                let want = bigram_overlap(&lb, &qb);
                let got = counts.overlap(l, &mut Vec::new());
                assert_eq!(got, want, "query {q:?}, label {l:?}");
            }
        }
    }

    #[test]
    fn folds_case_accents_and_ligatures() {
        assert_eq!(tokens("Allée de l'Église-Œuvre"), vec!["allee", "de", "l", "eglise", "oeuvre"]);
        assert_eq!(tokens("  SAINT-JEAN,,  "), tokens("saint jean"));
    }

    #[test]
    fn abbreviations_meet_their_canonical_word() {
        assert_eq!(tokens("12 bd st michel"), vec!["12", "boulevard", "saint", "michel"]);
        assert_eq!(tokens("av. du gal leclerc"), tokens("Avenue du Général Leclerc"));
    }

    #[test]
    fn housenumbers_are_extracted_and_glued() {
        let p = parse_query("12 bis rue de la Paix 75002 Paris");
        assert_eq!(p.housenumber.as_deref(), Some("12b"));
        assert_eq!(p.tokens, vec!["rue", "de", "la", "paix", "75002", "paris"]);
        assert_eq!(p.compare, "12b rue de la paix 75002 paris");
        assert_eq!(parse_query("12bis rue x").housenumber.as_deref(), Some("12b"));
        assert_eq!(parse_query("12 B rue x").housenumber.as_deref(), Some("12b"));
        assert_eq!(parse_query("14 a allee x").housenumber.as_deref(), Some("14a"));
        assert_eq!(parse_query("paris 8 rue x").housenumber.as_deref(), Some("8"));
        // A postcode is not a housenumber, nor a number that is part of a name.
        assert_eq!(parse_query("75002 paris").housenumber, None);
        assert_eq!(parse_query("rue du 8 mai 1945").housenumber, None);
        // What stands before "<number> <street type>" is a building, CEDEX is postal noise.
        let p = parse_query("Résidence Les Tilleuls Bât B 16, Rue du Marché 06000 NICE CEDEX 3");
        assert_eq!(p.housenumber.as_deref(), Some("16"));
        assert_eq!(p.tokens, vec!["rue", "du", "marche", "06000", "nice"]);
        // A number before "<number> <street type>" (a row id) is dropped.
        let p = parse_query("3 13 Rue du 8 Mai 1945 Villeurbanne");
        assert_eq!(p.housenumber.as_deref(), Some("13"));
        assert_eq!(p.tokens, vec!["rue", "du", "8", "mai", "1945", "villeurbanne"]);
        assert_eq!(parse_query("7 12 bis avenue foch").housenumber.as_deref(), Some("12b"));
        // A city typed first goes after the street, as in labels.
        let p = parse_query("Cannes 7 Rue Haute");
        assert_eq!(p.housenumber.as_deref(), Some("7"));
        assert_eq!(p.compare, "7 rue haute cannes");
    }

    #[test]
    fn housenumber_keys_are_canonical() {
        assert_eq!(housenumber_key("12 bis"), "12b");
        assert_eq!(housenumber_key("12bis"), "12b");
        assert_eq!(housenumber_key("012"), "12");
        assert_eq!(housenumber_key("7 ter"), "7t");
        // Digits only take the short way; the same key as the long one,
        // which a space around them forces.
        for (n, key) in [("007", "7"), ("0", "0"), ("000", "0"), ("120", "120")] {
            assert_eq!(digits_key(n), Some(key));
            assert_eq!(housenumber_key(n), key);
            assert_eq!(housenumber_key(&format!(" {n} ")), key);
        }
        assert_eq!(digits_key(""), None);
        assert_eq!(digits_key("12b"), None);
        assert_eq!(digits_key(" 12"), None);
    }

    #[test]
    fn edge_ngrams_cover_prefixes() {
        let g = edge_ngrams(&["paix".to_owned()]);
        assert_eq!(g, vec!["pa", "pai", "paix"]);
        assert_eq!(indexed_prefix("abcdefghijklmnopqrstuvwxyz").len(), MAX_PREFIX);
    }

    #[test]
    fn bigram_similarity_is_a_ratio() {
        assert_eq!(bigram_similarity("paris", "paris"), 1.0);
        assert_eq!(bigram_similarity("abc", "xyz"), 0.0);
        let s = bigram_similarity("rue de la paix", "rue de la pai");
        assert!(s > 0.8 && s < 1.0, "{s}");
    }
}
