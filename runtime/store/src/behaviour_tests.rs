//! The behaviour every [`Store`] must have, run against every implementation
//! (memory, SQLite and Redis, each test on a `redis-server` of its own) so
//! that unit tests on the memory store say something about the others.

use serde_json::json;

use crate::{
    Contact, DEFAULT_KV_STORE, Enrollment, Identity, MemoryStore, NewOutboxMessage, OutboxStatus,
    SqliteStore, Store, StoreError, Write, WriteResult, inbox_key,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs each named test function against a fresh memory store, a fresh SQLite
/// store in a temporary directory (plain, and sealed under a new key) and a
/// fresh Redis.
macro_rules! behaviour_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() -> super::TestResult {
                    super::$name(&crate::MemoryStore::new())
                }
            )*
        }
        mod sqlite {
            $(
                #[test]
                fn $name() -> super::TestResult {
                    let dir = tempfile::tempdir()?;
                    let store = crate::SqliteStore::open(dir.path().join("dripline.db"))?;
                    super::$name(&store)
                }
            )*
        }
        mod sealed_sqlite {
            $(
                #[test]
                fn $name() -> super::TestResult {
                    let dir = tempfile::tempdir()?;
                    let keys = crate::seal::Keyring::parse(&crate::seal::Keyring::new_key_line()?)?;
                    let store = crate::SqliteStore::open_sealed(dir.path().join("dripline.db"), keys)?;
                    super::$name(&store)
                }
            )*
        }
        mod redis {
            $(
                #[test]
                fn $name() -> super::TestResult {
                    let dir = tempfile::tempdir()?;
                    let server = crate::redis::RedisServer::start(dir.path())?;
                    let store = crate::RedisStore::open(&server.url(0))?;
                    super::$name(&store)
                }
            )*
        }
    };
}

behaviour_suite!(
    a_deleted_message_is_gone_from_every_listing_and_its_key_is_free,
    a_value_set_in_a_key_value_store_can_be_read_back_until_deleted,
    key_value_stores_with_different_names_do_not_share_keys,
    a_prefix_scan_returns_only_keys_with_the_prefix_in_order_and_pages_with_after,
    the_inbox_is_peeked_in_arrival_order,
    consuming_an_inbox_record_twice_fails_the_second_batch_and_leaves_it_undone,
    a_dedupe_key_is_newly_marked_once_until_its_mark_expires,
    purging_dedupe_marks_removes_only_expired_ones,
    a_contact_is_found_by_each_of_its_identities,
    a_scan_over_contacts_pages_through_each_of_them_once,
    replacing_a_contacts_identities_frees_the_ones_it_no_longer_has,
    an_identity_of_another_contact_is_refused_and_nothing_changes,
    an_enrollment_version_goes_up_with_every_write,
    a_write_guarded_by_a_stale_enrollment_version_fails_the_whole_batch,
    only_one_active_enrollment_of_a_journey_may_hold_a_key,
    an_enrollment_that_is_no_longer_active_frees_its_key,
    enrollments_of_a_contact_are_listed_by_id,
    an_enrollment_rewritten_for_another_contact_is_listed_under_that_contact,
    several_enrollments_and_contacts_are_read_at_once_one_answer_per_id_in_order,
    only_timers_that_are_due_are_claimed_in_due_order,
    a_claimed_timer_is_not_claimed_again_until_its_lease_expires,
    claiming_respects_the_limit_and_continues_where_it_stopped,
    an_acknowledged_timer_is_gone_but_an_unclaimed_one_survives_an_ack,
    a_timer_set_again_while_claimed_is_a_new_timer_that_an_ack_leaves_alone,
    a_cancelled_timer_is_never_claimed,
    next_due_at_is_the_earliest_moment_a_claim_would_return_a_timer,
    an_outbox_insert_with_a_known_idempotency_key_returns_the_first_message,
    outbox_messages_are_listed_in_insertion_order_and_by_status_and_contact,
    due_messages_are_pending_ones_whose_time_has_come_earliest_first,
    a_recorded_attempt_updates_a_pending_message_and_never_a_sent_one,
    a_suppressed_message_is_kept_but_never_due,
    counters_add_up_and_are_all_listed,
    a_failing_write_undoes_every_earlier_write_of_its_batch,
    a_batch_returns_one_result_per_write_in_order,
    an_empty_batch_does_nothing,
    a_contact_changed_since_it_was_read_fails_the_batch_that_expected_it_unchanged,
    a_released_claim_fires_at_once_but_a_claim_taken_since_is_kept,
    a_claimed_message_is_not_due_until_its_claim_ends_and_is_claimed_once,
    a_key_with_characters_of_every_kind_is_stored_and_scanned_as_given,
);

fn contact(id: &str, identities: Vec<Identity>) -> Contact {
    Contact {
        id: id.to_owned(),
        identities,
        profile: json!({ "first_name": id }),
    }
}

fn enrollment(id: &str, journey: &str, key: Option<&str>, active: bool) -> Enrollment {
    Enrollment {
        id: id.to_owned(),
        journey: journey.to_owned(),
        contact_id: "c1".to_owned(),
        active,
        key: key.map(str::to_owned),
        version: 0,
        state: json!({ "step": "start" }).to_string(),
    }
}

fn message(key: &str, contact_id: &str, at: i64) -> NewOutboxMessage {
    NewOutboxMessage {
        idempotency_key: key.to_owned(),
        contact_id: contact_id.to_owned(),
        channel: "email".to_owned(),
        content: json!({ "subject": key }),
        status: OutboxStatus::Pending,
        created_at_ms: at,
        deliver_at_ms: at,
    }
}

