//! The layer map in `src/lib.rs` is true: every `crate::` path in a source
//! file names a module of a lower layer (or of the file's own module).
//! A new dependency that points upward fails here with the file and the
//! path, before it becomes a cycle.

use std::path::Path;

/// Module path prefixes and their layers, as `src/lib.rs` draws them; the
/// longest matching prefix wins.
const LAYERS: &[(&str, u8)] = &[
    ("time", 0),
    ("model", 0),
    ("personality", 0),
    ("strerror", 0),
    ("wire", 1),
    ("config", 1),
    ("control::proto", 1),
    ("kernel::pacing", 1),
    ("cache", 2),
    ("filter", 2),
    ("sync", 2),
    ("kernel", 2),
    ("cli", 2),
    ("node", 3),
    ("kernel::socket", 4),
    ("kernel::events", 4),
    ("channel", 4),
    ("control", 4),
    ("logging", 4),
    ("daemon", 5),
    ("VERSION", 0),
];

fn layer_of(path: &str) -> Option<(&'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            path == *prefix || path.starts_with(&format!("{prefix}::"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// `src/kernel/codec/exp.rs` → `kernel::codec::exp`.
fn module_of(file: &Path, src: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::a::b` path in the text (identifiers only).
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(path.trim_end_matches(':').to_string());
    }
    out
}

#[test]
fn every_dependency_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for f in &files {
        let module = module_of(f, &src);
        if module == "main" || module == "lib" {
            continue;
        }
        let (own_prefix, own) = layer_of(&module)
            .unwrap_or_else(|| panic!("{module}: not in the layer map"));
        let text = std::fs::read_to_string(f).unwrap();
        for path in crate_paths(&text) {
            checked += 1;
            let Some((prefix, layer)) = layer_of(&path) else {
                violations.push(format!(
                    "{}: crate::{path} is in no layer",
                    f.display()
                ));
                continue;
            };
            // Within one entry of the map anything goes (its submodules);
            // kernel::codec may not reach up to kernel::socket.
            if layer >= own && prefix != own_prefix {
                violations.push(format!(
                    "{}: L{own} {module} uses L{layer} crate::{path}",
                    f.display()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} paths found: is the scan broken?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scan_sees_an_upward_path() {
    // The checker itself: a node file naming the daemon is caught.
    let (_, node) = layer_of("node::control").unwrap();
    let (_, daemon) =
        layer_of(&crate_paths("use crate::daemon::Error;")[0]).unwrap();
    assert!(daemon > node);
    assert_eq!(layer_of("kernel::socket"), Some(("kernel::socket", 4)));
    assert_eq!(layer_of("kernel::codec::exp"), Some(("kernel", 2)));
}
