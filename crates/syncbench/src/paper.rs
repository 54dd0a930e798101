//! Renders the paper: `paper/paper.src.md` with every `{{scenario.path}}`
//! (or `{{scenario.path:DIGITS}}`) replaced by the value in
//! `RESULTS/scenario.json`, written to `paper/paper.md`; and the figures that
//! compare results files (synfony against Snapcast).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::plot::{Plot, Series, cdf, draw};

pub fn render(results: &Path, paper: &Path, figures: &Path) -> anyhow::Result<()> {
    let mut all = BTreeMap::new();
    for entry in
        std::fs::read_dir(results).with_context(|| format!("reading {}", results.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let v: Value =
                serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
            let stem = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            all.insert(stem, v);
        }
    }
    let all = Value::Object(all.into_iter().collect());
    let src = paper.join("paper.src.md");
    let template =
        std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
    let text = fill(&template, &all)?;
    let out = paper.join("paper.md");
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("   paper: {}", out.display());
    compare_figure(&all, figures)
}

/// Replaces every `{{path[:digits]}}` in `template` with its value in `all`;
/// a path that is not there is an error naming it (no silent blanks).
pub fn fill(template: &str, all: &Value) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut missing = Vec::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            bail!("an unclosed {{{{ in the template");
        };
        let key = rest[start + 2..start + len].trim();
        let (path, digits) = match key.split_once(':') {
            Some((p, d)) => (
                p,
                Some(
                    d.parse::<usize>()
                        .with_context(|| format!("{key}: digits"))?,
                ),
            ),
            None => (key, None),
        };
        let scenario = path.split('.').next().unwrap_or_default();
        match lookup(all, path) {
            Some(v) => out.push_str(&format_value(v, digits)),
            // A scenario that was skipped (Snapcast not installed) says so.
            None if all[scenario].get("skipped").is_some() => out.push_str("n/a"),
            None => {
                missing.push(path.to_string());
                out.push_str("(missing)");
            }
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        bail!(
            "results missing for: {} (run those scenarios first)",
            missing.join(", ")
        );
    }
    Ok(out)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i),
            _ => v.get(k),
        })
}

fn format_value(v: &Value, digits: Option<usize>) -> String {
    match (v, digits) {
        (Value::Number(n), Some(d)) => format!("{:.*}", d, n.as_f64().unwrap_or(f64::NAN)),
        (Value::String(s), _) => s.clone(),
        (Value::Null, _) => "—".into(),
        (v, _) => v.to_string(),
    }
}

/// The CDF of |skew| for synfony and Snapcast, from their results' quantiles.
fn compare_figure(all: &Value, figures: &Path) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (key, system) in [
        ("steady", "synfony"),
        ("steady-true-clocks", "synfony, true clocks"),
        ("snapcast", "Snapcast"),
        ("steady-lan", "synfony"),
        ("snapcast-lan", "Snapcast"),
        ("wifi", "synfony"),
        ("snapcast-wifi", "Snapcast"),
    ] {
        let r = &all[key];
        if let Some(q) = r["impulse_cdf_ms"].as_array() {
            let q: Vec<f64> = q.iter().filter_map(Value::as_f64).collect();
            let (base, jitter) = (
                r["delay"]["base_ms"].as_f64(),
                r["delay"]["jitter_ms"].as_f64(),
            );
            let links = match (base, jitter) {
                _ if r["delay"]["heavy_tail"].as_bool() == Some(true) => "Wi-Fi-like links".into(),
                (Some(b), Some(j)) if b + j > 0.0 => format!("{b}–{} ms links", b + j),
                _ => "no delay".to_string(),
            };
            if !q.is_empty() {
                series.push(Series::new(format!("{system}, {links}"), cdf(&q)));
            }
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    draw(
        &figures.join("skew-cdf.svg"),
        &Plot::lines(
            "|skew| between players, measured on their output (impulse train)",
            "|skew| (ms)",
            "fraction of samples",
        ),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_or_named() {
        let all = serde_json::json!({"steady": {"skew": {"p99": 0.12345, "n": 7}, "v": "0.26"}});
        let t = "p99 {{steady.skew.p99:2}} ms over {{ steady.skew.n }} samples, v{{steady.v}}";
        assert_eq!(fill(t, &all).unwrap(), "p99 0.12 ms over 7 samples, v0.26");
        let e = fill("{{steady.nope}} and {{other.x}}", &all)
            .unwrap_err()
            .to_string();
        assert!(e.contains("steady.nope") && e.contains("other.x"), "{e}");
    }
}
