//! [`Client`] and its builder: base URL, headers, timeouts, proxy, body limits, retries.
//!
//! Two HTTP clients live inside: one for the API origin carrying the API headers (serial, code,
//! token, extras) and following only same-origin redirects, and a bare one for the CDN that
//! carries none of them and follows only http/https redirects. Both honour `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (reqwest's system proxy handling, on by default).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect;
use url::Url;

use crate::error::display_url;
use crate::retry::{self, RetryEvent, RetryObserver, RetryPolicy};
use crate::{DEFAULT_BASE_URL, DEFAULT_PRODUCT_CODE, Error, ImageFormat, Result, Token};

/// `Origin` the web app sends.
pub const DEFAULT_ORIGIN: &str = "https://magiceraser.org";
/// `Referer` the web app sends.
pub const DEFAULT_REFERER: &str = "https://magiceraser.org/";
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total time for one request, answer body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on a JSON answer from the API (4 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 << 20;
/// Default bound on a result file from the CDN (64 MiB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 << 20;
/// Default bound on an input file to upload (50 MiB).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 << 20;
/// Most redirects followed by either client.
const MAX_REDIRECTS: usize = 5;

/// Builder for [`Client`]; every setting has a default except the product serial.
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    product_serial: String,
    product_code: String,
    token: Option<Token>,
    user_agent: String,
    origin: String,
    referer: String,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: u64,
    max_download_bytes: u64,
    max_upload_bytes: u64,
    throttled_uploads_to_caller: bool,
    on_retry: Option<RetryObserver>,
}