fn keys(timers: &[crate::Timer]) -> Vec<&str> {
    timers.iter().map(|t| t.key.as_str()).collect()
}

fn a_value_set_in_a_key_value_store_can_be_read_back_until_deleted(s: &dyn Store) -> TestResult {
    assert_eq!(s.kv_get("default", "k")?, None);
    assert!(!s.kv_exists("default", "k")?);
    s.kv_set("default", "k", b"v1")?;
    s.kv_set("default", "k", b"v2")?;
    assert_eq!(s.kv_get("default", "k")?, Some(b"v2".to_vec()));
    assert!(s.kv_exists("default", "k")?);
    assert!(s.kv_delete("default", "k")?);
    assert!(!s.kv_delete("default", "k")?);
    assert_eq!(s.kv_get("default", "k")?, None);
    Ok(())
}

fn key_value_stores_with_different_names_do_not_share_keys(s: &dyn Store) -> TestResult {
    s.kv_set("default", "b", b"1")?;
    s.kv_set("default", "a", b"2")?;
    s.kv_set("other", "c", b"3")?;
    assert_eq!(s.kv_keys("default")?, vec!["a", "b"]);
    assert_eq!(s.kv_keys("other")?, vec!["c"]);
    assert_eq!(s.kv_get("other", "a")?, None);
    assert!(s.kv_keys("none")?.is_empty());
    Ok(())
}

fn a_prefix_scan_returns_only_keys_with_the_prefix_in_order_and_pages_with_after(
    s: &dyn Store,
) -> TestResult {
    for key in ["a/2", "a/1", "a", "a0", "b/1", "a/3", "a/\u{10FFFF}"] {
        s.kv_set("default", key, key.as_bytes())?;
    }
    s.kv_set("other", "a/0", b"x")?;
    let scan = |after: Option<&str>, limit| -> Result<Vec<String>, StoreError> {
        Ok(s.kv_scan_prefix("default", "a/", after, limit)?
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k.as_bytes(), v.as_slice());
                k
            })
            .collect())
    };
    assert_eq!(scan(None, 10)?, vec!["a/1", "a/2", "a/3", "a/\u{10FFFF}"]);
    assert_eq!(scan(None, 2)?, vec!["a/1", "a/2"]);
    assert_eq!(scan(Some("a/2"), 2)?, vec!["a/3", "a/\u{10FFFF}"]);
    assert_eq!(scan(Some("a/\u{10FFFF}"), 2)?, Vec::<String>::new());
    // A cursor before the prefix starts at the prefix; one past it ends the scan.
    assert_eq!(scan(Some("0"), 1)?, vec!["a/1"]);
    assert_eq!(scan(Some("z"), 1)?, Vec::<String>::new());
    assert_eq!(s.kv_scan_prefix("default", "", None, 100)?.len(), 7);
    Ok(())
}

fn the_inbox_is_peeked_in_arrival_order(s: &dyn Store) -> TestResult {
    s.apply(&[
        Write::inbox_put(2_000, "b", b"{\"n\":2}".to_vec()),
        Write::inbox_put(1_000, "z", b"{\"n\":1}".to_vec()),
        Write::inbox_put(10_000, "a", b"{\"n\":3}".to_vec()),
    ])?;
    s.kv_set(DEFAULT_KV_STORE, "not-inbox", b"x")?;
    let peeked = s.inbox_peek(10)?;
    let keys: Vec<&str> = peeked.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            inbox_key(1_000, "z"),
            inbox_key(2_000, "b"),
            inbox_key(10_000, "a")
        ]
    );
    assert_eq!(peeked[0].1, b"{\"n\":1}".to_vec());
    assert_eq!(s.inbox_peek(1)?.len(), 1);
    Ok(())
}

fn consuming_an_inbox_record_twice_fails_the_second_batch_and_leaves_it_undone(
    s: &dyn Store,
) -> TestResult {
    let key = inbox_key(1, "e1");
    s.apply(&[Write::inbox_put(1, "e1", b"{}".to_vec())])?;
    s.apply(&[
        Write::MetricAdd {
            name: "events".into(),
            delta: 1,
        },
        Write::inbox_consume(key.clone()),
    ])?;
    let second = s.apply(&[
        Write::MetricAdd {
            name: "events".into(),
            delta: 1,
        },
        Write::inbox_consume(key.clone()),
    ]);
    assert!(matches!(second, Err(StoreError::Gone { key: k, .. }) if k == key));
    assert_eq!(s.metric_get("events")?, 1);
    assert!(s.inbox_peek(10)?.is_empty());
    Ok(())
}

fn a_dedupe_key_is_newly_marked_once_until_its_mark_expires(s: &dyn Store) -> TestResult {
    assert!(!s.dedupe_seen("evt", 0)?);
    assert!(s.dedupe_mark("evt", 0, 100)?);
    assert!(!s.dedupe_mark("evt", 50, 500)?);
    assert!(s.dedupe_seen("evt", 99)?);
    // The failed re-mark left the first expiry in place.
    assert!(!s.dedupe_seen("evt", 100)?);
    assert!(s.dedupe_mark("evt", 100, 200)?);
    assert!(s.dedupe_seen("evt", 150)?);
    Ok(())
}

