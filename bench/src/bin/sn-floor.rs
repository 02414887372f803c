//! The floor of part a: the least a `202` backed by a JetStream acknowledgement costs on this
//! machine. `POST /generate_sn` publishes one request-sized message (with a `Nats-Msg-Id`,
//! like the gateway's) to a file-stored stream configured as the service's, waits for its ack
//! and answers `202 {"id":...,"state":"PENDING"}`. No body check, no views, no traces, no
//! metrics, no generator: measured with the same client as the gateway
//! (`sn-bench --url http://<listen> --only a --gateway-pid <pid>`), it bounds what any gateway
//! on the same parts (axum, async-nats, nats-server) can accept per second.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use clap::Parser;
use common::subjects;

#[derive(Parser)]
#[command(
    name = "sn-floor",
    about = "A POST that only publishes to JetStream and waits for the ack"
)]
struct Args {
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

#[derive(Clone)]
struct Floor {
    js: jetstream::Context,
    /// A request event as the gateway stores it, so the stored message has its size.
    payload: Bytes,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = async_nats::connect(&args.nats_url).await?;
    let js = jetstream::new(client);
    let mut config = common::nats::stream_config(Default::default());
    config.name = "FLOOR".into();
    config.subjects = vec!["floor.>".into()];
    js.get_or_create_stream(config).await?;
    let payload = Bytes::from(sample_request());
    let app = Router::new()
        .route("/generate_sn", post(accept))
        .with_state(Floor { js, payload });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("sn-floor listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn accept(State(floor): State<Floor>, _body: Bytes) -> impl IntoResponse {
    let id = uuid::Uuid::new_v4();
    let publish = common::nats::event_publish(&id.to_string(), floor.payload.clone(), None);
    let ack: Result<PublishAckFuture, _> = floor
        .js
        .send_publish(format!("floor.{}", subjects::STREAM), publish)
        .await;
    let stored = match ack {
        Ok(ack) => matches!(
            tokio::time::timeout(Duration::from_secs(5), ack).await,
            Ok(Ok(_))
        ),
        Err(_) => false,
    };
    if !stored {
        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
    }
    (
        StatusCode::ACCEPTED,
        format!(r#"{{"id":"{id}","state":"PENDING"}}"#),
    )
}

/// A `serial.requested` event of the size the gateway publishes for a 1-serial request.
fn sample_request() -> Vec<u8> {
    use common::events::{EventData, GenerateRequested};
    let event = common::Event::new(
        "/sn/gateway",
        EventData::Requested(GenerateRequested {
            task_id: uuid::Uuid::new_v4(),
            code_model: "Abcd".into(),
            number: None,
            count: 1,
            format: Default::default(),
            requested_at: time::OffsetDateTime::now_utc(),
            idempotency_key: None,
        }),
    );
    event.to_json()
}
