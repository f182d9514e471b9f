//! The compiled form of a spec's features: parses one raw value (a CSV cell, a request field)
//! into the number the model sees, or says precisely why it cannot.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::spec::{
    ColumnNames, FeatureSpec, MissingPolicy, ModelSpec, OutOfRangePolicy, UnseenPolicy,
    code_tokens, normalise_token,
};

/// What a code the spec does not list becomes in a row read for drift (the drift service's
/// events, `vigie drift-report`'s files): no code is this value (text codes are positions,
/// whole-number codes are below 2^53), so it falls in the feature's "other" bin, whatever the
/// feature's unseen policy says the model does with it.
pub const UNSEEN: f64 = f64::MAX;

/// Where a value comes from: training data may map out-of-range values to missing when the spec
/// says so; a prediction request never may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Data,
    Request,
}

/// A parsed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Value(f64),
    /// Empty, and the spec allows it.
    Missing,
    /// Outside the valid range and treated as missing (training data only, by spec).
    OutOfRangeAsMissing,
    /// A code the spec does not list, treated as missing by its `unseen` policy.
    Unseen,
}

impl Cell {
    /// The number the model sees: `NaN` for a missing value.
    pub fn value(self) -> f64 {
        match self {
            Cell::Value(v) => v,
            Cell::Missing | Cell::OutOfRangeAsMissing | Cell::Unseen => f64::NAN,
        }
    }
}

/// Why a value is refused. Cheap to build: the hot path of a prediction uses it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("missing value, and the spec does not allow it to be missing")]
    Missing,
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0} is not a whole number")]
    NotAnInteger(f64),
    #[error("unknown code {0:?}")]
    UnknownCode(String),
    #[error("{value} is outside the valid range [{min}, {max}]")]
    OutOfRange { value: f64, min: f64, max: f64 },
}

/// Why a row of values cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("{got} values given, the model reads {expected} features")]
    Width { got: usize, expected: usize },
    /// Which feature, and what is wrong with its value.
    #[error("feature {feature}: {error}")]
    Value { feature: String, error: ValueError },
}

#[derive(Debug, Clone, PartialEq)]
enum Domain {
    /// Normalised code -> the number the model sees.
    Codes(CodeTable),
    CodeRange {
        min: i64,
        max: i64,
    },
    Numerical {
        min: f64,
        max: f64,
        integer: bool,
        out_of_range: OutOfRangePolicy,
    },
}

/// One feature, ready to parse values.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    name: String,
    domain: Domain,
    missing: MissingPolicy,
    /// What an unlisted code becomes.
    unseen: UnseenPolicy,
    /// Numbers read as missing.
    missing_values: Vec<f64>,
    /// Codes spelled as text (not all integers): the model sees their position.
    text_codes: bool,
}

/// All features of a spec, in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    features: Vec<Feature>,
    /// Feature names -> position.
    positions: HashMap<String, usize>,
    /// Every name and alias, as `column_names` compares them -> position.
    keys: HashMap<String, usize>,
    column_names: ColumnNames,
}

/// How a categorical code becomes a number: integer codes keep their value (codes often carry
/// an order, and trees split on it); text codes take their position in the declaration.
/// The codes of a categorical feature: normalised token -> the number the model sees, with the
/// whole-number tokens also sorted by value (data files spell most codes as numbers, "2" or
/// "2.0": a binary search finds them without building the normalised string).
#[derive(Debug, Clone, PartialEq)]
struct CodeTable {
    by_token: HashMap<String, f64>,
    by_integer: IntegerCodes,
}

/// The whole-number codes of a [`CodeTable`], by value.
#[derive(Debug, Clone, PartialEq)]
enum IntegerCodes {
    /// When they span at most [`DENSE_SPAN`] values: the value of code `first + k` at `k`
    /// (`NaN` where there is no such code), found without a search.
    Dense { first: i64, values: Vec<f64> },
    /// Sorted by code, searched.
    Sorted(Vec<(i64, f64)>),
}

