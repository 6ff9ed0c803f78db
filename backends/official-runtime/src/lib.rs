//! A safe Rust interface to the official Signal runtime, `libsignalwrap`, the native library the
//! official Pacerelle Python SDK encrypts with (libsignal with PQXDH, Kyber-1024 and SPQR).
//!
//! It serves two purposes:
//! - it is the reference peer the SDK's native Signal implementation is tested against, in
//!   process, for thousands of messages (see `testvectors/tests/official_runtime.rs`);
//! - it is an optional backend for users who would rather encrypt with the official binary:
//!   [`backend::RuntimeBackend`] implements the core's `SignalBackend`, so an agent built with
//!   `Agent::with_backend` encrypts with the runtime instead of the native implementation.
//!
//! # The library is supplied by the user, never bundled
//!
//! This crate contains no Signal code and ships no binary. [`OfficialRuntime::load`] opens a
//! `libsignalwrap` file the user already has, typically the one inside the official SDK's wheel
//! (`pip install pacerelle==0.1.0a8`; see [`default_library_path`]). It is loaded at run time with
//! [`libloading`] rather than linked at build time, so that building this crate needs neither the
//! library nor a C toolchain, the path can be chosen per process, and a missing library is an
//! ordinary error instead of a failure to start.
//!
//! ```no_run
//! use pacerelle_official_runtime::{OfficialRuntime, default_library_path};
//! # fn main() -> Result<(), pacerelle_official_runtime::RuntimeError> {
//! let runtime = OfficialRuntime::load(default_library_path("/opt/pacerelle-sdk".as_ref()))?;
//! let mut agent = runtime.new_store("agent:a")?;
//! let mut person = runtime.new_store("human:h:c")?;
//! let bundle = agent.generate_prekey_bundle(1, 1, 1)?;
//! person.process_prekey_bundle("agent:a", &bundle)?;
//! let framed = person.encrypt("agent:a", b"hello")?;
//! assert_eq!(&agent.decrypt("human:h:c", &framed)?[..], b"hello");
//! # Ok(()) }
//! ```
//!
//! # Safety argument
//!
//! This is the only crate of the workspace with `unsafe` code, and all of it is in one private
//! module (`ffi`; the crate root denies `unsafe_code` everywhere else). It rests on:
//! - **One trust assumption**: the file passed to [`OfficialRuntime::load`] is the official
//!   runtime, whose C interface is declared here exactly as the official SDK declares it. Loading
//!   a file runs its code, and no wrapper can check a foreign function's real signature: naming
//!   another file is as unsafe as executing it. Every symbol is resolved up front, so a file that
//!   lacks one is refused with [`RuntimeError::MissingSymbol`] before anything is called.
//! - **Ownership**: every store handle is owned by one [`RuntimeStore`] and freed once, on drop;
//!   the library stays loaded while any store exists (each holds an `Arc` of the runtime). Every
//!   buffer the runtime returns is copied into Rust memory, zeroed and freed with `poc_free_buf`
//!   with its original length, on success, error and panic paths alike; the prekey bundle struct
//!   is freed with `signal_prekey_bundle_free` the same way. Input buffers are borrowed for the
//!   duration of one call and only read.
//! - **Threads**: the runtime has no unsynchronised global state, and a store handle is a plain
//!   heap object with no lock: [`OfficialRuntime`] is `Send + Sync` (separate stores may be used
//!   concurrently), a [`RuntimeStore`] is `Send` but not `Sync`, and every call that changes it
//!   takes `&mut self`.
//! - **Unwinding**: the runtime's functions are `extern "C"` Rust functions; a panic inside them
//!   aborts the process instead of unwinding into this crate. No input tried in the conformance
//!   tests (garbage, truncated or empty messages, bundles with missing or changed fields) does so.
//!
//! Names must be non-empty and free of NUL bytes ([`RuntimeError::InvalidName`]); everything else
//! is handed to the runtime, whose status codes map to [`RuntimeError`] variants.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ffi;

pub mod backend;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

/// Every symbol [`OfficialRuntime::load`] resolves; a library missing one is refused.
pub const REQUIRED_SYMBOLS: [&str; 10] = ffi::SYMBOL_NAMES;

/// Where the official SDK keeps the runtime, given the folder the SDK was installed into (the
/// folder holding the `agent_gateway_sdk` package, e.g. a `pip install --target` folder).
pub fn default_library_path(sdk_dir: &Path) -> PathBuf {
    sdk_dir.join("agent_gateway_sdk").join("native").join("libsignalwrap.so")
}

