//! One trace per task across both services (OTLP over HTTP or gRPC, received by an in-test
//! collector), Prometheus metrics on both services, JSON logs with trace ids.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    kind: i32,
    attrs: HashMap<String, String>,
}

/// A minimal OTLP trace receiver (over HTTP or gRPC): keeps the spans it is sent.
struct Collector {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
}

async fn collect(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    record(req, &mut spans.lock().unwrap());
    "{}"
}

/// The spans of one export request, flattened.
fn record(req: ExportTraceServiceRequest, out: &mut Vec<Span>) {
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let attrs = s
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent: s.parent_span_id,
                    kind: s.kind,
                    attrs,
                });
            }
        }
    }
}

fn collector_app() -> (axum::Router, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/traces", post(collect))
        .with_state(spans.clone());
    (app, spans)
}

async fn spawn_collector() -> Collector {
    let (app, spans) = collector_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Collector { addr, spans }
}

/// A TCP listener that hands axum only connections that completed a TLS handshake.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.tls.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The collector over TLS, with a self-signed certificate for 127.0.0.1 made here; its PEM
/// is written to `ca_file` for the services to trust.
async fn spawn_tls_collector(ca_file: &std::path::Path) -> Collector {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(ca_file, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
    let (app, spans) = collector_app();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Collector { addr, spans }
}

/// The OTLP/gRPC trace service, as opentelemetry-proto generates it for tonic.
struct GrpcTraces(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(request.into_inner(), &mut self.0.lock().unwrap());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The collector over OTLP/gRPC only (no HTTP route). With `ca_file`, over TLS, with a
/// self-signed certificate for 127.0.0.1 made here whose PEM is written to `ca_file`.
async fn spawn_grpc_collector(ca_file: Option<&std::path::Path>) -> Collector {
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Identity, ServerTlsConfig};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = tonic::transport::Server::builder();
    if let Some(ca_file) = ca_file {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(ca_file, cert.cert.pem()).unwrap();
        let identity = Identity::from_pem(cert.cert.pem(), cert.signing_key.serialize_pem());
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    let spans = Arc::new(Mutex::new(Vec::new()));
    let router = server.add_service(TraceServiceServer::new(GrpcTraces(spans.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap()
    });
    Collector { addr, spans }
}

impl Collector {
    fn spans_of(&self, service: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.service == service)
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_whose_ca_is_given() {
    // Arrange: a collector with a certificate no system trusts, and its CA in a file.
    let dir = tempdir();
    let ca = dir.path().join("collector-ca.pem");
    let collector = spawn_tls_collector(&ca).await;
    let endpoint = format!("https://{}", collector.addr);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
    ];
    let nats = spawn_nats();
    let mut generator = spawn_generator(&nats.url(), &dir.path().join("data"), &otel);
    let mut gw = spawn_gateway(&nats.url(), &otel);
    gw.wait_ready().await;
    generator.wait_ready().await;

    // Act
    let id = submit(&gw, json!({"code_model":"TLS","count":10})).await;
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
    assert!(gw.proc.sigterm(T).success());
    assert!(generator.proc.sigterm(T).success());

    // Assert: the task's spans of both services came over TLS.
    wait_for("the task's spans over https", T, || async {
        let spans = collector.spans.lock().unwrap();
        let services: HashSet<&str> = spans
            .iter()
            .filter(|s| s.attrs.get("task_id") == Some(&id))
            .map(|s| s.service.as_str())
            .collect();
        (services == HashSet::from(["gateway", "generator"])).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_otlp_ca_file_stops_the_start() {
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let (status, stderr) = run_to_exit(
        "gateway",
        &[
            ("NATS_URL", &nats_url),
            ("HTTP_ADDR", &http),
            ("AUTH", "off"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
        ],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("cannot read the OTLP CA file /nonexistent/ca.pem"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_protocol_that_is_not_built_in_stops_the_start() {
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    for bin in ["gateway", "generator"] {
        let (status, stderr) = run_to_exit(
            bin,
            &[
                ("NATS_URL", &nats_url),
                ("AUTH", "off"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            Duration::from_secs(10),
        );
        assert!(!status.success(), "{bin} started");
        assert!(
            stderr.contains("'http/json'")
                && stderr.contains("http/protobuf")
                && stderr.contains("grpc"),
            "{bin}: {stderr}"
        );
    }
}

/// Runs one task through both services exporting with `otel`, stops them (which flushes
/// their exporters) and returns the task's trace as `collector` received it: its POST span,
/// the gateway's publish span and the generator's process span must all have arrived.
async fn one_traced_task(collector: &Collector, model: &str, otel: &[(&str, &str)]) -> Vec<Span> {
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), otel);
    let mut gw = spawn_gateway(&nats.url(), otel);
    gw.wait_ready().await;
    generator.wait_ready().await;

    let id = submit(&gw, json!({"code_model": model, "count": 10})).await;
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
    assert!(gw.proc.sigterm(T).success());
    assert!(generator.proc.sigterm(T).success());

    let requested = format!("sn.{model}.requested.{id}");
    wait_for("the task's trace from both services", T, || async {
        let spans = collector.spans.lock().unwrap().clone();
        let post = spans
            .iter()
            .find(|s| s.name == "POST /generate_sn" && s.attrs.get("task_id") == Some(&id))?;
        let trace: Vec<Span> = spans
            .iter()
            .filter(|s| s.trace_id == post.trace_id)
            .cloned()
            .collect();
        let has = |service: &str, name: &str| {
            trace.iter().any(|s| s.service == service && s.name == name)
        };
        (has("gateway", &format!("send {requested}"))
            && has("generator", &format!("process {requested}")))
        .then_some(trace)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_is_one_trace_over_otlp_grpc() {
    // Arrange: a collector that speaks only gRPC, and both services told to use it.
    let collector = spawn_grpc_collector(None).await;
    let endpoint = format!("http://{}", collector.addr);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];

    // Act
    let trace = one_traced_task(&collector, "GRPC", &otel).await;

    // Assert: the generator's processing span is a child of the gateway's publish span, in
    // the trace the POST started.
    let publish = trace
        .iter()
        .find(|s| s.service == "gateway" && s.name.starts_with("send sn.GRPC.requested."))
        .unwrap();
    let process = trace
        .iter()
        .find(|s| s.service == "generator" && s.name.starts_with("process sn.GRPC.requested."))
        .unwrap();
    assert_eq!(process.parent, publish.span_id);
    assert!(trace
        .iter()
        .any(|s| s.service == "generator" && s.name == "reserve"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector_over_tls_whose_ca_is_given() {
    // Arrange: a gRPC collector with a certificate no system trusts, and its CA in a file.
    let dir = tempdir();
    let ca = dir.path().join("collector-ca.pem");
    let collector = spawn_grpc_collector(Some(&ca)).await;
    let endpoint = format!("https://{}", collector.addr);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
    ];

    // Act
    let trace = one_traced_task(&collector, "GRPCTLS", &otel).await;

    // Assert: both services' spans of the task came over TLS, in one trace.
    let services: HashSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, HashSet::from(["gateway", "generator"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_sampler_comes_from_the_environment() {
    let collector = spawn_collector().await;
    let endpoint = format!("http://{}", collector.addr);
    let nats = spawn_nats();
    let data = tempdir();
    // One task through services that sample nothing, then one through services that sample
    // everything; a service's exporter is flushed when it exits on SIGTERM.
    let run = async |sampler: &[(&str, &str)], gateway: &str, generator: &str| {
        let gw_env = [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_SERVICE_NAME", gateway),
            ]
            .as_slice(),
            sampler,
        ]
        .concat();
        let gen_env = [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_SERVICE_NAME", generator),
            ]
            .as_slice(),
            sampler,
        ]
        .concat();
        let mut g = spawn_generator(&nats.url(), data.path(), &gen_env);
        let mut gw = spawn_gateway(&nats.url(), &gw_env);
        gw.wait_ready().await;
        g.wait_ready().await;
        let id = submit(&gw, json!({"code_model":"SAMPLE","count":10})).await;
        assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
        assert!(gw.proc.sigterm(T).success());
        assert!(g.proc.sigterm(T).success());
    };

    // Act
    run(
        &[("OTEL_TRACES_SAMPLER", "always_off")],
        "gw-off",
        "gen-off",
    )
    .await;
    run(
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
        "gw-ratio0",
        "gen-ratio0",
    )
    .await;
    run(&[("OTEL_TRACES_SAMPLER", "always_on")], "gw-on", "gen-on").await;
    run(
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ],
        "gw-ratio1",
        "gen-ratio1",
    )
    .await;

    // Assert: the sampling runs exported their spans (so the others had a working exporter
    // and were flushed too) ...
    for service in ["gw-on", "gen-on", "gw-ratio1", "gen-ratio1"] {
        wait_for(&format!("spans of {service}"), T, || async {
            (!collector.spans_of(service).is_empty()).then_some(())
        })
        .await;
    }
    assert!(collector
        .spans_of("gw-on")
        .iter()
        .any(|s| s.name == "POST /generate_sn"));
    assert!(collector
        .spans_of("gen-ratio1")
        .iter()
        .any(|s| s.name == "reserve"));
    // ... and those that sample nothing exported nothing.
    for service in ["gw-off", "gen-off", "gw-ratio0", "gen-ratio0"] {
        assert_eq!(
            collector.spans_of(service).len(),
            0,
            "{service} exported spans"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_is_one_trace_across_both_services_even_after_sigterm() {
    let collector = spawn_collector().await;
    let endpoint = format!("http://{}", collector.addr);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("BATCH_SIZE", "1000"),
    ];
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), &otel);
    let mut gw = spawn_gateway(&nats.url(), &otel);
    gw.wait_ready().await;
    generator.wait_ready().await;

    let id = submit(&gw, json!({"code_model":"TRACE","count":3500})).await;
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
    // Stop both: the spans still in the exporters' buffers must be flushed on SIGTERM.
    assert!(gw.proc.sigterm(T).success());
    assert!(generator.proc.sigterm(T).success());

    let spans = wait_for("the task's spans from both services", T, || async {
        let spans = collector.spans.lock().unwrap().clone();
        let mine: Vec<Span> = spans
            .into_iter()
            .filter(|s| s.attrs.get("task_id") == Some(&id))
            .collect();
        let services: HashSet<&str> = mine.iter().map(|s| s.service.as_str()).collect();
        let has_projection = mine
            .iter()
            .any(|s| s.service == "gateway" && s.name.starts_with("process sn.TRACE.completed"));
        (services.len() == 2 && has_projection).then_some(mine)
    })
    .await;
    // The trace started by the POST; reads of the task (GET /tasks/{id}) are traces of their own.
    let post = spans
        .iter()
        .find(|s| s.name == "POST /generate_sn")
        .expect("the POST's HTTP span, with the task id");
    let trace_id = post.trace_id.clone();
    let all: Vec<Span> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();
    let services: HashSet<&str> = all.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        HashSet::from(["gateway", "generator"]),
        "one trace across both services"
    );
    let task_spans = spans
        .iter()
        .filter(|s| s.name != "get task" && s.name != "download serials");
    for s in task_spans {
        assert_eq!(
            s.trace_id, trace_id,
            "span {:?} of the task is in another trace",
            s.name
        );
    }
    assert!(
        all.iter()
            .any(|s| s.service == "gateway" && s.name.starts_with("process sn.TRACE.completed")),
        "the gateway's projection span is in the task's trace"
    );
    let by_id: HashMap<&Vec<u8>, &Span> = all.iter().map(|s| (&s.span_id, s)).collect();

    // HTTP server span of the gateway, with the OpenTelemetry HTTP attributes.
    let http = all
        .iter()
        .find(|s| s.name == "POST /generate_sn")
        .expect("HTTP span");
    assert_eq!(http.service, "gateway");
    assert_eq!(http.kind, 2, "server kind");
    assert_eq!(
        http.attrs.get("http.request.method").map(String::as_str),
        Some("POST")
    );
    assert_eq!(
        http.attrs.get("http.route").map(String::as_str),
        Some("/generate_sn")
    );
    assert_eq!(
        http.attrs
            .get("http.response.status_code")
            .map(String::as_str),
        Some("202")
    );
    // The producer span of the publish, then the generator's processing span as its child.
    let publish = all
        .iter()
        .find(|s| s.name == format!("send sn.TRACE.requested.{id}"))
        .expect("publish span");
    assert_eq!(publish.kind, 4, "producer kind");
    assert_eq!(
        publish.attrs.get("messaging.system").map(String::as_str),
        Some("nats")
    );
    let process = all
        .iter()
        .find(|s| s.service == "generator" && s.name == format!("process sn.TRACE.requested.{id}"))
        .expect("generator process span");
    assert_eq!(
        process.parent, publish.span_id,
        "process span's parent is the gateway's publish span"
    );
    assert_eq!(process.kind, 5, "consumer kind");
    assert_eq!(
        process.attrs.get("messaging.destination.name"),
        Some(&format!("sn.TRACE.requested.{id}"))
    );
    // Reserve and one span per batch (4 batches of at most 1000), under the process span.
    let under_process = |s: &Span| {
        let mut p = by_id.get(&s.parent).copied();
        while let Some(x) = p {
            if x.span_id == process.span_id {
                return true;
            }
            p = by_id.get(&x.parent).copied();
        }
        false
    };
    assert_eq!(
        all.iter()
            .filter(|s| s.name == "reserve" && under_process(s))
            .count(),
        1
    );
    assert_eq!(
        all.iter()
            .filter(|s| s.name == "batch" && under_process(s))
            .count(),
        4
    );
    assert!(all
        .iter()
        .any(|s| s.name == "publish acks" && under_process(s)));
    // No span per serial.
    assert!(all.len() < 40, "{} spans for one task", all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_a_task_on_both_services() {
    let nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    let g0 = scrape(&gw).await;
    let q0 = scrape(&generator).await;

    let id = submit(&gw, json!({"code_model":"MET","count":1234})).await;
    finished(&gw, &id, T).await;
    let g1 = scrape(&gw).await;
    let q1 = scrape(&generator).await;

    assert_eq!(
        sum(&g1, "sn_requests_accepted_total") - sum(&g0, "sn_requests_accepted_total"),
        1.0
    );
    assert!(g1.keys().any(|k| k.starts_with("sn_http_requests_total{")
        && k.contains("route=\"/generate_sn\"")
        && k.contains("status=\"202\"")));
    assert!(g1
        .keys()
        .any(|k| k.starts_with("sn_http_request_duration_seconds_bucket{")));
    assert!(sum(&g1, "sn_projection_events_total") >= sum(&g0, "sn_projection_events_total") + 4.0);
    assert_eq!(g1.get("sn_tasks{state=\"SUCCESS\"}"), Some(&1.0));
    assert!(g1.contains_key("sn_projection_lag_events"));
    assert_eq!(
        sum(&q1, "sn_tasks_total{state=\"success\"}")
            - sum(&q0, "sn_tasks_total{state=\"success\"}"),
        1.0
    );
    assert_eq!(
        q1.get("sn_serials_issued_total{code_model=\"MET\"}"),
        Some(&1234.0)
    );
    assert_eq!(q1.get("sn_generation_seconds_count"), Some(&1.0));
    assert!(q1.contains_key("sn_consumer_pending"));
    assert!(q1.contains_key("sn_publish_retries_total"));
    assert!(q1["sn_log_size_bytes"] > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_trace_ids() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(
        &nats.url(),
        data.path(),
        &[("LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let mut gw = spawn_gateway(&nats.url(), &[("LOG_FORMAT", "json")]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"LOGS","count":5})).await;
    finished(&gw, &id, T).await;
    assert!(gw.proc.sigterm(T).success());
    assert!(generator.proc.sigterm(T).success());
    for proc in [&gw.proc, &generator.proc] {
        let text = std::fs::read_to_string(&proc.log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(lines.len() > 3);
        assert!(lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
        let traced: Vec<&Value> = lines.iter().filter(|l| l["trace_id"].is_string()).collect();
        assert!(
            !traced.is_empty(),
            "no line carries a trace id in {}",
            proc.log.display()
        );
        assert!(traced
            .iter()
            .all(|l| l["trace_id"].as_str().unwrap().len() == 32
                && l["span_id"].as_str().unwrap().len() == 16));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_is_ready_only_when_connected_and_caught_up() {
    let mut nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    generator.wait_ready().await;
    let health = generator
        .http
        .get(generator.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    nats.stop();
    wait_for("not ready while NATS is down", T, || async {
        let r = generator
            .http
            .get(generator.url("/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    let health = generator
        .http
        .get(generator.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "alive while NATS is down");
    nats.start();
    generator.wait_ready().await;
}