/// The widest range of whole-number codes kept as a direct table.
const DENSE_SPAN: i64 = 4096;

impl CodeTable {
    fn new(by_token: HashMap<String, f64>) -> Self {
        let mut sorted: Vec<(i64, f64)> = by_token
            .iter()
            .filter_map(|(t, &v)| t.parse::<i64>().ok().map(|i| (i, v)))
            .collect();
        sorted.sort_unstable_by_key(|&(i, _)| i);
        let by_integer = match (sorted.first(), sorted.last()) {
            (Some(&(first, _)), Some(&(last, _))) if last - first < DENSE_SPAN => {
                let mut values = vec![f64::NAN; (last - first + 1) as usize];
                for &(i, v) in &sorted {
                    values[(i - first) as usize] = v;
                }
                IntegerCodes::Dense { first, values }
            }
            _ => IntegerCodes::Sorted(sorted),
        };
        CodeTable {
            by_token,
            by_integer,
        }
    }

    /// The value of a whole-number code.
    fn get_integer(&self, i: i64) -> Option<f64> {
        match &self.by_integer {
            IntegerCodes::Dense { first, values } => i
                .checked_sub(*first)
                .and_then(|k| usize::try_from(k).ok())
                .and_then(|k| values.get(k).copied())
                .filter(|v| !v.is_nan()),
            IntegerCodes::Sorted(sorted) => sorted
                .binary_search_by_key(&i, |&(i, _)| i)
                .ok()
                .map(|k| sorted[k].1),
        }
    }

    /// The value of a whole number (`None` inside: no such code), or `None` when the number is
    /// not whole, or too large to be spelled as an integer token.
    fn get_whole(&self, v: f64) -> Option<Option<f64>> {
        // `normalise_token` spells such a number as the integer; those tokens are here.
        (v.abs() < 1e15 && crate::number::is_whole(v)).then(|| self.get_integer(v as i64))
    }

    /// The value of a trimmed, non-empty text: what looking up `normalise_token(text)` gives.
    fn get(&self, text: &str) -> Option<f64> {
        if let Some(i) = crate::number::parse_whole(text) {
            return self.get_integer(i);
        }
        match crate::number::parse_f64(text)
            .ok()
            .and_then(|v| self.get_whole(v))
        {
            Some(found) => found,
            None => self
                .by_token
                .get(text)
                .or_else(|| self.by_token.get(&normalise_token(text)))
                .copied(),
        }
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.by_token.values().copied()
    }
}

fn encode_codes(tokens: &[String]) -> HashMap<String, f64> {
    let normalised: Vec<String> = tokens.iter().map(|t| normalise_token(t)).collect();
    let all_integers = normalised.iter().all(|t| t.parse::<i64>().is_ok());
    normalised
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let value = if all_integers {
                t.parse::<i64>().map(|v| v as f64).unwrap_or(i as f64)
            } else {
                i as f64
            };
            (t, value)
        })
        .collect()
}