impl ClientBuilder {
    /// The API origin, `http` or `https` (default [`DEFAULT_BASE_URL`]); a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// `Product-Serial` header: the caller's installation id. Required.
    pub fn product_serial(mut self, serial: impl Into<String>) -> Self {
        self.product_serial = serial.into();
        self
    }
    /// `Product-Code` header (default [`DEFAULT_PRODUCT_CODE`]).
    pub fn product_code(mut self, code: impl Into<String>) -> Self {
        self.product_code = code.into();
        self
    }
    /// Sent verbatim as `Authorization` on API calls when set and not empty; omitted otherwise.
    pub fn token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }
    /// `User-Agent` header (default `eraser/<version>`); also sent to the CDN.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }
    /// `Origin` header (default [`DEFAULT_ORIGIN`]).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }
    /// `Referer` header (default [`DEFAULT_REFERER`]).
    pub fn referer(mut self, referer: impl Into<String>) -> Self {
        self.referer = referer.into();
        self
    }
    /// An extra header sent on every API call (never to the CDN). It replaces a default header
    /// of the same name; repeating a name sends several values.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Total time allowed for one request, reading the answer included (default 60 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Bounds on the client's own retries (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Largest JSON body accepted from the API.
    pub fn max_response_bytes(mut self, n: u64) -> Self {
        self.max_response_bytes = n;
        self
    }
    /// Largest result file accepted from the CDN.
    pub fn max_download_bytes(mut self, n: u64) -> Self {
        self.max_download_bytes = n;
        self
    }
    /// Largest input file uploaded.
    pub fn max_upload_bytes(mut self, n: u64) -> Self {
        self.max_upload_bytes = n;
        self
    }
    /// A create-job answered 429 ("too many jobs") is returned at once instead of retried, so
    /// a caller that schedules its own uploads frees the slot and decides when to send again
    /// (default off: the client waits `Retry-After` and retries like any other failure).
    pub fn throttled_uploads_to_caller(mut self, yes: bool) -> Self {
        self.throttled_uploads_to_caller = yes;
        self
    }
    /// Called before each retry with what failed and how long the client will wait.
    pub fn on_retry(mut self, observer: Arc<dyn Fn(&RetryEvent) + Send + Sync>) -> Self {
        self.on_retry = Some(observer);
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// Fails with [`Error::Config`] for a base URL that is not `http`/`https` (or carries user
    /// info), an empty product serial, or a header name or value HTTP cannot carry.
    pub fn build(self) -> Result<Client> {
        let base_url = parse_base_url(&self.base_url)?;
        if self.product_serial.trim().is_empty() {
            return Err(config(
                "the product serial is required and must not be empty",
            ));
        }
        let api_headers = self.api_headers()?;
        let user_agent = header_value("User-Agent", &self.user_agent)?;

        let api_origin = base_url.clone();
        let api = reqwest::Client::builder()
            .default_headers(api_headers)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(redirect::Policy::custom(move |attempt| {
                same_origin_only(attempt, &api_origin)
            }))
            .build()
            .map_err(|e| config(&format!("cannot set up the HTTP client: {e}")))?;

        let mut cdn_headers = HeaderMap::new();
        cdn_headers.insert(header::USER_AGENT, user_agent);
        let cdn = reqwest::Client::builder()
            .default_headers(cdn_headers)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .referer(false)
            .redirect(redirect::Policy::custom(http_redirects_only))
            .build()
            .map_err(|e| config(&format!("cannot set up the HTTP client: {e}")))?;

        let token = self.token.filter(|t| !t.expose().is_empty());
        Ok(Client {
            inner: Arc::new(Inner {
                api,
                cdn,
                settings: Settings {
                    base_url,
                    product_code: self.product_code,
                    token,
                    connect_timeout: self.connect_timeout,
                    request_timeout: self.request_timeout,
                    retry: self.retry,
                    max_response_bytes: self.max_response_bytes,
                    max_download_bytes: self.max_download_bytes,
                    max_upload_bytes: self.max_upload_bytes,
                    throttled_uploads_to_caller: self.throttled_uploads_to_caller,
                },
                on_retry: self.on_retry,
            }),
        })
    }

    /// The headers of every API call, defaults first, then the extras replacing them.
    fn api_headers(&self) -> Result<HeaderMap> {
        let mut map = HeaderMap::new();
        let defaults = [
            ("Product-Serial", self.product_serial.as_str()),
            ("Product-Code", self.product_code.as_str()),
            ("Origin", self.origin.as_str()),
            ("Referer", self.referer.as_str()),
            ("Accept", "*/*"),
            ("User-Agent", self.user_agent.as_str()),
        ];
        for (name, value) in defaults {
            map.insert(header_name(name)?, header_value(name, value)?);
        }
        if let Some(token) = self.token.as_ref().filter(|t| !t.expose().is_empty()) {
            let mut value = HeaderValue::from_str(token.expose())
                .map_err(|_| config("the token holds characters an HTTP header cannot carry"))?;
            value.set_sensitive(true);
            map.insert(header::AUTHORIZATION, value);
        }
        let mut replaced = Vec::new();
        for (name, value) in &self.headers {
            let name = header_name(name)?;
            let mut value = header_value(name.as_str(), value)?;
            if !replaced.contains(&name) {
                map.remove(&name);
                replaced.push(name.clone());
            }
            if name == header::AUTHORIZATION || name == header::COOKIE {
                value.set_sensitive(true);
            }
            map.append(name, value);
        }
        Ok(map)
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("product_code", &self.product_code)
            .field("token", &self.token)
            .field("extra_headers", &extra)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One image to upload.
#[derive(Debug, Clone)]
pub struct CreateJob<'a> {
    pub path: &'a Path,
    /// Filename sent in the multipart part; `None` = the path's file name.
    pub file_name: Option<&'a str>,
    /// When set, the bytes streamed are hashed on the way and the upload is aborted
    /// (before the body completes) if they do not match: never uploaded under the wrong hash.
    pub expected_sha256: Option<[u8; 32]>,
}

/// A result file written by [`Client::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: [u8; 32],
    pub bytes: u64,
    pub format: ImageFormat,
}

/// The MagicEraser client. Cheap to clone; clones share one connection pool.
///
/// Its `Debug` shows the settings that matter for diagnosis, never the token.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// For the API origin, with the API headers.
    pub(crate) api: reqwest::Client,
    /// For result downloads, without them.
    pub(crate) cdn: reqwest::Client,
    pub(crate) settings: Settings,
    pub(crate) on_retry: Option<RetryObserver>,
}

