//go:build unix

package main

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// Flags for opening an env file: O_NONBLOCK so that opening a FIFO returns
// at once (to be refused after fstat) instead of waiting for a writer, and
// O_NOFOLLOW so that a file about to be replaced is never reached through a
// symbolic link. Neither changes how a regular file reads.
const (
	openFlags    = syscall.O_NONBLOCK
	openNoFollow = syscall.O_NOFOLLOW
)

// keepOwner gives tmp the owner of the file it replaces, so that
// "sudo sessionctl secret --env-file .env" leaves .env readable by the
// app's user rather than owned by root.
func keepOwner(tmp *os.File, original fs.FileInfo) {
	if st, ok := original.Sys().(*syscall.Stat_t); ok {
		// Only root may give a file away; anyone else already owns the new
		// file as they owned the old one, so the error changes nothing.
		_ = tmp.Chown(int(st.Uid), int(st.Gid))
	}
}

// syncDir makes a rename in dir durable: until the directory itself is
// synced, a crash can bring the old name back. File systems that cannot sync
// a directory say EINVAL, and have nothing to sync.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
