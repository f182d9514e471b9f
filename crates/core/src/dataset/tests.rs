use std::path::PathBuf;

use super::*;
use crate::schema::{Cell, Origin, Schema};

/// The toy spec with out-of-range speeds treated as missing, and a third feature.
fn spec() -> ModelSpec {
    let text = crate::testing::TOY_SPEC
        .replace("max = 130\n", "max = 130\nout_of_range = \"missing\"\n")
        + r#"
[[feature]]
name = "count"
type = "numerical"
missing = "reject"
integer = true
min = 1
max = 10
"#;
    ModelSpec::from_toml(&text).unwrap()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(x: &str, y: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.csv"), x).unwrap();
        std::fs::write(dir.path().join("y.csv"), y).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load(&self) -> Result<LabelledData> {
        let spec = spec();
        load(
            &spec,
            &Schema::new(&spec),
            &self.path("x.csv"),
            &self.path("y.csv"),
        )
    }

    fn problems(&self) -> Vec<String> {
        match self.load() {
            Err(Error::Data { problems }) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected data problems, got {other:?}"),
        }
    }
}

const GOOD_X: &str = "colour,speed,count,extra\n1,50,2,a\n2.0,,3,b\n1,900,1,c\n";
const GOOD_Y: &str = "y\n1\n0\n1\n";

#[test]
fn good_files_load_with_a_report() {
    let files = Files::new(GOOD_X, GOOD_Y);
    let data = files.load().unwrap();
    assert_eq!(data.x.rows(), 3);
    assert_eq!(data.x.row(0), &[1.0, 50.0, 2.0]);
    assert_eq!(data.x.row(1)[0], 2.0, "\"2.0\" is code 2");
    assert!(data.x.row(1)[1].is_nan(), "empty speed is missing");
    assert!(
        data.x.row(2)[1].is_nan(),
        "900 is out of range, missing by spec"
    );
    assert_eq!(data.y, vec![1.0, 0.0, 1.0]);
    assert_eq!(data.report.ignored_columns, vec!["extra".to_string()]);
    assert_eq!(data.report.missing, vec![0, 1, 0]);
    assert_eq!(data.report.out_of_range_as_missing, vec![0, 1, 0]);
}

#[test]
fn every_bad_value_is_reported_by_line_and_column() {
    let files = Files::new(
        "colour,speed,count\n3,50,2\n1,fast,2\n,10,2.5\n1,10,11\n",
        "y\n1\n0\n1\n0\n",
    );
    let problems = files.problems();
    let x = files.path("x.csv").display().to_string();
    assert_eq!(
        problems,
        vec![
            format!("{x} line 2 column colour: unknown code \"3\""),
            format!(
                "{x} line 4 column colour: missing value, and the spec does not allow it to be missing"
            ),
            format!("{x} line 3 column speed: \"fast\" is not a number"),
            format!("{x} line 4 column count: 2.5 is not a whole number"),
            format!("{x} line 5 column count: 11 is outside the valid range [1, 10]"),
        ]
    );
}

#[test]
fn a_missing_column_is_named() {
    let files = Files::new("colour,count\n1,2\n", "y\n1\n");
    let problems = files.problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .ends_with("line 1 column speed: missing column: the spec declares this feature"),
        "{problems:?}"
    );
}

#[test]
fn a_ragged_csv_is_malformed() {
    let files = Files::new(
        "colour,speed,count\n1,50,2\n1,50\n2,3,4,5\n",
        "y\n1\n0\n1\n",
    );
    let problems = files.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].ends_with("line 3: 2 fields where the header has 3"),
        "{problems:?}"
    );
    assert!(
        problems[1].ends_with("line 4: 4 fields where the header has 3"),
        "{problems:?}"
    );
}

#[test]
fn unclosed_quotes_and_binary_files_are_malformed() {
    let files = Files::new("colour,speed,count\n1,\"50,2\n", "y\n1\n");
    assert!(files.problems()[0].contains("quoted field is never closed"));
    let files = Files::new("colour,speed,count\n1,\u{0}\u{0},2\n", "y\n1\n");
    std::fs::write(files.path("x.csv"), b"colour,speed,count\n1,\xff\xfe,2\n").unwrap();
    assert!(
        files.problems()[0].ends_with("line 2: not valid UTF-8 text"),
        "{:?}",
        files.problems()
    );
}

