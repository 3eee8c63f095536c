//! A link's I/O: the tasks that turn a QUIC connection's streams into [`Event`]s (control
//! frames, bulk results and meshes, the close) and frames into bytes, and the bulk senders
//! (ARCHITECTURE.md §4.3–4.4). They decide nothing: the protocol is in `proto`.

use crate::node::Event;
use crate::proto::{Input, LinkId, ResultMessage, Take, close};
use crate::wire::{self, BulkHeader};
use millpond_core::Mesh;
use millpond_core::job::ChunkResult;
use millpond_core::sim_job::ProgramMoves;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// Longest a write may take (a control frame, a bulk stream's header, each 1 MiB of its
/// payload, its acknowledgement): a peer that stops reading cannot hold a task for ever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bulk payloads are written in pieces of this many bytes, each within `WRITE_TIMEOUT`.
const WRITE_PIECE: usize = 1 << 20;

/// Runs a write within `WRITE_TIMEOUT`.
async fn in_time<T, E: std::fmt::Display>(
    what: &str,
    write: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{what} did not complete in {WRITE_TIMEOUT:?}")),
    }
}

/// Reads one control frame; `None` at a clean end of stream.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(FrameError::from_read_exact(e)),
    }
    let n = wire::frame_len(prefix).map_err(|e| FrameError::Invalid(e.to_string()))?;
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body)
        .await
        .map_err(FrameError::from_read_exact)?;
    Ok(Some(body))
}

/// Why a stream could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The connection is gone, in the words `describe_close` gives it.
    Gone(String),
    /// The peer broke the stream: framing, length, hash or content. A protocol violation.
    Invalid(String),
}

impl FrameError {
    /// A failed read. When the whole connection went, a reader often hears it before the
    /// close watcher does, so it must say why in the same words: quinn's own text is only
    /// "connection lost", which would hide a peer that quit (and counting it as a violation
    /// would blame a peer for leaving mid-transfer).
    pub(crate) fn from_read(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => FrameError::Gone(describe_close(&c)),
            e => FrameError::Invalid(e.to_string()),
        }
    }

    fn from_read_exact(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(e) => FrameError::from_read(e),
            quinn::ReadExactError::FinishedEarly(n) => {
                FrameError::Invalid(format!("stream ended {n} bytes into a frame"))
            }
        }
    }

    /// What the link's event loop must hear.
    fn event(self, link: LinkId) -> Event {
        match self {
            FrameError::Gone(reason) => Event::Input(Input::LinkDown { link, reason }),
            FrameError::Invalid(reason) => Event::Input(Input::Violation { link, reason }),
        }
    }
}

impl From<FrameError> for String {
    fn from(e: FrameError) -> String {
        match e {
            FrameError::Gone(s) | FrameError::Invalid(s) => s,
        }
    }
}

impl From<String> for FrameError {
    fn from(reason: String) -> Self {
        FrameError::Invalid(reason)
    }
}

impl From<&str> for FrameError {
    fn from(reason: &str) -> Self {
        FrameError::Invalid(reason.into())
    }
}

/// Starts a link's writer, control reader, bulk-stream acceptor and close watcher.
/// Control frames waiting for a link's writer. A frame is at most `wire::MAX_FRAME` (64 KiB),
/// most are tens of bytes; an honest peer reads within milliseconds, so a full queue means
/// a peer that stopped reading while this node keeps answering it: its link is closed
/// (`node.rs`), and the queue never holds more than 64 MiB.
pub(crate) const MAX_QUEUED_FRAMES: usize = 1024;

/// Messages read from one link that the protocol has not handled yet. The reader waits
/// for the loop beyond this, so a peer that sends faster than this node handles its
/// messages is held back by QUIC's flow control (what it sent waits in the connection's
/// receive window, bounded) rather than growing the loop's queue without end.
pub(crate) const MAX_UNHANDLED: usize = 4096;

