//! Admission for password checks: a fixed set of worker threads, each owning one argon2 memory
//! block that it reuses for every check.
//!
//! An argon2id check needs 12 MiB (19 MiB for hashes made with the crate's defaults). Running
//! every request's check at once (on tokio's blocking pool) let unauthenticated callers grow the
//! process by gigabytes, and
//! freshly allocated blocks of that size stay with the process after they are freed. Here at most
//! `workers` checks run at a time, at most `queue` more wait, and a waiting check that is not
//! started before its deadline is refused as busy.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::{oneshot, Semaphore};

use super::password::{hash_params, Password};

/// How many checks run at once, how many wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerConfig {
    /// Worker threads, each holding one argon2 memory block for the process life.
    pub workers: usize,
    /// Checks allowed to wait for a worker; beyond that a check is refused at once.
    pub queue: usize,
    /// How long a check may wait for a worker before it is refused.
    pub max_wait: Duration,
}

impl Default for CheckerConfig {
    /// Those of the `[auth]` settings.
    fn default() -> Self {
        super::AuthConfig::default().checker()
    }
}

/// Why a check did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The queue was full or the deadline passed before a worker was free.
    #[error("server busy, retry")]
    Busy,
    #[error("password check did not finish: {0}")]
    Internal(String),
}

/// Largest memory cost (in KiB, as in the PHC `m=` parameter) a stored hash may ask for: a
/// tampered or foreign directory must not make each worker hold gigabytes.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Bounds on the configuration: each worker is a thread holding 12 MiB, each queue place a
/// waiting request.
pub const MAX_WORKERS: usize = 256;
pub const MAX_QUEUE: usize = 100_000;

/// One reusable argon2 memory area; grows to the largest cost seen, never shrinks.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    pub fn new() -> Self {
        HashMemory::default()
    }

    /// Whether `password` matches the PHC string `phc`; a malformed or unsupported hash never
    /// matches (logged without the hash).
    pub fn verify(&mut self, phc: &str, password: &Password) -> bool {
        match self.try_verify(phc, password) {
            Ok(matched) => matched,
            Err(why) => {
                tracing::warn!(reason = %why, "stored password hash unusable; refusing login");
                false
            }
        }
    }

    /// Hashes with argon2id and [`hash_params`] into a PHC string.
    pub fn hash(&mut self, password: &Password) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        let params = hash_params();
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| format!("cannot hash password: {e}"))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        argon
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                salt_raw,
                &mut out,
                self.blocks_for(&params),
            )
            .map_err(|e| format!("cannot hash password: {e}"))?;
        let output = Output::new(&out).map_err(|e| format!("cannot hash password: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params)
                .try_into()
                .map_err(|e| format!("cannot hash password: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    fn try_verify(&mut self, phc: &str, password: &Password) -> Result<bool, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
        if params.m_cost() > MAX_M_COST_KIB {
            return Err(format!(
                "memory cost {} KiB is over the limit",
                params.m_cost()
            ));
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err("no salt or no hash".to_string());
        };
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| e.to_string())?;
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = out
            .get_mut(..expected.len())
            .ok_or_else(|| "hash too long".to_string())?;
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                salt_raw,
                out,
                self.blocks_for(&params),
            )
            .map_err(|e| e.to_string())?;
        let computed = Output::new(out).map_err(|e| e.to_string())?;
        // Output's equality is constant-time.
        Ok(computed == expected)
    }

    fn blocks_for(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        &mut self.blocks[..needed]
    }
}

type Work = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// The work owns its admission permit: released when the work has run or is discarded.
struct Job {
    work: Work,
    deadline: Instant,
}

/// Runs password work on a bounded set of threads; cheap to share behind an `Arc`.
pub struct PasswordChecker {
    jobs: Mutex<Sender<Job>>,
    admission: Arc<Semaphore>,
    config: CheckerConfig,
}

impl std::fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("config", &self.config)
            .field("free", &self.admission.available_permits())
            .finish()
    }
}

impl PasswordChecker {
    /// Starts `config.workers` threads (at least one). They end when the checker is dropped.
    /// A thread that cannot be started is logged; with none, every check fails as internal.
    pub fn new(config: CheckerConfig) -> Self {
        let config = CheckerConfig {
            workers: config.workers.clamp(1, MAX_WORKERS),
            queue: config.queue.min(MAX_QUEUE),
            ..config
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.workers {
            let rx = rx.clone();
            let started = thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a password check thread");
            }
        }
        PasswordChecker {
            jobs: Mutex::new(tx),
            admission: Arc::new(Semaphore::new(config.workers + config.queue)),
            config,
        }
    }

