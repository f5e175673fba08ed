//! Request parameters as Addok reads them, with its defaults, aliases and
//! error messages, so that its clients keep working unchanged.

use std::borrow::Cow;

use cairn::{Point, ReverseQuery, SearchQuery};

pub const QUERY_MAX_CHARS: usize = 200;
pub const MAX_LIMIT: usize = 100;
const MAX_FILTER_VALUES: usize = 10;
pub const FILTERS: [&str; 3] = ["type", "postcode", "citycode"];

/// A client error: HTTP status, title and description.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    pub status: u16,
    pub title: String,
    pub description: Option<String>,
}

impl BadRequest {
    fn invalid(param: &str, why: &str) -> BadRequest {
        BadRequest {
            status: 400,
            title: "Invalid parameter".into(),
            description: Some(format!("The \"{param}\" parameter is invalid. {why}")),
        }
    }
    fn missing(param: &str) -> BadRequest {
        BadRequest {
            status: 400,
            title: "Missing parameter".into(),
            description: Some(format!("The \"{param}\" parameter is required.")),
        }
    }
}

/// Decoded query-string pairs, in order. A pair with nothing to decode
/// borrows from the query string: every search is parsed, cache hit or not.
pub struct Params<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Params<'a> {
    pub fn parse(query: Option<&'a str>) -> Params<'a> {
        Params(form_urlencoded::parse(query.unwrap_or("").as_bytes()).collect())
    }

    /// The last value of the first alias present (Addok keeps the last of a repeated parameter).
    fn get(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.0.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.as_ref()))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_ref()).collect()
    }

    fn limit(&self, default: usize, checked: bool, max: usize) -> Result<usize, BadRequest> {
        match self.get(&["limit"]).map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => {
                let n: i64 = s.parse().map_err(|_| BadRequest::invalid("limit", "The value must be an integer."))?;
                if n == 0 {
                    return Ok(default);
                }
                if checked && !(1..=max as i64).contains(&n) {
                    return Err(BadRequest::invalid("limit", &format!("out of range (1..{max})")));
                }
                Ok((n.max(1) as usize).min(max))
            }
        }
    }

    fn coord(&self, names: &[&str], max: f64) -> Result<Option<f64>, BadRequest> {
        match self.get(names).map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => {
                let v: f64 = s.parse().map_err(|_| BadRequest::invalid(names[0], "invalid value"))?;
                if !v.is_finite() || v.abs() > max {
                    return Err(BadRequest::invalid(names[0], "out of range"));
                }
                Ok(Some(v))
            }
        }
    }

    fn point(&self) -> Result<(Option<f64>, Option<f64>), BadRequest> {
        let lon = self.coord(&["lon", "lng", "long", "longitude"], 180.0)?;
        let lat = self.coord(&["lat", "latitude"], 90.0)?;
        Ok((lat, lon))
    }

    fn filters(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for name in FILTERS {
            let mut values: Vec<String> = self
                .all(name)
                .iter()
                .flat_map(|v| v.split([' ', '+', ',']))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            values.sort();
            values.dedup();
            values.truncate(MAX_FILTER_VALUES);
            if !values.is_empty() {
                out.push((name.to_owned(), values));
            }
        }
        out
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, BadRequest> {
        match self.get(&[name]).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(s) => match s.as_str() {
                "" => Ok(default),
                "1" | "true" | "yes" | "on" | "t" | "y" => Ok(true),
                "0" | "false" | "no" | "off" | "f" | "n" => Ok(false),
                _ => Err(BadRequest::invalid(name, "The value of the parameter must be \"true\" or \"false\".")),
            },
        }
    }
}

/// Length of a query as Addok counts it: folded, runs of anything that is
/// not a letter or digit counted as one space.
pub fn query_chars(q: &str) -> usize {
    cairn::text::analysis::fold(q).split_whitespace().map(|w| w.chars().count() + 1).sum::<usize>().saturating_sub(1)
}

pub fn check_query(q: &str) -> Result<(), BadRequest> {
    let n = query_chars(q);
    if n > QUERY_MAX_CHARS {
        return Err(BadRequest {
            status: 413,
            title: format!("Query too long, {n} chars, limit is {QUERY_MAX_CHARS}"),
            description: None,
        });
    }
    Ok(())
}

/// A search request; `limit` may not exceed `max_limit`.
pub fn search(p: &Params<'_>, max_limit: usize) -> Result<SearchQuery, BadRequest> {
    parse_search(p, max_limit)?.check()
}