impl Feature {
    fn from_spec(spec: &FeatureSpec) -> Self {
        let domain = match spec {
            FeatureSpec::Categorical {
                codes: Some(codes), ..
            } => Domain::Codes(CodeTable::new(encode_codes(&code_tokens(codes)))),
            FeatureSpec::Categorical { code_range, .. } => {
                // `ModelSpec::check` guarantees one of `codes` or `code_range`.
                let [min, max] = code_range.unwrap_or([i64::MIN, i64::MAX]);
                Domain::CodeRange { min, max }
            }
            FeatureSpec::Numerical {
                min,
                max,
                integer,
                out_of_range,
                ..
            } => Domain::Numerical {
                min: *min,
                max: *max,
                integer: *integer,
                out_of_range: *out_of_range,
            },
        };
        let text_codes = match spec {
            FeatureSpec::Categorical {
                codes: Some(codes), ..
            } => code_tokens(codes)
                .iter()
                .any(|t| normalise_token(t).parse::<i64>().is_err()),
            _ => false,
        };
        let (unseen, missing_values) = match spec {
            FeatureSpec::Categorical { unseen, .. } => (*unseen, Vec::new()),
            FeatureSpec::Numerical { missing_values, .. } => {
                (UnseenPolicy::Reject, missing_values.clone())
            }
        };
        Feature {
            name: spec.name().to_string(),
            domain,
            missing: spec.missing(),
            unseen,
            missing_values,
            text_codes,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The code a categorical value stands for, as the spec spells it (normalised): the text
    /// of a text code, the number of a whole-number code. `None` for a numerical feature or a
    /// value that is no code.
    pub fn code_of(&self, value: f64) -> Option<String> {
        match &self.domain {
            Domain::Codes(table) => table
                .by_token
                .iter()
                .find(|(_, v)| v.total_cmp(&value).is_eq())
                .map(|(t, _)| t.clone()),
            Domain::CodeRange { min, max } => {
                in_code_range(value, *min, *max).then(|| format!("{}", value as i64))
            }
            Domain::Numerical { .. } => None,
        }
    }

    /// Codes spelled as text: the model sees their position in the spec, not their value.
    pub fn has_text_codes(&self) -> bool {
        self.text_codes
    }

    pub fn is_categorical(&self) -> bool {
        !matches!(self.domain, Domain::Numerical { .. })
    }

    /// Whether values are numbers (a numerical feature, or whole-number codes) rather than
    /// text codes.
    pub fn is_numeric(&self) -> bool {
        !self.text_codes
    }

    /// A numerical feature (not a code of any kind).
    pub fn is_numerical(&self) -> bool {
        matches!(self.domain, Domain::Numerical { .. })
    }

    pub fn missing_policy(&self) -> MissingPolicy {
        self.missing
    }

    pub fn unseen_policy(&self) -> UnseenPolicy {
        self.unseen
    }

    /// Whether `value` (a number the model sees) is one of the codes the spec lists: always for
    /// a numerical feature or a code range's whole numbers inside it.
    pub fn knows(&self, value: f64) -> bool {
        match &self.domain {
            Domain::Codes(table) => {
                if self.text_codes {
                    // Text codes are seen as their positions.
                    value >= 0.0
                        && crate::number::is_whole(value)
                        && (value as usize) < table.by_token.len()
                } else {
                    table.get_whole(value).flatten().is_some()
                }
            }
            Domain::CodeRange { min, max } => in_code_range(value, *min, *max),
            Domain::Numerical { .. } => true,
        }
    }

    /// How drift statistics bin this feature.
    pub fn drift_kind(&self) -> vigie_drift::Kind {
        match &self.domain {
            Domain::Codes(lookup) => {
                let mut codes: Vec<f64> = lookup.values().collect();
                codes.sort_by(f64::total_cmp);
                vigie_drift::Kind::Categorical { codes: Some(codes) }
            }
            Domain::CodeRange { .. } => vigie_drift::Kind::Categorical { codes: None },
            Domain::Numerical { .. } => vigie_drift::Kind::Numerical,
        }
    }

    /// How the synthetic generator treats this feature.
    pub fn synthetic_kind(&self) -> vigie_synthetic::ColumnKind {
        if self.is_numerical() {
            vigie_synthetic::ColumnKind::Numerical
        } else {
            vigie_synthetic::ColumnKind::Categorical
        }
    }

    /// Parses a raw textual value; `None` or blank text is a missing value.
    pub fn parse(&self, raw: Option<&str>, origin: Origin) -> Result<Cell, ValueError> {
        let text = raw.map(crate::number::trim).unwrap_or("");
        if text.is_empty() {
            return self.missing_cell();
        }
        match &self.domain {
            Domain::Codes(lookup) => match lookup.get(text) {
                Some(v) => Ok(Cell::Value(v)),
                None => self.unseen(text),
            },
            Domain::CodeRange { min, max } => {
                // Codes are mostly spelled as plain integers: read without a float parse.
                let v = match crate::number::parse_whole(text) {
                    Some(i) => i as f64,
                    None => parse_number(text)?,
                };
                if !in_code_range(v, *min, *max) {
                    return Err(ValueError::UnknownCode(text.to_string()));
                }
                Ok(Cell::Value(v))
            }
            Domain::Numerical { .. } => self.check_number(parse_number(text)?, origin),
        }
    }

    /// Checks a number given as a number (a JSON request field, for instance).
    pub fn parse_number(&self, v: f64, origin: Origin) -> Result<Cell, ValueError> {
        match &self.domain {
            Domain::Numerical { .. } => self.check_number(v, origin),
            Domain::CodeRange { min, max } => {
                if in_code_range(v, *min, *max) {
                    Ok(Cell::Value(v))
                } else {
                    Err(ValueError::UnknownCode(v.to_string()))
                }
            }
            // A whole number is looked up as the text "2" or "2.0" would be, without
            // spelling it; anything else goes through the text's normalisation.
            Domain::Codes(lookup) => match lookup.get_whole(v) {
                Some(Some(found)) => Ok(Cell::Value(found)),
                Some(None) => self.unseen(&v.to_string()),
                None => self.parse(Some(&v.to_string()), origin),
            },
        }
    }

    /// What a missing value becomes, by the feature's `missing` policy.
    fn missing_cell(&self) -> Result<Cell, ValueError> {
        if self.missing.allows_missing() {
            Ok(Cell::Missing)
        } else {
            Err(ValueError::Missing)
        }
    }

    /// What a code the spec does not list becomes, by the feature's `unseen` policy.
    fn unseen(&self, text: &str) -> Result<Cell, ValueError> {
        match self.unseen {
            UnseenPolicy::Missing => Ok(Cell::Unseen),
            UnseenPolicy::Reject => Err(ValueError::UnknownCode(text.to_string())),
        }
    }

    fn check_number(&self, v: f64, origin: Origin) -> Result<Cell, ValueError> {
        let Domain::Numerical {
            min,
            max,
            integer,
            out_of_range,
        } = &self.domain
        else {
            unreachable!("check_number is only called on numerical features")
        };
        if !v.is_finite() {
            return Err(ValueError::NotANumber(v.to_string()));
        }
        if !self.missing_values.is_empty() && self.missing_values.contains(&v) {
            return self.missing_cell();
        }
        if *integer && !crate::number::is_whole(v) {
            return Err(ValueError::NotAnInteger(v));
        }
        if v < *min || v > *max {
            return match (origin, out_of_range) {
                (Origin::Data, OutOfRangePolicy::Missing) => Ok(Cell::OutOfRangeAsMissing),
                _ => Err(ValueError::OutOfRange {
                    value: v,
                    min: *min,
                    max: *max,
                }),
            };
        }
        Ok(Cell::Value(v))
    }
}

/// A whole number within `[min, max]`.
fn in_code_range(v: f64, min: i64, max: i64) -> bool {
    crate::number::is_whole(v) && v >= min as f64 && v <= max as f64
}

fn parse_number(text: &str) -> Result<f64, ValueError> {
    match crate::number::parse_f64(text) {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ValueError::NotANumber(text.to_string())),
    }
}

impl Schema {
    pub fn new(spec: &ModelSpec) -> Self {
        let features: Vec<Feature> = spec.features.iter().map(Feature::from_spec).collect();
        let positions = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let column_names = spec.column_names;
        let keys = spec
            .features
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.names().map(move |n| (column_names.key(n), i)))
            .collect();
        Schema {
            features,
            positions,
            keys,
            column_names,
        }
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The feature names, in model order.
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(Feature::name).collect()
    }

