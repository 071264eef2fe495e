//! The rules: from one site's evidence over the window to a hint, a note
//! that it is still collecting evidence, a technique declined with its
//! reason, or nothing. Pure arithmetic over the evidence; no symbols.
//!
//! Every rule states its property of a site's sampled blocks ("freed
//! within 1 ms by the thread that allocated it"), counts the blocks that
//! have it among those whose outcome is known, and fires only when the
//! Wilson score lower bound (95 %) of that share clears the rule's bar and
//! at least [`MIN_OBSERVATIONS`] blocks are behind it. A block still alive
//! counts only once its age decides the property (censoring). The
//! confidence is named from the same numbers ([`Confidence`]).

use crate::aggregate::evidence::{Censored, Generation, Histogram, SEVERAL, STREAM_MIN_BYTES};

/// Blocks a rule needs before it may fire: with 30, an estimate's 95 %
/// range is about ±36 %, and "30 of 30" proves a share of at least 89 %.
pub const MIN_OBSERVATIONS: u32 = 30;

/// Blocks behind a `high` confidence: an estimate within about ±20 %.
pub const HIGH_OBSERVATIONS: u32 = 100;

/// Huge blocks a `stream` hint needs (each is sampled almost surely: a
/// block of 8 MiB at the default rate of 512 KiB is missed once in
/// nine million).
pub const MIN_HUGE_BLOCKS: u32 = 3;

/// A site under this share of all allocations and of all bytes is not
/// hinted (DHAT's significance threshold).
pub const MIN_SHARE: f64 = 0.005;

/// Sizes whose 10th and 90th percentiles lie within this factor are
/// narrow: one buffer, or one pool, fits them all.
pub const NARROW_SIZE_RATIO: u64 = 4;

/// The chunk a `stream` hint suggests reading by.
pub const STREAM_CHUNK_BYTES: u64 = 64 * 1024;

/// A technique a hint names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Technique {
    /// Reserve the capacity a buffer grows to, up front.
    Preallocate,
    /// Keep one buffer and clear it, instead of a new one each time.
    Reuse,
    /// Keep a pool or free list of short-lived objects handed between
    /// threads, or alive several at once.
    Pool,
    /// Process a huge input in chunks instead of loading it whole.
    Stream,
    /// Write formatted text into a kept `String` instead of `format!`.
    Format,
}

impl Technique {
    /// Its name, as the JSON API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Technique::Preallocate => "preallocate",
            Technique::Reuse => "reuse",
            Technique::Pool => "pool",
            Technique::Stream => "stream",
            Technique::Format => "format",
        }
    }
}

/// How sure a hint is, named from its evidence: never a bare score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// At least [`HIGH_OBSERVATIONS`] blocks (huge blocks: 10), and the
    /// rule's lower bound clears its bar: the saving is known to about
    /// ±20 % or better.
    High,
    /// At least [`MIN_OBSERVATIONS`] blocks (huge blocks:
    /// [`MIN_HUGE_BLOCKS`]), and the lower bound clears the bar: the
    /// saving is known to about ±36 % or better.
    Medium,
}

/// What the library frames nearest the allocator say the site's
/// allocations are (the first program frame says where).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// None of the below.
    Plain,
    /// A `Vec`, `String` or `VecDeque` growing (`grow_one`,
    /// `grow_amortized`, `finish_grow`, `do_reserve_and_handle`).
    VecGrowth,
    /// A `HashMap` or `HashSet` growing (`reserve_rehash`): a new table
    /// allocated and the old one freed, never a `realloc`.
    MapGrowth,
    /// `format!` (`alloc::fmt::format`, `format_inner`).
    Format,
    /// A whole input read into memory (`read_to_end`, `read_to_string`,
    /// `fs::read`).
    ReadWhole,
}

impl Mechanism {
    /// The mechanism a machinery frame's function name shows, if any.
    pub fn of_function(name: &str) -> Option<Mechanism> {
        const TABLE: &[(&str, Mechanism)] = &[
            ("reserve_rehash", Mechanism::MapGrowth),
            ("format_inner", Mechanism::Format),
            ("alloc::fmt::format", Mechanism::Format),
            ("read_to_end", Mechanism::ReadWhole),
            ("read_to_string", Mechanism::ReadWhole),
            ("std::fs::read", Mechanism::ReadWhole),
            ("grow_one", Mechanism::VecGrowth),
            ("grow_amortized", Mechanism::VecGrowth),
            ("finish_grow", Mechanism::VecGrowth),
            ("do_reserve_and_handle", Mechanism::VecGrowth),
            ("reserve_for_push", Mechanism::VecGrowth),
        ];
        TABLE
            .iter()
            .find(|(needle, _)| name.contains(needle))
            .map(|&(_, m)| m)
    }
}

