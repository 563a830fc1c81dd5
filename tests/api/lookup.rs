//! Lookups through the public API: matching, validity, history,
//! read-your-writes across replicas, the change stream.

use std::collections::BTreeSet;

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;
use vpn_registry::domain::decision::Decision;

async fn check(client: &mut Lookups, address: &str) -> pb::CheckResult {
    client
        .check_address(pb::CheckAddressRequest {
            address: address.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[sqlx::test]
async fn the_most_specific_active_prefix_answers_for_ipv4_and_ipv6(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let wide = app.active(&bank, &["8.8.8.0/24", "2a00:1450::/48"]).await;
    let narrow = app.active(&bank, &["8.8.8.128/25", "2a00:1450:0:1::/64"]).await;
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let min = pb::CheckAddressRequest {
        address: "8.8.8.1".into(),
        min_serial: narrow.feed_serial,
        ..Default::default()
    };
    client.check_address(min).await.unwrap();

    let r = check(&mut client, "8.8.8.200").await;
    assert!(r.registered);
    assert_eq!(
        (r.reference.as_str(), r.matched_prefix.as_str()),
        (narrow.reference.as_str(), "8.8.8.128/25")
    );
    assert_eq!(r.kind, pb::RegistrationKind::Vpn as i32);
    assert_eq!(r.institution_category, C::Bank as i32);
    assert!(r.serial >= narrow.feed_serial);
    let r = check(&mut client, "8.8.8.1").await;
    assert_eq!(
        (r.reference.as_str(), r.matched_prefix.as_str()),
        (wide.reference.as_str(), "8.8.8.0/24")
    );
    let r = check(&mut client, "2a00:1450:0:1::42").await;
    assert_eq!(r.matched_prefix, "2a00:1450:0:1::/64");
    let r = check(&mut client, "2a00:1450:0:2::42").await;
    assert_eq!(r.matched_prefix, "2a00:1450::/48");
    assert!(!check(&mut client, "8.8.9.1").await.registered);
    assert!(!check(&mut client, "2a00:1451::1").await.registered);
}

#[sqlx::test]
async fn validity_starts_at_valid_from_and_ends_before_valid_until(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let now = time::OffsetDateTime::now_utc();
    let mut req = submit_request(&["8.8.8.0/24"]);
    let reg = req.registration.as_mut().unwrap();
    reg.valid_from = Some(ts(now + time::Duration::hours(1)));
    reg.valid_until = Some(ts(now + time::Duration::hours(2)));
    let r = app
        .registrations(Some(&bank))
        .submit_registration(req)
        .await
        .unwrap()
        .into_inner();
    let r = app.approve(&r).await.unwrap();
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let at = |t: prost_types::Timestamp, delta: i64| {
        let mut t = t;
        t.seconds += delta;
        pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            at: Some(t),
            min_serial: r.feed_serial,
        }
    };
    let (from, until) = (r.valid_from.unwrap(), r.valid_until.unwrap());
    let answer = |req| {
        let mut client = client.clone();
        async move { client.check_address(req).await.unwrap().into_inner().registered }
    };
    assert!(!answer(at(from, -1)).await, "before valid_from");
    assert!(answer(at(from, 0)).await, "exactly at valid_from");
    assert!(answer(at(until, -1)).await);
    assert!(!answer(at(until, 0)).await, "exactly at valid_until");
    assert!(!check(&mut client, "8.8.8.8").await.registered, "not yet in force now");

    // Past valid_until it is not registered even though no expiry task ran.
    sqlx::query(
        "UPDATE registrations SET valid_from = now() - interval '2 hours', valid_until = now() - interval '1 hour'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let serial: i64 = sqlx::query_scalar("SELECT last_serial FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let r = client
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            min_serial: serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.registered);
    assert_eq!(
        app.count("registrations WHERE state = 'ACTIVE'").await,
        1,
        "still ACTIVE in the table"
    );
}

#[sqlx::test]
async fn flows_match_only_towards_declared_peers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let with_peers = app.active(&bank, &["8.8.8.0/24"]).await; // peers 185.60.216.0/24
    let mut open = submit_request(&["9.9.9.0/24"]);
    open.registration.as_mut().unwrap().peer_prefixes.clear();
    let open = app
        .registrations(Some(&bank))
        .submit_registration(open)
        .await
        .unwrap()
        .into_inner();
    let open = app.approve(&open).await.unwrap();
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let flow = |source: &str, peer: &str| pb::CheckFlowRequest {
        source: source.into(),
        peer: peer.into(),
        min_serial: open.feed_serial.max(with_peers.feed_serial),
        ..Default::default()
    };
    assert!(
        client
            .check_flow(flow("8.8.8.8", "185.60.216.35"))
            .await
            .unwrap()
            .into_inner()
            .registered
    );
    assert!(
        !client
            .check_flow(flow("8.8.8.8", "1.1.1.1"))
            .await
            .unwrap()
            .into_inner()
            .registered
    );
    assert!(
        client
            .check_flow(flow("9.9.9.9", "1.1.1.1"))
            .await
            .unwrap()
            .into_inner()
            .registered,
        "no peers: any"
    );
    let err = client.check_flow(flow("8.8.8.8", "nope")).await.unwrap_err();
    assert_eq!(violated_fields(&err), ["peer"]);
}

#[sqlx::test]
async fn a_past_instant_is_answered_from_history_across_a_revoke(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let active = app.active(&bank, &["8.8.8.0/24"]).await;
    let while_active = ts(time::OffsetDateTime::now_utc());
    let revoked = app
        .decide(Decision::Revoke, &active, pb::ReasonCode::PolicyViolation, "Misuse")
        .await
        .unwrap();
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let then = client
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            at: Some(while_active),
            min_serial: revoked.feed_serial,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(then.registered, "it was active then");
    assert_eq!(then.reference, active.reference);
    let batch = client
        .check_addresses(pb::CheckAddressesRequest {
            addresses: vec!["1.1.1.1".into(), "8.8.8.8".into(), "9.9.9.9".into(), "8.8.8.200".into()],
            at: Some(while_active),
            min_serial: revoked.feed_serial,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch.results.iter().map(|r| r.registered).collect::<Vec<_>>(),
        [false, true, false, true],
        "a batch about the past answers each address from history, in order"
    );
    assert_eq!(batch.results[3].matched_prefix, "8.8.8.0/24");
    let now = client
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            min_serial: revoked.feed_serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!now.registered);
    let before = client
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            at: active.create_time,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!before.registered, "not yet approved at submission time");
}