pub(crate) fn spawn_link_tasks(
    link: LinkId,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut ctrl_rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<Event>,
    unhandled: Arc<Semaphore>,
) {
    // Writer: a frame the peer does not take within the timeout closes the link (the
    // close watcher then reports it down).
    let c = conn.clone();
    tokio::spawn(async move {
        while let Some(frame) = ctrl_rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, send.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    let reason = format!("a control write did not complete in {WRITE_TIMEOUT:?}");
                    let addr = c.remote_address();
                    tracing::warn!("closing link to {addr}: stalled: {reason}");
                    c.close(close::STALLED.into(), reason.as_bytes());
                    break;
                }
            }
        }
    });
    // Control reader.
    let t = tx.clone();
    let watch = conn.clone();
    tokio::spawn(async move {
        loop {
            // A permit per message in the loop's queue, given back as the loop handles it.
            tokio::select! {
                permit = unhandled.acquire() => match permit {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                },
                _ = watch.closed() => break,
            }
            match read_frame(&mut recv).await {
                Ok(Some(body)) => match wire::decode_msg(&body) {
                    Ok(msg) => {
                        if t.send(Event::Input(Input::Msg { link, msg })).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let _ = t.send(Event::Input(Input::Violation { link, reason }));
                        break;
                    }
                },
                Ok(None) => {
                    // The control stream lives as long as the link: finishing it is leaving.
                    let reason = "control stream finished".into();
                    let _ = t.send(Event::Input(Input::Violation { link, reason }));
                    break;
                }
                Err(e) => {
                    let _ = t.send(e.event(link));
                    break;
                }
            }
        }
    });
    // Bulk streams.
    let t = tx.clone();
    let c = conn.clone();
    tokio::spawn(async move {
        while let Ok(stream) = c.accept_uni().await {
            let t = t.clone();
            tokio::spawn(async move {
                if let Err(e) = read_bulk(link, stream, &t).await {
                    let _ = t.send(e.event(link));
                }
            });
        }
    });
    // Close watcher.
    tokio::spawn(async move {
        let reason = conn.closed().await;
        let reason = describe_close(&reason);
        let _ = tx.send(Event::Input(Input::LinkDown { link, reason }));
    });
}

/// Words for why a link closed, for the statistics and the logs.
pub fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(a) => {
            // The peer's own words: cleaned before they are logged or shown.
            let reason = wire::sanitize(&String::from_utf8_lossy(&a.reason), wire::MAX_REASON);
            match a.error_code.into_inner() as u32 {
                close::QUIT => format!("peer quit ({reason})"),
                close::AUTH_FAILED => "authentication failed".into(),
                close::VERSION_MISMATCH => reason,
                close::PROTOCOL_VIOLATION => format!("protocol violation: {reason}"),
                close::STALLED => format!("stalled: {reason}"),
                _ => reason,
            }
        }
        quinn::ConnectionError::TimedOut => "timed out (no answer for 4 s)".into(),
        quinn::ConnectionError::LocallyClosed => "closed here".into(),
        e => e.to_string(),
    }
}

