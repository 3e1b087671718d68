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
    ours: impl FnMut() -> T,
    peer: impl FnMut() -> T,
    rate: impl Fn(&T) -> f64,
) -> Paired<T> {
    pairs(rounds, ours, peer, rate, false)
}

/// As [`paired`], but half the pairs, chosen at random, run the peer first: when the two
/// sides are the same software (an A/B of one setting), the one that runs second in a pair
/// must not always be the same (a warmer page cache, a log that just compacted), and a
/// fixed alternation can fall in step with the server's own periodic work (snapshots every
/// so many entries), which made an A/A control of `metrics-overhead` read 1.19.
pub fn paired_alternating<T>(
    rounds: usize,
    ours: impl FnMut() -> T,
    peer: impl FnMut() -> T,
    rate: impl Fn(&T) -> f64,
) -> Paired<T> {
    pairs(rounds, ours, peer, rate, true)
}

fn pairs<T>(
    rounds: usize,
    mut ours: impl FnMut() -> T,
    mut peer: impl FnMut() -> T,
    rate: impl Fn(&T) -> f64,
    alternate: bool,
) -> Paired<T> {
    let (mut o_runs, mut p_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let peer_first = balanced_order(rounds.max(1));
    for peer_first in peer_first {
        let (o, p) = if alternate && peer_first {
            let p = peer();
            (ours(), p)
        } else {
            let o = ours();
            (o, peer())
        };
        ratios.push(rate(&o) / rate(&p));
        o_runs.push(o);
        p_runs.push(p);
    }
    ratios.sort_by(f64::total_cmp);
    Paired { ours: o_runs, peer: p_runs, ratio: ratios[ratios.len() / 2] }
}

/// `n` flags, half of them set (one fewer for odd `n`), in a random order (seeded from the
/// clock: no two runs of a benchmark share their order).
fn balanced_order(n: usize) -> Vec<bool> {
    let mut order: Vec<bool> = (0..n).map(|k| k < n / 2).collect();
    let mut state =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    for k in (1..n).rev() {
        // xorshift64: plenty for shuffling a handful of pairs.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(k, (state % (k as u64 + 1)) as usize);
    }
    order
}

/// The run with the median `rate`.
pub fn median_by<T>(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    runs.swap_remove(runs.len() / 2)
}
