//! The only module with `unsafe` code: the runtime's C symbols, resolved once, and small safe
//! wrappers that own every pointer the runtime hands out.
//!
//! The declarations follow ORACLE.md's table and the official Python binding's ctypes
//! declarations (`agent_gateway_sdk._SignalLibrary`), which were cross-checked against the
//! runtime's machine code (sdk 0.1.0a8):
//!
//! - `poc_free_buf(ptr, len)` deallocates a Rust `Box<[u8]>` of exactly `len` bytes and ignores a
//!   null pointer or a zero length, so a buffer must be freed with the length it came with;
//! - `signal_prekey_bundle_free` frees each non-null field of the struct and nulls it, so freeing
//!   a zeroed struct (an untouched out-parameter after an error) or freeing twice is harmless;
//! - a store handle is a `Box` of `{ name: String, store: InMemSignalProtocolStore }`, with no
//!   lock inside and nothing tied to the thread that made it: it may move between threads but must
//!   never be used by two at once;
//! - the runtime keeps no unsynchronised global state (only `log`'s logger, CPU-feature caches and
//!   `getrandom`'s descriptor, all synchronised), and takes randomness from the OS, so separate
//!   stores may be used from separate threads at the same time;
//! - out-parameters are written only on success, and input buffers are only read (and copied).
//!
//! Every function here is safe to call on that basis; the one thing no code can check is that the
//! file given to [`Library::open`] really is that runtime (see the crate documentation).

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

use crate::RuntimeError;

/// `signal_store_new(name, name_len) -> handle or null`.
type StoreNewFn = unsafe extern "C" fn(*const u8, usize) -> *mut c_void;
/// `signal_store_free(handle)`.
type StoreFreeFn = unsafe extern "C" fn(*mut c_void);
/// `signal_store_generate_prekey_bundle(handle, prekey_id, signed_id, kyber_id, out) -> status`.
type GenerateBundleFn = unsafe extern "C" fn(*mut c_void, u32, u32, u32, *mut RawBundle) -> c_int;
/// `signal_prekey_bundle_free(bundle)`.
type BundleFreeFn = unsafe extern "C" fn(*mut RawBundle);
/// `signal_store_process_prekey_bundle(handle, remote, remote_len, registration_id, device_id,
/// prekey_id, prekey, len, signed_id, signed, len, signature, len, kyber_id, kyber, len,
/// kyber_signature, len, identity, len) -> status`.
type ProcessBundleFn = unsafe extern "C" fn(
    *mut c_void,
    *const u8,
    usize,
    u32,
    u32,
    u32,
    *const u8,
    usize,
    u32,
    *const u8,
    usize,
    *const u8,
    usize,
    u32,
    *const u8,
    usize,
    *const u8,
    usize,
    *const u8,
    usize,
) -> c_int;
/// `signal_store_encrypt` / `signal_store_decrypt(handle, remote, remote_len, input, input_len,
/// out, out_len) -> status`.
type CryptFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *mut *mut u8, *mut usize) -> c_int;
/// `signal_store_export(handle, out, out_len) -> status`.
type ExportFn = unsafe extern "C" fn(*mut c_void, *mut *mut u8, *mut usize) -> c_int;
/// `signal_store_import(name, name_len, snapshot, snapshot_len) -> handle or null`.
type ImportFn = unsafe extern "C" fn(*const u8, usize, *const u8, usize) -> *mut c_void;
/// `poc_free_buf(ptr, len)`.
type FreeBufFn = unsafe extern "C" fn(*mut u8, usize);

/// The runtime's `Bundle` struct, field for field (the Python binding's `_NativePreKeyBundle`;
/// the runtime's free function reads the pointers at offsets 0x10, 0x28, 0x38, 0x50, 0x60 and
/// 0x70, which is this layout).
#[repr(C)]
struct RawBundle {
    registration_id: u32,
    device_id: u32,
    pre_key_id: u32,
    pre_key_public: *mut u8,
    pre_key_public_len: usize,
    signed_pre_key_id: u32,
    signed_pre_key_public: *mut u8,
    signed_pre_key_public_len: usize,
    signed_pre_key_signature: *mut u8,
    signed_pre_key_signature_len: usize,
    kyber_pre_key_id: u32,
    kyber_pre_key_public: *mut u8,
    kyber_pre_key_public_len: usize,
    kyber_pre_key_signature: *mut u8,
    kyber_pre_key_signature_len: usize,
    identity_key: *mut u8,
    identity_key_len: usize,
}

