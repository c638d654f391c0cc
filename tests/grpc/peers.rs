//! Real gRPC peers for the gRPC tests: a tonic server (`test.Echo` plus the standard health
//! service) on its own runtime, so that killing it closes every connection at once, and a tonic
//! client. The messages are hand-written prost structs (no protoc).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;

/// What a call asks of the echo service.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Ask {
    /// Answer with this gRPC status code instead (0: answer normally).
    #[prost(uint32, tag = "1")]
    pub code: u32,
    /// Wait this long before answering (each message, for a stream).
    #[prost(uint32, tag = "2")]
    pub delay_ms: u32,
    /// Messages in a streamed answer.
    #[prost(uint32, tag = "3")]
    pub count: u32,
    /// A stream ends with `code` after this many messages (0: never).
    #[prost(uint32, tag = "4")]
    pub fail_after: u32,
}

/// One answer: which backend, and the message's place in a stream.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Reply {
    #[prost(string, tag = "1")]
    pub backend: String,
    #[prost(uint32, tag = "2")]
    pub index: u32,
}

/// The echo service of one backend.
#[derive(Clone)]
struct Echo {
    name: Arc<str>,
    calls: Arc<AtomicU64>,
    /// The `grpc-timeout` of each call that had one, as received.
    timeouts: Arc<Mutex<Vec<String>>>,
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

fn status(code: u32) -> Status {
    Status::new(Code::from_i32(code as i32), format!("asked for {code}"))
}

struct Who(Echo);

impl UnaryService<Ask> for Who {
    type Response = Reply;
    type Future = BoxFuture<Response<Reply>, Status>;

    fn call(&mut self, request: Request<Ask>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            echo.calls.fetch_add(1, Ordering::Relaxed);
            let ask = request.into_inner();
            tokio::time::sleep(Duration::from_millis(ask.delay_ms.into())).await;
            if ask.code != 0 {
                return Err(status(ask.code));
            }
            Ok(Response::new(Reply {
                backend: echo.name.to_string(),
                index: 0,
            }))
        })
    }
}

struct Count(Echo);

type ReplyStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Reply, Status>> + Send>>;

impl ServerStreamingService<Ask> for Count {
    type Response = Reply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, request: Request<Ask>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            echo.calls.fetch_add(1, Ordering::Relaxed);
            let ask = request.into_inner();
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for index in 0..ask.count {
                    if ask.fail_after != 0 && index == ask.fail_after {
                        let _ = tx.send(Err(status(ask.code))).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(ask.delay_ms.into())).await;
                    let reply = Reply {
                        backend: echo.name.to_string(),
                        index,
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as ReplyStream
            ))
        })
    }
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let echo = self.clone();
        if let Some(timeout) = request.headers().get("grpc-timeout") {
            let timeout = String::from_utf8_lossy(timeout.as_bytes()).into_owned();
            echo.timeouts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(timeout);
        }
        match request.uri().path() {
            "/test.Echo/Who" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<Reply, Ask>::default());
                Ok(grpc.unary(Who(echo), request).await)
            }),
            "/test.Echo/Count" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<Reply, Ask>::default());
                Ok(grpc.server_streaming(Count(echo), request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A gRPC backend on loopback: `test.Echo` and `grpc.health.v1.Health`.
pub struct GrpcBackend {
    pub name: String,
    pub addr: SocketAddr,
    calls: Arc<AtomicU64>,
    timeouts: Arc<Mutex<Vec<String>>>,
    health: HealthReporter,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl GrpcBackend {
    /// Starts a backend named `name` on a free loopback port.
    pub fn start(name: &str) -> Self {
        GrpcBackend::start_on(name, "127.0.0.1:0".parse().expect("an address"))
    }

    /// Starts a backend named `name` on `addr` (again, after [`GrpcBackend::kill`] or
    /// [`GrpcBackend::stop`]).
    pub fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("binding a gRPC backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("its address");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a backend runtime");
        let calls = Arc::new(AtomicU64::new(0));
        let timeouts = Arc::new(Mutex::new(Vec::new()));
        let echo = Echo {
            name: name.into(),
            calls: Arc::clone(&calls),
            timeouts: Arc::clone(&timeouts),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let served = Server::builder()
                .add_service(echo)
                .add_service(health_service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("gRPC backend ended: {e}");
            }
            let _ = stopped_tx.send(());
        });
        GrpcBackend {
            name: name.into(),
            addr,
            calls,
            timeouts,
            health,
            runtime: Some(runtime),
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    /// `http://addr`, for a config's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls the echo service answered.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The `grpc-timeout` of each call that had one, as received.
    pub fn timeouts(&self) -> Vec<String> {
        self.timeouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets what the health service says of `test.Echo`.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.health
            .set_service_status(<Echo as NamedService>::NAME, status)
            .await;
    }

    /// Stops gracefully: GOAWAY on every connection, calls in progress finish, then the port
    /// closes. Resolves once the server is gone.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        }
        self.kill();
    }

    /// Kills it: every connection closes at once, mid-call or not.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gRPC client on one HTTP/2 connection to `addr`.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("an endpoint")
            .connect()
            .await
            .expect("connecting to lbhost");
        Client {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// `test.Echo/Who`: the answering backend's name, or the call's status.
    pub async fn who(&mut self, ask: Ask) -> Result<String, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let path = PathAndQuery::from_static("/test.Echo/Who");
        let reply = self
            .grpc
            .unary(Request::new(ask), path, ProstCodec::<Ask, Reply>::default())
            .await?;
        Ok(reply.into_inner().backend)
    }

    /// `test.Echo/Count`: the stream of replies.
    pub async fn count(&mut self, ask: Ask) -> Result<tonic::Streaming<Reply>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let path = PathAndQuery::from_static("/test.Echo/Count");
        let reply = self
            .grpc
            .server_streaming(Request::new(ask), path, ProstCodec::<Ask, Reply>::default())
            .await?;
        Ok(reply.into_inner())
    }
}