fn purging_dedupe_marks_removes_only_expired_ones(s: &dyn Store) -> TestResult {
    s.dedupe_mark("old", 0, 10)?;
    s.dedupe_mark("also-old", 0, 20)?;
    s.dedupe_mark("new", 0, 30)?;
    assert_eq!(s.dedupe_purge(20)?, 2);
    assert_eq!(s.dedupe_purge(20)?, 0);
    assert!(s.dedupe_seen("new", 20)?);
    Ok(())
}

fn a_contact_is_found_by_each_of_its_identities(s: &dyn Store) -> TestResult {
    let shopify = Identity::External {
        system: "shopify".into(),
        id: "42".into(),
    };
    let c = contact(
        "c1",
        vec![
            Identity::Email("ann@example.com".into()),
            Identity::Phone("+15550100".into()),
            shopify.clone(),
        ],
    );
    s.contact_put(c.clone())?;
    assert_eq!(s.contact_get("c1")?, Some(c.clone()));
    for identity in &c.identities {
        assert_eq!(s.contact_find_by_identity(identity)?, Some(c.clone()));
    }
    let other_system = Identity::External {
        system: "stripe".into(),
        id: "42".into(),
    };
    assert_eq!(s.contact_find_by_identity(&other_system)?, None);
    assert_eq!(
        s.contact_find_by_identity(&Identity::Email("42".into()))?,
        None
    );
    assert_eq!(s.contact_get("c2")?, None);
    Ok(())
}

