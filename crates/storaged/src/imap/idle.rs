//! The IDLE wait (RFC 2177): after `+ idling`, the server sends what other sessions change as
//! it happens and waits for the client's `DONE`. One loop over five events: input (read
//! cancel-safely, so a `DONE` split across packets is kept whole), a change to the mailbox
//! (the caller's `poll` turns it into untagged responses), a change of the group's leader,
//! the node stopping, and the deadline. At the start and after a change or a new leader the
//! caller's `gone` says whether this node still serves the user (a lock or a move arrives as a change).
//! Nothing wakes an idle session but these: no periodic check, so ten thousand idling
//! clients cost no CPU while nothing happens. One deadline for the whole IDLE: after
//! `timeout` without `DONE` the client is logged out (RFC 2177 expects the server to drop a
//! client idle for 30 minutes at least; ours waits 31).
//!
//! No socket, no group, no clock of its own: tested with in-memory pipes and paused time.

use std::time::Duration;

use common::line::{Line, PartialLine};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Longest line taken while idling (`DONE`, with room for a client's padding).
const DONE_LINE_MAX: usize = 64;

/// How an IDLE ended.
#[derive(Debug, PartialEq, Eq)]
pub enum IdleEnd {
    /// The client sent `DONE`: answer the IDLE and go on.
    Done,
    /// The client sent another line: answer the IDLE with BAD and go on.
    NotDone,
    /// The connection is over (the client left, or was sent a BYE here).
    Closed,
}

/// What an idling session listens to besides the client.
pub struct Events<'a, T, L, P, G> {
    /// Moves whenever the mailbox store applies a change.
    pub changes: &'a mut watch::Receiver<T>,
    /// Moves whenever the group's leader changes; ends when the group stops.
    pub leader: &'a mut watch::Receiver<L>,
    /// Becomes true when the node begins to shut down.
    pub stopping: &'a mut watch::Receiver<bool>,
    /// The untagged responses for what changed since the last call.
    pub poll: P,
    /// A BYE line if this node no longer serves the session.
    pub gone: G,
    /// The autologout: how long an IDLE may last without `DONE`.
    pub timeout: Duration,
}

/// Wait for `DONE`, sending changes as they come. The caller has sent `+ idling`.
pub async fn wait<R, W, T, L, P, G>(rd: &mut R, wr: &mut W, ev: Events<'_, T, L, P, G>) -> std::io::Result<IdleEnd>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    P: FnMut() -> Vec<u8>,
    G: FnMut() -> Option<&'static [u8]>,
{
    let Events { changes, leader, stopping, mut poll, mut gone, timeout } = ev;
    let mut line = PartialLine::new(DONE_LINE_MAX);
    let autologout = tokio::time::sleep(timeout);
    tokio::pin!(autologout);
    // The leader may have changed between the last command and this IDLE.
    if let Some(bye) = gone() {
        return say_bye(wr, bye).await;
    }
    loop {
        tokio::select! {
            got = line.read(rd) => match got? {
                None => {}
                Some(Line::Complete(l)) if l.eq_ignore_ascii_case(b"DONE") => return Ok(IdleEnd::Done),
                Some(Line::Complete(_) | Line::TooLong { .. }) => return Ok(IdleEnd::NotDone),
                Some(Line::Eof | Line::Idle) => return Ok(IdleEnd::Closed),
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(IdleEnd::Closed);
                }
                if let Some(bye) = gone() {
                    return say_bye(wr, bye).await;
                }
                wr.write_all(&poll()).await?;
                wr.flush().await?;
            }
            changed = leader.changed() => match (changed, gone()) {
                (_, Some(bye)) => return say_bye(wr, bye).await,
                (Err(_), None) => return say_bye(wr, GROUP_STOPPED_BYE).await,
                (Ok(()), None) => {}
            },
            _ = stopping.changed() => return say_bye(wr, b"* BYE [UNAVAILABLE] server shutting down\r\n").await,
            () = &mut autologout => return say_bye(wr, b"* BYE autologout: idle too long\r\n").await,
        }
    }
}

/// The last words when the group's Raft stopped under an idling session.
const GROUP_STOPPED_BYE: &[u8] = b"* BYE [UNAVAILABLE] the mailhost stopped here; reconnect\r\n";

