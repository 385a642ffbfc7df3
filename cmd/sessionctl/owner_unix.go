//go:build unix

package main

import (
	"os"
	"syscall"
)

// keepOwner gives tmp the owner of the file it replaces, so that
// "sudo sessionctl secret --env-file .env" leaves .env readable by the
// app's user rather than owned by root.
func keepOwner(tmp *os.File, original string) {
	info, err := os.Stat(original)
	if err != nil {
		return
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		// Only root may give a file away; anyone else already owns the new
		// file as they owned the old one, so the error changes nothing.
		_ = tmp.Chown(int(st.Uid), int(st.Gid))
	}
}
