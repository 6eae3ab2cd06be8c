//! A histogram of a current distribution (what OpenMetrics calls a gauge histogram): its
//! buckets, sum and count are replaced as a whole, not accumulated.
//!
//! `iam_warden_access_key_age_seconds` uses it. A classic histogram observed at every
//! resync would count every key again each time, so its buckets would grow with the number
//! of resyncs and say nothing about the keys. Gauges with an `le` label would be right but
//! break the exposition lint (`promtool check metrics`: "non-histogram metrics should not
//! have \"le\" label"). So the family is exported with type `histogram` and holds the
//! distribution of the last resync: `histogram_quantile(0.9, iam_warden_access_key_age_seconds_bucket)`
//! works on it directly; `rate()` on it means nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

#[derive(Debug, Default)]
struct Distribution {
    /// Cumulative counts, one per bound.
    cumulative: Vec<u64>,
    count: u64,
    sum: f64,
}

/// A histogram whose whole distribution is set at once (see the module doc).
#[derive(Debug, Clone)]
pub struct GaugeHistogram {
    desc: Desc,
    bounds: Vec<f64>,
    state: Arc<Mutex<Distribution>>,
}

impl GaugeHistogram {
    /// An empty distribution over the upper bounds `bounds` (ascending, without `+Inf`).
    pub fn new(name: &str, help: &str, bounds: Vec<f64>) -> prometheus::Result<GaugeHistogram> {
        let desc = Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())?;
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(prometheus::Error::Msg(format!(
                "{name}: bucket bounds must be strictly ascending"
            )));
        }
        let state = Distribution {
            cumulative: vec![0; bounds.len()],
            ..Distribution::default()
        };
        Ok(GaugeHistogram {
            desc,
            bounds,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// The upper bounds of the buckets.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Replace the distribution: `cumulative[i]` values are at most `bounds[i]`, `count`
    /// values in all (the `+Inf` bucket), `sum` their sum. Missing bounds count `count`.
    pub fn set(&self, cumulative: &[u64], count: u64, sum: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.cumulative = (0..self.bounds.len())
            .map(|i| cumulative.get(i).copied().unwrap_or(count).min(count))
            .collect();
        s.count = count;
        s.sum = sum;
    }

    /// (cumulative counts, count, sum) now.
    pub fn get(&self) -> (Vec<u64>, u64, f64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.cumulative.clone(), s.count, s.sum)
    }
}

impl Collector for GaugeHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (cumulative, count, sum) = self.get();
        let mut h = proto::Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        h.set_bucket(
            self.bounds
                .iter()
                .zip(cumulative)
                .map(|(bound, n)| {
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(n);
                    b
                })
                .collect(),
        );
        let mut m = proto::Metric::default();
        m.set_histogram(h);
        let mut f = MetricFamily::default();
        f.set_name(self.desc.fq_name.clone());
        f.set_help(self.desc.help.clone());
        f.set_field_type(MetricType::HISTOGRAM);
        f.set_metric(vec![m]);
        vec![f]
    }
}
