//! LISTEN/NOTIFY: how one node hears at once what another node changed.
//!
//! A listener owns one connection outside the pool, LISTENs on its channels and forwards each
//! notification to its subscribers. When the connection drops (the database restarted, the
//! network failed) it reconnects with a growing pause and then sends [`PgEvent::Resync`]: what
//! was notified while it was away is lost, so subscribers re-read the tables they watch.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgDatabase;

/// What subscribers of a listener hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgEvent {
    /// `NOTIFY channel, 'payload'` from any node (this one included).
    Notified { channel: String, payload: String },
    /// The listener is (again) listening after a start or a lost connection; anything
    /// notified in between was missed, so re-read.
    Resync,
}

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
/// Events a slow subscriber may fall behind by before it is told to resync (it sees `Lagged`).
const BACKLOG: usize = 1024;

/// A running listener; dropping it stops the task and closes its connection.
#[derive(Debug)]
pub struct PgListener {
    events: broadcast::Sender<PgEvent>,
    /// 0 while not listening, else the number of the connection that listens (1, 2, ...).
    listening: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl PgListener {
    /// Starts listening on `channels` (plain lower-case identifiers) in a background task.
    /// Returns at once; subscribe before awaiting anything so no event is missed.
    pub fn spawn(db: &PgDatabase, channels: &[&'static str]) -> Self {
        let (events, _) = broadcast::channel(BACKLOG);
        let (listening_tx, listening) = watch::channel(0);
        let task = tokio::spawn(run(
            db.clone(),
            channels.to_vec(),
            events.clone(),
            listening_tx,
        ));
        PgListener {
            events,
            listening,
            task,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PgEvent> {
        self.events.subscribe()
    }

    /// Whether the listener is connected and listening right now.
    pub fn is_listening(&self) -> bool {
        self.generation() != 0
    }

    /// Which connection listens now (grows with every reconnect), 0 while none does. A
    /// subscriber that re-read everything at generation `g` is current while it stays `g`.
    pub fn generation(&self) -> u64 {
        *self.listening.borrow()
    }

    /// Waits until the listener is listening (tests; a server does not need to wait).
    pub async fn wait_listening(&self) {
        let mut listening = self.listening.clone();
        // Err only when the task ended, i.e. the listener is being dropped.
        let _ = listening.wait_for(|generation| *generation != 0).await;
    }
}

impl Drop for PgListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    db: PgDatabase,
    channels: Vec<&'static str>,
    events: broadcast::Sender<PgEvent>,
    listening: watch::Sender<u64>,
) {
    let mut pause = FIRST_PAUSE;
    let mut generation = 0;
    loop {
        generation += 1;
        match listen_once(&db, &channels, &events, &listening, generation).await {
            Ok(()) => {
                tracing::warn!(target = %db.target(), "database listener connection closed; reconnecting");
                pause = FIRST_PAUSE;
            }
            Err(e) => {
                tracing::warn!(target = %db.target(), error = %e, "database listener failed; retrying");
            }
        }
        listening.send_replace(0);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// One connection's life: connect, LISTEN, forward notifications until it ends.
async fn listen_once(
    db: &PgDatabase,
    channels: &[&'static str],
    events: &broadcast::Sender<PgEvent>,
    listening: &watch::Sender<u64>,
    generation: u64,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = db.config().connect(NoTls).await?;
    // The connection must be polled for LISTEN's reply to arrive, and its messages are the
    // notifications: one stream does both.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let statement: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            done = &mut listen => { done?; break; }
            message = messages.next() => match message {
                Some(Ok(message)) => forward(message, events),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
    listening.send_replace(generation);
    let _ = events.send(PgEvent::Resync);
    tracing::info!(target = %db.target(), ?channels, "listening for changes from other nodes");
    while let Some(message) = messages.next().await {
        forward(message?, events);
    }
    // `client` lives until here, and with it the LISTENs, for as long as the connection.
    Ok(())
}

fn forward(message: AsyncMessage, events: &broadcast::Sender<PgEvent>) {
    if let AsyncMessage::Notification(n) = message {
        // No subscriber is not an error: nobody needs this change.
        let _ = events.send(PgEvent::Notified {
            channel: n.channel().to_string(),
            payload: n.payload().to_string(),
        });
    }
}
