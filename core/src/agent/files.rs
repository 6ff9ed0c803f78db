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

/// The name an upload without one gets, as in the official SDK.
pub const DEFAULT_FILE_NAME: &str = "file";
/// The MIME type an upload without one gets, as in the official SDK.
pub const DEFAULT_FILE_MIME: &str = "application/octet-stream";

/// A file to upload ([`crate::Agent::upload_file`]): its bytes and real metadata, which only
/// the encrypted payload of a message that carries it will show.
///
/// ```
/// use pacerelle_core::agent::FileUpload;
/// let photo = FileUpload::new(vec![0xff, 0xd8], "photo.jpg", "image/jpeg").dimensions(640, 480).thumbnail("blob-7");
/// assert_eq!(photo.thumbnail_blob_id.as_deref(), Some("blob-7"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct FileUpload {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The real file name (never visible to the relay); [`DEFAULT_FILE_NAME`] when empty.
    pub name: String,
    /// The real MIME type (never visible to the relay); [`DEFAULT_FILE_MIME`] when empty.
    pub mime: String,
    /// Width in pixels (images, video).
    pub width: Option<u64>,
    /// Height in pixels (images, video).
    pub height: Option<u64>,
    /// Duration in milliseconds (audio, video).
    pub duration_ms: Option<u64>,
    /// The blob of an uploaded thumbnail of this media (the official SDK's `thumbnail_blob_id`):
    /// the envelope's public entry names it; send the thumbnail's own attachment in the same
    /// message so that its key reaches the person.
    pub thumbnail_blob_id: Option<String>,
    /// Whether an agent without end-to-end encryption may upload this file, accepting that the
    /// relay can read it (see [`FileUpload::allow_relay_to_read`]).
    pub allow_relay_to_read: bool,
}

impl std::fmt::Debug for FileUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the contents nor the real name leave through logs.
        f.debug_struct("FileUpload")
            .field("bytes", &self.bytes.len())
            .field("thumbnail_blob_id", &self.thumbnail_blob_id)
            .field("allow_relay_to_read", &self.allow_relay_to_read)
            .finish_non_exhaustive()
    }
}

impl FileUpload {
    /// The file `name` of type `mime`.
    pub fn new(bytes: Vec<u8>, name: impl Into<String>, mime: impl Into<String>) -> Self {
        FileUpload {
            bytes,
            name: name.into(),
            mime: mime.into(),
            width: None,
            height: None,
            duration_ms: None,
            thumbnail_blob_id: None,
            allow_relay_to_read: false,
        }
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

    /// Names the blob of this media's thumbnail, uploaded before (its
    /// [`Attachment::blob_id`]).
    pub fn thumbnail(mut self, thumbnail_blob_id: impl Into<String>) -> Self {
        self.thumbnail_blob_id = Some(thumbnail_blob_id.into());
        self
    }

    /// Accepts that, on an agent without end-to-end encryption, the relay can read this file.
    ///
    /// The blob is still encrypted, but its key travels in the message's plaintext payload,
    /// which the relay sees. Without this, such an agent refuses the file with
    /// [`crate::agent::SendError::FileReadableByRelay`] (the official SDK refuses it outright). With
    /// end-to-end encryption it changes nothing.
    pub fn allow_relay_to_read(mut self) -> Self {
        self.allow_relay_to_read = true;
        self
    }

    /// The metadata the encrypted payload carries, with the official SDK's defaults for an
    /// empty name or type.
    fn metadata(&self) -> FileMetadata {
        let or_default =
            |value: &str, default: &str| if value.is_empty() { default.to_owned() } else { value.to_owned() };
        FileMetadata {
            name: or_default(&self.name, DEFAULT_FILE_NAME),
            mime: or_default(&self.mime, DEFAULT_FILE_MIME),
            width: self.width,
            height: self.height,
            duration_ms: self.duration_ms,
        }
    }
}

/// A file to send in a message of its own ([`crate::Agent::send_file`]): the official SDK's
/// `send_file` and `send_media`.
///
/// ```
/// use pacerelle_core::agent::OutgoingFile;
/// let file = OutgoingFile::new("conv-1", "alice", b"%PDF".to_vec(), "report.pdf", "application/pdf").text("Q3");
/// assert_eq!(file.message.text, "Q3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// The message (text, addressee, reply link, device, attachments uploaded before) that
    /// carries the file, after those attachments.
    pub message: OutgoingMessage,
    /// The file.
    pub file: FileUpload,
}