/// Everything that can go wrong when loading or calling the runtime.
///
/// The runtime's own status codes map to [`NullPointer`](Self::NullPointer) (-1),
/// [`Protocol`](Self::Protocol) (-2), [`Deserialize`](Self::Deserialize) (-3),
/// [`InvalidInput`](Self::InvalidInput) (-4) and [`Status`](Self::Status) (any other).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The library could not be loaded (missing file, wrong architecture, missing dependency).
    #[error("cannot load the Signal runtime from {path}: {source}")]
    Load {
        /// The path given to [`OfficialRuntime::load`].
        path: PathBuf,
        /// The loader's reason.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The library loaded but lacks a symbol of [`REQUIRED_SYMBOLS`]: not the official runtime.
    #[error("{path} is not the official Signal runtime: symbol `{symbol}` is missing ({reason})")]
    MissingSymbol {
        /// The library's path.
        path: PathBuf,
        /// The missing symbol.
        symbol: &'static str,
        /// The loader's reason.
        reason: String,
    },
    /// A store or remote name is empty or contains a NUL byte; nothing was passed to the runtime.
    #[error("invalid {role} name {name:?}: {reason}")]
    InvalidName {
        /// `"local"` or `"remote"`.
        role: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `signal_store_new` returned no store.
    #[error("the Signal runtime could not create a store")]
    StoreCreation,
    /// `signal_store_import` returned no store: the snapshot is not one the runtime exported (or
    /// is damaged).
    #[error("the Signal runtime refused the store snapshot")]
    Import,
    /// Status -1: the runtime was given a null pointer.
    #[error("Signal runtime: null pointer (status -1)")]
    NullPointer,
    /// Status -2: libsignal refused the operation (bad signature, no session, duplicate or
    /// undecryptable message, untrusted identity, ...).
    #[error("Signal runtime: Signal protocol error (status -2)")]
    Protocol,
    /// Status -3: the message is not a libsignal message (or its frame byte is unknown).
    #[error("Signal runtime: message deserialize error (status -3)")]
    Deserialize,
    /// Status -4: the runtime refused an argument (e.g. a key of the wrong length or type).
    #[error("Signal runtime: invalid input (status -4)")]
    InvalidInput,
    /// Any other non-zero status.
    #[error("Signal runtime: status {0}")]
    Status(i32),
    /// The runtime reported success but returned a null buffer with a non-zero length.
    #[error("the Signal runtime returned a null buffer")]
    NullOutput,
}

impl RuntimeError {
    /// `Ok` for status 0, the mapped error otherwise.
    fn check(status: std::ffi::c_int) -> Result<(), Self> {
        match status {
            0 => Ok(()),
            -1 => Err(Self::NullPointer),
            -2 => Err(Self::Protocol),
            -3 => Err(Self::Deserialize),
            -4 => Err(Self::InvalidInput),
            other => Err(Self::Status(other)),
        }
    }
}

/// Checks a name before it reaches the runtime, which would take an empty name or a NUL byte and
/// file the session under a name no one means.
fn check_name<'a>(role: &'static str, name: &'a str) -> Result<&'a [u8], RuntimeError> {
    let invalid = |reason| RuntimeError::InvalidName { role, name: name.to_owned(), reason };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    Ok(name.as_bytes())
}

/// The official runtime, loaded from a file. Shared (`Arc`) by every store made from it.
pub struct OfficialRuntime {
    library: Arc<ffi::Library>,
    path: PathBuf,
}

impl fmt::Debug for OfficialRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfficialRuntime").field("path", &self.path).finish_non_exhaustive()
    }
}