/// The program's exact totals over the window.
#[derive(Clone, Copy, Debug)]
pub struct Totals {
    /// The window's length.
    pub window_secs: f64,
    /// Allocations (each realloc is one) in the window, exactly.
    pub allocs: f64,
    /// Bytes allocated in the window, exactly.
    pub bytes: f64,
}

/// A share of a site's blocks that have a rule's property.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Share {
    /// The property.
    pub property: &'static str,
    /// Blocks that have it.
    pub count: u32,
    /// Blocks whose outcome is known.
    pub of: u32,
    /// The share's Wilson score lower bound (95 %).
    pub at_least: f64,
    /// The bar the lower bound had to clear.
    pub bar: f64,
}

impl Share {
    fn new(property: &'static str, count: u32, of: u32, bar: f64) -> Share {
        Share {
            property,
            count,
            of,
            at_least: wilson_lower(count, of),
            bar,
        }
    }

    fn clears(&self, min: u32) -> bool {
        self.of >= min && self.at_least >= self.bar
    }
}

/// A site's evidence as a hint shows it: the figures behind the rule.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// Samples charged to the site in the window (each sampled block, and
    /// each sampled realloc of one).
    pub samples: u32,
    /// The window, seconds.
    pub window_secs: f64,
    /// Estimated allocations per second (reallocs included).
    pub allocs_per_sec: f64,
    /// Estimated bytes allocated per second.
    pub bytes_per_sec: f64,
    /// Its share of all the program's allocations in the window (exact
    /// denominator).
    pub share_of_allocs: f64,
    /// Its share of all the program's bytes allocated in the window.
    pub share_of_bytes: f64,
    /// Requested sizes, 10th, 50th and 90th percentile (upper ends of
    /// power-of-two buckets, at most the largest seen), and the largest
    /// seen.
    pub size_p10: u64,
    /// See `size_p10`.
    pub size_p50: u64,
    /// See `size_p10`.
    pub size_p90: u64,
    /// See `size_p10`.
    pub size_max: u64,
    /// Sampled blocks whose free was seen in the window.
    pub ended: u32,
    /// Sampled blocks alive now (their lifetimes are censored).
    pub alive: u32,
    /// Lifetimes of the ended blocks, median and 90th percentile, ns
    /// (upper ends of power-of-two buckets).
    pub lifetime_p50_ns: Option<u64>,
    /// See `lifetime_p50_ns`.
    pub lifetime_p90_ns: Option<u64>,
    /// Share of the ended blocks freed by the thread that allocated them.
    pub same_thread: Option<f64>,
    /// Samples taken at a realloc that grew a block.
    pub grow_samples: u32,
    /// Ended blocks that grew by realloc, and their mean number of growths
    /// seen.
    pub grown_chains: u32,
    /// See `grown_chains`.
    pub mean_growths: Option<f64>,
    /// Final sizes of the ended blocks, median and 90th percentile, and the
    /// largest.
    pub final_size_p50: Option<u64>,
    /// See `final_size_p50`.
    pub final_size_p90: Option<u64>,
    /// See `final_size_p50`.
    pub final_size_max: u64,
    /// How the ended blocks' reallocs went: how many shrank a block, and
    /// how many moved one (a copy of its bytes); `grown_chains` and
    /// `mean_growths` tell the growing ones.
    pub shrinks: u32,
    /// See `shrinks`.
    pub moves: u32,
    /// Threads seen allocating here (at most 64 told apart).
    pub threads: u32,
    /// The rule's share, if the rule has one.
    pub rule: Option<Share>,
}

/// What a hint would save, with its 95 % range, and what it would cost.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Saving {
    /// Allocations per second avoidable.
    pub allocs_per_sec: f64,
    /// Its 95 % range, low end.
    pub allocs_per_sec_low: f64,
    /// Its 95 % range, high end.
    pub allocs_per_sec_high: f64,
    /// Bytes allocated per second avoidable.
    pub bytes_per_sec: f64,
    /// Its 95 % range, low end.
    pub bytes_per_sec_low: f64,
    /// Its 95 % range, high end.
    pub bytes_per_sec_high: f64,
    /// The saving as a share of all the program's allocations.
    pub share_of_allocs: f64,
    /// The saving as a share of all the program's bytes allocated.
    pub share_of_bytes: f64,
    /// The memory the fix would hold, bytes (what it costs, not what it
    /// saves; see `memory_cost`).
    pub memory_cost_bytes: u64,
    /// What that memory is.
    pub memory_cost: String,
}

