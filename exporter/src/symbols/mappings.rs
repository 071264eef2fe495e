//! The executable mappings of the running process, with their GNU build IDs,
//! so that the raw addresses in a profile can be symbolized offline.

/// One executable segment of a loaded object: the main program, a shared
/// library or the vDSO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First address of the segment in memory.
    pub memory_start: u64,
    /// One past the last address of the segment in memory.
    pub memory_limit: u64,
    /// Offset in the file of the byte mapped at `memory_start`.
    pub file_offset: u64,
    /// Path of the object (its name as the dynamic loader knows it).
    pub filename: String,
    /// GNU build ID in lowercase hex; empty if the object has none.
    pub build_id: String,
}

/// A [`Mapping`] with where its object is loaded: a runtime address minus
/// `load_bias` is the address in the file (what its symbols and debug info
/// use).
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// The mapping.
    pub mapping: Mapping,
    /// The object's load bias (`dlpi_addr`).
    pub load_bias: u64,
}

/// The executable segments of every object loaded into this process.
pub(crate) fn current_mappings() -> Vec<Mapping> {
    current_segments().into_iter().map(|s| s.mapping).collect()
}

/// The executable segments of every object loaded into this process, with
/// their load biases.
#[cfg(target_os = "linux")]
pub(crate) fn current_segments() -> Vec<Segment> {
    linux::current_segments()
}

/// The executable segments of every object loaded into this process (only
/// known on Linux).
#[cfg(not(target_os = "linux"))]
pub(crate) fn current_segments() -> Vec<Segment> {
    Vec::new()
}

