//! Allocations by `tracing` span: which kind of request, job or task
//! allocates, counted exactly (feature `tracing`).
//!
//! [`SpanLayer`] is a [`tracing_subscriber::Layer`]. At each span's enter it
//! reads the calling thread's exact allocation counters
//! ([`allocmeter::thread_totals`]), at its exit it reads them again, and it
//! adds the difference to the span's **callsite**: allocations, bytes
//! allocated, frees, bytes freed, and one enter. Nothing is added to the
//! allocation path and nothing is sampled: the figures are exact counts of
//! what the thread did between the enter and the exit.
//!
//! ```no_run
//! use std::alloc::System;
//! use allocmeter::Instrumented;
//! use tracing_subscriber::prelude::*;
//!
//! #[global_allocator]
//! static GLOBAL: Instrumented<System> = Instrumented::new(System);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     tracing_subscriber::registry()
//!         // .with(tracing_subscriber::fmt::layer()) // the service's other layers first
//!         .with(allocmeter_exporter::spans::SpanLayer::new()) // then this one, last
//!         .init();
//!     let _telemetry = allocmeter_exporter::Exporter::builder().start()?;
//!
//!     let request = tracing::info_span!("checkout");
//!     request.in_scope(|| {
//!         let basket: Vec<u64> = (0..1000).collect(); // counted under `checkout`
//!         drop(basket);
//!     });
//!     // /metrics: allocmeter_span_alloc_bytes_total{span="my_service::checkout"} 8000
//!     // /api/spans, or in process:
//!     let spans = allocmeter_exporter::spans::snapshot().expect("a layer was made");
//!     for s in &spans.spans {
//!         println!("{}: {} allocations, {} bytes", s.span, s.allocs, s.alloc_bytes);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # What the numbers mean
//!
//! - A span is known by its callsite's target and name, written
//!   `target::name` (`my_service::http::handle` for `#[instrument] fn
//!   handle` in `my_service::http`; `my_service::checkout` for
//!   `info_span!("checkout")` in the crate root): the `span` label of the
//!   `allocmeter_span_*` families and the `span` field of `/api/spans`.
//!   Two callsites with the same target and name are added together.
//! - `allocs`, `alloc_bytes`, `frees`, `free_bytes`: what the thread that
//!   entered the span allocated and freed while inside it, summed over every
//!   enter/exit pair (requested sizes; a realloc counts as one allocation of
//!   its new size and one free of its old, as everywhere in allocmeter).
//! - `net_bytes` = `alloc_bytes - free_bytes`: what the span's runs left
//!   allocated (negative when they freed more than they allocated, such as a
//!   span that drops a cache).
//! - `self_allocs`, `self_alloc_bytes`: of those, what the span allocated
//!   outside the counted spans nested in it (see Nesting).
//! - `enters`: the enter/exit pairs counted. For a synchronous span that is
//!   the number of spans; `alloc_bytes / enters` is the bytes per request.
//!
//! **Nesting.** Like time in `tracing`, a span's figures include its
//! children's: an enclosing span counts everything its thread allocated
//! while it was entered. `self_allocs` and `self_alloc_bytes` are its own
//! share: what it allocated outside the counted spans nested in it (as
//! `self` time in a profile), so the `self` figures of all spans add up
//! to what was allocated inside any. A span entered inside a span of the
//! same callsite (recursion, or the same span entered twice) is counted
//! once, by the outermost, so a recursive function's figures are not
//! doubled.
//!
//! **Threads and tasks.** Allocations are counted on the thread that
//! allocates, inside whatever span that thread has entered: work a span
//! hands to another thread, a thread pool or another task is counted where
//! it runs (under the span entered there, if any), not in the span that
//! handed it over. An async span (`Future::instrument`) is entered and
//! exited at every poll, so it counts exactly what its polls allocated;
//! `enters` then counts polls, not tasks.
//!
//! # Bounds and opt-in
//!
//! Nothing is counted or exported until a layer is made. The table of
//! callsites has a fixed size ([`DEFAULT_MAX_NAMES`], or
//! [`SpanLayerBuilder::max_names`]), allocated when the first layer is
//! made; callsites beyond it are all counted under one overflow entry,
//! reported as the span `(overflow)` (always present once a layer is made,
//! so a non-zero `enters` there says the bound was reached). The table is
//! the process's: every layer made shares it, and the bound is the first
//! layer's. To count only some spans, give the layer a filter, as any
//! layer: `SpanLayer::new().with_filter(filter_fn(|m| m.target().starts_with("my_service")))`.
//! Spans nested deeper than [`MAX_DEPTH`] on one thread are not counted
//! (their enclosing spans still count what they allocated).
//!
//! No lock is taken: an enter looks the callsite up in the table (a few
//! loads; one compare-and-swap the first time a callsite is seen) and reads
//! the thread's own counters; an exit reads them again and adds what
//! changed to the callsite's relaxed atomic counters (only those with
//! something to add). Nothing allocates.
//!
//! # Other layers
//!
//! Add this layer last (`.with(SpanLayer::new())` after the others):
//! `tracing_subscriber` calls a layer after the layers it wraps on enter
//! and exit, so the others' work at an enter is outside the reading, and
//! their work at an exit (the `fmt` layer's span events, if configured) is
//! counted in the span. The registry itself allocates now and then: the
//! first time a thread enters spans nested this deep (its stack of current
//! spans grows), and when a span created inside another finds its slab
//! full; that is counted in the enclosing span, a few times in a process's
//! life.
//!
//! # Cost
//!
//! Per enter/exit pair of a span that allocates nothing, counted exactly
//! with `valgrind --tool=cachegrind` over `benches/src/bin/span_cost.rs`
//! (the difference between 200,000 and 100,000 pairs):
//!
//! | subscriber | instructions per pair |
//! |---|---:|
//! | `tracing_subscriber::registry()` alone | 176 |
//! | the registry with `SpanLayer` | 905 (+729) |
//!
//! Of the 729, about 270 are the two readings of the thread's counters (each
//! sums the thread's 64 allocation and 64 free cells), the rest the
//! callsite's lookup (the registry's, then the table's) and the thread's
//! stack of open spans; a span that allocated and freed adds six relaxed
//! read-modify-writes. In wall time on a shared 2-core machine, about
//! 115 ns more per pair (medians of 5 runs: 14 ns bare, 129 ns with the
//! layer; noisy). A service that enters a span per request pays that
//! per request; one that enters spans in a tight inner loop should filter
//! them out (see above). The layer adds nothing to the allocation path.

