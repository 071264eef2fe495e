//! The samples of a Prometheus text exposition, for checking `/metrics`.

use std::collections::BTreeMap;

/// Every sample in a text exposition: `name{labels}` → value.
pub fn parse_samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line has a value");
            (
                series.to_string(),
                value.parse::<f64>().expect("numeric value"),
            )
        })
        .collect()
}
