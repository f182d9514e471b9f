//! The layering ARCHITECTURE.md promises, checked against the workspace as cargo sees it
//! (`cargo metadata`): its "Who may depend on whom" table lists every crate with its folder,
//! its kind and the workspace crates it may depend on. The test fails when a crate is missing
//! from the table or sits in another folder, when a crate depends on a workspace crate the
//! table does not allow (a library on a service, most of all), and when a pure crate gains
//! an IO dependency or IO in its source.

#![allow(clippy::unwrap_used)] // Test code: a failed setup should panic loudly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Dependencies that do IO (files, network, databases, async runtimes): a pure crate has none.
const IO_CRATES: &[&str] = &[
    "axum",
    "csv-core",
    "hyper",
    "polars",
    "rdkafka",
    "reqwest",
    "sqlx",
    "tempfile",
    "tokio",
    "tower",
    "tower-http",
    "tracing-loki",
];

/// Source text that does IO, looked for in a pure crate's `src/` (tests and benches may).
const IO_SOURCE: &[&str] = &["std::fs", "std::net", "std::process", "File::", "tokio::"];

#[derive(Debug)]
struct Row {
    folder: String,
    kind: String,
    may_depend_on: BTreeSet<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The table under "### Who may depend on whom": crate name -> row.
fn table() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("### Who may depend on whom")
        .expect("ARCHITECTURE.md has a section \"### Who may depend on whom\"");
    let cell = |c: &str| c.trim().trim_matches('`').to_string();
    let mut rows = BTreeMap::new();
    for line in text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 4, "a row of 4 cells: {line}");
        let may_depend_on = cells[3]
            .split(',')
            .map(cell)
            .filter(|c| !c.is_empty() && c != "—" && c != "-")
            .collect();
        rows.insert(
            cell(cells[0]),
            Row {
                folder: cell(cells[1]),
                kind: cell(cells[2]),
                may_depend_on,
            },
        );
    }
    assert!(rows.len() >= 5, "the table has rows: {rows:?}");
    rows
}

/// Every workspace package: name -> (folder relative to the root, its `[dependencies]` and
/// `[build-dependencies]` names).
fn workspace() -> BTreeMap<String, (String, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = root().canonicalize().unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap().canonicalize().unwrap();
            let folder = match dir.strip_prefix(&root).unwrap() {
                d if d == Path::new("") => ".".to_string(),
                d => d.to_string_lossy().into_owned(),
            };
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                // `kind` is null for [dependencies], "dev" or "build" otherwise.
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), (folder, deps))
        })
        .collect()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // `tests` modules beside the code are tests, which may do IO.
            if path.file_name().is_some_and(|n| n != "tests") {
                rust_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_keeps_to_its_layer() {
    let table = table();
    let workspace = workspace();
    let mut problems = Vec::new();
    for (name, (folder, deps)) in &workspace {
        let Some(row) = table.get(name) else {
            problems.push(format!(
                "{name} ({folder}) is not in ARCHITECTURE.md's \"Who may depend on whom\" table"
            ));
            continue;
        };
        if &row.folder != folder {
            problems.push(format!(
                "{name} is in {folder}, the table says {}",
                row.folder
            ));
        }
        if !["pure", "library", "service", "binary"].contains(&row.kind.as_str()) {
            problems.push(format!(
                "{name}: kind {:?} is not pure, library, service or binary",
                row.kind
            ));
        }
        for dep in deps.iter().filter(|d| workspace.contains_key(*d)) {
            if table.get(dep).is_some_and(|d| d.kind == "service") && row.kind != "binary" {
                problems.push(format!("{name} depends on the service {dep}"));
            } else if row.kind != "binary" && !row.may_depend_on.contains(dep) {
                problems.push(format!(
                    "{name} depends on {dep}, which the table does not allow"
                ));
            }
        }
        if row.kind == "pure" {
            for dep in deps.iter().filter(|d| IO_CRATES.contains(&d.as_str())) {
                problems.push(format!(
                    "{name} is pure but depends on {dep}, which does IO"
                ));
            }
            for dep in deps.iter().filter(|d| workspace.contains_key(*d)) {
                if table.get(dep).is_some_and(|d| d.kind != "pure") {
                    problems.push(format!("{name} is pure but depends on {dep}, which is not"));
                }
            }
            let mut sources = Vec::new();
            rust_sources(&root().join(folder).join("src"), &mut sources);
            for file in sources {
                let text = std::fs::read_to_string(&file).unwrap();
                // The source before its unit tests.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for pattern in IO_SOURCE.iter().filter(|p| code.contains(*p)) {
                    problems.push(format!(
                        "{name} is pure but {} uses {pattern}",
                        file.strip_prefix(root()).unwrap().display()
                    ));
                }
            }
        }
    }
    for name in table.keys().filter(|n| !workspace.contains_key(*n)) {
        problems.push(format!(
            "the table lists {name}, which is not a workspace crate"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
