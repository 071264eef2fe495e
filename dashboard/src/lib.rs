//! # allocmeter-dashboard
//!
//! The live page that [`allocmeter-exporter`](https://docs.rs/allocmeter-exporter)
//! serves at `/`: one HTML document, its script and its style sheet,
//! embedded in the binary at compile time. The page polls the exporter's
//! `/api/*` JSON endpoints and needs nothing else: no CDN, no build step.
//!
//! This crate holds the three files and nothing more. The exporter depends
//! on it and decides where each is served and with which headers: the page
//! at `/` (and `/index.html`), the others at `/app.js` and `/style.css`,
//! which the page asks for relative to its own URL.
//!
//! ```
//! assert!(allocmeter_dashboard::INDEX_HTML.starts_with("<!doctype html>"));
//! assert!(allocmeter_dashboard::INDEX_HTML.contains(r#"src="app.js""#));
//! assert!(allocmeter_dashboard::INDEX_HTML.contains(r#"href="style.css""#));
//! ```

#![warn(missing_docs)]

// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

/// The page itself, `index.html`.
pub const INDEX_HTML: &str = include_str!("../index.html");

/// The page's script, `app.js`: polls the exporter's JSON API and draws the
/// figures and charts.
pub const APP_JS: &str = include_str!("../app.js");

/// The page's style sheet, `style.css`.
pub const STYLE_CSS: &str = include_str!("../style.css");