impl RawBundle {
    /// All ids zero and all pointers null: what the runtime's free function treats as empty.
    const fn empty() -> Self {
        Self {
            registration_id: 0,
            device_id: 0,
            pre_key_id: 0,
            pre_key_public: ptr::null_mut(),
            pre_key_public_len: 0,
            signed_pre_key_id: 0,
            signed_pre_key_public: ptr::null_mut(),
            signed_pre_key_public_len: 0,
            signed_pre_key_signature: ptr::null_mut(),
            signed_pre_key_signature_len: 0,
            kyber_pre_key_id: 0,
            kyber_pre_key_public: ptr::null_mut(),
            kyber_pre_key_public_len: 0,
            kyber_pre_key_signature: ptr::null_mut(),
            kyber_pre_key_signature_len: 0,
            identity_key: ptr::null_mut(),
            identity_key_len: 0,
        }
    }
}

/// Every symbol, resolved up front, as plain function pointers. They stay valid as long as the
/// `libloading::Library` next to them in [`Library`] is loaded, and they never leave this module.
#[derive(Clone, Copy)]
struct Symbols {
    store_new: StoreNewFn,
    store_free: StoreFreeFn,
    generate_bundle: GenerateBundleFn,
    bundle_free: BundleFreeFn,
    process_bundle: ProcessBundleFn,
    encrypt: CryptFn,
    decrypt: CryptFn,
    export: ExportFn,
    import: ImportFn,
    free_buf: FreeBufFn,
}

/// Every symbol this crate needs, for the documentation of [`RuntimeError::MissingSymbol`].
pub(crate) const SYMBOL_NAMES: [&str; 10] = [
    "signal_store_new",
    "signal_store_free",
    "signal_store_generate_prekey_bundle",
    "signal_prekey_bundle_free",
    "signal_store_process_prekey_bundle",
    "signal_store_encrypt",
    "signal_store_decrypt",
    "signal_store_export",
    "signal_store_import",
    "poc_free_buf",
];

/// The loaded runtime. Dropping it unloads the file, which can only happen once no [`Store`]
/// (each holds an `Arc` of it) is left.
pub(crate) struct Library {
    symbols: Symbols,
    // Declared last so the pointers above are never observable after unloading.
    _library: libloading::Library,
}

impl Library {
    /// Loads the file at `path` and resolves every symbol.
    pub(crate) fn open(path: &Path) -> Result<Self, RuntimeError> {
        // SAFETY: loading runs the file's initialisers. The caller names the official runtime
        // (the crate's one trust assumption, documented on `OfficialRuntime::load`), a Rust cdylib
        // whose initialisers only set up its standard library.
        let library = unsafe { libloading::Library::new(path.as_os_str()) }
            .map_err(|source| RuntimeError::Load { path: path.to_path_buf(), source: Box::new(source) })?;

        /// Resolves `name` as a non-null value of type `Option<T>`.
        ///
        /// # Safety
        /// `T` must be the symbol's true function pointer type.
        unsafe fn resolve<T: Copy>(
            library: &libloading::Library,
            path: &Path,
            name: &'static str,
        ) -> Result<T, RuntimeError> {
            let missing =
                |reason: String| RuntimeError::MissingSymbol { path: path.to_path_buf(), symbol: name, reason };
            // SAFETY: the caller guarantees `T` is the symbol's type; `Option<fn>` has the null
            // niche, so a symbol whose value is null reads as `None` instead of a null `fn`.
            let symbol =
                unsafe { library.get::<Option<T>>(name.as_bytes()) }.map_err(|error| missing(error.to_string()))?;
            (*symbol).ok_or_else(|| missing("the symbol's address is null".to_owned()))
        }

        // SAFETY: each type alias above transcribes ORACLE.md's table and the official Python
        // binding's ctypes `argtypes`/`restype` for that symbol (pointer/length pairs as
        // `*const u8, usize`, ids as `u32`, status as `c_int`, handles as `*mut c_void`).
        let symbols = unsafe {
            Symbols {
                store_new: resolve(&library, path, SYMBOL_NAMES[0])?,
                store_free: resolve(&library, path, SYMBOL_NAMES[1])?,
                generate_bundle: resolve(&library, path, SYMBOL_NAMES[2])?,
                bundle_free: resolve(&library, path, SYMBOL_NAMES[3])?,
                process_bundle: resolve(&library, path, SYMBOL_NAMES[4])?,
                encrypt: resolve(&library, path, SYMBOL_NAMES[5])?,
                decrypt: resolve(&library, path, SYMBOL_NAMES[6])?,
                export: resolve(&library, path, SYMBOL_NAMES[7])?,
                import: resolve(&library, path, SYMBOL_NAMES[8])?,
                free_buf: resolve(&library, path, SYMBOL_NAMES[9])?,
            }
        };
        Ok(Self { symbols, _library: library })
    }
}

/// One of the runtime's stores, freed on drop.
pub(crate) struct Store {
    library: Arc<Library>,
    handle: NonNull<c_void>,
}