/// The client's settings as built; `Debug` is safe because [`Token`] redacts itself.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) base_url: Url,
    #[expect(dead_code, reason = "shown by Debug only")]
    pub(crate) product_code: String,
    pub(crate) token: Option<Token>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_response_bytes: u64,
    pub(crate) max_download_bytes: u64,
    pub(crate) max_upload_bytes: u64,
    pub(crate) throttled_uploads_to_caller: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the web app's defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            product_serial: String::new(),
            product_code: DEFAULT_PRODUCT_CODE.to_owned(),
            token: None,
            user_agent: concat!("eraser/", env!("CARGO_PKG_VERSION")).to_owned(),
            origin: DEFAULT_ORIGIN.to_owned(),
            referer: DEFAULT_REFERER.to_owned(),
            headers: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            throttled_uploads_to_caller: false,
            on_retry: None,
        }
    }

    /// The API origin requests go to.
    pub fn base_url(&self) -> &str {
        self.inner.settings.base_url.as_str()
    }

    /// Largest input [`Client::create_job`] uploads; callers can refuse bigger files early.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.settings.max_upload_bytes
    }

    /// `{base}/<segments...>`, each segment URL-path-escaped. Segments must not be `.` or
    /// `..`, which URLs cannot carry literally (see [`usable_in_path`]).
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.settings.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Runs one call under the retry policy, telling the observer about each retry.
    pub(crate) async fn with_retry<T, F, Fut>(
        &self,
        operation: &'static str,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.with_retry_unless(operation, |_| false, attempt).await
    }

    /// [`Client::with_retry`], except that an error `hand_back` picks is returned at once.
    pub(crate) async fn with_retry_unless<T, F, Fut>(
        &self,
        operation: &'static str,
        hand_back: impl Fn(&Error) -> bool,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        retry::run(
            &inner.settings.retry,
            inner.on_retry.as_ref(),
            operation,
            hand_back,
            attempt,
        )
        .await
    }

    /// Whether a create-job answered 429 goes straight back to the caller.
    pub(crate) fn throttled_uploads_to_caller(&self) -> bool {
        self.inner.settings.throttled_uploads_to_caller
    }

    /// The token's value, to mask it in text the server sends back.
    pub(crate) fn secret(&self) -> Option<&str> {
        self.inner.settings.token.as_ref().map(Token::expose)
    }

    /// Maps a reqwest failure for `url` to the crate's error.
    pub(crate) fn transport_error(&self, err: &reqwest::Error, url: &Url) -> Error {
        if err.is_timeout() {
            let settings = &self.inner.settings;
            let timeout = if err.is_connect() {
                settings.connect_timeout
            } else {
                settings.request_timeout
            };
            return Error::Timeout {
                url: display_url(url),
                timeout,
                connect: err.is_connect(),
                delivered: false,
            };
        }
        if let Some(refused) = find_cause::<RefusedRedirect>(err) {
            return match refused {
                RefusedRedirect::Scheme(target) => Error::UnsupportedUrl {
                    url: target.clone(),
                },
                RefusedRedirect::TooMany => Error::Protocol {
                    reason: format!(
                        "more than {MAX_REDIRECTS} redirects from {}",
                        display_url(url)
                    ),
                },
            };
        }
        if err.is_builder() {
            // reqwest refuses URLs it cannot send (e.g. a redirect to a scheme it lacks).
            return Error::UnsupportedUrl {
                url: display_url(url),
            };
        }
        Error::Transport {
            url: display_url(url),
            detail: crate::error::root_cause(err),
            connect: err.is_connect(),
            delivered: false,
        }
    }
}

/// Whether `segment` survives as one URL path segment: not empty, and not `.`/`..`, which URL
/// parsing resolves (even percent-encoded) instead of sending.
pub(crate) fn usable_in_path(segment: &str) -> bool {
    !matches!(segment, "" | "." | "..")
}

fn config(reason: &str) -> Error {
    Error::Config {
        reason: reason.to_owned(),
    }
}

