//! The library's imports go one way. Each top-level module of `src/` may use only the modules
//! its row of [`ALLOWED`] names (the table of docs/src/architecture.md); any other `crate::x` in
//! its non-test code fails this test, and so does a module missing from the table or a cycle
//! in the table. Comments and `#[cfg(test)]` code are not read (a test may build what it
//! tests from anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it may import, lowest layers first:
/// data → augment → backbone / text / head / loss / optim / dist → method → config
/// → eval / export / sequence → train → report → cli (the binary, which may use anything).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("checkpoint", &[]),
    ("device", &["error"]),
    ("precision", &["error"]),
    ("malloc", &[]),
    ("rng", &[]),
    ("data", &["checkpoint", "rng"]),
    ("augment", &["data", "error", "rng"]),
    ("backbone", &["device", "error", "precision"]),
    ("text", &["backbone", "precision"]),
    ("loss", &["error"]),
    ("head", &["backbone", "error", "loss", "precision"]),
    ("optim", &[]),
    ("dist", &["error"]),
    (
        "method",
        &[
            "augment",
            "backbone",
            "data",
            "device",
            "dist",
            "error",
            "head",
            "loss",
            "optim",
            "precision",
            "rng",
            "text",
        ],
    ),
    (
        "config",
        &[
            "backbone",
            "data",
            "device",
            "error",
            "head",
            "loss",
            "method",
            "optim",
            "precision",
        ],
    ),
    (
        "eval",
        &[
            "augment",
            "backbone",
            "checkpoint",
            "config",
            "data",
            "device",
            "error",
            "loss",
            "method",
            "optim",
            "rng",
        ],
    ),
    (
        "export",
        &["augment", "backbone", "checkpoint", "data", "eval"],
    ),
    ("sequence", &["eval", "loss", "optim", "rng"]),
    (
        "train",
        &[
            "augment",
            "backbone",
            "checkpoint",
            "config",
            "data",
            "device",
            "dist",
            "error",
            "eval",
            "export",
            "loss",
            "method",
            "optim",
            "precision",
            "rng",
        ],
    ),
    ("report", &["config", "data", "eval", "rng"]),
];

/// Imports inside a module that must not happen (file prefix, module path it must not use):
/// the decoded-image cache sits under the folder reader, not beside it.
const FORBIDDEN_INSIDE: &[(&str, &str)] = &[("data/cache", "image_folder")];

/// The code of `text` without comments and without what follows `#[cfg(test)]`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            // a `//` inside a string literal would cut the line short: no crate path is lost
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names as `crate::<m>` (also inside `crate::{a, b::c}`).
fn imported(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
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

#[test]
fn imports_follow_the_table_of_allowed_edges() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
        if matches!(module, "main" | "lib" | "cli") {
            continue; // the binary uses the library as a whole; lib.rs declares the modules
        }
        let Some(may) = allowed.get(module) else {
            wrong.push(format!(
                "src/{rel}: module `{module}` is not in ALLOWED: add its row"
            ));
            continue;
        };
        let code = code(&std::fs::read_to_string(f).unwrap());
        for used in imported(&code) {
            if used != module && !may.contains(&used.as_str()) {
                wrong.push(format!("src/{rel}: `{module}` uses crate::{used}"));
            }
        }
        for (prefix, inner) in FORBIDDEN_INSIDE {
            if rel.starts_with(prefix) && code.contains(inner) {
                wrong.push(format!("src/{rel}: uses {inner}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the direction:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_table_has_no_cycle_and_names_only_its_own_modules() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // each row may only name rows above it: the table is in layer order
    for (i, (m, uses)) in ALLOWED.iter().enumerate() {
        for u in *uses {
            let j = ALLOWED.iter().position(|(n, _)| n == u);
            assert!(j.is_some(), "{m} may use `{u}`, which has no row");
            assert!(
                j.unwrap() < i,
                "{m} may use `{u}`, which comes after it: a cycle is possible"
            );
        }
    }
    assert_eq!(allowed.len(), ALLOWED.len(), "a module has two rows");
}

#[test]
fn the_reader_sees_grouped_paths_and_skips_comments_and_tests() {
    let c = code(
        "use crate::{data::X, rng};\n// crate::train in a comment\nlet a = crate::loss::f();\n\
         #[cfg(test)]\nuse crate::cli;",
    );
    let got: Vec<String> = imported(&c).into_iter().collect();
    assert_eq!(got, vec!["data", "loss", "rng"]);
}
