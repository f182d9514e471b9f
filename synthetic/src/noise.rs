//! Noise models for testers: seeded changes applied to events, to prove that drift detection
//! reacts (the drift service applies them to the events entering its windows).
//!
//! Each event is drawn on independently: with probability `rate`, each chosen feature of the
//! event is changed by the mode:
//! - `gaussian`: adds N(0, (scale x std)^2), std being the reference's (numerical features; a
//!   feature with no spread uses a std of 1);
//! - `category_swap`: maps each code of the vocabulary to another one (a seeded cyclic
//!   permutation: no code maps to itself), codes outside the vocabulary stay;
//! - `prior_shift`: sets the code to `code` (default: the reference's rarest code), shifting the
//!   feature's prior towards it;
//! - `new_category`: sets a code the reference never had (`code`, default the largest code + 1);
//! - `missing`: sets the value missing (any feature).
//!
//! With no feature named, a mode applies to every feature it suits.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use vigie_drift::{FeatureProfile, Profile};

/// A noise mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseMode {
    Gaussian,
    CategorySwap,
    PriorShift,
    NewCategory,
    Missing,
}

impl NoiseMode {
    pub fn name(self) -> &'static str {
        match self {
            NoiseMode::Gaussian => "gaussian",
            NoiseMode::CategorySwap => "category_swap",
            NoiseMode::PriorShift => "prior_shift",
            NoiseMode::NewCategory => "new_category",
            NoiseMode::Missing => "missing",
        }
    }

    fn suits(self, feature: &FeatureProfile) -> bool {
        match self {
            NoiseMode::Gaussian => feature.is_numerical(),
            NoiseMode::CategorySwap | NoiseMode::PriorShift | NoiseMode::NewCategory => {
                !feature.is_numerical()
            }
            NoiseMode::Missing => true,
        }
    }
}

/// What a tester asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    pub mode: NoiseMode,
    /// Features to change; empty for every feature the mode suits.
    #[serde(default)]
    pub features: Vec<String>,
    /// Share of events changed, in (0, 1].
    pub rate: f64,
    #[serde(default)]
    pub seed: u64,
    /// `gaussian`: standard deviations of noise (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// `prior_shift`: the code to shift towards; `new_category`: the new code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<f64>,
}

/// The largest gaussian scale, in standard deviations of the feature: past it every value
/// lands in the reference's outermost bins anyway.
pub const MAX_SCALE: f64 = 100.0;

/// A noise spec that cannot apply, naming the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for NoiseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for NoiseError {}

#[derive(Debug, Clone)]
enum Action {
    Gaussian {
        sigma: f64,
    },
    /// Sorted codes and what each becomes.
    Map {
        from: Vec<f64>,
        to: Vec<f64>,
    },
    Set(f64),
}

/// A noise spec bound to a model's features, with its random stream.
#[derive(Debug, Clone)]
pub struct Injector {
    spec: NoiseSpec,
    /// (feature index, action).
    targets: Vec<(usize, Action)>,
    rng: StdRng,
}

