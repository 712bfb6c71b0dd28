//! One client connection: frames in, frames out, in order.
//!
//! Check, then parse: the 4-byte length is checked against `gateway.max_frame_bytes` before
//! a buffer is allocated. The fixed header prefix (api key, version, correlation id) is read
//! next; an unknown key or an unsupported version closes the connection with a log line,
//! except ApiVersions, which answers UNSUPPORTED_VERSION in a v0-shaped response so that a
//! newer client can retry with a version we speak (as Kafka does).
//!
//! Clients pipeline requests. Each request runs in its own task; a writer task awaits them
//! in arrival order, so responses leave in the order requests came. Each produce also takes
//! its turn in the connection's [`ProduceOrder`] as its frame arrives, which keeps one
//! connection's batches in order across the HTTP hop, and the transaction coordinator's
//! requests take effect one after another in the order they came ([`in_sequence`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};
use yaks_common::metrics::{
    ApiLabels, OutcomeLabels, RequestLabels, api_name, error_name, metrics,
};
use yaks_common::shutdown::Shutdown;

use crate::GatewayState;
use crate::handlers::{self, Outcome, RequestContext};
use crate::produce_order::ProduceOrder;
use crate::security::tls::Tls;
use crate::security::{self, Principal};
use crate::writers::Sticky;

/// Requests of one connection being processed at once; more wait in the socket. Produce
/// requests are answered only after their flush commits (a flush interval and more), so a
/// producer streaming small requests needs many in flight: at 64 the gateway stopped
/// reading a connection sending 150 KiB requests at ~20 MB/s (docs/PERFORMANCE.md).
const MAX_IN_FLIGHT: usize = 1024;

/// Request bytes of one connection being processed at once, so that many requests in
/// flight cannot mean unbounded memory: a frame is read only once its size fits.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// How long a client has to finish its TLS handshake before the connection is closed, so
/// a client that connects and says nothing does not hold a task and a socket for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a TLS connection's socket at once (a buffer per connection).
const TLS_READ_BUFFER: usize = 64 * 1024;

/// What a connection's handlers share.
#[derive(Debug)]
pub struct ConnectionState {
    /// Gateway-unique connection id.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's IP address as ACL bindings name hosts.
    pub host: String,
    /// The listener it came in on, whose addresses Metadata tells it.
    pub listener: Arc<str>,
    /// Who it acts as.
    pub principal: Principal,
    /// The writer this connection's produce requests go to.
    pub writer: Sticky,
}

/// The listener a connection was accepted on.
#[derive(Clone)]
pub struct Entrance {
    /// Its name.
    pub listener: Arc<str>,
    /// Its TLS configuration, for `SSL` and `SASL_SSL` listeners.
    pub tls: Option<Arc<Tls>>,
    /// Whether connections authenticate with SASL before they are served.
    pub sasl: bool,
}

/// Whether requests of `api_key` take effect in the order one connection sent them, each
/// after the one before has finished, as Kafka runs every request of a connection: the
/// transaction coordinator's. librdkafka sends EndTxn right behind an AddPartitionsToTxn
/// whose answer it has not had yet (an abort while partitions are being added); run side by
/// side, the end was decided first and answered INVALID_TXN_STATE, which is fatal to the
/// producer.
pub fn in_sequence(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::InitProducerId
            | ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::TxnOffsetCommit
            | ApiKey::EndTxn
    )
}

/// A connection's chain of [`in_sequence`] requests: each waits for the previous one.
#[derive(Default)]
struct Sequence {
    /// Closed when the last request handed a turn has finished.
    last: Option<oneshot::Receiver<()>>,
}

impl Sequence {
    /// The next request's place in the chain, taken as its frame arrives.
    fn turn(&mut self) -> SequenceTurn {
        let (done, after) = oneshot::channel();
        SequenceTurn {
            before: self.last.replace(after),
            _done: done,
        }
    }
}

