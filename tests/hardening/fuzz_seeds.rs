//! Replays every seed of the fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets' checks,
//! so past findings stay fixed on every test run, with or without the fuzz toolchain.

#[path = "../../fuzz/src/lib.rs"]
pub mod checks;

type Check = fn(&[u8]);

#[test]
fn every_fuzz_seed_passes_its_checks() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let targets: [(&str, Check); 6] = [
        ("eio3_polling", checks::eio3_polling),
        ("token_extraction", checks::token_extraction),
        ("upload_sniff", checks::upload_sniff),
        ("history_query", checks::history_query),
        ("event_payload", checks::event_payload),
        ("engine_frames", checks::engine_frames),
    ];
    for (target, check) in targets {
        let mut seeds = 0;
        for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: seed {} fails", path.display());
            seeds += 1;
        }
        assert!(seeds > 0, "{target} has no seeds");
    }
}
