//! What the suite reports: named figures, each with its unit, the budget it must meet and
//! what the old FastAPI + Celery + Redis service did, collected over runs.

use serde::Serialize;

use crate::stats;

/// A budget a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "op", content = "value")]
pub enum Budget {
    #[serde(rename = ">=")]
    AtLeast(f64),
    #[serde(rename = "<=")]
    AtMost(f64),
}

impl Budget {
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Budget::AtLeast(b) => value >= b,
            Budget::AtMost(b) => value <= b,
        }
    }

    /// "meets" or how far off the value is, e.g. "misses: 2.3x the budget".
    pub fn verdict(self, value: f64) -> String {
        if value.is_nan() {
            return "no data".into();
        }
        if self.met_by(value) {
            return "meets".into();
        }
        match self {
            Budget::AtLeast(b) => format!("misses: {:.2}x below", b / value),
            Budget::AtMost(b) => format!("misses: {:.2}x over", value / b),
        }
    }

    fn show(self) -> String {
        match self {
            Budget::AtLeast(b) => format!(">= {}", number(b)),
            Budget::AtMost(b) => format!("<= {}", number(b)),
        }
    }
}

/// One measured value of one run.
#[derive(Debug, Clone)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub budget: Option<Budget>,
    pub old: Option<f64>,
    pub value: f64,
}

impl Figure {
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        unit: &'static str,
        value: f64,
    ) -> Figure {
        Figure {
            key: key.into(),
            label: label.into(),
            unit,
            budget: None,
            old: None,
            value,
        }
    }

    pub fn budget(mut self, budget: Budget) -> Figure {
        self.budget = Some(budget);
        self
    }

    pub fn old(mut self, old: f64) -> Figure {
        self.old = Some(old);
        self
    }
}

/// Every run's value of one figure.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_service: Option<f64>,
    pub values: Vec<f64>,
}

impl Series {
    pub fn median(&self) -> f64 {
        stats::median(&self.values)
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn verdict(&self) -> Option<String> {
        self.budget.map(|b| b.verdict(self.median()))
    }

    pub fn budget_text(&self) -> String {
        self.budget.map(Budget::show).unwrap_or_default()
    }
}

/// Figures in the order they were first measured.
#[derive(Debug, Default)]
pub struct Results {
    pub series: Vec<Series>,
}

impl Results {
    pub fn add(&mut self, figure: Figure) {
        match self.series.iter_mut().find(|s| s.key == figure.key) {
            Some(s) => s.values.push(figure.value),
            None => self.series.push(Series {
                key: figure.key,
                label: figure.label,
                unit: figure.unit,
                budget: figure.budget,
                old_service: figure.old,
                values: vec![figure.value],
            }),
        }
    }

    pub fn extend(&mut self, figures: impl IntoIterator<Item = Figure>) {
        for f in figures {
            self.add(f);
        }
    }
}

/// A number with as many decimals as its size calls for.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_by_how_much() {
        assert_eq!(Budget::AtLeast(10.0).verdict(20.0), "meets");
        assert_eq!(Budget::AtLeast(10.0).verdict(5.0), "misses: 2.00x below");
        assert_eq!(Budget::AtMost(2.0).verdict(3.0), "misses: 1.50x over");
    }

    #[test]
    fn runs_of_one_figure_are_merged() {
        let mut r = Results::default();
        for v in [3.0, 1.0, 2.0] {
            r.add(Figure::new("x", "x", "ms", v).budget(Budget::AtMost(2.0)));
        }
        assert_eq!(r.series.len(), 1);
        assert_eq!(r.series[0].median(), 2.0);
        assert_eq!(r.series[0].verdict().as_deref(), Some("meets"));
    }
}
