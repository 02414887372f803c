//! NATS with the project's own users and permissions (k8s/base/nats-auth.conf, with known
//! passwords in place of its variables): the pipeline works with the role users, and each
//! role is refused what it must not do.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use tokio::sync::mpsc;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// The project's auth file with a known password per user (`<user>-pw`).
fn auth_conf() -> String {
    let path = repo_root().join("k8s/base/nats-auth.conf");
    let mut conf = std::fs::read_to_string(&path).unwrap();
    for (var, user) in [
        ("$SN_GATEWAY_PASSWORD", "gateway"),
        ("$SN_GENERATOR_PASSWORD", "generator"),
        ("$SN_OBSERVER_PASSWORD", "observer"),
        ("$SN_ADMIN_PASSWORD", "admin"),
        ("$SN_SYSTEM_PASSWORD", "system"),
    ] {
        assert!(conf.contains(var), "{} lacks {var}", path.display());
        conf = conf.replace(var, &format!("\"{user}-pw\""));
    }
    conf
}

fn role(user: &'static str) -> [(&'static str, String); 2] {
    [
        ("NATS_USER", user.into()),
        ("NATS_PASSWORD", format!("{user}-pw")),
    ]
}

/// A client of `user`, and the errors the server sends it (permission violations).
async fn connect_as(
    nats: &Nats,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .user_and_password(user.into(), format!("{user}-pw"))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string().to_lowercase());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap();
    (client, rx)
}

