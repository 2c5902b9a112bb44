package sqlstore

import (
	"fmt"
	"os"

	"github.com/palleto/palleto/store"
)

// dbFile is the SQLite database file a store opened: its path and what it was when opened
// (device and inode). SQLite keeps writing to a file deleted or replaced under it (rm of the
// database, the -wal and the -shm; a backup moved over it): commits succeed, and the results
// are gone with the old file. So each commit, before and after, and each readiness check make
// sure the path still names the file opened.
type dbFile struct {
	path string
	fi   os.FileInfo
}

// openedFile records path's file, or returns nil when path names none (":memory:").
func openedFile(path string) *dbFile {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return &dbFile{path: path, fi: fi}
}

// checkFile returns an error wrapping store.ErrUnavailable when the database file was deleted
// or replaced since the store opened it. Nothing written after that can be kept, so the store
// stays unavailable (no message is deleted) until Palleto is restarted on a database it opens
// anew.
func (s *Store) checkFile() error {
	f := s.file
	if f == nil {
		return nil
	}
	fi, err := os.Stat(f.path)
	switch {
	case err != nil:
		return fmt.Errorf("%w: sqlite %s: the database file was deleted or moved away since Palleto opened it (%w); results written now would be lost, so none is committed: restore the file or restart Palleto to make a new database",
			store.ErrUnavailable, f.path, err)
	case !os.SameFile(fi, f.fi):
		return fmt.Errorf("%w: sqlite %s: the database file was replaced since Palleto opened it (another file has its name now); results written now would go to the old file, so none is committed: restart Palleto to open the new one",
			store.ErrUnavailable, f.path)
	}
	return nil
}
