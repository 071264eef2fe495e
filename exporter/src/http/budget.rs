//! The response budget: the bytes of responses the server holds for its
//! clients, at most [`MAX_BUFFERED_RESPONSE_BYTES`] all together, of which
//! [`SCRAPE_RESERVED_BYTES`] only scrapes may use.
//!
//! A request counts against the budget from the moment it is admitted, not
//! from the moment its response exists: it reserves the size of the last
//! response to the same target ([`Sizes::reserve`]), and is answered 503
//! before anything is rendered if that does not fit ([`room`]). The
//! reservation is held while the request waits for its worker and is
//! rendered, and gives way to the response's own bytes when it comes back;
//! a response that outgrew its reservation past what is left is dropped and
//! answered 503 there. So the bytes held and reserved never exceed the
//! budget, and a response that would not fit is, but for a report that grew
//! since it was last served, never built.
//!
//! This file holds the arithmetic and the remembered sizes; the I/O loop
//! (`io_loop.rs`) sums what its connections hold (`conn.rs`) and applies it.

use std::collections::VecDeque;

use super::limits::{
    FIRST_RESPONSE_RESERVE, MAX_BUFFERED_RESPONSE_BYTES, REMEMBERED_SIZES, SCRAPE_RESERVED_BYTES,
};
use super::request::{Method, Request};
use super::workers::Lane;

/// What an admitted request holds of the budget while its response is
/// rendered.
#[derive(Debug)]
pub(super) struct Reservation {
    /// Bytes reserved.
    pub bytes: usize,
    /// The target whose response size to remember once rendered (`None`
    /// for `HEAD`, whose response has no body).
    pub target: Option<Target>,
}

/// A request target: path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    path: String,
    query: String,
}

/// The size of the last response to each of the most recent
/// [`REMEMBERED_SIZES`] targets.
#[derive(Debug, Default)]
pub(super) struct Sizes {
    /// Oldest first.
    last: VecDeque<(Target, usize)>,
}

/// The bytes reserved for a `HEAD` request: its response is a head only.
const HEAD_RESERVE: usize = 1024;

impl Sizes {
    /// What `request` reserves: the size of the last response to its
    /// target; for a target not remembered, the largest remembered for its
    /// path (a query is the client's to vary); for a path not served yet,
    /// [`FIRST_RESPONSE_RESERVE`].
    pub fn reserve(&self, request: &Request) -> Reservation {
        if request.method == Method::Head {
            return Reservation {
                bytes: HEAD_RESERVE,
                target: None,
            };
        }
        let target = Target {
            path: request.path.clone(),
            query: request.query.clone(),
        };
        let same = self.last.iter().find(|(t, _)| *t == target);
        let bytes = match same {
            Some(&(_, bytes)) => bytes,
            None => self
                .last
                .iter()
                .filter(|(t, _)| t.path == target.path)
                .map(|&(_, bytes)| bytes)
                .max()
                .unwrap_or(FIRST_RESPONSE_RESERVE),
        };
        Reservation {
            bytes,
            target: Some(target),
        }
    }

    /// Notes the size of a response to `target`, forgetting the oldest
    /// target beyond [`REMEMBERED_SIZES`].
    pub fn remember(&mut self, target: Target, bytes: usize) {
        self.last.retain(|(t, _)| *t != target);
        if self.last.len() >= REMEMBERED_SIZES {
            self.last.pop_front();
        }
        self.last.push_back((target, bytes));
    }
}

/// Bytes a response of `lane` may still take, given the bytes held and
/// reserved for scrapes and for everything else: scrapes may fill the whole
/// [`MAX_BUFFERED_RESPONSE_BYTES`]; every other response shares what
/// [`SCRAPE_RESERVED_BYTES`] leaves of it with the others.
pub(super) fn room(lane: Option<Lane>, held_by_scrapes: usize, held_by_others: usize) -> usize {
    if lane == Some(Lane::Scrape) {
        MAX_BUFFERED_RESPONSE_BYTES.saturating_sub(held_by_others + held_by_scrapes)
    } else {
        (MAX_BUFFERED_RESPONSE_BYTES - SCRAPE_RESERVED_BYTES).saturating_sub(held_by_others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &str) -> Request {
        Request {
            method: Method::Get,
            path: path.into(),
            query: query.into(),
            authorization: None,
            head_len: 0,
        }
    }

    #[test]
    fn a_request_reserves_the_last_size_of_its_target_or_the_largest_of_its_path() {
        let mut sizes = Sizes::default();
        let first = sizes.reserve(&get("/api/sites", "top=1000"));
        assert_eq!(first.bytes, FIRST_RESPONSE_RESERVE);
        sizes.remember(first.target.unwrap(), 8 << 20);
        let small = sizes.reserve(&get("/api/sites", "top=5"));
        assert_eq!(small.bytes, 8 << 20, "unknown query: the path's largest");
        sizes.remember(small.target.unwrap(), 40 << 10);
        assert_eq!(sizes.reserve(&get("/api/sites", "top=5")).bytes, 40 << 10);
        assert_eq!(sizes.reserve(&get("/api/sites", "top=1000")).bytes, 8 << 20);
        let head = Request {
            method: Method::Head,
            ..get("/api/sites", "top=1000")
        };
        assert_eq!(sizes.reserve(&head).bytes, HEAD_RESERVE);
        assert!(sizes.reserve(&head).target.is_none());
    }

    #[test]
    fn sizes_remembered_are_bounded() {
        let mut sizes = Sizes::default();
        for i in 0..REMEMBERED_SIZES * 3 {
            let r = sizes.reserve(&get("/x", &format!("n={i}")));
            sizes.remember(r.target.unwrap(), i);
        }
        assert_eq!(sizes.last.len(), REMEMBERED_SIZES);
        // The newest are kept: an unknown query gets the largest of them.
        let r = sizes.reserve(&get("/x", "n=new"));
        assert_eq!(r.bytes, REMEMBERED_SIZES * 3 - 1);
    }

    #[test]
    fn scrapes_keep_their_share() {
        let others = MAX_BUFFERED_RESPONSE_BYTES - SCRAPE_RESERVED_BYTES;
        assert_eq!(room(Some(Lane::Heavy), 0, others), 0);
        assert_eq!(room(Some(Lane::Scrape), 0, others), SCRAPE_RESERVED_BYTES);
        assert_eq!(room(Some(Lane::Light), 5, 0), others);
        assert_eq!(
            room(Some(Lane::Scrape), 5, others + 10),
            SCRAPE_RESERVED_BYTES - 15
        );
    }
}
