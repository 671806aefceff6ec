#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn into_json_is_what_serializing_the_object_gives() {
    let sent = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "checkout", "namespace": "shop", "resourceVersion": "42",
            "labels": { "team": "payments" },
        },
        "spec": { "hosts": ["checkout"], "http": [{ "route": [{ "weight": 100 }] }] },
        "status": { "observedGeneration": 3 },
        "unknownField": { "kept": true },
    });
    let object: DynamicObject = serde_json::from_value(sent.clone()).unwrap();
    let serialized = serde_json::to_value(&object).unwrap();
    assert_eq!(into_json(object).unwrap(), serialized);
    assert_eq!(serialized, sent);
}

#[test]
fn the_kept_text_parses_back_to_the_object() {
    let object = serde_json::json!({
        "metadata": { "name": "checkout", "annotations": { "note": "a \"quoted\" é" } },
        "spec": { "http": [{ "route": [{ "weight": 33 }, { "weight": 67.5 }] }], "empty": {} },
    });
    assert_eq!(JsonText::of(&object).parse().unwrap(), object);
}

#[test]
fn cached_objects_leave_out_managed_fields_and_the_last_applied_copy() {
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "checkout", "namespace": "shop", "resourceVersion": "42",
            "annotations": { LAST_APPLIED: "{\"spec\":{}}", "team": "payments" },
            "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
        },
        "spec": { "hosts": ["checkout"] },
    }))
    .unwrap();
    let cached = into_json(object).unwrap();
    assert_eq!(
        cached["metadata"],
        serde_json::json!({
            "name": "checkout", "namespace": "shop", "resourceVersion": "42",
            "annotations": { "team": "payments" },
        })
    );
}

fn entry(weight: u8, version: &str, written_at: Option<Instant>) -> Entry {
    Entry {
        text: JsonText::of(&serde_json::json!({ "weight": weight })),
        version: Version(version.to_owned()),
        written_at,
    }
}

fn weights(objects: &HashMap<String, Entry>) -> Vec<(String, u64)> {
    let mut weights: Vec<(String, u64)> = objects
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                e.text.parse().unwrap()["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    weights.sort();
    weights
}

#[test]
fn a_relist_keeps_our_write_it_does_not_show_yet() {
    let now = Instant::now();
    let held = HashMap::from([
        // Written after the list read its page: the list shows the version before.
        ("ours".to_owned(), entry(50, "12", Some(now))),
        // Written long ago: the watch is trusted again, whatever it shows.
        (
            "old".to_owned(),
            entry(20, "3", now.checked_sub(TRUST_OWN_WRITE_FOR * 2)),
        ),
        // Watched, not written by us: the list is newer.
        ("theirs".to_owned(), entry(0, "4", None)),
        // Deleted since.
        ("gone".to_owned(), entry(10, "5", Some(now))),
    ]);
    let listed = HashMap::from([
        ("ours".to_owned(), entry(0, "9", None)),
        ("old".to_owned(), entry(30, "7", None)),
        ("theirs".to_owned(), entry(40, "8", None)),
        ("new".to_owned(), entry(60, "10", None)),
    ]);
    let objects = relisted(held, listed, now);
    assert_eq!(
        weights(&objects),
        [("new", 60), ("old", 30), ("ours", 50), ("theirs", 40)]
            .map(|(n, w)| (n.to_owned(), w))
            .to_vec()
    );
}

#[test]
fn a_relist_that_shows_our_write_replaces_it() {
    let now = Instant::now();
    let held = HashMap::from([("ours".to_owned(), entry(50, "12", Some(now)))]);
    let listed = HashMap::from([("ours".to_owned(), entry(50, "12", None))]);
    let objects = relisted(held, listed, now);
    assert_eq!(objects["ours"].written_at, None);
}

#[test]
fn the_index_is_built_once_and_again_after_a_change() {
    fn host(value: &Value) -> Option<String> {
        value["host"].as_str().map(str::to_owned)
    }
    let mut watched = Watched::default();
    for (name, h) in [("a", "x"), ("b", "y"), ("c", "x")] {
        watched.objects_mut().insert(
            name.to_owned(),
            Entry {
                text: JsonText::of(&serde_json::json!({ "host": h })),
                version: Version("1".to_owned()),
                written_at: None,
            },
        );
    }
    let first = index_of(&mut watched, host);
    assert_eq!(first["x"].len(), 2);
    assert_eq!(first["y"].len(), 1);
    assert!(Arc::ptr_eq(&first, &index_of(&mut watched, host)));
    watched.objects_mut().remove("a");
    let after = index_of(&mut watched, host);
    assert_eq!(after["x"].len(), 1);
    // The index shares the cache's texts: no parsed tree per object is kept.
    assert!(Arc::ptr_eq(&after["y"][0].0, &watched.objects["b"].text.0));
}
