//! Docs that cannot rot: every relative link in README.md and docs/ points at a file of the
//! repository, and every `selfsup <subcommand> …` line they show is accepted by the command
//! line's parser (`selfsup … --help`: a parse, not a run).
mod common;
use std::path::{Path, PathBuf};

const SUBCOMMANDS: &[&str] = &[
    "pretrain",
    "eval",
    "finetune",
    "embed",
    "report",
    "neighbors",
    "export",
    "make-data",
    "cpc",
    "demo",
    "bench",
    "dist-check",
    "cache",
    "config",
];

fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files
}

/// The targets of `[text](target)` links on a line.
fn links(line: &str) -> Vec<String> {
    line.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &line[i + 2..];
            rest.find(')').map(|j| rest[..j].to_string())
        })
        .collect()
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for f in markdown_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for target in links(line) {
                let target = target.split('#').next().unwrap().trim();
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                if !f.parent().unwrap().join(target).exists() {
                    broken.push(format!("{}:{}: {target}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

/// Placeholders the docs use in command templates, and the value each is checked with: a
/// template must still parse once they are filled in. `[--flag X]` (optional) is checked with the
/// flag; `…` ("more of the same") is left out.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("<method>", "simclr"),
    ("<name>", "simclr"),
    ("RUN", "runs/x"),
    ("DATA", "data/x"),
    ("FILE", "out.safetensors"),
    ("F", "safetensors"),
    ("S", "1"),
    ("P", "20"),
    ("N", "96"),
    ("E", "2"),
    ("NAME", "x"),
];
const DROPPED: &[&str] = &["…", "...", "FLAGS", "[settings]"];

/// `selfsup …` commands of a markdown text with the line each starts on: in code lines (indented
/// four spaces, or fenced) to the end of the line, in prose inside a `code span` (which may
/// wrap onto the next line).
fn commands(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut prose = String::new(); // the prose, code lines blanked, newlines kept
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            prose.push('\n');
            continue;
        }
        if fenced || line.starts_with("    ") {
            for (i, _) in line.match_indices("selfsup ") {
                if matches!(line[..i].chars().last(), None | Some(' ' | '/')) {
                    found.push((n + 1, line[i + "selfsup ".len()..].to_string()));
                }
            }
            prose.push('\n');
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let ticks: Vec<usize> = prose.match_indices('`').map(|(i, _)| i).collect();
    for pair in ticks.chunks(2).filter(|p| p.len() == 2) {
        let span = prose[pair[0] + 1..pair[1]].replace('\n', " ");
        let line = prose[..pair[0]].matches('\n').count() + 1;
        for (i, _) in span.match_indices("selfsup ") {
            if matches!(span[..i].chars().last(), None | Some(' ' | '/')) {
                found.push((line, span[i + "selfsup ".len()..].to_string()));
            }
        }
    }
    found
}

/// The arguments of a command (up to a comment or a shell operator), placeholders filled in;
/// None when it does not start with a subcommand (prose such as "selfsup is …").
fn arguments(command: &str) -> Option<Vec<String>> {
    let command = command.split(" #").next().unwrap();
    let mut args = Vec::new();
    for tok in command.split_whitespace() {
        if ["|", "&&", ";", "2>&1", "\\"].contains(&tok) || tok.starts_with('>') {
            break;
        }
        if DROPPED.contains(&tok) {
            continue;
        }
        let tok = tok
            .trim_start_matches('[')
            .trim_end_matches([']', ',', ';', ')']);
        if DROPPED.contains(&tok) || tok.is_empty() {
            continue;
        }
        let mut tok = tok.to_string();
        for (p, v) in PLACEHOLDERS {
            if tok == *p || (p.starts_with('<') && tok.contains(p)) {
                tok = tok.replace(p, v);
            }
        }
        args.push(tok);
    }
    SUBCOMMANDS
        .contains(&args.first()?.as_str())
        .then_some(args)
}

#[test]
fn every_command_line_in_the_docs_parses() {
    // (where, arguments) of every distinct command
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = Vec::new();
    for f in markdown_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for (line, command) in commands(&text) {
            if let Some(args) = arguments(&command) {
                if seen.insert(args.clone()) {
                    todo.push((format!("{}:{line}", f.display()), args));
                }
            }
        }
    }
    assert!(todo.len() > 50, "only {} command lines found", todo.len());
    // four at a time: each parse starts the binary (and loads libtorch)
    let refused: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = todo
            .chunks(todo.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(at, args)| {
                            let o = common::run(common::selfsup().args(args).arg("--help"));
                            let why = String::from_utf8_lossy(&o.stderr);
                            let why = why.lines().next().unwrap_or("").to_string();
                            (!o.status.success())
                                .then(|| format!("{at}: selfsup {}\n    {why}", args.join(" ")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        refused.is_empty(),
        "{} refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

/// The README's methods table lists exactly the registered methods, each once.
#[test]
fn the_readme_methods_table_is_the_registry() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme
        .split("## Methods")
        .nth(1)
        .expect("a Methods section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut listed: Vec<String> = table
        .lines()
        .filter(|l| l.starts_with("| "))
        .filter_map(|l| l.split('|').nth(2))
        .filter_map(|cell| {
            cell.trim()
                .strip_prefix('`')?
                .strip_suffix('`')
                .map(String::from)
        })
        .collect();
    listed.sort();
    let mut registered: Vec<String> = selfsup::method::registry::names()
        .into_iter()
        .map(String::from)
        .collect();
    registered.sort();
    assert_eq!(
        listed, registered,
        "README's methods table against the registry"
    );
}

/// The methods reference of the guide, made from the registry: each method's line, how to run
/// it and its settings with their defaults.
fn methods_reference() -> String {
    let mut page = String::from(
        "# Methods reference\n\n\
         Generated from the method registry (`src/method/registry.rs`) by `tests/docs.rs`, which\n\
         fails when this page and the registry differ; after adding or changing a method,\n\
         `SELFSUP_BLESS=1 cargo test --test docs` writes it again. The settings are each\n\
         method's section `[method.<name>]` with its defaults (`selfsup config --method <name>`\n\
         prints them with the rest of the config); every key is documented on its config struct\n\
         in the method's file. Why each method is built as it is, its loss and its measured\n\
         figures: [Methods and losses](methods.md).\n",
    );
    for e in selfsup::method::registry::REGISTRY {
        // as a config file writes them: [method.<name>] (and its sub-tables)
        let mut section = toml::Table::new();
        section.insert(e.name.into(), toml::Value::Table((e.defaults)()));
        let mut file = toml::Table::new();
        file.insert("method".into(), toml::Value::Table(section));
        let settings = toml::to_string(&file).unwrap();
        page.push_str(&format!(
            "\n## `{name}`\n\n{summary}\n\n    selfsup pretrain --method {name} --data photos --out runs/{name}\n\n\
             Settings, with their defaults:\n\n```toml\n{settings}```\n",
            name = e.name,
            summary = e.summary,
        ));
        if !e.run_files.is_empty() {
            page.push_str(&format!(
                "\nKept in the run folder beside the checkpoint: {}.\n",
                e.run_files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    page
}

#[test]
fn the_methods_reference_page_is_the_registry() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/method-reference.md");
    let want = methods_reference();
    if std::env::var_os("SELFSUP_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the registry: `SELFSUP_BLESS=1 cargo test --test docs` writes it again",
        path.display()
    );
}

/// The repository paths a markdown text names as `scripts/…` or `examples/…` files (`.sh`,
/// `.py`, `.rs`), with their line numbers.
fn script_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for prefix in ["scripts/", "examples/"] {
            for (i, _) in line.match_indices(prefix) {
                // `../shared/bench/…` and the like are outside the repository
                if line[..i].ends_with('/') || line[..i].ends_with('.') {
                    continue;
                }
                let path: String = line[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "_./-".contains(*c))
                    .collect();
                let path = path.trim_end_matches('.').to_string();
                if [".sh", ".py", ".rs"].iter().any(|x| path.ends_with(x)) {
                    out.push((n + 1, path));
                }
            }
        }
    }
    out
}

/// A figure's command must be in the repository: every script the README and the guide name
/// exists (the guide once cited `runs/measure/*.sh`, which git ignores).
#[test]
fn every_script_the_docs_name_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for f in markdown_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("runs/measure/"),
            "{} cites runs/measure/, which git ignores",
            f.display()
        );
        for (n, p) in script_paths(&text) {
            seen += 1;
            if !root.join(&p).is_file() {
                missing.push(format!("{}:{n}: {p}", f.display()));
            }
        }
    }
    assert!(
        seen > 10,
        "only {seen} script paths found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "named but absent:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_script_scan_finds_paths_and_skips_outside_ones() {
    let t = "run `bash scripts/measure/x.sh`.\nsee ../shared/bench/scripts/y.py and examples/z.rs";
    assert_eq!(
        script_paths(t),
        vec![
            (1, "scripts/measure/x.sh".into()),
            (2, "examples/z.rs".into())
        ]
    );
}

/// mdBook builds only what `docs/src/SUMMARY.md` lists: every chapter file must be there.
#[test]
fn the_summary_lists_every_chapter() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: Vec<String> = summary.lines().flat_map(links).collect();
    let mut chapters = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            chapters += 1;
            assert!(listed.contains(&name), "{name} is not in SUMMARY.md");
        }
    }
    assert!(chapters >= 10, "only {chapters} chapters found");
}
