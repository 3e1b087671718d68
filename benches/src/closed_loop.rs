//! A closed-loop load generator for durable appends: `appenders` client threads each submit
//! one entry and wait for it to be durable before submitting the next. A single proposer
//! thread gathers whatever requests are queued into one batch, as openraft's core does with
//! concurrent client writes, and hands it to a [`DurableSink`].

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

/// Something that makes batches of entries durable.
pub trait DurableSink: Send {
    /// Start appending `batch`; call `done` exactly once when all of it is durable.
    /// May return before the batch is durable (pipelining) or after.
    fn append(&mut self, batch: Vec<Vec<u8>>, done: Box<dyn FnOnce() + Send>);
}

/// Largest batch the proposer forms.
const BATCH_MAX: usize = 1024;

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub entries: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl RunStats {
    pub fn per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
}

struct Request {
    payload: Vec<u8>,
    reply: Sender<()>,
}

fn proposer(mut sink: Box<dyn DurableSink>, rx: Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut payloads = vec![first.payload];
        let mut replies = vec![first.reply];
        while payloads.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(r) => {
                    payloads.push(r.payload);
                    replies.push(r.reply);
                }
                Err(_) => break,
            }
        }
        sink.append(
            payloads,
            Box::new(move || {
                for r in replies {
                    let _ = r.send(());
                }
            }),
        );
    }
}

/// Run `appenders` closed-loop clients of `entry_bytes`-byte entries against `sink` for
/// `duration`.
pub fn run(sink: Box<dyn DurableSink>, appenders: usize, entry_bytes: usize, duration: Duration) -> RunStats {
    let (tx, rx) = mpsc::channel::<Request>();
    let prop = std::thread::spawn(move || proposer(sink, rx));
    let start = Instant::now();
    let deadline = start + duration;
    let clients: Vec<_> = (0..appenders)
        .map(|c| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..entry_bytes).map(|k| (k * 7 + c) as u8).collect();
                let (reply_tx, reply_rx) = mpsc::channel();
                let mut lat_us = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if tx.send(Request { payload: payload.clone(), reply: reply_tx.clone() }).is_err() {
                        break;
                    }
                    if reply_rx.recv().is_err() {
                        break;
                    }
                    lat_us.push(t0.elapsed().as_micros() as u64);
                }
                lat_us
            })
        })
        .collect();
    drop(tx);
    let mut lat: Vec<u64> = clients.into_iter().flat_map(|c| c.join().expect("client thread")).collect();
    let elapsed = start.elapsed();
    prop.join().expect("proposer thread");
    let (p50_us, p99_us) = crate::stats::p50_p99(&mut lat);
    RunStats { entries: lat.len() as u64, elapsed, p50_us, p99_us }
}