/// One request's place in its connection's [`Sequence`]; dropping it (the request finished,
/// failed or panicked) lets the next one go.
struct SequenceTurn {
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl SequenceTurn {
    /// Waits until every earlier request of the chain has finished.
    async fn wait(&mut self) {
        if let Some(before) = self.before.take() {
            // An error only says the sender was dropped: the earlier request is done.
            let _ = before.await;
        }
    }
}

/// A response in the making: the task computing it, its api key, and the share of the
/// connection's and the gateway's byte budgets its request holds until the response is
/// written.
struct Pending {
    task: JoinHandle<Option<ResponseFrame>>,
    api_key: ApiKey,
    _budget: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Serves one connection until the client closes it, it misbehaves, or shutdown.
pub async fn serve(
    state: Arc<GatewayState>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    entrance: Entrance,
    mut shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let span = info_span!("connection", id, %peer, listener = %entrance.listener);
    let Some(tls) = entrance.tls.clone() else {
        let accepted = Accepted {
            id,
            peer,
            entrance,
            otherwise: Principal::anonymous(),
        };
        serve_as(state, stream, accepted, TcpStream::into_split, shutdown)
            .instrument(span)
            .await;
        return;
    };
    let handshakes = &metrics().gateway.tls_handshakes;
    // rustls asks the socket for 4 KiB at a time: a 1 MiB produce request would take 256
    // reads. Through this buffer the socket gives what it has in few large reads.
    let stream = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        done = handshake => done,
        _ = shutdown.wait() => return,
    };
    let stream = match stream {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            handshakes
                .get_or_create(&OutcomeLabels { outcome: "failed" })
                .inc();
            // A plaintext client on a TLS port, a client that does not trust our
            // certificate, or one without the certificate asked for.
            info!(parent: &span, error = %e, "tls handshake failed; closing connection");
            return;
        }
        Err(_) => {
            handshakes
                .get_or_create(&OutcomeLabels { outcome: "failed" })
                .inc();
            info!(parent: &span, "tls handshake not finished in time; closing connection");
            return;
        }
    };
    handshakes
        .get_or_create(&OutcomeLabels { outcome: "ok" })
        .inc();
    let accepted = Accepted {
        id,
        peer,
        entrance,
        otherwise: security::tls::principal_of(stream.get_ref().1),
    };
    serve_as(state, stream, accepted, tokio::io::split, shutdown)
        .instrument(span)
        .await;
}

/// A connection past its TLS handshake, if any.
struct Accepted {
    id: u64,
    peer: SocketAddr,
    entrance: Entrance,
    /// Its principal unless SASL names one: anonymous, or a client certificate's subject.
    otherwise: Principal,
}

/// Authenticates `stream` on a SASL listener, then serves it, split by `split`.
async fn serve_as<S, R, W>(
    state: Arc<GatewayState>,
    mut stream: S,
    accepted: Accepted,
    split: impl FnOnce(S) -> (R, W),
    mut shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        id,
        peer,
        entrance,
        otherwise,
    } = accepted;
    let principal = if entrance.sasl {
        match security::sasl::authenticate(&state, &mut stream, &mut shutdown).await {
            Some(principal) => principal,
            None => return,
        }
    } else {
        otherwise
    };
    debug!(%principal, "connection accepted");
    let (reader, writer) = split(stream);
    let connection = ConnectionState {
        id,
        peer,
        host: peer.ip().to_string(),
        listener: entrance.listener,
        principal,
        writer: Sticky::new(id),
    };
    serve_stream(state, connection, reader, writer, shutdown).await;
}

/// Serves requests read from `reader`, answering on `writer`, whatever carries them.
async fn serve_stream<R, W>(
    state: Arc<GatewayState>,
    connection: ConnectionState,
    reader: R,
    writer: W,
    shutdown: Shutdown,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let connections = &metrics().gateway.connections;
    connections.inc();
    let span = tracing::Span::current();
    let write_task = tokio::spawn(write_responses(writer, rx).instrument(span.clone()));
    read_requests(state, Arc::new(connection), reader, tx, shutdown).await;
    // The reader dropped its sender: the writer task flushes what is pending and ends.
    let _ = write_task.await;
    connections.dec();
    debug!("connection closed");
}