#[test]
fn bad_targets_and_row_counts_are_reported() {
    let files = Files::new(GOOD_X, "y\n1\n2\n\n");
    let problems = files.problems();
    let y = files.path("y.csv").display().to_string();
    assert!(problems.contains(&format!(
        "{y} line 3 column y: target \"2\" is neither the positive class \"1\" nor the negative class \"0\""
    )));
    let files = Files::new(GOOD_X, "y\n1\n0\n");
    let problems = files.problems();
    assert!(problems[0].contains("2 target rows but"), "{problems:?}");
    let files = Files::new(GOOD_X, "label\n1\n0\n1\n");
    assert!(files.problems()[0].ends_with("line 1 column y: missing column: the spec's target"));
}

#[test]
fn missing_and_empty_files_are_reported() {
    let files = Files::new("", GOOD_Y);
    assert!(files.problems()[0].ends_with("the file is empty"));
    std::fs::remove_file(files.path("x.csv")).unwrap();
    assert!(files.problems()[0].contains("cannot read"));
}

#[test]
fn blank_lines_between_records_are_refused_and_trailing_ones_ignored() {
    let files = Files::new("colour,speed,count\n1,50,2\n\n2,40,3\n", "y\n1\n0\n");
    let problems = files.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].ends_with("line 3: blank line between records"),
        "{problems:?}"
    );
    let files = Files::new(
        "colour,speed,count\r\n1,50,2\r\n2,40,3\r\n\r\n\n",
        "y\n1\n0\n\n",
    );
    let data = files.load().unwrap();
    assert_eq!(data.x.rows(), 2);
    assert_eq!(data.y, vec![1.0, 0.0]);
}

#[test]
fn line_numbers_follow_quoted_fields_that_span_lines() {
    let files = Files::new(
        "colour,speed,count,note\n1,50,2,\"two\nlines\"\n9,50,2,x\n",
        "y\n1\n0\n",
    );
    let problems = files.problems();
    let x = files.path("x.csv").display().to_string();
    assert_eq!(
        problems,
        vec![format!("{x} line 4 column colour: unknown code \"9\"")]
    );
}

#[test]
fn records_unescape_quoted_fields_and_any_line_ending() {
    let text = b"a,b,c\r\n1,\"x, \"\"y\"\"\",\r\n\"2\",,3";
    let records = Records::read(text, b',', 9);
    assert_eq!((records.len(), records.width), (3, 3));
    let field = |r, c| records.field(r, c).to_string();
    assert_eq!(field(0, 2), "c");
    assert_eq!(field(1, 1), "x, \"y\"");
    assert_eq!(field(1, 2), "");
    assert_eq!(field(2, 0), "2");
    assert_eq!(field(2, 2), "3", "the last record needs no line ending");
}

