//! The README as a newcomer follows it, so that it stays true: its quick start run as
//! written (the serve command it shows, against a real origin: first request stored, second
//! a hit, the admin token printed once, the site named `default`), every command of its
//! command-line block run in order against that instance, the files under `examples/` it
//! shows checked with `palisade check` and shown as they are, its offline commands run from
//! the repository's root, and its layout table naming every crate and every document.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use palisade_blackbox::cli::{Run, palisade_as};
use palisade_blackbox::{Palisade, ScriptedOrigin, binary_path, client};

const README: &str = include_str!("../../README.md");

/// The repository's root, where the README's relative paths start.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The fenced code blocks of `lang`, with the heading of the section each sits in.
fn code_blocks(lang: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut open: Option<String> = None;
    for line in README.lines() {
        match &mut open {
            Some(block) if line.trim_start() == "```" => {
                blocks.push((section.clone(), std::mem::take(block)));
                open = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.starts_with("## ") => section = line[3..].trim().to_string(),
            None if line.trim_start() == format!("```{lang}") => open = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// The lines of the `sh` blocks of one section, comments and blank lines left out.
fn commands_in(section: &str) -> Vec<String> {
    let blocks: Vec<String> = code_blocks("sh")
        .into_iter()
        .filter(|(s, _)| s == section)
        .map(|(_, block)| block)
        .collect();
    assert!(!blocks.is_empty(), "no sh block under ## {section}");
    blocks
        .iter()
        .flat_map(|block| block.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A command line as a shell splits it: words, `'...'` and `"..."` quoting, a `#` comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '#') if word.is_none() => break,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in {line:?}");
    words.extend(word);
    words
}

/// `palisade ARGS` run from `dir` with no admin API or token around: for the offline commands.
fn offline(dir: &Path, args: &[String]) -> Output {
    Command::new(binary_path())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .env_remove("PALISADE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run palisade")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

#[test]
fn shell_words_split_as_a_shell_does() {
    assert_eq!(
        shell_words(r#"palisade suspend default --reason "phishing kit" # --report ID"#),
        ["palisade", "suspend", "default", "--reason", "phishing kit"]
    );
    assert_eq!(shell_words("a 'b c'd  e#f"), ["a", "b cd", "e#f"]);
}

#[tokio::test]
async fn the_readme_quick_start_serves_caches_prints_the_token_once_and_its_commands_run() {
    // What the README promises the first start prints, up to the secret.
    let token_line = "admin token (shown once; only its hash is kept): ";
    assert!(
        README.contains(&format!("`{token_line}pal_…`")),
        "the README no longer quotes the token line"
    );
    let serve = commands_in("The two commands")
        .into_iter()
        .find(|line| line.contains("serve --origin"))
        .expect("the README's serve command");
    let words = shell_words(&serve);
    let dashes = words
        .iter()
        .position(|w| w == "--")
        .expect("cargo run ... --");
    assert_eq!(
        words[..dashes],
        ["cargo", "run", "--release", "-p", "palisade"]
    );
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let mut args: Vec<String> = words[dashes + 1..]
        .iter()
        .map(|w| w.replace("http://127.0.0.1:3000", &origin.url()))
        .collect();
    assert!(args.contains(&origin.url()), "{serve}");
    // The README's own override flags, on ports of the test's own.
    args.extend(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"].map(String::from));
    let mut proxy = Palisade::serve_args_in_temp_dir(&args);

    // Any host name reaches the one origin; the first answer is stored, the second a hit.
    let first = client::get(proxy.http_addr(), "www.example.com", "/posts/1").await;
    let second = client::get(proxy.http_addr(), "www.example.com", "/posts/1").await;
    assert_eq!(
        (first.status.as_u16(), first.text()),
        (200, "v0".to_string())
    );
    let stored = first.header("cache-status").unwrap_or_default();
    assert!(stored.contains("stored"), "first: {stored}");
    let hit = second.header("cache-status").unwrap_or_default();
    assert!(hit.starts_with("palisade; hit"), "second: {hit}");
    assert_eq!(second.text(), "v0");
    assert_eq!(origin.requests(), 1);

    // The token, printed once on stdout; the site's name in the log; the store where said.
    let printed: Vec<String> = proxy
        .access_log_lines()
        .iter()
        .filter_map(|line| line.strip_prefix(token_line).map(str::to_string))
        .collect();
    assert_eq!(printed.len(), 1, "{:?}", proxy.access_log_lines());
    let token = printed[0].clone();
    assert!(token.starts_with("pal_"), "{token}");
    assert!(
        proxy.stderr_text().contains("named `default`"),
        "the log does not name the site:\n{}",
        proxy.stderr_text()
    );
    assert!(README.contains("named `default`"));
    assert!(proxy.dir().join("palisade-data/palisade.db").is_file());

    // Every command of the README's command-line block, in order, as a newcomer types them
    // (from a directory holding the repository's examples, where the instance keeps its data).
    copy_dir(&root().join("examples"), &proxy.dir().join("examples"));
    let mut ran = Vec::new();
    for line in commands_in("The command line") {
        let words = shell_words(&line);
        if words[0] == "export" {
            assert!(line.contains("PALISADE_TOKEN="), "{line}");
            continue;
        }
        assert_eq!(words[0], "palisade", "{line}");
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let run: Run = palisade_as(&proxy, Some(&token), &args);
        let out = run.ok();
        ran.push((line, out));
    }
    let said = |start: &str| {
        ran.iter()
            .find(|(line, _)| line.starts_with(start))
            .map(|(_, out)| out.clone())
            .unwrap_or_else(|| panic!("the README no longer runs `{start}`"))
    };
    let listed = said("palisade site list");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("default ") && l.contains("file")),
        "{listed}"
    );
    let traffic = said("palisade analytics default");
    assert!(
        traffic.contains("\nrequests   2\n") && !traffic.contains(": 0 minutes"),
        "right after two requests:\n{traffic}"
    );
    let audit = said("palisade audit list");
    for what in [
        "prefix http://127.0.0.1:8080/posts/",
        "active -> under_attack",
        "under_attack -> active",
    ] {
        assert!(audit.contains(what), "no {what:?} in:\n{audit}");
    }

    // A later start prints no token; the one printed still works.
    proxy.kill_and_restart();
    assert!(
        !proxy
            .access_log_lines()
            .iter()
            .any(|l| l.starts_with(token_line)),
        "{:?}",
        proxy.access_log_lines()
    );
    palisade_as(&proxy, Some(&token), &["site", "list"]).ok();
}

#[test]
fn every_example_file_passes_check_and_the_readme_shows_them_as_they_are() {
    let examples = root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("examples/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let relative = file.strip_prefix(root()).expect("under the root");
        let output = offline(
            &root(),
            &[
                "check".into(),
                "--config".into(),
                relative.display().to_string(),
            ],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(": ok ("),
            "palisade check --config {}: {stdout}{}",
            relative.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            README.contains(&relative.display().to_string()),
            "the README does not mention {}",
            relative.display()
        );
    }
    let shown = code_blocks("toml");
    assert!(!shown.is_empty(), "the README shows no TOML");
    for (section, block) in shown {
        let same = files
            .iter()
            .any(|f| std::fs::read_to_string(f).expect("read an example") == block);
        assert!(
            same,
            "a TOML block under ## {section} is not an examples/ file as it is:\n{block}"
        );
    }
}

#[test]
fn the_readmes_offline_commands_run_as_written_from_the_root() {
    let mut ran = 0;
    for line in commands_in("Many sites") {
        let words = shell_words(&line);
        assert_eq!(words[0], "palisade", "{line}");
        // `serve` runs on (its listeners are the quick start's), `keys rotate` writes.
        if !matches!(words[1].as_str(), "check" | "explain") {
            continue;
        }
        let output = offline(&root(), &words[1..]);
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if words[1] == "explain" {
            let out = String::from_utf8_lossy(&output.stdout);
            assert!(out.contains("verdict: block: 403 (rule)"), "{line}:\n{out}");
        }
        ran += 1;
    }
    assert_eq!(ran, 2, "the README's check and explain lines");
}

#[test]
fn the_layout_names_every_crate_and_the_readme_links_every_document() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let workspace: toml::Table = manifest.parse().expect("Cargo.toml is TOML");
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    for member in members {
        let member = member.as_str().expect("a path");
        let shown = if member == "tests" {
            "`tests/`".to_string()
        } else {
            format!("`{member}`")
        };
        assert!(
            README
                .lines()
                .any(|l| l.starts_with(&format!("| {shown} |"))),
            "the layout table has no row for {member}"
        );
    }
    for doc in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let name = doc.expect("an entry").file_name();
        let link = format!("(docs/{})", name.to_string_lossy());
        assert!(README.contains(&link), "the README does not link {link}");
    }
    for stale in ["(later)", "comes next", "../shared/"] {
        assert!(!README.contains(stale), "the README still says {stale:?}");
    }
}
