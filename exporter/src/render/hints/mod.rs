//! Optimisation hints: which call site should preallocate, reuse, pool,
//! stream or stop `format!`-ing, with the evidence, the saving and how sure.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the report ([`HintsReport`], [`Hint`]): sites grouped by their first program frame and what allocates there, judged, ranked and capped |
//! | `rules.rs` | the rules, the statistics they use, and the figures a hint carries ([`Evidence`], [`Saving`]) |
//!
//! A site here is the first program frame of a sampled stack (function,
//! file and line) together with the mechanism the library frames above it
//! show (`Vec` growth, map growth, `format!`, a whole-input read, or a plain
//! allocation): the first frame says where, the library frames say which
//! technique fits. The raw sites of the evidence (`aggregate/evidence.rs`)
//! that fall on the same such site are summed before they are judged.
//!
//! Reads a copy of the evidence ([`crate::aggregate::Aggregator::evidence`])
//! and a symbolizer it is lent; takes no lock of the aggregator's.

pub(crate) mod rules;

use std::collections::HashMap;

use crate::aggregate::EvidenceSnapshot;
use crate::aggregate::evidence::{Censored, Generation};
use crate::symbols::{Frame, Symbolizer, is_allocation_machinery, is_program_address};

pub use rules::{Confidence, Evidence, Mechanism, Saving, Share, Technique};
use rules::{Totals, Verdict};

/// The most hints a report holds (and the most sites it lists as still
/// collecting evidence, or declined): the ones that would save most.
pub const MAX_HINTS: usize = 10;

/// The hints at one moment, as `/api/hints` serves them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HintsReport {
    /// The evidence window they are drawn from, seconds.
    pub window_secs: f64,
    /// The sample rate in force.
    pub sample_rate: u64,
    /// The hints, the largest saving first (at most [`MAX_HINTS`]).
    pub hints: Vec<Hint>,
    /// Sites over the significance threshold with too few sampled blocks
    /// yet for any rule, the largest first.
    pub collecting: Vec<Collecting>,
    /// Techniques whose signs a site shows but that would not fit, and why.
    pub declined: Vec<Declined>,
}

/// One hint: one site, one technique.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Hint {
    /// The technique.
    pub technique: Technique,
    /// The site's first program frame: function, file and line.
    pub function: String,
    /// See `function`.
    pub file: Option<String>,
    /// See `function`.
    pub line: Option<u32>,
    /// How sure the hint is (`high` or `medium`), from the numbers in
    /// `confidence_basis`.
    pub confidence: Confidence,
    /// The numbers behind the confidence, in words.
    pub confidence_basis: String,
    /// What to do, in words.
    pub advice: String,
    /// The evidence: rates, sizes, lifetimes, threads, growth, and the
    /// rule's share with its bound.
    pub evidence: Evidence,
    /// What it would save, with 95 % ranges, and what it would cost.
    pub saving: Saving,
    /// What could make it wrong.
    pub why_not: &'static str,
    /// How to prove the fix: a budget check on the path through the site.
    pub check: String,
    /// The lines of `function` the evidence came from, busiest first: one
    /// for most sites; for a buffer that grows, every line it grew at (a
    /// reserve where it is made serves them all).
    pub lines: Vec<u32>,
    /// The call stack, innermost program frame first.
    pub stack: Vec<Frame>,
}

/// A site still collecting evidence.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Collecting {
    /// The site's first program frame.
    pub function: String,
    /// See `function`.
    pub file: Option<String>,
    /// See `function`.
    pub line: Option<u32>,
    /// Sampled blocks so far in the window.
    pub samples: u32,
    /// Sampled blocks a rule needs.
    pub needed: u32,
    /// About how long until it has them, at its rate in the window,
    /// seconds (`null` if unknown).
    pub eta_secs: Option<f64>,
    /// The evidence so far.
    pub evidence: Evidence,
}

/// A technique declined for a site, with the reason.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Declined {
    /// The technique.
    pub technique: Technique,
    /// The site's first program frame.
    pub function: String,
    /// See `function`.
    pub file: Option<String>,
    /// See `function`.
    pub line: Option<u32>,
    /// Why it would not fit.
    pub reason: String,
    /// The evidence.
    pub evidence: Evidence,
}

/// One site of the report: its place, mechanism, and summed evidence.
struct Group {
    leaf: Frame,
    mechanism: Mechanism,
    stack: Vec<Frame>,
    window: Generation,
    censored: Censored,
    /// The lines its samples came from, with how many each (more than one
    /// for a buffer that grows: see [`report`]).
    lines: Vec<(u32, u32)>,
}

