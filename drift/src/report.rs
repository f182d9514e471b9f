//! The HTML page of a comparison: a summary table and, per feature, the reference and current
//! shares of every bin as an inline SVG chart. One self-contained document (inline CSS, no
//! script, no font or file from elsewhere), so it opens offline and can be served as is.

use std::fmt::Write;

use crate::compare::DriftReport;
use crate::profile::Profile;
use crate::window::Histograms;

/// Escapes text for HTML content and attribute values.
/// `text` made safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shares of each bin, all 0 for an empty histogram.
fn shares(counts: &[u64]) -> Vec<f64> {
    crate::stats::shares(counts).unwrap_or_else(|| vec![0.0; counts.len()])
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "&ndash;".to_string(),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.2e}"),
        Some(v) => format!("{v:.4}"),
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;\
color:#1d2330;background:#fff;max-width:1100px}h1{font-size:1.5rem;margin-bottom:.2rem}\
.sub{color:#566;margin-top:0}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}\
.card{border:1px solid #d5dae3;border-radius:6px;padding:.6rem 1rem;min-width:9rem}\
.card b{display:block;font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:.85rem}\
th,td{border-bottom:1px solid #e3e7ee;padding:.3rem .5rem;text-align:right}\
th:first-child,td:first-child,td.l,th.l{text-align:left}tr.drift td{background:#fff1f0}\
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.75rem;color:#fff}\
.yes{background:#c62828}.no{background:#2e7d32}.na{background:#78818f}\
section{margin-top:1.6rem}section h3{margin-bottom:.2rem}.legend span{display:inline-block;\
width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}svg text{font-size:10px;\
fill:#444}";

const REFERENCE_COLOUR: &str = "#6b8fd6";
const CURRENT_COLOUR: &str = "#e08a3c";

/// The page of `report`, which compared `current` with `profile`.
pub fn html(title: &str, profile: &Profile, current: &Histograms, report: &DriftReport) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let verdict = if !report.scored {
        format!(
            "<span class=\"badge na\">not scored: {} events, {} needed</span>",
            report.current_rows, report.min_rows
        )
    } else if report.dataset_drifted {
        "<span class=\"badge yes\">data set drifted</span>".to_string()
    } else {
        "<span class=\"badge no\">no data set drift</span>".to_string()
    };
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1><p class=\"sub\">{verdict}</p><div class=\"cards\">\
         <div class=\"card\">drift score<b>{score:.3}</b>share of features drifted</div>\
         <div class=\"card\">drifted features<b>{drifted} / {features}</b>data set drifts at {share:.0}%</div>\
         <div class=\"card\">reference rows<b>{reference}</b>{reference_kind}</div>\
         <div class=\"card\">current rows<b>{current_rows}</b>minimum {min_rows}</div></div>",
        title = escape(title),
        score = report.score,
        drifted = report.drifted_features,
        features = report.features.len(),
        share = report.dataset_share * 100.0,
        reference = report.reference_rows,
        reference_kind = if profile.synthetic_rows > 0 {
            format!(
                "{} real + {} synthetic",
                profile.real_rows, profile.synthetic_rows
            )
        } else {
            "as given".to_string()
        },
        current_rows = report.current_rows,
        min_rows = report.min_rows,
    );
    page.push_str(
        "<table><thead><tr><th class=\"l\">feature</th><th class=\"l\">kind</th>\
         <th class=\"l\">effect floor</th><th>score</th><th>noise threshold</th><th>drifted</th><th>TVD</th>\
         <th>correlation</th><th>PSI</th><th>JS distance</th><th>Wasserstein (normed)</th>\
         <th>chi-square p</th><th>KS p</th></tr></thead><tbody>",
    );
    for f in &report.features {
        let badge = match (report.scored, f.drifted, f.beyond_floor, f.beyond_noise) {
            (false, ..) => "<span class=\"badge na\">n/a</span>",
            (true, true, ..) if f.held => "<span class=\"badge yes\">yes: held (hysteresis)</span>",
            (true, true, ..) => "<span class=\"badge yes\">yes</span>",
            (true, false, true, false) => "<span class=\"badge no\">no: within noise</span>",
            (true, false, false, true) => "<span class=\"badge no\">no: below the floor</span>",
            (true, false, ..) => "<span class=\"badge no\">no</span>",
        };
        let s = &f.statistics;
        let _ = write!(
            page,
            "<tr{class}><td><a href=\"#f-{anchor}\">{name}</a></td><td class=\"l\">{kind}</td>\
             <td class=\"l\">{rule}</td><td>{score}</td><td>{noise}</td><td>{badge}</td><td>{tvd}</td><td>{corr}</td>\
             <td>{psi}</td><td>{js}</td><td>{w}</td><td>{chi}</td><td>{ks}</td></tr>",
            class = if f.drifted { " class=\"drift\"" } else { "" },
            anchor = escape(&f.name),
            name = escape(&f.name),
            kind = f.kind,
            rule = escape(&f.rule.to_string()),
            score = number(Some(f.score)),
            noise = number(f.noise_threshold),
            tvd = number(Some(s.tvd)),
            corr = number(Some(s.correlation)),
            psi = number(Some(s.psi)),
            js = number(Some(s.js_distance)),
            w = number(s.wasserstein),
            chi = number(Some(s.chi_square_p)),
            ks = number(s.ks_p),
        );
    }
    page.push_str("</tbody></table>");
    if let Some(level) = report.feature_level {
        let _ = write!(
            page,
            "<p class=\"sub\">A feature drifts when its score is beyond its noise threshold (what \
             a window of {rows} events drawn from the reference passes with probability \
             {level:.2e}, so that about {target} data-set alert comes by chance in 30 days of \
             {windows:.0} fresh windows) and beyond the effect floor.</p>",
            rows = report.current_rows,
            target = report.false_alarms_per_30_days,
            windows = report.windows_per_30_days,
        );
    }
    let _ = write!(
        page,
        "<p class=\"legend\">Share of events per bin:<span style=\"background:{REFERENCE_COLOUR}\">\
         </span>reference<span style=\"background:{CURRENT_COLOUR}\"></span>current</p>"
    );
    // Drifted features first, then the model's order.
    let mut order: Vec<usize> = (0..report.features.len()).collect();
    order.sort_by_key(|&i| !report.features[i].drifted);
    for i in order {
        let (feature, verdict) = (&profile.features[i], &report.features[i]);
        let _ = write!(
            page,
            "<section id=\"f-{anchor}\"><h3>{name} {badge}</h3><div>{kind}, {rule}: {score}</div>",
            anchor = escape(feature.name()),
            name = escape(feature.name()),
            badge = if verdict.drifted {
                "<span class=\"badge yes\">drifted</span>"
            } else {
                ""
            },
            kind = verdict.kind,
            rule = escape(&verdict.rule.to_string()),
            score = number(Some(verdict.score)),
        );
        chart(
            &mut page,
            &feature.labels(),
            &shares(feature.counts()),
            &shares(current.feature(i)),
        );
        page.push_str("</section>");
    }
    page.push_str("</body></html>\n");
    page
}

/// Feature `index` of `profile`: its reference and current shares per bin as a grouped bar
/// chart (inline SVG) with its legend; empty for an index past the profile's features.
pub fn feature_chart(profile: &Profile, current: &Histograms, index: usize) -> String {
    let Some(feature) = profile.features.get(index) else {
        return String::new();
    };
    let mut page = format!(
        "<p class=\"legend\">Share of events per bin: <span style=\"color:{REFERENCE_COLOUR}\">\
         &#9632;</span> reference <span style=\"color:{CURRENT_COLOUR}\">&#9632;</span> current</p>"
    );
    chart(
        &mut page,
        &feature.labels(),
        &shares(feature.counts()),
        &shares(current.feature(index)),
    );
    page
}

/// A grouped bar chart of two share vectors over the same labelled bins.
fn chart(page: &mut String, labels: &[String], reference: &[f64], current: &[f64]) {
    let (width, height, left, bottom, top) = (1000.0, 230.0, 40.0, 60.0, 10.0);
    let plot_h = height - bottom - top;
    let n = labels.len().max(1) as f64;
    let group = (width - left - 10.0) / n;
    let bar = (group * 0.4).max(1.0);
    let max = reference
        .iter()
        .chain(current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let _ = write!(
        page,
        "<svg viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#999\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max:.2}</text>\
         <text x=\"{lx}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        base = top + plot_h,
        right = width - 10.0,
        lx = left - 4.0,
        ty = top + 8.0,
    );
    let every = (labels.len() / 40).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x = left + group * i as f64 + group * 0.1;
        for (j, (share, colour, what)) in [
            (reference[i], REFERENCE_COLOUR, "reference"),
            (current[i], CURRENT_COLOUR, "current"),
        ]
        .into_iter()
        .enumerate()
        {
            let h = plot_h * share / max;
            let _ = write!(
                page,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{colour}\">\
                 <title>{label}: {what} {pct:.2}%</title></rect>",
                x = x + bar * j as f64,
                y = top + plot_h - h,
                label = escape(label),
                pct = share * 100.0,
            );
        }
        if i % every == 0 {
            let cx = x + bar;
            let _ = write!(
                page,
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" \
                 transform=\"rotate(-45 {cx:.1} {ty:.1})\">{label}</text>",
                ty = top + plot_h + 12.0,
                label = escape(label),
            );
        }
    }
    page.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Binner, DriftRules, Kind, ProfileParams, compare};
    use vigie_model::Matrix;

    #[test]
    fn the_page_names_every_feature_escapes_text_and_loads_nothing() {
        let x = Matrix::from_row_major(
            (0..600)
                .flat_map(|i| [(i % 3) as f64, i as f64 / 7.0])
                .collect(),
            600,
            2,
        )
        .unwrap();
        let empty = Matrix::from_row_major(vec![], 0, 2).unwrap();
        let kinds = [Kind::Categorical { codes: None }, Kind::Numerical];
        let profile = Profile::build(
            &["<zone>", "speed"],
            &kinds,
            &x,
            &empty,
            &ProfileParams::default(),
        );
        let binner = Binner::new(&profile);
        let mut current = Histograms::new(&binner);
        for row in x.iter_rows() {
            current.add_row(&binner, &[row[0], row[1] * 2.0]);
        }
        let report = compare(&profile, &current, &DriftRules::default());
        let page = html("Drift of \"baac\" & co", &profile, &current, &report);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("&lt;zone&gt;") && !page.contains("<zone>"));
        assert!(page.contains("Drift of &quot;baac&quot; &amp; co"));
        assert!(page.contains("id=\"f-speed\""));
        assert_eq!(page.matches("<svg").count(), 2);
        for outside in ["<script", "http://", "https://", "<link", "@import", "src="] {
            let allowed = page.matches("http://www.w3.org/2000/svg").count();
            let found = page.matches(outside).count();
            if outside == "http://" {
                assert_eq!(found, allowed, "only the SVG namespace");
            } else if outside == "<link" {
                // An empty inline icon: browsers then ask the server for no favicon.
                assert_eq!(
                    page.matches("<link rel=\"icon\" href=\"data:,\">").count(),
                    1
                );
                assert_eq!(found, 1, "no other link");
            } else {
                assert_eq!(found, 0, "{outside}");
            }
        }
        assert!(report.features[1].drifted, "doubled speeds drift");
        assert!(page.contains("badge yes"));
    }
}
