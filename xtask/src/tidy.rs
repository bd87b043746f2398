//! `cargo xtask tidy`: what the docs and conventions say about the tree, checked mechanically
//! so they stay true (run by `cargo xtask ci` before the build):
//!
//! - every source file opens with a `//!` line saying what it is for;
//! - every file with an `unsafe` block is named in docs/ARCHITECTURE.md, which says why;
//! - container label names (`io.orchestrator.<name>`) appear in non-test code only in
//!   runtime-docker's label module: one place decides what a container is labelled with.
//!
//! (That every route of the OpenAPI document is in the README's route table is a test of
//! api-actix, which has the document: `tests/readme_routes.rs`.)

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::sh;

/// The one place container labels are named.
const LABEL_MODULE: &str = "crates/runtime-docker/src/labels.rs";

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

/// The source files the rules read: each crate's and binary's `src`, and xtask's.
fn sources(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for group in ["crates", "bins"] {
        for member in std::fs::read_dir(root.join(group))? {
            let src = member?.path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut found)?;
            }
        }
    }
    rust_files(&root.join("xtask/src"), &mut found)?;
    found.sort();
    Ok(found)
}

/// The file's text before its first `#[cfg(test)]`: what ships.
fn shipped(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// What the rules say about one file, by its path relative to the root.
fn problems_in(relative: &str, text: &str, architecture: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !text.trim_start().starts_with("//!") {
        problems.push(format!("{relative}: does not open with a `//!` line saying what it is for"));
    }
    let code = shipped(text);
    let has_unsafe_block = code.lines().any(|l| {
        let l = l.trim_start();
        !l.starts_with("//") && (l.contains("unsafe {") || l.ends_with("unsafe"))
    });
    let file_name = Path::new(relative).file_name().and_then(|f| f.to_str()).unwrap_or(relative);
    if has_unsafe_block && !architecture.contains(file_name) {
        problems.push(format!("{relative}: has an `unsafe` block that docs/ARCHITECTURE.md does not name"));
    }
    if relative != LABEL_MODULE && !relative.starts_with("xtask/") {
        for (n, line) in code.lines().enumerate() {
            let names_a_label = line
                .match_indices("io.orchestrator.")
                .any(|(at, found)| line[at + found.len()..].starts_with(|c: char| c.is_ascii_lowercase()));
            if names_a_label {
                problems.push(format!("{relative}:{}: a container label named outside {LABEL_MODULE}", n + 1));
            }
        }
    }
    problems
}

pub fn run() -> Result<()> {
    let root = sh::workspace_root();
    let architecture = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))?;
    let mut problems = Vec::new();
    let files = sources(&root)?;
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap_or(path).to_string_lossy().to_string();
        problems.extend(problems_in(&relative, &std::fs::read_to_string(path)?, &architecture));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        bail!("tidy: {} problem(s) in {} files", problems.len(), files.len());
    }
    println!("tidy: {} files, no problem", files.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_finds_what_it_is_about_and_nothing_else() {
        let arch = "glibc is tuned in `malloc.rs`";
        let ok = "//! Does one thing.\nfn f() {}\n";
        assert!(problems_in("crates/a/src/ok.rs", ok, arch).is_empty());
        assert_eq!(problems_in("crates/a/src/bare.rs", "fn f() {}\n", arch).len(), 1);
        let unsafe_code = "//! Tunes.\nfn f() {\n    unsafe {\n    }\n}\n";
        assert!(problems_in("bins/o/src/malloc.rs", unsafe_code, arch).is_empty(), "named");
        assert_eq!(problems_in("bins/o/src/other.rs", unsafe_code, arch).len(), 1, "not named");
        let labels = "//! Lists.\nconst L: &str = \"io.orchestrator.replica\";\n#[cfg(test)]\nconst T: &str = \"io.orchestrator.x\";\n";
        let found = problems_in("crates/a/src/list.rs", labels, arch);
        assert_eq!(
            found,
            ["crates/a/src/list.rs:2: a container label named outside crates/runtime-docker/src/labels.rs"]
        );
        assert!(problems_in(LABEL_MODULE, labels, arch).is_empty());
        let prefix_only = "//! Reserves.\nconst P: &str = \"io.orchestrator.\";\n";
        assert!(problems_in("crates/core/src/w.rs", prefix_only, arch).is_empty(), "the reserved prefix is no label");
    }
}
