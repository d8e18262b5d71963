//! Content negotiation for a JSON-only endpoint: `Content-Type` must be JSON (else 415) and
//! `Accept` must allow JSON (else 406).
//!
//! Spring answers 406 to `Accept: */*` on Smuggler's endpoint (spec §9), which its own test
//! calls a probable bug; here `*/*` and `application/*` are accepted like any HTTP server would.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;

const JSON: &str = "application/json";

/// True when the body is declared `application/json` (parameters such as charset allowed).
pub fn is_json_content(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    essence(text).eq_ignore_ascii_case(JSON)
}

/// True when no `Accept` is given or one of its media ranges covers `application/json` with
/// a quality above zero.
pub fn accepts_json(headers: &HeaderMap) -> bool {
    let mut ranges = Vec::new();
    for value in headers.get_all(ACCEPT) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        ranges.extend(text.split(',').map(str::trim).filter(|r| !r.is_empty()));
    }
    ranges.is_empty() || ranges.into_iter().any(range_allows_json)
}

fn range_allows_json(range: &str) -> bool {
    let kind = essence(range).to_ascii_lowercase();
    let covers = matches!(kind.as_str(), "application/json" | "application/*" | "*/*");
    covers && quality(range) > 0.0
}

fn essence(media: &str) -> &str {
    media.split(';').next().unwrap_or("").trim()
}

// A malformed q counts as 1, the default, rather than refusing the request over it.
fn quality(range: &str) -> f32 {
    range
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
        .and_then(|(_, v)| v.trim().parse::<f32>().ok())
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: axum::http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_type() {
        assert!(is_json_content(&headers(
            CONTENT_TYPE,
            &["application/json"]
        )));
        assert!(is_json_content(&headers(
            CONTENT_TYPE,
            &["Application/JSON; charset=UTF-8"]
        )));
        assert!(!is_json_content(&HeaderMap::new()));
        assert!(!is_json_content(&headers(CONTENT_TYPE, &["text/plain"])));
        assert!(!is_json_content(&headers(
            CONTENT_TYPE,
            &["application/x-www-form-urlencoded"]
        )));
        assert!(!is_json_content(&headers(
            CONTENT_TYPE,
            &["application/json", "application/json"]
        )));
    }

    #[test]
    fn accept() {
        assert!(accepts_json(&HeaderMap::new()));
        assert!(accepts_json(&headers(ACCEPT, &["application/json"])));
        assert!(accepts_json(&headers(ACCEPT, &["*/*"])));
        assert!(accepts_json(&headers(ACCEPT, &["application/*;q=0.5"])));
        assert!(accepts_json(&headers(
            ACCEPT,
            &["text/html, application/json;q=0.9"]
        )));
        assert!(accepts_json(&headers(
            ACCEPT,
            &["text/html", "application/json"]
        )));
        assert!(accepts_json(&headers(ACCEPT, &[""])));
        assert!(!accepts_json(&headers(ACCEPT, &["text/html"])));
        assert!(!accepts_json(&headers(
            ACCEPT,
            &["application/xml, text/*"]
        )));
        assert!(!accepts_json(&headers(ACCEPT, &["application/json;q=0"])));
        assert!(!accepts_json(&headers(ACCEPT, &["*/*; q=0.0"])));
        assert!(accepts_json(&headers(ACCEPT, &["application/json;q=oops"])));
    }
}