/// The fields of every record, as text.
fn all_fields(records: &Records) -> Vec<Vec<String>> {
    (0..records.len())
        .map(|r| {
            (0..records.width)
                .map(|c| records.field(r, c).to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_quote_free_reader_gives_what_csv_core_and_check_structure_give() {
    let path = Path::new("x.csv");
    for (text, separator) in [
        ("a,b,c\n1,2,3\n4,,6\n", b','),
        ("a,b,c\r\n1,2,3\r\n4,,6", b','),
        ("a;b\n1;2\n\n\n", b';'),
        ("a,b\n1,2\r\n,\n", b','),
        ("x\n1\n2\n", b','),
        ("\n\na,b\n1,2\n", b','),
        ("a,b\n1,2\n\n\n3,4\n5\n6,7,8\n\r\n9,0\n", b','),
        ("\n\n", b','),
    ] {
        assert!(unquoted(text.as_bytes()), "{text:?}");
        let (mut fast_problems, mut slow_problems) = (Vec::new(), Vec::new());
        let (fast, fast_lines) =
            Records::read_unquoted(path, text.to_string(), separator, &mut fast_problems);
        let slow_lines = check_structure(path, text.as_bytes(), separator, &mut slow_problems);
        assert_eq!(fast_problems, slow_problems, "{text:?}");
        assert_eq!(fast_lines, slow_lines, "{text:?}");
        if slow_problems.is_empty() {
            let slow = Records::read(text.as_bytes(), separator, 0);
            assert_eq!(fast.width, slow.width, "{text:?}");
            assert_eq!(all_fields(&fast), all_fields(&slow), "{text:?}");
        }
    }
    // A quote or a lone carriage return sends the file to csv-core.
    assert!(!unquoted(b"a,b\n\"1\",2\n"));
    assert!(!unquoted(b"a,b\r1,2\n"));
    assert!(!unquoted(b"a,b\n1,2\r"));
}

/// A features file of `rows` records for [`spec`], spanning several blocks of records.
fn many_rows(rows: usize) -> String {
    let mut x = String::from("colour,speed,count\n");
    for r in 0..rows {
        x.push_str(&format!("{},{}.5,{}\n", 1 + r % 2, r % 130, 1 + r % 10));
    }
    x
}

#[test]
fn files_of_many_blocks_read_the_same_with_or_without_quotes() {
    let rows = 3 * BLOCK_RECORDS + 17;
    let plain = many_rows(rows);
    // Quoting one header field sends the same records through csv-core.
    let quoted = plain.replacen("colour", "\"colour\"", 1);
    let spec = spec();
    let schema = Schema::new(&spec);
    let read = |text: &str| {
        let files = Files::new(text, "y\n");
        load_feature_columns(&spec, &schema, &files.path("x.csv")).unwrap()
    };
    let (fast, fast_report) = read(&plain);
    let (slow, slow_report) = read(&quoted);
    assert_eq!(fast_report, slow_report);
    assert_eq!(fast_report.rows, rows);
    assert_eq!(fast.len(), 3);
    for (f, s) in fast.iter().zip(&slow) {
        assert_eq!(f.len(), rows);
        assert!(f.iter().zip(s).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert_eq!(
        fast[1][BLOCK_RECORDS + 3],
        ((BLOCK_RECORDS + 3) % 130) as f64 + 0.5
    );
    assert_eq!(fast[2][rows - 1], (1 + (rows - 1) % 10) as f64);
}

#[test]
fn problems_in_later_blocks_keep_their_lines_and_order() {
    let rows = 2 * BLOCK_RECORDS + 10;
    let mut lines: Vec<String> = many_rows(rows).lines().map(str::to_string).collect();
    // Line numbers are 1-based and the header is line 1: record r is line r + 2.
    lines[BLOCK_RECORDS + 101] = "1,10.5,12".into();
    lines[5] = "3,10.5,2".into();
    lines[2 * BLOCK_RECORDS + 1] = "1,fast,0".into();
    let files = Files::new(&(lines.join("\n") + "\n"), "y\n");
    let spec = spec();
    let problems = match load_features(&spec, &Schema::new(&spec), &files.path("x.csv")) {
        Err(Error::Data { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let found: Vec<(Option<usize>, Option<&str>)> = problems
        .iter()
        .map(|p| (p.line, p.column.as_deref()))
        .collect();
    assert_eq!(
        found,
        vec![
            (Some(6), Some("colour")),
            (Some(2 * BLOCK_RECORDS + 2), Some("speed")),
            (Some(BLOCK_RECORDS + 102), Some("count")),
            (Some(2 * BLOCK_RECORDS + 2), Some("count")),
        ]
    );
    // A ragged record in a later block is a structure problem, reported alone.
    let mut lines: Vec<String> = many_rows(rows).lines().map(str::to_string).collect();
    lines[2 * BLOCK_RECORDS + 5] = "1,2".into();
    lines[7] = "".into();
    let files = Files::new(&(lines.join("\n") + "\n"), "y\n");
    let problems: Vec<String> =
        match load_feature_columns(&spec, &Schema::new(&spec), &files.path("x.csv")) {
            Err(Error::Data { problems }) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        };
    let x = files.path("x.csv").display().to_string();
    assert_eq!(
        problems,
        vec![
            format!("{x} line 8: blank line between records"),
            format!(
                "{x} line {}: 2 fields where the header has 3",
                2 * BLOCK_RECORDS + 6
            ),
        ]
    );
}

#[test]
fn bytes_equal_to_the_separator_are_all_found() {
    let text = b"a,bb,,ccc,dddddddd,e,,,,,,,,,,,,f,";
    for width in 0..=text.len() {
        let part = &text[..width];
        let mut found = Vec::new();
        each_byte_equal(part, b',', |at| found.push(at));
        let expected: Vec<usize> = (0..part.len()).filter(|&i| part[i] == b',').collect();
        assert_eq!(found, expected, "{:?}", String::from_utf8_lossy(part));
    }
    // Bytes one bit away from the separator, and high bytes, are not it.
    let mut found = Vec::new();
    each_byte_equal(
        &[b'-', b'.', 0xac, 0x2c | 0x80, b',', 0, 0xff, b','],
        b',',
        |at| found.push(at),
    );
    assert_eq!(found, vec![4, 7]);
}

#[test]
fn a_regression_target_is_a_number_in_its_range_and_every_bad_one_is_named() {
    let spec = ModelSpec::from_toml(crate::testing::TOY_REGRESSION_SPEC).unwrap();
    let files = Files::new(
        "station,distance\nnorth,1\nsouth,2\neast,3\nnorth,4\nsouth,5\n",
        // A single column's empty value is written "" (an empty line is a blank line).
        "seconds\n300\n412.5\nfast\n-1\n\"\"\n",
    );
    let loaded = load(
        &spec,
        &Schema::new(&spec),
        &files.path("x.csv"),
        &files.path("y.csv"),
    );
    let problems: Vec<String> = match loaded {
        Err(Error::Data { problems }) => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected data problems, got {other:?}"),
    };
    let y = files.path("y.csv").display().to_string();
    assert_eq!(
        problems,
        [
            format!("{y} line 4 column seconds: target \"fast\" is not a number"),
            format!("{y} line 5 column seconds: target -1 is outside the valid range [0, 3600]"),
            format!("{y} line 6 column seconds: missing target value"),
        ]
    );
    let files = Files::new(
        "station,distance\nnorth,1\nsouth,2\n",
        "seconds\n300\n412.5\n",
    );
    let data = load(
        &spec,
        &Schema::new(&spec),
        &files.path("x.csv"),
        &files.path("y.csv"),
    )
    .unwrap();
    assert_eq!(data.y, [300.0, 412.5]);
    // Text codes are their position in the spec.
    assert_eq!(data.x.row(1), [1.0, 2.0]);
}

fn times(text: &str, column: &str) -> std::result::Result<Vec<i64>, Vec<String>> {
    let files = Files::new(text, "y\n");
    match load_times(&spec(), &files.path("x.csv"), column) {
        Ok(times) => Ok(times),
        Err(Error::Data { problems }) => Err(problems.iter().map(ToString::to_string).collect()),
        Err(other) => panic!("expected data problems, got {other:?}"),
    }
}

#[test]
fn event_times_are_read_in_every_written_form() {
    let text = "colour,at\n1,2021-06-01T08:30:00+02:00\n1,2021-06-01 06:30:00\n2,2021-06-01T06:31\n2,2021-06-02\n";
    let t = times(text, "at").unwrap();
    let base = 1_622_529_000_000; // 2021-06-01T06:30:00Z
    assert_eq!(t, vec![base, base, base + 60_000, base + 63_000_000]);
}

#[test]
fn event_times_out_of_order_or_unreadable_name_their_line() {
    let text = "colour,at\n1,2021-06-02\n1,2021-06-01\n2,noon\n2,2021-06-03\n";
    let problems = times(text, "at").unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("line 3 column at"), "{problems:?}");
    assert!(
        problems[0].contains("before the time of line 2"),
        "{problems:?}"
    );
    assert!(problems[1].contains("line 4 column at"), "{problems:?}");
    assert!(
        problems[1].contains("\"noon\" is not a time"),
        "{problems:?}"
    );
    let missing = times(text, "when").unwrap_err();
    assert!(
        missing[0].contains("line 1 column when: missing column"),
        "{missing:?}"
    );
}

/// A spec that matches names ignoring case, with an alias, an open vocabulary whose unseen
/// codes are missing, and a number that means "not known".
fn lenient_spec() -> ModelSpec {
    let text = crate::testing::TOY_SPEC
        .replace(
            "task = \"binary_classification\"",
            "task = \"binary_classification\"\ncolumn_names = \"case_insensitive\"",
        )
        .replace(
            "max = 130\n",
            "max = 130\nmissing_values = [0]\naliases = [\"velocity\"]\n",
        )
        + r#"
[[feature]]
name = "Street"
type = "categorical"
missing = "impute"
unseen = "missing"
codes = ["MAIN ST", "STATE ST"]
"#;
    ModelSpec::from_toml(&text).unwrap()
}

#[test]
fn names_match_as_the_spec_says_and_unseen_codes_follow_their_policy() {
    let spec = lenient_spec();
    let schema = Schema::new(&spec);
    let files = Files::new(
        "\"COLOUR\",\"id\",\"Velocity\",\"street\"\n1,a,50,\"MAIN ST\"\n2,b,0,\"ELM ST\"\n1,c,7,\n",
        "\"Y\"\n1\n0\n1\n",
    );
    let data = load(&spec, &schema, &files.path("x.csv"), &files.path("y.csv")).unwrap();
    assert_eq!(data.x.row(0), &[1.0, 50.0, 0.0]);
    assert!(data.x.row(1)[1].is_nan(), "0 means not known");
    assert!(data.x.row(1)[2].is_nan(), "an unseen street is missing");
    assert_eq!(data.report.ignored_columns, vec!["id".to_string()]);
    assert_eq!(data.report.missing, vec![0, 1, 1]);
    assert_eq!(data.report.unseen_codes, vec![0, 0, 1]);
    assert_eq!(data.report.unseen_cells, vec![(1, 2, "ELM ST".to_string())]);
    // Read for drift, the unseen street is in its "other" bin, counted the same.
    let (columns, report) = load_feature_columns(&spec, &schema, &files.path("x.csv")).unwrap();
    assert_eq!(columns[2][1], crate::schema::UNSEEN);
    assert_eq!(report.unseen_codes, vec![0, 0, 1]);
    // Exact matching (the default) does not see them.
    let exact = ModelSpec::from_toml(
        &crate::testing::TOY_SPEC.replace("max = 130\n", "max = 130\naliases = [\"velocity\"]\n"),
    )
    .unwrap();
    let problems = match load(
        &exact,
        &Schema::new(&exact),
        &files.path("x.csv"),
        &files.path("y.csv"),
    ) {
        Err(Error::Data { problems }) => problems,
        other => panic!("{other:?}"),
    };
    assert!(
        problems[0]
            .to_string()
            .ends_with("line 1 column colour: missing column: the spec declares this feature")
    );
    // The alias, exactly, is matched.
    let files = Files::new("colour,velocity\n1,3\n", "y\n1\n");
    let data = load(
        &exact,
        &Schema::new(&exact),
        &files.path("x.csv"),
        &files.path("y.csv"),
    )
    .unwrap();
    assert_eq!(data.x.row(0), &[1.0, 3.0]);
}

#[test]
fn a_request_reads_an_unseen_code_as_its_policy_says() {
    let spec = lenient_spec();
    let schema = Schema::new(&spec);
    let street = &schema.features()[2];
    assert_eq!(
        street.parse(Some("ELM ST"), Origin::Request),
        Ok(Cell::Unseen)
    );
    assert_eq!(
        street.parse(Some(" STATE ST "), Origin::Request),
        Ok(Cell::Value(1.0))
    );
    let colour = &schema.features()[0];
    assert_eq!(
        colour.parse(Some("7"), Origin::Request),
        Err(crate::schema::ValueError::UnknownCode("7".into()))
    );
    let speed = &schema.features()[1];
    assert_eq!(speed.parse_number(0.0, Origin::Request), Ok(Cell::Missing));
    assert_eq!(schema.column("SPEED"), Some(1));
    assert_eq!(schema.column("VELOCITY"), Some(1));
    assert_eq!(schema.column("velocity "), Some(1));
    assert_eq!(schema.column("street"), Some(2));
    assert_eq!(schema.column("id"), None);
}