async fn read_bulk(
    link: LinkId,
    mut stream: quinn::RecvStream,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<(), FrameError> {
    let start = Instant::now();
    let Some(body) = read_frame(&mut stream).await? else {
        return Err("empty bulk stream".into());
    };
    let header = wire::decode_bulk_header(&body).map_err(|e| e.to_string())?;
    // Nothing more is read until the protocol says this node wants it (issue 17): a stream
    // it declines is stopped unread, one it finds hostile closes the link.
    let (reply, answer) = tokio::sync::oneshot::channel();
    let offer = Event::BulkOffered {
        link,
        header: header.clone(),
        reply,
    };
    let take = match tx.send(offer) {
        Ok(()) => answer.await.unwrap_or(Take::No),
        Err(_) => Take::No,
    };
    if !take.taken() {
        let _ = stream.stop(0u32.into());
        return Ok(());
    }
    let size = match &header {
        BulkHeader::Result { size, .. }
        | BulkHeader::Mesh { size, .. }
        | BulkHeader::Program { size, .. } => *size,
    };
    // Read exactly `size` bytes in pieces, hashing as they arrive; never allocate more than
    // was announced (and the announcement was checked against its limit).
    let mut data = Vec::with_capacity((size as usize).min(8 << 20));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    while (data.len() as u64) < size {
        let want = ((size - data.len() as u64) as usize).min(buf.len());
        let n = stream
            .read(&mut buf[..want])
            .await
            .map_err(FrameError::from_read)?
            .ok_or("bulk stream ended early")?;
        hasher.update(&buf[..n]);
        data.extend_from_slice(&buf[..n]);
    }
    let mut extra = [0u8; 1];
    if stream
        .read(&mut extra)
        .await
        .map_err(FrameError::from_read)?
        .is_some_and(|n| n > 0)
    {
        return Err("bulk stream longer than announced".into());
    }
    let digest = *hasher.finalize().as_bytes();
    match header {
        BulkHeader::Result {
            job,
            chunk,
            compute_s,
            hash,
            node,
            worker,
            ..
        } => {
            if digest != hash {
                return Err(format!("result for chunk {chunk} fails its hash").into());
            }
            // Its shape first, against the chunk's: lists that would swell in memory, or
            // more of them than the chunk has, are refused undecoded.
            let Take::Result(form) = take else {
                return Err(format!("result for chunk {chunk} taken as something else").into());
            };
            let result: ChunkResult = crate::result_shape::decode(&data, form)
                .map_err(|e| format!("result for chunk {chunk}: {e}"))?;
            let message = ResultMessage {
                job,
                chunk,
                compute_s,
                by: (node, worker),
                result: Box::new(result),
            };
            let _ = tx.send(Event::Input(Input::Result {
                link,
                message,
                transfer_s: start.elapsed().as_secs_f64(),
            }));
        }
        BulkHeader::Mesh { hash, .. } => {
            let name = format!("pool mesh {hash}");
            let read = move |d: &[u8]| Mesh::from_canonical_bytes(d, &name);
            let mesh = Box::new(read_hashed("mesh", digest == hash.0, data, read).await?);
            let _ = tx.send(Event::Input(Input::MeshArrived { link, mesh }));
        }
        BulkHeader::Program { hash, .. } => {
            // Every count is checked against the bytes before allocating.
            let name = format!("pool program {hash}");
            let read = move |d: &[u8]| ProgramMoves::from_canonical_bytes(d, &name);
            let program = Arc::new(read_hashed("program", digest == hash.0, data, read).await?);
            let _ = tx.send(Event::Input(Input::ProgramArrived {
                link,
                hash,
                program,
            }));
        }
    }
    Ok(())
}

/// A mesh's or a program's bytes, `data`, refused unless their hash matched the header's
/// (`matches`; `what` names them), else read off the loop by `read`.
async fn read_hashed<T, E>(
    what: &str,
    matches: bool,
    data: Vec<u8>,
    read: impl FnOnce(&[u8]) -> Result<T, E> + Send + 'static,
) -> Result<T, FrameError>
where
    T: Send + 'static,
    E: ToString + Send + 'static,
{
    if !matches {
        return Err(format!("{what} does not match its hash").into());
    }
    let read = tokio::task::spawn_blocking(move || read(&data)).await;
    let read = read.map_err(|e| e.to_string())?;
    read.map_err(|e| e.to_string().into())
}

pub(crate) async fn send_bulk(
    conn: &quinn::Connection,
    header: &BulkHeader,
    payload: &[u8],
) -> Result<(), String> {
    let mut s = in_time("opening a bulk stream", conn.open_uni()).await?;
    let frame = wire::encode(header).map_err(|e| e.to_string())?;
    let written = async {
        in_time("a bulk header", s.write_all(&frame)).await?;
        for piece in payload.chunks(WRITE_PIECE) {
            in_time("a bulk write", s.write_all(piece)).await?;
        }
        s.finish().map_err(|e| e.to_string())?;
        // Wait until the peer has it all, so a quick close does not cut it off.
        in_time("a bulk acknowledgement", s.stopped()).await?;
        Ok::<(), String>(())
    }
    .await;
    if written.is_err() {
        // Give up the stream: the receiver sees it reset, the sender's parent re-queues.
        let _ = s.reset(0u32.into());
    }
    written
}

pub(crate) async fn send_result(
    conn: &quinn::Connection,
    message: &ResultMessage,
) -> Result<(), String> {
    let bytes = postcard::to_stdvec(&*message.result).map_err(|e| e.to_string())?;
    let header = message.header(bytes.len() as u64, *blake3::hash(&bytes).as_bytes());
    send_bulk(conn, &header, &bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that quits is named as such even when a stream reader, not the close watcher,
    /// is the first to hear the connection go (the CI failure of 22 Nov: "connection lost"),
    /// and a connection that goes mid-transfer is a lost link, not the peer's violation; a
    /// stream cut short on a live connection is one.
    #[test]
    fn a_read_cut_by_a_quit_says_peer_quit() {
        let quit = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: close::QUIT.into(),
            reason: "quit".into(),
        });
        let read = quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(quit));
        match FrameError::from_read_exact(read).event(3) {
            Event::Input(Input::LinkDown { link: 3, reason }) => {
                assert_eq!(reason, "peer quit (quit)")
            }
            e => panic!("{e:?}"),
        }
        let reset = quinn::ReadError::Reset(7u32.into());
        match FrameError::from_read(reset).event(3) {
            Event::Input(Input::Violation { link: 3, reason }) => {
                assert!(reason.contains("reset"), "{reason}")
            }
            e => panic!("{e:?}"),
        }
        // A peer's close reason with a terminal escape and a newline is cleaned.
        let evil = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: close::PROTOCOL_VIOLATION.into(),
            reason: "bad\x1b[2J\nmillpond: fake".into(),
        });
        assert_eq!(
            describe_close(&evil),
            "protocol violation: bad�[2J�millpond: fake"
        );
        let short = quinn::ReadExactError::FinishedEarly(2);
        assert!(matches!(
            FrameError::from_read_exact(short).event(3),
            Event::Input(Input::Violation { .. })
        ));
    }
}