/// One site's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A hint.
    Hint {
        /// The technique.
        technique: Technique,
        /// How sure.
        confidence: Confidence,
        /// Why that confidence, in words.
        confidence_basis: String,
        /// What to do, in words.
        advice: String,
        /// The evidence.
        evidence: Box<Evidence>,
        /// The saving.
        saving: Box<Saving>,
        /// What could make it wrong.
        why_not: &'static str,
    },
    /// A significant site with too few blocks yet for any rule.
    Collecting {
        /// Blocks so far.
        observations: u32,
        /// Blocks needed.
        needed: u32,
        /// When, at the rate blocks came in the window, seconds.
        eta_secs: Option<f64>,
        /// Its evidence so far.
        evidence: Box<Evidence>,
    },
    /// A technique whose other signs are there, declined for a reason.
    Declined {
        /// The technique.
        technique: Technique,
        /// Why not.
        reason: String,
        /// The evidence.
        evidence: Box<Evidence>,
    },
    /// Not significant, or no technique fits.
    Nothing,
}

/// The Wilson score lower bound of a share of `k` in `n`, at 95 %.
pub fn wilson_lower(k: u32, n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let z = 1.96f64;
    let n = f64::from(n);
    let p = f64::from(k.min(n as u32)) / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The relative half-width of the 95 % range of an estimate from `n`
/// effective samples ([`Generation::effective_samples`]): about 1.96/√n,
/// at most 1.
pub fn relative_error_eff(n: f64) -> f64 {
    if n <= 0.0 {
        1.0
    } else {
        (1.96 / n.sqrt()).min(1.0)
    }
}

/// The mean lifetime, low: each lifetime taken at its bucket's lower end
/// (at most a factor of two under the true mean).
fn mean_lifetime_low_ns(h: &Histogram) -> Option<f64> {
    let total = h.total();
    (total > 0.0).then(|| {
        h.0.iter()
            .enumerate()
            .map(|(b, &w)| f64::from(w) * Histogram::lower(b) as f64)
            .sum::<f64>()
            / total
    })
}

/// The evidence figures of a site.
pub fn evidence(w: &Generation, c: &Censored, totals: &Totals) -> Evidence {
    let secs = totals.window_secs.max(1e-3);
    let share = |part: f64, whole: f64| {
        if whole > 0.0 {
            (part / whole).min(1.0)
        } else {
            0.0
        }
    };
    Evidence {
        samples: w.all_samples,
        window_secs: secs,
        allocs_per_sec: w.objects / secs,
        bytes_per_sec: w.bytes / secs,
        share_of_allocs: share(w.objects, totals.allocs),
        share_of_bytes: share(w.bytes, totals.bytes),
        // A bucket's upper end, but never above the largest seen.
        size_p10: w.sizes.quantile(0.1).unwrap_or(0).min(w.size_max),
        size_p50: w.sizes.quantile(0.5).unwrap_or(0).min(w.size_max),
        size_p90: w.sizes.quantile(0.9).unwrap_or(0).min(w.size_max),
        size_max: w.size_max,
        ended: w.ended,
        alive: c.alive,
        lifetime_p50_ns: w.lifetimes.quantile(0.5),
        lifetime_p90_ns: w.lifetimes.quantile(0.9),
        same_thread: (w.ended > 0).then(|| f64::from(w.same_thread) / f64::from(w.ended)),
        grow_samples: w.grow_samples,
        grown_chains: w.grown_chains,
        mean_growths: (w.grown_chains > 0).then(|| f64::from(w.grows) / f64::from(w.grown_chains)),
        final_size_p50: w.final_sizes.quantile(0.5).map(|q| q.min(w.final_max)),
        final_size_p90: w.final_sizes.quantile(0.9).map(|q| q.min(w.final_max)),
        final_size_max: w.final_max,
        shrinks: w.shrinks,
        moves: w.moves,
        threads: w.threads.count_ones(),
        rule: None,
    }
}

/// Whether the sizes' 10th and 90th percentiles lie within
/// [`NARROW_SIZE_RATIO`] of each other.
fn narrow_sizes(w: &Generation) -> bool {
    match (w.sizes.quantile_bucket(0.1), w.sizes.quantile_bucket(0.9)) {
        (Some(lo), Some(hi)) => {
            hi.saturating_sub(lo) <= NARROW_SIZE_RATIO.trailing_zeros() as usize
        }
        _ => false,
    }
}

/// A saving of `allocs` allocations and `bytes` bytes over the window, with
/// the range `n_eff` effective samples give it.
fn saving(
    allocs: f64,
    bytes: f64,
    n_eff: f64,
    totals: &Totals,
    memory_cost_bytes: u64,
    memory_cost: String,
) -> Saving {
    let secs = totals.window_secs.max(1e-3);
    let e = relative_error_eff(n_eff);
    let (a, b) = (allocs / secs, bytes / secs);
    let share = |part: f64, whole: f64| {
        if whole > 0.0 {
            (part / whole).min(1.0)
        } else {
            0.0
        }
    };
    Saving {
        allocs_per_sec: a,
        allocs_per_sec_low: a * (1.0 - e),
        allocs_per_sec_high: a * (1.0 + e),
        bytes_per_sec: b,
        bytes_per_sec_low: b * (1.0 - e),
        bytes_per_sec_high: b * (1.0 + e),
        share_of_allocs: share(allocs, totals.allocs),
        share_of_bytes: share(bytes, totals.bytes),
        memory_cost_bytes,
        memory_cost,
    }
}

fn confidence(n: u32, high_at: u32) -> Confidence {
    if n >= high_at {
        Confidence::High
    } else {
        Confidence::Medium
    }
}

fn basis(n: u32, n_eff: f64, share: Option<&Share>) -> String {
    let mut s = format!(
        "{n} sampled blocks: the saving is known to ±{:.0} % (95 %)",
        relative_error_eff(n_eff) * 100.0
    );
    if let Some(r) = share {
        s.push_str(&format!(
            "; {} of {} {} (at least {:.0} % at 95 %, needed {:.0} %)",
            r.count,
            r.of,
            r.property,
            r.at_least * 100.0,
            r.bar * 100.0
        ));
    }
    s
}

/// Formats a byte count for advice text.
pub fn bytes_text(b: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for &(unit, name) in UNITS {
        if b >= unit {
            let v = b as f64 / unit as f64;
            return if v >= 10.0 {
                format!("{v:.0} {name}")
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{b} bytes")
}

/// The verdict on one site, whose allocations are made by `mechanism`.
pub fn judge(w: &Generation, c: &Censored, mechanism: Mechanism, totals: &Totals) -> Verdict {
    let mut ev = evidence(w, c, totals);
    if ev.share_of_allocs < MIN_SHARE && ev.share_of_bytes < MIN_SHARE {
        return Verdict::Nothing;
    }
    if let Some(v) = stream(w, &ev, totals) {
        return v;
    }
    if let Some(v) = preallocate(w, &mut ev, mechanism, totals) {
        return v;
    }
    if let Some(v) = churn(w, c, &mut ev, mechanism, totals) {
        return v;
    }
    let observations = w.all_samples.max(w.ended + c.older_than_short);
    if observations < MIN_OBSERVATIONS {
        let rate = f64::from(w.all_samples) / totals.window_secs.max(1e-3);
        let missing = f64::from(MIN_OBSERVATIONS - observations);
        return Verdict::Collecting {
            observations,
            needed: MIN_OBSERVATIONS,
            eta_secs: (rate > 0.0).then(|| missing / rate),
            evidence: Box::new(ev),
        };
    }
    Verdict::Nothing
}

/// Huge blocks, allocated again and again and freed: read in chunks.
fn stream(w: &Generation, ev: &Evidence, totals: &Totals) -> Option<Verdict> {
    if w.huge_ended < MIN_HUGE_BLOCKS {
        return None;
    }
    let n = w.huge_ended;
    let largest = w.final_max.max(w.size_max);
    let typical = ev.final_size_p50.unwrap_or(largest);
    Some(Verdict::Hint {
        technique: Technique::Stream,
        confidence: confidence(n, 10),
        confidence_basis: format!(
            "{n} blocks of {} or more, each allocated, filled and freed; blocks this \
             large are sampled almost surely, so the count is close to exact",
            bytes_text(STREAM_MIN_BYTES)
        ),
        advice: format!(
            "Process the input in chunks (a BufReader, or a {} buffer read again and again) \
             instead of loading it whole: blocks of up to {} are allocated here {:.2} times \
             a second",
            bytes_text(STREAM_CHUNK_BYTES),
            bytes_text(largest),
            f64::from(n) / totals.window_secs.max(1e-3)
        ),
        evidence: Box::new(ev.clone()),
        saving: Box::new(saving(
            0.0,
            w.bytes,
            f64::from(n),
            totals,
            STREAM_CHUNK_BYTES,
            format!(
                "one {} chunk per reader, instead of {} at a time (the peak falls by about that)",
                bytes_text(STREAM_CHUNK_BYTES),
                bytes_text(typical)
            ),
        )),
        why_not: "The whole input may be needed at once (parsed as one document, indexed, \
                  kept as a cache); inputs this large here may not occur in production.",
    })
}

/// Blocks that grow by realloc (or maps that rehash): reserve up front.
fn preallocate(
    w: &Generation,
    ev: &mut Evidence,
    mechanism: Mechanism,
    totals: &Totals,
) -> Option<Verdict> {
    let n = w.all_samples;
    let (grown, property) = if mechanism == Mechanism::MapGrowth {
        (
            n,
            "sampled at a map's growth (a new table, the old one freed)",
        )
    } else {
        (w.grow_samples, "sampled at a realloc that grew a buffer")
    };
    let share = Share::new(property, grown, n, 0.5);
    if !share.clears(MIN_OBSERVATIONS) {
        return None;
    }
    ev.rule = Some(share.clone());
    // The size to reserve: the 90th percentile of the final sizes seen, or
    // of the sampled sizes while too few buffers have ended.
    let (reserve, from) = match ev.final_size_p90 {
        Some(p90) if w.ended >= 10 => (p90, "90 % of the buffers ended at or under it"),
        _ => (
            ev.size_p90,
            "90 % of the sampled growths were at or under it",
        ),
    };
    let typical = ev.final_size_p50.unwrap_or(ev.size_p50);
    let n_eff = if mechanism == Mechanism::MapGrowth {
        Generation::effective_samples(w.objects, w.weight_sq)
    } else {
        Generation::effective_samples(w.grow_objects, w.grow_weight_sq)
    };
    let (allocs, what) = if mechanism == Mechanism::MapGrowth {
        (
            w.objects / 2.0,
            "the map's rehashes but the last (about half its tables, if it doubles)",
        )
    } else {
        (w.grow_objects, "every growing realloc")
    };
    let advice = if mechanism == Mechanism::MapGrowth {
        format!(
            "Create the map with HashMap::with_capacity (or reserve) for the entries it ends \
             with: its tables grow here to about {} ({from}); {what} would go",
            bytes_text(reserve)
        )
    } else {
        format!(
            "Reserve the capacity up front (Vec::with_capacity, String::with_capacity, \
             reserve) of about {} ({from}), or the element count it stands for; {what} \
             would go",
            bytes_text(reserve)
        )
    };
    Some(Verdict::Hint {
        technique: Technique::Preallocate,
        confidence: confidence(n, HIGH_OBSERVATIONS),
        confidence_basis: basis(n, n_eff, Some(&share)),
        advice,
        evidence: Box::new(ev.clone()),
        saving: Box::new(saving(
            allocs,
            // A doubling buffer's reallocs ask for about twice its final
            // size in all; reserving asks for it once.
            if mechanism == Mechanism::MapGrowth {
                w.bytes / 2.0
            } else {
                w.grow_bytes / 2.0
            },
            n_eff,
            totals,
            reserve.saturating_sub(typical),
            if reserve > typical {
                format!(
                    "up to {} more per buffer alive at once (the reserve less the median final \
                     size), for buffers that end smaller",
                    bytes_text(reserve - typical)
                )
            } else {
                "none: the buffers end at about the size to reserve (and a doubling buffer \
                 holds up to twice its size while it grows)"
                    .to_string()
            },
        )),
        why_not: "The final size may not be known before the buffer is built (a filter, a \
                  parser): too large a reserve wastes memory, too small still grows. A \
                  buffer already reused with clear() grows only while it warms up.",
    })
}

/// Short-lived blocks of narrow size: reuse one (same thread, one at a
/// time), `format!` into a kept `String`, or pool them (other threads, or
/// several alive at once).
fn churn(
    w: &Generation,
    c: &Censored,
    ev: &mut Evidence,
    mechanism: Mechanism,
    totals: &Totals,
) -> Option<Verdict> {
    let threads = w.threads.count_ones().max(1);
    let n_eff = Generation::effective_samples(w.objects, w.weight_sq);
    // Several alive at once: blocks freed by their own thread after it had
    // allocated SEVERAL more of their size (counted exactly by its
    // counters), a share of those whose count is known.
    let crowded = Share::new(
        "freed by their own thread after it allocated 4 or more blocks of their size meanwhile",
        w.crowded,
        w.alone + w.crowded,
        0.5,
    );
    let several_alive = crowded.clears(MIN_OBSERVATIONS);
    let decided = w.ended + c.older_than_short;
    let reuse = Share::new(
        "freed within 1 ms by the thread that allocated them, before it allocated 4 more of \
         their size",
        w.short_same_thread_alone,
        decided,
        0.8,
    );
    if reuse.clears(MIN_OBSERVATIONS) && !several_alive {
        let technique = if mechanism == Mechanism::Format {
            Technique::Format
        } else {
            Technique::Reuse
        };
        if !narrow_sizes(w) && technique == Technique::Reuse {
            return Some(declined(
                Technique::Reuse,
                ev,
                reuse,
                "one kept buffer would have to be as large as the largest",
            ));
        }
        ev.rule = Some(reuse.clone());
        let fraction = f64::from(reuse.count) / f64::from(reuse.of.max(1));
        let kept = ev.size_p90.max(ev.size_p50);
        let advice = if technique == Technique::Format {
            format!(
                "Keep one String (per thread or per loop), clear() it and write!() into it, \
                 instead of format!() each time: {:.0} strings a second are built here and \
                 dropped within a millisecond",
                ev.allocs_per_sec
            )
        } else {
            format!(
                "Keep one buffer (per thread or per loop) and clear() it instead of allocating \
                 a new one each time: {:.0} blocks a second of about {} are allocated here and \
                 freed within a millisecond by the same thread",
                ev.allocs_per_sec,
                bytes_text(ev.size_p50)
            )
        };
        return Some(Verdict::Hint {
            technique,
            confidence: confidence(decided, HIGH_OBSERVATIONS),
            confidence_basis: basis(w.all_samples.min(decided), n_eff, Some(&reuse)),
            advice,
            evidence: Box::new(ev.clone()),
            saving: Box::new(saving(
                w.objects * fraction,
                w.bytes * fraction,
                n_eff,
                totals,
                kept * u64::from(threads),
                format!(
                    "one kept buffer of about {} per thread ({threads} seen)",
                    bytes_text(kept)
                ),
            )),
            why_not: "The allocator's thread cache may already make these blocks cheap; a \
                      kept buffer holds its largest size for as long as it is kept, and \
                      reusing it ties iterations together (clear it every time).",
        });
    }
    let pool_decided = w.ended + c.older_than_pool_short;
    let short = Share::new("freed within 10 ms", w.pool_short, pool_decided, 0.8);
    if !short.clears(MIN_OBSERVATIONS) {
        return None;
    }
    let others = Share::new(
        "freed by another thread than the one that allocated them",
        w.ended - w.same_thread,
        w.ended,
        0.5,
    );
    let crosses = others.clears(MIN_OBSERVATIONS);
    if !crosses && !several_alive {
        return None;
    }
    let rule = if crosses { others } else { crowded };
    if !narrow_sizes(w) {
        return Some(declined(
            Technique::Pool,
            ev,
            rule,
            "a pool would keep every object at the largest size it ever held",
        ));
    }
    ev.rule = Some(rule.clone());
    let fraction = f64::from(w.pool_short) / f64::from(pool_decided.max(1));
    // Little's law for the blocks alive at once (rate × mean lifetime, the
    // lifetime taken low), at least a few per thread: what a pool holds.
    let alive = mean_lifetime_low_ns(&w.lifetimes).map_or(0.0, |ns| ev.allocs_per_sec * ns / 1e9);
    let pooled = (alive.ceil() as u64).max(SEVERAL * u64::from(threads));
    let object = ev.size_p90.max(ev.size_p50);
    Some(Verdict::Hint {
        technique: Technique::Pool,
        confidence: confidence(pool_decided, HIGH_OBSERVATIONS),
        confidence_basis: basis(w.all_samples.min(pool_decided), n_eff, Some(&rule)),
        advice: format!(
            "Keep a pool (or free list) of these objects of about {}: {:.0} a second are \
             allocated here, live under 10 ms{}",
            bytes_text(ev.size_p50),
            ev.allocs_per_sec,
            if crosses {
                " and are freed on other threads"
            } else {
                ", several at once per thread"
            }
        ),
        evidence: Box::new(ev.clone()),
        saving: Box::new(saving(
            w.objects * fraction,
            w.bytes * fraction,
            n_eff,
            totals,
            pooled * object,
            format!(
                "about {pooled} pooled objects of {} (those alive at once, by Little's law)",
                bytes_text(object)
            ),
        )),
        why_not: "A pool is shared state: it needs a lock or a lock-free list, a cap on what \
                  it keeps, and objects reset before reuse; with a thread-caching allocator \
                  the saving may be small.",
    })
}

fn declined(technique: Technique, ev: &mut Evidence, rule: Share, why: &str) -> Verdict {
    ev.rule = Some(rule);
    Verdict::Declined {
        technique,
        reason: format!(
            "sizes vary from {} to {} (10th to 90th percentile, more than {}x apart): {why}; \
             size classes with a cap each would be the way, if any",
            bytes_text(ev.size_p10),
            bytes_text(ev.size_p90),
            NARROW_SIZE_RATIO
        ),
        evidence: Box::new(ev.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::evidence::ChainEnd;

    const TOTALS: Totals = Totals {
        window_secs: 10.0,
        allocs: 1e6,
        bytes: 1e9,
    };

    /// The technique of a hint verdict.
    fn technique_of(v: &Verdict) -> Option<Technique> {
        match v {
            Verdict::Hint { technique, .. } => Some(*technique),
            _ => None,
        }
    }

    fn ended(g: &mut Generation, lifetime_ns: u64, same_thread: bool, grows: u32, size: u64) {
        ended_with(
            g,
            lifetime_ns,
            same_thread,
            grows,
            size,
            same_thread.then_some(0),
        );
    }

    fn ended_with(
        g: &mut Generation,
        lifetime_ns: u64,
        same_thread: bool,
        grows: u32,
        size: u64,
        same_size_between: Option<u64>,
    ) {
        g.on_end(&ChainEnd {
            freed: true,
            lifetime_ns,
            same_thread,
            grows,
            shrinks: 0,
            moves: 0,
            final_size: size,
            weight: 1.0,
            same_size_between,
        });
    }

    #[test]
    fn the_properties_name_the_thresholds_they_test() {
        use crate::aggregate::evidence::{POOL_SHORT_LIVED_NS, SHORT_LIVED_NS};
        assert_eq!(SHORT_LIVED_NS, 1_000_000, "\"freed within 1 ms\"");
        assert_eq!(POOL_SHORT_LIVED_NS, 10_000_000, "\"freed within 10 ms\"");
    }

    #[test]
    fn wilson_bounds_match_the_published_table() {
        // n, all have it, 90 % have it: the table in Wilson's terms.
        for (n, all, ninety) in [(10, 0.72, 0.60), (30, 0.89, 0.74), (100, 0.96, 0.83)] {
            assert!((wilson_lower(n, n) - all).abs() < 0.01, "{n}");
            assert!((wilson_lower(n * 9 / 10, n) - ninety).abs() < 0.01, "{n}");
        }
        assert_eq!(wilson_lower(0, 0), 0.0);
        assert!((relative_error_eff(100.0) - 0.196).abs() < 1e-9);
    }

    #[test]
    fn short_lived_same_thread_blocks_of_one_size_get_reuse_and_formats_get_format() {
        let mut g = Generation::default();
        for _ in 0..40 {
            g.on_sample(4096, 128.0, 1, false, true);
            ended(&mut g, 20_000, true, 0, 4096);
        }
        let v = judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS);
        let Verdict::Hint {
            technique,
            confidence,
            saving,
            ..
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(
            (*technique, *confidence),
            (Technique::Reuse, Confidence::Medium)
        );
        assert_eq!(saving.allocs_per_sec, 40.0 * 128.0 / 10.0);
        assert_eq!(saving.memory_cost_bytes, 4096);
        let v = judge(&g, &Censored::default(), Mechanism::Format, &TOTALS);
        assert_eq!(technique_of(&v), Some(Technique::Format), "{v:?}");
    }

    #[test]
    fn short_lived_blocks_alive_several_at_once_are_not_reuse_but_pool() {
        // A request's batch: each block freed by its own thread within
        // microseconds, but after the thread allocated 19 more of its size
        // (the rest of the batch). One kept buffer would not do.
        let mut g = Generation::default();
        for _ in 0..60 {
            g.on_sample(128, 256.0, 1, false, true);
            ended_with(&mut g, 16_000, true, 0, 128, Some(19));
        }
        let v = judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS);
        let Verdict::Hint {
            technique,
            evidence,
            ..
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(*technique, Technique::Pool, "{v:?}");
        let rule = evidence.rule.as_ref().unwrap();
        assert_eq!((rule.count, rule.of), (60, 60));
        // The same, allocated by format!: no format hint either.
        let v = judge(&g, &Censored::default(), Mechanism::Format, &TOTALS);
        assert_eq!(technique_of(&v), Some(Technique::Pool), "{v:?}");
    }

    #[test]
    fn blocks_still_alive_and_old_count_against_short_lived() {
        let mut g = Generation::default();
        for _ in 0..40 {
            g.on_sample(4096, 128.0, 1, false, true);
            ended(&mut g, 20_000, true, 0, 4096);
        }
        let mut c = Censored::default();
        for _ in 0..40 {
            c.add(5_000_000_000);
        }
        let v = judge(&g, &c, Mechanism::Plain, &TOTALS);
        assert_eq!(v, Verdict::Nothing, "half the blocks outlive the bar");
        // Young blocks still alive decide nothing yet.
        let mut young = Censored::default();
        for _ in 0..40 {
            young.add(10);
        }
        let v = judge(&g, &young, Mechanism::Plain, &TOTALS);
        assert!(matches!(
            v,
            Verdict::Hint {
                technique: Technique::Reuse,
                ..
            }
        ));
    }

    #[test]
    fn growth_gets_preallocate_with_the_final_size_and_a_with_capacity_buffer_does_not() {
        let mut g = Generation::default();
        for _ in 0..50 {
            g.on_sample(4096, 128.0, 1, true, true);
            ended(&mut g, 5_000, true, 3, 8192);
        }
        let v = judge(&g, &Censored::default(), Mechanism::VecGrowth, &TOTALS);
        let Verdict::Hint {
            technique, advice, ..
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(*technique, Technique::Preallocate);
        assert!(advice.contains("8.0 KiB"), "{advice}");
        let mut control = Generation::default();
        for _ in 0..50 {
            control.on_sample(8192, 64.0, 1, false, true);
            ended(&mut control, 5_000_000_000, true, 0, 8192);
        }
        let v = judge(&control, &Censored::default(), Mechanism::Plain, &TOTALS);
        assert_eq!(v, Verdict::Nothing);
    }

    #[test]
    fn cross_thread_frees_of_narrow_sizes_get_pool_and_wide_sizes_are_declined() {
        let mut g = Generation::default();
        for _ in 0..60 {
            g.on_sample(1024, 512.0, 1, false, true);
            ended(&mut g, 200_000, false, 0, 1024);
        }
        let v = judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS);
        assert_eq!(technique_of(&v), Some(Technique::Pool), "{v:?}");
        let mut wide = Generation::default();
        for i in 0..60u64 {
            let size = 256 << (i % 8);
            wide.on_sample(size, 512.0, 1, false, true);
            ended(&mut wide, 200_000, false, 0, size);
        }
        let v = judge(&wide, &Censored::default(), Mechanism::Plain, &TOTALS);
        let Verdict::Declined {
            technique, reason, ..
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(*technique, Technique::Pool);
        assert!(reason.contains("sizes vary"), "{reason}");
    }

    #[test]
    fn repeated_huge_blocks_get_stream_and_one_kept_for_good_does_not() {
        let mut g = Generation::default();
        for _ in 0..4 {
            g.on_sample(64 << 20, 1.0, 1, false, true);
            ended(&mut g, 50_000_000, true, 0, 64 << 20);
        }
        let v = judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS);
        assert_eq!(technique_of(&v), Some(Technique::Stream), "{v:?}");
        let mut kept = Generation::default();
        kept.on_sample(64 << 20, 1.0, 1, false, true);
        let mut c = Censored::default();
        c.add(5_000_000_000);
        let v = judge(&kept, &c, Mechanism::Plain, &TOTALS);
        assert!(matches!(v, Verdict::Collecting { .. }), "{v:?}");
    }

    #[test]
    fn insignificant_sites_are_left_alone_and_thin_evidence_is_collecting() {
        let mut g = Generation::default();
        for _ in 0..5 {
            g.on_sample(4096, 1.0, 1, false, true);
        }
        assert_eq!(
            judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS),
            Verdict::Nothing
        );
        let mut g = Generation::default();
        for _ in 0..10 {
            g.on_sample(4096, 1000.0, 1, false, true);
        }
        let v = judge(&g, &Censored::default(), Mechanism::Plain, &TOTALS);
        let Verdict::Collecting {
            observations,
            eta_secs,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(observations, 10);
        // 10 samples in 10 s: 20 more take 20 s.
        assert_eq!(eta_secs, Some(20.0));
    }

    #[test]
    fn machinery_names_tell_the_mechanism() {
        for (name, m) in [
            (
                "hashbrown::raw::RawTable<T,A>::reserve_rehash",
                Mechanism::MapGrowth,
            ),
            ("alloc::fmt::format::format_inner", Mechanism::Format),
            ("std::io::default_read_to_end", Mechanism::ReadWhole),
            (
                "alloc::raw_vec::RawVecInner<A>::grow_one",
                Mechanism::VecGrowth,
            ),
            ("alloc::raw_vec::finish_grow", Mechanism::VecGrowth),
        ] {
            assert_eq!(Mechanism::of_function(name), Some(m), "{name}");
        }
        assert_eq!(
            Mechanism::of_function("alloc::alloc::exchange_malloc"),
            None
        );
    }
}