fn a_scan_over_contacts_pages_through_each_of_them_once(s: &dyn Store) -> TestResult {
    for i in 0..25 {
        s.contact_put(contact(
            &format!("c{i:02}"),
            vec![Identity::Email(format!("p{i}@example.com"))],
        ))?;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let (page, next) = s.contacts_scan(cursor.as_deref(), 7)?;
        seen.extend(page.into_iter().map(|c| c.id));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    Ok(())
}

fn replacing_a_contacts_identities_frees_the_ones_it_no_longer_has(s: &dyn Store) -> TestResult {
    let old = Identity::Email("old@example.com".into());
    let new = Identity::Email("new@example.com".into());
    s.contact_put(contact("c1", vec![old.clone()]))?;
    s.contact_put(contact("c1", vec![new.clone(), new.clone()]))?;
    assert_eq!(s.contact_find_by_identity(&old)?, None);
    assert_eq!(
        s.contact_get("c1")?.map(|c| c.identities),
        Some(vec![new.clone()])
    );
    s.contact_put(contact("c2", vec![old.clone()]))?;
    assert_eq!(
        s.contact_find_by_identity(&old)?.map(|c| c.id),
        Some("c2".into())
    );
    Ok(())
}

fn an_identity_of_another_contact_is_refused_and_nothing_changes(s: &dyn Store) -> TestResult {
    let shared = Identity::Phone("+15550100".into());
    s.contact_put(contact("c1", vec![shared.clone()]))?;
    let refused = s.apply(&[
        Write::ContactPut(contact("c0", vec![])),
        Write::ContactPut(contact(
            "c2",
            vec![Identity::Email("b@example.com".into()), shared.clone()],
        )),
    ]);
    assert!(
        matches!(refused, Err(StoreError::IdentityTaken { contact_id, .. }) if contact_id == "c1")
    );
    assert_eq!(s.contact_get("c0")?, None);
    assert_eq!(s.contact_get("c2")?, None);
    assert_eq!(
        s.contact_find_by_identity(&Identity::Email("b@example.com".into()))?,
        None
    );
    assert_eq!(
        s.contact_find_by_identity(&shared)?.map(|c| c.id),
        Some("c1".into())
    );
    Ok(())
}

fn an_enrollment_version_goes_up_with_every_write(s: &dyn Store) -> TestResult {
    let mut e = enrollment("e1", "welcome", None, true);
    e.version = 77;
    assert_eq!(s.enrollment_put(e.clone())?, 1);
    e.state = json!({ "step": "wait" }).to_string();
    assert_eq!(s.enrollment_put(e.clone())?, 2);
    let stored = s.enrollment_get("e1")?;
    assert_eq!(stored, Some(Enrollment { version: 2, ..e }));
    Ok(())
}

fn a_write_guarded_by_a_stale_enrollment_version_fails_the_whole_batch(
    s: &dyn Store,
) -> TestResult {
    let e = enrollment("e1", "welcome", None, true);
    let first = s.apply(&[Write::EnrollmentPut {
        enrollment: e.clone(),
        if_version: Some(0),
    }])?;
    assert_eq!(first, vec![WriteResult::Version(1)]);
    // Two workers read version 1; the first to write wins.
    let step = |n: i64| {
        vec![
            Write::OutboxInsert(message(&format!("e1/send/{n}"), "c1", 0)),
            Write::EnrollmentPut {
                enrollment: Enrollment {
                    state: json!({ "worker": n }).to_string(),
                    ..e.clone()
                },
                if_version: Some(1),
            },
        ]
    };
    s.apply(&step(1))?;
    let late = s.apply(&step(2));
    assert!(matches!(
        late,
        Err(StoreError::VersionConflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert_eq!(s.outbox_list(None, 10)?.len(), 1);
    assert_eq!(
        s.enrollment_get("e1")?.map(|e| e.state),
        Some(json!({ "worker": 1 }).to_string())
    );
    let exists = s.apply(&[Write::EnrollmentPut {
        enrollment: enrollment("e1", "welcome", None, true),
        if_version: Some(0),
    }]);
    assert!(matches!(exists, Err(StoreError::VersionConflict { .. })));
    Ok(())
}

fn only_one_active_enrollment_of_a_journey_may_hold_a_key(s: &dyn Store) -> TestResult {
    s.enrollment_put(enrollment("e1", "cart", Some("cart-9"), true))?;
    let second = s.apply(&[Write::EnrollmentPut {
        enrollment: enrollment("e2", "cart", Some("cart-9"), true),
        if_version: None,
    }]);
    assert!(matches!(
        second,
        Err(StoreError::ActiveKeyTaken { enrollment_id, .. }) if enrollment_id == "e1"
    ));
    assert_eq!(s.enrollment_get("e2")?, None);
    // Same key in another journey, and rewriting the holder itself, are fine.
    s.enrollment_put(enrollment("e3", "winback", Some("cart-9"), true))?;
    s.enrollment_put(enrollment("e1", "cart", Some("cart-9"), true))?;
    assert_eq!(
        s.active_enrollment_by_key("cart", "cart-9")?.map(|e| e.id),
        Some("e1".into())
    );
    assert_eq!(s.active_enrollment_by_key("cart", "cart-8")?, None);
    Ok(())
}

fn an_enrollment_that_is_no_longer_active_frees_its_key(s: &dyn Store) -> TestResult {
    s.enrollment_put(enrollment("e1", "cart", Some("k"), true))?;
    // Exiting the old enrollment and entering a new one commit together.
    s.apply(&[
        Write::EnrollmentPut {
            enrollment: enrollment("e1", "cart", Some("k"), false),
            if_version: Some(1),
        },
        Write::EnrollmentPut {
            enrollment: enrollment("e2", "cart", Some("k"), true),
            if_version: Some(0),
        },
    ])?;
    assert_eq!(
        s.active_enrollment_by_key("cart", "k")?.map(|e| e.id),
        Some("e2".into())
    );
    assert_eq!(s.enrollment_get("e1")?.map(|e| e.active), Some(false));
    Ok(())
}

fn enrollments_of_a_contact_are_listed_by_id(s: &dyn Store) -> TestResult {
    s.enrollment_put(enrollment("e2", "a", None, true))?;
    s.enrollment_put(enrollment("e1", "b", None, false))?;
    s.enrollment_put(Enrollment {
        contact_id: "c2".into(),
        ..enrollment("e3", "a", None, true)
    })?;
    let ids: Vec<String> = s
        .enrollments_of_contact("c1")?
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec!["e1", "e2"]);
    assert!(
        s.apply(&[Write::EnrollmentDelete { id: "e1".into() }])? == vec![WriteResult::Flag(true)]
    );
    assert_eq!(s.enrollments_of_contact("c1")?.len(), 1);
    Ok(())
}

fn an_enrollment_rewritten_for_another_contact_is_listed_under_that_contact(
    s: &dyn Store,
) -> TestResult {
    s.enrollment_put(enrollment("e1", "a", None, true))?;
    s.enrollment_put(Enrollment {
        contact_id: "c2".into(),
        ..enrollment("e1", "b", None, true)
    })?;
    assert!(s.enrollments_of_contact("c1")?.is_empty());
    let moved = s.enrollments_of_contact("c2")?;
    assert_eq!(
        moved
            .iter()
            .map(|e| (e.id.as_str(), e.journey.as_str(), e.version))
            .collect::<Vec<_>>(),
        [("e1", "b", 2)]
    );
    Ok(())
}

fn several_enrollments_and_contacts_are_read_at_once_one_answer_per_id_in_order(
    s: &dyn Store,
) -> TestResult {
    s.enrollment_put(enrollment("e1", "a", None, true))?;
    s.enrollment_put(enrollment("e2", "a", None, false))?;
    let found = s.enrollments_get(&["e2", "nope", "e1", "e2"])?;
    assert_eq!(
        found
            .iter()
            .map(|e| e.as_ref().map(|e| e.id.as_str()))
            .collect::<Vec<_>>(),
        [Some("e2"), None, Some("e1"), Some("e2")]
    );
    assert_eq!(found[2], s.enrollment_get("e1")?);
    assert!(s.enrollments_get(&[])?.is_empty());

    let c1 = contact("c1", vec![Identity::Email("c1@example.com".into())]);
    s.contact_put(c1.clone())?;
    assert_eq!(s.contacts_get(&["c0", "c1"])?, [None, Some(c1)]);
    Ok(())
}

fn only_timers_that_are_due_are_claimed_in_due_order(s: &dyn Store) -> TestResult {
    s.timer_set("late", 300, b"3")?;
    s.timer_set("b", 100, b"2")?;
    s.timer_set("a", 100, b"1")?;
    s.timer_set("early", 50, b"0")?;
    let claimed = s.claim_due_timers(100, 10, 1_000)?;
    assert_eq!(keys(&claimed), vec!["early", "a", "b"]);
    assert_eq!(claimed[0].payload, b"0".to_vec());
    assert_eq!(claimed[0].due_at_ms, 50);
    assert_eq!(claimed[0].claimed_until_ms, Some(1_100));
    assert_eq!(s.timers_pending_count()?, 4);
    Ok(())
}

fn a_claimed_timer_is_not_claimed_again_until_its_lease_expires(s: &dyn Store) -> TestResult {
    s.timer_set("t", 100, b"")?;
    assert_eq!(keys(&s.claim_due_timers(100, 10, 50)?), vec!["t"]);
    assert!(s.claim_due_timers(149, 10, 50)?.is_empty());
    // The worker that claimed it never acknowledged it: it comes back.
    let again = s.claim_due_timers(150, 10, 50)?;
    assert_eq!(keys(&again), vec!["t"]);
    assert_eq!(again[0].due_at_ms, 100);
    assert_eq!(again[0].claimed_until_ms, Some(200));
    Ok(())
}

fn claiming_respects_the_limit_and_continues_where_it_stopped(s: &dyn Store) -> TestResult {
    for i in 0..5 {
        s.timer_set(&format!("t{i}"), i, b"")?;
    }
    assert_eq!(keys(&s.claim_due_timers(10, 2, 100)?), vec!["t0", "t1"]);
    assert_eq!(keys(&s.claim_due_timers(10, 2, 100)?), vec!["t2", "t3"]);
    assert_eq!(keys(&s.claim_due_timers(10, 2, 100)?), vec!["t4"]);
    assert!(s.claim_due_timers(10, 2, 100)?.is_empty());
    assert!(s.claim_due_timers(1_000, 0, 100)?.is_empty());
    Ok(())
}

fn an_acknowledged_timer_is_gone_but_an_unclaimed_one_survives_an_ack(s: &dyn Store) -> TestResult {
    s.timer_set("claimed", 1, b"")?;
    s.timer_set("unclaimed", 5, b"")?;
    s.claim_due_timers(1, 10, 10)?;
    assert!(s.timer_ack("claimed")?);
    assert!(!s.timer_ack("claimed")?);
    assert!(!s.timer_ack("unclaimed")?);
    assert_eq!(s.timer_get("claimed")?, None);
    assert!(s.timer_get("unclaimed")?.is_some());
    // An ack after the lease lapsed still counts: the work was done.
    s.claim_due_timers(5, 10, 10)?;
    assert!(s.timer_ack("unclaimed")?);
    assert_eq!(s.timers_pending_count()?, 0);
    Ok(())
}

fn a_timer_set_again_while_claimed_is_a_new_timer_that_an_ack_leaves_alone(
    s: &dyn Store,
) -> TestResult {
    s.timer_set("wait", 10, b"old")?;
    s.claim_due_timers(10, 10, 100)?;
    s.timer_set("wait", 500, b"new")?;
    assert!(!s.timer_ack("wait")?);
    let timer = s.timer_get("wait")?;
    assert_eq!(
        timer.as_ref().map(|t| t.payload.clone()),
        Some(b"new".to_vec())
    );
    assert_eq!(timer.and_then(|t| t.claimed_until_ms), None);
    assert!(s.claim_due_timers(499, 10, 100)?.is_empty());
    assert_eq!(keys(&s.claim_due_timers(500, 10, 100)?), vec!["wait"]);
    Ok(())
}

fn a_cancelled_timer_is_never_claimed(s: &dyn Store) -> TestResult {
    s.timer_set("t", 10, b"")?;
    assert!(s.timer_cancel("t")?);
    assert!(!s.timer_cancel("t")?);
    assert!(s.claim_due_timers(1_000, 10, 10)?.is_empty());
    // Cancelling also removes a claimed timer.
    s.timer_set("u", 10, b"")?;
    s.claim_due_timers(10, 10, 100)?;
    assert!(s.timer_cancel("u")?);
    assert!(s.claim_due_timers(1_000, 10, 10)?.is_empty());
    Ok(())
}

fn next_due_at_is_the_earliest_moment_a_claim_would_return_a_timer(s: &dyn Store) -> TestResult {
    assert_eq!(s.next_due_at()?, None);
    s.timer_set("a", 100, b"")?;
    s.timer_set("b", 300, b"")?;
    assert_eq!(s.next_due_at()?, Some(100));
    s.claim_due_timers(100, 10, 1_000)?;
    // "a" is claimed until 1_100, so "b" is next.
    assert_eq!(s.next_due_at()?, Some(300));
    s.claim_due_timers(300, 10, 500)?;
    assert_eq!(s.next_due_at()?, Some(800));
    Ok(())
}

fn an_outbox_insert_with_a_known_idempotency_key_returns_the_first_message(
    s: &dyn Store,
) -> TestResult {
    let (id, inserted) = s.outbox_insert(message("e1/s1/0", "c1", 10))?;
    assert!(inserted);
    let mut again = message("e1/s1/0", "c1", 20);
    again.content = json!({ "subject": "different" });
    assert_eq!(s.outbox_insert(again)?, (id, false));
    let stored = s.outbox_get(id)?;
    assert_eq!(
        stored
            .as_ref()
            .map(|m| (&m.content, m.status, m.created_at_ms)),
        Some((&json!({ "subject": "e1/s1/0" }), OutboxStatus::Pending, 10))
    );
    assert_eq!(s.outbox_get_by_key("e1/s1/0")?, stored);
    assert_eq!(s.outbox_get_by_key("nope")?, None);
    Ok(())
}

fn a_deleted_message_is_gone_from_every_listing_and_its_key_is_free(s: &dyn Store) -> TestResult {
    let (pending, _) = s.outbox_insert(message("m-pending", "c1", 0))?;
    let (sent, _) = s.outbox_insert(message("m-sent", "c1", 0))?;
    let (kept, _) = s.outbox_insert(message("m-kept", "c2", 0))?;
    assert!(s.outbox_set_status(sent, OutboxStatus::Sent, 5)?);
    let deleted = s.apply(&[
        Write::OutboxDelete { id: pending },
        Write::OutboxDelete { id: sent },
        Write::OutboxDelete { id: 9_999 },
    ])?;
    assert_eq!(
        deleted,
        vec![
            WriteResult::Flag(true),
            WriteResult::Flag(true),
            WriteResult::Flag(false)
        ]
    );
    assert_eq!(s.outbox_get(pending)?, None);
    assert_eq!(s.outbox_get_by_key("m-sent")?, None);
    assert!(s.outbox_of_contact("c1")?.is_empty());
    assert!(s.outbox_due(10, 10)?.iter().all(|m| m.id == kept));
    assert!(s.outbox_with_status(OutboxStatus::Sent, 10)?.is_empty());
    let listed: Vec<i64> = s.outbox_list(None, 10)?.iter().map(|m| m.id).collect();
    assert_eq!(listed, vec![kept]);
    let (again, inserted) = s.outbox_insert(message("m-sent", "c1", 1))?;
    assert!(inserted && again != sent, "the key can be used again");
    Ok(())
}

fn outbox_messages_are_listed_in_insertion_order_and_by_status_and_contact(
    s: &dyn Store,
) -> TestResult {
    let mut ids = Vec::new();
    for (i, contact) in ["c1", "c2", "c1", "c3"].into_iter().enumerate() {
        ids.push(s.outbox_insert(message(&format!("m{i}"), contact, 0))?.0);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let listed: Vec<i64> = s.outbox_list(None, 10)?.iter().map(|m| m.id).collect();
    assert_eq!(listed, ids);
    let page: Vec<i64> = s
        .outbox_list(Some(ids[1]), 1)?
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(page, vec![ids[2]]);
    assert!(s.outbox_set_status(ids[0], OutboxStatus::Sent, 99)?);
    assert!(!s.outbox_set_status(12_345, OutboxStatus::Sent, 99)?);
    let pending: Vec<i64> = s
        .outbox_with_status(OutboxStatus::Pending, 2)?
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(pending, vec![ids[1], ids[2]]);
    let sent = s.outbox_with_status(OutboxStatus::Sent, 10)?;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].updated_at_ms, 99);
    let to_c1: Vec<String> = s
        .outbox_of_contact("c1")?
        .into_iter()
        .map(|m| m.idempotency_key)
        .collect();
    assert_eq!(to_c1, vec!["m0", "m2"]);
    Ok(())
}

fn due_messages_are_pending_ones_whose_time_has_come_earliest_first(s: &dyn Store) -> TestResult {
    let early = s.outbox_insert(message("a", "c1", 0))?.0;
    let mut deferred = message("b", "c1", 0);
    deferred.deliver_at_ms = 500;
    let late = s.outbox_insert(deferred)?.0;
    let mid = s.outbox_insert(message("c", "c2", 100))?.0;
    let ids = |due: Vec<crate::OutboxMessage>| due.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(s.outbox_due(99, 10)?), vec![early]);
    assert_eq!(ids(s.outbox_due(500, 10)?), vec![early, mid, late]);
    assert_eq!(ids(s.outbox_due(500, 2)?), vec![early, mid]);
    s.outbox_set_status(early, OutboxStatus::Sent, 1)?;
    assert_eq!(ids(s.outbox_due(500, 10)?), vec![mid, late]);
    Ok(())
}

fn a_recorded_attempt_updates_a_pending_message_and_never_a_sent_one(s: &dyn Store) -> TestResult {
    let (id, _) = s.outbox_insert(message("a", "c1", 0))?;
    let attempt = |status: OutboxStatus, deliver_at_ms, attempts, error: Option<&str>| {
        Write::OutboxRecordAttempt {
            id,
            status,
            deliver_at_ms,
            attempts,
            last_error: error.map(str::to_owned),
            at_ms: deliver_at_ms,
        }
    };
    let retry = s.apply(&[attempt(OutboxStatus::Pending, 7_200, 1, Some("503"))])?;
    assert_eq!(retry, vec![WriteResult::Flag(true)]);
    let stored = s.outbox_get(id)?.ok_or("gone")?;
    assert_eq!(
        (stored.status, stored.deliver_at_ms, stored.attempts),
        (OutboxStatus::Pending, 7_200, 1)
    );
    assert_eq!(stored.last_error.as_deref(), Some("503"));
    assert!(s.outbox_due(7_199, 10)?.is_empty());
    s.apply(&[attempt(OutboxStatus::Sent, 7_200, 2, None)])?;
    // A replay of the first result after the send was recorded changes nothing.
    let replay = s.apply(&[attempt(OutboxStatus::Pending, 9_000, 1, Some("503"))])?;
    assert_eq!(replay, vec![WriteResult::Flag(false)]);
    let stored = s.outbox_get(id)?.ok_or("gone")?;
    assert_eq!((stored.status, stored.attempts), (OutboxStatus::Sent, 2));
    assert_eq!(stored.last_error, None);
    Ok(())
}

fn a_suppressed_message_is_kept_but_never_due(s: &dyn Store) -> TestResult {
    let mut held = message("a", "c1", 0);
    held.status = OutboxStatus::Suppressed;
    let (id, _) = s.outbox_insert(held)?;
    assert!(s.outbox_due(i64::MAX, 10)?.is_empty());
    assert_eq!(
        s.outbox_get(id)?.map(|m| m.status),
        Some(OutboxStatus::Suppressed)
    );
    Ok(())
}

fn counters_add_up_and_are_all_listed(s: &dyn Store) -> TestResult {
    assert_eq!(s.metric_get("sent")?, 0);
    assert_eq!(s.metric_add("sent", 2)?, 2);
    assert_eq!(s.metric_add("sent", -1)?, 1);
    assert_eq!(s.metric_add("enrolled", 5)?, 5);
    assert_eq!(s.metric_add("big", i64::MAX)?, i64::MAX);
    assert_eq!(s.metric_add("big", 1)?, i64::MAX);
    let all = s.metrics_all()?;
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        vec![
            ("big".to_owned(), i64::MAX),
            ("enrolled".to_owned(), 5),
            ("sent".to_owned(), 1)
        ]
    );
    Ok(())
}

