//! Reading API answers: size-bounded bodies, statuses and the JSON envelope turned into errors.

use std::time::SystemTime;

use reqwest::header::RETRY_AFTER;
use url::Url;

use crate::error::{clean_foreign_text, display_url, is_retryable_status};
use crate::model::{CODE_IN_PROGRESS, CODE_SUCCESS, Envelope, EnvelopeError};
use crate::retry::parse_retry_after;
use crate::{Client, Error, Result};

/// An API answer that passed the status check: its envelope and the body it came from.
pub(crate) struct Answer {
    pub envelope: Envelope,
    pub raw: String,
}

impl Client {
    /// Reads an API response into its envelope.
    ///
    /// 2xx with the envelope → `Ok`; 2xx with anything else → [`Error::Decode`] (retryable);
    /// a permanent 4xx whose body is a failure envelope → [`Error::Api`]; any other status →
    /// [`Error::Http`] with its `Retry-After`. Bodies are read up to `max_response_bytes`.
    pub(crate) async fn read_answer(&self, response: reqwest::Response) -> Result<Answer> {
        let url = response.url().clone();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let limit = self.inner.settings.max_response_bytes;

        if !response.status().is_success() {
            // A permanent 4xx may explain itself with a failure envelope; an unreadable or
            // foreign body just leaves the HTTP status.
            if response.status().is_client_error()
                && !is_retryable_status(status)
                && let Ok(body) = self.read_bounded(response, limit).await
                && let Ok(envelope) = Envelope::parse(&body)
                && envelope.code != CODE_SUCCESS
                && envelope.code != CODE_IN_PROGRESS
            {
                return Err(self.api_error(envelope));
            }
            return Err(Error::Http {
                status,
                retry_after,
            });
        }

        let body = self.read_bounded(response, limit).await?;
        decode_answer(&body, &url)
    }

    /// A failure envelope as an [`Error::Api`], its message made safe to print.
    pub(crate) fn api_error(&self, envelope: Envelope) -> Error {
        refusal(envelope, self.secret())
    }

    /// Server text made safe to print (no control characters, no token, bounded).
    pub(crate) fn clean_message(&self, message: &str) -> String {
        clean_foreign_text(message, self.secret())
    }

    /// The whole body, refused with [`Error::TooLarge`] as soon as it exceeds `limit` bytes
    /// (by its `Content-Length` up front, or by counting while reading).
    pub(crate) async fn read_bounded(
        &self,
        mut response: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let url = response.url().clone();
        let too_large = |url: &Url| Error::TooLarge {
            url: display_url(url),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(&url));
        }
        let capacity = response
            .content_length()
            .unwrap_or(0)
            .min(limit)
            .min(64 * 1024);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e, &url))?
        {
            let new_len = u64::try_from(body.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
            if new_len > limit {
                return Err(too_large(&url));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Decodes a 2xx body read from `url` into its envelope: the step every endpoint takes after
/// reading the body. Not the service's JSON → [`Error::Decode`] (retryable).
pub(crate) fn decode_answer(body: &[u8], url: &Url) -> Result<Answer> {
    let envelope = Envelope::parse(body).map_err(|e| Error::Decode {
        url: display_url(url),
        reason: match e {
            EnvelopeError::NotJson if body.is_empty() => "the body is empty".to_owned(),
            other => other.to_string(),
        },
    })?;
    let raw = String::from_utf8_lossy(body).into_owned();
    Ok(Answer { envelope, raw })
}

/// A failure envelope as an [`Error::Api`], its message cleaned of control characters and of
/// `secret` (the token), and bounded.
pub(crate) fn refusal(envelope: Envelope, secret: Option<&str>) -> Error {
    Error::Api {
        code: envelope.code,
        message: clean_foreign_text(&envelope.message, secret),
    }
}