/// Publishes to `subject` and expects the server to refuse it, and the stream not to grow.
async fn refused(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    admin: &jetstream::Context,
    subject: String,
) {
    let before = stream_last_seq(admin).await;
    client.publish(subject.clone(), "{}".into()).await.unwrap();
    client.flush().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no error from the server for a publish to {subject}"))
        .unwrap();
    assert!(
        error.contains("permissions violation") && error.contains(&subject.to_lowercase()),
        "{subject}: {error}"
    );
    assert_eq!(
        stream_last_seq(admin).await,
        before,
        "{subject} reached the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_users_run_the_pipeline_and_are_refused_what_they_must_not_do() {
    // Arrange
    let nats = spawn_nats_with_config(&auth_conf());
    let data = tempdir();
    let gen_env = role("generator");
    let gw_env = role("gateway");
    let generator = spawn_generator(
        &nats.url(),
        data.path(),
        &[(gen_env[0].0, &gen_env[0].1), (gen_env[1].0, &gen_env[1].1)],
    );
    let gw = spawn_gateway(
        &nats.url(),
        &[
            (gw_env[0].0, &gw_env[0].1),
            (gw_env[1].0, &gw_env[1].1),
            // A snapshot after every event: the object store is used too.
            ("SNAPSHOT_EVERY", "1"),
        ],
    );
    gw.wait_ready().await;
    generator.wait_ready().await;

    // Act: the whole pipeline with the role users.
    let r = gw
        .http
        .put(gw.url("/models/0222"))
        .json(&json!({"width": 6}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT /models: {}", r.status());
    let id = submit(&gw, json!({"code_model": "0111", "number": 1, "count": 5})).await;
    let auto = submit(&gw, json!({"code_model": "0222", "count": 2})).await;

    // Assert
    let view = finished(&gw, &id, T).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(serials(&gw, &id).await.len(), 5);
    let view = finished(&gw, &auto, T).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["first_serial"], "0222000001");

    // Each role is refused what it must not do.
    let (admin_client, _) = connect_as(&nats, "admin").await;
    let admin = jetstream::new(admin_client);
    let task_id = uuid::Uuid::new_v4();
    let (gateway, mut errors) = connect_as(&nats, "gateway").await;
    for subject in [
        format!("sn.0111.generated.{task_id}"),
        format!("sn.0111.completed.{task_id}"),
        format!("sn.0111.failed.{task_id}"),
        "$JS.API.STREAM.DELETE.SN".to_owned(),
        "$JS.API.STREAM.PURGE.SN".to_owned(),
        "$JS.API.STREAM.UPDATE.SN".to_owned(),
    ] {
        refused(&gateway, &mut errors, &admin, subject).await;
    }
    let (generator_client, mut errors) = connect_as(&nats, "generator").await;
    for subject in [
        format!("sn.0111.requested.{task_id}"),
        "$JS.API.STREAM.DELETE.SN".to_owned(),
        "$O.SN_VIEWS.C.x".to_owned(),
    ] {
        refused(&generator_client, &mut errors, &admin, subject).await;
    }
    let (observer, mut errors) = connect_as(&nats, "observer").await;
    refused(
        &observer,
        &mut errors,
        &admin,
        format!("sn.0111.requested.{task_id}"),
    )
    .await;
    // The observer sees events, and cannot read anything else.
    let mut events = observer.subscribe("sn.>").await.unwrap();
    observer.flush().await.unwrap();
    let id = submit(&gw, json!({"code_model": "0111", "count": 1})).await;
    // Events of the earlier tasks may still be arriving, and NATS does not order messages of
    // different publishers: the generator's events of this task may overtake the gateway's
    // request on their way to the observer. The request is among the next messages.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = futures::StreamExt::next(&mut events).await.unwrap();
            if m.subject.ends_with(&id) && m.subject.contains(".requested.") {
                return m;
            }
        }
    })
    .await
    .expect("the observer sees the request");
    assert_eq!(seen.subject.as_str(), format!("sn.0111.requested.{id}"));
    let _inbox = observer.subscribe("_INBOX.x").await.unwrap();
    observer.flush().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("a subscription outside sn.> is refused")
        .unwrap();
    assert!(
        error.contains("permissions violation for subscription"),
        "{error}"
    );

    // The gateway user writes the views snapshot (object store SN_VIEWS) at shutdown, and
    // a new gateway starts from it.
    let mut gw = gw;
    assert!(gw.proc.sigterm(T).success());
    let log = std::fs::read_to_string(&gw.proc.log).unwrap();
    assert!(log.contains("views snapshot stored"), "{log}");
    let again = spawn_gateway(
        &nats.url(),
        &[(gw_env[0].0, &gw_env[0].1), (gw_env[1].0, &gw_env[1].1)],
    );
    again.wait_ready().await;
    assert_eq!(task(&again, &auto).await["state"], "SUCCESS");
    let log = std::fs::read_to_string(&again.proc.log).unwrap();
    assert!(log.contains("started from the views snapshot"), "{log}");

    // Anonymous clients and wrong passwords are refused.
    let anonymous = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(nats.url()))
        .await
        .expect("the anonymous connect is answered");
    let error = anonymous.expect_err("an anonymous client connected");
    assert_eq!(
        error.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{error}"
    );
    let wrong = async_nats::ConnectOptions::new()
        .user_and_password("gateway".into(), "nope".into())
        .connect(nats.url())
        .await;
    assert!(wrong.is_err(), "a wrong password connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_refused_credentials_exits_with_a_clear_error() {
    // Arrange
    let nats = spawn_nats_with_config(&auth_conf());
    let data = tempdir();
    let data = data.path().display().to_string();
    let url = nats.url();
    let admin = format!("127.0.0.1:{}", free_port());

    // Act
    let (status, stderr) = run_to_exit(
        "generator",
        &[
            ("NATS_URL", &url),
            ("ADMIN_ADDR", &admin),
            ("DATA_DIR", &data),
            ("NATS_USER", "generator"),
            ("NATS_PASSWORD", "wrong"),
        ],
        Duration::from_secs(20),
    );
    let (half, half_stderr) = run_to_exit(
        "generator",
        &[
            ("NATS_URL", &url),
            ("ADMIN_ADDR", &admin),
            ("DATA_DIR", &data),
            ("NATS_USER", "generator"),
        ],
        Duration::from_secs(20),
    );

    // Assert
    assert!(!status.success());
    assert!(
        stderr.contains("cannot connect to NATS") && stderr.to_lowercase().contains("authoriz"),
        "{stderr}"
    );
    assert!(!half.success());
    assert!(
        half_stderr.contains("NATS_USER and NATS_PASSWORD go together"),
        "{half_stderr}"
    );
}