    /// Each feature's kind for drift binning, in model order.
    pub fn drift_kinds(&self) -> Vec<vigie_drift::Kind> {
        self.features.iter().map(Feature::drift_kind).collect()
    }

    /// Each feature's kind for the synthetic generator, in model order.
    pub fn synthetic_kinds(&self) -> Vec<vigie_synthetic::ColumnKind> {
        self.features.iter().map(Feature::synthetic_kind).collect()
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The position of a feature in model order, by its name exactly.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// The feature a file's column or a request's field names, matched as the spec's
    /// `column_names` says: its name, or one of its aliases.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.positions
            .get(name)
            .or_else(|| self.keys.get(&self.column_names.key(name.trim())))
            .copied()
    }

    /// Reads one row of a request's text values (model order; `None` or blank = missing) into
    /// `row` (model order, `NaN` = missing): the first value the spec refuses is the error,
    /// with its feature. `row` holds one slot per feature.
    pub fn parse_request_row<'a>(
        &self,
        values: impl ExactSizeIterator<Item = Option<&'a str>>,
        row: &mut [f64],
    ) -> Result<(), RowError> {
        if values.len() != self.len() || row.len() != self.len() {
            return Err(RowError::Width {
                got: values.len(),
                expected: self.len(),
            });
        }
        for ((slot, raw), feature) in row.iter_mut().zip(values).zip(&self.features) {
            *slot = match feature.parse(raw, Origin::Request) {
                Ok(cell) => cell.value(),
                Err(error) => {
                    return Err(RowError::Value {
                        feature: feature.name().to_string(),
                        error,
                    });
                }
            };
        }
        Ok(())
    }
}

