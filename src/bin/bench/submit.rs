//! Submissions through the API against the same transaction as raw SQL.

use super::*;

/// Submits through the API from 16 institutions, distinct prefixes each.
pub(crate) async fn submits(pool: &PgPool, server: SocketAddr, c: usize, duration: Duration) -> anyhow::Result<f64> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM institutions ORDER BY id LIMIT $1")
        .bind(c as i64)
        .fetch_all(pool)
        .await?;
    let mut clients = Vec::new();
    for id in ids {
        let token = issue(pool, Role::Institution(id)).await?;
        clients.push((RegistrationServiceClient::new(channel(server).await?), token));
    }
    if let Some((_, token)) = clients.last() {
        await_credential(server, token).await?;
    }
    let clients = Arc::new(clients);
    let valid_until = prost_types::Timestamp {
        seconds: time::OffsetDateTime::now_utc().unix_timestamp() + 86_400 * 365,
        nanos: 0,
    };
    let rate = drive(c, duration, move |w, i| {
        let (client, token) = &clients[w];
        let mut client = client.clone();
        // 192.0.0.0/2 is unused by the seed; every call its own /32.
        let n = 0xC100_0000u32 + (w as u32) * 0x0010_0000 + i as u32;
        let registration = pb::Registration {
            kind: pb::RegistrationKind::Vpn as i32,
            protocol: pb::VpnProtocol::Wireguard as i32,
            source_prefixes: vec![Ipv4Addr::from(n).to_string()],
            isp: "ptcl".into(),
            isp_subscriber_id: format!("SUB-{w}-{i}"),
            purpose: "Bench".into(),
            valid_until: Some(valid_until),
            ..Default::default()
        };
        let req = authed(
            pb::SubmitRegistrationRequest {
                registration: Some(registration),
                request_id: uuid::Uuid::new_v4().to_string(),
                validate_only: false,
            },
            Some(token),
        );
        async move {
            client.submit_registration(req).await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}

/// The submit transaction as raw SQL: idempotency key, overlap check,
/// registration row, audit row, event and its e-mail notification, commit.
pub(crate) async fn raw_submits(pool: &PgPool, c: usize, duration: Duration) -> anyhow::Result<f64> {
    let institution: uuid::Uuid = sqlx::query_scalar("SELECT id FROM institutions LIMIT 1")
        .fetch_one(pool)
        .await?;
    let pool = pool.clone();
    let rate = drive(c, duration, move |w, i| {
        let pool = pool.clone();
        async move {
            let id = uuid::Uuid::now_v7();
            let prefix = ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::from(
                0xD000_0000u32 + (w as u32) * 0x0010_0000 + i as u32,
            )));
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO idempotency_keys (scope, request_id, operation, request_hash, resource_id)
                 VALUES ($1, $2, 'raw', '\\x00', $3)",
            )
            .bind(format!("raw:{w}"))
            .bind(id.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let _: Option<(ipnet::IpNet, ipnet::IpNet)> = sqlx::query_as(db::registrations::OVERLAP_SQL)
                .bind(vec![prefix])
                .bind(institution)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                            isp_subscriber_id, purpose, valid_from, valid_until, state)
                 VALUES ($1, 'RAW-' || $1::text, $2, 'VPN', 'WIREGUARD', ARRAY[$3::cidr], 'ptcl', 'SUB', 'Bench', now(),
                         now() + interval '1 year', 'ISP_VERIFICATION')",
            )
            .bind(id)
            .bind(institution)
            .bind(prefix)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "WITH audit AS (
                    INSERT INTO audit_events (subject_type, subject_id, action, actor_name, actor_role, changes)
                    VALUES ('registration', $1, 'SUBMITTED', 'bench', 'institution', '[]')),
                 event AS (
                    INSERT INTO events (id, type, institution_id, isp, registration_id, reference, state)
                    VALUES (gen_random_uuid(), 'registration.submitted', $2, 'ptcl', $1, 'RAW', 'ISP_VERIFICATION')
                    RETURNING id)
                 INSERT INTO notifications (event_id, channel, recipient, registration_id)
                 SELECT id, 'email', 'bench@example.pk', $1 FROM event",
            )
            .bind(id)
            .bind(institution)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}
