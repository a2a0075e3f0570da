//! The service's JSON bodies, in the capture's shapes and field order.

use serde::Serialize;

/// Envelope codes the emulator answers with. 100000 and 300006 are the capture's; the failure
/// codes are the emulator's own choices (the capture shows none).
pub mod codes {
    /// Success: job created, or job done.
    pub const OK: i64 = 100_000;
    /// Job still processing.
    pub const IN_PROGRESS: i64 = 300_006;
    /// The multipart body was missing, malformed, cut short or too large.
    pub const BAD_REQUEST: i64 = 300_000;
    /// The uploaded file is not a JPEG, PNG or WEBP (by magic bytes).
    pub const INVALID_IMAGE: i64 = 300_001;
    /// Out of credits (an example value for `Knobs::refuse_code`).
    pub const INSUFFICIENT_CREDITS: i64 = 300_002;
    /// `Product-Serial` or `Product-Code` header missing or empty.
    pub const MISSING_PRODUCT: i64 = 300_003;
    /// get-job for a job id the emulator never created.
    pub const JOB_NOT_FOUND: i64 = 300_004;
    /// No `original_image_file` field in the multipart body.
    pub const MISSING_FILE: i64 = 300_005;
    /// Default code of a failed job (`Knobs::job_fail_code`).
    pub const JOB_FAILED: i64 = 300_010;
    /// Code inside the JSON body of an injected HTTP 500.
    pub const SERVER_ERROR: i64 = 500;
    /// Code inside the JSON body of an HTTP 429.
    pub const TOO_MANY_REQUESTS: i64 = 429;
}

/// `{"code":…,"result":…,"message":{…}}`.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<R> {
    pub(crate) code: i64,
    pub(crate) result: R,
    pub(crate) message: Message,
}

/// The localized message; `id` (Indonesian) appears only on the in-progress answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Message {
    pub(crate) en: &'static str,
    pub(crate) zh: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'static str>,
}

impl Message {
    const fn new(en: &'static str, zh: &'static str) -> Self {
        Message { en, zh, id: None }
    }
}

/// create-job's `result`.
#[derive(Debug, Serialize)]
pub(crate) struct Created {
    pub(crate) job_id: String,
}

/// get-job's `result` while processing.
#[derive(Debug, Serialize)]
pub(crate) struct InProgress {
    pub(crate) input_url: String,
}

/// get-job's `result` once done.
#[derive(Debug, Serialize)]
pub(crate) struct Done {
    pub(crate) credits_states: i64,
    pub(crate) need_credits: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_url: Option<Vec<String>>,
    pub(crate) input_url: String,
    pub(crate) job_id: String,
    pub(crate) p_credits: i64,
    pub(crate) s_credits: i64,
}

pub(crate) const MSG_CREATED: Message = Message::new("Request Success", "提交任务成功");
pub(crate) const MSG_IN_PROGRESS: Message = Message {
    en: "Image generation in progress.",
    zh: "图片生成中。",
    id: Some("Pembuatan gambar sedang berlangsung."),
};
pub(crate) const MSG_DONE: Message =
    Message::new("Image generated successfully.", "图片生成成功。");
pub(crate) const MSG_FAILED: Message = Message::new("Image generation failed.", "图片生成失败。");
pub(crate) const MSG_NOT_FOUND: Message = Message::new("Job not found", "任务不存在");
pub(crate) const MSG_INVALID_IMAGE: Message = Message::new("Invalid image", "图片无效");
pub(crate) const MSG_MISSING_PRODUCT: Message = Message::new(
    "Missing Product-Serial or Product-Code header",
    "缺少产品序列号或产品代码",
);
pub(crate) const MSG_MISSING_FILE: Message =
    Message::new("Missing original_image_file", "缺少图片文件");
pub(crate) const MSG_BAD_REQUEST: Message = Message::new("Invalid request", "请求无效");
pub(crate) const MSG_TOO_LARGE: Message = Message::new("File too large", "文件过大");
pub(crate) const MSG_SERVER_ERROR: Message =
    Message::new("Internal Server Error", "服务器内部错误");
pub(crate) const MSG_TOO_MANY: Message = Message::new("Too Many Requests", "请求过于频繁");

/// The message of a systemic refusal (`Knobs::refuse_code`).
pub(crate) fn refusal_message(code: i64) -> Message {
    match code {
        codes::INSUFFICIENT_CREDITS => Message::new("Insufficient credits", "积分不足"),
        _ => Message::new("Request refused", "请求被拒绝"),
    }
}

/// Serializes an envelope; these plain structs cannot fail to serialize.
pub(crate) fn to_json<R: Serialize>(code: i64, result: R, message: Message) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        code,
        result,
        message,
    })
    .unwrap_or_default()
}
