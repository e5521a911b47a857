//! The architecture's invariants as a test (rust-analyzer's `tidy.rs` is the model): what
//! ARCHITECTURE.md says about where things live is checked on every run, so a change that
//! breaks a boundary fails here instead of being noticed in review, or not at all.
//!
//! The rules:
//! - SQL and `rusqlite` belong to the SQLite backend (`crates/store/src/sqlite/`, and store
//!   tests named `sqlite_*.rs`); only the store's manifest may depend on rusqlite.
//! - A `*-proto` crate is pure: it depends on neither tokio nor the store.
//! - A library crate never prints (`println!` and friends, indicatif): it returns what it
//!   found and the faces (the `tegami` binary, the HTTP API) render it.
//! - Every source file begins with its `//!` line saying what it is for.
//! - The operations layer (`ops`) is shared by every face, so it takes none of a face's
//!   tools: no anyhow (it returns typed errors), no clap, no indicatif.
//!
//! `KNOWN` lists the places that break a rule today and are being moved; each entry must
//! still break it, so the list can only shrink.

use std::fs;
use std::path::{Path, PathBuf};

/// (rule, file) pairs that break a rule today, each with the change that will fix it.
const KNOWN: &[(Rule, &str)] = &[];

/// The binaries: faces that may print.
const FACES: &[&str] = &["tegami", "loadgen"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    SqlOutsideBackend,
    RusqliteDependency,
    ProtoNotPure,
    LibraryPrints,
    NoModuleDoc,
    FaceToolInOps,
    RawHtmlInConsole,
}

/// What a face uses to talk to a person, and the operations layer must not.
const FACE_TOOLS: &[&str] = &["anyhow", "clap", "indicatif"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    rule: Rule,
    /// Relative to the root, with `/`.
    file: String,
    detail: String,
}

fn check_tree(root: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    let crates = root.join("crates");
    let mut names: Vec<String> = fs::read_dir(&crates)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in &names {
        let dir = crates.join(name);
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let deps = dependency_names(&manifest);
        let relative = |p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        if name != "store" && deps.iter().any(|d| d == "rusqlite") {
            found.push(Violation {
                rule: Rule::RusqliteDependency,
                file: relative(&dir.join("Cargo.toml")),
                detail: "depends on rusqlite; only the store's SQLite backend may".into(),
            });
        }
        if name.ends_with("-proto") {
            for bad in ["tokio", "store"] {
                if deps.iter().any(|d| d == bad) {
                    found.push(Violation {
                        rule: Rule::ProtoNotPure,
                        file: relative(&dir.join("Cargo.toml")),
                        detail: format!("a protocol crate depends on {bad}"),
                    });
                }
            }
        }
        if name == "ops" {
            for tool in deps.iter().filter(|d| FACE_TOOLS.contains(&d.as_str())) {
                found.push(Violation {
                    rule: Rule::FaceToolInOps,
                    file: relative(&dir.join("Cargo.toml")),
                    detail: format!("the operations layer depends on {tool}, a face's tool"),
                });
            }
        }
        let is_face = FACES.contains(&name.as_str());
        for file in rust_files(&dir.join("src")) {
            let text = fs::read_to_string(&file).unwrap_or_default();
            let rel = relative(&file);
            if !text.trim_start_matches('\u{feff}').starts_with("//!") {
                found.push(Violation {
                    rule: Rule::NoModuleDoc,
                    file: rel.clone(),
                    detail: "does not begin with a `//!` line saying what it is for".into(),
                });
            }
            if !is_face && let Some(line) = prints(&text) {
                found.push(Violation {
                    rule: Rule::LibraryPrints,
                    file: rel.clone(),
                    detail: format!("a library prints: {line}"),
                });
            }
            // The console's pages come from maud templates, which escape every value; HTML
            // marked as already escaped is how script would get into a page.
            if name == "web"
                && let Some(line) = text.lines().find(|l| l.contains("PreEscaped"))
            {
                found.push(Violation {
                    rule: Rule::RawHtmlInConsole,
                    file: rel.clone(),
                    detail: format!("the console marks text as HTML: {}", line.trim()),
                });
            }
            if !rel.starts_with("crates/store/src/sqlite/")
                && let Some(line) = sql(&text)
            {
                found.push(Violation {
                    rule: Rule::SqlOutsideBackend,
                    file: rel.clone(),
                    detail: format!("SQL or rusqlite outside the SQLite backend: {line}"),
                });
            }
        }
        for file in rust_files(&dir.join("tests")) {
            let rel = relative(&file);
            let sqlite_test = name == "store"
                && file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("sqlite_"));
            // This file names what it looks for.
            if sqlite_test || rel == "crates/tegami/tests/tidy.rs" {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap_or_default();
            if let Some(line) = sql(&text) {
                found.push(Violation {
                    rule: Rule::SqlOutsideBackend,
                    file: rel,
                    detail: format!("SQL or rusqlite in a backend-neutral test: {line}"),
                });
            }
        }
    }
    found
}