fn a_failing_write_undoes_every_earlier_write_of_its_batch(s: &dyn Store) -> TestResult {
    s.kv_set("default", "kept", b"before")?;
    s.timer_set("kept", 5, b"before")?;
    s.metric_add("m", 1)?;
    let (first_id, _) = s.outbox_insert(message("old", "c1", 0))?;
    s.outbox_set_status(first_id, OutboxStatus::Sent, 1)?;
    let failed = s.apply(&[
        Write::KvSet {
            store: "default".into(),
            key: "kept".into(),
            value: b"after".to_vec(),
        },
        Write::KvSet {
            store: "default".into(),
            key: "new".into(),
            value: b"x".to_vec(),
        },
        Write::KvDelete {
            store: "default".into(),
            key: "kept".into(),
        },
        Write::DedupeMark {
            key: "d".into(),
            now_ms: 0,
            expires_at_ms: 10,
        },
        Write::ContactPut(contact("c1", vec![Identity::Email("a@example.com".into())])),
        Write::EnrollmentPut {
            enrollment: enrollment("e1", "j", Some("k"), true),
            if_version: None,
        },
        Write::TimerSet {
            key: "new".into(),
            due_at_ms: 1,
            payload: vec![],
        },
        Write::TimerCancel { key: "kept".into() },
        Write::OutboxInsert(message("new", "c1", 0)),
        Write::OutboxSetStatus {
            id: first_id,
            status: OutboxStatus::Failed,
            at_ms: 2,
        },
        Write::MetricAdd {
            name: "m".into(),
            delta: 10,
        },
        Write::inbox_consume("inbox/absent"),
    ]);
    assert!(matches!(failed, Err(StoreError::Gone { .. })));
    assert_eq!(s.kv_get("default", "kept")?, Some(b"before".to_vec()));
    assert_eq!(s.kv_get("default", "new")?, None);
    assert!(!s.dedupe_seen("d", 0)?);
    assert_eq!(s.contact_get("c1")?, None);
    assert_eq!(
        s.contact_find_by_identity(&Identity::Email("a@example.com".into()))?,
        None
    );
    assert_eq!(s.enrollment_get("e1")?, None);
    assert_eq!(s.active_enrollment_by_key("j", "k")?, None);
    assert_eq!(s.timer_get("new")?, None);
    assert_eq!(
        s.timer_get("kept")?.map(|t| t.payload),
        Some(b"before".to_vec())
    );
    assert_eq!(s.timers_pending_count()?, 1);
    assert_eq!(s.next_due_at()?, Some(5));
    assert_eq!(s.outbox_get_by_key("new")?, None);
    assert_eq!(
        s.outbox_get(first_id)?.map(|m| m.status),
        Some(OutboxStatus::Sent)
    );
    assert_eq!(s.metric_get("m")?, 1);
    Ok(())
}

