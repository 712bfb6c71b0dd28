//! Logging and tracing set-up shared by every process.
//!
//! One call at start-up installs: the log output (text, or JSON with `log.format = "json"`;
//! `RUST_LOG` overrides the configured filter so an operator can turn up one module
//! without editing the config), and an OpenTelemetry layer that gives every span a trace
//! context. A gateway sends its request span's context to writers and readers in the W3C
//! `traceparent` header ([`trace_headers`]); they continue the trace ([`continue_trace`]),
//! so one produce or fetch is one trace across processes, and log lines carry its
//! `trace_id`. With `log.otlp_endpoint` set, sampled spans are exported over OTLP/HTTP
//! (protobuf) to a collector; without it nothing is sampled or sent.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogConfig;

/// Longest an export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed tracing pipeline; [`Telemetry::shutdown`] sends the spans still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is queued and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("yaks: flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber for a process running as `service` (`yaks-gateway`,
/// ...). `runtime` runs the exporter's HTTP requests. A second call (tests) is a no-op.
pub fn init(config: &LogConfig, service: &str, runtime: tokio::runtime::Handle) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = tracer_provider(config, service, runtime);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("yaks"));
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if config.format == "json" {
        registry.with(output.json()).try_init()
    } else {
        registry.with(output).try_init()
    };
    Telemetry { provider }
}

fn tracer_provider(
    config: &LogConfig,
    service: &str,
    runtime: tokio::runtime::Handle,
) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &config.otlp_endpoint else {
        // Spans still get trace ids (propagated, logged), but none is recorded or sent.
        return builder.with_sampler(Sampler::AlwaysOff).build();
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeHttpClient::new(runtime))
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build();
    match exporter {
        Ok(exporter) => builder
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.otlp_sample_ratio,
            ))))
            .with_batch_exporter(exporter)
            .build(),
        Err(e) => {
            eprintln!("yaks: log.otlp_endpoint {endpoint}: {e}; traces are not exported");
            builder.with_sampler(Sampler::AlwaysOff).build()
        }
    }
}

/// The exporter's HTTP client: hyper on the process's tokio runtime. The batch exporter
/// runs on a thread of its own, so each request is spawned onto the runtime and awaited
/// through its join handle.
#[derive(Debug)]
struct RuntimeHttpClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RuntimeHttpClient {
    fn new(runtime: tokio::runtime::Handle) -> RuntimeHttpClient {
        RuntimeHttpClient {
            runtime,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }
}

#[async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = request.map(Full::new);
        let sent = self.runtime.spawn(async move {
            let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
                .await
                .map_err(|_| "no answer from the collector")??;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        });
        sent.await?
    }
}

/// Headers carrying the current span's trace context (`traceparent`), for a call to
/// another role.
pub fn trace_headers() -> Vec<(&'static str, String)> {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let mut headers = Vec::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = carrier.remove(name) {
            headers.push((name, value));
        }
    }
    headers
}

/// Makes `span` continue the trace whose context `headers` carry (if any), and records
/// the trace id in its `trace_id` field. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Records `span`'s trace id in its `trace_id` field, so log lines of the request carry it.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// Installs a subscriber whose output the test harness captures (shown for failing tests).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
