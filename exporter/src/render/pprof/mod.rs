//! Heap profiles in pprof's format, as Go's `net/http/pprof` serves them.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the heap profile assembled from the renderer's sites |
//! | `encode.rs` | the encoder: sites, symbols and mappings to gzipped `profile.proto` |
//! | `proto.rs` | the `profile.proto` messages |

mod encode;
pub mod proto;

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use encode::{DefaultType, ProfileSite, gzipped, profile_message};

use super::Renderer;
use crate::symbols::{current_mappings, program_frames};

/// Builds the gzipped heap profile from the site table, accounted as the
/// exporter's own allocation.
pub(crate) fn heap_profile(renderer: &Renderer, default_type: DefaultType) -> Vec<u8> {
    renderer.account(|| heap_profile_now(renderer, default_type))
}

fn heap_profile_now(renderer: &Renderer, default_type: DefaultType) -> Vec<u8> {
    let _quiet = allocmeter::profile::suspend_sampling();
    let sites: Vec<ProfileSite> = renderer
        .sites()
        .into_iter()
        .map(|site| ProfileSite {
            stack: site.stack,
            alloc_objects: site.values.alloc_objects.round() as i64,
            alloc_space: site.values.alloc_space.round() as i64,
            inuse_objects: site.values.inuse_objects.round() as i64,
            inuse_space: site.values.inuse_space.round() as i64,
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mappings = current_mappings();
    renderer.with_symbolizer(|symbolizer| {
        // Machinery inlined into program code is hidden, as in the site reports.
        let mut resolve = |address: u64| {
            let mut location = symbolizer.resolve(address);
            let program = program_frames(&location.frames);
            if program.len() < location.frames.len() {
                location.frames = program.to_vec().into();
            }
            location
        };
        gzipped(&profile_message(
            &sites,
            allocmeter::sample_rate(),
            now,
            default_type,
            &mut resolve,
            &mappings,
        ))
    })
}
