//! The shipped Asterisk configuration says what the README says: every file, context and
//! setting `dialplans/README.md` names is in the files, and every `MADOGUCHI_*` variable it
//! tells an administrator to set is one madoguchi reads.

use madoguchi::settings::Settings;
use std::collections::BTreeSet;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The text inside backticks, and the lines of fenced blocks.
fn quoted(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push(line.trim().to_string());
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let Some(inside) = parts.next() {
            out.push(inside.trim().to_string());
            parts.next();
        }
    }
    out
}

/// A config line without its comment, spaces folded: `key = value`.
fn setting(line: &str) -> Option<String> {
    let line = line.trim_start_matches([';', ' ', '\t']);
    let line = line.split(';').next()?.trim();
    let (k, v) = line.split_once('=')?;
    Some(format!("{} = {}", k.trim(), v.trim()))
}

#[test]
fn the_readme_names_only_what_the_files_hold() {
    let readme = read("README.md");
    let files: Vec<String> = std::fs::read_dir(DIR)
        .expect("dialplans/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    let all: String = files.iter().map(|f| read(f)).collect::<Vec<_>>().join("\n");
    let settings: BTreeSet<String> = all.lines().filter_map(setting).collect();
    let sections: BTreeSet<String> = all
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('[') && l.contains(']'))
        .map(|l| l[..=l.find(']').unwrap_or(0)].to_string())
        .collect();
    // The variables madoguchi reads, learned from the settings loader itself.
    let read_vars = std::cell::RefCell::new(BTreeSet::new());
    Settings::default()
        .apply_env(|k| {
            read_vars.borrow_mut().insert(k.to_string());
            None
        })
        .unwrap();
    let read_vars = read_vars.into_inner();

    let mut checked = 0;
    for q in quoted(&readme) {
        if q.ends_with(".conf") && !q.contains(' ') && !q.contains('/') {
            assert!(
                files.contains(&q),
                "the README names {q}, which is not shipped"
            );
            checked += 1;
        } else if q.starts_with('[') && q.ends_with(']') && !q.contains(' ') {
            assert!(
                sections.contains(&q),
                "the README names the section {q}, which no file has"
            );
            checked += 1;
        } else if let Some(var) = q.strip_prefix("MADOGUCHI_") {
            let name = format!("MADOGUCHI_{}", var.split('=').next().unwrap_or("").trim());
            assert!(
                read_vars.contains(&name),
                "the README tells to set {name}, which madoguchi does not read"
            );
            checked += 1;
        } else if q.contains(" = ") && !q.contains('"') && !q.starts_with('#') {
            let s = setting(&q).unwrap_or_default();
            assert!(
                settings.contains(&s),
                "the README names `{s}`, which no shipped file sets"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 15,
        "the README was read ({checked} names checked)"
    );
    // The ARI user is read-only and the AMI user cannot originate: madoguchi only watches.
    assert!(read("ari.conf")
        .lines()
        .filter_map(setting)
        .any(|s| s == "read_only = yes"));
}