async fn read_requests<R: AsyncRead + Unpin>(
    state: Arc<GatewayState>,
    connection: Arc<ConnectionState>,
    mut reader: R,
    tx: mpsc::Sender<Pending>,
    mut shutdown: Shutdown,
) {
    let max_frame = state.config.max_frame_bytes;
    let connection_budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES / 1024));
    let produce_order = ProduceOrder::new();
    let mut sequence = Sequence::default();
    let writer_timeout = Duration::from_millis(state.config.writer_timeout_ms);
    loop {
        let length = tokio::select! {
            length = reader.read_i32() => match length {
                Ok(length) => length,
                Err(_) => return, // closed by the client, normally between frames
            },
            _ = shutdown.wait() => return,
        };
        if length < 8 || length as u32 > max_frame {
            warn!(
                length,
                max_frame, "frame size out of bounds; closing connection"
            );
            return;
        }
        // Wait (reading nothing more) until the frame fits the connection's byte budget,
        // then the gateway's.
        let kib = (length as usize).div_ceil(1024);
        let acquired = async {
            let own = connection_budget
                .clone()
                .acquire_many_owned(kib.min(MAX_IN_FLIGHT_BYTES / 1024) as u32)
                .await?;
            let shared = state
                .in_flight
                .clone()
                .acquire_many_owned(kib as u32)
                .await?;
            Ok::<_, tokio::sync::AcquireError>((own, shared))
        };
        let budget = tokio::select! {
            permits = acquired => match permits {
                Ok(permits) => permits,
                Err(_) => return,
            },
            _ = shutdown.wait() => return,
        };
        let mut frame = BytesMut::zeroed(length as usize);
        if let Err(e) = reader.read_exact(&mut frame).await {
            warn!(error = %e, "connection closed inside a frame");
            return;
        }
        let mut frame = frame.freeze();
        let head = match parse_head(&mut frame) {
            Ok(head) => head,
            Err(FrameRefusal::ApiVersionsTooNew { correlation_id }) => {
                // Answered before the header is parsed: a newer header may not parse.
                let body = handlers::api_versions::unsupported_version_body();
                let task =
                    tokio::spawn(async move { Some(ResponseFrame::new(correlation_id, 0, body)) });
                if tx
                    .send(Pending {
                        task,
                        api_key: ApiKey::ApiVersions,
                        _budget: budget,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(refusal) => {
                warn!(%refusal, "closing connection");
                return;
            }
        };
        let started = yaks_common::clock::now();
        let FrameHead {
            api_key,
            version,
            correlation_id,
            header,
        } = head;

        // Deadlines from the frame's arrival, not from when its turn comes.
        let turn = (api_key == ApiKey::Produce)
            .then(|| produce_order.turn(state.server_clock.deadline(writer_timeout)));
        let mut sequence_turn = in_sequence(api_key).then(|| sequence.turn());
        // A root span: each request is its own trace (the connection's span would make a
        // long-lived client one endless trace); the connection id links them in logs.
        let span = info_span!(
            parent: None,
            "request",
            connection = connection.id,
            peer = %connection.peer,
            api = ?api_key,
            version,
            correlation_id,
            client_id = header.client_id.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
        );
        yaks_common::telemetry::record_trace_id(&span);
        let context = RequestContext {
            state: state.clone(),
            connection: connection.clone(),
            api_key,
            version,
            header,
            turn,
        };
        let task = tokio::spawn(
            async move {
                if let Some(turn) = &mut sequence_turn {
                    turn.wait().await;
                }
                let outcome = handlers::dispatch(context, frame).await;
                drop(sequence_turn);
                let api = api_name(api_key);
                let (answer, error) = match outcome {
                    Outcome::Respond(body, error) => (
                        Some(ResponseFrame::new(
                            correlation_id,
                            api_key.response_header_version(version),
                            body,
                        )),
                        error_name(error),
                    ),
                    Outcome::NoResponse => (Some(ResponseFrame::default()), "NONE"),
                    Outcome::Close(reason) => {
                        warn!(%reason, "closing connection");
                        (None, "CONNECTION_CLOSED")
                    }
                };
                let gateway = &metrics().gateway;
                gateway
                    .requests
                    .get_or_create(&RequestLabels {
                        api,
                        version,
                        error,
                    })
                    .inc();
                gateway
                    .request_duration
                    .get_or_create(&ApiLabels { api, version })
                    .observe(started.elapsed().as_secs_f64());
                answer
            }
            .instrument(span),
        );
        let pending = Pending {
            task,
            api_key,
            _budget: budget,
        };
        if tx.send(pending).await.is_err() {
            return;
        }
    }
}

/// A frame's api key, version and header, parsed and checked.
#[derive(Debug)]
pub struct FrameHead {
    /// Which API.
    pub api_key: ApiKey,
    /// Its version, one this gateway supports.
    pub version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The request header.
    pub header: RequestHeader,
}

/// Why a frame is not served.
#[derive(Debug, thiserror::Error)]
pub enum FrameRefusal {
    /// Fewer than the 8 bytes of api key, version and correlation id.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// Not an API Kafka defines.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// An API this gateway does not serve.
    #[error("api {0:?} not supported")]
    UnsupportedApi(ApiKey),
    /// ApiVersions newer than ours: answered UNSUPPORTED_VERSION, not closed.
    #[error("ApiVersions version newer than supported")]
    ApiVersionsTooNew {
        /// Echoed in the answer.
        correlation_id: i32,
    },
    /// A version outside the API's supported range.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        /// Which API.
        api_key: ApiKey,
        /// The version asked for.
        version: i16,
    },
    /// The header does not decode.
    #[error("malformed request header of {api_key:?} v{version}: {detail}")]
    MalformedHeader {
        /// Which API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// The decoder's complaint.
        detail: String,
    },
}

/// Parses the head of a request frame (the bytes after the length), leaving `frame` at the
/// request body. Pure, so it is what the fuzz target drives.
pub fn parse_head(frame: &mut Bytes) -> Result<FrameHead, FrameRefusal> {
    if frame.len() < 8 {
        return Err(FrameRefusal::TooShort(frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(FrameRefusal::UnknownApiKey(api_key_raw));
    };
    let Some(supported) = handlers::supported_versions(api_key) else {
        return Err(FrameRefusal::UnsupportedApi(api_key));
    };
    if api_key == ApiKey::ApiVersions && version > supported.max {
        return Err(FrameRefusal::ApiVersionsTooNew { correlation_id });
    }
    if version < supported.min || version > supported.max {
        return Err(FrameRefusal::UnsupportedVersion { api_key, version });
    }
    let header =
        RequestHeader::decode(frame, api_key.request_header_version(version)).map_err(|e| {
            FrameRefusal::MalformedHeader {
                api_key,
                version,
                detail: e.to_string(),
            }
        })?;
    Ok(FrameHead {
        api_key,
        version,
        correlation_id,
        header,
    })
}

/// Writes responses in request order. A handler that asked to close (or panicked) ends the
/// connection after the responses before it.
async fn write_responses<W: AsyncWrite + Unpin>(writer: W, mut rx: mpsc::Receiver<Pending>) {
    let mut writer = BufWriter::new(writer);
    let mut next: Option<Pending> = None;
    loop {
        let pending = match next.take() {
            Some(pending) => pending,
            None => match rx.recv().await {
                Some(pending) => pending,
                None => break,
            },
        };
        let frame = match pending.task.await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                warn!(api = ?pending.api_key, error = %e, "request handler failed; closing connection");
                break;
            }
        };
        if !frame.is_empty() {
            // (An empty frame is an acks=0 produce: no response.) A body larger than the
            // buffer goes to the socket directly, after what is buffered.
            let written = match writer.write_all(&frame.head).await {
                Ok(()) => writer.write_all(&frame.body).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                debug!(error = %e, "client went away");
                return;
            }
        }
        // Flush unless the next response is already done, so responses that are ready
        // together share a syscall. Whether a later request is merely pending does not
        // matter: a pipelining client always has one, and holding small produce answers
        // back until 8 KiB of them piled up added hundreds of milliseconds to every ack.
        next = rx.try_recv().ok();
        let next_ready = next.as_ref().is_some_and(|p| p.task.is_finished());
        if !next_ready && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.into_inner().shutdown().await;
}

/// A response as written to the client: the size prefix and response header, then the
/// body. Kept apart so that a large body (a fetch's records) is written as it is rather
/// than copied behind a few header bytes. Empty: no response (an acks=0 produce).
#[derive(Default)]
pub(crate) struct ResponseFrame {
    head: Bytes,
    body: Bytes,
}

impl ResponseFrame {
    pub(crate) fn new(correlation_id: i32, header_version: i16, body: Bytes) -> ResponseFrame {
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let mut head = BytesMut::with_capacity(16);
        head.extend_from_slice(&[0u8; 4]);
        if let Err(e) = header.encode(&mut head, header_version) {
            // Cannot happen for a plain correlation id; answer nothing rather than garbage.
            warn!(error = %e, "encoding response header");
            return ResponseFrame::default();
        }
        let length = (head.len() - 4 + body.len()) as i32;
        head[..4].copy_from_slice(&length.to_be_bytes());
        ResponseFrame {
            head: head.freeze(),
            body,
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Writes the frame to `writer` and flushes it.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(&self.head).await?;
        writer.write_all(&self.body).await?;
        writer.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    fn pending(task: JoinHandle<Option<ResponseFrame>>, budget: &Arc<Semaphore>) -> Pending {
        let permit = || budget.clone().try_acquire_owned().expect("budget");
        Pending {
            task,
            api_key: ApiKey::Produce,
            _budget: (permit(), permit()),
        }
    }

    #[tokio::test]
    async fn a_ready_response_goes_out_while_later_requests_are_still_pending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_read, write) = server.into_split();
        let budget = Arc::new(Semaphore::new(4));
        let (tx, rx) = mpsc::channel(8);
        // Both queued before the writer starts: the first is answered, the second (a
        // pipelined produce waiting for its flush) is not.
        let first = tokio::spawn(async {
            Some(ResponseFrame {
                head: Bytes::from_static(b"fir"),
                body: Bytes::from_static(b"st"),
            })
        });
        tx.send(pending(first, &budget)).await.expect("queued");
        let second = tokio::spawn(std::future::pending::<Option<ResponseFrame>>());
        tx.send(pending(second, &budget)).await.expect("queued");
        let writer = tokio::spawn(write_responses(write, rx));

        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the first response was held back behind the pending one")
            .expect("read");
        assert_eq!(&got, b"first");
        writer.abort();
    }

    #[tokio::test]
    async fn requests_in_sequence_run_one_after_another_in_arrival_order() {
        let mut sequence = Sequence::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // The first is the slowest: the later ones still wait for it.
        for (n, delay) in [(0, 50), (1, 0), (2, 10)] {
            let mut turn = sequence.turn();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                order.lock().expect("order").push(format!("start {n}"));
                yaks_common::clock::sleep(Duration::from_millis(delay)).await;
                order.lock().expect("order").push(format!("end {n}"));
                drop(turn);
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let order = order.lock().expect("order").clone();
        assert_eq!(
            order,
            ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
        );
    }
}