impl OfficialRuntime {
    /// Loads the runtime at `path` and resolves every symbol of [`REQUIRED_SYMBOLS`].
    ///
    /// `path` must name the official runtime (see [`default_library_path`]): loading a file runs
    /// its code, and this crate calls its functions with the official SDK's signatures. This is
    /// the crate's one trust assumption (see the crate documentation).
    ///
    /// # Errors
    /// [`RuntimeError::Load`] when the file cannot be loaded, [`RuntimeError::MissingSymbol`]
    /// when it lacks one of the runtime's functions.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Self>, RuntimeError> {
        let path = path.as_ref();
        let library = ffi::Library::open(path)?;
        tracing::debug!(path = %path.display(), "loaded the official Signal runtime");
        Ok(Arc::new(Self { library: Arc::new(library), path: path.to_path_buf() }))
    }

    /// The path the runtime was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new store (fresh identity key and registration id) for the local party `local_name`
    /// (e.g. `agent:<id>` or `human:<id>:<conversation>`).
    ///
    /// # Errors
    /// [`RuntimeError::InvalidName`], or [`RuntimeError::StoreCreation`] when the runtime fails.
    pub fn new_store(self: &Arc<Self>, local_name: &str) -> Result<RuntimeStore, RuntimeError> {
        let name = check_name("local", local_name)?;
        let store = ffi::Store::new(&self.library, name).ok_or(RuntimeError::StoreCreation)?;
        Ok(RuntimeStore { runtime: Arc::clone(self), store, local_name: local_name.to_owned() })
    }

    /// A store restored from a snapshot made by [`RuntimeStore::export`]: same identity, prekeys
    /// and sessions, so conversations continue where the snapshot left them.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidName`], or [`RuntimeError::Import`] when the runtime refuses the
    /// snapshot.
    pub fn import_store(self: &Arc<Self>, local_name: &str, snapshot: &[u8]) -> Result<RuntimeStore, RuntimeError> {
        let name = check_name("local", local_name)?;
        let store = ffi::Store::import(&self.library, name, snapshot).ok_or(RuntimeError::Import)?;
        Ok(RuntimeStore { runtime: Arc::clone(self), store, local_name: local_name.to_owned() })
    }
}

/// One party's Signal state inside the runtime: identity, prekeys and a session per remote name.
///
/// Freed on drop. `Send` (it may move between threads) but not `Sync`: the runtime does not
/// synchronise calls on one store.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<pacerelle_official_runtime::RuntimeStore>();
/// ```
pub struct RuntimeStore {
    // Kept first so the store is freed (ffi::Store's drop) before this `Arc` is released; the
    // store holds its own reference to the library either way.
    store: ffi::Store,
    runtime: Arc<OfficialRuntime>,
    local_name: String,
}

impl fmt::Debug for RuntimeStore {
    // Names only: the store's keys and sessions never leave the runtime except through `export`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeStore")
            .field("local_name", &self.local_name)
            .field("runtime", &self.runtime.path)
            .finish_non_exhaustive()
    }
}

impl RuntimeStore {
    /// The local name the store was created or imported with.
    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    /// The runtime this store lives in.
    pub fn runtime(&self) -> &Arc<OfficialRuntime> {
        &self.runtime
    }

    /// Generates and stores a one-time prekey, a signed prekey and a Kyber prekey with these ids,
    /// and returns the bundle a peer needs to start a session with this store.
    ///
    /// # Errors
    /// A status error from the runtime.
    pub fn generate_prekey_bundle(
        &mut self,
        prekey_id: u32,
        signed_prekey_id: u32,
        kyber_prekey_id: u32,
    ) -> Result<PrekeyBundle, RuntimeError> {
        self.store.generate_prekey_bundle(prekey_id, signed_prekey_id, kyber_prekey_id)
    }

    /// Starts a session with `remote_name` from its bundle (PQXDH), after checking both
    /// signatures. The next [`encrypt`](Self::encrypt) to it makes a PreKey message.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidName`]; [`RuntimeError::Protocol`] for a bad signature or an
    /// untrusted identity; [`RuntimeError::InvalidInput`] for a malformed key.
    pub fn process_prekey_bundle(&mut self, remote_name: &str, bundle: &PrekeyBundle) -> Result<(), RuntimeError> {
        let remote = check_name("remote", remote_name)?;
        self.store.process_prekey_bundle(remote, bundle)
    }

    /// Encrypts for `remote_name`, returning the framed ciphertext: `0x01` and a PreKey message
    /// until the remote has replied, then `0x02` and an ordinary message.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidName`]; [`RuntimeError::Protocol`] when there is no session.
    pub fn encrypt(&mut self, remote_name: &str, plaintext: &[u8]) -> Result<Vec<u8>, RuntimeError> {
        let remote = check_name("remote", remote_name)?;
        let mut framed = self.store.encrypt(remote, plaintext)?;
        // A ciphertext is not secret: hand out the vector itself (leaving an empty one behind).
        Ok(std::mem::take(&mut *framed))
    }

    /// Decrypts a framed ciphertext from `remote_name` (a PreKey message starts the session).
    ///
    /// # Errors
    /// [`RuntimeError::InvalidName`]; [`RuntimeError::Deserialize`] for bytes that are not a
    /// framed message; [`RuntimeError::Protocol`] for a replayed, tampered or otherwise
    /// undecryptable message. A failed decryption leaves the session as it was.
    pub fn decrypt(&mut self, remote_name: &str, framed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let remote = check_name("remote", remote_name)?;
        self.store.decrypt(remote, framed)
    }

