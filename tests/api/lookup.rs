//! Lookups through the public API: matching, validity, history,
//! read-your-writes across replicas, batches; the index against SQL.

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;
use vpn_registry::domain::decision::Decision;

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
    let r = app.submit_as(&bank, req).await;
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
    let serial = app.last_serial().await;
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
    let open = app.submit_as(&bank, open).await;
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

    // No write has that serial: refused at once, not waited for.
    let started = std::time::Instant::now();
    let beyond = pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        min_serial: approved.feed_serial + 1000,
        ..Default::default()
    };
    let err = second.lookups(Some(&lookup)).check_address(beyond).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "not waited for");

    // A serial handed out but not visible here yet: waited for, within the deadline.
    let mut pending = tonic::Request::new(pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        min_serial: second.unapplied_serial().await,
        ..Default::default()
    });
    pending.set_timeout(std::time::Duration::from_millis(300));
    let err = second.lookups(Some(&lookup)).check_address(pending).await.unwrap_err();
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