#[sqlx::test]
async fn min_serial_reads_a_write_made_through_another_server(pool: PgPool) {
    let first = spawn_app(pool.clone()).await;
    let second = spawn_app(pool).await;
    let (_, bank) = first.enrol(C::Bank).await;
    let approved = first.active(&bank, &["8.8.8.0/24"]).await;
    let lookup = second.token(Role::Lookup).await;
    let r = second
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            min_serial: approved.feed_serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.registered);
    assert!(r.serial >= approved.feed_serial);

    let mut far = tonic::Request::new(pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        min_serial: approved.feed_serial + 1000,
        ..Default::default()
    });
    far.set_timeout(std::time::Duration::from_millis(300));
    let err = second.lookups(Some(&lookup)).check_address(far).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{err:?}"
    );
}

#[sqlx::test]
async fn bad_addresses_and_oversized_batches_are_refused_precisely(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let err = client
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.256".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["address"]);
    let err = client
        .check_addresses(pb::CheckAddressesRequest {
            addresses: vec!["8.8.8.8".into(), "x".into(), "::1".into(), "".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["addresses[1]", "addresses[3]"]);
    let too_many = vec!["8.8.8.8".to_owned(); 100_001];
    let err = client
        .check_addresses(pb::CheckAddressesRequest {
            addresses: too_many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("100000"), "{}", err.message());
}

#[sqlx::test]
async fn batches_answer_in_order_and_institutions_see_only_their_own(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    app.active(&a, &["8.8.8.0/24"]).await;
    let last = app.active(&b, &["9.9.9.0/24"]).await;
    let batch = pb::CheckAddressesRequest {
        addresses: vec!["9.9.9.9".into(), "1.1.1.1".into(), "8.8.8.8".into()],
        min_serial: last.feed_serial,
        ..Default::default()
    };
    let lookup = app.token(Role::Lookup).await;
    let all = app
        .lookups(Some(&lookup))
        .check_addresses(batch.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.results.iter().map(|r| r.registered).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(all.results[0].institution_category, C::Company as i32);
    assert!(all.serial >= last.feed_serial);
    let own = app.lookups(Some(&a)).check_addresses(batch).await.unwrap().into_inner();
    assert_eq!(
        own.results.iter().map(|r| r.registered).collect::<Vec<_>>(),
        [false, false, true]
    );
    let admin = app.admin().await;
    let err = app
        .lookups(Some(&admin))
        .check_address(pb::CheckAddressRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[sqlx::test]
async fn the_index_agrees_with_sql_on_random_addresses(pool: PgPool) {
    use rand_like::Lcg;
    let app = spawn_app(pool).await;
    let mut rng = Lcg(0x5eed);
    let mut last_serial = 0;
    let mut prefixes = Vec::new();
    for i in 0..6 {
        let (_, token) = app.enrol(C::Company).await;
        for j in 0..5 {
            let octet = 10 + i * 5 + j;
            let p = match rng.next() % 3 {
                0 => format!("45.{octet}.{}.0/24", rng.next() % 200),
                1 => format!("45.{octet}.{}.{}/32", rng.next() % 200, rng.next() % 250),
                _ => format!("2a03:{octet:x}:{:x}::/48", rng.next() % 4000),
            };
            prefixes.push(p.clone());
            last_serial = app.active(&token, &[&p]).await.feed_serial;
        }
    }
    let mut addresses = Vec::new();
    for k in 0..2000u64 {
        let addr = if k % 2 == 0 {
            let p: ipnet::IpNet = prefixes[(rng.next() as usize) % prefixes.len()].parse().unwrap();
            match p {
                ipnet::IpNet::V4(n) => std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    u32::from(n.network()) | (rng.next() as u32 & !u32::from(n.netmask())),
                )),
                ipnet::IpNet::V6(n) => std::net::IpAddr::from(std::net::Ipv6Addr::from(
                    u128::from(n.network()) | (u128::from(rng.next()) & !u128::from(n.netmask())),
                )),
            }
        } else if k % 4 == 1 {
            std::net::IpAddr::from(std::net::Ipv4Addr::new(
                45,
                (rng.next() % 60) as u8,
                (rng.next() % 256) as u8,
                (rng.next() % 256) as u8,
            ))
        } else {
            std::net::IpAddr::from(std::net::Ipv6Addr::new(
                0x2a03,
                (rng.next() % 60) as u16,
                (rng.next() % 4096) as u16,
                0,
                0,
                0,
                0,
                1,
            ))
        };
        addresses.push(addr.to_string());
    }
    let lookup = app.token(Role::Lookup).await;
    let answers = app
        .lookups(Some(&lookup))
        .check_addresses(pb::CheckAddressesRequest {
            addresses: addresses.clone(),
            min_serial: last_serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let mut hits = 0;
    for (addr, answer) in addresses.iter().zip(&answers) {
        let expected: Option<(String, String)> = sqlx::query_as(
            "SELECT r.reference, a.prefix::text FROM active_prefixes a JOIN registrations r ON r.id = a.registration_id
              WHERE a.prefix >>= $1::inet AND r.valid_from <= now() AND r.valid_until > now()
              ORDER BY masklen(a.prefix) DESC LIMIT 1",
        )
        .bind(addr)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        let got = answer
            .registered
            .then(|| (answer.reference.clone(), answer.matched_prefix.clone()));
        assert_eq!(got, expected, "{addr}");
        hits += usize::from(answer.registered);
    }
    assert!(hits > 500 && hits < 1500, "a mix of hits and misses ({hits})");
}

/// A deterministic generator, enough for test data.
mod rand_like {
    pub struct Lcg(pub u64);
    impl Lcg {
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }
}

/// A gateway's copy of the active set, built from WatchChanges.
#[derive(Default)]
pub struct Copy {
    pub session: String,
    pub serial: i64,
    pub entries: BTreeSet<(String, String)>,
    pub in_snapshot: bool,
}

impl Copy {
    pub fn apply(&mut self, msg: pb::WatchChangesResponse) {
        use pb::watch_changes_response::Event;
        match msg.event.unwrap() {
            Event::Reset(r) => {
                self.entries.clear();
                self.session = r.session_id;
                self.in_snapshot = true;
                self.serial = r.serial;
            }
            Event::Snapshot(chunk) => {
                assert!(self.in_snapshot);
                for e in chunk.entries {
                    self.entries.insert((e.reference, e.prefix));
                }
            }
            Event::SnapshotEnd(end) => {
                self.in_snapshot = false;
                assert_eq!(end.serial, self.serial);
            }
            Event::Deltas(batch) => {
                for d in batch.deltas {
                    assert!(
                        d.serial > self.serial,
                        "serials increase: {} after {}",
                        d.serial,
                        self.serial
                    );
                    self.serial = d.serial;
                    let e = d.entry.unwrap();
                    let key = (e.reference, e.prefix);
                    if d.operation == pb::ChangeOperation::Announce as i32 {
                        assert!(self.entries.insert(key), "announced twice");
                    } else {
                        assert!(self.entries.remove(&key), "withdrew an unknown entry");
                    }
                }
            }
        }
    }

    /// Reads the stream until the copy reaches `serial`.
    pub async fn follow(&mut self, stream: &mut tonic::Streaming<pb::WatchChangesResponse>, serial: i64) {
        while self.serial < serial || self.in_snapshot {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .expect("the stream keeps up")
                .unwrap()
                .unwrap();
            self.apply(msg);
        }
    }
}

pub async fn db_active_set(pool: &PgPool) -> BTreeSet<(String, String)> {
    sqlx::query_as(
        "SELECT r.reference, a.prefix::text FROM active_prefixes a JOIN registrations r ON r.id = a.registration_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[sqlx::test]
async fn watchers_from_zero_from_a_serial_and_from_a_stale_session_all_converge(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let first = app.active(&a, &["8.8.8.0/24", "2a00:1450::/48"]).await;
    let mut lookups = app.lookups(Some(app.isp_token().await));

    // From zero: reset, snapshot, then live deltas.
    let mut fresh = Copy::default();
    let mut from_zero = lookups
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    fresh.follow(&mut from_zero, first.feed_serial).await;
    assert_eq!(fresh.entries, db_active_set(&app.pool).await);
    let mid = (fresh.session.clone(), fresh.serial);

    // Changes land while the watcher reads: approvals, a revocation, an
    // amendment swapped in, an expiry.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<i64>();
    let writes = async {
        app.active(&b, &["9.9.9.0/24"]).await;
        let active = app.active(&b, &["9.9.10.0/24", "9.9.11.0/24"]).await;
        app.decide(Decision::Revoke, &active, pb::ReasonCode::PolicyViolation, "Misuse")
            .await
            .unwrap();
        let mut moved = first.clone();
        moved.source_prefixes = vec!["8.8.8.0/25".into()];
        let revision = app
            .registrations(Some(&a))
            .amend_registration(pb::AmendRegistrationRequest {
                registration: Some(moved),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["source_prefixes".into()],
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        app.approve(&revision).await.unwrap();
        app.active(&a, &["8.8.4.0/24"]).await;
        sqlx::query(
            "UPDATE registrations SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 second'
              WHERE reference = $1",
        )
        .bind(&first.reference)
        .execute(&app.pool)
        .await
        .unwrap();
        app.expire_due().await;
        let last: i64 = sqlx::query_scalar("SELECT last_serial FROM feed_state")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        done_tx.send(last).unwrap();
    };
    let reads = async {
        let mut done_rx = done_rx;
        let mut target = None;
        loop {
            if target.is_some_and(|t| fresh.serial >= t && !fresh.in_snapshot) {
                return target.unwrap();
            }
            tokio::select! {
                msg = from_zero.message() => fresh.apply(msg.unwrap().expect("stream open")),
                t = &mut done_rx, if target.is_none() => target = Some(t.unwrap()),
            }
        }
    };
    let ((), final_serial) = tokio::join!(writes, reads);
    let expected = db_active_set(&app.pool).await;
    assert_eq!(fresh.entries, expected, "the live copy");
    assert!(
        !expected.contains(&(first.reference.clone(), "8.8.8.0/25".to_owned())),
        "the expired one left"
    );

    // Resuming from the mid serial replays only what came after it.
    let mut resumed = Copy {
        session: mid.0.clone(),
        serial: mid.1,
        entries: fresh_entries_at_mid(&app, mid.1).await,
        in_snapshot: false,
    };
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: mid.0.clone(),
            since_serial: mid.1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    resumed.follow(&mut stream, final_serial).await;
    assert_eq!(resumed.entries, expected, "the resumed copy");

    // A stale session gets a reset and a snapshot.
    let mut stale = Copy {
        session: "not-the-session".into(),
        serial: 3,
        ..Default::default()
    };
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: uuid::Uuid::now_v7().to_string(),
            since_serial: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first_msg = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first_msg.event,
        Some(pb::watch_changes_response::Event::Reset(_))
    ));
    stale.apply(first_msg);
    stale.follow(&mut stream, final_serial).await;
    assert_eq!(stale.entries, expected, "the reset copy");
    assert_eq!(stale.session, mid.0);
}

/// The active set as of `serial`, replayed from the feed table.
async fn fresh_entries_at_mid(app: &TestApp, serial: i64) -> BTreeSet<(String, String)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT op, reference, prefix::text FROM change_feed WHERE serial <= $1 ORDER BY serial")
            .bind(serial)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut set = BTreeSet::new();
    for (op, reference, prefix) in rows {
        if op == "ANNOUNCE" {
            set.insert((reference, prefix));
        } else {
            set.remove(&(reference, prefix));
        }
    }
    set
}

#[sqlx::test]
async fn a_watcher_that_falls_behind_is_dropped_with_a_status_it_can_resume_from(pool: PgPool) {
    use pb::watch_changes_response::Event;
    let app = spawn_app(pool).await; // keeps 8 applied batches for watchers
    let (_, bank) = app.enrol(C::Bank).await;
    // 60 prefixes, so every change is a large batch and an unread stream
    // soon exhausts HTTP/2 flow control and the server's buffer.
    let hosts: Vec<String> = (1..=60).map(|i| format!("8.8.8.{i}")).collect();
    let r = app
        .active(&bank, &hosts.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let mut stream = client
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut session = String::new();
    let mut applied;
    loop {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Reset(reset) => session = reset.session_id,
            Event::SnapshotEnd(end) => {
                applied = end.serial;
                break;
            }
            _ => {}
        }
    }
    // 600 separately applied changes (about 4 MB of deltas, beyond HTTP/2
    // windows and the server buffer) while the watcher
    // does not read.
    let id = uuid::Uuid::parse_str(&r.id).unwrap();
    let mut checker = app.lookups_on_new_connection(Some(&lookup));
    for i in 0..600 {
        let state = if i % 2 == 0 { "SUSPENDED" } else { "ACTIVE" };
        sqlx::query("UPDATE registrations SET state = $2 WHERE id = $1")
            .bind(id)
            .bind(state)
            .execute(&app.pool)
            .await
            .unwrap();
        let serial: i64 = sqlx::query_scalar("SELECT last_serial FROM feed_state")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        checker
            .check_address(pb::CheckAddressRequest {
                address: "8.8.8.8".into(),
                min_serial: serial,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let status = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message());
        let Ok(next) = next.await else {
            let last: i64 = sqlx::query_scalar("SELECT last_serial FROM feed_state")
                .fetch_one(&app.pool)
                .await
                .unwrap();
            panic!("no status after applying {applied} of {last}");
        };
        match next {
            Ok(Some(msg)) => {
                if let Some(Event::Deltas(batch)) = msg.event {
                    applied = batch.deltas.last().map_or(applied, |d| d.serial);
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("since_serial"), "{}", status.message());

    // Resuming from what it applied brings it up to date.
    let last: i64 = sqlx::query_scalar("SELECT last_serial FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut resumed = client
        .watch_changes(pb::WatchChangesRequest {
            session_id: session,
            since_serial: applied,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while applied < last {
        match resumed.message().await.unwrap().unwrap().event.unwrap() {
            Event::Deltas(batch) => {
                for d in batch.deltas {
                    assert_eq!(d.serial, applied + 1, "no gap on resume");
                    applied = d.serial;
                }
            }
            other => panic!("a resume needs no reset: {other:?}"),
        }
    }
}

/// A replica with a watcher that holds the active set, in which `lost` (the
/// bank's 8.8.8.0/24) is about to be lost by the database.
struct Scene {
    app: TestApp,
    company: String,
    lost: pb::Registration,
    lookups: Lookups,
    copy: Copy,
    stream: tonic::Streaming<pb::WatchChangesResponse>,
}

impl Scene {
    async fn new(pool: PgPool) -> Self {
        let app = spawn_app(pool).await;
        let (_, bank) = app.enrol(C::Bank).await;
        let (_, company) = app.enrol(C::Company).await;
        let lost = app.active(&bank, &["8.8.8.0/24"]).await;
        let watcher = app.token(Role::Lookup).await;
        let mut lookups = app.lookups(Some(&watcher));
        let mut copy = Copy::default();
        let mut stream = lookups
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner();
        copy.follow(&mut stream, lost.feed_serial).await;
        Self {
            app,
            company,
            lost,
            lookups,
            copy,
            stream,
        }
    }
}

impl Copy {
    /// Applies what arrives until the stream ends with a status.
    pub async fn until_ended(&mut self, stream: &mut tonic::Streaming<pb::WatchChangesResponse>) -> tonic::Status {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .expect("the watcher is told to start over")
            {
                Ok(Some(msg)) => self.apply(msg),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }
}

/// Waits until `address` is no longer registered (the replica reloaded).
async fn until_unregistered(lookups: &mut Lookups, address: &str) {
    eventually("the replica reloads", std::time::Duration::from_secs(10), || {
        let mut lookups = lookups.clone();
        async move { (!check(&mut lookups, address).await.registered).then_some(()) }
    })
    .await
}

/// The database as a backup taken before `lost` was approved would restore
/// it: not active, its feed rows and serials gone (they will be handed out
/// again for other changes), the session unchanged.
async fn rewind_before(app: &TestApp, lost: &pb::Registration) {
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = uuid::Uuid::parse_str(&lost.id).unwrap();
    for statement in [
        "DELETE FROM active_prefixes WHERE registration_id = $1",
        "UPDATE registrations SET state = 'SUSPENDED' WHERE id = $1",
    ] {
        sqlx::query(statement).bind(id).execute(&mut *tx).await.unwrap();
    }
    for statement in [
        "DELETE FROM change_feed WHERE serial >= $1",
        "DELETE FROM active_history WHERE announce_serial >= $1",
    ] {
        sqlx::query(statement)
            .bind(lost.feed_serial)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE feed_state SET last_serial = $1 - 1")
        .bind(lost.feed_serial)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test]
async fn a_new_feed_session_after_a_restore_reloads_replicas_and_resets_watchers(pool: PgPool) {
    let Scene {
        app,
        company,
        lost,
        mut lookups,
        mut copy,
        mut stream,
    } = Scene::new(pool).await;
    assert!(check(&mut lookups, "8.8.8.8").await.registered);

    // A restore from a backup taken before the approval: the registration
    // is not active in the restored database, and the serials the approval
    // used will be handed out again for other changes.
    rewind_before(&app, &lost).await;
    let session =
        vpn_registry::db::feed::new_session(&app.pool, &vpn_registry::domain::principal::Actor::operator("test"))
            .await
            .unwrap();

    // The watcher is told to resynchronise ...
    let status = copy.until_ended(&mut stream).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("new session"), "{}", status.message());
    // ... the replica reloads (no restart) ...
    until_unregistered(&mut lookups, "8.8.8.8").await;
    // ... and resuming with the old session gets a reset and a snapshot of
    // the restored set, then live changes of the new session.
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: copy.session.clone(),
            since_serial: copy.serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let after = app.active(&company, &["9.9.9.0/24"]).await;
    copy.serial = 0;
    copy.follow(&mut stream, after.feed_serial).await;
    assert_eq!(copy.session, session.to_string());
    assert_eq!(copy.entries, db_active_set(&app.pool).await);
    assert!(!copy.entries.iter().any(|(r, _)| *r == lost.reference));
    assert!(check(&mut lookups, "9.9.9.9").await.registered);
}

#[sqlx::test]
async fn a_database_behind_the_replica_reloads_it_and_resets_watchers_without_a_new_session(pool: PgPool) {
    let Scene {
        app,
        company,
        lost,
        mut lookups,
        mut copy,
        mut stream,
    } = Scene::new(pool).await;
    let old_session = copy.session.clone();

    // A standby promoted without the approval's commit (or a restore), and
    // nobody ran `feed new-session`: the database's last serial is behind
    // what the replica applied; the session is the same.
    rewind_before(&app, &lost).await;

    // The watcher is told to start over, the replica reloads ...
    let status = copy.until_ended(&mut stream).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    until_unregistered(&mut lookups, "8.8.8.8").await;
    // ... and new changes reuse the lost serials: resuming from a lost one
    // (same session) gets a reset and the database's set, not stale deltas.
    let after = app.active(&company, &["9.9.9.0/24"]).await;
    assert!(
        after.feed_serial >= lost.feed_serial,
        "the serials are handed out again"
    );
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: old_session.clone(),
            since_serial: copy.serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    copy.serial = 0;
    copy.entries.clear();
    copy.follow(&mut stream, after.feed_serial).await;
    assert_eq!(copy.session, old_session, "the same session, started over");
    assert_eq!(copy.entries, db_active_set(&app.pool).await);
    assert!(!copy.entries.iter().any(|(r, _)| *r == lost.reference));
}
