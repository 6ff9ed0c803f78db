//! The SQLite store runs the suite every store runs ([`pacerelle_core::store_conformance`]),
//! reopening its file between steps.

use pacerelle_store_sqlite::SqliteStore;
use std::path::PathBuf;

#[test]
fn the_sqlite_store_passes_the_suite() {
    let root = std::env::temp_dir().join(format!("pacerelle-store-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut made = 0;
    pacerelle_core::store_conformance::run(
        || {
            made += 1;
            SqliteStore::open_in(&root, &format!("agent-{made}")).expect("opens")
        },
        |store| {
            let path: PathBuf = store.path().to_owned();
            drop(store);
            SqliteStore::open(&path).expect("reopens")
        },
    );
    std::fs::remove_dir_all(&root).unwrap();
}