mod stack;
mod table;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::OnceLock;

use tracing_core::span::Id;
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub use stack::MAX_DEPTH;
use table::{Counts, Table};

/// The size of the callsite table unless [`SpanLayerBuilder::max_names`]
/// says otherwise.
pub const DEFAULT_MAX_NAMES: usize = 256;

/// The most callsites [`SpanLayerBuilder::max_names`] accepts.
pub const MAX_NAMES_LIMIT: usize = 4096;

/// The label the overflow entry is reported under.
pub const OVERFLOW_SPAN: &str = "(overflow)";

/// The process's callsite table, made by the first layer.
static TABLE: OnceLock<Table> = OnceLock::new();

/// A [`tracing_subscriber::Layer`] that counts, exactly, what each span's
/// thread allocated and freed while inside it, by the span's callsite (see
/// the [module docs](self)).
#[derive(Clone, Copy)]
pub struct SpanLayer {
    table: &'static Table,
}

impl SpanLayer {
    /// A layer with the defaults ([`DEFAULT_MAX_NAMES`] callsites).
    pub fn new() -> SpanLayer {
        SpanLayer::builder().build()
    }

    /// A builder, to set the table's size.
    pub fn builder() -> SpanLayerBuilder {
        SpanLayerBuilder {
            max_names: DEFAULT_MAX_NAMES,
        }
    }
}

impl Default for SpanLayer {
    fn default() -> Self {
        SpanLayer::new()
    }
}

impl std::fmt::Debug for SpanLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanLayer")
            .field("max_names", &self.table.max())
            .finish()
    }
}

/// Settings of a [`SpanLayer`], from [`SpanLayer::builder`].
#[derive(Clone, Debug)]
pub struct SpanLayerBuilder {
    max_names: usize,
}

impl SpanLayerBuilder {
    /// How many span callsites are counted each under its own name (1 to
    /// [`MAX_NAMES_LIMIT`]; default [`DEFAULT_MAX_NAMES`]); the ones seen
    /// after these are counted together under [`OVERFLOW_SPAN`]. The table
    /// is made, at this size, by the first layer built in the process
    /// (about 144 bytes per name, allocated then as the program's); layers
    /// built later share it and their setting is ignored. Each name is a
    /// series in each of the eight `allocmeter_span_*` families.
    pub fn max_names(mut self, max_names: usize) -> SpanLayerBuilder {
        self.max_names = max_names.clamp(1, MAX_NAMES_LIMIT);
        self
    }

    /// The layer.
    pub fn build(self) -> SpanLayer {
        SpanLayer {
            table: TABLE.get_or_init(|| Table::new(self.max_names)),
        }
    }
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(meta) = ctx.metadata(id) else {
            return;
        };
        let cells = self.table.cells(meta);
        // The reading last, so that the layer's own work is outside it (it
        // allocates nothing either way).
        stack::enter(id.into_u64(), cells, allocmeter::thread_totals());
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        // The reading first, for the same reason.
        stack::exit(id.into_u64(), allocmeter::thread_totals());
    }
}

