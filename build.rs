//! Embeds every file under `web/` (subfolders included) into the binary: the browser side needs
//! no separate install. Each file is keyed by its path relative to `web/`, with `/` separators
//! (`js/app.js`), which is the path `/assets/…` serves it under.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    // Read when the script runs, not when it was compiled: a copy of the tree that shares
    // `target/` (as `.ci/run` makes) must embed its own files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("web");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    let mut out = String::from(
        "/// (path under web/, contents) of every file in web/ and its subfolders.\n\
         pub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    std::fs::write(dest, out).expect("writing assets.rs");
}

/// Collects (relative name, absolute path) of the files under `dir`, skipping hidden entries.
/// Every folder and file is a rerun trigger: a folder so that an added or removed file
/// rebuilds, a file so that an edit does.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(name) = entry.file_name().into_string() else {
            continue; // a name that is not UTF-8 cannot be a URL path
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(root, &path, files);
        } else if kind.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            let rel = path
                .strip_prefix(root)
                .expect("walked below web/")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((rel, path));
        }
    }
}