impl OutgoingFile {
    /// A file `name` of type `mime` for `to` in `conversation_id`, without caption.
    pub fn new(
        conversation_id: impl Into<String>,
        to: impl Into<String>,
        bytes: Vec<u8>,
        name: impl Into<String>,
        mime: impl Into<String>,
    ) -> Self {
        OutgoingFile {
            message: OutgoingMessage::new(conversation_id, to, ""),
            file: FileUpload::new(bytes, name, mime),
        }
    }

    /// The caption.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.message.text = text.into();
        self
    }

    /// Links the message to the one it answers.
    pub fn reply_to(mut self, message_id: impl Into<String>) -> Self {
        self.message = self.message.reply_to(message_id);
        self
    }

    /// Media dimensions.
    pub fn dimensions(mut self, width: u64, height: u64) -> Self {
        self.file = self.file.dimensions(width, height);
        self
    }

    /// Media duration.
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.file = self.file.duration_ms(duration_ms);
        self
    }

    /// Names the blob of this media's thumbnail ([`FileUpload::thumbnail`]).
    pub fn thumbnail(mut self, thumbnail_blob_id: impl Into<String>) -> Self {
        self.file = self.file.thumbnail(thumbnail_blob_id);
        self
    }

    /// Accepts that the relay can read the file on an agent without end-to-end encryption
    /// ([`FileUpload::allow_relay_to_read`]).
    pub fn allow_relay_to_read(mut self) -> Self {
        self.file = self.file.allow_relay_to_read();
        self
    }
}

/// A file sent in a message of its own: the message's id and the attachment, which later
/// messages may carry again ([`OutgoingMessage::attachments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// The message's id.
    pub message_id: String,
    /// The attachment it carries (with its key: keep it as secret as the file).
    pub attachment: Attachment,
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

/// An upload in flight, and the message to send with its attachment once it is stored.
struct PendingUpload {
    then_send: Option<(String, OutgoingMessage)>,
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
// Built and matched once per answer, never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Completed {
    /// An upload finished: the attachment, now with its blob, or why not; and the message (with
    /// its id) to send with it, for a file sent in a message of its own.
    Upload { then_send: Option<(String, OutgoingMessage)>, result: Result<Attachment, UploadError> },
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
    /// Encrypts `file` and returns the upload call; `then_send` (a message id and the message)
    /// follows its answer, with the attachment added.
    pub fn upload(
        &mut self,
        id: RequestId,
        file: FileUpload,
        then_send: Option<(String, OutgoingMessage)>,
        rng: &mut Rng,
    ) -> HttpRequest {
        let (ciphertext, mut attachment) = attachment::encrypt(&file.bytes, file.metadata(), rng);
        attachment.thumbnail_blob_id = file.thumbnail_blob_id.filter(|blob| !blob.is_empty());
        self.uploads.insert(id, PendingUpload { then_send, attachment });
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
            let PendingUpload { then_send, mut attachment } = upload;
            let result = match refusal(&result) {
                Some((status, error)) => Err(UploadError { status, error }),
                None => match result.map(|response| serde_json::from_slice::<BlobUploaded>(&response.body)) {
                    Ok(Ok(blob)) => {
                        attachment.blob_id = blob.id;
                        attachment.sha256 = blob.sha256;
                        Ok(attachment)
                    }
                    Ok(Err(error)) => Err(UploadError { status: 200, error: format!("unexpected answer: {error}") }),
                    Err(error) => Err(UploadError { status: 0, error }),
                },
            };
            return Ok(Completed::Upload { then_send, result });
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