// SAFETY: the handle is a heap object with no lock and no tie to the thread that created it (see
// the module documentation), so moving it to another thread is sound. `Store` is deliberately not
// `Sync`: the runtime does not synchronise calls on one handle, and `&Store` gives `export`.
unsafe impl Send for Store {}

/// A pair of byte strings the runtime reads: a pointer and a length.
fn parts(bytes: &[u8]) -> (*const u8, usize) {
    (bytes.as_ptr(), bytes.len())
}

impl Store {
    /// `signal_store_new`: `None` when the runtime returns null.
    pub(crate) fn new(library: &Arc<Library>, local_name: &[u8]) -> Option<Self> {
        let (name, name_len) = parts(local_name);
        // SAFETY: `name` points to `name_len` readable bytes, which the runtime copies.
        let handle = unsafe { (library.symbols.store_new)(name, name_len) };
        NonNull::new(handle).map(|handle| Self { library: Arc::clone(library), handle })
    }

    /// `signal_store_import`: `None` when the runtime refuses the snapshot.
    pub(crate) fn import(library: &Arc<Library>, local_name: &[u8], snapshot: &[u8]) -> Option<Self> {
        let (name, name_len) = parts(local_name);
        let (snapshot, snapshot_len) = parts(snapshot);
        // SAFETY: both pointers point to that many readable bytes, which the runtime copies.
        let handle = unsafe { (library.symbols.import)(name, name_len, snapshot, snapshot_len) };
        NonNull::new(handle).map(|handle| Self { library: Arc::clone(library), handle })
    }

    /// `signal_store_generate_prekey_bundle`, copied into Rust memory.
    pub(crate) fn generate_prekey_bundle(
        &mut self,
        prekey_id: u32,
        signed_prekey_id: u32,
        kyber_prekey_id: u32,
    ) -> Result<crate::PrekeyBundle, RuntimeError> {
        /// Frees the struct's buffers on every path, errors and panics included.
        struct Guard<'a>(RawBundle, &'a Symbols);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                // SAFETY: the struct is either still zeroed or filled by the runtime, and its free
                // function ignores null fields and nulls the ones it frees.
                unsafe { (self.1.bundle_free)(&mut self.0) }
            }
        }
        let mut guard = Guard(RawBundle::empty(), &self.library.symbols);
        // SAFETY: `handle` is a live store (owned by `self`, used by no one else: `&mut self`),
        // and the out-parameter is a valid, writable `RawBundle`.
        let status = unsafe {
            (self.library.symbols.generate_bundle)(
                self.handle.as_ptr(),
                prekey_id,
                signed_prekey_id,
                kyber_prekey_id,
                &mut guard.0,
            )
        };
        RuntimeError::check(status)?;
        let raw = &guard.0;
        // SAFETY (for each `copy` below): on success the runtime filled every field with a buffer
        // of the length next to it, which stays allocated until the guard frees it.
        Ok(crate::PrekeyBundle {
            registration_id: raw.registration_id,
            device_id: raw.device_id,
            prekey_id: raw.pre_key_id,
            // SAFETY: see above.
            prekey_public: unsafe { copy(raw.pre_key_public, raw.pre_key_public_len) }?,
            signed_prekey_id: raw.signed_pre_key_id,
            // SAFETY: see above.
            signed_prekey_public: unsafe { copy(raw.signed_pre_key_public, raw.signed_pre_key_public_len) }?,
            // SAFETY: see above.
            signed_prekey_signature: unsafe { copy(raw.signed_pre_key_signature, raw.signed_pre_key_signature_len) }?,
            kyber_prekey_id: raw.kyber_pre_key_id,
            // SAFETY: see above.
            kyber_prekey_public: unsafe { copy(raw.kyber_pre_key_public, raw.kyber_pre_key_public_len) }?,
            // SAFETY: see above.
            kyber_prekey_signature: unsafe { copy(raw.kyber_pre_key_signature, raw.kyber_pre_key_signature_len) }?,
            // SAFETY: see above.
            identity_key: unsafe { copy(raw.identity_key, raw.identity_key_len) }?,
        })
    }

    /// `signal_store_process_prekey_bundle`.
    pub(crate) fn process_prekey_bundle(
        &mut self,
        remote_name: &[u8],
        bundle: &crate::PrekeyBundle,
    ) -> Result<(), RuntimeError> {
        let (remote, remote_len) = parts(remote_name);
        let (prekey, prekey_len) = parts(&bundle.prekey_public);
        let (signed, signed_len) = parts(&bundle.signed_prekey_public);
        let (signed_signature, signed_signature_len) = parts(&bundle.signed_prekey_signature);
        let (kyber, kyber_len) = parts(&bundle.kyber_prekey_public);
        let (kyber_signature, kyber_signature_len) = parts(&bundle.kyber_prekey_signature);
        let (identity, identity_len) = parts(&bundle.identity_key);
        // SAFETY: `handle` is a live store used by no one else (`&mut self`); every pointer points
        // to that many readable bytes borrowed for the call, which the runtime only reads.
        let status = unsafe {
            (self.library.symbols.process_bundle)(
                self.handle.as_ptr(),
                remote,
                remote_len,
                bundle.registration_id,
                bundle.device_id,
                bundle.prekey_id,
                prekey,
                prekey_len,
                bundle.signed_prekey_id,
                signed,
                signed_len,
                signed_signature,
                signed_signature_len,
                bundle.kyber_prekey_id,
                kyber,
                kyber_len,
                kyber_signature,
                kyber_signature_len,
                identity,
                identity_len,
            )
        };
        RuntimeError::check(status)
    }

    /// `signal_store_encrypt`.
    pub(crate) fn encrypt(&mut self, remote_name: &[u8], plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let encrypt = self.library.symbols.encrypt;
        self.crypt(encrypt, remote_name, plaintext)
    }

    /// `signal_store_decrypt`.
    pub(crate) fn decrypt(&mut self, remote_name: &[u8], framed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let decrypt = self.library.symbols.decrypt;
        self.crypt(decrypt, remote_name, framed)
    }

    fn crypt(
        &mut self,
        function: CryptFn,
        remote_name: &[u8],
        input: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let (remote, remote_len) = parts(remote_name);
        let (input, input_len) = parts(input);
        let mut out = OwnedBuffer::new(&self.library.symbols);
        // SAFETY: `function` is `signal_store_encrypt` or `signal_store_decrypt` (same type);
        // `handle` is a live store used by no one else (`&mut self`); the inputs point to that
        // many readable bytes; the out-parameters are writable and owned by `out`, which frees
        // whatever the runtime stores there.
        let status =
            unsafe { function(self.handle.as_ptr(), remote, remote_len, input, input_len, &mut out.ptr, &mut out.len) };
        RuntimeError::check(status)?;
        out.take()
    }

    /// `signal_store_export`.
    pub(crate) fn export(&self) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let mut out = OwnedBuffer::new(&self.library.symbols);
        // SAFETY: `handle` is a live store; `Store` is not `Sync`, so no other thread is using it
        // while `&self` is held; the out-parameters are writable and owned by `out`.
        let status = unsafe { (self.library.symbols.export)(self.handle.as_ptr(), &mut out.ptr, &mut out.len) };
        RuntimeError::check(status)?;
        out.take()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `signal_store_new`/`signal_store_import` of this library
        // (kept loaded by the `Arc`), is freed only here, and is never used afterwards.
        unsafe { (self.library.symbols.store_free)(self.handle.as_ptr()) }
    }
}