fn a_batch_returns_one_result_per_write_in_order(s: &dyn Store) -> TestResult {
    s.timer_set("t", 0, b"")?;
    s.claim_due_timers(0, 1, 10)?;
    let results = s.apply(&[
        Write::KvSet {
            store: "default".into(),
            key: "k".into(),
            value: vec![],
        },
        Write::KvDelete {
            store: "default".into(),
            key: "k".into(),
        },
        Write::DedupeMark {
            key: "d".into(),
            now_ms: 0,
            expires_at_ms: 10,
        },
        Write::DedupeMark {
            key: "d".into(),
            now_ms: 0,
            expires_at_ms: 10,
        },
        Write::DedupePurge { now_ms: 10 },
        Write::EnrollmentPut {
            enrollment: enrollment("e1", "j", None, true),
            if_version: Some(0),
        },
        Write::TimerAck { key: "t".into() },
        Write::OutboxInsert(message("m", "c1", 0)),
        Write::MetricAdd {
            name: "n".into(),
            delta: 3,
        },
    ])?;
    let WriteResult::Outbox { id, inserted: true } = results[7] else {
        return Err("the outbox insert did not insert".into());
    };
    assert_eq!(
        results,
        vec![
            WriteResult::Done,
            WriteResult::Flag(true),
            WriteResult::Flag(true),
            WriteResult::Flag(false),
            WriteResult::Count(1),
            WriteResult::Version(1),
            WriteResult::Flag(true),
            WriteResult::Outbox { id, inserted: true },
            WriteResult::Counter(3),
        ]
    );
    Ok(())
}

