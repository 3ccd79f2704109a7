//! Package database targets (rpm, apk).

use origami_introspect::disk::package::{apk, rpm};

/// Any bytes as an rpm header blob: a package or a typed error, never a panic; the string
/// arrays and integer arrays of the file list read within their bounds, and the file list
/// built from them within its own.
pub fn rpm_header(data: &[u8]) {
    use rpm::header::{tag, Header};
    if let Ok(p) = rpm::parse_package(data) {
        let _ = rpm::to_package(p);
    }
    if let Ok(h) = Header::parse(data) {
        assert!(h.len() <= rpm::header::MAX_INDEX_ENTRIES as usize);
        let names = h.strings(tag::BASENAMES, 1 << 16).unwrap_or_default();
        let dirs = h.numbers32(tag::DIRINDEXES, 1 << 16).unwrap_or_default();
        assert!(names.len() <= 1 << 16 && dirs.len() <= 1 << 16);
        if let Ok(files) = h.file_list() {
            assert!(files.len() <= rpm::header::MAX_FILES as usize);
            let bytes: usize = files.iter().map(String::len).sum();
            // lossy UTF-8 may grow a byte to three
            assert!(bytes <= 3 * rpm::header::MAX_FILE_LIST_BYTES);
        }
    }
}

/// Any bytes as an rpm database file: the first byte picks the reader (even: SUSE NDB,
/// odd: Berkeley DB hash), the rest is the file. Packages or errors, never a panic.
pub fn rpm_db(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let format = if pick % 2 == 0 {
        rpm::Format::Ndb
    } else {
        rpm::Format::Bdb
    };
    let (packages, _errors) = rpm::read_database(format, file, "fuzz");
    assert!(packages.len() <= rpm::MAX_PACKAGES);
}

/// Any bytes as apk's `/lib/apk/db/installed`: packages or errors, never a panic, every
/// package with a name and a version.
pub fn apk_installed(data: &[u8]) {
    let (packages, errors) = apk::parse_installed(data, "/lib/apk/db/installed");
    assert!(errors.len() <= 11);
    for p in packages {
        assert!(!p.name.is_empty() && !p.version.is_empty());
    }
}
