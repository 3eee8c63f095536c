//! The submitting side of detached jobs (ARCHITECTURE.md §4.13): a [`Client`] dials a
//! member, authenticates as a link does (TLS, SPAKE2 with the pool secret), greets as a
//! client rather than a member, and asks; it never joins the pool. Blocking, on a runtime of
//! its own, for the command line and the window's threads.

use super::server::read_exactly;
use super::wire::{self as dwire, DetachedId, JobRow, Reply, Request};
use crate::dial::{connect_authenticated, read_first};
use crate::link::read_frame;
use crate::proto::close;
use crate::secret::Secret;
use crate::wire::{self, Msg, PROTOCOL_VERSION};
use millpond_core::Mesh;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest the member may take to answer a request (a submit's answer comes after its
/// model was rebuilt and checked).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one write of a request or 1 MiB of its bytes may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No authenticated connection to the member.
    #[error("cannot reach the member at {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The member answered no: its words (an unknown id, a full queue, a bad job).
    #[error("{0}")]
    Refused(String),
    /// The exchange broke off, or the member said what it may not.
    #[error("the member at {address}: {reason}")]
    Broken { address: String, reason: String },
}

/// What a fetch gets.
#[derive(Debug)]
pub enum FetchOutcome {
    /// The job's G-code, as the member wrote it.
    Program(Vec<u8>),
    /// The job is not complete: where it stands.
    NotReady(JobRow),
}

/// An authenticated client connection to one member.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    address: String,
    /// The member's name, as its Hello gave it (cleaned).
    pub member: String,
}

impl Client {
    /// Dials the member at `address` (`HOST:PORT`) and authenticates with `secret`.
    pub fn connect(address: &str, secret: &Secret) -> Result<Self, ClientError> {
        let fail = |reason: String| ClientError::Connect {
            address: address.to_string(),
            reason: wire::sanitize(&reason, wire::MAX_REASON),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let (endpoint, conn, send, recv, member) = runtime.block_on(async {
            let addr = tokio::net::lookup_host(address)
                .await
                .map_err(|e| fail(format!("cannot resolve: {e}")))?
                .next()
                .ok_or_else(|| fail("the address resolves to nothing".into()))?;
            let bind: SocketAddr = if addr.is_ipv6() {
                "[::]:0".parse().expect("an address")
            } else {
                "0.0.0.0:0".parse().expect("an address")
            };
            let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| fail(e.to_string()))?;
            endpoint.set_default_client_config(crate::tls::client_config().map_err(fail)?);
            let (conn, mut send, mut recv) = connect_authenticated(&endpoint, addr, secret)
                .await
                .map_err(|(_, e)| fail(e))?;
            let greeting = wire::encode(&Msg::Client {
                protocol: PROTOCOL_VERSION,
            })
            .map_err(|e| fail(e.to_string()))?;
            tokio::time::timeout(WRITE_TIMEOUT, send.write_all(&greeting))
                .await
                .map_err(|_| fail("the greeting was not taken in time".into()))?
                .map_err(|e| fail(e.to_string()))?;
            let member = match read_first(&conn, &mut recv)
                .await
                .map_err(|(_, e)| fail(e))?
            {
                Msg::Hello { protocol, name, .. } if protocol == PROTOCOL_VERSION => {
                    wire::sanitize(&name, wire::MAX_NAME)
                }
                Msg::Hello { protocol, name, .. } => {
                    return Err(fail(format!(
                        "version mismatch: this client speaks protocol {PROTOCOL_VERSION}, the \
                         member ({}) protocol {protocol}",
                        wire::sanitize(&name, wire::MAX_NAME)
                    )));
                }
                _ => return Err(fail("the member did not say Hello".into())),
            };
            Ok((endpoint, conn, send, recv, member))
        })?;
        Ok(Self {
            runtime,
            endpoint,
            conn,
            send,
            recv,
            address: address.to_string(),
            member,
        })
    }

