//! Heap profiles in pprof's format, as Go's `net/http/pprof` serves them.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the heap profile assembled from the renderer's sites |
//! | `encode.rs` | the encoder: sites, symbols and mappings to gzipped `profile.proto` |
//! | `proto.rs` | the `profile.proto` messages |
//! | `text.rs` | Go's legacy text form (`?debug=1`) |

mod encode;
pub mod proto;
mod text;

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use encode::{DefaultType, ProfileSite, gzipped, profile_message};

use super::Renderer;
use super::sites::Site;
use crate::aggregate::sites::SiteValues;
use crate::symbols::{Frame, Location, Mapping, current_mappings, program_frames};

/// Builds the gzipped heap profile from the site table, accounted as the
/// exporter's own allocation.
pub(crate) fn heap_profile(renderer: &Renderer, default_type: DefaultType) -> Vec<u8> {
    renderer.account(|| {
        let _quiet = allocmeter::profile::suspend_sampling();
        heap_profile_of(renderer, profile_sites(renderer.sites()), default_type)
    })
}

/// The heap profile of what the sites allocated since `baseline`
/// ([`crate::aggregate::Aggregator::site_values_now`]): Go's delta profile
/// (`?seconds=N`), gzipped `profile.proto` (as in Go, not in the legacy
/// text form, which cannot carry the negative in-use differences).
/// Accounted as the exporter's own allocation.
pub(crate) fn delta_profile(
    renderer: &Renderer,
    baseline: &[(SiteValues, u64)],
    default_type: DefaultType,
) -> Vec<u8> {
    renderer.account(|| {
        let _quiet = allocmeter::profile::suspend_sampling();
        let sites = profile_sites(renderer.sites_since(baseline));
        heap_profile_of(renderer, sites, default_type)
    })
}

/// The heap profile as it stood at the live heap's peak (since start, or
/// with `window` over the peak window), in-use space by default; with
/// `text`, Go's legacy text form. `None` before the first tick. Accounted
/// as the exporter's own allocation.
pub(crate) fn peak_profile(renderer: &Renderer, window: bool, text: bool) -> Option<Vec<u8>> {
    renderer.account(|| {
        let _quiet = allocmeter::profile::suspend_sampling();
        let (_, sites) = renderer.peak_sites(window)?;
        let sites = profile_sites(sites);
        Some(if text {
            heap_text_of(renderer, sites).into_bytes()
        } else {
            heap_profile_of(renderer, sites, DefaultType::InuseSpace)
        })
    })
}

fn heap_profile_of(
    renderer: &Renderer,
    sites: Vec<ProfileSite>,
    default_type: DefaultType,
) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mappings = current_mappings();
    with_resolver(renderer, &mappings, |resolve| {
        gzipped(&profile_message(
            &sites,
            allocmeter::sample_rate(),
            now,
            default_type,
            resolve,
            &mappings,
        ))
    })
}

/// The heap profile in Go's legacy text form (`?debug=1`), accounted as the
/// exporter's own allocation.
pub(crate) fn heap_text_profile(renderer: &Renderer) -> String {
    renderer.account(|| {
        let _quiet = allocmeter::profile::suspend_sampling();
        heap_text_of(renderer, profile_sites(renderer.sites()))
    })
}

fn heap_text_of(renderer: &Renderer, mut sites: Vec<ProfileSite>) -> String {
    let stats = allocmeter::stats_split().program;
    let mappings = current_mappings();
    with_resolver(renderer, &mappings, |resolve| {
        text::heap_text(
            &mut sites,
            allocmeter::sample_rate(),
            &stats,
            &mappings,
            |a| resolve(a).frames.to_vec(),
        )
    })
}

/// Sites as the profiles carry them.
fn profile_sites(sites: Vec<Site>) -> Vec<ProfileSite> {
    sites
        .into_iter()
        .map(|site| ProfileSite {
            stack: site.stack,
            alloc_objects: site.values.alloc_objects.round() as i64,
            alloc_space: site.values.alloc_space.round() as i64,
            inuse_objects: site.values.inuse_objects.round() as i64,
            inuse_space: site.values.inuse_space.round() as i64,
        })
        .collect()
}

/// Runs `f` with the profiles' resolver: an address's frames, with the
/// machinery inlined into program code hidden (as in the site reports), and
/// a shared library's unnamed address named by file and offset.
fn with_resolver<R>(
    renderer: &Renderer,
    mappings: &[Mapping],
    f: impl FnOnce(&mut dyn FnMut(u64) -> Location) -> R,
) -> R {
    let exe = std::env::current_exe().ok();
    renderer.with_symbolizer(|symbolizer| {
        let naming = symbolizer.is_enabled();
        let mut resolve = |address: u64| {
            let mut location = symbolizer.resolve(address);
            let program = program_frames(&location.frames);
            if program.len() < location.frames.len() {
                location.frames = program.to_vec().into();
            }
            if naming && location.frames.is_empty() {
                location.frames = unnamed_in_library(address, mappings, exe.as_deref())
                    .map_or(location.frames, |frame| vec![frame].into());
            }
            location
        };
        f(&mut resolve)
    })
}

/// A frame for an address in a shared library that has no name for it (a
/// stripped library's local function, such as glibc's `start_thread` at the
/// bottom of every thread's stack): named after the file and the offset in
/// it, `libc.so.6+0x661f4`. Without it the library's mapping would say it
/// has no functions, and `go tool pprof`, fetching the profile over HTTP,
/// asks the server to symbolize it (`POST /debug/pprof/symbol`, which this
/// exporter does not serve) and fails. The program's own file is left
/// unnamed there, for pprof to symbolize offline from an unstripped copy.
fn unnamed_in_library(
    address: u64,
    mappings: &[Mapping],
    exe: Option<&std::path::Path>,
) -> Option<Frame> {
    let m = mappings
        .iter()
        .find(|m| (m.memory_start..m.memory_limit).contains(&address))?;
    if exe.is_some_and(|exe| exe == std::path::Path::new(&m.filename)) {
        return None;
    }
    let name = m.filename.rsplit('/').next().unwrap_or(&m.filename);
    let offset = address - m.memory_start + m.file_offset;
    Some(Frame {
        function: format!("{name}+{offset:#x}"),
        file: None,
        line: None,
        system_name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(filename: &str, start: u64, offset: u64) -> Mapping {
        Mapping {
            memory_start: start,
            memory_limit: start + 0x1000,
            file_offset: offset,
            filename: filename.to_string(),
            build_id: String::new(),
        }
    }

    #[test]
    fn a_library_s_unnamed_address_is_named_by_file_and_offset_the_program_s_is_not() {
        let maps = [
            mapping("/usr/bin/app", 0x1000, 0),
            mapping("/lib/x86_64-linux-gnu/libc.so.6", 0x7000, 0x26000),
        ];
        let exe = std::path::Path::new("/usr/bin/app");
        let frame = unnamed_in_library(0x7010, &maps, Some(exe)).expect("named");
        assert_eq!(frame.function, "libc.so.6+0x26010");
        assert_eq!((frame.file, frame.line), (None, None));
        assert_eq!(unnamed_in_library(0x1010, &maps, Some(exe)), None);
        assert_eq!(unnamed_in_library(0x9000, &maps, Some(exe)), None);
    }
}