/// The mechanism the machinery frames of `stack` (innermost first, before
/// the first program address) show: a whole-input read, then map growth,
/// then `format!`, then `Vec` growth, whichever is there first in that
/// order (a `format!` whose string grows shows both its own frame and the
/// `Vec`'s growth).
fn mechanism(addresses: &[u64], symbolizer: &mut Symbolizer) -> Mechanism {
    const PRIORITY: [Mechanism; 4] = [
        Mechanism::ReadWhole,
        Mechanism::MapGrowth,
        Mechanism::Format,
        Mechanism::VecGrowth,
    ];
    let mut seen = Vec::new();
    for &a in addresses {
        let frames = symbolizer.resolve(a).frames;
        for f in frames.iter().filter(|f| is_allocation_machinery(f)) {
            if let Some(m) = Mechanism::of_function(&f.function) {
                seen.push(m);
            }
        }
        if is_program_address(&frames) {
            break;
        }
    }
    PRIORITY
        .into_iter()
        .find(|m| seen.contains(m))
        .unwrap_or(Mechanism::Plain)
}

/// The report from `snapshot`, symbolized with `symbolizer`.
pub(crate) fn report(snapshot: &EvidenceSnapshot, symbolizer: &mut Symbolizer) -> HintsReport {
    let totals = Totals {
        window_secs: snapshot.window_secs(),
        allocs: snapshot.now.allocs.saturating_sub(snapshot.start.allocs) as f64,
        bytes: snapshot.now.bytes.saturating_sub(snapshot.start.bytes) as f64,
    };
    let symbolized = snapshot.sites.iter().filter_map(|site| {
        let addresses: Vec<u64> = site
            .stack
            .iter()
            .map(|&r| (r as u64).saturating_sub(1))
            .collect();
        let mechanism = mechanism(&addresses, symbolizer);
        let trimmed = super::sites::trim(&site.stack, symbolizer);
        let stack = super::sites::frames_of(&trimmed, symbolizer);
        (!stack.is_empty()).then_some((mechanism, stack, site.window, site.censored))
    });
    let groups = group(symbolized.collect::<Vec<_>>());
    let mut hints = Vec::new();
    let mut collecting = Vec::new();
    let mut declined = Vec::new();
    for g in groups {
        let Frame {
            function,
            file,
            line,
            ..
        } = g.leaf.clone();
        match rules::judge(&g.window, &g.censored, g.mechanism, &totals) {
            Verdict::Hint {
                technique,
                confidence,
                confidence_basis,
                advice,
                evidence,
                saving,
                why_not,
            } => {
                let check = check(technique, &g.leaf, &evidence, &saving);
                let mut lines = g.lines.clone();
                lines.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let lines: Vec<u32> = lines
                    .into_iter()
                    .map(|(l, _)| l)
                    .filter(|&l| l > 0)
                    .collect();
                let advice = if lines.len() > 1 {
                    let list: Vec<String> = lines.iter().map(u32::to_string).collect();
                    format!(
                        "{advice}. It grows at lines {} of this function: one reserve where it \
                         is made serves them all",
                        list.join(", ")
                    )
                } else {
                    advice
                };
                hints.push(Hint {
                    technique,
                    function,
                    file,
                    line,
                    confidence,
                    confidence_basis,
                    advice,
                    evidence: *evidence,
                    saving: *saving,
                    why_not,
                    check,
                    lines,
                    stack: g.stack,
                })
            }
            Verdict::Collecting {
                observations,
                needed,
                eta_secs,
                evidence,
            } => collecting.push(Collecting {
                function,
                file,
                line,
                samples: observations,
                needed,
                eta_secs,
                evidence: *evidence,
            }),
            Verdict::Declined {
                technique,
                reason,
                evidence,
            } => declined.push(Declined {
                technique,
                function,
                file,
                line,
                reason,
                evidence: *evidence,
            }),
            Verdict::Nothing => {}
        }
    }
    // Ranked by what they would save: the larger share, of allocations or
    // of bytes (a site with few, huge blocks matters by its bytes).
    let weight = |s: &Saving| s.share_of_allocs.max(s.share_of_bytes);
    hints.sort_by(|a, b| weight(&b.saving).total_cmp(&weight(&a.saving)));
    hints.truncate(MAX_HINTS);
    let site_weight = |e: &Evidence| e.share_of_allocs.max(e.share_of_bytes);
    collecting.sort_by(|a, b| site_weight(&b.evidence).total_cmp(&site_weight(&a.evidence)));
    collecting.truncate(MAX_HINTS);
    declined.sort_by(|a, b| site_weight(&b.evidence).total_cmp(&site_weight(&a.evidence)));
    declined.truncate(MAX_HINTS);
    HintsReport {
        window_secs: totals.window_secs,
        sample_rate: allocmeter::sample_rate(),
        hints,
        collecting,
        declined,
    }
}