    fn broken(&self, reason: impl std::fmt::Display) -> ClientError {
        // The member's close reason says more than a failed read.
        let reason = match self.conn.close_reason() {
            Some(c) => crate::link::describe_close(&c),
            None => reason.to_string(),
        };
        ClientError::Broken {
            address: self.address.clone(),
            reason: wire::sanitize(&reason, wire::MAX_REASON),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let send = &mut self.send;
        let written = self.runtime.block_on(async {
            for piece in bytes.chunks(1 << 20) {
                match tokio::time::timeout(WRITE_TIMEOUT, send.write_all(piece)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("a write took too long".to_string()),
                }
            }
            Ok(())
        });
        written.map_err(|e| self.broken(e))
    }

    fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let recv = &mut self.recv;
        let body = self.runtime.block_on(async {
            match tokio::time::timeout(ANSWER_TIMEOUT, read_frame(recv)).await {
                Ok(Ok(Some(body))) => Ok(body),
                Ok(Ok(None)) => Err("it closed the stream".to_string()),
                Ok(Err(e)) => Err(String::from(e)),
                Err(_) => Err(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())),
            }
        });
        let body = body.map_err(|e| self.broken(e))?;
        match dwire::decode_reply(&body) {
            Ok(Reply::Refused(why)) => {
                Err(ClientError::Refused(wire::sanitize(&why, dwire::MAX_ERROR)))
            }
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.broken(format!("bad answer: {e}"))),
        }
    }

    fn ask(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let frame = wire::encode(request).map_err(|e| self.broken(e))?;
        self.write(&frame)?;
        self.read_reply()
    }

    fn unexpected(&self, reply: &Reply) -> ClientError {
        self.broken(format!("unexpected answer {reply:?}"))
    }

    /// Submits a job: the app's `description` of it and its placed `mesh`. Returns its id
    /// once the member has queued it.
    pub fn submit(
        &mut self,
        title: &str,
        description: &[u8],
        mesh: &Mesh,
    ) -> Result<DetachedId, ClientError> {
        let bytes = mesh.canonical_bytes();
        let request = Request::Submit {
            title: wire::sanitize(title, dwire::MAX_TITLE),
            description: description.len() as u64,
            mesh: bytes.len() as u64,
        };
        // Checked here as the member will check them, with the limit named.
        if description.len() as u64 > dwire::MAX_DESCRIPTION {
            return Err(ClientError::Refused(format!(
                "the job's description is {} bytes, more than the {} a member takes",
                description.len(),
                dwire::MAX_DESCRIPTION
            )));
        }
        if bytes.len() as u64 > wire::MAX_MESH {
            return Err(ClientError::Refused(format!(
                "the model is {} MiB ({} triangles), more than the {} MiB a member takes",
                bytes.len() >> 20,
                mesh.len(),
                wire::MAX_MESH >> 20
            )));
        }
        match self.ask(&request)? {
            Reply::Send => {}
            r => return Err(self.unexpected(&r)),
        }
        self.write(description)?;
        self.write(&bytes)?;
        match self.read_reply()? {
            Reply::Submitted { id } => Ok(id),
            r => Err(self.unexpected(&r)),
        }
    }

    /// The jobs the member keeps, oldest first.
    pub fn list(&mut self) -> Result<Vec<JobRow>, ClientError> {
        match self.ask(&Request::List)? {
            Reply::Jobs(rows) => Ok(rows),
            r => Err(self.unexpected(&r)),
        }
    }

    /// A complete job's program, or where the job stands.
    pub fn fetch(&mut self, id: DetachedId) -> Result<FetchOutcome, ClientError> {
        match self.ask(&Request::Fetch { id })? {
            Reply::Program { size } => {
                let recv = &mut self.recv;
                let program = self.runtime.block_on(read_exactly(recv, size));
                program
                    .map(FetchOutcome::Program)
                    .map_err(|e| self.broken(String::from(e)))
            }
            Reply::NotReady(row) => Ok(FetchOutcome::NotReady(row)),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Cancels a queued or running job: where it stands after (a finished one is left).
    pub fn cancel(&mut self, id: DetachedId) -> Result<JobRow, ClientError> {
        match self.ask(&Request::Cancel { id })? {
            Reply::Cancelled(row) => Ok(row),
            r => Err(self.unexpected(&r)),
        }
    }
}

impl Drop for Client {
    /// Leaves at once, waiting at most 0.3 s for the close to be sent.
    fn drop(&mut self) {
        let _ = self.send.finish();
        self.conn.close(close::QUIT.into(), b"done");
        let ep = self.endpoint.clone();
        self.runtime.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_millis(300), ep.wait_idle()).await;
        });
    }
}
