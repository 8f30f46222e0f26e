//! Test configs: one `[[site]]` behind a cleartext listener, plus whatever a test adds.

/// One site named `name` on `listen = ["127.0.0.1:0"]`, built up call by call and written out
/// by [`SiteConfig::to_toml`].
///
/// Most tests need the same small config and differ only in a line or two; [`SiteConfig`]
/// writes the common part so that a test spells out just what it is about:
///
/// ```
/// use palisade_blackbox::SiteConfig;
///
/// let toml = SiteConfig::blog("http://127.0.0.1:3000")
///     .server(r#"idle_timeout = "1s""#)
///     .site("max_body_bytes = 1024")
///     .to_toml();
/// assert_eq!(
///     toml,
///     r#"[server]
/// listen = ["127.0.0.1:0"]
/// idle_timeout = "1s"
///
/// [[site]]
/// name = "blog"
/// hosts = ["blog.example"]
/// origins = ["http://127.0.0.1:3000"]
/// max_body_bytes = 1024
/// "#
/// );
/// ```
///
/// [`Palisade`](crate::Palisade) adds `data_dir` and `admin` itself, so a config only sets them
/// when a test cares about their values.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    name: String,
    hosts: Vec<String>,
    origins: Vec<String>,
    server_lines: Vec<String>,
    site_lines: Vec<String>,
}

impl SiteConfig {
    /// Site `name` answering for `<name>.example`, with no origins yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            hosts: vec![format!("{name}.example")],
            origins: Vec::new(),
            server_lines: Vec::new(),
            site_lines: Vec::new(),
        }
    }

    /// The usual fixture: site `blog` for `blog.example`, proxying to `origin_url`.
    ///
    /// The URL is written as given, so a test may pass one the proxy must reject.
    pub fn blog(origin_url: impl Into<String>) -> Self {
        Self::new("blog").origin(origin_url)
    }

    /// Replaces the site's `hosts`.
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|&h| h.to_owned()).collect();
        self
    }

    /// Appends one URL to the site's `origins`.
    pub fn origin(mut self, url: impl Into<String>) -> Self {
        self.origins.push(url.into());
        self
    }

    /// Appends each URL to the site's `origins`, in order.
    pub fn origins<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.origins.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Adds TOML under `[server]`, after `listen`: a `key = value` line or several.
    pub fn server(mut self, toml: &str) -> Self {
        self.server_lines.push(toml.to_owned());
        self
    }

    /// Adds TOML under `[[site]]`, after `origins`: `key = value` lines, or sub-tables such as
    /// `[site.health]` (which must then come last).
    pub fn site(mut self, toml: &str) -> Self {
        self.site_lines.push(toml.to_owned());
        self
    }

    /// Adds a `[site.cache]` table with `toml`'s lines (sub-tables come last: see [`Self::site`]).
    pub fn cache(self, toml: &str) -> Self {
        self.site(&format!("[site.cache]\n{toml}"))
    }

    /// The config file's text.
    pub fn to_toml(&self) -> String {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|item| format!("\"{item}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
        for lines in &self.server_lines {
            out.push_str(lines.trim_matches('\n'));
            out.push('\n');
        }
        out.push_str(&format!(
            "\n[[site]]\nname = \"{}\"\nhosts = [{}]\norigins = [{}]\n",
            self.name,
            quoted(&self.hosts),
            quoted(&self.origins)
        ));
        for lines in &self.site_lines {
            out.push_str(lines.trim_matches('\n'));
            out.push('\n');
        }
        out
    }
}