fn parse_base_url(text: &str) -> Result<Url> {
    let url = Url::parse(text.trim())
        .map_err(|e| config(&format!("the base URL {text:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(config(&format!(
            "the base URL {text:?} must be an http or https URL with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config(
            "the base URL must not carry a user name or password; use the token",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(&format!(
            "the base URL {text:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

fn header_name(name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| config(&format!("{name:?} is not a valid HTTP header name")))
}

/// The value is not echoed in the error: extra headers may hold credentials.
fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| {
        config(&format!(
            "the value of header {name} holds characters HTTP cannot carry"
        ))
    })
}

/// Why a redirect was not followed.
#[derive(Debug)]
enum RefusedRedirect {
    /// To a scheme other than http/https (the target URL, as shown in errors).
    Scheme(String),
    TooMany,
}

impl fmt::Display for RefusedRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(url) => write!(
                f,
                "redirect to {url} refused: only http and https are allowed"
            ),
            Self::TooMany => write!(f, "more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for RefusedRedirect {}

/// CDN redirects: http/https only, at most [`MAX_REDIRECTS`].
fn http_redirects_only(attempt: redirect::Attempt<'_>) -> redirect::Action {
    if !matches!(attempt.url().scheme(), "http" | "https") {
        let target = display_url(attempt.url());
        return attempt.error(RefusedRedirect::Scheme(target));
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(RefusedRedirect::TooMany);
    }
    attempt.follow()
}

/// API redirects: followed only within the API origin, so its headers never reach another
/// host; any other redirect is returned to the caller as an HTTP 3xx error.
fn same_origin_only(attempt: redirect::Attempt<'_>, api: &Url) -> redirect::Action {
    if attempt.url().origin() != api.origin() {
        return attempt.stop();
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(RefusedRedirect::TooMany);
    }
    attempt.follow()
}

/// The first error of type `T` in `err`'s source chain.
fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ClientBuilder {
        Client::builder().product_serial("serial-1")
    }

    fn config_reason(result: Result<Client>) -> String {
        match result {
            Err(Error::Config { reason }) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_build_a_client_for_the_real_service() {
        let client = builder().build().unwrap();
        assert_eq!(client.base_url(), "https://api.magiceraser.org/");
        assert_eq!(client.max_upload_bytes(), 50 << 20);
    }

    #[test]
    fn base_url_must_be_http_or_https() {
        for url in [
            "file:///tmp/x",
            "ftp://host/",
            "not a url",
            "data:text/plain,hi",
        ] {
            config_reason(builder().base_url(url).build());
        }
    }

    #[test]
    fn base_url_must_not_carry_credentials() {
        let reason = config_reason(builder().base_url("https://me:secret@api.example").build());
        assert!(!reason.contains("secret"), "{reason}");
    }

    #[test]
    fn product_serial_is_required() {
        config_reason(Client::builder().build());
        config_reason(Client::builder().product_serial("  ").build());
    }

    #[test]
    fn a_token_http_cannot_carry_is_refused_without_echoing_it() {
        let reason = config_reason(builder().token(Some(Token::new("tok\nen-s3cr3t"))).build());
        assert!(!reason.contains("s3cr3t"), "{reason}");
    }

    #[test]
    fn endpoints_keep_the_base_path_and_escape_segments() {
        let client = builder()
            .base_url("http://127.0.0.1:9/prefix/")
            .build()
            .unwrap();
        let url = client.endpoint(&["api", "get-job", "a/b c"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/api/get-job/a%2Fb%20c"
        );
        let client = builder().base_url("http://127.0.0.1:9").build().unwrap();
        assert_eq!(
            client.endpoint(&["x", "%2e%2e"]).as_str(),
            "http://127.0.0.1:9/x/%252e%252e"
        );
    }

    #[test]
    fn extra_headers_replace_defaults_of_the_same_name() {
        let headers = builder()
            .header("accept", "image/*")
            .header("X-Trace", "1")
            .api_headers()
            .unwrap();
        assert_eq!(
            headers.get_all("accept").iter().collect::<Vec<_>>(),
            ["image/*"]
        );
        assert_eq!(headers["x-trace"], "1");
        assert_eq!(headers["product-serial"], "serial-1");
        assert_eq!(headers["product-code"], "067003");
    }

    #[test]
    fn authorization_is_absent_without_a_token_and_verbatim_with_one() {
        assert!(
            builder()
                .api_headers()
                .unwrap()
                .get("authorization")
                .is_none()
        );
        assert!(
            builder()
                .token(Some(Token::new("")))
                .api_headers()
                .unwrap()
                .get("authorization")
                .is_none()
        );
        let headers = builder()
            .token(Some(Token::new("Bearer abc")))
            .api_headers()
            .unwrap();
        assert_eq!(headers["authorization"], "Bearer abc");
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_errors_and_call_futures_can_cross_threads() {
        fn assert_shared<T: Send + Sync + 'static>() {}
        assert_shared::<Client>();
        assert_shared::<Error>();
        let client = builder().build().unwrap();
        let path = Path::new("in.jpg");
        let job = CreateJob {
            path,
            file_name: None,
            expected_sha256: None,
        };
        let id = crate::JobId::new("x");
        // Futures are only built, never polled: this checks types, not behaviour.
        assert_send(&client.create_job(&job));
        assert_send(&client.get_job(&id));
        assert_send(&client.download("http://127.0.0.1:9/x.jpg", path));
    }

    #[test]
    fn debug_of_client_and_builder_hides_the_token() {
        let token = "tok-hidden-12345";
        let builder = builder()
            .token(Some(Token::new(token)))
            .header("Cookie", "c-hidden-678");
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains(token) && !shown.contains("c-hidden-678"),
            "{shown}"
        );
        let client = builder.build().unwrap();
        let shown = format!("{client:?} {client:#?}");
        assert!(
            !shown.contains(token) && !shown.contains("c-hidden-678"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }
}
