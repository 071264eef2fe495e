//! The pprof encoder: call sites with their values, a symbolizer callback
//! and the process's mappings in; a gzipped `profile.proto` with the content
//! Go's `/debug/pprof/heap` and `/debug/pprof/allocs` serve out.
//!
//! Pure: it reads only its arguments (the caller resolves addresses).

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::proto;
use crate::symbols::{Frame, Location, Mapping};

/// One call site's values, already unbiased (scaled) estimates.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProfileSite {
    /// Code addresses, leaf first (already "return address - 1"), internal
    /// allocator frames already trimmed.
    pub stack: Vec<u64>,
    /// Objects allocated here since the start.
    pub alloc_objects: i64,
    /// Bytes allocated here since the start.
    pub alloc_space: i64,
    /// Objects allocated here and not yet freed.
    pub inuse_objects: i64,
    /// Bytes allocated here and not yet freed.
    pub inuse_space: i64,
}

impl ProfileSite {
    /// The values in the order of [`SAMPLE_TYPES`].
    fn values(&self) -> [i64; 4] {
        [
            self.alloc_objects,
            self.alloc_space,
            self.inuse_objects,
            self.inuse_space,
        ]
    }
}

/// Which sample type pprof shows by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefaultType {
    /// `/debug/pprof/heap`: `default_sample_type` unset, like Go, so clients
    /// show the last type, `inuse_space`.
    InuseSpace,
    /// `/debug/pprof/allocs`: `default_sample_type = "alloc_space"`.
    AllocSpace,
}

/// The sample types of a heap profile, as Go writes them: (type, unit).
const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// A profile message gzip-compressed, ready to serve.
pub(crate) fn gzipped(profile: &proto::Profile) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&profile.encode_to_vec())
        .expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// The heap profile message of `samples`, as Go's `/debug/pprof/heap`
/// writes one (serve it [`gzipped`]).
///
/// `sample_rate` is the mean sampling distance in bytes (the profile's
/// period), `time_nanos` the wall clock when the profile was taken, `resolve`
/// symbolizes one address (called once per distinct address), `mappings` are
/// the process's executable mappings.
pub(crate) fn profile_message(
    samples: &[ProfileSite],
    sample_rate: u64,
    time_nanos: i64,
    default_type: DefaultType,
    resolve: &mut dyn FnMut(u64) -> Location,
    mappings: &[Mapping],
) -> proto::Profile {
    let mut builder = ProfileBuilder::new(mappings);
    let sample_type = SAMPLE_TYPES
        .iter()
        .map(|&(kind, unit)| builder.value_type(kind, unit))
        .collect();
    let period_type = Some(builder.value_type("space", "bytes"));
    let default_sample_type = match default_type {
        DefaultType::InuseSpace => 0,
        DefaultType::AllocSpace => builder.string("alloc_space"),
    };
    let sample = samples
        .iter()
        .filter(|s| s.values() != [0; 4])
        .map(|s| proto::Sample {
            location_id: s
                .stack
                .iter()
                .map(|&address| builder.location(address, resolve))
                .collect(),
            value: s.values().to_vec(),
            label: Vec::new(),
        })
        .collect();
    let mut profile = builder.finish();
    profile.sample_type = sample_type;
    profile.sample = sample;
    profile.period_type = period_type;
    profile.period = i64::try_from(sample_rate).unwrap_or(i64::MAX);
    profile.time_nanos = time_nanos;
    profile.default_sample_type = default_sample_type;
    profile
}

/// Whether a mapping's locations were symbolized, as Go's profile builder
/// tracks it: its `has_*` flags are set only if it has locations and all of
/// them resolved (otherwise pprof may symbolize it offline).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Symbolized {
    /// No location in this mapping yet.
    Unused,
    /// Every location so far resolved to frames.
    All,
    /// Some location did not resolve.
    NotAll,
}

/// Collects the interned strings, mappings, locations and functions of a
/// profile. Ids are indices + 1.
struct ProfileBuilder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    mappings: Vec<(proto::Mapping, Symbolized)>,
    locations: Vec<proto::Location>,
    location_ids: HashMap<u64, u64>,
    functions: Vec<proto::Function>,
    /// Function id by (name, file) string indices.
    function_ids: HashMap<(i64, i64), u64>,
}

