//! Measuring: a load driver, rates and percentiles, medians over rounds,
//! and this process's memory.

use super::*;

pub(crate) struct Rate {
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// The median of each column.
pub(crate) fn medians<const N: usize>(rows: &[[f64; N]]) -> [f64; N] {
    std::array::from_fn(|col| {
        let mut values: Vec<f64> = rows.iter().map(|r| r[col]).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

/// Runs `c` workers doing `op` until `duration` passes; returns completions/s and latencies.
pub(crate) async fn drive<F, Fut>(c: usize, duration: Duration, op: F) -> anyhow::Result<Rate>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let end = start + duration;
    let workers: Vec<_> = (0..c)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    op(w, i).await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Ok(Rate {
        rate: all.len() as f64 / secs,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    })
}

/// Resident set size of this process.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
