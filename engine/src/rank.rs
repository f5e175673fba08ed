//! Scores in [0, 1], computed as Addok computes them so that thresholds its
//! users chose keep their meaning: text similarity of the query to the
//! result's labels (ceiling 1), importance (ceiling 0.1) and, when the query
//! gives a point, nearness (ceiling 0.1); the score is their sum over the sum
//! of their ceilings.

use crate::text::analysis::{bigram_similarity, BigramCounts};

pub const IMPORTANCE_WEIGHT: f64 = 0.1;
pub const GEO_WEIGHT: f64 = 0.1;
/// Results under this score are noise and are dropped.
pub const MIN_SCORE: f64 = 0.1;

/// Similarity of the query to the best of a result's labels, all in
/// comparable form. With autocomplete, a label that equals the query scores
/// 1, one that starts with it 0.9, one that contains it 0.7; otherwise, and
/// without autocomplete, bigram similarity decides.
pub fn text_score(query: &str, labels: &[String], autocomplete: bool) -> f64 {
    text_score_with(query, &BigramCounts::new(query), labels.iter().map(String::as_str), autocomplete, &mut Vec::new())
}

/// [`text_score`] with the query's bigrams counted once for all the
/// candidates of a query, and a buffer kept across them.
pub(crate) fn text_score_with<'l>(
    query: &str,
    query_bigrams: &BigramCounts,
    labels: impl IntoIterator<Item = &'l str>,
    autocomplete: bool,
    scratch: &mut Vec<u32>,
) -> f64 {
    let mut best: f64 = 0.0;
    for label in labels {
        let s = if autocomplete && label == query {
            1.0
        } else if autocomplete && label.starts_with(query) {
            0.9
        } else if autocomplete && label.contains(query) {
            0.7
        } else if query.chars().nth(1).is_none() || label.chars().nth(1).is_none() {
            bigram_similarity(label, query) * if autocomplete { 0.9 } else { 1.0 }
        } else {
            query_bigrams.overlap(label, scratch) * if autocomplete { 0.9 } else { 1.0 }
        };
        best = best.max(s);
        if best >= 1.0 {
            break;
        }
    }
    best
}

/// Nearness score: 1 at the point, 0.37 at 50 km, 0 beyond 100 km.
pub fn geo_score(distance_m: f64) -> f64 {
    let km = distance_m / 1000.0;
    if km > 100.0 {
        0.0
    } else {
        (-(km / 50.0).powi(2)).exp()
    }
}

/// The final score in [0, 1].
pub fn combine(text: f64, importance: f64, distance_m: Option<f64>) -> f64 {
    let mut sum = text.clamp(0.0, 1.0) + importance.clamp(0.0, 1.0) * IMPORTANCE_WEIGHT;
    let mut ceiling = 1.0 + IMPORTANCE_WEIGHT;
    if let Some(d) = distance_m {
        sum += geo_score(d) * GEO_WEIGHT;
        ceiling += GEO_WEIGHT;
    }
    sum / ceiling
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_label_scores_like_addok() {
        // Addok: exact label of a street of importance 0.45394 -> 0.9503582.
        let s = combine(text_score("a b", &["a b".into()], true), 0.45394, None);
        assert!((s - 0.950_358_2).abs() < 1e-6, "{s}");
    }

    #[test]
    fn prefix_and_weak_matches_rank_lower() {
        let labels = vec!["rue de la paix 75002 paris".to_owned()];
        let exact = text_score("rue de la paix 75002 paris", &labels, true);
        let prefix = text_score("rue de la pa", &labels, true);
        let weak = text_score("avenue foch lyon", &labels, true);
        assert!(exact > prefix && prefix > weak, "{exact} {prefix} {weak}");
        assert!(combine(weak, 0.5, None) < 0.5);
    }

    #[test]
    fn nearness_decays() {
        assert!((geo_score(0.0) - 1.0).abs() < 1e-12);
        assert!(geo_score(10_000.0) > geo_score(50_000.0));
        assert_eq!(geo_score(150_000.0), 0.0);
        assert!(combine(1.0, 1.0, Some(0.0)) <= 1.0);
    }
}