impl ProfileBuilder {
    /// A builder holding the given mappings, with ids 1, 2, …
    fn new(mappings: &[Mapping]) -> Self {
        let mut builder = ProfileBuilder {
            strings: vec![String::new()],
            string_ids: HashMap::from([(String::new(), 0)]),
            mappings: Vec::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
        };
        for (id, m) in (1..).zip(mappings) {
            let mapping = proto::Mapping {
                id,
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: builder.string(&m.filename),
                build_id: builder.string(&m.build_id),
                ..Default::default()
            };
            builder.mappings.push((mapping, Symbolized::Unused));
        }
        builder
    }

    /// The string table index of `s`, adding it if new.
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = i64::try_from(self.strings.len()).expect("fewer than 2^63 strings");
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    /// A value type from its type and unit names.
    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    /// The location id of `address`, resolving and adding it if new.
    fn location(&mut self, address: u64, resolve: &mut dyn FnMut(u64) -> Location) -> u64 {
        if let Some(&id) = self.location_ids.get(&address) {
            return id;
        }
        let resolved = resolve(address);
        let line = resolved
            .frames
            .iter()
            .map(|frame| proto::Line {
                function_id: self.function(frame),
                line: frame.line.map_or(0, i64::from),
                column: 0,
            })
            .collect::<Vec<_>>();
        let mut mapping_id = 0;
        let containing = |(m, _): &&mut (proto::Mapping, Symbolized)| {
            (m.memory_start..m.memory_limit).contains(&address)
        };
        if let Some((mapping, symbolized)) = self.mappings.iter_mut().find(containing) {
            mapping_id = mapping.id;
            *symbolized = if line.is_empty() || *symbolized == Symbolized::NotAll {
                Symbolized::NotAll
            } else {
                Symbolized::All
            };
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        self.location_ids.insert(address, id);
        id
    }

    /// The function id of a frame's (name, file), adding it if new. Its
    /// `system_name` is the name as the object file has it (mangled) where
    /// known, else the name: pprof then keeps a demangled name that differs
    /// from it as it is (see [`Frame`]'s `system_name`).
    fn function(&mut self, frame: &Frame) -> u64 {
        let name = self.string(&frame.function);
        let filename = self.string(frame.file.as_deref().unwrap_or(""));
        if let Some(&id) = self.function_ids.get(&(name, filename)) {
            return id;
        }
        let system_name = match &frame.system_name {
            Some(raw) => self.string(raw),
            None => name,
        };
        let id = self.functions.len() as u64 + 1;
        self.functions.push(proto::Function {
            id,
            name,
            system_name,
            filename,
            start_line: 0,
        });
        self.function_ids.insert((name, filename), id);
        id
    }

    /// The profile with the tables filled in (and nothing else).
    fn finish(self) -> proto::Profile {
        let mapping = self
            .mappings
            .into_iter()
            .map(|(mut mapping, symbolized)| {
                let all = symbolized == Symbolized::All;
                mapping.has_functions = all;
                mapping.has_filenames = all;
                mapping.has_line_numbers = all;
                mapping.has_inline_frames = all;
                mapping
            })
            .collect();
        proto::Profile {
            mapping,
            location: self.locations,
            function: self.functions,
            string_table: self.strings,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::io::Read;
    use std::sync::Arc;

    use flate2::read::GzDecoder;

    use super::*;

    /// A frame with a file and line.
    fn frame(function: &str, file: &str, line: u32) -> Frame {
        Frame {
            function: function.to_string(),
            file: Some(file.to_string()),
            line: Some(line),
            system_name: None,
        }
    }

    /// Fake symbols: 0x1000 is inlined (two frames), 0x2000 and 0x3000 are
    /// plain, 0x1004 is another address in the same function as 0x1000's
    /// outer frame, anything else is unresolved.
    fn fake_resolve(address: u64) -> Location {
        let frames = match address {
            0x1000 => vec![
                frame("alloc::vec::Vec<T>::push", "vec/mod.rs", 10),
                frame("app::cache::insert", "src/cache.rs", 42),
            ],
            0x1004 => vec![frame("app::cache::insert", "src/cache.rs", 44)],
            0x2000 => vec![Frame {
                // A trait impl's frame, with its mangled symbol.
                system_name: Some(
                    "_ZN61_$LT$app..Handler$u20$as$u20$app..Serve$GT$6handle17h0123456789abcdefE"
                        .to_string(),
                ),
                ..frame("<app::Handler as app::Serve>::handle", "src/main.rs", 7)
            }],
            0x3000 => vec![Frame {
                function: "main".to_string(),
                file: None,
                line: None,
                system_name: None,
            }],
            _ => vec![],
        };
        Location {
            frames: Arc::from(frames),
        }
    }

    /// Three sites sharing 0x2000/0x3000, plus an all-zero one.
    fn samples() -> Vec<ProfileSite> {
        let site = |stack: &[u64], v: [i64; 4]| ProfileSite {
            stack: stack.to_vec(),
            alloc_objects: v[0],
            alloc_space: v[1],
            inuse_objects: v[2],
            inuse_space: v[3],
        };
        vec![
            site(&[0x1000, 0x2000, 0x3000], [10, 1024, 4, 512]),
            site(&[0x1004, 0x2000, 0x3000], [3, 3_000_000, 0, 0]),
            site(&[0xdead_0000, 0x3000], [1, 524_288, 1, 524_288]),
            site(&[0x2000], [0, 0, 0, 0]),
        ]
    }

    /// One mapping holding the fake symbols' addresses.
    fn mappings() -> Vec<Mapping> {
        vec![
            Mapping {
                memory_start: 0x1000,
                memory_limit: 0x4000,
                file_offset: 0,
                filename: "/usr/bin/app".to_string(),
                build_id: "abcdef0123".to_string(),
            },
            Mapping {
                memory_start: 0x7f00_0000,
                memory_limit: 0x7f01_0000,
                file_offset: 0x2000,
                filename: "/usr/lib/libc.so.6".to_string(),
                build_id: String::new(),
            },
        ]
    }

    /// Encodes, gunzips and decodes a profile; counts `resolve` calls.
    fn roundtrip(default_type: DefaultType) -> (proto::Profile, HashMap<u64, usize>) {
        let mut calls = HashMap::new();
        let mut resolve = |address| {
            *calls.entry(address).or_default() += 1;
            fake_resolve(address)
        };
        let gz = gzipped(&profile_message(
            &samples(),
            524_288,
            1_700_000_000_000_000_000,
            default_type,
            &mut resolve,
            &mappings(),
        ));
        assert_eq!(gz[..2], [0x1f, 0x8b], "gzip magic");
        let mut raw = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        (proto::Profile::decode(&raw[..]).unwrap(), calls)
    }

    /// The string at a string-table index.
    fn s(profile: &proto::Profile, index: i64) -> &str {
        &profile.string_table[usize::try_from(index).unwrap()]
    }

    #[test]
    fn header_matches_go_heap_profile() {
        let (p, _) = roundtrip(DefaultType::InuseSpace);
        assert_eq!(p.string_table[0], "");
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| (s(&p, t.r#type), s(&p, t.unit)))
            .collect();
        assert_eq!(types, SAMPLE_TYPES);
        let period_type = p.period_type.as_ref().unwrap();
        assert_eq!(
            (s(&p, period_type.r#type), s(&p, period_type.unit)),
            ("space", "bytes")
        );
        assert_eq!(p.period, 524_288);
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(p.default_sample_type, 0);

        let (p, _) = roundtrip(DefaultType::AllocSpace);
        assert_ne!(p.default_sample_type, 0);
        assert_eq!(s(&p, p.default_sample_type), "alloc_space");
    }

    #[test]
    fn samples_keep_values_and_stacks() {
        let (p, _) = roundtrip(DefaultType::InuseSpace);
        let addresses: HashMap<u64, u64> = p.location.iter().map(|l| (l.id, l.address)).collect();
        let expected: Vec<_> = samples()
            .into_iter()
            .filter(|s| s.values() != [0; 4])
            .collect();
        assert_eq!(
            p.sample.len(),
            expected.len(),
            "the all-zero site is skipped"
        );
        for (got, want) in p.sample.iter().zip(&expected) {
            assert_eq!(got.value, want.values());
            let stack: Vec<u64> = got.location_id.iter().map(|id| addresses[id]).collect();
            assert_eq!(stack, want.stack, "leaf first");
        }
    }

    #[test]
    fn ids_are_sequential_unique_and_resolve() {
        let (p, calls) = roundtrip(DefaultType::InuseSpace);
        let sequential = |ids: Vec<u64>| ids == (1..=ids.len() as u64).collect::<Vec<_>>();
        assert!(sequential(p.location.iter().map(|l| l.id).collect()));
        assert!(sequential(p.function.iter().map(|f| f.id).collect()));
        assert!(sequential(p.mapping.iter().map(|m| m.id).collect()));

        let location_ids: HashSet<u64> = p.location.iter().map(|l| l.id).collect();
        let function_ids: HashSet<u64> = p.function.iter().map(|f| f.id).collect();
        for id in p.sample.iter().flat_map(|s| &s.location_id) {
            assert!(location_ids.contains(id));
        }
        for line in p.location.iter().flat_map(|l| &l.line) {
            assert!(function_ids.contains(&line.function_id));
        }

        // One location per distinct address, resolved once each.
        let distinct: HashSet<u64> = samples()
            .iter()
            .filter(|s| s.values() != [0; 4])
            .flat_map(|s| s.stack.clone())
            .collect();
        assert_eq!(p.location.len(), distinct.len());
        assert_eq!(calls.keys().copied().collect::<HashSet<_>>(), distinct);
        assert!(calls.values().all(|&n| n == 1));

        // One function per (name, file): cache::insert is shared by two addresses.
        let names: Vec<_> = p.function.iter().map(|f| s(&p, f.name)).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        // The system name is the mangled symbol where known, so that pprof
        // keeps `<T as Trait>::f` whole; else the name.
        for f in &p.function {
            if s(&p, f.name).starts_with('<') {
                assert!(s(&p, f.system_name).starts_with("_ZN61_$LT$app"));
            } else {
                assert_eq!(f.system_name, f.name);
            }
        }
        let main = p.function.iter().find(|f| s(&p, f.name) == "main").unwrap();
        assert_eq!(main.filename, 0);
    }

    #[test]
    fn locations_carry_lines_innermost_first() {
        let (p, _) = roundtrip(DefaultType::InuseSpace);
        let functions: HashMap<u64, &proto::Function> =
            p.function.iter().map(|f| (f.id, f)).collect();
        let lines = |address: u64| -> Vec<(&str, &str, i64)> {
            let location = p.location.iter().find(|l| l.address == address).unwrap();
            location
                .line
                .iter()
                .map(|line| {
                    let f = functions[&line.function_id];
                    (s(&p, f.name), s(&p, f.filename), line.line)
                })
                .collect()
        };
        assert_eq!(
            lines(0x1000),
            [
                ("alloc::vec::Vec<T>::push", "vec/mod.rs", 10),
                ("app::cache::insert", "src/cache.rs", 42)
            ]
        );
        assert_eq!(lines(0x1004), [("app::cache::insert", "src/cache.rs", 44)]);
        assert_eq!(lines(0x3000), [("main", "", 0)]);
        assert_eq!(lines(0xdead_0000), [], "unresolved: no lines");
    }

    #[test]
    fn locations_point_at_their_mapping() {
        let (p, _) = roundtrip(DefaultType::InuseSpace);
        let mapping_of = |address| {
            p.location
                .iter()
                .find(|l| l.address == address)
                .unwrap()
                .mapping_id
        };
        assert_eq!(mapping_of(0x1000), 1);
        assert_eq!(mapping_of(0x3000), 1);
        assert_eq!(mapping_of(0xdead_0000), 0, "outside every mapping");

        let app = &p.mapping[0];
        assert_eq!(
            (app.memory_start, app.memory_limit, app.file_offset),
            (0x1000, 0x4000, 0)
        );
        assert_eq!(s(&p, app.filename), "/usr/bin/app");
        assert_eq!(s(&p, app.build_id), "abcdef0123");
        assert!(app.has_functions && app.has_filenames && app.has_line_numbers);
        assert!(app.has_inline_frames);
        let libc = &p.mapping[1];
        assert_eq!(libc.file_offset, 0x2000);
        assert_eq!(libc.build_id, 0);
        assert!(!libc.has_functions, "no location there");
    }

    #[test]
    fn mapping_with_an_unresolved_address_is_left_for_offline_symbolization() {
        let samples = [ProfileSite {
            stack: vec![0x1500, 0x2000],
            alloc_objects: 1,
            alloc_space: 8,
            ..Default::default()
        }];
        let p = profile_message(
            &samples,
            1,
            0,
            DefaultType::InuseSpace,
            &mut fake_resolve,
            &mappings(),
        );
        assert_eq!(p.location[0].mapping_id, 1);
        assert!(!p.mapping[0].has_functions);
    }

    #[test]
    fn empty_profile_is_valid() {
        let gz = gzipped(&profile_message(
            &[],
            0,
            0,
            DefaultType::AllocSpace,
            &mut fake_resolve,
            &[],
        ));
        let mut raw = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        let p = proto::Profile::decode(&raw[..]).unwrap();
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.sample_type.len(), 4);
        assert!(p.sample.is_empty() && p.location.is_empty());
    }
}