/// Values that replace missing ones, one per feature in model order (`None` for a feature that
/// may not be missing). Computed on the training slice, stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imputation {
    pub fills: Vec<Option<f64>>,
}

impl Imputation {
    /// Mode for categorical features, median for numerical ones, over the non-missing values
    /// of each column of `x` (row-major, `NaN` = missing).
    pub fn fit(schema: &Schema, x: &vigie_model::Matrix) -> Self {
        let fills = schema
            .features()
            .iter()
            .enumerate()
            .map(|(c, feature)| {
                // Refused, or kept for the model to route.
                if feature.missing_policy() != MissingPolicy::Impute {
                    return None;
                }
                let mut values: Vec<f64> = x
                    .iter_rows()
                    .map(|r| r[c])
                    .filter(|v| !v.is_nan())
                    .collect();
                if values.is_empty() {
                    return Some(0.0);
                }
                values.sort_by(f64::total_cmp);
                Some(if feature.is_categorical() {
                    mode(&values)
                } else {
                    values[values.len() / 2]
                })
            })
            .collect();
        Imputation { fills }
    }

    /// Replaces every `NaN` of `row` by its fill; a row that still holds `NaN` has a missing
    /// value where the spec forbids one, which parsing already refused.
    pub fn apply(&self, row: &mut [f64]) {
        for (v, fill) in row.iter_mut().zip(&self.fills) {
            if v.is_nan()
                && let Some(f) = fill
            {
                *v = *f;
            }
        }
    }
}

/// The most frequent value of sorted `values` (the smallest one on ties).
fn mode(sorted: &[f64]) -> f64 {
    let (mut best, mut best_count) = (sorted[0], 0);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        if j - i > best_count {
            best = sorted[i];
            best_count = j - i;
        }
        i = j;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_given_for_a_code_reads_as_its_text_would() {
        let spec = crate::spec::ModelSpec::from_toml(crate::testing::TOY_SPEC).unwrap();
        let schema = Schema::new(&spec);
        let colour = &schema.features()[0];
        assert!(matches!(colour.domain, Domain::Codes(_)));
        for v in [
            1.0,
            2.0,
            -0.0,
            0.0,
            3.0,
            -1.0,
            1.5,
            2.000_000_1,
            1e15,
            1e300,
            -1e300,
        ] {
            let text = v.to_string();
            for origin in [Origin::Request, Origin::Data] {
                assert_eq!(
                    colour.parse_number(v, origin),
                    colour.parse(Some(&text), origin),
                    "{v}"
                );
            }
        }
        assert_eq!(
            colour.parse_number(2.0, Origin::Request),
            Ok(Cell::Value(2.0))
        );
        assert_eq!(
            colour.parse_number(3.0, Origin::Request),
            Err(ValueError::UnknownCode("3".into()))
        );
    }
}