/// The names under `[dependencies]` (not dev- or build-dependencies: tests may use more).
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            if let Some(name) = line
                .strip_prefix("[dependencies.")
                .and_then(|l| l.strip_suffix(']'))
            {
                names.push(name.trim().to_string());
            }
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.split('.').next().unwrap_or(name).to_string());
            }
        }
    }
    names
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The first line that prints to the terminal, comments aside.
fn prints(text: &str) -> Option<String> {
    const MACROS: [&str; 5] = [
        "println!",
        "eprintln!",
        "print!(",
        "eprint!(",
        "indicatif::",
    ];
    code_lines(text)
        .find(|line| MACROS.iter().any(|m| line.contains(m)))
        .map(|line| line.trim().to_string())
}

/// The first line that names rusqlite or holds a string that reads as SQL. IMAP has a
/// SELECT command too, so a bare SELECT is not enough: SQL's shapes are looked for.
fn sql(text: &str) -> Option<String> {
    const SHAPES: [&str; 7] = [
        "INSERT INTO ",
        "INSERT OR ",
        "DELETE FROM ",
        "CREATE TABLE",
        "CREATE INDEX",
        "CREATE VIRTUAL TABLE",
        "\"PRAGMA ",
    ];
    code_lines(text)
        .find(|line| {
            let select = line.contains("\"SELECT ") && line.contains(" FROM ");
            let update = line.contains("\"UPDATE ") && line.contains(" SET ");
            line.contains("rusqlite") || select || update || SHAPES.iter().any(|s| line.contains(s))
        })
        .map(|line| line.trim().to_string())
}

fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|line| {
        let t = line.trim_start();
        !(t.starts_with("//") || t.starts_with("* ") || t.starts_with("/*"))
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_tree_keeps_its_invariants() {
    let found = check_tree(&root());
    let known = |v: &Violation| KNOWN.iter().any(|(r, f)| *r == v.rule && *f == v.file);
    let new: Vec<String> = found
        .iter()
        .filter(|v| !known(v))
        .map(|v| format!("{:?} {}: {}", v.rule, v.file, v.detail))
        .collect();
    assert!(
        new.is_empty(),
        "the tree breaks its invariants (see the rules at the top of crates/tegami/tests/tidy.rs):\n{}",
        new.join("\n")
    );
    let fixed: Vec<String> = KNOWN
        .iter()
        .filter(|(r, f)| !found.iter().any(|v| v.rule == *r && v.file == *f))
        .map(|(r, f)| format!("{r:?} {f}"))
        .collect();
    assert!(
        fixed.is_empty(),
        "fixed, so take them off KNOWN in crates/tegami/tests/tidy.rs:\n{}",
        fixed.join("\n")
    );
}

#[test]
fn each_rule_catches_a_planted_violation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    // A clean tree first: the same shapes in their allowed places, and IMAP's SELECT.
    write(
        "crates/store/Cargo.toml",
        "[package]\nname = \"store\"\n\n[dependencies]\nrusqlite.workspace = true\n",
    );
    write(
        "crates/store/src/sqlite/mod.rs",
        "//! The backend.\nconst Q: &str = \"SELECT id FROM accounts\";\n",
    );
    write(
        "crates/store/tests/sqlite_layout.rs",
        "//! Pragmas.\nuse rusqlite::Connection;\n",
    );
    write(
        "crates/imap-proto/Cargo.toml",
        "[package]\nname = \"imap-proto\"\n\n[dependencies]\nthiserror = \"2\"\n\n[dev-dependencies]\ntokio = \"1\"\n",
    );
    write(
        "crates/imap-proto/src/lib.rs",
        "//! IMAP.\nconst S: &str = \"SELECT INBOX\";\n// println!(\"a comment\")\n",
    );
    write("crates/tegami/Cargo.toml", "[package]\nname = \"tegami\"\n");
    write(
        "crates/tegami/src/main.rs",
        "//! The CLI.\nfn main() { println!(\"hi\"); }\n",
    );
    write(
        "crates/ops/Cargo.toml",
        "[package]\nname = \"ops\"\n\n[dependencies]\nstore.workspace = true\n\n[dev-dependencies]\nanyhow = \"1\"\n",
    );
    write("crates/ops/src/lib.rs", "//! Operations.\n");
    assert_eq!(check_tree(root), Vec::new());

    // Then one planted violation per rule.
    write(
        "crates/smtp-proto/Cargo.toml",
        "[package]\nname = \"smtp-proto\"\n\n[dependencies]\ntokio = { workspace = true }\n",
    );
    write("crates/smtp-proto/src/lib.rs", "//! SMTP.\n");
    write(
        "crates/ops/Cargo.toml",
        "[package]\nname = \"ops\"\n\n[dependencies]\nstore.workspace = true\nindicatif = \"0.18\"\n",
    );
    write(
        "crates/gate/Cargo.toml",
        "[package]\nname = \"gate\"\n\n[dependencies.rusqlite]\nversion = \"0.37\"\n",
    );
    write(
        "crates/gate/src/lib.rs",
        "//! Gate.\npub fn f() { eprintln!(\"oops\"); }\n",
    );
    write("crates/gate/src/nodoc.rs", "pub fn g() {}\n");
    write(
        "crates/web/Cargo.toml",
        "[package]\nname = \"tegami-web\"\n",
    );
    write(
        "crates/web/src/lib.rs",
        "//! Console.\nfn f(s: String) -> maud::PreEscaped<String> { maud::PreEscaped(s) }\n",
    );
    write(
        "crates/store/src/archive.rs",
        "//! Archives.\nconst Q: &str = \"INSERT INTO fts(text) VALUES (?1)\";\n",
    );
    write(
        "crates/store/tests/conformance.rs",
        "//! Any backend.\nconst Q: &str = \"UPDATE messages SET flags = 0\";\n",
    );
    let found: Vec<(Rule, String)> = check_tree(root)
        .into_iter()
        .map(|v| (v.rule, v.file))
        .collect();
    let want = [
        (Rule::RusqliteDependency, "crates/gate/Cargo.toml"),
        (Rule::LibraryPrints, "crates/gate/src/lib.rs"),
        (Rule::NoModuleDoc, "crates/gate/src/nodoc.rs"),
        (Rule::FaceToolInOps, "crates/ops/Cargo.toml"),
        (Rule::RawHtmlInConsole, "crates/web/src/lib.rs"),
        (Rule::ProtoNotPure, "crates/smtp-proto/Cargo.toml"),
        (Rule::SqlOutsideBackend, "crates/store/src/archive.rs"),
        (Rule::SqlOutsideBackend, "crates/store/tests/conformance.rs"),
    ];
    for (rule, file) in want {
        assert!(
            found.iter().any(|(r, f)| *r == rule && f == file),
            "{rule:?} not reported for {file}: {found:?}"
        );
    }
    assert_eq!(found.len(), want.len(), "{found:?}");
}
