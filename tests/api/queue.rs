//! The job queue seam (`videos::queue`): a lease fences every write of a render, so a worker
//! that lost its video reports into nothing, and a video completes (with its webhook row)
//! once. Driven directly on the server's database, on both backends, with no worker running.

use reelgen::videos::queue::{Finished, JobQueue, Lease};
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_lease_lost_to_recovery_cannot_report_or_complete,
    a_handed_back_video_is_claimed_again_without_counting_the_attempt,
);

const DONE: Finished = Finished {
    frames: 30,
    duration_s: 1.0,
    size_bytes: 1234,
};

async fn a_lease_lost_to_recovery_cannot_report_or_complete(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let created = app
        .create_video(json!({"script": "Fenced.", "callback_url": "http://hooks.example/done"}))
        .await;
    let queue = JobQueue::Database(app.state.db.clone());

    let (_, first) = queue.claim().await.expect("claim").expect("a queued video");
    assert_eq!(first.id.to_string(), created["id"].as_str().expect("id"));
    assert_eq!(first.attempt, 1);
    assert!(queue.renew(&first, 3, 30, 1.0).await.expect("renew"));

    // The first worker crashes; at the next start its video is recovered and claimed again.
    assert_eq!(queue.recover(3).await.expect("recover"), (1, 0));
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
    let queue = JobQueue::Database(app.state.db.clone());
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
