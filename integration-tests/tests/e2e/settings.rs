//! Settings that take effect: a generator restarted with other consumer settings makes the
//! durable consumer match them.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;

use crate::harness::*;

const T: Duration = Duration::from_secs(30);

/// The durable consumer's (ack wait, max deliver), once it exists.
async fn consumer_settings(js: &async_nats::jetstream::Context) -> Option<(Duration, i64)> {
    let mut c = js
        .get_consumer_from_stream::<pull::Config, _, _>("generator", "SN")
        .await
        .ok()?;
    let info = c.info().await.ok()?;
    Some((info.config.ack_wait, info.config.max_deliver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_generator_updates_the_consumer_to_its_settings() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut g = spawn_generator(&nats.url(), data.path(), &[]);
    let js = nats.js().await;
    let first = wait_for("the consumer", T, || consumer_settings(&js)).await;
    assert_eq!(first, (Duration::from_secs(30), 5));
    assert!(g.proc.sigterm(Duration::from_secs(20)).success());

    let g = spawn_generator(
        &nats.url(),
        data.path(),
        &[("ACK_WAIT_SECS", "120"), ("MAX_DELIVER", "2")],
    );
    wait_for("the consumer to take the new settings", T, || async {
        let now = consumer_settings(&js).await?;
        (now == (Duration::from_secs(120), 2)).then_some(())
    })
    .await;
    wait_for_log(&g, "ack_wait: 30s -> 120s", T).await;
    wait_for_log(&g, "max_deliver: 5 -> 2", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_limits_that_drop_messages_stops_both_services() {
    let nats = spawn_nats();
    let js = nats.js().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SN".into(),
        subjects: vec!["sn.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempdir();
    let mut g = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    for (name, service) in [("generator", &mut g), ("gateway", &mut gw)] {
        let status = service.proc.wait(T);
        assert!(!status.success(), "{name} started on a stream with max_age");
        let log = std::fs::read_to_string(&service.proc.log).unwrap();
        assert!(
            log.contains("max_age 3600s"),
            "{name} names the setting: {log}"
        );
    }
}
