//! Latency statistics shared by the load generators.

/// Sort `lat` and return its (p50, p99); zeros when empty.
pub fn p50_p99(lat: &mut [u64]) -> (u64, u64) {
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    (pct(0.50), pct(0.99))
}
