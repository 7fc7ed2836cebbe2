//! Classification metrics and summaries across runs, in plain Rust (no framework).

use serde::{Deserialize, Serialize};

/// `confusion[t][p]`: clips of true class t predicted as p.
pub fn confusion(truth: &[usize], predicted: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        m[t][p] += 1;
    }
    m
}

/// Index of the largest value (the last on ties, as `Iterator::max_by`; 0 for an empty slice).
pub fn argmax<T: Copy + Into<f64>>(v: &[T]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].into().total_cmp(&v[b].into())).unwrap_or(0)
}

/// `total += m`, cell by cell (confusion matrices of the same classes).
pub fn add_confusion(total: &mut [Vec<usize>], m: &[Vec<usize>]) {
    for (t, row) in total.iter_mut().zip(m) {
        t.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
}

/// Per-class figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    /// Mean recall over the classes present in the truth.
    pub balanced_accuracy: f64,
    /// Mean F1 over the classes present in the truth.
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Scores of predictions against the truth (sklearn's conventions: 0 where undefined).
pub fn scores(truth: &[usize], predicted: &[usize], classes: usize) -> Scores {
    let cm = confusion(truth, predicted, classes);
    let per_class: Vec<ClassScores> = (0..classes)
        .map(|c| {
            let tp = cm[c][c];
            let support: usize = cm[c].iter().sum();
            let predicted_c: usize = cm.iter().map(|row| row[c]).sum();
            let precision = ratio(tp, predicted_c);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassScores { precision, recall, f1, support }
        })
        .collect();
    let present: Vec<&ClassScores> = per_class.iter().filter(|c| c.support > 0).collect();
    let mean = |f: fn(&ClassScores) -> f64| present.iter().map(|c| f(c)).sum::<f64>() / present.len().max(1) as f64;
    Scores {
        accuracy: ratio(truth.iter().zip(predicted).filter(|(t, p)| t == p).count(), truth.len()),
        balanced_accuracy: mean(|c| c.recall),
        macro_f1: mean(|c| c.f1),
        per_class,
        confusion: cm,
    }
}

/// Mean, sample standard deviation and a 95% confidence interval for the mean (Student's t).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    /// None with fewer than two values.
    pub ci95: Option<(f64, f64)>,
}

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let std = if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    let ci95 = (n > 1).then(|| {
        let half = t_975(n - 1) * std / (n as f64).sqrt();
        (mean - half, mean + half)
    });
    Summary { n, mean, std, ci95 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_last_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2, 0.7]), 3);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax::<f32>(&[]), 0);
        let mut total = vec![vec![1, 0], vec![0, 1]];
        add_confusion(&mut total, &[vec![2, 3], vec![4, 5]]);
        assert_eq!(total, vec![vec![3, 3], vec![4, 6]]);
    }

    #[test]
    fn scores_match_hand_computed_values() {
        // 3 classes. truth: 0 0 0 1 1 2; predicted: 0 0 1 1 2 2
        let truth = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 2, 2];
        let s = scores(&truth, &pred, 3);
        assert_eq!(s.confusion, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // recalls 2/3, 1/2, 1 -> balanced accuracy 13/18
        assert!((s.balanced_accuracy - 13.0 / 18.0).abs() < 1e-12);
        // precisions 1, 1/2, 1/2; F1s 0.8, 0.5, 2/3
        let f1: Vec<f64> = s.per_class.iter().map(|c| c.f1).collect();
        assert!((f1[0] - 0.8).abs() < 1e-12 && (f1[1] - 0.5).abs() < 1e-12 && (f1[2] - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(s.per_class[0].support, 3);
    }

    #[test]
    fn absent_classes_do_not_count_and_nothing_divides_by_zero() {
        let s = scores(&[0, 0], &[1, 1], 3);
        assert_eq!(s.accuracy, 0.0);
        assert_eq!(s.per_class[1].precision, 0.0);
        assert_eq!(s.balanced_accuracy, 0.0);
    }

    #[test]
    fn summary_uses_the_sample_std_and_t_interval() {
        let s = summarize(&[0.50, 0.55, 0.60, 0.65, 0.70]);
        assert!((s.mean - 0.60).abs() < 1e-12);
        assert!((s.std - 0.0790569415).abs() < 1e-9);
        let half = 2.776 * s.std / 5f64.sqrt();
        assert!((s.ci95.unwrap().1 - (0.60 + half)).abs() < 1e-12);
        let one = summarize(&[0.4]);
        assert_eq!(one.std, 0.0);
        assert!(one.ci95.is_none());
    }
}