/// What one span name allocated: one entry of [`SpansSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SpanFigures {
    /// `target::name`, the label it is exported under ([`OVERFLOW_SPAN`]
    /// for the overflow entry).
    pub span: String,
    /// The callsite's name (`Metadata::name`); empty for the overflow entry.
    pub name: &'static str,
    /// The callsite's target (`Metadata::target`, the module path unless
    /// the span sets one); empty for the overflow entry.
    pub target: &'static str,
    /// Enter/exit pairs counted.
    pub enters: u64,
    /// Blocks allocated inside the span (each realloc adds one).
    pub allocs: u64,
    /// Bytes allocated inside the span (each realloc adds its new size).
    pub alloc_bytes: u64,
    /// Blocks freed inside the span (each realloc adds one).
    pub frees: u64,
    /// Bytes freed inside the span (each realloc adds its old size).
    pub free_bytes: u64,
    /// `alloc_bytes - free_bytes`: what the span's runs left allocated
    /// (negative if they freed more than they allocated).
    pub net_bytes: i64,
    /// Of `allocs`, those made outside the counted spans nested inside
    /// (the span's own, as `self` time in a profile).
    pub self_allocs: u64,
    /// Of `alloc_bytes`, those allocated outside the counted spans nested
    /// inside.
    pub self_alloc_bytes: u64,
}

impl SpanFigures {
    fn new(span: String, name: &'static str, target: &'static str, c: Counts) -> SpanFigures {
        SpanFigures {
            span,
            name,
            target,
            enters: c.enters,
            allocs: c.used.allocs,
            alloc_bytes: c.used.alloc_bytes,
            frees: c.used.frees,
            free_bytes: c.used.free_bytes,
            net_bytes: c.used.alloc_bytes.wrapping_sub(c.used.free_bytes) as i64,
            self_allocs: c.own.0,
            self_alloc_bytes: c.own.1,
        }
    }

    /// Adds another callsite's counts (wrapping, as the counters do).
    fn merge(&mut self, c: Counts) {
        self.enters = self.enters.wrapping_add(c.enters);
        self.allocs = self.allocs.wrapping_add(c.used.allocs);
        self.alloc_bytes = self.alloc_bytes.wrapping_add(c.used.alloc_bytes);
        self.frees = self.frees.wrapping_add(c.used.frees);
        self.free_bytes = self.free_bytes.wrapping_add(c.used.free_bytes);
        self.net_bytes = self.alloc_bytes.wrapping_sub(self.free_bytes) as i64;
        self.self_allocs = self.self_allocs.wrapping_add(c.own.0);
        self.self_alloc_bytes = self.self_alloc_bytes.wrapping_add(c.own.1);
    }
}

/// Every span name's figures now, from [`snapshot`] (and `/api/spans`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SpansSnapshot {
    /// The span names counted, sorted by [`SpanFigures::span`].
    pub spans: Vec<SpanFigures>,
    /// The callsites beyond the table's bound, together.
    pub overflow: SpanFigures,
    /// The table's bound: callsites counted under their own name.
    pub max_names: usize,
    /// Callsites in the table now (at most `max_names`).
    pub callsites: usize,
}

/// What every span name has allocated so far; `None` if no [`SpanLayer`]
/// has been made in this process.
///
/// Each counter is exact for the enter/exit pairs it has seen; they are
/// read one after another while spans keep exiting, so two fields may be a
/// few exits apart.
pub fn snapshot() -> Option<SpansSnapshot> {
    let table = TABLE.get()?;
    let mut by_label: BTreeMap<String, SpanFigures> = BTreeMap::new();
    let mut callsites = 0;
    for (meta, counts) in table.entries() {
        callsites += 1;
        match by_label.entry(span_label(meta)) {
            Entry::Occupied(mut same) => same.get_mut().merge(counts),
            Entry::Vacant(new) => {
                let label = new.key().clone();
                new.insert(SpanFigures::new(label, meta.name(), meta.target(), counts));
            }
        }
    }
    Some(SpansSnapshot {
        spans: by_label.into_values().collect(),
        overflow: SpanFigures::new(OVERFLOW_SPAN.to_string(), "", "", table.overflow.read()),
        max_names: table.max(),
        callsites,
    })
}

/// `target::name`.
fn span_label(meta: &Metadata<'_>) -> String {
    format!("{}::{}", meta.target(), meta.name())
}

/// The 404's message of `/api/spans` when no layer has been made.
pub(crate) const NO_LAYER: &str = "no span layer: add allocmeter_exporter::spans::SpanLayer to the tracing subscriber (feature \"tracing\")";

/// The body of `/api/spans`: [`snapshot`] with the API's version; `None`
/// if no layer has been made.
pub(crate) fn api_body() -> Option<serde_json::Value> {
    let snapshot = snapshot()?;
    let mut body = serde_json::to_value(snapshot).ok()?;
    body["version"] = crate::API_VERSION.into();
    Some(body)
}
