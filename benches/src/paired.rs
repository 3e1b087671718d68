//! Paired runs: ours and the peer back to back, `rounds` times, so that drift on a noisy
//! machine hits both sides of each pair alike. The ratio is the median of the per-pair ratios.

/// The runs of both sides and the median ratio ours/peer.
pub struct Paired<T> {
    pub ours: Vec<T>,
    pub peer: Vec<T>,
    pub ratio: f64,
}

/// Run `ours` then `peer`, `rounds` times; `rate` is the figure compared (higher is better).
pub fn paired<T>(
    rounds: usize,
    mut ours: impl FnMut() -> T,
    mut peer: impl FnMut() -> T,
    rate: impl Fn(&T) -> f64,
) -> Paired<T> {
    let (mut o_runs, mut p_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let o = ours();
        let p = peer();
        ratios.push(rate(&o) / rate(&p));
        o_runs.push(o);
        p_runs.push(p);
    }
    ratios.sort_by(f64::total_cmp);
    Paired { ours: o_runs, peer: p_runs, ratio: ratios[ratios.len() / 2] }
}

/// The run with the median `rate`.
pub fn median_by<T>(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    runs.swap_remove(runs.len() / 2)
}
