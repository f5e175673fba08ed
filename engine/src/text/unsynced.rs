//! A tantivy directory that never syncs: for a live layer's index, whose
//! files are made again from the store after a crash (see
//! [`crate::live`]), so that building one costs no `fsync` (a tantivy
//! commit syncs each segment file, `meta.json` and the directory: most of
//! a live write's time before this).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, FileHandle, MmapDirectory, TerminatingWrite, WatchCallback, WatchHandle, WritePtr,
};

/// [`MmapDirectory`] for reading, plain unsynced files for writing.
#[derive(Clone, Debug)]
pub(crate) struct Unsynced {
    root: PathBuf,
    inner: MmapDirectory,
}

impl Unsynced {
    pub fn open(root: &Path) -> tantivy::Result<Unsynced> {
        let inner = MmapDirectory::open(root).map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        Ok(Unsynced { root: root.to_owned(), inner })
    }
}

/// A file that is flushed, not synced, when tantivy is done with it.
struct Plain(File);

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl TerminatingWrite for Plain {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.0.flush()
    }
}

impl Directory for Unsynced {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let file = OpenOptions::new().write(true).create_new(true).open(self.root.join(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                OpenWriteError::FileAlreadyExists(path.to_owned())
            } else {
                OpenWriteError::wrap_io_error(e, path.to_owned())
            }
        })?;
        Ok(BufWriter::new(Box::new(Plain(file))))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // Atomic for readers of this process and others (a rename), not
        // durable.
        let full = self.root.join(path);
        let tmp = full.with_extension("unsynced-tmp");
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &full)
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(callback)
    }
}
