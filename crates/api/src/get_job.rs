//! `GET {base}/api/magiceraser/v2/ai-remove-object/get-job/{id}`: 100000 done, 300006 in
//! progress, any other code failed.

use crate::client::usable_in_path;
use crate::error::clean_foreign_text;
use crate::response::Answer;
use crate::{Client, Error, JobId, JobState, Result};

const GET_JOB_PATH: [&str; 5] = ["api", "magiceraser", "v2", "ai-remove-object", "get-job"];

impl Client {
    /// Asks for a job's state. The id is URL-path-escaped, so any text is safe to pass.
    ///
    /// A failure code from the service is a [`JobState::Failed`], not an error; errors are
    /// about the exchange itself (transport, HTTP status, undecodable or protocol-breaking
    /// answers such as "done" without an output URL). Retryable errors are retried first.
    pub async fn get_job(&self, id: &JobId) -> Result<JobState> {
        if !usable_in_path(id.as_str()) {
            return Err(Error::Protocol {
                reason: format!(
                    "the job id {:?} cannot be sent in a URL",
                    self.clean_message(id.as_str())
                ),
            });
        }
        let mut segments = GET_JOB_PATH.to_vec();
        segments.push(id.as_str());
        let url = self.endpoint(&segments);
        self.with_retry("get-job", || async {
            let response = self
                .inner
                .api
                .get(url.clone())
                .send()
                .await
                .map_err(|e| self.transport_error(&e, &url))?;
            let answer = self.read_answer(response).await?;
            job_state_of(answer, id, self.secret())
        })
        .await
    }
}

/// What a get-job answer says about job `id`: its state, with a failure's message cleaned of
/// control characters and of `secret` (the token), or [`Error::Protocol`] for a reply that
/// breaks the protocol (such as "done" without an output URL).
pub(crate) fn job_state_of(answer: Answer, id: &JobId, secret: Option<&str>) -> Result<JobState> {
    let state = answer
        .envelope
        .job_state(answer.raw)
        .map_err(|reason| Error::Protocol {
            reason: format!("job {}: {reason}", clean_foreign_text(id.as_str(), secret)),
        })?;
    Ok(match state {
        JobState::Failed { code, message } => JobState::Failed {
            code,
            message: clean_foreign_text(&message, secret),
        },
        // The raw reply is kept in the ledger: a server echoing the token must not put it there.
        JobState::Done(mut done) => {
            if let Some(secret) = secret {
                done.raw = crate::error::mask_secret(&done.raw, secret);
            }
            JobState::Done(done)
        }
        other => other,
    })
}