    /// An opaque snapshot of the whole store (private keys included: keep it secret), for
    /// [`OfficialRuntime::import_store`].
    ///
    /// # Errors
    /// A status error from the runtime.
    pub fn export(&self) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        self.store.export()
    }
}

/// A prekey bundle, as the runtime makes and takes it: everything a peer needs to start a
/// session. All of it is public.
#[derive(Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The store's registration id.
    pub registration_id: u32,
    /// The device id (the runtime uses 1).
    pub device_id: u32,
    /// The one-time prekey's id.
    pub prekey_id: u32,
    /// The one-time prekey (33 bytes, `0x05` and a Curve25519 key).
    pub prekey_public: Vec<u8>,
    /// The signed prekey's id.
    pub signed_prekey_id: u32,
    /// The signed prekey (33 bytes, `0x05` and a Curve25519 key).
    pub signed_prekey_public: Vec<u8>,
    /// The identity key's XEdDSA signature of `signed_prekey_public` (64 bytes).
    pub signed_prekey_signature: Vec<u8>,
    /// The Kyber prekey's id.
    pub kyber_prekey_id: u32,
    /// The Kyber-1024 prekey (1569 bytes, `0x08` and the key).
    pub kyber_prekey_public: Vec<u8>,
    /// The identity key's XEdDSA signature of `kyber_prekey_public` (64 bytes).
    pub kyber_prekey_signature: Vec<u8>,
    /// The identity key (33 bytes, `0x05` and a Curve25519 key).
    pub identity_key: Vec<u8>,
}

impl fmt::Debug for PrekeyBundle {
    // Public data, but the Kyber key alone is 1569 bytes: show ids, lengths and a short prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Bytes<'a>(&'a [u8]);
        impl fmt::Debug for Bytes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} bytes ", self.0.len())?;
                for byte in self.0.iter().take(8) {
                    write!(f, "{byte:02x}")?;
                }
                if self.0.len() > 8 {
                    f.write_str("…")?;
                }
                Ok(())
            }
        }
        f.debug_struct("PrekeyBundle")
            .field("registration_id", &self.registration_id)
            .field("device_id", &self.device_id)
            .field("prekey_id", &self.prekey_id)
            .field("prekey_public", &Bytes(&self.prekey_public))
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("signed_prekey_public", &Bytes(&self.signed_prekey_public))
            .field("signed_prekey_signature", &Bytes(&self.signed_prekey_signature))
            .field("kyber_prekey_id", &self.kyber_prekey_id)
            .field("kyber_prekey_public", &Bytes(&self.kyber_prekey_public))
            .field("kyber_prekey_signature", &Bytes(&self.kyber_prekey_signature))
            .field("identity_key", &Bytes(&self.identity_key))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn thread_bounds() {
        assert_send_sync::<OfficialRuntime>();
        assert_send::<RuntimeStore>();
        assert_send_sync::<RuntimeError>();
    }

    #[test]
    fn status_codes_map_to_variants() {
        assert!(RuntimeError::check(0).is_ok());
        assert!(matches!(RuntimeError::check(-1), Err(RuntimeError::NullPointer)));
        assert!(matches!(RuntimeError::check(-2), Err(RuntimeError::Protocol)));
        assert!(matches!(RuntimeError::check(-3), Err(RuntimeError::Deserialize)));
        assert!(matches!(RuntimeError::check(-4), Err(RuntimeError::InvalidInput)));
        assert!(matches!(RuntimeError::check(-9), Err(RuntimeError::Status(-9))));
    }

    #[test]
    fn names_are_checked_before_the_runtime() {
        assert_eq!(check_name("local", "agent:a").unwrap(), b"agent:a");
        assert!(matches!(
            check_name("remote", "agent:\0a"),
            Err(RuntimeError::InvalidName { role: "remote", reason: "it contains a NUL byte", .. })
        ));
        assert!(matches!(check_name("local", ""), Err(RuntimeError::InvalidName { reason: "it is empty", .. })));
    }

    #[test]
    fn a_missing_file_is_a_load_error() {
        let error = OfficialRuntime::load("/nonexistent/libsignalwrap.so").unwrap_err();
        assert!(
            matches!(&error, RuntimeError::Load { path, .. } if path == Path::new("/nonexistent/libsignalwrap.so"))
        );
    }

    #[test]
    fn the_default_path_is_inside_the_sdk_package() {
        assert_eq!(
            default_library_path(Path::new("/sdk")),
            Path::new("/sdk/agent_gateway_sdk/native/libsignalwrap.so")
        );
    }
}
