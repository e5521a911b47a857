//! Replays the seed corpus of every fuzz target (fuzz/corpus/<target>/) through the target's
//! function, so the inputs that found bugs, and the seeds that reach each parser's
//! corners, stay tests of the ordinary suite without a fuzzer.

use std::path::Path;

#[test]
fn every_seed_of_every_target_passes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    for (name, target) in fuzz_targets::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: no seed in {}", dir.display());
        for file in &files {
            let data = std::fs::read(file).expect("a seed file");
            // A panic names the file, so a failing seed can be run alone.
            eprintln!("{name}: {}", file.display());
            target(&data);
        }
        total += files.len();
    }
    eprintln!("{total} seeds replayed");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in fuzz_targets::TARGETS {
        let file = dir.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("fuzz_targets::{name}(")),
            "{} calls another target",
            file.display()
        );
    }
}