/// A buffer the runtime returned through `(out, out_len)`; it is zeroed (it may hold a plaintext
/// or a snapshot's private keys) and freed with `poc_free_buf` when dropped, on every path.
struct OwnedBuffer<'a> {
    ptr: *mut u8,
    len: usize,
    symbols: &'a Symbols,
}

impl<'a> OwnedBuffer<'a> {
    fn new(symbols: &'a Symbols) -> Self {
        Self { ptr: ptr::null_mut(), len: 0, symbols }
    }

    /// A copy in Rust memory (the runtime's buffer is freed when `self` drops).
    fn take(&self) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        // SAFETY: after a successful call the runtime set `ptr`/`len` to a buffer it allocated
        // (or left them null/zero), which stays allocated until `self` is dropped.
        unsafe { copy(self.ptr, self.len) }.map(Zeroizing::new)
    }
}

impl Drop for OwnedBuffer<'_> {
    fn drop(&mut self) {
        if self.ptr.is_null() || self.len == 0 {
            // Nothing was allocated (and `poc_free_buf` would ignore it anyway).
            return;
        }
        // SAFETY: the runtime gave us sole ownership of this `len`-byte buffer; nothing else
        // refers to it, so writing to it before handing it back is sound.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }.zeroize();
        // SAFETY: `ptr`/`len` are exactly what the runtime returned (`poc_free_buf` needs the
        // original length), and the buffer is freed once, here.
        unsafe { (self.symbols.free_buf)(self.ptr, self.len) }
    }
}

/// Copies a buffer the runtime returned; a null pointer with a non-zero length is refused.
///
/// # Safety
/// When `ptr` is not null, it must point to `len` readable, initialised bytes.
unsafe fn copy(ptr: *const u8, len: usize) -> Result<Vec<u8>, RuntimeError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(RuntimeError::NullOutput);
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}
