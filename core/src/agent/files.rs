//! The agent's files and media: encrypted upload ([`crate::attachment`]) before the message
//! that carries them, and download with local decryption.
//!
//! Only ciphertext goes to `POST /agent/blobs`. The envelope's public entry is redacted
//! (`attachment`, `application/octet-stream`); the real name, type, size, dimensions, key and IV
//! travel inside the (encrypted) `chat.message` payload.

use super::OutgoingMessage;
use crate::Rng;
use crate::attachment::{self, AttachmentError, FileMetadata};
use crate::message::Attachment;
use crate::wire::http::{BlobUploaded, HttpMethod, HttpRequest, HttpResponse, RequestId, percent_encode};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A file to send: its bytes and real metadata, and the message around it.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// The message (text, addressee, reply link, device) that carries the file.
    pub message: OutgoingMessage,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The real file name (never visible to the relay).
    pub name: String,
    /// The real MIME type (never visible to the relay).
    pub mime: String,
    /// Width in pixels (images, video).
    pub width: Option<u64>,
    /// Height in pixels (images, video).
    pub height: Option<u64>,
    /// Duration in milliseconds (audio, video).
    pub duration_ms: Option<u64>,
}

impl std::fmt::Debug for OutgoingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingFile")
            .field("conversation_id", &self.message.conversation_id)
            .field("to", &self.message.to)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl OutgoingFile {
    /// A file `name` of type `mime` for `to` in `conversation_id`, with caption `text`.
    pub fn new(
        conversation_id: impl Into<String>,
        to: impl Into<String>,
        bytes: Vec<u8>,
        name: impl Into<String>,
        mime: impl Into<String>,
    ) -> Self {
        OutgoingFile {
            message: OutgoingMessage::new(conversation_id, to, ""),
            bytes,
            name: name.into(),
            mime: mime.into(),
            width: None,
            height: None,
            duration_ms: None,
        }
    }

    /// The caption.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.message.text = text.into();
        self
    }

    /// Media dimensions.
    pub fn dimensions(mut self, width: u64, height: u64) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }

    /// Media duration.
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// The attachment cannot be opened: no key, a malformed key, or a blob that fails its tag.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The relay did not hand the blob out.
    #[error("blob download failed ({status}): {error}")]
    Http {
        /// The status (0 when the relay was not reached).
        status: u16,
        /// The reason.
        error: String,
    },
}

/// Why an upload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob upload failed ({status}): {error}")]
pub struct UploadError {
    /// The status (0 when the relay was not reached).
    pub status: u16,
    /// The reason.
    pub error: String,
}

struct PendingUpload {
    message_id: String,
    message: OutgoingMessage,
    attachment: Attachment,
}

struct PendingDownload {
    attachment: Attachment,
}

/// Uploads and downloads in flight.
#[derive(Default)]
pub(super) struct Transfers {
    uploads: BTreeMap<RequestId, PendingUpload>,
    downloads: BTreeMap<RequestId, PendingDownload>,
}

/// What an answer completed.
pub(super) enum Completed {
    /// An upload finished: send this message (with this id) now, or report the failure.
    Upload { message_id: String, result: Result<OutgoingMessage, UploadError> },
    /// A download finished.
    Download { result: Result<Zeroizing<Vec<u8>>, DownloadError> },
}

fn refusal(result: &Result<HttpResponse, String>) -> Option<(u16, String)> {
    match result {
        Ok(response) if response.is_success() => None,
        Ok(response) => {
            Some((response.status, response.error_message().unwrap_or_else(|| format!("HTTP {}", response.status))))
        }
        Err(error) => Some((0, error.clone())),
    }
}

impl Transfers {
    /// Encrypts `file` and returns the upload call; the message follows its answer.
    pub fn upload(&mut self, id: RequestId, message_id: String, file: OutgoingFile, rng: &mut Rng) -> HttpRequest {
        let metadata = FileMetadata {
            name: file.name,
            mime: file.mime,
            width: file.width,
            height: file.height,
            duration_ms: file.duration_ms,
        };
        let (ciphertext, attachment) = attachment::encrypt(&file.bytes, metadata, rng);
        self.uploads.insert(id, PendingUpload { message_id, message: file.message, attachment });
        HttpRequest {
            id,
            method: HttpMethod::Post,
            path: "/agent/blobs".into(),
            content_type: Some("application/octet-stream"),
            body: ciphertext,
        }
    }

    /// Returns the download call for `attachment` (refused at once when it has no usable key).
    pub fn download(&mut self, id: RequestId, attachment: &Attachment) -> Result<HttpRequest, DownloadError> {
        attachment::key_of(attachment)?;
        self.downloads.insert(id, PendingDownload { attachment: attachment.clone() });
        Ok(HttpRequest {
            id,
            method: HttpMethod::Get,
            path: format!("/agent/blobs/{}", percent_encode(&attachment.blob_id)),
            content_type: None,
            body: Vec::new(),
        })
    }

    /// Takes the answer to `request` when it is a transfer's; hands it back otherwise.
    pub fn answer(
        &mut self,
        request: RequestId,
        result: Result<HttpResponse, String>,
    ) -> Result<Completed, Result<HttpResponse, String>> {
        if let Some(upload) = self.uploads.remove(&request) {
            let PendingUpload { message_id, mut message, mut attachment } = upload;
            let result = match refusal(&result) {
                Some((status, error)) => Err(UploadError { status, error }),
                None => match result.map(|response| serde_json::from_slice::<BlobUploaded>(&response.body)) {
                    Ok(Ok(blob)) => {
                        attachment.blob_id = blob.id;
                        attachment.sha256 = blob.sha256;
                        message.attachments.push(attachment);
                        Ok(message)
                    }
                    Ok(Err(error)) => Err(UploadError { status: 200, error: format!("unexpected answer: {error}") }),
                    Err(error) => Err(UploadError { status: 0, error }),
                },
            };
            return Ok(Completed::Upload { message_id, result });
        }
        let Some(download) = self.downloads.remove(&request) else {
            return Err(result);
        };
        let result = match (refusal(&result), result) {
            (Some((status, error)), _) => Err(DownloadError::Http { status, error }),
            (None, Ok(response)) => attachment::decrypt(&download.attachment, &response.body).map_err(Into::into),
            (None, Err(error)) => Err(DownloadError::Http { status: 0, error }),
        };
        Ok(Completed::Download { result })
    }
}