/// A search request parsed, all but the length of its `q` checked: what
/// the response cache keys on. A cached answer needs no length check (only
/// valid requests are cached, and the key holds `q` whole); anything else
/// goes through [`ParsedSearch::check`] before it reaches the engine.
pub struct ParsedSearch(SearchQuery);

impl ParsedSearch {
    pub fn query(&self) -> &SearchQuery {
        &self.0
    }

    pub fn check(self) -> Result<SearchQuery, BadRequest> {
        check_query(&self.0.q)?;
        Ok(self.0)
    }
}

/// [`search`] but for the length of `q`. A too long `q` is still the error
/// given first when another parameter is also wrong, as [`search`] gives it.
pub fn parse_search(p: &Params<'_>, max_limit: usize) -> Result<ParsedSearch, BadRequest> {
    let q = p.get(&["q"]).unwrap_or("");
    if q.is_empty() {
        return Err(BadRequest::missing("q"));
    }
    let rest = || -> Result<_, BadRequest> {
        let limit = p.limit(5.min(max_limit), true, max_limit)?;
        let autocomplete = p.bool("autocomplete", true)?;
        let near = match p.point()? {
            (Some(lat), Some(lon)) => Some(Point { lat, lon }),
            _ => None,
        };
        Ok((limit, autocomplete, near))
    };
    let (limit, autocomplete, near) = rest().map_err(|e| check_query(q).err().unwrap_or(e))?;
    Ok(ParsedSearch(SearchQuery { q: q.to_owned(), limit, autocomplete, near, filters: p.filters() }))
}

/// A reverse request; a larger `limit` than `max_limit` is cut to it, as Addok does.
pub fn reverse(p: &Params<'_>, max_limit: usize) -> Result<ReverseQuery, BadRequest> {
    let (lat, lon) = p.point()?;
    let lon = lon.ok_or_else(|| BadRequest::missing("lon"))?;
    let lat = lat.ok_or_else(|| BadRequest::missing("lat"))?;
    let limit = p.limit(1, false, max_limit)?;
    Ok(ReverseQuery { at: Point { lat, lon }, limit, filters: p.filters() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search_of(qs: &str) -> Result<SearchQuery, BadRequest> {
        search(&Params::parse(Some(qs)), MAX_LIMIT)
    }

    #[test]
    fn defaults_and_aliases() {
        let s = search_of("q=paris&lng=2.3&latitude=48.8&type=street+municipality").unwrap();
        assert_eq!(s.limit, 5);
        assert!(s.autocomplete);
        assert_eq!(s.near, Some(Point { lat: 48.8, lon: 2.3 }));
        assert_eq!(s.filters, vec![("type".to_owned(), vec!["municipality".to_owned(), "street".to_owned()])]);
        assert_eq!(search_of("q=a&limit=0").unwrap().limit, 5);
        assert!(!search_of("q=a&autocomplete=0").unwrap().autocomplete);
    }

    #[test]
    fn errors_say_what_was_wrong() {
        assert_eq!(search_of("limit=3").unwrap_err().title, "Missing parameter");
        assert_eq!(search_of("q=").unwrap_err().status, 400);
        assert!(search_of("q=a&limit=abc").unwrap_err().description.unwrap().contains("limit"));
        assert!(search_of("q=a&limit=101").unwrap_err().description.unwrap().contains("out of range"));
        assert!(search(&Params::parse(Some("q=a&limit=11")), 10).unwrap_err().description.unwrap().contains("(1..10)"));
        assert!(search_of("q=a&lat=abc&lon=1").unwrap_err().description.unwrap().contains("\"lat\""));
        assert!(search_of("q=a&lat=91&lon=1").unwrap_err().description.unwrap().contains("out of range"));
        assert_eq!(search_of(&format!("q={}", "a".repeat(201))).unwrap_err().status, 413);
        // The length of q is its first error, whatever else is wrong.
        assert_eq!(search_of(&format!("q={}&limit=abc", "a".repeat(201))).unwrap_err().status, 413);
        assert!(parse_search(&Params::parse(Some(&format!("q={}", "a".repeat(201)))), MAX_LIMIT).is_ok());
        // Punctuation runs count as one character, as in Addok.
        assert!(search_of(&format!("q={}cholet", ",".repeat(300))).is_ok());
        assert_eq!(
            reverse(&Params::parse(Some("lat=1")), MAX_LIMIT).unwrap_err().description.unwrap(),
            "The \"lon\" parameter is required."
        );
    }
}
