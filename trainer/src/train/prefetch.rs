//! Prepares the examples of upcoming steps on worker threads, ahead of the model.

use crate::config::Config;
use crate::data::{self, Example};
use crate::train::error::TrainError;
use asg_report::TextTokenizer as Tokenizer;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Loads the examples of a step on worker threads, ahead of the model.
pub(crate) struct Prefetcher {
    rx: std::sync::mpsc::Receiver<(u64, Result<Vec<Example>, data::DataError>)>,
    pending: BTreeMap<u64, Result<Vec<Example>, data::DataError>>,
    consumed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    pub(crate) fn start(
        records: Arc<Vec<data::Record>>,
        tokenizer: Arc<Tokenizer>,
        config: Arc<Config>,
        first: u64,
        last: u64,
    ) -> Self {
        let workers = config.train.workers.max(1);
        let ahead = config.train.prefetch.max(1) as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        let consumed = Arc::new(AtomicU64::new(first));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handles = Vec::new();
        // Films decoded once and kept (`train.image_cache_mb`); past the budget, decoded each time.
        let cache = Arc::new(data::ImageCache::new(config.train.image_cache_mb << 20));
        for w in 0..workers {
            let cache = cache.clone();
            let (tx, records, tokenizer, config, consumed, stop) = (
                tx.clone(),
                records.clone(),
                tokenizer.clone(),
                config.clone(),
                consumed.clone(),
                stop.clone(),
            );
            handles.push(std::thread::spawn(move || {
                let mut step = first + w as u64;
                while step < last && !stop.load(Ordering::Relaxed) {
                    if step >= consumed.load(Ordering::Relaxed) + ahead {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        continue;
                    }
                    let idx = data::batch_indices(
                        records.len(),
                        config.train.batch_size,
                        config.train.seed,
                        step,
                    );
                    let batch: Result<Vec<Example>, _> = idx
                        .iter()
                        .enumerate()
                        .map(|(slot, &i)| {
                            let mut rng = data::example_rng(config.train.seed, step, slot);
                            data::prepare_cached(
                                &records[i],
                                &tokenizer,
                                &config,
                                Some(&mut rng),
                                Some(&cache),
                            )
                        })
                        .collect();
                    if tx.send((step, batch)).is_err() {
                        return;
                    }
                    step += workers as u64;
                }
            }));
        }
        Self {
            rx,
            pending: BTreeMap::new(),
            consumed,
            stop,
            handles,
        }
    }

    pub(crate) fn next(&mut self, step: u64) -> Result<Vec<Example>, TrainError> {
        loop {
            if let Some(b) = self.pending.remove(&step) {
                self.consumed.store(step + 1, Ordering::Relaxed);
                return Ok(b?);
            }
            let (s, b) = self
                .rx
                .recv()
                .map_err(|_| TrainError::Invalid("the data loader stopped".into()))?;
            self.pending.insert(s, b);
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
