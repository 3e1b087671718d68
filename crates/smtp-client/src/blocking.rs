//! The client for threads without an async runtime (tests, the chaos workload, benchmark
//! senders): the same connection and transaction, each call run to completion on a small
//! runtime of the client's own.

use std::time::Duration;

use common::rpc_channel::ClusterKey;
use tokio::net::TcpStream;

use crate::{ClientError, Connection, Deadlines, Dialect, Envelope, Reply, Transcript};

/// A blocking connection to one server.
pub struct Client {
    rt: tokio::runtime::Runtime,
    conn: Connection<TcpStream>,
}

impl Client {
    /// Connect and read a `220` greeting.
    pub fn open(addr: &str, deadlines: Deadlines) -> Result<(Self, Reply), ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| ClientError::Io { addr: addr.to_string(), source })?;
        let (conn, greeting) = rt.block_on(Connection::open(addr, deadlines))?;
        Ok((Self { rt, conn }, greeting))
    }

    pub fn hello(&mut self, dialect: Dialect, name: &str) -> Result<Vec<String>, ClientError> {
        self.rt.block_on(self.conn.hello(dialect, name))
    }

    pub fn authenticate_cluster(&mut self, key: &ClusterKey) -> Result<(), ClientError> {
        self.rt.block_on(self.conn.authenticate_cluster(key))
    }

    pub fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.rt.block_on(self.conn.command(line))
    }

    /// Raw bytes, for tests of the server's handling of exact input.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let wait = self.conn.deadlines().data_end;
        self.rt.block_on(self.conn.send_within(bytes, wait))
    }

    pub fn reply_within(&mut self, wait: Duration) -> Result<Reply, ClientError> {
        self.rt.block_on(self.conn.reply_within(wait))
    }

    /// See [`Connection::transaction`]; no `stop_at`.
    pub fn transaction(
        &mut self,
        dialect: Dialect,
        envelope: &Envelope<'_>,
        stuffed: &[u8],
    ) -> Result<Transcript, ClientError> {
        self.rt.block_on(self.conn.transaction(dialect, envelope, stuffed, |_| false))
    }

    pub fn quit(&mut self) {
        self.rt.block_on(self.conn.quit())
    }
}