fn an_empty_batch_does_nothing(s: &dyn Store) -> TestResult {
    assert!(s.apply(&[])?.is_empty());
    Ok(())
}

fn a_contact_changed_since_it_was_read_fails_the_batch_that_expected_it_unchanged(
    s: &dyn Store,
) -> TestResult {
    let guard = |as_read: Option<Contact>| Write::ContactUnchanged {
        id: "c1".into(),
        as_read,
    };
    // Absent, as expected: the guarded put goes through.
    let first = contact("c1", vec![Identity::Email("a@x.io".into())]);
    s.apply(&[guard(None), Write::ContactPut(first.clone())])?;
    let read = s.contact_get("c1")?;
    assert_eq!(read.as_ref(), Some(&first));
    // Another worker writes it meanwhile.
    let mut theirs = first.clone();
    theirs.profile = json!({ "first_name": "theirs" });
    s.contact_put(theirs.clone())?;
    let mut ours = first.clone();
    ours.profile = json!({ "first_name": "ours" });
    let refused = s.apply(&[
        Write::MetricAdd {
            name: "m".into(),
            delta: 1,
        },
        guard(read),
        Write::ContactPut(ours),
    ]);
    assert!(matches!(refused, Err(StoreError::ContactChanged { ref id }) if id == "c1"));
    assert_eq!(s.contact_get("c1")?, Some(theirs.clone()));
    assert_eq!(s.metric_get("m")?, 0);
    assert!(matches!(
        s.apply(&[guard(None)]),
        Err(StoreError::ContactChanged { .. })
    ));
    s.apply(&[guard(Some(theirs))])?;
    Ok(())
}

