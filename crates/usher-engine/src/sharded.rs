//! Metrics recorded on every request, kept in per-thread slots: prometheus-client's
//! histogram takes a mutex per observation and its counter is one atomic that every
//! core writes — a cache line passed between the cores on every request (issue 9).
//! Each thread here writes a slot of its own; a scrape adds the slots up.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// More slots than the runtime has worker threads, so workers rarely share one.
const SLOTS: usize = 8;

/// This thread's slot, handed out round-robin on first use.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// A slot on a cache line of its own (128 bytes: adjacent lines are fetched in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A counter whose increments from different threads never meet.
#[derive(Clone, Default)]
pub struct Counter {
    slots: Arc<[Padded<AtomicU64>; SLOTS]>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl Counter {
    pub fn inc(&self) {
        self.slots[slot()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A histogram over fixed upper bounds (the last one +Inf, as Prometheus expects).
#[derive(Clone)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    slots: Arc<[Padded<HistSlot>]>,
}

struct HistSlot {
    count: AtomicU64,
    /// The sum as `f64` bits: added with a compare-and-swap that only this slot's
    /// threads contend for.
    sum: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

impl Histogram {
    /// Buckets at `bounds` (ascending) and +Inf.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = bounds.into_iter().collect();
        bounds.push(f64::INFINITY);
        let slots = (0..SLOTS)
            .map(|_| {
                Padded(HistSlot {
                    count: AtomicU64::new(0),
                    sum: AtomicU64::new(0f64.to_bits()),
                    buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                })
            })
            .collect();
        Self {
            bounds: bounds.into(),
            slots,
        }
    }

    pub fn observe(&self, v: f64) {
        let slot = &self.slots[slot()].0;
        // The first bucket whose bound holds `v`; NaN goes to +Inf.
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len() - 1);
        slot.buckets[i].fetch_add(1, Ordering::Relaxed);
        slot.count.fetch_add(1, Ordering::Relaxed);
        let _ = slot
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + v).to_bits())
            });
    }

    /// (sum, count, per-bucket counts): the slots added up.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = self.bounds.iter().map(|b| (*b, 0)).collect();
        let (mut sum, mut count) = (0.0, 0);
        for Padded(s) in self.slots.iter() {
            sum += f64::from_bits(s.sum.load(Ordering::Relaxed));
            count += s.count.load(Ordering::Relaxed);
            for (total, b) in buckets.iter_mut().zip(s.buckets.iter()) {
                total.1 += b.load(Ordering::Relaxed);
            }
        }
        (sum, count, buckets)
    }

    pub fn count(&self) -> u64 {
        self.totals().1
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn increments_from_many_threads_all_count() {
        let c = Counter::default();
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| (0..1000).for_each(|_| c.inc()));
            }
        });
        assert_eq!(c.get(), 16_000);
    }

    #[test]
    fn histogram_encodes_cumulative_buckets_sum_and_count() {
        let h = Histogram::new([1.0, 2.0, 4.0]);
        std::thread::scope(|s| {
            for v in [0.5, 1.0, 1.5, 3.0, 9.0, f64::NAN] {
                let h = &h;
                s.spawn(move || h.observe(v));
            }
        });
        h.observe(2.0);
        let c = Counter::default();
        c.inc();
        let mut registry = Registry::default();
        registry.register("check", "help", h.clone());
        registry.register("hits", "help", c);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        // NaN adds NaN to the sum, as prometheus-client's own histogram does.
        assert!(out.contains("check_sum NaN"), "{out}");
        for line in [
            "# TYPE check histogram",
            "check_count 7",
            "check_bucket{le=\"1.0\"} 2",
            "check_bucket{le=\"2.0\"} 4",
            "check_bucket{le=\"4.0\"} 5",
            "check_bucket{le=\"+Inf\"} 7",
            "# TYPE hits counter",
            "hits_total 1",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        assert_eq!(h.count(), 7);
    }
}