    pub fn config(&self) -> CheckerConfig {
        self.config
    }

    /// Runs `work` on a worker with its memory block, or refuses with [`CheckError::Busy`] when
    /// every worker and queue place is taken or no worker frees up within `max_wait`.
    pub async fn run<R, F>(&self, work: F) -> Result<R, CheckError>
    where
        R: Send + 'static,
        F: FnOnce(&mut HashMemory) -> R + Send + 'static,
    {
        self.run_until(Instant::now() + self.config.max_wait, work)
            .await
    }

    async fn run_until<R, F>(&self, deadline: Instant, work: F) -> Result<R, CheckError>
    where
        R: Send + 'static,
        F: FnOnce(&mut HashMemory) -> R + Send + 'static,
    {
        let admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| CheckError::Busy)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Box::new(move |memory: &mut HashMemory| {
                let result = work(memory);
                // Free the place before answering, so the caller may at once check again.
                drop(admitted);
                let _ = reply.send(result);
            }),
            deadline,
        };
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| CheckError::Internal("the password workers stopped".to_string()))?;
        // The worker refuses a job it picks up after the deadline, so this only waits a
        // little longer than max_wait plus one check.
        answer.await.map_err(|_| CheckError::Busy)
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    let mut memory = HashMemory::new();
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else {
            return;
        };
        if Instant::now() >= job.deadline {
            // Dropping the job drops its reply sender: the caller sees Busy.
            tracing::debug!("password check waited past its deadline; refused");
            continue;
        }
        (job.work)(&mut memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::{hash_password, verify_hash};

    #[test]
    fn reused_memory_verifies_hashes_of_the_crate_and_its_own() {
        let pw = Password::new("correct horse");
        let mut memory = HashMemory::new();
        let by_crate = hash_password(&pw).unwrap();
        assert!(memory.verify(&by_crate, &pw));
        assert!(!memory.verify(&by_crate, &Password::new("wrong")));
        let own = memory.hash(&pw).unwrap();
        assert!(own.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{own}");
        assert!(verify_hash(&own, &pw), "the crate accepts our hash");
        assert!(memory.verify(&own, &pw));
        assert!(!memory.verify("garbage", &pw));
    }

    #[test]
    fn huge_memory_costs_are_refused_without_allocating() {
        let pw = Password::new("x");
        let phc = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                   AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let mut memory = HashMemory::new();
        assert!(!memory.verify(phc, &pw));
        assert!(memory.blocks.is_empty());
    }

    fn checker(workers: usize, queue: usize, max_wait: Duration) -> PasswordChecker {
        PasswordChecker::new(CheckerConfig {
            workers,
            queue,
            max_wait,
        })
    }

    #[tokio::test]
    async fn runs_work_on_a_worker() {
        let c = checker(1, 0, Duration::from_secs(60));
        let name = c
            .run(|_| thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("password-check-0"));
    }

    #[tokio::test]
    async fn the_place_is_free_once_the_answer_arrives() {
        let c = checker(1, 0, Duration::from_secs(600));
        for i in 0..200 {
            assert_eq!(
                c.run(move |_| i).await,
                Ok(i),
                "check {i} found no free place"
            );
        }
    }

    /// Holds the only worker until the test releases it.
    async fn occupy(
        c: &Arc<PasswordChecker>,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let c2 = c.clone();
        let task = tokio::spawn(async move {
            let _ = c2
                .run(move |_| {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                })
                .await;
        });
        started.await.unwrap();
        (release, task)
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let c = Arc::new(checker(1, 1, Duration::from_secs(600)));
        let (release, busy) = occupy(&c).await;
        let c2 = c.clone();
        let queued = tokio::spawn(async move { c2.run(|_| 7).await });
        while c.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(c.run(|_| 1).await, Err(CheckError::Busy));
        release.send(()).unwrap();
        busy.await.unwrap();
        assert_eq!(queued.await.unwrap(), Ok(7));
    }

    #[tokio::test]
    async fn a_check_waiting_past_its_deadline_is_refused() {
        let c = Arc::new(checker(1, 4, Duration::from_secs(600)));
        let (release, busy) = occupy(&c).await;
        let c2 = c.clone();
        let late = tokio::spawn(async move { c2.run_until(Instant::now(), |_| 1).await });
        while c.admission.available_permits() > 3 {
            tokio::task::yield_now().await;
        }
        // Whatever the timing, the worker only picks the job after the zero deadline.
        release.send(()).unwrap();
        busy.await.unwrap();
        assert_eq!(late.await.unwrap(), Err(CheckError::Busy));
    }
}
