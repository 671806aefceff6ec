//! The file state store: conditional saves, atomic replacement, clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{Phase, RolloutStatus};
use shiftgate::router::Version;
use shiftgate::store::file::FileStore;
use shiftgate::store::{StateStore, StoreError};

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

fn status(weight: u8) -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        canary_weight: weight,
        ..RolloutStatus::default()
    }
}

#[tokio::test]
async fn saves_round_trip_and_versions_grow() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    assert!(store.load(&policy()).await.unwrap().is_none());

    let v1 = store.save(&policy(), &status(0), None).await.unwrap();
    let v2 = store.save(&policy(), &status(30), Some(&v1)).await.unwrap();
    assert_ne!(v1, v2);
    let (loaded, version) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(loaded, status(30));
    assert_eq!(version, v2);
    assert!(dir.path().join("shop/checkout.json").is_file());
}

#[tokio::test]
async fn stale_writes_conflict_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let v1 = store.save(&policy(), &status(0), None).await.unwrap();
    store.save(&policy(), &status(30), Some(&v1)).await.unwrap();

    let stale = store.save(&policy(), &status(60), Some(&v1)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let create_again = store.save(&policy(), &status(60), None).await;
    assert!(matches!(create_again, Err(StoreError::Conflict { .. })));
    let garbage = store
        .save(&policy(), &status(60), Some(&Version("x".into())))
        .await;
    assert!(matches!(garbage, Err(StoreError::Conflict { .. })));
    assert_eq!(store.load(&policy()).await.unwrap().unwrap().0, status(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_from_one_version_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(dir.path()));
    let base = store.save(&policy(), &status(0), None).await.unwrap();
    for round in 0..5u8 {
        let (_, base) = store.load(&policy()).await.unwrap().unwrap();
        let writers: Vec<_> = (0..16u8)
            .map(|i| {
                let store = Arc::clone(&store);
                let base = base.clone();
                tokio::spawn(async move { store.save(&policy(), &status(i), Some(&base)).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, writer) in writers.into_iter().enumerate() {
            match writer.await.unwrap() {
                Ok(_) => winners.push(i as u8),
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => panic!("round {round}: writer {i} failed: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (loaded, _) = store.load(&policy()).await.unwrap().unwrap();
        assert_eq!(loaded.canary_weight, winners[0]);
    }
    assert_ne!(store.load(&policy()).await.unwrap().unwrap().1, base);
}

#[tokio::test]
async fn a_crash_before_the_rename_leaves_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let v1 = store.save(&policy(), &status(30), None).await.unwrap();
    // A writer that died between writing its temp file and renaming it leaves a
    // half-written temp file beside the state file.
    let orphan = dir.path().join("shop/.checkout.crashed.tmp");
    std::fs::write(&orphan, b"{\"generation\": 9, \"status\": {\"pha").unwrap();

    let (loaded, version) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!((loaded, &version), (status(30), &v1));
    // And the next save proceeds from the old version.
    store.save(&policy(), &status(60), Some(&v1)).await.unwrap();
    assert_eq!(store.load(&policy()).await.unwrap().unwrap().0, status(60));
}

#[tokio::test]
async fn a_corrupt_state_file_names_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("shop/checkout.json"), b"{\n  not json").unwrap();
    let err = store.load(&policy()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains("shop/checkout"), "{text}");
    assert!(text.contains("checkout.json:2:"), "{text}");
}

#[tokio::test]
async fn an_unwritable_dir_says_what_to_do() {
    // Root ignores permission bits, so point the store below a regular file instead.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let store = FileStore::new(&file);
    let err = store.save(&policy(), &status(0), None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Io { .. }), "{text}");
    assert!(text.contains("shop/checkout"), "{text}");
    assert!(text.contains("not-a-dir"), "{text}");
    assert!(text.contains("--state-dir"), "{text}");
}