fn a_released_claim_fires_at_once_but_a_claim_taken_since_is_kept(s: &dyn Store) -> TestResult {
    s.timer_set("a", 10, b"")?;
    s.timer_set("b", 10, b"")?;
    let claimed = s.claim_due_timers(10, 10, 100)?;
    assert_eq!(keys(&claimed), vec!["a", "b"]);
    let release = |key: &str, until| Write::TimerRelease {
        key: key.into(),
        claimed_until_ms: until,
    };
    assert_eq!(
        s.apply(&[release("a", 110)])?,
        vec![WriteResult::Flag(true)]
    );
    assert_eq!(keys(&s.claim_due_timers(20, 10, 100)?), vec!["a"]);
    // b's lease lapsed and another worker claimed it: the first worker's
    // release must not hand back the second's claim.
    assert_eq!(keys(&s.claim_due_timers(110, 10, 100)?), vec!["b"]);
    assert_eq!(
        s.apply(&[release("b", 110)])?,
        vec![WriteResult::Flag(false)]
    );
    assert!(
        s.claim_due_timers(150, 10, 100)?
            .iter()
            .all(|t| t.key != "b")
    );
    assert_eq!(
        s.timer_get("b")?.and_then(|t| t.claimed_until_ms),
        Some(210)
    );
    Ok(())
}

fn a_claimed_message_is_not_due_until_its_claim_ends_and_is_claimed_once(
    s: &dyn Store,
) -> TestResult {
    let (id, _) = s.outbox_insert(message("a", "c1", 0))?;
    let claim = |now_ms, until_ms| Write::OutboxClaim {
        id,
        now_ms,
        until_ms,
    };
    assert_eq!(s.apply(&[claim(5, 100)])?, vec![WriteResult::Flag(true)]);
    // A second dispatcher, a moment later, finds it taken.
    assert_eq!(s.apply(&[claim(6, 106)])?, vec![WriteResult::Flag(false)]);
    assert!(s.outbox_due(99, 10)?.is_empty());
    assert_eq!(s.outbox_due(100, 10)?.len(), 1);
    assert!(s.outbox_due_on("email", 99, 10)?.is_empty());
    // Sent: never claimed again, even once due.
    s.apply(&[Write::OutboxRecordAttempt {
        id,
        status: OutboxStatus::Sent,
        deliver_at_ms: 100,
        attempts: 1,
        last_error: None,
        at_ms: 50,
    }])?;
    assert_eq!(s.apply(&[claim(200, 300)])?, vec![WriteResult::Flag(false)]);
    assert_eq!(
        s.apply(&[Write::OutboxClaim {
            id: id + 1_000,
            now_ms: 0,
            until_ms: 1
        }])?,
        vec![WriteResult::Flag(false)]
    );
    Ok(())
}

fn a_key_with_characters_of_every_kind_is_stored_and_scanned_as_given(s: &dyn Store) -> TestResult {
    // Keys come from webhooks: pattern characters, spaces and non-ASCII must
    // be neither special nor lost in any backend.
    let keys = ["inbox/a*b", "inbox/[x]?", "inbox/ü ñ", "inbox/\\z"];
    for key in keys {
        s.kv_set(DEFAULT_KV_STORE, key, key.as_bytes())?;
        s.kv_set("other", key, b"elsewhere")?;
    }
    let scanned = s.kv_scan_prefix(DEFAULT_KV_STORE, "inbox/", None, 10)?;
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(
        scanned.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert!(scanned.iter().all(|(k, v)| k.as_bytes() == v.as_slice()));
    assert!(
        s.kv_scan_prefix(DEFAULT_KV_STORE, "inbox/*", None, 10)?
            .is_empty()
    );
    assert_eq!(
        s.kv_scan_prefix(DEFAULT_KV_STORE, "inbox/[", None, 10)?
            .len(),
        1
    );
    assert_eq!(s.kv_keys("other")?.len(), keys.len());
    Ok(())
}

#[test]
fn both_stores_are_usable_as_trait_objects() -> TestResult {
    let dir = tempfile::tempdir()?;
    let stores: Vec<Box<dyn Store>> = vec![
        Box::new(MemoryStore::new()),
        Box::new(SqliteStore::open(dir.path().join("t.db"))?),
    ];
    for store in stores {
        store.kv_set("default", "k", b"v")?;
        assert!(store.kv_exists("default", "k")?);
    }
    Ok(())
}