async fn say_bye<W: AsyncWrite + Unpin>(wr: &mut W, bye: &[u8]) -> std::io::Result<IdleEnd> {
    wr.write_all(bye).await?;
    wr.flush().await?;
    Ok(IdleEnd::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, BufReader};

    const TIMEOUT: Duration = Duration::from_secs(31 * 60);

    /// Runs `wait` over an in-memory pipe; the client side and the change sender come back.
    struct Idler {
        client: tokio::io::DuplexStream,
        changes: watch::Sender<u64>,
        leader: watch::Sender<u64>,
        stopping: watch::Sender<bool>,
        task: tokio::task::JoinHandle<std::io::Result<IdleEnd>>,
    }

    fn idle(gone_after_checks: Option<u32>) -> Idler {
        let (client, server) = tokio::io::duplex(4096);
        let (changes, mut changes_rx) = watch::channel(0u64);
        let (leader, mut leader_rx) = watch::channel(1u64);
        let (stopping, mut stopping_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (rd, mut wr) = tokio::io::split(server);
            let mut rd = BufReader::new(rd);
            let mut polls = 0;
            let mut checks = 0;
            let ev = Events {
                changes: &mut changes_rx,
                leader: &mut leader_rx,
                stopping: &mut stopping_rx,
                poll: || {
                    polls += 1;
                    format!("* {polls} EXISTS\r\n").into_bytes()
                },
                gone: || {
                    checks += 1;
                    gone_after_checks.filter(|n| checks > *n).map(|_| &b"* BYE [UNAVAILABLE] moved\r\n"[..])
                },
                timeout: TIMEOUT,
            };
            wait(&mut rd, &mut wr, ev).await
        });
        Idler { client, changes, leader, stopping, task }
    }

    async fn read_some(client: &mut tokio::io::DuplexStream) -> String {
        let mut buf = vec![0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn rfc2177_a_done_split_across_packets_and_ticks_ends_the_idle() {
        let mut i = idle(None);
        use tokio::io::AsyncWriteExt;
        i.client.write_all(b"DO").await.unwrap();
        // Time and a change go by between the two halves.
        tokio::time::sleep(Duration::from_secs(5)).await;
        i.changes.send(1).unwrap();
        assert_eq!(read_some(&mut i.client).await, "* 1 EXISTS\r\n", "another session's change reaches the idler");
        i.client.write_all(b"NE\r\n").await.unwrap();
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn rfc2177_the_autologout_fires_once_however_often_the_loop_wakes() {
        let mut i = idle(None);
        // A change every minute wakes the loop; the deadline is still the IDLE's start + 31 min.
        for k in 1..=30u64 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            i.changes.send(k).unwrap();
            assert_eq!(read_some(&mut i.client).await, format!("* {k} EXISTS\r\n"));
        }
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(read_some(&mut i.client).await, "* BYE autologout: idle too long\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn other_lines_stopping_and_a_lost_mailbox_end_the_idle() {
        let mut i = idle(None);
        use tokio::io::AsyncWriteExt;
        i.client.write_all(b"NOOP\r\n").await.unwrap();
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::NotDone);

        let mut i = idle(None);
        i.stopping.send(true).unwrap();
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] server shutting down\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);

        // Gone already when the IDLE starts.
        let mut i = idle(Some(0));
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] moved\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);

        // This node stops leading: the idler is told to reconnect at once.
        let mut i = idle(Some(1));
        i.leader.send(2).unwrap();
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] moved\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);

        // A lock or a move arrives as a change: the BYE comes instead of the change.
        let mut i = idle(Some(1));
        i.changes.send(1).unwrap();
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] moved\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);

        // A new leader that leaves this node serving changes nothing; Raft stopping does.
        let mut i = idle(Some(2));
        i.leader.send(2).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        i.changes.send(1).unwrap();
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] moved\r\n", "the second look says gone");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);
        let mut i = idle(None);
        drop(i.leader);
        assert_eq!(read_some(&mut i.client).await, "* BYE [UNAVAILABLE] the mailhost stopped here; reconnect\r\n");
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);

        let i = idle(None);
        drop(i.client);
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Closed);
        drop(i.changes);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_wakes_an_idle_session_while_nothing_happens() {
        // `gone` is asked once at the start and would end the IDLE the next time: ten quiet
        // minutes must not ask it (no periodic check), and DONE still ends the IDLE normally.
        let mut i = idle(Some(1));
        tokio::time::sleep(Duration::from_secs(600)).await;
        use tokio::io::AsyncWriteExt;
        i.client.write_all(b"DONE\r\n").await.unwrap();
        assert_eq!(i.task.await.unwrap().unwrap(), IdleEnd::Done);
    }
}
