//! The bench's data: a million active prefixes seeded straight into the
//! tables, and the addresses the lookups ask about.

use super::*;

/// Seeds `n` active registrations of one prefix each, straight into the
/// tables (triggers off, as a bulk load would), laid out so none overlap:
/// 50% IPv4 /32, 35% IPv4 /24../29 (each in its own /24 of 64.0.0.0/2), 15%
/// IPv6 /48../64 (each in its own /48 of 2a00::/16).
pub(crate) async fn seed(pool: &PgPool, n: u64) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO institutions (id, category, legal_name, cnic, ntn, contact_email, contact_phone)
         SELECT gen_random_uuid(), 'COMPANY', 'Bench Co ' || g, '3520212345671', '1234567', 'ops@bench.pk', '+923001234567'
           FROM generate_series(1, 1000) g",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO isps (code, name) VALUES ('ptcl', 'PTCL') ON CONFLICT DO NOTHING")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE seed AS
         SELECT k,
                CASE WHEN k % 20 < 10 THEN ('64.0.0.0'::inet + (k * 256 + 1))::cidr
                     WHEN k % 20 < 17 THEN set_masklen('64.0.0.0'::inet + k * 256, 24 + (k % 6)::int)::cidr
                     ELSE format('2a00:%s:%s::/%s', to_hex(k >> 16), to_hex(k & 65535), 48 + (k % 17))::cidr
                END AS prefix
           FROM generate_series(0::bigint, $1 - 1) k",
    )
    .bind(n as i64)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                    isp_subscriber_id, purpose, valid_from, valid_until, state)
         SELECT gen_random_uuid(), 'VPN-2026-' || lpad(k::text, 7, '0'), i.id, 'VPN', 'WIREGUARD',
                ARRAY[prefix], 'ptcl', 'SUB-' || k, 'Bench', now() - interval '1 day', now() + interval '1 year', 'ACTIVE'
           FROM seed JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM institutions) i ON i.n = seed.k % 1000",
    )
    .execute(&mut *conn)
    .await?;
    // An index build beats a million index insertions.
    sqlx::query("ALTER TABLE active_prefixes DROP CONSTRAINT active_prefixes_no_overlap")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DROP INDEX active_prefixes_prefix_idx")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO active_prefixes (registration_id, institution_id, prefix)
         SELECT id, institution_id, source_prefixes[1] FROM registrations WHERE state = 'ACTIVE'",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("CREATE INDEX active_prefixes_prefix_idx ON active_prefixes USING spgist (prefix inet_ops)")
        .execute(&mut *conn)
        .await?;
    // The baseline the issue names "the plain GiST join": prefixes in their
    // own table under a GiST inet_ops index, joined to registrations (as in
    // shared/bench/postgres/pgbench/lookup_gist.sql).
    sqlx::query("CREATE TABLE bench_gist_prefixes AS SELECT registration_id, prefix FROM active_prefixes")
        .execute(&mut *conn)
        .await?;
    sqlx::query("CREATE INDEX ON bench_gist_prefixes USING gist (prefix inet_ops)")
        .execute(&mut *conn)
        .await?;
    // The exclusion constraint is not rebuilt: validating it over a million
    // rows takes this machine a quarter of an hour, and no measured path
    // inserts active prefixes except the feed-latency toggles (which then
    // skip one GiST search each).
    sqlx::query("SET session_replication_role = DEFAULT")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// Query addresses: alternately inside a seeded prefix and in unused space.
pub(crate) fn addresses(n: u64, count: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|i| {
            let k = next() % n;
            let addr: IpAddr = if i % 2 == 0 {
                match k % 20 {
                    0..10 => Ipv4Addr::from(0x4000_0000u32 + (k as u32) * 256 + 1).into(),
                    10..17 => Ipv4Addr::from(0x4000_0000u32 + (k as u32) * 256 + (next() % 4) as u32).into(),
                    _ => Ipv6Addr::new(0x2a00, (k >> 16) as u16, (k & 0xffff) as u16, 0, 0, 0, 0, 1).into(),
                }
            } else if k.is_multiple_of(7) {
                Ipv6Addr::new(0x2a01, (k >> 16) as u16, (k & 0xffff) as u16, 0, 0, 0, 0, 1).into()
            } else {
                Ipv4Addr::from(0x8000_0000u32 + (next() as u32 >> 2)).into()
            };
            addr.to_string()
        })
        .collect()
}
