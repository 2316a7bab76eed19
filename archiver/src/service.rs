//! The archivers' request/reply services (`archive.*`): a queue-group
//! subscription, kept up across NATS trouble, each request answered in a
//! task of its own so that a slow one delays no other.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use switchboard_protocol::payloads::encode;
use switchboard_protocol::subjects;
use tokio_util::sync::CancellationToken;

const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Answers every request on `subject` with `answer(payload)` until
/// `shutdown`. One archiver of the queue group answers each request.
pub async fn serve<F, Fut, R>(
    client: async_nats::Client,
    subject: &'static str,
    shutdown: CancellationToken,
    answer: F,
) where
    F: Fn(bytes::Bytes) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Serialize + Send + 'static,
{
    loop {
        let mut requests = match client
            .queue_subscribe(subject, subjects::ARCHIVER_GROUP.to_owned())
            .await
        {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(error = %err, subject, "subscribe to requests");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RESUBSCRIBE_DELAY) => continue,
                }
            }
        };
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => return,
                request = requests.next() => request,
            };
            let Some(request) = request else { break };
            let Some(reply_to) = request.reply.clone() else {
                continue;
            };
            let (client, answer) = (client.clone(), answer.clone());
            tokio::spawn(async move {
                let reply = answer(request.payload).await;
                match encode(&reply) {
                    Ok(payload) => {
                        if let Err(err) = client.publish(reply_to, payload.into()).await {
                            tracing::warn!(error = %err, subject, "reply to request");
                        }
                    }
                    Err(err) => tracing::error!(error = %err, subject, "encode reply"),
                }
            });
        }
    }
}