/// Finds the GNU build ID among ELF notes (the contents of a `PT_NOTE`
/// segment, whose entries are padded to `align` bytes).
fn find_build_id(mut notes: &[u8], align: usize) -> Option<&[u8]> {
    /// Note type of the GNU build ID.
    const NT_GNU_BUILD_ID: u32 = 3;
    while notes.len() >= 12 {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(notes.get(at..at + 4)?.try_into().ok()?))
        };
        let name_len = usize::try_from(word(0)?).ok()?;
        let desc_len = usize::try_from(word(4)?).ok()?;
        let desc_start = 12usize.checked_add(name_len.checked_next_multiple_of(align)?)?;
        let next = desc_start.checked_add(desc_len.checked_next_multiple_of(align)?)?;
        let name = notes.get(12..12 + name_len)?;
        let desc = notes.get(desc_start..desc_start + desc_len)?;
        if word(8)? == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(next..)?;
    }
    None
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{CStr, c_int, c_void};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::{Mapping, Segment, find_build_id, hex};

    /// The program header type of `dl_phdr_info` on this target.
    #[cfg(target_pointer_width = "64")]
    type Phdr = libc::Elf64_Phdr;
    /// The program header type of `dl_phdr_info` on this target.
    #[cfg(target_pointer_width = "32")]
    type Phdr = libc::Elf32_Phdr;

    /// An ELF address or size as `u64`, whatever the target's ELF class.
    fn widen(x: impl Into<u64>) -> u64 {
        x.into()
    }

    /// See [`super::current_segments`].
    pub(super) fn current_segments() -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        // SAFETY: `collect` has the signature dl_iterate_phdr expects, and
        // `data` points to `out`, which outlives the call and is used only
        // through that pointer until it returns.
        unsafe { libc::dl_iterate_phdr(Some(collect), (&raw mut out).cast()) };
        // The loader names the main program "".
        if out.iter().any(|s| s.mapping.filename.is_empty()) {
            let exe = std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/proc/self/exe".to_string());
            for s in out.iter_mut().filter(|s| s.mapping.filename.is_empty()) {
                s.mapping.filename.clone_from(&exe);
            }
        }
        out
    }

    /// Called by `dl_iterate_phdr` once per loaded object; appends the
    /// object's executable segments to the `Vec<Segment>` at `data`.
    /// Returns nonzero (stop) if that panicked, which it should not.
    ///
    /// # Safety
    ///
    /// `info` must point to a valid `dl_phdr_info` whose program headers
    /// and segments are mapped, and `data` to a `Vec<Segment>` that nothing
    /// else uses during the call.
    unsafe extern "C" fn collect(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the caller passes valid, exclusive pointers (above).
            let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Segment>>()) };
            // SAFETY: `info` describes a loaded object (above).
            unsafe { add_object(info, out) }
        }));
        c_int::from(result.is_err())
    }

    /// Appends the executable `PT_LOAD` segments of one loaded object.
    ///
    /// # Safety
    ///
    /// `info` must come from `dl_iterate_phdr`, during its callback.
    unsafe fn add_object(info: &libc::dl_phdr_info, out: &mut Vec<Segment>) {
        if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
            return;
        }
        // SAFETY: the loader gives `dlpi_phnum` program headers at `dlpi_phdr`.
        let headers: &[Phdr] =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = widen(info.dlpi_addr);
        let executable = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0);
        if executable.clone().next().is_none() {
            return;
        }
        let filename = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: `headers` are this object's, and it is loaded at `base`.
        let build_id = unsafe { build_id(base, headers) };
        for header in executable {
            let memory_start = base.wrapping_add(widen(header.p_vaddr));
            out.push(Segment {
                mapping: Mapping {
                    memory_start,
                    memory_limit: memory_start.wrapping_add(widen(header.p_memsz)),
                    file_offset: widen(header.p_offset),
                    filename: filename.clone(),
                    build_id: build_id.clone(),
                },
                load_bias: base,
            });
        }
    }

    /// The hex GNU build ID from the object's `PT_NOTE` segments in memory,
    /// or "" if it has none.
    ///
    /// # Safety
    ///
    /// `headers` must be the program headers of an object loaded at `base`.
    unsafe fn build_id(base: u64, headers: &[Phdr]) -> String {
        // Only notes inside the file-backed part of a loaded segment are in memory.
        let loaded = |start: u64, len: u64| {
            headers.iter().any(|h| {
                let (vaddr, filesz) = (widen(h.p_vaddr), widen(h.p_filesz));
                h.p_type == libc::PT_LOAD
                    && start >= vaddr
                    && start.saturating_add(len) <= vaddr.saturating_add(filesz)
            })
        };
        for note in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
            let (vaddr, len) = (widen(note.p_vaddr), widen(note.p_filesz));
            if !loaded(vaddr, len) {
                continue;
            }
            let (Ok(addr), Ok(len)) = (
                usize::try_from(base.wrapping_add(vaddr)),
                usize::try_from(len),
            ) else {
                continue;
            };
            // SAFETY: the note lies inside a loaded segment's file-backed
            // bytes (checked above), which stay mapped while the loader
            // holds the object during the callback.
            let bytes = unsafe {
                std::slice::from_raw_parts(std::ptr::with_exposed_provenance::<u8>(addr), len)
            };
            let align = if note.p_align == 8 { 8 } else { 4 };
            if let Some(id) = find_build_id(bytes, align) {
                return hex(id);
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ELF note with the given name, type and descriptor, padded to 4.
    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let pad = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(4), 0);
        let mut out = Vec::new();
        for word in [name.len() as u32, desc.len() as u32, kind] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(name);
        pad(&mut out);
        out.extend_from_slice(desc);
        pad(&mut out);
        out
    }

    #[test]
    fn build_id_note_is_found_among_others() {
        let mut notes = note(b"GNU\0", 1, &[0, 0, 0, 0, 3, 2, 0, 0]); // ABI tag
        notes.extend(note(b"Go\0", 3, b"not-gnu"));
        notes.extend(note(b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        assert_eq!(
            find_build_id(&notes, 4),
            Some(&[0xde, 0xad, 0xbe, 0xef, 0x01][..])
        );
        assert_eq!(hex(find_build_id(&notes, 4).unwrap()), "deadbeef01");
    }

    #[test]
    fn build_id_parsing_tolerates_garbage() {
        assert_eq!(find_build_id(&[], 4), None);
        assert_eq!(find_build_id(&note(b"GNU\0", 1, b"x"), 4), None);
        let mut truncated = note(b"GNU\0", 3, &[1; 20]);
        truncated.truncate(30);
        assert_eq!(find_build_id(&truncated, 4), None);
        let mut huge = note(b"GNU\0", 3, &[1; 4]);
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(find_build_id(&huge, 4), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn current_mappings_cover_this_binary_with_its_build_id() {
        let mappings = current_mappings();
        assert!(!mappings.is_empty());
        for m in &mappings {
            assert!(m.memory_start < m.memory_limit, "{m:?}");
            assert!(!m.filename.is_empty(), "{m:?}");
            assert!(
                m.build_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{m:?}"
            );
        }
        let here = current_mappings as fn() -> Vec<Mapping> as usize as u64;
        let main = mappings
            .iter()
            .find(|m| (m.memory_start..m.memory_limit).contains(&here))
            .expect("a mapping contains this test's code");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(main.filename, exe.to_string_lossy());
        // Debian's gcc links with --build-id (SHA-1: 20 bytes).
        assert_eq!(main.build_id.len(), 40, "{main:?}");
    }
}