impl Injector {
    /// Checks `spec` against the features of `profile` and prepares it.
    pub fn new(spec: NoiseSpec, profile: &Profile) -> Result<Self, NoiseError> {
        if spec.features.len() > profile.features.len() {
            return Err(NoiseError {
                field: "features",
                message: format!(
                    "{} features named; the model has {}",
                    spec.features.len(),
                    profile.features.len()
                ),
            });
        }
        let err = |field, message: String| Err(NoiseError { field, message });
        if !(spec.rate > 0.0 && spec.rate <= 1.0) {
            return err("rate", format!("must be in (0, 1], got {}", spec.rate));
        }
        let mode = spec.mode;
        match (mode, spec.scale) {
            (NoiseMode::Gaussian, Some(s)) if !(s.is_finite() && s > 0.0 && s <= MAX_SCALE) => {
                return err(
                    "scale",
                    format!(
                        "must be a positive number of at most {MAX_SCALE} standard deviations, got {s}"
                    ),
                );
            }
            (NoiseMode::Gaussian, _) | (_, None) => {}
            (_, Some(_)) => return err("scale", format!("{} takes no scale", mode.name())),
        }
        match (mode, spec.code) {
            (NoiseMode::PriorShift | NoiseMode::NewCategory, Some(c)) if !c.is_finite() => {
                return err("code", format!("must be a finite number, got {c}"));
            }
            (NoiseMode::PriorShift | NoiseMode::NewCategory, _) | (_, None) => {}
            (_, Some(_)) => return err("code", format!("{} takes no code", mode.name())),
        }
        let chosen: Vec<usize> = if spec.features.is_empty() {
            (0..profile.features.len())
                .filter(|&i| mode.suits(&profile.features[i]))
                .collect()
        } else {
            let mut chosen = Vec::new();
            for name in &spec.features {
                let Some(i) = profile.features.iter().position(|f| f.name() == name) else {
                    return err("features", format!("the model has no feature {name:?}"));
                };
                if !mode.suits(&profile.features[i]) {
                    return err(
                        "features",
                        format!(
                            "{} does not apply to the {} feature {name:?}",
                            mode.name(),
                            profile.features[i].kind_name()
                        ),
                    );
                }
                if chosen.contains(&i) {
                    return err("features", format!("{name:?} is named twice"));
                }
                chosen.push(i);
            }
            chosen
        };
        if chosen.is_empty() {
            return err(
                "features",
                format!("the model has no feature {} applies to", mode.name()),
            );
        }
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut targets = Vec::with_capacity(chosen.len());
        for i in chosen {
            let feature = &profile.features[i];
            let action = match (mode, feature) {
                (NoiseMode::Gaussian, FeatureProfile::Numerical { std, .. }) => {
                    let std = if *std > 0.0 { *std } else { 1.0 };
                    Action::Gaussian {
                        sigma: spec.scale.unwrap_or(1.0) * std,
                    }
                }
                (NoiseMode::CategorySwap, FeatureProfile::Categorical { codes, .. }) => {
                    if codes.len() < 2 {
                        return err(
                            "features",
                            format!("{:?} has fewer than two codes to swap", feature.name()),
                        );
                    }
                    let mut from = codes.clone();
                    from.sort_by(f64::total_cmp);
                    let mut cycle = from.clone();
                    cycle.shuffle(&mut rng);
                    // Each code becomes the next one of a shuffled cycle: never itself.
                    let mut to = vec![0.0; from.len()];
                    for (k, &c) in cycle.iter().enumerate() {
                        let slot = from.partition_point(|&v| v < c);
                        to[slot] = cycle[(k + 1) % cycle.len()];
                    }
                    Action::Map { from, to }
                }
                (
                    NoiseMode::PriorShift,
                    FeatureProfile::Categorical {
                        codes, counts: n, ..
                    },
                ) => {
                    let code = match spec.code {
                        Some(c) if codes.contains(&c) => c,
                        Some(c) => {
                            return err(
                                "code",
                                format!("{c} is not a code of {:?}", feature.name()),
                            );
                        }
                        None => rarest(codes, n).ok_or_else(|| NoiseError {
                            field: "features",
                            message: format!("{:?} has no code", feature.name()),
                        })?,
                    };
                    Action::Set(code)
                }
                (NoiseMode::NewCategory, FeatureProfile::Categorical { codes, .. }) => {
                    let code = match spec.code {
                        Some(c) if codes.contains(&c) => {
                            return err(
                                "code",
                                format!("{c} is already a code of {:?}", feature.name()),
                            );
                        }
                        Some(c) => c,
                        None => codes.iter().copied().fold(0.0, f64::max).floor() + 1.0,
                    };
                    Action::Set(code)
                }
                (NoiseMode::Missing, _) => Action::Set(f64::NAN),
                _ => unreachable!("`suits` checked the feature's kind"),
            };
            targets.push((i, action));
        }
        Ok(Injector {
            rng: StdRng::seed_from_u64(spec.seed),
            spec,
            targets,
        })
    }

    pub fn spec(&self) -> &NoiseSpec {
        &self.spec
    }

    /// Indices of the features the noise changes.
    pub fn features(&self) -> Vec<usize> {
        self.targets.iter().map(|(i, _)| *i).collect()
    }

    /// Maybe changes one event (model order, `NaN` = missing); `true` when it did.
    pub fn apply(&mut self, row: &mut [f64]) -> bool {
        if !self.rng.gen_bool(self.spec.rate) {
            return false;
        }
        for (i, action) in &self.targets {
            let v = &mut row[*i];
            match action {
                Action::Gaussian { sigma } => {
                    if !v.is_nan() {
                        *v += sigma * standard_normal(&mut self.rng);
                    }
                }
                Action::Map { from, to } => {
                    if let Ok(k) = from.binary_search_by(|c| c.total_cmp(v)) {
                        *v = to[k];
                    }
                }
                Action::Set(code) => *v = *code,
            }
        }
        true
    }
}

/// The code with the fewest reference events (the first on ties); `counts` has one entry per
/// code, then "other" and "missing".
fn rarest(codes: &[f64], counts: &[u64]) -> Option<f64> {
    codes
        .iter()
        .zip(counts)
        .min_by_key(|(_, n)| **n)
        .map(|(c, _)| *c)
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // (0, 1]
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests;