/// Sums the evidence of the sites (each its mechanism, its symbolized
/// stack, innermost program frame first, and its evidence) that fall on
/// one report site: the same first program frame and mechanism. A buffer
/// that grows is one site for its whole function, whatever line it grows
/// at (push_str after push_str): one reserve where it is made serves them
/// all. Such a site is named after its busiest line.
fn group(sites: Vec<(Mechanism, Vec<Frame>, Generation, Censored)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(String, Option<String>, Option<u32>, Mechanism), usize> =
        HashMap::new();
    for (mechanism, stack, window, censored) in sites {
        let Some(leaf) = stack.first().cloned() else {
            continue;
        };
        let growth = matches!(mechanism, Mechanism::VecGrowth | Mechanism::MapGrowth);
        let key = (
            leaf.function.clone(),
            leaf.file.clone(),
            if growth { None } else { leaf.line },
            mechanism,
        );
        let line = (leaf.line.unwrap_or(0), window.all_samples);
        match index.get(&key) {
            Some(&i) => {
                let g = &mut groups[i];
                g.window.merge(&window);
                g.censored.merge(&censored);
                match g.lines.iter_mut().find(|(l, _)| *l == line.0) {
                    Some((_, n)) => *n += line.1,
                    None => g.lines.push(line),
                }
                let busiest = g.lines.iter().max_by_key(|(_, n)| *n).map(|(l, _)| *l);
                if busiest == Some(line.0) {
                    g.leaf = leaf;
                    g.stack = stack;
                }
            }
            None => {
                index.insert(key, groups.len());
                groups.push(Group {
                    leaf,
                    mechanism,
                    stack,
                    window,
                    censored,
                    lines: vec![line],
                });
            }
        }
    }
    groups
}

/// The budget check that would prove a fix at `leaf`.
fn check(technique: Technique, leaf: &Frame, evidence: &Evidence, saving: &Saving) -> String {
    let at = match (&leaf.file, leaf.line) {
        (Some(file), Some(line)) => format!("{} ({file}:{line})", leaf.function),
        _ => leaf.function.clone(),
    };
    let per_call = |what: &str| {
        format!(
            "Measure the call that reaches {at} with allocmeter::allocs_per_run(100, || ...) \
             before and after the change: {what}. Then pin it with \
             allocmeter::assert_allocs!(at_most = N, ...) in a test, N the figure after."
        )
    };
    match technique {
        Technique::Preallocate => per_call(&format!(
            "the growing reallocs ({:.0} a second here) go, leaving one allocation per buffer",
            saving.allocs_per_sec
        )),
        Technique::Reuse | Technique::Format => per_call(
            "with the buffer kept outside the closure, each run allocates one block fewer per \
             block this site made (0 once the buffer has grown to its size)",
        ),
        Technique::Pool => per_call(
            "with a warm pool, each run takes its objects from the pool instead of allocating \
             them",
        ),
        Technique::Stream => format!(
            "Measure the call that reaches {at} with allocmeter::measure(|| ...): its \
             alloc_bytes falls from about {} per input to the chunk's size, and the live heap's \
             peak with it.",
            rules::bytes_text(evidence.final_size_p50.unwrap_or(evidence.size_max))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: u32) -> Frame {
        Frame {
            function: function.to_string(),
            file: Some("/src/report.rs".to_string()),
            line: Some(line),
            system_name: None,
        }
    }

    fn evidence(samples: u32) -> Generation {
        let mut g = Generation::default();
        for _ in 0..samples {
            g.on_sample(4096, 10.0, 1, true, true);
        }
        g
    }

    #[test]
    fn a_buffer_grown_at_several_lines_is_one_site_named_after_the_busiest() {
        let c = Censored::default();
        let groups = group(vec![
            (
                Mechanism::VecGrowth,
                vec![frame("app::report", 112)],
                evidence(3),
                c,
            ),
            (
                Mechanism::VecGrowth,
                vec![frame("app::report", 113)],
                evidence(5),
                c,
            ),
            // Another mechanism, or a plain allocation at another line of
            // the same function, stays apart.
            (
                Mechanism::Format,
                vec![frame("app::report", 101)],
                evidence(7),
                c,
            ),
            (
                Mechanism::Plain,
                vec![frame("app::report", 105)],
                evidence(2),
                c,
            ),
            (
                Mechanism::Plain,
                vec![frame("app::report", 106)],
                evidence(2),
                c,
            ),
        ]);
        assert_eq!(groups.len(), 4);
        let growth = &groups[0];
        assert_eq!(growth.window.all_samples, 8);
        assert_eq!(growth.lines, vec![(112, 3), (113, 5)]);
        assert_eq!(growth.leaf.line, Some(113), "named after its busiest line");
        assert_eq!(groups[2].leaf.line, Some(105));
        assert_eq!(groups[3].leaf.line, Some(106));
    }
}
