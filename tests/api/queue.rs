//! The job queue seam (`videos::queue`): a lease fences every write of a render, so a worker
//! that lost its video reports into nothing, and a video completes (with its webhook row)
//! once. A lease that is not renewed lapses and the video goes back to the queue; concurrent
//! claims never take the same video. Driven directly on the server's database, on both
//! backends, with no worker running.

use std::time::{Duration, Instant};

use reelgen::videos::queue::{Finished, JobQueue, Lease, Orphans};
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_lease_lost_to_recovery_cannot_report_or_complete,
    a_handed_back_video_is_claimed_again_without_counting_the_attempt,
    a_renewed_lease_is_not_reclaimed_and_concurrent_claims_take_different_videos,
    two_senders_polling_one_outbox_claim_each_delivery_once,
);

/// Sweeps until the lapsed lease of one video is reclaimed (generous deadline: the lease is
/// one second).
async fn until_reclaimed(queue: &JobQueue) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let swept = queue.recover(3, Orphans::Lapsed).await.expect("sweep");
        if swept == (1, 0) {
            return;
        }
        assert_eq!(swept, (0, 0));
        assert!(Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const DONE: Finished = Finished {
    frames: 30,
    duration_s: 1.0,
    size_bytes: 1234,
    scenes: None,
};

async fn a_lease_lost_to_recovery_cannot_report_or_complete(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let created = app
        .create_video(json!({"script": "Fenced.", "callback_url": "http://hooks.example/done"}))
        .await;
    let queue = JobQueue::new(app.state.db.clone(), Duration::from_secs(1));

    let (_, first) = queue.claim().await.expect("claim").expect("a queued video");
    assert_eq!(first.id.to_string(), created["id"].as_str().expect("id"));
    assert_eq!(first.attempt, 1);
    assert!(queue.renew(&first, 3, 30, 1.0).await.expect("renew"));

    // The first worker stops renewing (crash, kill -9, partition): its lease lapses, the
    // sweep puts the video back, and it is claimed again.
    until_reclaimed(&queue).await;
    let (_, second) = queue
        .claim()
        .await
        .expect("claim")
        .expect("recovered video");
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempt, 2);

    // The first worker wakes up late: none of its writes land.
    assert!(!queue.renew(&first, 29, 30, 1.0).await.expect("renew"));
    assert!(
        !queue
            .complete(&first, DONE, Some("http://hooks.example/done"))
            .await
            .expect("complete")
    );
    assert!(
        !queue
            .fail(
                &first,
                "encode_failed",
                "late",
                Some("http://hooks.example/done")
            )
            .await
            .expect("fail")
    );
    assert!(!queue.requeue(&first).await.expect("requeue"));

    // The live lease completes the video, once.
    assert!(
        queue
            .complete(&second, DONE, Some("http://hooks.example/done"))
            .await
            .expect("complete")
    );
    assert!(
        !queue
            .complete(&second, DONE, Some("http://hooks.example/done"))
            .await
            .expect("again")
    );

    let video: Value = app.get_json(&format!("/api/v1/videos/{}", first.id)).await;
    assert_eq!(video["status"], "completed");
    assert_eq!(video["frames_total"], 30);
    assert_eq!(video["size_bytes"], 1234);
    let deliveries: Value = app
        .get_json(&format!("/api/v1/videos/{}/deliveries", first.id))
        .await;
    let data = deliveries["data"].as_array().expect("deliveries");
    assert_eq!(
        data.len(),
        1,
        "one webhook row for one completion: {deliveries}"
    );
    assert_eq!(data[0]["event"], "video.completed");
}

async fn a_handed_back_video_is_claimed_again_without_counting_the_attempt(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    app.create_script("Handed back.").await;
    let queue = JobQueue::new(app.state.db.clone(), Duration::from_secs(30));
    assert_eq!(queue.depth().await.expect("depth"), 1);

    let (_, lease) = queue.claim().await.expect("claim").expect("queued");
    assert_eq!(queue.depth().await.expect("depth"), 0);
    assert!(queue.requeue(&lease).await.expect("requeue"));
    assert_eq!(queue.depth().await.expect("depth"), 1);

    let (_, again): (_, Lease) = queue.claim().await.expect("claim").expect("queued");
    assert_eq!(again.id, lease.id);
    assert_eq!(again.attempt, 1, "a hand-back does not count as an attempt");
    assert!(
        queue
            .fail(&again, "encode_failed", "boom", None)
            .await
            .expect("fail")
    );
    let video: Value = app.get_json(&format!("/api/v1/videos/{}", lease.id)).await;
    assert_eq!(video["status"], "failed");
    assert_eq!(video["error"]["code"], "encode_failed");
}

async fn a_renewed_lease_is_not_reclaimed_and_concurrent_claims_take_different_videos(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[]).await;
    for i in 0..8 {
        app.create_script(&format!("Claim me {i}.")).await;
    }
    let queue = JobQueue::new(app.state.db.clone(), Duration::from_secs(30));
    // Eight workers claim at once: each gets its own video.
    let claims = futures_util::future::join_all((0..8).map(|_| {
        let q = queue.clone();
        async move { q.claim().await.expect("claim") }
    }))
    .await;
    let mut ids: Vec<_> = claims
        .into_iter()
        .map(|c| c.expect("a video for every claim").1.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "no video claimed twice");
    assert!(queue.claim().await.expect("claim").is_none());

    // Leases of 30 s that were just taken (and renewed) are nobody's orphans.
    let lease = Lease {
        id: ids[0],
        tenant: "public".into(),
        attempt: 1,
    };
    assert!(queue.keep(&lease).await.expect("keep"));
    assert_eq!(
        queue.recover(3, Orphans::Lapsed).await.expect("sweep"),
        (0, 0)
    );
    assert_eq!(queue.oldest_queued().await.expect("oldest"), None);
}

async fn two_senders_polling_one_outbox_claim_each_delivery_once(backend: Backend) {
    use reelgen::videos::webhooks::claim_due_webhooks;
    let app = spawn_app_with(backend, &[]).await;
    let queue = JobQueue::new(app.state.db.clone(), Duration::from_secs(30));
    for i in 0..4 {
        app.create_video(
            json!({"script": format!("Hook {i}."), "callback_url": "http://hooks.example/done"}),
        )
        .await;
        let (_, lease) = queue.claim().await.expect("claim").expect("queued");
        assert!(
            queue
                .complete(&lease, DONE, Some("http://hooks.example/done"))
                .await
                .expect("complete")
        );
    }
    // Two processes' senders poll at the same moment (this app's own sender may take some
    // too): every due delivery is claimed by exactly one of them.
    let db = &app.state.db;
    let (a, b) = futures_util::join!(
        claim_due_webhooks(db, 16, Duration::from_secs(120)),
        claim_due_webhooks(db, 16, Duration::from_secs(120)),
    );
    let mut ids: Vec<_> = a
        .expect("claim a")
        .into_iter()
        .chain(b.expect("claim b"))
        .map(|d| d.id)
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a delivery claimed twice");
    // Claimed rows are not due again until their claim passes.
    assert!(
        claim_due_webhooks(db, 16, Duration::from_secs(120))
            .await
            .expect("claim")
            .iter()
            .all(|d| !ids.contains(&d.id))
    );
}
